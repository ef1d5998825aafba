//! At the machine's limit: the binary under a low `ulimit -n` and a `--max-clients` above it
//! lowers its cap, turns the surplus away with 503, and still broadcasts to a full house.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::{get, json_number, post, startup_url, without_server_env, EventStream, BIN, PROMPTLY};

/// Open files the server is started with: room for about 135 streams (see `capacity.rs`).
const OPEN_FILES: usize = 200;

/// Asked for, far above what [`OPEN_FILES`] allows.
const ASKED: usize = 1_000;

/// Stream attempts beyond the cap in each test.
const SURPLUS: usize = 20;

/// A server process, killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// The number of streams its `capacity:` line says it holds.
    streams: usize,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary under `ulimit -n OPEN_FILES` with `MAX_CLIENTS=ASKED` and `writers`
/// broadcast writers, and reads its `capacity:` line from stderr (which is then drained, so
/// that the server's log never blocks it).
fn start(writers: &str) -> Running {
    let mut command = Command::new("sh");
    without_server_env(&mut command)
        .args(["-c", &format!("ulimit -n {OPEN_FILES} && exec \"$0\""), BIN])
        .env("PORT", "0")
        .env("MAX_CLIENTS", ASKED.to_string())
        .env("BROADCAST_WRITERS", writers)
        .env("INTERVAL_MS", "60000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the server binary");
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("capacity:") {
                let _ = line_tx.send(line);
            }
        }
    });
    let url = startup_url(&mut child);
    // The capacity line comes before the startup line, so it is there by now.
    let line = line_rx
        .recv_timeout(PROMPTLY)
        .expect("a capacity line on stderr");
    let streams = line
        .strip_prefix("capacity: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a stream count in {line:?}"));
    assert!(
        line.contains("ulimit -n"),
        "the line names the limit: {line}"
    );
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    Running {
        child,
        addr,
        streams,
    }
}

/// Fills the house, then checks that the surplus gets 503, that `/send` reaches every held
/// stream, that the page and `/drop` still answer, and that the process stays up.
fn full_house_still_served(writers: &str) {
    let mut server = start(writers);
    assert!(
        server.streams > 0 && server.streams < OPEN_FILES,
        "the cap lowered below the open files: {}",
        server.streams
    );
    let mut held: Vec<EventStream> = (0..server.streams)
        .map(|_| EventStream::open(server.addr, &[]))
        .collect();
    assert!(
        held.iter().all(|s| s.status() == 200),
        "every stream within the cap is held"
    );
    for _ in 0..SURPLUS {
        let refused = EventStream::open(server.addr, &[]);
        assert_eq!(refused.status(), 503, "{}", refused.head);
    }

    let base = format!("http://{}", server.addr);
    let (status, body) = post(&format!("{base}/send"), "text/plain", "full house");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_number(&body, "clients"), server.streams as u64);
    for stream in &mut held {
        let event = stream.next_message(PROMPTLY).expect("the broadcast");
        assert_eq!(event.data, "full house");
    }
    assert_eq!(get(&format!("{base}/")).0, 200, "the page");
    let (status, body) = post(&format!("{base}/drop"), "text/plain", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_number(&body, "dropped"), server.streams as u64);
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn simple_fanout_past_the_open_file_limit_refuses_streams_and_still_broadcasts() {
    full_house_still_served("0");
}

#[test]
fn writer_fanout_past_the_open_file_limit_refuses_streams_and_still_broadcasts() {
    full_house_still_served("2");
}
