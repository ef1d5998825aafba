//! The fast fan-out, for thousands of clients: a few *writer* threads write every broadcast and
//! every tick to every socket.
//!
//! Read `simple_fanout.rs` first: there each connection thread writes its own broadcasts and its
//! own ticks, so every broadcast and every tick costs a thread switch per client (at 10,000
//! clients, 10,000 wake-ups a second just for ticks). Here one writer thread per core does that
//! work for its share of the clients, one socket after another, with no thread switch in
//! between:
//!
//! - **Broadcasts**: the sender appends to the log and wakes the writers; each writes the new
//!   frames (encoded once, shared) to its clients.
//! - **Ticks**: each writer keeps its clients in a queue ordered by when their next tick is due
//!   (on the 10 ms grid of `ticks.rs`, so many fall due together). When a grid step comes, it
//!   encodes one tick frame and writes it to every client due then.
//!
//! For that the sockets are non-blocking: a write that would block returns at once with
//! `WouldBlock` instead of waiting. The writer then *hands the client back* to its own connection
//! thread and moves on; that thread finishes the write in blocking mode, bounded by the write
//! timeout (see `server.rs`). So the rule of the simple way still holds: only a client's own
//! thread ever waits for that client, and a stuck client delays nobody else. The connection
//! thread has nothing else to do: it sleeps until it is handed something.
//!
//! Every write to a client's socket happens under that client's `state` lock, so frames never
//! interleave, and a writer never *waits* for that lock (it uses `try_lock`). A client joins
//! handed back: its own thread writes the head, then the replay (its first catch-up), and only
//! then lets the writers in.
//!
//! Locks are taken in one order only: `announced`, then a writer's schedule; a client's `state`
//! is never held together with either.

use std::cmp::{Ordering as ByTime, Reverse};
use std::collections::BinaryHeap;
use std::convert::Infallible;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use crate::clients::{catch_up, closed, Client, Place, Roster};
use crate::event_log::{Broadcast, EventLog};
use crate::sync::lock;
use crate::ticks::{StreamTimer, TickClock, TimerFrame};

/// How long a connection thread sleeps at most between two hand-backs: a safety net, so that it
/// also notices a lost wake-up or writers that stopped. Long, since each wake-up costs a thread
/// switch: at 10,000 clients, about 170 a second.
pub const IDLE_CHECK: Duration = Duration::from_secs(60);

/// The clients, and what the writer threads need to find work for them.
pub struct WriterFanout {
    /// One group of clients per writer.
    clients: Roster<WriterClient>,
    /// One tick queue per writer: its clients, soonest due first.
    schedules: Vec<Mutex<BinaryHeap<Reverse<Due>>>>,
    /// Writers wait here for the next broadcast (or their next tick); the value is the newest
    /// broadcast id announced.
    announced: Mutex<u64>,
    wakeup: Condvar,
    /// Set by [`WriterFanout::stop`]: the writers return.
    stopping: AtomicBool,
}

/// One client's place in a writer's tick queue.
struct Due {
    /// When the writer should look at this client again (the timer's wake time).
    at: Instant,
    timer: StreamTimer,
    client: Arc<WriterClient>,
}

// The queue orders entries by `at` alone.
impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<ByTime> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Due) -> ByTime {
        self.at.cmp(&other.at)
    }
}

/// One client, as the writers and its own thread share it.
struct WriterClient {
    client: Client,
    state: Mutex<State>,
    /// A timer frame a writer could not write (see [`OWED_NONE`]); its thread writes it.
    owed: AtomicU8,
    /// Its thread has ended: the writers forget it at its next due time.
    left: AtomicBool,
    /// When the client was created; `last_write` counts from here.
    born: Instant,
    /// Nanoseconds after `born` of the last complete write: for the keep-alive, read by writers
    /// without taking the lock.
    last_write: AtomicU64,
}

/// Values of [`WriterClient::owed`]: nothing, a keep-alive, a tick. Ordered: a tick owed is never
/// replaced by a keep-alive (a tick keeps the connection alive too); two ticks owed become one,
/// as when the simple way's timer wakes late.
const OWED_NONE: u8 = 0;
const OWED_KEEP_ALIVE: u8 = 1;
const OWED_TICK: u8 = 2;

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
}

/// What a writer's write attempt came to.
enum Wrote {
    All,
    /// The socket was full: nothing written.
    Nothing,
    /// Some bytes went out, or the write failed: the client is handed back either way.
    HandedBack,
}

impl WriterFanout {
    /// A fan-out for `writers` writer threads; they run [`WriterFanout::run_writer`].
    pub fn new(writers: usize) -> WriterFanout {
        WriterFanout {
            clients: Roster::new(writers),
            schedules: (0..writers.max(1)).map(|_| Mutex::default()).collect(),
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

    /// Wakes the writers to look at their schedules again (a client joined) or at `stopping`.
    fn wake_writers(&self) {
        let _announced = lock(&self.announced);
        self.wakeup.notify_all();
    }

    /// Ends every stream now (`POST /drop`); returns how many there were.
    pub fn close_streams(&self) -> usize {
        self.clients.close_streams()
    }

    /// Tells the writer threads to return (when the server shuts down).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_writers();
    }

    /// The loop of writer number `index`: wait for a broadcast or the next tick due, write it to
    /// this writer's clients. `cursor` is the newest id in the log when the writer was started
    /// (read before the thread runs, so no broadcast in between is missed). Returns after
    /// [`WriterFanout::stop`].
    pub fn run_writer(&self, index: usize, log: &EventLog, mut cursor: u64) {
        let mut news = Vec::new();
        loop {
            let mut announced = lock(&self.announced);
            loop {
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
                if *announced > cursor {
                    break;
                }
                let now = Instant::now();
                let wait = match self.next_due(index) {
                    Some(at) if at <= now => break,
                    Some(at) => at - now,
                    // No client: nothing is due until one joins (and wakes us).
                    None => Duration::MAX,
                };
                announced = match self.wakeup.wait_timeout(announced, wait) {
                    Ok((guard, _)) => guard,
                    Err(e) => e.into_inner().0,
                };
            }
            let has_news = *announced > cursor;
            drop(announced);
            if has_news {
                news.clear();
                // If this writer fell behind the history, its clients did too: `write_news`
                // hands them back to their threads, which see the loss.
                cursor = log.after(cursor, &mut news).last_id;
                let now = Instant::now();
                for writer_client in self.clients.group(index) {
                    writer_client.write_news(&news, now);
                }
            }
            self.write_ticks(index);
        }
    }

    /// When writer `index`'s soonest client is due, if it has any.
    fn next_due(&self, index: usize) -> Option<Instant> {
        lock(&self.schedules[index])
            .peek()
            .map(|Reverse(due)| due.at)
    }

    /// Writes the tick (or keep-alive) to every client of writer `index` that is due, and puts
    /// each back in the queue for its next one. The tick frame is encoded once for them all.
    fn write_ticks(&self, index: usize) {
        let now = Instant::now();
        let mut due_now = Vec::new();
        {
            let mut schedule = lock(&self.schedules[index]);
            while schedule.peek().is_some_and(|Reverse(due)| due.at <= now) {
                due_now.extend(schedule.pop().map(|Reverse(due)| due));
            }
        }
        // Each frame encoded once for the round, shared by every client due now.
        let mut tick: Option<Arc<[u8]>> = None;
        let mut keep_alive: Option<Arc<[u8]>> = None;
        let mut again = Vec::with_capacity(due_now.len());
        for mut due in due_now {
            if due.client.left.load(Ordering::Acquire) {
                continue; // its thread has ended: forget it (and let its socket go)
            }
            due.timer.wrote(due.client.last_write());
            if let Some(frame) = due.timer.frame_due(now) {
                let shared = match frame {
                    TimerFrame::Tick => &mut tick,
                    TimerFrame::KeepAlive => &mut keep_alive,
                };
                let bytes = Arc::clone(shared.get_or_insert_with(|| frame.encode().into()));
                due.client.write_timer_frame(frame, &bytes, now);
            }
            due.at = due.timer.wake_time();
            again.push(Reverse(due));
        }
        lock(&self.schedules[index]).extend(again);
    }

    /// Adds the calling thread's stream, which has every broadcast up to `cursor`, to the next
    /// writer's group and tick queue. The writers keep off it until its thread has caught up.
    pub fn join(&self, cursor: u64, clock: TickClock) -> Member<'_> {
        let now = Instant::now();
        let me = Arc::new(WriterClient::new(cursor, now));
        let place = self.clients.join(Arc::clone(&me));
        // Into the tick queue of the writer that has this client, and wake the writers: the
        // newcomer may be due sooner than anything they wait for.
        let timer = StreamTimer::new(clock, now);
        lock(&self.schedules[place.group()]).push(Reverse(Due {
            at: timer.wake_time(),
            timer,
            client: Arc::clone(&me),
        }));
        self.wake_writers();
        Member {
            fanout: self,
            me,
            _place: place,
        }
    }
}

/// One stream in the writer fan-out; dropping it tells the writers it has left.
pub struct Member<'a> {
    fanout: &'a WriterFanout,
    me: Arc<WriterClient>,
    _place: Place<'a, WriterClient>,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.me.left.store(true, Ordering::Release);
    }
}

impl Member<'_> {
    /// The connection thread's part: the writers write broadcasts and ticks; this thread
    /// catches up first (the replay), then sleeps until a writer hands the client back (or
    /// `POST /drop` wakes it) and catches up again. Ends only with an error: the first failed
    /// write, a `POST /drop`, or falling behind the history.
    pub fn serve(&mut self, stream: &Arc<TcpStream>, log: &EventLog) -> io::Result<Infallible> {
        let me = &self.me;
        me.client.attach(stream)?;
        // Writers must never wait on a socket, so it is non-blocking before they may write.
        stream.set_nonblocking(true)?;
        loop {
            me.client.check_closed()?;
            if self.fanout.stopping.load(Ordering::Acquire) {
                return Err(closed());
            }
            // Whatever woke us (a writer handing the client back), catch up: write what this
            // client has not had yet, and the tick or keep-alive a writer could not write.
            let owed = match me.owed.swap(OWED_NONE, Ordering::AcqRel) {
                OWED_TICK => Some(TimerFrame::Tick.encode()),
                OWED_KEEP_ALIVE => Some(TimerFrame::KeepAlive.encode()),
                _ => None,
            };
            me.catch_up(log, owed.as_deref())?;
            // Nothing to do until a writer (or `POST /drop`) wakes us: no timer of our own.
            thread::park_timeout(IDLE_CHECK);
        }
    }
}

impl AsRef<Client> for WriterClient {
    fn as_ref(&self) -> &Client {
        &self.client
    }
}

impl WriterClient {
    fn new(cursor: u64, now: Instant) -> WriterClient {
        WriterClient {
            client: Client::new(),
            state: Mutex::new(State {
                cursor,
                pending: None,
                writers_may_write: false,
                failed: None,
            }),
            owed: AtomicU8::new(OWED_NONE),
            left: AtomicBool::new(false),
            born: now,
            last_write: AtomicU64::new(0),
        }
    }

    /// When the last complete write to this client happened.
    fn last_write(&self) -> Instant {
        self.born + Duration::from_nanos(self.last_write.load(Ordering::Relaxed))
    }

    fn note_write(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.born).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.last_write.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The connection thread's turn: report a writer's failure, finish a frame a writer left half
    /// written, write every broadcast after the cursor, then `frame` (a tick a writer could not
    /// write) if given. Writes here may block, up to the socket's write timeout.
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
        catch_up(log, &mut state.cursor, &mut news, |frame| {
            self.write_waiting(frame)
        })?;
        if let Some(frame) = frame {
            self.write_waiting(frame)?;
        }
        self.note_write(Instant::now());
        state.writers_may_write = true;
        Ok(())
    }

    /// Writes all of `bytes`, waiting if the socket is full (up to its write timeout). It first
    /// tries without waiting, and switches the socket to blocking mode only if it has to, since
    /// that costs two extra system calls.
    fn write_waiting(&self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.client.stream().ok_or_else(closed)?;
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
        let Some(first) = news.first() else {
            return;
        };
        let Some(mut state) = self.try_state() else {
            // Its own thread is writing right now; it catches up once it is done.
            return self.client.owner.unpark();
        };
        // Behind by more than this round's news (it was handed back earlier): its thread catches up.
        if !state.writers_may_write || state.cursor + 1 < first.id {
            return self.hand_back(state);
        }
        let unsent = news
            .iter()
            .position(|b| b.id > state.cursor)
            .unwrap_or(news.len());
        for broadcast in &news[unsent..] {
            match self.write_now(&mut state, &broadcast.frame) {
                Wrote::All => {
                    state.cursor = broadcast.id;
                    self.note_write(now);
                }
                Wrote::Nothing => return self.hand_back(state),
                Wrote::HandedBack => {
                    state.cursor = broadcast.id;
                    return;
                }
            }
        }
    }

    /// A writer's turn for a timer frame (`bytes`, a tick or a keep-alive). If it cannot be
    /// written now, the client's own thread writes one instead.
    fn write_timer_frame(&self, frame: TimerFrame, bytes: &Arc<[u8]>, now: Instant) {
        let owe = || {
            let owed = match frame {
                TimerFrame::Tick => OWED_TICK,
                TimerFrame::KeepAlive => OWED_KEEP_ALIVE,
            };
            self.owed.fetch_max(owed, Ordering::AcqRel);
            self.client.owner.unpark();
        };
        let Some(mut state) = self.try_state() else {
            return owe();
        };
        if !state.writers_may_write {
            drop(state);
            return owe();
        }
        match self.write_now(&mut state, bytes) {
            Wrote::All => self.note_write(now),
            Wrote::Nothing => {
                self.hand_back(state);
                owe();
            }
            Wrote::HandedBack => {}
        }
    }

    /// The client's state if no one else holds it: a writer never waits for the lock.
    fn try_state(&self) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// One non-blocking write of a whole frame. A frame only partly written is left `pending`
    /// for the client's thread (shared, not copied); a failed write is left in `failed`; either
    /// way the client is handed back.
    fn write_now(&self, state: &mut MutexGuard<'_, State>, frame: &Arc<[u8]>) -> Wrote {
        let Some(mut out) = self.client.stream() else {
            return Wrote::Nothing;
        };
        match out.write(frame) {
            Ok(n) if n == frame.len() => Wrote::All,
            Ok(n) => {
                state.pending = Some((Arc::clone(frame), n));
                state.writers_may_write = false;
                self.client.owner.unpark();
                Wrote::HandedBack
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Wrote::Nothing,
            Err(e) => {
                state.failed = Some(e);
                state.writers_may_write = false;
                self.client.owner.unpark();
                Wrote::HandedBack
            }
        }
    }

    /// Leaves the client to its own thread, and wakes that thread.
    fn hand_back(&self, mut state: MutexGuard<'_, State>) {
        state.writers_may_write = false;
        drop(state);
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
        let client = WriterClient::new(cursor, Instant::now());
        client.client.attach(&Arc::new(near)).unwrap();
        // As after its thread's first catch-up.
        lock(&client.state).writers_may_write = true;
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
        while client.client.stream().unwrap().write(&junk).is_ok() {}
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
    fn a_stream_whose_writers_stopped_ends_instead_of_waiting_for_them() {
        let fanout = WriterFanout::new(1);
        let clock = TickClock::new(Duration::from_secs(60), Duration::from_secs(60));
        let mut member = fanout.join(0, clock);
        fanout.stop();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        let err = member.serve(&Arc::new(near), &EventLog::new()).unwrap_err();
        assert_eq!(err.to_string(), "dropped");
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
