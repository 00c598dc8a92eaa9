//! Health checks, as keepalived gives LVS users. Each checked real has a
//! thread of its own that checks it every `interval` (so a slow or hanging
//! real never delays another), bounded by `timeout`, and reports to the
//! control thread, which applies rise/fall hysteresis and, on a change,
//! publishes a new snapshot. Checks use the host's kernel network stack;
//! a script check runs the operator's program, as keepalived's MISC_CHECK.
//!
//! Nothing here waits on a real without a bound: a stop signals every
//! checker, then waits for them all together for at most [`STOP_WAIT`]
//! and leaves behind those still inside a hanging check (the process is
//! exiting). A checker thread that cannot be started (out of threads or
//! memory) is counted as a failed check and tried again an interval later.
#![deny(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lb_config::{Config, HealthCheckConfig, HealthCheckKind, ScriptUser};

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
    /// An HTTP/1.1 GET of `path`, expecting `status`, with `host` as the
    /// `Host` header (None: the real's `address:port`).
    Http {
        path: String,
        status: u16,
        host: Option<String>,
    },
    /// A program and its arguments (`command`), run without a shell;
    /// exit status 0 is success; as `user` if given. See [`run_script`].
    Script {
        command: Vec<String>,
        user: Option<ScriptUser>,
    },
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

/// Runs one check of `real`, finished (one way or the other) within
/// `timeout` (a script: within `timeout` and the moment it takes to kill
/// and reap it).
pub fn check_once(probe: &Probe, real: &RealKey, timeout: Duration) -> Outcome {
    match check(probe, real, timeout, None) {
        Some(o) => o,
        None => Outcome::Failure("stopped".into()),
    }
}

/// [`check_once`] for a checker thread: a script under way is killed (its
/// group, and reaped) as soon as `stop` says so or its sender is gone,
/// and then there is no outcome. The other checks are short enough
/// (`timeout` at most 10 s, and nothing is left running when they end)
/// to be waited for or left behind by a stop.
fn check(
    probe: &Probe,
    real: &RealKey,
    timeout: Duration,
    stop: Option<&Receiver<()>>,
) -> Option<Outcome> {
    if let Probe::Script { command, user } = probe {
        return run_script(command, user.as_ref(), real, timeout, stop);
    }
    Some(probe_network(probe, real, timeout))
}

/// A TCP or HTTP check.
fn probe_network(probe: &Probe, real: &RealKey, timeout: Duration) -> Outcome {
    let target = real.target();
    let deadline = Instant::now() + timeout;
    let mut stream = match TcpStream::connect_timeout(&target, timeout) {
        Ok(s) => s,
        Err(e) => return Outcome::Failure(format!("connect: {e}")),
    };
    let (path, expect, host) = match probe {
        Probe::Http { path, status, host } => (path, *status, host),
        Probe::Tcp | Probe::Script { .. } => return Outcome::Success,
    };
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Outcome::Failure(format!("{what}: timed out after {timeout:?}")))
    };
    // `host` and `path` were validated (no CR, LF, spaces): they cannot
    // end the request line or the header early.
    let host = match host {
        Some(h) => h.clone(),
        None => default_host(target),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-appliance-health\r\nConnection: close\r\n\r\n"
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
    let buf = match read_status_line(&mut stream, left, timeout) {
        Ok(b) => b,
        Err(o) => return o,
    };
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    match status_code(line) {
        Some(code) => {
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

/// The status code of an HTTP/1.x status line (RFC 9112 section 4:
/// `HTTP/1.<digit>`, a space, exactly three digits, then a space and the
/// reason or nothing). Nothing looser: `HTTP/1.1 +200` or `0200` or
/// `HTTP/9 200` is not a 200 (found in review: they were taken for one).
fn status_code(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let (minor, rest) = rest.split_at_checked(1)?;
    let rest = rest.strip_prefix(' ')?;
    let (code, rest) = rest.split_at_checked(3)?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (digits(minor) && digits(code) && (rest.is_empty() || rest.starts_with(' ')))
        .then(|| code.parse().ok())
        .flatten()
}

/// A stream whose reads can be given a timeout: a TCP connection, or a
/// test's stand-in.
trait TimedRead: Read {
    fn set_read_timeout_to(&mut self, d: Duration);
}

impl TimedRead for TcpStream {
    fn set_read_timeout_to(&mut self, d: Duration) {
        let _ = self.set_read_timeout(Some(d));
    }
}

/// The most interim (1xx) responses read before the final one.
const MAX_INTERIM: usize = 8;

/// The longest line of a response head read.
const MAX_LINE: usize = 4096;

/// Reads the final status line, with the line feed that ends it (with or
/// without the carriage return before it, as RFC 9112 section 2.2 lets a
/// recipient accept), each read bounded by what `left` says remains of
/// the check's `timeout`. Interim responses (1xx but 101: `100 Continue`,
/// `103 Early Hints`) are skipped with their header lines, as RFC 9110
/// section 15.2 asks of a client (found in audit: a real that sent early
/// hints before its 200 was taken down). A line that does not end (the
/// connection closed, or 4 KiB without a line feed) is no status line
/// (found in audit: `HTTP/1.1 200` and a close passed).
fn read_status_line(
    stream: &mut impl TimedRead,
    left: impl Fn(&str) -> Result<Duration, Outcome>,
    timeout: Duration,
) -> Result<Vec<u8>, Outcome> {
    let mut buf = Vec::with_capacity(256);
    for _ in 0..=MAX_INTERIM {
        let line = read_line(stream, &mut buf, &left, timeout, "status line")?;
        match status_code(String::from_utf8_lossy(&line).trim_end()) {
            Some(code) if (100..200).contains(&code) && code != 101 => loop {
                let header = read_line(stream, &mut buf, &left, timeout, "interim response")?;
                if header.trim_ascii().is_empty() {
                    break;
                }
            },
            _ => return Ok(line),
        }
    }
    Err(Outcome::Failure(format!(
        "response: more than {MAX_INTERIM} interim (1xx) responses"
    )))
}

/// The next line of `stream` (`buf`: what was read and not used yet),
/// with its line feed.
fn read_line(
    stream: &mut impl TimedRead,
    buf: &mut Vec<u8>,
    left: &impl Fn(&str) -> Result<Duration, Outcome>,
    timeout: Duration,
    what: &str,
) -> Result<Vec<u8>, Outcome> {
    let mut chunk = [0u8; 256];
    let mut searched = 0;
    loop {
        if let Some(end) = buf[searched..].iter().position(|&b| b == b'\n') {
            return Ok(buf.drain(..=searched + end).collect());
        }
        searched = buf.len();
        if buf.len() >= MAX_LINE {
            return Err(Outcome::Failure(format!(
                "response: no end to the {what} within {MAX_LINE} bytes"
            )));
        }
        stream.set_read_timeout_to(left("response")?);
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Outcome::Failure(format!(
                    "response: the connection closed before the end of the {what}"
                )))
            }
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
                return Err(Outcome::Failure(format!(
                    "response: timed out after {timeout:?}"
                )))
            }
            Err(e) => return Err(Outcome::Failure(format!("response: {e}"))),
        }
    }
}

/// The `Host` header without `host`: the real's address and port.
fn default_host(target: SocketAddr) -> String {
    match target.ip() {
        IpAddr::V4(a) => format!("{a}:{}", target.port()),
        IpAddr::V6(a) => format!("[{a}]:{}", target.port()),
    }
}

/// How much of a script's stderr is kept for the last error: its first
/// line, cut here. The rest is read and thrown away, so the script never
/// blocks on a full pipe.
const SCRIPT_STDERR_KEPT: usize = 200;

/// Runs a script check of `real`: `command[0]` with the other words as its
/// arguments, without a shell, stdin and stdout on /dev/null, the real in
/// its environment (`LB_REAL_ADDRESS`, `LB_REAL_PORT`, `LB_SERVICE`, beside
/// the appliance's own but for systemd's `NOTIFY_SOCKET` and watchdog
/// variables), in a process group of its own. Exit status 0 is
/// success; anything else, a signal, or running past `timeout` is a
/// failure. When the script ends, or at the timeout, the whole group gets
/// SIGKILL (what the script left running in the background with it, as
/// keepalived does at a timeout), and then the script is reaped: no
/// zombie, no stray checker. (A child that left the group with `setsid`
/// escapes this, as it escapes any supervisor without cgroups; systemd's
/// `KillMode=control-group` still ends it at stop.) The first line of its
/// stderr goes into the failure (the last error of `lb-appliance status`);
/// stderr is read without blocking on the checker's own thread, so a
/// child that keeps the pipe open holds no thread. With `stop`, the
/// script is killed the same way when the checker is told to stop (a stop
/// of the appliance, or a reload that removed the real or changed its
/// check), and there is no outcome (None). With `user`, the program runs
/// with its uid and primary gid and no supplementary group (the standard
/// library drops them, `setgroups(0)`, when it sets the uid and is not
/// given groups; the appliance, root, may).
pub fn run_script(
    command: &[String],
    user: Option<&ScriptUser>,
    real: &RealKey,
    timeout: Duration,
    stop: Option<&Receiver<()>>,
) -> Option<Outcome> {
    let Some((program, args)) = command.split_first() else {
        return Some(Outcome::Failure("no command to run".into()));
    };
    let deadline = Instant::now() + timeout;
    // The script gets no descriptor of the appliance's but its three
    // (DPDK opens its own without close-on-exec).
    lb_dataplane::dpdk::close_on_exec_from_3();
    // Validation refuses a program with a control or invisible character;
    // the failure text guards itself too (found in audit).
    let shown = lb_config::shown(program);
    let spawn = |cmd: &mut Command| {
        if let Some(u) = user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd.env("LB_REAL_ADDRESS", real.address.to_string())
            .env("LB_REAL_PORT", real.port.to_string())
            .env("LB_SERVICE", &real.service)
            // Not the appliance's systemd channels: a script must not be
            // able to notify or feed the watchdog for it.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
    };
    let mut spawned = spawn(Command::new(program).args(args));
    // A program the kernel cannot execute (neither a `#!` line nor a
    // binary's header) goes to `/bin/sh`, as glibc's `execvp` does with a
    // `user` (fork and exec); without one the standard library spawns with
    // `posix_spawnp`, which does not (found in review: every such check
    // failed with "Exec format error" as root, and passed as a user).
    if matches!(&spawned, Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOEXEC.raw_os_error()))
    {
        spawned = spawn(Command::new("/bin/sh").arg(program).args(args));
    }
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let who = user.map_or(String::new(), |u| format!(" as user {}", u.name));
            return Some(Outcome::Failure(format!("running {shown}{who}: {e}")));
        }
    };
    let mut stderr = StderrHead::start(&mut child);
    let waited = wait_until(&mut child, deadline, stop, stderr.as_mut());
    // Ended or not, the group goes, then the script is reaped (its exit
    // status is kept until then).
    let status = kill_and_reap(&mut child);
    let said = stderr.map(StderrHead::said).unwrap_or_default();
    let status = match (waited, status) {
        (Ok(Waited::Exited), Some(status)) => status,
        (Ok(Waited::Exited), None) => {
            return Some(Outcome::Failure(format!(
                "{shown}: its exit status was lost"
            )))
        }
        (Ok(Waited::TimedOut), _) => {
            return Some(Outcome::Failure(format!(
                "{shown}: timed out after {timeout:?}, killed{}",
                said_suffix(&said)
            )));
        }
        (Ok(Waited::Stopped), _) => return None,
        (Err(e), _) => {
            return Some(Outcome::Failure(format!("{shown}: waiting for it: {e}")));
        }
    };
    if status.success() {
        return Some(Outcome::Success);
    }
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    };
    Some(Outcome::Failure(format!(
        "{shown}: {how}{}",
        said_suffix(&said)
    )))
}

fn said_suffix(said: &str) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    }
}

/// How waiting for a script ended.
enum Waited {
    /// It exited; it is not reaped yet.
    Exited,
    TimedOut,
    /// The checker was told to stop.
    Stopped,
}

/// Waits for `child` to end (without reaping it) until `deadline`, or until
/// `stop` says so, reading what arrived on its stderr meanwhile. Polls
/// (from 1 ms, doubling to 20 ms; between polls it waits on `stop`): the
/// standard library has no wait with a timeout, and a check's timing needs
/// no finer grain.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    stop: Option<&Receiver<()>>,
    mut stderr: Option<&mut StderrHead>,
) -> std::io::Result<Waited> {
    use rustix::process::{waitid, Pid, WaitId, WaitidOptions};
    let pid = Pid::from_child(child);
    let exited = WaitidOptions::EXITED | WaitidOptions::NOWAIT | WaitidOptions::NOHANG;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(s) = stderr.as_deref_mut() {
            s.drain();
        }
        // Ended, and left unreaped: its PID, and with it its group's id,
        // stays its own until `kill_and_reap`.
        if waitid(WaitId::Pid(pid), exited)?.is_some() {
            return Ok(Waited::Exited);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Waited::TimedOut);
        }
        let nap = pause.min(deadline - now);
        match stop {
            Some(stop) => match stop.recv_timeout(nap) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return Ok(Waited::Stopped),
            },
            None => std::thread::sleep(nap),
        }
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILL to the script's process group (its id is the script's PID:
/// `process_group(0)`), then to the script itself should that fail, then
/// reaps it and gives its exit status. The script is not reaped before
/// this, so its PID, and with it the group id, cannot have been reused by
/// another process. A script that already exited keeps its status: the
/// signal only ends what it left behind.
fn kill_and_reap(child: &mut Child) -> Option<ExitStatus> {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::Kill);
    let _ = child.kill();
    child.wait().ok()
}

/// A script's stderr, read without blocking: the first
/// [`SCRIPT_STDERR_KEPT`] bytes are kept, the rest read and dropped, so
/// that the script never blocks on a full pipe for long.
struct StderrHead {
    pipe: std::process::ChildStderr,
    kept: Vec<u8>,
    open: bool,
}

impl StderrHead {
    /// None if the pipe is missing or cannot be made non-blocking (the
    /// pipe is then closed, and a script that writes to stderr gets
    /// EPIPE).
    fn start(child: &mut Child) -> Option<StderrHead> {
        let pipe = child.stderr.take()?;
        rustix::io::ioctl_fionbio(&pipe, true).ok()?;
        Some(StderrHead {
            pipe,
            kept: Vec::with_capacity(SCRIPT_STDERR_KEPT),
            open: true,
        })
    }

    /// Reads what is there now, 64 KiB at most: a writer faster than the
    /// reads (one that left the script's process group with `setsid`,
    /// say, which the kill does not reach) must not keep the checker here
    /// past its timeout, or for ever once the script ended (found in
    /// audit).
    fn drain(&mut self) {
        let mut chunk = [0u8; 512];
        let mut budget = 64usize << 10;
        while self.open && budget > 0 {
            match self.pipe.read(&mut chunk) {
                Ok(0) => self.open = false,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let room = SCRIPT_STDERR_KEPT.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Nothing more for now (or the pipe broke).
                Err(_) => break,
            }
        }
    }

    /// What it said (the script has ended: all it wrote is in the pipe):
    /// its first non-empty line, as text. The pipe is closed.
    fn said(mut self) -> String {
        self.drain();
        String::from_utf8_lossy(&self.kept)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .chars()
            // Printed in `status` and logs: nothing that reorders or hides
            // text there either (found in audit: bidirectional and
            // zero-width characters passed, as names no longer may).
            .filter(|&c| !lb_config::unsafe_to_print(c))
            .collect()
    }
}

/// Rise/fall hysteresis: `rise` successes in a row to become up, `fall`
/// failures in a row to become down. Before its first result a real is in
/// its `initial` state, which is an assumption, not an observation: a real
/// assumed up that fails its very first check goes down at once (as
/// keepalived's checkers do without `alpha`, "one failure is enough
/// initially"), so that a dead real is not given flows for `fall`
/// intervals; a real assumed down needs its `rise` successes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    pub up: bool,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
    /// Whether any result was recorded yet.
    checked: bool,
}

impl Hysteresis {
    /// A real under a check, in its `initial` state (`up` or down).
    pub fn new(rise: u32, fall: u32, up: bool) -> Hysteresis {
        Hysteresis {
            up,
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
            checked: false,
        }
    }

    /// Whether a check has answered for the real yet (its state is no
    /// longer only its `initial` one).
    pub fn answered(&self) -> bool {
        self.checked
    }

    /// Keeps the state and counts, with new thresholds (after a reload).
    pub fn retune(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Records a result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        let first = !std::mem::replace(&mut self.checked, true);
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
            if self.up && (first || self.failures >= self.fall) {
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
    /// The check that gave it: after a reload that changed the real's
    /// check, the old checker's last word is not about the new check.
    pub probe: Probe,
    pub outcome: Outcome,
    /// Which checker gave it ([`HealthCheckers::is_live`]).
    pub checker: u64,
}

/// What a checker thread is running.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
}

struct Running {
    /// Its number, in its reports.
    id: u64,
    spec: Spec,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// How long a stop waits for all checkers together: a check that hangs
/// until its `timeout` (up to a minute) must not hold a stop past the
/// unit's `TimeoutStopSec`.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// The stack of a checker thread: it connects, sends a short request and
/// reads a status line into a small buffer. Small, so that many reals cost
/// little address space.
const CHECKER_STACK: usize = 256 * 1024;

/// The set of checker threads, one per checked real.
pub struct HealthCheckers {
    running: HashMap<RealKey, Running>,
    /// Checks whose thread could not be started, with when to try again.
    waiting: HashMap<RealKey, (Spec, Instant, u64)>,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
    /// The stack size of checker threads (a test makes it impossible).
    stack: usize,
    /// Checkers told to stop (by `signal_stop`) and not yet waited for,
    /// and when they were told.
    stopping: Vec<(RealKey, JoinHandle<()>)>,
    stop_since: Option<Instant>,
    /// The number the next checker started gets.
    next_id: u64,
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
            host: h.host.clone(),
        }),
        HealthCheckKind::Script => Some(Probe::Script {
            command: h.command.clone(),
            user: h.user.clone(),
        }),
        HealthCheckKind::None => None,
    }
}

impl HealthCheckers {
    pub fn new() -> HealthCheckers {
        let (reports_tx, reports) = mpsc::channel();
        HealthCheckers {
            running: HashMap::new(),
            waiting: HashMap::new(),
            reports_tx,
            reports,
            stack: CHECKER_STACK,
            stopping: Vec::new(),
            stop_since: None,
            next_id: 0,
        }
    }

    /// Whether `r` comes from the checker of its real that runs now (or
    /// from the one that could not be started, found in review: any report
    /// counted then): not from one a reload replaced (found in audit: a reload that changed only the interval
    /// or the timeout restarted the checker, and the old one's last result
    /// and the new one's first both counted, one short of `rise` or
    /// `fall`).
    pub fn is_live(&self, r: &Report) -> bool {
        match self.running.get(&r.real) {
            Some(c) => c.id == r.checker,
            // One that could not be started: its own failure report.
            None => self.waiting.get(&r.real).is_some_and(|w| w.2 == r.checker),
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
        self.apply(wanted);
    }

    /// Makes the running checks those of `wanted`.
    fn apply(&mut self, wanted: HashMap<RealKey, Spec>) {
        self.waiting.retain(|k, _| wanted.contains_key(k));
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
            self.waiting.remove(&k);
            self.start(k, spec);
        }
    }

    /// Starts the checker of `key`. If its thread cannot be started, that
    /// counts as a failed check (the real goes down after `fall` of them,
    /// and the error shows in the status), and it is tried again one
    /// `interval` later by [`HealthCheckers::retry`].
    fn start(&mut self, key: RealKey, spec: Spec) {
        let (stop_tx, stop_rx) = mpsc::channel();
        let reports = self.reports_tx.clone();
        let (k, s) = (key.clone(), spec.clone());
        let id = self.next_id;
        self.next_id += 1;
        let spawned = std::thread::Builder::new()
            .name(format!("health {}", key.target()))
            .stack_size(self.stack)
            .spawn(move || run(k, s, id, stop_rx, reports));
        match spawned {
            Ok(thread) => {
                self.running.insert(
                    key,
                    Running {
                        id,
                        spec,
                        stop: stop_tx,
                        thread,
                    },
                );
            }
            Err(e) => {
                log::error!(
                    "health: service {} real {}: cannot start the check thread ({e}); \
                     counted as a failed check, trying again in {:?}",
                    key.service,
                    key.label(),
                    spec.interval
                );
                let _ = self.reports_tx.send(Report {
                    real: key.clone(),
                    probe: spec.probe.clone(),
                    outcome: Outcome::Failure(format!("check thread not started: {e}")),
                    checker: id,
                });
                let again = Instant::now() + spec.interval;
                self.waiting.insert(key, (spec, again, id));
            }
        }
    }

    /// Tries again to start the checks whose thread could not be started,
    /// once their interval has passed. Called by the control loop on every
    /// tick; cheap when nothing waits.
    pub fn retry(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let due: Vec<RealKey> = self
            .waiting
            .iter()
            .filter(|(_, (_, at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some((spec, _, _)) = self.waiting.remove(&k) {
                self.start(k, spec);
            }
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
        self.running.keys().chain(self.waiting.keys())
    }

    /// Tells every checker to stop, without waiting: the stop can go on
    /// with other work while they end, and `stop` waits for them.
    pub fn signal_stop(&mut self) {
        self.waiting.clear();
        self.stop_since.get_or_insert_with(Instant::now);
        for (k, r) in self.running.drain() {
            let _ = r.stop.send(());
            self.stopping.push((k, r.thread));
        }
    }

    /// Stops every checker: signals them all first, then waits for them
    /// together until [`STOP_WAIT`] after they were signalled (here or by
    /// `signal_stop`). A checker still inside a hanging check then is left
    /// behind (it ends at its `timeout`, or with the process). Returns how
    /// many were left behind.
    pub fn stop(&mut self) -> usize {
        self.signal_stop();
        let since = self.stop_since.take().unwrap_or_else(Instant::now);
        let mut threads = std::mem::take(&mut self.stopping);
        let end = since + STOP_WAIT;
        loop {
            let (done, busy): (Vec<_>, Vec<_>) =
                threads.into_iter().partition(|(_, t)| t.is_finished());
            for (_, t) in done {
                let _ = t.join();
            }
            threads = busy;
            if threads.is_empty() || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !threads.is_empty() {
            let names: Vec<String> = threads.iter().take(5).map(|(k, _)| k.to_string()).collect();
            log::warn!(
                "health: {} check(s) still running {STOP_WAIT:?} after the stop, left behind (such as {})",
                threads.len(),
                names.join(", ")
            );
        }
        threads.len()
    }
}

impl Drop for HealthCheckers {
    fn drop(&mut self) {
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(());
        }
    }
}

fn run(key: RealKey, spec: Spec, id: u64, stop: Receiver<()>, reports: Sender<Report>) {
    loop {
        let started = Instant::now();
        let Some(outcome) = check(&spec.probe, &key, spec.timeout, Some(&stop)) else {
            return; // told to stop during a script, which is killed
        };
        if reports
            .send(Report {
                real: key.clone(),
                probe: spec.probe.clone(),
                outcome,
                checker: id,
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

    /// Reads that are interrupted `interrupts` times (as by a signal)
    /// before giving `data` in one piece, then the end.
    struct Interrupted {
        interrupts: usize,
        data: &'static [u8],
        timeouts: Vec<Duration>,
    }

    impl Read for Interrupted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.interrupts > 0 {
                self.interrupts -= 1;
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = self.data.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    impl TimedRead for Interrupted {
        fn set_read_timeout_to(&mut self, d: Duration) {
            self.timeouts.push(d);
        }
    }

    /// The fix for checks that failed with "Interrupted system call" when
    /// net_tap's SIGIO landed on a checker thread: an interrupted read is
    /// read again, each time within what is left of the deadline.
    #[test]
    fn an_interrupted_read_is_retried_within_the_deadline() {
        let mut s = Interrupted {
            interrupts: 3,
            data: b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
            timeouts: Vec::new(),
        };
        let left = |_: &str| Ok(Duration::from_secs(1));
        let line = read_status_line(&mut s, left, Duration::from_secs(1)).unwrap();
        assert!(line.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(
            s.timeouts.len(),
            4,
            "three retries and the read that worked"
        );

        // Interrupted for ever: the deadline ends it, as a timeout.
        let mut s = Interrupted {
            interrupts: usize::MAX,
            data: b"",
            timeouts: Vec::new(),
        };
        let calls = std::cell::Cell::new(0);
        let left = |what: &str| {
            calls.set(calls.get() + 1);
            if calls.get() > 5 {
                Err(Outcome::Failure(format!("{what}: timed out after 1s")))
            } else {
                Ok(Duration::from_millis(200))
            }
        };
        assert_eq!(
            read_status_line(&mut s, left, Duration::from_secs(1)),
            Err(Outcome::Failure("response: timed out after 1s".into()))
        );
        assert_eq!(s.timeouts.len(), 5);
    }

    /// Found in review: `HTTP/1.1 +200`, `0200` and `HTTP/9 200` counted
    /// as 200, and a status line ended by a bare line feed on a connection
    /// left open waited for the timeout.
    #[test]
    fn only_a_well_formed_status_line_gives_a_code() {
        for (line, code) in [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 503 Service Unavailable", Some(503)),
            ("HTTP/1.1 204", Some(204)),
            ("HTTP/1.1 200 ", Some(200)),
            ("HTTP/1.1 +200 OK", None),
            ("HTTP/1.1 0200 OK", None),
            ("HTTP/1.1 20 OK", None),
            ("HTTP/1.1 2000", None),
            ("HTTP/9 200 OK", None),
            ("HTTP/2 200", None),
            ("HTTP/1.x 200 OK", None),
            ("HTTP/1.1  200 OK", None),
            ("http/1.1 200 OK", None),
            ("ICY 200 OK", None),
            ("", None),
        ] {
            assert_eq!(status_code(line), code, "{line:?}");
        }
        // A bare line feed ends the line: no wait for more.
        let mut s = Interrupted {
            interrupts: 0,
            data: b"HTTP/1.1 200 OK\n",
            timeouts: Vec::new(),
        };
        let calls = std::cell::Cell::new(0);
        let left = |what: &str| {
            calls.set(calls.get() + 1);
            if calls.get() > 1 {
                Err(Outcome::Failure(format!("{what}: read again")))
            } else {
                Ok(Duration::from_secs(1))
            }
        };
        let line = read_status_line(&mut s, left, Duration::from_secs(1)).unwrap();
        assert_eq!(line, b"HTTP/1.1 200 OK\n");
    }

    /// Found in audit: a status line cut off by a close passed, and a
    /// real that sent an interim response (early hints) before its 200
    /// was taken down.
    #[test]
    fn a_status_line_must_end_and_interim_responses_are_skipped() {
        let read = |data: &'static [u8]| {
            let mut s = Interrupted {
                interrupts: 0,
                data,
                timeouts: Vec::new(),
            };
            read_status_line(
                &mut s,
                |_| Ok(Duration::from_secs(1)),
                Duration::from_secs(1),
            )
        };
        let e = read(b"HTTP/1.1 200").unwrap_err();
        assert!(
            matches!(&e, Outcome::Failure(m) if m.contains("closed before the end of the status line")),
            "{e:?}"
        );
        assert!(read(&[b'x'; 5000]).is_err(), "no end within 4 KiB");
        assert_eq!(
            read(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\n").unwrap(),
            b"HTTP/1.1 200 OK\r\n"
        );
        // 101 is final (a switch of protocols is no health).
        assert_eq!(
            read(b"HTTP/1.1 101 Switching\r\n\r\n").unwrap(),
            b"HTTP/1.1 101 Switching\r\n"
        );
        // An interim response that never ends, or one too many.
        assert!(read(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n").is_err());
        let many: &'static [u8] = "HTTP/1.1 100 Continue\r\n\r\n".repeat(9).leak().as_bytes();
        let e = read(many).unwrap_err();
        assert!(
            matches!(&e, Outcome::Failure(m) if m.contains("interim")),
            "{e:?}"
        );
    }

    /// `probe` every `interval` seconds, with a 300 ms timeout.
    fn spec_300ms(probe: &Probe, interval: u64) -> Spec {
        Spec {
            probe: probe.clone(),
            interval: Duration::from_secs(interval),
            timeout: Duration::from_millis(300),
        }
    }

    /// Found in audit: a reload that changed only the interval restarted
    /// the checker, and the old one's last result and the new one's first
    /// both counted.
    #[test]
    fn only_the_running_checkers_reports_count() {
        // Accepts (the kernel does) and never answers: each check ends at
        // its timeout.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let real = RealKey {
            service: "web".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: l.local_addr().unwrap().port(),
        };
        let http = Probe::Http {
            path: "/".into(),
            status: 200,
            host: None,
        };
        let spec = |interval: u64| spec_300ms(&http, interval);
        let mut checkers = HealthCheckers::new();
        checkers.apply(HashMap::from([(real.clone(), spec(10))]));
        std::thread::sleep(Duration::from_millis(100));
        checkers.apply(HashMap::from([(real.clone(), spec(20))]));
        let mut reports = Vec::new();
        let end = Instant::now() + Duration::from_millis(1500);
        while reports.len() < 2 && Instant::now() < end {
            reports.extend(checkers.next_report(Duration::from_millis(50)));
        }
        assert_eq!(reports.len(), 2, "the old checker's and the new one's");
        let live: Vec<bool> = reports.iter().map(|r| checkers.is_live(r)).collect();
        assert_eq!(
            live,
            [false, true],
            "the old one's came first and is not counted"
        );
        checkers.stop();
        drop(l);
    }

    /// Found in review: when the new checker's thread could not be started
    /// (it waits for a retry), any report of the real counted, the old
    /// checker's included.
    #[test]
    fn an_old_checkers_report_does_not_count_while_the_new_one_waits() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let real = RealKey {
            service: "web".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: l.local_addr().unwrap().port(),
        };
        let spec = |interval: u64| spec_300ms(&Probe::Tcp, interval);
        let mut checkers = HealthCheckers::new();
        checkers.apply(HashMap::from([(real.clone(), spec(10))]));
        let old = checkers
            .next_report(Duration::from_secs(5))
            .expect("the first check");
        assert!(checkers.is_live(&old));
        // No thread can be had now: the new checker waits.
        checkers.stack = 1 << 50;
        checkers.apply(HashMap::from([(real.clone(), spec(20))]));
        let failed = checkers
            .next_report(Duration::from_secs(1))
            .expect("its own failure");
        assert!(
            matches!(&failed.outcome, Outcome::Failure(m) if m.contains("check thread not started"))
        );
        assert!(
            checkers.is_live(&failed),
            "the waiting one's own failure counts"
        );
        assert!(!checkers.is_live(&old), "the old checker's does not");
        checkers.stop();
        drop(l);
    }

    /// A writer to the script's stderr that escaped its process group
    /// (`setsid`) and writes for ever: the check ends with the script, and
    /// the writer with the pipe. (The audit's concern, a writer faster
    /// than the drain holding the checker, which the 64 KiB cap per drain
    /// answers, did not happen on this machine with or without the cap.)
    #[test]
    fn a_writer_that_never_stops_does_not_hold_the_checker() {
        let real = RealKey {
            service: "web".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 80,
        };
        let command: Vec<String> = ["sh", "-c", "setsid cat /dev/zero >&2 & sleep 0.2; exit 1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run_script(
                &command,
                None,
                &real,
                Duration::from_secs(2),
                None,
            ));
        });
        let outcome = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the checker came back");
        assert!(
            matches!(&outcome, Some(Outcome::Failure(m)) if m.contains("exit status 1")),
            "{outcome:?}"
        );
    }

    /// `user = "nobody"`: the program runs as uid 65534 with its primary
    /// gid and no supplementary group, though the checker's thread has
    /// one (root's group, 0, here: the standard library drops them when
    /// it sets the uid), and is still killed at its timeout (another user's process
    /// group). Without `user` the same script sees root. Needs root.
    #[test]
    fn a_script_runs_as_its_user_without_the_appliances_groups() {
        if !rustix::process::geteuid().is_root() {
            crate::skip_test(
                "a_script_runs_as_its_user_without_the_appliances_groups",
                "needs root to run a program as another user",
            );
            return;
        }
        let real = RealKey {
            service: "web".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 80,
        };
        let nobody = ScriptUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let who = words(&[
            "/bin/sh",
            "-c",
            r#"u=$(id -u) g=$(id -g) G=$(id -G); echo "uid $u gid $g groups $G" >&2; [ "$u" = 65534 ] && [ "$g" = 65534 ] && [ "$G" = 65534 ]"#,
        ]);
        let sleeper = words(&["/bin/sh", "-c", "sleep 30"]);
        let nobody_again = nobody.clone();
        let t = Duration::from_secs(5);
        let (as_nobody, as_us, slept, took) = std::thread::spawn(move || {
            // This thread's groups only (Linux keeps them per thread), which
            // the programs it starts inherit unless dropped.
            rustix::thread::set_thread_groups(&[rustix::process::Gid::ROOT]).unwrap();
            let as_nobody = run_script(&who, Some(&nobody), &real, t, None);
            let as_us = run_script(&who, None, &real, t, None);
            let start = Instant::now();
            let slept = run_script(
                &sleeper,
                Some(&nobody),
                &real,
                Duration::from_millis(300),
                None,
            );
            (as_nobody, as_us, slept, start.elapsed())
        })
        .join()
        .unwrap();
        assert_eq!(as_nobody, Some(Outcome::Success));
        assert!(
            matches!(&as_us, Some(Outcome::Failure(m)) if m.contains("uid 0 gid 0 groups 0")),
            "{as_us:?}"
        );
        assert!(
            matches!(&slept, Some(Outcome::Failure(m)) if m.contains("timed out")),
            "{slept:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "killed at its timeout: {took:?}"
        );
        // The config's `user` reaches the probe.
        let check = HealthCheckConfig {
            kind: HealthCheckKind::Script,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            path: "/".into(),
            expect_status: 200,
            host: None,
            command: vec!["/bin/true".into()],
            user: Some(nobody_again),
            initial: lb_config::InitialHealth::Up,
        };
        let probe = probe_of(&check);
        assert!(
            matches!(&probe, Some(Probe::Script { user: Some(u), .. }) if u.uid == 65534),
            "{probe:?}"
        );
    }

    /// Found in audit (output): a failed script check's error starts with
    /// the program's path (`{program}: exit status 1`), and the control
    /// thread logs it (`health: service ... (last error: ...)`): a path
    /// holding a line feed or an escape sequence forged log lines and
    /// wrote to the terminal of whoever read the log. Validation refuses
    /// such a program now; the failure text escapes it too.
    #[test]
    fn a_programs_path_reaches_the_failure_text_escaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lb-audit-prog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("check\nhealth: service web real 6.6.6.6:80: down -> up\u{1b}[8m");
        std::fs::write(&program, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let real = RealKey {
            service: "web".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 80,
        };
        let command = vec![program.to_str().unwrap().to_string()];
        let outcome = run_script(&command, None, &real, Duration::from_secs(5), None);
        let _ = std::fs::remove_dir_all(&dir);
        let Some(Outcome::Failure(m)) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert!(m.ends_with(": exit status 1"), "{m:?}");
    }

    /// Found in review of 6d05079: a program with neither a `#!` line nor
    /// an ELF header, which config validation takes, runs as a `user`
    /// (fork and `execvp`: on the kernel's ENOEXEC glibc hands it to
    /// `/bin/sh`), but without one the standard library spawns it with
    /// `posix_spawnp`, which has no such fallback: every check failed
    /// with "Exec format error", marking the reals down.
    #[test]
    fn a_program_without_a_shebang_runs_without_a_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lb-review-no-shebang-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("check");
        std::fs::write(&program, "[ \"$1\" = arg ] && [ \"$LB_SERVICE\" = web ]\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let real = RealKey {
            service: "web".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 80,
        };
        let command = vec![program.to_str().unwrap().to_string(), "arg".to_string()];
        let outcome = run_script(&command, None, &real, Duration::from_secs(5), None);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(outcome, Some(Outcome::Success)), "{outcome:?}");
    }

    #[test]
    fn hysteresis_needs_rise_successes_and_fall_failures_in_a_row() {
        let mut h = Hysteresis::new(2, 3, false);
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
    fn a_real_assumed_up_goes_down_on_its_first_failure_only() {
        let mut h = Hysteresis::new(2, 3, true);
        assert!(h.up, "starts up");
        assert_eq!(h.record(false), Some(false), "the first result decides");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(true), "then rise as usual");
        assert_eq!(h.record(false), None, "and fall as usual");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
        // A first success confirms it; fall applies from then on.
        let mut h = Hysteresis::new(2, 3, true);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
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

    /// `n` HTTP checks of reals that accept and never answer (a listener
    /// whose backlog completes the connections), each hanging for `timeout`.
    fn hanging(n: usize, timeout: Duration) -> (std::net::TcpListener, HashMap<RealKey, Spec>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let wanted = (0..n)
            .map(|i| {
                let key = RealKey {
                    service: format!("web{i}"),
                    address: target.ip(),
                    port: target.port(),
                };
                let spec = Spec {
                    probe: Probe::Http {
                        path: "/".into(),
                        status: 200,
                        host: None,
                    },
                    interval: Duration::from_secs(1),
                    timeout,
                };
                (key, spec)
            })
            .collect();
        (listener, wanted)
    }

    /// The issue's case: 40 reals whose HTTP checks hang (for 30 s each)
    /// made a stop take 32 s, joined one at a time. All are signalled
    /// first and waited for together, for a bounded time.
    #[test]
    fn a_stop_with_40_hanging_checks_ends_within_its_bound() {
        let (_listener, wanted) = hanging(40, Duration::from_secs(30));
        let mut checkers = HealthCheckers::new();
        checkers.apply(wanted);
        assert_eq!(checkers.checked().count(), 40);
        // Let every check connect and start waiting for its answer.
        std::thread::sleep(Duration::from_millis(300));
        assert!(checkers.reports().next().is_none(), "a check did not hang");
        let t = Instant::now();
        let left_behind = checkers.stop();
        let took = t.elapsed();
        assert_eq!(left_behind, 40);
        assert!(
            took < STOP_WAIT + Duration::from_secs(1),
            "the stop took {took:?}"
        );
        assert_eq!(checkers.checked().count(), 0);
    }

    /// Checkers that are between checks end at once when signalled, and
    /// are joined (none left behind).
    #[test]
    fn a_stop_joins_checkers_that_are_waiting_for_their_next_check() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let mut checkers = HealthCheckers::new();
        checkers.apply(
            (0..10)
                .map(|i| {
                    let key = RealKey {
                        service: format!("s{i}"),
                        address: target.ip(),
                        port: target.port(),
                    };
                    let spec = Spec {
                        probe: Probe::Tcp,
                        interval: Duration::from_secs(60),
                        timeout: Duration::from_secs(1),
                    };
                    (key, spec)
                })
                .collect(),
        );
        let mut reports = 0;
        while reports < 10 {
            assert!(checkers.next_report(Duration::from_secs(5)).is_some());
            reports += 1;
        }
        let t = Instant::now();
        assert_eq!(checkers.stop(), 0);
        // Guards against a stop that waits out the 60 s interval (a hang),
        // not a speed claim: signalled checkers end in milliseconds.
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the stop took {:?}",
            t.elapsed()
        );
    }

    /// A checker thread that cannot be started is a failed check, not an
    /// abort, and is tried again after its interval.
    #[test]
    fn a_check_thread_that_cannot_start_counts_as_a_failure_and_is_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let key = RealKey {
            service: "web".into(),
            address: target.ip(),
            port: target.port(),
        };
        let spec = Spec {
            probe: Probe::Tcp,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        };
        let mut checkers = HealthCheckers::new();
        // A stack larger than the address space: the spawn fails.
        checkers.stack = 1 << 50;
        checkers.apply([(key.clone(), spec)].into_iter().collect());
        let r = checkers.next_report(Duration::from_secs(1)).unwrap();
        assert_eq!(r.real, key);
        assert!(
            matches!(&r.outcome, Outcome::Failure(e) if e.contains("check thread not started")),
            "{r:?}"
        );
        assert_eq!(checkers.checked().count(), 1, "still wanted");
        checkers.stack = CHECKER_STACK;
        checkers.retry();
        assert!(
            checkers.running.is_empty(),
            "tried again before its interval"
        );
        std::thread::sleep(Duration::from_millis(250));
        checkers.retry();
        assert_eq!(checkers.running.len(), 1);
        let r = checkers.next_report(Duration::from_secs(2)).unwrap();
        assert_eq!(r.outcome, Outcome::Success);
        assert_eq!(checkers.stop(), 0);
    }

    /// A TCP check of an IPv6 real goes through the host's IPv6 stack
    /// (skipped where the host has no IPv6 loopback).
    #[test]
    fn a_tcp_check_reaches_an_ipv6_real() {
        let listener = match std::net::TcpListener::bind("[::1]:0") {
            Ok(l) => l,
            Err(e) => {
                crate::skip_test(
                    "a_tcp_check_reaches_an_ipv6_real",
                    &format!("no IPv6 loopback here ([::1]: {e})"),
                );
                return;
            }
        };
        let target = listener.local_addr().unwrap();
        let real = RealKey {
            service: "web6".into(),
            address: target.ip(),
            port: target.port(),
        };
        let outcome = check_once(&Probe::Tcp, &real, Duration::from_secs(1));
        assert_eq!(outcome, Outcome::Success);
    }
}
