//! The real `lb-appliance` binary on a DPDK `net_pcap` device: frames are
//! replayed from a pcap file, and what it transmits is compared byte for
//! byte with replies built by scapy (see `scripts/gen-local-fixtures.py`),
//! then checked again by tshark, an independent dissector. Needs no root.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{read_pcap, write_pcap, DpdkPrefix, Proc, TempDir, BIN};

#[path = "../dataplane/src/pipeline/fixtures.rs"]
mod fixtures;

#[test]
fn arp_and_echo_replies_through_the_binary_are_byte_exact() {
    let dir = TempDir::new("pcap-local");
    let input = dir.path("in.pcap");
    let output = dir.path("out.pcap");
    let frames: Vec<&[u8]> = fixtures::CASES.iter().map(|c| c.input).collect();
    write_pcap(&input, &frames);
    let config = dir.path("lb.toml");
    let prefix = DpdkPrefix::new("pcap");
    std::fs::write(
        &config,
        format!(
            r#"
[dpdk]
eal_args = ["-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix", "{prefix}"]
mbufs = 2047
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_pcap0,rx_pcap={input},tx_pcap={output}"
address = "198.18.0.2/24"
mac = "02:00:00:00:00:02"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[[services.reals]]
address = "198.18.0.11"
"#,
            prefix = prefix.0,
            input = input.display(),
            output = output.display()
        ),
    )
    .unwrap();

    let mut cmd = Command::new(BIN);
    cmd.args(["-c", config.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let mut app = Proc::spawn(cmd, &dir.path("lb.log"));
    assert!(
        app.wait_for_log("polling", Duration::from_secs(20)),
        "the appliance did not start:\n{}",
        app.log_text()
    );
    // The pcap driver reads its whole file in the first polls; give it time,
    // then stop (which closes the port and flushes the output file).
    std::thread::sleep(Duration::from_millis(1500));
    let code = app.stop("TERM", Duration::from_secs(20));
    let log = app.log_text();
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{log}");
    assert!(
        log.contains("port wan: rx"),
        "final port counters are logged:\n{log}"
    );

    let expected: Vec<&[u8]> = fixtures::CASES
        .iter()
        .filter_map(|c| c.output.ok())
        .collect();
    let got = read_pcap(&output);
    assert_eq!(got.len(), expected.len(), "replies sent:\n{log}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.as_slice(), *e, "reply {i} differs");
    }

    // Every drop is counted under its reason.
    let mut want = std::collections::BTreeMap::<&str, usize>::new();
    for c in fixtures::CASES {
        if let Err(reason) = c.output {
            *want.entry(reason).or_default() += 1;
        }
    }
    for (reason, n) in want {
        assert!(
            log.contains(&format!("{reason}={n}")),
            "{reason}={n} missing in:\n{log}"
        );
    }

    // An independent dissector agrees that every checksum is right.
    let tshark = Command::new("tshark")
        .args([
            "-r",
            output.to_str().unwrap(),
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args([
            "-Y",
            "ip.checksum.status == \"Bad\" || icmp.checksum.status == \"Bad\" || _ws.malformed",
        ])
        .output();
    match tshark {
        Ok(out) => {
            assert!(
                out.status.success(),
                "tshark: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout.is_empty(),
                "tshark flags: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Err(e) if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") => {
            panic!("tshark is needed (scripts/install-deps.sh installs it): {e}")
        }
        Err(e) => eprintln!("SKIPPED the tshark cross-check: {e}"),
    }
}
