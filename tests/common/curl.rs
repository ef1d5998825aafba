//! curl as the browser: `curl --http2 -k -N -s -i URL` running, the response read as it
//! arrives, frame by frame, through the spec's parser ([`Parser`]).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use super::{header_in, skip_ticks, Event, Parser, PROMPTLY};

/// `curl --http2 -k -N -s -i URL` running, its stdout read on a thread; killed on drop.
pub struct Curl {
    child: Child,
    chunks: Receiver<Vec<u8>>,
    /// The response head as curl prints it (`-i`), status line included.
    pub head: String,
    /// The body, read as a browser would.
    pub parser: Parser,
}

impl Curl {
    /// Starts `curl` (the binary) on `url` with more curl arguments (`--max-time`, `-H`eaders),
    /// and waits (bounded) for the response head.
    pub fn open(curl: &Path, url: &str, args: &[&str]) -> Curl {
        let mut child = Command::new(curl)
            .args(["--http2", "-k", "-N", "-s", "-i"])
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start curl");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, chunks) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PROMPTLY;
        let mut received = Vec::new();
        let end = loop {
            if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match chunks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(_) => panic!(
                    "no response head from curl: {:?}",
                    String::from_utf8_lossy(&received)
                ),
            }
        };
        let mut parser = Parser::new();
        parser.push(&received[end..]);
        received.truncate(end);
        Curl {
            child,
            chunks,
            head: String::from_utf8(received).expect("an ASCII head"),
            parser,
        }
    }

    /// The status line, e.g. `HTTP/2 200`.
    pub fn status_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default().trim_end()
    }

    /// A response header's value (names compared without case), as curl printed it.
    pub fn header(&self, name: &str) -> Option<String> {
        header_in(&self.head, name)
    }

    /// The next event a browser would dispatch, within `within`; None if none arrives (or curl's
    /// output ends).
    pub fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Some(event);
            }
            let chunk = self
                .chunks
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?;
            self.parser.push(&chunk);
        }
    }

    /// The next event that is not a tick, within `within`.
    pub fn next_message(&mut self, within: Duration) -> Option<Event> {
        skip_ticks(within, |left| self.next_event(left))
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST url` through `curl` (the binary) over HTTP/2, with more curl arguments (the body, as
/// `-d` or `--data-binary`; `-H`eaders; `--http1.1`): (HTTP version, status, body).
pub fn post(curl: &Path, url: &str, args: &[&str]) -> (String, u16, String) {
    let output = Command::new(curl)
        .args(["--http2", "-k", "-s", "--max-time", "5"])
        .args(args)
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8(output.stdout).expect("UTF-8 answer");
    let (body, trailer) = text.rsplit_once('\n').expect("curl's -w line");
    let (version, code) = trailer.split_once(' ').expect("version and status");
    (
        version.to_string(),
        code.parse().unwrap_or(0),
        body.to_string(),
    )
}
