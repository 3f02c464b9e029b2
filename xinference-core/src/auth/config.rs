//! The auth config file (`--auth-config`), in the JSON shape of Xinference's `--auth-config`:
//!
//! ```json
//! {"auth_config": {"algorithm": "HS256", "secret_key": "...", "token_expire_in_minutes": 30},
//!  "user_config": [{"username": "admin", "password": "...", "permissions": ["admin"],
//!                   "api_keys": ["sk-..."]}]}
//! ```
//!
//! `password` may be given in clear (as Xinference's file has it) or as an argon2 PHC string in
//! `password_hash` instead; either way only the hash is stored.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfigFile {
    /// Token settings.
    #[serde(default)]
    pub auth_config: TokenSettings,
    /// The users.
    pub user_config: Vec<UserEntry>,
}

/// Token settings of the file.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSettings {
    /// Only `HS256` is supported.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// The JWT signing key; generated into `$XINFERENCE_HOME/auth/` when absent.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Lifetime of an access token.
    #[serde(default = "default_expiry")]
    pub token_expire_in_minutes: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            algorithm: default_algorithm(),
            secret_key: None,
            token_expire_in_minutes: default_expiry(),
        }
    }
}

fn default_algorithm() -> String {
    "HS256".to_owned()
}

fn default_expiry() -> u64 {
    30
}

/// One user of the file.
#[derive(Clone, Deserialize)]
pub struct UserEntry {
    /// Login name.
    pub username: String,
    /// Password in clear (hashed before it is stored).
    #[serde(default)]
    pub password: Option<String>,
    /// Password as an argon2 PHC string.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Scopes (Xinference's names; legacy aliases accepted).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// API keys of this user, which carry the user's permissions.
    #[serde(default)]
    pub api_keys: Vec<String>,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("username", &self.username)
            .field("permissions", &self.permissions)
            .field("api_keys", &self.api_keys.len())
            .finish_non_exhaustive()
    }
}

impl AuthConfigFile {
    /// Reads and checks `path`: known scopes, HS256, a password per user, unique names.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::bad_request(format!("cannot read auth config {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| e.context(format!("auth config {}", path.display())))
    }

    /// Parses and checks the JSON text of a config file.
    pub fn parse(text: &str) -> Result<Self> {
        let file: AuthConfigFile =
            serde_json::from_str(text).map_err(|e| Error::bad_request(e.to_string()))?;
        if file.auth_config.algorithm != "HS256" {
            return Err(Error::bad_request(format!(
                "algorithm {} is not supported (only HS256)",
                file.auth_config.algorithm
            )));
        }
        let mut names = std::collections::HashSet::new();
        for user in &file.user_config {
            if user.username.trim().is_empty() || !names.insert(user.username.as_str()) {
                return Err(Error::bad_request(format!(
                    "user name {:?} is empty or repeated",
                    user.username
                )));
            }
            if user.password.is_none() && user.password_hash.is_none() {
                return Err(Error::bad_request(format!(
                    "user {} has no password or password_hash",
                    user.username
                )));
            }
            if let Some(bad) = user
                .permissions
                .iter()
                .find(|p| super::scopes::normalize(p).is_none())
            {
                return Err(Error::bad_request(format!(
                    "user {}: unknown permission {bad:?}",
                    user.username
                )));
            }
            if user.api_keys.iter().any(|k| k.len() < 8) {
                return Err(Error::bad_request(format!(
                    "user {}: an API key shorter than 8 characters",
                    user.username
                )));
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xinference_shape_and_refuses_bad_entries() {
        let ok = r#"{"auth_config": {"algorithm": "HS256", "secret_key": "x", "token_expire_in_minutes": 5},
            "user_config": [{"username": "a", "password": "p", "permissions": ["admin", "models:start"], "api_keys": ["sk-12345678"]}]}"#;
        let f = AuthConfigFile::parse(ok).unwrap();
        assert_eq!(f.auth_config.token_expire_in_minutes, 5);
        assert!(!format!("{:?}", f.user_config[0]).contains("sk-12345678"));
        for bad in [
            r#"{"user_config": [{"username": "a", "password": "p", "permissions": ["root"]}]}"#,
            r#"{"user_config": [{"username": "a"}]}"#,
            r#"{"user_config": [{"username": "a", "password": "p"}, {"username": "a", "password": "q"}]}"#,
            r#"{"auth_config": {"algorithm": "RS256"}, "user_config": []}"#,
        ] {
            assert!(AuthConfigFile::parse(bad).is_err(), "{bad}");
        }
    }
}
