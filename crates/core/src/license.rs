//! Licenses: Fair Source by default, or a paid license — a JSON document of terms with an
//! Ed25519 signature, accepted only when a key in `license.trusted_keys` made it. Checked
//! offline; drydock never phones home. An organization issues its own with
//! `drydock license keygen` and `drydock license issue`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What a paid license grants. The signature covers exactly these fields, serialized in this
/// order (see [`LicenseTerms::signed_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseTerms {
    pub id: String,
    pub licensee: String,
    /// Users the instance may have.
    pub seats: i64,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// A license document as it is installed: the terms and the signature (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedLicense {
    pub id: String,
    pub licensee: String,
    pub seats: i64,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LicenseError {
    #[error("the license is not a license document: {0}")]
    Malformed(String),
    #[error("the license's {field} is not valid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the license's signature is not a valid Ed25519 signature")]
    BadSignature,
    #[error(
        "the license is not signed by a trusted key: add its issuer's public key to license.trusted_keys, \
         or ask for a license signed by one of them"
    )]
    Untrusted,
    #[error("license.trusted_keys holds no key: no paid license can be accepted")]
    NoTrustedKeys,
    #[error("'{0}' is not an Ed25519 public key (32 bytes, base64)")]
    BadKey(String),
}

impl LicenseTerms {
    /// The bytes the signature covers: the terms as compact JSON, fields in declared order.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), LicenseError> {
        let invalid = |field, reason: &str| Err(LicenseError::Invalid { field, reason: reason.to_string() });
        if self.id.trim().is_empty() {
            return invalid("id", "it is empty");
        }
        if self.licensee.trim().is_empty() {
            return invalid("licensee", "it is empty");
        }
        if self.seats < 1 {
            return invalid("seats", "a paid license grants at least 1 seat");
        }
        if self.expires <= self.issued {
            return invalid("expires", "it is not after the issue date");
        }
        Ok(())
    }

    /// Signs the terms: the document to install.
    pub fn sign(&self, key: &SigningKey) -> Result<String, LicenseError> {
        self.check()?;
        let signature = key.sign(&self.signed_bytes());
        let document = SignedLicense {
            id: self.id.clone(),
            licensee: self.licensee.clone(),
            seats: self.seats,
            issued: self.issued,
            expires: self.expires,
            signature: BASE64.encode(signature.to_bytes()),
        };
        serde_json::to_string_pretty(&document).map_err(|e| LicenseError::Malformed(e.to_string()))
    }
}

/// Parses a license document and checks its signature against the trusted keys.
pub fn verify(document: &str, trusted: &[VerifyingKey]) -> Result<LicenseTerms, LicenseError> {
    let (terms, signed) = parse(document)?;
    let bytes = BASE64.decode(signed.signature.trim()).map_err(|_| LicenseError::BadSignature)?;
    let signature = Signature::from_slice(&bytes).map_err(|_| LicenseError::BadSignature)?;
    if trusted.is_empty() {
        return Err(LicenseError::NoTrustedKeys);
    }
    let message = terms.signed_bytes();
    if trusted.iter().any(|key| key.verify_strict(&message, &signature).is_ok()) {
        Ok(terms)
    } else {
        Err(LicenseError::Untrusted)
    }
}

/// The terms a document states, without checking who signed it: only to describe an installed
/// license that no longer verifies (its key was taken out of `license.trusted_keys`).
pub fn parse_unverified(document: &str) -> Result<LicenseTerms, LicenseError> {
    parse(document).map(|(terms, _)| terms)
}

fn parse(document: &str) -> Result<(LicenseTerms, SignedLicense), LicenseError> {
    let signed: SignedLicense =
        serde_json::from_str(document.trim()).map_err(|e| LicenseError::Malformed(e.to_string()))?;
    let terms = LicenseTerms {
        id: signed.id.clone(),
        licensee: signed.licensee.clone(),
        seats: signed.seats,
        issued: signed.issued,
        expires: signed.expires,
    };
    terms.check()?;
    Ok((terms, signed))
}

/// A public key from `license.trusted_keys` (base64 of its 32 bytes).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, LicenseError> {
    let bad = || LicenseError::BadKey(text.to_string());
    let bytes: [u8; 32] = BASE64.decode(text.trim()).map_err(|_| bad())?.try_into().map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// A private signing key as `drydock license keygen` writes it (base64 of its 32 bytes).
pub fn parse_private_key(text: &str) -> Result<SigningKey, LicenseError> {
    let bytes: [u8; 32] = BASE64
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LicenseError::BadKey("the private key file".into()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A new key pair: (private key, public key), both base64.
pub fn generate_key_pair() -> (String, String) {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    (BASE64.encode(key.to_bytes()), BASE64.encode(key.verifying_key().to_bytes()))
}

/// Where a paid license stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Before its expiry.
    Active,
    /// Expired, within the grace period (until the given time): it still applies, and
    /// administrators are warned.
    Grace { until: DateTime<Utc> },
    /// Past the grace period: the instance is back on Fair Source.
    Lapsed,
}

pub fn standing(terms: &LicenseTerms, now: DateTime<Utc>, grace_days: u32) -> Standing {
    let until = terms.expires + Duration::days(i64::from(grace_days));
    if now < terms.expires {
        Standing::Active
    } else if now < until {
        Standing::Grace { until }
    } else {
        Standing::Lapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn terms() -> LicenseTerms {
        LicenseTerms {
            id: "L-2026-001".into(),
            licensee: "Example Corp".into(),
            seats: 50,
            issued: at("2026-11-30T00:00:00Z"),
            expires: at("2027-11-30T00:00:00Z"),
        }
    }

    #[test]
    fn a_license_signed_by_a_trusted_key_is_accepted() {
        let (private, public) = generate_key_pair();
        let document = terms().sign(&parse_private_key(&private).unwrap()).unwrap();
        let trusted = [parse_public_key(&public).unwrap()];
        assert_eq!(verify(&document, &trusted).unwrap(), terms());
    }

    #[test]
    fn an_untrusted_or_altered_license_is_refused() {
        let (private, _) = generate_key_pair();
        let (_, other_public) = generate_key_pair();
        let key = parse_private_key(&private).unwrap();
        let document = terms().sign(&key).unwrap();
        let other = [parse_public_key(&other_public).unwrap()];
        assert_eq!(verify(&document, &other), Err(LicenseError::Untrusted));
        assert_eq!(verify(&document, &[]), Err(LicenseError::NoTrustedKeys));
        // More seats than were signed.
        let own = [key.verifying_key()];
        let altered = document.replace("\"seats\": 50", "\"seats\": 500");
        assert_ne!(altered, document);
        assert_eq!(verify(&altered, &own), Err(LicenseError::Untrusted));
        assert!(matches!(verify("not json", &own), Err(LicenseError::Malformed(_))));
        let no_signature = document.replace("\"signature\"", "\"signed\"");
        assert!(matches!(verify(&no_signature, &own), Err(LicenseError::Malformed(_))));
    }

    #[test]
    fn bad_terms_and_keys_name_what_is_wrong() {
        let (private, _) = generate_key_pair();
        let key = parse_private_key(&private).unwrap();
        let mut zero = terms();
        zero.seats = 0;
        assert!(matches!(zero.sign(&key), Err(LicenseError::Invalid { field: "seats", .. })));
        assert!(matches!(parse_public_key("abc"), Err(LicenseError::BadKey(_))));
    }

    #[test]
    fn expiry_then_grace_then_lapse() {
        let t = terms();
        assert_eq!(standing(&t, at("2027-06-01T00:00:00Z"), 15), Standing::Active);
        assert_eq!(standing(&t, at("2027-12-01T00:00:00Z"), 15), Standing::Grace { until: at("2027-12-15T00:00:00Z") });
        assert_eq!(standing(&t, at("2027-12-15T00:00:00Z"), 15), Standing::Lapsed);
        assert_eq!(standing(&t, at("2027-11-30T00:00:00Z"), 0), Standing::Lapsed);
    }
}

/// How many users the license in force allows, shared by the license service (which sets it)
/// and user creation (which checks it in the transaction that inserts). `None`: no cap.
#[derive(Debug, Default)]
pub struct SeatCap(std::sync::atomic::AtomicI64);

impl SeatCap {
    pub fn new(seats: Option<u64>) -> Self {
        let cap = SeatCap::default();
        cap.set(seats);
        cap
    }

    pub fn get(&self) -> Option<u64> {
        u64::try_from(self.0.load(std::sync::atomic::Ordering::SeqCst)).ok()
    }

    pub fn set(&self, seats: Option<u64>) {
        let value = seats.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        self.0.store(value, std::sync::atomic::Ordering::SeqCst);
    }
}
