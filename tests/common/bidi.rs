//! Headless Firefox driven over WebDriver BiDi (the W3C's protocol for browsers; Firefox ESR
//! serves it when started with `--remote-debugging-port`). Like Chromium's DevTools protocol it
//! is JSON over a WebSocket: `{"id":1,"method":"script.evaluate","params":{...}}` goes out;
//! `{"type":"success","id":1,"result":{...}}` (or `"type":"error"`) comes back, among
//! `"type":"event"` messages we never subscribe to.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::json::{json_string, Json};
use super::tools::TempDir;
use super::websocket::{listening_address, WebSocket};
use super::PROMPTLY;

/// How long a command may take to answer, and the browser to start (Firefox starts slower
/// than Chromium).
pub const WAIT: Duration = Duration::from_secs(20);

/// The profile's `user.js`: preferences read at start. Firefox may talk to loopback only: every
/// other request goes to a proxy on the discard port, where nothing listens (Firefox never
/// proxies loopback), every host name resolves to 127.0.0.1 without asking DNS, and the services
/// that would call home are off. (Checked with `ss -tunp` during a run: no other address.)
const USER_JS: &str = r#"
user_pref("network.proxy.type", 1);
user_pref("network.proxy.http", "127.0.0.1");
user_pref("network.proxy.http_port", 9);
user_pref("network.proxy.ssl", "127.0.0.1");
user_pref("network.proxy.ssl_port", 9);
user_pref("network.proxy.allow_hijacking_localhost", false);
user_pref("network.trr.mode", 5);
user_pref("network.dns.forceResolve", "127.0.0.1");
user_pref("network.dns.native_https_query", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.prefetch-next", false);
user_pref("network.http.speculative-parallel-limit", 0);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("app.update.disabledForTesting", true);
user_pref("app.normandy.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("browser.search.update", false);
user_pref("browser.region.update.enabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.server", "");
user_pref("extensions.update.enabled", false);
user_pref("extensions.blocklist.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("services.settings.server", "http://127.0.0.1:9/");
user_pref("messaging-system.rsexperimentloader.enabled", false);
user_pref("media.gmp-manager.url", "");
user_pref("geo.provider.network.url", "");
user_pref("remote.active-protocols", 1);
"#;

/// A headless Firefox with a fresh profile; dropping it ends the browser and removes the profile.
pub struct Firefox {
    child: Child,
    /// Removed after the browser has ended (the field order makes sure of it).
    _profile: TempDir,
    bidi: Option<Bidi>,
    /// What it calls itself, e.g. `firefox 128.14.0`.
    pub version: String,
}

impl Firefox {
    pub fn launch(binary: &Path) -> Firefox {
        let profile = TempDir::new();
        std::fs::write(profile.0.join("user.js"), USER_JS).expect("write user.js");
        let child = Command::new(binary)
            .args(["--headless", "--no-remote", "--remote-debugging-port=0"])
            .arg("-profile")
            .arg(&profile.0)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            // Without it, release builds ignore `services.settings.server` in user.js.
            .env("MOZ_REMOTE_SETTINGS_DEVTOOLS", "1")
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));
        let mut browser = Firefox {
            child,
            _profile: profile,
            bidi: None,
            version: String::new(),
        };

        // Firefox prints `WebDriver BiDi listening on ws://127.0.0.1:PORT` on stderr.
        let address = listening_address(&mut browser.child, "WebDriver BiDi listening on ", WAIT);
        // A session is one WebSocket at `/session`; `session.new` starts it.
        let ws = WebSocket::connect(&format!("{address}/session")).expect("a BiDi WebSocket");
        let mut bidi = Bidi {
            ws,
            next_id: 1,
            early: HashMap::new(),
        };
        let session = bidi.call("session.new", r#"{"capabilities":{}}"#);
        let capability = |name: &str| {
            session
                .at(&format!("capabilities.{name}"))
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        browser.version = format!(
            "{} {}",
            capability("browserName"),
            capability("browserVersion")
        );
        browser.bidi = Some(bidi);
        browser
    }

    pub fn bidi(&mut self) -> &mut Bidi {
        self.bidi.as_mut().unwrap()
    }

    /// A new tab showing `url` (loaded); its context id.
    pub fn new_tab(&mut self, url: &str) -> String {
        let bidi = self.bidi();
        let created = bidi.call("browsingContext.create", r#"{"type":"tab"}"#);
        let context = created
            .get("context")
            .and_then(Json::as_str)
            .expect("a context")
            .to_string();
        bidi.call(
            "browsingContext.navigate",
            &format!(
                "{{\"context\":\"{context}\",\"url\":{},\"wait\":\"complete\"}}",
                json_string(url)
            ),
        );
        context
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        // `browser.close` ends the browser and its content processes. Nothing here may panic.
        if let Some(bidi) = &mut self.bidi {
            let _ = bidi
                .ws
                .send_text(r#"{"id":0,"method":"browser.close","params":{}}"#);
        }
        let deadline = Instant::now() + PROMPTLY;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill(); // still running: SIGKILL
        let _ = self.child.wait();
    }
}

/// A WebDriver BiDi session over one WebSocket.
pub struct Bidi {
    ws: WebSocket,
    next_id: u64,
    /// Responses that arrived while we waited for another one, by id.
    early: HashMap<u64, Json>,
}

impl Bidi {
    /// Sends one command and returns its result.
    pub fn call(&mut self, method: &str, params: &str) -> Json {
        let id = self.send(method, params);
        self.result(id, Instant::now() + WAIT)
    }

    /// Sends one command; its id, for [`Bidi::result`]. Several may be under way at once.
    pub fn send(&mut self, method: &str, params: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let request = format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}");
        self.ws.send_text(&request).expect("send to BiDi");
        id
    }

    /// The result of command `id`, by `deadline`; panics on an error response.
    pub fn result(&mut self, id: u64, deadline: Instant) -> Json {
        let message = loop {
            if let Some(message) = self.early.remove(&id) {
                break message;
            }
            let text = self.ws.read_text(deadline);
            let message = Json::parse(&text).unwrap_or_else(|| panic!("not JSON: {text}"));
            // Events have no id; responses to other commands wait in `early`.
            if let Some(n) = message.get("id").and_then(Json::as_f64) {
                self.early.insert(n as u64, message);
            }
        };
        assert_eq!(
            message.get("type").and_then(Json::as_str),
            Some("success"),
            "command {id} failed: {message:?}"
        );
        message.get("result").cloned().unwrap_or(Json::Null)
    }

    /// Starts `function` (a JS function declaration, possibly async) in `context` with string
    /// `arguments`; [`Bidi::string_result`] collects what it returns.
    pub fn start_call(&mut self, context: &str, function: &str, arguments: &[&str]) -> u64 {
        let arguments: Vec<String> = arguments
            .iter()
            .map(|a| format!("{{\"type\":\"string\",\"value\":{}}}", json_string(a)))
            .collect();
        let params = format!(
            "{{\"functionDeclaration\":{},\"arguments\":[{}],\"awaitPromise\":true,\
             \"target\":{{\"context\":\"{context}\"}}}}",
            json_string(function),
            arguments.join(",")
        );
        self.send("script.callFunction", &params)
    }

    /// The string a [`Bidi::start_call`] returned, by `deadline`; panics if it threw.
    pub fn string_result(&mut self, id: u64, deadline: Instant) -> String {
        let result = self.result(id, deadline);
        // {"type":"success","result":{"type":"string","value":"..."}} or {"type":"exception",...}
        assert_eq!(
            result.get("type").and_then(Json::as_str),
            Some("success"),
            "the script threw: {result:?}"
        );
        match result.at("result.value") {
            Some(Json::Str(value)) => value.clone(),
            _ => panic!("no string value in {result:?}"),
        }
    }

    /// Evaluates `expression` in `context` and returns its value as a string.
    pub fn eval(&mut self, context: &str, expression: &str) -> String {
        let function = format!("() => String({expression})");
        let id = self.start_call(context, &function, &[]);
        self.string_result(id, Instant::now() + WAIT)
    }
}
