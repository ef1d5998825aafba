//! The simple fan-out: every connection thread writes its own broadcasts and its own ticks.
//!
//! This is the Node example's shape. There, `/send` runs `for (const res of clients)
//! res.write(frame)`, and each stream has its own `setInterval(() => res.write(tick), 1000)`.
//! Here the sender only appends the frame to the log and *wakes* every connection thread
//! ([`SimpleFanout::announce`]); each thread then copies what it has not had yet from the log to
//! its own socket, and writes its tick when the timer says so ([`SimpleFanout::serve`]).
//!
//! A write blocks only the thread that makes it, so a stuck client never delays the others. The
//! price is a thread switch per client per broadcast, so each woken thread must do almost nothing
//! else: the sender wakes them all with one call (a condition variable), not one call per thread;
//! the frames are encoded once and shared; each tick frame is encoded once per moment, not once
//! per client. `fanout/writers.rs` avoids the thread switches altogether.

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::clients::{fell_behind, Client, Closings, Roster};
use crate::event_log::EventLog;
use crate::sync::lock;
use crate::ticks::{SharedTick, StreamTimer, TickClock, TimerFrame};

/// The connected clients, each written to by its own thread.
pub struct SimpleFanout {
    clients: Roster<Client>,
    /// Counts announcements (broadcasts, and `POST /drop`s); every connection thread waits on it.
    news: Mutex<u64>,
    /// Signalled with the count: one `notify_all` wakes every waiting thread, where unparking
    /// them one by one would cost the sender one system call per client.
    news_changed: Condvar,
    /// The tick frame of the current moment, shared by every stream that ticks in it.
    tick: SharedTick,
}

impl Default for SimpleFanout {
    fn default() -> Self {
        SimpleFanout::new()
    }
}

impl SimpleFanout {
    pub fn new() -> SimpleFanout {
        SimpleFanout {
            clients: Roster::new(1),
            news: Mutex::new(0),
            news_changed: Condvar::new(),
            tick: SharedTick::default(),
        }
    }

    /// A broadcast is in the log: wake every connection thread to write it, all with one call.
    /// The sender touches neither the sockets nor the list of clients.
    pub fn announce(&self) {
        *lock(&self.news) += 1;
        self.news_changed.notify_all();
    }

    /// Ends every stream now (`POST /drop`); returns how many there were.
    pub fn close_streams(&self) -> usize {
        let mut closed = 0;
        self.clients.each(|client| {
            client.close_stream();
            closed += 1;
        });
        // Wakes the threads that wait for news, to see that they were closed.
        self.announce();
        closed
    }

    /// The connection thread's loop for one stream, from `cursor` (the id of the last broadcast
    /// it has) on: sleep until the next tick or until woken, write every broadcast after the
    /// cursor, write the tick if it is due. Ends only with an error: the first failed write, a
    /// `POST /drop` (also one since `closings` was `seen`), or falling behind the history.
    pub fn serve(
        &self,
        stream: &Arc<TcpStream>,
        mut cursor: u64,
        log: &EventLog,
        clock: TickClock,
        (closings, seen): (&Closings, u64),
    ) -> io::Result<Infallible> {
        // Node: `clients.add(res)`; `_place` is the `clients.delete(res)` when this returns.
        let client = Arc::new(Client::new(Arc::clone(stream)));
        let _place = self.clients.join(Arc::clone(&client));
        closings.check_since(seen)?;
        let mut out = &**stream;
        let mut timer = StreamTimer::new(clock, Instant::now());
        let mut news = Vec::new();
        // Read before the first catch-up: an announcement after this line is news to this thread.
        let mut heard = *lock(&self.news);
        loop {
            client.check_closed()?;
            // Node's `res.write(frame)` from the broadcast loop, done by this client's thread.
            news.clear();
            let catch_up = log.after(cursor, &mut news);
            if catch_up.lost > 0 {
                return Err(fell_behind(catch_up.lost));
            }
            for broadcast in &news {
                out.write_all(&broadcast.frame)?;
            }
            // Never back: a stream may start past the log's newest (see `Hub::subscribe`).
            cursor = cursor.max(catch_up.last_id);
            let now = Instant::now();
            if !news.is_empty() {
                timer.wrote(now);
            }
            // Node's `setInterval` callback: the tick (or a keep-alive comment) when it is time.
            match timer.frame_due(now) {
                Some(TimerFrame::Tick) => out.write_all(&self.tick.frame(&clock, now))?,
                Some(frame @ TimerFrame::KeepAlive) => out.write_all(&frame.encode())?,
                None => {}
            }
            // Sleep until the timer's next moment, or until `announce` (or `POST /drop`) wakes us.
            heard = self.wait_for_news(heard, timer.wake_time());
        }
    }

    /// Sleeps until an announcement after the `heard`th, or until `until` (the timer's next
    /// moment), whichever comes first; returns the announcements counted so far.
    fn wait_for_news(&self, heard: u64, until: Instant) -> u64 {
        let news = lock(&self.news);
        let timeout = until.saturating_duration_since(Instant::now());
        // The count is checked under the lock that `announce` takes, so no announcement falls
        // between the check and the sleep; `_while` sleeps again after a spurious wake-up.
        let (news, _) = self
            .news_changed
            .wait_timeout_while(news, timeout, |count| *count == heard)
            .unwrap_or_else(|e| e.into_inner());
        *news
    }
}
