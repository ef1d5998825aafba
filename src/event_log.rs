//! The shared event log: every broadcast, numbered, encoded once, kept for replay.
//!
//! In the Node examples a broadcast is `for (const res of clients) res.write(frame)`: the sender
//! loops over every client. Here the sender never touches a client's socket. It encodes the frame
//! **once**, appends it to this log (shared as an `Arc`, not copied per client), and announces it
//! ([`crate::hub`]); the frames reach the sockets from there. The log is also where a client
//! that fell behind, or reconnected, catches up from: it asks for every frame after the last id
//! it got.
//!
//! The log keeps the last [`HISTORY_LEN`] broadcasts so that a browser reconnecting with
//! `Last-Event-ID: k` can be sent what it missed (every id greater than k). No lock on it is ever
//! held while writing to a socket: readers clone the `Arc`s and let go.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use crate::sse;
use crate::sync;

/// Broadcasts kept for `Last-Event-ID` replay (the contract asks for at least the last 1000).
/// A message is at most 64 KiB; its frame is about as big for ordinary text, so the log holds
/// about 64 MiB at most. (A message made only of line breaks grows sevenfold, each break becoming
/// a `data: \n` line: about 450 MiB at the very worst.)
pub const HISTORY_LEN: usize = 1000;

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
    /// Appends to `out` the broadcasts with an id greater than `after`, oldest first, and returns
    /// how many of those are no longer held. Ids are consecutive, so the first one wanted sits at
    /// a known offset and no search is needed.
    fn after(&self, after: u64, out: &mut Vec<Broadcast>) -> u64 {
        let Some(oldest) = self.recent.front().map(|b| b.id) else {
            return 0;
        };
        let skip = (after + 1).saturating_sub(oldest) as usize;
        out.extend(self.recent.iter().skip(skip).cloned());
        oldest.saturating_sub(after + 1)
    }
}

/// What [`EventLog::after`] found besides the broadcasts themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// The id of the newest broadcast: the new cursor.
    pub last_id: u64,
    /// Broadcasts after the cursor that have already left the history.
    pub lost: u64,
}

/// The log shared by the `/send` handler (which appends) and every `/events` thread (which reads).
pub struct EventLog {
    history: RwLock<History>,
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
        }
    }

    /// Appends `message` as the next broadcast and returns its id: ids start at 1 and go up by one
    /// per broadcast. Waking the clients is the fan-out's job.
    pub fn publish(&self, message: &str) -> u64 {
        let mut history = sync::write(&self.history);
        let id = history.last_id + 1;
        // Encoded once here, for every client (not once per client). Under the lock, because the
        // frame carries its id and ids must go into the log in order.
        let frame: Arc<[u8]> = sse::message_frame(id, message).into();
        history.recent.push_back(Broadcast { id, frame });
        if history.recent.len() > HISTORY_LEN {
            history.recent.pop_front();
        }
        history.last_id = id;
        id
    }

    /// Stores a broadcast numbered elsewhere: with a shared log in Redis ([`crate::redis::log`]),
    /// ids come from Redis and this log is the instance's copy of the recent ones.
    ///
    /// Ids only go up. An id at or below the newest is one already held (a duplicate) and is
    /// ignored. An id past the next one means broadcasts were missed (this instance fell out of
    /// the shared history): what is held is dropped first, so the log stays gapless and a
    /// connection still behind learns from [`CatchUp::lost`] that some are gone.
    pub fn append(&self, id: u64, message: &str) {
        // Encoded before taking the lock: the id is known already.
        let frame: Arc<[u8]> = sse::message_frame(id, message).into();
        let mut history = sync::write(&self.history);
        if id <= history.last_id {
            return;
        }
        if id > history.last_id + 1 {
            history.recent.clear();
        }
        history.recent.push_back(Broadcast { id, frame });
        if history.recent.len() > HISTORY_LEN {
            history.recent.pop_front();
        }
        history.last_id = id;
    }

    /// Moves the newest id up to `id` without a broadcast (nothing if it is there already). A
    /// shared log's count can be ahead of the entries it holds (Redis restarted empty, and the
    /// count moved back up): a stream started now waits for what comes after `id`, instead of
    /// counting the ids before it as broadcasts it lost.
    pub fn skip_to(&self, id: u64) {
        let mut history = sync::write(&self.history);
        if id > history.last_id {
            // The ids held must stay consecutive.
            history.recent.clear();
            history.last_id = id;
        }
    }

    /// Where a new `/events` connection starts: the broadcasts to replay first, and the id of the
    /// newest broadcast, after which it waits for live ones.
    ///
    /// With `Last-Event-ID: k` the replay is every broadcast after k still in the log. Without it,
    /// or with a k from the future (the server restarted and counts from 1 again), nothing is
    /// replayed and the stream starts live.
    pub fn start(&self, last_event_id: Option<u64>) -> (Vec<Broadcast>, u64) {
        let history = sync::read(&self.history);
        let from = last_event_id
            .filter(|&k| k < history.last_id)
            .unwrap_or(history.last_id);
        let mut missed = Vec::new();
        // Broadcasts older than the history are simply not replayed ("still held", says the
        // contract).
        history.after(from, &mut missed);
        (missed, history.last_id)
    }

    /// Puts the broadcasts after `cursor` (the last id a connection wrote) into `out`. The newest
    /// id comes with them, read together so that nothing falls between the two.
    ///
    /// A connection more than [`HISTORY_LEN`] broadcasts behind gets what is left, and
    /// [`CatchUp::lost`] says how many are gone.
    pub fn after(&self, cursor: u64, out: &mut Vec<Broadcast>) -> CatchUp {
        let history = sync::read(&self.history);
        let lost = history.after(cursor, out);
        CatchUp {
            last_id: history.last_id,
            lost,
        }
    }

    /// The id of the newest broadcast (0 before the first).
    pub fn last_id(&self) -> u64 {
        sync::read(&self.history).last_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(broadcasts: &[Broadcast]) -> Vec<u64> {
        broadcasts.iter().map(|b| b.id).collect()
    }

    fn after(log: &EventLog, cursor: u64) -> (Vec<Broadcast>, u64) {
        let mut out = Vec::new();
        let catch_up = log.after(cursor, &mut out);
        (out, catch_up.last_id)
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
        assert_eq!(&*after(&log, 0).0[0].frame, b"id: 1\ndata: x\ndata: y\n\n");
    }

    #[test]
    fn start_replays_only_ids_after_last_event_id() {
        let log = EventLog::new();
        for m in ["a", "b", "c", "d"] {
            log.publish(m);
        }
        assert_eq!(log.start(Some(2)), after(&log, 2));
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
        let (all, last_id) = after(&log, 0);
        assert_eq!(last_id, HISTORY_LEN as u64 + 5);
        assert_eq!(all.len(), HISTORY_LEN);
        assert_eq!(all[0].id, 6);
        assert_eq!(all.last().unwrap().id, HISTORY_LEN as u64 + 5);
    }

    #[test]
    fn append_keeps_the_ids_it_is_given() {
        let log = EventLog::new();
        log.append(1, "a");
        log.append(2, "b\nc");
        assert_eq!(log.last_id(), 2);
        let (all, _) = after(&log, 0);
        assert_eq!(ids(&all), [1, 2]);
        assert_eq!(&*all[1].frame, b"id: 2\ndata: b\ndata: c\n\n");
    }

    #[test]
    fn append_ignores_ids_already_held() {
        let log = EventLog::new();
        log.append(1, "a");
        log.append(2, "b");
        log.append(2, "b again");
        log.append(1, "a again");
        assert_eq!(log.last_id(), 2);
        let (all, _) = after(&log, 0);
        assert_eq!(ids(&all), [1, 2]);
        assert_eq!(&*all[1].frame, b"id: 2\ndata: b\n\n");
    }

    #[test]
    fn append_after_a_gap_drops_what_is_held_and_reports_the_loss() {
        let log = EventLog::new();
        for id in 1..=3 {
            log.append(id, "old");
        }
        log.append(10, "new");
        log.append(11, "newer");
        let mut out = Vec::new();
        let catch_up = log.after(3, &mut out);
        assert_eq!(ids(&out), [10, 11]);
        assert_eq!(
            catch_up,
            CatchUp {
                last_id: 11,
                lost: 6
            }
        );
        // A connection from before the gap learns that 2..=9 are gone.
        out.clear();
        assert_eq!(log.after(1, &mut out).lost, 8);
        // A reconnecting browser gets what is still held.
        assert_eq!(ids(&log.start(Some(5)).0), [10, 11]);
    }

    #[test]
    fn append_can_start_anywhere() {
        // An instance starting on a shared log that is already at 500.
        let log = EventLog::new();
        log.append(500, "x");
        assert_eq!(log.last_id(), 500);
        assert_eq!(ids(&log.start(Some(499)).0), [500]);
        assert!(log.start(None).0.is_empty());
    }

    #[test]
    fn skip_to_moves_the_newest_id_up_only() {
        let log = EventLog::new();
        log.skip_to(5);
        assert_eq!(log.start(None), (vec![], 5));
        log.append(6, "x");
        assert_eq!(log.after(5, &mut Vec::new()).lost, 0);
        log.skip_to(3);
        assert_eq!(log.last_id(), 6);
    }

    #[test]
    fn append_keeps_the_last_1000() {
        let log = EventLog::new();
        for id in 1..=HISTORY_LEN as u64 + 5 {
            log.append(id, "x");
        }
        let (all, last_id) = after(&log, 0);
        assert_eq!(last_id, HISTORY_LEN as u64 + 5);
        assert_eq!(all.len(), HISTORY_LEN);
        assert_eq!(all[0].id, 6);
    }

    #[test]
    fn catching_up_says_how_many_broadcasts_left_the_history() {
        let log = EventLog::new();
        for i in 0..HISTORY_LEN + 5 {
            log.publish(&i.to_string());
        }
        let mut out = Vec::new();
        assert_eq!(log.after(5, &mut out).lost, 0);
        out.clear();
        assert_eq!(log.after(2, &mut out).lost, 3);
        assert_eq!(out[0].id, 6);
    }
}
