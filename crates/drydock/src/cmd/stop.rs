//! `drydock stop`: a graceful stop through the pid file.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::instance::{DataDir, process_is_drydock};

const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(dir: &DataDir) -> Result<ExitCode> {
    stop(dir).await?;
    Ok(ExitCode::SUCCESS)
}

/// Stops the server if it runs; says so either way.
pub async fn stop(dir: &DataDir) -> Result<()> {
    let Some(pid) = dir.running_pid() else {
        println!("drydock is not running in {}", dir.root.display());
        return Ok(());
    };
    kill(Pid::from_raw(pid), Signal::SIGTERM).with_context(|| format!("cannot signal drydock (pid {pid})"))?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while process_is_drydock(pid) {
        if Instant::now() > deadline {
            bail!(
                "drydock (pid {pid}) did not stop within {} s; see {}",
                STOP_TIMEOUT.as_secs(),
                dir.log_file().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("drydock (pid {pid}) stopped");
    Ok(())
}
