//! Access control from the command line: a non-loopback address without auth is refused
//! unless `--no-auth`; `login` saves a token that later commands send; `keys create / list /
//! revoke` manage API keys; `-ak` sends one.

mod common;

use common::{Sandbox, Server};

const CONFIG: &str = r#"{
  "auth_config": {"algorithm": "HS256", "secret_key": "cli-test-secret", "token_expire_in_minutes": 30},
  "user_config": [
    {"username": "admin", "password": "admin-pw", "permissions": ["admin"]},
    {"username": "viewer", "password": "viewer-pw", "permissions": ["models:list"]}
  ]
}"#;

#[test]
fn a_public_address_without_auth_is_refused_unless_no_auth() {
    let sandbox = Sandbox::new();
    let port = common::free_port().to_string();
    let run = sandbox.run(&["local", "-H", "0.0.0.0", "-p", &port]);
    let line = run.fails();
    assert!(
        line.contains("--no-auth") && line.contains("--auth-config"),
        "{line}"
    );
    // With --no-auth it serves, open.
    let mut child = sandbox
        .command(&["local", "-H", "0.0.0.0", "-p", &port, "--no-auth"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/cluster/auth");
    let mut answer = None;
    for _ in 0..600 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("`local -H 0.0.0.0 --no-auth` exited with {status}");
        }
        answer = common::block_on(async {
            let r = reqwest::get(&url).await.ok()?;
            r.json::<serde_json::Value>().await.ok()
        });
        if answer.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer, Some(serde_json::json!({"auth": false})));
}

#[test]
fn login_keys_and_api_key_option() {
    let sandbox = Sandbox::new();
    let config = sandbox.root().join("auth.json");
    std::fs::write(&config, CONFIG).unwrap();
    let server = Server::start_with(&sandbox, &["--auth-config", config.to_str().unwrap()]);
    let url = server.url.as_str();

    // No credential: the server says 401, the command one line.
    let line = sandbox.run(&["list", "-e", url]).fails().to_owned();
    assert!(line.contains("Not authenticated"), "{line}");
    assert!(sandbox
        .run(&["login", "-e", url, "-u", "admin", "-p", "wrong"])
        .fails()
        .contains("Incorrect username or password"));

    let out = sandbox.run(&["login", "-e", url, "-u", "admin", "-p", "admin-pw"]);
    assert!(out.ok().contains("Logged in"), "{}", out.stdout);
    // The saved token is used by the next commands.
    sandbox.run(&["list", "-e", url]).ok();
    let created = sandbox.run(&["keys", "create", "-e", url, "-n", "ci", "-s", "models:list"]);
    let key = created
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("the key is printed")
        .to_owned();
    assert!(key.starts_with("xf-") && key.len() == 51, "{key}");
    let id = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let listed = sandbox.run(&["keys", "list", "-e", url]);
    assert!(
        listed.ok().contains(&id) && !listed.stdout.contains(&key),
        "{}",
        listed.stdout
    );

    // A fresh home has no saved token: `-ak` alone authenticates.
    let other = Sandbox::new();
    other.run(&["list", "-e", url, "-ak", &key]).ok();
    sandbox.run(&["keys", "revoke", "-e", url, &id]).ok();
    let line = other
        .run(&["list", "-e", url, "-ak", &key])
        .fails()
        .to_owned();
    assert!(line.contains("revoked"), "{line}");
}
