//! The listening socket and the accept loop: one thread per connection.
//!
//! Node's `http.createServer(handler).listen(port)` hides an event loop: one thread runs every
//! handler, each in turn. Here every connection gets its own thread, which reads the request and,
//! for `/events`, stays to write the stream: a blocked thread blocks only its own client, and the
//! code reads top to bottom like the Node handler. The price is a thread per open stream, which
//! is why the number of streams is capped.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::config::Config;
use crate::http;
use crate::hub::Hub;
use crate::routes::{self, Refusal};
use crate::sync::lock;
use crate::wire;

/// Stack size of each connection thread. Rust's default is 2 MiB of address space; a connection
/// needs a few KiB, and only the pages it touches use memory.
pub const THREAD_STACK_BYTES: usize = 64 * 1024;

/// Pause after `accept()` fails (for instance, out of file descriptors) so the loop does not spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long [`ServerHandle::shutdown`] waits for connection threads to end.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// A bound server, not yet accepting.
pub struct Server {
    listener: TcpListener,
    config: Arc<Config>,
    hub: Arc<Hub>,
    /// Connection threads alive, streams or not.
    connections: Arc<Connections>,
    /// Set by [`ServerHandle::shutdown`]: the accept loop returns.
    stopping: Arc<AtomicBool>,
}

impl Server {
    /// Binds `config.host:config.port` (port 0 picks a free port) and starts the hub.
    ///
    /// # Errors
    /// The address cannot be resolved, or is in use, or binding is not allowed ("cannot listen
    /// on ..."); Redis cannot be reached (the message names its URL); a thread could not start.
    pub fn bind(config: Config) -> io::Result<Server> {
        let (host, port) = (config.host.as_str(), config.port);
        let cannot_listen =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}"));
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(cannot_listen)?
            .next()
            .ok_or_else(|| cannot_listen(io::ErrorKind::InvalidInput.into()))?;
        let listener = TcpListener::bind(addr).map_err(cannot_listen)?;
        Ok(Server {
            listener,
            hub: Hub::start(&config)?,
            config: Arc::new(config),
            connections: Arc::default(),
            stopping: Arc::default(),
        })
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
        let authority = wire::host_port(&self.config.host, self.local_addr().port());
        format!("http://{authority}/")
    }

    /// The hub (tests read the client count from it and broadcast through it).
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.hub)
    }

    /// Runs the accept loop on a background thread; the handle stops it (tests, the load test).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let (addr, hub) = (self.local_addr(), self.hub());
        let connections = Arc::clone(&self.connections);
        let stopping = Arc::clone(&self.stopping);
        let accept = thread::Builder::new()
            .name("accept".to_string())
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            addr,
            hub,
            connections,
            stopping,
            accept: Some(accept),
        })
    }

    /// The accept loop: takes each new connection and gives it a thread. Returns only after a
    /// [`ServerHandle::shutdown`]; `cargo run` stops with Ctrl-C instead, which ends the process.
    pub fn run(self) {
        while !self.stopping.load(Ordering::Acquire) {
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
        let guard = ConnectionGuard::enter(&self.connections);
        if guard.count > self.config.max_connections() {
            return turn_away(&stream, peer, &Refusal::TooManyConnections);
        }
        static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);
        let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        // The stream is shared with the thread so that, if the thread cannot start, this loop
        // still holds it and can answer 503.
        let stream = Arc::new(stream);
        let for_thread = Arc::clone(&stream);
        let (config, hub) = (Arc::clone(&self.config), Arc::clone(&self.hub));
        let spawned = thread::Builder::new()
            .name(format!("conn-{conn_id}"))
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || {
                let _guard = guard;
                match set_up_socket(&for_thread, &config) {
                    Ok(()) => routes::handle_connection(&for_thread, peer, &config, &hub),
                    // Served without its write timeout, a client could hold a write forever.
                    Err(e) => eprintln!("{peer}: cannot set up the socket ({e}); closed"),
                }
            });
        // `Builder::spawn` returns an error (where `thread::spawn` would panic) when the system
        // has no thread left to give.
        if let Err(e) = spawned {
            turn_away(&stream, peer, &Refusal::NoThread(e.to_string()));
        }
    }
}

/// The socket rules for every connection, in one place:
///
/// - **No write to a client waits longer than the write timeout.** A client that stops reading
///   fills its socket's buffer, and then a blocking write waits; with this timeout it fails
///   instead, and the client is dropped. (The fast fan-out makes the socket non-blocking for its
///   writer threads, which never wait at all; when the client's own thread takes over, it writes
///   in blocking mode under this same timeout: see `fanout/writers.rs`.)
/// - **Every frame leaves at once.** Nagle's algorithm would hold a small write back while an
///   earlier packet waits for its ACK; `nodelay` turns it off.
/// - Reads get their timeout from the request's deadline (`http.rs`).
///
/// # Errors
/// The write timeout cannot be set: the connection is not served. (Without `nodelay` frames
/// only leave a little later, so that one may fail.)
fn set_up_socket(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_write_timeout(Some(config.write_timeout))?;
    let _ = stream.set_nodelay(true);
    Ok(())
}

/// Stops a running server: see [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    hub: Arc<Hub>,
    connections: Arc<Connections>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running server's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops accepting, ends every stream, joins the hub's threads, and waits (at most
    /// [`SHUTDOWN_WAIT`]) for the connection threads to end. Also done on drop.
    ///
    /// Returns whether it drained: every stream closed, every thread joined, no connection left.
    /// (A connection still sending its request holds on until its deadline, `head_timeout`.)
    pub fn shutdown(&mut self) -> bool {
        let Some(accept) = self.accept.take() else {
            return self.connections.count() == 0 && self.hub.clients() == 0;
        };
        self.stopping.store(true, Ordering::Release);
        // `accept()` blocks; one connection of our own wakes it to see the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let _ = TcpStream::connect_timeout(&wake, SHUTDOWN_WAIT);
        let accepted = accept.join().is_ok();
        let joined = self.hub.shutdown();
        let connections_ended = self.connections.wait_for_none(SHUTDOWN_WAIT);
        accepted && joined && connections_ended && self.hub.clients() == 0
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers 503 without a thread of its own: the socket is switched to non-blocking so the accept
/// loop never waits on this client; a short response fits in the socket's send buffer.
fn turn_away(stream: &TcpStream, peer: SocketAddr, why: &Refusal) {
    if let Some(response) = why.response() {
        let bytes = http::logged_error(peer, None, &response);
        let _ = stream.set_nonblocking(true);
        let _ = (&*stream).write_all(&bytes);
    }
}

/// The count of connection threads alive, which a shutdown waits to see reach 0.
#[derive(Default)]
struct Connections {
    count: Mutex<usize>,
    /// Notified when the count reaches 0.
    none_left: Condvar,
}

impl Connections {
    fn count(&self) -> usize {
        *lock(&self.count)
    }

    /// Waits until no connection is left, for at most `limit`; returns whether none is.
    fn wait_for_none(&self, limit: Duration) -> bool {
        let count = lock(&self.count);
        let (count, _) = self
            .none_left
            .wait_timeout_while(count, limit, |count| *count > 0)
            .unwrap_or_else(|e| e.into_inner());
        *count == 0
    }
}

/// Counts a connection while it lives; dropping it (when the thread ends) uncounts it.
struct ConnectionGuard {
    connections: Arc<Connections>,
    /// The number of connections, this one included, when it was counted.
    count: usize,
}

impl ConnectionGuard {
    fn enter(connections: &Arc<Connections>) -> ConnectionGuard {
        let mut count = lock(&connections.count);
        *count += 1;
        ConnectionGuard {
            connections: Arc::clone(connections),
            count: *count,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut count = lock(&self.connections.count);
        *count -= 1;
        if *count == 0 {
            self.connections.none_left.notify_all();
        }
    }
}
