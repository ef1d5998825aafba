//! The page in a real browser: headless Chromium loads `/`, and the test reads the page's DOM
//! while the server broadcasts. It checks what no socket-level test can: that the browser's own
//! `EventSource` opens, that broadcasts and ticks reach the page, that a message full of HTML
//! shows as text and runs nothing, that the raw-wire panel shows the frames, and that after
//! "Drop every connection" the browser reconnects by itself with `Last-Event-ID` and the page
//! shows the message sent during the gap once, marked as replayed.
//!
//! How it drives the browser: Chromium started with `--remote-debugging-port=0` serves the
//! DevTools protocol (CDP): JSON messages over a WebSocket. `{"id":1,"method":"Runtime.evaluate",
//! "params":{...}}` goes out; `{"id":1,"result":{...}}` comes back, among events we ignore. The
//! WebSocket client is written below with std only, as a companion to the SSE code: both are
//! long-lived messages over one HTTP/1.1 connection, framed differently.
//!
//! No Chromium installed: the test prints why and passes, except under CI (`CI=true`), where it
//! fails. `CHROMIUM=/path/to/binary` picks another binary (a path that does not exist = not
//! installed, to try the skip).

mod common;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{json_number, TestServer, PROMPTLY};
use sse_server::sse::OPENING_COMMENT;

/// How long the page may take to reach a state we wait for (page load, a message, a tick).
const WAIT: Duration = Duration::from_secs(10);

/// The message whose HTML must stay text: if the page used `innerHTML`, this would create an
/// `<img>`, fail to load `x`, and run its `onerror`.
const XSS: &str = "<img src=x onerror=document.title='XSS'>";

#[test]
fn page_in_headless_chromium_shows_stream_messages_and_raw_wire() {
    let Some(binary) = find_chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but Chromium is not installed: .ci/run must install it");
        }
        eprintln!("browser test skipped: chromium not installed (CI installs it)");
        return;
    };
    let server = TestServer::with_interval(200);
    let browser = Chromium::launch(&binary);
    let mut page = browser.page();

    // Load the page; wait until EventSource holds a stream, then start the raw panel (it starts
    // stopped, to spare the browser's six connections per server) and wait for its stream too.
    page.call(
        "Page.navigate",
        &format!("{{\"url\":{}}}", json_string(&server.url("/"))),
    );
    page.wait_until("#state to say open", "$('state').textContent === 'open'");
    server.wait_for_clients(1, PROMPTLY);
    page.eval("$('raw-toggle').click()");
    page.wait_until(
        "the raw panel to open",
        "$('raw-state').textContent === 'open'",
    );
    server.wait_for_clients(2, PROMPTLY);

    // A broadcast reaches the list, with its id as EventSource's lastEventId.
    let id = server.send("hello from the test");
    page.wait_until(
        "the broadcast in #messages",
        "$('messages').innerText.includes('hello from the test')",
    );
    let first = page.eval("$('messages').firstElementChild.innerText");
    assert!(first.starts_with(&format!("#{id}")), "{first:?}");

    // The raw panel shows the same stream as text: the retry frame, the broadcast, ticks. Each
    // line end is shown as the two characters `\n` (`\\n` in these Rust strings), then a break.
    for (what, line) in [
        ("the opening comment", format!(": {OPENING_COMMENT}\\n")),
        ("the retry frame", "retry: 3000\\n".to_string()),
        ("the broadcast's id", format!("id: {id}\\n")),
        (
            "the broadcast's data",
            "data: hello from the test\\n".to_string(),
        ),
        ("a tick", "event: tick\\n\ndata: 20".to_string()),
    ] {
        let condition = format!("$('raw').textContent.includes({})", json_string(&line));
        page.wait_until(&format!("{what} in the raw panel"), &condition);
    }

    // HTML in a message is shown as text: no element made, no handler run.
    let xss_id = server.send(XSS);
    let shown = format!(
        "$('messages').firstElementChild.querySelector('.text').textContent === {}",
        json_string(XSS)
    );
    page.wait_until("the HTML message as text", &shown);
    page.wait_until(
        "the HTML message in the raw panel",
        &format!("$('raw').textContent.includes({})", json_string(XSS)),
    );
    // An <img src=x> would have failed to load by now (loopback); give onerror time to run.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(page.eval("document.querySelectorAll('img').length"), "0");
    assert_ne!(page.eval("document.title"), "XSS");
    let first = page.eval("$('messages').firstElementChild.innerText");
    assert!(first.contains(XSS) && first.starts_with(&format!("#{xss_id}")));

    // The tick clock moves: a new RFC 3339 timestamp every 200 ms.
    let tick = page.eval("$('tick').textContent");
    assert!(tick.starts_with("20") && tick.ends_with('Z'), "{tick:?}");
    page.wait_until(
        "the tick to change",
        &format!("$('tick').textContent !== {}", json_string(&tick)),
    );
    let later_tick = page.eval("$('tick').textContent");

    // The form posts to /send; the answer counts both of this page's streams.
    page.eval(
        "(() => { $('message').value = 'sent by the form'; \
         $('send').requestSubmit(); return 'submitted'; })()",
    );
    page.wait_until(
        "the form's message in #messages",
        "$('messages').innerText.includes('sent by the form')",
    );
    page.wait_until(
        "#sent to report",
        "$('sent').textContent.startsWith('Sent as #')",
    );
    let sent = page.eval("$('sent').textContent");
    assert!(sent.ends_with("to 2 client(s) on this server."), "{sent:?}");

    // The comment line is shown as one, apart from the fields.
    assert_eq!(
        page.eval("$('raw').querySelector('.comment').textContent"),
        format!(": {OPENING_COMMENT}")
    );

    let shot = page.screenshot("browser-test-page.png");
    let messages = page.eval("$('messages').innerText");
    let newest_frames =
        page.eval("[...$('raw').children].slice(0, 3).map(f => f.textContent).join('')");

    // Stop closes the raw panel's connection (the server notices); Start opens a new one.
    page.eval("$('raw-toggle').click()");
    page.wait_until(
        "the raw panel to stop",
        "$('raw-state').textContent === 'stopped'",
    );
    server.wait_for_clients(1, PROMPTLY);
    // The stream that closed was the panel's: EventSource still gets broadcasts, the panel not.
    server.send("while the raw panel is stopped");
    page.wait_until(
        "a broadcast while the raw panel is stopped",
        "$('messages').innerText.includes('while the raw panel is stopped')",
    );
    assert_eq!(
        page.eval("$('raw').textContent.includes('while the raw panel is stopped')"),
        "false"
    );
    page.eval("$('raw-toggle').click()");
    page.wait_until(
        "the raw panel to reopen",
        "$('raw-state').textContent === 'open'",
    );
    server.wait_for_clients(2, PROMPTLY);

    // The panel keeps the newest 50 frames: after 60 broadcasts (and ticks), 50 blocks, and the
    // first broadcast is gone.
    for n in 1..=60 {
        server.send(&format!("burst {n}"));
    }
    page.wait_until(
        "the burst in the raw panel",
        r"$('raw').textContent.includes('data: burst 60\\n')",
    );
    assert_eq!(
        page.eval(r"$('raw').textContent.includes('data: burst 1\\n')"),
        "false"
    );
    assert_eq!(page.eval("$('raw').childElementCount"), "50");

    // "Drop every connection": the server closes both of this page's streams. EventSource waits
    // `retry` (3 s) and reconnects by itself with Last-Event-ID; the raw panel's fetch does not.
    let last = server.send("the last one before the drop");
    page.wait_until(
        "#last-id to show the last message's id",
        &format!("$('last-id').textContent === '{last}'"),
    );
    page.eval("$('drop').click()");
    page.wait_until(
        "#state to say connecting",
        "$('state').textContent === 'connecting'",
    );
    server.wait_for_clients(0, PROMPTLY);
    page.wait_until(
        "#dropped to report both streams",
        "$('dropped').textContent.includes('closed 2 stream(s) on this server')",
    );
    // During the gap, another connection broadcasts (as another tab would): nobody hears it live.
    let (status, answer) = common::post(&server.url("/send"), "text/plain", "sent during the gap");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        json_number(&answer, "clients"),
        0,
        "sent in the gap: {answer}"
    );
    let gap_id = json_number(&answer, "id");
    page.wait_until(
        "#state to say open again",
        "$('state').textContent === 'open'",
    );
    page.wait_until(
        "the gap's message in #messages",
        "$('messages').innerText.includes('sent during the gap')",
    );
    server.wait_for_clients(1, PROMPTLY);
    // Shown once, first, and marked as replayed.
    let copies = page.eval(
        "[...$('messages').children]\
         .filter(li => li.querySelector('.text').textContent === 'sent during the gap').length",
    );
    assert_eq!(copies, "1", "the gap's message exactly once");
    let replayed = page.eval("$('messages').firstElementChild.innerText");
    assert!(
        replayed.starts_with(&format!("#{gap_id}"))
            && replayed.ends_with("sent while you were away"),
        "{replayed:?}"
    );
    assert_eq!(
        page.eval("$('messages').firstElementChild.classList.contains('replayed')"),
        "true"
    );
    // What the page tells about the reconnection: the id the browser sent, the wait, the states.
    assert_eq!(page.eval("$('sent-id').textContent"), last.to_string());
    let replayed_count = page.eval("$('replayed').textContent");
    assert!(
        replayed_count.starts_with("1 message"),
        "{replayed_count:?}"
    );
    let wait = page.eval("$('wait').textContent");
    let seconds: f64 = wait.split(' ').next().unwrap().parse().unwrap();
    assert!(
        (2.9..9.0).contains(&seconds),
        "waited about retry: {wait:?}"
    );
    assert!(wait.contains("retry: 3000"), "{wait:?}");
    let states = page.eval(
        "[...$('state-log').children].map(li => li.querySelector('.state-name').textContent).join(' ')",
    );
    assert!(states.ends_with("open connecting open"), "{states:?}");
    let open_entry = page.eval("$('state-log').lastElementChild.textContent");
    assert!(
        open_entry.contains(&format!("Last-Event-ID: {last}")),
        "{open_entry:?}"
    );
    assert_eq!(page.eval("$('raw-state').textContent"), "closed");

    // Once the new connection has ticked, a broadcast is live: not marked.
    let tick_before = page.eval("$('tick').textContent");
    page.wait_until(
        "a tick on the new connection",
        &format!("$('tick').textContent !== {}", json_string(&tick_before)),
    );
    server.send("live after the reconnect");
    page.wait_until(
        "the live message",
        "$('messages').firstElementChild.innerText.includes('live after the reconnect')",
    );
    assert_eq!(
        page.eval("$('messages').firstElementChild.classList.contains('replayed')"),
        "false"
    );
    let reconnect_shot = page.screenshot("browser-test-reconnect.png");
    let state_log = page.eval("$('state-log').innerText");

    // What the browser showed (before the burst), for the run log.
    eprintln!("--- the page in {} ---", browser.version);
    eprintln!("state: {}", page.eval("$('state').textContent"));
    eprintln!("tick: {tick} then {later_tick}");
    eprintln!("sent: {sent}");
    eprintln!("messages:\n{messages}");
    eprintln!("raw panel, newest 3 frames:\n{newest_frames}");
    eprintln!("screenshot: {}", shot.display());
    eprintln!("after the drop, the state log:\n{state_log}");
    eprintln!("replayed: {replayed}");
    eprintln!(
        "screenshot after the reconnect: {}",
        reconnect_shot.display()
    );
}

/// `$CHROMIUM` if set (and it exists), else `/usr/bin/chromium`, else `chromium` on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(on_path)
        .map(|dir| dir.join("chromium"))
        .find(|path| path.is_file())
}

/// A headless Chromium with a fresh profile; dropping it ends the browser and removes the profile.
struct Chromium {
    child: Child,
    profile: PathBuf,
    /// `ws://127.0.0.1:PORT/devtools/browser/ID`: the browser's own DevTools endpoint.
    browser_ws: String,
    devtools_port: u16,
    /// What it calls itself, e.g. `Chrome/156.0.8078.79`.
    version: String,
}

impl Chromium {
    fn launch(binary: &Path) -> Chromium {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let profile =
            std::env::temp_dir().join(format!("sse-browser-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create the profile directory");
        let child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox", // the sandbox refuses to run as root (CI, containers)
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-crash-reporter",
                "--window-size=1280,900",
                "--remote-debugging-port=0", // any free port; Chromium prints which
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));
        // From here on, Drop cleans up, whatever fails.
        let mut browser = Chromium {
            child,
            profile,
            browser_ws: String::new(),
            devtools_port: 0,
            version: String::new(),
        };

        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/...` on
        // stderr. A thread reads stderr to its end (so a full pipe never blocks Chromium) and
        // passes the lines on; we keep them to explain a failure.
        let stderr = browser.child.stderr.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while browser.devtools_port == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.split("DevTools listening on ").nth(1) {
                        let port = url.split('/').nth(2).and_then(|a| a.rsplit(':').next());
                        browser.devtools_port = port.and_then(|p| p.parse().ok()).unwrap();
                        browser.browser_ws = url.trim().to_string();
                    }
                    seen.push(line);
                }
                Err(_) => panic!(
                    "Chromium printed no DevTools port within {WAIT:?}; its stderr:\n{}",
                    seen.join("\n")
                ),
            }
        }
        let (_, _, version) = common::get(&browser.http("/json/version"));
        browser.version = json_string_field(&version, "Browser").unwrap_or_default();
        browser
    }

    fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.devtools_port, path)
    }

    /// A DevTools connection to the tab (the `about:blank` page it opened with).
    fn page(&self) -> Cdp {
        let deadline = Instant::now() + WAIT;
        loop {
            // /json/list: one flat JSON object per target; we want the one of type "page".
            let (_, _, list) = common::get(&self.http("/json/list"));
            let page = list
                .split('}')
                .filter(|target| target.contains("\"type\": \"page\""))
                .find_map(|target| json_string_field(target, "webSocketDebuggerUrl"));
            if let Some(ws_url) = page {
                return Cdp::connect(&ws_url);
            }
            assert!(Instant::now() < deadline, "no page target in {list}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Ask it to quit (`Browser.close`): it then ends and collects its helper processes.
        // Killed outright, the browser leaves them to exit on their own, as orphans, and they may
        // still be writing to the profile when we remove it. Nothing here may panic (Drop may
        // run during a panic), hence `if let` and `let _`.
        if let Ok(mut ws) = WebSocket::connect(&self.browser_ws) {
            let _ = ws.send_text(r#"{"id":1,"method":"Browser.close"}"#);
        }
        let deadline = Instant::now() + PROMPTLY;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill(); // still running: SIGKILL
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A DevTools protocol session over one WebSocket.
struct Cdp {
    ws: WebSocket,
    next_id: u64,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        Cdp {
            ws: WebSocket::connect(ws_url).expect("a WebSocket to DevTools"),
            next_id: 1,
        }
    }

    /// Sends one command and returns its response, skipping any events that arrive first.
    fn call(&mut self, method: &str, params: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let request = format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}");
        self.ws.send_text(&request).expect("send to DevTools");
        // Chromium writes `id` first in a response; events have a `method` and no `id`.
        let start = format!("{{\"id\":{id},");
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.ws.read_text(deadline);
            if message.starts_with(&start) {
                assert!(
                    !message.contains("\"error\":{\"code\""),
                    "{method} failed: {message}"
                );
                return message;
            }
        }
    }

    /// Runs `expression` in the page and returns its value as a string. `$(id)` is
    /// `document.getElementById(id)`.
    fn eval(&mut self, expression: &str) -> String {
        let js = format!(
            "(() => {{ const $ = (id) => document.getElementById(id); \
             return String({expression}); }})()"
        );
        let params = format!(
            "{{\"expression\":{},\"returnByValue\":true}}",
            json_string(&js)
        );
        let response = self.call("Runtime.evaluate", &params);
        assert!(
            !response.contains("\"exceptionDetails\""),
            "{expression} threw: {response}"
        );
        // {"id":N,"result":{"result":{"type":"string","value":"..."}}}
        json_string_field(&response, "value")
            .unwrap_or_else(|| panic!("no string value in {response}"))
    }

    /// Polls `condition` (a JS boolean expression) until it is true; panics after [`WAIT`].
    /// While the page is still loading, the condition may throw; that counts as "not yet".
    fn wait_until(&mut self, what: &str, condition: &str) {
        let attempt = |expression: &str| {
            format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return e; }} }})()")
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let last = self.eval(&attempt(condition));
            if last == "true" {
                return;
            }
            if Instant::now() >= deadline {
                let page = self.eval(&attempt(
                    "`state ${$('state').textContent}, tick ${$('tick').textContent}, \
                     raw ${$('raw-state').textContent} ${$('raw-detail').textContent}, \
                     messages ${$('messages').innerText}`",
                ));
                panic!("waited {WAIT:?} for {what}: {condition} is {last}; the page: {page}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the whole page (not only the window) as `name` under the target directory
    /// and returns its path.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let (width, height) = (
            self.eval("document.documentElement.scrollWidth"),
            self.eval("document.documentElement.scrollHeight"),
        );
        let params = format!(
            "{{\"format\":\"png\",\"captureBeyondViewport\":true,\
             \"clip\":{{\"x\":0,\"y\":0,\"width\":{width},\"height\":{height},\"scale\":1}}}}"
        );
        let response = self.call("Page.captureScreenshot", &params);
        let png = base64_decode(&json_string_field(&response, "data").expect("screenshot data"));
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket (RFC 6455), client side, only what DevTools needs.
//
// SSE and WebSocket side by side. Both start as an HTTP/1.1 request and then keep the
// connection open to carry messages, but:
//
// |                 | SSE (`/events`)                    | WebSocket                          |
// |-----------------|------------------------------------|------------------------------------|
// | handshake       | plain GET, `200 text/event-stream` | GET with `Upgrade: websocket`,     |
// |                 |                                    | `101 Switching Protocols`          |
// | direction       | server to client only              | both ways                          |
// | framing         | text lines; a blank line ends a    | binary header per frame: opcode,   |
// |                 | frame, so data may not contain a   | length up front (7, 16 or 64 bit), |
// |                 | line break (split into `data:`s)   | so the payload can hold anything   |
// | client → server | a separate request (POST /send)    | frames masked with a random key    |
// | reconnect       | built in: `retry:`, `id:`,         | none: the application does it      |
// |                 | `Last-Event-ID`                    |                                    |
// | payload         | UTF-8 text                         | text (UTF-8) or binary             |
//
// The message "hi", server to client:
//
//   SSE        `d a t a : ␠ h i \n \n`   10 bytes of text, readable as it is
//   WebSocket  `0x81 0x02 h i`           FIN + opcode 1 (text), length 2, the payload
//
// and client to server, WebSocket only: `0x81 0x82 k1 k2 k3 k4 h^k1 i^k2` (MASK bit, key, payload
// XORed with the key).
// ---------------------------------------------------------------------------------------------

/// Appended to the client's key before hashing it, the same for every WebSocket (RFC 6455 §1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcodes: the low 4 bits of a frame's first byte.
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    /// Connects to `ws://host:port/path` and performs the opening handshake.
    fn connect(url: &str) -> io::Result<WebSocket> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or(io::Error::other("not ws://"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(WAIT))?;

        // The key is 16 random bytes, base64; the server proves it speaks WebSocket by hashing it.
        let key = base64_encode(&random_bytes::<16>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes())?;

        // Read the response head byte by byte, so no frame byte after it is swallowed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_string())
        });
        let expected = base64_encode(&sha1(format!("{key}{WS_GUID}").as_bytes()));
        if !head.starts_with("HTTP/1.1 101") || accept != Some(expected) {
            return Err(io::Error::other(format!("not a WebSocket answer: {head}")));
        }
        Ok(WebSocket { stream })
    }

    /// Sends one text message as one frame: FIN + opcode, MASK bit + length, mask key, payload.
    fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(OP_TEXT, text.as_bytes())
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        // FIN (0x80): this frame is the whole message.
        let mut frame = vec![0x80 | opcode];
        // Client frames set the MASK bit (0x80). Lengths up to 125 fit in 7 bits; 126 means
        // "a 16-bit length follows", 127 "a 64-bit length follows" (big-endian).
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // Every byte is XORed with the 4-byte key, cycling. (It stops a page's script from
        // writing bytes that a proxy could mistake for an HTTP request; not for secrecy.)
        let mask = random_bytes::<4>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)
    }

    /// Reads the next complete text message, joining continuation frames and answering pings.
    fn read_text(&mut self, deadline: Instant) -> String {
        let mut message = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no DevTools answer in time");
            self.stream.set_read_timeout(Some(left)).unwrap();
            let (fin, opcode, payload) = self.read_frame();
            match opcode {
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("UTF-8 text");
                    }
                }
                OP_PING => self.send_frame(OP_PONG, &payload).expect("answer a ping"),
                OP_PONG => {}
                OP_CLOSE => panic!("DevTools closed the WebSocket"),
                other => panic!("unknown WebSocket opcode {other}"),
            }
        }
    }

    /// One frame: (FIN bit, opcode, payload).
    fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let mut header = [0u8; 2];
        self.read(&mut header);
        let fin = header[0] & 0x80 != 0;
        let opcode = header[0] & 0x0F;
        let masked = header[1] & 0x80 != 0; // servers never mask; handled anyway
        let len = match header[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                self.read(&mut n);
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.read(&mut n);
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            self.read(&mut mask);
        }
        let mut payload = vec![0u8; usize::try_from(len).expect("a frame that fits in memory")];
        self.read(&mut payload);
        if masked {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= mask[i % 4]);
        }
        (fin, opcode, payload)
    }

    fn read(&mut self, buf: &mut [u8]) {
        self.stream
            .read_exact(buf)
            .unwrap_or_else(|err| panic!("reading from DevTools: {err}"));
    }
}

/// Bytes that differ on every call: enough for a WebSocket key and mask (not cryptography).
fn random_bytes<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        // Each RandomState is seeded differently, so its hash of nothing is a fresh number.
        let n = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        chunk.copy_from_slice(&n.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// SHA-1 (FIPS 180-4), only for the handshake's `Sec-WebSocket-Accept` check.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    // Padding: a 1 bit, zeros up to 56 bytes mod 64, then the length in bits (64-bit big-endian).
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (hi, x) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(x);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding: every 3 bytes become 4 characters of 6 bits each.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The reverse, for the screenshot (padding and anything outside the alphabet are skipped).
fn base64_decode(text: &str) -> Vec<u8> {
    let sextets: Vec<u32> = text
        .bytes()
        .filter_map(|c| BASE64.iter().position(|&b| b == c).map(|p| p as u32))
        .collect();
    let mut out = Vec::new();
    for chunk in sextets.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &s)| n | s << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Just enough JSON: quoting a string, and reading one string field back.
// ---------------------------------------------------------------------------------------------

/// `text` as a JSON string literal (also a valid JavaScript string literal).
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Control characters, and the two line separators JavaScript once refused in strings.
            c if c < ' ' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The first string value of `"field":` in `json`, unescaped.
fn json_string_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":");
    let rest = json[json.find(&key)? + key.len()..].trim_start();
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex4 = |chars: &mut std::str::Chars| {
                        u32::from_str_radix(&chars.take(4).collect::<String>(), 16).ok()
                    };
                    let first = hex4(&mut chars)?;
                    // A character outside the BMP comes as two escapes, a surrogate pair.
                    let code = if (0xD800..0xDC00).contains(&first) {
                        chars.next()?; // '\\'
                        chars.next()?; // 'u'
                        let second = hex4(&mut chars)?;
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    } else {
                        first
                    };
                    out.push(char::from_u32(code)?);
                }
                other => out.push(other), // \" \\ \/
            },
            c => out.push(c),
        }
    }
}

#[test]
fn the_hand_written_helpers_match_known_values() {
    // RFC 6455 §1.3's own example of the handshake.
    let accept = base64_encode(&sha1(
        format!("dGhlIHNhbXBsZSBub25jZQ=={WS_GUID}").as_bytes(),
    ));
    assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    assert_eq!(base64_decode("YWI="), b"ab");
    assert_eq!(
        base64_decode(&base64_encode(b"any bytes\x00\xff")),
        b"any bytes\x00\xff"
    );
    let json = format!("{{\"value\":{}}}", json_string("a\"b\\c\nd\u{1F600}<"));
    assert_eq!(
        json_string_field(&json, "value").unwrap(),
        "a\"b\\c\nd\u{1F600}<"
    );
    assert_eq!(
        json_string_field(r#"{"value":"\ud83d\ude00 \u00e9"}"#, "value").unwrap(),
        "\u{1F600} \u{e9}"
    );
}
