//! The compiled, immutable configuration a worker runs with: ports, services
//! with their schedulers already built (Maglev tables included), the reals'
//! forwarding methods and health, static neighbors, timeouts. The control
//! thread compiles a new one for every change and hands it to each worker,
//! which picks it up between bursts: the fast path never locks or waits.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use lb_config::{
    format_duration, Config, ForwardingMethod, Ipv4Cidr, MacAddr, Protocol, SchedulerKind,
    SynProxyMode, MAX_FLOW_TIMEOUT,
};

use crate::flow::{mix64, Timeouts};
use crate::keymap::KeyMap;
use crate::scheduler::{Backend, Scheduler};
use crate::wire::IpProtocol;

/// The most reals (over the life of the process) that counters are kept for.
pub const MAX_REALS: usize = 65_536;

/// One data port as the fast path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub name: String,
    pub mac: MacAddr,
    /// `None`: the port has no IPv4 address (only `address6`): nothing
    /// local answers IPv4 there and no IPv4 route leaves by it.
    pub address: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u16,
    /// The connected network and its mask, as integers (route lookups);
    /// both 0 without an IPv4 address (then `connected` is always false).
    pub net: u32,
    pub mask: u32,
}

impl PortView {
    /// Whether `addr` is on this port's connected network.
    #[inline]
    pub fn connected(&self, addr: Ipv4Addr) -> bool {
        self.address.is_some() && u32::from(addr) & self.mask == self.net
    }

    /// The port's own IPv4 address, if it has one.
    #[inline]
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.address.map(|a| a.address)
    }
}

/// A real server of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealView {
    /// Stable across reloads for as long as the real stays in its service.
    pub id: u32,
    pub address: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
    pub method: ForwardingMethod,
    /// Health: a down real gets no new flows.
    pub up: bool,
}

impl RealView {
    /// Whether new flows may go to it.
    pub fn eligible(&self) -> bool {
        self.up && self.weight > 0
    }
}

/// A virtual service and its compiled scheduler.
pub struct ServiceView {
    /// Stable across reloads for as long as (protocol, VIP, port) exists.
    pub id: u32,
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub kind: SchedulerKind,
    pub persistence_ms: u32,
    /// The SYN proxy as it applies: `Off` whatever the config said for a
    /// UDP service or one with a real that is not NAT (`auto` is inert
    /// there; validation refuses `on`).
    pub syn_proxy: SynProxyMode,
    pub reals: Vec<RealView>,
    /// Indices into `reals` of the eligible ones, in the order the
    /// scheduler was built with.
    pub eligible: Vec<usize>,
    pub scheduler: Scheduler,
}

impl fmt::Debug for ServiceView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Service({} {} {}:{} {} reals, {} eligible)",
            self.name,
            self.protocol,
            self.vip,
            self.port,
            self.reals.len(),
            self.eligible.len()
        )
    }
}

impl ServiceView {
    pub fn ip_protocol(&self) -> u8 {
        ip_protocol(self.protocol)
    }
}

/// The IP protocol number of a service protocol.
pub fn ip_protocol(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => IpProtocol::Tcp.into(),
        Protocol::Udp => IpProtocol::Udp.into(),
    }
}

/// Stable ids for services and reals, kept by the control thread across
/// snapshots so that counters and flows keep their meaning over a reload.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    services: HashMap<(u8, Ipv4Addr, u16), u32>,
    /// (service, address, port, forwarding method): a real whose method
    /// changes is a new real, since its flows cannot continue the old way.
    reals: HashMap<(u32, Ipv4Addr, u16, ForwardingMethod), u32>,
    next_real: u32,
}

impl Ids {
    fn service(&mut self, key: (u8, Ipv4Addr, u16)) -> u32 {
        let n = self.services.len() as u32;
        *self.services.entry(key).or_insert(n)
    }

    fn real(&mut self, key: (u32, Ipv4Addr, u16, ForwardingMethod)) -> Result<u32, CompileError> {
        if let Some(&id) = self.reals.get(&key) {
            return Ok(id);
        }
        if self.next_real as usize >= MAX_REALS {
            return Err(CompileError(format!(
                "more than {MAX_REALS} distinct reals since start: restart to reset the ids"
            )));
        }
        let id = self.next_real;
        self.next_real += 1;
        self.reals.insert(key, id);
        Ok(id)
    }
}

/// Why a config could not be compiled (beyond validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError(pub String);

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompileError {}

// Flows expire when `now.wrapping_sub(last_seen) > timeout` on a u32 clock of
// milliseconds: a timeout must stay below 2^31 ms.
const _: () = assert!(MAX_FLOW_TIMEOUT.as_millis() < 1 << 31);

/// A flow timeout or persistence from the config (`key` names it) in
/// milliseconds of the worker clock. Above `lb_config::MAX_FLOW_TIMEOUT`,
/// which validation refuses already, it is an error: never a capped value.
pub(crate) fn millis(key: &str, d: Duration) -> Result<u32, CompileError> {
    u32::try_from(d.as_millis())
        .ok()
        .filter(|_| d <= MAX_FLOW_TIMEOUT)
        .ok_or_else(|| {
            CompileError(format!(
                "{key}: {} is above the maximum of {}",
                format_duration(d),
                format_duration(MAX_FLOW_TIMEOUT)
            ))
        })
}

/// Everything a worker needs to handle a packet.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// Indexed like `[[ports]]` in the config.
    pub ports: Vec<PortView>,
    /// Every VIP, sorted and without duplicates.
    pub vips: Vec<Ipv4Addr>,
    pub services: Vec<ServiceView>,
    vip_set: KeyMap,
    /// (protocol, VIP, port) key -> index in `services`.
    service_keys: KeyMap,
    /// (protocol, address, port) keys of NAT reals: a packet from one of
    /// them is a reply to translate back.
    nat_endpoints: KeyMap,
    /// Addresses of NAT reals (ICMP errors they send).
    nat_reals: KeyMap,
    /// Indexed by real id: whether the real is still configured.
    real_present: Vec<bool>,
    /// Static neighbors, and an index of them by address.
    static_neighbors: Vec<(Ipv4Addr, MacAddr)>,
    neighbor_index: KeyMap,
    pub timeouts: Timeouts,
    /// Number of workers (flows are owned by `flow::owner_of`).
    pub workers: usize,
    /// The MSS the SYN proxy announces to clients: the smallest port MTU
    /// less 40 (IPv4 and TCP headers).
    pub syn_proxy_mss: u16,
    /// The smallest MTU of any port: an IPv4 packet no longer fits every
    /// port, so only a longer one needs its out-port's MTU looked up.
    pub min_mtu: u16,
}

#[inline]
fn endpoint_key(proto: u8, addr: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(addr)) << 32) | (u64::from(port) << 8) | u64::from(proto)
}

/// The scheduler's identity for a real: placement in Maglev and source
/// hash tables depends only on the real's address and port.
pub fn backend_key(address: Ipv4Addr, port: u16) -> u64 {
    mix64((u64::from(u32::from(address)) << 16) | u64::from(port))
}

impl Snapshot {
    /// Compiles `config` with the MAC address each port reported at start.
    /// `ids` carries stable ids from the previous snapshot; `is_up` tells a
    /// real's health (service name, real address, real port).
    ///
    /// A config with IPv6 in it (a port's `address6` or `gateway6`, an IPv6
    /// VIP, real or neighbor) is refused: the fast path is IPv4 only yet.
    pub fn compile(
        config: &Config,
        port_macs: &[MacAddr],
        generation: u64,
        ids: &mut Ids,
        is_up: impl Fn(&str, IpAddr, u16) -> bool,
    ) -> Result<Snapshot, CompileError> {
        refuse_ipv6(config)?;
        let timeouts = Timeouts::from_config(&config.flows)?;
        let ports = config
            .ports
            .iter()
            .zip(port_macs)
            .map(|(p, mac)| PortView {
                name: p.name.clone(),
                mac: *mac,
                address: p.address,
                gateway: p.gateway,
                mtu: p.mtu,
                net: p.address.map_or(0, |a| u32::from(a.network())),
                mask: p.address.map_or(0, |a| u32::from(a.netmask())),
            })
            .collect();
        let mut services = Vec::with_capacity(config.services.len());
        let mut real_present = vec![false; MAX_REALS];
        let mut nat_endpoints = Vec::new();
        let mut nat_reals = Vec::new();
        for (i, s) in config.services.iter().enumerate() {
            let persistence_ms = millis(&format!("services[{i}].persistence"), s.persistence)?;
            let proto = ip_protocol(s.protocol);
            let vip = ipv4(s.vip)?;
            let sid = ids.service((proto, vip, s.port));
            let mut reals = Vec::with_capacity(s.reals.len());
            for r in &s.reals {
                let address = ipv4(r.address)?;
                let id = ids.real((sid, address, r.port, r.forwarding))?;
                real_present[id as usize] = true;
                if r.forwarding == ForwardingMethod::Nat {
                    nat_endpoints.push(endpoint_key(proto, address, r.port));
                    nat_reals.push(u32::from(address));
                }
                reals.push(RealView {
                    id,
                    address,
                    port: r.port,
                    weight: r.weight,
                    method: r.forwarding,
                    up: s.health_check.is_none() || is_up(&s.name, r.address, r.port),
                });
            }
            let eligible: Vec<usize> = (0..reals.len()).filter(|&i| reals[i].eligible()).collect();
            let backends: Vec<Backend> = eligible
                .iter()
                .map(|&i| Backend {
                    key: backend_key(reals[i].address, reals[i].port),
                    weight: reals[i].weight,
                })
                .collect();
            let proxy_capable = s.protocol == Protocol::Tcp
                && s.reals
                    .iter()
                    .all(|r| r.forwarding == ForwardingMethod::Nat);
            services.push(ServiceView {
                id: sid,
                name: s.name.clone(),
                vip,
                port: s.port,
                protocol: s.protocol,
                kind: s.scheduler,
                persistence_ms,
                syn_proxy: if proxy_capable {
                    s.syn_proxy
                } else {
                    SynProxyMode::Off
                },
                reals,
                eligible,
                scheduler: Scheduler::build(s.scheduler, &backends),
            });
        }
        let service_keys = KeyMap::build(
            services
                .iter()
                .enumerate()
                .map(|(i, s)| (endpoint_key(s.ip_protocol(), s.vip, s.port), i as u32)),
        );
        let nat_endpoints = KeyMap::build(nat_endpoints.into_iter().map(|k| (k, 0)));
        let nat_reals = KeyMap::build(nat_reals.into_iter().map(|a| (u64::from(a), 0)));
        let mut vips: Vec<Ipv4Addr> = services.iter().map(|s| s.vip).collect();
        vips.sort_unstable();
        vips.dedup();
        let mut static_neighbors: Vec<(Ipv4Addr, MacAddr)> = config
            .neighbors
            .iter()
            .map(|n| Ok((ipv4(n.address)?, n.mac)))
            .collect::<Result<_, CompileError>>()?;
        static_neighbors.sort_unstable_by_key(|n| n.0);
        let neighbor_index = KeyMap::build(
            static_neighbors
                .iter()
                .enumerate()
                .map(|(i, n)| (u64::from(u32::from(n.0)), i as u32)),
        );
        let vip_set = KeyMap::build(vips.iter().map(|v| (u64::from(u32::from(*v)), 0)));
        Ok(Snapshot {
            generation,
            ports,
            vips,
            services,
            vip_set,
            service_keys,
            nat_endpoints,
            nat_reals,
            real_present,
            static_neighbors,
            neighbor_index,
            timeouts,
            workers: config.workers.lcores.len().max(1),
            syn_proxy_mss: config
                .ports
                .iter()
                .map(|p| p.mtu)
                .min()
                .unwrap_or(1500)
                .saturating_sub(40)
                .max(536),
            min_mtu: config.ports.iter().map(|p| p.mtu).min().unwrap_or(0),
        })
    }

    /// Whether `addr` is one of ours on `port`: the port's own address or any
    /// VIP (VIPs are answered for on every port, as a Linux director does).
    #[inline]
    pub fn is_local(&self, port: usize, addr: Ipv4Addr) -> bool {
        self.ports.get(port).is_some_and(|p| p.ipv4() == Some(addr)) || self.is_vip(addr)
    }

    #[inline]
    pub fn is_vip(&self, addr: Ipv4Addr) -> bool {
        self.vip_set.contains(u64::from(u32::from(addr)))
    }

    /// Whether `addr` is the address of any port.
    #[inline]
    pub fn is_port_address(&self, addr: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| p.ipv4() == Some(addr))
    }

    /// The service index for (protocol, VIP, port).
    #[inline]
    pub fn service_for(&self, proto: u8, vip: Ipv4Addr, port: u16) -> Option<usize> {
        self.service_keys
            .get(endpoint_key(proto, vip, port))
            .map(|i| i as usize)
    }

    /// Whether (protocol, address, port) is a NAT real's endpoint.
    #[inline]
    pub fn is_nat_endpoint(&self, proto: u8, addr: Ipv4Addr, port: u16) -> bool {
        self.nat_endpoints.contains(endpoint_key(proto, addr, port))
    }

    /// Whether `addr` is the address of a NAT real.
    #[inline]
    pub fn is_nat_real(&self, addr: Ipv4Addr) -> bool {
        self.nat_reals.contains(u64::from(u32::from(addr)))
    }

    /// Whether the real with this id is still configured.
    #[inline]
    pub fn real_present(&self, id: u32) -> bool {
        self.real_present.get(id as usize).copied().unwrap_or(false)
    }

    /// The static neighbor entry for `ip`.
    #[inline(always)]
    pub fn static_neighbor(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.neighbor_index
            .get(u64::from(u32::from(ip)))
            .map(|i| self.static_neighbors[i as usize].1)
    }

    /// The service with a stable id (linear: only used off the fast path).
    pub fn service_by_id(&self, id: u32) -> Option<&ServiceView> {
        self.services.iter().find(|s| s.id == id)
    }
}

// IPv6: replaced by the dataplane's IPv6 path.
/// Validation accepts IPv6 (`lb_config`); until the fast path carries it, a
/// config that holds any is refused here, naming the first key, so that
/// `lb-appliance` says why it does not start (or why a reload is refused)
/// instead of serving part of the file.
pub fn refuse_ipv6(config: &Config) -> Result<(), CompileError> {
    let refuse = |path: String, what: &str| {
        Err(CompileError(format!(
            "{path}: {what} are not supported by the dataplane yet"
        )))
    };
    for (i, p) in config.ports.iter().enumerate() {
        if p.address6.is_some() {
            return refuse(format!("ports[{i}].address6"), "IPv6 port addresses");
        }
        if p.gateway6.is_some() {
            return refuse(format!("ports[{i}].gateway6"), "IPv6 gateways");
        }
    }
    for (i, n) in config.neighbors.iter().enumerate() {
        if n.address.is_ipv6() {
            return refuse(format!("neighbors[{i}].address"), "IPv6 neighbors");
        }
    }
    for (i, s) in config.services.iter().enumerate() {
        if s.vip.is_ipv6() {
            return refuse(format!("services[{i}]"), "IPv6 services");
        }
        if let Some(j) = s.reals.iter().position(|r| r.address.is_ipv6()) {
            return refuse(
                format!("services[{i}].reals[{j}].address"),
                "IPv6 reals (4in6 tunnels)",
            );
        }
    }
    Ok(())
}

// IPv6: replaced by the dataplane's IPv6 path.
/// An address `refuse_ipv6` let through.
fn ipv4(addr: IpAddr) -> Result<Ipv4Addr, CompileError> {
    match addr {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(CompileError(format!(
            "{a}: IPv6 is not supported by the dataplane yet"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
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
[[services]]
name = "dns"
vip = "198.18.1.53"
port = 53
protocol = "udp"
[[services.reals]]
address = "198.18.0.11"
"#;

    fn compile(config: &Config) -> Result<Snapshot, CompileError> {
        let macs = [MacAddr([2, 0, 0, 0, 0, 2])];
        Snapshot::compile(config, &macs, 1, &mut Ids::default(), |_, _, _| true)
    }

    /// The config validation would refuse, which a caller can still build.
    fn bypassing_validation(set: impl Fn(&mut Config)) -> Config {
        let mut config = Config::parse(CONFIG).unwrap();
        set(&mut config);
        config
    }

    #[test]
    fn the_maximum_compiles_to_its_exact_milliseconds() {
        let max_ms = u32::try_from(MAX_FLOW_TIMEOUT.as_millis()).unwrap();
        let config = bypassing_validation(|c| {
            c.flows.tcp_timeout = MAX_FLOW_TIMEOUT;
            c.flows.tcp_fin_timeout = MAX_FLOW_TIMEOUT;
            c.flows.tcp_syn_timeout = MAX_FLOW_TIMEOUT;
            c.flows.udp_timeout = MAX_FLOW_TIMEOUT;
            c.services[1].persistence = MAX_FLOW_TIMEOUT;
        });
        let snap = compile(&config).unwrap();
        let t = snap.timeouts;
        assert_eq!(
            [t.established, t.fin, t.syn, t.datagram],
            [max_ms; 4],
            "{t:?}"
        );
        assert_eq!(t.closed, 10_000);
        assert_eq!(snap.services[1].persistence_ms, max_ms);
    }

    #[test]
    fn a_duration_above_the_maximum_is_refused_by_key_not_capped() {
        let above = MAX_FLOW_TIMEOUT + Duration::from_millis(1);
        // Once beyond u32 milliseconds, and beyond u64 ones too.
        let huge = [above, Duration::from_secs(1 << 40), Duration::MAX];
        type Set = fn(&mut Config, Duration);
        let cases: [(&str, Set); 5] = [
            ("flows.tcp_timeout", |c, d| c.flows.tcp_timeout = d),
            ("flows.tcp_fin_timeout", |c, d| c.flows.tcp_fin_timeout = d),
            ("flows.tcp_syn_timeout", |c, d| c.flows.tcp_syn_timeout = d),
            ("flows.udp_timeout", |c, d| c.flows.udp_timeout = d),
            ("services[1].persistence", |c, d| {
                c.services[1].persistence = d
            }),
        ];
        for (key, set) in cases {
            for d in huge {
                let config = bypassing_validation(|c| set(c, d));
                let e = compile(&config).expect_err(key);
                assert!(
                    e.0.starts_with(&format!("{key}: "))
                        && e.0.contains("above the maximum of 576h"),
                    "{key} = {d:?}: {e}"
                );
            }
        }
        let e = compile(&bypassing_validation(|c| c.flows.tcp_timeout = above)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "flows.tcp_timeout: 576h1ms is above the maximum of 576h"
        );
    }

    // IPv6: replaced by the dataplane's IPv6 path (these tests with it).
    #[test]
    fn ipv6_in_the_config_is_refused_by_key_until_the_dataplane_carries_it() {
        let dual = CONFIG.replace(
            "address = \"198.18.0.2/24\"",
            "address = \"198.18.0.2/24\"\naddress6 = \"2001:2::2/64\"",
        );
        assert_eq!(
            compile(&Config::parse(&dual).unwrap())
                .unwrap_err()
                .to_string(),
            "ports[0].address6: IPv6 port addresses are not supported by the dataplane yet"
        );
        // Past validation (which needs an IPv6 port for them), each kind of
        // IPv6 value is refused with its own key.
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let config = bypassing_validation(|c| c.services[1].vip = v6("2001:2:1::53"));
        assert_eq!(
            compile(&config).unwrap_err().to_string(),
            "services[1]: IPv6 services are not supported by the dataplane yet"
        );
        let config = bypassing_validation(|c| c.services[1].reals[0].address = v6("2001:2::11"));
        assert_eq!(
            compile(&config).unwrap_err().to_string(),
            "services[1].reals[0].address: IPv6 reals (4in6 tunnels) are not supported by the dataplane yet"
        );
        let config = bypassing_validation(|c| {
            c.neighbors.push(lb_config::NeighborConfig {
                address: v6("2001:2::20"),
                mac: MacAddr([2, 0, 0, 0, 0, 0x20]),
            })
        });
        assert_eq!(
            compile(&config).unwrap_err().to_string(),
            "neighbors[0].address: IPv6 neighbors are not supported by the dataplane yet"
        );
        let config =
            bypassing_validation(|c| c.ports[0].gateway6 = Some("fe80::1".parse().unwrap()));
        assert_eq!(
            compile(&config).unwrap_err().to_string(),
            "ports[0].gateway6: IPv6 gateways are not supported by the dataplane yet"
        );
    }

    #[test]
    fn a_port_without_ipv4_is_local_for_nothing_and_connects_nothing() {
        let mut snap = compile(&Config::parse(CONFIG).unwrap()).unwrap();
        let ours = Ipv4Addr::new(198, 18, 0, 2);
        assert!(snap.is_local(0, ours) && snap.is_port_address(ours));
        assert!(snap.ports[0].connected(Ipv4Addr::new(198, 18, 0, 9)));
        let p = &mut snap.ports[0];
        (p.address, p.net, p.mask) = (None, 0, 0);
        assert_eq!(p.ipv4(), None);
        assert!(!p.connected(Ipv4Addr::new(198, 18, 0, 9)));
        assert!(!p.connected(Ipv4Addr::UNSPECIFIED));
        assert!(!snap.is_local(0, ours) && !snap.is_port_address(ours));
        assert!(
            snap.is_local(0, Ipv4Addr::new(198, 18, 1, 100)),
            "VIPs still are"
        );
    }
}
