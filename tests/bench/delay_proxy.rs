//! `delay-proxy`: a TCP proxy for `make bench-mirror` that adds a fixed delay to
//! every chunk in each direction (`--delay-ms` one way, so a request/response
//! exchange costs about twice that), as netem would; this machine's kernel has
//! no `sch_netem`. Every tool in the benchmark goes through it, with delay 0 for
//! the "no added latency" workload, so all pay the same proxy overhead.
//!
//! garage does not implement bucket tagging, so with `--bucket-tag key=value` the
//! proxy answers bucket-level `GET /<bucket>?tagging` itself with that one tag:
//! the mirror's guard rail (the target must carry the staging tag) then runs as
//! shipped. Every other request goes to the upstream server unchanged.
//!
//! Usage: delay-proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:3900
//!        [--delay-ms 10] [--bucket-tag understudy:environment=staging]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

struct Options {
    listen: String,
    upstream: String,
    delay: Duration,
    bucket_tag: Option<(String, String)>,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        listen: "127.0.0.1:0".into(),
        upstream: String::new(),
        delay: Duration::ZERO,
        bucket_tag: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => options.listen = value,
            "--upstream" => options.upstream = value,
            "--delay-ms" => {
                options.delay = Duration::from_millis(value.parse().expect("--delay-ms: milliseconds"))
            }
            "--bucket-tag" => {
                let (key, value) = value.split_once('=').expect("--bucket-tag key=value");
                options.bucket_tag = Some((key.to_owned(), value.to_owned()));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!options.upstream.is_empty(), "--upstream host:port is required");
    options
}

/// Writes each chunk to `stream` once its due time has come, in order.
fn delayed_writer(mut stream: TcpStream, chunks: mpsc::Receiver<(Instant, Vec<u8>)>) {
    for (due, chunk) in chunks {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Copies `from` into the delayed channel until EOF.
fn pump(mut from: TcpStream, to: mpsc::Sender<(Instant, Vec<u8>)>, delay: Duration) {
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 || to.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
}

enum State {
    Head,
    Body(usize),
    Raw,
}

/// Client → upstream, parsing HTTP/1.1 request framing only to answer bucket
/// tagging reads; anything it does not understand is passed through raw.
fn requests(
    mut client: TcpStream,
    upstream: mpsc::Sender<(Instant, Vec<u8>)>,
    to_client: mpsc::Sender<(Instant, Vec<u8>)>,
    delay: Duration,
    tagging: Option<Vec<u8>>,
) {
    let mut buffer = vec![0; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut state = if tagging.is_some() { State::Head } else { State::Raw };
    while let Ok(n) = client.read(&mut buffer) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buffer[..n]);
        let due = Instant::now() + delay;
        loop {
            match state {
                State::Raw => {
                    if !pending.is_empty() && upstream.send((due, std::mem::take(&mut pending))).is_err() {
                        return;
                    }
                    break;
                }
                State::Body(left) => {
                    let take = left.min(pending.len());
                    if take == 0 {
                        break;
                    }
                    let chunk: Vec<u8> = pending.drain(..take).collect();
                    if upstream.send((due, chunk)).is_err() {
                        return;
                    }
                    state = if left == take { State::Head } else { State::Body(left - take) };
                }
                State::Head => {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else { break };
                    let head: Vec<u8> = pending.drain(..end + 4).collect();
                    let text = String::from_utf8_lossy(&head).to_string();
                    let mut lines = text.split("\r\n");
                    let request_line = lines.next().unwrap_or_default();
                    let mut content_length = 0;
                    let mut chunked = false;
                    for line in lines {
                        if let Some((name, value)) = line.split_once(':') {
                            let name = name.trim().to_ascii_lowercase();
                            if name == "content-length" {
                                content_length = value.trim().parse().unwrap_or(0);
                            } else if name == "transfer-encoding"
                                && value.to_ascii_lowercase().contains("chunked")
                            {
                                chunked = true;
                            }
                        }
                    }
                    if is_bucket_tagging_get(request_line) {
                        if let Some(answer) = &tagging {
                            if to_client.send((due, answer.clone())).is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    if upstream.send((due, head)).is_err() {
                        return;
                    }
                    state = if chunked {
                        State::Raw
                    } else if content_length > 0 {
                        State::Body(content_length)
                    } else {
                        State::Head
                    };
                }
            }
        }
    }
}

fn is_bucket_tagging_get(request_line: &str) -> bool {
    let mut parts = request_line.split(' ');
    let (Some("GET"), Some(target)) = (parts.next(), parts.next()) else { return false };
    let Some((path, query)) = target.split_once('?') else { return false };
    let bucket_level = path.trim_matches('/').split('/').count() == 1 && !path.trim_matches('/').is_empty();
    bucket_level && query.split('&').any(|p| p == "tagging" || p == "tagging=")
}

fn tagging_answer(key: &str, value: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet><Tag><Key>{key}</Key>\
         <Value>{value}</Value></Tag></TagSet></Tagging>"
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn main() {
    let options = options();
    let listener = TcpListener::bind(&options.listen).expect("bind --listen");
    println!("listening {}", listener.local_addr().unwrap());
    let tagging = options.bucket_tag.as_ref().map(|(k, v)| tagging_answer(k, v));
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(upstream) = TcpStream::connect(&options.upstream) else { continue };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (to_upstream, upstream_chunks) = mpsc::channel();
        let (to_client, client_chunks) = mpsc::channel();
        let delay = options.delay;
        let (client_write, upstream_write) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        thread::spawn(move || delayed_writer(upstream_write, upstream_chunks));
        thread::spawn(move || delayed_writer(client_write, client_chunks));
        let from_upstream = to_client.clone();
        thread::spawn(move || pump(upstream, from_upstream, delay));
        let tagging = tagging.clone();
        thread::spawn(move || requests(client, to_upstream, to_client, delay, tagging));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bucket_level_tagging_reads_are_answered() {
        assert!(is_bucket_tagging_get("GET /staging-assets?tagging HTTP/1.1"));
        assert!(is_bucket_tagging_get("GET /b/?tagging= HTTP/1.1"));
        assert!(!is_bucket_tagging_get("GET /b/key?tagging HTTP/1.1"));
        assert!(!is_bucket_tagging_get("PUT /b?tagging HTTP/1.1"));
        assert!(!is_bucket_tagging_get("GET /b?list-type=2 HTTP/1.1"));
    }
}
