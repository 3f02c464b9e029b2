//! Secrets: argon2 password hashes, random `xf-` API keys and their SHA-256 digests.

use crate::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The argon2id PHC string of `password` (salted; safe to store).
pub fn hash_password(password: &str) -> Result<String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| Error::internal(format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("cannot hash a password: {e}")))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new API key: `xf-` and 48 random alphanumerics, as Xinference's keys.
pub fn new_api_key() -> String {
    format!("xf-{}", Alphanumeric.sample_string(&mut rand::rng(), 48))
}

/// A new random secret of 64 alphanumerics (the JWT signing key).
pub fn new_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 64)
}

/// The hex SHA-256 of an API key: what is stored and looked up (keys are long random
/// secrets, so a fast digest is safe here; passwords get argon2).
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("s3cret"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret!", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn keys_are_xf_and_48_alphanumerics() {
        let k = new_api_key();
        assert_eq!(k.len(), 51);
        assert!(k.starts_with("xf-"));
        assert!(k[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(k, new_api_key());
        assert_eq!(key_digest(&k).len(), 64);
        assert_eq!(key_digest(&k), key_digest(&k));
    }
}
