//! Attacker's-eye audit of reloads (a `net_pcap` port on a named pipe,
//! no root): what a refused reload says and leaves.

mod common;

use std::time::Duration;

use common::PipeAppliance;
use lb_core::golden;

/// The house rule: a refused reload names the offending key. A change
/// in `[dpdk]` is refused as `dpdk changed, which needs a restart`, the
/// section only, where `[[ports]]` and `[sync]` name the key that changed
/// (`ports[0].mtu`, `sync.peer`): which of `eal_args`, `mbufs` or `burst`
/// the operator must put back is not said.
#[test]
#[ignore = "audit: a reload refused for a [dpdk] change does not name the key"]
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
