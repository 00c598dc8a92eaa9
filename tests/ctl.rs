//! `lb-appliance ctl` against a running appliance (a `net_pcap` port on a
//! named pipe, `common::PipeAppliance`, no root needed): every subcommand,
//! its effect on forwarding (which real new SYNs reach, from
//! `lb_flows_created_total`), on `/metrics` and on `ctl save`, and bad
//! requests on the socket refused and counted.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{metric, parse_prometheus_strictly, PipeAppliance, Scrape, BIN};
use lb_core::golden;

fn scrape(lb: &PipeAppliance) -> Scrape {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{}/metrics", lb.addr),
        ])
        .output()
        .expect("curl");
    parse_prometheus_strictly(&String::from_utf8_lossy(&out.stdout))
}

/// `lb-appliance ctl --socket SOCKET ARGS`.
fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("lb-appliance ctl")
}

/// `ctl` while feeding the appliance frames it drops: a `net_pcap` worker
/// on a pipe polls only when a frame comes, and a listing needs a poll per
/// page (a real port's worker polls all the time).
fn ctl_fed(rig: &mut Rig, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("ctl")
        .arg("--socket")
        .arg(&rig.socket)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lb-appliance ctl");
    // Read as it comes, so that a long answer cannot fill the pipe and
    // block the child.
    fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            // This child only (by its PID), then fail.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`ctl {}` did not finish in 60 s; killed it. Its output:\n{}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&stdout.join().unwrap_or_default()),
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        rig.poke();
        std::thread::sleep(Duration::from_millis(1));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ctl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a refusal, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains(needle), "the refusal lacks {needle:?}: {err}");
}

/// The golden NAT SYN with client port `port` (its TCP checksum updated,
/// RFC 1624).
fn syn(template: &[u8], port: u16) -> Vec<u8> {
    let mut f = template.to_vec();
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let tcp = 14 + ihl;
    let old = u16::from_be_bytes([f[tcp], f[tcp + 1]]);
    f[tcp..tcp + 2].copy_from_slice(&port.to_be_bytes());
    let c = u16::from_be_bytes([f[tcp + 16], f[tcp + 17]]);
    let mut sum = u32::from(!c) + u32::from(!old) + u32::from(port);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[tcp + 16..tcp + 18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}

fn created(s: &Scrape, real: &str) -> f64 {
    metric(
        s,
        "lb_flows_created_total",
        &[("real", real), ("service", "web-nat")],
    )
    .unwrap_or(0.0)
}

struct Rig {
    lb: PipeAppliance,
    socket: std::path::PathBuf,
    syn: Vec<u8>,
    filler: Vec<u8>,
    next_port: u16,
}

impl Rig {
    /// Sends `n` new SYNs to web-nat and waits until the appliance counted
    /// them; returns the scrape.
    fn syns(&mut self, n: usize) -> Scrape {
        let before: f64 = {
            let s = scrape(&self.lb);
            REALS.iter().map(|r| created(&s, r)).sum()
        };
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                self.next_port += 1;
                syn(&self.syn, self.next_port)
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        self.lb.feed(&refs);
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let filler = self.filler.clone();
            self.lb.feed(&[&filler]);
            let s = scrape(&self.lb);
            let now: f64 = REALS.iter().map(|r| created(&s, r)).sum();
            if now >= before + n as f64 {
                return s;
            }
            assert!(
                Instant::now() < end,
                "{n} SYNs not counted: {before} -> {now}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A worker on a pipe polls only when a frame comes: feed it one it
    /// drops, so it adopts a new snapshot and answers a listing.
    fn poke(&mut self) {
        let filler = self.filler.clone();
        self.lb.feed(&[&filler]);
    }
}

const REALS: [&str; 2] = ["198.18.0.11:8080", "198.18.0.21:8080"];

#[test]
fn every_ctl_subcommand_against_a_running_appliance() {
    let scenario = golden::scenario("one-arm");
    let step = |d: &str| {
        scenario
            .steps
            .iter()
            .find(|s| s.description.starts_with(d))
            .unwrap_or_else(|| panic!("golden step {d}"))
            .input
            .clone()
    };
    let lb = PipeAppliance::start("ctl", &scenario.config, "");
    let socket = lb.dir.path("ctl.sock");
    assert!(socket.exists(), "the control socket is made");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "owner and group only");
    let mut rig = Rig {
        lb,
        socket: socket.clone(),
        syn: step("nat: tcp syn to the vip"),
        filler: step("frame to another mac"),
        next_port: 20000,
    };

    // list: the services, as status shows them; --json parses.
    let table = ok(&ctl(&socket, &["list"]));
    assert!(table.contains("198.18.1.100:80"), "{table}");
    assert!(table.contains("198.18.0.11:8080"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&socket, &["list", "--json"]))).unwrap();
    assert!(json["services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "web-nat"));

    // One real: every SYN goes to it.
    let s = rig.syns(4);
    assert_eq!(created(&s, REALS[0]), 4.0);

    // connections: the four flows, filtered by service and real.
    let rows = ok(&ctl_fed(&mut rig, &["connections", "--service", "web-nat"]));
    let lines: Vec<&str> = rows.lines().filter(|l| l.starts_with("TCP")).collect();
    assert_eq!(lines.len(), 4, "{rows}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("198.18.0.11:8080") && l.contains("SynSent")),
        "{rows}"
    );
    let json = ok(&ctl_fed(
        &mut rig,
        &["connections", "--real", "198.18.0.11:8080", "--json"],
    ));
    let flows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(flows.len(), 4, "{json}");
    assert!(flows
        .iter()
        .all(|f| f["vip"] == "198.18.1.100:80" && f["expires_in_ms"].as_u64().unwrap() > 0));
    let none = ok(&ctl_fed(&mut rig, &["connections", "--service", "dns-nat"]));
    assert_eq!(
        none.lines().filter(|l| l.starts_with("TCP")).count(),
        0,
        "{none}"
    );
    refused(
        &ctl_fed(&mut rig, &["connections", "--service", "nope"]),
        "no service \"nope\"",
    );

    // add-real: the second real takes half of the new SYNs (rr).
    let out = ok(&ctl(
        &socket,
        &["add-real", "web-nat", "198.18.0.21:8080", "--weight", "1"],
    ));
    assert!(out.starts_with("applied: generation"), "{out}");
    // (A worker on a pipe adopts a new snapshot at its next poll.)
    rig.poke();
    let s0 = scrape(&rig.lb);
    let s = rig.syns(6);
    assert_eq!(
        created(&s, REALS[1]) - created(&s0, REALS[1]),
        3.0,
        "rr over two"
    );
    assert_eq!(
        metric(
            &s,
            "lb_real_weight",
            &[("real", REALS[1]), ("service", "web-nat")]
        ),
        Some(1.0)
    );
    // edit-real and drain: the drained real takes no new flow.
    ok(&ctl(
        &socket,
        &["edit-real", "web-nat", "198.18.0.21:8080", "--weight", "5"],
    ));
    let s = scrape(&rig.lb);
    assert_eq!(
        metric(
            &s,
            "lb_real_weight",
            &[("real", REALS[1]), ("service", "web-nat")]
        ),
        Some(5.0)
    );
    ok(&ctl(&socket, &["drain", "web-nat", "198.18.0.11:8080"]));
    rig.poke();
    let s0 = scrape(&rig.lb);
    let s = rig.syns(4);
    assert_eq!(created(&s, REALS[0]), created(&s0, REALS[0]), "drained");
    assert_eq!(created(&s, REALS[1]) - created(&s0, REALS[1]), 4.0);

    // save: the running text, with the changes and the fixture's comment.
    let saved = ok(&ctl(&socket, &["save"]));
    assert!(
        saved.contains("generated by scripts/gen-forwarding-fixtures.py"),
        "comments kept"
    );
    let parsed = lb_config::Config::parse(&saved).expect("ctl save is a valid lb.toml");
    let web = parsed
        .services
        .iter()
        .find(|s| s.name == "web-nat")
        .unwrap();
    assert_eq!(web.reals.len(), 2);
    assert_eq!((web.reals[0].weight, web.reals[1].weight), (0, 5));

    // save --output: the same text, in place of the file (through a
    // symlink, onto its target), its mode kept; a save that fails leaves
    // the file as it was (`ctl save > FILE` would have emptied it).
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = common::TempDir::new("ctl-save");
        let (file, link) = (dir.path("lb.toml"), dir.path("current.toml"));
        std::fs::write(&file, "# the old file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let to = link.to_str().unwrap();
        ok(&ctl(&socket, &["save", "--output", to]));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), saved);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o604
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let gone = dir.path("no.sock");
        let failed = ctl(&gone, &["save", "--output", to]);
        assert!(!failed.status.success());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), saved, "untouched");
        assert_eq!(
            std::fs::read_dir(&dir.0).unwrap().count(),
            2,
            "no temporary file left"
        );
        // A symlink to a file not there yet: written through, the link
        // kept; one into a folder that is not there: an error, nothing
        // left behind.
        let (new, dangling) = (dir.path("new.toml"), dir.path("next.toml"));
        std::os::unix::fs::symlink("new.toml", &dangling).unwrap();
        ok(&ctl(
            &socket,
            &["save", "--output", dangling.to_str().unwrap()],
        ));
        assert_eq!(std::fs::read_to_string(&new).unwrap(), saved);
        assert!(std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        let nowhere = dir.path("missing/lb.toml");
        let failed = ctl(&socket, &["save", "--output", nowhere.to_str().unwrap()]);
        assert!(!failed.status.success());
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 4);
        // A loop of symlinks: an error, the links left as they were (found
        // in audit: after 40 hops the last link looked at was replaced).
        let (a, b) = (dir.path("a.toml"), dir.path("b.toml"));
        std::os::unix::fs::symlink("b.toml", &a).unwrap();
        std::os::unix::fs::symlink("a.toml", &b).unwrap();
        let failed = ctl(&socket, &["save", "--output", a.to_str().unwrap()]);
        assert!(!failed.status.success());
        assert!(
            String::from_utf8_lossy(&failed.stderr).contains("too many levels of symbolic links"),
            "{}",
            String::from_utf8_lossy(&failed.stderr)
        );
        for l in [&a, &b] {
            assert!(std::fs::symlink_metadata(l)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 6);
    }

    // save --output onto the file the appliance loads: replaced while it
    // holds the text loaded (or one `ctl save` gave out since); an edit
    // not reloaded yet is not lost without --force (found in audit: it
    // was overwritten without a word).
    {
        let config = rig.lb.config.to_str().unwrap().to_string();
        ok(&ctl(&socket, &["save", "--output", &config]));
        assert_eq!(std::fs::read_to_string(&rig.lb.config).unwrap(), saved);
        ok(&ctl(&socket, &["save", "--output", &config]));
        let edited = format!("{saved}\n# an operator's edit, not reloaded\n");
        std::fs::write(&rig.lb.config, &edited).unwrap();
        let failed = ctl(&socket, &["save", "--output", &config]);
        assert!(!failed.status.success());
        let why = String::from_utf8_lossy(&failed.stderr);
        assert!(
            why.contains("holds an edit it has not loaded") && why.contains("--force"),
            "{why}"
        );
        assert_eq!(std::fs::read_to_string(&rig.lb.config).unwrap(), edited);
        ok(&ctl(&socket, &["save", "--output", &config, "--force"]));
        assert_eq!(std::fs::read_to_string(&rig.lb.config).unwrap(), saved);
    }

    // Refused changes say why and change nothing.
    let generation =
        |lb: &PipeAppliance| metric(&scrape(lb), "lb_config_generation", &[]).unwrap_or(0.0);
    let g = generation(&rig.lb);
    refused(
        &ctl(&socket, &["add-real", "web-nat", "198.18.0.21:8080"]),
        "already has",
    );
    refused(
        &ctl(
            &socket,
            &[
                "add-real",
                "web-nat",
                "198.18.0.22:8080",
                "--forwarding",
                "teleport",
            ],
        ),
        "services[0].reals[2].forwarding",
    );
    refused(
        &ctl(
            &socket,
            &["edit-real", "nope", "198.18.0.21:8080", "--weight", "1"],
        ),
        "no service",
    );
    refused(
        &ctl(&socket, &["del-real", "web-nat", "198.18.0.99:80"]),
        "has no real",
    );
    assert_eq!(generation(&rig.lb), g, "nothing applied");
    assert_eq!(ok(&ctl(&socket, &["save"])), saved, "nothing changed");

    // add-service / del-service.
    ok(&ctl(
        &socket,
        &[
            "add-service",
            "extra",
            "--vip",
            "198.18.1.110",
            "--port",
            "8443",
            "--scheduler",
            "wlc",
            "--set",
            "persistence=\"30s\"",
        ],
    ));
    let saved = ok(&ctl(&socket, &["save"]));
    let c = lb_config::Config::parse(&saved).unwrap();
    let extra = c.services.iter().find(|s| s.name == "extra").unwrap();
    assert_eq!(extra.persistence, Duration::from_secs(30), "--set applied");
    // Any key of the service, validated as in a file: a misspelt one is
    // refused by its path.
    refused(
        &ctl(
            &socket,
            &[
                "add-service",
                "bad",
                "--vip",
                "198.18.1.112",
                "--port",
                "80",
                "--set",
                "health_check.kindd=tcp",
            ],
        ),
        "health_check.kindd",
    );
    ok(&ctl(&socket, &["add-real", "extra", "198.18.0.31:443"]));
    let table = ok(&ctl(&socket, &["list"]));
    assert!(
        table.contains("198.18.1.110:8443") && table.contains("198.18.0.31:443"),
        "{table}"
    );
    refused(
        &ctl(
            &socket,
            &[
                "add-service",
                "bad",
                "--vip",
                "198.18.1.111",
                "--port",
                "80",
                "--protocol",
                "sctp",
            ],
        ),
        "services[",
    );
    ok(&ctl(&socket, &["del-service", "extra"]));
    assert!(!ok(&ctl(&socket, &["list"])).contains("198.18.1.110"));
    ok(&ctl(&socket, &["del-real", "web-nat", "198.18.0.21:8080"]));
    let parsed = lb_config::Config::parse(&ok(&ctl(&socket, &["save"]))).unwrap();
    assert_eq!(
        parsed
            .services
            .iter()
            .find(|s| s.name == "web-nat")
            .unwrap()
            .reals
            .len(),
        1
    );

    // zero: status counts from now; /metrics does not.
    let before = scrape(&rig.lb);
    ok(&ctl(&socket, &["zero"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&ctl(&socket, &["list", "--json"]))).unwrap();
    let real = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web-nat")
        .unwrap()["reals"][0]
        .clone();
    assert_eq!(real["flows_created"], 0, "{real}");
    assert_eq!(
        created(&scrape(&rig.lb), REALS[0]),
        created(&before, REALS[0])
    );
    // --rate: a table of per-second rates.
    let rates = ok(&ctl(&socket, &["list", "--rate"]));
    assert!(
        rates.contains("CPS") && rates.contains("198.18.0.11:8080"),
        "{rates}"
    );

    // Bad requests on the socket: refused with an error, counted.
    let raw = |bytes: &[u8]| -> String {
        let mut c = UnixStream::connect(&rig.socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(bytes);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    };
    assert!(raw(b"not json\n").contains(r#""ok":false"#));
    assert!(raw(b"{\"command\":\"rm-rf\"}\n").contains("not a request"));
    let huge = vec![b'x'; 100_000];
    assert!(raw(&huge).contains("longer than"));
    let s = scrape(&rig.lb);
    assert!(
        metric(
            &s,
            "lb_control_requests_total",
            &[("command", "unknown"), ("result", "refused")]
        )
        .unwrap_or(0.0)
            >= 3.0
    );
    assert!(
        metric(
            &s,
            "lb_control_requests_total",
            &[("command", "add-real"), ("result", "ok")]
        )
        .unwrap_or(0.0)
            >= 2.0
    );
    assert!(
        metric(
            &s,
            "lb_control_requests_total",
            &[("command", "add-real"), ("result", "refused")]
        )
        .unwrap_or(0.0)
            >= 2.0
    );
    // A missing socket is a clear error.
    refused(
        &ctl(&rig.lb.dir.path("nope.sock"), &["list"]),
        "cannot connect",
    );

    // A reload (SIGHUP) replaces the runtime changes with the file.
    let text = rig.lb.text.clone();
    rig.lb.reload_with(&text);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        // (Fed: until the workers take queued snapshots, a publish may
        // wait for room in their queues.)
        let saved = ok(&ctl_fed(&mut rig, &["save"]));
        let c = lb_config::Config::parse(&saved).unwrap();
        if c.services
            .iter()
            .find(|s| s.name == "web-nat")
            .unwrap()
            .reals[0]
            .weight
            == 1
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "the reload did not replace the runtime changes:\n{saved}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = rig.lb.stop();
    assert_eq!(code, Some(0));
    assert!(!socket.exists(), "the socket goes with the appliance");
}
