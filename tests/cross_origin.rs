//! Browser pages from other origins cannot use the server: no CORS headers unless the operator
//! allows an origin, and a cross-origin request that would change state is a 403 that reaches
//! no handler. SDKs and curl (no `Origin` header) and the server's own pages are unaffected.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use xinference::RuntimeConfig;

const EVIL: &str = "http://evil.example";

async fn launch(server: &TestServer, origin: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/models", server.url))
        .json(&json!({"model_name": "no-such-model", "model_type": "embedding"}));
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The launch handler answered (unknown model), not the origin check.
fn assert_reaches_handler((status, body): (u16, Value)) {
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("no-such-model"),
        "{body}"
    );
}

async fn preflight(server: &TestServer, origin: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/models", server.url),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn other_origins_are_refused_unless_allowed() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;

    let (status, body) = launch(&server, Some(EVIL)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--allowed-origins"),
        "{body}"
    );
    // The handler never ran: the same request without Origin reaches it (an unknown model is
    // Xinference's 400), and so does one from the server's own origin.
    assert_reaches_handler(launch(&server, None).await);
    assert_reaches_handler(launch(&server, Some(&server.url)).await);
    // Reads carry no CORS header, so a foreign page cannot read the answer.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/models", server.url))
        .header("Origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(preflight(&server, EVIL).await, None);
    server.stop().await;

    let mut config = RuntimeConfig::new(home.path());
    config.allowed_origins = vec!["http://localhost:3000".to_owned()];
    let server = TestServer::start_with(config).await;
    assert_reaches_handler(launch(&server, Some("http://localhost:3000")).await);
    assert_eq!(
        preflight(&server, "http://localhost:3000").await.as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(launch(&server, Some(EVIL)).await.0, 403);
    assert_eq!(preflight(&server, EVIL).await, None);
    server.stop().await;
}
