//! `GET /lab` as the contract (v3, "the lab") states it, line by line, over raw sockets: the
//! first request of a run gets exactly its bytes, the second a `reconnect` report, later ones
//! 204; bad parameters 400, too many bytes 413; lab streams count against the client cap.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::lab::{lab_bytes, page_presets, Preset};
use common::{EventStream, TestServer, PROMPTLY};

fn server() -> TestServer {
    TestServer::with_interval(60_000)
}

/// A run token no other test uses.
fn fresh_run() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One answer, read until the server closes the connection: its head (status line and
/// headers, `Date` left out) and its body, byte for byte.
struct Answer {
    status_line: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `GET /lab?<query>` with `headers` and reads the whole answer.
fn lab(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = format!("GET /lab?{query} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // read_to_end fails on the read timeout: the server must close by itself.
    stream
        .read_to_end(&mut raw)
        .expect("the server closes the connection after the answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let headers = lines
        .filter(|line| !line.starts_with("Date: "))
        .map(String::from)
        .collect();
    Answer {
        status_line,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// `bytes` percent-encoded, every byte as `%XX`.
fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// The headers every lab answer carries, after `Content-Type`, in order.
const LAB_HEADERS: [&str; 4] = [
    "Cache-Control: no-store",
    "X-Content-Type-Options: nosniff",
    "Content-Security-Policy: default-src 'none'; sandbox",
    "Connection: close",
];

fn head_with_type(content_type: &str) -> Vec<String> {
    let mut head = vec![format!("Content-Type: {content_type}")];
    head.extend(LAB_HEADERS.map(String::from));
    head
}

#[test]
fn the_first_request_of_a_run_gets_exactly_its_bytes_then_the_connection_closes() {
    let server = server();
    let bytes = b"retry: 100\r\ndata: a\0b\n\n\xEF\xBB\xBFdata: \xFF\rid: 1\0\n\ndata:+ end";
    let answer = lab(
        &server,
        &format!("bytes={}&run={}", encode(bytes), fresh_run()),
        &[],
    );
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(answer.headers, head_with_type("text/event-stream"));
    assert_eq!(answer.body, bytes);
}

#[test]
fn bytes_are_percent_decoded_only_so_a_plus_stays_a_plus() {
    let server = server();
    let answer = lab(
        &server,
        &format!("bytes=data:+a%2Bb%20c&run={}", fresh_run()),
        &[],
    );
    assert_eq!(answer.body, b"data:+a+b c");
}

#[test]
fn the_first_answer_has_the_status_and_type_asked_for_and_no_header_from_elsewhere() {
    let server = server();
    let answer = lab(
        &server,
        &format!(
            "bytes=data:x%0A%0A&run={}&status=500&type=text/event-stream;%20charset=iso-8859-1",
            fresh_run()
        ),
        &[],
    );
    assert_eq!(answer.status_line, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(
        answer.headers,
        head_with_type("text/event-stream; charset=iso-8859-1")
    );
    assert_eq!(answer.body, b"data:x\n\n");

    for content_type in [
        "text/plain",
        "application/json",
        "application/octet-stream",
        "Text/Event-Stream",
    ] {
        let query = format!("bytes=x&run={}&type={content_type}", fresh_run());
        let answer = lab(&server, &query, &[]);
        assert_eq!(answer.status(), 200, "{content_type}");
        assert_eq!(answer.headers, head_with_type(content_type));
    }
    // A status without a usual reason phrase still makes a valid status line.
    let answer = lab(
        &server,
        &format!("bytes=x&run={}&status=599", fresh_run()),
        &[],
    );
    assert_eq!(answer.status_line, "HTTP/1.1 599 ");
}

#[test]
fn a_204_asked_for_is_sent_without_a_body() {
    let server = server();
    let answer = lab(
        &server,
        &format!("bytes=data:x&run={}&status=204", fresh_run()),
        &[],
    );
    assert_eq!(answer.status_line, "HTTP/1.1 204 No Content");
    assert_eq!(answer.header("content-length"), None);
    assert!(answer.body.is_empty());
}

/// The `reconnect` frame's JSON, checked for shape: `{"last_event_id": ..., "after_ms": n}`.
fn reconnect_report(answer: &Answer) -> (String, u64) {
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK");
    assert_eq!(answer.headers, head_with_type("text/event-stream"));
    let body = answer.body_text();
    let json = body
        .strip_prefix("event: reconnect\ndata: {\"last_event_id\": ")
        .and_then(|rest| rest.strip_suffix("}\n\n"))
        .unwrap_or_else(|| panic!("not one reconnect frame: {body:?}"));
    let (last_event_id, after_ms) = json.rsplit_once(", \"after_ms\": ").unwrap();
    (last_event_id.to_string(), after_ms.parse().unwrap())
}

#[test]
fn the_second_request_gets_one_reconnect_event_with_null_and_the_time_since_the_first_ended() {
    let server = server();
    let run = fresh_run();
    let started = Instant::now();
    lab(&server, &format!("bytes=retry:%20100%0A&run={run}"), &[]);
    let first_seen_ended = Instant::now();
    // The gap being measured, not a wait for something to happen.
    thread::sleep(Duration::from_millis(150));
    let gap = first_seen_ended.elapsed();
    let answer = lab(&server, &format!("bytes=retry:%20100%0A&run={run}"), &[]);
    let (last_event_id, after_ms) = reconnect_report(&answer);
    assert_eq!(last_event_id, "null");
    // The server saw the first answer end before this client did, and the second request
    // after it was sent.
    assert!(
        after_ms >= gap.as_millis() as u64,
        "{after_ms} ms < {gap:?}"
    );
    assert!(
        after_ms <= started.elapsed().as_millis() as u64,
        "{after_ms} ms"
    );
}

#[test]
fn the_reconnect_report_carries_last_event_id_as_an_escaped_json_string() {
    let server = server();
    for (sent, reported) in [("7", r#""7""#), (r#"a"b\c	d é"#, r#""a\"b\\c\td é""#)] {
        let run = fresh_run();
        lab(&server, &format!("bytes=x&run={run}"), &[]);
        let answer = lab(
            &server,
            &format!("bytes=x&run={run}"),
            &[("Last-Event-ID", sent)],
        );
        assert_eq!(reconnect_report(&answer).0, reported, "{sent:?}");
    }
}

#[test]
fn every_later_request_of_the_run_gets_204_without_a_body() {
    let server = server();
    let run = fresh_run();
    lab(&server, &format!("bytes=x&run={run}"), &[]);
    lab(&server, &format!("bytes=x&run={run}"), &[]);
    for _ in 0..2 {
        let answer = lab(&server, &format!("bytes=x&run={run}"), &[]);
        assert_eq!(answer.status_line, "HTTP/1.1 204 No Content");
        assert_eq!(answer.headers, LAB_HEADERS);
        assert!(answer.body.is_empty());
    }
    // Another run starts afresh.
    let answer = lab(&server, &format!("bytes=x&run={}", fresh_run()), &[]);
    assert_eq!(answer.body, b"x");
}

/// Answers `query` with `status` and a reason containing `reason`.
fn refused(server: &TestServer, query: &str, status: u16, reason: &str) {
    let answer = lab(server, query, &[]);
    assert_eq!(answer.status(), status, "{query}: {}", answer.body_text());
    assert!(
        answer.body_text().contains(reason),
        "{query}: {}",
        answer.body_text()
    );
}

#[test]
fn no_bytes_or_no_or_bad_run_is_400() {
    let server = server();
    refused(&server, &format!("run={}", fresh_run()), 400, "no bytes");
    refused(&server, "bytes=x", 400, "run must be");
    for run in ["", "a.b", "a%20b", "%C3%A9", &"a".repeat(65)] {
        refused(&server, &format!("bytes=x&run={run}"), 400, "run must be");
    }
    let longest = format!("{:a<64}", fresh_run());
    assert_eq!(
        lab(&server, &format!("bytes=x&run={longest}"), &[]).status(),
        200
    );
}

#[test]
fn bytes_over_4096_decoded_bytes_is_413() {
    let server = server();
    let run = fresh_run();
    refused(
        &server,
        &format!("bytes={}&run={run}", "a".repeat(4097)),
        413,
        "at most 4096",
    );
    // The refusal used up nothing: the run's first answer is still to come.
    let answer = lab(
        &server,
        &format!("bytes={}&run={run}", "a".repeat(4096)),
        &[],
    );
    assert_eq!(answer.body.len(), 4096);
}

#[test]
fn a_bad_status_is_400() {
    let server = server();
    for status in [
        "", "abc", "100", "199", "301", "304", "399", "600", "2000", "0200",
    ] {
        let query = format!("bytes=x&run={}&status={status}", fresh_run());
        refused(&server, &query, 400, "status must be");
    }
}

#[test]
fn a_type_a_browser_could_run_as_a_page_is_400() {
    let server = server();
    for content_type in [
        "text/html",
        "image/svg+xml",
        "application/xml",
        "text/xml",
        "application/xhtml+xml",
        "",
        "text/plain,text/html",
        "text/plain;%20a=1,%20text/html",
        "text/event-streamx",
    ] {
        let query = format!("bytes=x&run={}&type={content_type}", fresh_run());
        refused(&server, &query, 400, "type must be");
    }
}

#[test]
fn a_type_with_cr_or_lf_is_400() {
    let server = server();
    for content_type in [
        "text/plain%0D%0ASet-Cookie:%20a=1",
        "text/plain%0ASet-Cookie:%20a=1",
        "text/plain%0D",
        "text/plain%00",
    ] {
        let query = format!("bytes=x&run={}&type={content_type}", fresh_run());
        refused(&server, &query, 400, "type must");
    }
}

#[test]
fn other_methods_are_405() {
    let server = server();
    let raw = server
        .raw(b"POST /lab?bytes=x&run=a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(common::status_of(&raw), 405);
    assert!(raw.contains("\r\nAllow: GET\r\n"), "{raw}");
}

#[test]
fn a_lab_stream_counts_against_the_client_cap() {
    let server = TestServer::start(|c| {
        c.max_clients = 1;
        c.interval = Duration::from_millis(20);
    });
    let run = fresh_run();
    let events = EventStream::open(server.addr, &[]);
    server.wait_for_clients(1, PROMPTLY);
    let answer = lab(&server, &format!("bytes=x&run={run}"), &[]);
    assert_eq!(answer.status(), 503, "{}", answer.body_text());
    assert_eq!(answer.header("retry-after"), Some("5"));
    drop(events);
    server.wait_for_clients(0, PROMPTLY);
    // The 503 used up nothing; the answer gives its place back when it ends.
    assert_eq!(lab(&server, &format!("bytes=x&run={run}"), &[]).body, b"x");
    server.wait_for_clients(0, PROMPTLY);
}

// ---- The page's presets: each is a request the lab accepts, and answers byte for byte. ----

#[test]
fn every_preset_of_the_page_is_answered_byte_for_byte() {
    let server = server();
    let presets = page_presets();
    assert!(presets.len() >= 30, "{} presets", presets.len());
    let mut ids = Vec::new();
    for preset in &presets {
        let id = &preset.id;
        assert!(
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{id}"
        );
        assert!(!ids.contains(id), "{id} twice");
        ids.push(id.clone());
        let bytes = &preset.bytes;
        let query = format!(
            "bytes={}&run={}&status={}&type={}",
            encode(bytes),
            fresh_run(),
            preset.status,
            encode(preset.content_type.as_bytes())
        );
        let answer = lab(&server, &query, &[]);
        assert_eq!(answer.status(), preset.status, "{id}");
        assert_eq!(answer.headers, head_with_type(&preset.content_type), "{id}");
        let expected: &[u8] = if preset.status == 204 { &[] } else { bytes };
        assert_eq!(answer.body, expected, "{id}");
    }
}

#[test]
fn the_escapes_of_the_bytes_box_read_as_the_page_reads_them() {
    assert_eq!(
        lab_bytes(r"\uFEFFa\xFF\0\r\n\\n"),
        b"\xEF\xBB\xBFa\xFF\0\r\n\\n"
    );
}

/// The lines of the README section whose heading is `heading`, up to the next heading.
fn readme_section(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    readme
        .lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| !line.starts_with('#'))
        .map(String::from)
        .collect()
}

/// How many presets each group of the page's menu holds (`LAB_GROUPS`: its first preset's id).
fn group_sizes(presets: &[Preset]) -> Vec<usize> {
    let page = sse_server::routes::PAGE;
    let groups = page
        .split_once("const LAB_GROUPS = [\n")
        .and_then(|(_, rest)| rest.split_once("];"))
        .expect("index.html has LAB_GROUPS")
        .0;
    let starts: Vec<usize> = groups
        .lines()
        .map(|line| {
            let first = line.trim().trim_end_matches("],").trim_end_matches('\'');
            let id = first.rsplit_once('\'').unwrap().1;
            presets.iter().position(|p| p.id == id).expect(id)
        })
        .chain([presets.len()])
        .collect();
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn the_presets_cover_each_browser_rule_each_misconception_and_each_way_to_give_up() {
    let rules = readme_section("## How the browser reads the stream")
        .iter()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| rule"))
        .count();
    let misconceptions = readme_section("## Misconceptions")
        .iter()
        .filter(|line| line.starts_with("- "))
        .count();
    let sizes = group_sizes(&page_presets());
    // Ways to give up: a status other than 200, another type, another charset, 204.
    assert_eq!(sizes[..3], [rules, misconceptions, 4]);
}
