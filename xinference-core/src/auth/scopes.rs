//! Xinference's permission scopes and which one each route needs: pure functions.

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
    "users:manage",
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

/// The requirement of `method` (upper case) on `path`, following Xinference's route table.
pub fn required(method: &str, path: &str) -> Requirement {
    use Requirement::*;
    let read = matches!(method, "GET" | "HEAD");
    match path {
        // `/metrics` is open, as in Xinference: Prometheus and llm-d's endpoint picker scrape
        // it without credentials. It shows model uids, names and counts, nothing else.
        // The refresh token in the body is the credential of /v1/auth/refresh and /logout.
        "/status" | "/health" | "/metrics" | "/v1/cluster/auth" | "/token" | "/v1/auth/refresh"
        | "/v1/auth/logout" => return Public,
        // The web UI's page and files (the API calls the page makes need credentials).
        "/" | "/ui" if read => return Public,
        "/v1/cluster/info" | "/v1/cluster/version" => return Scope(ADMIN),
        "/openapi.json" => return Scope(MODELS_LIST),
        "/v1/cache/models" => return Scope(if read { CACHE_LIST } else { CACHE_DELETE }),
        _ => {}
    }
    if read && path.starts_with("/ui/") {
        return Public;
    }
    if path.starts_with("/v1/admin/keys") {
        return if method == "POST" {
            Scope(KEYS_CREATE)
        } else {
            Scope(KEYS_MANAGE)
        };
    }
    if path.starts_with("/v1/model_registrations/") {
        return Scope(if read { MODELS_LIST } else { MODELS_REGISTER });
    }
    if path.starts_with("/v1/engines/") || path.starts_with("/anthropic/v1/models") {
        return Scope(MODELS_LIST);
    }
    if path == "/v1/models" || path.starts_with("/v1/models/") {
        if path.ends_with("/progress") {
            return Scope(MODELS_READ);
        }
        return Scope(if read { MODELS_LIST } else { MODELS_WRITE });
    }
    const INFERENCE: &[&str] = &[
        "/v1/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/anthropic/v1/messages",
        "/v1/rerank",
        "/rerank",
        "/v2/rerank",
        "/v1/audio/",
        "/v1/images/",
        "/v1/requests/",
    ];
    if INFERENCE.iter().any(|p| {
        path == *p
            || (p.ends_with('/') && path.starts_with(p))
            || path.starts_with(&format!("{p}/"))
    }) {
        return Scope(MODELS_READ);
    }
    Authenticated
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

    #[test]
    fn routes_map_to_xinference_scopes() {
        use Requirement::*;
        assert_eq!(required("GET", "/health"), Public);
        assert_eq!(required("GET", "/metrics"), Public);
        assert_eq!(required("POST", "/v1/auth/refresh"), Public);
        assert_eq!(required("POST", "/token"), Public);
        assert_eq!(required("GET", "/v1/models"), Scope(MODELS_LIST));
        assert_eq!(required("POST", "/v1/models"), Scope(MODELS_WRITE));
        assert_eq!(required("DELETE", "/v1/models/x"), Scope(MODELS_WRITE));
        assert_eq!(required("GET", "/v1/models/x/progress"), Scope(MODELS_READ));
        assert_eq!(required("POST", "/v1/embeddings"), Scope(MODELS_READ));
        assert_eq!(required("GET", "/v1/responses/r1"), Scope(MODELS_READ));
        assert_eq!(
            required("GET", "/v1/images/files/a.png"),
            Scope(MODELS_READ)
        );
        assert_eq!(
            required("POST", "/v1/model_registrations/LLM"),
            Scope(MODELS_REGISTER)
        );
        assert_eq!(required("GET", "/v1/cache/models"), Scope(CACHE_LIST));
        assert_eq!(required("POST", "/v1/admin/keys"), Scope(KEYS_CREATE));
        assert_eq!(required("DELETE", "/v1/admin/keys/k"), Scope(KEYS_MANAGE));
        assert_eq!(required("GET", "/nowhere"), Authenticated);
        assert_eq!(required("GET", "/"), Public);
        assert_eq!(required("GET", "/ui/app.mjs"), Public);
        assert_eq!(required("POST", "/"), Authenticated);
        assert_eq!(required("POST", "/ui/app.mjs"), Authenticated);
        assert_eq!(required("GET", "/v1/cluster/info"), Scope(ADMIN));
        assert_eq!(required("POST", "/v1/embeddingsX"), Authenticated);
    }
}
