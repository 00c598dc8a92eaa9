//! Attacker's-eye audit of reloads (a `net_pcap` port on a named pipe,
//! no root): what a refused reload says and leaves.

mod common;

use std::time::Duration;

use common::PipeAppliance;
use lb_core::golden;

/// The house rule: a refused reload names the offending key. A change
/// in `[dpdk]` was refused as `dpdk changed, which needs a restart`, the
/// section only, where `[[ports]]` and `[sync]` name the key that changed
/// (`ports[0].mtu`, `sync.peer`): which of `eal_args`, `mbufs` or `burst`
/// the operator must put back was not said (found in audit;
/// `Config::dpdk_changed`).
#[test]
fn a_reload_refused_for_a_dpdk_change_names_the_key() {
    let scenario = golden::scenario("one-arm");
    let mut lb = PipeAppliance::start("audit-dpdk", &scenario.config, "");
    let text = lb.text.replace("burst = 1\n", "burst = 2\n");
    assert_ne!(text, lb.text, "the pipe appliance's config has burst = 1");
    lb.reload_with(&text);
    assert!(
        lb.app
            .wait_for_log("the running config is unchanged", Duration::from_secs(10)),
        "{}",
        common::tail(&lb.app.log_text(), 20)
    );
    let log = lb.app.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("reload of") && l.contains("refused"))
        .unwrap_or_default()
        .to_string();
    lb.stop();
    assert!(line.contains("dpdk.burst"), "{line}");
}

fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Reloads that restart the checkers of reals whose checks hang (each
/// old checker stays in its check until its timeout) leave no thread
/// behind once those timeouts have passed. (Held in audit: 20 reloads
/// in 3 s with 20 hanging reals peaked at about 240 extra threads, all
/// gone within the old timeout.)
#[test]
fn reloads_that_restart_hanging_checkers_leave_no_threads() {
    let listeners: Vec<std::net::TcpListener> = (0..20)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let service = |timeout: &str| {
        let mut text = format!(
            "\n[[services]]\nname = \"hanging\"\nvip = \"198.18.1.120\"\nport = 80\nforwarding = \"nat\"\n[services.health_check]\nkind = \"http\"\ninterval = \"2s\"\ntimeout = \"{timeout}\"\n"
        );
        for l in &listeners {
            let port = l.local_addr().unwrap().port();
            text.push_str(&format!(
                "[[services.reals]]\naddress = \"127.0.0.1\"\nport = {port}\n"
            ));
        }
        text
    };
    let scenario = golden::scenario("one-arm");
    let lb = PipeAppliance::start("audit-churn", &scenario.config, &service("2s"));
    let pid = lb.app.pid();
    std::thread::sleep(Duration::from_secs(3));
    let before = threads(pid);
    let base = lb.text.clone();
    for i in 0..20 {
        let t = if i % 2 == 0 { "1900ms" } else { "2s" };
        let text = base.replace(&service("2s"), &service(t));
        lb.reload_with(&text);
        std::thread::sleep(Duration::from_millis(150));
    }
    let peak = threads(pid);
    std::thread::sleep(Duration::from_secs(4));
    let after = threads(pid);
    let log = lb.app.log_text();
    lb.stop();
    eprintln!("threads: {before} before, {peak} at the peak, {after} after");
    assert!(
        log.matches("reloaded ").count() >= 10,
        "{}",
        common::tail(&log, 20)
    );
    assert!(after <= before + 4, "{before} -> {after}");
}
