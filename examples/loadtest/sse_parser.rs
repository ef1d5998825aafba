//! The load test's own SSE parser, as the HTML spec describes it ("interpreting an event
//! stream"), kept apart from the one in `tests/common/mod.rs` for speed: 10,000 clients each
//! parse every frame, so it works on bytes, hands events over by reference, and allocates
//! nothing per event. It keeps only what the load test measures (ticks, and messages with their
//! id). `tests/parsers_agree.rs` feeds both parsers the same bytes and checks they agree.

/// What the parser hands over when a blank line ends an event.
pub enum Event<'a> {
    Tick,
    /// The default event type, `message`: a broadcast, with its data and the last event id.
    Message {
        data: &'a [u8],
        id: Option<u64>,
    },
}

#[derive(Default)]
pub struct SseParser {
    /// The line read so far: a `read` may end in the middle of one.
    line: Vec<u8>,
    /// The previous byte was CR, so an LF now only completes a CRLF.
    after_cr: bool,
    event_type: Vec<u8>,
    data: Vec<u8>,
    /// The spec's "last event ID": it outlives the event that set it, as in a browser.
    last_event_id: Option<u64>,
}

impl SseParser {
    /// Splits the bytes into lines (ended by CRLF, LF or CR) and processes each complete one.
    pub fn feed(&mut self, bytes: &[u8], on_event: &mut impl FnMut(Event)) {
        for &byte in bytes {
            if byte == b'\n' && self.after_cr {
                self.after_cr = false;
            } else if byte == b'\n' || byte == b'\r' {
                self.after_cr = byte == b'\r';
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, on_event);
                self.line = line; // keep the allocation for the next line
                self.line.clear();
            } else {
                self.after_cr = false;
                self.line.push(byte);
            }
        }
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event)) {
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        // `field: value`, minus one space after the colon. A line without a colon is a field
        // with an empty value; one that starts with a colon is a comment (an empty field name).
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => self.event_type = value.to_vec(),
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" => {
                let id = std::str::from_utf8(value).ok();
                self.last_event_id = id.and_then(|id| id.parse().ok());
            }
            _ => {} // `retry`, comments and unknown fields: nothing to measure
        }
    }

    /// The blank line. An event without data fires nothing (the `retry:` frame is one of those).
    fn dispatch(&mut self, on_event: &mut impl FnMut(Event)) {
        if !self.data.is_empty() {
            self.data.pop(); // the spec drops the LF after the last data line
            match self.event_type.as_slice() {
                b"tick" => on_event(Event::Tick),
                b"" | b"message" => {
                    let (data, id) = (&self.data[..], self.last_event_id);
                    on_event(Event::Message { data, id });
                }
                _ => {}
            }
        }
        self.data.clear();
        self.event_type.clear();
    }
}
