//! The snapshots the `pipeline` target runs over: two topologies, each a
//! family of four configurations that a RELOAD op switches between (so
//! flows outlive the removal of their real, a real's drain, a service's
//! removal and a method change).
//!
//! Both carry the golden fixtures' ports, addresses and MACs, so that the
//! golden frames are meaningful seeds, and both are dual-stack (the IPv6
//! golden scenario's addresses on wan):
//! - `three-arm`: wan (198.18.0.2/24, gateway 198.18.0.1; 2001:2::2/64,
//!   gateway6 2001:2::1), lan (198.18.2.1/24; 2001:2:0:2::1/64), dmz
//!   (198.18.3.1/24, MTU 576, no IPv6: IPv6 there is
//!   `unsupported_ethertype`) and v6 (IPv6 only, 2001:2:0:3::1/64, MTU
//!   1320, the least a port with 6in6 reals may have: an IPv6 packet of
//!   the minimum 1280 bytes and the tunnel's header; "packet too big" from
//!   the others); reals on all of them.
//! - `one-arm`: wan alone, every real behind it.
//!
//! Services: NAT, TUN and DR, TCP and UDP; rr, wrr, lc, wlc, sh and mh;
//! persistence on some; one service whose reals use all three methods.
//! IPv6 VIPs (2001:2:0:1::/64) with NAT66, 6in6 and DR reals, the same
//! mix (the SYN proxy on two NAT66 services), and 4in6: IPv4 VIPs with
//! IPv6 `tun` reals. Some reals of each
//! family have no static neighbor (their frames are held for ARP or for
//! neighbor discovery: `Hold`, `Hold6`). Timeouts are seconds, so that the
//! clock ops expire flows.
//!
//! The odd variants are those of the active appliance of a `[sync]` pair:
//! wan floats the gateway [`FLOAT4`] and [`FLOAT6`] (answered like the
//! port's own address), so RELOAD between them is a change of role; wan
//! has a kernel interface there.
//!
//! Compiled once per process (Maglev tables are not cheap) with one
//! [`Ids`], as the control thread keeps them across reloads.

use std::sync::OnceLock;

use lb_config::{Config, MacAddr};
use lb_core::snapshot::{Ids, Snapshot};

/// A topology's snapshots, in RELOAD order: variant 0 is the start.
pub struct Family {
    pub name: &'static str,
    pub snapshots: Vec<Snapshot>,
    /// Every real id any of the snapshots uses.
    pub real_ids: Vec<u32>,
}

/// The floating gateways (`[sync] gateway`, `gateway6`) of the odd
/// variants, on wan.
pub const FLOAT4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 5);
pub const FLOAT6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 5);

/// The number of topologies.
pub const TOPOLOGIES: usize = 2;
/// The number of snapshots per topology.
pub const VARIANTS: usize = 4;

/// The topology `i % TOPOLOGIES`, compiled on first use.
pub fn family(i: usize) -> &'static Family {
    static FAMILIES: OnceLock<Vec<Family>> = OnceLock::new();
    let all = FAMILIES.get_or_init(|| (0..TOPOLOGIES).map(build).collect());
    &all[i % TOPOLOGIES]
}

/// Whether a topology number picks the three-arm one.
fn three_arm(topology: usize) -> bool {
    matches!(topology % TOPOLOGIES, 0)
}

struct Port {
    name: &'static str,
    address: Option<&'static str>,
    gateway: Option<&'static str>,
    address6: Option<&'static str>,
    gateway6: Option<&'static str>,
    mtu: u16,
    mac: [u8; 6],
}

const WAN: Port = Port {
    name: "wan",
    address: Some("198.18.0.2/24"),
    gateway: Some("198.18.0.1"),
    address6: Some("2001:2::2/64"),
    gateway6: Some("2001:2::1"),
    mtu: 1500,
    mac: [0x02, 0, 0, 0, 0, 0x02],
};
const LAN: Port = Port {
    name: "lan",
    address: Some("198.18.2.1/24"),
    gateway: None,
    address6: Some("2001:2:0:2::1/64"),
    gateway6: None,
    mtu: 1500,
    mac: [0x02, 0, 0, 0, 0x01, 0x01],
};
const DMZ: Port = Port {
    name: "dmz",
    address: Some("198.18.3.1/24"),
    gateway: None,
    address6: None,
    gateway6: None,
    mtu: 576,
    mac: [0x02, 0, 0, 0, 0x03, 0x01],
};
const V6: Port = Port {
    name: "v6",
    address: None,
    gateway: None,
    address6: Some("2001:2:0:3::1/64"),
    gateway6: None,
    mtu: 1320,
    mac: [0x02, 0, 0, 0, 0x06, 0x01],
};

/// Static neighbors: the golden fixtures' router and reals. Reals not in
/// this list (198.18.0.12, 198.18.2.12, 198.18.3.x; 2001:2::12, ::22,
/// ::32, 2001:2:0:3::x) are resolved by ARP or neighbor discovery.
const NEIGHBORS: &[(&str, &str)] = &[
    ("198.18.0.1", "02:00:00:00:00:01"),
    ("198.18.0.11", "02:00:00:00:02:11"),
    ("198.18.0.21", "02:00:00:00:02:21"),
    ("198.18.0.31", "02:00:00:00:02:31"),
    ("198.18.2.11", "02:00:00:00:02:11"),
    ("198.18.2.21", "02:00:00:00:02:21"),
    ("198.18.2.31", "02:00:00:00:02:31"),
    ("2001:2::1", "02:00:00:00:00:01"),
    ("2001:2::11", "02:00:00:00:02:11"),
    ("2001:2::21", "02:00:00:00:02:21"),
    ("2001:2::31", "02:00:00:00:02:31"),
    ("2001:2:0:2::11", "02:00:00:00:06:11"),
    ("2001:2:0:2::21", "02:00:00:00:06:21"),
    ("2001:2:0:2::31", "02:00:00:00:06:31"),
];

/// Whether an address (a real's or a neighbor's) is on the wan segment,
/// the one the one-arm topology keeps.
fn on_wan(address: &str) -> bool {
    address.starts_with("198.18.0.") || address.starts_with("2001:2::")
}

struct Real {
    address: &'static str,
    port: Option<u16>,
    weight: u32,
    forwarding: Option<&'static str>,
}

const fn real(address: &'static str) -> Real {
    Real {
        address,
        port: None,
        weight: 1,
        forwarding: None,
    }
}

const fn real_port(address: &'static str, port: u16) -> Real {
    Real {
        address,
        port: Some(port),
        weight: 1,
        forwarding: None,
    }
}

struct Service {
    name: &'static str,
    vip: &'static str,
    port: u16,
    protocol: &'static str,
    scheduler: &'static str,
    forwarding: &'static str,
    persistence: Option<&'static str>,
    /// `syn_proxy` (None: the default, auto).
    syn_proxy: Option<&'static str>,
    reals: Vec<Real>,
}

/// The services of a topology; `arms` is 1 or 3 (the one-arm topology
/// keeps only the reals on the wan segment, and adds some there).
fn services(arms: usize) -> Vec<Service> {
    let three = arms == 3;
    let pick = |all: Vec<Real>| -> Vec<Real> {
        all.into_iter()
            .filter(|r| three || on_wan(r.address))
            .collect()
    };
    vec![
        Service {
            name: "web-nat",
            vip: "198.18.1.100",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: Some("on"),
            reals: pick(vec![
                real_port("198.18.0.11", 8080),
                real_port("198.18.2.11", 8080),
                real_port("198.18.3.11", 8080),
                real_port("198.18.0.12", 8080),
            ]),
        },
        Service {
            name: "dns-nat",
            vip: "198.18.1.100",
            port: 53,
            protocol: "udp",
            scheduler: "rr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                real_port("198.18.0.11", 5353),
                real_port("198.18.2.11", 5353),
            ]),
        },
        Service {
            name: "web-tun",
            vip: "198.18.1.101",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "tun",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                real("198.18.0.21"),
                real("198.18.2.21"),
                real("198.18.3.21"),
            ]),
        },
        Service {
            name: "dns-tun",
            vip: "198.18.1.101",
            port: 53,
            protocol: "udp",
            scheduler: "sh",
            forwarding: "tun",
            persistence: Some("2s"),
            syn_proxy: None,
            reals: pick(vec![
                real("198.18.0.21"),
                real("198.18.2.21"),
                real("198.18.0.12"),
            ]),
        },
        Service {
            name: "web-dr",
            vip: "198.18.1.102",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "dr",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![real("198.18.0.31"), real("198.18.2.31")]),
        },
        Service {
            name: "dns-dr",
            vip: "198.18.1.102",
            port: 53,
            protocol: "udp",
            scheduler: "lc",
            forwarding: "dr",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                real("198.18.0.31"),
                real("198.18.2.31"),
                real("198.18.2.12"),
            ]),
        },
        Service {
            name: "web-mh",
            vip: "198.18.1.103",
            port: 80,
            protocol: "tcp",
            scheduler: "mh",
            forwarding: "dr",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![real("198.18.0.31"), real("198.18.2.31")]),
        },
        Service {
            name: "tls-sticky",
            vip: "198.18.1.104",
            port: 443,
            protocol: "tcp",
            scheduler: "wlc",
            forwarding: "nat",
            persistence: Some("3s"),
            syn_proxy: Some("on"),
            reals: pick(vec![
                Real {
                    weight: 2,
                    ..real_port("198.18.0.11", 8443)
                },
                real_port("198.18.2.11", 8443),
                Real {
                    weight: 0,
                    ..real_port("198.18.2.12", 8443)
                },
                real_port("198.18.0.12", 8443),
            ]),
        },
        Service {
            name: "mixed",
            vip: "198.18.1.105",
            port: 80,
            protocol: "tcp",
            scheduler: "wrr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                Real {
                    weight: 3,
                    ..real_port("198.18.0.11", 8080)
                },
                Real {
                    forwarding: Some("tun"),
                    ..real("198.18.2.21")
                },
                Real {
                    forwarding: Some("dr"),
                    ..real("198.18.2.31")
                },
                Real {
                    forwarding: Some("tun"),
                    ..real("198.18.0.21")
                },
                Real {
                    forwarding: Some("dr"),
                    ..real("198.18.0.31")
                },
                real_port("198.18.3.11", 8080),
                // 4in6: an IPv6 TUN real of an IPv4 VIP (no static
                // neighbor: held for neighbor discovery).
                Real {
                    forwarding: Some("tun"),
                    ..real("2001:2::22")
                },
            ]),
        },
        Service {
            name: "sticky-mh",
            vip: "198.18.1.106",
            port: 80,
            protocol: "tcp",
            scheduler: "mh",
            forwarding: "dr",
            persistence: Some("1s"),
            syn_proxy: None,
            reals: pick(vec![real("198.18.0.31"), real("198.18.2.31")]),
        },
        Service {
            name: "sticky-sh-udp",
            vip: "198.18.1.106",
            port: 53,
            protocol: "udp",
            scheduler: "sh",
            forwarding: "nat",
            persistence: Some("1s"),
            syn_proxy: None,
            reals: pick(vec![
                real_port("198.18.0.11", 5353),
                real_port("198.18.2.11", 5353),
            ]),
        },
        // 4in6, as in the IPv6 golden scenario (198.18.1.104:80 to
        // 2001:2::21); in three-arm also behind the 1320-byte v6 port.
        Service {
            name: "web-4in6",
            vip: "198.18.1.104",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "tun",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![real("2001:2::21"), real("2001:2:0:3::21")]),
        },
        // IPv6 services: the golden scenario's VIPs and reals, and more.
        Service {
            name: "web-nat6",
            vip: "2001:2:0:1::100",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: Some("off"),
            reals: pick(vec![
                real_port("2001:2::11", 8080),
                real_port("2001:2:0:2::11", 8080),
                real_port("2001:2:0:3::11", 8080),
                real_port("2001:2::12", 8080),
            ]),
        },
        Service {
            name: "dns-nat6",
            vip: "2001:2:0:1::100",
            port: 53,
            protocol: "udp",
            scheduler: "rr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                real_port("2001:2::11", 5353),
                real_port("2001:2:0:2::11", 5353),
            ]),
        },
        Service {
            name: "web-tun6",
            vip: "2001:2:0:1::101",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "tun",
            persistence: None,
            syn_proxy: Some("off"),
            reals: pick(vec![
                real("2001:2::21"),
                real("2001:2:0:2::21"),
                real("2001:2:0:3::21"),
            ]),
        },
        Service {
            name: "dns-tun6",
            vip: "2001:2:0:1::101",
            port: 53,
            protocol: "udp",
            scheduler: "sh",
            forwarding: "tun",
            persistence: Some("2s"),
            syn_proxy: None,
            reals: pick(vec![real("2001:2::21"), real("2001:2::22")]),
        },
        Service {
            name: "web-dr6",
            vip: "2001:2:0:1::102",
            port: 80,
            protocol: "tcp",
            scheduler: "rr",
            forwarding: "dr",
            persistence: None,
            syn_proxy: Some("off"),
            reals: pick(vec![real("2001:2::31"), real("2001:2:0:2::31")]),
        },
        Service {
            name: "dns-dr6",
            vip: "2001:2:0:1::102",
            port: 53,
            protocol: "udp",
            scheduler: "lc",
            forwarding: "dr",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                real("2001:2::31"),
                real("2001:2::32"),
                real("2001:2:0:3::31"),
            ]),
        },
        Service {
            name: "mixed6",
            vip: "2001:2:0:1::105",
            port: 80,
            protocol: "tcp",
            scheduler: "wrr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: None,
            reals: pick(vec![
                Real {
                    weight: 3,
                    ..real_port("2001:2::11", 8080)
                },
                Real {
                    forwarding: Some("tun"),
                    ..real("2001:2::21")
                },
                Real {
                    forwarding: Some("dr"),
                    ..real("2001:2::31")
                },
                Real {
                    forwarding: Some("tun"),
                    ..real("2001:2:0:3::21")
                },
                real_port("2001:2::12", 8080),
            ]),
        },
        // The SYN proxy over IPv6: on with persistence (as tls-sticky for
        // IPv4), and on, then auto, then off across the variants (as
        // web-nat), so that IPv6 cookies, deferrals and translations get
        // fuzzed, and reloads under them.
        Service {
            name: "sticky6",
            vip: "2001:2:0:1::106",
            port: 443,
            protocol: "tcp",
            scheduler: "sh",
            forwarding: "nat",
            persistence: Some("1s"),
            syn_proxy: Some("on"),
            reals: pick(vec![
                real_port("2001:2::11", 8443),
                real_port("2001:2:0:2::11", 8443),
                real_port("2001:2::12", 8443),
            ]),
        },
        Service {
            name: "tls-nat6",
            vip: "2001:2:0:1::100",
            port: 443,
            protocol: "tcp",
            scheduler: "wrr",
            forwarding: "nat",
            persistence: None,
            syn_proxy: Some("on"),
            reals: pick(vec![
                Real {
                    weight: 2,
                    ..real_port("2001:2::11", 8443)
                },
                real_port("2001:2:0:2::11", 8443),
                // No static neighbor: the proxy's SYN to it and the
                // deferred data behind it are held for neighbor discovery.
                real_port("2001:2::12", 8443),
            ]),
        },
    ]
}

/// Variant 1: a real removed, a service's reals all drained, weights
/// swapped. Variant 2: a service removed, a real's method changed (a new
/// real), persistence off. Variant 3: variant 0 again (a new generation).
fn apply_variant(services: &mut Vec<Service>, variant: usize) {
    match variant {
        1 => {
            for s in services.iter_mut() {
                match s.name {
                    "web-nat" => {
                        s.reals.retain(|r| r.address != "198.18.0.11");
                        s.syn_proxy = Some("auto");
                    }
                    "dns-nat" | "dns-tun" => s.reals.iter_mut().for_each(|r| r.weight = 0),
                    "tls-sticky" => s
                        .reals
                        .iter_mut()
                        .for_each(|r| r.weight = if r.weight == 0 { 2 } else { 0 }),
                    "mixed" | "mixed6" => s.reals.retain(|r| r.forwarding.is_some()),
                    "web-nat6" => s.reals.retain(|r| r.address != "2001:2::11"),
                    "tls-nat6" => {
                        s.reals.retain(|r| r.address != "2001:2:0:2::11");
                        s.syn_proxy = Some("auto");
                    }
                    "dns-nat6" | "dns-tun6" => s.reals.iter_mut().for_each(|r| r.weight = 0),
                    _ => {}
                }
            }
        }
        2 => {
            services.retain(|s| !matches!(s.name, "web-dr" | "dns-nat" | "web-dr6" | "dns-nat6"));
            for s in services.iter_mut() {
                match s.name {
                    "web-tun" | "web-tun6" => s.forwarding = "dr",
                    "sticky6" => s.persistence = None,
                    "tls-sticky" | "sticky-mh" => s.persistence = None,
                    "web-nat" | "tls-nat6" => s.syn_proxy = Some("off"),
                    _ => {}
                }
                if s.forwarding == "dr" {
                    // DR reals must be connected: keep only those.
                    s.reals.retain(|r| !r.address.starts_with("198.18.3."));
                }
            }
        }
        _ => {}
    }
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The lb.toml of a topology's variant.
pub fn config_text(topology: usize, variant: usize) -> String {
    let arms = if three_arm(topology) { 3 } else { 1 };
    let ports: &[&Port] = if arms == 3 {
        &[&WAN, &LAN, &DMZ, &V6]
    } else {
        &[&WAN]
    };
    let mut services = services(arms);
    apply_variant(&mut services, variant % VARIANTS);
    let mut t = String::new();
    t.push_str("[dpdk]\neal_args = [\"-l\", \"0-3\", \"--no-huge\", \"--no-pci\"]\n\n");
    t.push_str("[workers]\nlcores = [1, 2, 3]\n\n");
    t.push_str("[flows]\ntcp_timeout = \"5s\"\ntcp_fin_timeout = \"1s\"\n");
    t.push_str("tcp_syn_timeout = \"2s\"\nudp_timeout = \"3s\"\n\n");
    for (i, p) in ports.iter().enumerate() {
        t.push_str(&format!(
            "[[ports]]\nname = \"{}\"\ndevice = \"net_null{i}\"\nmtu = {}\nmac = \"{}\"\n",
            p.name,
            p.mtu,
            mac_text(p.mac)
        ));
        let keys = [
            ("address", p.address),
            ("gateway", p.gateway),
            ("address6", p.address6),
            ("gateway6", p.gateway6),
        ];
        for (key, value) in keys {
            if let Some(v) = value {
                t.push_str(&format!("{key} = \"{v}\"\n"));
            }
        }
        t.push('\n');
    }
    for (addr, mac) in NEIGHBORS {
        if arms == 3 || on_wan(addr) {
            t.push_str(&format!(
                "[[neighbors]]\naddress = \"{addr}\"\nmac = \"{mac}\"\n\n"
            ));
        }
    }
    for s in &services {
        t.push_str(&format!(
            "[[services]]\nname = \"{}\"\nvip = \"{}\"\nport = {}\nprotocol = \"{}\"\nscheduler = \"{}\"\nforwarding = \"{}\"\n",
            s.name, s.vip, s.port, s.protocol, s.scheduler, s.forwarding
        ));
        if let Some(p) = s.persistence {
            t.push_str(&format!("persistence = \"{p}\"\n"));
        }
        if let Some(p) = s.syn_proxy {
            t.push_str(&format!("syn_proxy = \"{p}\"\n"));
        }
        t.push('\n');
        for r in &s.reals {
            t.push_str(&format!(
                "[[services.reals]]\naddress = \"{}\"\nweight = {}\n",
                r.address, r.weight
            ));
            if let Some(p) = r.port {
                t.push_str(&format!("port = {p}\n"));
            }
            if let Some(f) = r.forwarding {
                t.push_str(&format!("forwarding = \"{f}\"\n"));
            }
            t.push('\n');
        }
    }
    t
}

/// The MACs of a topology's ports, in [[ports]] order.
pub fn port_macs(topology: usize) -> Vec<MacAddr> {
    if three_arm(topology) {
        vec![
            MacAddr(WAN.mac),
            MacAddr(LAN.mac),
            MacAddr(DMZ.mac),
            MacAddr(V6.mac),
        ]
    } else {
        vec![MacAddr(WAN.mac)]
    }
}

fn build(topology: usize) -> Family {
    let mut ids = Ids::default();
    let macs = port_macs(topology);
    let snapshots: Vec<Snapshot> = (0..VARIANTS)
        .map(|v| {
            let text = config_text(topology, v);
            let config = Config::parse(&text)
                .unwrap_or_else(|e| panic!("fuzz config {topology}/{v} is invalid: {e}\n{text}"));
            let mut snap =
                Snapshot::compile(&config, &macs, 1 + v as u64, &mut ids, |_, _, _| true)
                    .unwrap_or_else(|e| panic!("fuzz config {topology}/{v} does not compile: {e}"));
            if v % 2 == 1 {
                snap.float_gateways(Some(FLOAT4), Some(FLOAT6));
                // With a kernel interface on wan, as a pair that speaks BGP
                // has (`verdict.to_kernel`: what goes there, never what is
                // for the floating gateway).
                snap.ports[0].kernel = true;
            }
            snap
        })
        .collect();
    let mut real_ids: Vec<u32> = snapshots
        .iter()
        .flat_map(|s| s.services.iter().flat_map(|v| v.reals.iter().map(|r| r.id)))
        .collect();
    real_ids.sort_unstable();
    real_ids.dedup();
    Family {
        name: if three_arm(topology) {
            "three-arm"
        } else {
            "one-arm"
        },
        snapshots,
        real_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_compiles() {
        for t in 0..TOPOLOGIES {
            let f = family(t);
            assert_eq!(f.snapshots.len(), VARIANTS);
            assert!(f.real_ids.len() > 5, "{}", f.name);
            for s in &f.snapshots {
                assert_eq!(s.ports.len(), port_macs(t).len());
            }
        }
    }
}
