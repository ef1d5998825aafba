//! Several instances sharing one log in Redis (contract, "v2" and "v3"), seen from outside:
//! servers started in this process on one `redis-server` (restarted with its data or without),
//! the binary as a user starts it, a proxy that loses replies, a fake Redis that misbehaves or
//! never answers, and `deploy/run-cluster.sh` with nginx in front, Redis stopped and started.
//!
//! Needs `redis-server` (and for the cluster test nginx, openssl and curl too). Without them
//! each test prints "skipped" and passes, except under CI (`CI=true`), where it fails: CI
//! installs them. The fake-Redis and startup tests need nothing.
//!
//! Streams are read as a browser reads them (`common::EventStream`). Where a test checks that a
//! broadcast comes at once, the servers tick once a minute: any event that arrives came from the
//! broadcast, not from a tick. Every wait is bounded.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::curl::Curl;
use common::redis::{read_command, Fate, LossyProxy, Redis};
use common::tools::{find_on_path, free_port, tools_or_skip, TempDir};
use common::{
    get, json_number, post, server_command, without_server_env, Event, EventStream, TestServer,
    PROMPTLY,
};
use sse_server::redis::log as redis_log;
use sse_server::redis::resp::{self, Reply};

/// So long that no tick is due while a broadcast travels: what arrives came from the broadcast.
const QUIET_TICK: Duration = Duration::from_secs(60);

/// Ticks this often where a test watches streams keep ticking: several fit in a second.
const TICK: Duration = Duration::from_millis(200);

/// How long a stream is watched to show that nothing more comes (no duplicate).
const SETTLE: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------------------------
// Instances, sends, streams

/// A server in this process on a free port, sharing the log at `redis_url` under `key`.
fn instance(redis_url: &str, key: &str, interval: Duration) -> TestServer {
    let (url, key) = (redis_url.to_string(), key.to_string());
    TestServer::start(move |c| {
        c.redis = Some(url);
        c.redis_key = key;
        c.interval = interval;
    })
}

/// `POST /send` with a text body, which must be answered 200: the answer's `id` and `clients`.
fn send(server: &TestServer, message: &str) -> (u64, u64) {
    let (status, body) = post(&server.url("/send"), "text/plain; charset=utf-8", message);
    assert_eq!(status, 200, "/send {message:?}: {body}");
    (json_number(&body, "id"), json_number(&body, "clients"))
}

/// A `/send` answer, whatever its status, and how long it took to come.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
    took: Duration,
}

/// `POST /send`, with a client that waits long enough to measure a slow answer rather than
/// give up on it first.
fn try_send(server: &TestServer, message: &str) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(3 * PROMPTLY))
        .build()
        .into();
    let started = Instant::now();
    let mut response = agent
        .post(&server.url("/send"))
        .header("Content-Type", "text/plain; charset=utf-8")
        .send(message)
        .unwrap_or_else(|e| panic!("/send got no answer in {:?}: {e}", started.elapsed()));
    let took = started.elapsed();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    Answer {
        status: response.status().as_u16(),
        retry_after,
        body: response.body_mut().read_to_string().unwrap_or_default(),
        took,
    }
}

/// Checks a 503 that tells the client when to come back.
fn assert_unavailable(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 503, "{what}: {}", answer.body);
    let retry_after = answer.retry_after.as_deref().unwrap_or_default();
    assert!(
        retry_after.parse::<u32>().is_ok_and(|secs| secs > 0),
        "{what}: Retry-After in seconds, got {:?}",
        answer.retry_after
    );
}

/// `GET /events` (with `Last-Event-ID: k` when given), answered 200.
fn open(server: &TestServer, last_event_id: Option<u64>) -> EventStream {
    let k = last_event_id.map(|k| k.to_string());
    let headers: Vec<(&str, &str)> = k.iter().map(|k| ("Last-Event-ID", k.as_str())).collect();
    let stream = EventStream::open(server.addr, &headers);
    assert_eq!(stream.status(), 200, "{}", stream.head);
    stream
}

/// A message event as (id, data); its id must be a number.
fn id_and_data(event: Event) -> (u64, String) {
    let id = event
        .last_event_id
        .parse()
        .unwrap_or_else(|_| panic!("a numeric id on {event:?}"));
    (id, event.data)
}

/// The next `n` messages on `stream` (ticks skipped), as (id, data), all within `within`.
fn messages(stream: &mut EventStream, n: usize, within: Duration) -> Vec<(u64, String)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        match stream.next_message(deadline.saturating_duration_since(Instant::now())) {
            Some(event) => got.push(id_and_data(event)),
            None => panic!("expected {n} messages within {within:?}, got {got:?}"),
        }
    }
    got
}

/// Checks that no further message comes for a while (no duplicate, nothing out of order).
fn nothing_more(stream: &mut EventStream, whose: &str) {
    if let Some(extra) = stream.next_message(SETTLE) {
        panic!("{whose}: unexpected {extra:?}");
    }
}

/// `[(1, "a")]` as `[(1, "a".to_string())]`, to compare with what a stream got.
fn owned(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|(id, m)| (*id, m.to_string())).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Every client of every instance gets every broadcast, once, in order, at once

#[test]
fn a_broadcast_sent_to_one_instance_reaches_the_clients_of_every_instance_once_in_order_promptly() {
    let Some(redis) = Redis::start() else { return };
    let a = instance(&redis.url(), "sse", QUIET_TICK);
    let b = instance(&redis.url(), "sse", QUIET_TICK);
    let mut on_a = open(&a, None);
    let mut on_b = open(&b, None);
    a.wait_for_clients(1, PROMPTLY);
    b.wait_for_clients(1, PROMPTLY);

    // Ids come from Redis: 1 on a fresh key, one more per broadcast whichever instance sends;
    // `clients` counts the streams of the instance that answers, not of all.
    let sent = [(1, "first, to A"), (2, "second, to B"), (3, "third, to A")];
    let mut took = Vec::new();
    for (id, message) in sent {
        let sender = if id == 2 { &b } else { &a };
        let sent_at = Instant::now();
        assert_eq!(send(sender, message), (id, 1), "{message}");
        for (name, stream) in [("A", &mut on_a), ("B", &mut on_b)] {
            // No tick is due for a minute: the first event is the broadcast itself.
            let event = stream
                .next_event(PROMPTLY)
                .unwrap_or_else(|| panic!("client of {name}: broadcast {id} within {PROMPTLY:?}"));
            assert_eq!(event.kind, "message", "client of {name}: {event:?}");
            assert_eq!(
                id_and_data(event),
                (id, message.to_string()),
                "client of {name}"
            );
        }
        took.push(sent_at.elapsed());
    }
    for (name, stream) in [("A", &mut on_a), ("B", &mut on_b)] {
        nothing_more(stream, &format!("client of {name}"));
    }
    eprintln!("send to delivery on both instances: {took:?}");
}

#[test]
fn concurrent_sends_to_two_instances_reach_every_client_in_one_gapless_id_order() {
    let Some(redis) = Redis::start() else { return };
    let a = Arc::new(instance(&redis.url(), "sse", QUIET_TICK));
    let b = Arc::new(instance(&redis.url(), "sse", QUIET_TICK));
    let mut streams = [open(&a, None), open(&a, None), open(&b, None)];
    a.wait_for_clients(2, PROMPTLY);
    b.wait_for_clients(1, PROMPTLY);

    // Two senders at once, one per instance; each notes the id its message got.
    let senders: Vec<_> = [("a", Arc::clone(&a)), ("b", Arc::clone(&b))]
        .into_iter()
        .map(|(name, server)| {
            thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let message = format!("{name}{i}");
                        (send(&server, &message).0, message)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sent: Vec<(u64, String)> = senders
        .into_iter()
        .flat_map(|t| t.join().expect("a sender"))
        .collect();
    sent.sort();
    assert_eq!(
        sent.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<u64>>()
    );
    // Every client, whichever instance it is on, sees the same sequence: each id once, in
    // order, with the message that /send answered that id for.
    for (n, stream) in streams.iter_mut().enumerate() {
        assert_eq!(messages(stream, 50, PROMPTLY), sent, "stream {n}");
        nothing_more(stream, &format!("stream {n}"));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Ids and history outlive an instance

#[test]
fn ids_continue_where_they_were_after_an_instance_restarts() {
    let Some(redis) = Redis::start() else { return };
    let a = instance(&redis.url(), "sse", QUIET_TICK);
    assert_eq!(send(&a, "one").0, 1);
    assert_eq!(send(&a, "two").0, 2);
    drop(a); // stopped: threads, streams and all

    let a = instance(&redis.url(), "sse", QUIET_TICK);
    assert_eq!(send(&a, "three").0, 3);
    // Its history came from Redis at startup: a browser that saw 1 is replayed the rest.
    let mut browser = open(&a, Some(1));
    assert_eq!(
        messages(&mut browser, 2, PROMPTLY),
        owned(&[(2, "two"), (3, "three")])
    );
    nothing_more(&mut browser, "the browser");
    // Another key is another log, counting from 1.
    let other = instance(&redis.url(), "other", QUIET_TICK);
    assert_eq!(send(&other, "elsewhere").0, 1);
}

#[test]
fn a_browser_reconnecting_to_the_other_instance_with_last_event_id_gets_exactly_the_rest_then_live()
{
    let Some(redis) = Redis::start() else { return };
    let a = instance(&redis.url(), "sse", QUIET_TICK);
    let b = instance(&redis.url(), "sse", QUIET_TICK);
    let mut browser = open(&a, None);
    a.wait_for_clients(1, PROMPTLY);
    send(&a, "one");
    send(&b, "two");
    let seen = messages(&mut browser, 2, PROMPTLY);
    assert_eq!(seen, owned(&[(1, "one"), (2, "two")]));
    // What EventSource keeps: the last id it saw on the stream.
    let k = seen[1].0;

    // A stops: its stream ends, as the browser notices.
    drop(a);
    assert!(browser.closed_within(PROMPTLY), "A's stream ended");
    // While the browser is away, broadcasts go on, through B and through A started again.
    assert_eq!(send(&b, "three").0, 3);
    let a = instance(&redis.url(), "sse", QUIET_TICK);
    assert_eq!(send(&a, "four").0, 4);

    // It reconnects, to B this time, with the last id it saw: the ones it missed, then live.
    let mut browser = open(&b, Some(k));
    assert_eq!(
        messages(&mut browser, 2, PROMPTLY),
        owned(&[(3, "three"), (4, "four")])
    );
    b.wait_for_clients(1, PROMPTLY);
    assert_eq!(send(&a, "five").0, 5);
    assert_eq!(messages(&mut browser, 1, PROMPTLY), owned(&[(5, "five")]));
    nothing_more(&mut browser, "the browser");
}

/// A TCP relay between an instance and Redis whose Redis-to-instance direction can be held, so
/// that the instance lags behind the shared log, as one whose tail is slow or reconnecting does.
struct Relay {
    addr: SocketAddr,
    held: Arc<AtomicBool>,
    /// Reads under way in the held direction.
    reading: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(redis_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            held: Arc::default(),
            reading: Arc::default(),
            stop: Arc::default(),
        };
        let (held, stop) = (Arc::clone(&relay.held), Arc::clone(&relay.stop));
        let reading = Arc::clone(&relay.reading);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((instance, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = instance.set_nonblocking(false);
                let Ok(redis) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue; // the instance sees a close
                };
                let (never, uncounted) = (Arc::default(), Arc::default());
                for (from, to, held, reading) in [
                    (instance.try_clone(), redis.try_clone(), never, uncounted),
                    (
                        redis.try_clone(),
                        instance.try_clone(),
                        Arc::clone(&held),
                        Arc::clone(&reading),
                    ),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let stop = Arc::clone(&stop);
                    thread::spawn(move || pump(from, to, &held, &reading, &stop));
                }
            }
        });
        relay
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// From now on, what Redis sends waits in the relay (unread, in the kernel's buffers).
    /// Returns once no read is under way (reads wait at most [`PUMP_READ_WAIT`]).
    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + PROMPTLY;
        while self.reading.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the relay's reads end");
            thread::sleep(PUMP_READ_WAIT / 2);
        }
    }

    fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The longest one read of the relay waits, so that it sees `held` and `stop` soon.
const PUMP_READ_WAIT: Duration = Duration::from_millis(10);

/// Copies bytes `from` → `to` except while `held`, until either side closes or `stop`.
/// `reading` counts it while it reads (and forwards): counted *before* it looks at `held`, so
/// that once [`Relay::hold`] has seen the count at 0, nothing more goes through.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    held: &AtomicBool,
    reading: &AtomicUsize,
    stop: &AtomicBool,
) {
    let _ = from.set_read_timeout(Some(PUMP_READ_WAIT));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        reading.fetch_add(1, Ordering::SeqCst);
        if held.load(Ordering::SeqCst) {
            reading.fetch_sub(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let forwarded = match from.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => to.write_all(&buf[..n]).is_ok(),
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        reading.fetch_sub(1, Ordering::SeqCst);
        if !forwarded {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[test]
fn a_browser_reconnecting_to_an_instance_that_lags_behind_gets_no_broadcast_twice() {
    reconnecting_to_a_lagging_instance(2);
}

#[test]
fn a_browser_reconnecting_to_an_instance_that_lags_behind_gets_no_broadcast_twice_simple_fanout() {
    reconnecting_to_a_lagging_instance(0);
}

/// A browser holding id 3 from A reconnects to B, whose copy of the log is still at 1; then B
/// catches up. `writers`: the fan-out of B (0: the simple one).
fn reconnecting_to_a_lagging_instance(writers: usize) {
    let Some(redis) = Redis::start() else { return };
    let relay = Relay::start(redis.port);
    let a = instance(&redis.url(), "sse", QUIET_TICK);
    let url = relay.url();
    let b = TestServer::start(move |c| {
        c.redis = Some(url);
        c.interval = QUIET_TICK;
        c.broadcast_writers = writers;
    });
    // B is in step to begin with: its client gets A's broadcast, and so does a browser on A.
    // (Both open before it: a stream opened later could start before its instance has heard
    // of it, and rightly get it as live.)
    let mut on_b = open(&b, None);
    b.wait_for_clients(1, PROMPTLY);
    let mut browser = open(&a, None);
    a.wait_for_clients(1, PROMPTLY);
    send(&a, "one");
    assert_eq!(messages(&mut on_b, 1, PROMPTLY), owned(&[(1, "one")]));
    assert_eq!(messages(&mut browser, 1, PROMPTLY), owned(&[(1, "one")]));

    // B falls behind: what Redis tells it waits in the relay. The browser on A gets 2 and 3.
    relay.hold();
    send(&a, "two");
    send(&a, "three");
    assert_eq!(
        messages(&mut browser, 2, PROMPTLY),
        owned(&[(2, "two"), (3, "three")])
    );
    drop(browser);

    // It reconnects to B, which has not heard of 2 and 3 yet, with Last-Event-ID: 3. Then B
    // catches up: the browser must get what comes after 3, and 2 and 3 not again.
    let mut browser = open(&b, Some(3));
    b.wait_for_clients(2, PROMPTLY);
    relay.release();
    assert_eq!(send(&a, "four").0, 4);
    assert_eq!(messages(&mut browser, 1, PROMPTLY), owned(&[(4, "four")]));
    // B's client of old, which stayed, gets all it missed, in order.
    assert_eq!(
        messages(&mut on_b, 3, PROMPTLY),
        owned(&[(2, "two"), (3, "three"), (4, "four")])
    );
    nothing_more(&mut browser, "the browser");
}

// ---------------------------------------------------------------------------------------------
// 3. Redis lost while running, and back

#[test]
fn while_redis_is_down_send_answers_503_and_streams_tick_then_every_stream_resumes_losing_nothing()
{
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = instance(&redis.url(), "sse", TICK);
    let b = instance(&redis.url(), "sse", TICK);
    let mut streams = [("A", open(&a, None)), ("B", open(&b, None))];
    a.wait_for_clients(1, PROMPTLY);
    b.wait_for_clients(1, PROMPTLY);
    // What /send answered 200 for, in id order.
    let mut accepted = Vec::new();
    for (server, message) in [(&a, "before 1"), (&b, "before 2")] {
        accepted.push((send(server, message).0, message.to_string()));
    }
    assert_eq!(
        accepted.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2]
    );
    for (name, stream) in &mut streams {
        assert_eq!(messages(stream, 2, PROMPTLY), accepted, "client of {name}");
    }

    // Redis stops, saving its data as a Redis with persistence would.
    redis.stop();
    for (name, server) in [("A", &a), ("B", &b)] {
        for attempt in 1..=2 {
            let answer = try_send(server, &format!("lost {name}{attempt}"));
            assert_unavailable(&answer, &format!("{name}, attempt {attempt}"));
            assert!(
                answer.took < PROMPTLY,
                "{name}: 503 after {:?}",
                answer.took
            );
        }
        assert_eq!(get(&server.url("/")).0, 200, "{name} still serves the page");
    }
    // Open streams keep ticking, and carry nothing else.
    for (name, stream) in &mut streams {
        for n in 1..=2 {
            let event = stream
                .next_event(PROMPTLY)
                .unwrap_or_else(|| panic!("client of {name}: tick {n} while Redis is down"));
            assert_eq!(event.kind, "tick", "client of {name}: {event:?}");
        }
    }

    // Redis comes back with its data: /send works again at once, ids carry on.
    redis.launch();
    for (server, message) in [(&a, "after 3"), (&b, "after 4"), (&a, "after 5")] {
        let id = send(server, message).0;
        assert_eq!(id, accepted.len() as u64 + 1, "{message}");
        accepted.push((id, message.to_string()));
    }
    // Each stream open throughout resumes after the last id it had (its tail tries again at
    // most RETRY_MAX after the last failure): 3, 4, 5, each once.
    let resume_within = redis_log::RETRY_MAX + PROMPTLY;
    for (name, stream) in &mut streams {
        let got = messages(stream, 3, resume_within);
        assert_eq!(got, accepted[2..], "client of {name}");
        nothing_more(stream, &format!("client of {name}"));
    }
    // Nothing answered 200 is lost, nothing answered 503 was sent: an instance started now
    // replays the whole shared log to a browser that has seen nothing.
    let c = instance(&redis.url(), "sse", QUIET_TICK);
    let mut replayed = open(&c, Some(0));
    assert_eq!(messages(&mut replayed, 5, PROMPTLY), accepted);
    nothing_more(&mut replayed, "client of C");
}

#[test]
fn redis_restarted_empty_under_two_live_instances_every_later_send_reaches_every_stream_with_ids_still_rising(
) {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let a = instance(&redis.url(), "sse", QUIET_TICK);
    let b = instance(&redis.url(), "sse", QUIET_TICK);
    let mut streams = vec![("A", open(&a, None)), ("B", open(&b, None))];
    a.wait_for_clients(1, PROMPTLY);
    b.wait_for_clients(1, PROMPTLY);
    // What /send answered 200 for, in id order.
    let mut accepted = Vec::new();
    for (server, message) in [(&a, "before 1"), (&b, "before 2"), (&a, "before 3")] {
        accepted.push((send(server, message).0, message.to_string()));
    }
    for (name, stream) in &mut streams {
        assert_eq!(messages(stream, 3, PROMPTLY), accepted, "client of {name}");
    }

    // Redis restarts with nothing, as the cluster recipe's does (no persistence). Ids go on from
    // what each instance has seen, not from 1, and every live stream gets every message.
    redis.restart_empty();
    for (server, message) in [(&b, "after 4"), (&a, "after 5")] {
        let id = send(server, message).0;
        assert_eq!(id, accepted.len() as u64 + 1, "{message}");
        accepted.push((id, message.to_string()));
    }
    // Each tail reads on after 3 once it has reconnected (at most RETRY_MAX after a failure).
    let resume_within = redis_log::RETRY_MAX + PROMPTLY;
    for (name, stream) in &mut streams {
        assert_eq!(
            messages(stream, 2, resume_within),
            accepted[3..],
            "client of {name}"
        );
    }

    // Again, and this time an instance that has seen nothing starts after it: the live
    // instances' tails have moved the count back up to 5, so it continues above, too.
    redis.restart_empty();
    let within = redis_log::TAIL_WAIT + redis_log::RETRY_MAX + PROMPTLY;
    redis.wait_for_value("sse:id", "5", within);
    let c = instance(&redis.url(), "sse", QUIET_TICK);
    streams.push(("C", open(&c, None)));
    c.wait_for_clients(1, PROMPTLY);
    assert_eq!(send(&c, "after 6").0, 6);
    accepted.push((6, "after 6".to_string()));
    for (name, stream) in &mut streams {
        assert_eq!(
            messages(stream, 1, resume_within),
            accepted[5..],
            "client of {name}"
        );
        nothing_more(stream, &format!("client of {name}"));
    }

    // A browser that saw 2 reconnects: each id it is replayed names the message /send answered
    // it for. B holds them all; C holds only what Redis has held since the restart.
    let mut to_b = open(&b, Some(2));
    assert_eq!(messages(&mut to_b, 4, PROMPTLY), accepted[2..]);
    nothing_more(&mut to_b, "a browser reconnecting to B");
    let mut to_c = open(&c, Some(2));
    assert_eq!(messages(&mut to_c, 1, PROMPTLY), accepted[5..]);
    nothing_more(&mut to_c, "a browser reconnecting to C");
}

// ---------------------------------------------------------------------------------------------
// 4. The binary, when Redis cannot be had at startup

/// How a process ended: exit code (None if killed by a signal), what it printed, how long it ran.
struct Exited {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `command` to its end; kills it and panics if it is still running after `within`.
fn run_to_exit(mut command: Command, within: Duration) -> Exited {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server binary");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {within:?}; stderr: {}",
                stderr.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Exited {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}

#[test]
fn the_binary_exits_non_zero_naming_the_url_when_redis_is_unreachable_at_startup() {
    let url = format!("redis://127.0.0.1:{}", free_port()); // nothing listens there
    let mut by_flag = server_command();
    by_flag.args(["--redis", &url]);
    let mut by_env = server_command();
    by_env.env("REDIS_URL", &url);
    for (how, command) in [("--redis", by_flag), ("REDIS_URL", by_env)] {
        let exited = run_to_exit(command, PROMPTLY);
        assert!(
            exited.code.is_some_and(|code| code != 0),
            "{how}: exit code {:?}",
            exited.code
        );
        assert!(
            exited.stderr.contains(&url),
            "{how}: stderr names {url}: {}",
            exited.stderr
        );
        assert!(
            !exited.stdout.contains("Server running"),
            "{how}: it never said it runs: {}",
            exited.stdout
        );
        eprintln!("{how}: exited {:?} after {:?}", exited.code, exited.took);
    }
}

#[test]
fn a_redis_url_that_cannot_be_right_is_a_setting_error_exiting_2() {
    for bad in ["foo", "http://127.0.0.1:6379", "redis://127.0.0.1:99999"] {
        let mut command = server_command();
        command.env("REDIS_URL", bad);
        let exited = run_to_exit(command, PROMPTLY);
        assert_eq!(exited.code, Some(2), "{bad}: {}", exited.stderr);
        let first_line = exited.stderr.lines().next().unwrap_or_default();
        // Which setting, what was given, and what is expected.
        for part in ["REDIS_URL", bad, "redis://HOST[:PORT][/DB]"] {
            assert!(first_line.contains(part), "{bad}: {part} in {first_line:?}");
        }
        assert!(!exited.stdout.contains("Server running"), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A Redis that misbehaves

/// What the fake Redis answers to every command but `PING` and what the server reads at startup.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Bytes that are not RESP at all.
    NotResp,
    /// The start of a reply, then the connection closes.
    CutShort,
    /// The start of a reply, then silence on an open connection.
    CutShortThenSilent,
    /// A length far over any limit.
    HugeLength,
    /// An array of 1 MiB strings that goes on and on.
    Endless,
    /// One byte every 50 ms of a simple string that never ends.
    Dribbling,
    /// No answer at all, on a connection left open.
    Silent,
}

/// A fake Redis on a free loopback port: answers `PING`, and the newest id and `XREVRANGE` with
/// an empty log (so the server starts), then misbehaves on anything else (the publish's `EVAL`,
/// the tail's). Stops on drop; each connection's thread ends within a minute in any case.
struct FakeRedis {
    url: String,
    /// Command names received, in order.
    commands: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start(misbehaviour: Misbehaviour) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let fake = FakeRedis {
            url: format!("redis://{}", listener.local_addr().unwrap()),
            commands: Arc::default(),
            stop: Arc::default(),
        };
        let (commands, stop) = (Arc::clone(&fake.commands), Arc::clone(&fake.stop));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (commands, stop) = (Arc::clone(&commands), Arc::clone(&stop));
                        thread::spawn(move || {
                            fake_connection(stream, misbehaviour, &commands, &stop)
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        fake
    }

    fn saw(&self, command: &str) -> bool {
        self.commands.lock().unwrap().iter().any(|c| c == command)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The longest a fake connection lives.
const FAKE_LIFETIME: Duration = Duration::from_secs(60);

/// One connection to the fake: reads commands (RESP arrays, which `resp::parse` reads like any
/// reply) and answers them until it misbehaves.
fn fake_connection(
    mut stream: TcpStream,
    misbehaviour: Misbehaviour,
    commands: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    // A client that stops reading makes our writes fail after this, and the thread ends.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let deadline = Instant::now() + FAKE_LIFETIME;
    let mut unread = Vec::new();
    loop {
        // Every read times out after 20 ms: then the test may have ended, or the fake lived long.
        let give_up = || stop.load(Ordering::SeqCst) || Instant::now() > deadline;
        let Some(command) = read_command(&mut stream, &mut unread, give_up) else {
            return;
        };
        let (name, arg_count) = match &command {
            Reply::Array(Some(args)) => match args.first() {
                Some(Reply::Bulk(Some(name))) => {
                    (String::from_utf8_lossy(name).to_uppercase(), args.len())
                }
                _ => (String::new(), 0),
            },
            _ => (String::new(), 0),
        };
        // The script that reads the newest id at startup has two keys and no other argument.
        let name = match (name.as_str(), arg_count) {
            ("EVAL", 5) => "EVAL newest id".to_string(),
            _ => name,
        };
        commands.lock().unwrap().push(name.clone());
        let answer: &[u8] = match name.as_str() {
            "PING" => b"+PONG\r\n",
            // What the server reads at startup: an empty log.
            "EVAL newest id" => b":0\r\n",
            "XREVRANGE" => b"*0\r\n",
            _ => return misbehave(&mut stream, misbehaviour, stop, deadline),
        };
        if stream.write_all(answer).is_err() {
            return;
        }
    }
}

fn misbehave(stream: &mut TcpStream, how: Misbehaviour, stop: &AtomicBool, deadline: Instant) {
    let running = || !stop.load(Ordering::SeqCst) && Instant::now() < deadline;
    match how {
        Misbehaviour::NotResp => {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            hold_open(stream, running);
        }
        Misbehaviour::CutShort => {
            let _ = stream.write_all(b"$10\r\nabc"); // and the connection closes
        }
        Misbehaviour::CutShortThenSilent => {
            let _ = stream.write_all(b"*2\r\n$10\r\nabc");
            hold_open(stream, running);
        }
        Misbehaviour::HugeLength => {
            let _ = stream.write_all(b"$99999999999\r\n");
            hold_open(stream, running);
        }
        Misbehaviour::Endless => {
            let mut item = format!("${}\r\n", resp::MAX_BULK_LEN).into_bytes();
            item.resize(item.len() + resp::MAX_BULK_LEN, b'x');
            item.extend_from_slice(b"\r\n");
            let mut written = 0;
            if stream.write_all(b"*1024\r\n").is_ok() {
                while running() && written < 256 << 20 && stream.write_all(&item).is_ok() {
                    written += item.len();
                }
            }
        }
        Misbehaviour::Silent => hold_open(stream, running),
        Misbehaviour::Dribbling => {
            let mut byte = b'+';
            while running() && stream.write_all(&[byte]).is_ok() {
                byte = b'a';
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Keeps the connection open, reading and ignoring, until the client hangs up.
fn hold_open(stream: &mut TcpStream, running: impl Fn() -> bool) {
    let mut buf = [0u8; 4096];
    while running() {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// The server on a fake Redis that misbehaves `how`: `/send` answers 503 within a few seconds
/// (twice: the second try opens a new connection), the page is still served, and an open
/// stream keeps ticking, as does a new one.
fn send_answers_503_and_the_server_keeps_serving(how: Misbehaviour) {
    let fake = FakeRedis::start(how);
    let url = fake.url.clone();
    let server = TestServer::start(move |c| {
        c.redis = Some(url);
        c.interval = TICK;
    });
    let mut stream = open(&server, None);
    let first = stream.next_event(PROMPTLY).expect("a first tick");
    assert_eq!(first.kind, "tick", "{first:?}");

    // A few seconds at most: a publish's time limit, and room for a loaded machine.
    let few_seconds = redis_log::PUBLISH_TIMEOUT + Duration::from_secs(2);
    for attempt in 1..=2 {
        let answer = try_send(&server, "hello");
        assert_unavailable(&answer, &format!("{how:?}, attempt {attempt}"));
        assert!(
            answer.took < few_seconds,
            "{how:?}, attempt {attempt}: 503 after {:?}",
            answer.took
        );
    }
    // The 503s came from the publish meeting the bad reply, not from failing to connect.
    assert!(
        fake.saw("EVAL"),
        "{how:?}: {:?}",
        fake.commands.lock().unwrap()
    );
    assert_eq!(get(&server.url("/")).0, 200, "{how:?}: the page");
    for n in 1..=2 {
        let event = stream
            .next_event(PROMPTLY)
            .unwrap_or_else(|| panic!("{how:?}: tick {n} after the 503s"));
        assert_eq!(event.kind, "tick", "{how:?}: {event:?}");
    }
    let mut another = open(&server, None);
    let tick = another.next_event(PROMPTLY);
    assert_eq!(tick.map(|e| e.kind).as_deref(), Some("tick"), "{how:?}");
}

#[test]
fn send_answers_503_when_redis_replies_with_bytes_that_are_not_resp() {
    send_answers_503_and_the_server_keeps_serving(Misbehaviour::NotResp);
}

#[test]
fn send_answers_503_when_redis_closes_in_the_middle_of_a_reply() {
    send_answers_503_and_the_server_keeps_serving(Misbehaviour::CutShort);
}

#[test]
fn send_answers_503_when_redis_falls_silent_in_the_middle_of_a_reply() {
    send_answers_503_and_the_server_keeps_serving(Misbehaviour::CutShortThenSilent);
}

#[test]
fn send_answers_503_when_redis_announces_an_oversized_reply() {
    send_answers_503_and_the_server_keeps_serving(Misbehaviour::HugeLength);
}

#[test]
fn send_answers_503_when_redis_sends_a_reply_without_end() {
    send_answers_503_and_the_server_keeps_serving(Misbehaviour::Endless);
}

#[test]
fn send_answers_503_when_redis_dribbles_a_reply_that_never_ends() {
    send_answers_503_and_the_server_keeps_serving(Misbehaviour::Dribbling);
}

// ---------------------------------------------------------------------------------------------
// 5b. A reply lost, a Redis stuck (contract v3)

#[test]
fn a_send_whose_reply_is_lost_after_redis_ran_it_answers_200_with_its_id_and_is_broadcast_once() {
    let Some(redis) = Redis::start() else { return };
    let proxy = LossyProxy::start(&redis, &[Fate::RunThenDrop], Fate::Forward);
    let server = instance(&proxy.url, "sse", QUIET_TICK);
    let mut stream = open(&server, None);
    server.wait_for_clients(1, PROMPTLY);
    assert_eq!(send(&server, "once"), (1, 1));
    assert_eq!(messages(&mut stream, 1, PROMPTLY), owned(&[(1, "once")]));
    nothing_more(&mut stream, "the client");
    assert_eq!(redis.stream_len("sse"), 1);
    assert_eq!(send(&server, "next").0, 2);
}

#[test]
fn a_send_that_cannot_find_out_whether_it_landed_answers_503_saying_it_may_have_been_sent() {
    let Some(redis) = Redis::start() else { return };
    // Every reply to a publish is lost: the first try's, and each answer to "did it land?".
    let proxy = LossyProxy::start(&redis, &[], Fate::RunThenDrop);
    let server = instance(&proxy.url, "sse", QUIET_TICK);
    let mut stream = open(&server, None);
    server.wait_for_clients(1, PROMPTLY);
    let answer = try_send(&server, "maybe");
    assert_unavailable(&answer, "every reply lost");
    assert!(answer.body.contains("may or may not"), "{}", answer.body);
    assert!(!answer.body.contains("nothing was sent"), "{}", answer.body);
    assert!(
        answer.took < redis_log::PUBLISH_TIMEOUT + PROMPTLY,
        "{:?}",
        answer.took
    );
    // It did land, once (each retry found its token): every client gets it, once.
    assert_eq!(messages(&mut stream, 1, PROMPTLY), owned(&[(1, "maybe")]));
    nothing_more(&mut stream, "the client");
    assert_eq!(redis.stream_len("sse"), 1);
}

#[test]
fn eight_sends_at_once_to_a_redis_that_never_answers_each_answer_503_within_their_own_timeout() {
    let fake = FakeRedis::start(Misbehaviour::Silent);
    let url = fake.url.clone();
    let server = Arc::new(TestServer::start(move |c| {
        c.redis = Some(url);
        c.interval = QUIET_TICK;
    }));
    // The commands went out and no answer came: they may have run, and the 503 says so.
    let check = |answer: &Answer, what: &str| {
        assert_unavailable(answer, what);
        assert!(
            answer.body.contains("may or may not"),
            "{what}: {}",
            answer.body
        );
        // Its own limit: none waited for another stuck call, which would take a limit more.
        let limit = 2 * redis_log::PUBLISH_TIMEOUT;
        assert!(answer.took < limit, "{what}: 503 after {:?}", answer.took);
    };
    let alone = try_send(&server, "alone");
    check(&alone, "alone");
    let senders: Vec<_> = (0..8)
        .map(|i| {
            let server = Arc::clone(&server);
            thread::spawn(move || try_send(&server, &format!("at once {i}")))
        })
        .collect();
    let answers: Vec<Answer> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    for (i, answer) in answers.iter().enumerate() {
        check(answer, &format!("send {i} of 8"));
    }
    let took: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    eprintln!(
        "/send on a silent Redis: alone {:?}, 8 at once {took:?}",
        alone.took
    );
}

// ---------------------------------------------------------------------------------------------
// 6. deploy/run-cluster.sh, as a new user runs it

/// The tools the cluster script needs, or None after printing why the test is skipped. Panics
/// under `CI=true`.
fn cluster_tools() -> Option<PathBuf> {
    // On `PATH` and in sbin, as the script looks for them: not `$NGINX` and the like.
    let tools = ["redis-server", "nginx", "openssl", "curl"];
    let [.., curl] = tools_or_skip(tools, find_on_path)?;
    Some(curl)
}

/// `deploy/run-cluster.sh` running in a process group of its own (it starts redis-server, the
/// instances and nginx), stopped as Ctrl-C would stop it, whole group, on drop.
struct Cluster {
    child: Child,
    lines: Receiver<String>,
    /// Everything it printed so far, for failure messages.
    printed: Vec<String>,
    stopped: bool,
    dir: TempDir,
    /// The script's terminal, as far as reading Enter goes.
    stdin: ChildStdin,
}

impl Cluster {
    fn start(https_port: u16, redis_port: u16) -> Cluster {
        let dir = TempDir::new();
        let stderr = fs::File::create(dir.0.join("stderr.log")).unwrap();
        let mut command = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/run-cluster.sh"
        ));
        let mut child = without_server_env(&mut command)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("HTTPS_PORT", https_port.to_string())
            .env("REDIS_PORT", redis_port.to_string())
            .env_remove("INSTANCES")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start deploy/run-cluster.sh");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Cluster {
            child,
            lines,
            printed: Vec::new(),
            stopped: false,
            dir,
            stdin,
        }
    }

    /// Reads what the script prints until the nginx address: the instances' addresses; or, if
    /// the script ends first, what it said.
    fn instances(&mut self, https_port: u16, within: Duration) -> Result<Vec<SocketAddr>, String> {
        let deadline = Instant::now() + within;
        let nginx = format!("https://127.0.0.1:{https_port}/");
        let mut instances = Vec::new();
        loop {
            let line = match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => panic!("no {nginx} within {within:?}: {self}"),
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait(); // its stderr is complete
                    return Err(format!("the script ended: {self}"));
                }
            };
            self.printed.push(line.clone());
            // "    instance 2: http://127.0.0.1:PORT/"
            if let Some(rest) = line.trim().strip_prefix("instance ") {
                let (_, url) = rest.split_once(": ").expect("instance N: URL");
                let addr = url
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .unwrap_or_else(|_| panic!("an address in {line:?}"));
                instances.push(addr);
            }
            if line.trim() == nginx.as_str() || line.trim().starts_with(&nginx) {
                return Ok(instances);
            }
        }
    }

    /// Reads what the script prints until a line that contains `text`, and returns it.
    fn line_with(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let line = match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => panic!("no {text:?} within {within:?}: {self}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the script ended: {self}"),
            };
            self.printed.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Enter, typed in the script's terminal.
    fn press_enter(&mut self) {
        self.stdin
            .write_all(b"\n")
            .expect("the script reads its stdin");
        self.stdin.flush().unwrap();
    }

    /// SIGTERM to the whole group, as Ctrl-C in its terminal would (the script's trap stops what
    /// it started and removes its temp dir); SIGKILL to the group if the script is still there
    /// ten seconds later.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = self.child.id().to_string();
        let signal = |name: &str| {
            let _ = Command::new("kill")
                .args(["-s", name, "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                signal("KILL");
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stderr = fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default();
        write!(
            f,
            "\nstdout:\n{}\nstderr:\n{stderr}",
            self.printed.join("\n")
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cluster script started on free ports, with its instances' addresses, its nginx port and
/// its Redis port. The ports are free when picked, but another program may take one before the
/// script binds it; the script then stops at once and says so, and is started again on others.
fn start_cluster() -> (Cluster, Vec<SocketAddr>, u16, u16) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (https_port, redis_port) = (free_port(), free_port());
        let mut cluster = Cluster::start(https_port, redis_port);
        // It builds the release binary first: minutes from scratch on a small machine.
        match cluster.instances(https_port, Duration::from_secs(900)) {
            Ok(instances) => return (cluster, instances, https_port, redis_port),
            Err(why) if attempts < 3 && why.contains("taken") => eprintln!("again: {why}"),
            Err(why) => panic!("{why}"),
        }
    }
}

#[test]
fn through_the_cluster_script_a_message_sent_to_instance_1_reaches_streams_via_instance_2_and_nginx(
) {
    let Some(curl) = cluster_tools() else { return };
    let started = Instant::now();
    let (mut cluster, instances, https_port, _) = start_cluster();
    let ready_after = started.elapsed();
    assert_eq!(instances.len(), 3, "three instances by default: {cluster}");

    let nginx = format!("https://127.0.0.1:{https_port}");
    let mut via_nginx = Curl::open(&curl, &format!("{nginx}/events"), &["--max-time", "60"]);
    assert!(
        via_nginx.head.starts_with("HTTP/2 200"),
        "{}{cluster}",
        via_nginx.head
    );
    let mut via_2 = EventStream::open(instances[1], &[]);
    assert_eq!(via_2.status(), 200, "{}", via_2.head);

    // Straight to instance 1: both streams get it, with the id /send answered.
    let (status, body) = post(
        &format!("http://{}/send", instances[0]),
        "application/x-www-form-urlencoded",
        "message=hello+cluster",
    );
    assert_eq!(status, 200, "{body}");
    let id = json_number(&body, "id");
    let expected = (id, "hello cluster".to_string());
    let on_2 = via_2.next_message(PROMPTLY).map(id_and_data);
    assert_eq!(on_2.as_ref(), Some(&expected), "via instance 2{cluster}");
    let on_nginx = via_nginx.next_message(PROMPTLY).map(id_and_data);
    assert_eq!(on_nginx.as_ref(), Some(&expected), "via nginx{cluster}");

    // And through nginx, as the script's banner suggests: the next id, to both again.
    let (version, status, body) =
        common::curl::post(&curl, &format!("{nginx}/send"), &["-d", "message=again"]);
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    assert_eq!(json_number(&body, "id"), id + 1, "{body}");
    let expected = (id + 1, "again".to_string());
    let on_2 = via_2.next_message(PROMPTLY).map(id_and_data);
    assert_eq!(on_2.as_ref(), Some(&expected), "via instance 2{cluster}");
    let on_nginx = via_nginx.next_message(PROMPTLY).map(id_and_data);
    assert_eq!(on_nginx.as_ref(), Some(&expected), "via nginx{cluster}");

    drop(via_nginx);
    cluster.stop();
    // The script cleaned up after itself: its servers are gone with it.
    assert!(
        TcpStream::connect(instances[1]).is_err(),
        "instance 2 stopped with the script"
    );
    eprintln!(
        "cluster ready after {ready_after:?}, whole test {:?}",
        started.elapsed()
    );
}

#[test]
fn through_the_cluster_script_stopping_redis_leaves_the_rest_serving_and_enter_starts_it_again() {
    let Some(curl) = cluster_tools() else { return };
    let (mut cluster, instances, https_port, redis_port) = start_cluster();
    let nginx = format!("https://127.0.0.1:{https_port}");
    let send_to_1 = |message: &str| {
        post(
            &format!("http://{}/send", instances[0]),
            "application/x-www-form-urlencoded",
            &format!("message={message}"),
        )
    };
    let mut via_2 = EventStream::open(instances[1], &[]);
    assert_eq!(via_2.status(), 200, "{}", via_2.head);
    let (status, body) = send_to_1("before");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_number(&body, "id"), 1, "{body}");
    let on_2 = via_2.next_message(PROMPTLY).map(id_and_data);
    assert_eq!(on_2, Some((1, "before".to_string())), "{cluster}");

    // Redis stops, as `redis-cli -p PORT shutdown` (the banner's suggestion) stops it.
    let redis_url = resp::Url::parse(&format!("redis://127.0.0.1:{redis_port}")).unwrap();
    let mut redis = resp::Connection::connect(&redis_url, PROMPTLY).unwrap();
    let _ = redis.call(&[b"SHUTDOWN", b"NOSAVE"]); // answered by the connection closing
    cluster.line_with("Redis stopped", PROMPTLY);
    cluster.line_with("Press Enter here to start Redis again", PROMPTLY);

    // Everything else keeps running: /send answers 503, straight and through nginx, and the
    // stream keeps ticking.
    let (status, body) = send_to_1("while down");
    assert_eq!(status, 503, "{body}");
    let (version, status, body) = common::curl::post(
        &curl,
        &format!("{nginx}/send"),
        &["-d", "message=while+down"],
    );
    assert_eq!((version.as_str(), status), ("2", 503), "{body}");
    for n in 1..=2 {
        let event = via_2.next_event(PROMPTLY);
        let kind = event.map(|e| e.kind);
        assert_eq!(
            kind.as_deref(),
            Some("tick"),
            "tick {n} while Redis is down"
        );
    }

    // Enter starts it again (empty): /send works again, ids go on rising, streams get them.
    cluster.press_enter();
    cluster.line_with("Redis is back", PROMPTLY);
    let (status, body) = send_to_1("after");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_number(&body, "id"), 2, "{body}");
    let resume_within = redis_log::RETRY_MAX + PROMPTLY;
    let on_2 = via_2.next_message(resume_within).map(id_and_data);
    assert_eq!(on_2, Some((2, "after".to_string())), "{cluster}");
    let (version, status, body) =
        common::curl::post(&curl, &format!("{nginx}/send"), &["-d", "message=again"]);
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    assert_eq!(json_number(&body, "id"), 3, "{body}");
    cluster.stop();
}

#[test]
fn the_cluster_script_fails_at_once_naming_a_port_that_is_taken() {
    let Some(_curl) = cluster_tools() else { return };
    for taken in ["HTTPS_PORT", "REDIS_PORT"] {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port().to_string();
        let free = free_port().to_string();
        let (https_port, redis_port) = match taken {
            "HTTPS_PORT" => (&port, &free),
            _ => (&free, &port),
        };
        let mut command = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/run-cluster.sh"
        ));
        without_server_env(&mut command)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("HTTPS_PORT", https_port)
            .env("REDIS_PORT", redis_port);
        let exited = run_to_exit(command, PROMPTLY);
        assert_ne!(exited.code, Some(0), "{taken}: {}", exited.stderr);
        let first_line = exited.stderr.lines().next().unwrap_or_default();
        assert!(
            first_line.contains(&port) && first_line.contains(taken),
            "{taken}: {first_line:?}"
        );
        // Before anything started, so no banner: it comes only once every port is bound.
        assert!(!exited.stdout.contains("behind nginx"), "{}", exited.stdout);
        eprintln!("{taken} taken: exited after {:?}", exited.took);
        drop(holder);
    }
}
