//! Found in audit (steering): clients who chose which real their own or
//! other clients' connections reached, through the schedulers and
//! persistence. Every test here failed on the code as audited.

use std::net::Ipv4Addr;
use std::sync::Arc;

use lb_config::Config;

use super::*;
use crate::snapshot::Ids;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);

/// One TCP service on `VIP`:80 with four reals (.11 to .14), of
/// `scheduler`, `forwarding` and `persistence` (empty: none).
fn config(scheduler: &str, forwarding: &str, persistence: &str) -> String {
    let mut text = format!(
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
scheduler = "{scheduler}"
forwarding = "{forwarding}"
"#
    );
    if forwarding == "nat" {
        text += "syn_proxy = \"off\"\n";
    }
    if !persistence.is_empty() {
        text += &format!("persistence = \"{persistence}\"\n");
    }
    let port = if forwarding == "nat" { 8080 } else { 80 };
    for i in 11..=14 {
        text += &format!("[[services.reals]]\naddress = \"198.18.0.{i}\"\nport = {port}\n");
    }
    text
}

fn compile(text: &str) -> Snapshot {
    let config = Config::parse(text).expect("valid");
    Snapshot::compile(&config, &[], 1, &mut Ids::default(), |_, _, _| true).unwrap()
}

fn conntrack() -> Conntrack<Ipv4Addr> {
    Conntrack::new(4096, 64, Arc::new(WorkerStats::default()))
}

fn key(client: Ipv4Addr, port: u16) -> FlowKey<Ipv4Addr> {
    FlowKey {
        proto: 6,
        client,
        client_port: port,
        vip: VIP,
        vip_port: 80,
    }
}

/// A client's segment with `flags` on (`client`, `port`), through the one
/// worker's `schedulers`: where it goes.
fn send(
    ct: &mut Conntrack<Ipv4Addr>,
    snap: &Snapshot,
    schedulers: &mut Schedulers,
    client: Ipv4Addr,
    port: u16,
    flags: TcpFlags,
) -> Result<Target<Ipv4Addr>, DropReason> {
    let k = key(client, port);
    let h = ct.table().key_hash(&k);
    let seg = Segment {
        flags,
        seq: 1000,
        ack: if flags.contains(TcpFlags::ACK) {
            5001
        } else {
            0
        },
        len: 0,
    };
    ct.lookup_or_create::<VecBuf>(snap, 0, &k, h, Some(seg), 0, schedulers, || false)
}

/// A NAT client's whole handshake on (`client`, `port`): an established,
/// confirmed flow on the real it returns.
fn handshake(
    ct: &mut Conntrack<Ipv4Addr>,
    snap: &Snapshot,
    schedulers: &mut Schedulers,
    client: Ipv4Addr,
    port: u16,
) -> Ipv4Addr {
    let t = send(ct, snap, schedulers, client, port, TcpFlags::SYN).unwrap();
    ct.settle();
    let rk = ReplyKey {
        proto: 6,
        real: t.real,
        real_port: t.real_port,
        client,
        client_port: port,
    };
    let h = ct.table().reply_key_hash(&rk);
    let synack = Segment {
        flags: TcpFlags::SYN | TcpFlags::ACK,
        seq: 5000,
        ack: 1001,
        len: 1,
    };
    ct.reply(snap, &rk, h, Some(synack), 0, || true, || 0)
        .unwrap();
    let k = key(client, port);
    let hk = ct.table().key_hash(&k);
    let ack = Segment {
        flags: TcpFlags::ACK,
        seq: 1001,
        ack: 5001,
        len: 0,
    };
    ct.lookup_or_create::<VecBuf>(snap, 0, &k, hk, Some(ack), 0, schedulers, || false)
        .unwrap();
    let e = ct.table().lookup(&k, hk).unwrap();
    assert_eq!(ct.table().get(e).state(), FlowState::Established);
    t.real
}

/// Finding: `lc`/`wlc` count a half-open flow (a SYN nobody answered or
/// acknowledged: `SynSent`, unconfirmed, made by anyone without a
/// handshake) as one full active connection, as much as an established
/// one. IPVS weighs such "inactive" connections 1/256 of an active one
/// (`ip_vs_dest_conn_overhead`). With persistence every SYN of one source
/// goes to its template's real, so one host (no spoofing needed: it just
/// never acknowledges the SYN-ACKs) that sends a few hundred SYNs every
/// `tcp_syn_timeout` piles phantom load on one real, and `lc` then sends
/// every other client's new connection to the remaining reals: a
/// targeted overload of those (or, with more sources, of one chosen
/// real), while the service looks balanced in `ActiveConn` terms.
#[test]
fn unanswered_syns_of_one_persistent_source_do_not_steer_lc() {
    for scheduler in ["lc", "wlc"] {
        let snap = compile(&config(scheduler, "nat", "10m"));
        let mut ct = conntrack();
        let mut schedulers = Schedulers::for_worker(0);
        schedulers.adopt(&snap);
        // The attacker: SYNs from one address, never acknowledged. Its
        // template pins them all to one real.
        let attacker = Ipv4Addr::new(203, 0, 113, 66);
        let pinned = send(
            &mut ct,
            &snap,
            &mut schedulers,
            attacker,
            1024,
            TcpFlags::SYN,
        )
        .unwrap()
        .real;
        for port in 1025..1025 + 300 {
            let t = send(
                &mut ct,
                &snap,
                &mut schedulers,
                attacker,
                port,
                TcpFlags::SYN,
            )
            .unwrap();
            assert_eq!(t.real, pinned);
        }
        // 40 real clients, each a whole handshake, each with a connection
        // of its own that stays.
        let mut on_pinned = 0;
        for i in 0..40u32 {
            let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 2, 1)) + i);
            if handshake(&mut ct, &snap, &mut schedulers, client, 40000) == pinned {
                on_pinned += 1;
            }
        }
        ct.table().audit().unwrap();
        // With IPVS's weighting (300 half-open = 300/256 of one active)
        // the pinned real takes about a quarter of them (10 of 40); here
        // it takes none: the other three reals take all.
        assert!(
            on_pinned >= 5,
            "{scheduler}: 300 unanswered SYNs of one source kept {on_pinned} of 40 \
             established clients off {pinned}"
        );
    }
}

/// The real of `client`'s connection from `port` when it is the only
/// packet a fresh worker has seen (its first packet: `SYN`, or a pick-up:
/// `ACK`).
fn alone(snap: &Snapshot, client: Ipv4Addr, port: u16, flags: TcpFlags) -> IpAddr {
    let mut ct = conntrack();
    let mut schedulers = Schedulers::for_worker(0);
    schedulers.adopt(snap);
    send(&mut ct, snap, &mut schedulers, client, port, flags)
        .unwrap()
        .real
        .to_ip()
}

/// Found in audit: README says `mh` flows "survive a restart of the
/// appliance or a move to another box behind ECMP", the choice depending
/// only on the packet. With `persistence` on an `mh` service it was
/// false: every connection of a client went to its template's real,
/// which the client's first connection's own 5-tuple hash chose, while a
/// connection picked up mid-stream after a restart (or on the other box)
/// went by its own 5-tuple hash, to another real for about 3 of 4 of a
/// client's later connections (4 reals): they were reset. A persistent
/// `mh` service picks by the client's address now.
#[test]
fn persistent_mh_connections_survive_a_restart() {
    for forwarding in ["dr", "tun"] {
        let snap = compile(&config("mh", forwarding, "10m"));
        let client = Ipv4Addr::new(203, 0, 113, 7);
        let mut ct = conntrack();
        let mut schedulers = Schedulers::for_worker(0);
        schedulers.adopt(&snap);
        let first = send(
            &mut ct,
            &snap,
            &mut schedulers,
            client,
            40000,
            TcpFlags::SYN,
        )
        .unwrap()
        .real;
        for port in 40001..40017 {
            let later = send(&mut ct, &snap, &mut schedulers, client, port, TcpFlags::SYN)
                .unwrap()
                .real;
            assert_eq!(later, first, "persistence: on the template's real");
            // The appliance restarts (or ECMP moves the client to a peer
            // with the same config): the connection's next segment is
            // picked up mid-stream by a fresh table.
            let after = alone(&snap, client, port, TcpFlags::ACK);
            assert_eq!(
                after,
                first.to_ip(),
                "{forwarding}: port {port} was on {first}, picked up it goes to {after}"
            );
        }
    }
}

/// Found in audit: with `persistence` on an `mh` service, the first
/// packet of a client address decides the real of all its connections for
/// the persistence time, and `mh`'s hash is fixed and public, so whoever
/// sent that packet in the client's name (one spoofed SYN, or a lone ACK:
/// a pick-up makes a template too, while the table is below half full)
/// chose the real by choosing the source port: any client address, a
/// carrier-grade NAT's that thousands of users share say, could be pinned
/// to one real the attacker picked. By the client's address, the stranger
/// decides nothing: the victim's real is what its own packets would get.
#[test]
fn a_spoofed_first_packet_cannot_choose_a_clients_persistent_real() {
    let snap = compile(&config("mh", "dr", "10m"));
    for i in 0..16u32 {
        let victim = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 1)) + i);
        let own = alone(&snap, victim, 50000, TcpFlags::SYN);
        for spoofed_port in (1024..1088).step_by(4) {
            let mut ct = conntrack();
            let mut schedulers = Schedulers::for_worker(0);
            schedulers.adopt(&snap);
            // One spoofed lone ACK in the victim's name (no answer needed).
            send(
                &mut ct,
                &snap,
                &mut schedulers,
                victim,
                spoofed_port,
                TcpFlags::ACK,
            )
            .unwrap();
            let t = send(
                &mut ct,
                &snap,
                &mut schedulers,
                victim,
                50000,
                TcpFlags::SYN,
            )
            .unwrap();
            assert_eq!(
                t.real.to_ip(),
                own,
                "victim {victim}: a spoofed packet from port {spoofed_port} placed it"
            );
        }
    }
}

/// Found in review: a service removed and added again gets another id
/// (its id lasts while it is configured), and a persistence template
/// that still had flows kept the old one: once they ended it found no
/// service under it and was over at once, whatever the persistence. A
/// template in use takes its service's id now.
#[test]
fn a_template_takes_the_id_of_its_service_added_again() {
    let text = config("rr", "dr", "10m");
    let with = Config::parse(&text).unwrap();
    let without = Config::parse(text.split("[[services]]").next().unwrap()).unwrap();
    let mut ids = Ids::default();
    let mut compile =
        |c: &Config, g| Snapshot::compile(c, &[], g, &mut ids, |_, _, _| true).unwrap();
    let first = compile(&with, 1);
    compile(&without, 2);
    let again = compile(&with, 3);
    assert_ne!(first.services[0].id, again.services[0].id, "another id");
    let client = Ipv4Addr::new(203, 0, 113, 9);
    let mut ct = conntrack();
    let mut schedulers = Schedulers::for_worker(0);
    schedulers.adopt(&first);
    send(
        &mut ct,
        &first,
        &mut schedulers,
        client,
        40000,
        TcpFlags::SYN,
    )
    .unwrap();
    schedulers.adopt(&again);
    send(
        &mut ct,
        &again,
        &mut schedulers,
        client,
        40001,
        TcpFlags::SYN,
    )
    .unwrap();
    let templates: Vec<u32> = ct
        .table()
        .entries()
        .into_iter()
        .map(|e| ct.table().get(e))
        .filter(|f| f.state() == FlowState::Template)
        .map(|f| f.service_id)
        .collect();
    assert_eq!(templates, [again.services[0].id]);
}
