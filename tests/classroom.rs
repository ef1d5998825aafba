//! The classroom (contract v2): `POST /drop` closes every stream at once and browsers reconnect
//! with `Last-Event-ID`; `/send` and `/drop` refuse other origins with 403.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    json_number, read_to_close, server_command, startup_url, status_of, EventStream, TestServer,
    PROMPTLY,
};

/// So long that no tick comes during a test: a stream that ends was ended by `/drop`.
const NO_TICK_MS: u64 = 60_000;

/// The contract's "at once", measured with room for a loaded machine.
const AT_ONCE: Duration = Duration::from_secs(1);

fn server() -> TestServer {
    TestServer::with_interval(NO_TICK_MS)
}

/// One request on a new connection, with `Host` set to the server's address, `headers` after
/// it, and `body` (text/plain) if not empty: the status, the headers and the body of the answer.
fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", server.addr);
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    let answer = server.raw(format!("{head}\r\n{body}").as_bytes());
    let (answer_head, answer_body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        status_of(&answer),
        answer_head.to_string(),
        answer_body.to_string(),
    )
}

/// `POST /drop` with no extra headers: the number of streams it closed.
fn drop_all(server: &TestServer) -> u64 {
    let (status, head, body) = request(server, "POST", "/drop", &[], "");
    assert_eq!(status, 200, "{head}\r\n\r\n{body}");
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    json_number(&body, "dropped")
}

/// Whether the server ends `events` within `within`: reads (and throws away) until the end of
/// the stream, or gives up.
fn ends_within(events: &mut EventStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        events.stream.set_read_timeout(Some(left)).unwrap();
        match events.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The ids of the messages `events` gets until (and including) the one with `data`.
fn ids_until(events: &mut EventStream, data: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let event = events
            .next_message(PROMPTLY)
            .unwrap_or_else(|| panic!("{data:?} never came; got ids {ids:?}"));
        ids.push(event.last_event_id.clone());
        if event.data == data {
            return ids;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// POST /drop

#[test]
fn drop_closes_every_stream_within_a_second_and_says_how_many() {
    for writers in [0, 2] {
        let server = TestServer::start(|c| {
            c.broadcast_writers = writers;
            c.interval = Duration::from_millis(NO_TICK_MS);
        });
        let mut streams: Vec<EventStream> = (0..3)
            .map(|_| EventStream::open(server.addr, &[]))
            .collect();
        server.wait_for_clients(3, PROMPTLY);

        let started = Instant::now();
        assert_eq!(drop_all(&server), 3);
        for (n, events) in streams.iter_mut().enumerate() {
            assert!(
                ends_within(events, AT_ONCE),
                "stream {n} ({writers} writers) still open after {AT_ONCE:?}"
            );
        }
        // Each stream's thread ended and gave its place back.
        server.wait_for_clients(0, AT_ONCE.saturating_sub(started.elapsed()));
    }
}

#[test]
fn drop_with_no_stream_open_answers_dropped_0() {
    assert_eq!(drop_all(&server()), 0);
}

#[test]
fn drop_ends_a_stream_whose_client_has_stopped_reading() {
    // A client that reads nothing: its socket's buffers fill up and the stream's thread blocks
    // in a write (for up to the 10 s write timeout). `/drop` must end it all the same.
    let server = TestServer::start(|c| c.broadcast_writers = 0);
    let _stuck = EventStream::open(server.addr, &[]);
    server.wait_for_clients(1, PROMPTLY);
    let big = "x".repeat(60 * 1024);
    for _ in 0..200 {
        server.send(&big);
    }
    assert_eq!(drop_all(&server), 1);
    server.wait_for_clients(0, AT_ONCE);
}

#[test]
fn after_drop_a_client_reconnecting_with_last_event_id_gets_what_was_sent_in_between_once() {
    for writers in [0, 2] {
        let server = TestServer::start(|c| {
            c.broadcast_writers = writers;
            c.interval = Duration::from_millis(NO_TICK_MS);
        });
        let mut events = EventStream::open(server.addr, &[]);
        server.send("before the drop");
        let seen = events.next_message(PROMPTLY).expect("the first message");
        assert_eq!(seen.last_event_id, "1");

        assert_eq!(drop_all(&server), 1);
        assert!(ends_within(&mut events, AT_ONCE));
        server.wait_for_clients(0, AT_ONCE);
        // Broadcast during the gap: nobody is connected.
        let (status, body) = common::post(&server.url("/send"), "text/plain", "in the gap");
        assert_eq!(status, 200, "{body}");
        assert_eq!(json_number(&body, "clients"), 0, "{body}");
        server.send("also in the gap");

        // The browser reconnects with the id it saw last: the gap first, then live, each once.
        let mut again = EventStream::open(server.addr, &[("Last-Event-ID", &seen.last_event_id)]);
        assert_eq!(ids_until(&mut again, "also in the gap"), ["2", "3"]);
        server.send("after the reconnect");
        assert_eq!(ids_until(&mut again, "after the reconnect"), ["4"]);
    }
}

#[test]
fn a_dropped_stream_s_thread_logs_left_events_dropped() {
    let mut child = server_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server binary");
    let url = startup_url(&mut child);
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    let mut events = EventStream::open(addr, &[]);
    let answer = common::post(&format!("http://{addr}/drop"), "text/plain", "");
    assert_eq!(answer.0, 200, "{answer:?}");
    assert!(ends_within(&mut events, AT_ONCE));
    // The thread logs why it ended just after the socket closed: wait (bounded) for that line.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, logged) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + common::PROMPTLY;
    let mut log = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match logged.recv_timeout(left) {
            Ok(line) if line.ends_with("left /events: dropped (clients: 0)") => break true,
            Ok(line) => log.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "{}", log.join("\n"));
}

#[test]
fn drop_with_any_method_but_post_is_405_with_allow_post() {
    let server = server();
    for method in ["GET", "HEAD", "PUT", "DELETE"] {
        let (status, head, _) = request(&server, method, "/drop", &[], "");
        assert_eq!(status, 405, "{method}: {head}");
        assert!(head.contains("\r\nAllow: POST\r\n"), "{method}: {head}");
    }
}

// ---------------------------------------------------------------------------------------------
// Other origins: 403 on /send and /drop

/// Both state-changing requests, as (method, path, body).
const GUARDED: [(&str, &str, &str); 2] = [("POST", "/send", "hi"), ("POST", "/drop", "")];

#[test]
fn send_and_drop_refuse_sec_fetch_site_cross_site_and_same_site_with_403() {
    let server = server();
    let _events = EventStream::open(server.addr, &[]);
    server.wait_for_clients(1, PROMPTLY);
    for site in ["cross-site", "same-site"] {
        for (method, path, body) in GUARDED {
            let headers = [("Sec-Fetch-Site", site)];
            let (status, head, why) = request(&server, method, path, &headers, body);
            assert_eq!(status, 403, "{path} with {site}: {head}");
            assert!(why.contains(site), "the reason names it: {why:?}");
        }
    }
    assert_eq!(server.clients(), 1, "no refused /drop closed the stream");
}

#[test]
fn send_and_drop_refuse_an_origin_of_another_host_or_another_port_with_403() {
    let server = server();
    let other_port = format!("http://127.0.0.1:{}", server.addr.port() + 1);
    for origin in ["http://evil.example", "null", other_port.as_str()] {
        for (method, path, body) in GUARDED {
            let headers = [("Origin", origin)];
            let (status, head, _) = request(&server, method, path, &headers, body);
            assert_eq!(status, 403, "{path} from {origin}: {head}");
        }
    }
}

#[test]
fn get_send_from_another_site_is_refused_too() {
    let server = server();
    let headers = [("Sec-Fetch-Site", "cross-site")];
    let (status, _, _) = request(&server, "GET", "/send?message=hi", &headers, "");
    assert_eq!(status, 403);
}

#[test]
fn send_and_drop_serve_a_matching_origin_sec_fetch_site_same_origin_or_none_and_no_header() {
    let server = server();
    let own = format!("http://{}", server.addr);
    let cases: [&[(&str, &str)]; 5] = [
        &[("Origin", &own)],
        &[("Sec-Fetch-Site", "same-origin")],
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
        &[("Sec-Fetch-Site", "none")],
        &[], // curl, scripts
    ];
    for headers in cases {
        for (method, path, body) in GUARDED {
            let (status, head, _) = request(&server, method, path, headers, body);
            assert_eq!(status, 200, "{path} with {headers:?}: {head}");
        }
    }
}

#[test]
fn a_refused_send_uses_up_no_id() {
    let server = server();
    let mut events = EventStream::open(server.addr, &[]);
    let headers = [("Origin", "http://evil.example")];
    let (status, _, _) = request(&server, "POST", "/send", &headers, "forged");
    assert_eq!(status, 403);
    assert_eq!(server.send("genuine"), 1, "the next id is still 1");
    let event = events.next_message(PROMPTLY).expect("the genuine message");
    assert_eq!(
        (event.last_event_id.as_str(), event.data.as_str()),
        ("1", "genuine")
    );
}

#[test]
fn a_refused_request_is_answered_in_full_even_with_a_body_left_unread() {
    // The 403 comes before the body is read; the connection closes politely (no reset), so the
    // client gets the whole answer.
    let server = server();
    let body = "x".repeat(32 * 1024);
    let head = format!(
        "POST /send HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let answer = read_to_close(&mut stream);
    assert_eq!(status_of(&answer), 403);
    assert!(answer.contains("refused"), "{answer}");
}

#[test]
fn a_stream_still_being_replayed_to_when_drop_comes_is_closed_at_once_and_counted() {
    for writers in [0, 2] {
        let server = TestServer::start(|c| {
            c.broadcast_writers = writers;
            c.interval = Duration::from_millis(NO_TICK_MS);
        });
        // Far more history than the socket buffers hold: the replay's writes wait for the reader.
        let big = "x".repeat(60 * 1024);
        for _ in 0..300 {
            server.hub.broadcast(&big).unwrap();
        }
        let mut events = EventStream::open(server.addr, &[("Last-Event-ID", "0")]);
        server.wait_for_clients(1, PROMPTLY);
        // The stream is admitted and its replay under way: it is one of the streams /drop closes.
        assert_eq!(drop_all(&server), 1, "writers {writers}");
        assert!(
            ends_within(&mut events, PROMPTLY),
            "the stream ends, replay or not (writers {writers})"
        );
        server.wait_for_clients(0, PROMPTLY);
    }
}
