//! Helpers shared by the end-to-end tests of the `xinference` binary: a sandboxed
//! `XINFERENCE_HOME`, running the binary with a time limit, a server child process that is
//! killed when dropped, and a parser for tabulate's "simple" tables.

#![allow(dead_code)] // each test file uses a different subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_xinference");

/// How long one CLI command may take before the test fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(180);

/// A temporary folder holding `XINFERENCE_HOME` and the server logs; removed when dropped.
pub struct Sandbox {
    dir: tempfile::TempDir,
    hub: Option<String>,
}

impl Sandbox {
    /// A fresh, empty sandbox.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        std::fs::create_dir_all(dir.path().join("home")).expect("create XINFERENCE_HOME");
        Sandbox { dir, hub: None }
    }

    /// This sandbox with the processes it starts downloading from the hub at `url`
    /// (`HF_ENDPOINT`, and no `HF_HUB_OFFLINE`).
    pub fn with_hub(mut self, url: &str) -> Self {
        self.hub = Some(url.to_owned());
        self
    }

    /// The `XINFERENCE_HOME` of every process started in this sandbox.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The sandbox root (outside `XINFERENCE_HOME`), for test files and logs.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A command for the binary with this sandbox's environment: its own `XINFERENCE_HOME`,
    /// no `XINFERENCE_ENDPOINT`, and no network access to the hub.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("XINFERENCE_HOME", self.home())
            .env_remove("XINFERENCE_ENDPOINT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        match &self.hub {
            Some(url) => {
                c.env("HF_ENDPOINT", url).env_remove("HF_HUB_OFFLINE");
                // The hub client honours *_PROXY but not NO_PROXY: a proxy would swallow it.
                for proxy in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"] {
                    c.env_remove(proxy);
                }
            }
            None => {
                c.env("HF_HUB_OFFLINE", "1");
            }
        }
        c
    }

    /// Runs the binary to completion (failing the test if it takes longer than a few minutes).
    pub fn run(&self, args: &[&str]) -> Run {
        run_command(self.command(args), args)
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Run {
    /// The arguments, for messages.
    pub args: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Run {
    /// Asserts exit status 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "`xinference {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Asserts a non-zero exit with exactly one non-empty line on stderr, and returns that line.
    pub fn fails(&self) -> &str {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "`xinference {}` should exit non-zero (not crash), got {}:\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "`xinference {}` should explain the failure in one line on stderr, got:\n{}",
            self.args,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "`xinference {}` panicked:\n{}",
            self.args,
            self.stderr
        );
        lines[0]
    }
}

fn run_command(mut command: Command, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the xinference binary");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`xinference {}` did not finish within {COMMAND_LIMIT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        args: args.join(" "),
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A current-thread runtime for the few HTTP calls the tests make themselves.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// `xinference local` running as a child process; killed (and reaped) when dropped, so a
/// failing test never leaves a server behind.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
}

impl Server {
    /// Starts a server on a free port with the sandbox's `XINFERENCE_HOME` and waits until
    /// `GET /status` answers.
    pub fn start(sandbox: &Sandbox) -> Server {
        Server::start_with(sandbox, &[])
    }

    /// [`Server::start`] with more arguments for `xinference local`.
    pub fn start_with(sandbox: &Sandbox, extra: &[&str]) -> Server {
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = sandbox.root().join(format!("server-{port}.log"));
            let file = std::fs::File::create(&log).expect("create the server log");
            let port_arg = port.to_string();
            let mut args = vec!["local", "-H", "127.0.0.1", "-p", &port_arg];
            args.extend_from_slice(extra);
            let child = sandbox
                .command(&args)
                .stdout(file.try_clone().expect("clone the log handle"))
                .stderr(file)
                .spawn()
                .expect("start `xinference local`");
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                // Most likely someone took the port in between: try another one.
                Err(log) => last_log = log,
            }
        }
        panic!("`xinference local` did not start; its last log:\n{last_log}");
    }

    /// Waits for `GET /status`; on failure returns the server log.
    fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("{}/status", self.url);
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", self.log_text()));
            }
            let answered = block_on(async {
                match http.get(&url).send().await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                }
            });
            if answered {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "no answer from {url} in 60 s:\n{}",
            self.log_text()
        ))
    }

    /// Sends SIGTERM, as `docker stop` and Kubernetes do.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the process with SIGKILL (`kill -9`: no handler runs, nothing is flushed or
    /// cleaned up) and reaps it.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9 the server");
        self.child.wait().expect("reap the server");
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The all-MiniLM-L6-v2 folder that `scripts/fetch-test-models.py` puts in place. Panics
/// (never skips) when it is missing.
pub fn minilm_dir() -> PathBuf {
    let root = match std::env::var_os("XINFERENCE_TEST_MODELS").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/xinference-rs/test-models"),
    };
    let dir = root.join("all-MiniLM-L6-v2");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(
            dir.join(file).is_file(),
            "the test model {} is missing ({file} not found); fix: run \
             `python3 scripts/fetch-test-models.py minilm`",
            dir.display()
        );
    }
    dir
}

/// A table in tabulate's "simple" format, cut into cells by its line of dashes.
#[derive(Debug)]
pub struct Table {
    /// Header cells.
    pub headers: Vec<String>,
    /// Column widths (the dash runs).
    pub widths: Vec<usize>,
    /// Data rows, cells trimmed.
    pub rows: Vec<Vec<String>>,
    /// Per column: every non-empty cell (and the header) sits against the right edge.
    pub right_aligned: Vec<bool>,
    /// The data lines as printed.
    pub lines: Vec<String>,
}

impl Table {
    /// The index of a column, by header.
    pub fn column(&self, header: &str) -> usize {
        self.headers
            .iter()
            .position(|h| h == header)
            .unwrap_or_else(|| panic!("no column {header} in {:?}", self.headers))
    }

    /// The row whose column `header` is `value`.
    pub fn row_where(&self, header: &str, value: &str) -> &[String] {
        let c = self.column(header);
        self.rows.iter().find(|r| r[c] == value).unwrap_or_else(|| {
            panic!(
                "no row with {header} = {value} in:\n{}",
                self.lines.join("\n")
            )
        })
    }

    /// The printed line of the row whose column `header` is `value`.
    pub fn line_where(&self, header: &str, value: &str) -> &str {
        let c = self.column(header);
        let i = self
            .rows
            .iter()
            .position(|r| r[c] == value)
            .unwrap_or_else(|| panic!("no row with {header} = {value}"));
        &self.lines[i]
    }

    /// The cells of one column.
    pub fn values(&self, header: &str) -> Vec<&str> {
        let c = self.column(header);
        self.rows.iter().map(|r| r[c].as_str()).collect()
    }

    /// How tabulate would print `cells` in this table: each cell padded to its column (right
    /// for numeric columns), two spaces between columns, trailing spaces stripped.
    pub fn render(&self, cells: &[&str]) -> String {
        cells
            .iter()
            .zip(&self.widths)
            .zip(&self.right_aligned)
            .map(|((cell, w), right)| {
                if *right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    }
}

/// Parses the first "simple" table in `text` (header, dashes, rows up to a blank line or the
/// end) and checks tabulate's layout rules on the way: the second line is only dash runs
/// separated by two spaces, every column is exactly max(header + 2, widest cell) wide, cells
/// never run into the two-space gaps, and no line ends with a space.
pub fn parse_simple_table(text: &str) -> Table {
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table in:\n{text}"));
    let dashes = lines
        .next()
        .unwrap_or_else(|| panic!("no dash line in:\n{text}"));
    assert!(
        !dashes.is_empty() && dashes.chars().all(|c| c == '-' || c == ' '),
        "the second line must hold only dashes and spaces, got {dashes:?}"
    );
    let runs: Vec<&str> = dashes.split("  ").collect();
    assert!(
        runs.iter()
            .all(|r| !r.is_empty() && r.chars().all(|c| c == '-')),
        "dash runs must be separated by exactly two spaces: {dashes:?}"
    );
    let widths: Vec<usize> = runs.iter().map(|r| r.len()).collect();
    let mut starts = Vec::new();
    let mut at = 0;
    for w in &widths {
        starts.push(at);
        at += w + 2;
    }
    let total = at - 2;
    let cut = |line: &str| -> Vec<String> {
        assert!(
            !line.ends_with(' '),
            "tabulate strips trailing spaces, but this line has some: {line:?}"
        );
        let chars: Vec<char> = line.chars().collect();
        assert!(
            chars.len() <= total,
            "line is wider than the dash line:\n{line}\n{dashes}"
        );
        let mut padded = chars.clone();
        padded.resize(total, ' ');
        starts
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (s, w))| {
                if i > 0 {
                    assert_eq!(
                        &padded[s - 2..*s],
                        &[' ', ' '],
                        "columns must be separated by two spaces: {line:?}"
                    );
                }
                padded[*s..s + w].iter().collect::<String>()
            })
            .collect()
    };
    let header_slices = cut(header);
    let mut row_slices = Vec::new();
    let mut data_lines = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        row_slices.push(cut(line));
        data_lines.push(line.to_owned());
    }
    let headers: Vec<String> = header_slices.iter().map(|s| s.trim().to_owned()).collect();
    let rows: Vec<Vec<String>> = row_slices
        .iter()
        .map(|r| r.iter().map(|s| s.trim().to_owned()).collect())
        .collect();
    for (i, w) in widths.iter().enumerate() {
        let widest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        assert_eq!(
            *w,
            widest.max(headers[i].chars().count() + 2),
            "column {:?} must be max(header + 2, widest cell) wide, as tabulate pads it",
            headers[i]
        );
    }
    let right_aligned = (0..widths.len())
        .map(|i| {
            !rows.is_empty()
                && std::iter::once(&header_slices[i])
                    .chain(row_slices.iter().map(|r| &r[i]))
                    .all(|s| !s.ends_with(' '))
        })
        .collect();
    Table {
        headers,
        widths,
        rows,
        right_aligned,
        lines: data_lines,
    }
}

/// The SmolLM2-135M GGUF that `scripts/fetch-test-models.py smollm2` puts in place. Panics
/// (never skips) when it is missing.
pub fn smollm2_gguf() -> PathBuf {
    let root = match std::env::var_os("XINFERENCE_TEST_MODELS").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/xinference-rs/test-models"),
    };
    let file = root.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        file.is_file(),
        "the test model {} is missing; fix: run `python3 scripts/fetch-test-models.py smollm2`",
        file.display()
    );
    file
}

/// `xinference launch` of the SmolLM2 GGUF as `smollm2-instruct` on `server`; its stdout.
pub fn launch_smollm2(sandbox: &Sandbox, server: &Server) -> String {
    let gguf = smollm2_gguf().display().to_string();
    sandbox
        .run(&[
            "launch",
            "-n",
            "smollm2-instruct",
            "-en",
            "llama.cpp",
            "-f",
            "ggufv2",
            "-s",
            "0_135",
            "-q",
            "Q4_1",
            "--model-path",
            &gguf,
            "-e",
            &server.url,
        ])
        .ok()
        .to_owned()
}
