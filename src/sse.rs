//! The SSE wire format: how an event becomes bytes (HTML spec, "Server-sent events", §9.2).
//!
//! A stream is UTF-8 text made of *frames*. A frame is a few `field: value` lines and ends with
//! a blank line:
//!
//! ```text
//! id: 7\n                 <- the browser remembers it as lastEventId, sends it back on reconnect
//! data: first line\n      <- one data line per line of the message
//! data: second line\n
//! \n                      <- blank line: "dispatch the event now"
//! ```
//!
//! The browser reads line by line; a line is `field: value`, a line starting with `:` is a comment,
//! and only the blank line makes it fire the event. So the whole safety of this module is one
//! rule: **a value we write must never contain a line break of its own**. If it did, the text after
//! the break would be read as a new field (`id:`, `event:`) or, after two breaks, end the frame
//! early. Every function here is pure (no I/O), so the tests can check the exact bytes.

/// The `Content-Type` of an event stream. The browser's `EventSource` refuses any other type
/// (and then stops for good, without reconnecting).
pub const CONTENT_TYPE: &str = "text/event-stream";

/// How long the browser should wait before reconnecting, in ms (sent once, in the first frame).
/// Without it, browsers pick their own delay (the spec leaves it to them; a few seconds is usual).
pub const RETRY_MS: u64 = 3000;

/// The event type of the timer's frames; a page listens with `addEventListener('tick', ...)`.
pub const TICK_EVENT: &str = "tick";

/// `retry: 3000\n\n`: tells the client how long to wait before reconnecting. A frame with no
/// `data` fires no event; it only sets the client's reconnection time.
pub fn retry_frame(retry_ms: u64) -> Vec<u8> {
    format!("retry: {retry_ms}\n\n").into_bytes()
}

/// The comment line a stream opens with, before `retry:`: it shows on the wire (curl, the page's
/// raw-wire panel) what a comment is, and the browser's `EventSource` fires nothing for it.
pub const OPENING_COMMENT: &str = "connected: ids count broadcasts, ticks carry none";

/// The text of the keep-alive comment (see [`KEEP_ALIVE_AFTER`]).
pub const KEEP_ALIVE_COMMENT: &str = "keep-alive";

/// After this long with nothing written to a stream, a keep-alive comment is written so that
/// proxies and load balancers with idle timeouts (nginx's `proxy_read_timeout` is 60 s; cloud
/// balancers often cut at 30–60 s) keep the connection open. With ticks every second it never
/// fires; it matters only when the tick interval is longer than this.
pub const KEEP_ALIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(15);

/// `: <text>\n`: a comment line. The spec's parser ignores any line that starts with a colon,
/// so it fires no event and changes no field; it is the way to send bytes that mean nothing,
/// such as a keep-alive. Like `event`, `text` must be a single line (it is one of our constants).
///
/// ```
/// assert_eq!(sse_server::sse::comment_line("hi"), b": hi\n");
/// ```
pub fn comment_line(text: &str) -> Vec<u8> {
    debug_assert!(!text.contains(['\r', '\n']));
    format!(": {text}\n").into_bytes()
}

/// `: keep-alive\n\n`: the comment line, then a blank line. The blank line dispatches nothing
/// (the data buffer is empty), but it leaves the client's parser at the start of a frame.
pub fn keep_alive_frame() -> Vec<u8> {
    let mut frame = comment_line(KEEP_ALIVE_COMMENT);
    frame.push(b'\n');
    frame
}

/// `event: tick\ndata: <timestamp>\n\n`: the timer's frame.
///
/// It deliberately has **no `id:` line**. The browser keeps the last id it saw and sends it back as
/// `Last-Event-ID` when it reconnects; a tick with an id would overwrite the id of the last
/// broadcast, and an empty `id:` line would reset it, so replay of missed broadcasts would break.
pub fn tick_frame(timestamp: &str) -> Vec<u8> {
    encode(Some(TICK_EVENT), None, timestamp)
}

/// `id: <n>\ndata: <line>\n...\n`: a broadcast, of the default event type (`message`, which a
/// page receives in `onmessage`).
///
/// ```
/// use sse_server::sse::message_frame;
///
/// assert_eq!(message_frame(7, "hello"), b"id: 7\ndata: hello\n\n");
/// // One data line per line of the message, whatever the line break:
/// assert_eq!(message_frame(8, "a\r\nb"), b"id: 8\ndata: a\ndata: b\n\n");
/// ```
pub fn message_frame(id: u64, message: &str) -> Vec<u8> {
    encode(None, Some(id), message)
}

/// Writes one frame: optional `event:` and `id:` lines, one `data:` line per line of `data`, and the
/// blank line that dispatches it.
///
/// `event` must be a single line (it is one of our own constants); `id` is a number, so it
/// cannot contain a line break either. Only `data` comes from users, and [`lines`] splits it at
/// every line break there is, so nothing in it can start a field or end the frame.
pub fn encode(event: Option<&str>, id: Option<u64>, data: &str) -> Vec<u8> {
    debug_assert!(event.is_none_or(|e| !e.contains(['\r', '\n'])));
    let mut frame = Vec::with_capacity(data.len() + 32);
    if let Some(event) = event {
        frame.extend_from_slice(format!("event: {event}\n").as_bytes());
    }
    if let Some(id) = id {
        frame.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    for line in lines(data) {
        // Always "data: " with the space: the client strips exactly one space after the colon,
        // so a line that itself starts with a space keeps it ("data:  x" arrives as " x").
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(line.as_bytes());
        frame.push(b'\n');
    }
    // The blank line: the client fires the event now. Without it, the event would wait.
    frame.push(b'\n');
    frame
}

/// Splits text at every line break the SSE parser knows: CRLF, a lone CR, or LF (spec: "lines
/// must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair,
/// a single U+000A LINE FEED (LF) character, or a single U+000D CARRIAGE RETURN (CR) character").
///
/// Each piece becomes its own `data:` line and the client joins them with LF, so the page sees
/// the message with its line breaks turned into LF. A trailing line break gives a last empty
/// piece; its empty `data: ` line makes the client keep that trailing LF.
///
/// ```
/// let pieces: Vec<&str> = sse_server::sse::lines("one\r\ntwo\rthree\n").collect();
/// assert_eq!(pieces, ["one", "two", "three", ""]);
/// ```
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(text)
            }
            Some(i) => {
                let after = if text[i..].starts_with("\r\n") {
                    i + 2
                } else {
                    i + 1
                };
                rest = Some(&text[after..]);
                Some(&text[..i])
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: Vec<u8>) -> String {
        String::from_utf8(frame).unwrap()
    }

    #[test]
    fn retry_frame_is_one_field_and_a_blank_line() {
        assert_eq!(text(retry_frame(3000)), "retry: 3000\n\n");
    }

    #[test]
    fn comment_line_starts_with_a_colon_and_is_one_line() {
        assert_eq!(text(comment_line(OPENING_COMMENT)).matches('\n').count(), 1);
        assert!(text(comment_line("x")).starts_with(": "));
    }

    #[test]
    fn keep_alive_is_a_comment_line_then_a_blank_line() {
        assert_eq!(text(keep_alive_frame()), ": keep-alive\n\n");
    }

    #[test]
    fn tick_frame_names_the_event_and_has_no_id() {
        assert_eq!(
            text(tick_frame("2026-11-23T16:39:34.123Z")),
            "event: tick\ndata: 2026-11-23T16:39:34.123Z\n\n"
        );
    }

    #[test]
    fn one_line_message_is_id_then_data_then_blank_line() {
        assert_eq!(text(message_frame(1, "hello")), "id: 1\ndata: hello\n\n");
    }

    #[test]
    fn lf_cr_and_crlf_each_start_a_new_data_line() {
        let expected = "id: 2\ndata: a\ndata: b\ndata: c\ndata: d\n\n";
        assert_eq!(text(message_frame(2, "a\nb\rc\r\nd")), expected);
    }

    #[test]
    fn cr_followed_by_lf_is_one_break_but_lf_cr_is_two() {
        assert_eq!(lines("a\r\nb").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(lines("a\n\rb").collect::<Vec<_>>(), ["a", "", "b"]);
    }

    #[test]
    fn trailing_line_break_gives_a_final_empty_data_line() {
        assert_eq!(
            text(message_frame(3, "hi\n")),
            "id: 3\ndata: hi\ndata: \n\n"
        );
        assert_eq!(
            text(message_frame(3, "hi\r\n")),
            "id: 3\ndata: hi\ndata: \n\n"
        );
    }

    #[test]
    fn empty_lines_inside_a_message_stay_data_lines() {
        assert_eq!(
            text(message_frame(4, "a\n\nb")),
            "id: 4\ndata: a\ndata: \ndata: b\n\n"
        );
        assert_eq!(text(message_frame(4, "")), "id: 4\ndata: \n\n");
    }

    #[test]
    fn leading_space_is_kept_after_the_one_the_client_strips() {
        assert_eq!(text(message_frame(5, " x")), "id: 5\ndata:  x\n\n");
    }

    #[test]
    fn unicode_passes_through_unchanged() {
        assert_eq!(
            text(message_frame(6, "héllo 👋\n日本")),
            "id: 6\ndata: héllo 👋\ndata: 日本\n\n"
        );
    }

    #[test]
    fn message_cannot_inject_an_event_or_id_line_or_end_the_frame() {
        let attack = "hi\n\nevent: evil\nid: 999\rretry: 1\r\n\r\ndata: x";
        let frame = text(message_frame(7, attack));
        // Every line but the first and the terminating blank is a data line.
        let body: Vec<&str> = frame.strip_suffix("\n\n").unwrap().split('\n').collect();
        assert_eq!(body[0], "id: 7");
        assert!(
            body[1..].iter().all(|l| l.starts_with("data: ")),
            "{frame:?}"
        );
        assert_eq!(body.len(), 1 + lines(attack).count());
        // And the frame ends exactly once.
        assert_eq!(frame.matches("\n\n").count(), 1);
    }
}
