//! Versions: this binary's, the database schema it needs, the releases it knows and the ones
//! it upgrades from, and how versions compare.
//!
//! Every release adds a row to [`RELEASES`]; a release whose schema changed says which
//! versions it upgrades from in [`UPGRADES_FROM`] (an upgrade across more releases goes
//! through the intermediate ones, each with its own binary).

use std::cmp::Ordering;

pub use drydock_core::VERSION;

/// A drydock release and the database schema it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: &'static str,
    pub schema: i64,
}

/// The releases this binary knows, oldest first; the last is this binary.
pub const RELEASES: &[Release] = &[
    Release { version: "0.1.0", schema: 4 },
    Release { version: "0.2.0", schema: 5 },
    Release { version: "0.3.0", schema: 6 },
];

/// The database schema this binary needs (the newest migration it carries).
pub const SCHEMA: i64 = 6;

/// The instance versions `drydock upgrade` of this binary takes, oldest first.
pub const UPGRADES_FROM: &[&str] = &["0.1.0", "0.2.0"];

/// The release with this version, if this binary knows it.
pub fn release(version: &str) -> Option<Release> {
    RELEASES.iter().copied().find(|r| compare(r.version, version).is_eq())
}

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

/// Whether text looks like a version (`1.2.3`, `0.2`, `1.0.0-rc1`): a version file that does
/// not is damaged, and nothing is compared against it.
pub fn is_version(text: &str) -> bool {
    let core = text.trim().split(['-', '+']).next().unwrap_or("");
    !core.is_empty()
        && core.split('.').count() <= 3
        && core.split('.').all(|p| !p.is_empty() && p.parse::<u64>().is_ok())
}

/// How an instance at `version` stands to this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The instance is at this binary's version.
    Current,
    /// `drydock upgrade` of this binary takes it.
    Upgradable,
    /// The instance is newer than this binary: no downgrade.
    Newer,
    /// Older than every version this binary upgrades from: upgrade to `first` with that
    /// release's binary first.
    TooOld { first: &'static str },
    /// Between the versions this binary upgrades from and itself, but not one of them: no
    /// release this binary knows.
    Unknown,
}

pub fn standing(version: &str) -> Standing {
    match compare(version, VERSION) {
        Ordering::Equal => Standing::Current,
        Ordering::Greater => Standing::Newer,
        Ordering::Less if UPGRADES_FROM.iter().any(|v| compare(v, version).is_eq()) => Standing::Upgradable,
        Ordering::Less => match UPGRADES_FROM.first().filter(|first| compare(first, version).is_gt()) {
            Some(first) => Standing::TooOld { first },
            None => Standing::Unknown,
        },
    }
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

    #[test]
    fn the_table_describes_this_binary() {
        let last = RELEASES.last().expect("a release");
        assert_eq!(last.version, VERSION, "the last release is this binary: add a row to RELEASES");
        assert_eq!(last.schema, SCHEMA);
        for migrations in [drydock_store::MIGRATIONS_SQLITE, drydock_store::MIGRATIONS_POSTGRES] {
            assert_eq!(migrations.iter().map(|m| m.version).max(), Some(SCHEMA), "SCHEMA is the newest migration");
        }
        assert!(RELEASES.windows(2).all(|w| compare(w[0].version, w[1].version).is_lt() && w[0].schema <= w[1].schema));
        for from in UPGRADES_FROM {
            assert!(release(from).is_some(), "{from} is a release");
            assert!(compare(from, VERSION).is_lt());
        }
    }

    #[test]
    fn standings() {
        assert_eq!(standing(VERSION), Standing::Current);
        assert_eq!(standing("0.1.0"), Standing::Upgradable);
        assert_eq!(standing("0.0.9"), Standing::TooOld { first: "0.1.0" });
        assert_eq!(standing("0.2.0"), Standing::Upgradable);
        assert_eq!(standing("0.1.5"), Standing::Unknown);
        assert_eq!(standing("0.2.5"), Standing::Unknown);
        assert_eq!(standing("9.0.0"), Standing::Newer);
        assert!(is_version("0.1.0") && is_version("1.0.0-rc1") && is_version("2"));
        assert!(!is_version("") && !is_version("banana") && !is_version("1..2") && !is_version("1.2.3.4"));
    }
}
