//! Connection sync with real kernel TCP: a primary and a backup appliance,
//! each in a namespace on one segment (a bridge in "sw") with the client
//! and a NAT real, and a management veth between them for sync. A slow
//! download through the primary's VIP makes a NAT flow there; the backup's
//! table must then hold it (`lb_active_flows`), installed from the sync
//! socket and brought up to date as the handshake completes.
//!
//! The takeover itself (the client's and the real's traffic moving to the
//! backup when the primary dies) needs a floating gateway (issue 14), so
//! it is not tested here; `tests/sync.rs` shows the backup forwarding a
//! synced NAT flow's next packets.
//!
//! Needs root; skipped with the reason otherwise, and a failure where
//! LB_REQUIRE_PRIVILEGED_TESTS=1.

mod common;

use std::time::Duration;

use common::{
    metric, parse_metrics, privileged, tail, veth_direct, wait_until, DpdkPrefix, Netns, Proc,
    Scrape, TempDir, BIN,
};

fn config(prefix: &DpdkPrefix, address: &str, role: &str, listen: &str, peer: &str) -> String {
    format!(
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
device = "net_af_packet0,iface=ywan"
address = "{address}/24"
gateway = "198.18.0.10"

[metrics]
listen = "127.0.0.1:9101"

[sync]
role = "{role}"
listen = "{listen}"
peer = "{peer}"
interval = "100ms"

[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
forwarding = "nat"
[[services.reals]]
address = "198.18.0.11"
port = 8080
"#,
        prefix = prefix.0
    )
}

fn scrape(ns: &Netns) -> Scrape {
    let out = ns.try_exec(&[
        "curl",
        "-s",
        "--max-time",
        "3",
        "http://127.0.0.1:9101/metrics",
    ]);
    parse_metrics(&String::from_utf8_lossy(&out.stdout))
}

fn m(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(s, name, labels).unwrap_or(0.0)
}

fn start(ns: &Netns, dir: &TempDir, name: &str, text: &str) -> Proc {
    let path = dir.path(&format!("{name}.toml"));
    let sock = dir.path(&format!("{name}-ctl"));
    std::fs::create_dir_all(&sock).unwrap();
    std::fs::write(&path, common::with_control_socket(text, &sock)).unwrap();
    let mut cmd = ns.command(BIN);
    cmd.args(["-c", path.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let mut app = Proc::spawn(cmd, &dir.path(&format!("{name}.log")));
    assert!(
        app.wait_for_log("worker 0 polling", Duration::from_secs(60)),
        "{name} did not start:\n{}",
        tail(&app.log_text(), 40)
    );
    app
}

#[test]
fn a_nat_flow_of_the_primary_is_in_the_backups_table() {
    if !privileged("a_nat_flow_of_the_primary_is_in_the_backups_table") {
        return;
    }
    let dir = TempDir::new("netns-sync");
    let sw = Netns::new("ysw");
    let client = Netns::new("ycl");
    let real = Netns::new("yre");
    let primary = Netns::new("ypr");
    let backup = Netns::new("ybk");
    sw.exec(&[
        "ip",
        "link",
        "add",
        "ybr",
        "type",
        "bridge",
        "stp_state",
        "0",
    ]);
    sw.exec(&["ip", "link", "set", "ybr", "up"]);
    for (ns, inner, outer) in [
        (&client, "yc0", "ysc"),
        (&real, "yr0", "ysr"),
        (&primary, "ywan", "ysp"),
        (&backup, "ywan", "ysb"),
    ] {
        veth_direct(ns, inner, &sw, outer);
        sw.exec(&["ip", "link", "set", outer, "master", "ybr"]);
    }
    // Sync over a management link of its own, not through the dataplane.
    veth_direct(&primary, "ym0", &backup, "ym0");
    primary.exec(&["ip", "addr", "add", "198.19.9.1/24", "dev", "ym0"]);
    backup.exec(&["ip", "addr", "add", "198.19.9.2/24", "dev", "ym0"]);
    // The client's traffic to the VIP comes from 198.18.3.10, off the
    // segment, so that the real answers it through the appliance (NAT);
    // the appliance reaches it through its gateway, the client's on-link
    // address.
    client.exec(&["ip", "addr", "add", "198.18.0.10/24", "dev", "yc0"]);
    client.exec(&["ip", "addr", "add", "198.18.3.10/32", "dev", "yc0"]);
    client.exec(&[
        "ip",
        "route",
        "add",
        "198.18.1.0/24",
        "via",
        "198.18.0.2",
        "dev",
        "yc0",
        "src",
        "198.18.3.10",
    ]);
    real.exec(&["ip", "addr", "add", "198.18.0.11/24", "dev", "yr0"]);
    real.exec(&["ip", "route", "add", "198.18.3.0/24", "via", "198.18.0.2"]);
    let root = dir.path("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("big.bin"), vec![0x5a; 4 << 20]).unwrap();
    let mut web = real.command("python3");
    web.args(["-m", "http.server", "8080", "--bind", "198.18.0.11"])
        .arg("--directory")
        .arg(&root);
    let _web = Proc::spawn(web, &dir.path("web.log"));

    let (pp, bp) = (DpdkPrefix::new("ysp"), DpdkPrefix::new("ysb"));
    let mut b_app = start(
        &backup,
        &dir,
        "backup",
        &config(
            &bp,
            "198.18.0.3",
            "backup",
            "198.19.9.2:8848",
            "198.19.9.1:8848",
        ),
    );
    let mut p_app = start(
        &primary,
        &dir,
        "primary",
        &config(
            &pp,
            "198.18.0.2",
            "primary",
            "198.19.9.1:8848",
            "198.19.9.2:8848",
        ),
    );
    let fail = |p_app: &mut Proc, b_app: &mut Proc, what: &str| -> ! {
        let _ = p_app.stop("TERM", Duration::from_secs(20));
        let _ = b_app.stop("TERM", Duration::from_secs(20));
        panic!(
            "{what}\n--- primary ---\n{}\n--- backup ---\n{}",
            tail(&p_app.log_text(), 30),
            tail(&b_app.log_text(), 30)
        );
    };
    if !wait_until(Duration::from_secs(10), || {
        m(
            &scrape(&backup),
            "lb_sync_messages_total",
            &[("direction", "received")],
        ) >= 3.0
    }) {
        fail(&mut p_app, &mut b_app, "no heartbeat reached the backup");
    }

    // A slow download through the primary: a NAT flow that lives a while.
    let mut dl = client.command("curl");
    dl.args([
        "-s",
        "--limit-rate",
        "200k",
        "-o",
        "/dev/null",
        "--retry",
        "5",
        "--retry-connrefused",
        "http://198.18.1.100/big.bin",
    ]);
    let _dl = Proc::spawn(dl, &dir.path("curl.log"));
    if !wait_until(Duration::from_secs(20), || {
        let p = scrape(&primary);
        m(&p, "lb_active_flows", &[("worker", "1")]) >= 1.0
            && m(
                &p,
                "lb_packets_forwarded_total",
                &[("real", "198.18.0.11:8080"), ("service", "web")],
            ) > 100.0
    }) {
        fail(
            &mut p_app,
            &mut b_app,
            "the download did not get going through the primary",
        );
    }
    let mut last = Scrape::new();
    if !wait_until(Duration::from_secs(10), || {
        last = scrape(&backup);
        m(&last, "lb_active_flows", &[("worker", "1")]) >= 1.0
            && m(&last, "lb_sync_flows_total", &[("direction", "installed")]) >= 1.0
            && m(&last, "lb_sync_flows_total", &[("direction", "updated")]) >= 1.0
    }) {
        fail(
            &mut p_app,
            &mut b_app,
            &format!("the primary's NAT flow never reached the backup's table: {last:?}"),
        );
    }
    let p = scrape(&primary);
    assert!(m(&p, "lb_sync_flows_total", &[("direction", "sent")]) >= 2.0);
    assert_eq!(
        m(
            &last,
            "lb_flows_created_total",
            &[("real", "198.18.0.11:8080"), ("service", "web")]
        ),
        0.0
    );
    let refused: f64 = last
        .iter()
        .filter(|(k, _)| k.starts_with("lb_sync_refused_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(refused, 0.0, "{last:?}");
    assert_eq!(p_app.stop("TERM", Duration::from_secs(30)), Some(0));
    assert_eq!(b_app.stop("TERM", Duration::from_secs(30)), Some(0));
}
