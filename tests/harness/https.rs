//! Local HTTP(S) apps for the smoke tests (`tests/local/https_apps.py`): a
//! "production" and a "staging" app over plain HTTP, and HTTPS servers with a
//! valid, an expiring, an expired, a wrong-host and a self-signed certificate
//! from a private CA generated at start. On 127.0.0.1, ports chosen at run time;
//! dropping the handle stops the launcher by PID, also when the test fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::workspace_root;

/// The running apps.
#[derive(Debug)]
pub struct HttpsApps {
    child: Child,
    /// Base URL of each app, by kind (`valid`, `expiring`, `expired`, `wrong-host`,
    /// `self-signed`, `production`, `staging`).
    pub urls: BTreeMap<String, String>,
    /// PEM of the private CA that signed every certificate but the self-signed one.
    pub ca_bundle: String,
    /// Where the launcher writes its files.
    pub dir: PathBuf,
}

impl HttpsApps {
    /// Starts the apps and waits until they listen.
    pub fn start() -> Self {
        let root = workspace_root();
        let dir = std::env::temp_dir().join(format!("understudy-https-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("create the apps' directory");
        let mut child = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tests/local/https_apps.py"))
            .arg("--dir")
            .arg(&dir)
            .arg("--exit-with-parent")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/local/https_apps.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = sender.send(line);
            }
        });
        let line = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the HTTPS apps did not report ready within 60 s");
            }
        };
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line `{line}`: {e}"));
        let urls = ready["urls"]
            .as_object()
            .expect("urls")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a URL").to_owned()))
            .collect();
        let ca_bundle =
            std::fs::read_to_string(ready["ca_bundle"].as_str().expect("ca_bundle")).expect("read the CA");
        Self { child, urls, ca_bundle, dir }
    }

    /// The base URL of app `kind`.
    pub fn url(&self, kind: &str) -> &str {
        self.urls.get(kind).unwrap_or_else(|| panic!("no app `{kind}`: {:?}", self.urls))
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Drop for HttpsApps {
    fn drop(&mut self) {
        crate::stack::stop(&mut self.child);
    }
}

/// A JSON POST to a plain-HTTP app with std only (the apps' control routes:
/// `/version`, `/flaky/reset`); answers the status.
pub fn post_json(url: &str, body: &Value) -> u16 {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let path = &url[url.find(&authority).unwrap() + authority.len()..];
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}
