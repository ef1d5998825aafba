//! Behind a real proxy: `deploy/nginx.conf`, exactly as shipped, in front of the server, with
//! curl as the browser: TLS, HTTP/2, frames passed on at once, disconnects passed back.
//!
//! Needs `nginx`, `openssl` and `curl`. Without them each test prints "skipped" and passes,
//! except under CI (`CI=true`), where a missing tool fails it: CI installs them.
//! `NGINX=/nowhere cargo test --test proxy` shows the skip (the same works for `OPENSSL`,
//! `CURL`); a path there also picks the binary to use.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::curl::Curl;
use common::tools::{find_tool, free_port, tools_or_skip, TempDir};
use common::{json_number, TestServer, PROMPTLY};

/// Ticks this often in the tests that watch ticks: several fit in a second.
const TICK_MS: u64 = 400;

/// So long that no tick is due while a broadcast travels: what arrives first came at once.
const QUIET_TICK_MS: u64 = 5_000;

// ---------------------------------------------------------------------------------------------
// The tools: found, or skipped (passing), or missing under CI (failing).

struct Tools {
    nginx: PathBuf,
    openssl: PathBuf,
    curl: PathBuf,
}

/// The three tools, or None after printing why the test is skipped. Panics under `CI=true`.
fn tools() -> Option<Tools> {
    let [nginx, openssl, curl] = tools_or_skip(["nginx", "openssl", "curl"], find_tool)?;
    Some(Tools {
        nginx,
        openssl,
        curl,
    })
}

// ---------------------------------------------------------------------------------------------
// nginx from deploy/nginx.conf, in a scratch directory, stopped and cleaned up on drop.

/// nginx running `deploy/nginx.conf` on a free loopback port, proxying to `upstream`.
struct Nginx {
    port: u16,
    child: Child,
    binary: PathBuf,
    conf: PathBuf,
    // Declared last: dropped after `Drop::drop` has stopped nginx.
    dir: TempDir,
}

impl Nginx {
    fn start(tools: &Tools, upstream: std::net::SocketAddr) -> Nginx {
        let dir = TempDir::new();
        let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        let status = Command::new(&tools.openssl)
            .args(["req", "-x509", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl could not make a certificate");

        let port = free_port();
        let template =
            fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .expect("read deploy/nginx.conf");
        let conf_text = template
            .replace("__LISTEN_PORT__", &port.to_string())
            .replace("__UPSTREAM__", &upstream.to_string())
            .replace("__CERT__", cert.to_str().unwrap())
            .replace("__KEY__", key.to_str().unwrap())
            .replace("__RUNDIR__", dir.0.to_str().unwrap());
        assert!(
            !conf_text.contains("__"),
            "a placeholder is left:\n{conf_text}"
        );
        let conf = dir.0.join("nginx.conf");
        fs::write(&conf, conf_text).unwrap();

        let log = fs::File::create(dir.0.join("stderr.log")).unwrap();
        let child = Command::new(&tools.nginx)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nginx");
        let mut proxy = Nginx {
            port,
            child,
            binary: tools.nginx.clone(),
            conf,
            dir,
        };
        proxy.wait_until_listening();
        proxy
    }

    /// Polls the port until nginx accepts connections; panics with its log if it exits first.
    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + PROMPTLY;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// What nginx wrote to stderr, for failure messages.
    fn log(&self) -> String {
        fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// `nginx -s stop` (SIGTERM to the master, which stops its workers), then wait. SIGKILL on
    /// the master alone would leave the workers running, so it is only the last resort.
    fn drop(&mut self) {
        let _ = Command::new(&self.binary)
            .arg("-p")
            .arg(&self.dir.0)
            .arg("-c")
            .arg(&self.conf)
            .args(["-e", "stderr", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// curl as the browser (`common::curl::Curl`), and as the page's fetch.

/// curl on `url` as the tests here open it: ends after 30 s, asks for compression.
fn open_curl(tools: &Tools, url: &str) -> Curl {
    let args = [
        "--max-time",
        "30",
        "-H",
        "Accept-Encoding: gzip, deflate, br",
    ];
    Curl::open(&tools.curl, url, &args)
}

/// `POST url` with a text/plain body through curl over HTTP/2: (HTTP version, status, body).
fn curl_post(tools: &Tools, url: &str, body: &str) -> (String, u16, String) {
    curl_post_with(tools, url, body, &[])
}

/// [`curl_post`] with more curl arguments (`-H`eaders, `--http1.1`).
fn curl_post_with(tools: &Tools, url: &str, body: &str, args: &[&str]) -> (String, u16, String) {
    let text_plain = ["-H", "Content-Type: text/plain; charset=utf-8"];
    let args = [args, &text_plain, &["--data-binary", body]].concat();
    common::curl::post(&tools.curl, url, &args)
}

// ---------------------------------------------------------------------------------------------
// The tests: one statement of the contract each, as seen through nginx.

#[test]
fn events_through_nginx_negotiate_http2_and_stream_ticks() {
    let Some(tools) = tools() else { return };
    let server = TestServer::with_interval(TICK_MS);
    let proxy = Nginx::start(&tools, server.addr);
    let interval = Duration::from_millis(TICK_MS);

    let mut events = open_curl(&tools, &proxy.url("/events"));
    assert_eq!(events.status_line(), "HTTP/2 200", "{}", events.head);
    assert_eq!(
        events.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(events.header("cache-control").as_deref(), Some("no-cache"));
    // Under HTTP/2 a `connection` header is a protocol error: nginx must not pass it on.
    assert_eq!(events.header("connection"), None, "{}", events.head);
    // The client accepted gzip; the stream must come uncompressed all the same.
    assert_eq!(events.header("content-encoding"), None, "{}", events.head);

    // Two ticks, each within a few intervals of the last: passed on one by one, not buffered.
    for n in 1..=2 {
        let tick = events
            .next_event(3 * interval)
            .unwrap_or_else(|| panic!("tick {n} within 3 intervals:\n{}", proxy.log()));
        assert_eq!(tick.kind, "tick", "{tick:?}");
    }
    // The retry frame came first, and fired nothing.
    assert_eq!(events.parser.reconnection_time, Some(3000));
}

#[test]
fn broadcast_posted_through_nginx_reaches_an_http2_stream_at_once() {
    let Some(tools) = tools() else { return };
    let server = TestServer::with_interval(QUIET_TICK_MS);
    let proxy = Nginx::start(&tools, server.addr);

    let opened_at = Instant::now();
    let mut events = open_curl(&tools, &proxy.url("/events"));
    assert_eq!(events.status_line(), "HTTP/2 200", "{}", events.head);
    // The head is not held back until the first frame after it: nginx passes it on at once.
    assert!(opened_at.elapsed() < Duration::from_millis(QUIET_TICK_MS / 2));
    server.wait_for_clients(1, PROMPTLY);

    let sent_at = Instant::now();
    let (version, status, answer) = curl_post(&tools, &proxy.url("/send"), "through nginx");
    assert_eq!((version.as_str(), status), ("2", 200), "{answer}");
    assert_eq!(json_number(&answer, "id"), 1, "{answer}");
    assert_eq!(json_number(&answer, "clients"), 1, "{answer}");

    // The first event is the broadcast, long before the first tick would be due.
    let event = events
        .next_event(Duration::from_millis(QUIET_TICK_MS / 2))
        .unwrap_or_else(|| panic!("the broadcast within half an interval:\n{}", proxy.log()));
    assert_eq!(event.kind, "message", "a message, not a tick: {event:?}");
    assert_eq!(event.last_event_id, "1");
    assert_eq!(event.data, "through nginx");
    assert!(sent_at.elapsed() < Duration::from_millis(QUIET_TICK_MS / 2));
}

#[test]
fn a_client_leaving_nginx_stops_counting_at_the_server_within_two_ticks() {
    let Some(tools) = tools() else { return };
    let server = TestServer::with_interval(TICK_MS);
    let proxy = Nginx::start(&tools, server.addr);

    let mut events = open_curl(&tools, &proxy.url("/events"));
    assert_eq!(events.status_line(), "HTTP/2 200", "{}", events.head);
    server.wait_for_clients(1, PROMPTLY);
    events
        .next_event(PROMPTLY)
        .expect("a tick: the stream runs");

    // The browser goes away: nginx closes its upstream connection, and the server's next
    // writes fail.
    drop(events);
    let slack = Duration::from_secs(2);
    server.wait_for_clients(0, 2 * Duration::from_millis(TICK_MS) + slack);
}

#[test]
fn the_page_behind_nginx_may_send_and_drop_and_a_page_of_another_origin_may_not() {
    let Some(tools) = tools() else { return };
    let server = TestServer::with_interval(QUIET_TICK_MS);
    let proxy = Nginx::start(&tools, server.addr);
    // What a browser sends with the page's fetch('/send'): its own origin, https, nginx's port.
    let own = format!("Origin: https://127.0.0.1:{}", proxy.port);
    let other_port = format!("Origin: https://127.0.0.1:{}", proxy.port + 1);
    for (version, http) in [("2", "--http2"), ("1.1", "--http1.1")] {
        for path in ["/send", "/drop"] {
            let url = proxy.url(path);
            let page = ["-H", &own, "-H", "Sec-Fetch-Site: same-origin", http];
            let answer = curl_post_with(&tools, &url, "from the page", &page);
            assert_eq!(
                (answer.0.as_str(), answer.1),
                (version, 200),
                "{path} from the page over HTTP/{version} (nginx must pass the Host port): \
                 {answer:?}\n{}",
                proxy.log()
            );
            for refused in [
                ["-H", &other_port, "-H", "Sec-Fetch-Site: same-site", http],
                [
                    "-H",
                    "Origin: https://evil.example",
                    "-H",
                    "Sec-Fetch-Site: cross-site",
                    http,
                ],
                ["-H", &other_port, "-H", "X-Nothing: 1", http], // Origin alone
            ] {
                let answer = curl_post_with(&tools, &url, "forged", &refused);
                assert_eq!(answer.1, 403, "{path} with {refused:?}: {answer:?}");
            }
        }
    }
}
