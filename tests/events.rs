//! `GET /events`: the stream, as the contract describes it, statement by statement.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{EventStream, TestServer, OPENING, PROMPTLY};

/// An interval so long that no tick can arrive during a test: whatever arrives came at once.
const NO_TICK_MS: u64 = 60_000;

/// Both ways of getting broadcasts to sockets (see `src/simple_fanout.rs` and `src/fanout/writers.rs`): each connection thread
/// writing its own (0 writers), and writer threads.
const FANOUT_MODES: [usize; 2] = [0, 2];

fn server_with_writers(writers: usize, interval_ms: u64) -> TestServer {
    TestServer::start(|c| {
        c.broadcast_writers = writers;
        c.interval = Duration::from_millis(interval_ms);
    })
}

#[test]
fn events_responds_200_with_the_four_stream_headers() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let events = EventStream::open(server.addr, &[]);
    assert!(
        events.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        events.head
    );
    assert_eq!(
        events.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(events.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(events.header("connection").as_deref(), Some("keep-alive"));
    assert_eq!(events.header("x-accel-buffering").as_deref(), Some("no"));
}

#[test]
fn each_request_for_the_stream_gets_new_bytes_so_it_is_sent_no_cache() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut first = EventStream::open(server.addr, &[]);
    server.send("before");
    assert_eq!(first.next_message(PROMPTLY).unwrap().data, "before");
    drop(first);
    // The same URL, asked again: a copy of the first response would replay "before" as news.
    let mut second = EventStream::open(server.addr, &[]);
    assert_eq!(second.header("cache-control").as_deref(), Some("no-cache"));
    server.send("after");
    let event = second.next_message(PROMPTLY).unwrap();
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("after", "2")
    );
}

#[test]
fn events_body_is_raw_not_chunked_and_has_no_length() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let events = EventStream::open(server.addr, &[]);
    assert_eq!(events.header("transfer-encoding"), None);
    assert_eq!(events.header("content-length"), None);
}

#[test]
fn events_headers_arrive_before_the_first_tick() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let started = Instant::now();
    let events = EventStream::open(server.addr, &[]);
    assert_eq!(events.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(NO_TICK_MS));
}

#[test]
fn stream_opens_with_one_comment_line_then_retry_3000() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    let mut first = vec![0u8; OPENING.len()];
    events.stream.read_exact(&mut first).unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), OPENING);
    assert!(OPENING.starts_with(": ") && OPENING.matches('\n').count() == 3);
}

#[test]
fn ticks_come_every_interval_as_tick_events_with_an_rfc3339_utc_time() {
    let server = TestServer::with_interval(50);
    let mut events = EventStream::open(server.addr, &[]);
    let mut times = Vec::new();
    for _ in 0..3 {
        let tick = events.next_event(PROMPTLY).expect("a tick");
        assert_eq!(tick.kind, "tick");
        times.push(tick.data);
    }
    for t in &times {
        // YYYY-MM-DDTHH:MM:SS.mmmZ
        let b = t.as_bytes();
        assert_eq!(t.len(), 24, "{t}");
        assert!(b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':');
        assert!(b[19] == b'.' && b[23] == b'Z', "{t}");
    }
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "time moves forward: {times:?}"
    );
    assert_eq!(events.parser.reconnection_time, Some(3000));
}

/// Milliseconds since midnight of an RFC 3339 time (`...T16:39:35.001Z`).
fn millis_of_day(time: &str) -> i64 {
    let clock = &time[11..23]; // HH:MM:SS.mmm
    let part = |range: std::ops::Range<usize>| clock[range].parse::<i64>().unwrap();
    ((part(0..2) * 60 + part(3..5)) * 60 + part(6..8)) * 1000 + part(9..12)
}

#[test]
fn ticks_keep_the_interval_on_average() {
    // 15 ms ticks exactly on time; 105 ms uses the 10 ms wake-up grid, and is no multiple of it.
    for (writers, (interval_ms, count)) in FANOUT_MODES
        .into_iter()
        .flat_map(|w| [(w, (15, 30)), (w, (105, 8))])
    {
        let server = server_with_writers(writers, interval_ms);
        let mut events = EventStream::open(server.addr, &[]);
        let interval = interval_ms as f64;
        // A tick written more than an interval late restarts the schedule from then, by design
        // (no burst of late ticks): a busy machine can cause that, and then the average says
        // nothing about drift. So the average is taken over a run of ticks without one.
        let mut runs = 0;
        let average = loop {
            runs += 1;
            assert!(runs <= 10, "no run of {count} ticks without a late one");
            let times: Vec<i64> = (0..count)
                .map(|_| millis_of_day(&events.next_event(PROMPTLY).expect("a tick").data))
                .collect();
            let gap = |pair: &[i64]| (pair[1] - pair[0]).rem_euclid(86_400_000) as f64;
            if times.windows(2).all(|pair| gap(pair) < 2.0 * interval) {
                let span = gap(&[times[0], times[count - 1]]);
                break span / (count - 1) as f64;
            }
        };
        // The server's own timestamps: on average one interval apart, give or take a little.
        assert!(
            (0.9 * interval..=1.25 * interval).contains(&average),
            "ticks every {average:.1} ms on average, asked for {interval_ms} (writers {writers})"
        );
    }
}

#[test]
fn the_first_tick_comes_one_interval_after_connecting() {
    for writers in FANOUT_MODES {
        let server = server_with_writers(writers, 300);
        let opened = Instant::now();
        let mut events = EventStream::open(server.addr, &[]);
        assert_eq!(events.next_event(PROMPTLY).unwrap().kind, "tick");
        let waited = opened.elapsed();
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_millis(800),
            "first tick after {waited:?} (writers {writers})"
        );
    }
}

#[test]
fn a_client_that_stops_reading_does_not_delay_the_ticks_of_others() {
    for writers in FANOUT_MODES {
        let server = TestServer::start(|c| {
            c.broadcast_writers = writers;
            c.interval = Duration::from_millis(50);
            c.write_timeout = Duration::from_secs(600);
        });
        let _stuck = EventStream::open(server.addr, &[]);
        let mut reader = EventStream::open(server.addr, &[]);
        server.wait_for_clients(2, PROMPTLY);
        // Fill every buffer between us and the stuck client; the reader takes it all in.
        let reading = thread::spawn(move || {
            while reader.next_message(PROMPTLY).map(|e| e.last_event_id) != Some("300".into()) {}
            reader
        });
        flood(&server, 300, 60 * 1024);
        let mut reader = reading.join().unwrap();
        // Now, with the stuck client's socket full, the reader's ticks still come on time.
        let started = Instant::now();
        for _ in 0..10 {
            assert_eq!(reader.next_event(PROMPTLY).unwrap().kind, "tick");
        }
        assert!(
            started.elapsed() < Duration::from_millis(10 * 50 + 400),
            "10 ticks of 50 ms took {:?} (writers {writers})",
            started.elapsed()
        );
        assert_eq!(server.clients(), 2, "the stuck client is still there");
    }
}

#[test]
fn tick_frames_are_exactly_event_and_data_with_no_id_line() {
    let server = TestServer::with_interval(30);
    let mut events = EventStream::open(server.addr, &[]);
    events.next_event(PROMPTLY).expect("a tick");
    let text = String::from_utf8(events.raw.clone()).unwrap();
    let tick = text.strip_prefix(OPENING).expect("comment and retry first");
    assert!(tick.starts_with("event: tick\ndata: 20"), "{tick:?}");
    assert!(tick.ends_with("Z\n\n"), "{tick:?}");
    assert!(!text.contains("id:"), "{text:?}");
}

#[test]
fn ticks_do_not_change_the_last_event_id() {
    let server = TestServer::with_interval(30);
    let mut events = EventStream::open(server.addr, &[]);
    server.send("one");
    assert_eq!(events.next_message(PROMPTLY).unwrap().last_event_id, "1");
    let tick = events.next_event(PROMPTLY).unwrap();
    assert_eq!(
        (tick.kind.as_str(), tick.last_event_id.as_str()),
        ("tick", "1")
    );
}

/// A broadcast sent the moment a server has started must not be missed by a writer thread that
/// had not yet run its first line (it used to start after the newest id *as it then read it*,
/// one too late, and the client, already caught up, slept until its next tick). A race, so it is
/// tried on many fresh servers; each try takes about a millisecond.
#[test]
fn the_first_broadcast_after_startup_reaches_a_stream_opened_before_it() {
    for attempt in 0..500 {
        let server = TestServer::with_interval(NO_TICK_MS);
        let mut events = EventStream::open(server.addr, &[]);
        server.send("first");
        let event = events.next_event(Duration::from_secs(2));
        assert!(
            event.is_some(),
            "attempt {attempt}: the broadcast never came"
        );
    }
}

#[test]
fn broadcast_arrives_promptly_without_waiting_for_a_tick() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    let id = server.send("hello");
    let event = events
        .next_event(PROMPTLY)
        .expect("the broadcast, long before any tick");
    assert_eq!(event.kind, "message");
    assert_eq!(event.data, "hello");
    assert_eq!(event.last_event_id, id.to_string());
}

#[test]
fn broadcast_frame_is_id_then_data_lines_with_the_default_event_type() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    server.send("a\nb");
    events.next_event(PROMPTLY).unwrap();
    let text = String::from_utf8(events.raw.clone()).unwrap();
    assert_eq!(text, format!("{OPENING}id: 1\ndata: a\ndata: b\n\n"));
}

#[test]
fn multiline_message_becomes_one_data_line_per_line() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    server.send("one\r\ntwo\rthree\nfour");
    let event = events.next_event(PROMPTLY).unwrap();
    // A spec client joins the data lines with LF: every kind of line break arrives as LF.
    assert_eq!(event.data, "one\ntwo\nthree\nfour");
    let text = String::from_utf8(events.raw.clone()).unwrap();
    assert!(
        text.contains("data: one\ndata: two\ndata: three\ndata: four\n\n"),
        "{text:?}"
    );
}

#[test]
fn trailing_newline_and_leading_space_survive_the_trip() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    server.send(" indented\n");
    assert_eq!(events.next_event(PROMPTLY).unwrap().data, " indented\n");
}

#[test]
fn message_cannot_inject_an_event_or_id_line() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    let attack = "x\n\nevent: tick\nid: 999\r\nretry: 1\r\rdata: y";
    let id = server.send(attack);
    let event = events.next_event(PROMPTLY).unwrap();
    // One event, of the default type, with the id the server gave it, and all the text as data.
    assert_eq!(event.kind, "message");
    assert_eq!(event.last_event_id, id.to_string());
    assert_eq!(event.data, "x\n\nevent: tick\nid: 999\nretry: 1\n\ndata: y");
    assert_eq!(events.parser.reconnection_time, Some(3000));
}

#[test]
fn unicode_messages_arrive_unchanged() {
    let server = TestServer::with_interval(NO_TICK_MS);
    let mut events = EventStream::open(server.addr, &[]);
    server.send("héllo 👋 日本");
    assert_eq!(events.next_event(PROMPTLY).unwrap().data, "héllo 👋 日本");
}

#[test]
fn every_client_gets_every_broadcast_in_order() {
    for writers in FANOUT_MODES {
        every_client_gets_every_broadcast_in_order_with(writers);
    }
}

fn every_client_gets_every_broadcast_in_order_with(writers: usize) {
    let server = server_with_writers(writers, NO_TICK_MS);
    let mut clients: Vec<EventStream> = (0..3)
        .map(|_| EventStream::open(server.addr, &[]))
        .collect();
    server.wait_for_clients(3, PROMPTLY);
    for m in ["m1", "m2", "m3"] {
        server.send(m);
    }
    for events in &mut clients {
        for (id, m) in [("1", "m1"), ("2", "m2"), ("3", "m3")] {
            let event = events.next_message(PROMPTLY).unwrap();
            assert_eq!((event.last_event_id.as_str(), event.data.as_str()), (id, m));
        }
    }
}

#[test]
fn last_event_id_replays_missed_broadcasts_in_order() {
    let server = TestServer::with_interval(NO_TICK_MS);
    for m in ["a", "b", "c", "d", "e"] {
        server.send(m);
    }
    let mut events = EventStream::open(server.addr, &[("Last-Event-ID", "2")]);
    for (id, m) in [("3", "c"), ("4", "d"), ("5", "e")] {
        let event = events.next_message(PROMPTLY).unwrap();
        assert_eq!((event.last_event_id.as_str(), event.data.as_str()), (id, m));
    }
    // Then live ones, continuing the sequence.
    server.send("f");
    assert_eq!(events.next_message(PROMPTLY).unwrap().last_event_id, "6");
}

#[test]
fn replay_comes_right_after_the_retry_frame() {
    let server = TestServer::with_interval(NO_TICK_MS);
    server.send("a");
    let mut events = EventStream::open(server.addr, &[("Last-Event-ID", "0")]);
    events.next_event(PROMPTLY).unwrap();
    assert_eq!(
        String::from_utf8(events.raw.clone()).unwrap(),
        format!("{OPENING}id: 1\ndata: a\n\n")
    );
}

#[test]
fn history_holds_at_least_the_last_1000_broadcasts() {
    let server = TestServer::with_interval(NO_TICK_MS);
    for i in 1..=1005 {
        server.hub.broadcast(&format!("m{i}")).unwrap();
    }
    let mut events = EventStream::open(server.addr, &[("Last-Event-ID", "5")]);
    for i in 6..=1005 {
        let event = events.next_message(PROMPTLY).unwrap();
        assert_eq!(event.last_event_id, i.to_string());
    }
}

#[test]
fn replay_and_live_broadcasts_have_no_gap_and_no_duplicate() {
    for writers in FANOUT_MODES {
        replay_and_live_broadcasts_have_no_gap_and_no_duplicate_with(writers);
    }
}

fn replay_and_live_broadcasts_have_no_gap_and_no_duplicate_with(writers: usize) {
    let server = server_with_writers(writers, NO_TICK_MS);
    const TOTAL: u64 = 300;
    let hub = server.hub.clone();
    // Broadcasts keep coming while the client connects: some are replayed, the rest live.
    let sender = thread::spawn(move || {
        for i in 1..=TOTAL {
            hub.broadcast(&format!("m{i}")).unwrap();
            if i % 10 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    });
    thread::sleep(Duration::from_millis(5));
    let mut events = EventStream::open(server.addr, &[("Last-Event-ID", "0")]);
    sender.join().unwrap();
    for expected in 1..=TOTAL {
        let event = events.next_message(PROMPTLY).expect("every id once");
        assert_eq!(event.last_event_id, expected.to_string());
        assert_eq!(event.data, format!("m{expected}"));
    }
    assert_eq!(
        events.next_message(Duration::from_millis(100)),
        None,
        "nothing twice"
    );
}

#[test]
fn last_event_id_that_is_not_a_number_is_ignored_and_the_stream_starts_live() {
    let server = TestServer::with_interval(NO_TICK_MS);
    for m in ["a", "b", "c"] {
        server.send(m);
    }
    for bad in ["abc", "-1", "1.5", "+1", " "] {
        let mut events = EventStream::open(server.addr, &[("Last-Event-ID", bad)]);
        assert_eq!(events.status(), 200);
        let id = server.send("live");
        let event = events.next_message(PROMPTLY).unwrap();
        assert_eq!(event.last_event_id, id.to_string(), "Last-Event-ID {bad:?}");
    }
}

#[test]
fn last_event_id_from_before_a_restart_still_gets_live_broadcasts() {
    for writers in FANOUT_MODES {
        // The new run has sent nothing yet; the browser saw id 999 in the last one.
        let server = server_with_writers(writers, NO_TICK_MS);
        let mut events = EventStream::open(server.addr, &[("Last-Event-ID", "999")]);
        for id in 1..=3 {
            server.send(&format!("new {id}"));
            let event = events.next_message(PROMPTLY).expect("every new broadcast");
            assert_eq!(event.last_event_id, id.to_string(), "{writers} writers");
        }
    }
}

#[test]
fn last_event_id_past_the_newest_id_replays_everything_this_run_holds() {
    for writers in FANOUT_MODES {
        // The first run: the browser sees ids 1 to 3, then the server stops.
        let first_run = server_with_writers(writers, NO_TICK_MS);
        let mut events = EventStream::open(first_run.addr, &[]);
        for m in ["a", "b", "c"] {
            first_run.send(m);
        }
        let seen = skip_to(&mut events, "c").last_event_id;
        drop(first_run);
        // The second run counts from 1 again and sends two before the browser is back.
        let second_run = server_with_writers(writers, NO_TICK_MS);
        second_run.send("x");
        second_run.send("y");
        // Its Last-Event-ID, 3, is past the newest id of this run (2): it saw none of this run's.
        let mut again = EventStream::open(second_run.addr, &[("Last-Event-ID", &seen)]);
        second_run.send("z");
        let got: Vec<(String, String)> = (0..3)
            .map(|_| again.next_message(PROMPTLY).expect("replay, then live"))
            .map(|event| (event.last_event_id, event.data))
            .collect();
        let want = [("1", "x"), ("2", "y"), ("3", "z")].map(|(i, d)| (i.into(), d.into()));
        assert_eq!(got, want, "{writers} writers");
    }
}

/// The messages `events` gets until the one with `data`, which it returns.
fn skip_to(events: &mut EventStream, data: &str) -> common::Event {
    loop {
        let event = events.next_message(PROMPTLY).expect("the message");
        if event.data == data {
            return event;
        }
    }
}

#[test]
fn without_last_event_id_the_stream_starts_live() {
    let server = TestServer::with_interval(NO_TICK_MS);
    server.send("old");
    let mut events = EventStream::open(server.addr, &[]);
    server.send("new");
    assert_eq!(events.next_message(PROMPTLY).unwrap().data, "new");
}

#[test]
fn closed_client_is_noticed_by_a_failing_tick_and_leaves_the_count() {
    for writers in FANOUT_MODES {
        closed_client_is_noticed_by_a_failing_tick_and_leaves_the_count_with(writers);
    }
}

fn closed_client_is_noticed_by_a_failing_tick_and_leaves_the_count_with(writers: usize) {
    let server = server_with_writers(writers, 20);
    let mut events = EventStream::open(server.addr, &[]);
    server.wait_for_clients(1, PROMPTLY);
    assert_eq!(events.next_event(PROMPTLY).unwrap().kind, "tick");
    drop(events);
    // Whether the close was clean (FIN) or a reset (unread bytes), a later tick fails.
    server.wait_for_clients(0, PROMPTLY);
}

#[test]
fn a_client_that_read_everything_before_closing_is_noticed_at_a_later_write() {
    for writers in FANOUT_MODES {
        let server = server_with_writers(writers, NO_TICK_MS);
        let mut events = EventStream::open(server.addr, &[]);
        // Like a browser, read everything that was sent (no ticks come), then close: a FIN.
        assert!(events.wait_for_raw(OPENING.as_bytes(), PROMPTLY));
        drop(events);
        // The stream only learns of it by writing: each broadcast is one more write.
        let deadline = Instant::now() + PROMPTLY;
        while server.clients() > 0 {
            assert!(
                Instant::now() < deadline,
                "writers {writers}: never noticed"
            );
            server.send("anyone there?");
        }
    }
}

/// A connected pair of loopback sockets: (the server's end, the client's end).
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for socket in [&server, &client] {
        socket.set_read_timeout(Some(PROMPTLY)).unwrap();
        socket.set_write_timeout(Some(PROMPTLY)).unwrap();
    }
    (server, client)
}

#[test]
fn after_a_clean_close_the_first_write_succeeds_and_a_later_one_fails() {
    let (mut server, mut client) = socket_pair();
    server.write_all(b"data: a\n\n").unwrap();
    let mut got = [0u8; 9];
    client.read_exact(&mut got).unwrap();
    drop(client); // nothing left unread: the kernel sends FIN
    assert_eq!(server.read(&mut got).unwrap(), 0, "the server sees the FIN");
    // The first write only lands in the send buffer; the client's kernel answers it with RST.
    server
        .write_all(b"data: b\n\n")
        .expect("the first write after the close succeeds");
    let deadline = Instant::now() + PROMPTLY;
    let error = loop {
        match server.write_all(b"data: c\n\n") {
            Ok(()) => assert!(Instant::now() < deadline, "no write ever failed"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            error.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{error:?}"
    );
}

#[test]
fn a_client_that_closes_with_unread_bytes_resets_so_the_first_write_fails() {
    let (mut server, client) = socket_pair();
    server.write_all(b"data: a\n\n").unwrap();
    let mut first = [0u8; 1];
    client.peek(&mut first).unwrap(); // the bytes have arrived, and stay unread
    drop(client); // so the kernel sends RST instead of FIN
    let mut buf = [0u8; 1];
    let reset = server.read(&mut buf).unwrap_err();
    assert_eq!(reset.kind(), ErrorKind::ConnectionReset);
    assert!(server.write_all(b"data: b\n\n").is_err());
}

#[test]
fn send_reports_the_number_of_connected_clients() {
    let server = TestServer::with_interval(20);
    let a = EventStream::open(server.addr, &[]);
    let _b = EventStream::open(server.addr, &[]);
    server.wait_for_clients(2, PROMPTLY);
    let (_, body) = common::post(&server.url("/send"), "text/plain", "x");
    assert_eq!(common::json_number(&body, "clients"), 2);
    drop(a);
    server.wait_for_clients(1, PROMPTLY);
    let (_, body) = common::post(&server.url("/send"), "text/plain", "y");
    assert_eq!(common::json_number(&body, "clients"), 1);
}

#[test]
fn clients_over_the_cap_get_503_with_retry_after() {
    let server = TestServer::start(|c| {
        c.max_clients = 2;
        c.interval = Duration::from_millis(20);
    });
    let first = EventStream::open(server.addr, &[]);
    let _second = EventStream::open(server.addr, &[]);
    let third = EventStream::open(server.addr, &[]);
    assert_eq!(third.status(), 503);
    assert!(third.header("retry-after").is_some(), "{}", third.head);
    // A place frees up when a client leaves.
    drop(first);
    server.wait_for_clients(1, PROMPTLY);
    assert_eq!(EventStream::open(server.addr, &[]).status(), 200);
}

#[test]
fn client_that_stops_reading_does_not_delay_others() {
    for writers in FANOUT_MODES {
        client_that_stops_reading_does_not_delay_others_with(writers);
    }
}

/// Broadcasts big enough to fill any socket buffer between us and a client many times over.
fn flood(server: &TestServer, messages: u64, size: usize) {
    let big = "x".repeat(size);
    for _ in 0..messages {
        server
            .hub
            .broadcast(&big)
            .expect("in-memory broadcasts never fail");
    }
}

fn client_that_stops_reading_does_not_delay_others_with(writers: usize) {
    // A write timeout far longer than the test: anything that waited for the stuck client
    // would make the reader miss its deadlines.
    let server = TestServer::start(|c| {
        c.broadcast_writers = writers;
        c.interval = Duration::from_millis(NO_TICK_MS);
        c.write_timeout = Duration::from_secs(600);
    });
    // This client never reads: once the kernel buffers between us fill up, writes to it block.
    let _stuck = EventStream::open(server.addr, &[]);
    let mut reader = EventStream::open(server.addr, &[]);
    server.wait_for_clients(2, PROMPTLY);

    const MESSAGES: u64 = 300;
    let reading = thread::spawn(move || {
        (1..=MESSAGES)
            .map(|_| reader.next_message(PROMPTLY).map(|e| e.last_event_id))
            .collect::<Vec<_>>()
    });
    // Through /send, so that its answers must come promptly too (the client has a timeout).
    let big = "x".repeat(60 * 1024);
    for _ in 0..MESSAGES {
        server.send(&big);
    }
    let ids = reading.join().unwrap();
    let expected: Vec<_> = (1..=MESSAGES).map(|i| Some(i.to_string())).collect();
    assert_eq!(ids, expected, "the reading client got every broadcast");
    assert_eq!(
        server.clients(),
        2,
        "the stuck client is still there, blocking nobody"
    );
}

#[test]
fn client_that_stops_reading_is_dropped_once_a_write_blocked_for_the_write_timeout() {
    for writers in FANOUT_MODES {
        let server = TestServer::start(|c| {
            c.broadcast_writers = writers;
            c.interval = Duration::from_millis(NO_TICK_MS);
            c.write_timeout = Duration::from_millis(300);
        });
        let _stuck = EventStream::open(server.addr, &[]);
        server.wait_for_clients(1, PROMPTLY);
        flood(&server, 300, 60 * 1024);
        server.wait_for_clients(0, PROMPTLY);
    }
}

#[test]
fn client_that_falls_more_than_the_history_behind_is_disconnected_not_skipped() {
    for writers in FANOUT_MODES {
        let server = TestServer::start(|c| {
            c.broadcast_writers = writers;
            c.interval = Duration::from_millis(NO_TICK_MS);
            c.write_timeout = Duration::from_secs(600);
        });
        let mut slow = EventStream::open(server.addr, &[]);
        server.wait_for_clients(1, PROMPTLY);
        // Not reading while 2000 broadcasts of 32 KiB go out: far more than the socket buffers
        // hold, so more than the 1000 kept in history pass this client by.
        const MESSAGES: u64 = 2000;
        flood(&server, MESSAGES, 32 * 1024);
        // It gets an unbroken run of ids from 1, then the stream ends: never a gap.
        let mut expected = 1;
        while let Some(event) = slow.next_message(PROMPTLY) {
            assert_eq!(event.last_event_id, expected.to_string(), "no gap");
            expected += 1;
        }
        assert!(
            expected <= MESSAGES,
            "disconnected before the end (got {expected})"
        );
        server.wait_for_clients(0, PROMPTLY);
    }
}

#[test]
fn events_answers_http_1_0_clients_too() {
    let server = TestServer::with_interval(20);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /events HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
}

/// A server whose streams get a keep-alive comment after `keep_alive_ms` of silence.
fn server_with_keep_alive(writers: usize, interval_ms: u64, keep_alive_ms: u64) -> TestServer {
    TestServer::start(|c| {
        c.broadcast_writers = writers;
        c.interval = Duration::from_millis(interval_ms);
        c.keep_alive = Duration::from_millis(keep_alive_ms);
    })
}

#[test]
fn a_stream_silent_for_the_keep_alive_delay_gets_a_keep_alive_comment() {
    for writers in FANOUT_MODES {
        let server = server_with_keep_alive(writers, NO_TICK_MS, 150);
        let mut events = EventStream::open(server.addr, &[]);
        let opened = Instant::now();
        assert!(
            events.wait_for_raw(b"\n: keep-alive\n\n", PROMPTLY),
            "writers {writers}"
        );
        assert!(
            opened.elapsed() >= Duration::from_millis(140),
            "not before the delay"
        );
        // A comment fires nothing: the browser sees no event.
        server.send("after");
        let event = events.next_event(PROMPTLY).unwrap();
        assert_eq!(event.data, "after", "writers {writers}");
    }
}

#[test]
fn a_broadcast_postpones_the_keep_alive() {
    for writers in FANOUT_MODES {
        let server = server_with_keep_alive(writers, NO_TICK_MS, 400);
        let mut events = EventStream::open(server.addr, &[]);
        // The news comes partway through the quiet time (the wait only sets the scene).
        thread::sleep(Duration::from_millis(250));
        let sent = Instant::now();
        server.send("news");
        // The next keep-alive comes right after the news, and a full 400 ms after it.
        assert!(events.wait_for_raw(b"data: news\n\n: keep-alive\n", PROMPTLY));
        assert!(
            sent.elapsed() >= Duration::from_millis(400),
            "writers {writers}: keep-alive only after 400 ms with nothing written"
        );
    }
}

#[test]
fn streams_with_ticks_more_often_than_the_keep_alive_delay_get_no_keep_alive() {
    let server = server_with_keep_alive(2, 50, 100);
    let mut events = EventStream::open(server.addr, &[]);
    for _ in 0..6 {
        assert_eq!(events.next_event(PROMPTLY).unwrap().kind, "tick");
    }
    assert!(!String::from_utf8_lossy(&events.raw).contains("keep-alive"));
}
