//! The tick clock: Node's `setInterval(tick, interval)` for one stream, without drift.
//!
//! Each stream gets its first `tick` one interval after it connected, then one every interval.
//! The clock keeps the exact schedule (`due`), so late wake-ups never add up; it only decides
//! *when to wake* for a tick, which may be a little after `due` (see [`TICK_GRID`]).
//!
//! It also decides when a quiet stream needs a keep-alive comment ([`sse::KEEP_ALIVE_AFTER`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;
use crate::{sse, timestamp};

/// Ticks fall on a grid of this step, counted from the server's start, so that many streams'
/// ticks fall due at the same moment. In the fast fan-out a writer thread then wakes once per
/// step and writes one tick frame to every client due (`fanout/writers.rs`); in the simple one the
/// connection threads wake in batches, which the kernel handles more cheaply than scattered
/// timers. Each tick is late by less than this step; the schedule itself does not drift.
pub const TICK_GRID: Duration = Duration::from_millis(10);

/// The tick schedule every stream of one server follows.
#[derive(Clone, Copy, Debug)]
pub struct TickClock {
    interval: Duration,
    /// A stream quiet for this long gets a keep-alive comment ([`sse::KEEP_ALIVE_AFTER`]).
    keep_alive: Duration,
    /// The grid is counted from here (the server's start).
    started: Instant,
}

impl TickClock {
    /// A clock for ticks every `interval`, and keep-alives after `keep_alive` of silence, with
    /// its grid starting now.
    pub fn new(interval: Duration, keep_alive: Duration) -> TickClock {
        TickClock {
            interval,
            keep_alive,
            started: Instant::now(),
        }
    }

    /// The first tick of a stream that connected at `connected`: one interval later, like the
    /// first call of a `setInterval` callback.
    pub fn first(&self, connected: Instant) -> Instant {
        connected + self.interval
    }

    /// The tick after the one due at `due`, written at `now`: one interval later. After a write
    /// that blocked for longer than an interval, one interval from now instead, rather than a
    /// burst of late ticks.
    pub fn next(&self, due: Instant, now: Instant) -> Instant {
        let next = due + self.interval;
        if next <= now {
            now + self.interval
        } else {
            next
        }
    }

    /// When to wake for a tick due at `due`: rounded up to the [`TICK_GRID`], for intervals of at
    /// least ten grid steps. Shorter intervals (demos, tests) tick exactly on time.
    pub fn wake_time(&self, due: Instant) -> Instant {
        if self.interval < TICK_GRID * 10 {
            return due;
        }
        let since_start = due.saturating_duration_since(self.started).as_nanos();
        let step = TICK_GRID.as_nanos();
        let rounded = since_start.div_ceil(step) * step;
        let rounded = Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX));
        self.started.checked_add(rounded).unwrap_or(due)
    }

    /// The number of the grid step that `at` falls in, counted from the server's start: the
    /// streams that tick in one step tick at one moment, as far as a reader can tell.
    pub fn grid_step(&self, at: Instant) -> u64 {
        let since_start = at.saturating_duration_since(self.started).as_nanos();
        u64::try_from(since_start / TICK_GRID.as_nanos()).unwrap_or(u64::MAX)
    }

    /// When a stream last written to at `last_write` needs a keep-alive comment, if ever: only
    /// when ticks are further apart than the keep-alive delay can a stream be that quiet.
    pub fn keep_alive_due(&self, last_write: Instant) -> Option<Instant> {
        (self.interval > self.keep_alive).then(|| last_write + self.keep_alive)
    }
}

/// What a stream's timer asks to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerFrame {
    /// `event: tick` with the time now.
    Tick,
    /// `: keep-alive`, after a silence.
    KeepAlive,
}

impl TimerFrame {
    /// The frame's bytes; a tick carries the time of this call.
    pub fn encode(self) -> Vec<u8> {
        match self {
            TimerFrame::Tick => sse::tick_frame(&timestamp::now()),
            TimerFrame::KeepAlive => sse::keep_alive_frame(),
        }
    }
}

/// The tick frame of the latest grid step, encoded by the first stream that ticks in that step
/// and shared by the others (each would otherwise format the same time again).
#[derive(Default)]
pub struct SharedTick {
    /// The step and its frame.
    latest: Mutex<Option<(u64, Arc<[u8]>)>>,
}

impl SharedTick {
    /// The tick frame for a stream ticking at `now`: the one of `now`'s grid step, encoded at
    /// the first call in that step. Its time is that of the first call, less than a step ago.
    pub fn frame(&self, clock: &TickClock, now: Instant) -> Arc<[u8]> {
        let step = clock.grid_step(now);
        if let Some((at, frame)) = &*lock(&self.latest) {
            if *at == step {
                return Arc::clone(frame);
            }
        }
        // Encoded without the lock held, so the streams of the step never wait for each other.
        // (Two may both encode it; the second frame simply replaces the first.)
        let frame: Arc<[u8]> = TimerFrame::Tick.encode().into();
        *lock(&self.latest) = Some((step, Arc::clone(&frame)));
        frame
    }
}

/// One stream's timer: when its next tick is due, and when it was last written to (for the
/// keep-alive). Its own thread asks it what to write, and how long to sleep.
#[derive(Clone, Copy, Debug)]
pub struct StreamTimer {
    clock: TickClock,
    /// When the next tick is due: the exact schedule, never rounded.
    due: Instant,
    /// When the stream was last written to.
    last_write: Instant,
}

impl StreamTimer {
    /// The timer of a stream that connected (and was written to) at `now`.
    pub fn new(clock: TickClock, now: Instant) -> StreamTimer {
        StreamTimer {
            clock,
            due: clock.first(now),
            last_write: now,
        }
    }

    /// Something was written to the stream at `at` (a broadcast, say).
    pub fn wrote(&mut self, at: Instant) {
        self.last_write = self.last_write.max(at);
    }

    /// What must be written to the stream at `now`, if anything: the tick once it is due, else
    /// the keep-alive comment once the stream has been quiet for the keep-alive delay. Either
    /// counts as written.
    pub fn frame_due(&mut self, now: Instant) -> Option<TimerFrame> {
        let frame = if now >= self.clock.wake_time(self.due) {
            self.due = self.clock.next(self.due, now);
            TimerFrame::Tick
        } else if self
            .clock
            .keep_alive_due(self.last_write)
            .is_some_and(|at| at <= now)
        {
            TimerFrame::KeepAlive
        } else {
            return None;
        };
        self.last_write = now;
        Some(frame)
    }

    /// When the thread should wake next, if nothing wakes it earlier: for the next tick, or
    /// for the keep-alive if that comes first.
    pub fn wake_time(&self) -> Instant {
        let tick = self.clock.wake_time(self.due);
        match self.clock.keep_alive_due(self.last_write) {
            Some(keep_alive) => tick.min(keep_alive),
            None => tick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tick_is_one_interval_after_connecting() {
        let clock = TickClock::new(Duration::from_millis(250), sse::KEEP_ALIVE_AFTER);
        let t = Instant::now();
        assert_eq!(clock.first(t), t + Duration::from_millis(250));
    }

    #[test]
    fn the_schedule_does_not_drift_after_a_late_wake_up() {
        let clock = TickClock::new(Duration::from_secs(1), sse::KEEP_ALIVE_AFTER);
        let due = Instant::now();
        let late = due + Duration::from_millis(30);
        assert_eq!(clock.next(due, late), due + Duration::from_secs(1));
    }

    #[test]
    fn after_a_long_block_the_next_tick_is_one_interval_from_now() {
        let clock = TickClock::new(Duration::from_secs(1), sse::KEEP_ALIVE_AFTER);
        let due = Instant::now();
        let much_later = due + Duration::from_secs(5);
        assert_eq!(
            clock.next(due, much_later),
            much_later + Duration::from_secs(1)
        );
    }

    #[test]
    fn wake_ups_round_up_to_the_grid_but_never_early() {
        let clock = TickClock::new(Duration::from_secs(1), sse::KEEP_ALIVE_AFTER);
        let due = clock.started + Duration::from_millis(1234) + Duration::from_micros(1);
        let wake = clock.wake_time(due);
        assert!(wake >= due && wake - due < TICK_GRID);
        assert_eq!(wake - clock.started, Duration::from_millis(1240));
    }

    #[test]
    fn short_intervals_tick_exactly_on_time() {
        let clock = TickClock::new(Duration::from_millis(50), sse::KEEP_ALIVE_AFTER);
        let due = Instant::now() + Duration::from_micros(1234);
        assert_eq!(clock.wake_time(due), due);
    }

    #[test]
    fn a_stream_timer_ticks_when_due_and_not_before() {
        let clock = TickClock::new(Duration::from_millis(50), sse::KEEP_ALIVE_AFTER);
        let start = Instant::now();
        let mut timer = StreamTimer::new(clock, start);
        assert_eq!(timer.wake_time(), start + Duration::from_millis(50));
        assert_eq!(timer.frame_due(start + Duration::from_millis(49)), None);
        let tick = timer.frame_due(start + Duration::from_millis(50)).unwrap();
        assert_eq!(tick, TimerFrame::Tick);
        assert!(tick.encode().starts_with(b"event: tick\n"));
        assert_eq!(timer.wake_time(), start + Duration::from_millis(100));
    }

    #[test]
    fn a_quiet_stream_gets_a_keep_alive_after_15_s_and_a_write_postpones_it() {
        let clock = TickClock::new(Duration::from_secs(60), sse::KEEP_ALIVE_AFTER);
        let start = Instant::now();
        let mut timer = StreamTimer::new(clock, start);
        assert_eq!(timer.wake_time(), start + sse::KEEP_ALIVE_AFTER);
        timer.wrote(start + Duration::from_secs(10));
        assert_eq!(timer.frame_due(start + sse::KEEP_ALIVE_AFTER), None);
        let at = start + Duration::from_secs(25);
        assert_eq!(timer.frame_due(at), Some(TimerFrame::KeepAlive));
        assert_eq!(TimerFrame::KeepAlive.encode(), sse::keep_alive_frame());
        assert_eq!(timer.wake_time(), at + sse::KEEP_ALIVE_AFTER);
    }

    #[test]
    fn streams_ticking_in_one_grid_step_share_one_frame_and_the_next_step_gets_a_new_one() {
        let clock = TickClock::new(Duration::from_secs(1), sse::KEEP_ALIVE_AFTER);
        let shared = SharedTick::default();
        let step = clock.started + TICK_GRID * 7;
        let first = shared.frame(&clock, step);
        assert!(first.starts_with(b"event: tick\ndata: "));
        let same = shared.frame(&clock, step + TICK_GRID / 2);
        assert!(Arc::ptr_eq(&first, &same));
        let next = shared.frame(&clock, step + TICK_GRID);
        assert!(!Arc::ptr_eq(&first, &next));
    }

    #[test]
    fn keep_alive_only_when_ticks_are_further_apart_than_15_s() {
        let now = Instant::now();
        assert_eq!(
            TickClock::new(Duration::from_secs(1), sse::KEEP_ALIVE_AFTER).keep_alive_due(now),
            None
        );
        assert_eq!(
            TickClock::new(Duration::from_secs(60), sse::KEEP_ALIVE_AFTER).keep_alive_due(now),
            Some(now + sse::KEEP_ALIVE_AFTER)
        );
    }
}
