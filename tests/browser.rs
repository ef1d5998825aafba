//! The page in a real browser: headless Chromium loads `/`, and the test reads the page's DOM
//! while the server broadcasts. It checks what no socket-level test can: that the browser's own
//! `EventSource` opens, that broadcasts and ticks reach the page, that a message full of HTML
//! shows as text and runs nothing, that the raw-wire panel shows the frames, and that after
//! "Drop every connection" the browser reconnects by itself with `Last-Event-ID` and the page
//! shows the message sent during the gap once, marked as replayed. A second test types into the
//! Lab panel as a person would (Enter is an LF, except after a `\n` or `\r` escape) and reads
//! what the page says about each run's end.
//!
//! How it drives the browser: Chromium started with `--remote-debugging-port=0` serves the
//! DevTools protocol (CDP): JSON messages over a WebSocket. `{"id":1,"method":"Runtime.evaluate",
//! "params":{...}}` goes out; `{"id":1,"result":{...}}` comes back, among events we ignore
//! (`tests/common/cdp.rs`). The WebSocket client under it is written with std only
//! (`tests/common/websocket.rs`), as a companion to the SSE code: both are long-lived messages
//! over one HTTP/1.1 connection, framed differently.
//!
//! No Chromium installed: the test prints why and passes, except under CI (`CI=true`), where it
//! fails. `CHROMIUM=/path/to/binary` picks another binary (one that is not an executable file =
//! not installed, to try the skip).

mod common;

use std::time::Duration;

use common::cdp::{attempt, Cdp, Chromium, WAIT};
use common::json::{json_string, json_string_field, Json};
use common::lab::page_presets;
use common::tools::{find_tool, tools_or_skip};
use common::websocket::{base64_decode, base64_encode, sha1, WS_GUID};
use common::{json_number, TestServer, PROMPTLY};
use sse_server::sse::OPENING_COMMENT;

/// The message whose HTML must stay text: if the page used `innerHTML`, this would create an
/// `<img>`, fail to load `x`, and run its `onerror`.
const XSS: &str = "<img src=x onerror=document.title='XSS'>";

#[test]
fn page_in_headless_chromium_shows_stream_messages_and_raw_wire() {
    let Some([binary]) = tools_or_skip(["chromium"], find_tool) else {
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
    // The form's "Sent as" line counted clients before the drop: it now says so.
    let stale = page.eval("$('sent').textContent");
    assert!(
        stale.starts_with("Sent as #") && stale.contains("before the connection went connecting"),
        "{stale:?}"
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

/// Types `text` into the focused element as a person would: characters as text input, each
/// line break as a press of Enter.
fn type_text(page: &mut Cdp, text: &str) {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            for kind in ["keyDown", "keyUp"] {
                page.call(
                    "Input.dispatchKeyEvent",
                    &format!(
                        "{{\"type\":\"{kind}\",\"key\":\"Enter\",\"code\":\"Enter\",\
                         \"windowsVirtualKeyCode\":13,\"text\":\"\\r\"}}"
                    ),
                );
            }
        }
        if !line.is_empty() {
            page.call(
                "Input.insertText",
                &format!("{{\"text\":{}}}", json_string(line)),
            );
        }
    }
}

/// Empties the Lab's Bytes box and gives it the focus, ready for [`type_text`].
fn clear_lab_box(page: &mut Cdp) {
    page.eval("(() => { $('lab-bytes').focus(); $('lab-bytes').select(); return ''; })()");
    page.call(
        "Input.dispatchKeyEvent",
        r#"{"type":"keyDown","key":"Delete","code":"Delete","windowsVirtualKeyCode":46}"#,
    );
}

/// Chooses `id` in the Lab's menu and presses Run, as a person would; waits for the run's end.
fn run_lab_preset(page: &mut Cdp, id: &str) {
    page.eval(&format!(
        "(() => {{ $('lab-preset').value = {}; \
         $('lab-preset').dispatchEvent(new Event('change')); $('lab-run').click(); return ''; }})()",
        json_string(id)
    ));
    page.wait_until(
        &format!("the {id} run to end"),
        &format!(
            "window.labResult.preset === {} && window.labResult.done",
            json_string(id)
        ),
    );
}

/// Sets the window to `width`×`height` CSS pixels, as a phone or a laptop shows the page.
fn viewport(page: &mut Cdp, width: u32, height: u32) {
    page.call(
        "Emulation.setDeviceMetricsOverride",
        &format!(
            "{{\"width\":{width},\"height\":{height},\"deviceScaleFactor\":1,\"mobile\":false}}"
        ),
    );
}

#[test]
fn the_lab_reads_typed_bytes_and_says_what_each_end_means() {
    let Some([binary]) = tools_or_skip(["chromium"], find_tool) else {
        return;
    };
    let server = TestServer::with_interval(200);
    let browser = Chromium::launch(&binary);
    let mut page = browser.page();
    viewport(&mut page, 1280, 800);
    page.call(
        "Page.navigate",
        &format!("{{\"url\":{}}}", json_string(&server.url("/#lab"))),
    );
    page.wait_until(
        "the first preset in the Lab",
        "$('lab-size').textContent.endsWith(' bytes.')",
    );

    // A preset's layout (a line break after each \n or \r) adds no byte: the page sends what
    // index.html's preset line says.
    let decoded = page.eval("JSON.stringify(LAB_PRESETS.map((p) => labBytes(labLayout(p[1]))))");
    let decoded = Json::parse(&decoded).expect("JSON");
    for (preset, bytes) in page_presets().iter().zip(decoded.as_array()) {
        let bytes: Vec<u8> = bytes
            .as_array()
            .iter()
            .map(|b| b.as_f64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, preset.bytes, "{}", preset.id);
    }

    // Every preset has a readable label in the menu, its id beside it.
    assert_eq!(
        page.eval("LAB_PRESETS.filter(([id]) => !LAB_LABELS[id]).map(([id]) => id).join(' ')"),
        ""
    );
    assert_eq!(
        page.eval("$('lab-preset').selectedOptions[0].textContent"),
        "One leading BOM is stripped (bom)"
    );

    // Typed with Enter, a line break is an LF: the stream below is a complete frame.
    let typed = "retry: 200\ndata: typed with Enter\n\n";
    clear_lab_box(&mut page);
    type_text(&mut page, typed);
    assert_eq!(
        page.eval("$('lab-size').textContent"),
        format!("{} bytes.", typed.len())
    );
    // Edited by hand, the run is no longer a preset: the menu says so, the description goes.
    assert_eq!(
        page.eval("$('lab-preset').selectedOptions[0].textContent"),
        "(your own bytes)"
    );
    assert_eq!(page.eval("$('lab-about').textContent"), "");
    page.eval("$('lab-run').click()");
    page.wait_until("the typed run to end", "window.labResult.done");
    let fired = page.eval("JSON.stringify(window.labResult.events.map((e) => e.data || e.kind))");
    assert!(fired.contains("\"typed with Enter\""), "{fired}");
    // The stream's end (error, CONNECTING) is not shown as a failure; only CLOSED is red.
    let errors = page.eval(
        "[...$('lab-log').querySelectorAll('li.error')]\
         .map((li) => li.classList.contains('reconnecting')).join(' ')",
    );
    assert!(
        errors.starts_with("true") && errors.ends_with("true false"),
        "{errors:?}"
    );
    let report = page.eval("$('lab-log').querySelector('li.reconnect .report').textContent");
    assert!(
        report.starts_with("This browser reconnected by itself"),
        "{report:?}"
    );
    let typed_shot = page.screenshot("lab-typed-1280.png");

    // A line break typed right after a \n or \r escape is only for reading, as in the presets.
    clear_lab_box(&mut page);
    type_text(&mut page, "data: x\\r\\n\n\\n\nmore");
    assert_eq!(
        page.eval("JSON.stringify(labBytes($('lab-bytes').value))"),
        format!("{:?}", b"data: x\r\n\nmore").replace(' ', "")
    );
    let lone = page.eval(
        r"(() => { try { labBytes('a\\'); return 'no error'; } catch (e) { return e.message; } })()",
    );
    assert!(
        lone.starts_with("A lone backslash (line 1, column 2)"),
        "{lone:?}"
    );

    // A backslash that starts no escape: an error beside Run, and no run.
    let url_before = page.eval("window.labResult.url");
    clear_lab_box(&mut page);
    type_text(&mut page, "retry: 100\ndata: a\\tb\n\n");
    let error = page.eval("$('lab-error').textContent");
    assert!(
        error.starts_with("Unknown escape \\t (line 2, column 8)"),
        "{error:?}"
    );
    page.eval("$('lab-run').click()");
    assert!(page
        .eval("$('lab-error').textContent")
        .starts_with("Not run."));
    assert_eq!(page.eval("window.labResult.url"), url_before);
    let error_shot = page.screenshot("lab-bad-escape-1280.png");
    viewport(&mut page, 390, 844);
    let phone_error_shot = page.screenshot("lab-bad-escape-390.png");
    viewport(&mut page, 1280, 800);

    // CLOSED says that EventSource gives no reason, and names the likely one from the run.
    for (id, reason) in [
        ("status-500", "status 500"),
        ("wrong-type", "Content-Type text/plain"),
        ("charset-latin1", "charset=iso-8859-1"),
    ] {
        run_lab_preset(&mut page, id);
        let note = page.eval("$('lab-log').lastElementChild.textContent");
        assert!(
            note.contains("EventSource never tells the page why") && note.contains(reason),
            "{id}: {note:?}"
        );
    }
    let type_shot = page.screenshot("lab-charset-1280.png");
    viewport(&mut page, 390, 844);
    let phone_shot = page.screenshot("lab-charset-390.png");
    run_lab_preset(&mut page, "id-stays");
    let phone_reconnect_shot = page.screenshot("lab-reconnect-390.png");
    eprintln!("screenshots:");
    for shot in [
        typed_shot,
        error_shot,
        phone_error_shot,
        type_shot,
        phone_shot,
        phone_reconnect_shot,
    ] {
        eprintln!("  {}", shot.display());
    }
}

/// The page's own waits: on timeout, the panic shows what the page shows.
trait WaitForPage {
    fn wait_until(&mut self, what: &str, condition: &str);
}

impl WaitForPage for Cdp {
    /// Polls `condition` (a JS boolean expression) until it is true; panics after [`WAIT`].
    fn wait_until(&mut self, what: &str, condition: &str) {
        if let Err(last) = self.try_wait_until(condition) {
            let page = self.eval(&attempt(
                "`state ${$('state').textContent}, tick ${$('tick').textContent}, \
                 raw ${$('raw-state').textContent} ${$('raw-detail').textContent}, \
                 messages ${$('messages').innerText}`",
            ));
            panic!("waited {WAIT:?} for {what}: {condition} is {last}; the page: {page}");
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
    // A whole document, as BiDi answers: nested objects and arrays, numbers, a lone surrogate.
    let doc = Json::parse(r#" {"id": 3, "result": {"ok": [true, null, -1.5e2, "\ud800x"]}} "#)
        .expect("JSON");
    assert_eq!(doc.at("id"), Some(&Json::Num(3.0)));
    assert_eq!(
        doc.at("result.ok").unwrap().as_array(),
        [
            Json::Bool(true),
            Json::Null,
            Json::Num(-150.0),
            Json::Str("\u{FFFD}x".into())
        ]
    );
    assert_eq!(Json::parse("{} x"), None);
    assert_eq!(Json::parse(r#"{"a" 1}"#), None);
}
