pub mod audit;
pub mod backup;
pub mod init;
pub mod license;
pub mod limits;
pub mod maintenance;
pub mod node;
pub mod standby;
pub mod start;
pub mod status;
pub mod stop;
pub mod token;
pub mod upgrade;
pub mod user;
pub mod workspace;

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Asks before a destructive step. `--yes` skips the question; without a terminal and
/// without `--yes` the answer is no.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing without confirmation: {question} Pass --yes to confirm when there is no terminal.");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") { Ok(()) } else { bail!("cancelled") }
}

/// A password from a flag or a file (first line), if either was given.
pub fn password_from(flag: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    match (flag, file) {
        (Some(p), _) => Ok(Some(p.to_string())),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            Ok(Some(text.lines().next().unwrap_or("").to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// Asks for a password on the terminal, without echo.
pub fn prompt_password(prompt: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password on: pass --password-file");
    }
    rpassword::prompt_password(prompt).context("cannot read the password")
}
