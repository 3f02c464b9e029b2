//! User management, as Xinference's `/v1/admin/users` routes: create, list, read, enable or
//! disable, change permissions or password, delete. Users of the auth config file are listed
//! but read-only here (the file replaces them at each start: change them there). A caller
//! manages only users whose scopes it holds itself, and grants only scopes it holds, so
//! `users:manage` is no way to `admin`. Every call blocks (argon2, the database).

use super::{scopes, secret, token, Auth, Principal, UserInfo};
use crate::{Error, ErrorKind, Result};

/// Shortest password accepted for a user created or changed through the API.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// What `PUT /v1/admin/users/{id}` changes (absent fields stay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// Enable or disable the user.
    pub enabled: Option<bool>,
    /// The user's new scopes.
    pub permissions: Option<Vec<String>>,
}

fn check_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "Invalid username {name:?}: 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::bad_request(format!(
            "The password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// `wanted` scope names normalised (aliases mapped, duplicates dropped); a 400 for an unknown
/// name, a 403 for one that `by` does not hold (`admin` only from an admin).
fn grantable(by: &Principal, wanted: &[String]) -> Result<Vec<String>> {
    let mut granted = Vec::new();
    for s in wanted {
        let Some(norm) = scopes::normalize(s) else {
            return Err(Error::bad_request(format!("unknown scope {s:?}")));
        };
        if !by.allows(norm) {
            return Err(Error::forbidden(format!(
                "cannot grant the scope {norm}, which this credential lacks"
            )));
        }
        if !granted.iter().any(|g| g == norm) {
            granted.push(norm.to_owned());
        }
    }
    Ok(granted)
}

impl Auth {
    /// Creates user `username` with `password` and `permissions` (scope names); a 409 when
    /// the name is taken, a 400 for a bad name, short password or unknown scope, a 403 for a
    /// scope `by` lacks.
    pub fn create_user(
        &self,
        by: &Principal,
        username: &str,
        password: &str,
        permissions: &[String],
    ) -> Result<UserInfo> {
        by.require(scopes::USERS_MANAGE)?;
        check_username(username)?;
        check_password(password)?;
        let granted = grantable(by, permissions)?;
        let hash = secret::hash_password(password)?;
        let info = self
            .store
            .insert_user(username, &hash, &granted, token::now_secs())?;
        tracing::info!(id = info.id, user = %info.username, by = %by.user, "user created");
        Ok(info)
    }

    /// Every user.
    pub fn list_users(&self, by: &Principal) -> Result<Vec<UserInfo>> {
        by.require(scopes::USERS_MANAGE)?;
        self.store.list_users()
    }

    /// User `id`; a 404 when there is none.
    pub fn get_user(&self, by: &Principal, id: i64) -> Result<UserInfo> {
        by.require(scopes::USERS_MANAGE)?;
        self.store
            .user_by_id(id)?
            .map(|row| row.info)
            .ok_or_else(|| Error::not_found(format!("User {id} not found")))
    }

    /// User `id` if `by` may change it: it exists (404), it is not the config file's (409),
    /// `by` holds every scope it has (403) and it is not `by` itself (400: no locking oneself
    /// out).
    fn managed(&self, by: &Principal, id: i64) -> Result<UserInfo> {
        let user = self.get_user(by, id)?;
        if user.source == "config" {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "User {} comes from the auth config file, which sets it at each start: \
                     change it there",
                    user.username
                ),
            ));
        }
        if let Some(lacking) = user
            .permissions
            .iter()
            .find(|s| scopes::normalize(s).is_none_or(|n| !by.allows(n)))
        {
            return Err(Error::forbidden(format!(
                "cannot manage the user {}, who holds the scope {lacking}",
                user.username
            )));
        }
        if user.username == by.user {
            return Err(Error::bad_request(
                "cannot change or delete the user making the request",
            ));
        }
        Ok(user)
    }

    /// Enables or disables user `id` and/or replaces its scopes (see [`UserUpdate`]).
    pub fn update_user(&self, by: &Principal, id: i64, update: UserUpdate) -> Result<UserInfo> {
        let user = self.managed(by, id)?;
        let permissions = update
            .permissions
            .as_deref()
            .map(|p| grantable(by, p))
            .transpose()?;
        self.store
            .update_user(id, update.enabled, permissions.as_deref(), None)?;
        tracing::info!(id, user = %user.username, by = %by.user, "user updated");
        self.get_user(by, id)
    }

    /// Sets user `id`'s password; its access and refresh tokens issued before stop working.
    pub fn set_password(&self, by: &Principal, id: i64, new_password: &str) -> Result<()> {
        let user = self.managed(by, id)?;
        check_password(new_password)?;
        let hash = secret::hash_password(new_password)?;
        self.store
            .update_user(id, None, None, Some((&hash, token::now_secs())))?;
        tracing::info!(id, user = %user.username, by = %by.user, "user password changed");
        Ok(())
    }

    /// Deletes user `id` and revokes its API keys.
    pub fn delete_user(&self, by: &Principal, id: i64) -> Result<()> {
        let user = self.managed(by, id)?;
        self.store.delete_user(&user.username)?;
        tracing::info!(id, user = %user.username, by = %by.user, "user deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthConfigFile;

    fn open(home: &std::path::Path) -> Auth {
        let config = AuthConfigFile::parse(
            r#"{"auth_config": {"secret_key": "s", "token_expire_in_minutes": 10},
                "user_config": [
                  {"username": "root", "password": "rootpw", "permissions": ["admin"]},
                  {"username": "ops", "password": "opspw", "permissions": ["users:manage", "models:list", "models:read", "keys:create"]}]}"#,
        )
        .unwrap();
        Auth::open(home, &config).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn users_are_created_managed_and_deleted_within_the_callers_scopes() {
        let home = tempfile::tempdir().unwrap();
        let auth = open(home.path());
        let root = auth
            .authenticate(&auth.login("root", "rootpw").unwrap())
            .unwrap();
        let ops = auth
            .authenticate(&auth.login("ops", "opspw").unwrap())
            .unwrap();
        let kind = |r: Result<UserInfo>| r.unwrap_err().kind();

        // ops (users:manage) cannot make an admin, nor give what it lacks.
        assert_eq!(
            kind(auth.create_user(&ops, "eve", "password1", &strings(&["admin"]))),
            ErrorKind::Forbidden
        );
        assert_eq!(
            kind(auth.create_user(&ops, "eve", "password1", &strings(&["models:write"]))),
            ErrorKind::Forbidden
        );
        assert_eq!(
            kind(auth.create_user(&ops, "eve", "short", &strings(&["models:list"]))),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(auth.create_user(&ops, "../eve", "password1", &[])),
            ErrorKind::BadRequest
        );
        assert_eq!(
            kind(auth.create_user(&ops, "eve", "password1", &strings(&["bogus"]))),
            ErrorKind::BadRequest
        );
        let eve = auth
            .create_user(
                &root,
                "eve",
                "password1",
                &strings(&["models:list", "models:start"]),
            )
            .unwrap();
        assert_eq!(eve.source, "api");
        assert_eq!(eve.permissions, ["models:list", "models:write"]);
        assert_eq!(
            kind(auth.create_user(&root, "eve", "password2", &[])),
            ErrorKind::Conflict
        );
        // ops lacks models:write, which eve holds: it may not manage eve; root may.
        assert_eq!(
            kind(auth.update_user(&ops, eve.id, UserUpdate::default())),
            ErrorKind::Forbidden
        );
        let eve_token = auth.login("eve", "password1").unwrap();
        let eve_key = {
            let p = auth.authenticate(&eve_token).unwrap();
            // eve cannot create keys (no keys:create).
            assert!(auth.create_key(&p, None, None, None).is_err());
            let updated = auth
                .update_user(
                    &root,
                    eve.id,
                    UserUpdate {
                        permissions: Some(strings(&["models:list", "keys:create"])),
                        ..UserUpdate::default()
                    },
                )
                .unwrap();
            assert_eq!(updated.permissions, ["models:list", "keys:create"]);
            let p = auth.authenticate(&eve_token).unwrap();
            // The old token lost models:write with the user.
            assert_eq!(p.scopes, ["models:list"]);
            let p = auth
                .authenticate(&auth.login("eve", "password1").unwrap())
                .unwrap();
            auth.create_key(&p, None, Some(strings(&["models:list"])), None)
                .unwrap()
                .1
        };
        // Disabled: no login, no token, no key.
        auth.update_user(
            &ops,
            eve.id,
            UserUpdate {
                enabled: Some(false),
                ..UserUpdate::default()
            },
        )
        .unwrap();
        assert_eq!(
            auth.login("eve", "password1").unwrap_err().kind(),
            ErrorKind::Forbidden
        );
        assert_eq!(
            auth.login("eve", "wrong-password").unwrap_err().kind(),
            ErrorKind::Unauthorized
        );
        assert!(auth.authenticate(&eve_token).is_err());
        assert!(auth.authenticate(&eve_key).is_err());
        auth.update_user(
            &ops,
            eve.id,
            UserUpdate {
                enabled: Some(true),
                ..UserUpdate::default()
            },
        )
        .unwrap();
        auth.authenticate(&eve_key).unwrap();
        // The config file's users are read-only here; nobody changes themself.
        let root_id = auth
            .list_users(&root)
            .unwrap()
            .into_iter()
            .find(|u| u.username == "root")
            .unwrap()
            .id;
        assert_eq!(
            auth.delete_user(&root, root_id).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            auth.delete_user(&root, 999).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // A new password ends the tokens issued before it (whole seconds: wait for the next).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        auth.set_password(&ops, eve.id, "password2").unwrap();
        assert!(auth.authenticate(&eve_token).is_err());
        assert!(auth.login("eve", "password1").is_err());
        auth.authenticate(&auth.login("eve", "password2").unwrap())
            .unwrap();
        // Deleting revokes the keys; the users stay across a restart (the file's are set again).
        auth.delete_user(&ops, eve.id).unwrap();
        assert!(auth.authenticate(&eve_key).is_err());
        auth.create_user(&root, "zed", "password3", &[]).unwrap();
        drop(auth);
        let auth = open(home.path());
        let names: Vec<String> = auth
            .list_users(&root)
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["root", "ops", "zed"]);
        assert_eq!(
            auth.list_users(
                &auth
                    .authenticate(&auth.login("zed", "password3").unwrap())
                    .unwrap()
            )
            .unwrap_err()
            .kind(),
            ErrorKind::Forbidden
        );
    }
}
