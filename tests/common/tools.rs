//! What the tests that run other programs share: finding a tool, a free loopback port, a
//! scratch directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `$NAME` if set (upper case, `-` as `_`: `$REDIS_SERVER` for `redis-server`), else
/// [`find_on_path`]. A `$NAME` that is not an executable file gives None, so that
/// `NGINX=/nowhere` shows a test's skip.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    match std::env::var_os(name.to_uppercase().replace('-', "_")) {
        Some(path) => Some(PathBuf::from(path)).filter(|p| is_executable(p)),
        None => find_on_path(name),
    }
}

/// Each of `names`, found with `find` ([`find_tool`], or [`find_on_path`] where a script will
/// look them up itself); None, after printing which are missing, when any is: the test is
/// skipped, and passes. Panics under `CI=true`, where a missing tool fails: CI installs them.
pub fn tools_or_skip<const N: usize>(
    names: [&str; N],
    find: impl Fn(&str) -> Option<PathBuf>,
) -> Option<[PathBuf; N]> {
    let found = names.map(find);
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Some(found.map(Option::unwrap));
    }
    let missing = missing.join(", ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing} not installed: .ci/run must install it");
    }
    eprintln!("skipped: {missing} not installed (CI installs it)");
    None
}

/// The first `name` on `PATH`, then in the sbin directories (Debian puts redis-server and nginx
/// in /usr/sbin or /usr/bin; sbin is not on an ordinary user's `PATH`).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A loopback port that was free a moment ago (bind port 0, read it, let it go).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().unwrap().port()
}

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sse-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the scratch directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
