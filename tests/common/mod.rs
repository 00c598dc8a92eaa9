//! Helpers shared by the binary's integration tests: network namespaces and
//! child processes that clean up after themselves (also when a test fails),
//! pcap files, and the rule on skipping tests that need root.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lb-appliance");

/// Whether a test that needs root and network namespaces can run. If not, it
/// says why and is skipped, unless LB_REQUIRE_PRIVILEGED_TESTS=1 (as in CI),
/// where that is a failure.
pub fn privileged(test: &str) -> bool {
    let why = if !is_root() {
        Some("not running as root")
    } else if !Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Some("`ip netns` does not work here")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
                panic!("{test}: cannot run ({why}) but LB_REQUIRE_PRIVILEGED_TESTS=1");
            }
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace that is deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("lbt-{}-{}", tag, std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace, panicking if it fails.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside the namespace and returns its output, whatever
    /// its exit status.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Connects two namespaces with a veth pair, naming each end; offloads are
/// turned off so that a DPDK af_packet port sees wire-sized frames with
/// finished checksums.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    // Unique in the root namespace while it exists: tests of one binary run
    // in parallel threads of one process.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
    let tmp_a = format!("va{}x{n}", std::process::id() % 100000);
    let tmp_b = format!("vb{}x{n}", std::process::id() % 100000);
    sh(&[
        "ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
    ]);
    // Until both ends are in their namespaces (whose deletion takes the
    // pair with it), a failure must not leave the pair in the root
    // namespace: deleting either end left there deletes the pair.
    struct RootPair<'a>(Option<[&'a str; 2]>);
    impl Drop for RootPair<'_> {
        fn drop(&mut self) {
            for end in self.0.into_iter().flatten() {
                let _ = Command::new("ip").args(["link", "del", end]).output();
            }
        }
    }
    let mut pair = RootPair(Some([&tmp_a, &tmp_b]));
    sh(&["ip", "link", "set", &tmp_a, "netns", &a.name]);
    sh(&["ip", "link", "set", &tmp_b, "netns", &b.name]);
    pair.0 = None;
    a.exec(&["ip", "link", "set", &tmp_a, "name", a_if]);
    b.exec(&["ip", "link", "set", &tmp_b, "name", b_if]);
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        ns.exec(&["ip", "link", "set", ifname, "up"]);
        let _ = ns.try_exec(&[
            "ethtool", "-K", ifname, "gro", "off", "gso", "off", "tso", "off", "tx", "off", "rx",
            "off",
        ]);
    }
}

/// A child process that is killed (by its PID, SIGKILL) if still running
/// when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn");
        Proc {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` or the process exits or the
    /// time runs out; returns whether it appeared.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log_text().contains(needle) {
                return true;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return self.log_text().contains(needle);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends `signal` (e.g. "TERM") to the process by PID and waits for it
    /// to exit; returns its exit code.
    pub fn stop(&mut self, signal: &str, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .output();
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A scratch folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh folder, unique within this process as well: two tests that
    /// run in parallel with the same tag must not share (and remove) it.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("lbt-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub use lb_core::golden::{pcap_header, write_pcap};

/// Reads the frames of a classic pcap file (either byte order, µs or ns).
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .read_to_end(&mut data)
        .unwrap();
    assert!(data.len() >= 24, "{}: no pcap header", path.display());
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let le = matches!(magic, 0xa1b2c3d4 | 0xa1b23c4d);
    assert!(
        le || matches!(magic.swap_bytes(), 0xa1b2c3d4 | 0xa1b23c4d),
        "bad pcap magic {magic:x}"
    );
    let u32_at = |b: &[u8]| {
        let a: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32_at(&data[at + 8..at + 12]) as usize;
        at += 16;
        frames.push(data[at..at + caplen].to_vec());
        at += caplen;
    }
    frames
}

/// A unique EAL `--file-prefix` whose runtime folder (`/var/run/dpdk/NAME`,
/// which the EAL creates even in memory-only modes) is removed when dropped.
pub struct DpdkPrefix(pub String);

impl DpdkPrefix {
    /// Unique within this process too (as [`TempDir`]): two tests of one
    /// binary that pick the same tag must not share a DPDK runtime folder.
    pub fn new(tag: &str) -> DpdkPrefix {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        DpdkPrefix(format!("lbt-{tag}-{}-{n}", std::process::id()))
    }
}

impl Drop for DpdkPrefix {
    fn drop(&mut self) {
        for root in ["/var/run/dpdk", "/run/dpdk"] {
            let _ = std::fs::remove_dir_all(Path::new(root).join(&self.0));
        }
        if let Ok(home) = std::env::var("XDG_RUNTIME_DIR") {
            let _ = std::fs::remove_dir_all(Path::new(&home).join("dpdk").join(&self.0));
        }
    }
}

/// What a run of the appliance on a `net_pcap` port produced.
pub struct PcapRun {
    pub sent: Vec<Vec<u8>>,
    pub log: String,
    pub out_path: PathBuf,
    _dir: TempDir,
}

/// Runs `lb-appliance` with `config` (whose only port's device is replaced
/// by a `net_pcap` reading `frames` in order), stops it with SIGTERM once
/// the file is consumed, and returns what it transmitted and its log.
pub fn run_on_pcap(tag: &str, config: &str, frames: &[&[u8]]) -> PcapRun {
    let dir = TempDir::new(tag);
    let input = dir.path("in.pcap");
    let output = dir.path("out.pcap");
    write_pcap(&input, frames);
    let prefix = DpdkPrefix::new(tag);
    let device = format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        input.display(),
        output.display()
    );
    let mut text = pcap_config(config, &device, &prefix, "");
    if !text.contains("[metrics]") {
        // Tests run side by side: let the kernel pick a free port.
        text.push_str("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    }
    let text = with_control_socket(&text, &dir.0);
    let path = dir.path("lb.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["-c", path.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let mut app = Proc::spawn(cmd, &dir.path("lb.log"));
    assert!(
        app.wait_for_log("polling", Duration::from_secs(20)),
        "the appliance did not start:\n{}",
        app.log_text()
    );
    // net_pcap reads its whole file in the first polls: wait until the
    // port has received every frame (its rx counter, scraped), then stop
    // (which closes the port and flushes the output file). The deadline is
    // against a hang only.
    assert!(
        app.wait_for_log("metrics on http://", Duration::from_secs(20)),
        "no metrics address in the log:\n{}",
        app.log_text()
    );
    let addr = metrics_addr(&app.log_text());
    let want = frames.len() as f64;
    let mut received = 0.0;
    let all_in = wait_until(Duration::from_secs(30), || {
        received = scrape_sum(&addr, "lb_port_rx_packets_total").unwrap_or(0.0);
        received >= want
    });
    if !all_in {
        // `app` is killed when dropped.
        panic!(
            "the port received {received} of {want} frames in 30 s:\n{}",
            tail(&app.log_text(), 30)
        );
    }
    let code = app.stop("TERM", Duration::from_secs(20));
    let log = app.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{log}");
    assert!(
        log.contains("port wan: rx"),
        "final port counters are logged:\n{log}"
    );
    let sent = read_pcap(&output);
    PcapRun {
        sent,
        log,
        out_path: output,
        _dir: dir,
    }
}

/// The `host:port` of the metrics server an appliance's log announces
/// ("metrics on http://...").
pub fn metrics_addr(log: &str) -> String {
    log.split("metrics on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("the metrics address in the log")
        .to_string()
}

/// The sum of every sample of metric `name` in a scrape of `addr`
/// (`host:port`), or None if the scrape failed.
pub fn scrape_sum(addr: &str, name: &str) -> Option<f64> {
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    let prefix = format!("{name}{{");
    Some(
        parse_metrics(body)
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum(),
    )
}

/// Asks tshark, an independent dissector, to validate every IP, TCP, UDP,
/// ICMP and ICMPv6 checksum in `pcap`; returns the frames it flags.
/// Quoted, truncated segments inside ICMP errors cannot be verified and are
/// not flagged: tshark leaves those of ICMP alone by itself, but checks the
/// one an ICMPv6 Packet Too Big quotes (always cut short: the packet was
/// too big, the error holds at most 1280 bytes), so that is left out.
/// Skips (or fails under LB_REQUIRE_PRIVILEGED_TESTS) without it.
pub fn tshark_bad_checksums(pcap: &Path) -> Option<String> {
    let out = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap()])
        .args(["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
        .args([
            "-Y",
            "ip.checksum.status == \"Bad\" || ((tcp.checksum.status == \"Bad\" || udp.checksum.status == \"Bad\") && !(icmpv6.type == 2)) || icmp.checksum.status == \"Bad\" || icmpv6.checksum.status == \"Bad\" || (_ws.malformed && !dns)",
        ])
        .output();
    match out {
        Ok(out) => {
            assert!(
                out.status.success(),
                "tshark: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") => {
            panic!("tshark is needed (scripts/install-deps.sh installs it): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED the tshark cross-check: {e}");
            None
        }
    }
}

/// Checks that every drop label expected `n` times appears as `label=n` in
/// the appliance's final log.
pub fn assert_drops_logged<'a>(log: &str, labels: impl Iterator<Item = &'a str>) {
    let mut want = std::collections::BTreeMap::<&str, usize>::new();
    for l in labels {
        *want.entry(l).or_default() += 1;
    }
    for (reason, n) in want {
        assert!(
            log.contains(&format!("{reason}={n}")),
            "{reason}={n} missing in:\n{log}"
        );
    }
}

/// Like [`veth`], but creates each end directly inside its namespace (no
/// temporary names in the root namespace, so topologies built at the same
/// time by several tests of one binary cannot collide); offloads off.
pub fn veth_direct(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    assert!(
        a_if.len() <= 15 && b_if.len() <= 15,
        "interface names <= 15 chars"
    );
    sh(&[
        "ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        ns.exec(&["ip", "link", "set", ifname, "up"]);
        let _ = ns.try_exec(&[
            "ethtool", "-K", ifname, "gro", "off", "gso", "off", "tso", "off", "tx", "off", "rx",
            "off",
        ]);
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of `text`, for failure messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The number right after `label` in `line` (such as `handoffs out ` in
/// `..., handoffs out 12 in 3, ...`).
pub fn number_after(line: &str, label: &str) -> Option<u64> {
    let at = line.find(label)? + label.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// One scrape of Prometheus text: every sample as `name{k=v,...}` (labels
/// sorted by name, values unquoted) -> value.
pub type Scrape = std::collections::BTreeMap<String, f64>;

/// Parses Prometheus exposition text into a [`Scrape`]. Enough for our own
/// exporter's output (label values hold no `,`, `"` or `\`); the metrics
/// test checks the text itself with the Prometheus client's parser.
pub fn parse_metrics(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = match series.split_once('{') {
            None => format!("{series}{{}}"),
            Some((name, labels)) => {
                let mut pairs: Vec<String> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.replace('"', ""))
                    .collect();
                pairs.sort();
                format!("{name}{{{}}}", pairs.join(","))
            }
        };
        out.insert(key, value);
    }
    out
}

/// The key of a sample in a [`Scrape`]: `name` with `labels` (any order).
pub fn metric_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

/// The value of a sample, if the scrape has it.
pub fn metric(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.get(&metric_key(name, labels)).copied()
}

/// `config` (one `[[ports]]`) rewritten to run here on a `net_pcap` port:
/// the port's device becomes `device`, the EAL arguments a no-hugepage set
/// with its own `--file-prefix`, and `dpdk_extra` lines (such as
/// `burst = 1`) follow them.
/// `text` with a `[control] socket` in `dir` unless it has one: tests run
/// appliances side by side, and every one would otherwise take the default
/// `/run/lb-appliance/control.sock` (the second refuses to start).
pub fn with_control_socket(text: &str, dir: &Path) -> String {
    if text.contains("[control]") {
        return text.to_string();
    }
    format!(
        "{text}\n[control]\nsocket = \"{}\"\n",
        dir.join("ctl.sock").display()
    )
}

pub fn pcap_config(config: &str, device: &str, prefix: &DpdkPrefix, dpdk_extra: &str) -> String {
    let mut text = String::new();
    for line in config.lines() {
        let t = line.trim_start();
        if t.starts_with("device") {
            text.push_str(&format!("device = \"{device}\"\n"));
        } else if t.starts_with("eal_args") {
            text.push_str(&format!(
                "eal_args = [\"-l\", \"0-1\", \"--no-huge\", \"-m\", \"256\", \"--no-pci\", \"--no-shconf\", \"--file-prefix\", \"{}\"]\n{dpdk_extra}",
                prefix.0
            ));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The appliance on a `net_pcap` port that reads a named pipe (with
/// `burst = 1`), so that a test can feed it packets while it runs, without
/// root; its metrics listen on a free loopback port.
pub struct PipeAppliance {
    pub app: Proc,
    /// The metrics listener, `127.0.0.1:PORT`.
    pub addr: String,
    /// The config file, and the text it was started with.
    pub config: PathBuf,
    pub text: String,
    pipe: Option<std::fs::File>,
    _prefix: DpdkPrefix,
    pub dir: TempDir,
}

impl PipeAppliance {
    /// Starts it with `config` (one port; its device and EAL arguments are
    /// replaced) plus `extra` appended (more services, say).
    pub fn start(tag: &str, config: &str, extra: &str) -> PipeAppliance {
        let dir = TempDir::new(tag);
        let fifo = dir.path("rx.fifo");
        let out = dir.path("tx.pcap");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let prefix = DpdkPrefix::new(tag);
        let device = format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            fifo.display(),
            out.display()
        );
        let mut text = pcap_config(config, &device, &prefix, "burst = 1\n");
        text.push_str("[metrics]\nlisten = \"127.0.0.1:0\"\n");
        text.push_str(extra);
        let text = with_control_socket(&text, &dir.0);
        let path = dir.path("lb.toml");
        std::fs::write(&path, &text).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["-c", path.to_str().unwrap()])
            .env("RUST_LOG", "info");
        let mut app = Proc::spawn(cmd, &dir.path("lb.log"));
        // The EAL opens the pipe while it probes the device: feed the pcap
        // header from another thread (opening a pipe blocks until both
        // ends are open).
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            f.write_all(&pcap_header()).unwrap();
            f.flush().unwrap();
            f
        });
        assert!(
            app.wait_for_log("metrics on http://", Duration::from_secs(30)),
            "the appliance did not start:\n{}",
            app.log_text()
        );
        let pipe = writer.join().unwrap();
        let addr = metrics_addr(&app.log_text());
        PipeAppliance {
            app,
            addr,
            config: path,
            text,
            pipe: Some(pipe),
            _prefix: prefix,
            dir,
        }
    }

    /// Sends frames into the appliance's port, in order.
    pub fn feed(&mut self, frames: &[&[u8]]) {
        let f = self.pipe.as_mut().expect("the pipe is open");
        for frame in frames {
            f.write_all(&lb_core::golden::pcap_record(0, frame))
                .unwrap();
        }
        f.flush().unwrap();
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload_with(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
        let pid = self.app.pid().to_string();
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Closes the pipe (the port's input ends), so that a stop does not
    /// wait on a read of it.
    pub fn close_input(&mut self) {
        drop(self.pipe.take());
    }

    /// Closes the pipe and stops the appliance with SIGTERM; returns its
    /// exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.close_input();
        self.app.stop("TERM", Duration::from_secs(20))
    }
}

/// Parses exposition text with the Prometheus client library's parser
/// (Debian's python3-prometheus-client), which rejects invalid text; every
/// sample as `name{label=value,...}` (labels sorted) -> value.
pub fn parse_prometheus_strictly(text: &str) -> Scrape {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value!r}")
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid Prometheus text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse::<f64>().unwrap_or(f64::NAN)))
        .collect()
}
