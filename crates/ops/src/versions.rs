//! Versions: this binary's, the ones it upgrades from, and how they compare.

use std::cmp::Ordering;

pub use drydock_core::VERSION;

/// Compares `major.minor.patch` versions numerically; a missing part counts as 0 and a
/// pre-release suffix (`-rc1`) is ignored.
pub fn compare(a: &str, b: &str) -> Ordering {
    parts(a).cmp(&parts(b))
}

fn parts(version: &str) -> [u64; 3] {
    let core = version.trim().split(['-', '+']).next().unwrap_or("");
    let mut out = [0; 3];
    for (slot, part) in out.iter_mut().zip(core.split('.')) {
        *slot = part.parse().unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare("0.10.0", "0.9.1"), Ordering::Greater);
        assert_eq!(compare("0.2.0", "0.2"), Ordering::Equal);
        assert_eq!(compare("1.0.0-rc1", "1.0.0"), Ordering::Equal);
        assert_eq!(compare("0.1.0", "0.2.0"), Ordering::Less);
    }
}
