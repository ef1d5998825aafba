//! WebSocket (RFC 6455), client side, only what the browser drivers need: Chromium's DevTools
//! protocol (`cdp.rs`) and Firefox's WebDriver BiDi (`bidi.rs`) both send JSON text messages
//! over one.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long the handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// SSE and WebSocket side by side. Both start as an HTTP/1.1 request and then keep the
// connection open to carry messages, but:
//
// |                 | SSE (`/events`)                    | WebSocket                          |
// |-----------------|------------------------------------|------------------------------------|
// | handshake       | plain GET, `200 text/event-stream` | GET with `Upgrade: websocket`,     |
// |                 |                                    | `101 Switching Protocols`          |
// | direction       | server to client only              | both ways                          |
// | framing         | text lines; a blank line ends a    | binary header per frame: opcode,   |
// |                 | frame, so data may not contain a   | length up front (7, 16 or 64 bit), |
// |                 | line break (split into `data:`s)   | so the payload can hold anything   |
// | client → server | a separate request (POST /send)    | frames masked with a random key    |
// | reconnect       | built in: `retry:`, `id:`,         | none: the application does it      |
// |                 | `Last-Event-ID`                    |                                    |
// | payload         | UTF-8 text                         | text (UTF-8) or binary             |
//
// The message "hi", server to client:
//
//   SSE        `d a t a : ␠ h i \n \n`   10 bytes of text, readable as it is
//   WebSocket  `0x81 0x02 h i`           FIN + opcode 1 (text), length 2, the payload
//
// and client to server, WebSocket only: `0x81 0x82 k1 k2 k3 k4 h^k1 i^k2` (MASK bit, key, payload
// XORed with the key).
// ---------------------------------------------------------------------------------------------

/// Appended to the client's key before hashing it, the same for every WebSocket (RFC 6455 §1.3).
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcodes: the low 4 bits of a frame's first byte.
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

pub struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    /// Connects to `ws://host:port/path` and performs the opening handshake.
    pub fn connect(url: &str) -> io::Result<WebSocket> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or(io::Error::other("not ws://"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(HANDSHAKE))?;

        // The key is 16 random bytes, base64; the server proves it speaks WebSocket by hashing it.
        let key = base64_encode(&random_bytes::<16>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes())?;

        // Read the response head byte by byte, so no frame byte after it is swallowed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_string())
        });
        let expected = base64_encode(&sha1(format!("{key}{WS_GUID}").as_bytes()));
        if !head.starts_with("HTTP/1.1 101") || accept != Some(expected) {
            return Err(io::Error::other(format!("not a WebSocket answer: {head}")));
        }
        Ok(WebSocket { stream })
    }

    /// Sends one text message as one frame: FIN + opcode, MASK bit + length, mask key, payload.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(OP_TEXT, text.as_bytes())
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        // FIN (0x80): this frame is the whole message.
        let mut frame = vec![0x80 | opcode];
        // Client frames set the MASK bit (0x80). Lengths up to 125 fit in 7 bits; 126 means
        // "a 16-bit length follows", 127 "a 64-bit length follows" (big-endian).
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // Every byte is XORed with the 4-byte key, cycling. (It stops a page's script from
        // writing bytes that a proxy could mistake for an HTTP request; not for secrecy.)
        let mask = random_bytes::<4>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)
    }

    /// Reads the next complete text message, joining continuation frames and answering pings.
    pub fn read_text(&mut self, deadline: Instant) -> String {
        let mut message = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no answer over the WebSocket in time");
            self.stream.set_read_timeout(Some(left)).unwrap();
            let (fin, opcode, payload) = self.read_frame();
            match opcode {
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("UTF-8 text");
                    }
                }
                OP_PING => self.send_frame(OP_PONG, &payload).expect("answer a ping"),
                OP_PONG => {}
                OP_CLOSE => panic!("the browser closed the WebSocket"),
                other => panic!("unknown WebSocket opcode {other}"),
            }
        }
    }

    /// One frame: (FIN bit, opcode, payload).
    fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let mut header = [0u8; 2];
        self.read(&mut header);
        let fin = header[0] & 0x80 != 0;
        let opcode = header[0] & 0x0F;
        let masked = header[1] & 0x80 != 0; // servers never mask; handled anyway
        let len = match header[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                self.read(&mut n);
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.read(&mut n);
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            self.read(&mut mask);
        }
        let mut payload = vec![0u8; usize::try_from(len).expect("a frame that fits in memory")];
        self.read(&mut payload);
        if masked {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= mask[i % 4]);
        }
        (fin, opcode, payload)
    }

    fn read(&mut self, buf: &mut [u8]) {
        self.stream
            .read_exact(buf)
            .unwrap_or_else(|err| panic!("reading from the WebSocket: {err}"));
    }
}
/// Waits up to `within` for the browser `child` to print on stderr the line that says where its
/// remote protocol listens (`… listening on ws://127.0.0.1:PORT…`), and returns what follows
/// `marker` on it. A thread reads stderr to its end, so a full pipe never blocks the browser.
///
/// # Panics
/// No such line within `within`; the message holds what the browser printed.
pub fn listening_address(
    child: &mut std::process::Child,
    marker: &str,
    within: Duration,
) -> String {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("the browser's stderr is piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => match line.split(marker).nth(1) {
                Some(address) => return address.trim().to_string(),
                None => seen.push(line),
            },
            Err(_) => panic!(
                "no \"{marker}\" line within {within:?}; the browser's stderr:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Bytes that differ on every call: enough for a WebSocket key and mask (not cryptography).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        // Each RandomState is seeded differently, so its hash of nothing is a fresh number.
        let n = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        chunk.copy_from_slice(&n.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// SHA-1 (FIPS 180-4), only for the handshake's `Sec-WebSocket-Accept` check.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    // Padding: a 1 bit, zeros up to 56 bytes mod 64, then the length in bits (64-bit big-endian).
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (hi, x) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(x);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding: every 3 bytes become 4 characters of 6 bits each.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The reverse, for the screenshot (padding and anything outside the alphabet are skipped).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let sextets: Vec<u32> = text
        .bytes()
        .filter_map(|c| BASE64.iter().position(|&b| b == c).map(|p| p as u32))
        .collect();
    let mut out = Vec::new();
    for chunk in sextets.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &s)| n | s << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
