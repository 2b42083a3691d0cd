//! Licenses issued offline with the real binary: `license keygen` and `license issue` make a
//! document that verifies against the key pair's public key and no other; the instance's
//! config takes trusted keys from its file or the environment and refuses a bad one.

mod common;

use common::{Backend, Instance, text};

fn run(dd: &Instance, args: &[&str]) -> (bool, String, String) {
    let out = dd.cli(args);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), text(&out))
}

#[test]
fn keys_and_licenses_are_made_offline_and_verify() {
    let Some(dd) = Instance::init(Backend::Sqlite) else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("issuer.key");
    let key_arg = key.display().to_string();
    let (ok, public, all) = run(&dd, &["license", "keygen", "--out", &key_arg]);
    assert!(ok, "{all}");
    let public = public.trim().to_string();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the private key is the owner's only");
    // A key is never replaced.
    let (ok, _, all) = run(&dd, &["license", "keygen", "--out", &key_arg]);
    assert!(!ok && all.contains("never replaced"), "{all}");

    let args =
        ["license", "issue", "--key", &key_arg, "--seats", "25", "--expires", "2030-06-30", "--licensee", "Example"];
    let (ok, document, all) = run(&dd, &args);
    assert!(ok, "{all}");
    let trusted = [drydock_core::license::parse_public_key(&public).unwrap()];
    let terms = drydock_core::license::verify(&document, &trusted).unwrap();
    assert_eq!((terms.seats, terms.licensee.as_str()), (25, "Example"));
    assert_eq!(terms.expires.to_rfc3339(), "2030-06-30T23:59:59+00:00");
    let (_, other) = drydock_core::license::generate_key_pair();
    let untrusted = [drydock_core::license::parse_public_key(&other).unwrap()];
    assert!(drydock_core::license::verify(&document, &untrusted).is_err(), "another key does not verify it");

    // Bad input names what is wrong.
    let mut bad = args;
    bad[7] = "next year";
    let (ok, _, all) = run(&dd, &bad);
    assert!(!ok && all.contains("--expires"), "{all}");
    let mut bad = args;
    bad[5] = "0";
    let (ok, _, all) = run(&dd, &bad);
    assert!(!ok && all.contains("seats"), "{all}");

    // Trusted keys from the environment (comma-separated) are checked when the config loads.
    let mut with_keys = Instance::new(Backend::Sqlite, &[]).unwrap();
    with_keys.env.push(("DRYDOCK_LICENSE__TRUSTED_KEYS".into(), format!("{public}, {other}")));
    let (ok, _, all) = run(&with_keys, &["init", "--admin-password", "admin-password-1"]);
    assert!(ok, "{all}");
    let config = std::fs::read_to_string(with_keys.data_dir().join("drydock.toml")).unwrap();
    assert!(config.contains(&public) && config.contains(&other), "{config}");
    let mut wrong = Instance::new(Backend::Sqlite, &[]).unwrap();
    wrong.env.push(("DRYDOCK_LICENSE__TRUSTED_KEYS".into(), "not-a-key".into()));
    let (ok, _, all) = run(&wrong, &["init", "--admin-password", "admin-password-1"]);
    assert!(!ok && all.contains("license.trusted_keys") && all.contains("not-a-key"), "{all}");
}
