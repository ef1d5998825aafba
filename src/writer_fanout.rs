//! The fast fan-out (the default): a few *writer* threads write each broadcast to every socket.
//!
//! Read `simple_fanout.rs` first: there each connection thread writes its own broadcasts, which
//! costs two thread switches per client per broadcast. Here one writer thread per core writes a
//! broadcast to its share of the clients, one socket after another, with no thread switch in
//! between.
//!
//! For that the sockets are non-blocking: a write that would block returns at once with
//! `WouldBlock` instead of waiting. The writer then *hands the client back* to its own connection
//! thread and moves on; that thread finishes the write in blocking mode, bounded by the write
//! timeout (see `server.rs`). So the rule of the simple way still holds: only a client's own
//! thread ever waits for that client, and a stuck client delays nobody else.
//!
//! Every write to a client's socket happens under that client's `state` lock, so frames never
//! interleave, and a writer never *waits* for that lock (it uses `try_lock`).

use std::convert::Infallible;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::Instant;

use crate::clients::{fell_behind, Client, Roster};
use crate::event_log::{Broadcast, EventLog};
use crate::sync::lock;
use crate::ticks::{StreamTimer, TickClock};

/// The clients, and what the writer threads need to find news for them.
pub struct WriterFanout {
    /// One group of clients per writer.
    clients: Roster<WriterClient>,
    /// Writer threads wait here for the next broadcast; the value is the newest id announced.
    announced: Mutex<u64>,
    wakeup: Condvar,
    /// Set by [`WriterFanout::stop`]: the writers return.
    stopping: AtomicBool,
}

/// One client, as the writers and its own thread share it.
struct WriterClient {
    client: Client,
    state: Mutex<State>,
}

struct State {
    /// Id of the last broadcast written to this client.
    cursor: u64,
    /// A frame a writer could write only in part, and how much of it went out.
    pending: Option<(Arc<[u8]>, usize)>,
    /// Writers may write to this client. False once a writer handed it back to its thread, until
    /// that thread has caught up.
    writers_may_write: bool,
    /// The error a writer got: the client is gone, and its thread reports it.
    failed: Option<io::Error>,
    /// When a writer last wrote to this client (for its thread's keep-alive timer).
    last_write: Instant,
}

impl WriterFanout {
    /// A fan-out for `writers` writer threads; they run [`WriterFanout::run_writer`].
    pub fn new(writers: usize) -> WriterFanout {
        WriterFanout {
            clients: Roster::new(writers),
            announced: Mutex::new(0),
            wakeup: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Broadcast `id` is in the log: wake the writers (not the connection threads).
    pub fn announce(&self, id: u64) {
        let mut announced = lock(&self.announced);
        // `max`, because two senders may get here in either order.
        *announced = (*announced).max(id);
        self.wakeup.notify_all();
    }

    /// Ends every stream now (`POST /drop`); returns how many there were.
    pub fn drop_streams(&self) -> usize {
        let mut dropped = 0;
        self.clients.each(|writer_client| {
            writer_client.client.drop_stream();
            dropped += 1;
        });
        dropped
    }

    /// Tells the writer threads to return (when the server shuts down).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _announced = lock(&self.announced);
        self.wakeup.notify_all();
    }

    /// The loop of writer number `index`: wait for news, write it to this writer's clients.
    /// Returns after [`WriterFanout::stop`].
    pub fn run_writer(&self, index: usize, log: &EventLog) {
        let mut cursor = log.last_id();
        let mut news = Vec::new();
        loop {
            {
                let mut announced = lock(&self.announced);
                while *announced <= cursor && !self.stopping.load(Ordering::Acquire) {
                    announced = self
                        .wakeup
                        .wait(announced)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            news.clear();
            // If this writer fell behind the history, its clients did too: `write_news` hands
            // them back to their threads, which see the loss.
            cursor = log.after(cursor, &mut news).last_id;
            let now = Instant::now();
            for writer_client in self.clients.group(index) {
                writer_client.write_news(&news, now);
            }
        }
    }

    /// The connection thread's loop for one stream, from `cursor` (the id of the last broadcast
    /// it has) on. The writers write the broadcasts; this thread sleeps until a tick is due or a
    /// writer hands the client back, then catches up. Ends only with an error: the first failed
    /// write, a drop, or falling behind the history.
    pub fn serve(
        &self,
        stream: &Arc<TcpStream>,
        cursor: u64,
        log: &EventLog,
        clock: TickClock,
    ) -> io::Result<Infallible> {
        // Writers must never wait on a socket, so it becomes non-blocking before they see it.
        stream.set_nonblocking(true)?;
        let now = Instant::now();
        let me = Arc::new(WriterClient::new(Arc::clone(stream), cursor, now));
        let _place = self.clients.join(Arc::clone(&me));
        let mut timer = StreamTimer::new(clock, now);
        loop {
            me.client.check_dropped()?;
            // Whatever woke us (a writer handing the client back, the timer), catch up: write what
            // this client has not had yet, and the tick if it is time.
            timer.wrote(me.last_write());
            let frame = timer.frame_due(Instant::now());
            me.catch_up(log, frame.as_deref())?;
            // Sleep until the next tick, or until a writer (or a drop) wakes us early.
            thread::park_timeout(timer.wake_time().saturating_duration_since(Instant::now()));
        }
    }
}

impl WriterClient {
    fn new(stream: Arc<TcpStream>, cursor: u64, now: Instant) -> WriterClient {
        WriterClient {
            client: Client::new(stream),
            state: Mutex::new(State {
                cursor,
                pending: None,
                writers_may_write: true,
                failed: None,
                last_write: now,
            }),
        }
    }

    fn last_write(&self) -> Instant {
        lock(&self.state).last_write
    }

    /// The connection thread's turn: report a writer's failure, finish a frame a writer left half
    /// written, write every broadcast after the cursor, then `frame` (a tick) if given. Writes
    /// here may block, up to the socket's write timeout.
    ///
    /// # Errors
    /// The first failed write (the client has gone, or stopped reading for too long), or the
    /// client fell so far behind that broadcasts it never got have left the log.
    fn catch_up(&self, log: &EventLog, frame: Option<&[u8]>) -> io::Result<()> {
        let mut state = lock(&self.state);
        if let Some(err) = state.failed.take() {
            return Err(err);
        }
        if let Some((pending, written)) = state.pending.take() {
            self.write_waiting(&pending[written..])?;
        }
        let mut news = Vec::new();
        let catch_up = log.after(state.cursor, &mut news);
        if catch_up.lost > 0 {
            return Err(fell_behind(catch_up.lost));
        }
        state.cursor = catch_up.last_id;
        for broadcast in &news {
            self.write_waiting(&broadcast.frame)?;
        }
        if let Some(frame) = frame {
            self.write_waiting(frame)?;
        }
        state.writers_may_write = true;
        Ok(())
    }

    /// Writes all of `bytes`, waiting if the socket is full (up to its write timeout). It first
    /// tries without waiting, and switches the socket to blocking mode only if it has to, since
    /// that costs two extra system calls.
    fn write_waiting(&self, bytes: &[u8]) -> io::Result<()> {
        let stream = &*self.client.stream;
        let mut out = stream;
        let written = match out.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written < bytes.len() {
            stream.set_nonblocking(false)?;
            let result = out.write_all(&bytes[written..]);
            stream.set_nonblocking(true)?;
            result?;
        }
        Ok(())
    }

    /// A writer's turn: write the `news` this client has not had, without ever waiting. Anything
    /// that cannot be written at once is handed back to the client's own thread.
    fn write_news(&self, news: &[Broadcast], now: Instant) {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Its own thread is writing right now; it catches up once it is done.
            Err(TryLockError::WouldBlock) => return self.hand_back(None),
        };
        let Some(first) = news.first() else {
            return;
        };
        // Behind by more than this round's news (it was handed back earlier): its thread catches up.
        if !state.writers_may_write || state.cursor + 1 < first.id {
            return self.hand_back(Some(state));
        }
        let mut out = &*self.client.stream;
        let unsent = news
            .iter()
            .position(|b| b.id > state.cursor)
            .unwrap_or(news.len());
        for broadcast in &news[unsent..] {
            match out.write(&broadcast.frame) {
                Ok(n) if n == broadcast.frame.len() => {
                    state.cursor = broadcast.id;
                    state.last_write = now;
                }
                // Only part fitted in the socket's buffer: the rest goes to the client's thread
                // (the frame itself is shared, not copied).
                Ok(n) => {
                    state.pending = Some((Arc::clone(&broadcast.frame), n));
                    state.cursor = broadcast.id;
                    return self.hand_back(Some(state));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.hand_back(Some(state))
                }
                Err(e) => {
                    state.failed = Some(e);
                    return self.hand_back(Some(state));
                }
            }
        }
    }

    /// Leaves the client to its own thread, and wakes that thread.
    fn hand_back(&self, state: Option<MutexGuard<'_, State>>) {
        if let Some(mut state) = state {
            state.writers_may_write = false;
        }
        self.client.owner.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::HISTORY_LEN;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A client on a non-blocking server-side socket, and the far end (the "browser").
    fn client(cursor: u64) -> (Arc<WriterClient>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        near.set_nonblocking(true).unwrap();
        near.set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let client = WriterClient::new(Arc::new(near), cursor, Instant::now());
        (Arc::new(client), far)
    }

    /// A log holding `messages`, and all of its broadcasts.
    fn log_with(messages: &[&str]) -> (EventLog, Vec<Broadcast>) {
        let log = EventLog::new();
        for message in messages {
            log.publish(message);
        }
        let mut news = Vec::new();
        log.after(0, &mut news);
        (log, news)
    }

    /// Reads exactly `len` bytes from the far end.
    fn receive(far: &mut TcpStream, len: usize) -> Vec<u8> {
        far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bytes = vec![0u8; len];
        far.read_exact(&mut bytes).unwrap();
        bytes
    }

    /// Fills the socket's send buffer until a write would block.
    fn fill(client: &WriterClient) {
        let junk = [0u8; 64 * 1024];
        while (&*client.client.stream).write(&junk).is_ok() {}
    }

    #[test]
    fn a_writer_writes_the_news_and_keeps_the_client() {
        let (client, mut far) = client(0);
        let (_log, news) = log_with(&["a", "b"]);
        client.write_news(&news, Instant::now());
        let state = lock(&client.state);
        assert_eq!((state.cursor, state.writers_may_write), (2, true));
        assert_eq!(
            receive(&mut far, 30),
            b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n"
        );
    }

    #[test]
    fn a_partial_write_leaves_the_rest_to_the_owner_who_finishes_it() {
        let (client, mut far) = client(0);
        let big = "x".repeat(16 * 1024 * 1024);
        let (log, news) = log_with(&[&big]);
        client.write_news(&news, Instant::now());
        {
            let state = lock(&client.state);
            let (frame, written) = state.pending.as_ref().expect("a frame left half written");
            assert!(*written > 0 && *written < frame.len());
            assert_eq!((state.cursor, state.writers_may_write), (1, false));
        }
        let len = news[0].frame.len();
        let reader = thread::spawn(move || receive(&mut far, len));
        client.catch_up(&log, None).unwrap();
        assert_eq!(
            reader.join().unwrap(),
            &*news[0].frame,
            "every byte, in order"
        );
        assert!(lock(&client.state).writers_may_write);
    }

    #[test]
    fn a_full_socket_hands_the_client_back_without_writing() {
        let (client, _far) = client(0);
        fill(&client);
        let (_log, news) = log_with(&["a"]);
        client.write_news(&news, Instant::now());
        let state = lock(&client.state);
        assert_eq!((state.cursor, state.writers_may_write), (0, false));
        assert!(state.pending.is_none());
    }

    #[test]
    fn a_handed_back_client_gets_no_more_writes_until_its_owner_caught_up() {
        let (client, mut far) = client(0);
        let (log, news) = log_with(&["a", "b"]);
        lock(&client.state).writers_may_write = false;
        client.write_news(&news[..1], Instant::now());
        assert_eq!(lock(&client.state).cursor, 0, "the writer kept off");
        client.catch_up(&log, None).unwrap();
        assert_eq!(
            receive(&mut far, 30),
            b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n"
        );
        assert_eq!(lock(&client.state).cursor, 2);
        assert!(lock(&client.state).writers_may_write);
    }

    #[test]
    fn a_writer_never_waits_while_the_owner_holds_the_lock() {
        let (client, _far) = client(0);
        let (_log, news) = log_with(&["a"]);
        let held = lock(&client.state);
        let writer_side = Arc::clone(&client);
        let writer = thread::spawn(move || writer_side.write_news(&news, Instant::now()));
        let started = Instant::now();
        while !writer.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the writer waited"
            );
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(held.cursor, 0, "nothing written behind the owner's back");
    }

    #[test]
    fn a_failed_write_is_reported_by_the_owner() {
        let (client, far) = client(0);
        drop(far);
        let (log, news) = log_with(&["a"]);
        // The first write after the far end closed may still be accepted; a later one fails.
        for _ in 0..100 {
            client.write_news(&news, Instant::now());
            if lock(&client.state).failed.is_some() {
                break;
            }
            lock(&client.state).cursor = 0;
            lock(&client.state).writers_may_write = true;
            thread::sleep(Duration::from_millis(5));
        }
        assert!(
            lock(&client.state).failed.is_some(),
            "the writer saw the error"
        );
        assert!(client.catch_up(&log, None).is_err());
    }

    #[test]
    fn a_client_behind_the_history_is_ended_not_skipped() {
        let (client, _far) = client(0);
        let log = EventLog::new();
        for i in 0..HISTORY_LEN + 3 {
            log.publish(&i.to_string());
        }
        let err = client.catch_up(&log, None).unwrap_err();
        assert!(
            err.to_string().starts_with("fell behind: 3 broadcasts"),
            "{err}"
        );
    }
}
