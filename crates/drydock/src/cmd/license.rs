//! `drydock license keygen` and `drydock license issue`: an organization's own license
//! issuing, offline; `drydock license show|install|remove`: the instance's license, through
//! the running server's API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use drydock_core::license::{self, LicenseTerms};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::cmd::confirm;
use crate::cmd::user::Remote;
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
    /// The instance's license and its state: Fair Source or the paid license, seats used,
    /// expiry and grace period, and what is not legal.
    Show {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Install a paid license (a document made by `issue`; `-` reads it from stdin). It must
    /// be signed by a key in the instance's license.trusted_keys; it replaces an installed one.
    Install {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove the paid license: the Fair Source license applies again.
    Remove {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(dir: &DataDir, command: LicenseCommand) -> Result<ExitCode> {
    match command {
        LicenseCommand::Show { json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let view: Value = client.get("/api/license").await?;
            print_view(&view, json)?;
            Ok(ExitCode::SUCCESS)
        }
        LicenseCommand::Install { file, json, remote } => {
            let document = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read the license from stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let client = Client::connect(dir, remote.url.as_deref())?;
            let view: Value = client.send_text(Method::PUT, "/api/license", document).await?;
            if !json {
                println!("license {} installed", view["paid"]["id"].as_str().unwrap_or_default());
            }
            print_view(&view, json)?;
            Ok(ExitCode::SUCCESS)
        }
        LicenseCommand::Remove { yes, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let view: Value = client.get("/api/license").await?;
            let Some(id) = view["paid"]["id"].as_str() else {
                bail!("no paid license is installed: the Fair Source license applies");
            };
            confirm(&format!("Remove the license {id}? The Fair Source license applies again."), yes)?;
            client.send_no_content::<()>(Method::DELETE, "/api/license", None).await?;
            println!("license {id} removed: the Fair Source license applies");
            Ok(ExitCode::SUCCESS)
        }
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

/// The license view as `GET /api/license` gave it: JSON, or a few lines for people.
fn print_view(view: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(view)?);
        return Ok(());
    }
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let seats = match view["seats"].as_u64() {
        Some(n) => format!("{} of {n} used", view["users"]),
        None => format!("{} users; no seat cap", view["users"]),
    };
    let paid = &view["paid"];
    if paid.is_object() {
        println!(
            "paid license {} for {}: {}",
            text(&paid["id"]),
            text(&paid["licensee"]),
            text(&paid["state"]).to_lowercase()
        );
        println!("  seats:      {seats} (the license grants {})", paid["seats"]);
        println!("  issued:     {}", text(&paid["issued"]));
        println!("  expires:    {}", text(&paid["expires"]));
        println!("  grace:      {} days, until {}", view["graceDays"], text(&paid["graceUntil"]));
        println!("  installed:  {} by {}", text(&paid["installed"]), text(&paid["installedBy"]));
    } else {
        println!("Fair Source license (no paid license is installed)");
        println!("  seats:      {seats}");
    }
    if view["isLegal"].as_bool() == Some(true) {
        println!("  legal:      yes");
    } else {
        println!("  legal:      no");
        for issue in view["issues"].as_array().into_iter().flatten() {
            println!("    {}: {}", text(&issue["status"]), text(&issue["message"]));
        }
    }
    Ok(())
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
