//! The appliance as a `Type=notify` service, with a stub in systemd's place:
//! a datagram socket given as `$NOTIFY_SOCKET` records every notification
//! with the time it arrived, and the test checks the protocol's messages,
//! their order and their timing (READY=1 only after the first health check
//! is in, WATCHDOG=1 at half of `$WATCHDOG_USEC`, RELOADING=1 with
//! MONOTONIC_USEC= and READY=1 around each SIGHUP, STOPPING=1 on SIGTERM).
//! The same run has `$JOURNAL_STREAM` name its stderr, so its log lines
//! must carry journald priorities.
//!
//! systemd itself is not running in the containers these tests run in
//! (`systemctl is-system-running` says `offline`), so no `systemd-run` test
//! here; `tests/operator_setup.rs` verifies the unit with `systemd-analyze`.
//! No root needed: the port is `net_null` with `no-rx=1` (a worker that
//! polls an empty queue, so its poll counter advances and the watchdog
//! runs), the metrics listen on a free loopback port.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{tail, DpdkPrefix, Proc, TempDir, BIN};

/// How long the stub's real takes to answer its health check: READY must
/// wait for it.
const REAL_DELAY: Duration = Duration::from_millis(1500);

/// `$WATCHDOG_USEC`: pings are due every 2.5 s, and a gap would trip
/// systemd only at 5 s (2.5 s of room for a loaded machine's scheduler).
const WATCHDOG_USEC: u64 = 5_000_000;

fn config(prefix: &DpdkPrefix, real_port: u16, weight: i64) -> String {
    format!(
        r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", "{prefix}"]
[workers]
lcores = [1]
poll = "adaptive"
[[ports]]
name = "wan"
device = "net_null0,no-rx=1"
address = "198.18.0.2/24"
[metrics]
listen = "127.0.0.1:0"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[services.health_check]
kind = "http"
path = "/"
interval = "5s"
timeout = "3s"
rise = 1
fall = 1
# Down until its first check (not the default): that check's result is a
# health change, which publishes generation 2 before READY=1.
initial = "down"
[[services.reals]]
address = "127.0.0.1"
port = {real_port}
weight = {weight}
"#,
        prefix = prefix.0
    )
}

/// A notification and when it arrived.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// systemd's side of `$NOTIFY_SOCKET`: records datagrams until dropped.
struct NotifyStub {
    messages: Log,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifyStub {
    fn bind(path: &std::path::Path) -> NotifyStub {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let messages: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (Arc::clone(&messages), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifyStub {
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits (bounded) for a message after the `after`-th that starts with
    /// `head`; returns its index.
    fn wait_for(&self, after: usize, head: &str, app: &Proc) -> usize {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.all();
            if let Some(i) = (after..all.len()).find(|i| all[*i].1.starts_with(head)) {
                return i;
            }
            assert!(
                Instant::now() < end,
                "no {head:?} after message {after}; got {:?}\nlog:\n{}",
                all.iter().map(|m| &m.1).collect::<Vec<_>>(),
                tail(&app.log_text(), 30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NotifyStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A real whose HTTP health check is answered after [`REAL_DELAY`];
/// records when each check connected.
struct SlowReal {
    port: u16,
    connected: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl SlowReal {
    fn start() -> SlowReal {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connected: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&connected), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        c.lock().unwrap().push(Instant::now());
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut buf = [0u8; 1024];
                            let _ = conn.read(&mut buf);
                            std::thread::sleep(REAL_DELAY);
                            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SlowReal {
            port,
            connected,
            stop,
        }
    }
}

impl Drop for SlowReal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The value of `KEY=` in a notification.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[test]
fn the_appliance_speaks_sd_notify_and_logs_with_journal_priorities() {
    let dir = TempDir::new("systemd-notify");
    let prefix = DpdkPrefix::new("systemd-notify");
    let real = SlowReal::start();
    let path = dir.path("lb.toml");
    std::fs::write(&path, config(&prefix, real.port, 5)).unwrap();
    let stub = NotifyStub::bind(&dir.path("notify.sock"));

    // The log file exists before the start, so its device and inode can
    // be given as $JOURNAL_STREAM (Proc::spawn truncates it, same inode).
    let log = dir.path("lb.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-c", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", dir.path("notify.sock"))
        .env("WATCHDOG_USEC", WATCHDOG_USEC.to_string())
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    let started = Instant::now();
    let mut app = Proc::spawn(cmd, &log);

    // READY=1: after the ports are up and the real's first check is in.
    let ready = stub.wait_for(0, "READY=1", &app);
    let msgs = stub.all();
    let (ready_at, ready_msg) = &msgs[ready];
    let first_check = *real
        .connected
        .lock()
        .unwrap()
        .first()
        .expect("the real was checked before READY");
    assert!(
        *ready_at >= first_check + REAL_DELAY,
        "READY {} ms after the first check connected: it must wait for the answer ({} ms)",
        ms(ready_at.duration_since(first_check)),
        ms(REAL_DELAY)
    );
    assert!(
        app.log_text().contains("metrics on http://"),
        "READY before the appliance ran:\n{}",
        app.log_text()
    );
    assert_eq!(
        field(ready_msg, "STATUS"),
        Some("running: generation 2, 1 service(s), 1 of 1 real(s) up, 1 worker(s)"),
        "{ready_msg}"
    );
    let before: Vec<&String> = msgs[..ready].iter().map(|m| &m.1).collect();
    assert!(
        before.iter().all(|m| m.starts_with("STATUS=")),
        "only STATUS before READY: {before:?}"
    );
    assert!(
        before
            .iter()
            .any(|m| m.contains("waiting for the first health checks (0 of 1")),
        "{before:?}"
    );
    eprintln!(
        "READY=1 {} ms after the start, {} ms after the first check connected",
        ms(ready_at.duration_since(started)),
        ms(ready_at.duration_since(first_check))
    );

    // The watchdog: pings at about half of WATCHDOG_USEC.
    std::thread::sleep(Duration::from_secs(6));

    // A valid reload (a weight), then an invalid one.
    let n = stub.all().len();
    std::fs::write(&path, config(&prefix, real.port, 7)).unwrap();
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &app.pid().to_string()])
            .status()
            .unwrap()
            .success())
    };
    // MONOTONIC_USEC is read from CLOCK_MONOTONIC between these two.
    let before1 = lb_control::notify::monotonic_usec();
    hup();
    let reloading1 = stub.wait_for(n, "RELOADING=1", &app);
    let after1 = lb_control::notify::monotonic_usec();
    let ready1 = stub.wait_for(reloading1, "READY=1", &app);
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(&path, config(&prefix, real.port, -3)).unwrap();
    let n = stub.all().len();
    let before2 = lb_control::notify::monotonic_usec();
    hup();
    let reloading2 = stub.wait_for(n, "RELOADING=1", &app);
    let after2 = lb_control::notify::monotonic_usec();
    let ready2 = stub.wait_for(reloading2, "READY=1", &app);
    std::thread::sleep(Duration::from_millis(1200));

    // SIGTERM: STOPPING=1, then a clean exit.
    let n = stub.all().len();
    let code = app.stop("TERM", Duration::from_secs(20));
    let text = app.log_text();
    assert_eq!(code, Some(0), "clean stop:\n{}", tail(&text, 30));
    let stopping = stub.wait_for(n, "STOPPING=1", &app);
    let msgs = stub.all();

    // Reloads: RELOADING=1 with the monotonic clock, READY=1 after.
    let mono = |i: usize| -> u64 {
        field(&msgs[i].1, "MONOTONIC_USEC")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {:?}", msgs[i].1))
    };
    // Each is the monotonic clock (the test reads the same clock) at a
    // time between the SIGHUP and the message's arrival: no tolerance.
    let (m1, m2) = (mono(reloading1), mono(reloading2));
    assert!(
        (before1..=after1).contains(&m1) && (before2..=after2).contains(&m2),
        "MONOTONIC_USEC {m1} and {m2} are not CLOCK_MONOTONIC between each SIGHUP \
         ({before1}, {before2}) and its RELOADING=1 ({after1}, {after2})"
    );
    let status1 = field(&msgs[ready1].1, "STATUS").unwrap_or("");
    assert!(
        status1.starts_with("running: generation 3"),
        "{:?}",
        msgs[ready1].1
    );
    let status2 = field(&msgs[ready2].1, "STATUS").unwrap_or("");
    assert!(
        status2.starts_with("reload refused") && status2.contains("generation 3"),
        "{:?}",
        msgs[ready2].1
    );

    // The watchdog pinged from READY to STOPPING and never left a gap
    // (from READY, between pings, or to STOPPING) that would have made
    // systemd kill the appliance. How regular the pings are is not
    // asserted: a busy host delays them; only reaching WatchdogSec fails.
    let pings: Vec<Instant> = msgs[ready..stopping]
        .iter()
        .filter(|m| m.1 == "WATCHDOG=1")
        .map(|m| m.0)
        .collect();
    let span = msgs[stopping].0.duration_since(*ready_at);
    let mut gaps: Vec<Duration> = std::iter::once(*ready_at)
        .chain(pings.iter().copied())
        .chain(std::iter::once(msgs[stopping].0))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .collect();
    gaps.sort();
    assert!(pings.len() >= 2, "{} pings in {} ms", pings.len(), ms(span));
    let median = gaps[gaps.len() / 2];
    let longest = *gaps.last().unwrap();
    assert!(
        longest < Duration::from_micros(WATCHDOG_USEC),
        "a gap of {} ms would have tripped WatchdogSec: {gaps:?}",
        ms(longest)
    );
    assert!(
        msgs[stopping + 1..]
            .iter()
            .all(|m| !m.1.starts_with("WATCHDOG") && !m.1.starts_with("READY")),
        "nothing but STATUS after STOPPING: {:?}",
        &msgs[stopping..]
    );
    eprintln!(
        "{} pings in {} ms (median gap {} ms, longest {} ms); reloads and stop in order",
        pings.len(),
        ms(span),
        ms(median),
        ms(longest)
    );

    // Journald priorities: our lines carry <N> and no timestamp (journald
    // stamps them); both lines of the refused reload are errors.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('<') || l.starts_with("[20"))
        .collect();
    assert!(
        !ours.iter().any(|l| l.starts_with("[20")),
        "a timestamped line despite JOURNAL_STREAM:\n{text}"
    );
    let has = |prefix: &str, needle: &str| {
        text.lines()
            .any(|l| l.starts_with(prefix) && l.contains(needle))
    };
    assert!(has("<6>[INFO ", "metrics on http://"), "{text}");
    assert!(has("<6>[INFO ", "ready: running"), "{text}");
    assert!(has("<3>[ERROR ", "reload of"), "{text}");
    assert!(
        has("<3>", "services[0].reals[0].weight: -3 is out of range"),
        "the continuation line of the error is an error too:\n{text}"
    );
}

/// `<3>` on the error lines of an invalid config when stderr is the
/// journal; the plain lines when `$JOURNAL_STREAM` names another stream
/// (inherited from a parent whose stderr went to the journal).
#[test]
fn config_errors_carry_the_error_priority_only_on_the_journal_stream() {
    let dir = TempDir::new("systemd-journal");
    let path = dir.path("bad.toml");
    std::fs::write(
        &path,
        "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\n\
         address = \"198.18.0.2/24\"\n[[services]]\nname = \"web\"\nvip = \"198.18.1.100\"\n\
         port = 80\n[[services.reals]]\naddress = \"198.18.0.11\"\nweight = -3\n",
    )
    .unwrap();
    let run = |journal: bool| {
        let log = dir.path("err.log");
        std::fs::write(&log, "").unwrap();
        let m = std::fs::metadata(&log).unwrap();
        let ino = if journal { m.ino() } else { m.ino() + 1 };
        let mut cmd = Command::new(BIN);
        cmd.args(["-c", path.to_str().unwrap(), "--check"])
            .env("JOURNAL_STREAM", format!("{}:{ino}", m.dev()));
        let mut p = Proc::spawn(cmd, &log);
        let code = p.child.take().unwrap().wait().unwrap().code();
        (code, std::fs::read_to_string(&log).unwrap())
    };
    let (code, text) = run(true);
    assert_eq!(code, Some(2), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(
        lines.iter().all(|l| l.starts_with("<3>")),
        "every line an error:\n{text}"
    );
    assert!(lines[0].contains("is invalid"), "{text}");
    assert!(
        text.contains("<3>  services[0].reals[0].weight: -3"),
        "{text}"
    );

    let (code, text) = run(false);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.starts_with("lb-appliance: ") && !text.contains("<3>"),
        "{text}"
    );
}

/// A real whose health check is never answered: the connection is
/// accepted and held until the test ends.
struct SilentReal {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SilentReal {
    fn start() -> SilentReal {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        SilentReal { port, stop }
    }
}

impl Drop for SilentReal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Found in review: a real deleted with `ctl` before READY was still
/// awaited, and READY came only when the wait for first checks ran out
/// (the check's timeout and a second). Now the deletion tells the wait,
/// and READY follows the other real's first check.
#[test]
fn a_real_deleted_before_ready_is_not_waited_for() {
    let dir = TempDir::new("systemd-ctl-before-ready");
    let prefix = DpdkPrefix::new("systemd-ctl");
    let silent = SilentReal::start();
    let answering = SlowReal::start();
    // Both checked with a 10 s timeout: the wait for first checks is 11 s.
    let text = config(&prefix, answering.port, 5)
        .replace("timeout = \"3s\"", "timeout = \"10s\"")
        .replace("interval = \"5s\"", "interval = \"20s\"")
        + &format!(
            "[[services.reals]]\naddress = \"127.0.0.1\"\nport = {}\n",
            silent.port
        );
    let path = dir.path("lb.toml");
    std::fs::write(&path, common::with_control_socket(&text, &dir.0)).unwrap();
    let stub = NotifyStub::bind(&dir.path("notify.sock"));
    let mut cmd = Command::new(BIN);
    cmd.args(["-c", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", dir.path("notify.sock"));
    let mut app = Proc::spawn(cmd, &dir.path("lb.log"));
    assert!(
        app.wait_for_log("control socket", Duration::from_secs(30)),
        "did not start:\n{}",
        app.log_text()
    );
    let out = Command::new(BIN)
        .args(["ctl", "--socket"])
        .arg(dir.path("ctl.sock"))
        .args(["del-real", "web", &format!("127.0.0.1:{}", silent.port)])
        .output()
        .expect("lb-appliance ctl");
    let deleted = Instant::now();
    assert!(
        out.status.success(),
        "ctl del-real: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        app.log_text()
    );
    let ready = stub.wait_for(0, "READY=1", &app);
    let (ready_at, msg) = &stub.all()[ready];
    let after = ready_at.saturating_duration_since(deleted);
    assert!(
        after < Duration::from_secs(8),
        "READY {} ms after the deletion: it waited for the deleted real ({msg})\n{}",
        ms(after),
        tail(&app.log_text(), 30)
    );
    assert!(
        msg.contains("1 of 1 real(s) up"),
        "READY after the other real's check: {msg}"
    );
    let code = app.stop("TERM", Duration::from_secs(20));
    assert_eq!(code, Some(0), "clean stop:\n{}", tail(&app.log_text(), 30));
}
