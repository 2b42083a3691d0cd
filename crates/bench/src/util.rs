//! Small helpers the benchmarks share: settings from the environment, running commands,
//! and what a report says about the machine, the code and the moment.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// A whole-number setting from the environment: `default` when unset or empty.
pub fn env_u32(name: &str, default: u32, min: u32) -> Result<u32> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let n: u32 = v.trim().parse().with_context(|| format!("{name}={v}: not a whole number"))?;
            ensure!(n >= min, "{name}={v}: must be at least {min}");
            Ok(n)
        }
        _ => Ok(default),
    }
}

pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// Runs a command to completion; an error carries its output when it fails.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

pub fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_string())
}

pub fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().next().unwrap_or("").trim().to_string()
}

pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("cannot read /dev/urandom")?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPUs, CPU model and memory of this machine.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| format!(", {:.1} GiB RAM", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}{mem_gib}")
}

/// The commit the measured binary was built from (the workspace's, and whether tracked
/// files differ from it), unless `DRYDOCK_BIN` names another binary.
pub fn code_version() -> String {
    if let Some(bin) = std::env::var_os("DRYDOCK_BIN").filter(|b| !b.is_empty()) {
        return format!("the binary DRYDOCK_BIN={}", PathBuf::from(bin).display());
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["describe", "--always", "--dirty=+changes", "--exclude=*"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => format!("release build of commit {}", first_line(&o.stdout)),
        _ => "release build of an unknown commit".into(),
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let parts: Vec<&str> = text.split_whitespace().take(3).collect();
    if parts.len() == 3 { parts.join(" ") } else { "unknown".into() }
}

pub fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| first_line(&o.stdout))
        .unwrap_or_else(|_| "unknown date".into())
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The nearest-rank percentile of sorted values (NaN when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(sorted: &[f64]) -> f64 {
    percentile(sorted, 50.0)
}

pub fn max(sorted: &[f64]) -> f64 {
    sorted.last().copied().unwrap_or(f64::NAN)
}

/// Handles a benchmark's arguments: `--help` prints its help (and it should not run);
/// anything else is refused.
pub fn no_arguments(args: &[String], help: &str) -> Result<bool> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{help}");
        return Ok(false);
    }
    if let Some(arg) = args.first() {
        anyhow::bail!("unexpected argument '{arg}'\n\n{help}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
