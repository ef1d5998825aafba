//! The shared log: several server instances, one numbered sequence of broadcasts, kept in Redis.
//!
//! With one instance, [`crate::event_log::EventLog`] numbers the broadcasts itself. With several
//! behind a load balancer, a browser may send to one instance and listen on another, and
//! reconnect to a third with `Last-Event-ID`: so the numbering and the history must live in one
//! place that all of them share. Here that place is Redis, with these keys per log:
//!
//! - `<key>`, a Redis *stream*: an append-only list of entries, each with an id and fields. Entry
//!   `<n>-0` is broadcast `n`, with its text in the field `message`.
//! - `<key>:id`, a counter: the last id handed out.
//! - `<key>:sent:<token>`, for a minute after each broadcast: the id it got, so that a `/send`
//!   whose reply was lost can ask whether its broadcast landed ([`TOKEN_TTL`]).
//!
//! [`RedisLog::publish`] (on `/send`) adds an entry and returns its id. Every instance runs a
//! [`Tail`] that reads new entries as they come and appends them to its own in-memory
//! `EventLog`, which its `/events` connections read from as before:
//!
//! ```no_run
//! use std::sync::Arc;
//! use sse_server::event_log::{EventLog, HISTORY_LEN};
//! use sse_server::redis::log::RedisLog;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shared = RedisLog::connect("redis://127.0.0.1", "sse")?; // fails if Redis is not there
//! let mirror = Arc::new(EventLog::new());
//! for (id, message) in shared.history(HISTORY_LEN)? {
//!     mirror.append(id, &message);
//! }
//! let mut tail = shared.tail(mirror.last_id());
//! let copy = Arc::clone(&mirror);
//! std::thread::Builder::new()
//!     .name("redis-tail".into())
//!     .spawn(move || loop {
//!         for (id, message) in tail.wait() {
//!             copy.append(id, &message);
//!         }
//!         // ... and wake the fan-out, as a local broadcast does.
//!     })?;
//! // On /send: 200 with the id, or 503 if Redis cannot be reached. The newest id this
//! // instance has seen keeps the count from going back if Redis lost its data.
//! let id = shared.publish("hello", mirror.last_id())?;
//! # Ok(())
//! # }
//! ```
//!
//! Three things can go wrong between an instance and Redis, and each has its answer here:
//!
//! - **Redis loses its data** (restarted without persistence, or the key deleted): its counter
//!   would start at 1 again, and ids the browsers already hold would name other messages. So a
//!   publish passes the newest id its instance has seen and never takes one at or below it, and
//!   a tail that finds the log behind it moves the counter back up ([`Tail::wait`]).
//! - **A reply is lost** after the command went out: the broadcast may or may not be in the log.
//!   Each publish carries a token; trying again with the same token returns the id the first try
//!   got if it landed, and publishes if it did not, so a message goes out once
//!   ([`RedisLog::publish`]).
//! - **Redis is stuck**: each publish takes a connection of its own from a small pool, so one
//!   call waiting for a reply never makes another `/send` wait behind it.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::event_log::HISTORY_LEN;
use crate::redis::resp::{self, Connection, Error, Reply, Url};
use crate::sync;
use crate::wire;

/// Time limit for connecting, and for each command's reply. Redis answers in well under a
/// millisecond on a local network, so a Redis silent for 2 s is as good as gone.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a publish takes, finding out included: one reply ([`TIMEOUT`]), and what is left
/// to reconnect and ask whether a publish whose reply was lost landed. `/send` answers by then.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long Redis remembers a publish's token: far longer than a publish can spend asking.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Idle connections kept for publishing. More `/send`s at once each open one of their own.
pub const IDLE_CONNECTIONS: usize = 4;
/// Entries asked for in one `XREAD` or `XREVRANGE`, so that one reply stays small.
pub const BATCH: usize = 100;
/// Longest message [`RedisLog::publish`] accepts: 64 KiB, as long as the longest `/send` body.
/// A tail must be able to read back [`BATCH`] of them in one reply, within
/// [`resp::MAX_REPLY_BYTES`].
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// How long one `XREAD` waits for a new entry before asking again. A connection that died
/// without a word is noticed within this (plus [`TIMEOUT`]).
pub const TAIL_WAIT: Duration = Duration::from_secs(2);
/// After a failure the tail waits this long before trying again, then twice as long after
/// each further failure, up to [`RETRY_MAX`]: quick to come back, never a busy loop. A publish
/// asking whether it landed waits the same way, within [`PUBLISH_TIMEOUT`].
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

// BATCH messages of MAX_MESSAGE_LEN, with room for their ids and framing, fit in one reply.
const _: () = assert!(BATCH * (MAX_MESSAGE_LEN + 1024) <= resp::MAX_REPLY_BYTES);

/// The start of both scripts: `newest`, the highest id the log has handed out, from the counter
/// or from the newest entry, whichever is higher (either key may be gone on its own).
/// KEYS[1] is the stream, KEYS[2] the counter.
macro_rules! newest_id_lua {
    () => {
        r"
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if top then newest = math.max(newest, tonumber(string.match(top[1], '^%d+'))) end
"
    };
}

/// Adds one broadcast, once. Redis runs a script alone, start to end, so no other instance's
/// broadcast can come between reading the newest id and adding the entry: ids are handed out
/// in order, and entries stand in the stream in id order.
///
/// KEYS[3] is this publish's token key. ARGV[1] the message, ARGV[2] how many to keep, ARGV[3]
/// the newest id the instance has seen, ARGV[4] `retry` on a second try, ARGV[5] the token's
/// lifetime in seconds. Returns the id, or -1 when a retry cannot tell whether the first try
/// landed.
const PUBLISH_SCRIPT: &str = concat!(
    r"
-- A token already here: an earlier try of this same publish landed. Its id, not a second entry.
local landed = redis.call('GET', KEYS[3])
if landed then return tonumber(landed) end
",
    newest_id_lua!(),
    r"
-- Below what the instance has seen: the log started over (Redis lost its data). Then a first
-- try continues above what it has seen, so that no id names two messages; a retry cannot know
-- whether its first try went into the log that was lost.
if newest < tonumber(ARGV[3]) then
  if ARGV[4] == 'retry' then return -1 end
  newest = tonumber(ARGV[3])
end
local n = newest + 1
-- In decimal digits: Lua numbers are floats, which Redis would write as 1e+14 from there on.
local id = string.format('%d', n)
-- A script that fails halfway is not undone, so the entry is added before anything else: if
-- XADD fails, no id is used up and no token says it landed.
-- MAXLEN ~ trims only whole blocks of old entries, cheaply, and never below ARGV[2].
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id .. '-0', 'message', ARGV[1])
redis.call('SET', KEYS[2], id)
redis.call('SET', KEYS[3], id, 'EX', ARGV[5])
return n
"
);

/// The newest id the log has handed out.
const NEWEST_ID_SCRIPT: &str = concat!(newest_id_lua!(), "return newest");

/// Run by a tail: if the log is behind the last id the tail read (ARGV[1]), it started over,
/// and its counter moves up to that id, so that no instance hands out an id this one has seen.
/// Returns the newest id the log had.
const CATCH_UP_SCRIPT: &str = concat!(
    newest_id_lua!(),
    r"
if newest < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
return newest
"
);

/// Why [`RedisLog::publish`] returned no id.
#[derive(Debug)]
pub enum PublishError {
    /// Nothing was published: Redis could not be reached, refused the command, or the message
    /// is too long ([`MAX_MESSAGE_LEN`]).
    NotSent(Error),
    /// The command went out, its reply was lost, and Redis could not be asked in time whether
    /// it ran: the message may or may not be in the log. Says what went wrong last.
    MaybeSent(String),
}

impl PublishError {
    /// Whether the message may be in the log all the same (answer so, not "nothing was sent").
    pub fn may_have_been_sent(&self) -> bool {
        matches!(self, PublishError::MaybeSent(_))
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::NotSent(e) => write!(f, "{e}; nothing was published"),
            PublishError::MaybeSent(why) => write!(
                f,
                "{why}; could not find out within {} s whether the message was published",
                PUBLISH_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for PublishError {}

/// How one try at publishing ended, when it did not return an id.
struct Failed {
    error: Error,
    /// The command went out whole, so it may have run.
    may_have_run: bool,
}

/// Connections for publishing, kept open between calls. The lock is held only to take one or
/// give one back, never while connecting or waiting for Redis.
struct Pool {
    url: Url,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// An idle connection that is still open, or a new one, connected within `limit`.
    fn take(&self, limit: Duration) -> Result<Connection, Error> {
        loop {
            let idle = sync::lock(&self.idle).pop();
            match idle {
                Some(redis) if redis.is_open() => return Ok(redis),
                Some(_closed) => continue, // Redis closed it (a restart) while it sat idle
                None => return Connection::connect(&self.url, limit),
            }
        }
    }

    /// Keeps `redis` for the next call, if it finished its last call cleanly and the pool has
    /// room; otherwise it is closed here.
    fn give_back(&self, redis: Connection) {
        if !redis.is_open() {
            return;
        }
        let mut idle = sync::lock(&self.idle);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(redis);
        }
    }
}

/// A log shared through Redis: publish to it, read its history, follow it with a [`Tail`].
pub struct RedisLog {
    key: String,
    pool: Pool,
}

impl RedisLog {
    /// Connects to the Redis at `url` (`redis://HOST[:PORT][/DB]`) and checks that it answers.
    /// `key` names the log: instances with the same URL and key share it.
    ///
    /// # Errors
    /// [`Error::Url`] for a bad URL; [`Error::Connect`], naming the URL, if Redis cannot be
    /// reached or does not answer `PING`.
    pub fn connect(url: &str, key: &str) -> Result<RedisLog, Error> {
        let url = Url::parse(url)?;
        let mut redis = Connection::connect(&url, TIMEOUT)?;
        // Something listening is not necessarily Redis: ask now rather than at the first /send.
        match redis.call(&[b"PING"]) {
            Ok(Reply::Simple(pong)) if pong == "PONG" => {}
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(reply) => format!("PING answered with {reply:?}"),
                };
                return Err(Error::Connect {
                    url: url.to_string(),
                    source: std::io::Error::other(why),
                });
            }
        }
        Ok(RedisLog {
            key: key.to_string(),
            pool: Pool {
                url,
                idle: Mutex::new(vec![redis]),
            },
        })
    }

    /// The Redis this log is in, for messages.
    pub fn url(&self) -> &Url {
        &self.pool.url
    }

    /// Adds `message` to the shared log and returns its id: 1 on a fresh key, then one more per
    /// broadcast, whichever instance sends it, and always above `seen`, the newest id this
    /// instance has seen (so that ids keep rising even if Redis lost its data).
    ///
    /// Every instance's [`Tail`] will read it back, this one's too: append it to the local log
    /// from there, not here, so that each instance sees every broadcast in the same order.
    ///
    /// If the connection fails after the command went out, it may have run or not. Then this
    /// asks again, on a new connection, with the same token: Redis answers with the id the
    /// first try got if it landed, or publishes it now if it did not. Never twice.
    ///
    /// # Errors
    /// Within [`PUBLISH_TIMEOUT`]: [`PublishError::NotSent`] when Redis is unreachable, refuses
    /// (e.g. `<key>` holds something else) or the message is over [`MAX_MESSAGE_LEN`];
    /// [`PublishError::MaybeSent`] when the command went out and Redis could not be asked in
    /// time whether it ran (answer `/send` with 503 either way; the next call tries a new
    /// connection).
    pub fn publish(&self, message: &str, seen: u64) -> Result<u64, PublishError> {
        if message.len() > MAX_MESSAGE_LEN {
            let too_large = Error::TooLarge("message over MAX_MESSAGE_LEN");
            return Err(PublishError::NotSent(too_large));
        }
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let token_key = format!("{}:sent:{}", self.key, new_token());
        let mut pause = RETRY_MIN;
        let mut retry = false;
        loop {
            let failed = match self.try_publish(message, seen, &token_key, retry, deadline) {
                Ok(Some(id)) => return Ok(id),
                Ok(None) => {
                    return Err(PublishError::MaybeSent(
                        "the log started over while the reply was lost".to_string(),
                    ))
                }
                Err(failed) => failed,
            };
            // Nothing went out yet: nothing to find out, and the client may try again.
            if !retry && !failed.may_have_run {
                return Err(PublishError::NotSent(failed.error));
            }
            retry = true;
            if deadline.saturating_duration_since(Instant::now()) <= pause {
                return Err(PublishError::MaybeSent(failed.error.to_string()));
            }
            thread::sleep(pause);
            pause *= 2;
        }
    }

    /// One try: the id, `None` if a retry cannot tell, or how it failed.
    fn try_publish(
        &self,
        message: &str,
        seen: u64,
        token_key: &str,
        retry: bool,
        deadline: Instant,
    ) -> Result<Option<u64>, Failed> {
        let not_run = |error| Failed {
            error,
            may_have_run: false,
        };
        let reply_by = deadline.min(Instant::now() + TIMEOUT);
        let limit = reply_by.saturating_duration_since(Instant::now());
        let mut redis = self.pool.take(limit).map_err(not_run)?;
        let counter = format!("{}:id", self.key);
        let (keep, seen) = (HISTORY_LEN.to_string(), seen.to_string());
        let ttl = TOKEN_TTL.as_secs().to_string();
        let args: [&[u8]; 11] = [
            b"EVAL",
            PUBLISH_SCRIPT.as_bytes(),
            b"3", // how many of the arguments that follow are key names
            self.key.as_bytes(),
            counter.as_bytes(),
            token_key.as_bytes(),
            message.as_bytes(),
            keep.as_bytes(),
            seen.as_bytes(),
            if retry { b"retry" } else { b"first" },
            ttl.as_bytes(),
        ];
        // Until the command has gone out whole, Redis cannot have run it.
        redis.send(&args, reply_by).map_err(not_run)?;
        let reply = match redis.receive(reply_by) {
            Ok(reply) => reply,
            // An error reply: the script stopped before adding anything (see PUBLISH_SCRIPT).
            Err(error @ Error::Server(_)) => {
                self.pool.give_back(redis);
                return Err(not_run(error));
            }
            Err(error) => {
                return Err(Failed {
                    error,
                    may_have_run: true,
                })
            }
        };
        self.pool.give_back(redis);
        match reply {
            Reply::Integer(-1) => Ok(None),
            Reply::Integer(id) if id > 0 => Ok(Some(id as u64)),
            _ => Err(Failed {
                error: Error::Protocol("the publish script did not return an id"),
                may_have_run: true,
            }),
        }
    }

    /// The newest id the log has handed out (0 for a fresh key). It can be past the newest
    /// entry in [`history`](RedisLog::history): after Redis restarted empty, the live
    /// instances' tails move the count back up to what they have read (see [`Tail::wait`]).
    ///
    /// # Errors
    /// Redis unreachable, gone or too slow.
    pub fn newest_id(&self) -> Result<u64, Error> {
        let counter = format!("{}:id", self.key);
        let args: [&[u8]; 5] = [
            b"EVAL",
            NEWEST_ID_SCRIPT.as_bytes(),
            b"2",
            self.key.as_bytes(),
            counter.as_bytes(),
        ];
        let mut redis = self.pool.take(TIMEOUT)?;
        let reply = redis.call_by(&args, Instant::now() + TIMEOUT)?;
        self.pool.give_back(redis);
        match reply {
            Reply::Integer(newest) if newest >= 0 => Ok(newest as u64),
            _ => Err(Error::Protocol("the newest-id script did not return an id")),
        }
    }

    /// The newest `count` broadcasts in the log (fewer if it holds fewer), oldest first: what an
    /// instance loads into its local log at startup. Read from the newest backwards with
    /// `XREVRANGE`, [`BATCH`] at a time.
    ///
    /// # Errors
    /// Redis unreachable, gone or too slow, or a reply that is not a stream's entries.
    pub fn history(&self, count: usize) -> Result<Vec<(u64, String)>, Error> {
        let mut newest_first = Vec::new();
        // `+` is the newest id there is, `-` the oldest.
        let mut end = "+".to_string();
        while newest_first.len() < count {
            let want = (count - newest_first.len()).min(BATCH);
            let count_arg = want.to_string();
            let args: [&[u8]; 6] = [
                b"XREVRANGE",
                self.key.as_bytes(),
                end.as_bytes(),
                b"-",
                b"COUNT",
                count_arg.as_bytes(),
            ];
            let mut redis = self.pool.take(TIMEOUT)?;
            let reply = redis.call_by(&args, Instant::now() + TIMEOUT)?;
            self.pool.give_back(redis);
            let entries = entries(reply)?;
            let got = entries.len();
            let Some(oldest) = entries.last() else { break };
            // The next batch ends just before the oldest entry of this one: `(` makes the bound
            // exclusive (Redis 6.2 and later).
            end = format!("({}", oldest.id);
            newest_first.extend(entries.into_iter().filter_map(|e| e.broadcast(&self.key)));
            if got < want {
                break; // the start of the stream
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// A reader of the entries after broadcast `after_id`, on a connection of its own (see
    /// [`Tail::wait`]). It connects on its first `wait`.
    pub fn tail(&self, after_id: u64) -> Tail {
        Tail {
            url: self.pool.url.clone(),
            key: self.key.clone(),
            cursor: StreamId(after_id, 0),
            connection: None,
            check_due: true,
            retry_in: RETRY_MIN,
            failing: false,
        }
    }
}

/// A token no other publish has, on any instance: the process, the time, a count, and the
/// random keys std seeds every `HashMap` with. (std has no random number generator of its own.)
fn new_token() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos());
    let mut random = RandomState::new().build_hasher();
    random.write_u128(nanos);
    random.write_u64(count);
    format!(
        "{:x}-{nanos:x}-{count:x}-{:016x}",
        std::process::id(),
        random.finish()
    )
}

/// Follows the shared log: each [`wait`](Tail::wait) returns the entries added since the last
/// one it returned, in id order, each once.
pub struct Tail {
    url: Url,
    key: String,
    /// The last entry read; the next `XREAD` asks for what comes strictly after it.
    cursor: StreamId,
    connection: Option<Connection>,
    /// Whether to look, before the next `XREAD`, whether the log started over behind the
    /// cursor: on a new connection (Redis may have restarted), and after a quiet `XREAD` (the
    /// key may have been deleted).
    check_due: bool,
    /// How long to sleep after the next failure.
    retry_in: Duration,
    /// Whether the last try failed (to say so once Redis is back).
    failing: bool,
}

impl Tail {
    /// Waits up to [`TAIL_WAIT`] for entries after the last one returned, and returns them,
    /// oldest first (none if nothing came). Call it in a loop, on a thread of its own.
    ///
    /// It never fails: when Redis cannot be reached it logs why to stderr, sleeps (100 ms, then
    /// twice as long each time, up to 5 s), and returns nothing; a later call connects again and
    /// carries on after the last id it returned, so nothing is missed or repeated. Entries that
    /// left the stream meanwhile are skipped: the first id returned is then more than one past
    /// the last, which [`EventLog::append`](crate::event_log::EventLog::append) handles.
    ///
    /// A log found behind the last id returned started over (Redis lost its data, or the key
    /// was deleted). The tail logs one line, moves the log's counter up to that id, and carries
    /// on after it: every instance's publishes continue above it, so the ids this instance's
    /// browsers hold keep naming the messages they named. (Entries at or below it, published
    /// meanwhile by an instance that had seen fewer, are skipped, and the line says so.)
    pub fn wait(&mut self) -> Vec<(u64, String)> {
        let after = self.cursor;
        match self.read() {
            Ok(entries) => {
                if self.failing {
                    self.failing = false;
                    eprintln!(
                        "redis: reading '{}' from {} again, after id {}",
                        self.key, self.url, after.0
                    );
                }
                self.retry_in = RETRY_MIN;
                entries
            }
            Err(e) => {
                self.failing = true;
                self.connection = None;
                eprintln!(
                    "redis: cannot read '{}' from {}: {e}; trying again in {} ms",
                    self.key,
                    self.url,
                    self.retry_in.as_millis()
                );
                // Parked, not slept: a shutdown wakes it (`Hub::shutdown` unparks it).
                thread::park_timeout(self.retry_in);
                self.retry_in = (self.retry_in * 2).min(RETRY_MAX);
                Vec::new()
            }
        }
    }

    fn read(&mut self) -> Result<Vec<(u64, String)>, Error> {
        let mut redis = match self.connection.take() {
            Some(redis) if redis.is_open() => redis,
            _ => {
                self.check_due = true;
                Connection::connect(&self.url, TIMEOUT)?
            }
        };
        if self.check_due {
            self.catch_up(&mut redis)?;
            self.check_due = false;
        }
        let count = BATCH.to_string();
        let block = TAIL_WAIT.as_millis().to_string();
        let after = self.cursor.to_string();
        let args: [&[u8]; 8] = [
            b"XREAD",
            b"COUNT",
            count.as_bytes(),
            // Wait for an entry to come instead of answering "none" at once.
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
            self.key.as_bytes(),
            // Strictly after this id. (A stream that does not exist yet is waited for too.)
            after.as_bytes(),
        ];
        let reply = redis.call_waiting(&args, TAIL_WAIT)?;
        self.connection = Some(redis);
        // One [stream name, entries] pair per stream asked for; null when the wait ran out.
        let mut read = Vec::new();
        if let Reply::Array(Some(streams)) = reply {
            for stream in streams {
                let [_name, stream_entries] = pair(stream)?;
                read.extend(entries(stream_entries)?);
            }
        } else if reply != Reply::Array(None) {
            return Err(Error::Protocol("XREAD reply is not an array"));
        }
        match read.last() {
            Some(last) => self.cursor = last.id,
            None => self.check_due = true, // quiet: was the key deleted under us?
        }
        Ok(read
            .into_iter()
            .filter_map(|e| e.broadcast(&self.key))
            .collect())
    }

    /// Looks whether the log is behind the cursor, and if so moves its counter up to it and
    /// says so (see [`Tail::wait`]).
    fn catch_up(&self, redis: &mut Connection) -> Result<(), Error> {
        let counter = format!("{}:id", self.key);
        let cursor = self.cursor.0.to_string();
        let args: [&[u8]; 6] = [
            b"EVAL",
            CATCH_UP_SCRIPT.as_bytes(),
            b"2",
            self.key.as_bytes(),
            counter.as_bytes(),
            cursor.as_bytes(),
        ];
        let Reply::Integer(newest) = redis.call(&args)? else {
            return Err(Error::Protocol("the catch-up script did not return an id"));
        };
        let read = self.cursor.0;
        if newest < 0 || newest as u64 >= read {
            return Ok(());
        }
        let skipped = match newest {
            0 => String::new(),
            n => format!(
                "; broadcasts 1 to {n}, sent meanwhile by an instance that had seen fewer, \
                 are not shown here"
            ),
        };
        eprintln!(
            "redis: the log '{}' on {} started over behind id {read} (Redis lost its data, or \
             the key was deleted): its count goes on from {read}, so ids keep rising{skipped}",
            self.key, self.url
        );
        Ok(())
    }
}

/// A stream entry id, `<first>-<second>`. Redis makes the first part a time in milliseconds
/// when it picks ids itself; ours are `<broadcast id>-0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (first, second) = text.split_once('-')?;
        // `u64::MAX` is what `wire::decimal` makes of a number too big: not an id.
        let part = |text: &str| wire::decimal(text).filter(|&n| n < u64::MAX);
        Some(StreamId(part(first)?, part(second)?))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One entry as read from the stream.
struct Entry {
    id: StreamId,
    message: Option<String>,
}

impl Entry {
    /// The broadcast, if this entry is one. An entry someone else added by hand (another id
    /// form, no `message` field) is skipped with a warning rather than stopping the log.
    fn broadcast(self, key: &str) -> Option<(u64, String)> {
        match (self.id, self.message) {
            (StreamId(id, 0), Some(message)) => Some((id, message)),
            _ => {
                eprintln!(
                    "redis: skipped entry {} of '{key}': not a broadcast (id <n>-0 with a message field)",
                    self.id
                );
                None
            }
        }
    }
}

/// The two elements of a two-element array.
fn pair(reply: Reply) -> Result<[Reply; 2], Error> {
    match reply {
        Reply::Array(Some(items)) => {
            <[Reply; 2]>::try_from(items).map_err(|_| Error::Protocol("expected two elements"))
        }
        _ => Err(Error::Protocol("expected an array of two elements")),
    }
}

/// Entries as `XRANGE`, `XREVRANGE` and `XREAD` send them: `[[id, [field, value, ...]], ...]`.
fn entries(reply: Reply) -> Result<Vec<Entry>, Error> {
    let Reply::Array(Some(items)) = reply else {
        return Err(Error::Protocol("expected an array of stream entries"));
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let [id, fields] = pair(item)?;
        let Reply::Bulk(Some(id)) = id else {
            return Err(Error::Protocol("stream entry id is not a string"));
        };
        let id = StreamId::parse(&id).ok_or(Error::Protocol("stream entry id is not <n>-<n>"))?;
        // Fields and values alternate. Messages arrive as sent; were one not UTF-8 (added by
        // hand), its bad bytes would become U+FFFD.
        let message = match fields {
            Reply::Array(Some(fields)) => fields.chunks(2).find_map(|field| match field {
                [Reply::Bulk(Some(name)), Reply::Bulk(Some(value))] if name == b"message" => {
                    Some(String::from_utf8_lossy(value).into_owned())
                }
                _ => None,
            }),
            _ => None,
        };
        entries.push(Entry { id, message });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn entry(id: &str, fields: &[&str]) -> Reply {
        let fields = fields.iter().map(|f| bulk(f)).collect();
        Reply::Array(Some(vec![bulk(id), Reply::Array(Some(fields))]))
    }

    #[test]
    fn stream_ids() {
        assert_eq!(StreamId::parse(b"12-0"), Some(StreamId(12, 0)));
        assert_eq!(
            StreamId::parse(b"1700000000000-3"),
            Some(StreamId(1700000000000, 3))
        );
        for bad in [
            &b"12"[..],
            b"-0",
            b"1-",
            b"a-0",
            b"1-+1",
            b"1-0-0",
            b"99999999999999999999-0",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(StreamId(7, 0).to_string(), "7-0");
    }

    #[test]
    fn entries_become_broadcasts() {
        let reply = Reply::Array(Some(vec![
            entry("1-0", &["message", "hi"]),
            entry("2-0", &["other", "x", "message", "two\nlines"]),
        ]));
        let read: Vec<_> = entries(reply)
            .unwrap()
            .into_iter()
            .filter_map(|e| e.broadcast("k"))
            .collect();
        assert_eq!(read, [(1, "hi".into()), (2, "two\nlines".into())]);
    }

    #[test]
    fn entries_not_written_by_publish_are_skipped() {
        let reply = Reply::Array(Some(vec![
            entry("3-0", &["text", "no message field"]),
            entry("4-1", &["message", "not <n>-0"]),
            entry("5-0", &["message", "kept"]),
        ]));
        let all = entries(reply).unwrap();
        assert_eq!(all.len(), 3);
        let kept: Vec<_> = all.into_iter().filter_map(|e| e.broadcast("k")).collect();
        assert_eq!(kept, [(5, "kept".into())]);
    }

    #[test]
    fn malformed_entries_are_protocol_errors() {
        for reply in [
            Reply::Integer(1),
            Reply::Array(Some(vec![Reply::Integer(1)])),
            Reply::Array(Some(vec![Reply::Array(Some(vec![bulk("1-0")]))])),
            Reply::Array(Some(vec![entry("x", &[])])),
        ] {
            assert!(matches!(entries(reply), Err(Error::Protocol(_))));
        }
    }
}
