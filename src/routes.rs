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
//! `/send` and `/drop` change something, so a request to them from another site's page is
//! refused with 403 (see `classroom/origin.rs`).
//!
//! Every connection carries one request; each thread runs [`handle_connection`] and ends with it.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::classroom::{lab, origin};
use crate::config::Config;
use crate::http::{self, Request, RequestError, RequestReader, Response, Status};
use crate::hub::Hub;
use crate::{stream, urlencoded};

/// The browser page, compiled into the binary so `GET /` works from any working directory.
pub const PAGE: &str = include_str!("../index.html");

/// Reads one request from a new connection and answers it: Node's `(req, res) => { ... }`.
pub fn handle_connection(stream: &Arc<TcpStream>, peer: SocketAddr, config: &Config, hub: &Hub) {
    // The whole request, head and body, must arrive within this time.
    let mut reader = RequestReader::new(stream, Instant::now() + config.head_timeout);
    let request = match reader.read_request() {
        Ok(request) => request,
        Err(err) => return http::answer_error(stream, peer, None, &err),
    };
    // Before anything changes (and before a body is read, so a refused send uses up no id).
    let changes_state = matches!(
        (request.path(), request.method.as_str()),
        ("/send", "GET" | "POST") | ("/drop", "POST")
    );
    if let Some(why) = origin::cross_site(&request).filter(|_| changes_state) {
        return http::answer_error(stream, peer, Some(&request), &RequestError::CrossSite(why));
    }
    // Node: `if (req.url === '/events') ... else if ... else { res.writeHead(404); ... }`.
    let answer = match (request.path(), request.method.as_str()) {
        ("/", "GET" | "HEAD") => Ok(serve_page()),
        ("/events", "GET") => return stream::serve_events(stream, peer, &request, hub),
        ("/send", "GET" | "POST") => send_message(&mut reader, &request, hub),
        ("/drop", "POST") => Ok(drop_streams(hub)),
        ("/lab", "GET") => return lab::serve_lab(stream, peer, &request, hub),
        ("/", _) => Err(RequestError::MethodNotAllowed { allow: "GET, HEAD" }),
        ("/events", _) => Err(RequestError::MethodNotAllowed { allow: "GET" }),
        ("/send", _) => Err(RequestError::MethodNotAllowed { allow: "GET, POST" }),
        ("/drop", _) => Err(RequestError::MethodNotAllowed { allow: "POST" }),
        ("/lab", _) => Err(RequestError::MethodNotAllowed { allow: "GET" }),
        _ => Err(RequestError::NotFound),
    };
    match answer {
        Ok(response) => http::respond(stream, &request, &response),
        Err(err) => http::answer_error(stream, peer, Some(&request), &err),
    }
}

/// `GET /`: the page (`res.writeHead(200, {'Content-Type': 'text/html'}); res.end(html)`).
pub fn serve_page() -> Response {
    Response::new(Status::OK, "text/html; charset=utf-8", PAGE)
}

/// `/send`: broadcasts one message to every `/events` client and answers
/// `{"id": <n>, "clients": <count>}`.
///
/// The message comes from `GET /send?message=...` (percent-encoded), or from a `POST` body: a
/// form (`message=...`, percent-encoded) or any other body taken verbatim as text.
///
/// # Errors
/// The body could not be read ([`RequestReader::read_body`]), or there is no message, an empty
/// one, or one that is not UTF-8.
pub fn send_message(
    reader: &mut RequestReader<'_>,
    request: &Request,
    hub: &Hub,
) -> Result<Response, RequestError> {
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
    let message = match message {
        None => return Err(RequestError::NoMessage),
        Some(bytes) if bytes.is_empty() => return Err(RequestError::EmptyMessage),
        // Event streams are UTF-8 only (the browser decodes them as UTF-8 whatever we say).
        Some(bytes) => String::from_utf8(bytes).map_err(|_| RequestError::NotUtf8)?,
    };

    let id = hub.broadcast(&message)?;
    let clients = hub.clients();
    eprintln!(
        "broadcast #{id} ({} bytes, clients: {clients})",
        message.len()
    );
    Ok(json(&format!("{{\"id\": {id}, \"clients\": {clients}}}")))
}

/// `POST /drop`: ends every open stream at once, so a class can watch the browsers reconnect by
/// themselves after `retry` ms and catch up with `Last-Event-ID`. Answers `{"dropped": <n>}`.
pub fn drop_streams(hub: &Hub) -> Response {
    let dropped = hub.drop_streams();
    eprintln!("dropped every stream ({dropped})");
    json(&format!("{{\"dropped\": {dropped}}}"))
}

/// A 200 response with a JSON body.
fn json(body: &str) -> Response {
    Response::new(Status::OK, "application/json", body)
}
