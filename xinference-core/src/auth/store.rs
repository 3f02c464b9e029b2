//! The SQLite database of users and API keys, `$XINFERENCE_HOME/auth/auth.db`. Only hashes
//! are stored: argon2 for passwords, SHA-256 digests for keys. Every call blocks: the server
//! calls it on a blocking thread.

use super::secret::key_digest;
use crate::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::Mutex;

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's id (for revoking).
    pub id: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// Free-form label.
    pub name: Option<String>,
    /// The user it belongs to.
    pub owner: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Revoked keys are kept, refused.
    pub revoked: bool,
    /// `config` (from the auth config file) or `api` (created through the API or CLI).
    pub source: String,
    /// The model uids it may use (Xinference's `model_permissions`); `None`: every model.
    pub model_permissions: Option<Vec<String>>,
}

/// A user of the config file as stored: name, password hash, scopes, and the digests (with
/// prefixes) of the file's keys for this user.
pub(crate) struct ConfigUser {
    pub name: String,
    pub password_hash: String,
    pub scopes: Vec<String>,
    pub keys: Vec<(String, String)>,
}

/// A user row.
pub(crate) struct UserRow {
    pub info: UserInfo,
    pub password_hash: String,
    /// Tokens issued before this time (seconds since the Unix epoch) are refused: set when the
    /// password changes.
    pub tokens_after: u64,
}

/// A user as listed (never the password hash), in the shape of Xinference's
/// `GET /v1/admin/users`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's id (for the `/v1/admin/users/{id}` routes).
    pub id: i64,
    /// The login name.
    pub username: String,
    /// `config` (from the auth config file, which replaces them at each start) or `api`
    /// (created through `POST /v1/admin/users`).
    pub source: String,
    /// Disabled users can neither log in nor use their tokens and keys.
    pub enabled: bool,
    /// Always false (Xinference's field; passwords are set by whoever creates the user).
    pub must_change_password: bool,
    /// The user's scopes.
    pub permissions: Vec<String>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// The open database.
pub struct AuthStore {
    conn: Mutex<Connection>,
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("auth database: {e}"))
}

fn scopes_json(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned())
}

fn scopes_of(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

impl AuthStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS users (
                 username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, scopes TEXT NOT NULL,
                 id INTEGER, source TEXT NOT NULL DEFAULT 'config',
                 enabled INTEGER NOT NULL DEFAULT 1, created INTEGER NOT NULL DEFAULT 0,
                 tokens_after INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS api_keys (
                 id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
                 name TEXT, owner TEXT NOT NULL, scopes TEXT NOT NULL, created INTEGER NOT NULL,
                 revoked INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS revoked_refresh (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);",
        )
        .map_err(db_err)?;
        // Databases from before per-model permissions get the column (an error says it is
        // already there).
        let _ = conn.execute("ALTER TABLE api_keys ADD COLUMN models TEXT", []);
        // Databases from before user management get its columns, and their users ids.
        for column in [
            "id INTEGER",
            "source TEXT NOT NULL DEFAULT 'config'",
            "enabled INTEGER NOT NULL DEFAULT 1",
            "created INTEGER NOT NULL DEFAULT 0",
            "tokens_after INTEGER NOT NULL DEFAULT 0",
        ] {
            let _ = conn.execute(&format!("ALTER TABLE users ADD COLUMN {column}"), []);
        }
        conn.execute("UPDATE users SET id = rowid WHERE id IS NULL", [])
            .map_err(db_err)?;
        Ok(AuthStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks refresh token `jti` (valid until `exp`) as logged out; forgets those that have
    /// expired by `now` (they are refused anyway).
    pub fn revoke_refresh(&self, jti: &str, exp: u64, now: u64) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM revoked_refresh WHERE exp < ?1", [now as i64])
            .map_err(db_err)?;
        conn.execute(
            "INSERT OR IGNORE INTO revoked_refresh (jti, exp) VALUES (?1, ?2)",
            params![jti, exp as i64],
        )
        .map_err(db_err)?;
        Ok(())
    }

    /// Whether refresh token `jti` was logged out.
    pub fn refresh_revoked(&self, jti: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT 1 FROM revoked_refresh WHERE jti = ?1",
                [jti],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(db_err)
    }

    /// The value of setting `key`, created with `make` when absent.
    pub fn setting_or(&self, key: &str, make: impl FnOnce() -> String) -> Result<String> {
        let conn = self.conn();
        let found: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        if let Some(v) = found {
            return Ok(v);
        }
        let value = make();
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
            params![key, value],
        )
        .map_err(db_err)?;
        Ok(value)
    }

    /// Replaces the config file's users and keys with `users` (a user of the file keeps its
    /// id; one created through the API with the same name becomes the file's). Users and keys
    /// created through the API stay.
    pub(crate) fn replace_config_users(&self, users: &[ConfigUser], now: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let stale: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT username FROM users WHERE source = 'config'")
                .map_err(db_err)?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            names
                .into_iter()
                .filter(|n| !users.iter().any(|u| &u.name == n))
                .collect()
        };
        for name in stale {
            tx.execute("DELETE FROM users WHERE username = ?1", [name])
                .map_err(db_err)?;
        }
        tx.execute("DELETE FROM api_keys WHERE source = 'config'", [])
            .map_err(db_err)?;
        for ConfigUser {
            name,
            password_hash: hash,
            scopes,
            keys,
        } in users
        {
            tx.execute(
                "INSERT INTO users (username, password_hash, scopes, id, source, enabled, created)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(id), 0) + 1 FROM users), 'config', 1, ?4)
                 ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash,
                     scopes = excluded.scopes, source = 'config', enabled = 1",
                params![name, hash, scopes_json(scopes), now as i64],
            )
            .map_err(db_err)?;
            for (digest, prefix) in keys {
                tx.execute(
                    "INSERT OR REPLACE INTO api_keys (id, digest, prefix, name, owner, scopes, created, revoked, source)
                     VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, 0, 'config')",
                    params![format!("cfg-{}", &digest[..12]), digest, prefix, name, scopes_json(scopes), now as i64],
                )
                .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// The user `name`, if any.
    pub(crate) fn user(&self, name: &str) -> Result<Option<UserRow>> {
        self.conn()
            .query_row(
                &format!("{SELECT_USERS} WHERE username = ?1"),
                [name],
                user_row,
            )
            .optional()
            .map_err(db_err)
    }

    /// The user with id `id`, if any.
    pub(crate) fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        self.conn()
            .query_row(&format!("{SELECT_USERS} WHERE id = ?1"), [id], user_row)
            .optional()
            .map_err(db_err)
    }

    /// Every user, by id.
    pub fn list_users(&self) -> Result<Vec<UserInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("{SELECT_USERS} ORDER BY id"))
            .map_err(db_err)?;
        let rows = stmt.query_map([], user_row).map_err(db_err)?;
        rows.map(|r| r.map(|row| row.info))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)
    }

    /// Stores a new user created through the API; a 409 when the name is taken.
    pub(crate) fn insert_user(
        &self,
        name: &str,
        password_hash: &str,
        scopes: &[String],
        now: u64,
    ) -> Result<UserInfo> {
        let conn = self.conn();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO users (username, password_hash, scopes, id, source, enabled, created)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(id), 0) + 1 FROM users), 'api', 1, ?4)",
                params![name, password_hash, scopes_json(scopes), now as i64],
            )
            .map_err(db_err)?;
        if inserted == 0 {
            return Err(Error::new(
                crate::ErrorKind::Conflict,
                format!("User {name} already exists"),
            ));
        }
        conn.query_row(
            &format!("{SELECT_USERS} WHERE username = ?1"),
            [name],
            user_row,
        )
        .map(|row| row.info)
        .map_err(db_err)
    }

    /// Changes what is given of user `id`: enabled, scopes, password hash (with the time
    /// before which its tokens are refused).
    pub(crate) fn update_user(
        &self,
        id: i64,
        enabled: Option<bool>,
        scopes: Option<&[String]>,
        password: Option<(&str, u64)>,
    ) -> Result<()> {
        let conn = self.conn();
        if let Some(enabled) = enabled {
            conn.execute(
                "UPDATE users SET enabled = ?2 WHERE id = ?1",
                params![id, enabled as i64],
            )
            .map_err(db_err)?;
        }
        if let Some(scopes) = scopes {
            conn.execute(
                "UPDATE users SET scopes = ?2 WHERE id = ?1",
                params![id, scopes_json(scopes)],
            )
            .map_err(db_err)?;
        }
        if let Some((hash, tokens_after)) = password {
            conn.execute(
                "UPDATE users SET password_hash = ?2, tokens_after = ?3 WHERE id = ?1",
                params![id, hash, tokens_after as i64],
            )
            .map_err(db_err)?;
        }
        Ok(())
    }

    /// Deletes user `name` and revokes its keys.
    pub(crate) fn delete_user(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute("DELETE FROM users WHERE username = ?1", [name])
            .map_err(db_err)?;
        tx.execute("UPDATE api_keys SET revoked = 1 WHERE owner = ?1", [name])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Stores a new key (by its digest), limited to `models` when given, and returns its
    /// listing.
    pub fn insert_key(
        &self,
        key: &str,
        name: Option<&str>,
        owner: &str,
        scopes: &[String],
        models: Option<&[String]>,
        now: u64,
    ) -> Result<KeyInfo> {
        let info = KeyInfo {
            id: format!("key-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            prefix: key.chars().take(7).collect(),
            name: name.map(str::to_owned),
            owner: owner.to_owned(),
            scopes: scopes.to_vec(),
            created: now,
            revoked: false,
            source: "api".to_owned(),
            model_permissions: models.map(<[String]>::to_vec),
        };
        self.conn()
            .execute(
                "INSERT INTO api_keys (id, digest, prefix, name, owner, scopes, created, revoked, source, models)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'api', ?8)",
                params![
                    info.id,
                    key_digest(key),
                    info.prefix,
                    info.name,
                    info.owner,
                    scopes_json(scopes),
                    now as i64,
                    models.map(scopes_json)
                ],
            )
            .map_err(db_err)?;
        Ok(info)
    }

    /// The key whose digest is that of `key`, if any (revoked ones included).
    pub fn find_key(&self, key: &str) -> Result<Option<KeyInfo>> {
        self.conn()
            .query_row(
                &format!("{SELECT_KEYS} WHERE digest = ?1"),
                [key_digest(key)],
                key_row,
            )
            .optional()
            .map_err(db_err)
    }

    /// Every key, or only `owner`'s.
    pub fn list_keys(&self, owner: Option<&str>) -> Result<Vec<KeyInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "{SELECT_KEYS} WHERE ?1 IS NULL OR owner = ?1 ORDER BY created, id"
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map([owner], key_row).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Marks key `id` revoked; false when there is no such key.
    pub fn revoke_key(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", [id])
            .map_err(db_err)?;
        Ok(n > 0)
    }
}

const SELECT_USERS: &str =
    "SELECT id, username, source, enabled, scopes, created, password_hash, tokens_after FROM users";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        info: UserInfo {
            id: r.get(0)?,
            username: r.get(1)?,
            source: r.get(2)?,
            enabled: r.get::<_, i64>(3)? != 0,
            must_change_password: false,
            permissions: scopes_of(r.get(4)?),
            created_at: r.get::<_, i64>(5)?.max(0) as u64,
        },
        password_hash: r.get(6)?,
        tokens_after: r.get::<_, i64>(7)?.max(0) as u64,
    })
}

const SELECT_KEYS: &str =
    "SELECT id, prefix, name, owner, scopes, created, revoked, source, models FROM api_keys";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.get(0)?,
        prefix: r.get(1)?,
        name: r.get(2)?,
        owner: r.get(3)?,
        scopes: scopes_of(r.get(4)?),
        created: r.get::<_, i64>(5)? as u64,
        revoked: r.get::<_, i64>(6)? != 0,
        source: r.get(7)?,
        model_permissions: r.get::<_, Option<String>>(8)?.map(scopes_of),
    })
}
