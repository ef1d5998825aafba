//! The hub: the event log, the fan-out and the count of open streams, behind two calls.
//!
//! Routes need only two things from the middle of the server:
//! - [`Hub::broadcast`]: a message goes into the log (encoded once) and out to every client;
//!   Node's `for (const res of clients) res.write(frame)`.
//! - [`Hub::subscribe`]: a new `/events` stream is counted and joins the fan-out in one step
//!   (or hears "full"); its first catch-up sends what it missed. Its [`Subscription`]
//!   gives everything back when dropped, like `res.on('close', () => clients.delete(res))`.
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
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::config::Config;
use crate::event_log::{EventLog, HISTORY_LEN};
use crate::fanout::writers::{self, WriterFanout};
use crate::redis::log::{RedisLog, Tail};
use crate::simple_fanout::{self, SimpleFanout};
use crate::sync::lock;
use crate::ticks::TickClock;

/// Why the hub said no. (The routes turn each into a status: the hub knows nothing of HTTP.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubError {
    /// As many streams as [`Config::max_clients`] are open.
    Full,
    /// [`Hub::shutdown`] has begun: no new stream.
    ShuttingDown,
    /// The shared log (Redis) cannot be reached: nothing was broadcast.
    LogUnavailable,
    /// The shared log (Redis) took the message but its answer was lost, and it could not be
    /// asked in time whether the message went out: it may or may not have been broadcast.
    LogUnconfirmed,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HubError::Full => "too many clients",
            HubError::ShuttingDown => "shutting down",
            HubError::LogUnavailable => "the shared log cannot be reached",
            HubError::LogUnconfirmed => "the shared log could not confirm the broadcast",
        })
    }
}

/// How broadcasts reach the sockets.
enum Fanout {
    /// Each connection thread writes its own (`--broadcast-writers 0`, the default).
    Simple(SimpleFanout),
    /// Writer threads write them (`--broadcast-writers N`).
    Writers(WriterFanout),
}

/// Who may come in. One lock, held by [`Hub::subscribe`] while a stream is counted and joins
/// the fan-out, and by [`Hub::drop_streams`] and [`Hub::shutdown`] while they close every
/// stream: so a counted stream is always in the fan-out, and a stream that comes in while a
/// shutdown runs is refused or closed, never missed.
#[derive(Default)]
struct Door {
    /// Open `/events` streams: the `clients` in `/send`'s answer, and what the cap limits.
    open: usize,
    stopping: bool,
}

/// The state every connection thread shares: log, fan-out, and the count of open streams.
pub struct Hub {
    /// The broadcasts this instance's streams read: the log itself, or with Redis its mirror.
    log: EventLog,
    /// With `--redis`: the log shared with other instances, which numbers every broadcast.
    shared: Option<RedisLog>,
    fanout: Fanout,
    clock: TickClock,
    door: Mutex<Door>,
    max_clients: usize,
    /// The writer threads and the Redis tail thread, joined by [`Hub::shutdown`].
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set by [`Hub::shutdown`], for the Redis tail thread.
    stopping: AtomicBool,
}

impl Hub {
    /// A hub for `config`, with its writer threads (if any) started; with `--redis`, connected
    /// to Redis, its recent history copied, and a thread following it.
    ///
    /// # Errors
    /// A Redis URL that cannot be right (`InvalidInput`: a setting error); Redis cannot be
    /// reached (the message names the URL); a thread could not be started (those already
    /// started are stopped first).
    pub fn start(config: &Config) -> io::Result<Arc<Hub>> {
        let fanout = match config.broadcast_writers {
            0 => Fanout::Simple(SimpleFanout::new()),
            writers => Fanout::Writers(WriterFanout::new(writers)),
        };
        let log = EventLog::new();
        let shared = match &config.redis {
            None => None,
            Some(url) => {
                let redis = RedisLog::connect(url, &config.redis_key).map_err(|e| {
                    if e.is_bad_url() {
                        // A setting error, like a bad port.
                        let why = format!("--redis / REDIS_URL: {e}");
                        io::Error::new(io::ErrorKind::InvalidInput, why)
                    } else {
                        io::Error::other(e)
                    }
                })?;
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
            door: Mutex::default(),
            max_clients: config.max_clients,
            threads: Mutex::default(),
            stopping: AtomicBool::new(false),
        });
        if let Err(e) = hub.start_threads(config.broadcast_writers) {
            hub.shutdown();
            return Err(e);
        }
        Ok(hub)
    }

    /// Starts the writer threads (if any) and the Redis tail thread (with `--redis`).
    fn start_threads(self: &Arc<Hub>, writers: usize) -> io::Result<()> {
        for index in 0..writers {
            let for_thread = Arc::clone(self);
            // Read here, not in the thread: a broadcast sent before the thread first runs must
            // still count as news to it.
            let cursor = self.log.last_id();
            let handle = thread::Builder::new()
                .name(format!("writer-{index}"))
                .spawn(move || {
                    if let Fanout::Writers(writers) = &for_thread.fanout {
                        writers.run_writer(index, &for_thread.log, cursor);
                    }
                })?;
            lock(&self.threads).push(handle);
        }
        if let Some(redis) = &self.shared {
            let tail = redis.tail(self.log.last_id());
            let for_thread = Arc::clone(self);
            let handle = thread::Builder::new()
                .name("redis-tail".to_string())
                .spawn(move || for_thread.follow(tail))?;
            lock(&self.threads).push(handle);
        }
        Ok(())
    }

    /// Broadcasts `message` to every `/events` client and returns its id: appended to the log
    /// once, then announced to whoever writes it to the sockets. With Redis, it goes to the
    /// shared log; every instance's tail thread (this one's too) brings it back to its clients.
    ///
    /// # Errors
    /// [`HubError::LogUnavailable`] when Redis cannot be reached: nothing was broadcast;
    /// [`HubError::LogUnconfirmed`] when Redis could not say in time whether it was.
    pub fn broadcast(&self, message: &str) -> Result<u64, HubError> {
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
                    HubError::LogUnconfirmed
                } else {
                    HubError::LogUnavailable
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
    /// and announces it, until [`Hub::shutdown`] (which wakes it and waits for it).
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
        lock(&self.door).open
    }

    /// A new `/events` stream, whose browser last saw `last_event_id`, counted and in the
    /// fan-out: its first catch-up replays what it missed.
    ///
    /// # Errors
    /// [`HubError::Full`] when [`Config::max_clients`] streams are open already;
    /// [`HubError::ShuttingDown`] once [`Hub::shutdown`] has begun.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Result<Subscription<'_>, HubError> {
        let mut door = lock(&self.door);
        if door.stopping {
            return Err(HubError::ShuttingDown);
        }
        if door.open >= self.max_clients {
            return Err(HubError::Full);
        }
        let mut cursor = self.log.start(last_event_id);
        // With Redis, ids never start over, so a `Last-Event-ID` past this instance's newest is
        // one another instance has sent and the tail has yet to bring (it lags by a round trip,
        // or more while it reconnects). Live broadcasts start after it, or the browser would get
        // it twice. (Redis counts in i64: a bigger id is not one of its, and starts live.)
        if let (Some(_), Some(k)) = (&self.shared, last_event_id) {
            if k > cursor && k <= i64::MAX as u64 {
                cursor = k;
            }
        }
        let member = match &self.fanout {
            Fanout::Simple(simple) => Member::Simple(simple.join(cursor)),
            Fanout::Writers(writers) => Member::Writers(writers.join(cursor, self.clock)),
        };
        door.open += 1;
        Ok(Subscription {
            hub: self,
            member: Some(member),
            clients: door.open,
        })
    }

    /// Ends every open stream at once (`POST /drop`); returns how many. Their browsers reconnect
    /// by themselves after `retry` ms, with `Last-Event-ID`.
    pub fn drop_streams(&self) -> usize {
        let _door = lock(&self.door);
        self.close_streams()
    }

    fn close_streams(&self) -> usize {
        match &self.fanout {
            Fanout::Simple(simple) => simple.close_streams(),
            Fanout::Writers(writers) => writers.close_streams(),
        }
    }

    /// Ends every stream, refuses new ones, and stops the writer threads and the Redis tail
    /// thread. Returns whether every thread it started ended cleanly (joined, none panicked).
    pub fn shutdown(&self) -> bool {
        {
            let mut door = lock(&self.door);
            door.stopping = true;
            self.stopping.store(true, Ordering::Release);
            self.close_streams();
        }
        if let Fanout::Writers(writers) = &self.fanout {
            writers.stop();
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        // The tail may be sleeping before a retry: wake it (an `XREAD` ends within its wait).
        threads.iter().for_each(|handle| handle.thread().unpark());
        threads.into_iter().all(|handle| handle.join().is_ok())
    }
}

/// A stream's place in the fan-out of either kind.
enum Member<'a> {
    Simple(simple_fanout::Member<'a>),
    Writers(writers::Member<'a>),
}

/// One open stream's place in the hub: counted in `clients`, and in the fan-out, until dropped
/// (Node's `clients.delete(res)` on `'close'`).
pub struct Subscription<'a> {
    hub: &'a Hub,
    /// `None` once it has left.
    member: Option<Member<'a>>,
    /// Open streams, this one included, when it was counted.
    pub clients: usize,
}

impl Subscription<'_> {
    /// Serves the stream on `stream` (its head written) with the fan-out: what the browser
    /// missed, then ticks and live broadcasts, until a write fails (the client left or stopped
    /// reading), it falls behind the history, or it is dropped. That error is the only way out,
    /// hence `Infallible` for the `Ok` side.
    pub fn run(&mut self, stream: &Arc<TcpStream>) -> io::Result<Infallible> {
        let (log, clock) = (&self.hub.log, self.hub.clock);
        match &mut self.member {
            Some(Member::Simple(member)) => member.serve(stream, log, clock),
            Some(Member::Writers(member)) => member.serve(stream, log),
            None => Err(crate::clients::closed()),
        }
    }

    /// Gives the place back now; returns how many streams are still open.
    pub fn leave(mut self) -> usize {
        self.leave_now()
    }

    fn leave_now(&mut self) -> usize {
        let mut door = lock(&self.hub.door);
        if self.member.take().is_some() {
            door.open -= 1;
        }
        door.open
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.leave_now();
    }
}
