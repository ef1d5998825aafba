//! The routes, one function each, in the shape of a Node `http.createServer` handler:
//!
//! | route          | function                       | answers                                   |
//! |----------------|--------------------------------|-------------------------------------------|
//! | `GET /`        | [`serve_page`]                 | `index.html`                              |
//! | `GET /events`  | [`crate::stream::serve_events`]| the event stream, until the client leaves |
//! | `/send`        | [`send_message`]               | broadcasts a message, answers JSON        |
//! | `POST /drop`   | [`drop_streams`]               | ends every stream, answers JSON           |
//! | `GET /lab`     | `classroom/lab.rs`             | any bytes, for the page's Lab panel       |
//!
//! Every route first refuses, with 403, a request sent under a name that is not this server's
//! (DNS rebinding, see `classroom/host.rs`). `/send` and `/drop` change something, so a request
//! to them from another site's page is refused with 403 too (see `classroom/origin.rs`).
//!
//! Every connection carries one request; each thread runs [`handle_connection`] and ends with it.
//! What the application refuses, and with which status, is [`Refusal`], in one `match`.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::classroom::{host, lab, origin};
use crate::config::Config;
use crate::http::{self, Request, RequestError, RequestReader, Response, Status};
use crate::hub::{Hub, HubError};
use crate::{stream, urlencoded};

/// The browser page, compiled into the binary so `GET /` works from any working directory.
pub const PAGE: &str = include_str!("../index.html");

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Page,
    Events,
    Send,
    Drop,
    /// `GET /lab`, the classroom wing's (`classroom/lab.rs`).
    Lab,
}

/// Every route: its path, the methods it answers (the `Allow` of a 405), and what it does.
const ROUTES: [(&str, &str, Route); 5] = [
    ("/", "GET, HEAD", Route::Page),
    ("/events", "GET", Route::Events),
    ("/send", "GET, POST", Route::Send),
    ("/drop", "POST", Route::Drop),
    ("/lab", "GET", Route::Lab),
];

/// Reads one request from a new connection and answers it: Node's `(req, res) => { ... }`.
pub fn handle_connection(stream: &Arc<TcpStream>, peer: SocketAddr, config: &Config, hub: &Hub) {
    // The whole request, head and body, must arrive within this time.
    let mut reader = RequestReader::new(stream, Instant::now() + config.head_timeout);
    let request = match reader.read_request() {
        Ok(request) => request,
        Err(err) => return refuse(stream, peer, None, &Refusal::Http(err)),
    };
    // First of all, on every route: a name that is not this server's may be DNS rebinding.
    if let Some(why) = host::refusal(&request, &config.allowed_hosts) {
        return refuse(stream, peer, Some(&request), &Refusal::UnknownHost(why));
    }
    // Node: `if (req.url === '/events') ... else if ... else { res.writeHead(404); ... }`.
    let answer = match route(&request) {
        Err(refusal) => Err(refusal),
        Ok(Route::Page) => Ok(serve_page()),
        Ok(Route::Events) => match stream::serve_events(stream, peer, &request, hub) {
            Ok(()) => return, // the stream ran, and has ended
            // A browser gives up on a non-200 answer for good; the page itself retries later.
            Err(refused) => Err(Refusal::Hub(refused)),
        },
        Ok(Route::Send) => send_message(&mut reader, &request, hub),
        Ok(Route::Drop) => Ok(drop_streams(hub)),
        Ok(Route::Lab) => match lab::serve_lab(stream, peer, &request, hub) {
            Ok(()) => return,
            Err(refused) => Err(Refusal::Hub(refused)),
        },
    };
    match answer {
        Ok(response) => http::respond(stream, &request, &response),
        Err(refusal) => refuse(stream, peer, Some(&request), &refusal),
    }
}

/// The route for `request`'s path and method, or why there is none (404, 405, 403).
fn route(request: &Request) -> Result<Route, Refusal> {
    let (_, allow, route) = ROUTES
        .into_iter()
        .find(|(path, _, _)| *path == request.path())
        .ok_or(Refusal::NotFound)?;
    if !allow.split(", ").any(|method| method == request.method) {
        return Err(Refusal::MethodNotAllowed { allow });
    }
    // Before anything changes (and before a body is read, so a refused send uses up no id).
    if matches!(route, Route::Send | Route::Drop) {
        if let Some(why) = origin::cross_site(request) {
            return Err(Refusal::CrossSite(why));
        }
    }
    Ok(route)
}

/// `GET /`: the page (`res.writeHead(200, {'Content-Type': 'text/html'}); res.end(html)`).
pub fn serve_page() -> Response {
    Response::new(Status::OK, "text/html; charset=utf-8", PAGE)
}

/// `/send`: broadcasts one message to every `/events` client and answers
/// `{"id": <n>, "clients": <count>}`, the count being this server's streams (behind a balancer,
/// other instances' clients get the message too but are not counted).
///
/// The message comes from `GET /send?message=...` (percent-encoded), or from a `POST` body: a
/// form (`message=...`, percent-encoded) or any other body taken verbatim as text.
///
/// # Errors
/// The body could not be read ([`RequestReader::read_body`]), or there is no message, an empty
/// one, one that is not UTF-8, or (on `POST`) one in the query instead of the body.
pub fn send_message(
    reader: &mut RequestReader<'_>,
    request: &Request,
    hub: &Hub,
) -> Result<Response, Refusal> {
    // GET changes state here, which HTTP frowns on (GET is meant to be "safe": a link prefetcher
    // may follow it). It is kept because the contract asks for it: a broadcast from the address bar.
    let message = if request.method == "GET" {
        request
            .query()
            .and_then(|query| urlencoded::find(query.as_bytes(), "message"))
    } else {
        let body = reader.read_body(request)?;
        // The media type without parameters (`; charset=...`), compared without case.
        let is_form = request.header("content-type").is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if is_form {
            urlencoded::find(&body, "message")
        } else {
            Some(body)
        }
    };
    // `curl -X POST '/send?message=hi'`: the query is not read on POST, and the answer says so
    // rather than take it. One place per method (GET the query, POST the body, as the contract
    // says) leaves no doubt about which wins when both are there, and keeps messages out of
    // URLs, which proxies and browser histories log.
    let in_query = request
        .query()
        .is_some_and(|query| urlencoded::find(query.as_bytes(), "message").is_some());
    if request.method == "POST" && in_query && message.as_ref().is_none_or(Vec::is_empty) {
        return Err(Refusal::MessageInQuery);
    }
    let message = match message {
        None => return Err(Refusal::NoMessage),
        Some(bytes) if bytes.is_empty() => return Err(Refusal::EmptyMessage),
        // Event streams are UTF-8 only (the browser decodes them as UTF-8 whatever we say).
        Some(bytes) => String::from_utf8(bytes).map_err(|_| Refusal::NotUtf8)?,
    };

    let id = hub.broadcast(&message)?;
    let clients = hub.clients();
    eprintln!(
        "broadcast #{id} ({} bytes, clients: {clients})",
        message.len()
    );
    Ok(json(&format!("{{\"id\": {id}, \"clients\": {clients}}}")))
}

/// `POST /drop`: ends every stream open on this server at once, so a class can watch the
/// browsers reconnect by themselves after `retry` ms and catch up with `Last-Event-ID`. Answers
/// `{"dropped": <n>}` (behind a balancer, other instances keep their streams).
pub fn drop_streams(hub: &Hub) -> Response {
    let dropped = hub.drop_streams();
    eprintln!("dropped every stream ({dropped})");
    json(&format!("{{\"dropped\": {dropped}}}"))
}

/// A 200 response with a JSON body.
fn json(body: &str) -> Response {
    Response::new(Status::OK, "application/json", body)
}

/// How long a client told "503" should wait before trying again, in seconds (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;

/// Every way a request is refused, each mapped to one status and one reason in
/// [`Refusal::status_and_reason`]. The reason is the body of the error response, and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request breaks HTTP (`http.rs` says how, and with which status).
    Http(RequestError),
    /// `/send` without a message: 400.
    NoMessage,
    /// `/send` with an empty message: 400.
    EmptyMessage,
    /// `POST /send?message=...` with no message in the body: 400, saying where it goes.
    MessageInQuery,
    /// `/send` with a message that is not UTF-8 (event streams are UTF-8 only): 400.
    NotUtf8,
    /// A request from a page of another site to a route that changes state: 403, with why.
    CrossSite(&'static str),
    /// A `Host` that names none of this server's names (DNS rebinding): 403, with how to allow it.
    UnknownHost(String),
    /// No such path: 404.
    NotFound,
    /// A known path with the wrong method: 405, with the methods that would work.
    MethodNotAllowed { allow: &'static str },
    /// The hub said no: 503 (full, shutting down, or the shared log unreachable).
    Hub(HubError),
    /// As many connections as the server will hold are open: 503 from the accept loop.
    TooManyConnections,
    /// The system would not start another thread: 503 from the accept loop.
    NoThread(String),
}

impl From<RequestError> for Refusal {
    fn from(err: RequestError) -> Refusal {
        Refusal::Http(err)
    }
}

impl From<HubError> for Refusal {
    fn from(err: HubError) -> Refusal {
        Refusal::Hub(err)
    }
}

impl Refusal {
    /// The status to answer with and why, or `None` when the client is already gone.
    pub fn status_and_reason(&self) -> Option<(Status, String)> {
        let unavailable = |why: &str| (Status::SERVICE_UNAVAILABLE, why.to_string());
        Some(match self {
            Refusal::Http(err) => return err.status_and_reason(),
            Refusal::NoMessage => (
                Status::BAD_REQUEST,
                "no message: send ?message=..., a form field message=..., or a text/plain body"
                    .to_string(),
            ),
            Refusal::EmptyMessage => (Status::BAD_REQUEST, "the message is empty".to_string()),
            Refusal::NotUtf8 => (
                Status::BAD_REQUEST,
                "the message is not valid UTF-8".to_string(),
            ),
            Refusal::MessageInQuery => (
                Status::BAD_REQUEST,
                "on POST the message is the body, not the query: POST message=... as a form or \
                 the text itself, or use GET /send?message=..."
                    .to_string(),
            ),
            Refusal::CrossSite(why) => (Status::FORBIDDEN, why.to_string()),
            Refusal::UnknownHost(why) => (Status::FORBIDDEN, why.clone()),
            Refusal::NotFound => {
                let paths: Vec<&str> = ROUTES.iter().map(|(path, _, _)| *path).collect();
                let try_these = paths.join(", ");
                (Status::NOT_FOUND, format!("not found: try {try_these}"))
            }
            Refusal::MethodNotAllowed { allow } => (
                Status::METHOD_NOT_ALLOWED,
                format!("method not allowed; use {allow}"),
            ),
            Refusal::Hub(HubError::Full) => unavailable("too many clients, try again later"),
            Refusal::Hub(HubError::ShuttingDown) => unavailable("the server is shutting down"),
            Refusal::Hub(HubError::LogUnavailable) => {
                unavailable("the shared log (Redis) cannot be reached; nothing was sent, try again")
            }
            Refusal::Hub(HubError::LogUnconfirmed) => unavailable(
                "the shared log (Redis) could not confirm the message in time: it may or may not \
                 have been sent; look at the stream before sending it again",
            ),
            Refusal::TooManyConnections => unavailable("too many connections"),
            Refusal::NoThread(why) => unavailable(&format!("cannot start a thread: {why}")),
        })
    }

    /// The error response: the reason as a text body, plus the header some statuses require.
    /// `None` when the client is gone.
    pub fn response(&self) -> Option<Response> {
        let (status, reason) = self.status_and_reason()?;
        let response = Response::text(status, &reason);
        Some(match self {
            // 405 must say which methods would work (RFC 9110 §15.5.6).
            Refusal::MethodNotAllowed { allow } => response.with_header("Allow", *allow),
            // 503 may say when to come back (RFC 9110 §10.2.3); the page's own retry waits too.
            _ if status == Status::SERVICE_UNAVAILABLE => {
                response.with_header("Retry-After", RETRY_AFTER_SECS.to_string())
            }
            _ => response,
        })
    }
}

/// Answers with the refusal's response, logs it, and closes (nothing if the client is gone).
pub fn refuse(stream: &TcpStream, peer: SocketAddr, request: Option<&Request>, why: &Refusal) {
    if let Some(response) = why.response() {
        http::answer_error(stream, peer, request, &response);
    }
}
