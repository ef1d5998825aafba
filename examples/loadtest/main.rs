//! A load test for the SSE server, built from the standard library alone.
//!
//! ```text
//! cargo build --release                       # the server under test
//! ulimit -n 20000                             # one file descriptor per client, in both processes
//! cargo run --release --example loadtest -- --clients 2000 --messages 20
//! ```
//!
//! It starts the release server as a child process, opens N `GET /events` streams to it (one
//! thread per client, the server's own design), lets them idle, then broadcasts K messages
//! `bench-1` .. `bench-K` with `POST /send` and times every delivery. What it prints, and why:
//!
//! - **ramp**: time until all N clients got their `200` head: what a crowd of browsers
//!   reconnecting after a restart waits for (the accept loop plus one thread start per client).
//! - **RSS per client**: growth of the server's resident memory divided by the clients: what one
//!   open stream costs, hence how many fit in RAM.
//! - **threads**: one per stream plus a few. Linux allows about 16,000 per process
//!   (`vm.max_map_count` = 65,530 memory maps, about four per thread). That is why the server
//!   caps its clients, and why it runs in *another* process here: N client threads and N server
//!   threads would not fit in one.
//! - **tick CPU**: the server's CPU use while only ticks flow, in % of one core: the price of
//!   idle streams (one write per client per tick; with `--broadcast-writers 0`, also one thread
//!   wake-up per client per tick).
//! - **fan-out latency**: from just before a `POST /send` request is written until a client has
//!   read the message, over every (client, message) pair: median (the typical case), p99 (the
//!   unlucky 1 %) and max. Both instants come from one monotonic clock (`Instant`, this process).
//! - **last client**: per broadcast, the latency of the slowest client, i.e. when *everyone* has
//!   it; its median over the K broadcasts is the headline fan-out figure.
//! - **lost / duplicates / order**: deliveries that never came, came twice, or came with a missing
//!   or out-of-order `id`. All must be 0: the exit code is 1 otherwise, or if a client could not
//!   connect.
//!
//! Open loop (the default) sends a broadcast every `--gap-ms` whether or not the previous one
//! has arrived, so a server that cannot keep up builds a queue, and it shows. `--closed-loop`
//! sends the next one only once every client has the previous one: "last client" is then the
//! time for one broadcast to reach all N clients with nothing else going on.
//!
//! Several instances sharing one log in Redis (`--redis`): start them yourself, name the first
//! with `--url` and each other one with `--also-url`. The clients are spread over all of them in
//! turn (client i goes to instance i mod M), broadcasts go to the first, and "last client" is
//! then the slowest client of *any* instance; it is also given per instance, next to "first
//! client" (per broadcast, its fastest client: the path through the log with no fan-out queue)
//! and the `/send` round trip.
//!
//! Every phase is bounded in time, traffic goes to loopback only, and the child server is killed
//! on every way out (a `Drop` guard; Ctrl-C reaches it too, as it is in our process group).

mod sse_parser;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;

use sse_parser::{Event, SseParser};
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: cargo run --release --example loadtest -- --clients N --messages K [OPTIONS]

  --clients N        /events streams to open (1..=15000)
  --messages K       broadcasts to send: bench-1 .. bench-K
  --gap-ms G         open loop: one broadcast every G ms                      [200]
  --closed-loop      send each broadcast once all clients have the previous one
  --interval-ms I    tick interval (INTERVAL_MS of the server)                [1000]
  --settle-s S       pause after the ramp, before measuring                   [2]
  --window-s W       how long to measure tick CPU                             [5]
  --server PATH      server binary to start            [<target>/release/sse-server]
  --server-log PATH  keep the server's log (its stderr) in PATH          [discarded]
  --url http://127.0.0.1:PORT  test a running server instead of starting one
  --pid P            with --url: its process id, to read its RSS, threads and CPU
  --also-url http://127.0.0.1:PORT  with --url: another instance sharing its log (Redis);
                     repeatable. Clients are spread over all instances in turn,
                     broadcasts go to --url; last client is over all of them
Exit code: 0 all delivered once, in order; 1 lost, duplicated or misordered deliveries, or
connection errors; 2 usage or setup error.
";

/// Stack of each client thread. Rust's default, 2 MiB, is address space we do not need: a client
/// touches a few KiB (its 4 KiB read buffer included).
const CLIENT_STACK_BYTES: usize = 64 * 1024;
/// Clients connecting at once. A burst of 10,000 SYNs would overflow the listen queue and time
/// the kernel's retransmissions instead of the server.
const CONNECT_CONCURRENCY: usize = 128;
/// /proc counts CPU time in clock ticks of 1/`USER_HZ` s, and `USER_HZ` is 100 on every common
/// Linux architecture (std cannot ask `sysconf(_SC_CLK_TCK)` without unsafe code).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const RAMP_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a response head (of `/events`) or a whole reply (of `/send`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for deliveries: per broadcast in closed loop, after the last one in open loop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

struct Options {
    clients: usize,
    messages: usize,
    gap: Duration,
    closed_loop: bool,
    interval: Duration,
    settle: Duration,
    window: Duration,
    server: Option<PathBuf>,
    server_log: Option<PathBuf>,
    url: Option<SocketAddr>,
    pid: Option<u32>,
    /// More instances sharing the log of `url`: clients are spread over all of them.
    also: Vec<SocketAddr>,
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        clients: 0,
        messages: 0,
        gap: Duration::from_millis(200),
        closed_loop: false,
        interval: Duration::from_millis(1000),
        settle: Duration::from_secs(2),
        window: Duration::from_secs(5),
        server: None,
        server_log: None,
        url: None,
        pid: None,
        also: Vec::new(),
    };
    while let Some(arg) = args.next() {
        if arg == "--closed-loop" {
            o.closed_loop = true;
            continue;
        }
        // `--flag value` or `--flag=value`.
        let (flag, v) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), value.to_string()),
            None => (
                arg.clone(),
                args.next().ok_or(format!("{arg} needs a value"))?,
            ),
        };
        let (f, v) = (flag.as_str(), v.as_str());
        match f {
            "--clients" => o.clients = number(f, v)?,
            "--messages" => o.messages = number(f, v)?,
            "--gap-ms" => o.gap = Duration::from_millis(number(f, v)?),
            "--interval-ms" => o.interval = Duration::from_millis(number(f, v)?),
            "--settle-s" => o.settle = seconds(f, v)?,
            "--window-s" => o.window = seconds(f, v)?,
            "--server" => o.server = Some(v.into()),
            "--server-log" => o.server_log = Some(v.into()),
            "--url" => o.url = Some(loopback_addr(v)?),
            "--pid" => o.pid = Some(number(f, v)?),
            "--also-url" => o.also.push(loopback_addr(v)?),
            _ => return Err(format!("unknown option {f}\n\n{USAGE}")),
        }
    }
    // About 16,000 threads fit in one process (see the top of this file): keep clear of it.
    if !(1..=15_000).contains(&o.clients) || !(1..=100_000).contains(&o.messages) {
        return Err(format!(
            "need --clients 1..=15000 and --messages 1..=100000\n\n{USAGE}"
        ));
    }
    match (&o.url, o.pid, &o.server) {
        (None, Some(_), _) => Err("--pid goes with --url".into()),
        (None, _, _) if !o.also.is_empty() => Err("--also-url goes with --url".into()),
        (Some(_), _, Some(_)) => Err("use either --url or --server, not both".into()),
        _ => Ok(o),
    }
}

fn number<T: FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let s: f64 = number(flag, value)?;
    if !(0.0..=600.0).contains(&s) {
        return Err(format!("{flag}: {value} is not between 0 and 600 seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// `http://127.0.0.1:PORT[/...]` to an address. Anything but loopback is refused: a load test
/// aimed at someone else's machine is an attack on it.
fn loopback_addr(url: &str) -> Result<SocketAddr, String> {
    let host_port = url.strip_prefix("http://").unwrap_or(url).split('/').next();
    let host_port = host_port
        .unwrap_or_default()
        .replace("localhost", "127.0.0.1");
    match host_port.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Ok(addr),
        Ok(addr) => Err(format!(
            "refusing {addr}: this load test only talks to loopback"
        )),
        Err(_) => Err(format!(
            "expected a URL like http://127.0.0.1:3000/, not {url}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test

/// The server we started. Dropping it kills the process by its PID, so it never outlives the
/// test: not after an error, not after a panic in the main thread (unwinding runs `drop`).
struct ChildServer(Child);

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildServer {
    /// `Some(status)` if the server has exited (crashed) by itself.
    fn exited(&mut self) -> Option<String> {
        self.0
            .try_wait()
            .ok()
            .flatten()
            .map(|status| status.to_string())
    }
}

/// `<target>/release/sse-server`, found from this example's own path
/// (`<target>/<profile>/examples/loadtest`), so that it follows `CARGO_TARGET_DIR`.
fn default_server_path() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let target = exe.as_deref().and_then(|e| e.parent()?.parent()?.parent());
    target.map_or("target/release/sse-server".into(), |t| {
        t.join("release/sse-server")
    })
}

/// Starts the server on a free port (PORT=0) and reads the port from its startup line.
fn start_server(opts: &Options, path: &Path) -> Result<(ChildServer, SocketAddr), String> {
    if !path.is_file() {
        return Err(format!(
            "no server binary at {}\n  build it first:  cargo build --release\n  \
             (or name it with --server PATH, or test a running server with --url)",
            path.display()
        ));
    }
    // The server logs a line per connection. Piped and unread, its log would fill the pipe and
    // block the server, so it goes to a file or nowhere.
    let log = match &opts.server_log {
        Some(p) => Stdio::from(File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Stdio::null(),
    };
    let mut child = Command::new(path)
        .envs([("PORT", "0"), ("HOST", "127.0.0.1")])
        .env("INTERVAL_MS", opts.interval.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut server = ChildServer(child); // from here on, every return kills it
    let Some(line) = first_line(stdout) else {
        let why = server
            .exited()
            .unwrap_or("no startup line within 10 s".into());
        return Err(format!("the server did not start: {why}"));
    };
    // `Server running at http://127.0.0.1:PORT/`
    let url = line.find("http://").map(|i| line[i..].trim_end());
    let addr = loopback_addr(url.ok_or(format!("no URL in the startup line {line:?}"))?)?;
    Ok((server, addr))
}

/// The server's first line of output, or `None` after `STARTUP_TIMEOUT`. A helper thread reads
/// it (a pipe read cannot time out), then keeps reading so the pipe never fills or breaks.
fn first_line(stdout: ChildStdout) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    let reader = move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        if stdout.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(line);
        }
        let _ = io::copy(&mut stdout, &mut io::sink());
    };
    thread::Builder::new()
        .name("server-stdout".into())
        .spawn(reader)
        .ok()?;
    rx.recv_timeout(STARTUP_TIMEOUT).ok()
}

// ---------------------------------------------------------------------------------------------
// /proc: what the kernel knows about a process

/// A line's first number in /proc/PID/status (`VmRSS:  1234 kB`, `Threads:  7`).
fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time used so far (user + system), in clock ticks: fields 14 and 15 of /proc/PID/stat,
/// counted from the `)` that ends field 2, the command name (which may contain spaces).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    Some(user + fields.next()?.parse::<u64>().ok()?)
}

/// Warns when this shell's open-file limit cannot hold N clients. The child server inherits the
/// limit, and it needs one descriptor per client too.
fn check_fd_limit(clients: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"));
    let soft = soft.and_then(|rest| rest.split_whitespace().next()?.parse::<usize>().ok());
    let need = clients + 64; // stdio, /proc files, `/send` connections
    if let Some(have) = soft.filter(|&have| have < need) {
        let advice = need.max(20_000);
        eprintln!(
            "warning: this shell allows {have} open files; {clients} clients need about {need} \
             (here, and as many in the server).\n         Run `ulimit -n {advice}` first."
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What the threads record

/// Counters shared by all threads (an `AtomicUsize` starts at 0 by default).
#[derive(Default)]
struct Counters {
    connected: AtomicUsize,
    /// Streams still open.
    alive: AtomicUsize,
    /// No `200` head: a connect or read error, or no thread for the client.
    failed: AtomicUsize,
    /// Answered with another status: 503 over the server's client cap.
    refused: AtomicUsize,
    /// Streams that ended while the test ran.
    dropped: AtomicUsize,
    ticks: AtomicUsize,
    duplicates: AtomicUsize,
    /// Broadcasts whose `id` was missing or not above the previous one's on the same stream.
    misordered: AtomicUsize,
    sends_ok: AtomicUsize,
    sends_failed: AtomicUsize,
}

/// Everything the threads write and the main thread reads. Times are nanoseconds since `start`
/// in atomics (0 = "not yet"): recording a delivery is one store, no lock, no allocation.
struct Tally {
    start: Instant,
    messages: usize,
    /// `received_at[client * messages + k - 1]`: when `client` had read `bench-k`.
    received_at: Vec<AtomicU64>,
    /// `sent_at[k - 1]`: just before the `POST /send` of `bench-k` was written.
    sent_at: Vec<AtomicU64>,
    /// `send_rtt[k - 1]`: from `sent_at` until its whole `200` reply was read (0: none).
    send_rtt: Vec<AtomicU64>,
    /// Servers the clients are spread over: client i is on instance i mod `instances`.
    instances: usize,
    /// `delivered[k - 1]`: how many clients have `bench-k` (closed loop and drain wait on it).
    delivered: Vec<AtomicUsize>,
    /// `last_id[client]`: the `id` of the last broadcast that client read.
    last_id: Vec<AtomicU64>,
    /// When the last `200` head arrived: the end of the ramp.
    last_head_at: AtomicU64,
    count: Counters,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn new(clients: usize, messages: usize, instances: usize) -> Tally {
        Tally {
            start: Instant::now(),
            messages,
            received_at: (0..clients * messages).map(|_| AtomicU64::new(0)).collect(),
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            send_rtt: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            instances,
            delivered: (0..messages).map(|_| AtomicUsize::new(0)).collect(),
            last_id: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            last_head_at: AtomicU64::new(0),
            count: Counters::default(),
            first_error: Mutex::new(None),
        }
    }

    /// Now, in nanoseconds since `start`; never 0, which means "not yet".
    fn now_ns(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).max(1)
    }

    /// Keeps the first error only: when 10,000 clients fail alike, one line says it all.
    fn note_error(&self, what: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(what);
    }

    fn on_event(&self, client: usize, event: Event, at_ns: u64) {
        let Event::Message { data, id } = event else {
            self.count.ticks.fetch_add(1, Relaxed);
            return;
        };
        // Broadcasts are numbered 1, 2, 3, ...: each stream must show them in that order.
        let previous = self.last_id[client].swap(id.unwrap_or(0), Relaxed);
        if id.is_none_or(|id| id <= previous) {
            self.count.misordered.fetch_add(1, Relaxed);
        }
        // Other messages (someone else broadcasting to the same server) are not ours to time.
        let digits = data
            .strip_prefix(b"bench-")
            .and_then(|d| std::str::from_utf8(d).ok());
        let k = digits.and_then(|d| d.parse().ok());
        if let Some(k) = k.filter(|k| (1..=self.messages).contains(k)) {
            self.record(client, k, at_ns);
        }
    }

    /// Only this client's own thread writes its slots, so a load and a store are enough.
    fn record(&self, client: usize, k: usize, at_ns: u64) {
        let slot = &self.received_at[client * self.messages + k - 1];
        if slot.load(Relaxed) != 0 {
            self.count.duplicates.fetch_add(1, Relaxed);
            return;
        }
        slot.store(at_ns, Relaxed);
        // Release: whoever sees the new count (with Acquire) also sees the time stored above.
        self.delivered[k - 1].fetch_add(1, Release);
    }

    /// Every open stream has `bench-k` (or it was never sent: nothing to wait for).
    fn everyone_has(&self, k: usize) -> bool {
        self.sent_at[k - 1].load(Relaxed) == 0
            || self.delivered[k - 1].load(Acquire) >= self.count.alive.load(Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Connects, asks for the stream and reads up to the end of the response head. Returns the
/// stream, the head, and any body bytes that came with it.
fn open_stream(addr: SocketAddr) -> io::Result<(TcpStream, String, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    // One write: pieces sent apart could wait for each other's ACK (Nagle's algorithm).
    let request =
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let head_len = loop {
        match stream.read(&mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => head.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("response head over 16 KiB"));
        }
    };
    // From now on a read waits for as long as the stream stays quiet.
    stream.set_read_timeout(None)?;
    let body_start = head.split_off(head_len);
    Ok((
        stream,
        String::from_utf8_lossy(&head).into_owned(),
        body_start,
    ))
}

/// One client's whole life: connect, then read the stream until it ends.
fn run_client(client: usize, addr: SocketAddr, tally: &Tally) {
    let count = &tally.count;
    let (stream, head, body_start) = match open_stream(addr) {
        Ok(opened) => opened,
        Err(e) => {
            count.failed.fetch_add(1, Relaxed);
            return tally.note_error(format!("/events: {e}"));
        }
    };
    if !head.starts_with("HTTP/1.1 200 ") {
        count.refused.fetch_add(1, Relaxed);
        let status = head.lines().next().unwrap_or_default();
        return tally.note_error(format!("/events answered {status}"));
    }
    tally.last_head_at.fetch_max(tally.now_ns(), Relaxed);
    count.alive.fetch_add(1, Relaxed);
    count.connected.fetch_add(1, Relaxed);
    let why = read_events(client, &stream, &body_start, tally);
    count.alive.fetch_sub(1, Relaxed);
    count.dropped.fetch_add(1, Relaxed);
    tally.note_error(why);
}

/// Reads and parses the stream; returns why it ended. The events of one `read` all get the time
/// of that read: they arrived together.
fn read_events(client: usize, mut stream: &TcpStream, body_start: &[u8], tally: &Tally) -> String {
    let mut parser = SseParser::default();
    let mut bytes = body_start;
    let mut buf = [0u8; 4096];
    loop {
        let at = tally.now_ns();
        parser.feed(bytes, &mut |event| tally.on_event(client, event, at));
        match stream.read(&mut buf) {
            Ok(0) => return "the server closed an /events stream".into(),
            Ok(n) => bytes = &buf[..n],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes = &[],
            Err(e) => return format!("/events read: {e}"),
        }
    }
}

/// Starts the N client threads, `CONNECT_CONCURRENCY` connecting at a time, and waits until each
/// has its head or has failed. Client i connects to `addrs[i % addrs.len()]`. Returns the ramp
/// time and the clients still pending.
fn open_clients(
    clients: usize,
    addrs: &[SocketAddr],
    tally: &Arc<Tally>,
) -> (Option<Duration>, usize) {
    let c = &tally.count;
    let settled = || c.connected.load(Relaxed) + c.failed.load(Relaxed) + c.refused.load(Relaxed);
    let started_ns = tally.now_ns();
    let deadline = Instant::now() + RAMP_TIMEOUT;
    for client in 0..clients {
        // The clients started but not settled yet are the ones connecting.
        if !wait_until(deadline, || client - settled() < CONNECT_CONCURRENCY) {
            c.failed.fetch_add(clients - client, Relaxed);
            tally.note_error(format!(
                "ramp timeout: {} clients never started",
                clients - client
            ));
            break;
        }
        let for_thread = Arc::clone(tally);
        let addr = addrs[client % addrs.len()];
        let spawned = thread::Builder::new()
            .name(format!("client-{client}"))
            .stack_size(CLIENT_STACK_BYTES)
            .spawn(move || run_client(client, addr, &for_thread));
        // Out of threads or memory: `Builder::spawn` says so, where `thread::spawn` would panic.
        if let Err(e) = spawned {
            c.failed.fetch_add(1, Relaxed);
            tally.note_error(format!("cannot start a client thread: {e}"));
        }
    }
    wait_until(deadline, || settled() >= clients);
    let last_head = tally.last_head_at.load(Relaxed);
    let ramp = (last_head != 0).then(|| Duration::from_nanos(last_head - started_ns));
    (ramp, clients - settled().min(clients))
}

/// Polls `done` every millisecond until it holds (true) or the deadline passes (false).
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Broadcasts

/// Sends `bench-k` and counts the reply.
fn send(addr: SocketAddr, k: usize, tally: &Tally) {
    match post_message(addr, k, tally) {
        Ok(()) => {
            tally.count.sends_ok.fetch_add(1, Relaxed);
        }
        Err(e) => {
            tally.count.sends_failed.fetch_add(1, Relaxed);
            tally.note_error(e);
        }
    }
}

/// `POST /send` with body `bench-k`, recording when it went out.
fn post_message(addr: SocketAddr, k: usize, tally: &Tally) -> Result<(), String> {
    let body = format!("bench-{k}");
    let len = body.len();
    let request = format!(
        "POST /send HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    );
    let error = |what: &str, e: io::Error| format!("/send {what}: {e}");
    let connected = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
    let mut stream = connected.map_err(|e| error("connect", e))?;
    let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    // The clock starts here, after connecting: the connection is not part of the broadcast.
    tally.sent_at[k - 1].store(tally.now_ns(), Relaxed);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| error("write", e))?;
    // `Connection: close`: the reply ends where the connection does.
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| error("read", e))?;
    match reply.lines().next().unwrap_or_default() {
        status if status.starts_with("HTTP/1.1 200 ") => {
            let rtt = tally.now_ns() - tally.sent_at[k - 1].load(Relaxed);
            tally.send_rtt[k - 1].store(rtt.max(1), Relaxed);
            Ok(())
        }
        status => Err(format!("/send answered {status:?}")),
    }
}

/// Open loop: `bench-k` is due `(k - 1) * gap` after the first, each sent from its own thread,
/// so that a slow reply never delays the next send (which would hide the slowness it causes).
fn broadcast_open_loop(opts: &Options, addr: SocketAddr, tally: &Arc<Tally>) {
    let first = Instant::now();
    let mut senders = Vec::with_capacity(opts.messages);
    for k in 1..=opts.messages {
        let due = first + opts.gap * (k as u32 - 1);
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let for_thread = Arc::clone(tally);
        let sender = thread::Builder::new().stack_size(CLIENT_STACK_BYTES);
        match sender.spawn(move || send(addr, k, &for_thread)) {
            Ok(handle) => senders.push(handle),
            Err(e) => tally.note_error(format!("cannot start a sender thread: {e}")),
        }
    }
    // Every sender ends within its socket timeouts.
    for handle in senders {
        let _ = handle.join();
    }
}

/// Closed loop: `bench-k+1` goes out once every client has `bench-k`, or after `DRAIN_TIMEOUT`.
fn broadcast_closed_loop(opts: &Options, addr: SocketAddr, tally: &Tally) {
    for k in 1..=opts.messages {
        send(addr, k, tally);
        if !wait_until(Instant::now() + DRAIN_TIMEOUT, || tally.everyone_has(k)) {
            tally.note_error(format!("bench-{k} missed clients for {DRAIN_TIMEOUT:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run, printing the report's rows as their figures come in

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build of the load test; use `cargo run --release`");
    }
    match parse_options(args.into_iter()).and_then(|opts| run(&opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs every phase, printing each row of the report as soon as its figures are in.
/// `Ok(true)` if every client connected and every delivery arrived.
fn run(opts: &Options) -> Result<bool, String> {
    check_fd_limit(opts.clients);
    let (mut child, addr) = match opts.url {
        Some(addr) => (None, addr),
        None => {
            let path = opts.server.clone().unwrap_or_else(default_server_path);
            let (child, addr) = start_server(opts, &path)?;
            (Some(child), addr)
        }
    };
    let pid = child.as_ref().map(|c| c.0.id()).or(opts.pid);
    let (n, k) = (opts.clients, opts.messages);
    let mode = if opts.closed_loop {
        "closed loop".to_string()
    } else {
        format!("open loop, one every {} ms", opts.gap.as_millis())
    };
    let pid_text = pid.map_or("unknown".into(), |p| p.to_string());
    println!("== loadtest: {n} clients, {k} broadcasts ({mode})");
    let tick_ms = opts.interval.as_millis();
    println!("   server http://{addr}/ (pid {pid_text}), a tick every {tick_ms} ms");
    for other in &opts.also {
        println!("   and    http://{other}/ (same log), clients spread over all in turn");
    }
    if !opts.also.is_empty() {
        println!("   (server RSS, threads and tick CPU below are the first instance's)");
    }
    println!();

    let addrs: Vec<SocketAddr> = std::iter::once(addr).chain(opts.also.clone()).collect();
    let tally = Arc::new(Tally::new(n, k, addrs.len()));
    let before = pid.and_then(memory);
    let pending = ramp_up(&addrs, &tally);
    thread::sleep(opts.settle);
    print_memory(pid, before, &tally);
    measure_tick_cpu(opts, pid, &tally);
    if opts.closed_loop {
        broadcast_closed_loop(opts, addr, &tally);
    } else {
        broadcast_open_loop(opts, addr, &tally);
    }
    let all_arrived = || (1..=k).all(|k| tally.everyone_has(k));
    if !wait_until(Instant::now() + DRAIN_TIMEOUT, all_arrived) {
        tally.note_error(format!("deliveries still missing after {DRAIN_TIMEOUT:?}"));
    }
    let bad = print_deliveries(&tally);
    let crashed = child.as_mut().and_then(ChildServer::exited);
    Ok(print_verdict(&tally, bad, pending, crashed.as_deref()))
    // `child` is dropped here: the server is killed, and the client streams end with it.
}

/// Opens the clients and prints how that went. Returns the number still pending.
fn ramp_up(addrs: &[SocketAddr], tally: &Arc<Tally>) -> usize {
    let n = tally.received_at.len() / tally.messages;
    let (ramp, pending) = open_clients(n, addrs, tally);
    let ok = format!("{} / {n}", tally.count.connected.load(Relaxed));
    let ramp = ramp.map_or("-".into(), |r| format!("{:.3} s", r.as_secs_f64()));
    println!("  connected          {ok:>12}   streams that got their 200 head");
    println!("  ramp               {ramp:>12}   until the last one had it");
    pending
}

/// `VmRSS` (KiB) and thread count of a process.
fn memory(pid: u32) -> Option<(u64, u64)> {
    Some((status_field(pid, "VmRSS:")?, status_field(pid, "Threads:")?))
}

/// Prints the server's memory and threads, now that the clients have settled.
fn print_memory(pid: Option<u32>, before: Option<(u64, u64)>, tally: &Tally) {
    let n = tally.count.connected.load(Relaxed);
    let Some(((rss0, threads0), (rss1, threads))) = before.zip(pid.and_then(memory)) else {
        return println!("  server RSS                    -   cannot read /proc/PID/status");
    };
    let growth = rss1 as f64 - rss0 as f64;
    let rss = format!("{rss1} KiB");
    let each = format!("{:.1} KiB", growth / n.max(1) as f64);
    println!("  server RSS         {rss:>12}   {rss0} KiB before the clients");
    println!("  RSS per client     {each:>12}   {growth:.0} KiB more, for {n} clients");
    println!("  server threads     {threads:>12}   {threads0} before the clients");
}

/// Measures and prints the server's CPU use while only ticks flow.
fn measure_tick_cpu(opts: &Options, pid: Option<u32>, tally: &Tally) {
    let (ticks, n) = (&tally.count.ticks, tally.count.connected.load(Relaxed));
    let (cpu0, ticks0, start) = (pid.and_then(cpu_ticks), ticks.load(Relaxed), Instant::now());
    thread::sleep(opts.window);
    let secs = start.elapsed().as_secs_f64();
    let used = cpu0
        .zip(pid.and_then(cpu_ticks))
        .map(|(a, b)| (b - a) as f64);
    let cpu = used.map_or("-".into(), |t| {
        format!("{:.1} %", t / CLOCK_TICKS_PER_SEC / secs * 100.0)
    });
    // Each client is due one tick per interval: fewer arriving means the server falls behind.
    let due = n as f64 * secs / opts.interval.as_secs_f64();
    let came = (ticks.load(Relaxed) - ticks0) as f64 / due.max(1.0) * 100.0;
    println!("  tick CPU           {cpu:>12}   of one core, over {secs:.1} s");
    let came = format!("{came:.1} %");
    println!("  ticks received     {came:>12}   of those due in that time");
}

/// Prints the latencies and the deliveries; returns the deliveries lost, doubled or misordered.
fn print_deliveries(tally: &Tally) -> usize {
    let (all, last, first) = latencies(tally, |_| true);
    let ms = |ns: Option<u64>| ns.map_or("-".into(), |ns| format!("{:.3} ms", ns as f64 / 1e6));
    let (median, p99) = (ms(percentile(&all, 50.0)), ms(percentile(&all, 99.0)));
    let (max, last_median) = (ms(all.last().copied()), ms(percentile(&last, 50.0)));
    let (last_max, first_median) = (ms(last.last().copied()), ms(percentile(&first, 50.0)));
    println!("  fan-out median     {median:>12}   from send to client, over every delivery");
    println!("  fan-out p99        {p99:>12}");
    println!("  fan-out max        {max:>12}");
    println!("  last client median {last_median:>12}   per broadcast, its slowest client");
    println!("  last client max    {last_max:>12}   the slowest broadcast's");
    println!("  first client median{first_median:>12}   per broadcast, its fastest client");
    let m = tally.instances;
    if m > 1 {
        for i in 0..m {
            let (_, last, first) = latencies(tally, |client| client % m == i);
            let (last, first) = (ms(percentile(&last, 50.0)), ms(percentile(&first, 50.0)));
            let sends = if i == 0 { ", the one sent to" } else { "" };
            println!(
                "    instance {i}: last {last:>12}   first {first}   (its clients only{sends})"
            );
        }
    }
    let mut rtts: Vec<u64> = tally.send_rtt.iter().map(|r| r.load(Relaxed)).collect();
    rtts.retain(|&r| r != 0);
    rtts.sort_unstable();
    let (rtt, rtt_max) = (ms(percentile(&rtts, 50.0)), ms(rtts.last().copied()));
    println!(
        "  /send round trip   {rtt:>12}   median, until its 200 reply was read (max {rtt_max})"
    );
    let c = &tally.count;
    let expected = tally.received_at.len();
    let lost = expected - all.len();
    let (dups, misordered) = (c.duplicates.load(Relaxed), c.misordered.load(Relaxed));
    println!("  lost deliveries    {lost:>12}   of {expected}");
    println!(
        "  duplicates         {dups:>12}   and {misordered} with a missing or out-of-order id"
    );
    let (sent, failed) = (c.sends_ok.load(Relaxed), c.sends_failed.load(Relaxed));
    println!("  /send ok           {sent:>12}   failed {failed}");
    lost + dups + misordered
}

/// Prints the errors and the verdict: PASS (true) if every client connected and every delivery
/// arrived once, in order.
fn print_verdict(tally: &Tally, bad: usize, pending: usize, crashed: Option<&str>) -> bool {
    let c = &tally.count;
    let (failed, refused) = (c.failed.load(Relaxed), c.refused.load(Relaxed));
    let dropped = c.dropped.load(Relaxed);
    let errors = failed + refused + dropped + pending;
    let what = format!("failed {failed}, refused {refused}, dropped {dropped}, pending {pending}");
    println!("  connection errors  {errors:>12}   {what}");
    if let Some(status) = crashed {
        println!("  SERVER EXITED      {status:>12}   during the run");
    }
    let first_error = tally
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = first_error.as_ref() {
        println!("  first error        {e}");
    }
    let passed = bad == 0 && errors == 0 && crashed.is_none();
    let result = if passed { "PASS" } else { "FAIL" };
    println!("  result             {result:>12}");
    passed
}

/// Fan-out latencies in nanoseconds of the clients `pick` chooses (by index), sorted: of every
/// delivery, of the slowest client per broadcast, and of the fastest client per broadcast.
fn latencies(tally: &Tally, pick: impl Fn(usize) -> bool) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let k_count = tally.messages;
    let (mut all, mut last_client, mut first_client) = (Vec::new(), Vec::new(), Vec::new());
    for (k, sent) in tally.sent_at.iter().enumerate() {
        let sent = sent.load(Relaxed);
        // Broadcast k of every client: every `k_count`-th slot, from slot k on.
        let slots = tally
            .received_at
            .iter()
            .skip(k)
            .step_by(k_count)
            .enumerate();
        let picked = slots.filter(|&(client, _)| pick(client));
        let received = picked.map(|(_, r)| r.load(Relaxed)).filter(|&r| r != 0);
        let lat: Vec<u64> = received.map(|r| r.saturating_sub(sent)).collect();
        last_client.extend(lat.iter().max());
        first_client.extend(lat.iter().min());
        all.extend(lat);
    }
    all.sort_unstable();
    last_client.sort_unstable();
    first_client.sort_unstable();
    (all, last_client, first_client)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}
