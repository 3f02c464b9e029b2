//! Stored responses: an SQLite database under `$XINFERENCE_HOME` (`responses.sqlite3`) that
//! survives restarts. Each row keeps the response, the request's input items, and the whole
//! conversation up to it (the history `previous_response_id` continues). Every write prunes
//! the table to its [`StoreLimits`]: rows older than the age bound, then the oldest rows past
//! the count bound, then the oldest rows past the size bound.
//!
//! Calls block (file I/O): run them off the async executor.

use crate::protocol::responses::{InputItem, Response};
use crate::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// How much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most responses kept (oldest dropped first).
    pub max_responses: u64,
    /// Most bytes of stored JSON kept (oldest dropped first).
    pub max_bytes: u64,
    /// Responses older than this are dropped.
    pub max_age: Duration,
}

impl Default for StoreLimits {
    /// 10,000 responses, 512 MiB, 30 days.
    fn default() -> Self {
        StoreLimits {
            max_responses: 10_000,
            max_bytes: 512 * 1024 * 1024,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl StoreLimits {
    /// The defaults, overridden by `XINFERENCE_RESPONSES_MAX_COUNT`,
    /// `XINFERENCE_RESPONSES_MAX_MB` and `XINFERENCE_RESPONSES_MAX_AGE_DAYS`.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let mut limits = Self::default();
        if let Some(n) = var("XINFERENCE_RESPONSES_MAX_COUNT") {
            limits.max_responses = n;
        }
        if let Some(mb) = var("XINFERENCE_RESPONSES_MAX_MB") {
            limits.max_bytes = mb.saturating_mul(1024 * 1024);
        }
        if let Some(days) = var("XINFERENCE_RESPONSES_MAX_AGE_DAYS") {
            limits.max_age = Duration::from_secs(days.saturating_mul(24 * 3600));
        }
        limits
    }
}

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The response object.
    pub response: Response,
    /// The input items of its request.
    pub input_items: Vec<InputItem>,
    /// The conversation before its output: the history and the request's items.
    pub conversation: Vec<InputItem>,
}

/// The database of stored responses.
pub struct ResponseStore {
    db: Mutex<Connection>,
    limits: StoreLimits,
}

/// A bound as SQLite's signed integer (`u64::MAX` is no bound, not -1).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::internal(format!("response store: {e}"))
}

fn json_error(e: serde_json::Error) -> Error {
    Error::internal(format!("response store: bad stored JSON: {e}"))
}

impl ResponseStore {
    /// Opens (creating when needed) the database at `path`.
    pub fn open(path: &Path, limits: StoreLimits) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = Connection::open(path).map_err(db_error)?;
        db.busy_timeout(Duration::from_secs(5)).map_err(db_error)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS responses (
                 id TEXT PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 response TEXT NOT NULL,
                 input_items TEXT NOT NULL,
                 conversation TEXT NOT NULL,
                 bytes INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS responses_created ON responses (created_at);",
        )
        .map_err(db_error)?;
        Ok(ResponseStore {
            db: Mutex::new(db),
            limits,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `stored` (replacing a row with its id), then prunes to the limits.
    pub fn put(&self, stored: &StoredResponse) -> Result<()> {
        let response = serde_json::to_string(&stored.response).map_err(json_error)?;
        let input = serde_json::to_string(&stored.input_items).map_err(json_error)?;
        let conversation = serde_json::to_string(&stored.conversation).map_err(json_error)?;
        let bytes = (response.len() + input.len() + conversation.len()) as i64;
        let db = self.db();
        db.execute(
            "INSERT OR REPLACE INTO responses (id, created_at, response, input_items, conversation, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                stored.response.id,
                stored.response.created_at as i64,
                response,
                input,
                conversation,
                bytes
            ],
        )
        .map_err(db_error)?;
        self.prune(&db)
    }

    fn prune(&self, db: &Connection) -> Result<()> {
        let oldest = super::output::now().saturating_sub(self.limits.max_age.as_secs());
        db.execute(
            "DELETE FROM responses WHERE created_at < ?1",
            params![oldest as i64],
        )
        .map_err(db_error)?;
        db.execute(
            "DELETE FROM responses WHERE rowid IN (
                 SELECT rowid FROM responses ORDER BY created_at DESC, rowid DESC
                 LIMIT -1 OFFSET ?1)",
            params![clamp(self.limits.max_responses)],
        )
        .map_err(db_error)?;
        db.execute(
            "DELETE FROM responses WHERE rowid IN (
                 SELECT rowid FROM (
                     SELECT rowid, SUM(bytes) OVER (ORDER BY created_at DESC, rowid DESC) AS total
                     FROM responses)
                 WHERE total > ?1)",
            params![clamp(self.limits.max_bytes)],
        )
        .map_err(db_error)?;
        Ok(())
    }

    /// The stored response `id`, or `None`.
    pub fn get(&self, id: &str) -> Result<Option<StoredResponse>> {
        let row = self
            .db()
            .query_row(
                "SELECT response, input_items, conversation FROM responses WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(db_error)?;
        let Some((response, input, conversation)) = row else {
            return Ok(None);
        };
        Ok(Some(StoredResponse {
            response: serde_json::from_str(&response).map_err(json_error)?,
            input_items: serde_json::from_str(&input).map_err(json_error)?,
            conversation: serde_json::from_str(&conversation).map_err(json_error)?,
        }))
    }

    /// Deletes the response `id`; whether it was there.
    pub fn delete(&self, id: &str) -> Result<bool> {
        let n = self
            .db()
            .execute("DELETE FROM responses WHERE id = ?1", params![id])
            .map_err(db_error)?;
        Ok(n > 0)
    }

    /// How many responses are stored.
    pub fn len(&self) -> Result<u64> {
        self.db()
            .query_row("SELECT COUNT(*) FROM responses", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db_error)
    }

    /// Whether no response is stored.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::responses::ResponsesRequest;
    use crate::responses::output::shell;
    use serde_json::json;

    fn stored(id: &str, created_at: u64, text: &str) -> StoredResponse {
        let request: ResponsesRequest =
            serde_json::from_value(json!({"model": "m", "input": text})).unwrap();
        let mut response = shell(&request, id.into(), "m".into());
        response.created_at = created_at;
        let items = crate::responses::request::input_items(request.input.as_ref()).unwrap();
        StoredResponse {
            response,
            input_items: items.clone(),
            conversation: items,
        }
    }

    #[test]
    fn keeps_responses_across_reopening_and_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("responses.sqlite3");
        let now = crate::responses::output::now();
        let a = stored("resp_a", now, "hello");
        {
            let store = ResponseStore::open(&path, StoreLimits::default()).unwrap();
            store.put(&a).unwrap();
            assert_eq!(store.get("resp_a").unwrap(), Some(a.clone()));
            assert_eq!(store.get("resp_b").unwrap(), None);
        }
        let store = ResponseStore::open(&path, StoreLimits::default()).unwrap();
        assert_eq!(store.get("resp_a").unwrap(), Some(a));
        assert!(store.delete("resp_a").unwrap());
        assert!(!store.delete("resp_a").unwrap());
        assert!(store.is_empty().unwrap());
    }

    #[test]
    fn prunes_by_age_count_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        let now = crate::responses::output::now();
        let limits = StoreLimits {
            max_responses: 3,
            max_bytes: u64::MAX,
            max_age: Duration::from_secs(3600),
        };
        let store = ResponseStore::open(&path, limits).unwrap();
        store.put(&stored("resp_old", now - 7200, "old")).unwrap();
        assert_eq!(store.len().unwrap(), 0, "older than max_age");
        for i in 0..5 {
            store
                .put(&stored(&format!("resp_{i}"), now + i, "x"))
                .unwrap();
        }
        assert_eq!(store.len().unwrap(), 3);
        assert!(store.get("resp_1").unwrap().is_none());
        assert!(store.get("resp_2").unwrap().is_some());
        assert!(store.get("resp_4").unwrap().is_some());

        // A size bound of a bit more than one row keeps only the newest.
        let one = {
            let s = stored("resp_x", now, "x");
            (serde_json::to_string(&s.response).unwrap().len()
                + 2 * serde_json::to_string(&s.input_items).unwrap().len()) as u64
        };
        let store = ResponseStore::open(
            &dir.path().join("s.sqlite3"),
            StoreLimits {
                max_bytes: one + one / 2,
                ..StoreLimits::default()
            },
        )
        .unwrap();
        store.put(&stored("resp_x", now, "x")).unwrap();
        store.put(&stored("resp_y", now + 1, "y")).unwrap();
        assert!(store.get("resp_x").unwrap().is_none());
        assert!(store.get("resp_y").unwrap().is_some());
    }
}
