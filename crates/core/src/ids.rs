//! Opaque ids and random secrets.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A random lowercase alphanumeric string, safe in URLs and Docker object names.
pub fn random_lower(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

pub fn user_id() -> String {
    format!("user{}", random_lower(16))
}

pub fn credential_id() -> String {
    format!("cred{}", random_lower(16))
}

/// The id of a new instance: short, because it is part of every Docker object name.
pub fn instance_id() -> String {
    random_lower(10)
}

/// A password for a generated account: 20 alphanumeric characters.
pub fn random_password() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect()
}
