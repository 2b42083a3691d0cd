//! Passwords (argon2id) and bearer secrets (random, stored as SHA-256 digests).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Prefixes make leaked secrets easy to recognise (and to scan for).
pub const SESSION_PREFIX: &str = "dds_";
pub const TOKEN_PREFIX: &str = "ddt_";

/// A fresh random secret: the prefix and 32 random bytes, base64url.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest a secret is stored and looked up by. A fast hash is right here: the secret
/// has 256 random bits, so it cannot be guessed, only stolen.
pub fn digest(secret: &str) -> String {
    hex::encode(digest_bytes(secret))
}

/// The raw digest, for in-memory lookups that need no text.
pub fn digest_bytes(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The CSRF token of a cookie session: derived from the session secret, so the server
/// needs to store nothing more and only the holder of the cookie can know it.
pub fn csrf_token(session_secret: &str) -> String {
    digest(&format!("csrf:{session_secret}"))
}

/// Hashes a password with argon2id. CPU-heavy: call it from a blocking thread.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(e.to_string().into()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(e.to_string().into()))
}

/// Checks a password against a stored hash. CPU-heavy: call it from a blocking thread.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Runs a CPU-heavy closure off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn secrets_differ_and_digest_is_hex() {
        let a = new_secret(TOKEN_PREFIX);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_ne!(a, new_secret(TOKEN_PREFIX));
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(csrf_token(&a), digest(&a));
    }
}
