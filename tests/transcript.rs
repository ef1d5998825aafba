//! The annotated wire transcript in README.md is recorded from a real session, not typed by hand:
//! this test plays the session against a real server, writes down every byte each side sent, and
//! fails if the README's copy differs (timestamps masked, `#` annotation lines skipped).
//!
//! After a deliberate change to the wire, run `cargo test --test transcript -- --nocapture`
//! and paste the printed transcript into the README, keeping the `#` notes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{TestServer, PROMPTLY};

const START: &str = "<!-- transcript:start -->";
const END: &str = "<!-- transcript:end -->";

/// The bytes of one session, as `> ` (sent by the client) and `< ` (received) lines.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    /// Records `bytes` one wire line per transcript line, with `\r` and `\n` written out.
    fn record(&mut self, prefix: &str, bytes: &[u8]) {
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 on the wire");
        for line in text.split_inclusive('\n') {
            let shown = line.replace('\r', "\\r").replace('\n', "\\n");
            self.lines.push(format!("{prefix} {}", mask(&shown)));
        }
    }

    /// Sends `request` on `stream` and records it.
    fn send(&mut self, stream: &mut TcpStream, request: &str) {
        stream.write_all(request.as_bytes()).unwrap();
        self.record(">", request.as_bytes());
    }

    /// Reads until the received bytes end with `until` (`count` times in total), records them.
    fn receive(&mut self, stream: &mut TcpStream, until: &str, count: usize) {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while String::from_utf8_lossy(&got).matches(until).count() < count {
            match stream.read(&mut byte) {
                Ok(1) => got.push(byte[0]),
                other => panic!(
                    "stream ended early ({other:?}): {:?}",
                    String::from_utf8_lossy(&got)
                ),
            }
        }
        self.record("<", &got);
    }

    /// Receives a whole response to a non-streaming request (the server closes after it).
    fn receive_to_close(&mut self, stream: &mut TcpStream) {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        self.record("<", &got);
    }

    fn note(&mut self, text: &str) {
        self.lines.push(format!("# {text}"));
    }
}

/// Masks what changes from run to run: the `Date` header's value, and timestamps.
fn mask(line: &str) -> String {
    match line.strip_prefix("Date: ") {
        Some(_) => "Date: <date>\\r\\n".to_string(),
        None => mask_times(line),
    }
}

/// Replaces RFC 3339 timestamps (`2026-11-23T16:39:35.001Z`) with `<time>`.
fn mask_times(line: &str) -> String {
    let bytes = line.as_bytes();
    let is_time = |s: &[u8]| {
        s.len() == 24
            && s.iter().enumerate().all(|(i, &b)| match i {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'.',
                23 => b == b'Z',
                _ => b.is_ascii_digit(),
            })
    };
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 24 <= bytes.len() && is_time(&bytes[i..i + 24]) {
            out.push_str("<time>");
            i += 24;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    stream
}

/// `POST /send` with `body`, recorded on both sides.
fn send_message(t: &mut Transcript, addr: SocketAddr, body: &str) {
    let mut send = connect(addr);
    t.send(
        &mut send,
        &format!(
            "POST /send HTTP/1.1\r\nHost: localhost:3000\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    t.receive_to_close(&mut send);
}

/// Plays the session. The notes are the README's annotations, kept here so the printed
/// transcript can be pasted back whole.
fn record_session() -> Vec<String> {
    // One tick per second: the broadcasts below are sent right after the first tick, so no
    // second tick comes between them.
    let server = TestServer::start(|c| c.interval = Duration::from_secs(1));
    let mut t = Transcript::default();

    t.note("1. A client opens the stream: an ordinary GET (a browser sends more headers).");
    let mut events = connect(server.addr);
    t.send(
        &mut events,
        "GET /events HTTP/1.1\r\nHost: localhost:3000\r\nAccept: text/event-stream\r\n\r\n",
    );
    t.note("2. The head comes at once (res.writeHead + res.flushHeaders): no Content-Length,");
    t.note("   no chunking; the body is the stream, until the connection closes.");
    t.receive(&mut events, "\r\n\r\n", 1);
    t.note("3. A comment line (it starts with a colon: EventSource ignores it), then the first");
    t.note("   frame: reconnect 3000 ms after a drop. No data line, so no event fires.");
    t.receive(&mut events, "\n\n", 1);
    t.note("4. A second later, the timer's frame: a named event, and deliberately no id line.");
    t.receive(&mut events, "\n\n", 1);

    t.note(
        "5. Another connection broadcasts a message (curl -H 'Content-Type: text/plain' -d hello).",
    );
    send_message(&mut t, server.addr, "hello");
    t.note("6. The stream gets it at once: the id, one data line, the blank line that fires it.");
    t.receive(&mut events, "\n\n", 1);

    t.note("7. The connection drops (say, the laptop's Wi-Fi blips) after id 1. Meanwhile");
    t.note("   another connection sends a message with a CRLF line break in it.");
    drop(events);
    // The server notices at its next failing write (a tick); the answer below then counts 0.
    server.wait_for_clients(0, Duration::from_secs(5));
    send_message(&mut t, server.addr, "line one\r\nline two");
    t.note("8. The browser waits `retry` ms, reconnects, and sends the last id it saw: 1.");
    let mut again = connect(server.addr);
    t.send(
        &mut again,
        "GET /events HTTP/1.1\r\nHost: localhost:3000\r\nAccept: text/event-stream\r\n\
         Last-Event-ID: 1\r\n\r\n",
    );
    t.note("9. Everything after id 1 is replayed first, right after `retry`: id 2, one data");
    t.note("   line per line of the message (the browser joins them with \\n).");
    t.receive(&mut again, "\r\n\r\n", 1);
    t.receive(&mut again, "\n\n", 2);
    t.lines
}

/// The transcript block in README.md, without its annotation lines.
fn readme_transcript() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find(START).expect("README has a transcript block") + START.len();
    let end = readme.find(END).expect("README's transcript block ends");
    readme[start..end]
        .lines()
        .filter(|line| line.starts_with("> ") || line.starts_with("< "))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_transcript_matches_what_the_server_sends() {
    let recorded = record_session();
    println!("{}", recorded.join("\n"));
    let wire: Vec<String> = recorded
        .into_iter()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        readme_transcript(),
        wire,
        "README.md's transcript is stale: run `cargo test --test transcript -- --nocapture` \
         and paste the printed transcript between {START} and {END}"
    );
}

#[test]
fn timestamps_and_dates_are_masked_and_nothing_else() {
    assert_eq!(mask("data: 2026-11-23T16:39:35.001Z\\n"), "data: <time>\\n");
    assert_eq!(
        mask("data: 2026-11-23 16:39\\n"),
        "data: 2026-11-23 16:39\\n"
    );
    assert_eq!(
        mask("Date: Mon, 23 Nov 2026 16:39:34 GMT\\r\\n"),
        "Date: <date>\\r\\n"
    );
}
