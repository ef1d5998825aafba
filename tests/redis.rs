//! The shared log against a real Redis, and the RESP client against a fake one.
//!
//! The real-Redis tests start their own `redis-server` on a free loopback port
//! (`tests/common/redis.rs`), with nothing saved to disk except what a test asks for. Without
//! `redis-server` they print "skipped" and pass, except under CI (`CI=true`), where it fails
//! them: CI installs it. `REDIS_SERVER=/nowhere cargo test --test redis` shows the skip; a path
//! there also picks the binary to use.
//!
//! The fake Redis is a `TcpListener` that answers with broken, truncated, oversized or endless
//! replies: the client must give up with an error, in time, without panicking and without
//! reading more than its limits.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::redis::{Fate, LossyProxy, Redis};
use common::tools::free_port;
use common::PROMPTLY;
use sse_server::event_log::HISTORY_LEN;
use sse_server::redis::log::{self as redis_log, PublishError, RedisLog, Tail};
use sse_server::redis::resp::{self, Connection, Error, Reply, Url};

/// A tail running on its own thread, as the server runs it, passing on what it reads. The
/// thread stops within one `wait` once this is dropped.
struct Follower {
    entries: Receiver<(u64, String)>,
    /// How many times `wait` returned: shows that an outage is not a busy loop.
    waits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Follower {
    fn start(mut tail: Tail) -> Follower {
        let (send, entries) = mpsc::channel();
        let waits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (Arc::clone(&waits), Arc::clone(&stop));
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for entry in tail.wait() {
                    let _ = send.send(entry);
                }
                w.fetch_add(1, Ordering::SeqCst);
            }
        });
        Follower {
            entries,
            waits,
            stop,
        }
    }

    /// The next `n` entries; panics if they do not all come within `within`.
    fn take(&self, n: usize, within: Duration) -> Vec<(u64, String)> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.entries.recv_timeout(left) {
                Ok(entry) => got.push(entry),
                Err(_) => panic!("expected {n} entries, got {}: {got:?}", got.len()),
            }
        }
        got
    }

    /// Checks that nothing more arrives for a while (no duplicates).
    fn nothing_more(&self) {
        if let Ok(extra) = self.entries.recv_timeout(Duration::from_millis(500)) {
            panic!("unexpected entry {extra:?}");
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn ids(entries: &[(u64, String)]) -> Vec<u64> {
    entries.iter().map(|(id, _)| *id).collect()
}

// ---------------------------------------------------------------------------------------------
// The shared log on a real Redis

#[test]
fn ids_are_consecutive_across_instances() {
    let Some(redis) = Redis::start() else { return };
    let a = RedisLog::connect(&redis.url(), "sse").unwrap();
    let b = RedisLog::connect(&redis.url(), "sse").unwrap();
    assert_eq!(a.publish("one", 0).unwrap(), 1);
    assert_eq!(b.publish("two", 0).unwrap(), 2);
    assert_eq!(a.publish("three", 0).unwrap(), 3);
    // An instance started later carries on where the others are.
    let c = RedisLog::connect(&redis.url(), "sse").unwrap();
    assert_eq!(c.publish("four", 0).unwrap(), 4);
    // Another key is another log.
    let other = RedisLog::connect(&redis.url(), "other").unwrap();
    assert_eq!(other.publish("x", 0).unwrap(), 1);
}

#[test]
fn concurrent_publishers_share_one_gapless_sequence() {
    let Some(redis) = Redis::start() else { return };
    let logs: Vec<Arc<RedisLog>> = (0..4)
        .map(|_| Arc::new(RedisLog::connect(&redis.url(), "sse").unwrap()))
        .collect();
    let threads: Vec<JoinHandle<Vec<u64>>> = logs
        .iter()
        .map(|log| {
            let log = Arc::clone(log);
            thread::spawn(move || {
                (0..50)
                    .map(|i| log.publish(&i.to_string(), 0).unwrap())
                    .collect()
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
}

#[test]
fn the_tail_sees_every_entry_once_in_order() {
    let Some(redis) = Redis::start() else { return };
    let a = Arc::new(RedisLog::connect(&redis.url(), "sse").unwrap());
    let b = Arc::new(RedisLog::connect(&redis.url(), "sse").unwrap());
    let follower = Follower::start(a.tail(0));
    // Two instances publishing at once; each remembers which id its messages got.
    let threads: Vec<JoinHandle<Vec<(u64, String)>>> = [("a", &a), ("b", &b)]
        .into_iter()
        .map(|(name, log)| {
            let log = Arc::clone(log);
            thread::spawn(move || {
                (0..60)
                    .map(|i| {
                        let message = format!("{name}{i}");
                        (log.publish(&message, 0).unwrap(), message)
                    })
                    .collect()
            })
        })
        .collect();
    let mut sent: Vec<(u64, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    sent.sort();
    let seen = follower.take(120, PROMPTLY);
    assert_eq!(seen, sent);
    assert_eq!(ids(&seen), (1..=120).collect::<Vec<u64>>());
    follower.nothing_more();
}

#[test]
fn the_tail_starts_strictly_after_the_id_it_is_given() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    for message in ["a", "b", "c"] {
        log.publish(message, 0).unwrap();
    }
    let follower = Follower::start(log.tail(2));
    assert_eq!(follower.take(1, PROMPTLY), [(3, "c".to_string())]);
    log.publish("d", 0).unwrap();
    assert_eq!(follower.take(1, PROMPTLY), [(4, "d".to_string())]);
    follower.nothing_more();
}

#[test]
fn a_tail_on_a_key_with_no_stream_yet_waits_for_it() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "fresh").unwrap();
    let mut tail = log.tail(0);
    let started = Instant::now();
    assert!(tail.wait().is_empty());
    // It waited for an entry (XREAD BLOCK) instead of returning at once.
    assert!(started.elapsed() >= redis_log::TAIL_WAIT / 2);
    log.publish("first", 0).unwrap();
    assert_eq!(tail.wait(), [(1, "first".to_string())]);
}

#[test]
fn messages_come_back_byte_for_byte() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    let odd = "line 1\r\nline 2\rline 3\n\n é ✓ $5\r\n*1 -ERR +OK \u{0}";
    let long = "x".repeat(redis_log::MAX_MESSAGE_LEN);
    log.publish(odd, 0).unwrap();
    log.publish(&long, 0).unwrap();
    assert!(matches!(
        log.publish(&format!("{long}x"), 0),
        Err(PublishError::NotSent(Error::TooLarge(_)))
    ));
    let history = log.history(10).unwrap();
    assert_eq!(history, [(1, odd.to_string()), (2, long.clone())]);
    let mut tail = log.tail(0);
    assert_eq!(tail.wait(), history);
}

#[test]
fn history_returns_the_newest_entries_oldest_first() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    assert!(log.history(HISTORY_LEN).unwrap().is_empty());
    // More than one batch (XREVRANGE ... COUNT 100), and not a multiple of it.
    for i in 1..=250 {
        assert_eq!(log.publish(&format!("m{i}"), 0).unwrap(), i);
    }
    let newest = log.history(120).unwrap();
    assert_eq!(ids(&newest), (131..=250).collect::<Vec<u64>>());
    assert!(newest.iter().all(|(id, m)| *m == format!("m{id}")));
    assert_eq!(
        ids(&log.history(HISTORY_LEN).unwrap()),
        (1..=250).collect::<Vec<u64>>()
    );
    assert_eq!(
        ids(&log.history(100).unwrap()),
        (151..=250).collect::<Vec<u64>>()
    );
    assert!(log.history(0).unwrap().is_empty());
}

#[test]
fn the_stream_keeps_at_least_the_last_history_len() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    let total = HISTORY_LEN as u64 + 300;
    for i in 1..=total {
        log.publish(&i.to_string(), 0).unwrap();
    }
    let Reply::Integer(held) = redis.connection(0).call(&[b"XLEN", b"sse"]).unwrap() else {
        panic!("XLEN is an integer")
    };
    // MAXLEN ~ trims whole blocks, so somewhat more may stay, never fewer.
    assert!(
        (HISTORY_LEN as i64..total as i64).contains(&held),
        "{held} held"
    );
    let history = log.history(HISTORY_LEN).unwrap();
    assert_eq!(
        ids(&history),
        (total - HISTORY_LEN as u64 + 1..=total).collect::<Vec<u64>>()
    );
}

#[test]
fn the_database_in_the_url_is_selected() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&format!("{}/3", redis.url()), "sse").unwrap();
    log.publish("in db 3", 0).unwrap();
    let exists = |db| redis.connection(db).call(&[b"EXISTS", b"sse", b"sse:id"]);
    assert_eq!(exists(3).unwrap(), Reply::Integer(2));
    assert_eq!(exists(0).unwrap(), Reply::Integer(0));
    // A database Redis does not have (it has 16 by default): refused at connect, naming the URL.
    let url = format!("{}/99999", redis.url());
    let err = RedisLog::connect(&url, "sse")
        .err()
        .expect("no database 99999");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn a_key_holding_something_else_is_a_server_error() {
    let Some(redis) = Redis::start() else { return };
    redis
        .connection(0)
        .call(&[b"SET", b"sse", b"a string"])
        .unwrap();
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    let err = log.publish("x", 0).unwrap_err();
    assert!(
        matches!(&err, PublishError::NotSent(Error::Server(text)) if text.contains("WRONGTYPE")),
        "{err}"
    );
    // No id was used up by the failed attempt.
    redis.connection(0).call(&[b"DEL", b"sse"]).unwrap();
    assert_eq!(log.publish("y", 0).unwrap(), 1);
}

#[test]
fn redis_restarting_loses_nothing_and_repeats_nothing() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    assert_eq!(log.publish("before 1", 0).unwrap(), 1);
    assert_eq!(log.publish("before 2", 0).unwrap(), 2);
    let follower = Follower::start(log.tail(0));
    assert_eq!(ids(&follower.take(2, PROMPTLY)), [1, 2]);

    redis.stop();
    let waits_before = follower.waits.load(Ordering::SeqCst);
    let started = Instant::now();
    let err = log.publish("while down", 0).unwrap_err();
    assert!(started.elapsed() < redis_log::TIMEOUT + PROMPTLY);
    assert!(err.to_string().contains(&redis.url()), "{err}");
    thread::sleep(Duration::from_millis(1000));
    redis.launch();
    // No busy loop while it was down: 100 + 200 + 400 ms of sleeps fill most of that second.
    let waits = follower.waits.load(Ordering::SeqCst) - waits_before;
    assert!(waits <= 8, "{waits} tries in about a second");

    // The publishing connection that Redis closed is replaced at once: no failed first try.
    assert_eq!(log.publish("after 3", 0).unwrap(), 3);
    assert_eq!(log.publish("after 4", 0).unwrap(), 4);
    // The tail resumes after id 2: 3 and 4, once each (its next try is at most 5 s away).
    let resumed = follower.take(2, redis_log::RETRY_MAX + PROMPTLY);
    assert_eq!(
        resumed,
        [(3, "after 3".to_string()), (4, "after 4".to_string())]
    );
    follower.nothing_more();
    // What was published before the restart is still there, in order.
    assert_eq!(ids(&log.history(10).unwrap()), [1, 2, 3, 4]);
}

#[test]
fn a_tail_that_fell_out_of_the_history_jumps_ahead() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    for i in 1..=5 {
        log.publish(&i.to_string(), 0).unwrap();
    }
    // Entries 1 to 3 leave the stream (as MAXLEN trimming would drop them).
    redis
        .connection(0)
        .call(&[b"XTRIM", b"sse", b"MAXLEN", b"2"])
        .unwrap();
    let mut tail = log.tail(1);
    assert_eq!(ids(&tail.wait()), [4, 5]);
}

#[test]
fn connecting_to_a_closed_port_fails_naming_the_url() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = RedisLog::connect(&url, "sse")
        .err()
        .expect("nothing listens");
    assert!(started.elapsed() < PROMPTLY);
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&url), "{text}");
}

#[test]
fn a_bad_url_is_refused_before_connecting() {
    let err = RedisLog::connect("localhost:6379", "sse").err().unwrap();
    assert!(matches!(err, Error::Url(_)));
    assert!(
        err.to_string().contains("redis://HOST[:PORT][/DB]"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Ids never go backwards, even when Redis loses its data (contract v3)

#[test]
fn a_publish_takes_an_id_above_the_newest_its_instance_has_seen() {
    let Some(redis) = Redis::start() else { return };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    assert_eq!(log.publish("a", 0).unwrap(), 1);
    // An instance that has seen 7 (in a log Redis has since lost) never takes 7 or less.
    assert_eq!(log.publish("b", 7).unwrap(), 8);
    // The count moved up with it: an instance that has seen less continues above it too.
    assert_eq!(log.publish("c", 0).unwrap(), 9);
    assert_eq!(ids(&log.history(10).unwrap()), [1, 8, 9]);
}

#[test]
fn after_redis_restarts_empty_a_publish_continues_above_what_its_instance_has_seen() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    for id in 1..=3 {
        assert_eq!(log.publish(&format!("before {id}"), id - 1).unwrap(), id);
    }
    redis.restart_empty();
    // The pooled connection Redis closed is replaced at once, and the count goes on from 3.
    assert_eq!(log.publish("after", 3).unwrap(), 4);
    assert_eq!(log.history(10).unwrap(), [(4, "after".to_string())]);
}

/// A tail has read 1 to 3; then `start_over` empties the log under it. The tail moves the count
/// back up to 3, so that even an instance that has seen nothing publishes 4, which it reads.
fn a_tail_moves_the_count_back_up_when_the_log_starts_over(start_over: impl FnOnce(&mut Redis)) {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    let follower = Follower::start(log.tail(0));
    for id in 1..=3 {
        assert_eq!(log.publish(&id.to_string(), id - 1).unwrap(), id);
    }
    assert_eq!(ids(&follower.take(3, PROMPTLY)), [1, 2, 3]);

    start_over(&mut redis);
    // On its next connection, or after its next quiet XREAD, the tail looks and sees.
    let within = redis_log::TAIL_WAIT + redis_log::RETRY_MAX + PROMPTLY;
    redis.wait_for_value("sse:id", "3", within);
    let newcomer = RedisLog::connect(&redis.url(), "sse").unwrap();
    // The count is ahead of the (empty) stream: an instance starting now starts after it.
    assert_eq!(newcomer.newest_id().unwrap(), 3);
    assert!(newcomer.history(10).unwrap().is_empty());
    assert_eq!(newcomer.publish("after", 0).unwrap(), 4);
    assert_eq!(follower.take(1, PROMPTLY), [(4, "after".to_string())]);
    follower.nothing_more();
}

#[test]
fn a_tail_moves_the_count_back_up_when_redis_restarts_empty() {
    a_tail_moves_the_count_back_up_when_the_log_starts_over(Redis::restart_empty);
}

#[test]
fn a_tail_moves_the_count_back_up_when_the_keys_are_deleted() {
    a_tail_moves_the_count_back_up_when_the_log_starts_over(|redis| {
        let deleted = redis.connection(0).call(&[b"DEL", b"sse", b"sse:id"]);
        assert_eq!(deleted.unwrap(), Reply::Integer(2));
    });
}

// ---------------------------------------------------------------------------------------------
// Exactly once across a lost reply (contract v3)

#[test]
fn a_publish_whose_reply_is_lost_after_it_ran_returns_its_id_and_is_not_added_twice() {
    let Some(redis) = Redis::start() else { return };
    let proxy = LossyProxy::start(&redis, &[Fate::RunThenDrop], Fate::Forward);
    let log = RedisLog::connect(&proxy.url, "sse").unwrap();
    assert_eq!(log.publish("once", 0).unwrap(), 1);
    // The first try, then the question on a new connection, which found the token.
    assert!(proxy.publishes.load(Ordering::SeqCst) >= 2);
    assert_eq!(redis.stream_len("sse"), 1);
    assert_eq!(log.publish("next", 1).unwrap(), 2);
}

#[test]
fn a_publish_lost_on_its_way_is_added_by_the_second_try() {
    let Some(redis) = Redis::start() else { return };
    let proxy = LossyProxy::start(&redis, &[Fate::DropBefore], Fate::Forward);
    let log = RedisLog::connect(&proxy.url, "sse").unwrap();
    assert_eq!(log.publish("once", 0).unwrap(), 1);
    assert!(proxy.publishes.load(Ordering::SeqCst) >= 2);
    assert_eq!(log.history(10).unwrap(), [(1, "once".to_string())]);
}

#[test]
fn a_publish_that_cannot_find_out_in_time_says_it_may_have_been_sent_and_is_added_once() {
    let Some(redis) = Redis::start() else { return };
    // Every reply to a publish is lost: the first try's and every question's.
    let proxy = LossyProxy::start(&redis, &[], Fate::RunThenDrop);
    let log = RedisLog::connect(&proxy.url, "sse").unwrap();
    let started = Instant::now();
    let err = log.publish("maybe", 0).unwrap_err();
    let took = started.elapsed();
    assert!(err.may_have_been_sent(), "{err}");
    assert!(took < redis_log::PUBLISH_TIMEOUT + PROMPTLY, "{took:?}");
    assert!(
        proxy.publishes.load(Ordering::SeqCst) >= 2,
        "it asked again"
    );
    // Each question found the token of the first try: one entry.
    assert_eq!(redis.stream_len("sse"), 1);
}

#[test]
fn a_publish_that_never_reached_redis_says_nothing_was_sent() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let log = RedisLog::connect(&redis.url(), "sse").unwrap();
    redis.stop();
    let err = log.publish("x", 0).unwrap_err();
    assert!(!err.may_have_been_sent(), "{err}");
    assert!(err.to_string().contains("nothing was published"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// No queue behind a stuck call (contract v3)

/// A Redis that answers the `PING` of `RedisLog::connect`, then accepts every connection and
/// never says another word.
struct SilentRedis {
    url: String,
    stop: Arc<AtomicBool>,
}

impl SilentRedis {
    fn start() -> SilentRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = SilentRedis {
            url: format!("redis://{}", listener.local_addr().unwrap()),
            stop: Arc::default(),
        };
        let stop = Arc::clone(&silent.stop);
        thread::spawn(move || {
            let mut held = Vec::new();
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if n == 0 {
                    let _ = stream.set_read_timeout(Some(PROMPTLY));
                    let _ = stream.read(&mut [0u8; 1024]);
                    let _ = stream.write_all(b"+PONG\r\n");
                }
                held.push(stream); // open, and silent
            }
        });
        silent
    }
}

impl Drop for SilentRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("redis://"));
    }
}

#[test]
fn eight_publishes_at_once_on_a_silent_redis_each_give_up_within_their_own_timeout() {
    let silent = SilentRedis::start();
    let log = Arc::new(RedisLog::connect(&silent.url, "sse").unwrap());
    let started = Instant::now();
    let publishers: Vec<_> = (0..8)
        .map(|i| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let err = log.publish(&format!("m{i}"), 0).unwrap_err();
                (err, started.elapsed())
            })
        })
        .collect();
    let mut took = Vec::new();
    for publisher in publishers {
        let (err, elapsed) = publisher.join().unwrap();
        // The commands went out and no answer came: they may have run.
        assert!(err.may_have_been_sent(), "{err}");
        took.push(elapsed);
    }
    // Each within its own limit: none waited for another, which would take a limit more.
    let slowest = *took.iter().max().unwrap();
    assert!(slowest < 2 * redis_log::PUBLISH_TIMEOUT, "{took:?}");
    eprintln!("8 publishes at once on a silent Redis gave up after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// A fake Redis

/// Short, so the timeout tests are quick.
const FAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A fake Redis on a free loopback port that serves one connection: it reads the command, then
/// `answer` writes whatever it likes. The thread returns how many bytes `answer` got written.
fn fake_redis(
    answer: impl FnOnce(&mut TcpStream) -> usize + Send + 'static,
) -> (Url, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("redis://{}", listener.local_addr().unwrap())).unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(PROMPTLY)).unwrap();
        // Writes that block this long mean the client stopped reading without closing.
        stream.set_write_timeout(Some(PROMPTLY)).unwrap();
        let mut command = [0u8; 1024];
        let _ = stream.read(&mut command);
        answer(&mut stream)
    });
    (url, server)
}

/// Writes `bytes` and waits (bounded) for the client to hang up.
fn reply_then_wait(bytes: &'static [u8]) -> impl FnOnce(&mut TcpStream) -> usize {
    move |stream| {
        let _ = stream.write_all(bytes);
        let _ = stream.read(&mut [0u8; 1]);
        bytes.len()
    }
}

/// Writes `chunk` over and over until the client hangs up, or 256 MiB have gone.
fn endless(head: &'static [u8], chunk: Vec<u8>) -> impl FnOnce(&mut TcpStream) -> usize {
    move |stream| {
        let mut written = head.len();
        if stream.write_all(head).is_err() {
            return written;
        }
        while written < 256 * 1024 * 1024 && stream.write_all(&chunk).is_ok() {
            written += chunk.len();
        }
        written
    }
}

/// Sends PING to `url` and returns the error and how long it took to come.
fn ping_fails(url: &Url) -> (Error, Duration) {
    let mut redis = Connection::connect(url, FAKE_TIMEOUT).unwrap();
    let started = Instant::now();
    let err = redis
        .call(&[b"PING"])
        .expect_err("the fake never answers right");
    let took = started.elapsed();
    // After that error the connection is out of step, and says so.
    assert!(!redis.is_open());
    assert!(redis.call(&[b"PING"]).is_err());
    (err, took)
}

#[test]
fn a_reply_that_is_not_resp_is_a_protocol_error() {
    let (url, server) = fake_redis(reply_then_wait(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
    let (err, _) = ping_fails(&url);
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    server.join().unwrap();
}

#[test]
fn a_length_below_minus_1_is_a_protocol_error() {
    let (url, server) = fake_redis(reply_then_wait(b"*-2\r\n"));
    assert!(matches!(ping_fails(&url).0, Error::Protocol(_)));
    server.join().unwrap();
}

#[test]
fn a_huge_length_is_refused_before_reading_the_data() {
    let (url, server) = fake_redis(reply_then_wait(b"$99999999999\r\n"));
    let (err, took) = ping_fails(&url);
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert!(
        took < FAKE_TIMEOUT,
        "refused at once, not after waiting for data"
    );
    server.join().unwrap();
}

#[test]
fn a_reply_cut_short_by_a_close_is_closed() {
    let (url, server) = fake_redis(|stream| {
        let _ = stream.write_all(b"$10\r\nabc");
        8 // and the socket closes
    });
    assert!(matches!(ping_fails(&url).0, Error::Closed));
    server.join().unwrap();
}

#[test]
fn a_reply_cut_short_then_silence_times_out() {
    let (url, server) = fake_redis(reply_then_wait(b"*2\r\n$10\r\nabc"));
    let (err, took) = ping_fails(&url);
    assert!(matches!(err, Error::TimedOut), "{err:?}");
    assert!(
        took >= FAKE_TIMEOUT && took < FAKE_TIMEOUT + PROMPTLY,
        "{took:?}"
    );
    server.join().unwrap();
}

#[test]
fn no_reply_at_all_times_out() {
    let (url, server) = fake_redis(reply_then_wait(b""));
    let (err, took) = ping_fails(&url);
    assert!(matches!(err, Error::TimedOut), "{err:?}");
    assert!(took < FAKE_TIMEOUT + PROMPTLY, "{took:?}");
    server.join().unwrap();
}

#[test]
fn a_reply_dribbling_in_forever_times_out_as_a_whole() {
    // One byte every 50 ms: each read succeeds, but the reply never ends.
    let (url, server) = fake_redis(|stream| {
        let mut written = 0;
        let mut bytes = b"+".iter().chain(std::iter::repeat(&b'a'));
        while stream.write_all(&[*bytes.next().unwrap()]).is_ok() && written < 1000 {
            written += 1;
            thread::sleep(Duration::from_millis(50));
        }
        written
    });
    let (err, took) = ping_fails(&url);
    assert!(matches!(err, Error::TimedOut), "{err:?}");
    assert!(took < FAKE_TIMEOUT + PROMPTLY, "{took:?}");
    assert!(server.join().unwrap() < 1000, "the client hung up");
}

#[test]
fn a_line_that_never_ends_is_refused_at_the_line_limit() {
    let (url, server) = fake_redis(endless(b"+", vec![b'a'; 4096]));
    let (err, _) = ping_fails(&url);
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    // The fake's writes stop once the client hangs up: it was not read without end.
    assert!(server.join().unwrap() < 256 * 1024 * 1024);
}

#[test]
fn arrays_nested_without_end_are_refused_at_the_depth_limit() {
    let (url, server) = fake_redis(endless(b"", b"*1\r\n".repeat(1024)));
    let (err, _) = ping_fails(&url);
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert!(server.join().unwrap() < 256 * 1024 * 1024);
}

#[test]
fn an_endless_stream_of_big_values_is_cut_off_at_the_reply_limit() {
    // An array of 1024 bulk strings of 1 MiB each, every length within its own limit: 1 GiB
    // in all, were it read to the end.
    let mut item = format!("${}\r\n", resp::MAX_BULK_LEN).into_bytes();
    item.resize(item.len() + resp::MAX_BULK_LEN, b'x');
    item.extend_from_slice(b"\r\n");
    let (url, server) = fake_redis(endless(b"*1024\r\n", item));
    let (err, _) = ping_fails(&url);
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    // The client stopped reading near MAX_REPLY_BYTES; socket buffers hold a few MiB more.
    let written = server.join().unwrap();
    assert!(
        written < resp::MAX_REPLY_BYTES + 32 * 1024 * 1024,
        "{written} bytes"
    );
}

#[test]
fn a_server_error_keeps_the_connection_usable() {
    let (url, server) = fake_redis(|stream| {
        let _ = stream.write_all(b"-ERR no such thing\r\n");
        let _ = stream.read(&mut [0u8; 1024]); // the second command
        let _ = stream.write_all(b"+PONG\r\n");
        let _ = stream.read(&mut [0u8; 1]);
        0
    });
    let mut redis = Connection::connect(&url, FAKE_TIMEOUT).unwrap();
    let err = redis.call(&[b"NOSUCH"]).unwrap_err();
    assert!(matches!(&err, Error::Server(text) if text == "ERR no such thing"));
    assert_eq!(err.to_string(), "Redis answered: ERR no such thing");
    assert!(redis.is_open());
    assert_eq!(
        redis.call(&[b"PING"]).unwrap(),
        Reply::Simple("PONG".into())
    );
    drop(redis);
    server.join().unwrap();
}

#[test]
fn a_connection_closed_by_the_server_is_seen_before_use() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("redis://{}", listener.local_addr().unwrap())).unwrap();
    let server = thread::spawn(move || drop(listener.accept())); // accepts, closes at once
    let redis = Connection::connect(&url, FAKE_TIMEOUT).unwrap();
    server.join().unwrap();
    let deadline = Instant::now() + PROMPTLY;
    while redis.is_open() {
        assert!(Instant::now() < deadline, "the close was never seen");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn something_that_is_not_redis_is_refused_at_connect() {
    let (url, server) = fake_redis(reply_then_wait(b"SSH-2.0-OpenSSH_9.2\r\n"));
    let err = RedisLog::connect(&url.to_string(), "sse")
        .err()
        .expect("not Redis");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url.to_string()), "{err}");
    server.join().unwrap();
}

#[test]
fn a_tail_on_a_broken_server_logs_sleeps_and_returns_nothing() {
    // The fake answers PING for RedisLog::connect, then a broken reply to the tail's first
    // command.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        for answer in [&b"+PONG\r\n"[..], b"*1\r\n*2\r\n$3\r\nsse\r\n*1\r\n:5\r\n"] {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(PROMPTLY)).unwrap();
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.write_all(answer);
        }
    });
    let log = RedisLog::connect(&url, "sse").unwrap();
    let mut tail = log.tail(0);
    let started = Instant::now();
    assert!(tail.wait().is_empty());
    // It slept before returning, so a caller's loop cannot spin.
    assert!(started.elapsed() >= redis_log::RETRY_MIN);
    drop(log);
    drop(tail);
    server.join().unwrap();
}
