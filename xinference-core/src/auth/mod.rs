//! Access control in Xinference's model: users with scopes from an auth config file, JWT access
//! tokens from `POST /token`, and `xf-` API keys, all checked against the SQLite store under
//! `$XINFERENCE_HOME/auth/`. Off unless the server is given an auth config.
//!
//! - [`scopes`]: scope names and which one each route needs (pure functions);
//! - [`secret`]: password hashes (argon2), API keys and their digests;
//! - [`token`]: JWT access tokens (HS256);
//! - [`config`]: the auth config file;
//! - [`store`]: the database;
//! - `users.rs`: user management (Xinference's `/v1/admin/users` routes).

pub mod config;
pub mod scopes;
pub mod secret;
pub mod store;
pub mod token;
mod users;

use crate::{Error, ErrorKind, Result};
pub use config::AuthConfigFile;
use std::path::Path;
pub use store::{AuthStore, KeyInfo, UserInfo};
pub use users::{UserUpdate, MIN_PASSWORD_CHARS};

/// Who a request comes from, once its credential checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user (for a key: its owner).
    pub user: String,
    /// What the credential may do.
    pub scopes: Vec<String>,
    /// The API key's id, when the credential is a key.
    pub key_id: Option<String>,
    /// The model uids the credential may use (a key's `model_permissions`); `None`: all.
    pub models: Option<Vec<String>>,
}

impl Principal {
    /// Whether this principal holds `scope` (`admin` holds all).
    pub fn allows(&self, scope: &str) -> bool {
        scopes::allows(&self.scopes, scope)
    }

    /// Whether this principal may use (and see) model `uid`.
    pub fn may_use(&self, uid: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == uid))
    }

    /// `Ok` when this principal may use model `uid`, else a 403 naming it.
    pub fn require_model(&self, uid: &str) -> Result<()> {
        if self.may_use(uid) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "Permission denied: this API key may not use the model {uid}"
            )))
        }
    }

    /// `Ok` when [`allows`](Self::allows) `scope`, else a 403 naming it.
    pub fn require(&self, scope: &str) -> Result<()> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "Permission denied: this credential lacks the scope {scope}"
            )))
        }
    }
}

/// A 401 with `message`.
pub fn unauthorized(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthorized, message)
}

/// The access-control state of a server with auth on.
pub struct Auth {
    store: AuthStore,
    secret: String,
    expire_minutes: u64,
    /// A hash no password matches, verified for unknown users.
    dummy_hash: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("expire_minutes", &self.expire_minutes)
            .finish_non_exhaustive()
    }
}

/// Days a refresh token lasts.
pub const REFRESH_TOKEN_DAYS: u64 = 7;

/// What `POST /token` and `POST /v1/auth/refresh` hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// A JWT for `Authorization: Bearer`, valid for the config's minutes.
    pub access_token: String,
    /// A JWT that gets a new access token, valid for [`REFRESH_TOKEN_DAYS`].
    pub refresh_token: String,
}

/// Scopes an API key gets when its creator names none (what Xinference lets a key hold).
pub const DEFAULT_KEY_SCOPES: &[&str] = &[scopes::MODELS_LIST, scopes::MODELS_READ];

impl Auth {
    /// Opens `$XINFERENCE_HOME/auth/auth.db` and loads the users and keys of `config`
    /// (replacing the previous file's; keys created through the API stay).
    pub fn open(home: &Path, config: &AuthConfigFile) -> Result<Self> {
        let dir = home.join("auth");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        let store = AuthStore::open(&dir.join("auth.db"))?;
        let mut users = Vec::new();
        for u in &config.user_config {
            let hash = match (&u.password_hash, &u.password) {
                (Some(h), _) => h.clone(),
                (None, Some(p)) => secret::hash_password(p)?,
                (None, None) => unreachable!("checked by AuthConfigFile::parse"),
            };
            let scopes: Vec<String> = u
                .permissions
                .iter()
                .filter_map(|p| scopes::normalize(p).map(str::to_owned))
                .collect();
            let keys = u
                .api_keys
                .iter()
                .map(|k| (secret::key_digest(k), k.chars().take(7).collect()))
                .collect();
            users.push(store::ConfigUser {
                name: u.username.clone(),
                password_hash: hash,
                scopes,
                keys,
            });
        }
        store.replace_config_users(&users, token::now_secs())?;
        let secret = match &config.auth_config.secret_key {
            Some(s) if !s.is_empty() => s.clone(),
            _ => store.setting_or("jwt_secret", secret::new_secret)?,
        };
        Ok(Auth {
            store,
            dummy_hash: secret::hash_password(&secret::new_secret())?,
            secret,
            expire_minutes: config.auth_config.token_expire_in_minutes,
        })
    }

    /// Opens with the config file at `path`.
    pub fn open_file(home: &Path, path: &Path) -> Result<Self> {
        Self::open(home, &AuthConfigFile::load(path)?)
    }

    /// Lifetime of the access tokens [`login`](Self::login) issues, in minutes.
    pub fn expire_minutes(&self) -> u64 {
        self.expire_minutes
    }

    /// Access and refresh tokens for `user` if `password` is theirs; else a 401. Blocks
    /// (argon2).
    pub fn login_tokens(&self, user: &str, password: &str) -> Result<Tokens> {
        let access_token = self.login(user, password)?;
        Ok(Tokens {
            access_token,
            refresh_token: token::issue_refresh(&self.secret, user, REFRESH_TOKEN_DAYS)?,
        })
    }

    /// A new access token (and a new refresh token; the old one is logged out) for the
    /// holder of `refresh`, with the user's scopes as they are now; a 401 when it is not a
    /// valid refresh token of ours, has expired or was logged out, or its user is gone.
    /// Blocks (a database lookup).
    pub fn refresh(&self, refresh: &str) -> Result<Tokens> {
        let claims = token::verify_refresh(&self.secret, refresh.trim())?;
        if self.store.refresh_revoked(&claims.jti)? {
            return Err(unauthorized("Invalid or expired refresh token"));
        }
        let row = self
            .store
            .user(&claims.sub)?
            .filter(|row| row.info.enabled && claims.iat >= row.tokens_after)
            .ok_or_else(|| unauthorized("Invalid or expired refresh token"))?;
        self.store
            .revoke_refresh(&claims.jti, claims.exp, token::now_secs())?;
        Ok(Tokens {
            access_token: token::issue(
                &self.secret,
                &claims.sub,
                &row.info.permissions,
                self.expire_minutes,
            )?,
            refresh_token: token::issue_refresh(&self.secret, &claims.sub, REFRESH_TOKEN_DAYS)?,
        })
    }

    /// Logs refresh token `refresh` out (it can no longer be refreshed). Unknown or invalid
    /// tokens are ignored, as Xinference does. Blocks.
    pub fn logout(&self, refresh: &str) -> Result<()> {
        if let Ok(claims) = token::verify_refresh(&self.secret, refresh.trim()) {
            self.store
                .revoke_refresh(&claims.jti, claims.exp, token::now_secs())?;
        }
        Ok(())
    }

    /// A JWT access token for `user` if `password` is theirs; else a 401. Blocks (argon2).
    pub fn login(&self, user: &str, password: &str) -> Result<String> {
        let row = self.store.user(user)?;
        // An unknown user costs the same argon2 work as a wrong password, so the answer's
        // timing does not tell which user names exist.
        let hash = row
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |r| r.password_hash.as_str());
        let matches = secret::verify_password(password, hash);
        match row {
            Some(row) if matches && !row.info.enabled => {
                Err(Error::forbidden(format!("The user {user} is disabled")))
            }
            Some(row) if matches => token::issue(
                &self.secret,
                user,
                &row.info.permissions,
                self.expire_minutes,
            ),
            _ => Err(unauthorized("Incorrect username or password")),
        }
    }

    /// Who `credential` (an access token or an API key) is; a 401 when it is none of ours,
    /// expired or revoked, or its user has been deleted or disabled (or, for a token, has
    /// changed password since). Its scopes are those it was given that its user still holds.
    /// Blocks (a database lookup).
    pub fn authenticate(&self, credential: &str) -> Result<Principal> {
        let credential = credential.trim();
        if credential.is_empty() {
            return Err(unauthorized("Not authenticated"));
        }
        if credential.matches('.').count() == 2 && !credential.starts_with("xf-") {
            let claims = token::verify(&self.secret, credential)?;
            let owner = self
                .store
                .user(&claims.sub)?
                .filter(|row| row.info.enabled && claims.iat >= row.tokens_after)
                .ok_or_else(|| unauthorized("Token no longer valid: log in again"))?;
            return Ok(Principal {
                user: claims.sub,
                scopes: held(claims.scopes, &owner.info.permissions),
                key_id: None,
                models: None,
            });
        }
        match self.store.find_key(credential)? {
            Some(k) if !k.revoked => {
                let owner = self
                    .store
                    .user(&k.owner)?
                    .filter(|row| row.info.enabled)
                    .ok_or_else(|| unauthorized("API key of a deleted or disabled user"))?;
                Ok(Principal {
                    user: k.owner,
                    scopes: held(k.scopes, &owner.info.permissions),
                    key_id: Some(k.id),
                    models: k.model_permissions,
                })
            }
            Some(_) => Err(unauthorized("API key has been revoked")),
            None => Err(unauthorized("Invalid API key")),
        }
    }

    /// Creates an API key for `by` with `scopes` (default [`DEFAULT_KEY_SCOPES`]), limited to
    /// the model uids `models` when given (Xinference's `model_permissions`; a key made by a
    /// limited key stays within its limits); a key can only hold scopes its creator holds.
    /// Returns its listing and the key, shown only now.
    pub fn create_key(
        &self,
        by: &Principal,
        name: Option<&str>,
        scopes: Option<Vec<String>>,
        models: Option<Vec<String>>,
    ) -> Result<(KeyInfo, String)> {
        by.require(scopes::KEYS_CREATE)?;
        let wanted =
            scopes.unwrap_or_else(|| DEFAULT_KEY_SCOPES.iter().map(|s| s.to_string()).collect());
        let mut granted = Vec::new();
        for s in &wanted {
            let Some(norm) = scopes::normalize(s) else {
                return Err(Error::bad_request(format!("unknown scope {s:?}")));
            };
            if norm == scopes::ADMIN && !by.allows(scopes::ADMIN) || !by.allows(norm) {
                return Err(Error::forbidden(format!(
                    "cannot grant the scope {norm}, which this credential lacks"
                )));
            }
            if !granted.iter().any(|g| g == norm) {
                granted.push(norm.to_owned());
            }
        }
        if let Some(models) = &models {
            for m in models {
                crate::registry::check_plain_name("model_permissions entry", m)?;
                by.require_model(m)?;
            }
        }
        let models = models.or_else(|| by.models.clone());
        let key = secret::new_api_key();
        let info = self.store.insert_key(
            &key,
            name,
            &by.user,
            &granted,
            models.as_deref(),
            token::now_secs(),
        )?;
        tracing::info!(id = %info.id, owner = %info.owner, "API key created");
        Ok((info, key))
    }

    /// The keys `by` may see: all for `admin`, else their own.
    pub fn list_keys(&self, by: &Principal) -> Result<Vec<KeyInfo>> {
        let owner = (!by.allows(scopes::ADMIN)).then_some(by.user.as_str());
        self.store.list_keys(owner)
    }

    /// Revokes key `id` (an admin any, others their own); 404 when not found.
    pub fn revoke_key(&self, by: &Principal, id: &str) -> Result<KeyInfo> {
        let key = self
            .list_keys(by)?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| Error::not_found(format!("API key {id} not found")))?;
        self.store.revoke_key(id)?;
        tracing::info!(id, "API key revoked");
        Ok(KeyInfo {
            revoked: true,
            ..key
        })
    }
}

/// The scopes of `given` that `owner`'s scopes still allow (a token or key never holds more
/// than its user does now).
fn held(given: Vec<String>, owner: &[String]) -> Vec<String> {
    given
        .into_iter()
        .filter(|s| scopes::normalize(s).is_some_and(|n| scopes::allows(owner, n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: Option<&str>) -> AuthConfigFile {
        let secret = secret
            .map(|s| format!(r#""secret_key": "{s}","#))
            .unwrap_or_default();
        AuthConfigFile::parse(&format!(
            r#"{{"auth_config": {{{secret} "token_expire_in_minutes": 10}},
               "user_config": [
                 {{"username": "root", "password": "rootpw", "permissions": ["admin"], "api_keys": ["sk-rootkey123"]}},
                 {{"username": "bob", "password": "bobpw", "permissions": ["models:list", "models:read", "keys:create"]}}]}}"#
        ))
        .unwrap()
    }

    fn p_allows_all(p: &Principal) -> bool {
        p.models.is_none() && p.require_model("anything").is_ok()
    }

    #[test]
    fn login_keys_and_revocation() {
        let home = tempfile::tempdir().unwrap();
        let auth = Auth::open(home.path(), &config(None)).unwrap();
        assert_eq!(
            auth.login("root", "wrong").unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            auth.login("nobody", "x").unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        let jwt = auth.login("bob", "bobpw").unwrap();
        let bob = auth.authenticate(&jwt).unwrap();
        assert_eq!(bob.user, "bob");
        assert!(bob.allows(scopes::MODELS_READ) && !bob.allows(scopes::MODELS_WRITE));
        let root = auth.authenticate("sk-rootkey123").unwrap();
        assert!(root.allows(scopes::MODELS_WRITE));
        // bob cannot grant what he lacks.
        assert_eq!(
            auth.create_key(&bob, None, Some(vec!["models:write".into()]), None)
                .unwrap_err()
                .kind(),
            ErrorKind::Forbidden
        );
        let (info, key) = auth.create_key(&bob, Some("ci"), None, None).unwrap();
        // A key limited to some models; a key it makes stays within them.
        let (limited, limited_key) = auth
            .create_key(&bob, Some("one"), None, Some(vec!["m1".into()]))
            .unwrap();
        assert_eq!(limited.model_permissions, Some(vec!["m1".to_owned()]));
        let lp = auth.authenticate(&limited_key).unwrap();
        assert!(lp.require_model("m1").is_ok());
        assert_eq!(
            lp.require_model("m2").unwrap_err().kind(),
            ErrorKind::Forbidden
        );
        assert!(p_allows_all(&auth.authenticate(&key).unwrap()));
        auth.revoke_key(&bob, &limited.id).unwrap();
        assert_eq!(info.scopes, vec!["models:list", "models:read"]);
        let p = auth.authenticate(&key).unwrap();
        assert_eq!(p.key_id.as_deref(), Some(info.id.as_str()));
        assert_eq!(auth.list_keys(&bob).unwrap().len(), 2);
        assert_eq!(auth.list_keys(&root).unwrap().len(), 3);
        auth.revoke_key(&bob, &info.id).unwrap();
        assert_eq!(
            auth.authenticate(&key).unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        // Refresh tokens: a new pair, the old refresh token used up; logged out ones refused.
        let pair = auth.login_tokens("bob", "bobpw").unwrap();
        let again = auth.refresh(&pair.refresh_token).unwrap();
        assert_eq!(auth.authenticate(&again.access_token).unwrap().user, "bob");
        assert_eq!(
            auth.refresh(&pair.refresh_token).unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        assert!(auth.authenticate(&again.refresh_token).is_err());
        auth.logout(&again.refresh_token).unwrap();
        assert!(auth.refresh(&again.refresh_token).is_err());
        auth.logout("not-a-token").unwrap();
        // Reopening keeps API keys and the generated secret (tokens stay valid).
        drop(auth);
        let auth = Auth::open(home.path(), &config(None)).unwrap();
        auth.authenticate(&jwt).unwrap();
        assert_eq!(auth.list_keys(&root).unwrap().len(), 3);
        // Nothing secret in the database file.
        let db = std::fs::read(home.path().join("auth/auth.db")).unwrap();
        let db = String::from_utf8_lossy(&db);
        for secret in ["rootpw", "bobpw", "sk-rootkey123", key.as_str()] {
            assert!(!db.contains(secret), "{secret} stored in clear");
        }
    }
}
