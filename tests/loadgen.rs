//! The load generators: `lb-trafficgen` driving the appliance over a
//! `net_memif` pair between two processes (counts only, no rates: speed is
//! measured by `scripts/bench-throughput.sh`), and the TRex and pktgen-dpdk
//! files for the user's own boxes, checked as far as can be done without
//! those tools.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{number_after, privileged, tail, DpdkPrefix, Proc, TempDir, BIN};

const LB_MAC: &str = "02:00:00:00:00:02";
const GEN_MAC: &str = "02:00:00:00:00:01";
const FLOWS: u64 = 2000;
const PER_FLOW: u64 = 4;

/// Builds `lb-trafficgen` (another package of the workspace, so Cargo does
/// not build it for this test) into the target folder and profile of the
/// appliance under test, and returns its path.
fn trafficgen() -> PathBuf {
    let bin_dir = Path::new(BIN).parent().expect("BIN has a folder");
    let profile = bin_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("profile folder");
    let target = bin_dir.parent().expect("target folder");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "lb-trafficgen", "--bin", "lb-trafficgen"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().expect("run cargo build -p lb-trafficgen");
    assert!(
        out.status.success(),
        "cargo build -p lb-trafficgen failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = bin_dir.join("lb-trafficgen");
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn nat_config(socket: &Path, prefix: &str) -> String {
    format!(
        r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", "{prefix}"]
mbufs = 8191

[workers]
lcores = [1]

[[ports]]
name = "wan"
device = "net_memif0,role=server,id=0,socket={socket},socket-abstract=no"
address = "198.18.0.2/24"
mac = "{LB_MAC}"

[[neighbors]]
address = "198.18.0.11"
mac = "{GEN_MAC}"

[[neighbors]]
address = "198.18.0.12"
mac = "{GEN_MAC}"

[[neighbors]]
address = "198.18.0.13"
mac = "{GEN_MAC}"

[flows]
capacity = 65536

[metrics]
listen = "127.0.0.1:0"

[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "nat"

[[services.reals]]
address = "198.18.0.11"
port = 8080
weight = 3

[[services.reals]]
address = "198.18.0.12"
port = 8080
weight = 2

[[services.reals]]
address = "198.18.0.13"
port = 8080
weight = 1
"#,
        socket = socket.display()
    )
}

/// Waits for a process to exit by itself; kills it (by PID) after `timeout`.
fn wait_exit(p: &mut Proc, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    let child = p.child.as_mut()?;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            p.child = None;
            return st.code();
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn trafficgen_drives_the_appliance_over_a_vdev_pair() {
    if !privileged("trafficgen_drives_the_appliance_over_a_vdev_pair") {
        return;
    }
    let gen_bin = trafficgen();
    let dir = TempDir::new("loadgen");
    let socket = dir.path("memif.sock");
    let lb_prefix = DpdkPrefix::new("loadgen-lb");
    let gen_prefix = DpdkPrefix::new("loadgen-gen");
    let config = dir.path("lb.toml");
    std::fs::write(
        &config,
        common::with_control_socket(&nat_config(&socket, &lb_prefix.0), &dir.0),
    )
    .unwrap();

    // The appliance is the memif server: it must listen before the client
    // (the generator) starts.
    let mut cmd = Command::new(BIN);
    cmd.args(["-c", config.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let mut lb = Proc::spawn(cmd, &dir.path("lb.log"));
    assert!(
        lb.wait_for_log("polling", Duration::from_secs(30)),
        "the appliance did not start:\n{}",
        lb.log_text()
    );

    let mut cmd = Command::new(&gen_bin);
    cmd.args([
        "--eal",
        &format!(
            "-l 0 --no-huge -m 256 --no-pci --no-shconf --file-prefix {}",
            gen_prefix.0
        ),
        "--device",
        &format!(
            "net_memif0,role=client,id=0,socket={},socket-abstract=no,mac={GEN_MAC}",
            socket.display()
        ),
        "--dst-mac",
        LB_MAC,
        "--vip",
        "198.18.1.100",
        "--port",
        "80",
        "--clients",
        "198.19.0.0/16",
        "--flows",
        &FLOWS.to_string(),
        "--packets-per-flow",
        &PER_FLOW.to_string(),
        // Slow enough that neither side ever finds a ring full on a busy
        // 2-CPU machine: this test counts, it does not measure.
        "--rate",
        "20k",
        "--payload",
        "64",
        "--drain",
        "1s",
        "--link-timeout",
        "20s",
        "--verify-checksums",
        "--json",
    ]);
    let mut gen = Proc::spawn(cmd, &dir.path("gen.log"));
    let code = wait_exit(&mut gen, Duration::from_secs(60));
    let gen_log = gen.log_text();
    assert_eq!(code, Some(0), "lb-trafficgen failed:\n{gen_log}");
    let summary = gen_log
        .lines()
        .find(|l| l.starts_with("sent "))
        .unwrap_or_else(|| panic!("no summary line:\n{gen_log}"));
    let json: serde_json::Value = gen_log
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary:\n{gen_log}"));

    eprintln!("lb-trafficgen: {summary}");
    let sent = &json["sent"];
    let total = FLOWS * PER_FLOW;
    assert_eq!(sent["packets"], total, "{summary}");
    assert_eq!(sent["flows"], FLOWS, "{summary}");
    assert_eq!(sent["syn"], FLOWS, "{summary}");
    assert_eq!(sent["data"], total - FLOWS, "{summary}");

    // Every request came back rewritten to a real (VS/NAT), with correct
    // checksums; none to the VIP, none of another kind.
    let got = &json["received"]["counts"];
    assert_eq!(got["to_real"], total, "{summary}\n{}", lb.log_text());
    assert_eq!(got["packets"], total, "{summary}");
    assert_eq!(got["to_vip"], 0, "{summary}");
    assert_eq!(got["bad_checksum"], 0, "{summary}");
    let dests: BTreeMap<String, u64> = got["destinations"]
        .as_object()
        .expect("destinations")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(
        dests.keys().map(String::as_str).collect::<Vec<_>>(),
        ["198.18.0.11", "198.18.0.12", "198.18.0.13"],
        "{summary}"
    );
    // All packets of a flow go to its real; weights 3:2:1 order the reals.
    assert!(dests.values().all(|n| n % PER_FLOW == 0), "{summary}");
    let n: Vec<u64> = dests.values().copied().collect();
    assert!(n[0] > n[1] && n[1] > n[2], "weights 3:2:1: {summary}");

    let code = lb.stop("TERM", Duration::from_secs(20));
    let log = lb.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{}", tail(&log, 30));
    let worker = log
        .lines()
        .find(|l| l.contains("worker on") && l.contains(" created "))
        .unwrap_or_else(|| panic!("no final worker counters:\n{}", tail(&log, 30)));
    assert_eq!(
        number_after(worker, " created "),
        Some(FLOWS),
        "flows created = flows sent:\n{worker}"
    );
}

/// The tokens of a source file: runs of letters, digits, `.` and `_`.
fn tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .filter(|t| !t.is_empty())
        .collect()
}

/// Runs a checker; `None` when the program is not installed.
fn try_run(program: &str, args: &[&str], env: &[(&str, &Path)]) -> Option<(bool, String)> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{program}: {e}"),
    }
}

fn missing_tool(what: &str) {
    if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("{what} is needed (scripts/install-deps.sh installs it)");
    }
    eprintln!("SKIPPED {what}: not installed");
}

/// The pktgen-dpdk command files, in the order they are run.
const PKTGEN_PHASES: [&str; 4] = ["lb-setup.pkt", "lb-syn.pkt", "lb-data.pkt", "lb-udp.pkt"];

/// The commands of a pktgen command file: its lines without comments
/// (`#` at the start, as pktgen's CLI takes them) and blank lines.
fn pkt_commands(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Whether a word fits a slot of a command form: a literal (`a|b` for
/// either), or `<port>`, `<n>`, `<ip4>`, `<mac>`, `<tcp-flags>`.
fn fits(slot: &str, word: &str) -> bool {
    match slot {
        "<port>" | "<n>" => !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()),
        "<ip4>" => word.parse::<std::net::Ipv4Addr>().is_ok(),
        "<mac>" => {
            let parts: Vec<&str> = word.split(':').collect();
            parts.len() == 6
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        // pktgen's tcp_flags_from_str: a comma-separated list.
        "<tcp-flags>" => word.split(',').all(|f| {
            [
                "cwr", "ece", "urg", "ack", "psh", "rst", "syn", "fin", "clr",
            ]
            .contains(&f)
        }),
        literal => literal.split('|').any(|w| w == word),
    }
}

/// The forms of the pktgen-dpdk CLI (24.10.3 and later; its `help` and
/// docs/source/commands.rst) that the command files may use. Range values
/// are given as "start min max inc".
const PKTGEN_FORMS: &[&str] = &[
    "start <port>",
    "stop <port>",
    "enable <port> range",
    "disable <port> rate|range",
    "page main|range",
    "delay <n>",
    "set <port> count|rate|size <n>",
    "range <port> type ipv4|ipv6",
    "range <port> proto tcp|udp",
    "range <port> tcp flags <tcp-flags>",
    "range <port> dst|src mac <mac> <mac> <mac> <mac>",
    "range <port> dst|src ip <ip4> <ip4> <ip4> <ip4>",
    "range <port> dst|src port <n> <n> <n> <n>",
    "range <port> size <n> <n> <n> <n>",
];

fn pktgen_form(command: &str) -> Option<&'static str> {
    let words: Vec<&str> = command.split_whitespace().collect();
    PKTGEN_FORMS.iter().copied().find(|form| {
        let slots: Vec<&str> = form.split(' ').collect();
        slots.len() == words.len() && slots.iter().zip(&words).all(|(s, w)| fits(s, w))
    })
}

#[test]
fn pktgen_form_check_refuses_what_pktgen_refuses() {
    // The syntax pktgen dropped in 24.10.3, and typos, do not pass.
    for bad in [
        "range 0 tcp flag set syn",
        "range 0 tcp flags syn ack",
        "range 0 tcp flags syn,bogus",
        "range 0 src ip 198.19.0.1 198.19.0.1 198.19.0.300 0.0.0.1",
        "range 0 dst mac start 02:00:00:00:00:02",
        "set 0 count ten",
        "sleep 5",
    ] {
        assert_eq!(pktgen_form(bad), None, "{bad}");
    }
    assert!(pktgen_form("range 0 tcp flags ack,psh").is_some());
}

#[test]
fn pktgen_phases_send_syns_then_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadgen/pktgen");
    let files: Vec<(&str, String)> = PKTGEN_PHASES
        .iter()
        .map(|f| (*f, std::fs::read_to_string(dir.join(f)).unwrap()))
        .collect();
    for (name, text) in &files {
        for c in pkt_commands(text) {
            assert!(
                pktgen_form(c).is_some(),
                "{name}: not a pktgen command form: {c}"
            );
        }
    }
    let commands = |name: &str| {
        pkt_commands(&files.iter().find(|(n, _)| *n == name).unwrap().1)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let at = |cmds: &[String], c: &str| {
        cmds.iter()
            .position(|x| x == c)
            .unwrap_or_else(|| panic!("no `{c}` in {cmds:?}"))
    };

    // Every phase walks the same clients from the first one.
    let clients = |cmds: &[String]| {
        cmds.iter()
            .find(|c| c.starts_with("range 0 src ip "))
            .cloned()
            .unwrap_or_else(|| panic!("no client range in {cmds:?}"))
    };
    let setup = commands("lb-setup.pkt");
    for name in PKTGEN_PHASES {
        assert_eq!(clients(&commands(name)), clients(&setup), "{name}");
    }
    assert!(setup.contains(&"enable 0 range".to_owned()));

    // Phase 1: SYN only, a bounded count, started, given time, stopped.
    let syn = commands("lb-syn.pkt");
    let (flags, start) = (at(&syn, "range 0 tcp flags syn"), at(&syn, "start 0"));
    assert!(flags < start, "the SYN flag is set before the phase starts");
    let delay = syn[start + 1..]
        .iter()
        .position(|c| c.starts_with("delay "))
        .expect("a delay after start")
        + start
        + 1;
    assert!(
        delay < at(&syn, "stop 0"),
        "the phase runs before it is stopped"
    );
    let count: u64 = syn
        .iter()
        .find_map(|c| c.strip_prefix("set 0 count "))
        .and_then(|n| n.parse().ok())
        .expect("a SYN count");
    // Several SYNs per client, and every client in pktgen's 32768 mbufs.
    let range = clients(&setup);
    let ips: Vec<std::net::Ipv4Addr> = range
        .split_whitespace()
        .skip(4)
        .map(|w| w.parse().unwrap())
        .collect();
    let n_clients = u64::from(u32::from(ips[2]) - u32::from(ips[1]) + 1);
    assert!(
        n_clients <= 32768 && count >= 32768,
        "{n_clients} clients, {count} SYNs"
    );

    // Phase 2: ACK|PSH without SYN, until stopped.
    let data = commands("lb-data.pkt");
    let flags = at(&data, "range 0 tcp flags ack,psh");
    assert!(flags < at(&data, "start 0") && at(&data, "start 0") < at(&data, "stop 0"));
    assert!(data.contains(&"set 0 count 0".to_owned()));

    // Phase 3: UDP to the echo service.
    let udp = commands("lb-udp.pkt");
    assert!(at(&udp, "range 0 proto udp") < at(&udp, "start 0"));
}

#[test]
fn loadgen_profiles_address_the_example_vips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = root.join("loadgen/trex/lb_appliance_profile.py");
    let config = lb_config::Config::load(&root.join("examples/lab-nat.toml"))
        .expect("examples/lab-nat.toml is valid");

    // Every service of the example config (VIP, port, protocol) is what the
    // profile and the script send to.
    let py = std::fs::read_to_string(&profile).unwrap();
    let pkt: String = PKTGEN_PHASES
        .iter()
        .map(|f| std::fs::read_to_string(root.join("loadgen/pktgen").join(f)).unwrap())
        .collect();
    assert!(!config.services.is_empty());
    for (name, text) in [("TRex profile", &py), ("pktgen command files", &pkt)] {
        let toks = tokens(text);
        for s in &config.services {
            let vip = s.vip.to_string();
            let port = s.port.to_string();
            let proto = s.protocol.as_str();
            assert!(toks.contains(&vip.as_str()), "{name} lacks VIP {vip}");
            assert!(toks.contains(&port.as_str()), "{name} lacks port {port}");
            assert!(
                toks.iter().any(|t| t.eq_ignore_ascii_case(proto)),
                "{name} lacks protocol {proto}"
            );
        }
        assert!(
            toks.contains(&"198.19.0.0") || toks.contains(&"198.19.0.1"),
            "{name}: clients from 198.19.0.0/16"
        );
    }
    // TRex loads a profile by calling register() and then get_streams().
    assert!(py.contains("def get_streams(self"), "get_streams");
    assert!(py.contains("def register()"), "register");
    for t in ["STLVmFlowVar", "STLStream", "STLPktBuilder"] {
        assert!(py.contains(t), "the profile uses {t}");
    }

    // Syntax: compiled, never imported (trex_stl_lib is not installed here);
    // the byte code goes to a scratch folder, not next to the profile.
    let scratch = TempDir::new("loadgen-pyc");
    match try_run(
        "python3",
        &["-m", "py_compile", profile.to_str().unwrap()],
        &[("PYTHONPYCACHEPREFIX", scratch.0.as_path())],
    ) {
        Some((ok, out)) => assert!(ok, "python3 -m py_compile:\n{out}"),
        None => missing_tool("python3 (to compile the TRex profile)"),
    }
}
