//! `GET /lab`: any bytes, read by the student's own browser.
//!
//! The exam asks "what does the browser do with these bytes?". The lab answers it without writing
//! a server: the page picks the bytes, a status and a `Content-Type`, makes a fresh run token,
//! and opens `new EventSource('/lab?bytes=...&run=...')`. A run has three acts:
//!
//! 1. The first request gets exactly those bytes, then the connection closes.
//! 2. If the browser reconnects by itself, its second request gets one `reconnect` event saying
//!    which `Last-Event-ID` it sent and how long after the first answer ended it came.
//! 3. Every later request gets 204 No Content, which makes `EventSource` give up for good.
//!
//! What the browser fires along the way is the lesson; the page shows it.
//!
//! Because the bytes come from a link, anyone can make this origin answer them: the lab only
//! serves types a browser never runs as a page, and sandboxes the answer anyway (see
//! [`check_type`]). Otherwise a link could make the server serve someone else's script
//! (reflected XSS) next to `/send` and `/drop`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::{self, Request, Response, Status};
use crate::hub::{Hub, HubError};
use crate::sse;
use crate::sync::lock;
use crate::urlencoded::{self, Plus};
use crate::wire;

/// Most bytes a run may ask for, after percent-decoding: plenty for any lesson. Beyond: 413.
/// (The request head is capped at 8 KiB, `http::MAX_HEAD_BYTES`, so bytes that need many `%XX`
/// escapes meet that limit first: 431.)
pub const MAX_LAB_BYTES: usize = 4096;
/// Longest run token: 64 characters of `[A-Za-z0-9_-]`, enough for any random id.
pub const MAX_RUN_TOKEN: usize = 64;
/// How long a run is remembered: a run lasts a few seconds on the page, so 5 minutes is ample.
/// After that its token starts a new run.
pub const RUN_KEPT: Duration = Duration::from_secs(5 * 60);
/// Most runs remembered at once, whatever their age; when full, the oldest is forgotten. A run
/// is a token and two instants (under 100 bytes), so the table stays under 50 KiB.
pub const MAX_RUNS: usize = 400;

/// The types the lab may answer with: none of them is ever shown as a page, so the bytes can
/// never run as HTML or SVG script on this origin. Each may carry parameters (`; charset=...`).
pub const ALLOWED_TYPES: [&str; 4] = [
    sse::CONTENT_TYPE,
    "text/plain",
    "application/json",
    "application/octet-stream",
];

/// The headers of every lab answer besides `Content-Type`, none taken from the query:
///
/// - `Cache-Control: no-store`: each run's answer is for that request only; nothing may keep it.
/// - `X-Content-Type-Options: nosniff`: the browser must believe our `Content-Type` and never
///   guess from the bytes that they are HTML.
/// - `Content-Security-Policy: default-src 'none'; sandbox`: should the answer be opened as a
///   document anyway, it runs no script, loads nothing, and gets an origin of its own.
/// - `Connection: close`: the body ends when the connection closes, as an event stream does.
pub const LAB_HEADERS: [(&str, &str); 4] = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
    ("Connection", "close"),
];

/// The event the second request of a run gets.
pub const RECONNECT_EVENT: &str = "reconnect";

/// What a lab request asks for, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct LabRequest {
    pub bytes: Vec<u8>,
    pub run: String,
    pub status: u16,
    pub content_type: String,
}

/// Every way a lab request can be wrong, each with its status and a reason for the page.
#[derive(Debug, PartialEq, Eq)]
pub enum LabError {
    /// No `bytes` parameter: 400.
    NoBytes,
    /// `bytes` decodes to more than [`MAX_LAB_BYTES`]: 413.
    TooManyBytes(usize),
    /// No `run`, or not 1 to [`MAX_RUN_TOKEN`] characters of `[A-Za-z0-9_-]`: 400.
    BadRun,
    /// `status` is not 200, or 201 to 599 outside 3xx: 400.
    BadStatus,
    /// `type` is not an allowed type, or could add a header: 400, with why.
    BadType(&'static str),
}

impl LabError {
    /// The answer: 400 or 413, with the reason as text.
    pub fn response(&self) -> Response {
        let (status, reason) = match self {
            LabError::NoBytes => (
                Status::BAD_REQUEST,
                "no bytes: give bytes=<percent-encoded bytes>".to_string(),
            ),
            LabError::TooManyBytes(n) => (
                Status::CONTENT_TOO_LARGE,
                format!("bytes decode to {n} bytes; the lab sends at most {MAX_LAB_BYTES}"),
            ),
            LabError::BadRun => (
                Status::BAD_REQUEST,
                format!("run must be 1 to {MAX_RUN_TOKEN} characters of A-Z a-z 0-9 _ -"),
            ),
            LabError::BadStatus => (
                Status::BAD_REQUEST,
                "status must be 200, or 201 to 599 but not 3xx".to_string(),
            ),
            LabError::BadType(why) => (Status::BAD_REQUEST, why.to_string()),
        };
        Response::text(status, &reason)
    }
}

/// Reads and checks the query of `GET /lab`. Values are percent-decoded only: a `+` stays a `+`,
/// so that the bytes are exactly what the page encoded.
///
/// # Errors
/// The first [`LabError`] found, in the order run, bytes, status, type.
pub fn parse_query(query: &[u8]) -> Result<LabRequest, LabError> {
    let param = |name| urlencoded::find_as(query, name, Plus::IsPlus);
    let run = param("run")
        .and_then(|run| String::from_utf8(run).ok())
        .filter(|run| is_run_token(run))
        .ok_or(LabError::BadRun)?;
    let bytes = param("bytes").ok_or(LabError::NoBytes)?;
    if bytes.len() > MAX_LAB_BYTES {
        return Err(LabError::TooManyBytes(bytes.len()));
    }
    let status = match param("status") {
        None => 200,
        Some(status) => check_status(&status).ok_or(LabError::BadStatus)?,
    };
    let content_type = match param("type") {
        None => sse::CONTENT_TYPE.to_string(),
        Some(content_type) => check_type(&content_type).map_err(LabError::BadType)?,
    };
    Ok(LabRequest {
        bytes,
        run,
        status,
        content_type,
    })
}

fn is_run_token(run: &str) -> bool {
    (1..=MAX_RUN_TOKEN).contains(&run.len())
        && run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Three digits: 200, or 201 to 599 except the redirects (3xx), which the browser would follow
/// instead of showing what it does with a refused stream.
fn check_status(status: &[u8]) -> Option<u16> {
    let code = wire::decimal(status).filter(|_| status.len() == 3)?;
    let code = u16::try_from(code).ok()?;
    ((200..=599).contains(&code) && !(300..=399).contains(&code)).then_some(code)
}

/// The `Content-Type` to answer with, as given, if it is safe to send.
///
/// # Errors
/// Why it is refused.
pub fn check_type(content_type: &[u8]) -> Result<String, &'static str> {
    // A CR or LF would end the header line and let the query write headers of its own (response
    // splitting); other control bytes are not allowed in a header value at all.
    if content_type.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err("type must not contain CR or LF");
    }
    if !content_type
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err("type must be printable ASCII");
    }
    // Browsers read a Content-Type with commas as a list and keep the last type in it
    // (Fetch, "extract a MIME type"): `text/plain, text/html` would be HTML.
    if content_type.contains(&b',') {
        return Err("type must be one media type, without commas");
    }
    let content_type = String::from_utf8_lossy(content_type).into_owned();
    // The media type before any `;` parameters, compared without case (RFC 9110 §8.3.1).
    let essence = content_type.split(';').next().unwrap_or_default();
    let essence = essence.trim_matches([' ', '\t']);
    if !ALLOWED_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(essence))
    {
        return Err(
            "type must be text/event-stream, text/plain, application/json or \
                    application/octet-stream, with optional parameters",
        );
    }
    Ok(content_type)
}

/// Which of its requests a run is at.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// The first: answer the bytes.
    First,
    /// The second, `after` the first answer ended: report the reconnect.
    Second { after: Duration },
    /// Any later one: 204.
    Later,
}

/// One run the lab remembers.
struct Run {
    token: String,
    started: Instant,
    /// When the first answer was written and closed (`None` while it is being written).
    first_ended: Option<Instant>,
    /// Requests seen so far.
    requests: u32,
}

/// The runs the lab remembers, oldest first: at most [`MAX_RUNS`], each for [`RUN_KEPT`].
#[derive(Default)]
pub struct Runs(VecDeque<Run>);

impl Runs {
    /// An empty table, usable in a `static`.
    pub const fn new() -> Runs {
        Runs(VecDeque::new())
    }

    /// Counts one more request of run `token` at `now` and says which one it is.
    pub fn next_turn(&mut self, token: &str, now: Instant) -> Turn {
        // Forget the runs past their time, then, if still full, the oldest.
        while self
            .0
            .front()
            .is_some_and(|run| now.duration_since(run.started) >= RUN_KEPT)
        {
            self.0.pop_front();
        }
        let Some(run) = self.0.iter_mut().find(|run| run.token == token) else {
            if self.0.len() >= MAX_RUNS {
                self.0.pop_front();
            }
            self.0.push_back(Run {
                token: token.to_string(),
                started: now,
                first_ended: None,
                requests: 1,
            });
            return Turn::First;
        };
        run.requests = run.requests.saturating_add(1);
        match run.requests {
            // A second request while the first answer is still being written is not the browser
            // reconnecting (it reconnects only after the end); it came at once, so 0 ms.
            2 => Turn::Second {
                after: run
                    .first_ended
                    .map_or(Duration::ZERO, |ended| now.saturating_duration_since(ended)),
            },
            _ => Turn::Later,
        }
    }

    /// The first answer of run `token` ended at `at`.
    pub fn first_ended(&mut self, token: &str, at: Instant) {
        if let Some(run) = self.0.iter_mut().find(|run| run.token == token) {
            run.first_ended = Some(at);
        }
    }

    /// Runs remembered now.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No run remembered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every run this process has seen, whichever server took it. (`cargo run` starts one server;
/// tests start several in one process, and give each run its own token, so runs never meet.)
static RUNS: Mutex<Runs> = Mutex::new(Runs::new());

/// `GET /lab`: checks the query, takes a place under the client cap, and answers the run's turn.
///
/// # Errors
/// The hub refused a place (full, or shutting down): the route answers 503, as for `/events`.
pub fn serve_lab(
    stream: &Arc<TcpStream>,
    peer: SocketAddr,
    request: &Request,
    hub: &Hub,
) -> Result<(), HubError> {
    let query = request.query().unwrap_or_default();
    let lab = match parse_query(query.as_bytes()) {
        Ok(lab) => lab,
        Err(err) => {
            let response = err.response();
            let Status(code, _) = response.status;
            eprintln!(
                "{peer} GET /lab: {code}: {}",
                String::from_utf8_lossy(&response.body).trim_end()
            );
            http::respond(stream, request, &response);
            return Ok(());
        }
    };
    // A lab stream is a stream like `/events`: it counts against the client cap while it lasts
    // (the hub's 503 otherwise). The place is given back when `_place` drops. It is taken before
    // the run's turn is counted, so a 503 uses up nothing (even a later request, due a 204, gets
    // the 503 when the server is full: either way the browser stops).
    let _place = hub.subscribe(None)?;
    let turn = lock(&RUNS).next_turn(&lab.run, Instant::now());
    let run = &lab.run;
    let answer = match turn {
        Turn::First => {
            eprintln!(
                "{peer} GET /lab run {run}: {} bytes, {}, {}",
                lab.bytes.len(),
                lab.status,
                lab.content_type
            );
            first_answer(&lab)
        }
        Turn::Second { after } => {
            let last_event_id = request.header("last-event-id");
            eprintln!("{peer} GET /lab run {run}: reconnected after {after:?}");
            reconnect_answer(last_event_id, after)
        }
        Turn::Later => {
            eprintln!("{peer} GET /lab run {run}: over, 204");
            // No Content-Length on a 204 (RFC 9110 §8.6), and no body.
            http::head(Status(204, "No Content"), &LAB_HEADERS[..])
        }
    };
    let _ = (&**stream).write_all(&answer);
    if turn == Turn::First {
        // Noted before the close, so the browser cannot reconnect before the end is known.
        lock(&RUNS).first_ended(run, Instant::now());
    }
    // The end of the answer: the browser sees the connection close, as when a stream drops.
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

/// The first answer of a run: the status and type asked for, the lab's headers, the bytes.
fn first_answer(lab: &LabRequest) -> Vec<u8> {
    let mut headers = vec![("Content-Type", lab.content_type.as_str())];
    headers.extend_from_slice(&LAB_HEADERS);
    let mut answer = http::head(Status(lab.status, reason_phrase(lab.status)), &headers);
    // 204 and 205 never have a body (RFC 9110 §15.3.5, §15.3.6): the bytes are left out.
    if !matches!(lab.status, 204 | 205) {
        answer.extend_from_slice(&lab.bytes);
    }
    answer
}

/// The second answer: `event: reconnect` with the `Last-Event-ID` the browser sent (a JSON
/// string, or `null` without one) and the milliseconds since the first answer ended.
fn reconnect_answer(last_event_id: Option<&str>, after: Duration) -> Vec<u8> {
    let last_event_id = last_event_id.map_or("null".to_string(), json_string);
    let data = format!(
        "{{\"last_event_id\": {last_event_id}, \"after_ms\": {}}}",
        after.as_millis()
    );
    let mut headers = vec![("Content-Type", sse::CONTENT_TYPE)];
    headers.extend_from_slice(&LAB_HEADERS);
    let mut answer = http::head(Status::OK, &headers);
    answer.extend_from_slice(&sse::encode(Some(RECONNECT_EVENT), None, &data));
    answer
}

/// `text` as a JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7);
/// U+2028 and U+2029 too, which older JavaScript refused inside a string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The reason phrase of the statuses a lesson is likely to pick; others get none, which HTTP
/// allows (`HTTP/1.1 599 `, RFC 9112 §4).
fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_percent_decoded_and_a_plus_stays_a_plus() {
        let lab = parse_query(b"bytes=data:+a%0A%00%FF%0D&run=r-1_A").unwrap();
        assert_eq!(lab.bytes, b"data:+a\n\0\xff\r");
        assert_eq!(lab.run, "r-1_A");
        assert_eq!(lab.status, 200);
        assert_eq!(lab.content_type, "text/event-stream");
    }

    #[test]
    fn each_bad_parameter_has_its_error() {
        let err = |q: &str| parse_query(q.as_bytes()).unwrap_err();
        assert_eq!(err("run=a"), LabError::NoBytes);
        assert_eq!(err("bytes=x"), LabError::BadRun);
        assert_eq!(err("bytes=x&run="), LabError::BadRun);
        assert_eq!(err("bytes=x&run=a.b"), LabError::BadRun);
        assert_eq!(
            err(&format!("bytes=x&run={}", "a".repeat(65))),
            LabError::BadRun
        );
        let over = "a".repeat(MAX_LAB_BYTES + 1);
        assert_eq!(
            err(&format!("bytes={over}&run=a")),
            LabError::TooManyBytes(4097)
        );
        for status in [
            "", "199", "300", "304", "399", "600", "2000", "0200", "abc", "+200",
        ] {
            assert_eq!(
                err(&format!("bytes=&run=a&status={status}")),
                LabError::BadStatus
            );
        }
        for bad in [
            "text/html",
            "image/svg+xml",
            "",
            "text/plain,text/html",
            "text/plain%0D%0AX:1",
        ] {
            assert!(matches!(
                err(&format!("bytes=&run=a&type={bad}")),
                LabError::BadType(_)
            ));
        }
    }

    #[test]
    fn the_four_safe_types_pass_with_their_parameters() {
        for ok in [
            "text/event-stream",
            "TEXT/Event-Stream; charset=iso-8859-1",
            "text/plain",
            "application/json;charset=utf-8",
            "application/octet-stream",
        ] {
            assert_eq!(check_type(ok.as_bytes()).as_deref(), Ok(ok));
        }
        assert_eq!(check_status(b"204"), Some(204));
        assert_eq!(check_status(b"599"), Some(599));
        let max = "a".repeat(MAX_LAB_BYTES);
        assert!(parse_query(format!("bytes={max}&run={}", "b".repeat(64)).as_bytes()).is_ok());
    }

    #[test]
    fn a_run_answers_first_then_second_then_later() {
        let mut runs = Runs::new();
        let t0 = Instant::now();
        assert_eq!(runs.next_turn("a", t0), Turn::First);
        runs.first_ended("a", t0);
        let later = t0 + Duration::from_millis(120);
        assert_eq!(
            runs.next_turn("a", later),
            Turn::Second {
                after: Duration::from_millis(120)
            }
        );
        assert_eq!(runs.next_turn("a", later), Turn::Later);
        assert_eq!(runs.next_turn("a", later), Turn::Later);
        assert_eq!(runs.next_turn("b", later), Turn::First);
    }

    #[test]
    fn a_run_is_kept_five_minutes_and_at_most_max_runs_are_kept() {
        let mut runs = Runs::new();
        let t0 = Instant::now();
        assert_eq!(runs.next_turn("a", t0), Turn::First);
        let almost = t0 + RUN_KEPT - Duration::from_millis(1);
        assert!(matches!(runs.next_turn("a", almost), Turn::Second { .. }));
        assert_eq!(runs.next_turn("a", t0 + RUN_KEPT), Turn::First, "forgotten");

        let mut runs = Runs::new();
        for i in 0..MAX_RUNS {
            runs.next_turn(&format!("r{i}"), t0);
        }
        assert_eq!(runs.len(), MAX_RUNS);
        assert_eq!(runs.next_turn("new", t0), Turn::First);
        assert_eq!(runs.len(), MAX_RUNS);
        assert_eq!(
            runs.next_turn("r0", t0),
            Turn::First,
            "the oldest was forgotten"
        );
        assert!(matches!(runs.next_turn("r2", t0), Turn::Second { .. }));
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(json_string("\t\u{1}é"), "\"\\t\\u0001é\"");
    }
}
