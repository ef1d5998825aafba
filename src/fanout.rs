//! Fan-out: how one broadcast gets onto every client's socket.
//!
//! **The simple way** (`--broadcast-writers 0`): the sender wakes every connection thread, and each
//! thread copies the new frames from the log to its own socket. That is Node's
//! `for (const res of clients) res.write(frame)`, except that each write happens on the client's
//! own thread. It is easy to follow, and a stuck client only ever blocks its own thread. Its cost
//! is two thread switches per client per broadcast: at 10,000 clients on two cores, that is most
//! of the time a broadcast takes.
//!
//! **The fast way** (the default): one *writer* thread per core writes each broadcast to its share
//! of the clients, one socket after another, with no thread switch in between. For that the
//! sockets are non-blocking: a write that would block returns at once with `WouldBlock`. The
//! writer then hands that client back to its own thread and moves on; the connection thread
//! switches its socket to blocking mode and finishes the write with the usual timeout. So the
//! rule of the simple way still holds: only a client's own thread ever waits for that client.
//!
//! Either way, once a client has joined, every write to its socket happens under that client's
//! `state` lock, so frames never interleave, and a writer never *waits* for that lock (it uses
//! `try_lock`).
//!
//! A client that falls so far behind that broadcasts it has not had leave the log
//! ([`crate::event_log::HISTORY_LEN`]) is disconnected rather than silently skipped: its browser
//! reconnects and sees a clean break instead of a hidden gap.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::{self, Thread};

use crate::event_log::{Broadcast, EventLog};

/// One `/events` client, as the writers and its own thread share it.
pub struct Client {
    stream: Arc<TcpStream>,
    /// The connection thread that owns this client; writers wake it to hand the client back.
    owner: Thread,
    /// The socket is in non-blocking mode (the fast way) and must be switched to blocking mode
    /// before a write may wait.
    nonblocking: bool,
    state: Mutex<ClientState>,
}

struct ClientState {
    /// Id of the last broadcast written to this client.
    cursor: u64,
    /// A frame that a writer could write only in part, and how much of it went out.
    pending: Option<(Arc<[u8]>, usize)>,
    /// Writers may write to this client. False once a writer handed it back to its thread, until
    /// that thread has caught up.
    writers_may_write: bool,
    /// The error a writer got: the client is gone, and its thread reports it.
    failed: Option<io::Error>,
}

impl Client {
    /// The client on `stream`, owned by the calling thread, which has written every broadcast up
    /// to `cursor`.
    pub fn new(stream: Arc<TcpStream>, cursor: u64, nonblocking: bool) -> Client {
        Client {
            stream,
            owner: thread::current(),
            nonblocking,
            state: Mutex::new(ClientState {
                cursor,
                pending: None,
                writers_may_write: true,
                failed: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection thread's turn: report a writer's failure, finish a frame a writer left half
    /// written, write every broadcast after the cursor, then `tick` if one is due. Writes here may
    /// block, up to the socket's write timeout.
    ///
    /// # Errors
    /// The first failed write (the client has gone, or stopped reading for too long), or the
    /// client fell so far behind that broadcasts it never got have left the log.
    pub fn catch_up(&self, log: &EventLog, tick: Option<&[u8]>) -> io::Result<()> {
        let mut state = self.lock();
        if let Some(err) = state.failed.take() {
            return Err(err);
        }
        if let Some((frame, written)) = state.pending.take() {
            self.write_waiting(&frame[written..])?;
        }
        let mut news = Vec::new();
        let catch_up = log.after(state.cursor, &mut news);
        if catch_up.lost > 0 {
            return Err(io::Error::other(format!(
                "fell behind: {} broadcasts left the history before they could be written",
                catch_up.lost
            )));
        }
        state.cursor = catch_up.last_id;
        for broadcast in &news {
            self.write_waiting(&broadcast.frame)?;
        }
        if let Some(tick) = tick {
            self.write_waiting(tick)?;
        }
        state.writers_may_write = true;
        Ok(())
    }

    /// Writes all of `bytes`, waiting if the socket is full (up to its write timeout). On a
    /// non-blocking socket it first tries without waiting and switches to blocking mode only if
    /// it has to, since that costs two extra system calls.
    fn write_waiting(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = &*self.stream;
        if !self.nonblocking {
            return out.write_all(bytes);
        }
        let written = match out.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written < bytes.len() {
            self.stream.set_nonblocking(false)?;
            let result = out.write_all(&bytes[written..]);
            self.stream.set_nonblocking(true)?;
            result?;
        }
        Ok(())
    }

    /// A writer's turn: write the `news` this client has not had, without ever waiting. Anything
    /// that cannot be written at once is handed back to the client's own thread.
    fn write_news(&self, news: &[Broadcast]) {
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
        let mut out = &*self.stream;
        let unsent = news
            .iter()
            .position(|b| b.id > state.cursor)
            .unwrap_or(news.len());
        for broadcast in &news[unsent..] {
            match out.write(&broadcast.frame) {
                Ok(n) if n == broadcast.frame.len() => state.cursor = broadcast.id,
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
    fn hand_back(&self, state: Option<MutexGuard<'_, ClientState>>) {
        if let Some(mut state) = state {
            state.writers_may_write = false;
        }
        self.owner.unpark();
    }
}

/// The clients, and the threads that get broadcasts to them.
pub struct Fanout {
    /// Clients in groups, one group per writer (or one group for the simple way).
    groups: Vec<Mutex<Vec<Arc<Client>>>>,
    /// Writer threads wait here for the next broadcast; the value is the newest id announced.
    announced: Mutex<u64>,
    wakeup: Condvar,
    writers: usize,
    /// Counts joins, to deal clients to the groups in turn.
    joined: AtomicUsize,
}

impl Fanout {
    /// A fan-out with `writers` writer threads (0: the simple way). The threads themselves are
    /// started by [`Fanout::run_writer`].
    pub fn new(writers: usize) -> Fanout {
        Fanout {
            groups: (0..writers.max(1)).map(|_| Mutex::default()).collect(),
            announced: Mutex::new(0),
            wakeup: Condvar::new(),
            writers,
            joined: AtomicUsize::new(0),
        }
    }

    /// Whether client sockets are non-blocking (the fast way).
    pub fn uses_writers(&self) -> bool {
        self.writers > 0
    }

    fn group(&self, index: usize) -> MutexGuard<'_, Vec<Arc<Client>>> {
        let group = &self.groups[index % self.groups.len()];
        group.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a client; it receives broadcasts until the returned [`Membership`] is dropped.
    /// Clients are dealt to the writers in turn, so each writer gets its share.
    pub fn join(&self, client: Arc<Client>) -> Membership<'_> {
        let group = self.joined.fetch_add(1, Ordering::Relaxed) % self.groups.len();
        self.group(group).push(Arc::clone(&client));
        Membership {
            fanout: self,
            group,
            client,
        }
    }

    /// Tells everyone that broadcast `id` is in the log. The simple way wakes every connection
    /// thread; the fast way wakes the writers.
    pub fn announce(&self, id: u64) {
        if self.uses_writers() {
            let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            // `max`, because two senders may get here in either order.
            *announced = (*announced).max(id);
            self.wakeup.notify_all();
        } else {
            for client in self.group(0).iter() {
                client.owner.unpark();
            }
        }
    }

    /// The loop of writer number `index`: wait for news, write it to this writer's clients.
    pub fn run_writer(&self, index: usize, log: &EventLog) {
        let mut cursor = log.last_id();
        let mut news = Vec::new();
        loop {
            {
                let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
                while *announced <= cursor {
                    announced = self
                        .wakeup
                        .wait(announced)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            news.clear();
            // If this writer fell behind the history, its clients did too: `write_news` hands
            // them back to their threads, which see the loss.
            cursor = log.after(cursor, &mut news).last_id;
            // A copy of the list, so that clients can join and leave while we write.
            let clients: Vec<Arc<Client>> = self.group(index).clone();
            for client in &clients {
                client.write_news(&news);
            }
        }
    }
}

/// A client's place in the fan-out; dropping it removes the client.
pub struct Membership<'a> {
    fanout: &'a Fanout,
    group: usize,
    client: Arc<Client>,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let mut group = self.fanout.group(self.group);
        if let Some(i) = group.iter().position(|c| Arc::ptr_eq(c, &self.client)) {
            group.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected socket to build clients on.
    fn socket() -> Arc<TcpStream> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Arc::new(stream)
    }

    #[test]
    fn clients_are_dealt_to_the_writers_in_turn() {
        let fanout = Fanout::new(2);
        let memberships: Vec<_> = (0..6)
            .map(|_| fanout.join(Arc::new(Client::new(socket(), 0, true))))
            .collect();
        assert_eq!(fanout.group(0).len(), 3);
        assert_eq!(fanout.group(1).len(), 3);
        drop(memberships);
        assert!(fanout.group(0).is_empty() && fanout.group(1).is_empty());
    }

    #[test]
    fn the_simple_way_keeps_every_client_in_one_group() {
        let fanout = Fanout::new(0);
        assert!(!fanout.uses_writers());
        let _a = fanout.join(Arc::new(Client::new(socket(), 0, false)));
        let _b = fanout.join(Arc::new(Client::new(socket(), 0, false)));
        assert_eq!(fanout.group(0).len(), 2);
    }
}
