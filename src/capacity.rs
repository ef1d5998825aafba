//! How many connections this process can really hold, and the caps lowered to fit.
//!
//! Every connection is a thread and a socket, and Linux limits both, in several places. Past a
//! thread limit the damage is total: a new thread that cannot map its signal stack aborts the
//! *whole process* (std cannot even start the panic), and every open stream goes with it. Past
//! the file limit `accept()` fails: the server survives, but nobody new gets in, `/send` included.
//! So at startup [`fit`] reads the limits, keeps a margin, and lowers `--max-clients` and the
//! connection cap below them if need be, with one line saying which limit did it and how to raise
//! it. Lowering the caps is not an error: the server starts, and turns the surplus away with 503.
//!
//! | limit                | counts                                      | raise it with                 |
//! |----------------------|---------------------------------------------|-------------------------------|
//! | `vm.max_map_count`   | memory maps of this process, 4 per thread   | `sysctl -w vm.max_map_count=N`|
//! | `kernel.threads-max` | threads on the whole machine                | `sysctl -w kernel.threads-max=N` |
//! | `kernel.pid_max`     | thread ids on the whole machine             | `sysctl -w kernel.pid_max=N`  |
//! | `RLIMIT_NPROC`       | threads of this user                        | `ulimit -u N`                 |
//! | `RLIMIT_NOFILE`      | open files and sockets of this process      | `ulimit -n N`                 |
//! | cgroup `pids.max`    | threads in this container                   | e.g. `docker run --pids-limit N` |
//!
//! Reading the files ([`Limits::of_this_process`]) is kept apart from the arithmetic: a
//! [`Limits`] holds their text, so tests can describe any machine.

use std::fs;
use std::path::Path;

use crate::config::{Config, SPARE_CONNECTIONS};

/// Memory maps each thread adds: its stack and the stack's guard page, and the signal stack std
/// sets up with a guard page of its own. Measured: 1,000 idle `/events` connections added 4,030
/// maps with either fan-out, 4,000 added 16,030 (the rest are `malloc`'s arenas).
pub const MAPS_PER_THREAD: usize = 4;

/// Maps the process holds besides its threads' (code, libraries, heap, `malloc`'s arenas):
/// 30 to 42 at startup, about 70 under load; kept generous.
pub const MAPS_OF_THE_PROCESS: usize = 256;

/// Descriptors the process holds besides its connections: stdin, stdout, stderr, the listening
/// socket, the two Redis connections, and one for a connection being turned away.
pub const FILES_OF_THE_PROCESS: usize = 8;

/// The part of each limit left unused, 1/16: for what the arithmetic does not see (threads that
/// are ending but not yet gone, other processes on the machine sharing the system-wide limits).
pub const MARGIN_DIVISOR: usize = 16;

/// At most this share of the room (1/4) is kept for requests that are not streams when the room
/// is too small for all [`SPARE_CONNECTIONS`].
pub const SPARE_SHARE_DIVISOR: usize = 4;

/// One of the limits that bound the number of connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    MapCount,
    ThreadsMax,
    PidMax,
    Processes,
    OpenFiles,
    CgroupPids,
}

impl Limit {
    /// The limit's name, as a user would look it up.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MapCount => "vm.max_map_count",
            Limit::ThreadsMax => "kernel.threads-max",
            Limit::PidMax => "kernel.pid_max",
            Limit::Processes => "ulimit -u (RLIMIT_NPROC)",
            Limit::OpenFiles => "ulimit -n (RLIMIT_NOFILE)",
            Limit::CgroupPids => "the cgroup's pids.max",
        }
    }

    /// What to run to raise it to `value`.
    pub fn how_to_raise(self, value: usize) -> String {
        match self {
            Limit::MapCount => format!("sudo sysctl -w vm.max_map_count={value}"),
            Limit::ThreadsMax => format!("sudo sysctl -w kernel.threads-max={value}"),
            Limit::PidMax => format!("sudo sysctl -w kernel.pid_max={value}"),
            Limit::Processes => format!("`ulimit -u {value}` before starting"),
            Limit::OpenFiles => format!("`ulimit -n {value}` before starting"),
            Limit::CgroupPids => format!("a pids.max of {value} (docker run --pids-limit {value})"),
        }
    }
}

/// The limits of this process, as the text of the files that hold them; `None` (or an empty
/// list) where a file is missing or unreadable, and then that limit is not checked.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// `/proc/sys/vm/max_map_count`.
    pub max_map_count: Option<String>,
    /// `/proc/sys/kernel/threads-max`.
    pub threads_max: Option<String>,
    /// `/proc/sys/kernel/pid_max`.
    pub pid_max: Option<String>,
    /// `/proc/self/limits`: its "Max processes" and "Max open files" lines.
    pub process_limits: Option<String>,
    /// cgroup v2: `pids.max` and `pids.current` of this process's group and of each group above
    /// it (every one of them limits the threads inside).
    pub cgroup_pids: Vec<(String, Option<String>)>,
}

impl Limits {
    /// Reads the limits that apply to this process (Linux; elsewhere every one is missing).
    pub fn of_this_process() -> Limits {
        let read = |path: &str| fs::read_to_string(path).ok();
        Limits {
            max_map_count: read("/proc/sys/vm/max_map_count"),
            threads_max: read("/proc/sys/kernel/threads-max"),
            pid_max: read("/proc/sys/kernel/pid_max"),
            process_limits: read("/proc/self/limits"),
            cgroup_pids: cgroup_pids(&read("/proc/self/cgroup").unwrap_or_default()),
        }
    }
}

/// `pids.max` and `pids.current` of the cgroup v2 group named in `proc_self_cgroup` (its line
/// `0::/path`) and of every group above it, where the files exist.
fn cgroup_pids(proc_self_cgroup: &str) -> Vec<(String, Option<String>)> {
    let Some(group) = proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut dir = Some(Path::new("/sys/fs/cgroup").join(group.trim().trim_start_matches('/')));
    while let Some(at) = dir {
        if let Ok(max) = fs::read_to_string(at.join("pids.max")) {
            found.push((max, fs::read_to_string(at.join("pids.current")).ok()));
        }
        dir = at
            .parent()
            .filter(|up| up.starts_with("/sys/fs/cgroup"))
            .map(Path::to_path_buf);
    }
    found
}

/// One limit as it applies here: its value, what the process uses of it besides connections,
/// and what each connection takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub limit: Limit,
    pub value: usize,
    pub used: usize,
    pub per_connection: usize,
}

impl Bound {
    /// How many connections it leaves room for, keeping the margin.
    pub fn connections(&self) -> usize {
        let margin = self.value / MARGIN_DIVISOR;
        self.value.saturating_sub(margin).saturating_sub(self.used) / self.per_connection
    }

    /// The smallest value of the limit that leaves room for `connections`.
    pub fn value_for(&self, connections: usize) -> usize {
        let need = connections
            .saturating_mul(self.per_connection)
            .saturating_add(self.used);
        // value - value/16 >= need, solved for value, then nudged up past the rounding.
        let mut value = need.saturating_mul(MARGIN_DIVISOR) / (MARGIN_DIVISOR - 1);
        while value < usize::MAX && (Bound { value, ..*self }).connections() < connections {
            value += 1;
        }
        value
    }
}

/// A number in a `/proc` or cgroup file; `max` and `unlimited` mean no limit (None).
fn number(text: &str) -> Option<usize> {
    text.trim().parse().ok()
}

/// The soft limit on the line of `/proc/self/limits` that starts with `name`, e.g.
/// `Max open files            1024                 524288               files`.
fn soft_limit(process_limits: &str, name: &str) -> Option<usize> {
    let line = process_limits
        .lines()
        .find_map(|line| line.strip_prefix(name))?;
    number(line.split_whitespace().next()?)
}

/// Every limit found in `limits`, for a process with `threads` threads of its own besides the
/// connections' (the accept loop, the writers, the Redis tail).
pub fn bounds(limits: &Limits, threads: usize) -> Vec<Bound> {
    let per_thread = |limit, text: &Option<String>, used| {
        let value = number(text.as_deref()?)?;
        Some(Bound {
            limit,
            value,
            used,
            per_connection: 1,
        })
    };
    let process_limits = limits.process_limits.as_deref().unwrap_or_default();
    let mut found: Vec<Bound> = [
        limits
            .max_map_count
            .as_deref()
            .and_then(number)
            .map(|value| Bound {
                limit: Limit::MapCount,
                value,
                used: MAPS_OF_THE_PROCESS + threads * MAPS_PER_THREAD,
                per_connection: MAPS_PER_THREAD,
            }),
        per_thread(Limit::ThreadsMax, &limits.threads_max, threads),
        per_thread(Limit::PidMax, &limits.pid_max, threads),
        soft_limit(process_limits, "Max processes").map(|value| Bound {
            limit: Limit::Processes,
            value,
            used: threads,
            per_connection: 1,
        }),
        soft_limit(process_limits, "Max open files").map(|value| Bound {
            limit: Limit::OpenFiles,
            value,
            used: FILES_OF_THE_PROCESS,
            per_connection: 1,
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (max, current) in &limits.cgroup_pids {
        if let Some(value) = number(max) {
            // `pids.current` already counts this process's threads (and everything else there).
            let used = current.as_deref().and_then(number).unwrap_or(threads);
            found.push(Bound {
                limit: Limit::CgroupPids,
                value,
                used: used.max(threads),
                per_connection: 1,
            });
        }
    }
    found
}

/// `config` with `max_clients` and `spare_connections` lowered so that every connection fits
/// under every limit in `limits`, and the line that says so (None when nothing was lowered).
///
/// The room is split: the streams get what is left after the spare connections for the page,
/// `/send` and `/drop` ([`SPARE_CONNECTIONS`], or a quarter of the room if that is less), so a
/// full house can still be broadcast to and dropped.
pub fn fit(config: &Config, limits: &Limits) -> (Config, Option<String>) {
    let threads = 1 + config.broadcast_writers + usize::from(config.redis.is_some());
    let bounds = bounds(limits, threads);
    let wanted = config.max_connections();
    let Some(tightest) = bounds.iter().min_by_key(|b| b.connections()) else {
        return (config.clone(), None);
    };
    let room = tightest.connections();
    if wanted <= room {
        return (config.clone(), None);
    }
    // Never nothing: a server that holds one stream still teaches something.
    let spare = SPARE_CONNECTIONS.min(room / SPARE_SHARE_DIVISOR).max(1);
    let max_clients = config.max_clients.min(room.saturating_sub(spare)).max(1);
    let fitted = Config {
        max_clients,
        spare_connections: room.saturating_sub(max_clients).max(1),
        ..config.clone()
    };
    // Every limit too low for the cap asked for, the tightest first.
    let mut too_low: Vec<&Bound> = bounds.iter().filter(|b| b.connections() < wanted).collect();
    too_low.sort_by_key(|b| b.connections());
    let raise: Vec<String> = too_low
        .iter()
        .map(|b| b.limit.how_to_raise(b.value_for(wanted)))
        .collect();
    let line = format!(
        "capacity: {max_clients} streams (--max-clients {asked}) and {spare} other connections \
         (the page, /send, /drop): {name} is {value}, room for {room} connections with a margin; \
         to hold {asked}: {raise}",
        asked = config.max_clients,
        spare = fitted.spare_connections,
        name = tightest.limit.name(),
        value = tightest.value,
        raise = raise.join(", then "),
    );
    (fitted, Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/self/limits` with these soft limits (the hard ones do not matter).
    fn process_limits(processes: &str, open_files: &str) -> String {
        format!(
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max cpu time              unlimited            unlimited            seconds   \n\
             Max processes             {processes:<20} {processes:<20} processes \n\
             Max open files            {open_files:<20} {open_files:<20} files     \n"
        )
    }

    /// A default Linux: 65,530 maps, a big machine, `ulimit -n` raised to `open_files`.
    fn default_linux(open_files: &str) -> Limits {
        Limits {
            max_map_count: Some("65530\n".into()),
            threads_max: Some("192735\n".into()),
            pid_max: Some("4194304\n".into()),
            process_limits: Some(process_limits("96367", open_files)),
            cgroup_pids: Vec::new(),
        }
    }

    fn config(max_clients: usize, writers: usize) -> Config {
        Config {
            max_clients,
            broadcast_writers: writers,
            ..Config::default()
        }
    }

    #[test]
    fn with_room_to_spare_nothing_is_lowered_and_nothing_said() {
        let (fitted, line) = fit(&config(10_000, 2), &default_linux("1048576"));
        assert_eq!(fitted, config(10_000, 2));
        assert_eq!(line, None);
    }

    #[test]
    fn with_no_limit_readable_nothing_is_lowered() {
        let (fitted, line) = fit(&config(1_000_000, 2), &Limits::default());
        assert_eq!((fitted.max_clients, line), (1_000_000, None));
    }

    #[test]
    fn unlimited_and_max_are_no_limit() {
        let limits = Limits {
            process_limits: Some(process_limits("unlimited", "unlimited")),
            cgroup_pids: vec![("max\n".into(), Some("12\n".into()))],
            ..Limits::default()
        };
        assert_eq!(bounds(&limits, 3), []);
    }

    #[test]
    fn the_map_count_lowers_a_big_cap_below_the_wall_and_says_how_to_raise_it() {
        let (fitted, line) = fit(&config(30_000, 2), &default_linux("1048576"));
        // (65530 - 65530/16 - 256 - 3 threads * 4) / 4 maps = 15,291 connections in all.
        assert_eq!(fitted.max_connections(), 15_291);
        assert_eq!(fitted.spare_connections, SPARE_CONNECTIONS);
        assert_eq!(fitted.max_clients, 15_291 - SPARE_CONNECTIONS);
        let line = line.expect("a line saying so");
        assert!(line.contains("vm.max_map_count is 65530"), "{line}");
        assert!(line.contains("sudo sysctl -w vm.max_map_count="), "{line}");
        assert!(!line.contains("ulimit"), "{line}");
        // Far below the 16,380 threads at which Rust aborts.
        assert!(fitted.max_connections() + 3 < 65_530 / MAPS_PER_THREAD);
    }

    #[test]
    fn the_raise_asked_for_really_holds_the_clients() {
        let limits = default_linux("20000");
        let (_, line) = fit(&config(30_000, 2), &limits);
        let line = line.unwrap();
        for bound in bounds(&limits, 3) {
            let value = bound.value_for(30_000 + SPARE_CONNECTIONS);
            assert!(Bound { value, ..bound }.connections() >= 30_000 + SPARE_CONNECTIONS);
            assert!(
                Bound {
                    value: value - 1,
                    ..bound
                }
                .connections()
                    < 31_024
            );
        }
        // Both limits that are too low are named, the tighter first.
        let sysctl = line.find("vm.max_map_count=").expect("the sysctl");
        let ulimit = line.find("`ulimit -n ").expect("the ulimit");
        assert!(sysctl < ulimit, "{line}");
    }

    #[test]
    fn a_low_open_file_limit_leaves_a_quarter_for_requests_that_are_not_streams() {
        let (fitted, line) = fit(&config(1_000, 2), &default_linux("200"));
        // 200 - 200/16 - 8 files = 180 connections: 135 streams, 45 others.
        assert_eq!((fitted.max_clients, fitted.spare_connections), (135, 45));
        let line = line.unwrap();
        assert!(line.starts_with("capacity: 135 streams (--max-clients 1000) and 45 other"));
        assert!(line.contains("ulimit -n (RLIMIT_NOFILE) is 200"), "{line}");
        assert!(line.contains("`ulimit -n 2167` before starting"), "{line}");
    }

    #[test]
    fn a_cap_that_fits_keeps_its_streams_and_gives_up_spare_connections() {
        let (fitted, _) = fit(&config(800, 2), &default_linux("1200"));
        // 1200 - 75 - 8 = 1117 connections: the 800 streams asked for, 317 others.
        assert_eq!((fitted.max_clients, fitted.spare_connections), (800, 317));
    }

    #[test]
    fn a_container_s_pids_max_counts_what_is_already_running_there() {
        let limits = Limits {
            cgroup_pids: vec![
                ("2000\n".into(), Some("400\n".into())),
                ("max\n".into(), Some("401\n".into())),
            ],
            ..default_linux("1048576")
        };
        let (fitted, line) = fit(&config(10_000, 2), &limits);
        // 2000 - 125 - 400 threads there already = 1475 connections.
        assert_eq!(fitted.max_connections(), 1_475);
        let line = line.unwrap();
        assert!(line.contains("the cgroup's pids.max is 2000"), "{line}");
        assert!(line.contains("--pids-limit"), "{line}");
    }

    #[test]
    fn the_tightest_of_several_limits_decides() {
        let limits = Limits {
            pid_max: Some("3000".into()),
            process_limits: Some(process_limits("2500", "5000")),
            ..default_linux("")
        };
        let (fitted, line) = fit(&config(10_000, 0), &limits);
        // nproc: 2500 - 156 - 1 thread = 2343.
        assert_eq!(fitted.max_connections(), 2_343);
        assert!(line.unwrap().contains("ulimit -u (RLIMIT_NPROC) is 2500"));
    }

    #[test]
    fn writer_threads_and_the_redis_tail_count_against_the_thread_limits() {
        let limits = Limits {
            threads_max: Some("1600".into()),
            ..Limits::default()
        };
        let (simple, _) = fit(&config(10_000, 0), &limits);
        let redis = Config {
            redis: Some("redis://127.0.0.1".into()),
            ..config(10_000, 8)
        };
        let (writers, _) = fit(&redis, &limits);
        assert_eq!(simple.max_connections() - writers.max_connections(), 9);
    }

    #[test]
    fn a_tiny_limit_still_holds_one_stream_and_one_other_connection() {
        let limits = Limits {
            process_limits: Some(process_limits("unlimited", "10")),
            ..Limits::default()
        };
        let (fitted, _) = fit(&config(10_000, 2), &limits);
        assert_eq!((fitted.max_clients, fitted.spare_connections), (1, 1));
    }

    #[test]
    fn missing_or_garbled_files_are_skipped() {
        let limits = Limits {
            max_map_count: Some("lots".into()),
            threads_max: None,
            pid_max: Some(String::new()),
            process_limits: Some("Max open files\n".into()),
            cgroup_pids: vec![("12a".into(), None)],
        };
        assert_eq!(bounds(&limits, 1), []);
    }

    #[test]
    fn the_cgroup_of_a_process_is_read_from_its_line_0() {
        assert_eq!(cgroup_pids("12:pids:/x\n"), []);
        // A group that does not exist has no files: nothing found, nothing assumed.
        assert_eq!(cgroup_pids("0::/no/such/group\n"), []);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_s_limits_are_read() {
        let limits = Limits::of_this_process();
        let found = bounds(&limits, 1);
        assert!(
            found.iter().any(|b| b.limit == Limit::MapCount),
            "{limits:?}"
        );
    }
}
