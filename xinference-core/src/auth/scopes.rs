//! Xinference's permission scopes and what a route can need: pure functions. Which route
//! needs which is the server's route table (`xinference_server::ROUTES`).

/// Every scope: anything. Holders may also manage users' keys.
pub const ADMIN: &str = "admin";
/// List running models, registrations, engines.
pub const MODELS_LIST: &str = "models:list";
/// Use a running model (inference, progress).
pub const MODELS_READ: &str = "models:read";
/// Launch and terminate models.
pub const MODELS_WRITE: &str = "models:write";
/// Register and unregister custom models.
pub const MODELS_REGISTER: &str = "models:register";
/// Create API keys.
pub const KEYS_CREATE: &str = "keys:create";
/// List and revoke API keys.
pub const KEYS_MANAGE: &str = "keys:manage";
/// Create, list, change and delete users.
pub const USERS_MANAGE: &str = "users:manage";
/// List the model cache.
pub const CACHE_LIST: &str = "cache:list";
/// Delete from the model cache.
pub const CACHE_DELETE: &str = "cache:delete";

/// Every scope name Xinference knows (after [`normalize`]).
pub const ALL: &[&str] = &[
    ADMIN,
    MODELS_LIST,
    MODELS_READ,
    MODELS_WRITE,
    MODELS_REGISTER,
    KEYS_CREATE,
    KEYS_MANAGE,
    USERS_MANAGE,
    CACHE_LIST,
    CACHE_DELETE,
    "virtualenv:list",
    "virtualenv:delete",
    "logs:list",
    "monitor:view",
];

/// A scope name with Xinference's legacy aliases mapped: `models:start`/`models:stop` are
/// `models:write`, `models:add`/`models:unregister` are `models:register`. `None` for a name
/// that is no scope.
pub fn normalize(scope: &str) -> Option<&'static str> {
    let scope = scope.trim();
    match scope {
        "models:start" | "models:stop" => Some(MODELS_WRITE),
        "models:add" | "models:unregister" => Some(MODELS_REGISTER),
        _ => ALL.iter().copied().find(|s| *s == scope),
    }
}

/// Whether `granted` scopes allow what `required` needs (`admin` allows everything).
pub fn allows(granted: &[String], required: &str) -> bool {
    granted
        .iter()
        .any(|g| g == ADMIN || normalize(g) == Some(required))
}

/// What a request needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone: no credential needed.
    Public,
    /// A valid credential with this scope.
    Scope(&'static str),
    /// A valid credential, any scope (the handler checks more, or the route does not exist).
    Authenticated,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn admin_allows_all_and_aliases_map() {
        assert!(allows(&s(&["admin"]), MODELS_WRITE));
        assert!(allows(&s(&["models:start"]), MODELS_WRITE));
        assert!(allows(&s(&["models:unregister"]), MODELS_REGISTER));
        assert!(!allows(&s(&["models:list"]), MODELS_READ));
        assert!(!allows(&s(&["bogus"]), MODELS_READ));
        assert_eq!(normalize("nope"), None);
    }
}
