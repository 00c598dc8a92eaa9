//! The compiled, immutable configuration a worker runs with: ports, services
//! with their schedulers already built (Maglev tables included), the reals'
//! forwarding methods and health, static neighbors, timeouts. The control
//! thread compiles a new one for every change and hands it to each worker,
//! which picks it up between bursts: the fast path never locks or waits.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use lb_config::{Config, ForwardingMethod, Ipv4Cidr, MacAddr, Protocol, SchedulerKind};

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
    pub address: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u16,
    /// The connected network and its mask, as integers (route lookups).
    pub net: u32,
    pub mask: u32,
}

impl PortView {
    /// Whether `addr` is on this port's connected network.
    #[inline]
    pub fn connected(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask == self.net
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
    pub fn compile(
        config: &Config,
        port_macs: &[MacAddr],
        generation: u64,
        ids: &mut Ids,
        is_up: impl Fn(&str, Ipv4Addr, u16) -> bool,
    ) -> Result<Snapshot, CompileError> {
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
                net: u32::from(p.address.network()),
                mask: u32::from(p.address.netmask()),
            })
            .collect();
        let mut services = Vec::with_capacity(config.services.len());
        let mut real_present = vec![false; MAX_REALS];
        let mut nat_endpoints = Vec::new();
        let mut nat_reals = Vec::new();
        for s in &config.services {
            let proto = ip_protocol(s.protocol);
            let sid = ids.service((proto, s.vip, s.port));
            let mut reals = Vec::with_capacity(s.reals.len());
            for r in &s.reals {
                let id = ids.real((sid, r.address, r.port, r.forwarding))?;
                real_present[id as usize] = true;
                if r.forwarding == ForwardingMethod::Nat {
                    nat_endpoints.push(endpoint_key(proto, r.address, r.port));
                    nat_reals.push(u32::from(r.address));
                }
                reals.push(RealView {
                    id,
                    address: r.address,
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
            services.push(ServiceView {
                id: sid,
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
                protocol: s.protocol,
                kind: s.scheduler,
                persistence_ms: u32::try_from(s.persistence.as_millis())
                    .unwrap_or(u32::MAX / 2)
                    .min(u32::MAX / 2),
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
        let mut vips: Vec<Ipv4Addr> = config.services.iter().map(|s| s.vip).collect();
        vips.sort_unstable();
        vips.dedup();
        let mut static_neighbors: Vec<(Ipv4Addr, MacAddr)> = config
            .neighbors
            .iter()
            .map(|n| (n.address, n.mac))
            .collect();
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
            timeouts: Timeouts::from_config(&config.flows),
            workers: config.workers.lcores.len().max(1),
        })
    }

    /// Whether `addr` is one of ours on `port`: the port's own address or any
    /// VIP (VIPs are answered for on every port, as a Linux director does).
    #[inline]
    pub fn is_local(&self, port: usize, addr: Ipv4Addr) -> bool {
        self.ports
            .get(port)
            .is_some_and(|p| p.address.address == addr)
            || self.is_vip(addr)
    }

    #[inline]
    pub fn is_vip(&self, addr: Ipv4Addr) -> bool {
        self.vip_set.contains(u64::from(u32::from(addr)))
    }

    /// Whether `addr` is the address of any port.
    #[inline]
    pub fn is_port_address(&self, addr: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| p.address.address == addr)
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
    #[inline]
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
