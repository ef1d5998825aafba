//! The load test (`examples/loadtest/`) parses streams with a parser of its own, built for speed
//! (`examples/loadtest/sse_parser.rs`). Fed the same bytes, in any chunks, it must see the same
//! ticks and messages as the spec parser every other test uses (`tests/common/mod.rs`).

mod common;

#[path = "../examples/loadtest/sse_parser.rs"]
#[allow(dead_code)]
mod fast;

use common::Parser;

/// What a stream means to the load test: `tick`, or a message's data and id.
fn spec_events(bytes: &[u8], chunk: usize) -> Vec<String> {
    let mut parser = Parser::new();
    let mut seen = Vec::new();
    for piece in bytes.chunks(chunk) {
        parser.push(piece);
        while let Some(event) = parser.next_event() {
            seen.push(match event.kind.as_str() {
                "tick" => "tick".to_string(),
                _ => format!("{:?} #{}", event.data, event.last_event_id),
            });
        }
    }
    seen
}

fn fast_events(bytes: &[u8], chunk: usize) -> Vec<String> {
    let mut parser = fast::SseParser::default();
    let mut seen = Vec::new();
    for piece in bytes.chunks(chunk) {
        parser.feed(piece, &mut |event| {
            seen.push(match event {
                fast::Event::Tick => "tick".to_string(),
                fast::Event::Message { data, id } => format!(
                    "{:?} #{}",
                    String::from_utf8_lossy(data),
                    id.map_or(String::new(), |id| id.to_string())
                ),
            })
        });
    }
    seen
}

/// A stream as the server writes it, with every line ending the spec allows mixed in.
const STREAM: &str = ": connected: ids count broadcasts, ticks carry none\nretry: 3000\n\n\
    event: tick\ndata: 2026-12-03T10:00:00.000Z\n\n\
    id: 1\ndata: hello\n\n\
    id: 2\r\ndata: two\r\ndata: lines\r\n\r\n\
    : keep-alive\n\n\
    id: 3\rdata:  leading space\rdata: \r\r\
    event: tick\ndata: 2026-12-03T10:00:01.000Z\n\n\
    id: 4\ndata: héllo 👋 日本\n\n\
    data: no id line keeps the last id\n\n";

#[test]
fn both_parsers_see_the_same_events_in_any_chunks() {
    let bytes = STREAM.as_bytes();
    let whole = spec_events(bytes, bytes.len());
    assert_eq!(whole.len(), 7, "{whole:?}");
    assert_eq!(whole[3], "\" leading space\\n\" #3");
    for chunk in [1, 2, 3, 7, 64, bytes.len()] {
        assert_eq!(
            spec_events(bytes, chunk),
            whole,
            "spec parser, chunks of {chunk}"
        );
        assert_eq!(
            fast_events(bytes, chunk),
            whole,
            "fast parser, chunks of {chunk}"
        );
    }
}
