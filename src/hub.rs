//! The hub: the event log, the fan-out and the count of open streams, behind two calls.
//!
//! Routes need only two things from the middle of the server:
//! - [`Hub::broadcast`]: a message goes into the log (encoded once) and out to every client;
//!   Node's `for (const res of clients) res.write(frame)`.
//! - [`Hub::subscribe`]: a new `/events` stream takes a place (or hears "full", the 503), gets
//!   what it missed, and joins the fan-out; its [`Subscription`] gives everything back when
//!   dropped, like `res.on('close', () => clients.delete(res))`.
//!
//! The fan-out is one of two ways, chosen once when the server starts: `--broadcast-writers 0`
//! is the simple way (`simple_fanout.rs`), anything else the fast way (`fanout/writers.rs`).
//!
//! The log is in memory, or, with `--redis`, shared with other instances through Redis
//! (`redis/log.rs`). Then a broadcast goes to Redis first, which numbers it; a *tail* thread
//! reads every instance's broadcasts back in id order, copies them into the in-memory log (the
//! mirror the streams read from, as before) and wakes the fan-out. Each frame is still encoded
//! once per instance, not once per client.

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::clients::Closings;
use crate::config::Config;
use crate::event_log::{Broadcast, EventLog, HISTORY_LEN};
use crate::fanout::writers::WriterFanout;
use crate::http::RequestError;
use crate::redis::log::{RedisLog, Tail};
use crate::simple_fanout::SimpleFanout;
use crate::sync::lock;
use crate::ticks::TickClock;

/// How broadcasts reach the sockets.
enum Fanout {
    /// Each connection thread writes its own (`--broadcast-writers 0`).
    Simple(SimpleFanout),
    /// Writer threads write them (the default).
    Writers(WriterFanout),
}

/// The state every connection thread shares: log, fan-out, and the count of open streams.
pub struct Hub {
    /// The broadcasts this instance's streams read: the log itself, or with Redis its mirror.
    log: EventLog,
    /// With `--redis`: the log shared with other instances, which numbers every broadcast.
    shared: Option<RedisLog>,
    fanout: Fanout,
    clock: TickClock,
    /// Open `/events` streams: the `clients` in `/send`'s answer, and what the cap limits.
    clients: AtomicUsize,
    max_clients: usize,
    /// The writer threads of the fast way, joined by [`Hub::shutdown`].
    writers: Mutex<Vec<JoinHandle<()>>>,
    /// Set by [`Hub::shutdown`]: the Redis tail thread returns, no new stream is admitted.
    stopping: AtomicBool,
    /// Counts `POST /drop`s and shutdowns, for streams admitted but not yet in the fan-out.
    closings: Closings,
}

impl Hub {
    /// A hub for `config`, with its writer threads (if any) started; with `--redis`, connected
    /// to Redis, its recent history copied, and a thread following it.
    ///
    /// # Errors
    /// Redis cannot be reached (the message names the URL), or a thread could not be started.
    pub fn start(config: &Config) -> io::Result<Arc<Hub>> {
        let fanout = match config.broadcast_writers {
            0 => Fanout::Simple(SimpleFanout::new()),
            writers => Fanout::Writers(WriterFanout::new(writers)),
        };
        let log = EventLog::new();
        let shared = match &config.redis {
            None => None,
            Some(url) => {
                let redis = RedisLog::connect(url, &config.redis_key).map_err(io::Error::other)?;
                // Read first: the count may be ahead of the entries (Redis restarted empty).
                let newest = redis.newest_id().map_err(io::Error::other)?;
                // The recent history first, so a browser reconnecting here can be replayed to.
                for (id, message) in redis.history(HISTORY_LEN).map_err(io::Error::other)? {
                    log.append(id, &message);
                }
                log.skip_to(newest);
                Some(redis)
            }
        };
        let hub = Arc::new(Hub {
            log,
            shared,
            fanout,
            clock: TickClock::new(config.interval, config.keep_alive),
            clients: AtomicUsize::new(0),
            max_clients: config.max_clients,
            writers: Mutex::default(),
            stopping: AtomicBool::new(false),
            closings: Closings::default(),
        });
        for index in 0..config.broadcast_writers {
            let for_thread = Arc::clone(&hub);
            // Read here, not in the thread: a broadcast sent before the thread first runs must
            // still count as news to it.
            let cursor = hub.log.last_id();
            let handle = thread::Builder::new()
                .name(format!("writer-{index}"))
                .spawn(move || {
                    if let Fanout::Writers(writers) = &for_thread.fanout {
                        writers.run_writer(index, &for_thread.log, cursor);
                    }
                })?;
            lock(&hub.writers).push(handle);
        }
        if let Some(redis) = &hub.shared {
            let tail = redis.tail(hub.log.last_id());
            let for_thread = Arc::clone(&hub);
            thread::Builder::new()
                .name("redis-tail".to_string())
                .spawn(move || for_thread.follow(tail))?;
        }
        Ok(hub)
    }

    /// Broadcasts `message` to every `/events` client and returns its id: appended to the log
    /// once, then announced to whoever writes it to the sockets. With Redis, it goes to the
    /// shared log; every instance's tail thread (this one's too) brings it back to its clients.
    ///
    /// # Errors
    /// [`RequestError::LogUnavailable`] when Redis cannot be reached: nothing was broadcast;
    /// [`RequestError::LogUnconfirmed`] when Redis could not say in time whether it was.
    pub fn broadcast(&self, message: &str) -> Result<u64, RequestError> {
        match &self.shared {
            None => {
                let id = self.log.publish(message);
                self.announce(id);
                Ok(id)
            }
            // Above the newest id this instance has seen, even if Redis lost its data.
            Some(redis) => redis.publish(message, self.log.last_id()).map_err(|e| {
                eprintln!("redis: cannot publish: {e}");
                if e.may_have_been_sent() {
                    RequestError::LogUnconfirmed
                } else {
                    RequestError::LogUnavailable
                }
            }),
        }
    }

    /// Broadcast `id` is in the log: wake whoever writes it to the sockets.
    fn announce(&self, id: u64) {
        match &self.fanout {
            Fanout::Simple(simple) => simple.announce(),
            Fanout::Writers(writers) => writers.announce(id),
        }
    }

    /// The Redis tail thread: copies each new shared broadcast into the local log, in id order,
    /// and announces it, until [`Hub::shutdown`]. (It notices the shutdown within one
    /// [`crate::redis::log::TAIL_WAIT`]; it is not waited for.)
    fn follow(&self, mut tail: Tail) {
        while !self.stopping.load(Ordering::Acquire) {
            let entries = tail.wait();
            for (id, message) in &entries {
                self.log.append(*id, message);
            }
            if !entries.is_empty() {
                self.announce(self.log.last_id());
            }
        }
    }

    /// Open `/events` streams right now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }

    /// A place for a new `/events` stream whose browser last saw `last_event_id`.
    ///
    /// # Errors
    /// [`RequestError::TooManyClients`] when [`Config::max_clients`] streams are open already;
    /// [`RequestError::ShuttingDown`] once [`Hub::shutdown`] has begun.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Result<Subscription<'_>, RequestError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(RequestError::ShuttingDown);
        }
        let before = self
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_clients).then_some(n + 1)
            })
            .map_err(|_| RequestError::TooManyClients)?;
        let (replay, mut cursor) = self.log.start(last_event_id);
        // With Redis, ids never start over, so a `Last-Event-ID` past this instance's newest is
        // one another instance has sent and the tail has yet to bring (it lags by a round trip,
        // or more while it reconnects). Live broadcasts start after it, or the browser would get
        // it twice. (Redis counts in i64: a bigger id is not one of its, and starts live.)
        if let (Some(_), Some(k)) = (&self.shared, last_event_id) {
            if k > cursor && k <= i64::MAX as u64 {
                cursor = k;
            }
        }
        Ok(Subscription {
            hub: self,
            replay,
            cursor,
            closings_seen: self.closings.seen(),
            clients: before + 1,
            counted: true,
        })
    }

    /// Ends every open stream at once (`POST /drop`); returns how many. Their browsers reconnect
    /// by themselves after `retry` ms, with `Last-Event-ID`.
    pub fn drop_streams(&self) -> usize {
        // Counted first: a stream admitted but not yet in the fan-out sees it once it joins.
        self.closings.count();
        match &self.fanout {
            Fanout::Simple(simple) => simple.close_streams(),
            Fanout::Writers(writers) => writers.close_streams(),
        }
    }

    /// Ends every stream and stops the writer threads (joined before this returns).
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.drop_streams();
        if let Fanout::Writers(writers) = &self.fanout {
            writers.stop();
        }
        for handle in lock(&self.writers).drain(..) {
            let _ = handle.join();
        }
    }
}

/// One open stream's place in the hub: counted in `clients` until dropped.
pub struct Subscription<'a> {
    hub: &'a Hub,
    /// Broadcasts the browser missed (after its `Last-Event-ID`), oldest first.
    replay: Vec<Broadcast>,
    /// The newest broadcast id when the stream started (or, with Redis, the browser's
    /// `Last-Event-ID` if that is newer): live broadcasts are those after it.
    cursor: u64,
    /// The closings count when this stream was admitted (see [`Closings`]).
    closings_seen: u64,
    /// Open streams, this one included, when it was counted.
    pub clients: usize,
    /// Still counted in `clients` (until [`Subscription::leave`] or drop).
    counted: bool,
}

impl Subscription<'_> {
    /// Writes the replay to `stream`, then serves it with the fan-out until a write fails (the
    /// client left or stopped reading), it falls behind the history, or it is dropped. That error
    /// is the only way out, hence `Infallible` for the `Ok` side.
    pub fn run(&mut self, stream: &Arc<TcpStream>) -> io::Result<Infallible> {
        // Replay what a reconnecting client missed, oldest first, before any live broadcast.
        for broadcast in std::mem::take(&mut self.replay) {
            (&**stream).write_all(&broadcast.frame)?;
        }
        let hub = self.hub;
        let closings = (&hub.closings, self.closings_seen);
        match &hub.fanout {
            Fanout::Simple(f) => f.serve(stream, self.cursor, &hub.log, hub.clock, closings),
            Fanout::Writers(f) => f.serve(stream, self.cursor, &hub.log, hub.clock, closings),
        }
    }

    /// Gives the place back now; returns how many streams are still open.
    pub fn leave(mut self) -> usize {
        self.counted = false;
        self.hub.clients.fetch_sub(1, Ordering::AcqRel) - 1
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.hub.clients.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
