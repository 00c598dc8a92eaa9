//! The seeds of the `sync` corpus (`fuzz/corpus/sync/seed-*`), made here
//! from the `pipeline` target's snapshots so that they name services and
//! reals that exist (mutation alone would rarely find one): every real of
//! every service synced as established (TCP) or a datagram flow (UDP),
//! from clients of both families, then updated, a proxied flow, removals,
//! a heartbeat, and datagrams the receiver must refuse (another version,
//! a bad magic, cut short, a count that lies).
//!
//! Every seed must run clean and install something. `LB_WRITE_SEEDS=1
//! cargo test -p lb-fuzz-harness --test sync_seeds` writes them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lb_config::{ForwardingMethod, Protocol};
use lb_core::flow::{Conntrack, FlowState, Trust};
use lb_core::stats::WorkerStats;
use lb_core::sync::auth::Sealer;
use lb_core::sync::segments::Received;
use lb_core::wire::sync::{
    flags, ClientSeq, FlowChange, FlowRecord, FlowUpdate, MessageWriter, ProxyState, AUTH_LEN,
    MAX_MESSAGE_LEN,
};
use lb_fuzz_harness::{configs, Target};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/sync")
}

/// Every real of every service of snapshot `variant` of `topology`, one
/// flow each (client port `base + i`), as the primary would send them.
fn records(topology: usize, variant: usize, base: u16) -> Vec<FlowRecord> {
    let snap = &configs::family(topology).snapshots[variant];
    let mut out = Vec::new();
    let mut port = base;
    for s in &snap.services {
        for r in &s.reals {
            port += 1;
            let client: IpAddr = match s.vip {
                IpAddr::V4(_) => Ipv4Addr::new(198, 51, 100, 9).into(),
                IpAddr::V6(_) => "2001:db8::9".parse::<Ipv6Addr>().unwrap().into(),
            };
            let udp = s.protocol == Protocol::Udp;
            // IPv4 NAT and NAT66 alike carry the SYN proxy's offsets.
            let proxied = !udp
                && s.vip.is_ipv4() == r.address.is_ipv4()
                && r.method == ForwardingMethod::Nat
                && port % 3 == 0;
            out.push(FlowRecord {
                proto: if udp { 17 } else { 6 },
                client,
                client_port: port,
                vip: s.vip,
                vip_port: s.port,
                change: FlowChange::Update(FlowUpdate {
                    real: r.address,
                    real_port: r.port,
                    method: r.method,
                    state: if udp {
                        FlowState::Datagram
                    } else {
                        FlowState::Established
                    },
                    fin_by_client: false,
                    trust: Trust::Confirmed,
                    proxy: proxied.then_some(ProxyState {
                        seq_offset: 0x1000_0000 + u32::from(port),
                        ts_offset: Some(99),
                        client_wscale: Some(7),
                        real_wscale: Some(8),
                    }),
                    // TUN and DR say where the client stands.
                    client_seq: (!udp && r.method != ForwardingMethod::Nat).then_some(ClientSeq {
                        next: 0x2000_0000 + u32::from(port),
                        ack: 0x3000_0000,
                    }),
                }),
            });
        }
    }
    out
}

/// Datagrams as the input format frames them.
fn input(header: [u8; 3], datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut d = header.to_vec();
    for m in datagrams {
        d.extend_from_slice(&u16::try_from(m.len()).unwrap().to_be_bytes());
        d.extend_from_slice(m);
    }
    d
}

/// `records` in as many messages as they take.
fn messages(records: &[FlowRecord], seq: &mut u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut left = records;
    while !left.is_empty() {
        let mut buf = vec![0u8; MAX_MESSAGE_LEN];
        let mut w = MessageWriter::new(&mut buf, *seq);
        *seq += 1;
        let mut n = 0;
        while n < left.len() && w.push(&left[n]) {
            n += 1;
        }
        let len = w.finish();
        buf.truncate(len);
        out.push(buf);
        left = &left[n..];
    }
    out
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for topology in 0..configs::TOPOLOGIES {
        let name = configs::family(topology).name;
        let mut seq = 1;
        let all = records(topology, 0, 1000);
        // Installed, then brought up to date (FIN), then removed: a third
        // of them.
        let mut later: Vec<FlowRecord> = all
            .iter()
            .step_by(3)
            .map(|r| {
                let mut r = *r;
                if let FlowChange::Update(u) = &mut r.change {
                    if u.state == FlowState::Established {
                        u.state = FlowState::FinWait;
                        // Either side's FIN first (wire state 2 or 5).
                        u.fin_by_client = r.client_port % 2 == 0;
                        u.trust = Trust::Unconfirmed;
                    }
                }
                r
            })
            .collect();
        later.extend(all.iter().skip(1).step_by(3).map(|r| FlowRecord {
            change: FlowChange::Removed,
            ..*r
        }));
        let mut datagrams = messages(&all, &mut seq);
        datagrams.extend(messages(&later, &mut seq));
        let heartbeat = {
            let mut b = vec![0u8; 16];
            MessageWriter::new(&mut b, seq).finish();
            b
        };
        datagrams.push(heartbeat.clone());
        let header = [topology as u8, 40, 3];
        out.push((
            format!("seed-{name}-install-update-remove"),
            input(header, &datagrams),
        ));

        // A small table: most are refused as table_full, the local SYNs
        // stay.
        out.push((
            format!("seed-{name}-full-table"),
            input([topology as u8, 0, 2], &messages(&all, &mut seq)),
        ));

        // What a receiver refuses, beside one good message.
        let good = messages(&all[..all.len().min(4)], &mut seq).remove(0);
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let short = good[..good.len() - 5].to_vec();
        let mut lying_count = good.clone();
        lying_count[7] += 1;
        let mut cut_record = good.clone();
        cut_record[16 + 1] = 20;
        out.push((
            format!("seed-{name}-refused"),
            input(
                [topology as u8, 20, 1],
                &[
                    good,
                    bad_version,
                    bad_magic,
                    short,
                    lying_count,
                    cut_record,
                    heartbeat,
                ],
            ),
        ));

        // Keyed (`[sync] key_file`): the same messages sealed with the
        // target's key at its clock, every other one with its second key
        // (`accept_key_file`), one of them twice and one tampered with
        // after sealing.
        let mut sealers = [
            lb_fuzz_harness::sync::KEY,
            lb_fuzz_harness::sync::ACCEPT_KEY,
        ]
        .map(|k| Sealer::new(k, lb_config::SyncRole::Primary));
        let mut keyed: Vec<Vec<u8>> = messages(&all, &mut seq)
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let mut buf = m.clone();
                buf.resize(m.len() + AUTH_LEN, 0);
                let n = sealers[i % 2].seal(
                    &mut buf,
                    m.len(),
                    lb_fuzz_harness::sync::NOW_US + i as u64,
                );
                buf.truncate(n);
                buf
            })
            .collect();
        let again = keyed[0].clone();
        let mut tampered = keyed[0].clone();
        tampered[16 + 4] ^= 1;
        keyed.extend([again, tampered]);
        out.push((
            format!("seed-{name}-keyed"),
            input([topology as u8, 10, 1], &keyed),
        ));

        // Another snapshot: some services and reals are not there.
        out.push((
            format!("seed-{name}-other-snapshot"),
            input([topology as u8 | 2 << 1, 40, 0], &messages(&all, &mut seq)),
        ));

        // Records, then acks of bulk-pass segments: the sender's life's
        // with a gap, another life's, past its last message, and one
        // whose count lies.
        let mut acked = messages(&all, &mut seq);
        let acks = |peer: u32, through: u32| {
            let mut r = Received::default();
            r.reset(1);
            for s in (1..=through).filter(|s| s % 7 != 3) {
                r.arrived(s);
            }
            let mut a = r.acks(0x77, through / 2);
            a.peer = peer;
            let mut buf = vec![0u8; MAX_MESSAGE_LEN];
            let n = a.emit(&mut buf, seq, flags::SEGMENTS);
            buf.truncate(n);
            buf
        };
        let nonce = lb_fuzz_harness::sync::SEGMENTS_NONCE;
        let mut lying = acks(nonce, 40);
        lying[7] += 1;
        acked.extend([acks(nonce, 40), acks(nonce ^ 1, 64), acks(nonce, 90), lying]);
        out.push((
            format!("seed-{name}-acks"),
            input([topology as u8, 40, 0], &acked),
        ));
    }
    out
}

#[test]
fn seeds_run_clean_and_install() {
    let write = std::env::var_os("LB_WRITE_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(corpus()).unwrap();
    }
    for (name, data) in seeds() {
        let v = Target::Sync.run(&data);
        assert!(v.is_empty(), "{name}: {:?}", v.list);
        if write {
            std::fs::write(corpus().join(&name), &data).unwrap();
        } else {
            let on_disk = std::fs::read(corpus().join(&name))
                .unwrap_or_else(|e| panic!("{name}: {e}; LB_WRITE_SEEDS=1 writes it"));
            assert_eq!(on_disk, data, "{name} differs from what this test makes");
        }
    }
}

#[test]
fn the_install_seed_installs_updates_removes_and_refuses() {
    // Run the first topology's seed by hand to see the counters move.
    let (_, data) = &seeds()[0];
    let v = Target::Sync.run(data);
    assert!(v.is_empty());
    // The same records into a table directly: every kind of outcome.
    let snap = &configs::family(0).snapshots[0];
    let stats = Arc::new(WorkerStats::default());
    let mut ct4: Conntrack<Ipv4Addr> = Conntrack::new(64, 64, stats.clone());
    let mut ct6: Conntrack<Ipv6Addr> = Conntrack::new(64, 64, stats.clone());
    for r in records(0, 0, 1000) {
        let _ = match r.client {
            IpAddr::V4(_) => ct4.sync_install(snap, &r, 0),
            IpAddr::V6(_) => ct6.sync_install(snap, &r, 0),
        };
    }
    let c = &stats.sync;
    assert!(c.flows_installed.get() > 10, "{}", c.flows_installed.get());
    assert_eq!(c.refused_total(), 0);
    let other = &configs::family(0).snapshots[2];
    let mut refused = 0;
    for r in records(0, 0, 3000) {
        refused += u64::from(match r.client {
            IpAddr::V4(_) => ct4.sync_install(other, &r, 0).is_err(),
            IpAddr::V6(_) => ct6.sync_install(other, &r, 0).is_err(),
        });
    }
    assert!(refused > 0, "snapshot 2 lacks some of snapshot 0's reals");
    assert_eq!(c.refused_total(), refused);
}
