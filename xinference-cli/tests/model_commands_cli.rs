//! End-to-end tests of the model commands of the real `xinference` binary against a server it
//! started itself (`xinference local`): `launch` (from a local folder, unknown models, the LLM
//! engine rules), `list` and `terminate`, `engine`, `cached`, and how a command fails when no
//! server answers. Tables are checked against tabulate's "simple" layout as Xinference prints them.

mod common;

use common::{block_on, free_port, minilm_dir, parse_simple_table, Sandbox, Server};
use std::time::Duration;

#[test]
fn launch_list_and_terminate_an_embedding_model_from_a_local_folder() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    let url = server.url.as_str();
    let minilm = minilm_dir();

    let empty = sandbox.run(&["list", "-e", url]);
    assert!(!empty.ok().contains("all-MiniLM-L6-v2"), "{}", empty.stdout);

    let launch = sandbox.run(&[
        "launch",
        "-n",
        "all-MiniLM-L6-v2",
        "-t",
        "embedding",
        "--model-path",
        minilm.to_str().unwrap(),
        "-e",
        url,
    ]);
    assert_eq!(
        launch.ok().lines().last(),
        Some("Model uid: all-MiniLM-L6-v2"),
        "{}",
        launch.stdout
    );

    // The launched model really serves.
    let embedding: serde_json::Value = block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/v1/embeddings"))
            .json(&serde_json::json!({"model": "all-MiniLM-L6-v2", "input": "hello"}))
            .send()
            .await
            .expect("POST /v1/embeddings")
            .json()
            .await
            .expect("JSON answer")
    });
    assert_eq!(
        embedding["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384),
        "{embedding}"
    );

    let list = sandbox.run(&["list", "-e", url]);
    let table = parse_simple_table(list.ok());
    assert_eq!(table.headers, ["UID", "Type", "Name", "Dimensions"]);
    assert_eq!(table.rows.len(), 1, "{}", list.stdout);
    let cells = ["all-MiniLM-L6-v2", "embedding", "all-MiniLM-L6-v2", "384"];
    assert_eq!(table.rows[0], cells);
    assert_eq!(table.right_aligned, [false, false, false, true]);
    assert_eq!(table.lines[0], table.render(&cells));

    // Launching the same uid twice is refused while it runs.
    let twice = sandbox.run(&[
        "launch",
        "-n",
        "all-MiniLM-L6-v2",
        "-t",
        "embedding",
        "--model-path",
        minilm.to_str().unwrap(),
        "-e",
        url,
    ]);
    assert!(
        twice.fails().contains("all-MiniLM-L6-v2"),
        "{}",
        twice.stderr
    );

    sandbox
        .run(&["terminate", "--model-uid", "all-MiniLM-L6-v2", "-e", url])
        .ok();
    let list = sandbox.run(&["list", "-e", url]);
    assert!(!list.ok().contains("all-MiniLM-L6-v2"), "{}", list.stdout);

    let again = sandbox.run(&["terminate", "--model-uid", "all-MiniLM-L6-v2", "-e", url]);
    let line = again.fails();
    assert!(
        line.contains("all-MiniLM-L6-v2") && line.contains("not found"),
        "{line}"
    );
}

#[test]
fn launch_errors_come_back_as_the_servers_message() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    let url = server.url.as_str();

    let unknown = sandbox.run(&[
        "launch",
        "-n",
        "no-such-model-xyz",
        "-t",
        "embedding",
        "-e",
        url,
    ]);
    let line = unknown.fails();
    assert!(
        line.contains("Model not found") && line.contains("no-such-model-xyz"),
        "{line}"
    );

    // Xinference requires an engine for LLMs.
    let no_engine = sandbox.run(&["launch", "-n", "qwen2.5-instruct", "-e", url]);
    let line = no_engine.fails();
    assert!(line.contains("model_engine"), "{line}");

    // `-en` is Xinference's spelling of --model-engine; an architecture this build cannot run
    // yet (ChatGLM3) must be said plainly (not a crash, not a parse error).
    for engine_flag in ["-en", "--model-engine"] {
        let run = sandbox.run(&[
            "launch",
            "-n",
            "chatglm3",
            engine_flag,
            "Transformers",
            "-e",
            url,
        ]);
        let line = run.fails();
        assert!(
            line.contains("chatglm3") && line.contains("cannot be run by this build yet"),
            "{engine_flag}: {line}"
        );
    }

    // A model path that does not exist is reported, and leaves nothing running.
    let missing = sandbox.root().join("nowhere");
    let run = sandbox.run(&[
        "launch",
        "-n",
        "all-MiniLM-L6-v2",
        "-t",
        "embedding",
        "--model-path",
        missing.to_str().unwrap(),
        "-e",
        url,
    ]);
    let line = run.fails();
    assert!(line.contains("nowhere"), "{line}");
    let list = sandbox.run(&["list", "-e", url]);
    assert!(!list.ok().contains("all-MiniLM-L6-v2"), "{}", list.stdout);
}

#[test]
fn engine_lists_what_can_run_a_model_and_explains_what_cannot() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    let url = server.url.as_str();

    let run = sandbox.run(&["engine", "-n", "all-MiniLM-L6-v2", "-e", url]);
    let table = parse_simple_table(run.ok());
    assert_eq!(
        table.headers,
        [
            "Name",
            "Engine",
            "Format",
            "Size (in billions)",
            "Quantization"
        ]
    );
    assert!(!table.rows.is_empty(), "{}", run.stdout);
    for row in &table.rows {
        assert_eq!(row[0], "all-MiniLM-L6-v2");
        assert_eq!(row[2], "pytorch");
        assert_eq!(row[4], "none");
    }
    let engines = table.values("Engine");
    assert!(engines.contains(&"sentence_transformers"), "{engines:?}");

    // Xinference's -en filter, matched case-insensitively.
    let run = sandbox.run(&[
        "engine",
        "-n",
        "all-MiniLM-L6-v2",
        "-en",
        "SENTENCE_TRANSFORMERS",
        "-e",
        url,
    ]);
    let table = parse_simple_table(run.ok());
    assert_eq!(table.values("Engine"), ["sentence_transformers"]);

    // Filters that match nothing are answered in words, as Xinference does.
    let run = sandbox.run(&[
        "engine",
        "-n",
        "all-MiniLM-L6-v2",
        "-q",
        "q4_k_m",
        "-e",
        url,
    ]);
    assert!(
        run.ok()
            .contains("does not support your provided params: --quantization q4_k_m"),
        "{}",
        run.stdout
    );

    let run = sandbox.run(&["engine", "-n", "chatglm3", "-e", url]);
    let out = run.ok();
    assert!(
        out.contains("No engine of this build can run chatglm3 yet"),
        "{out}"
    );
    assert!(out.contains("cannot be run by this build yet"), "{out}");
    assert!(out.contains("Transformers"), "{out}");

    let run = sandbox.run(&["engine", "-n", "no-such-model-xyz", "-e", url]);
    assert!(run.fails().contains("no-such-model-xyz"), "{}", run.stderr);
}

#[test]
fn cached_answers_with_an_empty_cache_and_with_an_entry() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    let url = server.url.as_str();

    // A launch from --model-path does not fill the cache.
    sandbox
        .run(&[
            "launch",
            "-n",
            "all-MiniLM-L6-v2",
            "-t",
            "embedding",
            "--model-path",
            minilm_dir().to_str().unwrap(),
            "-e",
            url,
        ])
        .ok();
    let run = sandbox.run(&["cached", "-e", url]);
    assert_eq!(run.ok().trim_end(), "There are no cache files.");

    // An entry as a download leaves it: the files plus the manifest that marks it complete.
    let entry = sandbox.home().join("cache/all-MiniLM-L6-v2");
    std::fs::create_dir_all(&entry).unwrap();
    let config = std::fs::read(minilm_dir().join("config.json")).unwrap();
    std::fs::write(entry.join("config.json"), &config).unwrap();
    std::fs::write(
        entry.join(".xinference-cache.json"),
        serde_json::json!({
            "model_name": "all-MiniLM-L6-v2",
            "model_type": "embedding",
            "model_format": "pytorch",
            "model_size_in_billions": null,
            "quantization": "none",
            "model_id": "sentence-transformers/all-MiniLM-L6-v2",
            "model_hub": "huggingface",
            "files": [{"name": "config.json", "size": config.len()}],
        })
        .to_string(),
    )
    .unwrap();
    let run = sandbox.run(&["cached", "-e", url]);
    let out = run.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "cached_model: ", "{out}");
    assert!(
        lines[1].starts_with("+-") && lines[1].ends_with("-+"),
        "{out}"
    );
    let header: Vec<&str> = lines[2].split('|').map(str::trim).collect();
    assert_eq!(
        header,
        [
            "",
            "model_name",
            "model_size_in_billions",
            "model_format",
            "quantization",
            "model_version",
            "path",
            "real_path",
            "actor_ip_address",
            ""
        ]
    );
    let row: Vec<&str> = lines[4].split('|').map(str::trim).collect();
    assert_eq!(
        &row[1..6],
        [
            "all-MiniLM-L6-v2",
            "-",
            "pytorch",
            "none",
            "all-MiniLM-L6-v2"
        ]
    );
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[1..]
        .iter()
        .all(|l| l.chars().count() == lines[1].chars().count()));

    let run = sandbox.run(&["cached", "-n", "bge-base-en", "-e", url]);
    assert_eq!(run.ok().trim_end(), "There are no cache files.");
}

#[test]
fn commands_fail_fast_when_no_server_answers() {
    let sandbox = Sandbox::new();
    let closed = format!("http://127.0.0.1:{}", free_port());
    for endpoint in ["http://127.0.0.1:1", closed.as_str()] {
        let run = sandbox.run(&["list", "-e", endpoint]);
        let line = run.fails();
        assert!(
            line.contains("cannot reach the server") && line.contains(endpoint),
            "{line}"
        );
        assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    }

    // XINFERENCE_ENDPOINT is the default endpoint.
    let mut command = sandbox.command(&["terminate", "--model-uid", "x"]);
    command.env("XINFERENCE_ENDPOINT", &closed);
    let output = command.output().expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&closed), "{stderr}");

    // Registrations with an explicit endpoint go to that server, not the local registry.
    let run = sandbox.run(&["registrations", "-t", "embedding", "-e", &closed]);
    assert!(run.fails().contains("cannot reach the server"));
}
