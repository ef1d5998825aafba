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
    /// The ids come from elsewhere ([`EventLog::append`]: a mirror of the log in Redis), where
    /// they never start over; else this log numbers its own, from 1 in every run.
    mirrored: bool,
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
        history.mirrored = true;
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

    /// Where a new `/events` stream starts: the id after which it gets every broadcast. Its first
    /// catch-up ([`EventLog::after`]) is then the replay of what it missed.
    ///
    /// With `Last-Event-ID: k` that is k, or the oldest broadcast still held if k is older
    /// ("still held", says the contract); without it, the newest: the stream starts live.
    ///
    /// A k past the newest id this log has issued can only come from an earlier run: the server
    /// restarted and counts from 1 again, so the browser has seen none of this run's broadcasts,
    /// and gets all of them that are still held. (A mirror's ids never start over: there such a
    /// k is one another instance has sent and the mirror has yet to receive; `hub.rs` waits for
    /// it, and nothing is replayed.)
    pub fn start(&self, last_event_id: Option<u64>) -> u64 {
        let history = sync::read(&self.history);
        let before_oldest = history.recent.front().map_or(history.last_id, |b| b.id - 1);
        match last_event_id {
            None => history.last_id,
            Some(k) if k > history.last_id && !history.mirrored => before_oldest,
            Some(k) => k.min(history.last_id).max(before_oldest),
        }
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

    /// What a stream starting with `last_event_id` is replayed by its first catch-up.
    fn replay(log: &EventLog, last_event_id: Option<u64>) -> Vec<u64> {
        ids(&after(log, log.start(last_event_id)).0)
    }

    #[test]
    fn start_replays_only_ids_after_last_event_id() {
        let log = EventLog::new();
        for m in ["a", "b", "c", "d"] {
            log.publish(m);
        }
        assert_eq!(replay(&log, Some(2)), [3, 4]);
        assert_eq!(replay(&log, Some(0)), [1, 2, 3, 4]);
        assert!(replay(&log, Some(4)).is_empty());
        assert!(replay(&log, None).is_empty());
    }

    #[test]
    fn an_id_past_the_newest_is_from_an_earlier_run_and_gets_everything_held() {
        let log = EventLog::new();
        assert_eq!(log.start(Some(99)), 0);
        for m in ["a", "b", "c"] {
            log.publish(m);
        }
        assert_eq!(replay(&log, Some(99)), [1, 2, 3]);
        assert_eq!(replay(&log, Some(4)), [1, 2, 3]);
        // At or below the newest it is this run's own id.
        assert!(replay(&log, Some(3)).is_empty());
        assert_eq!(replay(&log, Some(2)), [3]);
    }

    #[test]
    fn a_mirror_replays_nothing_for_an_id_it_has_yet_to_receive() {
        // With Redis ids never start over: 99 is another instance's broadcast, still on its way.
        let log = EventLog::new();
        log.append(1, "a");
        log.append(2, "b");
        assert_eq!(log.start(Some(99)), 2);
        assert!(replay(&log, Some(99)).is_empty());
    }

    #[test]
    fn an_id_older_than_the_history_replays_what_is_still_held_and_loses_nothing() {
        let log = EventLog::new();
        for i in 0..HISTORY_LEN + 5 {
            log.publish(&i.to_string());
        }
        let mut out = Vec::new();
        assert_eq!(log.after(log.start(Some(1)), &mut out).lost, 0);
        assert_eq!(out.len(), HISTORY_LEN);
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
        assert_eq!(replay(&log, Some(5)), [10, 11]);
    }

    #[test]
    fn append_can_start_anywhere() {
        // An instance starting on a shared log that is already at 500.
        let log = EventLog::new();
        log.append(500, "x");
        assert_eq!(log.last_id(), 500);
        assert_eq!(replay(&log, Some(499)), [500]);
        assert!(replay(&log, None).is_empty());
    }

    #[test]
    fn skip_to_moves_the_newest_id_up_only() {
        let log = EventLog::new();
        log.skip_to(5);
        assert_eq!(log.start(None), 5);
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
