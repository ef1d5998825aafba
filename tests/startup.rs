//! The binary as a user starts it: settings, `--help`, the startup line, surviving `accept()` errors.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{get, server_command, startup_url, without_server_env, BIN, PROMPTLY};

/// A server process, killed when dropped.
struct Running {
    child: Child,
    url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and reads the first line it prints, which must carry the address.
fn start(mut command: Command) -> Running {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server binary");
    let url = startup_url(&mut child);
    Running { child, url }
}

#[test]
fn startup_line_has_the_url_with_the_real_port() {
    let server = start(server_command());
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(server.url.ends_with('/'), "{}", server.url);
    assert!(
        !server.url.ends_with(":0/"),
        "the bound port, not 0: {}",
        server.url
    );
    assert_eq!(get(&server.url).0, 200);
}

/// Starts `command` and returns the lines it prints on stdout within a moment of the first:
/// the startup line and whatever follows it at once. Nothing is sent to any address printed.
fn startup_lines(mut command: Command) -> (Running, Vec<String>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first: String = lines.recv_timeout(PROMPTLY).expect("a startup line");
    let url = first[first.find("http://").expect("an address")..].to_string();
    let mut printed = vec![first];
    // The classroom lines are printed right after it, before the stdout flush.
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
        printed.push(line);
    }
    (Running { child, url }, printed)
}

#[test]
fn wildcard_host_prints_one_line_per_address_other_machines_can_use() {
    let mut command = server_command();
    command.args(["--host", "0.0.0.0"]);
    let (server, printed) = startup_lines(command);
    assert!(
        printed[0].contains("http://0.0.0.0:"),
        "the startup line names the host as given: {printed:?}"
    );
    let port: u16 = server
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    // What this machine's /proc lists now (classroom/interfaces.rs, unit-tested on sample text).
    let expected = sse_server::classroom::interfaces::classroom_lines("0.0.0.0", port);
    assert_eq!(printed[1..], expected[..], "{printed:?}");
    for line in &printed[1..] {
        let url = line
            .strip_prefix("  from another machine: http://")
            .unwrap_or_else(|| panic!("{line:?}"));
        assert!(url.ends_with(&format!(":{port}/")), "{line:?}");
        assert!(
            !url.starts_with("127.") && !url.starts_with("169.254."),
            "{line:?}"
        );
    }
    if expected.is_empty() {
        eprintln!("this machine has no address but loopback: no classroom line to see");
    }
}

#[test]
fn a_loopback_host_prints_the_startup_line_only() {
    let (_server, printed) = startup_lines(server_command());
    assert_eq!(printed.len(), 1, "{printed:?}");
}

#[test]
fn help_shows_the_classroom_command() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("--host 0.0.0.0") && text.contains("classroom"),
        "{text}"
    );
}

#[test]
fn flags_win_over_environment_variables() {
    // PORT=1 would fail (a privileged port); --port 0 overrides it.
    let mut command = server_command();
    command
        .env("PORT", "1")
        .args(["--port", "0", "--interval-ms", "20"]);
    let server = start(command);
    assert_eq!(get(&server.url).0, 200);
}

#[test]
fn host_from_the_environment_is_where_it_listens() {
    let (server, _) = start_with_env(&[("HOST", "localhost")]);
    assert!(
        server.url.starts_with("http://localhost:"),
        "{}",
        server.url
    );
    assert_eq!(get(&server.url).0, 200);
}

/// The address part of a `http://HOST:PORT/` url.
fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Threads of a running process, from `/proc`.
fn threads_of(child: &Child) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .map(|tasks| tasks.count())
        .unwrap_or(0)
}

/// The server binary started with extra environment `vars`, and its address.
fn start_with_env(vars: &[(&str, &str)]) -> (Running, std::net::SocketAddr) {
    let mut command = server_command();
    command.envs(vars.iter().copied());
    let server = start(command);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr_of(&server.url))
        .unwrap()
        .next()
        .unwrap();
    (server, addr)
}

#[test]
fn max_clients_from_the_environment_caps_the_streams() {
    let (_server, addr) = start_with_env(&[("MAX_CLIENTS", "1")]);
    let first = common::EventStream::open(addr, &[]);
    assert_eq!(first.status(), 200);
    let second = common::EventStream::open(addr, &[]);
    assert_eq!(second.status(), 503);
}

#[test]
fn a_closed_stream_s_thread_ends() {
    let (server, addr) = start_with_env(&[("INTERVAL_MS", "20")]);
    let idle = threads_of(&server.child);
    let events = common::EventStream::open(addr, &[]);
    assert_eq!(events.status(), 200);
    assert_eq!(
        threads_of(&server.child),
        idle + 1,
        "one thread for the stream"
    );
    drop(events);
    let deadline = std::time::Instant::now() + PROMPTLY;
    while threads_of(&server.child) > idle {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream's thread ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for flag in sse_server::config::flags() {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn a_bad_flag_exits_2_with_its_error_and_one_line_pointing_at_help() {
    for args in [
        &["--nope"][..],
        &["--port", "http"],
        &["--allowed-host", "a.test:80"],
    ] {
        let output = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(args[0]),
            "{stderr}"
        );
        assert!(lines[1].contains("--help"), "{stderr}");
    }
}

#[test]
fn a_port_in_use_is_named_with_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = server_command()
        .args(["--port", &port])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(
        stderr.contains("--port 0") && stderr.contains("PORT="),
        "{stderr}"
    );
}

#[test]
fn accept_failing_for_lack_of_file_descriptors_is_survived() {
    // Run the server with very few file descriptors, open more connections than it can take,
    // then let them go: it must still be alive and serving.
    let mut command = Command::new("sh");
    without_server_env(&mut command)
        .args(["-c", &format!("ulimit -n 24 && exec {BIN}")])
        .env("PORT", "0")
        .env("INTERVAL_MS", "60000");
    let mut server = start(command);
    let addr = addr_of(&server.url);
    let held: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(held.len() > 24, "more connections than descriptors");
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
    drop(held);
    // Once descriptors are free again, it serves. (Until the threads of the dropped connections
    // have ended, the connection cap, fitted to 24 descriptors, may still answer 503.)
    let deadline = std::time::Instant::now() + PROMPTLY;
    loop {
        let agent = common::agent();
        let status = agent
            .get(&server.url)
            .call()
            .map(|r| r.status().as_u16())
            .ok();
        if status == Some(200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serves again (last answer: {status:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
