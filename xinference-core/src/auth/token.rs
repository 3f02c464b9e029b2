//! JWT access tokens (HS256), as Xinference's `POST /token` issues them.

use crate::{Error, ErrorKind, Result};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// The user's scopes when the token was issued.
    pub scopes: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
}

/// What a refresh token says: whose it is, its id (for logging out), and that it is one
/// (an access token has `scopes` and no `typ`, so neither passes for the other).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshClaims {
    /// The user name.
    pub sub: String,
    /// The token's id.
    pub jti: String,
    /// Always `refresh`.
    pub typ: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
}

/// A signed refresh token for `user`, valid for `days`.
pub fn issue_refresh(secret: &str, user: &str, days: u64) -> Result<String> {
    let iat = now_secs();
    let claims = RefreshClaims {
        sub: user.to_owned(),
        jti: uuid::Uuid::new_v4().simple().to_string(),
        typ: "refresh".to_owned(),
        exp: iat + days * 24 * 3600,
        iat,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::internal(format!("cannot sign a token: {e}")))
}

/// The claims of refresh token `token` if its signature is ours, it has not expired and it
/// is a refresh token; else a 401.
pub fn verify_refresh(secret: &str, token: &str) -> Result<RefreshClaims> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let claims = decode::<RefreshClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|d| d.claims)
    .map_err(|e| {
        Error::new(
            ErrorKind::Unauthorized,
            format!("Invalid or expired refresh token: {e}"),
        )
    })?;
    if claims.typ != "refresh" {
        return Err(Error::new(
            ErrorKind::Unauthorized,
            "Invalid or expired refresh token",
        ));
    }
    Ok(claims)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A signed token for `user` with `scopes`, valid for `minutes`.
pub fn issue(secret: &str, user: &str, scopes: &[String], minutes: u64) -> Result<String> {
    let iat = now_secs();
    let claims = Claims {
        sub: user.to_owned(),
        scopes: scopes.to_vec(),
        exp: iat + minutes * 60,
        iat,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::internal(format!("cannot sign a token: {e}")))
}

/// The claims of `token` if its signature is ours and it has not expired; else a 401.
pub fn verify(secret: &str, token: &str) -> Result<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map(|d| d.claims)
    .map_err(|e| Error::new(ErrorKind::Unauthorized, format!("Invalid token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_and_access_tokens_do_not_pass_for_each_other() {
        let refresh = issue_refresh("k1", "alice", 7).unwrap();
        let c = verify_refresh("k1", &refresh).unwrap();
        assert_eq!((c.sub.as_str(), c.typ.as_str()), ("alice", "refresh"));
        assert!(verify("k1", &refresh).is_err());
        let access = issue("k1", "alice", &["models:list".to_owned()], 30).unwrap();
        assert!(verify_refresh("k1", &access).is_err());
        assert!(verify_refresh("k2", &refresh).is_err());
    }

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let scopes = vec!["models:list".to_owned()];
        let t = issue("k1", "alice", &scopes, 30).unwrap();
        let c = verify("k1", &t).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.scopes, scopes);
        assert!(c.exp >= now_secs() + 29 * 60);
        assert_eq!(
            verify("k2", &t).unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            verify("k1", "a.b.c").unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                scopes,
                exp: now_secs() - 10,
                iat: now_secs() - 100,
            },
            &EncodingKey::from_secret(b"k1"),
        )
        .unwrap();
        assert_eq!(
            verify("k1", &expired).unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
    }
}
