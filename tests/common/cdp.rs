//! Headless Chromium driven over the DevTools protocol (CDP): JSON messages over a WebSocket.
//! `{"id":1,"method":"Runtime.evaluate","params":{...}}` goes out; `{"id":1,"result":{...}}`
//! comes back, among events we ignore. Started with `--remote-debugging-port=0`, Chromium
//! prints the browser's WebSocket address on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::json::{json_string, json_string_field, Json};
use super::websocket::{base64_decode, listening_address, WebSocket};
use super::PROMPTLY;

/// How long a command may take to answer, and the browser to start.
pub const WAIT: Duration = Duration::from_secs(10);

/// A headless Chromium with a fresh profile; dropping it ends the browser and removes the profile.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    /// `ws://127.0.0.1:PORT/devtools/browser/ID`: the browser's own DevTools endpoint.
    browser_ws: String,
    devtools_port: u16,
    /// What it calls itself, e.g. `Chrome/156.0.8078.79`.
    pub version: String,
}

impl Chromium {
    pub fn launch(binary: &Path) -> Chromium {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let profile =
            std::env::temp_dir().join(format!("sse-chromium-{}-{nanos}", std::process::id()));
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
                // Loopback only: anything else goes to a proxy on the discard port, where nothing
                // listens (Chromium never sends loopback requests through a proxy).
                "--proxy-server=http://127.0.0.1:9",
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
        // stderr.
        let url = listening_address(&mut browser.child, "DevTools listening on ", WAIT);
        let port = url.split('/').nth(2).and_then(|a| a.rsplit(':').next());
        browser.devtools_port = port.and_then(|p| p.parse().ok()).expect("a DevTools port");
        browser.browser_ws = url;
        let (_, _, version) = super::get(&browser.http("/json/version"));
        browser.version = json_string_field(&version, "Browser").unwrap_or_default();
        browser
    }

    fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.devtools_port, path)
    }

    /// A DevTools connection to the tab (the `about:blank` page it opened with).
    pub fn page(&self) -> Cdp {
        let deadline = Instant::now() + WAIT;
        loop {
            // /json/list: one flat JSON object per target; we want the one of type "page".
            let (_, _, list) = super::get(&self.http("/json/list"));
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

    /// A new tab showing `url`, and a DevTools connection to it.
    pub fn new_tab(&self, url: &str) -> Cdp {
        let mut browser = Cdp::connect(&self.browser_ws);
        let created = browser.call(
            "Target.createTarget",
            &format!("{{\"url\":{}}}", json_string(url)),
        );
        let target = json_string_field(&created, "targetId").expect("a targetId");
        Cdp::connect(&format!(
            "ws://127.0.0.1:{}/devtools/page/{target}",
            self.devtools_port
        ))
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
pub struct Cdp {
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
    pub fn call(&mut self, method: &str, params: &str) -> String {
        let id = self.send(method, params);
        self.response(id, method, Instant::now() + WAIT)
    }

    /// Sends one command; its id, for [`Cdp::response`].
    fn send(&mut self, method: &str, params: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let request = format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}");
        self.ws.send_text(&request).expect("send to DevTools");
        id
    }

    /// The response to command `id`, by `deadline`.
    fn response(&mut self, id: u64, method: &str, deadline: Instant) -> String {
        // Chromium writes `id` first in a response; events have a `method` and no `id`.
        let start = format!("{{\"id\":{id},");
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
    pub fn eval(&mut self, expression: &str) -> String {
        let js = format!(
            "(() => {{ const $ = (id) => document.getElementById(id); \
             return String({expression}); }})()"
        );
        let params = format!(
            "{{\"expression\":{},\"returnByValue\":true}}",
            json_string(&js)
        );
        let response = self.call("Runtime.evaluate", &params);
        string_value(&response, expression)
    }

    /// Starts `expression` (a promise of a string) in the page; [`Cdp::awaited`] collects it.
    /// Several pages can run theirs at once.
    pub fn start_async(&mut self, expression: &str) -> u64 {
        let params = format!(
            "{{\"expression\":{},\"awaitPromise\":true,\"returnByValue\":true}}",
            json_string(expression)
        );
        self.send("Runtime.evaluate", &params)
    }

    /// The string a [`Cdp::start_async`] promise resolved to, by `deadline`.
    pub fn awaited(&mut self, id: u64, deadline: Instant) -> String {
        let response = self.response(id, "Runtime.evaluate", deadline);
        string_value(&response, "the script")
    }

    /// Polls `condition` (a JS boolean expression) until it is true, or [`WAIT`] has passed:
    /// then Err with its last value. While the page is still loading, the condition may throw;
    /// that counts as "not yet".
    pub fn try_wait_until(&mut self, condition: &str) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = self.eval(&attempt(condition));
            if last == "true" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the whole page (not only the window) as `name` under the target directory
    /// and returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
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

/// `expression`, or what it threw, as an expression that never throws.
pub fn attempt(expression: &str) -> String {
    format!("(() => {{ try {{ return {expression}; }} catch (e) {{ return e; }} }})()")
}

/// `{"id":N,"result":{"result":{"type":"string","value":"..."}}}`: the value; panics with the
/// exception if `what` threw.
fn string_value(response: &str, what: &str) -> String {
    let json = Json::parse(response).unwrap_or_else(|| panic!("not JSON: {response}"));
    assert!(
        json.at("result.exceptionDetails").is_none(),
        "{what} threw: {response}"
    );
    match json.at("result.result.value") {
        Some(Json::Str(value)) => value.clone(),
        _ => panic!("no string value in {response}"),
    }
}
