//! End to end: a client, the appliance and real servers, each in a network
//! namespace of its own, wired by veth pairs (and a Linux bridge in an
//! "sw" namespace where several hosts share a segment). The appliance runs
//! on DPDK's `net_af_packet` driver; the reals run Python's HTTP server (or
//! a UDP echo) and the client uses `curl`. What is checked is what a user
//! sees: answers through the VIP, the weights of the scheduler, a 5 MB file
//! arriving intact, and in the final log that NAT replies crossed workers
//! (hand-offs) and that DR replies bypassed the appliance; UDP through
//! workers that poll adaptively (`[workers] poll = "adaptive"`); and the
//! same two-arm NAT over IPv6 (NAT66, TCP and UDP).
//!
//! Needs root; skipped with the reason otherwise, and a failure where
//! LB_REQUIRE_PRIVILEGED_TESTS=1. Addresses from 198.18.0.0/15 and
//! 2001:2::/48 only, inside the namespaces the test creates; everything is
//! removed again by guards, also when a test fails.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    number_after, privileged, sh, tail, veth_direct, wait_until, DpdkPrefix, Netns, Proc, TempDir,
    BIN,
};

const VIP: &str = "198.18.1.100";
/// The size of `big.bin` on every real.
const BIG: usize = 5 * 1024 * 1024;
/// How long the appliance may take to start (EAL init without hugepages).
const START: Duration = Duration::from_secs(60);
/// How long the first request may take to get through: the appliance
/// resolves the real (and the client) by ARP on the first packets.
const FIRST_ANSWER: Duration = Duration::from_secs(15);

/// A test topology. Fields drop in order: the servers are killed before
/// their namespaces are deleted, and the scratch folder goes last.
struct Lab {
    servers: Vec<Proc>,
    client: Netns,
    lb: Netns,
    _sw: Netns,
    reals: Vec<Netns>,
    dir: TempDir,
}

/// A real server's web root: `index.html` holding its name and a random
/// `big.bin`; returns the root and the sha256 of `big.bin`.
fn web_root(dir: &TempDir, name: &str) -> (PathBuf, String) {
    let root = dir.path(&format!("www-{name}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), format!("{name}\n")).unwrap();
    let mut data = vec![0u8; BIG];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("/dev/urandom");
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let sha = sha256(&root.join("big.bin"));
    (root, sha)
}

fn sha256(path: &Path) -> String {
    let out = sh(&["sha256sum", path.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// `curl -s` of `url` inside `ns`: the body, or why it failed. (`-g`: an
/// IPv6 address in brackets is no glob.)
fn curl(ns: &Netns, url: &str, max_time: u32) -> Result<String, String> {
    let out = ns.try_exec(&[
        "curl",
        "-g",
        "-s",
        "-S",
        "--max-time",
        &max_time.to_string(),
        url,
    ]);
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

/// Starts `python3 -m http.server` in `ns` serving `root`, and waits until
/// it answers at `check_url` from inside `ns`.
fn http_server(
    ns: &Netns,
    bind: &str,
    port: u16,
    root: &Path,
    check_url: &str,
    log: &Path,
) -> Proc {
    let mut cmd = ns.command("/usr/bin/python3");
    cmd.args(["-m", "http.server", &port.to_string(), "--bind", bind])
        .arg("--directory")
        .arg(root);
    let server = Proc::spawn(cmd, log);
    assert!(
        wait_until(Duration::from_secs(20), || curl(ns, check_url, 2).is_ok()),
        "the HTTP server in {} did not come up at {check_url}:\n{}",
        ns.name,
        server.log_text()
    );
    server
}

/// A UDP echo server: answers every datagram with `NAME:` + the datagram.
const UDP_ECHO: &str = r#"
import socket, sys
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(name.encode() + b":" + d, a)
"#;

/// A TCP server that speaks first: sends `NAME banner` to every
/// connection and closes it.
const BANNER_SERVER: &str = r#"
import socket, sys
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(64)
while True:
    c, _ = s.accept()
    c.sendall(name.encode() + b" banner\n")
    c.close()
"#;

/// A client of [`BANNER_SERVER`]: connects, sends nothing, prints the
/// first line it is sent (or fails after 10 s).
const BANNER_CLIENT: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
c = socket.create_connection((addr, port), timeout=10)
c.settimeout(10)
print(c.recv(200).decode().strip(), flush=True)
"#;

fn banner(ns: &Netns, addr: &str, port: u16) -> Result<String, String> {
    let out = ns.try_exec(&[
        "/usr/bin/python3",
        "-c",
        BANNER_CLIENT,
        addr,
        &port.to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !text.is_empty() {
        Ok(text)
    } else {
        Err(format!(
            "exit {:?}: {}{}",
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A UDP client: `n` datagrams to ADDR:PORT, each from a fresh socket (so
/// a fresh source port and a new flow), one line per datagram:
/// `OK <src addr> <src port> <reply>` or `TIMEOUT <i>`.
const UDP_CLIENT: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"msg-%d" % i, (addr, port))
    try:
        d, a = s.recvfrom(2048)
        print("OK", a[0], a[1], d.decode(), flush=True)
    except socket.timeout:
        print("TIMEOUT", i, flush=True)
    s.close()
"#;

fn udp_exchange(ns: &Netns, addr: &str, port: u16, n: usize) -> Vec<String> {
    let out = ns.try_exec(&[
        "/usr/bin/python3",
        "-c",
        UDP_CLIENT,
        addr,
        &port.to_string(),
        &n.to_string(),
    ]);
    assert!(
        out.status.success(),
        "udp client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The two-arm NAT topology: client --veth-- lb(wan) ; lb(lan) --veth--
/// bridge in "sw" --veth-- real1, real2. `t` prefixes every interface name.
///
///   client 198.18.0.10/24 (route 198.18.1.0/24 via 198.18.0.2)
///   lb: port wan 198.18.0.2/24 on `{t}wan`, port lan 198.18.2.1/24 on `{t}lan`
///   reals 198.18.2.11/24, 198.18.2.12/24 (default via 198.18.2.1)
fn nat_lab(tag: &str, t: &str) -> Lab {
    let dir = TempDir::new(&format!("e2e-{tag}"));
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
        let addr = format!("198.18.2.{}/24", 11 + i);
        real.exec(&["ip", "addr", "add", &addr, "dev", &r_if]);
        real.exec(&["ip", "route", "add", "default", "via", "198.18.2.1"]);
    }
    let c0 = format!("{t}c0");
    client.exec(&["ip", "addr", "add", "198.18.0.10/24", "dev", &c0]);
    client.exec(&["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);
    Lab {
        servers: Vec::new(),
        client,
        lb,
        _sw: sw,
        reals,
        dir,
    }
}

/// The NAT config: two workers on 2 CPUs (`--lcores 0@0,1@0,2@1`), two
/// queue pairs per af_packet port (the kernel fans packets out to both
/// sockets by flow hash, so a reply often reaches the other worker).
fn nat_config(prefix: &DpdkPrefix, t: &str, service: &str) -> String {
    format!(
        r#"
[dpdk]
eal_args = ["--lcores", "0@0,1@0,2@1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            "--file-prefix", "{prefix}"]
mbufs = 16383

[workers]
lcores = [1, 2]

[flows]
capacity = 65536

[[ports]]
name = "wan"
device = "net_af_packet0,iface={t}wan,qpairs=2"
address = "198.18.0.2/24"

[[ports]]
name = "lan"
device = "net_af_packet1,iface={t}lan,qpairs=2"
address = "198.18.2.1/24"

{service}
"#,
        prefix = prefix.0
    )
}

/// Writes `config`, checks it with `--check`, starts the appliance in `lb`
/// and waits until each of its `workers` polls.
fn start_appliance(lab: &Lab, config: &str, workers: usize) -> Proc {
    let path = lab.dir.path("lb.toml");
    std::fs::write(&path, common::with_control_socket(config, &lab.dir.0)).unwrap();
    let check = std::process::Command::new(BIN)
        .args(["-c", path.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the test's config is invalid:\n{config}\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = lab.lb.command(BIN);
    cmd.args(["-c", path.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let mut app = Proc::spawn(cmd, &lab.dir.path("lb.log"));
    for w in 0..workers {
        assert!(
            app.wait_for_log(&format!("worker {w} polling"), START),
            "the appliance did not start (worker {w} never polled):\n{}",
            tail(&app.log_text(), 60)
        );
    }
    app
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
    // Shown with --nocapture: the final counters, for whoever reads along.
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

/// Polls until `curl url` from the client answers (the appliance resolves
/// next hops by ARP on the first packets).
fn wait_for_vip(lab: &Lab, app: &mut Proc, url: &str) {
    let mut last = String::new();
    if !wait_until(FIRST_ANSWER, || match curl(&lab.client, url, 3) {
        Ok(_) => true,
        Err(e) => {
            last = e;
            false
        }
    }) {
        fail(
            app,
            &format!("the VIP never answered within {FIRST_ANSWER:?}; last: {last}"),
        );
    }
}

/// `(rx packets, rx bytes, tx packets, tx bytes)` of port `name` from the
/// final log line `port NAME: rx N packets N bytes, tx N packets N bytes, ...`.
fn port_counters(log: &str, name: &str) -> (u64, u64, u64, u64) {
    let head = format!("port {name}: rx ");
    let line = log
        .lines()
        .find(|l| l.contains(&head))
        .unwrap_or_else(|| panic!("no final counters of port {name} in:\n{}", tail(log, 60)));
    let words: Vec<&str> = line[line.find(&head).unwrap()..]
        .split_whitespace()
        .collect();
    let num = |i: usize| -> u64 {
        words
            .get(i)
            .and_then(|w| w.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("cannot read port counters from {line:?}"))
    };
    let rx = words.iter().position(|w| *w == "rx").unwrap();
    let tx = words.iter().position(|w| *w == "tx").unwrap();
    (num(rx + 1), num(rx + 3), num(tx + 1), num(tx + 3))
}

/// The final `worker on lcore N: ...` lines.
fn worker_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("worker on lcore"))
        .collect()
}

/// Sums a counter of every final worker line, read as the number after
/// `label` (after `within`, if given, so that `in ` reads the hand-offs').
fn sum_workers(log: &str, within: &str, label: &str) -> u64 {
    let lines = worker_lines(log);
    assert!(
        !lines.is_empty(),
        "no final worker counters in:\n{}",
        tail(log, 60)
    );
    lines
        .iter()
        .map(|l| {
            let from = l
                .find(within)
                .unwrap_or_else(|| panic!("{within:?} missing in the final worker line {l:?}"));
            number_after(&l[from..], label)
                .unwrap_or_else(|| panic!("{label:?} missing after {within:?} in {l:?}"))
        })
        .sum()
}

/// Reads an interface counter inside `ns` (`ip netns exec` mounts that
/// namespace's sysfs).
fn if_stat(ns: &Netns, ifname: &str, stat: &str) -> u64 {
    let out = ns.exec(&["cat", &format!("/sys/class/net/{ifname}/statistics/{stat}")]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{ifname} {stat}: {:?}", out.stdout))
}

/// Downloads `big.bin` through the VIP and compares it with the served one.
fn download_intact(lab: &Lab, app: &mut Proc, url: &str, served: &[String]) {
    let target = lab.dir.path("download.bin");
    let out = lab.client.try_exec(&[
        "curl",
        "-s",
        "-S",
        "--max-time",
        "120",
        "-g",
        "-o",
        target.to_str().unwrap(),
        url,
    ]);
    if !out.status.success() {
        fail(
            app,
            &format!(
                "downloading {url} failed: exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let len = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    let got = sha256(&target);
    if len != BIG as u64 || !served.contains(&got) {
        fail(
            app,
            &format!(
                "the download of {url} is not intact: {len} bytes (want {BIG}), sha256 {got}, \
                 served files have {served:?}"
            ),
        );
    }
}

#[test]
fn nat_two_arm_real_tcp() {
    if !privileged("nat_two_arm_real_tcp") {
        return;
    }
    let mut lab = nat_lab("nat", "n");
    let mut served = Vec::new();
    for (i, real) in lab.reals.iter().enumerate() {
        let name = format!("real-{}", 11 + i);
        let addr = format!("198.18.2.{}", 11 + i);
        let (root, sha) = web_root(&lab.dir, &name);
        served.push(sha);
        let server = http_server(
            real,
            &addr,
            8080,
            &root,
            &format!("http://{addr}:8080/"),
            &lab.dir.path(&format!("{name}.log")),
        );
        lab.servers.push(server);
    }
    let prefix = DpdkPrefix::new("e2e-nat");
    let config = nat_config(
        &prefix,
        "n",
        r#"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "nat"

[[services.reals]]
address = "198.18.2.11"
port = 8080
weight = 3

[[services.reals]]
address = "198.18.2.12"
port = 8080
weight = 1
"#,
    );
    let mut app = start_appliance(&lab, &config, 2);
    let url = format!("http://{VIP}/");
    wait_for_vip(&lab, &mut app, &url);

    // 80 connections, one after the other, each a new flow.
    const N: usize = 80;
    let (mut r11, mut r12) = (0usize, 0usize);
    for i in 0..N {
        match curl(&lab.client, &url, 10) {
            Ok(body) if body.contains("real-11") => r11 += 1,
            Ok(body) if body.contains("real-12") => r12 += 1,
            Ok(body) => fail(
                &mut app,
                &format!("request {i}: unexpected answer {body:?}"),
            ),
            Err(e) => fail(
                &mut app,
                &format!("request {i} of {N} failed ({r11} + {r12} answered before): {e}"),
            ),
        }
    }
    // Weights 3:1. All the client's flows belong to one worker (the owner
    // is chosen by client address), whose smooth wrr is exact over every 4
    // picks; requests reaching the other worker's queue are handed over,
    // not scheduled there. Allow ±0.1 anyway: two workers each run their
    // own wrr, should ownership ever change.
    let share = r11 as f64 / N as f64;
    eprintln!("nat: real-11 answered {r11}, real-12 {r12} of {N}");
    if (share - 0.75).abs() > 0.1 {
        fail(
            &mut app,
            &format!(
                "wrr 3:1: real-11 answered {r11}, real-12 {r12} of {N}; \
                 share {share:.2} not within 0.75 ± 0.1"
            ),
        );
    }

    download_intact(&lab, &mut app, &format!("http://{VIP}/big.bin"), &served);

    let log = stop_cleanly(&mut app);
    let workers = worker_lines(&log);
    assert_eq!(
        workers.len(),
        2,
        "two final worker lines expected:\n{}",
        tail(&log, 60)
    );
    let out = sum_workers(&log, "handoffs out ", "handoffs out ");
    let inn = sum_workers(&log, "handoffs out ", " in ");
    assert!(
        out > 0 && inn > 0,
        "with two queue pairs, some packets should reach the worker that does not own \
         their flow and be handed over (handoffs out {out}, in {inn}):\n{}",
        workers.join("\n")
    );
    assert!(
        inn <= out,
        "more hand-offs in ({inn}) than out ({out}):\n{}",
        workers.join("\n")
    );
    let created = sum_workers(&log, "flows active ", " created ");
    assert!(
        created > N as u64,
        "at least {} flows created expected (80 requests, the download), got {created}:\n{}",
        N + 1,
        workers.join("\n")
    );
    // NAT: the 5 MB answer came back through the appliance, lan in, wan out.
    let (_, lan_rx_bytes, _, _) = port_counters(&log, "lan");
    let (_, _, _, wan_tx_bytes) = port_counters(&log, "wan");
    assert!(
        lan_rx_bytes >= BIG as u64 && wan_tx_bytes >= BIG as u64,
        "NAT replies cross the appliance: lan rx {lan_rx_bytes} bytes, \
         wan tx {wan_tx_bytes} bytes, both should be >= {BIG}:\n{}",
        tail(&log, 20)
    );
}

#[test]
fn dr_one_arm_real_tcp() {
    if !privileged("dr_one_arm_real_tcp") {
        return;
    }
    let t = "d";
    let dir = TempDir::new("e2e-dr");
    let client = Netns::new("dr-cl");
    let lb = Netns::new("dr-lb");
    let sw = Netns::new("dr-sw");
    let reals = vec![Netns::new("dr-r1"), Netns::new("dr-r2")];
    let br = format!("{t}br");
    sw.exec(&["ip", "link", "add", &br, "type", "bridge", "stp_state", "0"]);
    sw.exec(&["ip", "link", "set", &br, "up"]);
    let c0 = format!("{t}c0");
    let wan = format!("{t}wan");
    veth_direct(&client, &c0, &sw, &format!("{t}sc"));
    veth_direct(&lb, &wan, &sw, &format!("{t}sl"));
    sw.exec(&["ip", "link", "set", &format!("{t}sc"), "master", &br]);
    sw.exec(&["ip", "link", "set", &format!("{t}sl"), "master", &br]);
    client.exec(&["ip", "addr", "add", "198.18.0.10/24", "dev", &c0]);
    client.exec(&["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);
    let mut real_ifs = Vec::new();
    for (i, real) in reals.iter().enumerate() {
        let (r_if, s_if) = (format!("{t}r{}", i + 1), format!("{t}s{}", i + 1));
        veth_direct(real, &r_if, &sw, &s_if);
        sw.exec(&["ip", "link", "set", &s_if, "master", &br]);
        real.exec(&[
            "ip",
            "addr",
            "add",
            &format!("198.18.0.{}/24", 11 + i),
            "dev",
            &r_if,
        ]);
        // The VIP is local to the real, but it neither answers ARP for it
        // nor uses it as the source of its own ARP requests.
        real.exec(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        for kv in [
            "net.ipv4.conf.all.arp_ignore=1".to_string(),
            "net.ipv4.conf.all.arp_announce=2".to_string(),
            "net.ipv4.conf.all.rp_filter=0".to_string(),
            "net.ipv4.conf.default.rp_filter=0".to_string(),
            format!("net.ipv4.conf.{r_if}.rp_filter=0"),
        ] {
            real.exec(&["sysctl", "-q", "-w", &kv]);
        }
        real_ifs.push(r_if);
    }
    let mut lab = Lab {
        servers: Vec::new(),
        client,
        lb,
        _sw: sw,
        reals,
        dir,
    };
    let mut served = Vec::new();
    for (i, real) in lab.reals.iter().enumerate() {
        let name = format!("real-{}", 11 + i);
        let (root, sha) = web_root(&lab.dir, &name);
        served.push(sha);
        // DR keeps the port, and the real answers for the VIP: any address.
        let server = http_server(
            real,
            "0.0.0.0",
            80,
            &root,
            &format!("http://198.18.0.{}/", 11 + i),
            &lab.dir.path(&format!("{name}.log")),
        );
        lab.servers.push(server);
    }
    let prefix = DpdkPrefix::new("e2e-dr");
    let config = format!(
        r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
            "--file-prefix", "{prefix}"]
mbufs = 8191

[workers]
lcores = [1]

[flows]
capacity = 65536

[[ports]]
name = "wan"
device = "net_af_packet0,iface={wan}"
address = "198.18.0.2/24"

[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "dr"

[[services.reals]]
address = "198.18.0.11"
weight = 1

[[services.reals]]
address = "198.18.0.12"
weight = 1
"#,
        prefix = prefix.0
    );
    let mut app = start_appliance(&lab, &config, 1);
    let url = format!("http://{VIP}/");
    wait_for_vip(&lab, &mut app, &url);

    const N: usize = 40;
    let (mut r11, mut r12) = (0usize, 0usize);
    for i in 0..N {
        match curl(&lab.client, &url, 10) {
            Ok(body) if body.contains("real-11") => r11 += 1,
            Ok(body) if body.contains("real-12") => r12 += 1,
            Ok(body) => fail(
                &mut app,
                &format!("request {i}: unexpected answer {body:?}"),
            ),
            Err(e) => fail(
                &mut app,
                &format!("request {i} of {N} failed ({r11} + {r12} answered before): {e}"),
            ),
        }
    }
    eprintln!("dr: real-11 answered {r11}, real-12 {r12} of {N}");
    if r11 * 4 < N || r12 * 4 < N {
        fail(
            &mut app,
            &format!("both reals should answer at least 25%: real-11 {r11}, real-12 {r12} of {N}"),
        );
    }

    let client_rx_before = if_stat(&lab.client, &c0, "rx_bytes");
    let reals_tx_before: u64 = lab
        .reals
        .iter()
        .zip(&real_ifs)
        .map(|(ns, i)| if_stat(ns, i, "tx_bytes"))
        .sum();
    download_intact(&lab, &mut app, &format!("http://{VIP}/big.bin"), &served);
    let client_rx = if_stat(&lab.client, &c0, "rx_bytes") - client_rx_before;
    let reals_tx: u64 = lab
        .reals
        .iter()
        .zip(&real_ifs)
        .map(|(ns, i)| if_stat(ns, i, "tx_bytes"))
        .sum::<u64>()
        - reals_tx_before;

    let log = stop_cleanly(&mut app);
    let (rx_packets, rx_bytes, tx_packets, tx_bytes) = port_counters(&log, "wan");
    // The appliance only carries the client's side (requests and ACKs);
    // the answers went from the reals straight to the client.
    assert!(
        client_rx >= BIG as u64 && reals_tx >= BIG as u64,
        "the 5 MB answer should have reached the client from the reals: client rx {client_rx} \
         bytes, reals tx {reals_tx} bytes during the download"
    );
    assert!(
        tx_bytes < 1024 * 1024,
        "DR replies must bypass the appliance: its port sent {tx_packets} packets {tx_bytes} bytes \
         (want < 1 MB) while the client received {client_rx} bytes during the download \
         (port rx {rx_packets} packets {rx_bytes} bytes):\n{}",
        tail(&log, 20)
    );
    let created = sum_workers(&log, "flows active ", " created ");
    assert!(
        created > N as u64,
        "at least {} flows created expected, got {created}:\n{}",
        N + 1,
        worker_lines(&log).join("\n")
    );
}

#[test]
fn udp_nat_echo() {
    if !privileged("udp_nat_echo") {
        return;
    }
    let mut lab = nat_lab("udp", "u");
    for (i, real) in lab.reals.iter().enumerate() {
        let name = format!("real-{}", 11 + i);
        let addr = format!("198.18.2.{}", 11 + i);
        let mut cmd = real.command("/usr/bin/python3");
        cmd.args(["-c", UDP_ECHO, &name, &addr, "5353"]);
        let server = Proc::spawn(cmd, &lab.dir.path(&format!("{name}.log")));
        let mut last = Vec::new();
        assert!(
            wait_until(Duration::from_secs(20), || {
                last = udp_exchange(real, &addr, 5353, 1);
                last.first().is_some_and(|l| l.starts_with("OK"))
            }),
            "the UDP echo in {} did not come up: {last:?}\n{}",
            real.name,
            server.log_text()
        );
        lab.servers.push(server);
    }
    let prefix = DpdkPrefix::new("e2e-udp");
    // Adaptive polling: both workers sleep between the test's datagrams,
    // and every one of them must still get through, hand-offs included.
    let config = nat_config(
        &prefix,
        "u",
        r#"
[[services]]
name = "echo"
vip = "198.18.1.100"
port = 53
protocol = "udp"
scheduler = "wrr"
forwarding = "nat"

[[services.reals]]
address = "198.18.2.11"
port = 5353
weight = 1

[[services.reals]]
address = "198.18.2.12"
port = 5353
weight = 1
"#,
    )
    .replace("lcores = [1, 2]", "lcores = [1, 2]\npoll = \"adaptive\"");
    let mut app = start_appliance(&lab, &config, 2);
    assert!(
        app.log_text().contains("poll adaptive"),
        "the workers should say they poll adaptively:\n{}",
        tail(&app.log_text(), 20)
    );
    let mut last = Vec::new();
    if !wait_until(FIRST_ANSWER, || {
        last = udp_exchange(&lab.client, VIP, 53, 1);
        last.first().is_some_and(|l| l.starts_with("OK"))
    }) {
        fail(
            &mut app,
            &format!("the VIP never echoed within {FIRST_ANSWER:?}: {last:?}"),
        );
    }

    // After a quiet spell both workers sleep: each datagram wakes one (and
    // a hand-off the other), and is answered.
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        let lines = udp_exchange(&lab.client, VIP, 53, 1);
        if !lines.first().is_some_and(|l| l.starts_with("OK")) {
            fail(
                &mut app,
                &format!("datagram {i} after a quiet spell was not echoed: {lines:?}"),
            );
        }
    }
    const N: usize = 40;
    let lines = udp_exchange(&lab.client, VIP, 53, N);
    let (mut r11, mut r12) = (0usize, 0usize);
    for (i, line) in lines.iter().enumerate() {
        // OK <src addr> <src port> <name>:msg-<i>
        let words: Vec<&str> = line.split_whitespace().collect();
        let want = format!(":msg-{i}");
        let ok = words.len() == 4
            && words[0] == "OK"
            && words[1] == VIP
            && words[2] == "53"
            && words[3].ends_with(&want);
        if !ok {
            fail(
                &mut app,
                &format!(
                    "datagram {i}: want an echo of msg-{i} from {VIP}:53, got {line:?}; all:\n{}",
                    lines.join("\n")
                ),
            );
        }
        if words[3].starts_with("real-11:") {
            r11 += 1;
        } else if words[3].starts_with("real-12:") {
            r12 += 1;
        }
    }
    if lines.len() != N || r11 * 4 < N || r12 * 4 < N {
        fail(
            &mut app,
            &format!(
                "{} of {N} echoes; both reals should answer at least 25%: \
                 real-11 {r11}, real-12 {r12}",
                lines.len()
            ),
        );
    }
    let log = stop_cleanly(&mut app);
    let created = sum_workers(&log, "flows active ", " created ");
    // Every datagram comes from a new socket, so nearly every one is a new
    // flow. Nearly: the kernel picks each socket's port at random, and two
    // of N sockets share one with a few per cent odds (and then, rightly,
    // one flow); allow for a few such collisions.
    let want = N as u64 + 1 - 3;
    assert!(
        created >= want,
        "every datagram from a new socket is a new flow: want >= {want} created, got {created}:\n{}",
        worker_lines(&log).join("\n")
    );
}

/// The size of `huge.bin`, the SYN proxy test's large download.
const HUGE: usize = 24 * 1024 * 1024;

/// The appliance's metrics, scraped inside its namespace.
fn scrape(lab: &Lab) -> common::Scrape {
    let out = lab.lb.try_exec(&[
        "curl",
        "-s",
        "--max-time",
        "3",
        "http://127.0.0.1:9101/metrics",
    ]);
    common::parse_metrics(&String::from_utf8_lossy(&out.stdout))
}

/// The sum of every series of `name` in a scrape.
fn metric_sum(s: &common::Scrape, name: &str) -> f64 {
    let head = format!("{name}{{");
    s.iter()
        .filter(|(k, _)| k.starts_with(&head))
        .map(|(_, v)| v)
        .sum()
}

/// Starts a web server on each real of `lab` at `addrs` (port 8080),
/// each serving its own [`HUGE`] random `huge.bin`: the sha256 of each.
fn serve_huge(lab: &mut Lab, addrs: &[&str]) -> Vec<String> {
    let mut served = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let name = format!("real-{}", 11 + i);
        let (root, _) = web_root(&lab.dir, &name);
        let mut data = vec![0u8; HUGE];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut data))
            .expect("/dev/urandom");
        std::fs::write(root.join("huge.bin"), &data).unwrap();
        served.push(sha256(&root.join("huge.bin")));
        let host = if addr.contains(':') {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        let server = http_server(
            &lab.reals[i],
            addr,
            8080,
            &root,
            &format!("http://{host}:8080/"),
            &lab.dir.path(&format!("{name}.log")),
        );
        lab.servers.push(server);
    }
    served
}

/// The SYN proxy with real kernel TCP on both ends, through `app` whose
/// proxied service is at `base` (`http://VIP`, `http://[VIP6]`) with the
/// reals of [`serve_huge`]: every connection's handshake is answered by
/// the appliance with a cookie, completed with the real afterwards, and
/// then translated both ways for the life of the connection (sequence
/// numbers, timestamps, SACK, window scale). Small pages one after the
/// other, then `parallel` large downloads at once, compared by sha256
/// with what the reals serve; then the metrics and the final counters.
fn syn_proxy_real_tcp(lab: &Lab, app: &mut Proc, base: &str, served: &[String], parallel: usize) {
    let url = format!("{base}/");
    wait_for_vip(lab, app, &url);

    // Small pages, one connection each. Each request follows the client's
    // ACK at once, typically before the real's SYN-ACK is back: deferred
    // and sent on, not dropped and retransmitted 200 ms later (the time is
    // printed, not asserted; the drop count below is what is checked).
    const N: usize = 20;
    let started = std::time::Instant::now();
    for i in 0..N {
        match curl(&lab.client, &url, 10) {
            Ok(body) if body.contains("real-1") => {}
            Ok(body) => fail(app, &format!("request {i}: unexpected answer {body:?}")),
            Err(e) => fail(app, &format!("request {i} of {N} failed: {e}")),
        }
    }
    let small_pages = started.elapsed();

    // Large downloads at once (spread over both reals with rr).
    let results: Vec<Result<(u64, String), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..parallel)
            .map(|i| {
                let target = lab.dir.path(&format!("huge-{i}.bin"));
                let client = &lab.client;
                let url = format!("{base}/huge.bin");
                s.spawn(move || {
                    let out = client.try_exec(&[
                        "curl",
                        "-s",
                        "-S",
                        "-g",
                        "--max-time",
                        "180",
                        "-o",
                        target.to_str().unwrap(),
                        &url,
                    ]);
                    if !out.status.success() {
                        return Err(format!(
                            "download {i}: exit {:?}: {}",
                            out.status.code(),
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                    let len = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
                    Ok((len, sha256(&target)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("download thread"))
            .collect()
    });
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok((len, sha)) if *len == HUGE as u64 && served.contains(sha) => {}
            Ok((len, sha)) => fail(
                app,
                &format!("download {i} not intact: {len} bytes (want {HUGE}), sha256 {sha}"),
            ),
            Err(e) => fail(app, e),
        }
    }

    // The proxy answered every handshake; nothing was refused that should
    // not have been.
    let s = scrape(lab);
    let connections = (N + parallel) as f64;
    let sent = metric_sum(&s, "lb_syn_proxy_cookies_sent_total");
    let accepted = metric_sum(&s, "lb_syn_proxy_cookies_accepted_total");
    let deferred = metric_sum(&s, "lb_syn_proxy_deferred_total");
    let dropped = |reason: &str| {
        common::metric(&s, "lb_packets_dropped_total", &[("reason", reason)]).unwrap_or(-1.0)
    };
    eprintln!(
        "syn proxy ({base}): cookies sent {sent}, accepted {accepted}, early data deferred \
         {deferred}, pending drops {}; {N} small pages in {small_pages:?}",
        dropped("syn_proxy_pending")
    );
    if sent < connections || accepted < connections {
        fail(
            app,
            &format!("{connections} connections, but cookies sent {sent}, accepted {accepted}"),
        );
    }
    // Early data is deferred (at most two segments per connection), so no
    // client segment waits for its retransmission: syn_proxy_pending stays
    // at zero (it counted about one per connection before deferral).
    if deferred > 2.0 * accepted {
        fail(
            app,
            &format!("{deferred} segments deferred for {accepted} connections"),
        );
    }
    for reason in [
        "syn_proxy_pending",
        "syn_proxy_bad_cookie",
        "no_flow",
        "flow_table_full",
        "bad_l4_header",
        "tx_full",
        "handoff_full",
    ] {
        if dropped(reason) != 0.0 {
            fail(
                app,
                &format!("unexpected drops: {reason} = {}", dropped(reason)),
            );
        }
    }

    let log = stop_cleanly(app);
    let accepted_log = sum_workers(&log, "syn cookies sent ", " accepted ");
    let deferred_log = sum_workers(&log, "syn cookies sent ", " deferred ");
    assert!(
        accepted_log >= connections as u64 && deferred_log >= deferred as u64,
        "the final counters agree: {}",
        worker_lines(&log).join("\n")
    );
}

/// The SYN proxy on an IPv4 NAT service ([`syn_proxy_real_tcp`]), four
/// large downloads in parallel.
#[test]
fn nat_syn_proxy_real_tcp() {
    if !privileged("nat_syn_proxy_real_tcp") {
        return;
    }
    let mut lab = nat_lab("synp", "y");
    let served = serve_huge(&mut lab, &["198.18.2.11", "198.18.2.12"]);
    let prefix = DpdkPrefix::new("e2e-synp");
    let config = nat_config(
        &prefix,
        "y",
        r#"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"
syn_proxy = "on"

[[services.reals]]
address = "198.18.2.11"
port = 8080

[[services.reals]]
address = "198.18.2.12"
port = 8080
"#,
    );
    let mut app = start_appliance(&lab, &config, 2);
    syn_proxy_real_tcp(&lab, &mut app, &format!("http://{VIP}"), &served, 4);
}

/// The SYN proxy when the SYN to the real is lost: for each connection
/// the reals' ports on the switch are down while the client connects (its
/// handshake with the appliance completes, the SYN the appliance then
/// sends the real is lost) and up again half a second later. The client,
/// connected as far as it knows, retransmits its request; the one that
/// comes at least a second after the lost SYN makes the appliance send the
/// SYN again, the real answers and the request gets its page. Without the
/// re-send the connection hung until its flow timed out
/// (`tcp_syn_timeout`), far past curl's 10 s.
#[test]
fn nat_syn_proxy_sends_a_lost_syn_again() {
    if !privileged("nat_syn_proxy_sends_a_lost_syn_again") {
        return;
    }
    let t = "l";
    let mut lab = nat_lab("synl", t);
    for (i, real) in lab.reals.iter().enumerate() {
        let name = format!("real-{}", 11 + i);
        let addr = format!("198.18.2.{}", 11 + i);
        let (root, _) = web_root(&lab.dir, &name);
        let server = http_server(
            real,
            &addr,
            8080,
            &root,
            &format!("http://{addr}:8080/"),
            &lab.dir.path(&format!("{name}.log")),
        );
        lab.servers.push(server);
        // A server that speaks first (as SSH and SMTP do): its client sends
        // nothing after its ACK.
        let mut cmd = real.command("/usr/bin/python3");
        cmd.args(["-c", BANNER_SERVER, &name, &addr, "2222"]);
        lab.servers.push(Proc::spawn(
            cmd,
            &lab.dir.path(&format!("{name}-banner.log")),
        ));
    }
    let prefix = DpdkPrefix::new("e2e-synl");
    let config = nat_config(
        &prefix,
        t,
        r#"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"
syn_proxy = "on"

[[services.reals]]
address = "198.18.2.11"
port = 8080

[[services.reals]]
address = "198.18.2.12"
port = 8080

[[services]]
name = "banner"
vip = "198.18.1.100"
port = 22
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"
syn_proxy = "on"

[[services.reals]]
address = "198.18.2.11"
port = 2222

[[services.reals]]
address = "198.18.2.12"
port = 2222
"#,
    );
    let mut app = start_appliance(&lab, &config, 2);
    let url = format!("http://{VIP}/");
    wait_for_vip(&lab, &mut app, &url);
    // Both banner servers listen (each worker schedules round robin on
    // its own, so ask until both answered).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        match banner(&lab.client, VIP, 22) {
            Ok(line) => {
                seen.insert(line);
            }
            Err(e) => fail(
                &mut app,
                &format!("the banner service does not answer: {e}"),
            ),
        }
        if seen.len() == 2 {
            break;
        }
    }
    if seen.len() != 2 {
        fail(
            &mut app,
            &format!("not both banner servers answered: {seen:?}"),
        );
    }
    let before = metric_sum(&scrape(&lab), "lb_syn_proxy_syn_retransmits_total");
    if before != 0.0 {
        fail(
            &mut app,
            &format!("{before} SYNs sent again before any was lost"),
        );
    }
    // Runs `client` with the reals' ports down until the appliance has
    // taken the client's cookie ACK (and sent, into the void, its SYN to
    // the real), then brings them up: a fixed wait could end before a
    // slow client got that far, and then nothing would be lost.
    let accepted = || metric_sum(&scrape(&lab), "lb_syn_proxy_cookies_accepted_total");

    let ports = [format!("{t}s1"), format!("{t}s2")];
    let set = |state: &str| {
        for p in &ports {
            lab._sw.exec(&["ip", "link", "set", p, state]);
        }
    };
    let lose_first_syn = |client: &(dyn Fn() -> Result<String, String> + Sync)| {
        let was = accepted();
        set("down");
        std::thread::scope(|s| {
            let request = s.spawn(client);
            let taken = wait_until(Duration::from_secs(10), || accepted() > was);
            // The SYN leaves in the same pass as the ACK is taken; a
            // little more for it to reach the (down) port.
            std::thread::sleep(Duration::from_millis(100));
            set("up");
            let got = request.join().expect("client thread");
            if taken {
                got
            } else {
                Err(format!(
                    "the appliance took no cookie ACK in 10 s ({got:?})"
                ))
            }
        })
    };
    const N: usize = 3;
    let started = std::time::Instant::now();
    for i in 0..N {
        let got = lose_first_syn(&|| curl(&lab.client, &url, 10));
        match got {
            Ok(body) if body.contains("real-1") => {}
            Ok(body) => fail(
                &mut app,
                &format!("request {i}: unexpected answer {body:?}"),
            ),
            Err(e) => fail(&mut app, &format!("request {i} of {N} failed: {e}")),
        }
    }
    let took = started.elapsed();
    let s = scrape(&lab);
    let again = metric_sum(&s, "lb_syn_proxy_syn_retransmits_total");
    let pending = common::metric(
        &s,
        "lb_packets_dropped_total",
        &[("reason", "syn_proxy_pending")],
    )
    .unwrap_or(0.0);
    eprintln!(
        "{N} connections whose first SYN to the real was lost, in {took:?}: \
         {again} SYNs sent again, {pending} client segments dropped while waiting"
    );
    // One re-send each brings the real in (its port is up by then); a
    // client that retransmits more slowly than the back-off may need a
    // second, never more than three.
    if again < N as f64 || again > 3.0 * N as f64 {
        fail(
            &mut app,
            &format!("{again} SYNs sent again for {N} connections that each lost one"),
        );
    }
    // A client that sends nothing after its ACK: only the appliance's
    // timer can ask the real again, and the banner then comes through.
    let started = std::time::Instant::now();
    for i in 0..N {
        let got = lose_first_syn(&|| banner(&lab.client, VIP, 22));
        match got {
            Ok(line) if line.contains("real-1") && line.contains("banner") => {}
            Ok(line) => fail(&mut app, &format!("banner {i}: unexpected {line:?}")),
            Err(e) => fail(&mut app, &format!("banner {i} of {N} failed: {e}")),
        }
    }
    let took = started.elapsed();
    let s = scrape(&lab);
    let timer = metric_sum(&s, "lb_syn_proxy_syn_retransmits_total") - again;
    eprintln!(
        "{N} silent clients whose first SYN to the real was lost, in {took:?}: \
         {timer} SYNs sent again by the timer"
    );
    if timer < N as f64 || timer > 3.0 * N as f64 {
        fail(
            &mut app,
            &format!("{timer} SYNs sent again for {N} silent clients that each lost one"),
        );
    }
    let again = again + timer;
    let log = stop_cleanly(&mut app);
    let again_log = sum_workers(&log, "syn cookies sent ", " syn-retransmits ");
    assert_eq!(
        again_log as f64,
        again,
        "the final counters agree: {}",
        worker_lines(&log).join("\n")
    );
}

/// The IPv6 plan of [`nat66_two_arm_real_tcp_and_udp`], inside 2001:2::/48:
/// the client's segment (`wan`), the VIP's network, the reals' segment
/// (`lan`).
const VIP6: &str = "2001:2:0:21::100";
const REALS6: [&str; 2] = ["2001:2:0:22::11", "2001:2:0:22::12"];

/// Gives [`nat_lab`]'s hosts IPv6 beside IPv4: the client 2001:2:0:20::10/64
/// (route to the VIPs' 2001:2:0:21::/64 via the appliance's wan,
/// 2001:2:0:20::2), the reals 2001:2:0:22::11 and ::12/64 (default via the
/// appliance's lan, 2001:2:0:22::1). No duplicate address detection (the
/// addresses are unique here, and a tentative one could not be used for a
/// second or two); the appliance's veths get no kernel IPv6 at all.
fn add_ipv6(lab: &Lab, t: &str) {
    let no_dad = [
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ];
    for ns in std::iter::once(&lab.client).chain(&lab.reals) {
        for kv in no_dad {
            ns.exec(&["sysctl", "-q", "-w", kv]);
        }
    }
    for ifname in [format!("{t}wan"), format!("{t}lan")] {
        lab.lb.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv6.conf.{ifname}.disable_ipv6=1"),
        ]);
    }
    let c0 = format!("{t}c0");
    lab.client.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:2:0:20::10/64",
        "dev",
        &c0,
        "nodad",
    ]);
    lab.client.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:2:0:21::/64",
        "via",
        "2001:2:0:20::2",
    ]);
    for (i, (real, addr)) in lab.reals.iter().zip(REALS6).enumerate() {
        let r_if = format!("{t}r{}", i + 1);
        real.exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            &r_if,
            "nodad",
        ]);
        real.exec(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:2:0:22::1",
        ]);
    }
}

/// NAT66 on the two-arm layout, as `nat_two_arm_real_tcp` and
/// `udp_nat_echo` do for IPv4: real kernel TCP and UDP over IPv6 through
/// two workers and two queue pairs per port (replies handed over to the
/// worker that owns their flow), neighbor discovery on both ports, wrr 3:1,
/// a 5 MB download compared by sha256, and UDP answered from the VIP.
#[test]
fn nat66_two_arm_real_tcp_and_udp() {
    if !privileged("nat66_two_arm_real_tcp_and_udp") {
        return;
    }
    let t = "6";
    let mut lab = nat_lab("nat6", t);
    add_ipv6(&lab, t);
    let mut served = Vec::new();
    for (i, real) in lab.reals.iter().enumerate() {
        let name = format!("real-{}", 11 + i);
        let addr = REALS6[i];
        let (root, sha) = web_root(&lab.dir, &name);
        served.push(sha);
        let server = http_server(
            real,
            addr,
            8080,
            &root,
            &format!("http://[{addr}]:8080/"),
            &lab.dir.path(&format!("{name}.log")),
        );
        lab.servers.push(server);
        let mut cmd = real.command("/usr/bin/python3");
        cmd.args(["-c", UDP_ECHO, &name, addr, "5353"]);
        let echo = Proc::spawn(cmd, &lab.dir.path(&format!("{name}-udp.log")));
        let mut last = Vec::new();
        assert!(
            wait_until(Duration::from_secs(20), || {
                last = udp_exchange(real, addr, 5353, 1);
                last.first().is_some_and(|l| l.starts_with("OK"))
            }),
            "the UDP echo in {} did not come up: {last:?}\n{}",
            real.name,
            echo.log_text()
        );
        lab.servers.push(echo);
    }
    let prefix = DpdkPrefix::new("e2e-nat6");
    let config = nat_config(
        &prefix,
        t,
        &format!(
            r#"
[[services]]
name = "web6"
vip = "{VIP6}"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "nat"

[[services.reals]]
address = "{r11}"
port = 8080
weight = 3

[[services.reals]]
address = "{r12}"
port = 8080
weight = 1

[[services]]
name = "echo6"
vip = "{VIP6}"
port = 53
protocol = "udp"
scheduler = "wrr"
forwarding = "nat"

[[services.reals]]
address = "{r11}"
port = 5353

[[services.reals]]
address = "{r12}"
port = 5353
"#,
            r11 = REALS6[0],
            r12 = REALS6[1],
        ),
    );
    let config = config
        .replace(
            "address = \"198.18.0.2/24\"",
            "address = \"198.18.0.2/24\"\naddress6 = \"2001:2:0:20::2/64\"",
        )
        .replace(
            "address = \"198.18.2.1/24\"",
            "address = \"198.18.2.1/24\"\naddress6 = \"2001:2:0:22::1/64\"",
        );
    let mut app = start_appliance(&lab, &config, 2);
    let url = format!("http://[{VIP6}]/");
    wait_for_vip(&lab, &mut app, &url);

    const N: usize = 40;
    let (mut r11, mut r12) = (0usize, 0usize);
    for i in 0..N {
        match curl(&lab.client, &url, 10) {
            Ok(body) if body.contains("real-11") => r11 += 1,
            Ok(body) if body.contains("real-12") => r12 += 1,
            Ok(body) => fail(
                &mut app,
                &format!("request {i}: unexpected answer {body:?}"),
            ),
            Err(e) => fail(
                &mut app,
                &format!("request {i} of {N} failed ({r11} + {r12} answered before): {e}"),
            ),
        }
    }
    // Weights 3:1, as in nat_two_arm_real_tcp (one worker owns the
    // client's flows and runs exact smooth wrr; ±0.1 anyway).
    let share = r11 as f64 / N as f64;
    eprintln!("nat66: real-11 answered {r11}, real-12 {r12} of {N}");
    if (share - 0.75).abs() > 0.1 {
        fail(
            &mut app,
            &format!(
                "wrr 3:1: real-11 answered {r11}, real-12 {r12} of {N}; \
                 share {share:.2} not within 0.75 ± 0.1"
            ),
        );
    }

    download_intact(&lab, &mut app, &format!("http://[{VIP6}]/big.bin"), &served);

    // UDP: each datagram from a new socket, answered from the VIP's port 53
    // by both reals (rr by weight 1:1).
    const UDP_N: usize = 20;
    let lines = udp_exchange(&lab.client, VIP6, 53, UDP_N);
    let (mut u11, mut u12) = (0usize, 0usize);
    for (i, line) in lines.iter().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ok = words.len() == 4
            && words[0] == "OK"
            && words[1] == VIP6
            && words[2] == "53"
            && words[3].ends_with(&format!(":msg-{i}"));
        if !ok {
            fail(
                &mut app,
                &format!(
                    "datagram {i}: want an echo of msg-{i} from [{VIP6}]:53, got {line:?}; \
                     all:\n{}",
                    lines.join("\n")
                ),
            );
        }
        if words[3].starts_with("real-11:") {
            u11 += 1;
        } else if words[3].starts_with("real-12:") {
            u12 += 1;
        }
    }
    if lines.len() != UDP_N || u11 * 4 < UDP_N || u12 * 4 < UDP_N {
        fail(
            &mut app,
            &format!(
                "{} of {UDP_N} echoes; both reals should answer at least 25%: \
                 real-11 {u11}, real-12 {u12}",
                lines.len()
            ),
        );
    }

    let log = stop_cleanly(&mut app);
    let workers = worker_lines(&log);
    assert_eq!(
        workers.len(),
        2,
        "two final worker lines expected:\n{}",
        tail(&log, 60)
    );
    let out = sum_workers(&log, "handoffs out ", "handoffs out ");
    let inn = sum_workers(&log, "handoffs out ", " in ");
    assert!(
        out > 0 && inn > 0 && inn <= out,
        "with two queue pairs, some IPv6 packets should reach the worker that does not own \
         their flow and be handed over (handoffs out {out}, in {inn}):\n{}",
        workers.join("\n")
    );
    // NAT66: the 5 MB answer came back through the appliance, lan in, wan out.
    let (_, lan_rx_bytes, _, _) = port_counters(&log, "lan");
    let (_, _, _, wan_tx_bytes) = port_counters(&log, "wan");
    assert!(
        lan_rx_bytes >= BIG as u64 && wan_tx_bytes >= BIG as u64,
        "NAT66 replies cross the appliance: lan rx {lan_rx_bytes} bytes, \
         wan tx {wan_tx_bytes} bytes, both should be >= {BIG}:\n{}",
        tail(&log, 20)
    );
}

/// The SYN proxy on a NAT66 service, as [`nat_syn_proxy_real_tcp`] on
/// IPv4: real kernel TCP over IPv6 on both ends (cookies over the IPv6
/// tuple, the SYN-ACK's MSS from the port MTU - 60, translation both ways
/// in the IPv6 flow table, early data deferred), two workers and two queue
/// pairs per port; small pages, then two large downloads at once compared
/// by sha256.
#[test]
fn nat66_syn_proxy_real_tcp() {
    if !privileged("nat66_syn_proxy_real_tcp") {
        return;
    }
    let t = "p";
    let mut lab = nat_lab("synp6", t);
    add_ipv6(&lab, t);
    let served = serve_huge(&mut lab, &REALS6);
    let prefix = DpdkPrefix::new("e2e-synp6");
    let config = nat_config(
        &prefix,
        t,
        &format!(
            r#"
[[services]]
name = "web6"
vip = "{VIP6}"
port = 80
protocol = "tcp"
scheduler = "rr"
forwarding = "nat"
syn_proxy = "on"

[[services.reals]]
address = "{r11}"
port = 8080

[[services.reals]]
address = "{r12}"
port = 8080
"#,
            r11 = REALS6[0],
            r12 = REALS6[1],
        ),
    )
    .replace(
        "address = \"198.18.0.2/24\"",
        "address = \"198.18.0.2/24\"\naddress6 = \"2001:2:0:20::2/64\"",
    )
    .replace(
        "address = \"198.18.2.1/24\"",
        "address = \"198.18.2.1/24\"\naddress6 = \"2001:2:0:22::1/64\"",
    );
    let mut app = start_appliance(&lab, &config, 2);
    syn_proxy_real_tcp(&lab, &mut app, &format!("http://[{VIP6}]"), &served, 2);
}
