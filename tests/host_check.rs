//! The Host check (contract v3, DNS rebinding): a request whose `Host` names neither an IP
//! address, nor `localhost`, nor a name given with `--allowed-host` / `ALLOWED_HOSTS`, is refused
//! with 403 on every route, with a body that says how to allow it. Requests with no `Host`
//! (HTTP/1.0) are served as before.
//!
//! Every connection goes to 127.0.0.1; only the `Host` header changes, as it would for a browser
//! that looked a name up and got this machine.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;

use common::{
    json_number, read_to_close, server_command, startup_url, status_of, EventStream, TestServer,
    PROMPTLY,
};

/// A name an attacker's DNS could point at 127.0.0.1.
const REBINDING: &str = "evil.example";

fn server() -> TestServer {
    TestServer::with_interval(60_000)
}

/// `method path` sent to `addr` with `Host: host`, then `headers` (each line ending in CRLF) and
/// `body` (with its `Content-Length` when not empty): status and body of the answer.
fn ask(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    let length = match body {
        "" => String::new(),
        _ => format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        ),
    };
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{length}\r\n{body}");
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let answer = read_to_close(&mut stream);
    let answer_body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status_of(&answer), answer_body.to_string())
}

/// `GET /` with `Host: host`: the status.
fn page_status(addr: SocketAddr, host: &str) -> u16 {
    ask(addr, "GET", "/", host, "", "").0
}

#[test]
fn ip_addresses_are_served_with_or_without_a_port() {
    let server = server();
    let port = server.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        "[::1]".to_string(),
        // Students typing the address a `--host 0.0.0.0` server printed.
        format!("192.168.1.23:{port}"),
        format!("[fe80::1]:{port}"),
    ] {
        assert_eq!(page_status(server.addr, &host), 200, "Host: {host}");
    }
}

#[test]
fn localhost_is_served_in_any_case() {
    let server = server();
    let port = server.addr.port();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("LocalHost:{port}"),
        "LOCALHOST".to_string(),
    ] {
        assert_eq!(page_status(server.addr, &host), 200, "Host: {host}");
    }
}

#[test]
fn a_request_without_host_is_served_as_before() {
    let server = server();
    let answer = server.raw(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&answer), 200);
}

#[test]
fn a_rebinding_name_is_refused_on_every_route_with_how_to_allow_it() {
    let server = server();
    let host = format!("{REBINDING}:{}", server.addr.port());
    for (method, path, headers, body) in [
        ("GET", "/", "", ""),
        ("HEAD", "/", "", ""),
        ("GET", "/events", "", ""),
        ("GET", "/events", "Last-Event-ID: 0\r\n", ""),
        ("GET", "/send?message=hi", "", ""),
        ("POST", "/send", "", "hi"),
        ("POST", "/drop", "", ""),
        ("GET", "/nowhere", "", ""),
        ("DELETE", "/send", "", ""),
    ] {
        let (status, answer) = ask(server.addr, method, path, &host, headers, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        if method != "HEAD" {
            assert!(
                answer.contains(&format!("--allowed-host {REBINDING}"))
                    && answer.contains(&format!("ALLOWED_HOSTS={REBINDING}")),
                "{method} {path}: the answer says how to allow the name: {answer}"
            );
        }
    }
}

#[test]
fn a_refused_request_uses_no_id_opens_no_stream_and_drops_none() {
    let server = server();
    let mut watching = EventStream::open(server.addr, &[]);
    server.wait_for_clients(1, PROMPTLY);
    let host = format!("{REBINDING}:{}", server.addr.port());

    assert_eq!(
        ask(server.addr, "POST", "/send", &host, "", "rebind").0,
        403
    );
    assert_eq!(
        ask(server.addr, "GET", "/send?message=rebind", &host, "", "").0,
        403
    );
    assert_eq!(ask(server.addr, "POST", "/drop", &host, "", "").0, 403);
    let (status, answer) = ask(server.addr, "GET", "/events", &host, "", "");
    assert_eq!(status, 403, "{answer}");
    assert!(!answer.contains("retry:"), "no stream: {answer}");
    assert_eq!(
        server.clients(),
        1,
        "only the stream opened under an IP address"
    );

    // The stream that was open is still open, and the next broadcast is the first.
    let (status, body) = common::post(&server.url("/send"), "text/plain", "after");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_number(&body, "id"), 1, "{body}");
    let event = watching
        .next_message(PROMPTLY)
        .expect("the stream still open");
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("after", "1")
    );
}

#[test]
fn names_given_in_the_config_are_served_without_case() {
    let server = TestServer::start(|c| {
        c.interval = std::time::Duration::from_secs(60);
        c.allowed_hosts = vec!["class.example.org".to_string()];
    });
    let port = server.addr.port();
    assert_eq!(
        page_status(server.addr, &format!("class.example.org:{port}")),
        200
    );
    assert_eq!(page_status(server.addr, "Class.Example.ORG"), 200);
    assert_eq!(page_status(server.addr, "other.example.org"), 403);
    assert_eq!(
        page_status(server.addr, "class.example.org.evil.example"),
        403
    );
}

/// Starts the server binary with `args` and `env`; returns it (killed on drop) and its address.
fn start_binary(args: &[&str], env: &[(&str, &str)]) -> (Killed, SocketAddr) {
    let mut command = server_command();
    command
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("start the server binary");
    let url = startup_url(&mut child);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    (Killed(child), addr)
}

/// A server process, killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn allowed_host_flags_add_names() {
    let (_server, addr) = start_binary(
        &["--allowed-host", "a.example", "--allowed-host=b.example"],
        &[],
    );
    assert_eq!(page_status(addr, "a.example"), 200);
    assert_eq!(page_status(addr, "b.example:3000"), 200);
    assert_eq!(page_status(addr, REBINDING), 403);
}

#[test]
fn allowed_hosts_variable_adds_names_comma_separated() {
    let (_server, addr) = start_binary(&[], &[("ALLOWED_HOSTS", "a.example, b.example")]);
    assert_eq!(page_status(addr, "a.example"), 200);
    assert_eq!(page_status(addr, "b.example"), 200);
    assert_eq!(page_status(addr, REBINDING), 403);
}
