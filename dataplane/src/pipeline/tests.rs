//! Golden tests: `{description, input frame, expected frame or drop reason}`
//! through the real pipeline on plain buffers. The frames come from scapy
//! (see `fixtures.rs`), not from our own encoder.

use std::net::Ipv4Addr;

use lb_config::{Config, MacAddr};

use super::{fixtures, process, Verdict};
use crate::buffer::{PacketBuf, VecBuf};
use crate::snapshot::Snapshot;
use crate::stats::WorkerStats;

pub(crate) const OUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

pub(crate) fn test_config() -> Config {
    Config::parse(
        r#"
[workers]
lcores = [1]
[[ports]]
name = "wan"
device = "net_null0"
address = "198.18.0.2/24"
[[services]]
name = "web"
vip = "198.18.1.100"
port = 80
[[services.reals]]
address = "198.18.0.11"
"#,
    )
    .expect("test config is valid")
}

pub(crate) fn test_snapshot() -> Snapshot {
    Snapshot::compile(&test_config(), &[OUR_MAC], 1)
}

#[test]
fn golden_local_responder() {
    let snap = test_snapshot();
    assert!(snap.is_vip(Ipv4Addr::new(198, 18, 1, 100)));
    let mut failures = Vec::new();
    for case in fixtures::CASES {
        let stats = WorkerStats::default();
        let mut buf = VecBuf::from_bytes(case.input);
        let verdict = process(&snap, 0, &mut buf, &stats);
        let got = match verdict {
            Verdict::Transmit(0) => Ok(buf.data()),
            Verdict::Transmit(p) => {
                failures.push(format!("{}: sent to port {p}", case.description));
                continue;
            }
            Verdict::Drop(r) => Err(r.as_str()),
        };
        if got != case.output {
            failures.push(format!(
                "{}:\n  expected {:02x?}\n  got      {:02x?}",
                case.description, case.output, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn replies_are_counted() {
    let snap = test_snapshot();
    let stats = WorkerStats::default();
    for case in fixtures::CASES {
        let mut buf = VecBuf::from_bytes(case.input);
        process(&snap, 0, &mut buf, &stats);
    }
    assert_eq!(stats.arp_replies.get(), 2);
    assert_eq!(stats.icmp_echo_replies.get(), 2);
}

#[test]
fn an_unknown_port_index_is_dropped_not_panicked() {
    let snap = test_snapshot();
    let stats = WorkerStats::default();
    let mut buf = VecBuf::from_bytes(fixtures::CASES[0].input);
    assert!(matches!(
        process(&snap, 7, &mut buf, &stats),
        Verdict::Drop(_)
    ));
}
