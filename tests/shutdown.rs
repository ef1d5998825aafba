//! `ServerHandle::shutdown` and `Hub::shutdown`: every stream ends, every thread is joined, and
//! the handle says it drained, in both fan-outs, even for streams that arrive while it runs.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{EventStream, PROMPTLY};
use sse_server::hub::{Hub, HubError};
use sse_server::{Config, Server};

/// The two fan-outs: each connection thread writes its own, or two writer threads do.
const FAN_OUTS: [usize; 2] = [0, 2];

fn config(writers: usize) -> Config {
    Config {
        port: 0,
        broadcast_writers: writers,
        ..Config::default()
    }
}

/// Waits (bounded) until `done` holds; panics with `what` if it never does.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROMPTLY;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {PROMPTLY:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn shutdown_ends_every_stream_and_says_it_drained() {
    for writers in FAN_OUTS {
        let mut handle = Server::bind(config(writers)).unwrap().spawn().unwrap();
        let hub = Arc::clone(handle.hub());
        let mut streams: Vec<_> = (0..3)
            .map(|_| EventStream::open(handle.addr(), &[]))
            .collect();
        wait_until("3 clients", || hub.clients() == 3);
        assert!(handle.shutdown(), "drained (writers {writers})");
        assert_eq!(hub.clients(), 0);
        for events in &mut streams {
            assert!(events.closed_within(PROMPTLY), "closed (writers {writers})");
        }
        assert!(
            handle.shutdown(),
            "a second shutdown has nothing left to do"
        );
    }
}

#[test]
fn after_shutdown_the_hub_takes_no_new_stream() {
    for writers in FAN_OUTS {
        let hub = Hub::start(&config(writers)).unwrap();
        assert!(hub.shutdown());
        assert_eq!(hub.subscribe(None).err(), Some(HubError::ShuttingDown));
    }
}

/// A connected pair of loopback sockets: (the server's side, the browser's side).
fn socket_pair() -> (Arc<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (near, _) = listener.accept().unwrap();
    near.set_write_timeout(Some(PROMPTLY)).unwrap();
    (Arc::new(near), far)
}

#[test]
fn a_stream_that_subscribes_while_the_hub_shuts_down_is_refused_or_closed_never_left_running() {
    for writers in FAN_OUTS {
        let hub = Hub::start(&config(writers)).unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        // Threads that subscribe again and again, each stream served until it ends, until the
        // hub refuses them: some are surely subscribing at the moment the shutdown comes.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (hub, served) = (Arc::clone(&hub), Arc::clone(&served));
                thread::spawn(move || loop {
                    let (near, _far) = socket_pair();
                    match hub.subscribe(None) {
                        Ok(mut subscription) => {
                            served.fetch_add(1, Ordering::AcqRel);
                            let Err(_) = subscription.run(&near);
                        }
                        Err(HubError::ShuttingDown) => return,
                        Err(other) => panic!("{other}"),
                    }
                    // A stream that ended before the shutdown (none should) is simply replaced.
                })
            })
            .collect();
        wait_until("streams being served", || {
            served.load(Ordering::Acquire) >= 4
        });
        assert!(hub.shutdown(), "its threads joined (writers {writers})");
        wait_until("every subscribing thread to end", || {
            threads.iter().all(|t| t.is_finished())
        });
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(hub.clients(), 0, "writers {writers}");
    }
}

#[test]
fn streams_that_connect_while_the_server_shuts_down_do_not_keep_it_from_draining() {
    for writers in FAN_OUTS {
        let mut handle = Server::bind(config(writers)).unwrap().spawn().unwrap();
        let (addr, hub) = (handle.addr(), Arc::clone(handle.hub()));
        // Clients that connect again and again until the server no longer answers.
        let clients: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(move || loop {
                    let Ok(mut stream) = TcpStream::connect(addr) else {
                        return;
                    };
                    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
                    let request = format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                    if stream.write_all(request.as_bytes()).is_err() {
                        return;
                    }
                    // Read to the end: a stream must end (the shutdown closes it), and a
                    // refusal or a reset ends it too.
                    let mut sink = Vec::new();
                    if let Err(e) = stream.read_to_end(&mut sink) {
                        let kind = e.kind();
                        assert_ne!(kind, std::io::ErrorKind::WouldBlock, "a stream left open");
                        assert_ne!(kind, std::io::ErrorKind::TimedOut, "a stream left open");
                    }
                })
            })
            .collect();
        wait_until("some streams", || hub.clients() > 0);
        assert!(handle.shutdown(), "drained (writers {writers})");
        assert_eq!(hub.clients(), 0);
        for client in clients {
            client.join().expect("every stream ended");
        }
    }
}
