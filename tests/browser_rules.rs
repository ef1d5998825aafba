//! How a browser reads an event stream: one test per rule of the HTML spec's "interpreting an
//! event stream" (§9.2.6), each feeding bytes to the spec parser in `tests/common/mod.rs`, the
//! same parser the integration tests read the server's streams with. README.md's table "How the
//! browser reads the stream" points here, rule by rule.

mod common;

use common::{Event, Parser};
use sse_server::sse;

/// Every event a fresh parser dispatches for `bytes`.
fn events(bytes: &[u8]) -> Vec<Event> {
    Parser::new().feed(bytes)
}

/// The data of every event dispatched for `bytes`.
fn data(bytes: &[u8]) -> Vec<String> {
    events(bytes).into_iter().map(|e| e.data).collect()
}

fn event(kind: &str, data: &str, last_event_id: &str) -> Event {
    Event {
        kind: kind.to_string(),
        data: data.to_string(),
        last_event_id: last_event_id.to_string(),
    }
}

#[test]
fn a_leading_bom_is_stripped() {
    assert_eq!(data(b"\xEF\xBB\xBFdata: x\n\n"), ["x"]);
    // Split across two reads, too.
    let mut parser = Parser::new();
    assert_eq!(parser.feed(b"\xEF\xBB"), []);
    assert_eq!(parser.feed(b"\xBFdata: x\n\n"), [event("message", "x", "")]);
}

#[test]
fn only_one_leading_bom_is_stripped() {
    // The second BOM stays, so the first field is named "\u{FEFF}data": unknown, ignored.
    assert_eq!(
        data(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"),
        Vec::<String>::new()
    );
}

#[test]
fn lines_end_with_crlf_lf_or_a_lone_cr() {
    assert_eq!(
        data(b"data: a\r\ndata: b\ndata: c\rdata: d\r\n\r\n"),
        ["a\nb\nc\nd"]
    );
    assert_eq!(data(b"data: x\r\r"), ["x"]);
    assert_eq!(data(b"data: x\n\n"), ["x"]);
}

#[test]
fn a_crlf_split_across_two_reads_is_one_line_end() {
    let mut parser = Parser::new();
    assert_eq!(parser.feed(b"data: x\r"), []);
    // The LF completes the CR's line end; it is not a blank line of its own.
    assert_eq!(parser.feed(b"\n"), []);
    assert_eq!(parser.feed(b"\r\n"), [event("message", "x", "")]);
}

#[test]
fn a_line_starting_with_a_colon_is_a_comment_and_fires_nothing() {
    assert_eq!(events(b": hello\n\n"), []);
    assert_eq!(data(b": one\ndata: x\n: two\n\n"), ["x"]);
}

#[test]
fn the_opening_comment_and_the_keep_alive_fire_nothing() {
    let mut stream = sse::comment_line(sse::OPENING_COMMENT);
    stream.extend(sse::retry_frame(sse::RETRY_MS));
    stream.extend(sse::keep_alive_frame());
    stream.extend(sse::message_frame(1, "hi"));
    let mut parser = Parser::new();
    assert_eq!(parser.feed(&stream), [event("message", "hi", "1")]);
    assert_eq!(parser.reconnection_time, Some(sse::RETRY_MS));
}

#[test]
fn a_line_without_a_colon_is_a_field_name_with_an_empty_value() {
    // "data" alone is a data line with an empty value.
    assert_eq!(data(b"data\n\n"), [""]);
    assert_eq!(data(b"data\ndata\n\n"), ["\n"]);
}

#[test]
fn one_space_after_the_colon_is_stripped_and_no_more() {
    assert_eq!(data(b"data:x\n\n"), ["x"]);
    assert_eq!(data(b"data: x\n\n"), ["x"]);
    assert_eq!(data(b"data:  x\n\n"), [" x"]);
}

#[test]
fn a_trailing_space_is_kept() {
    assert_eq!(data(b"data: somedata \n\n"), ["somedata "]);
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(data(b"foo: bar\ndata: x\n\n"), ["x"]);
    assert_eq!(events(b"foo: bar\n\n"), []);
}

#[test]
fn field_names_are_case_sensitive() {
    assert_eq!(events(b"Data: x\n\n"), []);
    assert_eq!(
        events(b"Event: tick\ndata: x\n\n"),
        [event("message", "x", "")]
    );
}

#[test]
fn data_lines_are_joined_with_lf() {
    assert_eq!(data(b"data: a\ndata: b\n\n"), ["a\nb"]);
}

#[test]
fn only_the_last_lf_of_the_data_buffer_is_removed() {
    // Buffer "a\n\n\n": one LF removed, two kept.
    assert_eq!(data(b"data: a\ndata\ndata\n\n"), ["a\n\n"]);
}

#[test]
fn an_empty_data_line_fires_an_event_with_empty_data() {
    assert_eq!(events(b"data:\n\n"), [event("message", "", "")]);
}

#[test]
fn a_frame_without_a_data_line_fires_nothing() {
    assert_eq!(events(b"event: tick\n\n"), []);
    assert_eq!(events(b"retry: 3000\n\n"), []);
    assert_eq!(events(b"id: 5\n\n"), []);
}

#[test]
fn the_event_field_names_the_type_of_its_own_frame_only() {
    assert_eq!(
        events(b"event: tick\ndata: a\n\ndata: b\n\n"),
        [event("tick", "a", ""), event("message", "b", "")]
    );
}

#[test]
fn field_order_inside_a_frame_does_not_matter() {
    let one = events(b"event: e\nid: 4\ndata: x\n\n");
    assert_eq!(one, events(b"data: x\nid: 4\nevent: e\n\n"));
    assert_eq!(one, [event("e", "x", "4")]);
}

#[test]
fn the_last_event_id_stays_until_another_id_line_changes_it() {
    assert_eq!(
        events(b"id: 3\ndata: a\n\ndata: b\n\n"),
        [event("message", "a", "3"), event("message", "b", "3")]
    );
}

#[test]
fn an_id_only_frame_sets_the_last_event_id_without_firing() {
    let mut parser = Parser::new();
    assert_eq!(parser.feed(b"id: 5\n\n"), []);
    assert_eq!(parser.last_event_id, "5");
    assert_eq!(parser.feed(b"data: x\n\n"), [event("message", "x", "5")]);
}

#[test]
fn an_id_containing_nul_is_ignored() {
    assert_eq!(
        events(b"id: 1\ndata: a\n\nid: 2\0\ndata: b\n\n"),
        [event("message", "a", "1"), event("message", "b", "1")]
    );
}

#[test]
fn an_empty_id_resets_the_last_event_id() {
    assert_eq!(
        events(b"id: 7\ndata: a\n\nid:\ndata: b\n\n"),
        [event("message", "a", "7"), event("message", "b", "")]
    );
}

#[test]
fn retry_with_ascii_digits_sets_the_reconnection_time_at_once() {
    let mut parser = Parser::new();
    // No blank line needed: the field takes effect when its line is read.
    parser.feed(b"retry: 5000\n");
    assert_eq!(parser.reconnection_time, Some(5000));
}

#[test]
fn retry_that_is_not_only_ascii_digits_is_ignored() {
    for bad in ["3s", "2.5", "-1", "+1", " 100", "1e3", "３"] {
        let mut parser = Parser::new();
        parser.feed(format!("retry: 3000\nretry: {bad}\n").as_bytes());
        assert_eq!(parser.reconnection_time, Some(3000), "retry: {bad}");
    }
}

#[test]
fn an_empty_retry_reads_as_zero_as_firefox_does() {
    // The spec is silent on an empty value. Firefox reads 0 and raises it to its 500 ms minimum;
    // Chromium goes back to its 3000 ms default (`tests/browser_lab.rs`, preset retry-empty).
    let mut parser = Parser::new();
    parser.feed(b"retry: 500\nretry:\n");
    assert_eq!(parser.reconnection_time, Some(0));
    let mut parser = Parser::new();
    parser.feed(b"retry: 500\nretry\n");
    assert_eq!(parser.reconnection_time, Some(0));
}

#[test]
fn event_message_and_an_empty_event_reach_onmessage() {
    // Both are type `message`, the type `onmessage` listens to.
    assert_eq!(
        events(b"event: message\ndata: a\n\nevent:\ndata: b\n\n"),
        [event("message", "a", ""), event("message", "b", "")]
    );
}

#[test]
fn an_unfinished_frame_at_the_end_is_dropped() {
    let mut parser = Parser::new();
    assert_eq!(
        parser.feed(b"data: a\n\ndata: b\n"),
        [event("message", "a", "")]
    );
    parser.end();
    assert_eq!(parser.next_event(), None);
}

#[test]
fn invalid_utf8_bytes_become_replacement_characters() {
    assert_eq!(data(b"data: a\xFFb\n\n"), ["a\u{FFFD}b"]);
}

/// The message a client posts, trying to inject an event of its own.
const INJECTION: &str = "hi\n\nevent: x\ndata: y";

#[test]
fn a_naive_server_lets_a_message_inject_an_event() {
    // `res.write(`data: ${message}\n\n`)`: the message's own blank line ends the frame.
    let naive = format!("data: {INJECTION}\n\n");
    assert_eq!(
        events(naive.as_bytes()),
        [event("message", "hi", ""), event("x", "y", "")]
    );
}

#[test]
fn one_data_line_per_line_keeps_an_injection_inside_one_event() {
    let frame = sse::message_frame(1, INJECTION);
    assert_eq!(
        frame,
        b"id: 1\ndata: hi\ndata: \ndata: event: x\ndata: data: y\n\n"
    );
    assert_eq!(events(&frame), [event("message", INJECTION, "1")]);
}
