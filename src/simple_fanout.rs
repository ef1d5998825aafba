//! The simple fan-out: every connection thread writes its own broadcasts and its own ticks.
//!
//! This is the Node example's shape. There, `/send` runs `for (const res of clients)
//! res.write(frame)`, and each stream has its own `setInterval(() => res.write(tick), 1000)`.
//! Here the sender only appends the frame to the log and *wakes* every connection thread
//! ([`SimpleFanout::announce`]); each thread then copies what it has not had yet from the log to
//! its own socket, and writes its tick when the timer says so ([`SimpleFanout::serve`]).
//!
//! A write blocks only the thread that makes it, so a stuck client never delays the others. The
//! price: two thread switches per client per broadcast, which at 10,000 clients on two cores is
//! most of the time a broadcast takes. `fanout/writers.rs` is the fast way around that.

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::clients::{fell_behind, Client, Closings, Roster};
use crate::event_log::EventLog;
use crate::ticks::{StreamTimer, TickClock};

/// The connected clients, each written to by its own thread.
pub struct SimpleFanout {
    clients: Roster<Client>,
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
        }
    }

    /// A broadcast is in the log: wake every connection thread to write it.
    pub fn announce(&self) {
        self.clients.each(|client| client.owner.unpark());
    }

    /// Ends every stream now (`POST /drop`); returns how many there were.
    pub fn close_streams(&self) -> usize {
        let mut closed = 0;
        self.clients.each(|client| {
            client.close_stream();
            closed += 1;
        });
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
            if let Some(frame) = timer.frame_due(now) {
                out.write_all(&frame.encode())?;
            }
            // Sleep until the timer's next moment, or until `announce` (or `POST /drop`) wakes us.
            thread::park_timeout(timer.wake_time().saturating_duration_since(Instant::now()));
        }
    }
}
