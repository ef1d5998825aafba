//! Who is connected: each `/events` client's socket and thread, kept in groups so that a
//! broadcast can find them.
//!
//! Node's examples keep `const clients = new Set()`, `clients.add(res)` when a stream opens and
//! `clients.delete(res)` on `'close'`. Here [`Roster::join`] is the `add`, and the [`Place`] it
//! returns is the `delete`: dropping it removes the client, whatever way its thread ends.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};

use crate::sync::lock;

/// One `/events` client: its socket and the connection thread that serves it.
pub struct Client {
    pub stream: Arc<TcpStream>,
    /// The thread that owns this client. Whoever has news for it wakes it with `unpark`.
    pub owner: Thread,
    /// Set by `POST /drop`: the thread ends the stream at its next wake-up.
    dropped: AtomicBool,
}

impl Client {
    /// The client on `stream`, owned by the calling thread.
    pub fn new(stream: Arc<TcpStream>) -> Client {
        Client {
            stream,
            owner: thread::current(),
            dropped: AtomicBool::new(false),
        }
    }

    /// Ends this client's stream now, from any thread: the socket is shut down both ways, so the
    /// browser sees the stream end at once (and reconnects after `retry`), and the owner thread is
    /// woken to notice.
    pub fn drop_stream(&self) {
        self.dropped.store(true, Ordering::Release);
        let _ = self.stream.shutdown(Shutdown::Both);
        self.owner.unpark();
    }

    /// `Err("dropped")` once [`Client::drop_stream`] was called: the owner thread checks this
    /// each time it wakes.
    ///
    /// # Errors
    /// The stream was dropped.
    pub fn check_dropped(&self) -> io::Result<()> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(io::Error::other("dropped"));
        }
        Ok(())
    }
}

/// The error that ends the stream of a client that fell so far behind that `lost` broadcasts it
/// never got have left the log ([`crate::event_log::HISTORY_LEN`]). It is disconnected rather
/// than silently skipped: its browser reconnects and sees a clean break instead of a hidden gap.
pub fn fell_behind(lost: u64) -> io::Error {
    io::Error::other(format!(
        "fell behind: {lost} broadcasts left the history before they could be written"
    ))
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
    fn a_dropped_client_says_so_and_its_socket_is_shut() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        let client = Client::new(Arc::new(near));
        assert!(client.check_dropped().is_ok());
        client.drop_stream();
        assert_eq!(client.check_dropped().unwrap_err().to_string(), "dropped");
        let mut buf = [0u8; 1];
        assert_eq!(
            io::Read::read(&mut far, &mut buf).unwrap(),
            0,
            "the far end sees EOF"
        );
    }
}
