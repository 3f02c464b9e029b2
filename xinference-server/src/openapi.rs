//! The OpenAPI description of the routes, served at `/openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;

/// The document (hand-written JSON; a unit test checks that it lists every route).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;
    use crate::routes::ROUTES;

    #[test]
    fn documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        for route in ROUTES {
            let (method, path) = (route.method, route.path);
            assert!(
                doc["paths"][path][method].is_object(),
                "openapi.json lacks {method} {path}"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|ops| ops.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            ROUTES.len(),
            "openapi.json documents routes that are not served"
        );
    }
}
