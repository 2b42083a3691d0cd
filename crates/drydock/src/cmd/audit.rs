//! `drydock audit`: the audit report, fetched from the running server (`GET /api/audit`) and
//! written to a file whole or not at all; and `drydock audit verify`, which checks the audit
//! log's hash chain in the instance's database directly (the server need not run). `audit` is
//! a group: `drydock audit [--out FILE]` is `drydock audit report [--out FILE]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use drydock_core::audit::AuditReport;
use reqwest::Method;
use reqwest::header::CONTENT_DISPOSITION;

use std::sync::Arc;

use drydock_core::SystemClock;
use drydock_core::audit_log::AuditLog;

use crate::client::Client;
use crate::cmd::user::Remote;
use crate::instance::{DataDir, write_atomic};
use crate::{config, wiring};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Without a subcommand: download the report (as `drydock audit report`).
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Download the audit report (what `drydock audit` does without a subcommand).
    Report(ReportArgs),
    /// Check the audit log's hash chain in the database: exits 1 at the first event where it
    /// breaks (an event edited or deleted there).
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Where the report goes: a file (replaced whole if it exists), or a directory for the
    /// server's file name. Default: report_<dd-MM-yyyy_HH:mm:ss>.txt in the current directory.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

pub async fn run(dir: &DataDir, args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        None => report(dir, &args.report).await,
        Some(AuditCommand::Report(report_args)) => report(dir, &report_args).await,
        Some(AuditCommand::Verify { json }) => verify(dir, json).await,
    }
}

/// Verifies the chain on the instance's own database, as the host's operator (no token).
async fn verify(dir: &DataDir, json: bool) -> Result<ExitCode> {
    let loaded = config::load(&dir.root, &[])?;
    let store = wiring::open_store(dir, &loaded.config).await?;
    let log = AuditLog::new(store, Arc::new(SystemClock), &loaded.config.audit);
    let v = log.verify_chain().await.context("cannot read the audit log")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(broken) = &v.broken {
        println!("The audit log's chain breaks at event {}: {}", broken.seq, broken.reason);
        println!("{} event(s) before it verified (up to event {}).", v.checked, v.last_seq);
    } else {
        println!("The audit log is intact: {} event(s) verified, up to event {}.", v.checked, v.last_seq);
    }
    Ok(if v.intact { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Fetches the report and writes it (temp file, fsync, rename); prints the file's path.
async fn report(dir: &DataDir, args: &ReportArgs) -> Result<ExitCode> {
    let client = Client::connect(dir, args.remote.url.as_deref())?;
    let response = client.call(Method::GET, "/api/audit").await?;
    let served_name = response
        .headers()
        .get(CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(attachment_name)
        .unwrap_or_else(|| AuditReport::file_name(Utc::now()));
    let body = response.bytes().await.context("cannot read the report from the server")?;
    let target = match &args.out {
        Some(out) if out.is_dir() => out.join(&served_name),
        Some(out) => out.clone(),
        None => PathBuf::from(&served_name),
    };
    let target = std::path::absolute(&target).with_context(|| format!("cannot resolve {}", target.display()))?;
    write_atomic(&target, &body, 0o600)?;
    println!("{}", target.display());
    Ok(ExitCode::SUCCESS)
}

/// The file name of `attachment; filename=NAME` (quoted or not), if it is a plain name: a
/// server never chooses where the file goes.
fn attachment_name(header: &str) -> Option<String> {
    let name = header.split(';').map(str::trim).find_map(|part| part.strip_prefix("filename="))?;
    let name = name.trim().trim_matches('"');
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name().is_some_and(|f| f == name);
    plain.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_file_name_is_taken_from_the_server() {
        let name = attachment_name("attachment; filename=report_30-11-2026_09:05:07.txt");
        assert_eq!(name.as_deref(), Some("report_30-11-2026_09:05:07.txt"));
        assert_eq!(attachment_name("attachment; filename=\"r.txt\"").as_deref(), Some("r.txt"));
        for bad in ["attachment", "attachment; filename=", "attachment; filename=../x", "attachment; filename=/etc/x"] {
            assert_eq!(attachment_name(bad), None, "{bad}");
        }
        assert_eq!(attachment_name("attachment; filename=.hidden"), None);
    }
}
