//! The appliance in a network namespace on a veth interface through DPDK's
//! `net_af_packet` driver answers the kernel's own `arping` and `ping`, for
//! its address and for a VIP. Needs root (network namespaces); skipped with
//! the reason otherwise, and a failure where LB_REQUIRE_PRIVILEGED_TESTS=1.

mod common;

use std::time::Duration;

use common::{privileged, veth, DpdkPrefix, Netns, Proc, TempDir, BIN};

#[test]
fn af_packet_port_answers_arping_and_ping_for_its_address_and_a_vip() {
    if !privileged("af_packet_port_answers_arping_and_ping_for_its_address_and_a_vip") {
        return;
    }
    let dir = TempDir::new("netns-local");
    let client = Netns::new("cl");
    let lb = Netns::new("lb");
    veth(&client, "cl0", &lb, "lb0");
    client.exec(&["ip", "addr", "add", "198.18.0.1/24", "dev", "cl0"]);
    client.exec(&["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);

    let config = dir.path("lb.toml");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/local-responder.toml"
    ))
    .unwrap();
    let prefix = DpdkPrefix::new("ns");
    std::fs::write(
        &config,
        common::with_control_socket(
            &example.replace("\"lb-demo\"", &format!("\"{}\"", prefix.0)),
            &dir.0,
        ),
    )
    .unwrap();

    let mut cmd = lb.command(BIN);
    cmd.args(["-c", config.to_str().unwrap()]);
    let mut app = Proc::spawn(cmd, &dir.path("lb.log"));
    assert!(
        app.wait_for_log("polling", Duration::from_secs(30)),
        "did not start:\n{}",
        app.log_text()
    );

    for target in ["198.18.0.2", "198.18.1.100"] {
        let out = client.try_exec(&["arping", "-c", "3", "-w", "5", "-I", "cl0", target]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "arping {target}:\n{text}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            app.log_text()
        );
        assert!(
            text.contains("reply from") || text.contains("bytes from"),
            "arping {target}: {text}"
        );
        let out = client.try_exec(&["ping", "-c", "3", "-W", "2", target]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ping {target}:\n{text}\n{}",
            app.log_text()
        );
        assert!(text.contains(" 0% packet loss"), "ping {target}: {text}");
    }
    let code = app.stop("INT", Duration::from_secs(20));
    let log = app.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGINT:\n{log}");
    assert!(log.contains("echo replies 6"), "{log}");
}
