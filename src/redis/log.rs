//! The shared log: several server instances, one numbered sequence of broadcasts, kept in Redis.
//!
//! With one instance, [`crate::event_log::EventLog`] numbers the broadcasts itself. With several
//! behind a load balancer, a browser may send to one instance and listen on another, and
//! reconnect to a third with `Last-Event-ID`: so the numbering and the history must live in one
//! place that all of them share. Here that place is Redis, with two keys per log:
//!
//! - `<key>`, a Redis *stream*: an append-only list of entries, each with an id and fields. Entry
//!   `<n>-0` is broadcast `n`, with its text in the field `message`.
//! - `<key>:id`, a counter: the last id handed out.
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
//! // On /send: 200 with the id, or 503 if Redis cannot be reached.
//! let id = shared.publish("hello")?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::event_log::HISTORY_LEN;
use crate::redis::resp::{self, Connection, Error, Reply, Url};
use crate::sync;
use crate::wire;

/// Time limit for connecting, and for each command's reply. Redis answers in well under a
/// millisecond on a local network, so a Redis silent for 2 s is as good as gone.
pub const TIMEOUT: Duration = Duration::from_secs(2);
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
/// each further failure, up to [`RETRY_MAX`]: quick to come back, never a busy loop.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

// BATCH messages of MAX_MESSAGE_LEN, with room for their ids and framing, fit in one reply.
const _: () = assert!(BATCH * (MAX_MESSAGE_LEN + 1024) <= resp::MAX_REPLY_BYTES);

/// Adds one broadcast. Redis runs a script alone, start to end, so no other instance's
/// broadcast can come between reading the counter and adding the entry: ids are handed out
/// in order, one apart, and entries stand in the stream in id order.
///
/// KEYS[1] is the stream, KEYS[2] the counter; ARGV[1] the message, ARGV[2] how many to keep.
const PUBLISH_SCRIPT: &str = r"
local n = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
-- A script that fails halfway is not undone, so the entry is added before the counter
-- moves: if XADD fails, no id is used up and none goes missing.
-- MAXLEN ~ trims only whole blocks of old entries, cheaply, and never below ARGV[2].
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], string.format('%d-0', n), 'message', ARGV[1])
return redis.call('INCR', KEYS[2])
";

/// A log shared through Redis: publish to it, read its history, follow it with a [`Tail`].
pub struct RedisLog {
    url: Url,
    key: String,
    /// For `publish` and `history`, opened again after a failure. One command at a time: each
    /// takes a fraction of a millisecond.
    connection: Mutex<Option<Connection>>,
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
            url,
            key: key.to_string(),
            connection: Mutex::new(Some(redis)),
        })
    }

    /// The Redis this log is in, for messages.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Adds `message` to the shared log and returns its id: 1 on a fresh key, then one more per
    /// broadcast, whichever instance sends it.
    ///
    /// Every instance's [`Tail`] will read it back, this one's too: append it to the local log
    /// from there, not here, so that each instance sees every broadcast in the same order.
    ///
    /// # Errors
    /// Redis unreachable, gone or too slow (answer `/send` with 503: the next call tries a new
    /// connection); [`Error::TooLarge`] for a message over [`MAX_MESSAGE_LEN`];
    /// [`Error::Server`] if Redis refuses, e.g. because `<key>` holds something else.
    pub fn publish(&self, message: &str) -> Result<u64, Error> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(Error::TooLarge("message over MAX_MESSAGE_LEN"));
        }
        let counter = format!("{}:id", self.key);
        let keep = HISTORY_LEN.to_string();
        let reply = self.with_connection(|redis| {
            redis.call(&[
                b"EVAL",
                PUBLISH_SCRIPT.as_bytes(),
                b"2", // how many of the arguments that follow are key names
                self.key.as_bytes(),
                counter.as_bytes(),
                message.as_bytes(),
                keep.as_bytes(),
            ])
        })?;
        match reply {
            Reply::Integer(id) if id > 0 => Ok(id as u64),
            _ => Err(Error::Protocol("the publish script did not return an id")),
        }
    }

    /// The newest `count` broadcasts in the log (fewer if it holds fewer), oldest first: what an
    /// instance loads into its local log at startup. Read from the newest backwards with
    /// `XREVRANGE`, [`BATCH`] at a time.
    ///
    /// # Errors
    /// As for [`publish`](RedisLog::publish).
    pub fn history(&self, count: usize) -> Result<Vec<(u64, String)>, Error> {
        let mut newest_first = Vec::new();
        // `+` is the newest id there is, `-` the oldest.
        let mut end = "+".to_string();
        while newest_first.len() < count {
            let want = (count - newest_first.len()).min(BATCH);
            let reply = self.with_connection(|redis| {
                let want = want.to_string();
                let args: [&[u8]; 6] = [
                    b"XREVRANGE",
                    self.key.as_bytes(),
                    end.as_bytes(),
                    b"-",
                    b"COUNT",
                    want.as_bytes(),
                ];
                redis.call(&args)
            })?;
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
            url: self.url.clone(),
            key: self.key.clone(),
            cursor: StreamId(after_id, 0),
            connection: None,
            retry_in: RETRY_MIN,
            failing: false,
        }
    }

    /// Runs `call` on the shared connection, opening a new one first if there is none, or if
    /// the last call broke it, or if Redis closed it (a restart) while it sat idle.
    fn with_connection<T>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut slot = sync::lock(&self.connection);
        let mut redis = match slot.take() {
            Some(redis) if redis.is_open() => redis,
            _ => Connection::connect(&self.url, TIMEOUT)?,
        };
        let result = call(&mut redis);
        // Kept even if the call broke it: `is_open` tells next time.
        *slot = Some(redis);
        result
    }
}

/// Follows the shared log: each [`wait`](Tail::wait) returns the entries added since the last
/// one it returned, in id order, each once.
pub struct Tail {
    url: Url,
    key: String,
    /// The last entry read; the next `XREAD` asks for what comes strictly after it.
    cursor: StreamId,
    connection: Option<Connection>,
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
            _ => Connection::connect(&self.url, TIMEOUT)?,
        };
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
        if let Some(last) = read.last() {
            self.cursor = last.id;
        }
        Ok(read
            .into_iter()
            .filter_map(|e| e.broadcast(&self.key))
            .collect())
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
