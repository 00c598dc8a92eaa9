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

#[test]
fn loadgen_profiles_address_the_example_vips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = root.join("loadgen/trex/lb_appliance_profile.py");
    let script = root.join("loadgen/pktgen/lb-appliance.lua");
    let config = lb_config::Config::load(&root.join("examples/lab-nat.toml"))
        .expect("examples/lab-nat.toml is valid");

    // Every service of the example config (VIP, port, protocol) is what the
    // profile and the script send to.
    let py = std::fs::read_to_string(&profile).unwrap();
    let lua = std::fs::read_to_string(&script).unwrap();
    assert!(!config.services.is_empty());
    for (name, text) in [("TRex profile", &py), ("pktgen script", &lua)] {
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
    let luac = ["luac5.4", "luac5.3", "luac"]
        .iter()
        .find_map(|l| try_run(l, &["-p", script.to_str().unwrap()], &[]));
    match luac {
        Some((ok, out)) => assert!(ok, "luac -p:\n{out}"),
        None => missing_tool("luac (Debian package lua5.4, to check the pktgen script)"),
    }
}
