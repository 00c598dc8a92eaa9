//! Health checks, as keepalived gives LVS users. Each checked real has a
//! thread of its own that checks it every `interval` (so a slow or hanging
//! real never delays another), bounded by `timeout`, and reports to the
//! control thread, which applies rise/fall hysteresis and, on a change,
//! publishes a new snapshot. Checks use the host's kernel network stack.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lb_config::{Config, HealthCheckConfig, HealthCheckKind};

/// Which real of which service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealKey {
    pub service: String,
    pub address: IpAddr,
    pub port: u16,
}

impl RealKey {
    /// What is checked: `198.18.0.11:8080`, `[2001:2::11]:80`.
    pub fn target(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// The `real` label of the metrics and the status: `target` as text.
    pub fn label(&self) -> String {
        self.target().to_string()
    }
}

impl fmt::Display for RealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.target())
    }
}

/// What one check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect.
    Tcp,
    /// An HTTP/1.1 GET of `path`, expecting `status`.
    Http { path: String, status: u16 },
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// The `result` label value.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure(_) => "failure",
        }
    }
}

/// Runs one check of `target`, finished (one way or the other) within
/// `timeout`.
pub fn check_once(probe: &Probe, target: SocketAddr, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut stream = match TcpStream::connect_timeout(&target, timeout) {
        Ok(s) => s,
        Err(e) => return Outcome::Failure(format!("connect: {e}")),
    };
    let (path, expect) = match probe {
        Probe::Tcp => return Outcome::Success,
        Probe::Http { path, status } => (path, *status),
    };
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Outcome::Failure(format!("{what}: timed out after {timeout:?}")))
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lb-appliance-health\r\nConnection: close\r\n\r\n",
        host(target)
    );
    match left("send") {
        Ok(d) => {
            let _ = stream.set_write_timeout(Some(d));
        }
        Err(o) => return o,
    }
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Outcome::Failure(format!("send: {e}"));
    }
    // Read until the status line is complete.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        match left("response") {
            Ok(d) => {
                let _ = stream.set_read_timeout(Some(d));
            }
            Err(o) => return o,
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A signal landed on this thread (net_tap's SIGIO, for one,
            // with a kernel interface): not the real's fault; the deadline
            // still bounds the retry.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Outcome::Failure(format!("response: timed out after {timeout:?}"))
            }
            Err(e) => return Outcome::Failure(format!("response: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => {
            if code == expect {
                Outcome::Success
            } else {
                Outcome::Failure(format!("HTTP status {code}, expected {expect}"))
            }
        }
        _ => Outcome::Failure(format!(
            "not an HTTP response: {:?}",
            line.chars().take(60).collect::<String>()
        )),
    }
}

fn host(target: SocketAddr) -> String {
    match target.ip() {
        IpAddr::V4(a) => format!("{a}:{}", target.port()),
        IpAddr::V6(a) => format!("[{a}]:{}", target.port()),
    }
}

/// Rise/fall hysteresis: `rise` successes in a row to become up, `fall`
/// failures in a row to become down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    pub up: bool,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl Hysteresis {
    /// A real under a check starts down.
    pub fn new(rise: u32, fall: u32) -> Hysteresis {
        Hysteresis {
            up: false,
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// Keeps the state and counts, with new thresholds (after a reload).
    pub fn retune(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Records a result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.up && self.successes >= self.rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.up && self.failures >= self.fall {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

/// One finished check, reported to the control thread.
#[derive(Debug, Clone)]
pub struct Report {
    pub real: RealKey,
    pub outcome: Outcome,
}

/// What a checker thread is running.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
}

struct Running {
    spec: Spec,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// The set of checker threads, one per checked real.
pub struct HealthCheckers {
    running: HashMap<RealKey, Running>,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
}

impl Default for HealthCheckers {
    fn default() -> Self {
        Self::new()
    }
}

/// The check of a service, if it has one that probes (kind `none` does not).
pub fn probe_of(h: &HealthCheckConfig) -> Option<Probe> {
    match h.kind {
        HealthCheckKind::Tcp => Some(Probe::Tcp),
        HealthCheckKind::Http => Some(Probe::Http {
            path: h.path.clone(),
            status: h.expect_status,
        }),
        HealthCheckKind::None => None,
    }
}

impl HealthCheckers {
    pub fn new() -> HealthCheckers {
        let (reports_tx, reports) = mpsc::channel();
        HealthCheckers {
            running: HashMap::new(),
            reports_tx,
            reports,
        }
    }

    /// Makes the running checks match `config`: starts checks for new
    /// reals, restarts those whose check changed, stops the rest.
    pub fn sync(&mut self, config: &Config) {
        let mut wanted: HashMap<RealKey, Spec> = HashMap::new();
        for s in &config.services {
            let Some(h) = &s.health_check else { continue };
            let Some(probe) = probe_of(h) else { continue };
            for r in &s.reals {
                let key = RealKey {
                    service: s.name.clone(),
                    address: r.address,
                    port: r.port,
                };
                wanted.insert(
                    key,
                    Spec {
                        probe: probe.clone(),
                        interval: h.interval,
                        timeout: h.timeout,
                    },
                );
            }
        }
        let stale: Vec<RealKey> = self
            .running
            .iter()
            .filter(|(k, r)| wanted.get(*k) != Some(&r.spec))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(r) = self.running.remove(&k) {
                let _ = r.stop.send(());
                // The thread ends after its current check (at most `timeout`);
                // it is not waited for here so a hanging real cannot stall a
                // reload. Its last report is ignored if the real is gone.
                drop(r.thread);
            }
        }
        for (k, spec) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            let (stop_tx, stop_rx) = mpsc::channel();
            let reports = self.reports_tx.clone();
            let key = k.clone();
            let s = spec.clone();
            let thread = std::thread::Builder::new()
                .name(format!("health {}", k.target()))
                .spawn(move || run(key, s, stop_rx, reports))
                .expect("spawn a health-check thread");
            self.running.insert(
                k,
                Running {
                    spec,
                    stop: stop_tx,
                    thread,
                },
            );
        }
    }

    /// Reports that arrived since the last call.
    pub fn reports(&self) -> impl Iterator<Item = Report> + '_ {
        self.reports.try_iter()
    }

    /// Waits up to `timeout` for one report.
    pub fn next_report(&self, timeout: Duration) -> Option<Report> {
        self.reports.recv_timeout(timeout).ok()
    }

    pub fn checked(&self) -> impl Iterator<Item = &RealKey> {
        self.running.keys()
    }

    /// Stops every checker and waits for them (at most one `timeout`).
    pub fn stop(&mut self) {
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(());
            let _ = r.thread.join();
        }
    }
}

impl Drop for HealthCheckers {
    fn drop(&mut self) {
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(());
        }
    }
}

fn run(key: RealKey, spec: Spec, stop: Receiver<()>, reports: Sender<Report>) {
    let target = key.target();
    loop {
        let started = Instant::now();
        let outcome = check_once(&spec.probe, target, spec.timeout);
        if reports
            .send(Report {
                real: key.clone(),
                outcome,
            })
            .is_err()
        {
            return;
        }
        let next = started + spec.interval;
        let wait = next.saturating_duration_since(Instant::now());
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_needs_rise_successes_and_fall_failures_in_a_row() {
        let mut h = Hysteresis::new(2, 3);
        assert!(!h.up, "starts down");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None, "a success resets the failures");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.record(false), None);
    }

    #[test]
    fn a_real_is_labelled_and_reached_as_a_socket_address() {
        let key = |address: &str, port| RealKey {
            service: "web".into(),
            address: address.parse().unwrap(),
            port,
        };
        let k = key("2001:2::11", 80);
        assert_eq!(k.label(), "[2001:2::11]:80");
        assert_eq!(k.to_string(), "web/[2001:2::11]:80");
        assert_eq!(k.target(), "[2001:2::11]:80".parse().unwrap());
        let k = key("198.18.0.11", 8080);
        assert_eq!(k.label(), "198.18.0.11:8080");
        assert_eq!(k.to_string(), "web/198.18.0.11:8080");
    }

    /// A TCP check of an IPv6 real goes through the host's IPv6 stack
    /// (skipped where the host has no IPv6 loopback).
    #[test]
    fn a_tcp_check_reaches_an_ipv6_real() {
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            return;
        };
        let target = listener.local_addr().unwrap();
        let outcome = check_once(&Probe::Tcp, target, Duration::from_secs(1));
        assert_eq!(outcome, Outcome::Success);
    }
}
