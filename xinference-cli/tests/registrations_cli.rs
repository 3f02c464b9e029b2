//! End-to-end tests of `xinference registrations`, `register` and `unregister`, run as the real
//! binary. They pin down Xinference's tables (tabulate "simple": padded headers, dashes, two-space
//! gaps, right-aligned numbers, Python reprs of lists and bools), the built-in catalogue every
//! type must list, that the offline listing equals the one served by `xinference local`, and the
//! life of a persisted custom model (file on disk, kept across restarts, removed by unregister).

mod common;

use common::{minilm_dir, parse_simple_table, Run, Sandbox, Server, Table};

/// `registrations -t TYPE` without a server: exit 0 and a well-formed table.
fn offline_table(sandbox: &Sandbox, model_type: &str) -> (Run, Table) {
    let run = sandbox.run(&["registrations", "-t", model_type]);
    let table = parse_simple_table(run.ok());
    (run, table)
}

/// Rows are sorted case-insensitively by name, and every name is unique.
fn assert_sorted_by_name(table: &Table) {
    let names = table.values("Name");
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(
        names, sorted,
        "rows must be sorted case-insensitively by name"
    );
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
}

/// Every built-in in `required` is listed, with `Type` = `model_type` and `Is-built-in` = True.
fn assert_builtins(table: &Table, model_type: &str, required: &[&str]) {
    for name in required {
        let row = table.row_where("Name", name);
        assert_eq!(row[table.column("Type")], model_type, "{name}");
        assert_eq!(row[table.column("Is-built-in")], "True", "{name}");
    }
    assert!(
        table.values("Type").iter().all(|t| *t == model_type),
        "every row has type {model_type}"
    );
    assert!(
        table.values("Is-built-in").iter().all(|b| *b == "True"),
        "a fresh home has only built-ins"
    );
}

/// Asserts the printed line of `name` is exactly `cells` laid out like tabulate.
fn assert_line(table: &Table, name: &str, cells: &[&str]) {
    assert_eq!(table.row_where("Name", name), cells, "cells of {name}");
    assert_eq!(
        table.line_where("Name", name),
        table.render(cells),
        "line of {name}"
    );
}

#[test]
fn llm_registrations_list_the_builtins_without_a_server() {
    let sandbox = Sandbox::new();
    let (run, table) = offline_table(&sandbox, "LLM");
    assert_eq!(
        table.headers,
        ["Type", "Name", "Language", "Ability", "Is-built-in"]
    );
    let header = run.stdout.lines().next().unwrap();
    assert!(header.starts_with("Type    Name  "), "{header:?}");
    assert_builtins(
        &table,
        "LLM",
        &[
            "baichuan",
            "baichuan-2",
            "baichuan-2-chat",
            "glm4-chat",
            "chatglm3",
            "qwen3",
            "qwen2.5-instruct",
            "qwen2.5-coder-instruct",
            "llama-3.1-instruct",
            "llama-3.2-instruct",
            "gemma-3-1b-it",
            "gemma-3-it",
            "phi-3-mini-4k-instruct",
            "phi-3-mini-128k-instruct",
            "smollm2-instruct",
        ],
    );
    assert_sorted_by_name(&table);
    assert_eq!(table.right_aligned, [false; 5], "no LLM column is numeric");
    assert_line(
        &table,
        "qwen2.5-instruct",
        &[
            "LLM",
            "qwen2.5-instruct",
            "['en', 'zh']",
            "['chat', 'tools']",
            "True",
        ],
    );
    // Languages and abilities are Python list reprs everywhere.
    for cell in table
        .values("Language")
        .iter()
        .chain(&table.values("Ability"))
    {
        assert!(
            cell.starts_with("['") && cell.ends_with("']"),
            "not a list repr: {cell}"
        );
    }
    assert!(run.stderr.is_empty(), "nothing on stderr: {}", run.stderr);
}

#[test]
fn embedding_registrations_right_align_dimensions() {
    let sandbox = Sandbox::new();
    let (_, table) = offline_table(&sandbox, "embedding");
    assert_eq!(
        table.headers,
        ["Type", "Name", "Language", "Dimensions", "Is-built-in"]
    );
    assert_builtins(
        &table,
        "embedding",
        &[
            "bge-base-en",
            "bge-base-en-v1.5",
            "bge-base-zh",
            "bge-small-en-v1.5",
            "bge-small-zh-v1.5",
            "all-MiniLM-L6-v2",
            "gte-base",
        ],
    );
    assert_sorted_by_name(&table);
    assert_eq!(
        table.right_aligned,
        [false, false, false, true, false],
        "only Dimensions is numeric (right-aligned, header included)"
    );
    assert_line(
        &table,
        "all-MiniLM-L6-v2",
        &["embedding", "all-MiniLM-L6-v2", "['en']", "384", "True"],
    );
    assert_eq!(table.row_where("Name", "bge-base-en-v1.5")[3], "768");
    assert_eq!(table.row_where("Name", "bge-small-zh-v1.5")[2], "['zh']");
}

#[test]
fn rerank_image_and_audio_registrations_have_their_columns() {
    let sandbox = Sandbox::new();

    let (_, rerank) = offline_table(&sandbox, "rerank");
    assert_eq!(rerank.headers, ["Type", "Name", "Language", "Is-built-in"]);
    assert_builtins(
        &rerank,
        "rerank",
        &[
            "bge-reranker-base",
            "bge-reranker-large",
            "bge-reranker-v2-m3",
            "ms-marco-MiniLM-L-6-v2",
        ],
    );
    assert_sorted_by_name(&rerank);
    assert_line(
        &rerank,
        "bge-reranker-base",
        &["rerank", "bge-reranker-base", "['en', 'zh']", "True"],
    );

    let (_, image) = offline_table(&sandbox, "image");
    assert_eq!(image.headers, ["Type", "Name", "Family", "Is-built-in"]);
    let sd = [
        "sd-turbo",
        "sdxl-turbo",
        "stable-diffusion-v1.5",
        "stable-diffusion-xl-base-1.0",
    ];
    assert_builtins(&image, "image", &sd);
    assert_sorted_by_name(&image);
    for name in sd {
        assert_line(&image, name, &["image", name, "stable_diffusion", "True"]);
    }

    let (_, audio) = offline_table(&sandbox, "audio");
    assert_eq!(
        audio.headers,
        ["Type", "Name", "Family", "Multilingual", "Is-built-in"]
    );
    let whisper = [
        ("whisper-tiny", "True"),
        ("whisper-tiny.en", "False"),
        ("whisper-base", "True"),
        ("whisper-base.en", "False"),
        ("whisper-medium", "True"),
        ("whisper-medium.en", "False"),
        ("whisper-large-v3", "True"),
    ];
    assert_builtins(&audio, "audio", &whisper.map(|(n, _)| n));
    assert_sorted_by_name(&audio);
    assert_eq!(audio.right_aligned, [false; 5], "bools are left-aligned");
    for (name, multilingual) in whisper {
        assert_line(
            &audio,
            name,
            &["audio", name, "whisper", multilingual, "True"],
        );
    }

    // No built-in flexible models: tabulate still prints the padded header and dashes.
    let (run, flexible) = offline_table(&sandbox, "flexible");
    assert_eq!(flexible.headers, ["Type", "Name", "Is-built-in"]);
    assert!(flexible.rows.is_empty());
    assert_eq!(
        run.stdout.trim_end(),
        "Type    Name    Is-built-in\n------  ------  -------------"
    );
}

#[test]
fn an_unknown_model_type_is_a_one_line_error() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["registrations", "-t", "nonsense"]);
    let line = run.fails();
    assert!(line.contains("nonsense"), "{line}");
    assert!(run.stdout.is_empty(), "no table: {}", run.stdout);
}

/// A version-2 embedding spec named `name` whose files are the local MiniLM folder.
fn custom_embedding_json(name: &str) -> String {
    serde_json::json!({
        "version": 2,
        "model_name": name,
        "dimensions": 384,
        "max_tokens": 256,
        "language": ["en"],
        "architectures": ["BertModel"],
        "model_specs": [{
            "model_format": "pytorch",
            "model_src": {"huggingface": {
                "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                "quantizations": ["none"],
                "model_uri": format!("file://{}", minilm_dir().display()),
            }},
        }],
    })
    .to_string()
}

#[test]
fn registrations_through_a_server_equal_the_offline_listing() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    for model_type in ["LLM", "embedding", "rerank", "image", "audio"] {
        let offline = sandbox.run(&["registrations", "-t", model_type]);
        let served = sandbox.run(&["registrations", "-t", model_type, "-e", &server.url]);
        assert_eq!(served.ok(), offline.ok(), "-t {model_type}");
    }
}

#[test]
fn a_persisted_custom_embedding_survives_restarts_until_unregistered() {
    let sandbox = Sandbox::new();
    let spec = sandbox.root().join("my-minilm.json");
    std::fs::write(&spec, custom_embedding_json("my-minilm")).unwrap();
    let spec = spec.to_str().unwrap();
    let persisted = sandbox.home().join("model/v2/embedding/my-minilm.json");

    let server = Server::start(&sandbox);
    sandbox
        .run(&[
            "register",
            "-t",
            "embedding",
            "-f",
            spec,
            "--persist",
            "-e",
            &server.url,
        ])
        .ok();
    assert!(
        persisted.is_file(),
        "{} was not written",
        persisted.display()
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&persisted).unwrap()).unwrap();
    assert_eq!(written["model_name"], "my-minilm");

    let listed = sandbox.run(&["registrations", "-t", "embedding", "-e", &server.url]);
    let table = parse_simple_table(listed.ok());
    assert_line(
        &table,
        "my-minilm",
        &["embedding", "my-minilm", "['en']", "384", "False"],
    );
    assert_eq!(table.row_where("Name", "all-MiniLM-L6-v2")[4], "True");
    // The offline listing reads the same home.
    assert_eq!(
        sandbox.run(&["registrations", "-t", "embedding"]).ok(),
        listed.stdout
    );

    // Registering the same name again is refused.
    let again = sandbox.run(&["register", "-t", "embedding", "-f", spec, "-e", &server.url]);
    assert!(again.fails().contains("my-minilm"), "{}", again.stderr);

    // The model_uri inside model_src is where the files are read from.
    let launch = sandbox.run(&[
        "launch",
        "-n",
        "my-minilm",
        "-t",
        "embedding",
        "-e",
        &server.url,
    ]);
    assert!(
        launch.ok().contains("Model uid: my-minilm"),
        "{}",
        launch.stdout
    );

    // A restart keeps the registration.
    drop(server);
    let server = Server::start(&sandbox);
    let table = parse_simple_table(
        sandbox
            .run(&["registrations", "-t", "embedding", "-e", &server.url])
            .ok(),
    );
    assert_eq!(table.row_where("Name", "my-minilm")[4], "False");

    sandbox
        .run(&[
            "unregister",
            "-t",
            "embedding",
            "-n",
            "my-minilm",
            "-e",
            &server.url,
        ])
        .ok();
    assert!(!persisted.exists(), "unregister must delete the file");
    let listed = sandbox.run(&["registrations", "-t", "embedding", "-e", &server.url]);
    assert!(!listed.ok().contains("my-minilm"), "{}", listed.stdout);
    let offline = sandbox.run(&["registrations", "-t", "embedding"]);
    assert!(!offline.ok().contains("my-minilm"), "{}", offline.stdout);

    // Unregistering it again is an error, not a silent success.
    let again = sandbox.run(&[
        "unregister",
        "-t",
        "embedding",
        "-n",
        "my-minilm",
        "-e",
        &server.url,
    ]);
    assert!(again.fails().contains("my-minilm"), "{}", again.stderr);

    // Without --persist the registration lives only as long as the server.
    sandbox
        .run(&["register", "-t", "embedding", "-f", spec, "-e", &server.url])
        .ok();
    assert!(!persisted.exists(), "not persisted without --persist");
    drop(server);
    let server = Server::start(&sandbox);
    let listed = sandbox.run(&["registrations", "-t", "embedding", "-e", &server.url]);
    assert!(!listed.ok().contains("my-minilm"), "{}", listed.stdout);
}

#[test]
fn bad_registrations_are_refused_with_one_clear_line() {
    let sandbox = Sandbox::new();
    let server = Server::start(&sandbox);
    let register = |file: &std::path::Path| {
        sandbox.run(&[
            "register",
            "-t",
            "embedding",
            "-f",
            file.to_str().unwrap(),
            "--persist",
            "-e",
            &server.url,
        ])
    };

    let broken = sandbox.root().join("broken.json");
    std::fs::write(&broken, "{\"version\": 2, \"model_name\": ").unwrap();
    let run = register(&broken);
    let line = run.fails();
    assert!(
        line.contains("broken.json") && line.contains("JSON"),
        "{line}"
    );

    let missing = sandbox.root().join("no-such-file.json");
    let line = register(&missing).fails().to_owned();
    assert!(line.contains("no-such-file.json"), "{line}");

    let incomplete = sandbox.root().join("incomplete.json");
    std::fs::write(
        &incomplete,
        r#"{"version": 2, "model_name": "no-specs", "dimensions": 384}"#,
    )
    .unwrap();
    let line = register(&incomplete).fails().to_owned();
    assert!(line.contains("model_specs"), "{line}");

    let shadow = sandbox.root().join("shadow.json");
    std::fs::write(&shadow, custom_embedding_json("bge-small-en-v1.5")).unwrap();
    let line = register(&shadow).fails().to_owned();
    assert!(
        line.contains("bge-small-en-v1.5") && line.contains("conflicts"),
        "{line}"
    );

    // Nothing was written, and the built-in is still the built-in.
    let dir = sandbox.home().join("model/v2/embedding");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "no spec files expected: {files:?}");
    let table = parse_simple_table(
        sandbox
            .run(&["registrations", "-t", "embedding", "-e", &server.url])
            .ok(),
    );
    assert_eq!(table.row_where("Name", "bge-small-en-v1.5")[4], "True");
    assert!(!table.values("Is-built-in").contains(&"False"));
}
