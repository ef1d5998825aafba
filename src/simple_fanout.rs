//! The simple fan-out: every connection thread writes its own broadcasts and its own ticks.
//!
//! This is the Node example's shape. There, `/send` runs `for (const res of clients)
//! res.write(frame)`, and each stream has its own `setInterval(() => res.write(tick), 1000)`.
//! Here the sender only appends the frame to the log and *wakes* every connection thread
//! ([`SimpleFanout::announce`]); each thread then copies what it has not had yet from the log to
//! its own socket, and writes its tick when the timer says so ([`Member::serve`]).
//!
//! A write blocks only the thread that makes it, so a stuck client never delays the others. The
//! price is a thread switch per client per broadcast, so each woken thread must do almost nothing
//! else: the sender wakes them all with one call per group (a condition variable), not one call
//! per thread; the frames are encoded once and shared; each tick frame is encoded once per
//! moment, not once per client. `fanout/writers.rs` avoids the thread switches altogether.

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::clients::{catch_up, Client, Place, Roster};
use crate::event_log::EventLog;
use crate::sync::lock;
use crate::ticks::{SharedTick, StreamTimer, TickClock, TimerFrame};

/// The connection threads wait in this many groups, each on its own lock and condition
/// variable. With one for all, the hundred or so threads that wake for their ticks at each grid
/// moment (`ticks.rs`) would queue for the same lock.
const WAIT_GROUPS: usize = 64;

/// The connected clients, each written to by its own thread.
pub struct SimpleFanout {
    /// One group of clients per entry in `news`.
    clients: Roster<Client>,
    news: Vec<News>,
    /// The tick frame of the current moment, shared by every stream that ticks in it.
    tick: SharedTick,
}

/// What one group of connection threads waits on.
#[derive(Default)]
struct News {
    /// Counts announcements (broadcasts, and `POST /drop`s).
    count: Mutex<u64>,
    /// Signalled with the count: one `notify_all` wakes every thread of the group, where
    /// unparking them one by one would cost the sender one system call per client.
    changed: Condvar,
}

impl News {
    /// Counts one more announcement and wakes every thread of the group.
    fn announce(&self) {
        *lock(&self.count) += 1;
        self.changed.notify_all();
    }

    /// The announcements counted so far.
    fn heard(&self) -> u64 {
        *lock(&self.count)
    }

    /// Sleeps until an announcement after the `heard`th, or until `until` (the timer's next
    /// moment), whichever comes first; returns the announcements counted so far.
    fn wait(&self, heard: u64, until: Instant) -> u64 {
        let count = lock(&self.count);
        let timeout = until.saturating_duration_since(Instant::now());
        // The count is checked under the lock that `announce` takes, so no announcement falls
        // between the check and the sleep; `_while` sleeps again after a spurious wake-up.
        let (count, _) = self
            .changed
            .wait_timeout_while(count, timeout, |count| *count == heard)
            .unwrap_or_else(|e| e.into_inner());
        *count
    }
}

impl Default for SimpleFanout {
    fn default() -> Self {
        SimpleFanout::new()
    }
}

impl SimpleFanout {
    pub fn new() -> SimpleFanout {
        SimpleFanout {
            clients: Roster::new(WAIT_GROUPS),
            news: (0..WAIT_GROUPS).map(|_| News::default()).collect(),
            tick: SharedTick::default(),
        }
    }

    /// A broadcast is in the log: wake every connection thread to write it, with one call per
    /// group. The sender touches neither the sockets nor the list of clients.
    pub fn announce(&self) {
        self.news.iter().for_each(News::announce);
    }

    /// Ends every stream now (`POST /drop`); returns how many there were.
    pub fn close_streams(&self) -> usize {
        let closed = self.clients.close_streams();
        // Wakes the threads that wait for news, to see that they were closed.
        self.announce();
        closed
    }

    /// Node's `clients.add(res)`, for the calling thread, whose stream has every broadcast up to
    /// `cursor`. The returned [`Member`] is the `clients.delete(res)` when dropped.
    pub fn join(&self, cursor: u64) -> Member<'_> {
        let client = Arc::new(Client::new());
        let place = self.clients.join(Arc::clone(&client));
        Member {
            news: &self.news[place.group()],
            tick: &self.tick,
            _place: place,
            client,
            cursor,
        }
    }
}

/// One stream in the simple fan-out, served by its own thread.
pub struct Member<'a> {
    client: Arc<Client>,
    /// The id of the last broadcast this stream has.
    cursor: u64,
    /// What this stream's thread waits on: its group's announcements.
    news: &'a News,
    /// The tick frame shared by every stream that ticks at the same moment.
    tick: &'a SharedTick,
    /// In the roster until dropped.
    _place: Place<'a, Client>,
}

impl Member<'_> {
    /// The connection thread's loop: write every broadcast after the cursor (the first time, the
    /// replay of what the browser missed), write the tick if it is due, sleep until the next tick
    /// or until woken. Ends only with an error: the first failed write, a `POST /drop`, or falling
    /// behind the history.
    pub fn serve(
        &mut self,
        stream: &Arc<TcpStream>,
        log: &EventLog,
        clock: TickClock,
    ) -> io::Result<Infallible> {
        let client = Arc::clone(&self.client);
        client.attach(stream)?;
        let mut out = &**stream;
        let mut timer = StreamTimer::new(clock, Instant::now());
        let mut frames = Vec::new();
        // Read before the first catch-up: an announcement after this line is news to this thread.
        let mut heard = self.news.heard();
        loop {
            client.check_closed()?;
            // Node's `res.write(frame)` from the broadcast loop, done by this client's thread.
            let wrote = catch_up(log, &mut self.cursor, &mut frames, |frame| {
                out.write_all(frame)
            })?;
            let now = Instant::now();
            if wrote {
                timer.wrote(now);
            }
            // Node's `setInterval` callback: the tick (or a keep-alive comment) when it is time.
            match timer.frame_due(now) {
                Some(TimerFrame::Tick) => out.write_all(&self.tick.frame(&clock, now))?,
                Some(frame @ TimerFrame::KeepAlive) => out.write_all(&frame.encode())?,
                None => {}
            }
            // Sleep until the timer's next moment, or until `announce` (or `POST /drop`) wakes us.
            heard = self.news.wait(heard, timer.wake_time());
        }
    }
}
