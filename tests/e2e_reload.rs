//! End to end: hot reload (SIGHUP) and health checks on a running
//! appliance, in network namespaces. The topology is the two-arm NAT one of
//! `e2e_forwarding.rs` (client -- lb wan; lb lan -- bridge in "sw" -- real1,
//! real2), plus a management interface of the lb namespace on the same
//! bridge, through which the appliance's health checks (which use the
//! host's kernel) reach the reals. Each real runs a line-echo TCP server on
//! :7000 (answering `real-1X: <line>`) and Python's HTTP server on :8080.
//!
//! The client keeps long-lived TCP connections open through the VIP in one
//! Python helper that the test drives over stdin/stdout, and checks after
//! every reload that each of them still answers, from the same real.
//! What is checked is what the contract promises: connections to surviving
//! reals survive 20 reloads that change weights, services and schedulers;
//! an invalid file or a change that needs a restart is refused, counted and
//! changes nothing; flows to a removed real end (dropped, `real_removed`);
//! health state is kept across reloads, a new real starts its checks afresh;
//! a stopped real is taken out, logged with its last error, and put back;
//! with every real down, new flows are dropped (`no_real`).
//!
//! Needs root; skipped with the reason otherwise, and a failure where
//! LB_REQUIRE_PRIVILEGED_TESTS=1. Addresses from 198.18.0.0/15 only, inside
//! the namespaces the test creates; everything is removed again by guards,
//! also when a test fails, and only processes the test started are killed,
//! by their PIDs. No timing assertions: every wait is a bounded poll.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{
    metric, parse_metrics, privileged, sh, tail, veth_direct, wait_until, DpdkPrefix, Netns, Proc,
    Scrape, TempDir, BIN,
};

const VIP: &str = "198.18.1.100";
/// The VIP of the "extra" service that reloads add and remove.
const EXTRA_VIP: &str = "198.18.1.101";
const ECHO_PORT: u16 = 7000;
const REALS: [&str; 2] = ["198.18.2.11", "198.18.2.12"];
/// The reals' names, as their echo servers prefix each answer.
const NAMES: [&str; 2] = ["real-11", "real-12"];
/// Where the appliance serves metrics, inside the lb namespace.
const METRICS_URL: &str = "http://127.0.0.1:9101/metrics";
/// How long the appliance may take to start (EAL init without hugepages).
const START: Duration = Duration::from_secs(60);
/// The bound of every poll for a metric, a log line or a server.
const POLL: Duration = Duration::from_secs(15);
/// How long a pinged connection may take to answer before it counts as dead.
const PING_TIMEOUT: &str = "3";
/// How long the first connections may take (the appliance resolves the
/// reals and the client by ARP on the first packets, holding them up to 3 s).
const FIRST_CONNECT: &str = "8";

/// A line-echo TCP server: answers each line with `NAME: <line>`.
const ECHO_SERVER: &str = r#"
import socketserver, sys
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(name.encode() + b": " + line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
with socketserver.ThreadingTCPServer((addr, port), Echo) as server:
    server.serve_forever()
"#;

/// The client's connection keeper, driven over stdin; every command's
/// answer ends with a line `END`.
///
/// - `open N ADDR PORT TIMEOUT`: opens N more connections, one line each:
///   `OPEN i` or `FAIL i <why>`;
/// - `ping SEQ TIMEOUT`: sends `ping-SEQ-i` on every connection i at once,
///   then one line per connection: `i OK <reply line>` or `i DEAD <why>`
///   (a connection that does not answer in time is closed and stays dead);
/// - `close`: closes every connection and forgets them.
const CLIENT: &str = r#"
import selectors, socket, sys, time
socks = []
def out(*a):
    print(*a, flush=True)
for cmd in sys.stdin:
    cmd = cmd.split()
    if not cmd:
        continue
    if cmd[0] == "open":
        n, addr, port, timeout = int(cmd[1]), cmd[2], int(cmd[3]), float(cmd[4])
        for _ in range(n):
            i = len(socks)
            try:
                s = socket.create_connection((addr, port), timeout=timeout)
                s.setblocking(False)
                socks.append(s)
                out("OPEN", i)
            except OSError as e:
                socks.append(None)
                out("FAIL", i, repr(e))
    elif cmd[0] == "ping":
        seq, timeout = cmd[1], float(cmd[2])
        results, bufs = {}, {}
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            if s is None:
                results[i] = "DEAD earlier"
                continue
            try:
                s.sendall(("ping-%s-%d\n" % (seq, i)).encode())
                bufs[i] = b""
                sel.register(s, selectors.EVENT_READ, i)
            except OSError as e:
                results[i] = "DEAD send: %r" % e
        deadline = time.monotonic() + timeout
        while any(i not in results for i in bufs) and time.monotonic() < deadline:
            for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
                i = key.data
                try:
                    d = socks[i].recv(4096)
                except OSError as e:
                    results[i] = "DEAD recv: %r" % e
                    sel.unregister(socks[i])
                    continue
                if not d:
                    results[i] = "DEAD closed by the peer"
                    sel.unregister(socks[i])
                    continue
                bufs[i] += d
                if b"\n" in bufs[i]:
                    results[i] = "OK " + bufs[i].split(b"\n")[0].decode(errors="replace")
                    sel.unregister(socks[i])
        sel.close()
        for i in range(len(socks)):
            r = results.get(i, "DEAD no answer within %ss" % timeout)
            if r.startswith("DEAD") and socks[i] is not None:
                socks[i].close()
                socks[i] = None
            out(i, r)
    elif cmd[0] == "close":
        for s in socks:
            if s is not None:
                s.close()
        socks = []
    out("END")
"#;

/// One exchange with the echo service at ADDR:PORT on a fresh connection:
/// prints the answer line, or fails.
const ECHO_ONCE: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.sendall(b"once\n")
print(s.makefile("rb").readline().decode().strip())
"#;

/// The topology and the servers on it. Fields drop in order: the client
/// helper and the servers are killed before their namespaces are deleted;
/// the scratch folder and the DPDK runtime folder go last.
struct Lab {
    client_proc: Option<Client>,
    echo: Vec<Option<Proc>>,
    http: Vec<Proc>,
    client: Netns,
    lb: Netns,
    _sw: Netns,
    reals: Vec<Netns>,
    t: String,
    dir: TempDir,
    prefix: DpdkPrefix,
}

/// The two-arm NAT topology, with a management interface. `t` prefixes
/// every interface name.
///
///   client 198.18.0.10/24 (route 198.18.1.0/24 via 198.18.0.2)
///   lb: DPDK port wan 198.18.0.2/24 on `{t}wan`, port lan 198.18.2.1/24 on
///       `{t}lan` (neither has a kernel address);
///       management `{t}m0` 198.18.2.254/24, a kernel address on the bridge
///   reals 198.18.2.11/24, 198.18.2.12/24 (default via 198.18.2.1)
fn lab(tag: &str, t: &str) -> Lab {
    let dir = TempDir::new(&format!("e2e-{tag}"));
    let prefix = DpdkPrefix::new(&format!("e2e-{tag}"));
    let client = Netns::new(&format!("{tag}-cl"));
    let lb = Netns::new(&format!("{tag}-lb"));
    let sw = Netns::new(&format!("{tag}-sw"));
    let reals = vec![
        Netns::new(&format!("{tag}-r1")),
        Netns::new(&format!("{tag}-r2")),
    ];
    let br = format!("{t}br");
    sw.exec(&["ip", "link", "add", &br, "type", "bridge", "stp_state", "0"]);
    sw.exec(&["ip", "link", "set", &br, "up"]);

    veth_direct(&client, &format!("{t}c0"), &lb, &format!("{t}wan"));
    veth_direct(&lb, &format!("{t}lan"), &sw, &format!("{t}s0"));
    sw.exec(&["ip", "link", "set", &format!("{t}s0"), "master", &br]);
    for (i, real) in reals.iter().enumerate() {
        let (r_if, s_if) = (format!("{t}r{}", i + 1), format!("{t}s{}", i + 1));
        veth_direct(real, &r_if, &sw, &s_if);
        sw.exec(&["ip", "link", "set", &s_if, "master", &br]);
        let addr = format!("{}/24", REALS[i]);
        real.exec(&["ip", "addr", "add", &addr, "dev", &r_if]);
        real.exec(&["ip", "route", "add", "default", "via", "198.18.2.1"]);
    }
    // The management interface the README speaks of: health checks use the
    // host's kernel network stack, never the DPDK ports, so the lb namespace
    // (where the appliance runs) gets a kernel address on the reals'
    // segment, on a veth of its own into the bridge. The DPDK lan port's
    // veth keeps no kernel address. arp_ignore=1 makes the kernel answer
    // ARP for 198.18.2.254 only on that interface, not on `{t}lan` too.
    let (m_if, sm_if) = (format!("{t}m0"), format!("{t}sm"));
    veth_direct(&lb, &m_if, &sw, &sm_if);
    sw.exec(&["ip", "link", "set", &sm_if, "master", &br]);
    lb.exec(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"]);
    lb.exec(&["ip", "addr", "add", "198.18.2.254/24", "dev", &m_if]);

    let c0 = format!("{t}c0");
    client.exec(&["ip", "addr", "add", "198.18.0.10/24", "dev", &c0]);
    client.exec(&["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);
    Lab {
        client_proc: None,
        echo: vec![None, None],
        http: Vec::new(),
        client,
        lb,
        _sw: sw,
        reals,
        t: t.to_string(),
        dir,
        prefix,
    }
}

impl Lab {
    /// Starts the echo server on real `i` and waits until it answers from
    /// inside its own namespace.
    fn start_echo(&mut self, i: usize) {
        let real = &self.reals[i];
        let mut cmd = real.command("/usr/bin/python3");
        cmd.args([
            "-c",
            ECHO_SERVER,
            NAMES[i],
            REALS[i],
            &ECHO_PORT.to_string(),
        ]);
        let server = Proc::spawn(cmd, &self.dir.path(&format!("echo-{}.log", NAMES[i])));
        let mut last = String::new();
        let up = wait_until(POLL, || match echo_once(real, REALS[i], ECHO_PORT, "2") {
            Ok(a) => a == format!("{}: once", NAMES[i]),
            Err(e) => {
                last = e;
                false
            }
        });
        assert!(
            up,
            "the echo server in {} did not come up: {last}\n{}",
            real.name,
            server.log_text()
        );
        self.echo[i] = Some(server);
    }

    /// Stops the echo server on real `i` (SIGTERM to its PID).
    fn stop_echo(&mut self, i: usize) {
        if let Some(mut server) = self.echo[i].take() {
            server.stop("TERM", Duration::from_secs(10));
        }
    }

    /// Both echo servers, and an HTTP server (`index.html` = the real's
    /// name) on :8080 of each real for the "web" service.
    fn start_servers(&mut self) {
        for i in 0..REALS.len() {
            self.start_echo(i);
            let root = self.dir.path(&format!("www-{}", NAMES[i]));
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("index.html"), format!("{}\n", NAMES[i])).unwrap();
            let real = &self.reals[i];
            let mut cmd = real.command("/usr/bin/python3");
            cmd.args(["-m", "http.server", "8080", "--bind", REALS[i]])
                .arg("--directory")
                .arg(&root);
            let server = Proc::spawn(cmd, &self.dir.path(&format!("http-{}.log", NAMES[i])));
            let url = format!("http://{}:8080/", REALS[i]);
            assert!(
                wait_until(POLL, || curl(real, &url, 2).is_ok()),
                "the HTTP server in {} did not come up at {url}:\n{}",
                real.name,
                server.log_text()
            );
            self.http.push(server);
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path("lb.toml")
    }

    /// Writes `config` as the appliance's config file (the one a SIGHUP
    /// re-reads).
    fn write_config(&self, config: &str) {
        std::fs::write(
            self.config_path(),
            common::with_control_socket(config, &self.dir.0),
        )
        .unwrap();
    }

    /// Checks `config` with `--check` (in a file of its own).
    fn check(&self, config: &str) -> Result<(), String> {
        let path = self.dir.path("check.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(BIN)
            .args(["-c", path.to_str().unwrap(), "--check"])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Writes and checks `config`, starts the appliance in the lb namespace
    /// and waits until its worker polls and its metrics answer.
    fn start_appliance(&self, config: &str) -> Proc {
        if let Err(e) = self.check(config) {
            panic!("the test's config is invalid:\n{config}\n{e}");
        }
        self.write_config(config);
        let mut cmd = self.lb.command(BIN);
        cmd.args(["-c", self.config_path().to_str().unwrap()])
            .env("RUST_LOG", "info");
        let mut app = Proc::spawn(cmd, &self.dir.path("lb.log"));
        assert!(
            app.wait_for_log("worker 0 polling", START),
            "the appliance did not start (its worker never polled):\n{}",
            tail(&app.log_text(), 60)
        );
        if !wait_until(POLL, || self.scrape().is_some()) {
            fail(
                &mut app,
                &format!("no metrics at {METRICS_URL} in the lb namespace"),
            );
        }
        app
    }

    /// One scrape of the appliance's metrics, if it answers.
    fn scrape(&self) -> Option<Scrape> {
        let out = self
            .lb
            .try_exec(&["curl", "-s", "--max-time", "3", METRICS_URL]);
        if !out.status.success() {
            return None;
        }
        let s = parse_metrics(&String::from_utf8_lossy(&out.stdout));
        (!s.is_empty()).then_some(s)
    }

    /// A scrape, waiting (bounded) for one if the appliance does not answer.
    fn scrape_now(&self, app: &mut Proc) -> Scrape {
        self.wait_metrics(app, "a scrape of the metrics", |_| true)
    }

    /// Polls the metrics until `cond` holds (bounded); fails with `what`,
    /// the series that matter and the appliance's log tail otherwise.
    fn wait_metrics(
        &self,
        app: &mut Proc,
        what: &str,
        mut cond: impl FnMut(&Scrape) -> bool,
    ) -> Scrape {
        let end = Instant::now() + POLL;
        let mut last = None;
        loop {
            if let Some(s) = self.scrape() {
                if cond(&s) {
                    return s;
                }
                last = Some(s);
            }
            if Instant::now() >= end {
                let shown = last
                    .as_ref()
                    .map(interesting)
                    .unwrap_or_else(|| "no scrape".into());
                fail(
                    app,
                    &format!("timed out ({POLL:?}) waiting for {what}; metrics:\n{shown}"),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Rewrites the config file with `config`, sends SIGHUP to the
    /// appliance and waits until the reload counters read `success` and
    /// `failure`; returns the scrape that showed them.
    fn reload(
        &self,
        app: &mut Proc,
        config: &str,
        success: u64,
        failure: u64,
        what: &str,
    ) -> Scrape {
        self.write_config(config);
        sh(&["kill", "-HUP", &app.pid().to_string()]);
        self.wait_metrics(
            app,
            &format!("{what}: reloads success {success}, failure {failure}"),
            |s| reloads(s, "success") == success as f64 && reloads(s, "failure") == failure as f64,
        )
    }

    /// Starts the client's connection keeper (once).
    fn client(&mut self) -> &mut Client {
        if self.client_proc.is_none() {
            self.client_proc = Some(Client::start(&self.client, &self.dir.path("client.log")));
        }
        self.client_proc.as_mut().unwrap()
    }
}

/// What differs between the configs a test loads.
#[derive(Debug, Clone)]
struct Shape {
    /// The weight of real1 in "echo" (real2 keeps 1).
    w1: u32,
    /// Whether real2 is in "echo".
    real2: bool,
    /// Whether the "extra" service exists (listed first, before "echo").
    extra: bool,
    /// The scheduler of "web".
    web: &'static str,
    /// `[dpdk] burst` and `[workers] lcores`, which need a restart.
    burst: u32,
    lcores: &'static str,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            w1: 1,
            real2: true,
            extra: false,
            web: "wrr",
            burst: 32,
            lcores: "[1]",
        }
    }
}

/// `initial = "down"` (keepalived's alpha): every real, at start and when
/// a reload adds it, logs its 'down -> up' once checked, which is what the
/// test counts to tell kept health from health started afresh.
const HEALTH: &str = r#"
[services.health_check]
kind = "tcp"
interval = "300ms"
timeout = "200ms"
rise = 1
fall = 2
initial = "down"
"#;

/// One `[[services.reals]]` table.
fn real_toml(address: &str, port: u16, weight: u32) -> String {
    format!("\n[[services.reals]]\naddress = \"{address}\"\nport = {port}\nweight = {weight}\n")
}

/// The config: one worker (lcore 1; lcore 2 exists so that a reload can
/// ask for it), ports wan and lan on af_packet, metrics inside the lb
/// namespace, services "extra" (optional), "echo" (health-checked) and
/// "web".
fn config(lab: &Lab, s: &Shape) -> String {
    let t = &lab.t;
    let mut text = format!(
        r#"
[dpdk]
eal_args = ["--lcores", "0@0,1@0,2@1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            "--file-prefix", "{prefix}"]
mbufs = 8191
burst = {burst}

[workers]
lcores = {lcores}

[flows]
capacity = 65536

[metrics]
listen = "127.0.0.1:9101"

[[ports]]
name = "wan"
device = "net_af_packet0,iface={t}wan"
address = "198.18.0.2/24"

[[ports]]
name = "lan"
device = "net_af_packet1,iface={t}lan"
address = "198.18.2.1/24"
"#,
        prefix = lab.prefix.0,
        burst = s.burst,
        lcores = s.lcores,
    );
    if s.extra {
        text.push_str(&format!(
            "\n[[services]]\nname = \"extra\"\nvip = \"{EXTRA_VIP}\"\nport = {ECHO_PORT}\n\
             protocol = \"tcp\"\nscheduler = \"wrr\"\nforwarding = \"nat\"\n{HEALTH}"
        ));
        for r in REALS {
            text.push_str(&real_toml(r, ECHO_PORT, 1));
        }
    }
    text.push_str(&format!(
        "\n[[services]]\nname = \"echo\"\nvip = \"{VIP}\"\nport = {ECHO_PORT}\n\
         protocol = \"tcp\"\nscheduler = \"wrr\"\nforwarding = \"nat\"\n{HEALTH}"
    ));
    text.push_str(&real_toml(REALS[0], ECHO_PORT, s.w1));
    if s.real2 {
        text.push_str(&real_toml(REALS[1], ECHO_PORT, 1));
    }
    text.push_str(&format!(
        "\n[[services]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\n\
         protocol = \"tcp\"\nscheduler = \"{}\"\nforwarding = \"nat\"\n",
        s.web
    ));
    for r in REALS {
        text.push_str(&real_toml(r, 8080, 1));
    }
    text
}

/// The client's connection keeper: a Python process in the client
/// namespace, fed commands on stdin; its stdout lines arrive through a
/// reader thread so that every wait is bounded. Killed (by its PID) when
/// dropped.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: PathBuf,
    seq: u32,
    /// How many connections it holds (dead ones included).
    count: usize,
}

/// What one connection answered to a ping.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// The name of the real that echoed the line.
    From(String),
    /// Why there was no (right) answer.
    Dead(String),
}

impl Client {
    fn start(ns: &Netns, log: &Path) -> Client {
        let err = std::fs::File::create(log).expect("client log");
        let mut child = ns
            .command("/usr/bin/python3")
            .args(["-u", "-c", CLIENT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn the client helper");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            stdin,
            lines,
            log: log.to_owned(),
            seq: 0,
            count: 0,
        }
    }

    /// Sends one command and returns its answer lines (before `END`).
    fn command(&mut self, cmd: &str, timeout: Duration) -> Result<Vec<String>, String> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("client helper: writing {cmd:?}: {e}"))?;
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "END" => return Ok(out),
                Ok(l) => out.push(l),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "client helper: no END for {cmd:?} within {timeout:?}; got {out:?}"
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "client helper exited during {cmd:?}; got {out:?}; stderr:\n{}",
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    ))
                }
            }
        }
    }

    /// Opens `n` more connections to `addr:port`; per new connection, Ok or
    /// why it failed.
    fn open(
        &mut self,
        n: usize,
        addr: &str,
        port: u16,
        timeout: &str,
    ) -> Result<Vec<Result<(), String>>, String> {
        let secs: f64 = timeout.parse().unwrap();
        let bound = Duration::from_secs_f64(secs * n as f64 + 10.0);
        let lines = self.command(&format!("open {n} {addr} {port} {timeout}"), bound)?;
        let first = self.count;
        self.count += n;
        if lines.len() != n {
            return Err(format!("open {n}: {} answer lines: {lines:?}", lines.len()));
        }
        Ok(lines
            .iter()
            .enumerate()
            .map(|(k, l)| {
                if *l == format!("OPEN {}", first + k) {
                    Ok(())
                } else {
                    Err(l.clone())
                }
            })
            .collect())
    }

    /// Sends a numbered line on every connection; per connection, which real
    /// echoed it (checking that it is this line's echo) or why not.
    fn ping(&mut self) -> Result<Vec<Answer>, String> {
        self.seq += 1;
        let seq = self.seq;
        let secs: f64 = PING_TIMEOUT.parse().unwrap();
        let bound = Duration::from_secs_f64(secs + 10.0);
        let lines = self.command(&format!("ping {seq} {PING_TIMEOUT}"), bound)?;
        if lines.len() != self.count {
            return Err(format!(
                "ping: {} answer lines for {} connections: {lines:?}",
                lines.len(),
                self.count
            ));
        }
        Ok(lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let rest = l.strip_prefix(&format!("{i} ")).unwrap_or(l);
                match rest.strip_prefix("OK ") {
                    Some(reply) => match reply.strip_suffix(&format!(": ping-{seq}-{i}")) {
                        Some(name) if NAMES.contains(&name) => Answer::From(name.to_string()),
                        _ => Answer::Dead(format!("unexpected answer {reply:?}")),
                    },
                    None => Answer::Dead(rest.to_string()),
                }
            })
            .collect())
    }

    fn close_all(&mut self) -> Result<(), String> {
        self.command("close", Duration::from_secs(10))?;
        self.count = 0;
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -s` of `url` inside `ns`: the body, or why it failed.
fn curl(ns: &Netns, url: &str, max_time: u32) -> Result<String, String> {
    let out = ns.try_exec(&["curl", "-s", "-S", "--max-time", &max_time.to_string(), url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "curl {url}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One line echoed by `addr:port` over a fresh connection from `ns`.
fn echo_once(ns: &Netns, addr: &str, port: u16, timeout: &str) -> Result<String, String> {
    let out = ns.try_exec(&[
        "/usr/bin/python3",
        "-c",
        ECHO_ONCE,
        addr,
        &port.to_string(),
        timeout,
    ]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "echo via {addr}:{port}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Stops the appliance (so that its final counters are logged) and fails
/// with `what` and the tail of its log.
fn fail(app: &mut Proc, what: &str) -> ! {
    let code = app.stop("TERM", Duration::from_secs(20));
    panic!(
        "{what}\n--- appliance exit code {code:?}, log tail ---\n{}",
        tail(&app.log_text(), 60)
    );
}

/// SIGTERM, a clean exit (code 0), and the whole log.
fn stop_cleanly(app: &mut Proc) -> String {
    let code = app.stop("TERM", Duration::from_secs(30));
    let log = app.log_text();
    for l in log
        .lines()
        .filter(|l| l.contains("port ") && l.contains(": rx ") || l.contains("worker on lcore"))
    {
        eprintln!("{l}");
    }
    assert_eq!(
        code,
        Some(0),
        "clean exit on SIGTERM expected:\n{}",
        tail(&log, 60)
    );
    log
}

fn reloads(s: &Scrape, result: &str) -> f64 {
    metric(s, "lb_config_reloads_total", &[("result", result)]).unwrap_or(f64::NAN)
}

fn generation(s: &Scrape) -> f64 {
    metric(s, "lb_config_generation", &[]).unwrap_or(f64::NAN)
}

fn dropped(s: &Scrape, reason: &str) -> f64 {
    metric(s, "lb_packets_dropped_total", &[("reason", reason)]).unwrap_or(f64::NAN)
}

/// `lb_real_up` of a real of a service (None if the service has no such real).
fn real_up(s: &Scrape, service: &str, address: &str, port: u16) -> Option<f64> {
    let real = format!("{address}:{port}");
    metric(s, "lb_real_up", &[("service", service), ("real", &real)])
}

fn real_weight(s: &Scrape, service: &str, address: &str, port: u16) -> Option<f64> {
    let real = format!("{address}:{port}");
    metric(
        s,
        "lb_real_weight",
        &[("service", service), ("real", &real)],
    )
}

/// The series a failure message shows: reloads, generation, health and
/// weights of the reals, and the drop reasons that counted something.
fn interesting(s: &Scrape) -> String {
    s.iter()
        .filter(|(k, v)| {
            k.starts_with("lb_config_")
                || k.starts_with("lb_real_")
                || k.starts_with("lb_health_checks_total")
                || (k.starts_with("lb_packets_dropped_total") && **v > 0.0)
        })
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many health transitions of `service`'s real `address` to `change`
/// (such as "down -> up") the log holds.
fn transitions(log: &str, service: &str, address: &str, change: &str) -> usize {
    let head =
        format!("health: service {service} real {address}:{ECHO_PORT}: {change} (last error: ");
    log.lines().filter(|l| l.contains(&head)).count()
}

/// Waits until every echo real of `service` is up.
fn wait_up(lab: &Lab, app: &mut Proc, service: &str) -> Scrape {
    lab.wait_metrics(app, &format!("both reals of {service} up"), |s| {
        REALS
            .iter()
            .all(|r| real_up(s, service, r, ECHO_PORT) == Some(1.0))
    })
}

/// Opens `n` connections to the echo VIP; fails unless all open.
fn open_all(lab: &mut Lab, app: &mut Proc, n: usize, timeout: &str) {
    match lab.client().open(n, VIP, ECHO_PORT, timeout) {
        Ok(r) if r.iter().all(Result::is_ok) => {}
        Ok(r) => fail(
            app,
            &format!("opening {n} connections to {VIP}:{ECHO_PORT}: {r:?}"),
        ),
        Err(e) => fail(app, &e),
    }
}

/// Pings every connection; fails unless each answers (from any real).
/// Returns the real of each.
fn ping_all(lab: &mut Lab, app: &mut Proc, when: &str) -> Vec<String> {
    let answers = match lab.client().ping() {
        Ok(a) => a,
        Err(e) => fail(app, &format!("{when}: {e}")),
    };
    let mut names = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        match a {
            Answer::From(name) => names.push(name.clone()),
            Answer::Dead(why) => fail(
                app,
                &format!("{when}: connection {i} did not answer: {why}; all: {answers:?}"),
            ),
        }
    }
    names
}

#[test]
fn reload_keeps_connections_to_surviving_reals() {
    if !privileged("reload_keeps_connections_to_surviving_reals") {
        return;
    }
    let mut lab = lab("rl", "rl");
    lab.start_servers();
    let mut shape = Shape::default();
    let mut app = lab.start_appliance(&config(&lab, &shape));
    wait_up(&lab, &mut app, "echo");

    // Ten long-lived connections, spread by wrr 1:1 over both reals.
    const N: usize = 10;
    open_all(&mut lab, &mut app, N, FIRST_CONNECT);
    let owners = ping_all(&mut lab, &mut app, "before any reload");
    for name in NAMES {
        if !owners.iter().any(|o| o == name) {
            fail(
                &mut app,
                &format!("wrr 1:1 should give {name} some of the {N} connections: {owners:?}"),
            );
        }
    }
    eprintln!("reload: connections are served by {owners:?}");

    let s = lab.scrape_now(&mut app);
    let mut last_generation = generation(&s);
    let mut extra_added = 0;
    const RELOADS: u64 = 20;
    for i in 1..=RELOADS {
        // Weights 5 and 1 in turn; "extra" (listed first, which moves the
        // others' index in the file) added at 1, 5, 9, ... and removed at
        // 3, 7, 11, ...; "web" cycles through wrr, rr and mh.
        shape.w1 = if i % 2 == 1 { 5 } else { 1 };
        shape.extra = matches!(i % 4, 1 | 2);
        shape.web = ["wrr", "rr", "mh"][i as usize % 3];
        let text = config(&lab, &shape);
        if let Err(e) = lab.check(&text) {
            panic!("reload {i}: the test's config is invalid:\n{text}\n{e}");
        }
        let what = format!("reload {i} ({shape:?})");
        let s = lab.reload(&mut app, &text, i, 0, &what);
        let g = generation(&s);
        if g.is_nan() || g <= last_generation {
            fail(
                &mut app,
                &format!(
                    "{what}: lb_config_generation {g} did not increase from {last_generation}"
                ),
            );
        }
        last_generation = g;
        // The scrape that shows the reload shows its snapshot: the new
        // weights, and the echo reals still up (their health was kept).
        let w1 = real_weight(&s, "echo", REALS[0], ECHO_PORT);
        let ups: Vec<Option<f64>> = REALS
            .iter()
            .map(|r| real_up(&s, "echo", r, ECHO_PORT))
            .collect();
        let extra_there = real_weight(&s, "extra", REALS[0], ECHO_PORT).is_some();
        if w1 != Some(f64::from(shape.w1))
            || ups != [Some(1.0), Some(1.0)]
            || extra_there != shape.extra
        {
            fail(
                &mut app,
                &format!(
                    "{what}: want echo weight {} for {}, both echo reals up, extra present = {}; \
                     metrics:\n{}",
                    shape.w1,
                    REALS[0],
                    shape.extra,
                    interesting(&s)
                ),
            );
        }
        // Every connection answers, from the real it had before.
        let now = ping_all(&mut lab, &mut app, &what);
        if now != owners {
            fail(
                &mut app,
                &format!("{what}: connections moved between reals: before {owners:?}, now {now:?}"),
            );
        }
        // A new service's reals start their checks afresh: down, then up
        // (logged) once checked; then the new VIP answers.
        if i % 4 == 1 {
            extra_added += 1;
            let want = extra_added;
            let mut log = String::new();
            if !wait_until(POLL, || {
                log = app.log_text();
                REALS
                    .iter()
                    .all(|r| transitions(&log, "extra", r, "down -> up") == want)
            }) {
                fail(
                    &mut app,
                    &format!(
                        "{what}: want {want} 'down -> up' health line(s) for each real of extra"
                    ),
                );
            }
            let mut last = String::new();
            if !wait_until(POLL, || {
                match echo_once(&lab.client, EXTRA_VIP, ECHO_PORT, "5") {
                    Ok(a) if NAMES.iter().any(|n| a == format!("{n}: once")) => true,
                    Ok(a) | Err(a) => {
                        last = a;
                        false
                    }
                }
            }) {
                fail(
                    &mut app,
                    &format!(
                        "{what}: the new service at {EXTRA_VIP}:{ECHO_PORT} never answered: {last}"
                    ),
                );
            }
        }
        // The web service answers under its new scheduler.
        if let Err(e) = curl(&lab.client, &format!("http://{VIP}/"), 5) {
            fail(&mut app, &format!("{what}: web under {}: {e}", shape.web));
        }
    }
    // The echo reals' health was kept across all reloads: one 'down -> up'
    // each (at start), never 'up -> down'.
    let log = app.log_text();
    for r in REALS {
        let (ups, downs) = (
            transitions(&log, "echo", r, "down -> up"),
            transitions(&log, "echo", r, "up -> down"),
        );
        if ups != 1 || downs != 0 {
            fail(
                &mut app,
                &format!(
                    "echo real {r}: health should be kept across reloads (1 'down -> up' at start, \
                     no 'up -> down'), got {ups} and {downs}"
                ),
            );
        }
    }

    // Refused reloads: an invalid value, a syntax error, and two changes
    // that need a restart. Each is counted as a failure and changes nothing.
    let valid = config(&lab, &shape);
    let refused: [(&str, String, Option<&str>); 4] = [
        (
            "weight = -1",
            valid.replacen("weight = 1\n", "weight = -1\n", 1),
            None,
        ),
        (
            "a syntax error",
            valid.replacen("[[services]]", "[[services]\n", 1),
            None,
        ),
        (
            "[dpdk] burst 32 -> 16",
            config(
                &lab,
                &Shape {
                    burst: 16,
                    ..shape.clone()
                },
            ),
            Some("dpdk changed, which needs a restart"),
        ),
        (
            "[workers] lcores [1] -> [1, 2]",
            config(
                &lab,
                &Shape {
                    lcores: "[1, 2]",
                    ..shape.clone()
                },
            ),
            Some("workers.lcores changed, which needs a restart"),
        ),
    ];
    let before = lab.scrape_now(&mut app);
    let generation_before = generation(&before);
    for (k, (what, text, restart)) in refused.iter().enumerate() {
        let checked = lab.check(text);
        match restart {
            // Valid on its own: refused only because it needs a restart.
            Some(_) => assert!(
                checked.is_ok(),
                "{what}: should be a valid config: {checked:?}"
            ),
            None => assert!(
                checked.is_err(),
                "{what}: --check should refuse it:\n{text}"
            ),
        }
        let failures = k as u64 + 1;
        let s = lab.reload(
            &mut app,
            text,
            RELOADS,
            failures,
            &format!("refused reload ({what})"),
        );
        if generation(&s) != generation_before {
            fail(
                &mut app,
                &format!(
                    "{what}: a refused reload changed lb_config_generation from {generation_before} \
                     to {}",
                    generation(&s)
                ),
            );
        }
        let log = app.log_text();
        let said = match restart {
            Some(needle) => log.contains(needle),
            None => {
                log.matches("refused, the running config is unchanged")
                    .count() as u64
                    == failures
            }
        };
        if !said {
            fail(
                &mut app,
                &format!("{what}: the log should say why the reload was refused ({restart:?})"),
            );
        }
        let now = ping_all(
            &mut lab,
            &mut app,
            &format!("after the refused reload ({what})"),
        );
        if now != owners {
            fail(
                &mut app,
                &format!("{what}: connections moved: before {owners:?}, now {now:?}"),
            );
        }
    }
    let log = app.log_text();
    if !log.contains(".weight") {
        fail(
            &mut app,
            "the refusal of weight = -1 should name the setting (a path ending in .weight)",
        );
    }

    // Remove real2 from "echo": its connections end (their packets are
    // dropped and counted), real1's keep answering.
    shape.real2 = false;
    let dropped_before = dropped(&lab.scrape_now(&mut app), "real_removed");
    let s = lab.reload(
        &mut app,
        &config(&lab, &shape),
        RELOADS + 1,
        4,
        "removing real2",
    );
    if real_up(&s, "echo", REALS[1], ECHO_PORT).is_some()
        || real_up(&s, "echo", REALS[0], ECHO_PORT) != Some(1.0)
    {
        fail(
            &mut app,
            &format!(
                "after removing {} from echo:\n{}",
                REALS[1],
                interesting(&s)
            ),
        );
    }
    let answers = match lab.client().ping() {
        Ok(a) => a,
        Err(e) => fail(&mut app, &e),
    };
    for (i, (a, owner)) in answers.iter().zip(&owners).enumerate() {
        let ok = match a {
            Answer::From(name) => owner == NAMES[0] && name == owner,
            Answer::Dead(_) => owner == NAMES[1],
        };
        if !ok {
            fail(
                &mut app,
                &format!(
                    "after removing {}: connection {i} (on {owner}) answered {a:?}; want answers \
                     from {} only, the others dead; all: {answers:?}",
                    REALS[1], NAMES[0]
                ),
            );
        }
    }
    lab.wait_metrics(
        &mut app,
        "packets to the removed real counted as real_removed",
        |s| dropped(s, "real_removed") > dropped_before,
    );
    let s = lab.scrape_now(&mut app);
    eprintln!(
        "reload: after removing real2: real_removed {}, no_flow {}",
        dropped(&s, "real_removed"),
        dropped(&s, "no_flow")
    );
    // And the survivors still answer.
    let answers = match lab.client().ping() {
        Ok(a) => a,
        Err(e) => fail(&mut app, &e),
    };
    let alive = answers
        .iter()
        .filter(|a| matches!(a, Answer::From(n) if n == NAMES[0]))
        .count();
    let want = owners.iter().filter(|o| *o == NAMES[0]).count();
    if alive != want {
        fail(
            &mut app,
            &format!(
                "{want} connections on {} should still answer, {alive} did: {answers:?}",
                NAMES[0]
            ),
        );
    }

    stop_cleanly(&mut app);
}

#[test]
fn health_takes_a_stopped_real_out_and_back() {
    if !privileged("health_takes_a_stopped_real_out_and_back") {
        return;
    }
    let mut lab = lab("hc", "hc");
    lab.start_servers();
    let mut app = lab.start_appliance(&config(&lab, &Shape::default()));
    wait_up(&lab, &mut app, "echo");
    // The data path works (and the appliance has resolved both reals).
    open_all(&mut lab, &mut app, 2, FIRST_CONNECT);
    ping_all(&mut lab, &mut app, "with both reals up");
    lab.client()
        .close_all()
        .unwrap_or_else(|e| fail(&mut app, &e));

    // Stop real2's echo server: it is taken out, and the change is logged
    // with its last error.
    let (r1, r2) = (REALS[0], REALS[1]);
    lab.stop_echo(1);
    lab.wait_metrics(&mut app, &format!("lb_real_up of {r2} 0"), |s| {
        real_up(s, "echo", r2, ECHO_PORT) == Some(0.0)
            && real_up(s, "echo", r1, ECHO_PORT) == Some(1.0)
    });
    let head = format!("health: service echo real {r2}:{ECHO_PORT}: up -> down (last error: ");
    let mut line = String::new();
    if !wait_until(POLL, || {
        line = app
            .log_text()
            .lines()
            .find(|l| l.contains(&head))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    }) {
        fail(&mut app, &format!("no log line containing {head:?}"));
    }
    eprintln!("health: {line}");
    if line.contains("(last error: none)") || !line.contains("INFO") {
        fail(
            &mut app,
            &format!("the 'up -> down' line should be at info and name the check's error: {line}"),
        );
    }
    // New connections all go to real1.
    open_all(&mut lab, &mut app, 10, "5");
    let names = ping_all(&mut lab, &mut app, "with real2 down");
    if names.iter().any(|n| n != NAMES[0]) {
        fail(
            &mut app,
            &format!(
                "with {r2} down, every new connection should reach {}: {names:?}",
                NAMES[0]
            ),
        );
    }
    lab.client()
        .close_all()
        .unwrap_or_else(|e| fail(&mut app, &e));

    // Start it again: it comes back, logged, and takes new connections.
    lab.start_echo(1);
    wait_up(&lab, &mut app, "echo");
    if transitions(&app.log_text(), "echo", r2, "down -> up") != 2 {
        fail(
            &mut app,
            &format!("{r2} should have logged 'down -> up' twice (at start, after the restart)"),
        );
    }
    open_all(&mut lab, &mut app, 10, "5");
    let names = ping_all(&mut lab, &mut app, "with real2 back");
    if !names.iter().any(|n| n == NAMES[1]) {
        fail(
            &mut app,
            &format!("{r2} is up again and should take new connections: {names:?}"),
        );
    }
    lab.client()
        .close_all()
        .unwrap_or_else(|e| fail(&mut app, &e));

    // Stop both: no real is up, and a new flow is dropped (no_real).
    lab.stop_echo(0);
    lab.stop_echo(1);
    let s = lab.wait_metrics(&mut app, "both echo reals down", |s| {
        REALS
            .iter()
            .all(|r| real_up(s, "echo", r, ECHO_PORT) == Some(0.0))
    });
    let no_real_before = dropped(&s, "no_real");
    match lab.client().open(1, VIP, ECHO_PORT, "3") {
        Ok(r) if r.iter().all(Result::is_err) => eprintln!("health: with no real up: {r:?}"),
        Ok(r) => fail(
            &mut app,
            &format!("with every real down a connection opened: {r:?}"),
        ),
        Err(e) => fail(&mut app, &e),
    }
    lab.wait_metrics(&mut app, "the refused flow counted as no_real", |s| {
        dropped(s, "no_real") > no_real_before
    });

    stop_cleanly(&mut app);
}
