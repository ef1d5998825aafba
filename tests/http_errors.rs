//! Routes and errors: a clear status for every bad request, never a crash, never a hung thread.
//! Raw sockets send what a well-behaved client library would refuse to.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, read_to_close, status_of, TestServer, PROMPTLY};

fn server() -> TestServer {
    TestServer::with_interval(60_000)
}

/// The server still answers a normal request.
fn still_serving(server: &TestServer) {
    assert_eq!(get(&server.url("/")).0, 200, "the server keeps serving");
}

#[test]
fn get_root_serves_the_page_as_utf8_html() {
    let server = server();
    let (status, content_type, body) = get(&server.url("/"));
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(body.contains("new EventSource('/events')"));
    assert_eq!(body, sse_server::routes::PAGE);
}

#[test]
fn head_root_sends_the_headers_without_the_page() {
    let server = server();
    let raw = server.raw(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status_of(&raw), 200);
    let length = format!("Content-Length: {}\r\n", sse_server::routes::PAGE.len());
    assert!(raw.contains(&length), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "no body: {raw}");
}

#[test]
fn non_stream_responses_carry_content_length_and_connection_close() {
    let server = server();
    for request in [
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /send?message=hi HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let raw = server.raw(request.as_bytes());
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
    }
}

#[test]
fn every_response_carries_a_date_header() {
    let server = server();
    for request in [
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GARBAGE\r\n\r\n",
    ] {
        let raw = server.raw(request.as_bytes());
        let date = raw
            .lines()
            .find_map(|line| line.strip_prefix("Date: "))
            .unwrap_or_else(|| panic!("no Date in {raw}"));
        // IMF-fixdate: "Mon, 23 Nov 2026 16:39:34 GMT"
        assert_eq!(date.len(), 29, "{date}");
        assert!(date.ends_with(" GMT") && &date[3..5] == ", ", "{date}");
    }
    let events = common::EventStream::open(server.addr, &[]);
    assert!(events.header("date").is_some_and(|d| d.ends_with(" GMT")));
}

#[test]
fn unknown_path_is_404() {
    let server = server();
    let (status, _, body) = get(&server.url("/favicon.ico"));
    assert_eq!(status, 404);
    assert!(
        body.contains("/events"),
        "the error says where to go: {body}"
    );
}

#[test]
fn wrong_method_is_405_with_allow() {
    let server = server();
    for (request, allow) in [
        ("POST / HTTP/1.1", "GET, HEAD"),
        ("POST /events HTTP/1.1", "GET"),
        ("DELETE /send HTTP/1.1", "GET, POST"),
    ] {
        let raw = server
            .raw(format!("{request}\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").as_bytes());
        assert_eq!(status_of(&raw), 405, "{request}");
        assert!(
            raw.contains(&format!("\r\nAllow: {allow}\r\n")),
            "{request}: {raw}"
        );
    }
}

#[test]
fn malformed_request_line_gets_400_and_server_keeps_serving() {
    let server = server();
    for line in [
        "GARBAGE",
        "GET /",
        "GET / HTTP/1.1 extra",
        "GET nopath HTTP/1.1",
        "\u{1}\u{2}",
    ] {
        let raw = server.raw(format!("{line}\r\nHost: localhost\r\n\r\n").as_bytes());
        assert_eq!(status_of(&raw), 400, "{line:?}: {raw}");
    }
    still_serving(&server);
}

#[test]
fn malformed_header_gets_400() {
    let server = server();
    for header in ["NoColon", "Bad Name: x", " folded: x", "X: a\u{0}b"] {
        let raw =
            server.raw(format!("GET / HTTP/1.1\r\nHost: localhost\r\n{header}\r\n\r\n").as_bytes());
        assert_eq!(status_of(&raw), 400, "{header:?}: {raw}");
    }
    still_serving(&server);
}

#[test]
fn http_1_1_without_host_gets_400() {
    let server = server();
    assert_eq!(status_of(&server.raw(b"GET / HTTP/1.1\r\n\r\n")), 400);
}

#[test]
fn unsupported_http_version_gets_505() {
    let server = server();
    assert_eq!(
        status_of(&server.raw(b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n")),
        505
    );
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let server = server();
    assert_eq!(
        status_of(&server.raw(b"GET / HTTP/1.1\nHost: localhost\n\n")),
        200
    );
}

/// A GET / whose request line and headers, with their CRLFs, are exactly `size` bytes; the blank
/// line that ends the head comes on top.
fn head_of_size(size: usize) -> String {
    let start = "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
    let pad = size - start.len() - "\r\n".len();
    format!("{start}{}\r\n\r\n", "a".repeat(pad))
}

#[test]
fn request_line_plus_headers_of_exactly_8_kib_is_accepted() {
    let server = server();
    let head = head_of_size(8 * 1024);
    assert_eq!(head.len(), 8192 + 2);
    assert_eq!(status_of(&server.raw(head.as_bytes())), 200);
}

#[test]
fn header_section_over_8_kib_gets_431() {
    let server = server();
    assert_eq!(
        status_of(&server.raw(head_of_size(8 * 1024 + 1).as_bytes())),
        431
    );
    // Also when the client keeps sending and never ends the head.
    let endless = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}",
        "a".repeat(20_000)
    );
    assert_eq!(status_of(&server.raw(endless.as_bytes())), 431);
    still_serving(&server);
}

#[test]
fn request_line_over_8_kib_gets_414_saying_to_post_long_messages() {
    let server = server();
    // A long message in the address bar: a 9,000-character GET /send?message=...
    let long_get = format!(
        "GET /send?message={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(9000)
    );
    // Also when the request line never ends.
    let endless = format!("GET /send?message={}", "a".repeat(20_000));
    for request in [long_get, endless] {
        let raw = server.raw(request.as_bytes());
        assert_eq!(status_of(&raw), 414, "{raw}");
        assert!(raw.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{raw}");
        assert!(raw.contains("with POST, in the body"), "{raw}");
    }
    // Nothing was sent: the next broadcast is the first.
    assert_eq!(server.send("after"), 1);
}

#[test]
fn post_with_the_message_in_the_query_is_400_saying_it_goes_in_the_body() {
    let server = server();
    // `curl -X POST 'http://.../send?message=hi'`: no body.
    for head in [
        "POST /send?message=hi HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /send?message=hi HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    ] {
        let raw = server.raw(head.as_bytes());
        assert_eq!(status_of(&raw), 400, "{raw}");
        assert!(raw.contains("on POST the message is the body"), "{raw}");
    }
    // A POST with a body is served whatever its query says; GET still reads the query.
    let raw = server.raw(
        b"POST /send?message=ignored HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: text/plain\r\nContent-Length: 4\r\n\r\nbody",
    );
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(get(&server.url("/send?message=hi")).0, 200);
    assert_eq!(server.send("third"), 3, "the refused POSTs used no id");
}

#[test]
fn more_than_100_headers_get_431() {
    let server = server();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..100 {
        head.push_str(&format!("X-{i}: y\r\n"));
    }
    head.push_str("\r\n");
    assert_eq!(status_of(&server.raw(head.as_bytes())), 431);
}

#[test]
fn incomplete_request_head_gets_408_after_the_timeout() {
    let server = TestServer::start(|c| c.head_timeout = Duration::from_millis(200));
    let raw = server.raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n");
    assert_eq!(status_of(&raw), 408, "{raw}");
}

#[test]
fn silent_client_gets_408_after_the_timeout() {
    let server = TestServer::start(|c| c.head_timeout = Duration::from_millis(200));
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    assert_eq!(status_of(&read_to_close(&mut stream)), 408);
}

#[test]
fn slow_trickle_still_gets_408_at_the_deadline() {
    let server = TestServer::start(|c| c.head_timeout = Duration::from_millis(300));
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    let started = Instant::now();
    // One byte every 50 ms: each read succeeds, but the whole head never arrives in time.
    for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\n".iter().take(12) {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status_of(&read_to_close(&mut stream)), 408);
    assert!(started.elapsed() < PROMPTLY);
}

#[test]
fn client_that_connects_and_leaves_without_a_word_is_no_problem() {
    let server = server();
    for _ in 0..20 {
        drop(TcpStream::connect(server.addr).unwrap());
    }
    still_serving(&server);
}
