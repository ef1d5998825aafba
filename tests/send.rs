//! `/send`: the three ways to broadcast, the answer, and every way to get it wrong.

mod common;

use std::time::Duration;

use common::{agent, json_number, post, status_of, EventStream, TestServer, PROMPTLY};

fn server() -> TestServer {
    TestServer::with_interval(60_000)
}

#[test]
fn post_text_plain_body_is_broadcast_verbatim() {
    let server = server();
    let mut events = EventStream::open(server.addr, &[]);
    // No percent-decoding for text/plain: `+` and `%41` stay as they are.
    let (status, _) = post(&server.url("/send"), "text/plain", "1+1=2 %41");
    assert_eq!(status, 200);
    assert_eq!(events.next_event(PROMPTLY).unwrap().data, "1+1=2 %41");
}

#[test]
fn post_form_body_message_is_percent_decoded_with_plus_as_space() {
    let server = server();
    let mut events = EventStream::open(server.addr, &[]);
    let (status, _) = post(
        &server.url("/send"),
        "application/x-www-form-urlencoded",
        "other=1&message=hello+world%21%0Asecond+line",
    );
    assert_eq!(status, 200);
    assert_eq!(
        events.next_event(PROMPTLY).unwrap().data,
        "hello world!\nsecond line"
    );
}

#[test]
fn form_body_encoded_like_a_browser_form_is_understood() {
    let server = server();
    let mut events = EventStream::open(server.addr, &[]);
    let response = agent()
        .post(&server.url("/send"))
        .send_form([("message", "a&b=c é")])
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(events.next_event(PROMPTLY).unwrap().data, "a&b=c é");
}

#[test]
fn get_send_with_a_percent_encoded_query_broadcasts() {
    let server = server();
    let mut events = EventStream::open(server.addr, &[]);
    let (status, content_type, _) = common::get(&server.url("/send?message=caf%C3%A9+au+lait"));
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    assert_eq!(events.next_event(PROMPTLY).unwrap().data, "café au lait");
}

#[test]
fn send_answers_json_with_the_id_and_the_client_count() {
    let server = server();
    let _events = EventStream::open(server.addr, &[]);
    server.wait_for_clients(1, PROMPTLY);
    let mut response = agent()
        .post(&server.url("/send"))
        .header("Content-Type", "text/plain")
        .send("hi")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        common::header(&response, "content-type"),
        "application/json"
    );
    let body = response.body_mut().read_to_string().unwrap();
    assert_eq!(body, r#"{"id": 1, "clients": 1}"#);
}

#[test]
fn ids_start_at_1_and_increase_by_1_per_broadcast() {
    let server = server();
    let ids: Vec<u64> = (0..5).map(|i| server.send(&format!("m{i}"))).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let (_, _, body) = common::get(&server.url("/send?message=six"));
    assert_eq!(json_number(&body, "id"), 6);
}

#[test]
fn send_with_no_clients_still_succeeds_and_says_zero() {
    let server = server();
    let (status, body) = post(&server.url("/send"), "text/plain", "anyone?");
    assert_eq!(status, 200);
    assert_eq!(json_number(&body, "clients"), 0);
}

#[test]
fn send_without_a_message_is_400() {
    let server = server();
    assert_eq!(common::get(&server.url("/send")).0, 400);
    assert_eq!(common::get(&server.url("/send?other=1")).0, 400);
    let form = "application/x-www-form-urlencoded";
    assert_eq!(post(&server.url("/send"), form, "other=1").0, 400);
}

#[test]
fn send_with_an_empty_message_is_400() {
    let server = server();
    assert_eq!(common::get(&server.url("/send?message=")).0, 400);
    assert_eq!(post(&server.url("/send"), "text/plain", "").0, 400);
    let form = "application/x-www-form-urlencoded";
    assert_eq!(post(&server.url("/send"), form, "message=").0, 400);
}

#[test]
fn send_with_a_message_that_is_not_utf8_is_400() {
    let server = server();
    assert_eq!(common::get(&server.url("/send?message=%FF%FE")).0, 400);
    let raw = server.raw(
        b"POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n\xff\xfe",
    );
    assert_eq!(status_of(&raw), 400, "{raw}");
}

#[test]
fn rejected_sends_broadcast_nothing_and_use_no_id() {
    let server = server();
    let mut events = EventStream::open(server.addr, &[]);
    common::get(&server.url("/send?message="));
    post(&server.url("/send"), "text/plain", "");
    assert_eq!(
        events.next_event(Duration::from_millis(200)),
        None,
        "nothing was broadcast"
    );
    assert_eq!(server.send("counted"), 1);
    assert_eq!(events.next_event(PROMPTLY).unwrap().last_event_id, "1");
}

#[test]
fn body_of_64_kib_is_accepted_and_one_byte_more_is_413() {
    let server = server();
    let limit = 64 * 1024;
    assert_eq!(
        post(&server.url("/send"), "text/plain", &"a".repeat(limit)).0,
        200
    );
    let raw = server.raw(
        format!(
            "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
            limit + 1,
            "a".repeat(limit + 1)
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&raw), 413, "{raw}");
}

#[test]
fn body_over_64_kib_is_refused_before_it_is_read() {
    let server = server();
    // Only the head is sent: the server answers from the Content-Length alone.
    let raw =
        server.raw(b"POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n");
    assert_eq!(status_of(&raw), 413, "{raw}");
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let server = server();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(
            b"POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").unwrap();
    let rest = common::read_to_close(&mut stream);
    assert_eq!(status_of(&rest), 200, "{rest}");
}

#[test]
fn chunked_body_is_501_since_only_content_length_is_read() {
    let server = server();
    let raw = server.raw(
        b"POST /send HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    );
    assert_eq!(status_of(&raw), 501, "{raw}");
}

#[test]
fn two_different_content_lengths_are_400() {
    let server = server();
    let raw = server.raw(
        b"POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhey",
    );
    assert_eq!(status_of(&raw), 400, "{raw}");
}

#[test]
fn content_length_that_is_not_a_number_is_400() {
    let server = server();
    let raw = server.raw(b"POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: ten\r\n\r\n");
    assert_eq!(status_of(&raw), 400, "{raw}");
}

#[test]
fn body_that_stops_short_of_its_length_is_408() {
    let server = TestServer::start(|c| c.head_timeout = Duration::from_millis(200));
    let raw =
        server.raw(b"POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhalf");
    assert_eq!(status_of(&raw), 408, "{raw}");
}
