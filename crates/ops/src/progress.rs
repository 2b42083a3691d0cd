//! How a long operation reports where it is: the binary draws a bar on a terminal and plain
//! lines otherwise; the server logs.

/// Called from the operation's thread; implementations must be cheap.
pub trait Progress: Send + Sync {
    /// A new step begins ("database", "workspace ws…", …).
    fn step(&self, what: &str);
    /// This many more bytes were read or written.
    fn advance(&self, bytes: u64);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn step(&self, _: &str) {}
    fn advance(&self, _: u64) {}
}

/// Reports steps to the log.
pub struct Logged;

impl Progress for Logged {
    fn step(&self, what: &str) {
        tracing::info!(step = what, "backup");
    }
    fn advance(&self, _: u64) {}
}
