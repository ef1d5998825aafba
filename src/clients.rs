//! Who is connected: each `/events` client's socket and thread, kept in groups so that a
//! broadcast can find them.
//!
//! Node's examples keep `const clients = new Set()`, `clients.add(res)` when a stream opens and
//! `clients.delete(res)` on `'close'`. Here [`Roster::join`] is the `add`, and the [`Place`] it
//! returns is the `delete`: dropping it removes the client, whatever way its thread ends.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};

use crate::event_log::{Broadcast, EventLog};
use crate::sync::lock;

/// One `/events` client: its socket and the connection thread that serves it.
pub struct Client {
    /// The socket, from [`Client::attach`] on (the client joins before its head is written).
    stream: OnceLock<Arc<TcpStream>>,
    /// The thread that owns this client. A writer thread with something for it wakes it with
    /// `unpark` (`fanout/writers.rs`); the simple fan-out wakes all its threads at once instead.
    pub owner: Thread,
    /// Set by `POST /drop` (or a shutdown): the thread ends the stream at its next wake-up.
    closed: AtomicBool,
}

impl AsRef<Client> for Client {
    fn as_ref(&self) -> &Client {
        self
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client owned by the calling thread, its socket not attached yet.
    pub fn new() -> Client {
        Client {
            stream: OnceLock::new(),
            owner: thread::current(),
            closed: AtomicBool::new(false),
        }
    }

    /// Gives the client its socket, once the owner has written the head.
    ///
    /// # Errors
    /// The stream was closed meanwhile.
    pub fn attach(&self, stream: &Arc<TcpStream>) -> io::Result<()> {
        let _ = self.stream.set(Arc::clone(stream));
        // Paired with the fence in `close_stream`: either it sees the socket, or we see `closed`.
        fence(Ordering::SeqCst);
        self.check_closed()
    }

    /// The socket, once attached.
    pub fn stream(&self) -> Option<&TcpStream> {
        self.stream.get().map(|stream| &**stream)
    }

    /// Ends this client's stream now, from any thread: the socket is shut down both ways, so the
    /// browser sees the stream end at once (and reconnects after `retry`), and the owner thread is
    /// unparked to notice (the simple fan-out also wakes its threads after closing them all).
    pub fn close_stream(&self) {
        self.closed.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        if let Some(stream) = self.stream() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.owner.unpark();
    }

    /// `Err("dropped")` (as the log says: `POST /drop` dropped the connection) once
    /// [`Client::close_stream`] was called: the owner thread checks this each time it wakes.
    ///
    /// # Errors
    /// The stream was closed.
    pub fn check_closed(&self) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        Ok(())
    }
}

/// The error that ends a stream closed by `POST /drop` or a shutdown; its log line says "dropped".
pub fn closed() -> io::Error {
    io::Error::other("dropped")
}

/// Writes every broadcast after `*cursor` with `write`, oldest first, and moves the cursor on;
/// returns whether there were any. A stream's first call replays what its browser missed.
///
/// # Errors
/// The first failed write, or the stream fell so far behind that broadcasts it never got have
/// left the log: it is disconnected rather than silently skipped, so its browser reconnects
/// and sees a clean break instead of a hidden gap.
pub fn catch_up(
    log: &EventLog,
    cursor: &mut u64,
    news: &mut Vec<Broadcast>,
    mut write: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    news.clear();
    let found = log.after(*cursor, news);
    if found.lost > 0 {
        return Err(io::Error::other(format!(
            "fell behind: {} broadcasts left the history before they could be written",
            found.lost
        )));
    }
    for broadcast in news.iter() {
        write(&broadcast.frame)?;
    }
    // Never back: a stream may start past the log's newest (see `Hub::subscribe`).
    *cursor = (*cursor).max(found.last_id);
    Ok(!news.is_empty())
}

/// The connected clients, in `groups` (one per writer thread, or one), each client of type `T`.
pub struct Roster<T> {
    groups: Vec<Mutex<Vec<Arc<T>>>>,
    /// Counts joins, to deal clients to the groups in turn.
    joined: AtomicUsize,
}

impl<T> Roster<T> {
    /// An empty roster of `groups` groups (at least one).
    pub fn new(groups: usize) -> Roster<T> {
        Roster {
            groups: (0..groups.max(1)).map(|_| Mutex::default()).collect(),
            joined: AtomicUsize::new(0),
        }
    }

    /// Adds `client` to the next group in turn, so each group gets its share; it stays until the
    /// returned [`Place`] is dropped.
    pub fn join(&self, client: Arc<T>) -> Place<'_, T> {
        let group = self.joined.fetch_add(1, Ordering::Relaxed) % self.groups.len();
        lock(&self.groups[group]).push(Arc::clone(&client));
        Place {
            roster: self,
            group,
            client,
        }
    }

    /// A copy of group `index`'s list, so that clients can join and leave while it is used.
    pub fn group(&self, index: usize) -> Vec<Arc<T>> {
        lock(&self.groups[index % self.groups.len()]).clone()
    }

    /// Calls `f` for every client, holding one group's lock at a time (so keep `f` short: it
    /// must not block).
    pub fn each(&self, mut f: impl FnMut(&T)) {
        for group in &self.groups {
            lock(group).iter().for_each(|client| f(client));
        }
    }
}

impl<T: AsRef<Client>> Roster<T> {
    /// Ends every client's stream now (`POST /drop`, a shutdown); returns how many there were.
    pub fn close_streams(&self) -> usize {
        let mut closed = 0;
        self.each(|client| {
            client.as_ref().close_stream();
            closed += 1;
        });
        closed
    }
}

/// A client's place in a [`Roster`]; dropping it removes the client.
pub struct Place<'a, T> {
    roster: &'a Roster<T>,
    group: usize,
    client: Arc<T>,
}

impl<T> Place<'_, T> {
    /// The group the client was dealt to.
    pub fn group(&self) -> usize {
        self.group
    }
}

impl<T> Drop for Place<'_, T> {
    fn drop(&mut self) {
        let mut group = lock(&self.roster.groups[self.group]);
        if let Some(i) = group.iter().position(|c| Arc::ptr_eq(c, &self.client)) {
            group.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_dealt_to_the_groups_in_turn_and_leave_when_their_place_drops() {
        let roster = Roster::new(2);
        let places: Vec<_> = (0..6).map(|i| roster.join(Arc::new(i))).collect();
        assert_eq!(roster.group(0).len(), 3);
        assert_eq!(roster.group(1).len(), 3);
        let mut count = 0;
        roster.each(|_| count += 1);
        assert_eq!(count, 6);
        drop(places);
        assert!(roster.group(0).is_empty() && roster.group(1).is_empty());
    }

    #[test]
    fn zero_groups_means_one() {
        let roster = Roster::new(0);
        let _a = roster.join(Arc::new("a"));
        let _b = roster.join(Arc::new("b"));
        assert_eq!(roster.group(0).len(), 2);
    }

    #[test]
    fn a_client_closed_before_its_socket_is_attached_says_dropped_when_it_is() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        let client = Client::new();
        client.close_stream();
        assert_eq!(
            client.attach(&Arc::new(near)).unwrap_err().to_string(),
            "dropped"
        );
    }

    #[test]
    fn a_closed_client_says_dropped_and_its_socket_is_shut() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        let client = Client::new();
        assert!(client.attach(&Arc::new(near)).is_ok());
        client.close_stream();
        assert_eq!(client.check_closed().unwrap_err().to_string(), "dropped");
        let mut buf = [0u8; 1];
        assert_eq!(
            io::Read::read(&mut far, &mut buf).unwrap(),
            0,
            "the far end sees EOF"
        );
    }
}
