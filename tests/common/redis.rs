//! A real `redis-server` for the tests: on a free loopback port, in a scratch directory, with
//! nothing saved to disk unless a test stops it with [`Redis::stop`] (`SHUTDOWN SAVE`), which
//! [`Redis::launch`] then loads back, as a Redis with persistence would.
//!
//! Without `redis-server` a test prints "skipped" and passes, except under CI (`CI=true`), where
//! it fails: CI installs it. `REDIS_SERVER=/nowhere cargo test --test redis` shows the skip; a
//! path there also picks the binary to use.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sse_server::redis::resp::{Connection, Reply, Url};

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
