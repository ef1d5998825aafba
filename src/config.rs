//! Settings: where to listen, how often to tick, how many clients to hold.
//!
//! Each setting comes from a command-line flag, else an environment variable, else a default
//! (the flag wins, as the contract says). The Node examples read `process.env.PORT || 3000`; this
//! is the same idea with flags on top.

use std::fmt;
use std::time::Duration;

/// Default port, as in the Node examples (`PORT || 3000`).
pub const DEFAULT_PORT: u16 = 3000;
/// Default host: loopback only, so a classroom laptop does not serve the whole network by accident.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default tick interval: one `event: tick` per second per client (the `setInterval(..., 1000)`).
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// Default cap on open `/events` streams. Each stream is one thread; a default Linux allows about
/// 16,000 threads per process (`vm.max_map_count`), so the cap keeps well below that.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// A client whose socket has not accepted a write for this long is dropped (contract: 10 s).
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Longest interval or write timeout accepted: one day. Longer ones are surely typos, and they
/// would overflow the time arithmetic.
pub const MAX_MILLIS: u64 = 24 * 60 * 60 * 1000;
/// Most broadcast writer threads: more than the cores only adds switching.
pub const MAX_BROADCAST_WRITERS: usize = 64;

/// Default Redis key of the shared log.
pub const DEFAULT_REDIS_KEY: &str = "sse";

/// Default number of broadcast writer threads: none, so every connection thread writes its own
/// broadcasts and ticks (`simple_fanout.rs`, the lesson). The writers (`fanout/writers.rs`)
/// pay off with thousands of clients.
pub const DEFAULT_BROADCAST_WRITERS: usize = 0;
/// A client must send its whole request (head, and body if any) within this time, or it gets 408
/// (contract: 10 s for the head).
pub const DEFAULT_HEAD_TIMEOUT_MS: u64 = 10_000;

/// The text `--help` prints.
pub const USAGE: &str = "\
Usage: sse-server [OPTIONS]

A Server-Sent Events server: GET / (the page), GET /events (the stream), /send (broadcast),
POST /drop (close every stream; browsers reconnect by themselves).

Options (a flag wins over its environment variable):
  --port N              port to listen on; 0 picks a free one   [env PORT, default 3000]
  --host ADDR           address to bind                         [env HOST, default 127.0.0.1]
  --interval-ms N       milliseconds between tick events        [env INTERVAL_MS, default 1000]
  --max-clients N       most /events streams at once; more get 503
                                                                [env MAX_CLIENTS, default 10000]
  --write-timeout-ms N  drop a client once one write has blocked this long
                                                                [env WRITE_TIMEOUT_MS, default 10000]
  --broadcast-writers N threads writing broadcasts and ticks to sockets; 0 = each
                        connection thread writes its own        [env BROADCAST_WRITERS, default 0]
                        With thousands of clients, set it to the number of cores.
  --redis URL           share the event log with other instances through Redis,
                        redis://HOST[:PORT][/DB]                [env REDIS_URL, default: in memory]
  --redis-key NAME      the Redis key of the shared log         [env REDIS_KEY, default sse]
  --allowed-host NAME   a host name served besides IP addresses and localhost; others get
                        403 (DNS rebinding); repeatable         [env ALLOWED_HOSTS, comma-separated]
  -h, --help            print this help

Examples:
  sse-server                      # http://127.0.0.1:3000/, this machine only
  sse-server --host 0.0.0.0       # a classroom: students open the printed address
  PORT=0 sse-server               # any free port; the startup line says which
";

/// Printed under a setting error, instead of the whole usage.
pub const SEE_HELP: &str = "See --help for every option (cargo run -- --help).";

/// Printed under "cannot listen on ...: Address already in use": the ways out.
pub const PORT_IN_USE: &str = "Another program (or another copy of this server) holds that port: \
    choose another with --port N or PORT=N, or --port 0 for any free one.";

/// Everything the server needs to know before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Time between two `tick` events on one connection.
    pub interval: Duration,
    /// Most `/events` streams open at once.
    pub max_clients: usize,
    /// Connections kept beyond `max_clients` for requests that are not streams (not a flag:
    /// [`SPARE_CONNECTIONS`], fewer if the machine allows few threads or files).
    pub spare_connections: usize,
    /// How long one write may block before the client counts as gone.
    pub write_timeout: Duration,
    /// Threads that write broadcasts to the sockets (0: each connection thread does).
    pub broadcast_writers: usize,
    /// How long a client may take to send its whole request (not a flag: tests shorten it).
    pub head_timeout: Duration,
    /// `redis://HOST[:PORT][/DB]`: keep the event log in Redis, shared by every instance with
    /// the same URL and key. `None`: in memory, this process only.
    pub redis: Option<String>,
    /// The Redis key of the shared log (and `<key>:id`, its counter).
    pub redis_key: String,
    /// Host names served besides IP addresses and `localhost` (the `Host` check,
    /// `classroom/host.rs`), lowercase.
    pub allowed_hosts: Vec<String>,
    /// A stream with nothing written for this long gets a keep-alive comment (not a flag: the
    /// contract fixes it at [`crate::sse::KEEP_ALIVE_AFTER`]; tests shorten it).
    pub keep_alive: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            interval: Duration::from_millis(DEFAULT_INTERVAL_MS),
            max_clients: DEFAULT_MAX_CLIENTS,
            spare_connections: SPARE_CONNECTIONS,
            write_timeout: Duration::from_millis(DEFAULT_WRITE_TIMEOUT_MS),
            broadcast_writers: DEFAULT_BROADCAST_WRITERS,
            head_timeout: Duration::from_millis(DEFAULT_HEAD_TIMEOUT_MS),
            keep_alive: crate::sse::KEEP_ALIVE_AFTER,
            redis: None,
            redis_key: DEFAULT_REDIS_KEY.to_string(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
}

/// A setting that could not be understood; `main` prints it with the usage and exits with 2.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Connections allowed beyond the client cap: page loads, `/send` calls and requests still being
/// read, so a full house can still be broadcast to and dropped. Together with the cap this bounds
/// the number of threads; `capacity.rs` lowers both when the machine allows fewer.
pub const SPARE_CONNECTIONS: usize = 1024;

impl Config {
    /// Most connections (threads) open at once: the client cap plus the spare ones.
    pub fn max_connections(&self) -> usize {
        self.max_clients.saturating_add(self.spare_connections)
    }

    /// Reads the real environment and command line.
    pub fn from_env_and_args() -> Result<Command, ConfigError> {
        Self::parse(std::env::args().skip(1), |name| std::env::var(name).ok())
    }

    /// Builds a configuration from `args` (without the program name) and an environment lookup.
    ///
    /// # Errors
    /// An unknown flag, a flag without its value, or a value that is not a number in range.
    pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
    where
        I: IntoIterator<Item = String>,
        E: Fn(&str) -> Option<String>,
    {
        // Flags first: `--help` anywhere wins, and a setting given as a flag is taken from it
        // even if its environment variable holds nonsense.
        let mut config = Config::default();
        let mut from_flags: Vec<&str> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Command::Help);
            }
            // Accept both `--port 8080` and `--port=8080`.
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg.clone(), None),
            };
            let setting = Setting::ALL
                .iter()
                .find(|s| s.flag == flag)
                .ok_or_else(|| ConfigError(format!("unknown option '{arg}'")))?;
            let value = match inline_value {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| ConfigError(format!("{flag} needs a value")))?,
            };
            setting.apply(&mut config, &value, setting.flag)?;
            from_flags.push(setting.flag);
        }
        // Then the environment, for what no flag set. An empty variable counts as unset, like
        // Node's `process.env.PORT || 3000`.
        for setting in Setting::ALL
            .iter()
            .filter(|s| !from_flags.contains(&s.flag))
        {
            if let Some(value) = env(setting.env).filter(|v| !v.trim().is_empty()) {
                setting.apply(&mut config, &value, setting.env)?;
            }
        }
        Ok(Command::Run(config))
    }
}

/// Every flag the command line knows (besides `--help`).
pub fn flags() -> impl Iterator<Item = &'static str> {
    Setting::ALL.iter().map(|setting| setting.flag)
}

/// Every environment variable the settings read.
pub fn env_vars() -> impl Iterator<Item = &'static str> {
    Setting::ALL.iter().map(|setting| setting.env)
}

/// One setting: its flag, its environment variable, and how to store its value.
struct Setting {
    flag: &'static str,
    env: &'static str,
    store: fn(&mut Config, &str) -> Result<(), String>,
}

impl Setting {
    const ALL: [Setting; 9] = [
        Setting {
            flag: "--port",
            env: "PORT",
            store: |c, v| number(v).map(|n| c.port = n),
        },
        Setting {
            flag: "--host",
            env: "HOST",
            store: |c, v| non_empty(v).map(|v| c.host = v),
        },
        Setting {
            flag: "--interval-ms",
            env: "INTERVAL_MS",
            store: |c, v| positive_millis(v).map(|d| c.interval = d),
        },
        Setting {
            flag: "--max-clients",
            env: "MAX_CLIENTS",
            store: |c, v| number_in(v, 1, usize::MAX).map(|n| c.max_clients = n),
        },
        Setting {
            flag: "--write-timeout-ms",
            env: "WRITE_TIMEOUT_MS",
            store: |c, v| positive_millis(v).map(|d| c.write_timeout = d),
        },
        Setting {
            flag: "--broadcast-writers",
            env: "BROADCAST_WRITERS",
            store: |c, v| number_in(v, 0, MAX_BROADCAST_WRITERS).map(|n| c.broadcast_writers = n),
        },
        Setting {
            flag: "--redis",
            env: "REDIS_URL",
            // Checked when the server starts (`resp::Url::parse`), which says what is wrong.
            store: |c, v| non_empty(v).map(|v| c.redis = Some(v)),
        },
        Setting {
            flag: "--redis-key",
            env: "REDIS_KEY",
            store: |c, v| non_empty(v).map(|v| c.redis_key = v),
        },
        Setting {
            flag: "--allowed-host",
            env: "ALLOWED_HOSTS",
            // Repeatable: each flag adds its names. A comma-separated list works in both.
            store: |c, v| host_names(v).map(|names| c.allowed_hosts.extend(names)),
        },
    ];

    fn apply(&self, config: &mut Config, value: &str, source: &str) -> Result<(), ConfigError> {
        (self.store)(config, value.trim())
            .map_err(|why| ConfigError(format!("{source}: '{value}' {why}")))
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| "is not a whole number in range".to_string())
}

/// Any text but the empty one.
fn non_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(value.to_string())
}

/// Host names separated by commas, each a DNS name without a port or scheme (`class.example.org`),
/// lowercased: the `Host` check compares names without case.
fn host_names(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = value
        .split(',')
        // `class.example.org.` (with the root's dot) is the same name.
        .map(|name| name.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let is_name = |name: &String| {
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    if names.is_empty() || !names.iter().all(is_name) {
        return Err(
            "is not a host name (letters, digits, '-', '_' and '.'; no port, no scheme)".into(),
        );
    }
    Ok(names)
}

/// A whole number from `min` to `max`.
fn number_in<T: std::str::FromStr + PartialOrd + fmt::Display>(
    value: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match number(value)? {
        n if n < min => Err(format!("must be at least {min}")),
        n if n > max => Err(format!("must be at most {max}")),
        n => Ok(n),
    }
}

/// A zero interval or timeout would spin or disable the limit, so both must be at least 1 ms, and
/// at most [`MAX_MILLIS`] (one day).
fn positive_millis(value: &str) -> Result<Duration, String> {
    number_in(value, 1, MAX_MILLIS).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(args.iter().map(|a| a.to_string()), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env) {
            Ok(Command::Run(config)) => config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_port_3000_on_loopback_with_one_second_ticks() {
        let c = run(&[], &[]);
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 3000));
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.max_clients, 10_000);
        assert_eq!(c.write_timeout, Duration::from_secs(10));
        assert_eq!(c.head_timeout, Duration::from_secs(10));
    }

    #[test]
    fn environment_sets_every_setting() {
        let c = run(
            &[],
            &[
                ("PORT", "0"),
                ("HOST", "0.0.0.0"),
                ("INTERVAL_MS", "250"),
                ("MAX_CLIENTS", "7"),
                ("WRITE_TIMEOUT_MS", "1500"),
                ("BROADCAST_WRITERS", "0"),
            ],
        );
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 0));
        assert_eq!(c.interval, Duration::from_millis(250));
        assert_eq!(c.max_clients, 7);
        assert_eq!(c.write_timeout, Duration::from_millis(1500));
        assert_eq!(c.broadcast_writers, 0);
    }

    #[test]
    fn flags_win_over_environment() {
        let c = run(
            &[
                "--port",
                "8080",
                "--host=::1",
                "--interval-ms",
                "50",
                "--max-clients=3",
                "--write-timeout-ms",
                "20",
            ],
            &[("PORT", "9000"), ("HOST", "0.0.0.0"), ("INTERVAL_MS", "10")],
        );
        assert_eq!((c.host.as_str(), c.port), ("::1", 8080));
        assert_eq!(c.interval, Duration::from_millis(50));
        assert_eq!(c.max_clients, 3);
        assert_eq!(c.write_timeout, Duration::from_millis(20));
    }

    #[test]
    fn a_flag_wins_even_over_an_unreadable_environment_variable() {
        assert_eq!(run(&["--port", "0"], &[("PORT", "abc")]).port, 0);
        assert_eq!(parse(&["--help"], &[("PORT", "abc")]), Ok(Command::Help));
    }

    #[test]
    fn an_empty_environment_variable_counts_as_unset() {
        assert_eq!(run(&[], &[("PORT", ""), ("HOST", " ")]), run(&[], &[]));
    }

    #[test]
    fn help_flag_asks_for_the_usage_text() {
        assert_eq!(parse(&["--help"], &[]), Ok(Command::Help));
        assert_eq!(parse(&["--port", "1", "-h"], &[]), Ok(Command::Help));
        assert_eq!(flags().count(), 9);
        for flag in flags() {
            assert!(USAGE.contains(flag), "usage mentions {flag}");
        }
    }

    #[test]
    fn allowed_hosts_come_from_repeated_flags_or_a_comma_separated_variable() {
        let by_flags = run(
            &[
                "--allowed-host",
                "Class.Example.org",
                "--allowed-host=b.test",
            ],
            &[("ALLOWED_HOSTS", "ignored.test")],
        );
        assert_eq!(by_flags.allowed_hosts, ["class.example.org", "b.test"]);
        let by_env = run(&[], &[("ALLOWED_HOSTS", "a.test, b.test.,")]);
        assert_eq!(by_env.allowed_hosts, ["a.test", "b.test"]);
        assert!(run(&[], &[]).allowed_hosts.is_empty());
    }

    #[test]
    fn an_allowed_host_with_a_port_or_scheme_is_an_error() {
        for value in ["a.test:3000", "http://a.test", "a.test/", ",", "*.a.test"] {
            assert!(parse(&["--allowed-host", value], &[]).is_err(), "{value}");
        }
    }

    #[test]
    fn bad_settings_are_errors_not_defaults() {
        assert!(parse(&["--port", "70000"], &[]).is_err());
        assert!(parse(&["--port"], &[]).is_err());
        assert!(parse(&["--interval-ms", "0"], &[]).is_err());
        assert!(parse(&["--interval-ms", "18446744073709551615"], &[]).is_err());
        assert!(parse(&["--write-timeout-ms", "86400001"], &[]).is_err());
        assert!(parse(&["--broadcast-writers", "65"], &[]).is_err());
        assert!(parse(&["--max-clients", "0"], &[]).is_err());
        assert!(parse(&["--bogus"], &[]).is_err());
        assert!(parse(&[], &[("PORT", "http")]).is_err());
        assert!(parse(&["--host", ""], &[]).is_err());
    }
}
