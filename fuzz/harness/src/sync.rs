//! The `sync` target: connection-sync datagrams, as a hostile or broken
//! peer might send them, parsed (`lb_core::wire::sync`) and installed
//! (`Conntrack::sync_install`) into a worker's IPv4 and IPv6 tables over
//! the `pipeline` target's snapshots, beside flows of the worker's own.
//!
//! Input: a 3-byte header (missing bytes read as 0), then datagrams, each
//! a `u16` big-endian length and that many bytes (fewer if the input
//! ends):
//!
//! | bytes | meaning |
//! |---|---|
//! | `h0` | topology `h0 % 2`, snapshot `(h0 >> 1) % 4` ([`configs`](crate::configs)) |
//! | `h1` | flow-table capacity per family: `4 + h1 % 61` |
//! | `h2` | local flows first: `h2 % 8` SYNs from 198.51.100.1 to each IPv4 NAT TCP service |
//!
//! Invariants (`sync.*`): nothing panics; a record that parses re-emits
//! to the very bytes it came from and is consistent; the tables never
//! exceed their capacity and pass `audit`; the worker's own flows are
//! untouched (sync neither changes, removes nor evicts them); every entry
//! sync made is on a real of its service in the snapshot, with that real's
//! address, port and method; each real's `active` gauge counts its flows;
//! every record handed to a table is counted exactly once (installed,
//! updated, removed, refused, or a removal of nothing). The tables record
//! for a peer, as both roles' do: what they then collect is only of the
//! worker's own flows (`sync.echo`: a flow the peer gave is never sent
//! back), and a bulk pass sends every flow it holds exactly once and ends
//! (`sync.bulk`), with a queue too small to take them in one go, and
//! one asked for again half-way still sends them all and ends
//! (`sync.bulk-again`); a
//! demotion (standing down) makes every flow the peer's, keeps the tables
//! whole and sends nothing (`sync.demote`).
//!
//! Bulk passes acked by segment (`sync.segments`,
//! `lb_core::sync::segments`): every datagram whose header parses is
//! noted as arrived by a receiver's window, and every `Acks` message
//! that parses re-emits to its bytes, feeds its floor to that window and
//! its acks to a sender's pass of 64 segments (its life
//! [`SEGMENTS_NONCE`], messages 1 to 64 sent): the sender forgets only
//! segments the acks say arrived, and none at all from acks of another
//! life or past its last message; the window's own acks parse back and
//! never claim a message that did not arrive.
//!
//! Keyed sync (`sync.auth`, `lb_core::sync::auth`): every datagram whose
//! header parses also goes to a backup's receiver keyed with a fixed key
//! and accepting a second one (`accept_key_file`), which must take it
//! only with a trailer whose tag is either key's over a primary's label,
//! its bytes and counter, fresh, and each counter at most once, and say
//! which key it was; and its message bytes, sealed here as a primary with
//! the key, must be taken, and read back the same but for the `AUTH`
//! flag.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use lb_config::{ForwardingMethod, Protocol};
use lb_config::{SyncKey, SyncRole};
use lb_core::flow::{Conntrack, FlowAddr, FlowKey, Installed, Segment};
use lb_core::scheduler::Schedulers;
use lb_core::snapshot::Snapshot;
use lb_core::stats::WorkerStats;
use lb_core::sync::auth::{tag, Sealer, Verifier};
use lb_core::sync::segments::{PassSegments, Received};
use lb_core::sync::{FlowRecord, Refused, SyncEvents};
use lb_core::wire::sync::{
    flags, seq_after, Acks, MessageKind, Status, SyncHeader, SyncPacket, AUTH_LEN, MAX_MESSAGE_LEN,
    MAX_RECORD_LEN,
};
use lb_core::wire::TcpFlags;

use crate::{configs, Violations};

/// The keyed receiver of a run and the counters it took; a sender with
/// its key, and a receiver of what that sender seals alone.
struct Keyed {
    verifier: Verifier,
    taken: HashSet<u64>,
    sealer: Sealer,
    own: Verifier,
}

impl Keyed {
    fn check(&mut self, v: &mut Violations, h: &SyncHeader, p: &SyncPacket<&[u8]>) {
        // As it came: taken only with a valid trailer, fresh, once.
        if let Ok(c) = self.verifier.check(p, NOW_US) {
            let by = |key: &SyncKey| {
                p.trailer().is_some_and(|(counter, t)| {
                    counter == c
                        && t == tag(key, SyncRole::Primary, p.signed(), c)
                        && c.abs_diff(NOW_US) <= SKEW_US
                })
            };
            let (by_key, by_accepted) = (by(&KEY), by(&ACCEPT_KEY));
            if !(by_key || by_accepted) || h.flags & flags::AUTH == 0 {
                v.add("sync.auth", format!("taken without a valid trailer: {h:?}"));
            }
            if self.verifier.last_took_accepted() != (by_accepted && !by_key) {
                v.add(
                    "sync.auth",
                    format!("taken with the key {by_key}, the accepted one {by_accepted}, said otherwise"),
                );
            }
            if !self.taken.insert(c) {
                v.add("sync.auth", format!("counter {c} taken twice"));
            }
        }
        // Its message sealed here: taken, and the same but for the flag.
        let signed = p.signed();
        let mut buf = vec![0u8; signed.len() + AUTH_LEN];
        buf[..signed.len()].copy_from_slice(signed);
        let n = self.sealer.seal(&mut buf, signed.len(), NOW_US);
        match SyncHeader::parse(&buf[..n]) {
            Ok((h2, p2)) => {
                if h2
                    != (SyncHeader {
                        flags: h.flags | flags::AUTH,
                        ..*h
                    })
                    || p2.payload() != p.payload()
                {
                    v.add("sync.auth", format!("sealed, read back as {h2:?}"));
                }
                if let Err(why) = self.own.check(&p2, NOW_US) {
                    v.add("sync.auth", format!("sealed here, refused: {why:?}"));
                }
            }
            Err(why) => v.add(
                "sync.auth",
                format!("sealed here, no longer parses: {why:?}"),
            ),
        }
    }
}

/// The `sync.segments` sender's life, and its last message (its pass is
/// messages 1 to this).
pub const SEGMENTS_NONCE: u32 = 0x5e6e;
const SEGMENTS_SENT: u32 = 64;

/// The `sync.segments` ends: a receiver's window and what arrived in it,
/// a sender's pass.
struct Segments {
    received: Received,
    arrived: HashSet<u32>,
    pass: PassSegments,
}

impl Segments {
    fn new() -> Segments {
        let mut received = Received::default();
        received.reset(SEGMENTS_NONCE);
        let mut pass = PassSegments::new(1, 0);
        for seq in 1..=SEGMENTS_SENT {
            pass.record(seq, 1, &seq.to_be_bytes());
        }
        pass.all_sent();
        Segments {
            received,
            arrived: HashSet::new(),
            pass,
        }
    }

    /// A datagram that parsed, of sequence number `seq`.
    fn arrived(&mut self, seq: u32) {
        self.received.arrived(seq);
        self.arrived.insert(seq);
    }

    /// An `Acks` that parsed.
    fn acks(&mut self, v: &mut Violations, a: &Acks) {
        self.received.floor(a.floor);
        let before: Vec<u32> = self.pass.unacked_seqs().collect();
        self.pass.take_acks(a, SEGMENTS_NONCE, SEGMENTS_SENT);
        let after: HashSet<u32> = self.pass.unacked_seqs().collect();
        let valid = a.peer == SEGMENTS_NONCE && seq_after(a.until, SEGMENTS_SENT).is_some();
        for seq in before.iter().filter(|s| !after.contains(s)) {
            if !valid || a.arrived(*seq) != Some(true) {
                v.add("sync.segments", format!("segment {seq} forgotten by {a:?}"));
            }
        }
        // The window's own acks: they parse back and claim only what
        // arrived.
        let mine = self.received.acks(9, 1);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = mine.emit(&mut buf, 1, 0);
        match SyncHeader::parse(&buf[..n]).map(|(_, p)| Acks::parse(&p)) {
            Ok(Ok(back)) if back == mine => {}
            other => v.add("sync.segments", format!("{mine:?} read back as {other:?}")),
        }
        if mine.peer != 0 {
            let probes = self
                .arrived
                .iter()
                .flat_map(|&s| [s.wrapping_sub(1), s, s.wrapping_add(1)])
                .chain([mine.from, mine.cum, mine.until]);
            for s in probes {
                if mine.arrived(s) == Some(true) && !self.arrived.contains(&s) {
                    v.add(
                        "sync.segments",
                        format!("{s} claimed, never arrived: {mine:?}"),
                    );
                }
            }
        }
    }
}

/// The clock stands still: nothing expires, so every local flow must
/// still be there at the end.
const NOW: u32 = 1000;

/// The keyed receiver's clock (µs since the Unix epoch), its key and
/// skew.
pub const NOW_US: u64 = 1_800_000_000_000_000;
pub const KEY: SyncKey = SyncKey([0x5a; 32]);
/// The keyed receiver's second key (`accept_key_file`).
pub const ACCEPT_KEY: SyncKey = SyncKey([0xa5; 32]);
const SKEW_US: u64 = 10_000_000;

/// Runs one `sync` input.
pub fn run(data: &[u8]) -> Violations {
    crate::fix_owners();
    let mut v = Violations::default();
    let h = |i: usize| data.get(i).copied().unwrap_or(0);
    let family = configs::family(usize::from(h(0)));
    let snap = &family.snapshots[usize::from(h(0) >> 1) % configs::VARIANTS];
    let capacity = 4 + usize::from(h(1)) % 61;
    let stats = Arc::new(WorkerStats::default());
    let mut ct4: Conntrack<Ipv4Addr> = Conntrack::new(capacity, 64, stats.clone());
    let mut ct6: Conntrack<Ipv6Addr> = Conntrack::new(capacity, 64, stats.clone());
    ct4.enable_sync(QUEUE);
    ct6.enable_sync(QUEUE);
    let local = local_flows(&mut ct4, snap, usize::from(h(2)) % 8);
    // What the local flows' creation recorded is not the point here; its
    // collection notes when each was sent (in the flow), so the flows are
    // read again after it.
    collect(&mut ct4, &mut ct6, snap);
    let local: Vec<_> = local
        .into_iter()
        .filter_map(|(k, _)| ct4.find(&k).map(|f| (k, f)))
        .collect();

    let mut keyed = Keyed {
        verifier: Verifier::new(KEY, SyncRole::Backup, SKEW_US).accepting(Some(ACCEPT_KEY)),
        taken: HashSet::new(),
        sealer: Sealer::new(KEY, SyncRole::Primary),
        own: Verifier::new(KEY, SyncRole::Backup, SKEW_US),
    };
    let mut segments = Segments::new();
    let mut handed = 0u64;
    let mut absent = 0u64;
    let mut rest = data.get(3..).unwrap_or(&[]);
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        let datagram = &rest[2..end];
        rest = &rest[end..];
        let Ok((h, p)) = SyncHeader::parse(datagram) else {
            continue;
        };
        keyed.check(&mut v, &h, &p);
        segments.arrived(h.sequence);
        if h.kind == MessageKind::Acks {
            if let Ok(a) = Acks::parse(&p) {
                let mut out = [0u8; MAX_MESSAGE_LEN];
                let n = a.emit(&mut out, h.sequence, h.flags);
                if datagram.get(..n) != Some(&out[..n]) {
                    v.add(
                        "sync.roundtrip",
                        format!("{a:?} re-emitted as {:02x?}", &out[..n]),
                    );
                }
                segments.acks(&mut v, &a);
            }
            continue;
        }
        if h.kind == MessageKind::Status {
            // The election's input: parsed whole or refused, and emitted
            // back to the same bytes.
            if let Ok(st) = Status::parse(&p) {
                let mut out = [0u8; 64];
                let n = st.emit(&mut out, h.sequence, h.flags);
                if datagram.get(..n) != Some(&out[..n]) {
                    v.add(
                        "sync.roundtrip",
                        format!("{st:?} re-emitted as {:02x?}", &out[..n]),
                    );
                }
            }
            continue;
        }
        let payload = p.payload();
        // Where the next record starts, while no record was stepped over
        // (the receiver steps over a refused one by its length byte, which
        // the `Err` does not carry): the round trip is checked up to there.
        let mut at = Some(0);
        for r in p.records() {
            let Ok(r) = r else {
                at = None;
                continue;
            };
            let n = r.buffer_len();
            let mut out = [0u8; MAX_RECORD_LEN];
            r.emit(&mut out);
            if at.is_some_and(|at| payload.get(at..at + n) != Some(&out[..n])) {
                v.add(
                    "sync.roundtrip",
                    format!("{r:?} re-emitted as {:02x?}", &out[..n]),
                );
            }
            at = at.map(|at| at + n);
            if !r.is_consistent() {
                v.add("sync.consistent", format!("{r:?} parsed"));
            }
            handed += 1;
            let outcome = match r.client {
                IpAddr::V4(_) => ct4.sync_install(snap, &r, NOW),
                IpAddr::V6(_) => ct6.sync_install(snap, &r, NOW),
            };
            absent += u64::from(outcome == Ok(Installed::Absent));
        }
        check_table(&mut v, &ct4, snap, capacity);
        check_table(&mut v, &ct6, snap, capacity);
    }

    for (key, flow) in &local {
        if ct4.find(key).as_ref() != Some(flow) {
            v.add(
                "sync.local",
                format!("{key:?} was {flow:?}, is {:?}", ct4.find(key)),
            );
        }
    }
    check_active(&mut v, &ct4, &ct6, &stats, family);
    let c = &stats.sync;
    let counted = c.flows_installed.get()
        + c.flows_updated.get()
        + c.flows_removed.get()
        + c.refused_total()
        + absent;
    if counted != handed {
        v.add(
            "sync.counts",
            format!("{handed} records installed, {counted} counted"),
        );
    }
    if c.refused(Refused::NotFromPeer) != 0 {
        v.add("sync.counts", "a worker counted not_from_peer".to_string());
    }

    let own: HashSet<(u8, IpAddr, u16, IpAddr, u16)> = local
        .iter()
        .map(|(k, _)| {
            (
                k.proto,
                k.client.to_ip(),
                k.client_port,
                k.vip.to_ip(),
                k.vip_port,
            )
        })
        .collect();
    for r in collect(&mut ct4, &mut ct6, snap) {
        if !own.contains(&tuple(&r)) {
            v.add("sync.echo", format!("{r:?} sent back"));
        }
    }
    // A bulk pass: every flow the tables hold that can be told, once.
    let mut want: Vec<_> = told(&ct4, snap);
    want.extend(told(&ct6, snap));
    want.sort();
    let dropped = c.events_dropped.get();
    ct4.sync_bulk_start();
    ct6.sync_bulk_start();
    let mut sent = Vec::new();
    let mut rounds = 0;
    while ct4.sync_bulk_pending() || ct6.sync_bulk_pending() {
        sent.extend(collect(&mut ct4, &mut ct6, snap).iter().map(tuple));
        rounds += 1;
        if rounds > 10_000 {
            v.add("sync.bulk", "the pass does not end".to_string());
            break;
        }
    }
    sent.sort();
    if sent != want {
        v.add("sync.bulk", format!("sent {sent:?}, held {want:?}"));
    }
    if c.events_dropped.get() != dropped {
        v.add(
            "sync.bulk",
            format!("{} records dropped", c.events_dropped.get() - dropped),
        );
    }
    // A pass asked for again after its first collection: it goes on from
    // there and ends one round later, every flow sent after the second
    // request (`sync.bulk-again`).
    ct4.sync_bulk_start();
    ct6.sync_bulk_start();
    let _ = collect(&mut ct4, &mut ct6, snap);
    ct4.sync_bulk_start();
    ct6.sync_bulk_start();
    let mut again = Vec::new();
    let mut rounds = 0;
    while ct4.sync_bulk_pending() || ct6.sync_bulk_pending() {
        again.extend(collect(&mut ct4, &mut ct6, snap).iter().map(tuple));
        rounds += 1;
        if rounds > 10_000 {
            v.add("sync.bulk-again", "the pass does not end".to_string());
            break;
        }
    }
    again.sort();
    again.dedup();
    if again != want {
        v.add("sync.bulk-again", format!("sent {again:?}, held {want:?}"));
    }
    // Standing down: every flow becomes the peer's, the tables stay whole,
    // and nothing is sent for it.
    ct4.sync_demote_start();
    ct6.sync_demote_start();
    let sent = collect(&mut ct4, &mut ct6, snap);
    if !sent.is_empty() {
        v.add("sync.demote", format!("standing down sent {sent:?}"));
    }
    demoted(&mut v, &ct4);
    demoted(&mut v, &ct6);
    v
}

/// After a demotion pass: every flow the peer's, the table whole.
fn demoted<A: FlowAddr>(v: &mut Violations, ct: &Conntrack<A>) {
    let t = ct.table();
    for e in t.entries() {
        let f = t.get(e);
        if !f.is_template() && !f.is_synced() {
            v.add("sync.demote", format!("{f:?} still ours"));
        }
    }
    if let Err(e) = t.audit() {
        v.add("sync.audit", e);
    }
}

/// Events a table's log holds between two collections here: small, so
/// that a bulk pass must stop for room and go on.
const QUEUE: usize = 16;

type Tuple = (u8, IpAddr, u16, IpAddr, u16);

fn tuple(r: &FlowRecord) -> Tuple {
    (r.proto, r.client, r.client_port, r.vip, r.vip_port)
}

/// The tuples of the flows of `ct` that a record can tell.
fn told<A: FlowAddr>(ct: &Conntrack<A>, snap: &Snapshot) -> Vec<Tuple> {
    let t = ct.table();
    t.entries()
        .into_iter()
        .filter_map(|e| t.get(e).sync_update(snap))
        .map(|r| tuple(&r))
        .collect()
}

/// One collection, as a worker makes it between bursts: a sweep (which
/// turns what was noted into records, and makes a step of a bulk pass),
/// then what the logs hold.
fn collect(
    ct4: &mut Conntrack<Ipv4Addr>,
    ct6: &mut Conntrack<Ipv6Addr>,
    snap: &Snapshot,
) -> Vec<FlowRecord> {
    let mut out = SyncEvents::with_capacity(2 * QUEUE);
    ct4.sweep(snap, NOW, 64);
    ct6.sweep(snap, NOW, 64);
    ct4.take_sync_events(&mut out);
    ct6.take_sync_events(&mut out);
    out.drain().collect()
}

/// The worker's own flows: SYNs from one client to every IPv4 NAT TCP
/// service, `n` source ports each.
fn local_flows(
    ct: &mut Conntrack<Ipv4Addr>,
    snap: &Snapshot,
    n: usize,
) -> Vec<(FlowKey<Ipv4Addr>, lb_core::flow::Flow<Ipv4Addr>)> {
    let mut schedulers = Schedulers::default();
    schedulers.adopt(snap);
    let mut keys = Vec::new();
    for (i, s) in snap.services.iter().enumerate() {
        let IpAddr::V4(vip) = s.vip else { continue };
        if s.protocol != Protocol::Tcp || s.reals.iter().any(|r| r.method != ForwardingMethod::Nat)
        {
            continue;
        }
        for p in 0..n {
            let key = FlowKey {
                proto: 6,
                client: Ipv4Addr::new(198, 51, 100, 1),
                client_port: 40000 + u16::try_from(p).unwrap_or(0),
                vip,
                vip_port: s.port,
            };
            let syn = Segment {
                flags: TcpFlags::SYN,
                seq: 1,
                ack: 0,
                len: 1,
            };
            let h = ct.table().key_hash(&key);
            let _ = ct.lookup_or_create::<lb_core::buffer::VecBuf>(
                snap,
                i,
                &key,
                h,
                Some(syn),
                NOW,
                &mut schedulers,
                || false,
            );
            keys.push(key);
        }
    }
    // Taken once they are all made: in a small table a later SYN evicts
    // an earlier one (the worker's own business, not sync's).
    keys.into_iter()
        .filter_map(|k| ct.find(&k).map(|f| (k, f)))
        .collect()
}

fn check_table<A: FlowAddr>(v: &mut Violations, ct: &Conntrack<A>, snap: &Snapshot, cap: usize) {
    let t = ct.table();
    if t.len() > t.capacity() || t.capacity() != cap {
        v.add(
            "sync.capacity",
            format!("{} flows, capacity {} (asked {cap})", t.len(), t.capacity()),
        );
    }
    if let Err(e) = t.audit() {
        v.add("sync.audit", e);
    }
    for e in t.entries() {
        let f = t.get(e);
        if !f.is_synced() {
            continue;
        }
        let Some(svc) = snap.services.iter().find(|s| s.id == f.service_id) else {
            v.add(
                "sync.resolved",
                format!("{f:?}: no service {}", f.service_id),
            );
            continue;
        };
        let real = svc.reals.iter().find(|r| r.id == f.real_id);
        let ok = real.is_some_and(|r| {
            let addr = A::from_ip(r.address).unwrap_or(A::UNSPECIFIED);
            r.method == f.method
                && r.port == f.real_port()
                && addr == f.real()
                && svc.vip == f.vip().to_ip()
                && svc.port == f.vip_port()
                && lb_core::snapshot::ip_protocol(svc.protocol) == f.key().proto
        });
        if !ok {
            v.add(
                "sync.resolved",
                format!("{f:?} on {real:?} of {}", svc.name),
            );
        }
    }
}

fn check_active(
    v: &mut Violations,
    ct4: &Conntrack<Ipv4Addr>,
    ct6: &Conntrack<Ipv6Addr>,
    stats: &WorkerStats,
    family: &configs::Family,
) {
    for &id in &family.real_ids {
        let n4 = ct4
            .table()
            .entries()
            .into_iter()
            .filter(|&e| {
                let f = ct4.table().get(e);
                !f.is_template() && f.real_id == id
            })
            .count();
        let n6 = ct6
            .table()
            .entries()
            .into_iter()
            .filter(|&e| {
                let f = ct6.table().get(e);
                !f.is_template() && f.real_id == id
            })
            .count();
        let gauge = stats.real(id).active.get();
        if gauge != (n4 + n6) as u64 {
            v.add(
                "sync.active",
                format!("real {id}: active {gauge}, {} flows", n4 + n6),
            );
        }
    }
}
