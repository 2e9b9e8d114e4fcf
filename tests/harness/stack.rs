//! Starting and stopping the local stack.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::workspace_root;

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Status polls for which transitional states (`creating`, ...) are held.
    pub slow_polls: u32,
    /// Extra environment for the launcher, passed on to the functions
    /// (e.g. `UNDERSTUDY_INJECT_PANIC`).
    pub env: Vec<(String, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self { slow_polls: 2, env: Vec::new() }
    }
}

/// A running local stack. Dropping it stops it (SIGTERM to its PID, which stops
/// the function processes too).
#[derive(Debug)]
pub struct LocalStack {
    child: Child,
    /// moto's endpoint, e.g. `http://127.0.0.1:43121`.
    pub moto_endpoint: String,
    /// The Lambda Invoke API host's endpoint.
    pub invoke_endpoint: String,
    /// Where the functions' logs go (one file per function).
    pub log_dir: PathBuf,
}

impl LocalStack {
    /// Starts a stack with the default options.
    pub fn start() -> Self {
        Self::start_with(StackOptions::default())
    }

    /// Starts a stack and waits until it is ready.
    pub fn start_with(options: StackOptions) -> Self {
        let root = workspace_root();
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run `make venv` (make test does)", python.display());
        let bin_dir = binaries_dir();
        for function in function_names() {
            let binary = bin_dir.join(&function);
            assert!(
                binary.exists(),
                "{} is missing: run `cargo build --workspace --bins` (make test does)",
                binary.display()
            );
        }
        let mut command = Command::new(python);
        command
            .current_dir(&root)
            .arg("tests/local/stack.py")
            .arg("--bin-dir")
            .arg(&bin_dir)
            .args(["--functions-dir", "functions", "--template", "infra/template.yaml"])
            .args(["--slow-polls", &options.slow_polls.to_string()])
            .arg("--exit-with-parent")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start tests/local/stack.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut exports = Vec::new();
        loop {
            match receiver.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("# understudy local stack ready") => break,
                Ok(line) => {
                    if let Some((name, value)) = line.strip_prefix("export ").and_then(|l| l.split_once('='))
                    {
                        exports.push((name.to_owned(), value.to_owned()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the local stack did not report ready within 60 s (exports so far: {exports:?})");
                }
            }
        }
        let get = |name: &str| {
            exports
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("the stack did not print {name}"))
        };
        Self {
            moto_endpoint: get("UNDERSTUDY_MOTO_ENDPOINT"),
            invoke_endpoint: get("UNDERSTUDY_INVOKE_ENDPOINT"),
            log_dir: PathBuf::from(get("UNDERSTUDY_LOG_DIR")),
            child,
        }
    }

    /// The launcher's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A function's log so far (for failure messages).
    pub fn function_log(&self, function: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{function}.log"))).unwrap_or_default()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a launched server by PID: SIGTERM, up to 5 s to end, then SIGKILL.
pub fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Where cargo put the function binaries: the directory of the running test or
/// demo binary (`target/debug`, or its parent for `target/debug/deps`).
pub fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe has a directory");
    if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Every function in `functions/`.
pub fn function_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace_root().join("functions"))
        .expect("read functions/")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
