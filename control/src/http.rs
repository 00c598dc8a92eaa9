//! A small HTTP/1.1 server for `/metrics` and `/status` on `[metrics]
//! listen`. One short request per connection, each on a thread of its own
//! with one overall deadline for reading the request and writing the
//! answer, so that idle, trickling or slow-reading clients cannot delay a
//! scrape nor a stop. A hand-written server rather than a crate: it serves
//! two fixed paths with `Connection: close`, and the bounds that matter here
//! (a connection limit, a deadline for the whole exchange, a stop that
//! shuts live sockets) are a few lines each.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::exporter::Exporter;

/// How many connections are served at once. Prometheus and an operator
/// need a handful; the bound keeps a flood from costing more than this many
/// threads (each with a small stack) and sockets. Connections beyond it are
/// closed at once, counted and logged (rarely).
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client has to send its request, from the accepted
/// connection, and to read the answer, from when it is ready: a client that
/// trickles its request or reads the answer slowly is cut off then. Well below Prometheus's default
/// 10 s scrape timeout, and far above what a real scrape needs.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long a stop waits for the connections' threads after shutting their
/// sockets; any still running then is left to end on its own.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// At most one log line per this long about refused connections.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

/// The stack of a connection's thread: the request is read into a small
/// buffer and the answer is rendered on the heap.
const CONNECTION_STACK: usize = 256 * 1024;

/// The largest request head read; more is answered without reading on.
const MAX_REQUEST: usize = 16 * 1024;

/// An answer: status line text, content type and body (shared: one
/// render may answer many requests, see [`Renders`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Arc<str>,
}

/// Renders made under one lock and shared by the requests that waited for
/// them: a request takes the last render of its kind if that render began
/// after the request arrived (it is as fresh as one of its own), else it
/// renders. So requests that queue behind a render cost one more render
/// between them, not one each (found in audit: at the limits, 65,536
/// reals, a render takes about a second, and 20 clients that sent
/// `GET /metrics` and never read queued 20 renders, which made the next
/// scrape wait past Prometheus's 10 s timeout). A render that another
/// answer still holds is taken too if it began at most [`REUSE_WITHIN`]
/// before the request (found in audit: clients that asked one after the
/// other, a render apart, and never read, each held a body of its own
/// until their deadline: at 8,192 reals, 256 of them held about 1 GB).
/// One that nobody holds any more is never taken: a scrape right after
/// another sees what changed.
pub struct Renders<T, const KINDS: usize> {
    inner: Mutex<(T, [Option<Rendered>; KINDS])>,
}

/// A render: when it began, and its body while some answer still holds it
/// (not longer: at the limits a body is tens of MB).
type Rendered = (Instant, Weak<str>);

/// How old a render still held by an answer may be and still answer a
/// request that arrived after it began (see [`Renders`]).
const REUSE_WITHIN: Duration = Duration::from_secs(1);

impl<T, const KINDS: usize> Renders<T, KINDS> {
    pub fn new(source: T) -> Self {
        Renders {
            inner: Mutex::new((source, std::array::from_fn(|_| None))),
        }
    }

    /// The body of kind `kind` for a request that arrived at `arrived`.
    pub fn get(
        &self,
        kind: usize,
        arrived: Instant,
        render: impl FnOnce(&mut T) -> String,
    ) -> Arc<str> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (source, last) = &mut *g;
        if let Some((began, body)) = &last[kind] {
            let fresh = *began >= arrived || arrived.duration_since(*began) <= REUSE_WITHIN;
            if let Some(body) = body.upgrade().filter(|_| fresh) {
                return body;
            }
        }
        let began = Instant::now();
        let body: Arc<str> = render(source).into();
        last[kind] = Some((began, Arc::downgrade(&body)));
        body
    }
}

/// What answers a request: given the method and the path (without query).
pub type Handler = dyn Fn(&str, &str) -> Response + Send + Sync;

/// The server's limits (the constants above, smaller in tests).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            deadline: REQUEST_DEADLINE,
        }
    }
}

/// The live connections, by number: a stop shuts their sockets so that
/// their threads end at once.
#[derive(Default)]
struct Live {
    conns: Mutex<HashMap<u64, TcpStream>>,
    /// Connections closed unserved (over the bound, or no thread or socket
    /// to serve them with).
    refused: Arc<AtomicU64>,
}

impl Live {
    fn conns(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Takes a connection out of the live set when its thread ends, however it
/// ends.
struct Registered {
    live: Arc<Live>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.live.conns().remove(&self.id);
    }
}

/// The running server; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    live: Arc<Live>,
    pub addr: SocketAddr,
}

impl Server {
    /// Binds `listen` and serves `/metrics` and `/status` from `exporter`.
    pub fn start(listen: SocketAddr, exporter: Exporter) -> std::io::Result<Server> {
        // Rendering is serialised: it is quick, and the port counters are
        // read by one thread at a time. Reading and writing are not.
        let refused = Arc::new(AtomicU64::new(0));
        let renders: Renders<Exporter, 2> =
            Renders::new(exporter.with_http_refused(Arc::clone(&refused)));
        let handler = move |method: &str, path: &str| {
            let arrived = Instant::now();
            match (method, path) {
                ("GET", "/metrics") => Response {
                    status: "200 OK",
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: renders.get(0, arrived, |e| e.metrics_text()),
                },
                ("GET", "/status") => Response {
                    status: "200 OK",
                    content_type: "application/json",
                    body: renders.get(1, arrived, |e| {
                        serde_json::to_string_pretty(&e.status()).unwrap_or_default()
                    }),
                },
                ("GET", _) => Response {
                    status: "404 Not Found",
                    content_type: "text/plain",
                    body: "try /metrics or /status\n".into(),
                },
                _ => Response {
                    status: "405 Method Not Allowed",
                    content_type: "text/plain",
                    body: "GET only\n".into(),
                },
            }
        };
        Server::serve_counting(listen, Arc::new(handler), Limits::default(), refused)
    }

    /// Binds `listen` and answers every request with `handler`, within
    /// `limits`.
    pub fn serve(
        listen: SocketAddr,
        handler: Arc<Handler>,
        limits: Limits,
    ) -> std::io::Result<Server> {
        Server::serve_counting(listen, handler, limits, Arc::default())
    }

    /// [`Server::serve`], counting the connections closed unserved in
    /// `refused`.
    fn serve_counting(
        listen: SocketAddr,
        handler: Arc<Handler>,
        limits: Limits,
        refused: Arc<AtomicU64>,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live {
            conns: Mutex::default(),
            refused,
        });
        let (s, l) = (Arc::clone(&stop), Arc::clone(&live));
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || accept_loop(&listener, &s, &l, &handler, limits))?;
        Ok(Server {
            stop,
            thread: Some(thread),
            live,
            addr,
        })
    }

    /// Connections closed unserved since the start.
    pub fn refused(&self) -> u64 {
        self.live.refused.load(Ordering::Relaxed)
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.live.conns().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // No connection is accepted any more: shut the live ones, whose
        // threads then fail their read or write at once and end.
        for conn in self.live.conns().values() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        let end = Instant::now() + STOP_GRACE;
        while !self.live.conns().is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.live.conns().len();
        if left > 0 {
            log::warn!("metrics: {left} connection thread(s) still running at stop, left behind");
        }
    }
}

/// Logs refused connections at most once per `REFUSED_LOG_EVERY`.
struct RefusedLog {
    last: Option<Instant>,
    logged: u64,
}

impl RefusedLog {
    fn note(&mut self, live: &Live, why: &str) {
        let total = live.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if self.last.is_some_and(|t| t.elapsed() < REFUSED_LOG_EVERY) {
            return;
        }
        log::warn!(
            "metrics: closed a connection unserved ({why}); {} since the last such message, {total} in all",
            total - self.logged
        );
        self.last = Some(Instant::now());
        self.logged = total;
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    live: &Arc<Live>,
    handler: &Arc<Handler>,
    limits: Limits,
) {
    let mut next_id = 0u64;
    let mut refused = RefusedLog {
        last: None,
        logged: 0,
    };
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                // Out of file descriptors, say: wait, and say so rarely.
                if last_error.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
                    log::warn!("metrics: accept: {e}");
                    last_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let started = Instant::now();
        if live.conns().len() >= limits.max_connections {
            refused.note(live, &format!("{} already open", limits.max_connections));
            continue; // dropped: closed at once
        }
        let Ok(kept) = conn.try_clone() else {
            refused.note(live, "no file descriptor to keep it by");
            continue;
        };
        next_id += 1;
        let id = next_id;
        live.conns().insert(id, kept);
        let registered = Registered {
            live: Arc::clone(live),
            id,
        };
        let handler = Arc::clone(handler);
        let spawned = std::thread::Builder::new()
            .name("metrics conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _registered = registered;
                let _ = serve(conn, &*handler, started + limits.deadline, limits.deadline);
            });
        if let Err(e) = spawned {
            // The closure (and with it the connection and its entry) is
            // dropped: the client sees the connection closed.
            refused.note(live, &format!("no thread to serve it: {e}"));
        }
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what}: deadline"))
}

/// What is left until `deadline`, or an error once it passed.
fn left(deadline: Instant, what: &str) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| timed_out(what))
}

fn serve(
    mut conn: TcpStream,
    handler: &Handler,
    deadline: Instant,
    answer_time: Duration,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Where the search for the end of the head goes on from: only what
    // came since (and the 3 bytes before it), so a request sent a byte at
    // a time costs linear time, not quadratic (found in review).
    let mut searched = 0;
    loop {
        // A head ends at an empty line; a bare LF ends a line too (RFC
        // 9112 2.2 lets a server take it; found in audit: `\n\n` got no
        // answer and waited out the deadline).
        let rest = &buf[searched..];
        if rest.windows(4).any(|w| w == b"\r\n\r\n")
            || rest.windows(2).any(|w| w == b"\n\n")
            || buf.len() >= MAX_REQUEST
        {
            break;
        }
        searched = buf.len().saturating_sub(3);
        conn.set_read_timeout(Some(left(deadline, "request")?))?;
        let n = match conn.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let answer = handler(method, path);
    // The client has `answer_time` to read the answer from when it is
    // ready: its rendering is not the client's time (found in audit: at
    // the limits, 65,536 reals, rendering took most of the 5 s and every
    // scrape got an empty answer).
    let deadline = deadline.max(Instant::now() + answer_time);
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    write_by(&mut conn, head.as_bytes(), deadline)?;
    // The body as rendered, not a copy per connection: it may be shared.
    if method != "HEAD" {
        write_by(&mut conn, answer.body.as_bytes(), deadline)?;
    }
    Ok(())
}

/// Writes all of `bytes` by `deadline`. A write timeout bounds one write
/// call only: it is renewed from the deadline before each, so that a
/// client reading a byte at a time cannot stretch the whole.
fn write_by(conn: &mut TcpStream, bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        conn.set_write_timeout(Some(left(deadline, "answer")?))?;
        match conn.write(&bytes[sent..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The largest answer [`get`] reads: more than any `/status` or
/// `/metrics` at the limits (65,536 reals: tens of MB).
pub const MAX_ANSWER: usize = 64 << 20;

/// How many times its `timeout` [`get`] gives a whole answer.
pub const WHOLE_ANSWER_TIMEOUTS: u32 = 6;

/// Fetches `path` from a server at `addr` (for `lb-appliance status`):
/// each read within `timeout`, the whole answer within
/// [`WHOLE_ANSWER_TIMEOUTS`] of it and at most [`MAX_ANSWER`] bytes (found
/// in audit: a server that trickled bytes kept the command running for
/// ever, and one that never stopped ran it out of memory).
pub fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<String> {
    use std::net::ToSocketAddrs;
    let sa = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address for {addr}"),
        )
    })?;
    let mut conn = TcpStream::connect_timeout(&sa, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let deadline = Instant::now() + timeout * WHOLE_ANSWER_TIMEOUTS;
    let mut resp = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        conn.set_read_timeout(Some(left(deadline, "the whole answer")?.min(timeout)))?;
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if resp.len() + n > MAX_ANSWER {
                    return Err(std::io::Error::other(format!(
                        "{addr}{path}: the answer is larger than {MAX_ANSWER} bytes"
                    )));
                }
                resp.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A server that closed without reading all of the request
            // resets the connection after its answer: what came is kept
            // (a cut body then fails to parse where it is used).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !resp.is_empty() => break,
            // A read timeout (EAGAIN on Linux): this read's, or the answer's.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                left(deadline, "the whole answer")?;
                return Err(timed_out("a read"));
            }
            Err(e) => return Err(e),
        }
    }
    // Not a lossy copy: one of invalid bytes would be three times their
    // size (found in review), and a server of ours sends UTF-8.
    let mut text = String::from_utf8(resp).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{addr}{path}: the answer is not UTF-8"),
        )
    })?;
    let head_end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
    let status = text[..head_end].lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        // Printed to a terminal: the server's control characters escaped.
        return Err(std::io::Error::other(format!(
            "{addr}{path}: {}",
            crate::status::shown(status)
        )));
    }
    text.drain(..head_end);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers its one connection with `head`, then `chunk`
    /// `times` times, `gap` apart; its address.
    fn sender(head: &'static [u8], chunk: Vec<u8>, times: usize, gap: Duration) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let Ok((mut c, _)) = l.accept() else { return };
            // The request first, so that closing does not reset.
            let _ = c.read(&mut [0u8; 1024]);
            let _ = c.write_all(head);
            for _ in 0..times {
                if c.write_all(&chunk).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
        });
        addr
    }

    /// Found in audit: the timeout held each read, not the answer, so a
    /// server that trickled a byte at a time kept `status` for ever.
    #[test]
    fn a_trickled_answer_ends_at_the_whole_answers_deadline() {
        let addr = sender(
            b"HTTP/1.1 200 OK\r\n\r\n",
            vec![b' '],
            100,
            Duration::from_millis(50),
        );
        let t = Instant::now();
        let e = get(&addr, "/status", Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
    }

    /// Found in review: a refusal's status line went to the terminal as
    /// the server wrote it, escape sequences included.
    #[test]
    fn a_refusals_status_line_is_shown_escaped() {
        let addr = sender(
            b"HTTP/1.1 500 \x1b]0;owned\x07\x1b[2J\r\n\r\n",
            Vec::new(),
            0,
            Duration::ZERO,
        );
        let e = get(&addr, "/status", Duration::from_secs(5)).unwrap_err();
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("500"), "{text}");
    }

    /// Found in audit: an answer without end was read into memory whole.
    #[test]
    fn an_answer_without_end_is_cut_at_the_limit() {
        let addr = sender(
            b"HTTP/1.1 200 OK\r\n\r\n",
            vec![b'x'; 1 << 20],
            100,
            Duration::ZERO,
        );
        let e = get(&addr, "/status", Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    /// A server whose `/metrics` answers `body`.
    fn server(body: String, limits: Limits) -> Server {
        let handler = move |method: &str, path: &str| match (method, path) {
            ("GET", "/metrics") => Response {
                status: "200 OK",
                content_type: "text/plain",
                body: body.as_str().into(),
            },
            _ => Response {
                status: "404 Not Found",
                content_type: "text/plain",
                body: "".into(),
            },
        };
        Server::serve("127.0.0.1:0".parse().unwrap(), Arc::new(handler), limits).unwrap()
    }

    fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        cond()
    }

    /// Opens `idle` connections that send nothing and `slow` ones that
    /// trickle a request a byte at a time (from one thread, until `stop`).
    fn hold(
        addr: SocketAddr,
        idle: usize,
        slow: usize,
    ) -> (Vec<TcpStream>, Arc<AtomicBool>, JoinHandle<()>) {
        let idle: Vec<TcpStream> = (0..idle)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut slow: Vec<TcpStream> = (0..slow)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let trickle = std::thread::spawn(move || {
            let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ";
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let byte = request.get(i).copied().unwrap_or(b'a');
                for c in &mut slow {
                    let _ = c.write_all(&[byte]);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        (idle, stop, trickle)
    }

    fn scrape(addr: SocketAddr) -> String {
        get(&addr.to_string(), "/metrics", Duration::from_secs(9)).unwrap()
    }

    /// A request whose lines end with a bare LF is answered at once, not
    /// at the deadline.
    #[test]
    fn a_request_with_bare_line_feeds_is_answered() {
        let s = server("lb_up 1\n".into(), Limits::default());
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\nHost: x\n\n").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got:?}");
        assert!(got.ends_with("lb_up 1\n"), "{got:?}");
    }

    /// The case: with 100 idle and 100 trickling connections held
    /// open, a scrape still answers at once (one thread served one
    /// connection at a time before: it waited 2 s for each).
    #[test]
    fn a_scrape_answers_while_idle_and_slow_connections_are_held_open() {
        let body = "lb_up 1\n".repeat(1000);
        let s = server(body.clone(), Limits::default());
        let (idle, stop, trickle) = hold(s.addr, 100, 100);
        assert!(
            wait_until(Duration::from_secs(3), || s.connections() >= 200),
            "only {} connections being served",
            s.connections()
        );
        for _ in 0..3 {
            let t = Instant::now();
            assert_eq!(scrape(s.addr), body);
            let took = t.elapsed();
            assert!(took < Duration::from_secs(3), "a scrape took {took:?}");
        }
        assert_eq!(s.refused(), 0);
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        drop(idle);
    }

    /// A head sent a byte at a time, its end split over reads, is read
    /// whole and answered.
    #[test]
    fn a_request_sent_a_byte_at_a_time_is_answered() {
        let s = server("lb_up 1\n".into(), Limits::default());
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_nodelay(true).unwrap();
        for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" {
            c.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with("lb_up 1\n"), "{answer:?}");
    }

    /// A stop shuts the live connections instead of waiting out their
    /// deadline.
    #[test]
    fn a_stop_does_not_wait_for_slow_clients() {
        let s = server("x\n".into(), Limits::default());
        let (idle, stop, trickle) = hold(s.addr, 50, 50);
        assert!(wait_until(Duration::from_secs(3), || s.connections() >= 100));
        let t = Instant::now();
        drop(s);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(2), "the stop took {took:?}");
        stop.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        // The server closed them: each reads the end of the stream.
        for mut c in idle {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut b = [0u8; 16];
            assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        }
    }

    /// Idle clients and clients that never read the answer are cut off at
    /// the deadline; after them, the server serves again.
    #[test]
    fn the_deadline_covers_reading_the_request_and_writing_the_answer() {
        let deadline = Duration::from_millis(800);
        // More than the socket buffers of both ends hold.
        let body = "y".repeat(64 << 20);
        let s = server(
            body.clone(),
            Limits {
                max_connections: 16,
                deadline,
            },
        );
        let idle = TcpStream::connect(s.addr).unwrap();
        let mut reader = TcpStream::connect(s.addr).unwrap();
        reader
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert!(wait_until(Duration::from_secs(1), || s.connections() == 2));
        let t = Instant::now();
        assert!(
            wait_until(Duration::from_secs(3), || s.connections() == 0),
            "{} connection(s) outlived the deadline",
            s.connections()
        );
        assert!(t.elapsed() < deadline + Duration::from_secs(1));
        // The slow reader got less than the answer.
        reader
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = Vec::new();
        let _ = reader.read_to_end(&mut got);
        assert!(got.len() < body.len(), "the whole answer went out");
        drop(idle);
    }

    /// Found in audit: requests that queued behind a slow render rendered
    /// one each. Those that arrive while a render runs now share the
    /// next one; a request never gets a render older than itself.
    #[test]
    fn requests_queued_behind_a_render_share_the_next() {
        let renders: Arc<Renders<u32, 2>> = Arc::new(Renders::new(0));
        let slow = |n: &mut u32| {
            std::thread::sleep(Duration::from_millis(100));
            *n += 1;
            n.to_string()
        };
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let r = Arc::clone(&renders);
                std::thread::spawn(move || r.get(0, Instant::now(), slow))
            })
            .collect();
        let bodies: Vec<Arc<str>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let made = renders.get(1, Instant::now(), |n| n.to_string());
        assert!(
            matches!(&*made, "1" | "2"),
            "10 queued requests made {made} renders"
        );
        assert!(
            bodies.iter().all(|b| **b == *made || &**b == "1"),
            "{bodies:?}"
        );
        // One that arrives more than `REUSE_WITHIN` after them renders
        // afresh, for each kind, though their bodies are still held.
        let later = Instant::now() + REUSE_WITHIN + Duration::from_millis(1);
        let after = renders.get(0, later, slow);
        assert_ne!(&*after, &*made);
        assert_ne!(&*renders.get(1, later, |n| n.to_string()), &*made);
        // Within it, a render an answer still holds is shared.
        let early = Instant::now();
        let kept = renders.get(0, early, slow);
        assert_eq!(kept, after, "held by an answer: shared");
        // A body no answer holds any more is not kept: the next request
        // renders, even one that arrived before the last render.
        let n = after.to_string();
        drop((bodies, after, kept));
        assert_ne!(
            &*renders.get(0, early, slow),
            n.as_str(),
            "freed, rendered again"
        );
    }

    /// Found in audit: clients that asked one after the other, a render
    /// apart, and never read their answers each held a body of its own
    /// (32 here; 256 at 3.9 MB a body at 8,192 reals: about 1 GB). A
    /// render an answer still holds answers them for `REUSE_WITHIN`.
    #[test]
    fn staggered_clients_that_never_read_share_one_render() {
        let renders: Arc<Renders<u32, 2>> = Arc::new(Renders::new(0));
        let mut held = Vec::new();
        for _ in 0..32 {
            held.push(renders.get(0, Instant::now(), |n| {
                *n += 1;
                std::thread::sleep(Duration::from_millis(5));
                format!("{n}{}", "x".repeat(1 << 20))
            }));
        }
        let mut bodies: Vec<*const u8> = held.iter().map(|b| b.as_ptr()).collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 1, "{} bodies held at once", bodies.len());
    }

    /// Found in audit: at the limits (65,536 reals) rendering took most of
    /// the deadline, and every scrape got an empty answer. The client's
    /// time to read starts when the answer is ready.
    #[test]
    fn a_slow_render_is_not_the_clients_time() {
        let handler = |_: &str, _: &str| {
            std::thread::sleep(Duration::from_millis(1200));
            Response {
                status: "200 OK",
                content_type: "text/plain",
                body: "slow\n".into(),
            }
        };
        let limits = Limits {
            max_connections: 4,
            deadline: Duration::from_millis(800),
        };
        let s = Server::serve("127.0.0.1:0".parse().unwrap(), Arc::new(handler), limits).unwrap();
        assert_eq!(scrape(s.addr), "slow\n");
    }

    /// Beyond the bound, a connection is closed at once and counted; the
    /// ones within it are served.
    #[test]
    fn connections_beyond_the_bound_are_closed_at_once_and_counted() {
        // The deadline is far longer than the read timeout below, so a
        // connection the server kept (until its deadline) reads as "timed
        // out", never as "closed".
        let s = server(
            "z\n".into(),
            Limits {
                max_connections: 4,
                deadline: Duration::from_secs(60),
            },
        );
        let idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(s.addr).unwrap())
            .collect();
        assert!(wait_until(Duration::from_secs(10), || s.connections() == 4));
        let mut extra = TcpStream::connect(s.addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Closed: end of stream or a reset. Kept open: the read times out.
        let mut b = [0u8; 16];
        let r = extra.read(&mut b);
        assert!(
            matches!(&r, Ok(0))
                || matches!(&r, Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                )),
            "not closed at once: {r:?}"
        );
        assert!(wait_until(Duration::from_secs(10), || s.refused() == 1));
        drop(idle);
        assert!(wait_until(Duration::from_secs(10), || s.connections() == 0));
        assert_eq!(scrape(s.addr), "z\n");
    }
}
