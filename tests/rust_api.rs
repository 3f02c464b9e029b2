//! The typed Rust API end to end, against the real SmolLM2 GGUF: `launch_llm` with the typed
//! builder (no engine: chosen from the `.gguf` path), typed chat messages, typed descriptions,
//! error kinds that are the same in process and over HTTP, percent-encoded uids in remote
//! URLs, and a dropped in-process stream that frees the model's one slot.

mod common;

use common::{smollm2_gguf, TestServer};
use futures::StreamExt;
use std::time::Duration;
use xinference::{
    ChatCompletionRequest, ChatMessage, Client, ErrorKind, LaunchRequest, LlmModel, ModelType,
};

/// SmolLM2 as a typed launch request served under `uid`.
fn smollm2(uid: &str) -> LaunchRequest {
    LaunchRequest::llm("smollm2-instruct")
        .model_uid(uid)
        .model_path(smollm2_gguf().display().to_string())
        .quantization("Q4_1")
        .model_size_in_billions("0_135")
}

/// A short greedy chat built from typed messages.
fn greedy(question: &str) -> ChatCompletionRequest {
    ChatCompletionRequest::new([
        ChatMessage::system("You are a helpful assistant."),
        ChatMessage::user(question),
    ])
    .temperature(0.0)
    .max_tokens(12)
}

async fn answer(llm: &LlmModel, question: &str) -> String {
    let answer = llm.chat(greedy(question)).await.expect("chat answers");
    assert!(answer.usage.completion_tokens > 0, "{answer:?}");
    let text = answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default();
    assert!(!text.trim().is_empty(), "{answer:?}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typed_launch_chat_descriptions_and_errors_in_process_and_over_http() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start(home.path()).await;
    let local = Client::local(server.runtime.clone());
    let remote = Client::remote(&server.url, None).unwrap();

    // In process: the handle comes straight from the launch.
    let llm = local
        .launch_llm(smollm2("smol").n_parallel(2))
        .await
        .unwrap();
    assert_eq!(llm.uid(), "smol");
    // Over HTTP, the same builder launches a second copy.
    let remote_llm = remote
        .launch_llm(smollm2("smol-remote").replica(1))
        .await
        .unwrap();
    assert_eq!(remote_llm.uid(), "smol-remote");

    // Greedy answers of the same model to the same typed messages agree, in process and over
    // HTTP (and across the two copies).
    let question = "What is the capital of France?";
    let here = answer(&llm, question).await;
    let there = answer(&remote_llm, question).await;
    assert_eq!(here, there);
    let remote_view = remote.get_model("smol").await.unwrap().into_llm().unwrap();
    assert_eq!(answer(&remote_view, question).await, here);

    // A streamed answer is a futures::Stream whose deltas add up to the whole answer.
    let mut stream = remote_llm
        .chat_stream(greedy(question))
        .await
        .expect("stream starts");
    let mut streamed = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.unwrap().choices {
            streamed.push_str(&choice.delta.content.unwrap_or_default());
        }
    }
    assert_eq!(streamed, here);

    // Descriptions are typed, the same from both clients, with the engine chosen from the
    // `.gguf` path.
    let described = local.describe_model("smol").await.unwrap();
    assert_eq!(described.model_type, ModelType::Llm);
    assert_eq!(described.model_name, "smollm2-instruct");
    assert_eq!(described.model_engine.as_deref(), Some("llama.cpp"));
    assert_eq!(described.model_format.as_deref(), Some("ggufv2"));
    assert!(described.has_ability("chat"), "{described:?}");
    assert!(described.extra.contains_key("context_length"));
    assert_eq!(remote.describe_model("smol").await.unwrap(), described);
    let listed = remote.list_models().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed["smol"], described);

    // The same error kinds from both clients.
    for client in [&local, &remote] {
        let missing = client.get_model("no-such-model").await.err().unwrap();
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
        let unknown = client
            .launch_llm(LaunchRequest::llm("no-such-family"))
            .await
            .err()
            .unwrap();
        assert_eq!(unknown.kind(), ErrorKind::BadRequest, "{unknown}");
        let taken = client.launch_llm(smollm2("smol")).await.err().unwrap();
        assert_eq!(taken.kind(), ErrorKind::BadRequest, "{taken}");
        let wrong_type = client
            .launch_embedding(smollm2("x").model_type(ModelType::Llm))
            .await
            .err()
            .unwrap();
        assert_eq!(wrong_type.kind(), ErrorKind::BadRequest, "{wrong_type}");
        let too_hot = client
            .get_model("smol")
            .await
            .unwrap()
            .into_llm()
            .unwrap()
            .chat(greedy(question).temperature(7.0))
            .await
            .err()
            .unwrap();
        assert_eq!(too_hot.kind(), ErrorKind::BadRequest, "{too_hot}");
        let not_embedding = client
            .get_model("smol")
            .await
            .unwrap()
            .into_embedding()
            .err()
            .unwrap();
        assert_eq!(not_embedding.kind(), ErrorKind::BadRequest);
    }

    // Uids travel percent-encoded: one with a space and a slash reaches the uid routes as
    // itself (a 404 naming it) instead of another route (`x/progress`) or a broken URL.
    for uid in ["no such/model", "smol/progress", "a?b#c"] {
        let e = remote.describe_model(uid).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{uid}: {e}");
        assert!(e.message().contains(uid), "{uid}: {e}");
        // Terminating an unknown uid is a 400, as in Xinference.
        let e = remote.terminate_model(uid).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::BadRequest, "{uid}: {e}");
        assert!(e.message().contains(uid), "{uid}: {e}");
    }

    remote.terminate_model("smol-remote").await.unwrap();
    local.terminate_model("smol").await.unwrap();
    let gone = remote.get_model("smol").await.err().unwrap();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_an_in_process_stream_frees_the_model() {
    let home = tempfile::tempdir().unwrap();
    let client = Client::local(std::sync::Arc::new(
        xinference::Runtime::new(xinference::RuntimeConfig::new(home.path())).unwrap(),
    ));
    // One slot and one request in flight at most: while the long answer runs, any other
    // request is refused at once.
    let llm = client
        .launch_llm(smollm2("smol-one").n_parallel(1).request_limits(1))
        .await
        .unwrap();
    let long = ChatCompletionRequest::new([ChatMessage::user(
        "Count from 1 to 5000, separated by commas.",
    )])
    .temperature(0.0)
    .max_tokens(4000);
    let mut stream = llm.chat_stream(long).await.unwrap();
    let mut received = 0;
    while received < 3 {
        let chunk = stream.next().await.expect("more chunks").unwrap();
        received += chunk.choices.len();
    }
    let refused = llm.chat(greedy("Hi")).await.err().unwrap();
    assert_eq!(refused.kind(), ErrorKind::Overloaded, "{refused}");

    // Dropping the stream ends the generation at its next token, and the slot is free again
    // (the 4000-token answer would take minutes). A refusal can only come from the few
    // milliseconds before the worker sees the drop.
    drop(stream);
    let mut served = None;
    for _ in 0..100 {
        match llm.chat(greedy("Hi")).await {
            Ok(answer) => {
                served = Some(answer);
                break;
            }
            Err(e) if e.kind() == ErrorKind::Overloaded => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let served = served.expect("the model serves again after the stream is dropped");
    assert!(served.usage.completion_tokens > 0);
    client.terminate_model("smol-one").await.unwrap();
}
