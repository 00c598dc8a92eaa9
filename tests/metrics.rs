//! `/metrics`, `/status`, `lb-appliance status`, health and reload on a
//! running appliance, without root: its port is a DPDK `net_pcap` reading
//! from a named pipe (with `burst = 1`), so the test feeds packets while it
//! runs. The text must parse with the Prometheus client library's parser,
//! and every metric of the contract must be seen to move (or, for the two
//! that a virtual device cannot provoke, be present for every port).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{PipeAppliance, BIN};
use lb_core::golden;

/// Series name with its sorted labels -> value.
type Scrape = BTreeMap<String, f64>;

/// Parses exposition text with prometheus_client's parser (see
/// `common::parse_prometheus_strictly`).
fn parse(text: &str) -> Scrape {
    common::parse_prometheus_strictly(text)
}

fn get(addr: &str, path: &str) -> String {
    lb_control_get(addr, path)
}

/// A plain HTTP GET (the test must not trust our own client alone, so it
/// uses curl when present and falls back to a socket).
fn lb_control_get(addr: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("http://{addr}{path}")])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            use std::io::Read;
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s.split_once("\r\n\r\n")
                .map(|x| x.1.to_string())
                .unwrap_or_default()
        }
    }
}

fn series<'a>(s: &'a Scrape, name: &str) -> impl Iterator<Item = (&'a String, &'a f64)> + 'a {
    let prefix = format!("{name}{{");
    s.iter().filter(move |(k, _)| k.starts_with(&prefix))
}

fn value(s: &Scrape, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| {
        panic!(
            "{key} missing; have:\n{}",
            s.keys().cloned().collect::<Vec<_>>().join("\n")
        )
    })
}

/// Polls the scrape until `cond` holds (bounded), returning the last one.
fn wait_for(addr: &str, what: &str, mut cond: impl FnMut(&Scrape) -> bool) -> Scrape {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let s = parse(&get(addr, "/metrics"));
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CHECKED: &str = r#"
[[services]]
name = "checked"
vip = "198.18.1.110"
port = 80
forwarding = "nat"
[services.health_check]
kind = "tcp"
interval = "200ms"
timeout = "200ms"
rise = 2
fall = 1
# Down until checked (not the default), so that the first scrape shows 0.
initial = "down"
[[services.reals]]
address = "127.0.0.1"
port = CHECKPORT
weight = 5
"#;

#[test]
fn metrics_status_health_and_reload_on_a_running_appliance() {
    let scenario = golden::scenario("one-arm");
    // A port that is closed now and opened later, for the checked real.
    let check_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut lb = PipeAppliance::start(
        "metrics",
        &scenario.config,
        &CHECKED.replace("CHECKPORT", &check_port.to_string()),
    );
    let base = lb.text.clone();
    let addr = lb.addr.clone();

    // Before any traffic: the checked real is down, nothing forwarded.
    let s0 = parse(&get(&addr, "/metrics"));
    assert_eq!(
        value(
            &s0,
            "lb_real_up{real=127.0.0.1:CHECKPORT,service=checked}"
                .replace("CHECKPORT", &check_port.to_string())
                .as_str()
        ),
        0.0,
        "a checked real starts down"
    );
    assert_eq!(
        value(
            &s0,
            "lb_build_info{dpdk=DPDK 22.11.11,version=0.1.0}"
                .replace("DPDK 22.11.11", &lb_dpdk_version())
                .as_str()
        ),
        1.0
    );

    // Traffic: the golden one-arm steps.
    let frames: Vec<&[u8]> = scenario.steps.iter().map(|s| s.input.as_slice()).collect();
    lb.feed(&frames);
    let n = frames.len() as f64;
    let mut busy_seen = false;
    let s1 = wait_for(&addr, "all frames received", |s| {
        busy_seen |= series(s, "lb_worker_busy_ratio").any(|(_, v)| *v > 0.0);
        s.get("lb_port_rx_packets_total{port=wan}") == Some(&n)
    });

    // The ratio is computed once a second over that second's polls.
    if !busy_seen && !series(&s1, "lb_worker_busy_ratio").any(|(_, v)| *v > 0.0) {
        wait_for(&addr, "lb_worker_busy_ratio to show the traffic", |s| {
            series(s, "lb_worker_busy_ratio").any(|(_, v)| *v > 0.0)
        });
    }

    // Health: open the port; the real rises after 2 checks.
    let listener = TcpListener::bind(("127.0.0.1", check_port)).unwrap();
    let up_key = format!("lb_real_up{{real=127.0.0.1:{check_port},service=checked}}");
    let s2 = wait_for(&addr, "the checked real to come up", |s| {
        s.get(&up_key) == Some(&1.0)
    });
    drop(listener);
    wait_for(&addr, "the checked real to go down", |s| {
        s.get(&up_key) == Some(&0.0)
    });

    // A valid reload: a weight changes.
    let gen_before = value(&s2, "lb_config_generation{}");
    lb.reload_with(&base.replace("weight = 5", "weight = 7"));
    let weight_key = format!("lb_real_weight{{real=127.0.0.1:{check_port},service=checked}}");
    let s3 = wait_for(&addr, "a successful reload", |s| {
        s.get("lb_config_reloads_total{result=success}") == Some(&1.0)
    });
    assert_eq!(value(&s3, &weight_key), 7.0);
    assert!(value(&s3, "lb_config_generation{}") > gen_before);

    // An invalid file, then a change that needs a restart: both refused,
    // nothing changes.
    lb.reload_with(&base.replace("weight = 5", "weight = -3"));
    let s4 = wait_for(&addr, "a failed reload", |s| {
        s.get("lb_config_reloads_total{result=failure}") == Some(&1.0)
    });
    lb.reload_with(
        &base
            .replace("weight = 5", "weight = 7")
            .replace("burst = 1", "burst = 2"),
    );
    let s5 = wait_for(&addr, "a refused reload", |s| {
        s.get("lb_config_reloads_total{result=failure}") == Some(&2.0)
    });
    for s in [&s4, &s5] {
        assert_eq!(
            value(s, &weight_key),
            7.0,
            "a refused reload changes nothing"
        );
        assert_eq!(
            value(s, "lb_config_generation{}"),
            value(&s3, "lb_config_generation{}")
        );
    }
    let log = lb.app.log_text();
    assert!(
        log.contains("services[5].reals[0].weight: -3 is out of range"),
        "the error names the key:\n{log}"
    );
    assert!(
        log.contains("dpdk") && log.contains("needs a restart"),
        "the refusal names the setting:\n{log}"
    );

    // Every metric of the contract moved between the first and last scrape.
    let last = parse(&get(&addr, "/metrics"));
    let moved = |name: &str| series(&last, name).any(|(k, v)| s0.get(k) != Some(v));
    for name in [
        "lb_port_rx_packets_total",
        "lb_port_tx_packets_total",
        "lb_port_rx_bytes_total",
        "lb_port_tx_bytes_total",
        "lb_packets_dropped_total",
        "lb_flows_created_total",
        "lb_packets_forwarded_total",
        "lb_bytes_forwarded_total",
        "lb_active_flows",
        "lb_real_weight",
        "lb_real_active_flows",
        "lb_real_inactive_flows",
        "lb_health_checks_total",
        "lb_config_reloads_total",
        "lb_config_generation",
    ] {
        assert!(moved(name), "{name} did not move");
    }
    // lb_real_up moved (0 -> 1 -> 0 above); capacity and build info are set.
    assert_eq!(
        value(&last, "lb_flow_table_capacity{worker=1}"),
        1_048_576.0
    );
    // No port has an IPv6 address: no IPv6 table, and its gauges say so.
    assert_eq!(value(&last, "lb_ipv6_flow_table_capacity{worker=1}"), 0.0);
    assert_eq!(value(&last, "lb_ipv6_active_flows{worker=1}"), 0.0);
    // A virtual device cannot drop on its rx ring or refuse a transmit:
    // these are read from the driver (imissed, oerrors) and the workers'
    // tx-full counts, and must exist for every port.
    for name in ["lb_port_rx_missed_total", "lb_port_tx_failed_total"] {
        assert_eq!(value(&last, &format!("{name}{{port=wan}}")), 0.0);
    }

    // The worker counters once logged only at stop: the golden steps hold
    // two ARP requests for us, one echo request, one DF packet too big for
    // the tunnel and ICMP errors about flows.
    let w = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("worker", "1")];
        labels.extend_from_slice(extra);
        common::metric(&last, name, &labels).unwrap_or_else(|| panic!("{name}{extra:?} missing"))
    };
    assert_eq!(w("lb_worker_rx_packets_total", &[]), n);
    assert_eq!(
        w("lb_neighbor_messages_sent_total", &[("type", "arp_reply")]),
        2.0
    );
    assert_eq!(w("lb_icmp_echo_replies_total", &[]), 1.0);
    assert_eq!(w("lb_icmp_frag_needed_sent_total", &[]), 1.0);
    assert!(w("lb_icmp_errors_forwarded_total", &[]) >= 4.0);
    assert!(w("lb_worker_flows_created_total", &[]) >= 4.0);
    assert_eq!(
        w("lb_worker_packets_dropped_total", &[]),
        series(&last, "lb_packets_dropped_total")
            .map(|(_, v)| v)
            .sum::<f64>(),
        "one worker: its drops are all the drops"
    );
    assert!(w("lb_worker_polls_total", &[]) >= w("lb_worker_busy_polls_total", &[]));
    assert!(w("lb_worker_busy_polls_total", &[]) >= 1.0);
    for name in [
        "lb_flows_expired_total",
        "lb_flows_evicted_total",
        "lb_flow_table_full_total",
        "lb_stateless_forwards_total",
        "lb_held_packets_total",
        "lb_icmp_frag_needed_rate_limited_total",
    ] {
        assert!(w(name, &[]) >= 0.0);
    }
    // Every frame received is accounted for: sent, dropped by a reason, or
    // taken in by the worker (one worker, nothing held or handed on).
    assert_eq!(
        w("lb_worker_rx_packets_total", &[]),
        w("lb_worker_tx_packets_total", &[])
            + w("lb_worker_packets_dropped_total", &[])
            + w("lb_worker_packets_consumed_total", &[]),
        "rx = tx + dropped + consumed"
    );
    for direction in ["in", "out"] {
        assert_eq!(w("lb_handoffs_total", &[("direction", direction)]), 0.0);
    }
    // The process collector: the names every Prometheus client exports.
    let p = |name: &str| value(&last, &format!("{name}{{}}"));
    // Whole seconds (the prometheus crate's collector): a worker blocked
    // on the pipe may not have used one yet.
    assert!(p("process_cpu_seconds_total") >= 0.0);
    // The metrics server's own refusals (over its bound of connections):
    // none for one scraper at a time.
    assert_eq!(p("lb_metrics_connections_refused_total"), 0.0);
    assert!(p("process_resident_memory_bytes") > 1e6);
    assert!(p("process_virtual_memory_bytes") >= p("process_resident_memory_bytes"));
    assert!(p("process_open_fds") >= 3.0 && p("process_max_fds") >= p("process_open_fds"));
    assert!(
        p("process_threads") >= 3.0,
        "main, a worker, the metrics server"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = p("process_start_time_seconds");
    assert!(
        start <= now && start > now - 300.0,
        "started {start}, now {now}"
    );

    // /status matches the config, and the status command prints it.
    let status: serde_json::Value = serde_json::from_str(&get(&addr, "/status")).unwrap();
    let services = status["services"].as_array().unwrap();
    let cfg = lb_config::Config::parse(&base.replace("weight = 5", "weight = 7")).unwrap();
    assert_eq!(services.len(), cfg.services.len());
    for (got, want) in services.iter().zip(&cfg.services) {
        assert_eq!(got["name"], want.name.as_str());
        assert_eq!(got["vip"], want.vip.to_string().as_str());
        assert_eq!(got["port"], want.port);
        assert_eq!(got["scheduler"], want.scheduler.to_string().as_str());
        let reals = got["reals"].as_array().unwrap();
        assert_eq!(reals.len(), want.reals.len());
        for (r, w) in reals.iter().zip(&want.reals) {
            assert_eq!(r["address"], w.address.to_string().as_str());
            assert_eq!(r["port"], w.port);
            assert_eq!(r["weight"], w.weight);
            assert_eq!(r["forwarding"], w.forwarding.to_string().as_str());
        }
    }
    let table = Command::new(BIN)
        .args(["status", "--metrics", &addr])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        text.contains("198.18.1.100:80")
            && text.contains("-> 198.18.0.11:8080")
            && text.contains("Masq"),
        "{text}"
    );
    assert!(
        text.contains("(down)"),
        "the checked real is down again:\n{text}"
    );
    // ipvsadm's columns, each service's name, and why a down real is down
    // (the last error the LBRealDown alert points operators to).
    assert!(text.contains("ActiveConn InActConn"), "{text}");
    for s in &cfg.services {
        let endpoint = std::net::SocketAddr::new(s.vip, s.port).to_string();
        assert!(
            text.lines()
                .any(|l| l.contains(&endpoint) && l.ends_with(&format!("  {}", s.name))),
            "the line of {endpoint} names {}:\n{text}",
            s.name
        );
    }
    let checked_real = format!("-> 127.0.0.1:{check_port}");
    assert!(
        text.lines()
            .any(|l| l.contains(&checked_real) && l.contains("(down) last error: connect: ")),
        "the checked real's line gives its last error:\n{text}"
    );
    // --json is /status: a superset of the old fields, with inactive_flows.
    for r in services.iter().flat_map(|s| s["reals"].as_array().unwrap()) {
        assert!(r["inactive_flows"].is_u64(), "{r}");
        assert!(r["active_flows"].is_u64(), "{r}");
    }
    // `status -c FILE` (the flag after the subcommand) finds the listener
    // from the file: the running one's text, with the port it was given
    // (it was started on port 0).
    let file = lb.dir.path("status.toml");
    std::fs::write(
        &file,
        lb.text
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\"")),
    )
    .unwrap();
    let by_file = Command::new(BIN)
        .args(["status", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        by_file.status.success(),
        "{}",
        String::from_utf8_lossy(&by_file.stderr)
    );
    assert!(String::from_utf8_lossy(&by_file.stdout).contains("InActConn"));

    let log = lb.app.log_text();
    assert_eq!(lb.stop(), Some(0), "{log}");
}

fn lb_dpdk_version() -> String {
    String::from_utf8(
        Command::new("pkg-config")
            .args(["--modversion", "libdpdk"])
            .output()
            .unwrap()
            .stdout,
    )
    .map(|v| format!("DPDK {}", v.trim()))
    .unwrap()
}

/// A script check on a running appliance, with the default `initial`: the
/// real is up before its first result (no check has finished at the first
/// scrape), its first failure takes it down at once although `fall` is 3,
/// `lb-appliance status` shows the script's error, and it comes back once
/// the script succeeds.
#[test]
fn a_script_checked_real_starts_up_and_its_first_failure_takes_it_down() {
    let scenario = golden::scenario("one-arm");
    let dir = common::TempDir::new("metrics-script");
    let (started, flag) = (dir.path("started"), dir.path("flag"));
    // The first check takes 2 s, so the first scrapes come before any
    // result; the later ones answer at once.
    let body = format!(
        "if [ ! -e {s} ]; then touch {s}; sleep 2; fi; [ -e {f} ] || {{ echo \"no flag for $LB_SERVICE $LB_REAL_ADDRESS:$LB_REAL_PORT\" >&2; exit 1; }}",
        s = started.display(),
        f = flag.display()
    );
    let service = format!(
        r#"
[[services]]
name = "scripted"
vip = "198.18.1.120"
port = 80
forwarding = "nat"
[services.health_check]
kind = "script"
command = ["/bin/sh", "-c", '{body}']
interval = "2500ms"
timeout = "2500ms"
rise = 1
fall = 3
[[services.reals]]
address = "198.18.0.11"
port = 9000
"#
    );
    let lb = PipeAppliance::start("metrics-script", &scenario.config, &service);
    let addr = lb.addr.clone();
    let up_key = "lb_real_up{real=198.18.0.11:9000,service=scripted}";
    let s0 = parse(&get(&addr, "/metrics"));
    assert_eq!(value(&s0, up_key), 1.0, "initial = up (the default)");
    assert!(
        series(&s0, "lb_health_checks_total").all(|(k, _)| !k.contains("service=scripted")),
        "no result yet: the state is the initial one"
    );
    let s1 = wait_for(&addr, "the first failure to take the real down", |s| {
        s.get(up_key) == Some(&0.0)
    });
    // Read from the scrape that first saw it down: fewer failures than
    // `fall` (a busy host may run the next check before that scrape, found
    // flaky at exactly 1).
    let failures = value(
        &s1,
        "lb_health_checks_total{real=198.18.0.11:9000,result=failure,service=scripted}",
    );
    assert!(
        (1.0..3.0).contains(&failures),
        "{failures} failures: one was enough (fall = 3)"
    );
    let table = Command::new(BIN)
        .args(["status", "--metrics", &addr])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines().any(|l| l.contains("-> 198.18.0.11:9000")
            && l.ends_with(
                "(down) last error: /bin/sh: exit status 1: no flag for scripted 198.18.0.11:9000"
            )),
        "{text}"
    );
    std::fs::write(&flag, "").unwrap();
    wait_for(&addr, "the real to come back", |s| {
        s.get(up_key) == Some(&1.0)
    });
    let log = lb.app.log_text();
    assert_eq!(lb.stop(), Some(0), "{log}");
}
