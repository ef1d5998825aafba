//! Who is connected: each `/events` client's socket and thread, kept in groups so that a
//! broadcast can find them.
//!
//! Node's examples keep `const clients = new Set()`, `clients.add(res)` when a stream opens and
//! `clients.delete(res)` on `'close'`. Here [`Roster::join`] is the `add`, and the [`Place`] it
//! returns is the `delete`: dropping it removes the client, whatever way its thread ends.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};

use crate::sync::lock;

/// One `/events` client: its socket and the connection thread that serves it.
pub struct Client {
    pub stream: Arc<TcpStream>,
    /// The thread that owns this client. A writer thread with something for it wakes it with
    /// `unpark` (`fanout/writers.rs`); the simple fan-out wakes all its threads at once instead.
    pub owner: Thread,
    /// Set by `POST /drop` (or a shutdown): the thread ends the stream at its next wake-up.
    closed: AtomicBool,
}

impl Client {
    /// The client on `stream`, owned by the calling thread.
    pub fn new(stream: Arc<TcpStream>) -> Client {
        Client {
            stream,
            owner: thread::current(),
            closed: AtomicBool::new(false),
        }
    }

    /// Ends this client's stream now, from any thread: the socket is shut down both ways, so the
    /// browser sees the stream end at once (and reconnects after `retry`), and the owner thread is
    /// unparked to notice (the simple fan-out also wakes its threads after closing them all).
    pub fn close_stream(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stream.shutdown(Shutdown::Both);
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

/// Counts the times every stream was closed at once (`POST /drop`, a shutdown). A stream notes
/// the count when it is admitted and looks again right after it joined a [`Roster`]: a close
/// that came in between could not find it in the roster, but changed the count.
#[derive(Default)]
pub struct Closings(AtomicU64);

impl Closings {
    /// The count now.
    pub fn seen(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Counts one more closing; call it *before* closing the streams in the roster.
    pub fn count(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// `Err("dropped")` if a closing happened since `seen`.
    ///
    /// # Errors
    /// Every stream was closed after this one was admitted.
    pub fn check_since(&self, seen: u64) -> io::Result<()> {
        if self.seen() != seen {
            return Err(closed());
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
    fn a_closing_after_a_stream_was_admitted_is_seen() {
        let closings = Closings::default();
        let seen = closings.seen();
        assert!(closings.check_since(seen).is_ok());
        closings.count();
        assert_eq!(
            closings.check_since(seen).unwrap_err().to_string(),
            "dropped"
        );
    }

    #[test]
    fn zero_groups_means_one() {
        let roster = Roster::new(0);
        let _a = roster.join(Arc::new("a"));
        let _b = roster.join(Arc::new("b"));
        assert_eq!(roster.group(0).len(), 2);
    }

    #[test]
    fn a_closed_client_says_dropped_and_its_socket_is_shut() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        let client = Client::new(Arc::new(near));
        assert!(client.check_closed().is_ok());
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
