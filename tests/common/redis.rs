//! A real `redis-server` for the tests: on a free loopback port, in a scratch directory, with
//! nothing saved to disk unless a test stops it with [`Redis::stop`] (`SHUTDOWN SAVE`), which
//! [`Redis::launch`] then loads back, as a Redis with persistence would; [`Redis::restart_empty`]
//! is a Redis without persistence coming back. And [`LossyProxy`], which stands between an
//! instance and Redis and loses replies on purpose.
//!
//! Without `redis-server` a test prints "skipped" and passes, except under CI (`CI=true`), where
//! it fails: CI installs it. `REDIS_SERVER=/nowhere cargo test --test redis` shows the skip; a
//! path there also picks the binary to use.

use std::collections::VecDeque;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sse_server::redis::resp::{self, Connection, Error, Reply, Url};

use super::tools::{find_tool, free_port, tools_or_skip, TempDir};
use super::PROMPTLY;

/// `$REDIS_SERVER` if set, else `redis-server` on `PATH` or in the sbin directories; None after
/// printing why the test is skipped. Panics under `CI=true`.
pub fn redis_server() -> Option<PathBuf> {
    let [redis_server] = tools_or_skip(["redis-server"], find_tool)?;
    Some(redis_server)
}

/// redis-server on a free loopback port, killed on drop.
pub struct Redis {
    binary: PathBuf,
    pub port: u16,
    child: Option<Child>,
    // Declared last: removed after `Drop::drop` has stopped redis-server.
    pub dir: TempDir,
}

impl Redis {
    /// A fresh redis-server, or None when the test is skipped.
    pub fn start() -> Option<Redis> {
        let mut redis = Redis {
            binary: redis_server()?,
            port: free_port(),
            child: None,
            dir: TempDir::new(),
        };
        redis.launch();
        Some(redis)
    }

    /// Starts redis-server on our port and directory (again, after `stop`), and waits until it
    /// answers PING.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::File::create(self.dir.0.join("stdout.log")).unwrap();
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            // No snapshots and no append-only file: nothing written unless a test asks.
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + PROMPTLY;
        // Connected is not enough: while loading its data Redis answers -LOADING.
        while !self.answers_ping() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not answering:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let url = Url::parse(&self.url()).unwrap();
        Connection::connect(&url, Duration::from_secs(1))
            .and_then(|mut c| c.call(&[b"PING"]))
            .is_ok_and(|reply| reply == Reply::Simple("PONG".into()))
    }

    /// Stops redis-server after saving its data to the directory, as a Redis with persistence
    /// would on shutdown: `launch` then loads it back.
    pub fn stop(&mut self) {
        let url = Url::parse(&self.url()).unwrap();
        let mut redis = Connection::connect(&url, PROMPTLY).expect("connect to stop it");
        // On success Redis exits without a reply: the connection just closes.
        let _ = redis.call(&[b"SHUTDOWN", b"SAVE"]);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PROMPTLY;
        while matches!(child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops redis-server without saving and starts it again with nothing: what a Redis without
    /// persistence (the cluster recipe's) does when it restarts.
    pub fn restart_empty(&mut self) {
        let url = Url::parse(&self.url()).unwrap();
        let mut redis = Connection::connect(&url, PROMPTLY).expect("connect to stop it");
        let _ = redis.call(&[b"SHUTDOWN", b"NOSAVE"]);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PROMPTLY;
        while matches!(child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            thread::sleep(Duration::from_millis(10));
        }
        // Whatever an earlier `stop` saved would be loaded back.
        let _ = fs::remove_file(self.dir.0.join("dump.rdb"));
        self.launch();
    }

    /// The value of a plain key in database 0 (None if it does not exist).
    pub fn get(&self, key: &str) -> Option<String> {
        match self.connection(0).call(&[b"GET", key.as_bytes()]).unwrap() {
            Reply::Bulk(Some(value)) => Some(String::from_utf8(value).unwrap()),
            _ => None,
        }
    }

    /// How many entries the stream `key` holds (`XLEN`).
    pub fn stream_len(&self, key: &str) -> i64 {
        match self.connection(0).call(&[b"XLEN", key.as_bytes()]).unwrap() {
            Reply::Integer(n) => n,
            other => panic!("XLEN answered {other:?}"),
        }
    }

    /// Waits (bounded by `within`) until `key` holds `value`; panics if it never does.
    pub fn wait_for_value(&self, key: &str, value: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.get(key);
            if now.as_deref() == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} is {now:?} after {within:?}, expected {value}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection, for looking at the keys directly.
    pub fn connection(&self, db: u32) -> Connection {
        let url = Url::parse(&format!("{}/{db}", self.url())).unwrap();
        Connection::connect(&url, PROMPTLY).unwrap()
    }

    /// What redis-server logged, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.0.join("stdout.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A proxy that loses replies

/// What [`LossyProxy`] does with a publish (an `EVAL` of the script that adds an entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Passes it to Redis and the reply back, as a plain relay.
    Forward,
    /// Runs it on Redis, then closes the connection instead of passing the reply on: the
    /// broadcast landed, and the instance cannot know.
    RunThenDrop,
    /// Closes the connection without passing it on: it never ran, and the instance cannot know.
    DropBefore,
}

/// A Redis for one instance that is the real one behind a relay: every command goes through to
/// `redis`, except that the publishes meet their [`Fate`] in turn (then `otherwise`).
pub struct LossyProxy {
    /// `redis://127.0.0.1:<the proxy's port>`: give it to the instance.
    pub url: String,
    /// Publishes that reached the proxy, first tries and retries alike.
    pub publishes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl LossyProxy {
    pub fn start(redis: &Redis, fates: &[Fate], otherwise: Fate) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = LossyProxy {
            url: format!("redis://{}", listener.local_addr().unwrap()),
            publishes: Arc::default(),
            stop: Arc::default(),
        };
        let upstream = Url::parse(&redis.url()).unwrap();
        let fates = Arc::new(Mutex::new(fates.iter().copied().collect::<VecDeque<_>>()));
        let (publishes, stop) = (Arc::clone(&proxy.publishes), Arc::clone(&proxy.stop));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (upstream, fates, publishes) =
                    (upstream.clone(), Arc::clone(&fates), Arc::clone(&publishes));
                thread::spawn(move || {
                    let fate = || fates.lock().unwrap().pop_front().unwrap_or(otherwise);
                    relay(client, &upstream, &publishes, fate);
                });
            }
        });
        proxy
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.url.trim_start_matches("redis://"));
    }
}

/// Serves one client of the proxy: reads each command, runs it on a connection of its own to
/// Redis, and writes the reply back, or not, as the publish's fate says.
fn relay(
    mut client: TcpStream,
    upstream: &Url,
    publishes: &AtomicUsize,
    mut fate: impl FnMut() -> Fate,
) {
    // A client quiet this long has gone (XREAD BLOCK waits 2 s at most).
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut redis) = Connection::connect(upstream, PROMPTLY) else {
        return; // the client sees its connection close
    };
    let mut unread = Vec::new();
    loop {
        // Quiet past the read timeout: gone.
        let Some(command) = read_command(&mut client, &mut unread, || true) else {
            return;
        };
        let Reply::Array(Some(items)) = command else {
            return;
        };
        let args: Vec<Vec<u8>> = items
            .into_iter()
            .filter_map(|item| match item {
                Reply::Bulk(Some(arg)) => Some(arg),
                _ => None,
            })
            .collect();
        let is_publish = args.len() > 2
            && args[0].eq_ignore_ascii_case(b"EVAL")
            && args[1].windows(4).any(|w| w == b"XADD");
        let fate = if is_publish {
            publishes.fetch_add(1, Ordering::SeqCst);
            fate()
        } else {
            Fate::Forward
        };
        if fate == Fate::DropBefore {
            return;
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        // Room for XREAD BLOCK's wait.
        let reply = match redis.call_waiting(&args, PROMPTLY) {
            Ok(reply) => encode_reply(&reply),
            Err(Error::Server(text)) => format!("-{text}\r\n").into_bytes(),
            Err(_) => return,
        };
        if fate == Fate::RunThenDrop || client.write_all(&reply).is_err() {
            return;
        }
    }
}

/// A reply as Redis writes it (the inverse of `resp::parse`).
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Simple(text) => format!("+{text}\r\n").into_bytes(),
        Reply::Error(text) => format!("-{text}\r\n").into_bytes(),
        Reply::Integer(n) => format!(":{n}\r\n").into_bytes(),
        Reply::Bulk(None) => b"$-1\r\n".to_vec(),
        Reply::Bulk(Some(data)) => {
            let mut out = format!("${}\r\n", data.len()).into_bytes();
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            out
        }
        Reply::Array(None) => b"*-1\r\n".to_vec(),
        Reply::Array(Some(items)) => {
            let mut out = format!("*{}\r\n", items.len()).into_bytes();
            for item in items {
                out.extend(encode_reply(item));
            }
            out
        }
    }
}

/// Reads the next command a client sends to a fake or a proxy of Redis: an array of bulk
/// strings, which `resp::parse` reads like any reply. What follows it stays in `unread`. `None`
/// when the client closed or sent something else, or when a read timed out and `give_up` says so.
pub fn read_command(
    client: &mut TcpStream,
    unread: &mut Vec<u8>,
    mut give_up: impl FnMut() -> bool,
) -> Option<Reply> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match resp::parse(unread) {
            Ok(Some((command, used))) => {
                unread.drain(..used);
                return Some(command);
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        match client.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => unread.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if give_up() {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}
