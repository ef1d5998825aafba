//! The simple fan-out: every connection thread writes its own broadcasts and its own ticks.
//!
//! This is the Node example's shape. There, `/send` runs `for (const res of clients)
//! res.write(frame)`, and each stream has its own `setInterval(() => res.write(tick), 1000)`.
//! Here the sender only appends the frame to the log and *wakes* every connection thread
//! ([`SimpleFanout::announce`]); each thread then copies what it has not had yet from the log to
//! its own socket, and writes its tick when the timer says so ([`Member::serve`]).
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

use crate::clients::{catch_up, Client, Place, Roster};
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
        self.clients.close_streams()
    }

    /// Node's `clients.add(res)`, for the calling thread, whose stream has every broadcast up to
    /// `cursor`. The returned [`Member`] is the `clients.delete(res)` when dropped.
    pub fn join(&self, cursor: u64) -> Member<'_> {
        let client = Arc::new(Client::new());
        Member {
            _place: self.clients.join(Arc::clone(&client)),
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
        let mut news = Vec::new();
        loop {
            client.check_closed()?;
            // Node's `res.write(frame)` from the broadcast loop, done by this client's thread.
            let wrote = catch_up(log, &mut self.cursor, &mut news, |frame| {
                out.write_all(frame)
            })?;
            let now = Instant::now();
            if wrote {
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
