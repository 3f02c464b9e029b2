//! `xinference chat` and `xinference generate` against a real server and the real SmolLM2 GGUF:
//! a launch with `-en llama.cpp`, an interactive conversation typed on stdin (streamed by
//! default, and with `--stream false`), and an empty line to leave.

mod common;

use common::{launch_smollm2, Sandbox, Server};
use std::io::Write;
use std::process::Stdio;

fn converse(sandbox: &Sandbox, args: &[&str], input: &str) -> String {
    let mut child = sandbox
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn chat_and_generate_repls_talk_to_a_running_llm() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    let launched = launch_smollm2(&sandbox, &server);
    assert!(
        launched.contains("Model uid: smollm2-instruct"),
        "{launched}"
    );

    let out = converse(
        &sandbox,
        &[
            "chat",
            "--model-uid",
            "smollm2-instruct",
            "--max_tokens",
            "12",
            "-e",
            &server.url,
        ],
        "What is the capital of France?\nAnd of Italy?\n\n",
    );
    assert_eq!(
        out.matches("User: ").count(),
        3,
        "two turns, then the empty line: {out}"
    );
    let answers: Vec<&str> = out.split("Assistant: ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert!(
        answers.iter().all(|a| a
            .trim()
            .split("User:")
            .next()
            .is_some_and(|t| !t.trim().is_empty())),
        "empty answer: {out}"
    );

    let out = converse(
        &sandbox,
        &[
            "chat",
            "--model-uid",
            "smollm2-instruct",
            "--max_tokens",
            "8",
            "--stream",
            "false",
            "-e",
            &server.url,
        ],
        "Hi\n",
    );
    assert!(
        out.contains("Assistant: ")
            && out
                .split("Assistant: ")
                .nth(1)
                .is_some_and(|a| !a.trim().is_empty()),
        "{out}"
    );

    let out = converse(
        &sandbox,
        &[
            "generate",
            "--model-uid",
            "smollm2-instruct",
            "--max_tokens",
            "8",
            "-e",
            &server.url,
        ],
        "Once upon a time\n\n",
    );
    assert!(
        out.starts_with("Prompt: ") && out.len() > "Prompt: Prompt: ".len(),
        "{out}"
    );

    let err = sandbox
        .run(&["chat", "--model-uid", "nope", "-e", &server.url])
        .fails()
        .to_owned();
    assert!(err.contains("nope"), "{err}");
}
