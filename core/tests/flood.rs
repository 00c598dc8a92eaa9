//! The flow table under attack, at a reduced scale: the capacity and the
//! flood rates are scaled down together (a 16,384-entry table against
//! 16,384 spoofed packets per second stands for 1M entries against 1 Mpps:
//! what matters is how long an entry lives under the flood), the time
//! scales (ACK delays, timeouts) are real. `cargo bench -p lb-core --bench
//! flood` runs the same lab at full scale and prints the figures.

#[path = "support/flood.rs"]
mod flood;

use flood::{Flood, Lab, VIP_DR, VIP_MH, VIP_NAT, VIP_TUN};
use lb_core::pipeline::Verdict;
use lb_core::DropReason;

const CAPACITY: usize = 16_384;

/// Spoofed ACKs to a Maglev service and spoofed SYN-then-ACK pairs to TUN
/// and DR services used to fill the table with entries nothing could
/// evict; now they are one-way or unconfirmed, and a legitimate flow to
/// NAT or to a `wrr` TUN service always finds room.
#[test]
fn one_way_floods_never_make_nat_or_wrr_refuse_a_flow() {
    let mut lab = Lab::new(CAPACITY, "", 1);
    let floods = [
        (Flood::Ack(VIP_MH), 8_000),
        (Flood::SynThenAck(VIP_TUN), 8_000),
        (Flood::SynThenAck(VIP_DR), 8_000),
    ];
    // Fill the table first.
    lab.run(3_000, &floods);
    assert!(
        lab.pipeline.flows().is_full(),
        "the floods filled the table"
    );
    for round in 0..20 {
        for _ in 0..10 {
            assert_eq!(
                lab.connect(VIP_NAT, 100),
                Verdict::Transmit(0),
                "round {round}"
            );
            let tun = lab.connect(VIP_TUN, 100);
            assert_eq!(tun, Verdict::Transmit(0), "round {round}");
        }
        lab.run(250, &floods);
    }
    let (started, completed) = lab.handshakes(VIP_NAT, 100);
    assert_eq!(completed, started, "every NAT handshake completed");
    let (started, completed) = lab.handshakes(VIP_TUN, 100);
    assert_eq!(completed, started, "every TUN handshake completed");
    assert_eq!(lab.legit_drops.get(&DropReason::FlowTableFull), None);
    assert_eq!(lab.stats().flow_table_full.get(), 0);
    assert!(lab.stats().flows_evicted.get() > 10_000);
    lab.pipeline.flows().audit().unwrap();
}

/// A SYN flood never costs an established (confirmed) NAT flow its entry
/// or its real. With the SYN proxy off, so that the flood does reach the
/// table (`auto`, the default, would answer it with cookies once the table
/// is half full: see the next test).
#[test]
fn a_syn_flood_keeps_every_established_flow_on_its_real() {
    let mut lab = Lab::new(CAPACITY, "syn_proxy = \"off\"", 2);
    for _ in 0..1_000 {
        lab.connect(VIP_NAT, 30);
    }
    lab.run(100, &[]);
    assert_eq!(lab.handshakes(VIP_NAT, 30), (1_000, 1_000));
    lab.run(5_000, &[(Flood::Syn(VIP_NAT), 3 * CAPACITY as u64)]);
    assert_eq!(lab.check_established(), (1_000, 1_000));
    assert!(
        lab.stats().flows_evicted.get() > 0,
        "the flood did fill the table"
    );
}

/// The same flood against the default `auto`: once the table is half full
/// the SYN proxy answers the spoofed SYNs with cookies, the table stops
/// growing, nothing is evicted, and the established flows keep their
/// reals.
#[test]
fn with_the_syn_proxy_on_auto_a_syn_flood_costs_no_entry() {
    let mut lab = Lab::new(CAPACITY, "", 2);
    for _ in 0..1_000 {
        lab.connect(VIP_NAT, 30);
    }
    lab.run(100, &[]);
    assert_eq!(lab.handshakes(VIP_NAT, 30), (1_000, 1_000));
    lab.run(5_000, &[(Flood::Syn(VIP_NAT), 3 * CAPACITY as u64)]);
    assert_eq!(lab.check_established(), (1_000, 1_000));
    assert_eq!(lab.stats().flows_evicted.get(), 0, "no entry was taken");
    assert!(
        lab.pipeline.flows().len() <= CAPACITY / 2 + 1,
        "the table stopped at the pressure mark: {}",
        lab.pipeline.flows().len()
    );
    assert!(lab.stats().syn_proxy_cookies_sent.get() > CAPACITY as u64);
    lab.pipeline.flows().audit().unwrap();
}

/// RSTs whose sequence numbers are outside the window change nothing, for
/// every method.
#[test]
fn spoofed_out_of_window_rsts_change_nothing() {
    let mut lab = Lab::new(CAPACITY, "", 3);
    for _ in 0..200 {
        for vip in [VIP_NAT, VIP_TUN, VIP_DR, VIP_MH] {
            lab.connect(vip, 30);
        }
    }
    lab.run(100, &[]);
    assert_eq!(lab.check_established(), (800, 800));
    lab.run(2_000, &[(Flood::Rst, 20_000)]);
    assert!(lab.flood_sent >= 40_000);
    assert_eq!(
        lab.check_established(),
        (800, 800),
        "every flow kept its real"
    );
    lab.pipeline.flows().audit().unwrap();
}

/// The Done-when of the SYN-flood defence, at 1/64 scale: under a spoofed
/// SYN flood at the table's capacity per second (1 Mpps against 1M
/// entries at full scale), at least 99.9 % of legitimate handshakes to a
/// NAT service complete with client ACK delays of 30 ms to 1 s, and every
/// established flow keeps its real, with the SYN proxy `auto` (the
/// default) and `on`.
#[test]
fn under_a_syn_flood_handshakes_complete_with_acks_up_to_a_second_late() {
    const DELAYS: [u32; 4] = [30, 100, 300, 1000];
    for (mode, extra) in [("auto", ""), ("on", "syn_proxy = \"on\"")] {
        let mut lab = Lab::new(CAPACITY, extra, 4);
        for _ in 0..300 {
            lab.connect(VIP_NAT, 30);
        }
        lab.run(100, &[]);
        let flood = [(Flood::Syn(VIP_NAT), CAPACITY as u64)];
        lab.run(2_000, &flood);
        for i in 0..1_200 {
            lab.connect(VIP_NAT, DELAYS[i % 4]);
            lab.run(2, &flood);
        }
        lab.run(1_200, &flood);
        let (mut started, mut completed) = (0, 0);
        for d in DELAYS {
            let (n, ok) = lab.handshakes(VIP_NAT, d);
            started += n;
            completed += ok;
            if d != 30 {
                assert_eq!(n, 300, "{mode}: {d} ms");
            }
        }
        assert!(
            completed * 1000 >= started * 999,
            "{mode}: {completed} of {started} handshakes completed ({:?}; drops {:?}; {} flows)",
            DELAYS.map(|d| lab.handshakes(VIP_NAT, d)),
            lab.legit_drops,
            lab.pipeline.flows().len()
        );
        let (est, kept) = lab.check_established();
        assert_eq!(kept, est, "{mode}: every established flow kept its real");
        assert!(lab.stats().syn_proxy_cookies_sent.get() > 0, "{mode}");
        lab.pipeline.flows().audit().unwrap();
    }
}
