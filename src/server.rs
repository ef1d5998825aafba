//! The listening socket and the accept loop: one thread per connection.
//!
//! Node's `http.createServer(handler).listen(port)` hides an event loop; here every connection
//! gets its own thread, which reads the request and, for `/events`, stays to write the stream.
//! A blocked thread blocks only its own client, and the code reads top to bottom like the Node
//! handler. The price is a thread per open stream, which is why the number of streams is capped.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::event_log::EventLog;
use crate::fanout::Fanout;
use crate::routes;

/// Stack size of each connection thread. Rust's default is 2 MiB of address space; a connection
/// needs a few KiB, and only the pages it touches use memory.
pub const THREAD_STACK_BYTES: usize = 64 * 1024;

/// Connections allowed beyond the client cap: page loads, `/send` calls and requests still being
/// read. Together with the cap this bounds the number of threads. Linux counts about four memory
/// maps per thread against `vm.max_map_count` (65,530 by default), and Rust aborts the whole
/// process if the limit is hit while a new thread sets itself up (it maps a signal stack of its
/// own), so the total must stay well below ~16,000.
pub const SPARE_CONNECTIONS: usize = 1024;

/// Memory maps Linux counts per thread against `vm.max_map_count`: the stack, its guard page, and
/// the signal stack Rust sets up with its own guard page.
pub const MAPS_PER_THREAD: usize = 4;

/// Pause after `accept()` fails (for instance, out of file descriptors) so the loop does not spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// State shared by all connection threads.
pub struct Shared {
    pub config: Config,
    pub log: EventLog,
    pub fanout: Fanout,
    /// When the server started; ticks are timed from it.
    pub started: Instant,
    /// Open `/events` streams: the `clients` in `/send`'s answer, and what the cap limits.
    pub clients: AtomicUsize,
    /// Connection threads alive, streams or not.
    connections: AtomicUsize,
    /// Numbers connections, for thread names.
    next_conn_id: AtomicU64,
}

impl Shared {
    /// Broadcasts `message` to every `/events` client and returns its id: appended to the log
    /// once, then announced to whoever writes it to the sockets.
    pub fn broadcast(&self, message: &str) -> u64 {
        let id = self.log.publish(message);
        self.fanout.announce(id);
        id
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `config.host:config.port` (port 0 picks a free port) and starts the broadcast writers.
    ///
    /// # Errors
    /// The address cannot be resolved, or is in use, or binding is not allowed.
    pub fn bind(config: Config) -> io::Result<Server> {
        let addr = (config.host.as_str(), config.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host has no address"))?;
        let listener = TcpListener::bind(addr)?;
        let shared = Arc::new(Shared {
            fanout: Fanout::new(config.broadcast_writers),
            started: Instant::now(),
            config,
            log: EventLog::new(),
            clients: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
        });
        for index in 0..shared.config.broadcast_writers {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("writer-{index}"))
                .spawn(move || shared.fanout.run_writer(index, &shared.log))?;
        }
        Ok(Server { listener, shared })
    }

    /// The address actually bound (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `http://HOST:PORT/` for the startup line: the host as configured, the port as bound (the
    /// real one when port 0 was asked for). An IPv6 address goes in brackets, as in a URL.
    pub fn url(&self) -> String {
        let host = &self.shared.config.host;
        let port = self.local_addr().port();
        if host.contains(':') {
            format!("http://[{host}]:{port}/")
        } else {
            format!("http://{host}:{port}/")
        }
    }

    /// The state the threads share (tests read the client count from it).
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Runs the accept loop on a background thread (for tests and examples).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn(self) -> io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("accept".to_string())
            .spawn(move || self.run())
    }

    /// The accept loop: takes each new connection and gives it a thread. Never returns.
    pub fn run(self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.serve(stream, peer),
                // A connection that was reset while waiting in the queue: just take the next.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of file descriptors or memory: the connection stays queued; wait a moment
                // instead of spinning on the same error, and keep serving everyone else.
                Err(e) => {
                    eprintln!("accept failed: {e}; pausing {ACCEPT_BACKOFF:?}");
                    thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }

    /// Starts a thread for one connection, or turns it away with 503 if no thread can be had.
    fn serve(&self, stream: TcpStream, peer: SocketAddr) {
        let guard = ConnectionGuard::enter(&self.shared);
        let limit = self
            .shared
            .config
            .max_clients
            .saturating_add(SPARE_CONNECTIONS);
        if guard.count > limit {
            return turn_away(&stream, peer, "too many connections");
        }
        let conn_id = self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        // The stream is shared with the thread so that, if the thread cannot start, this loop
        // still holds it and can answer 503.
        let stream = Arc::new(stream);
        let for_thread = Arc::clone(&stream);
        let spawned = thread::Builder::new()
            .name(format!("conn-{conn_id}"))
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || {
                routes::handle_connection(&for_thread, peer, &guard.shared);
            });
        // `Builder::spawn` returns an error (where `thread::spawn` would panic) when the system
        // has no thread left to give.
        if let Err(e) = spawned {
            turn_away(&stream, peer, &format!("cannot start a thread: {e}"));
        }
    }
}

/// Warnings about settings this machine cannot honour: more threads than `vm.max_map_count`
/// allows, or more connections than the open-file limit (`ulimit -n`). Linux only; elsewhere none.
pub fn capacity_warnings(config: &Config) -> Vec<String> {
    let connections = config.max_clients.saturating_add(SPARE_CONNECTIONS);
    let mut warnings = Vec::new();
    let max_maps = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok();
    if let Some(max_maps) = max_maps.and_then(|v| v.trim().parse::<usize>().ok()) {
        let threads = max_maps / MAPS_PER_THREAD;
        if connections > threads {
            warnings.push(format!(
                "--max-clients {} allows {connections} threads, but vm.max_map_count {max_maps} \
                 allows about {threads}: lower --max-clients or raise the sysctl",
                config.max_clients
            ));
        }
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    if let Some(open_files) = open_files.filter(|&n| n < connections) {
        warnings.push(format!(
            "ulimit -n is {open_files}: beyond about that many connections accept() fails \
             (logged and survived); run `ulimit -n {}` first to hold {} clients",
            connections + 64,
            config.max_clients
        ));
    }
    warnings
}

/// Answers 503 without a thread of its own: the socket is switched to non-blocking so the accept
/// loop never waits on this client; a short response fits in the socket's send buffer.
fn turn_away(stream: &TcpStream, peer: SocketAddr, why: &str) {
    let busy = routes::service_unavailable("server busy, try again later");
    routes::log_error(peer, None, busy.status, why);
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write_all(&busy.to_bytes(true));
}

/// Counts a connection while it lives; dropping it (when the thread ends) uncounts it.
struct ConnectionGuard {
    shared: Arc<Shared>,
    /// The number of connections, this one included, when it was counted.
    count: usize,
}

impl ConnectionGuard {
    fn enter(shared: &Arc<Shared>) -> ConnectionGuard {
        let count = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
        ConnectionGuard {
            shared: Arc::clone(shared),
            count,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
