//! The shared event log: every broadcast, numbered, encoded once, kept for replay, and a way for
//! connection threads to sleep until the next one.
//!
//! In the Node examples a broadcast is `for (const res of clients) res.write(frame)`: the sender
//! loops over every client. Here the sender never touches a client's socket. It only
//!
//! 1. encodes the frame **once** and appends it to the log (shared as an `Arc`, not copied), and
//! 2. wakes the connection threads,
//!
//! and each connection's own thread copies the new frames to its own socket. So a client that
//! stopped reading blocks only its own thread, never the sender or the other clients, and no lock
//! is ever held while writing to a socket.
//!
//! The log keeps the last [`HISTORY_LEN`] broadcasts so that a browser reconnecting with
//! `Last-Event-ID: k` can be sent what it missed (every id greater than k).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use crate::sse;

/// Broadcasts kept for `Last-Event-ID` replay (the contract asks for at least the last 1000).
/// Frames are at most 64 KiB each, so the log holds at most about 64 MiB.
pub const HISTORY_LEN: usize = 1000;

/// Number of wake-up groups. A broadcast must wake every connection thread; with one `Condvar`
/// all of them would wake at once and queue for its single mutex. Spread over this many groups,
/// each with its own mutex, they queue in short lines instead.
pub const WAKE_SHARDS: usize = 64;

/// One broadcast: its id and its frame, already encoded (`id: n\ndata: ...\n\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    pub id: u64,
    /// Shared by every client: cloning it copies a pointer, not the bytes.
    pub frame: Arc<[u8]>,
}

/// The numbered broadcasts still held, oldest first.
#[derive(Default)]
struct History {
    last_id: u64,
    recent: VecDeque<Broadcast>,
}

impl History {
    /// Broadcasts with an id greater than `after`, oldest first. Ids are consecutive, so the first
    /// one wanted sits at a known offset and no search is needed.
    fn after(&self, after: u64) -> Vec<Broadcast> {
        let Some(oldest) = self.recent.front().map(|b| b.id) else {
            return Vec::new();
        };
        let skip = (after + 1).saturating_sub(oldest) as usize;
        self.recent.iter().skip(skip).cloned().collect()
    }
}

/// A wake-up group: the id of the newest broadcast its threads know of, and the `Condvar` they
/// sleep on.
#[derive(Default)]
struct Shard {
    newest: Mutex<u64>,
    wakeup: Condvar,
}

/// The log shared by the `/send` handler (which appends) and every `/events` thread (which reads).
pub struct EventLog {
    history: RwLock<History>,
    shards: Vec<Shard>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new()
    }
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            history: RwLock::default(),
            shards: (0..WAKE_SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    /// Appends `message` as the next broadcast and wakes every waiting connection. Returns its id:
    /// ids start at 1 and go up by one per broadcast.
    pub fn publish(&self, message: &str) -> u64 {
        let id = {
            let mut history = self.history.write().unwrap_or_else(|e| e.into_inner());
            let id = history.last_id + 1;
            // Encoded once here, for every client (not once per client).
            let frame: Arc<[u8]> = sse::message_frame(id, message).into();
            history.recent.push_back(Broadcast { id, frame });
            if history.recent.len() > HISTORY_LEN {
                history.recent.pop_front();
            }
            history.last_id = id;
            id
        };
        for shard in &self.shards {
            let mut newest = shard.newest.lock().unwrap_or_else(|e| e.into_inner());
            // `max`, because two senders may reach this loop in either order.
            *newest = (*newest).max(id);
            drop(newest);
            shard.wakeup.notify_all();
        }
        id
    }

    /// Where a new `/events` connection starts: the broadcasts to replay first, and the id of the
    /// newest broadcast, after which it waits for live ones.
    ///
    /// With `Last-Event-ID: k` the replay is every broadcast after k still in the log. Without it,
    /// or with a k from the future (the server restarted and counts from 1 again), nothing is
    /// replayed and the stream starts live.
    pub fn start(&self, last_event_id: Option<u64>) -> (Vec<Broadcast>, u64) {
        let history = self.history.read().unwrap_or_else(|e| e.into_inner());
        let from = last_event_id
            .filter(|&k| k < history.last_id)
            .unwrap_or(history.last_id);
        (history.after(from), history.last_id)
    }

    /// The broadcasts after `cursor` (the last id a connection wrote) and the newest id, read
    /// together so that nothing falls between them. A connection that fell more than
    /// [`HISTORY_LEN`] behind has lost the oldest of what it missed; it gets what is left.
    pub fn after(&self, cursor: u64) -> (Vec<Broadcast>, u64) {
        let history = self.history.read().unwrap_or_else(|e| e.into_inner());
        (history.after(cursor), history.last_id)
    }

    /// The id of the newest broadcast (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.history
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last_id
    }

    /// Sleeps until there is a broadcast newer than `cursor` (returns `true`) or until `deadline`
    /// (returns `false`), whichever comes first. No polling: the thread sleeps in the kernel until
    /// [`EventLog::publish`] wakes it or the time is up. `group` picks the wake-up group; any
    /// number works, a connection's id spreads them evenly.
    pub fn wait_for_news(&self, group: usize, cursor: u64, deadline: Instant) -> bool {
        let shard = &self.shards[group % self.shards.len()];
        let mut newest = shard.newest.lock().unwrap_or_else(|e| e.into_inner());
        // A loop, because a Condvar may wake up without a notify ("spurious wakeup").
        while *newest <= cursor {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            newest = shard
                .wakeup
                .wait_timeout(newest, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ids(broadcasts: &[Broadcast]) -> Vec<u64> {
        broadcasts.iter().map(|b| b.id).collect()
    }

    #[test]
    fn ids_start_at_1_and_go_up_by_one() {
        let log = EventLog::new();
        assert_eq!(log.last_id(), 0);
        assert_eq!(
            (log.publish("a"), log.publish("b"), log.publish("c")),
            (1, 2, 3)
        );
        assert_eq!(log.last_id(), 3);
    }

    #[test]
    fn the_frame_is_encoded_once_with_its_id() {
        let log = EventLog::new();
        log.publish("x\ny");
        assert_eq!(&*log.after(0).0[0].frame, b"id: 1\ndata: x\ndata: y\n\n");
    }

    #[test]
    fn start_replays_only_ids_after_last_event_id() {
        let log = EventLog::new();
        for m in ["a", "b", "c", "d"] {
            log.publish(m);
        }
        assert_eq!(log.start(Some(2)), log.after(2));
        assert_eq!(ids(&log.start(Some(2)).0), [3, 4]);
        assert_eq!(ids(&log.start(Some(0)).0), [1, 2, 3, 4]);
        assert!(log.start(Some(4)).0.is_empty());
        assert!(log.start(None).0.is_empty());
        // An id from before a restart: nothing to replay, and live broadcasts still arrive.
        assert_eq!(ids(&log.start(Some(99)).0), Vec::<u64>::new());
        assert_eq!(log.start(Some(99)).1, 4);
    }

    #[test]
    fn history_keeps_the_last_1000() {
        let log = EventLog::new();
        for i in 0..HISTORY_LEN + 5 {
            log.publish(&i.to_string());
        }
        let (all, last_id) = log.after(0);
        assert_eq!(last_id, HISTORY_LEN as u64 + 5);
        assert_eq!(all.len(), HISTORY_LEN);
        assert_eq!(all[0].id, 6);
        assert_eq!(all.last().unwrap().id, HISTORY_LEN as u64 + 5);
    }

    #[test]
    fn waiting_ends_at_the_deadline_without_news() {
        let log = EventLog::new();
        let start = Instant::now();
        assert!(!log.wait_for_news(0, 0, start + Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn waiting_ends_at_once_when_news_is_already_there() {
        let log = EventLog::new();
        log.publish("a");
        assert!(log.wait_for_news(5, 0, Instant::now()));
    }

    #[test]
    fn a_publish_wakes_a_waiting_thread_in_every_group() {
        let log = Arc::new(EventLog::new());
        let waiters: Vec<_> = (0..WAKE_SHARDS * 2)
            .map(|group| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    log.wait_for_news(group, 0, Instant::now() + Duration::from_secs(30))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        log.publish("wake up");
        for waiter in waiters {
            assert!(
                waiter.join().unwrap(),
                "woken by the broadcast, not the deadline"
            );
        }
    }
}
