//! systemd's service notification protocol (`sd_notify(3)`), spoken by
//! hand: one datagram of `KEY=VALUE` lines to the socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). The whole
//! protocol is a `sendto`, so std's `UnixDatagram` does it without libsystemd
//! and without unsafe code.
//!
//! What the appliance says, and when (the unit is `Type=notify`):
//! - `READY=1` once the ports are up, the workers poll and every checked real
//!   has had its first check (or [`first_checks_wait`] passed), so that units
//!   ordered after it start against a balancer that knows its reals;
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC`, from the control thread, but
//!   only while every worker's poll counter advances: a stuck worker (or a
//!   stuck control thread) stops the pings, and systemd restarts the
//!   appliance (`WatchdogSec=`);
//! - `RELOADING=1` with `MONOTONIC_USEC=` (systemd 253+ wants both) before a
//!   SIGHUP reload, `READY=1` after it, whatever its outcome (a refused file
//!   leaves the previous configuration running);
//! - `STOPPING=1` at the start of a clean stop;
//! - `STATUS=` lines saying what it is doing (`systemctl status`).
//!
//! Without `$NOTIFY_SOCKET` nothing is sent; the readiness and progress
//! bookkeeping still runs (it is a few comparisons per tick) and logs.
#![deny(unsafe_code)]

use std::collections::BTreeSet;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_config::{Config, HealthCheckKind};
use lb_core::snapshot::Snapshot;
use lb_core::WorkerStats;
use lb_dataplane::dpdk::LcoreId;

use crate::health::RealKey;

/// A connected notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for messages.
    name: String,
}

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`; `Ok(None)` when the variable is
    /// unset or empty (not started by systemd as `Type=notify`).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(v) if !v.is_empty() => Notifier::new(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `name`: an absolute path, or `@name` for a socket in
    /// the abstract namespace. (systemd also knows `vsock:`, for virtual
    /// machines, which this appliance does not run under.)
    pub fn new(name: &str) -> io::Result<Notifier> {
        let target = if let Some(abstract_name) = name.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an @abstract name",
            ));
        };
        // Waiting for room a moment, not for ever: with systemd not
        // reading its socket, a full queue would stop the control thread,
        // and with it health checks, ctl and SIGTERM (found in audit); a
        // socket that never waits lost READY=1 to a queue full for an
        // instant, and systemd then killed the start (found in review).
        // A message that finds no room in time is lost and logged.
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_WAIT))?;
        Ok(Notifier {
            socket,
            target,
            name: name.to_string(),
        })
    }

    /// Sends one message (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.target)
            .map(|_| ())
    }
}

/// How long a message waits for room in systemd's queue.
pub const SEND_WAIT: Duration = Duration::from_secs(1);

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC` (as
/// `sd_watchdog_enabled(3)` advises), if it is set, valid, and meant for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` wants it (std's
/// `Instant` reads the same clock but does not show it).
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_nsec).unwrap_or(0) / 1000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

/// How long READY waits for the first checks: the longest check timeout
/// plus a second for the checker threads to report. A check always ends
/// within its timeout (`health::check_once`), so this only bounds the wait
/// for a checker that could not report at all; it stays below systemd's
/// default `TimeoutStartSec=` (90 s), since timeouts are at most
/// `lb_config::MAX_HEALTH_CHECK_TIMEOUT`.
pub fn first_checks_wait(config: &Config) -> Duration {
    config
        .services
        .iter()
        .filter_map(|s| s.health_check.as_ref())
        .filter(|h| h.kind != HealthCheckKind::None)
        .map(|h| h.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1)
}

/// Which workers made no progress: compares each worker's poll counter
/// with its value at the previous look.
#[derive(Debug, Default)]
pub struct Progress {
    last: Vec<u64>,
}

impl Progress {
    /// Takes `polls` (one counter per worker) as the baseline.
    pub fn new(polls: Vec<u64>) -> Progress {
        Progress { last: polls }
    }

    /// The indexes of the workers whose counter did not move since the
    /// previous call (or the baseline); the new values become the baseline.
    pub fn stalled(&mut self, polls: &[u64]) -> Vec<usize> {
        let stuck = polls
            .iter()
            .enumerate()
            .filter(|(i, p)| self.last.get(*i) == Some(p))
            .map(|(i, _)| i)
            .collect();
        self.last = polls.to_vec();
        stuck
    }
}

/// Whether some worker has stopped polling, judged every [`STALL_AFTER`]
/// by the control loop whether or not systemd's watchdog is on: a stuck
/// worker forwards nothing of its share, so the VIPs are withdrawn while
/// one is (found in audit: only the watchdog noticed, by not pinging,
/// and without one the routes stayed for good).
pub struct StallWatch {
    progress: Progress,
    since: Instant,
    stuck: Vec<usize>,
}

/// How long a worker may make no progress before it counts as stuck (an
/// idle worker polls at least every millisecond).
pub const STALL_AFTER: Duration = Duration::from_secs(3);

impl StallWatch {
    pub fn new(polls: Vec<u64>, now: Instant) -> StallWatch {
        StallWatch {
            progress: Progress::new(polls),
            since: now,
            stuck: Vec::new(),
        }
    }

    /// Judges `polls` (one counter per worker) at `now`: the indexes of
    /// the workers stuck now, when that changed since the last verdict.
    pub fn check(&mut self, polls: &[u64], now: Instant) -> Option<Vec<usize>> {
        if now.saturating_duration_since(self.since) < STALL_AFTER {
            return None;
        }
        self.since = now;
        let stuck = self.progress.stalled(polls);
        (stuck != self.stuck).then(|| {
            self.stuck = stuck.clone();
            stuck
        })
    }
}

/// The wait for the first health results before READY.
#[derive(Debug)]
pub struct FirstChecks {
    pending: BTreeSet<RealKey>,
    /// Every real a report came from.
    seen: BTreeSet<RealKey>,
    total: usize,
    deadline: Instant,
}

impl FirstChecks {
    /// Waits for every real in `checked`, until `now + wait` at most.
    pub fn new(checked: impl IntoIterator<Item = RealKey>, now: Instant, wait: Duration) -> Self {
        let pending: BTreeSet<RealKey> = checked.into_iter().collect();
        FirstChecks {
            total: pending.len(),
            pending,
            seen: BTreeSet::new(),
            deadline: now + wait,
        }
    }

    /// A report from `real` arrived.
    pub fn reported(&mut self, real: &RealKey) {
        self.pending.remove(real);
        self.seen.insert(real.clone());
    }

    /// Whether the wait is over at `now`: every real reported, or the time
    /// ran out.
    pub fn done(&self, now: Instant) -> bool {
        self.pending.is_empty() || now >= self.deadline
    }

    /// (checked so far, total).
    pub fn counts(&self) -> (usize, usize) {
        (self.total - self.pending.len(), self.total)
    }

    /// A reload or a `ctl` change left `checked` as the reals under a
    /// check, of which `fresh` are checked anew (a new real, or a changed
    /// check): those not yet reported as checked now are waited for, no
    /// others (found in audit: READY waited for a real the reload had
    /// removed until the deadline; then in review: it did not wait for
    /// one the reload added, nor for the new check of a real the old one
    /// had reported).
    pub fn rechecked(&mut self, checked: &BTreeSet<RealKey>, fresh: &BTreeSet<RealKey>) {
        for k in fresh {
            self.seen.remove(k);
        }
        self.pending = checked
            .iter()
            .filter(|k| !self.seen.contains(*k))
            .cloned()
            .collect();
        self.total = checked.len();
    }
}

/// `running: generation 4, 2 services, 5 of 6 reals up, 2 workers`.
pub fn running_status(snap: &Snapshot, workers: usize) -> String {
    let reals: usize = snap.services.iter().map(|s| s.reals.len()).sum();
    let up: usize = snap
        .services
        .iter()
        .map(|s| s.reals.iter().filter(|r| r.up).count())
        .sum();
    format!(
        "running: generation {}, {} service(s), {up} of {reals} real(s) up, {workers} worker(s)",
        snap.generation,
        snap.services.len()
    )
}

/// What the control thread tells systemd, and when.
#[derive(Debug)]
pub struct Systemd {
    notifier: Option<Notifier>,
    /// Half of `$WATCHDOG_USEC`, when systemd asks for pings.
    watchdog: Option<Duration>,
    /// Before READY: the first checks still awaited.
    starting: Option<FirstChecks>,
    last_ping: Instant,
    progress: Progress,
    /// Lcores of the workers seen stalled at the last look (for logging
    /// each change once).
    stalled: Vec<LcoreId>,
    /// The last reload was refused (said in STATUS until the next one).
    refused: bool,
    last_status: String,
}

impl Systemd {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. A
    /// socket name that cannot be used is logged and nothing is sent.
    pub fn from_env() -> Systemd {
        let notifier = match Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                log::warn!(
                    "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                    std::env::var("NOTIFY_SOCKET").unwrap_or_default()
                );
                None
            }
        };
        let watchdog = notifier.as_ref().and_then(|_| {
            watchdog_interval(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            )
        });
        Systemd::new(notifier, watchdog)
    }

    pub fn new(notifier: Option<Notifier>, watchdog: Option<Duration>) -> Systemd {
        Systemd {
            notifier,
            watchdog,
            starting: None,
            last_ping: Instant::now(),
            progress: Progress::default(),
            stalled: Vec::new(),
            refused: false,
            last_status: String::new(),
        }
    }

    fn send(&self, message: &str) {
        if let Some(n) = &self.notifier {
            if let Err(e) = n.send(message) {
                log::warn!("notifying systemd at {}: {e}", n.name);
            }
        }
    }

    /// Sends `STATUS=` when it says something new.
    fn status(&mut self, status: String) {
        if status != self.last_status {
            self.send(&format!("STATUS={status}"));
            self.last_status = status;
        }
    }

    /// The dataplane is being started.
    pub fn starting_dataplane(&mut self) {
        self.status("starting: EAL, ports and workers".to_string());
    }

    /// The ports are up and the workers poll: wait for the first checks of
    /// `checked` (at most `wait`) before READY.
    pub fn wait_for_first_checks(
        &mut self,
        checked: impl IntoIterator<Item = RealKey>,
        wait: Duration,
    ) {
        self.starting = Some(FirstChecks::new(checked, Instant::now(), wait));
    }

    /// Whether READY is still to come (the first checks are awaited).
    pub fn is_starting(&self) -> bool {
        self.starting.is_some()
    }

    /// Before READY: the reals under a check are `checked` now, `fresh`
    /// of them checked anew ([`FirstChecks::rechecked`]); a `ctl` change
    /// says so as a reload does (found in review: after one, READY waited
    /// for a deleted real until its deadline).
    pub fn rechecked(&mut self, checked: &BTreeSet<RealKey>, fresh: &BTreeSet<RealKey>) {
        if let Some(s) = self.starting.as_mut() {
            s.rechecked(checked, fresh);
        }
    }

    /// A health report from `real` arrived.
    pub fn reported(&mut self, real: &RealKey) {
        if let Some(s) = self.starting.as_mut() {
            s.reported(real);
        }
    }

    /// What runs, with a refused last reload noted.
    fn running(&self, snap: &Snapshot, workers: usize) -> String {
        let running = running_status(snap, workers);
        if self.refused {
            format!("reload refused (see the log), still {running}")
        } else {
            running
        }
    }

    /// Called every turn of the control loop: READY once the first checks
    /// are in, then the watchdog pings while the workers make progress, and
    /// STATUS when what runs changed (health, ctl changes, reloads).
    pub fn tick(&mut self, workers: &[(LcoreId, Arc<WorkerStats>)], snap: &Snapshot) {
        let now = Instant::now();
        if let Some(s) = &self.starting {
            let (seen, total) = s.counts();
            if !s.done(now) {
                self.status(format!(
                    "starting: waiting for the first health checks ({seen} of {total} real(s) checked)"
                ));
                return;
            }
            if seen < total {
                log::warn!(
                    "ready without the first check of {} real(s): they did not report in time",
                    total - seen
                );
            }
            self.starting = None;
            // A reload refused before READY is said too.
            let status = self.running(snap, workers.len());
            log::info!("ready: {status}");
            self.send(&format!("READY=1\nSTATUS={status}"));
            self.last_status = status;
            self.last_ping = now;
            self.progress = Progress::new(polls(workers));
            return;
        }
        if self.stalled.is_empty() {
            self.status(self.running(snap, workers.len()));
        }
        let Some(interval) = self.watchdog else {
            return;
        };
        if now.duration_since(self.last_ping) < interval {
            return;
        }
        self.last_ping = now;
        let stalled: Vec<LcoreId> = self
            .progress
            .stalled(&polls(workers))
            .into_iter()
            .filter_map(|i| workers.get(i).map(|w| w.0))
            .collect();
        if stalled.is_empty() {
            if !self.stalled.is_empty() {
                log::warn!("watchdog: every worker polls again; pinging systemd again");
                self.stalled.clear();
                self.status(self.running(snap, workers.len()));
            }
            self.send("WATCHDOG=1");
            return;
        }
        if stalled != self.stalled {
            let which: Vec<String> = stalled.iter().map(|l| l.to_string()).collect();
            log::error!(
                "watchdog: the worker on {} made no progress in {interval:?}; not pinging systemd, which restarts the appliance when WatchdogSec= runs out",
                which.join(", ")
            );
            self.status(stuck_status(&stalled));
            self.stalled = stalled;
        }
    }

    /// A SIGHUP reload begins. Before READY it is just a reload (systemd
    /// is still waiting for the start).
    pub fn reloading(&mut self) {
        if self.starting.is_some() {
            return;
        }
        self.send(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            monotonic_usec()
        ));
        self.last_status = "reloading the configuration".to_string();
    }

    /// The reload is over: applied (`ok`) or refused, the running
    /// configuration is `snap`. Before READY it is only remembered: a
    /// refusal is said with READY (which reals are awaited then is told
    /// through [`Self::rechecked`], as after a `ctl` change). (Found in
    /// audit: a refusal before READY was never said, and a reload while
    /// a worker was stuck put "running" back into STATUS until systemd
    /// killed the appliance.)
    pub fn reloaded(&mut self, ok: bool, snap: &Snapshot, workers: usize) {
        self.refused = !ok;
        if self.starting.is_some() {
            return;
        }
        let status = if self.stalled.is_empty() {
            self.running(snap, workers)
        } else {
            stuck_status(&self.stalled)
        };
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.last_status = status;
    }

    /// A clean stop begins.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping: withdrawing VIPs, then stopping the workers");
    }
}

/// STATUS while the workers on `stalled` make no progress.
fn stuck_status(stalled: &[LcoreId]) -> String {
    let which: Vec<String> = stalled.iter().map(|l| l.to_string()).collect();
    format!("worker on {} stuck: watchdog withheld", which.join(", "))
}

pub fn polls(workers: &[(LcoreId, Arc<WorkerStats>)]) -> Vec<u64> {
    workers.iter().map(|(_, w)| w.polls.get()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker whose counter does not move for STALL_AFTER is stuck, said
    /// once, and said again when it moves (found in audit: the VIPs stayed
    /// announced over a stuck worker).
    #[test]
    fn a_worker_that_stops_polling_is_stuck_until_it_polls_again() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(vec![10, 10], t0);
        assert_eq!(w.check(&[20, 20], t0 + STALL_AFTER / 2), None, "too soon");
        assert_eq!(w.check(&[30, 20], t0 + STALL_AFTER), None, "both moved");
        assert_eq!(w.check(&[40, 20], t0 + STALL_AFTER * 2), Some(vec![1]));
        assert_eq!(w.check(&[50, 20], t0 + STALL_AFTER * 3), None, "said once");
        assert_eq!(w.check(&[60, 21], t0 + STALL_AFTER * 4), Some(vec![]));
    }

    /// A socket systemd would listen on, in a folder of its own (removed
    /// when dropped), and what arrived there.
    struct Socket {
        dir: std::path::PathBuf,
        path: std::path::PathBuf,
        listener: UnixDatagram,
    }

    impl Socket {
        fn new(tag: &str) -> Socket {
            let dir = std::env::temp_dir().join(format!("lb-notify-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify.sock");
            let listener = UnixDatagram::bind(&path).unwrap();
            listener.set_nonblocking(true).unwrap();
            Socket {
                dir,
                path,
                listener,
            }
        }

        fn notifier(&self) -> Notifier {
            Notifier::new(self.path.to_str().unwrap()).unwrap()
        }

        fn recv_all(&self) -> Vec<String> {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while let Ok(n) = self.listener.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn key(port: u16) -> RealKey {
        RealKey {
            service: "web".into(),
            address: "198.18.0.11".parse().unwrap(),
            port,
        }
    }

    /// One service with two reals, both up.
    fn snapshot() -> Snapshot {
        let config = Config::parse(
            r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge"]
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[[services.reals]]
address = "198.18.0.11"
[[services.reals]]
address = "198.18.0.12"
"#,
        )
        .unwrap();
        let mut ids = lb_core::snapshot::Ids::default();
        Snapshot::compile(&config, &[], 3, &mut ids, |_, _, _| true).unwrap()
    }

    #[test]
    fn the_status_says_what_runs() {
        assert_eq!(
            running_status(&snapshot(), 2),
            "running: generation 3, 1 service(s), 2 of 2 real(s) up, 2 worker(s)"
        );
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("lb-notify-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        n.send("READY=1\nSTATUS=running").unwrap();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=running");

        let name = format!("lb-notify-unit-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.send("WATCHDOG=1").unwrap();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found in review: a socket that never waited lost READY=1 to a queue
    /// full for a moment, and nothing sent it again.
    #[test]
    fn ready_waits_for_room_in_a_full_queue() {
        let dir = std::env::temp_dir().join(format!("lb-notify-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let mut queued = 0;
        while filler.send_to(b"X=1", &path).is_ok() {
            queued += 1;
            assert!(queued < 100_000, "the queue never filled");
        }
        let mut sd = Systemd::new(Some(Notifier::new(path.to_str().unwrap()).unwrap()), None);
        let workers: Vec<(LcoreId, Arc<WorkerStats>)> =
            vec![(LcoreId(1), Arc::new(WorkerStats::default()))];
        let snap = snapshot();
        sd.wait_for_first_checks([], Duration::from_secs(60));
        // systemd reads again a moment later.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            listener
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while let Ok(n) = listener.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        });
        sd.tick(&workers, &snap);
        let got = reader.join().unwrap();
        assert!(
            got.iter().any(|m| m.starts_with("READY=1\n")),
            "queue held {queued}; READY=1 never arrived"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_relative_socket_name_is_refused() {
        let e = Notifier::new("run/notify").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_watchdog_pings_at_half_the_asked_time_for_this_process_only() {
        let ms = Duration::from_millis;
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), Some(ms(500)));
        assert_eq!(
            watchdog_interval(Some("1000000"), Some("7"), 7),
            Some(ms(500))
        );
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn the_monotonic_clock_moves_with_instant() {
        let (a, t) = (monotonic_usec(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, elapsed) = (monotonic_usec(), t.elapsed());
        let diff = Duration::from_micros(b - a);
        assert!(
            diff >= Duration::from_millis(19) && diff <= elapsed + Duration::from_millis(1),
            "{diff:?} vs {elapsed:?}"
        );
    }

    #[test]
    fn a_worker_whose_polls_stand_still_is_stalled() {
        let mut p = Progress::new(vec![10, 20]);
        assert!(p.stalled(&[11, 25]).is_empty());
        assert_eq!(p.stalled(&[12, 25]), vec![1]);
        assert_eq!(p.stalled(&[12, 25]), vec![0, 1]);
        assert!(p.stalled(&[13, 26]).is_empty(), "progress again");
    }

    #[test]
    fn ready_waits_for_every_first_check_or_the_deadline() {
        let t0 = Instant::now();
        let mut f = FirstChecks::new([key(80), key(81)], t0, Duration::from_secs(5));
        assert!(!f.done(t0));
        f.reported(&key(80));
        f.reported(&key(80));
        assert_eq!(f.counts(), (1, 2));
        assert!(!f.done(t0 + Duration::from_secs(4)));
        assert!(f.done(t0 + Duration::from_secs(5)), "the wait is bounded");
        f.reported(&key(81));
        assert!(f.done(t0));
        let none = FirstChecks::new([], t0, Duration::from_secs(5));
        assert!(none.done(t0), "nothing checked: ready at once");
    }

    #[test]
    fn a_stuck_worker_stops_the_pings_and_progress_resumes_them() {
        let socket = Socket::new("wd");
        let recv_all = || socket.recv_all();
        let n = socket.notifier();
        let mut sd = Systemd::new(Some(n), Some(Duration::from_millis(10)));
        let workers: Vec<(LcoreId, Arc<WorkerStats>)> = (1..=2)
            .map(|i| (LcoreId(i), Arc::new(WorkerStats::default())))
            .collect();
        let snap = snapshot();
        sd.wait_for_first_checks([key(80)], Duration::from_secs(60));
        sd.tick(&workers, &snap);
        assert!(recv_all()[0].contains("waiting for the first health checks (0 of 1"));
        sd.reported(&key(80));
        sd.tick(&workers, &snap);
        assert!(recv_all()[0].starts_with("READY=1\nSTATUS=running: generation"));

        let turn = |sd: &mut Systemd, advance: &[usize]| {
            for i in advance {
                workers[*i].1.polls.add(1);
            }
            std::thread::sleep(Duration::from_millis(12));
            sd.tick(&workers, &snap);
        };
        turn(&mut sd, &[0, 1]);
        assert_eq!(recv_all(), vec!["WATCHDOG=1"]);
        turn(&mut sd, &[0]);
        let got = recv_all();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("lcore 2 stuck"), "{got:?}");
        turn(&mut sd, &[0]);
        assert!(recv_all().is_empty(), "no ping while a worker is stuck");
        turn(&mut sd, &[0, 1]);
        let got = recv_all();
        assert_eq!(
            got.last().map(String::as_str),
            Some("WATCHDOG=1"),
            "{got:?}"
        );

        sd.reloading();
        let got = recv_all();
        assert!(got[0].starts_with("RELOADING=1\n") && got[0].contains("\nMONOTONIC_USEC="));
        sd.reloaded(false, &snap, 2);
        assert!(recv_all()[0].starts_with("READY=1\nSTATUS=reload refused"));

        // Found in audit: a reload while a worker was stuck said
        // "running" again, and nothing put the stuck status back.
        turn(&mut sd, &[0]);
        assert!(recv_all()[0].contains("lcore 2 stuck"));
        sd.reloading();
        recv_all();
        sd.reloaded(true, &snap, 2);
        let got = recv_all();
        assert_eq!(
            got,
            vec!["READY=1\nSTATUS=worker on lcore 2 stuck: watchdog withheld"],
            "{got:?}"
        );
        turn(&mut sd, &[0]);
        assert!(recv_all().is_empty(), "still no ping, status unchanged");
        sd.stopping();
        assert!(recv_all()[0].starts_with("STOPPING=1\n"));
    }

    /// Found in audit: a reload refused before READY was never said, and
    /// READY waited (until its deadline) for a real the reload removed.
    #[test]
    fn a_reload_before_ready_is_remembered_and_drops_removed_reals() {
        let socket = Socket::new("early");
        let recv_all = || socket.recv_all();
        let n = socket.notifier();
        let mut sd = Systemd::new(Some(n), None);
        let workers: Vec<(LcoreId, Arc<WorkerStats>)> =
            vec![(LcoreId(1), Arc::new(WorkerStats::default()))];
        let snap = snapshot();
        sd.wait_for_first_checks([key(80), key(81)], Duration::from_secs(60));
        sd.reported(&key(80));
        sd.tick(&workers, &snap);
        assert!(recv_all()[0].contains("(1 of 2 real(s) checked)"));
        // The reload removed the real on port 81, and was refused anyway
        // for something else: nothing is said before READY.
        sd.reloading();
        sd.rechecked(&BTreeSet::from([key(80)]), &BTreeSet::new());
        sd.reloaded(false, &snap, 1);
        assert!(recv_all().is_empty());
        sd.tick(&workers, &snap);
        let got = recv_all();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("READY=1\nSTATUS=reload refused (see the log), still running"),
            "{got:?}"
        );
    }

    #[test]
    fn a_reload_before_ready_changes_which_first_checks_are_awaited() {
        let t0 = Instant::now();
        let mut f = FirstChecks::new([key(80), key(81)], t0, Duration::from_secs(5));
        f.reported(&key(80));
        let none = BTreeSet::new();
        f.rechecked(&BTreeSet::from([key(80)]), &none);
        assert_eq!(f.counts(), (1, 1));
        assert!(f.done(t0));
        // A real the reload added is waited for.
        f.rechecked(
            &BTreeSet::from([key(80), key(82)]),
            &BTreeSet::from([key(82)]),
        );
        assert_eq!(f.counts(), (1, 2));
        assert!(!f.done(t0));
        f.reported(&key(82));
        assert!(f.done(t0));
        // A real whose check changed is waited for again, although the
        // old check reported (found in review).
        f.rechecked(
            &BTreeSet::from([key(80), key(82)]),
            &BTreeSet::from([key(80)]),
        );
        assert_eq!(f.counts(), (1, 2));
        assert!(!f.done(t0));
        f.reported(&key(80));
        assert!(f.done(t0));
    }
}
