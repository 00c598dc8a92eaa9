//! Connection sync between two running appliances, without root: each
//! has a `net_pcap` port on a named pipe (`common::PipeAppliance`), and
//! their sync sockets talk over loopback (the primary on 127.0.0.2, the
//! backup on 127.0.0.1, so that a third address is a stranger). Flows
//! fed to the primary must appear in the backup's table, and the sync
//! metrics of the contract must be exported and move; hostile input is
//! refused and counted by reason.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{metric, parse_prometheus_strictly, PipeAppliance, Scrape};
use lb_core::golden;

fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(lb: &PipeAppliance) -> Scrape {
    let out = std::process::Command::new("curl")
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

/// Two appliances; `wait_for` scrapes one of them.
struct Pair {
    primary: PipeAppliance,
    backup: PipeAppliance,
    /// A frame every worker drops at once (to another MAC).
    filler: Vec<u8>,
    /// The backup's sync address.
    backup_addr: String,
}

impl Pair {
    /// Polls `which`'s scrape until `cond` holds (bounded). A `net_pcap`
    /// worker on a pipe blocks in its receive until a frame comes, so each
    /// round feeds both a frame they drop: that gives each worker a poll,
    /// in which a primary hands over its records and a backup installs.
    fn wait_for(
        &mut self,
        primary: bool,
        what: &str,
        mut cond: impl FnMut(&Scrape) -> bool,
    ) -> Scrape {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let filler = self.filler.clone();
            self.primary.feed(&[&filler]);
            self.backup.feed(&[&filler]);
            let lb = if primary { &self.primary } else { &self.backup };
            let s = scrape(lb);
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; have:\n{}\nlog:\n{}",
                s.iter()
                    .filter(|(k, _)| k.starts_with("lb_sync") || k.starts_with("lb_active"))
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                common::tail(&lb.app.log_text(), 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn m(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(s, name, labels).unwrap_or(-1.0)
}

/// A metric summed over all its series.
fn sum(s: &Scrape, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    s.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .sum()
}

fn sync_section_every(role: &str, listen: &str, peer: &str, interval: &str) -> String {
    format!("[sync]\nrole = \"{role}\"\nlisten = \"{listen}\"\npeer = \"{peer}\"\ninterval = \"{interval}\"\n")
}

/// The pair of [`Pair`], started with `[sync] interval` = `interval`, its
/// first heartbeats exchanged.
fn pair_every(interval: &str, scenario: &golden::Scenario) -> Pair {
    let (p_port, b_port) = (free_udp_port("127.0.0.2"), free_udp_port("127.0.0.1"));
    let (p_addr, b_addr) = (format!("127.0.0.2:{p_port}"), format!("127.0.0.1:{b_port}"));
    let backup = PipeAppliance::start(
        "sync-backup",
        &scenario.config,
        &sync_section_every("backup", &b_addr, &p_addr, interval),
    );
    let primary = PipeAppliance::start(
        "sync-primary",
        &scenario.config,
        &sync_section_every("primary", &p_addr, &b_addr, interval),
    );
    let filler = scenario
        .steps
        .iter()
        .find(|s| s.description == "frame to another mac")
        .expect("the golden step")
        .input
        .clone();
    let mut pair = Pair {
        primary,
        backup,
        filler,
        backup_addr: b_addr,
    };
    pair.wait_for(false, "a heartbeat", |s| {
        m(s, "lb_sync_messages_total", &[("direction", "received")]) >= 1.0
    });
    pair
}

/// Flow records do not wait for the interval (the heartbeat's): with
/// `interval = "5s"`, a flow opened on the primary is in the backup's
/// table well before the next interval, so that a takeover loses only
/// the flows of about the last 10 ms, not of the last interval.
#[test]
fn a_new_flow_reaches_the_backup_long_before_the_next_interval() {
    let scenario = golden::scenario("one-arm");
    let mut pair = pair_every("5s", &scenario);
    // A NAT connection's handshake and first data: a flow of every
    // kind the primary syncs.
    let nat: Vec<&[u8]> = scenario
        .steps
        .iter()
        .filter(|s| s.description.starts_with("nat: "))
        .take(3)
        .map(|s| s.input.as_slice())
        .collect();
    let fed = Instant::now();
    pair.primary.feed(&nat);
    let b = pair.wait_for(false, "the new flow in the backup's table", |s| {
        m(s, "lb_active_flows", &[("worker", "1")]) >= 1.0
    });
    let took = fed.elapsed();
    eprintln!("a new flow reached the backup {took:?} after it was fed to the primary");
    // Without the 10 ms flush it took 4.5 to 5 s here (the primary's next
    // interval); 3 s leaves room for a slow scrape on a loaded machine.
    assert!(
        took < Duration::from_secs(3),
        "the new flow took {took:?} to reach the backup, with the interval at 5 s"
    );
    assert!(m(&b, "lb_sync_flows_total", &[("direction", "installed")]) >= 1.0);
    let Pair {
        primary, backup, ..
    } = pair;
    assert_eq!(primary.stop(), Some(0));
    assert_eq!(backup.stop(), Some(0));
}

#[test]
fn flows_of_the_primary_appear_in_the_backups_table() {
    let scenario = golden::scenario("one-arm");
    let mut pair = pair_every("50ms", &scenario);
    assert!(pair.primary.app.log_text().contains("sync: primary on"));
    assert!(pair.backup.app.log_text().contains("sync: backup on"));

    // Heartbeats flow before any traffic.
    let b = pair.wait_for(false, "heartbeats", |s| {
        m(s, "lb_sync_messages_total", &[("direction", "received")]) >= 2.0
    });
    assert_eq!(m(&b, "lb_active_flows", &[("worker", "1")]), 0.0);
    assert_eq!(
        m(&b, "lb_sync_flows_total", &[("direction", "received")]),
        0.0
    );

    // The golden steps create NAT, TUN and DR flows on the primary.
    let frames: Vec<&[u8]> = scenario.steps.iter().map(|s| s.input.as_slice()).collect();
    pair.primary.feed(&frames);
    let p = pair.wait_for(true, "flows created and sent", |s| {
        let active = m(s, "lb_active_flows", &[("worker", "1")]);
        active >= 1.0 && m(s, "lb_sync_flows_total", &[("direction", "sent")]) >= active
    });
    assert!(sum(&p, "lb_flows_created_total") >= 1.0);
    assert!(m(&p, "lb_sync_messages_total", &[("direction", "sent")]) >= 1.0);
    assert_eq!(m(&p, "lb_sync_events_dropped_total", &[]), 0.0);
    let active = m(&p, "lb_active_flows", &[("worker", "1")]);
    let b = pair.wait_for(false, "the primary's flows in the backup's table", |s| {
        m(s, "lb_active_flows", &[("worker", "1")]) == active
    });
    assert!(m(&b, "lb_sync_flows_total", &[("direction", "received")]) >= active);
    assert!(m(&b, "lb_sync_flows_total", &[("direction", "installed")]) >= active);
    assert_eq!(
        sum(&b, "lb_sync_refused_total"),
        0.0,
        "nothing of the primary's is refused"
    );
    assert_eq!(
        sum(&b, "lb_flows_created_total"),
        0.0,
        "a synced flow is not one created here"
    );

    // A takeover in miniature: the NAT flow's next packets, each way,
    // reach the backup, which forwards them with the primary's real and
    // translation instead of dropping them as flows it never saw.
    let step = |d: &str| {
        scenario
            .steps
            .iter()
            .find(|s| s.description.starts_with(d))
            .unwrap_or_else(|| panic!("golden step {d}"))
            .input
            .clone()
    };
    let later = [
        step("nat: later data packet"),
        step("nat: data reply from the real"),
    ];
    pair.backup.feed(&[&later[0], &later[1]]);
    let web = [("real", "198.18.0.11:8080"), ("service", "web-nat")];
    let b = pair.wait_for(false, "the backup forwarding the synced NAT flow", |s| {
        m(s, "lb_packets_forwarded_total", &web) >= 2.0
    });
    assert_eq!(
        m(&b, "lb_packets_dropped_total", &[("reason", "no_flow")]),
        0.0
    );

    // A stranger's datagram, and garbage from the peer's address.
    let b_addr = pair.backup_addr.clone();
    let stranger = UdpSocket::bind("127.0.0.3:0").unwrap();
    stranger.send_to(b"LBSY hello", &b_addr).unwrap();
    let liar = UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut not_ours = [0xa5u8; 16];
    not_ours[8..10].copy_from_slice(&16u16.to_be_bytes()); // its length
    liar.send_to(&not_ours, &b_addr).unwrap();
    liar.send_to(b"LBS", &b_addr).unwrap();
    let b = pair.wait_for(false, "refusals by reason", |s| {
        m(s, "lb_sync_refused_total", &[("reason", "not_from_peer")]) == 1.0
            && m(s, "lb_sync_refused_total", &[("reason", "bad_magic")]) == 1.0
            && m(s, "lb_sync_refused_total", &[("reason", "truncated")]) == 1.0
    });
    // Every sync series of the contract is exported with its labels.
    for (name, label) in [
        ("lb_sync_messages_total", "direction"),
        ("lb_sync_flows_total", "direction"),
        ("lb_sync_refused_total", "reason"),
    ] {
        assert!(
            b.keys()
                .any(|k| k.starts_with(&format!("{name}{{{label}="))),
            "{name} missing"
        );
    }
    assert!(metric(&b, "lb_sync_events_dropped_total", &[]).is_some());

    let Pair {
        primary, backup, ..
    } = pair;
    assert_eq!(primary.stop(), Some(0));
    assert_eq!(backup.stop(), Some(0));
}
