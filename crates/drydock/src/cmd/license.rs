//! `drydock license keygen` and `drydock license issue`: an organization's own license
//! issuing, offline. (Installing and showing licenses on an instance come with the server's
//! license API.)

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use drydock_core::license::{self, LicenseTerms};

use crate::instance::{DataDir, write_atomic};

#[derive(Subcommand, Debug)]
pub enum LicenseCommand {
    /// Make a signing key pair: the private key goes to a file (0600), the public key to
    /// stdout, for the instances' license.trusted_keys.
    Keygen {
        /// Where the private key goes; an existing file is never replaced.
        #[arg(long, default_value = "drydock-license.key")]
        out: PathBuf,
    },
    /// Sign a license with a private key made by `keygen`; the document goes to stdout.
    Issue {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// Users the license allows.
        #[arg(long)]
        seats: i64,
        /// Last day of the license (YYYY-MM-DD, UTC; it ends at the end of that day) or an
        /// RFC 3339 time.
        #[arg(long)]
        expires: String,
        /// Who the license is for.
        #[arg(long)]
        licensee: String,
        /// The license's id (default: made from the time).
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn run(_dir: &DataDir, command: LicenseCommand) -> Result<ExitCode> {
    match command {
        LicenseCommand::Keygen { out } => keygen(&out),
        LicenseCommand::Issue { key, seats, expires, licensee, id } => {
            let text = std::fs::read_to_string(&key).with_context(|| format!("cannot read {}", key.display()))?;
            let signing = license::parse_private_key(&text).with_context(|| format!("{}", key.display()))?;
            let now = Utc::now();
            let terms = LicenseTerms {
                id: id.unwrap_or_else(|| format!("L-{}", now.format("%Y%m%d%H%M%S"))),
                licensee,
                seats,
                issued: now,
                expires: parse_expiry(&expires)?,
            };
            println!("{}", terms.sign(&signing)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keygen(out: &std::path::Path) -> Result<ExitCode> {
    if out.exists() {
        bail!("{} exists: a key is never replaced; choose another --out", out.display());
    }
    let (private, public) = license::generate_key_pair();
    write_atomic(out, format!("{private}\n").as_bytes(), 0o600)?;
    eprintln!("private key written to {} (keep it secret; it signs licenses)", out.display());
    eprintln!("public key (add it to license.trusted_keys of the instances that accept its licenses):");
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

/// `2027-11-30` (the end of that day, UTC) or an RFC 3339 time.
fn parse_expiry(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        let end = day.and_hms_opt(23, 59, 59).context("--expires: not a day")?;
        return Ok(end.and_utc());
    }
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| anyhow::anyhow!("--expires: '{text}' is not a day (YYYY-MM-DD) or an RFC 3339 time"))
}
