//! The server process as an operator sees it: `GET /health`, request ids, and a graceful
//! shutdown on SIGTERM (what `docker stop` and Kubernetes send): a streaming chat in flight
//! runs to its end, and a request that would hold the server forever is cut after
//! `--shutdown-timeout`.

mod common;

use common::{block_on, launch_smollm2, Sandbox, Server};
use futures::StreamExt;
use std::io::Write;
use std::time::Duration;

#[test]
fn health_answers_and_every_response_carries_a_request_id() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    block_on(async {
        let http = reqwest::Client::new();
        let health = http
            .get(format!("{}/health", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let generated = health.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(generated.len(), 36, "a UUID: {generated}");

        // A client's own id is kept, on errors too.
        let missing = http
            .get(format!("{}/v1/models/nope", server.url))
            .header("x-request-id", "trace-me-42")
            .send()
            .await
            .unwrap();
        assert!(missing.status().is_client_error(), "{}", missing.status());
        assert_eq!(missing.headers()["x-request-id"], "trace-me-42");
    });
    assert!(
        server.log_text().contains("trace-me-42"),
        "the request's log lines carry its id:\n{}",
        server.log_text()
    );
}

#[test]
fn sigterm_lets_a_streaming_chat_finish_then_exits() {
    let sandbox = Sandbox::new();
    let mut server = Server::start(&sandbox);
    launch_smollm2(&sandbox, &server);

    let (text, finished) = block_on(async {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&serde_json::json!({
                "model": "smollm2-instruct",
                "messages": [{"role": "user", "content": "Write a long story about a fox."}],
                "max_tokens": 40,
                "stream": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut text = String::new();
        // The stream is running: now the operator stops the server.
        let first = body.next().await.expect("a first chunk").unwrap();
        text.push_str(&String::from_utf8_lossy(&first));
        server.terminate();
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(
                &chunk.expect("the stream is not cut"),
            ));
        }
        // No new connection is accepted once shutdown began.
        let refused = http
            .get(format!("{}/health", server.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        (text, refused.is_err())
    });
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "the in-flight stream ran to its end:\n{text}"
    );
    assert!(finished, "a new request after SIGTERM is refused");
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("the server exits after its last request");
    assert!(status.success(), "exit status {status}");
    assert!(
        server.log_text().contains("shut down"),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_request_still_running_after_the_shutdown_timeout_is_cut() {
    let sandbox = Sandbox::new();
    let mut server = Server::start_with(&sandbox, &["--shutdown-timeout", "1"]);
    // A client that never finishes sending its body keeps its request in flight forever.
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stalled,
        "POST /v1/embeddings HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"model\": "
    )
    .unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("the server exits although a request never ends");
    assert!(status.success(), "exit status {status}");
    let log = server.log_text();
    assert!(log.contains("cutting them"), "{log}");
}
