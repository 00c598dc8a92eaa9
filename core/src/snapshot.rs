//! The compiled, immutable configuration a worker runs with: ports, services
//! with their schedulers already built (Maglev tables included), the reals'
//! forwarding methods and health, static neighbors, timeouts. The control
//! thread compiles a new one for every change and hands it to each worker,
//! which picks it up between bursts: the fast path never locks or waits.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use lb_config::{
    format_duration, Config, ForwardingMethod, Ipv4Cidr, Ipv6Cidr, MacAddr, Protocol,
    SchedulerKind, SynProxyMode, MAX_FLOW_TIMEOUT,
};

use crate::flow::{mix64, FlowAddr, Timeouts};
use crate::forward::NatSums;
use crate::keymap::KeyMap;
use crate::route;
use crate::scheduler::{Backend, Scheduler};
use crate::wire::IpProtocol;

/// The most reals (over the life of the process) that counters are kept for
/// (and so the most one config may have).
pub const MAX_REALS: usize = lb_config::MAX_REALS;

/// One data port as the fast path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub name: String,
    pub mac: MacAddr,
    /// `None`: the port has no IPv4 address (only `address6`): nothing
    /// local answers IPv4 there and no IPv4 route leaves by it.
    pub address: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    /// The config's `mtu`, or the device's where that is smaller
    /// ([`Snapshot::set_port_mtus`]).
    pub mtu: u16,
    /// The connected network and its mask, as integers (route lookups);
    /// both 0 without an IPv4 address (then `connected` is always false).
    pub net: u32,
    pub mask: u32,
    /// `address6`: the port's IPv6 address and connected network, if any.
    pub address6: Option<Ipv6Cidr>,
    /// `gateway6`: on `address6`'s network, or link-local on this port.
    pub gateway6: Option<Ipv6Addr>,
    /// The IPv6 connected network and mask, as integers; both 0 without
    /// `address6`.
    pub net6: u128,
    pub mask6: u128,
    /// The port has a kernel interface (`kernel_interface`): what is for
    /// its own address and not handled here goes there
    /// ([`crate::pipeline::Verdict::ToKernel`]) instead of being dropped.
    pub kernel: bool,
    /// `[sync] gateway` and `gateway6`, on the port whose connected network
    /// holds them, while this appliance is the active one of its pair
    /// ([`Snapshot::float_gateways`]): answered (ARP, NDP, echo) like the
    /// port's own address. None on a standby appliance.
    pub floating: Option<Ipv4Addr>,
    pub floating6: Option<Ipv6Addr>,
    /// `routing_peers`: BGP and BFD peers beyond the connected network.
    pub routing_peers: Vec<IpAddr>,
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

    /// Whether `addr` is on this port's IPv6 connected network.
    #[inline]
    pub fn connected6(&self, addr: Ipv6Addr) -> bool {
        self.address6.is_some() && u128::from(addr) & self.mask6 == self.net6
    }

    /// The port's own IPv6 address, if it has one.
    #[inline]
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.address6.map(|a| a.address)
    }

    /// Whether `addr` is on this port's link as far as its addresses
    /// tell: on a connected network, or IPv6 link-local (what an IPv6 BGP
    /// peer on the segment often speaks from). A claim, not proof: see
    /// [`crate::exception::is_control`].
    pub fn on_link(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.connected(a),
            IpAddr::V6(a) => self.connected6(a) || a.is_unicast_link_local(),
        }
    }

    /// What a frame's source address `addr` is to this port: its own, a
    /// configured routing peer, on its link, or none of those.
    pub fn source_of(&self, addr: IpAddr) -> crate::exception::Source {
        use crate::exception::Source;
        let own = match addr {
            IpAddr::V4(a) => self.ipv4() == Some(a),
            IpAddr::V6(a) => self.ipv6() == Some(a),
        };
        if own {
            Source::Own
        } else if self.routing_peers.contains(&addr) {
            Source::Peer
        } else if self.on_link(addr) {
            Source::OnLink
        } else {
            Source::Far
        }
    }
}

/// A real server of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealView {
    /// Stable across reloads for as long as the real stays in its service.
    pub id: u32,
    /// In the VIP's family, except a TUN real of an IPv4 service, which
    /// may be IPv6 (4in6).
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub method: ForwardingMethod,
    /// Health: a down real gets no new flows.
    pub up: bool,
    /// What the per-real counters (flows created, packets, bytes) of this
    /// id had counted before this real got it: zero unless the id was a
    /// removed real's ([`Ids`]). Every view of the real's counters
    /// subtracts it.
    pub counted_before: [u64; 3],
    /// A NAT real whose (protocol, address, port) another service's NAT
    /// real shares: flows of one client port to both services would have
    /// the same reply key, so a new flow to it checks that key first
    /// (`Conntrack::claim_reply_key`; a random read of the index that
    /// flows to other reals are spared).
    pub shared_endpoint: bool,
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
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub kind: SchedulerKind,
    pub persistence_ms: u32,
    /// The SYN proxy as it applies: `Off` whatever the config said for a
    /// UDP service or one with a real that is not NAT (`auto` is inert
    /// there; validation refuses `on`). IPv4 NAT and NAT66 alike.
    pub syn_proxy: SynProxyMode,
    pub reals: Vec<RealView>,
    /// Indices into `reals` of the eligible ones, in the order the
    /// scheduler was built with.
    pub eligible: Vec<usize>,
    /// Shared with the snapshots before it while the service's scheduler
    /// kind and eligible reals stay the same ([`Ids`] keeps it): a health
    /// change or a `ctl` edit rebuilds only what it changed.
    pub scheduler: std::sync::Arc<Scheduler>,
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

/// A service's identity for its id: (IP protocol, VIP, port).
type ServiceKey = (u8, IpAddr, u16);

/// A real's identity for its id: (its service's key, address, port,
/// forwarding method). A real whose method changes is a new real, since
/// its flows cannot continue the old way. By the service's key, not its
/// id, since a service's id lasts only while it is configured
/// ([`Ids`]): a real of a service removed and added again is the same
/// real, and gets its id (and counters) back while the id lasts.
type RealKey = (ServiceKey, IpAddr, u16, ForwardingMethod);

/// Stable ids for services and reals, kept by the control thread across
/// snapshots so that counters and flows keep their meaning over a reload.
///
/// A removed real keeps its id, and gets it back if it returns, while
/// fresh ids last. When a config needs more than the fresh ones of
/// [`MAX_REALS`] ([`Ids::prepare`]), a new real takes the id of a removed
/// one that every worker has drained ([`Ids::offer_drained`]: each runs a
/// snapshot without it and holds no flow or persistence template of it),
/// so that a long-running box whose reals come and go
/// through `ctl` never has to be restarted for ids. Its counters then
/// count on from the old real's, so views subtract what they had counted
/// ([`RealView::counted_before`]).
///
/// A service keeps its id while it stays configured. One that a compile
/// leaves out loses it (found in audit: every service key ever configured
/// kept an id, so a box whose services come and go grew the map, and the
/// copy of it every publish makes, with its history), and gets a new one
/// if it comes back. Nothing is counted by service id (counters are the
/// reals', and a real is keyed by its service's protocol, VIP and port,
/// not the id); flows and persistence templates carry it, and a template
/// whose service id no snapshot has is over. So a freed id is not given
/// again soon: ids count up, and only after all 2^32 have been given do
/// they start over, skipping those in use, as process ids do.
#[derive(Debug, Clone)]
pub struct Ids {
    services: HashMap<ServiceKey, u32>,
    /// The id the next new service gets, unless in use ([`Ids::service`]).
    next_service: u32,
    /// Whether `next_service` has wrapped: ids below it may be in use.
    services_wrapped: bool,
    reals: HashMap<RealKey, u32>,
    /// By id: the real that has it (to forget that real's claim when the
    /// id goes to another).
    keys: Vec<RealKey>,
    /// Ids out of the config, each with the generation of the first
    /// snapshot compiled without it.
    retired: std::collections::BTreeMap<u32, u64>,
    /// Drained ids that the next compile may give to new reals, with their
    /// counters' sums (flows created, packets, bytes) when offered. Valid
    /// for one compile.
    offered: std::collections::BTreeMap<u32, [u64; 3]>,
    /// Ids given again, with their counters' sums when given.
    counted_before: HashMap<u32, [u64; 3]>,
    limit: usize,
    /// The schedulers the last compile used, by what they were built
    /// from (kind, eligible reals and weights): a service whose own did
    /// not change gets the very one it had (found in audit: every publish
    /// rebuilt every scheduler, and 4,096 `mh` services of 16 reals took
    /// 16.8 s a publish, past the control thread's watchdog), and services
    /// over the same reals share one (found in audit: a reload of a pool
    /// 4,096 `mh` services share, or one shared real's health, rebuilt
    /// 4,096 identical Maglev tables). Building is deterministic and a
    /// built scheduler never changes, so sharing one is sharing a value.
    schedulers: SchedulerCache,
    /// Schedulers earlier compiles used and later ones dropped, each with
    /// the generation that dropped it, the most recently dropped kept
    /// ([`Ids::settle`]): a real that goes down and comes back (or a
    /// change undone) gets the very schedulers it had (found in audit: a
    /// real flapping in 128 `mh` services rebuilt all 128 Maglev tables at
    /// every flip, both ways, about 120 ms of the control thread each).
    spare: HashMap<SchedulerContent, (std::sync::Arc<Scheduler>, u64)>,
    /// The ones this compile has used so far: the cache from its end on.
    used: SchedulerCache,
}

/// What a scheduler is built from: its kind, and the eligible reals with
/// their weights in order.
type SchedulerContent = (SchedulerKind, Vec<Backend>);

type SchedulerCache = HashMap<SchedulerContent, std::sync::Arc<Scheduler>>;

/// The fewest dropped schedulers [`Ids`] keeps, whatever the config's
/// count: at most 16 Maglev tables (128 KiB each).
const SPARE_SCHEDULERS_MIN: usize = 16;

impl Default for Ids {
    fn default() -> Self {
        Ids::with_limit(MAX_REALS)
    }
}

impl Ids {
    /// Ids with room for `limit` reals (at most [`MAX_REALS`]): a test's
    /// way to run out of fresh ids without compiling 65,536 reals.
    pub fn with_limit(limit: usize) -> Ids {
        Ids {
            services: HashMap::new(),
            next_service: 0,
            services_wrapped: false,
            reals: HashMap::new(),
            keys: Vec::new(),
            retired: Default::default(),
            offered: Default::default(),
            counted_before: HashMap::new(),
            limit: limit.min(MAX_REALS),
            schedulers: HashMap::new(),
            spare: HashMap::new(),
            used: HashMap::new(),
        }
    }

    /// The scheduler of `kind` over `backends`: the one this compile, the
    /// last or a recently dropped one ([`Ids::spare`]) already has for
    /// them, else a new one.
    fn scheduler(
        &mut self,
        kind: SchedulerKind,
        backends: &[Backend],
    ) -> std::sync::Arc<Scheduler> {
        let content = (kind, backends.to_vec());
        if let Some(s) = self.used.get(&content) {
            return std::sync::Arc::clone(s);
        }
        let s = match self
            .schedulers
            .get(&content)
            .or_else(|| self.spare.get(&content).map(|(s, _)| s))
        {
            Some(s) => std::sync::Arc::clone(s),
            None => std::sync::Arc::new(Scheduler::build(kind, backends)),
        };
        self.used.insert(content, std::sync::Arc::clone(&s));
        s
    }

    /// The id of the service `key`: the one it has, else the next not in
    /// use ([`Ids`]).
    fn service(&mut self, key: ServiceKey) -> u32 {
        if let Some(&id) = self.services.get(&key) {
            return id;
        }
        let mut id = self.next_service;
        if self.services_wrapped {
            // At most one id in use per configured service: found within
            // that many steps.
            let in_use: std::collections::HashSet<u32> = self.services.values().copied().collect();
            while in_use.contains(&id) {
                id = id.wrapping_add(1);
            }
        }
        let (next, wrapped) = id.overflowing_add(1);
        self.next_service = next;
        self.services_wrapped |= wrapped;
        self.services.insert(key, id);
        id
    }

    fn real(&mut self, key: RealKey) -> Result<u32, CompileError> {
        if let Some(&id) = self.reals.get(&key) {
            // Back in the config: no longer anyone else's to take.
            self.offered.remove(&id);
            return Ok(id);
        }
        if self.keys.len() < self.limit {
            let id = self.keys.len() as u32;
            self.keys.push(key);
            self.reals.insert(key, id);
            return Ok(id);
        }
        let Some((id, counted)) = self.offered.pop_first() else {
            return Err(CompileError(format!(
                "no id left for a new real: all {} are taken by configured reals or by removed \
                 reals whose flows or persistence templates have not ended yet (they are given \
                 again once every worker has ended them: try again after the flows' timeouts \
                 or the service's persistence)",
                self.limit
            )));
        };
        let old = std::mem::replace(&mut self.keys[id as usize], key);
        self.reals.remove(&old);
        self.reals.insert(key, id);
        self.retired.remove(&id);
        self.counted_before.insert(id, counted);
        Ok(id)
    }

    /// After a compile of generation `generation` in which the real ids in
    /// `present` and the services `services` were used: the other reals
    /// are retired from then on, and the other services lose their ids.
    /// Offers not taken lapse.
    fn settle(&mut self, generation: u64, present: &[bool], services: &[ServiceView]) {
        // Also forgets what a compile that failed halfway had given.
        self.services = services
            .iter()
            .map(|s| ((s.ip_protocol(), s.vip, s.port), s.id))
            .collect();
        // The schedulers this compile used are the cache; those it dropped
        // are spare, the most recently dropped first, as many as it used
        // (or `SPARE_SCHEDULERS_MIN`): at most one config's worth more.
        let dropped = std::mem::replace(&mut self.schedulers, std::mem::take(&mut self.used));
        let used = &self.schedulers;
        self.spare.retain(|content, _| !used.contains_key(content));
        for (content, s) in dropped {
            if !used.contains_key(&content) {
                self.spare.insert(content, (s, generation));
            }
        }
        let room = self.schedulers.len().max(SPARE_SCHEDULERS_MIN);
        while self.spare.len() > room {
            // Whole generations, oldest first: which stay does not depend
            // on the map's order.
            let oldest = self
                .spare
                .values()
                .map(|&(_, g)| g)
                .min()
                .unwrap_or_default();
            self.spare.retain(|_, &mut (_, g)| g != oldest);
        }
        for id in 0..self.keys.len() as u32 {
            if present[id as usize] {
                self.retired.remove(&id);
            } else {
                self.retired.entry(id).or_insert(generation);
            }
        }
        self.offered.clear();
    }

    /// Before compiling `config`: if it needs more ids than are fresh,
    /// offers it those of removed reals that every worker (`workers`: their
    /// counters) has drained ([`Ids::offer_drained`]).
    pub fn prepare(&mut self, config: &Config, workers: &[&crate::stats::WorkerStats]) {
        if self.short_for(config) {
            self.offer_drained(workers);
        }
    }

    /// Whether compiling `config` needs more ids than are fresh: then
    /// removed reals' ids are worth offering ([`Ids::offer_drained`]) (found
    /// in review: offered only once every fresh id was gone, a change
    /// adding more reals than were fresh was refused however long it
    /// waited).
    fn short_for(&self, config: &Config) -> bool {
        let new = config
            .services
            .iter()
            .map(|s| {
                let service = (ip_protocol(s.protocol), s.vip, s.port);
                s.reals
                    .iter()
                    .filter(|r| {
                        !self
                            .reals
                            .contains_key(&(service, r.address, r.port, r.forwarding))
                    })
                    .count()
            })
            .sum::<usize>();
        self.keys.len() + new > self.limit
    }

    /// Offers the next compile the ids of removed reals that every worker
    /// (`workers`: their counters) has drained: it has adopted a snapshot
    /// without the real (its generation is at least the one the id was
    /// retired in), and counts no flow of it, active or inactive, and no
    /// persistence template that sends a client to it. Such a real can get
    /// no new flow (no snapshot has it), so the id is free.
    /// Each goes with its counters' sums now, which stay put from then on
    /// (nothing is counted for a real without flows).
    pub fn offer_drained(&mut self, workers: &[&crate::stats::WorkerStats]) {
        self.offered.clear();
        for (&id, &retired) in &self.retired {
            // The generation first, with acquire: the worker set it (with
            // release) after every gauge it wrote under older snapshots.
            let drained = workers.iter().all(|w| {
                let c = w.real(id);
                w.generation.get_acquire() >= retired
                    && c.active.get() == 0
                    && c.inactive.get() == 0
                    && c.templates.get() == 0
            });
            if drained {
                let sum = |f: fn(&crate::stats::RealCounters) -> u64| {
                    workers.iter().map(|w| f(w.real(id))).sum::<u64>()
                };
                self.offered.insert(
                    id,
                    [
                        sum(|c| c.flows_created.get()),
                        sum(|c| c.packets.get()),
                        sum(|c| c.bytes.get()),
                    ],
                );
            }
        }
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
    /// Every IPv4 VIP, sorted and without duplicates.
    pub vips: Vec<Ipv4Addr>,
    /// Every IPv6 VIP, sorted and without duplicates.
    pub vips6: Vec<Ipv6Addr>,
    pub services: Vec<ServiceView>,
    vip_set: KeyMap,
    /// (protocol, VIP, port) key -> index in `services` (IPv4 VIPs).
    service_keys: KeyMap,
    /// A service's stable id -> its index in `services`.
    service_ids: KeyMap,
    /// (protocol, address, port) keys of NAT reals: a packet from one of
    /// them is a reply to translate back.
    nat_endpoints: KeyMap,
    /// Addresses of NAT reals (ICMP errors they send).
    nat_reals: KeyMap,
    /// The same four for IPv6.
    vip_set6: Keys6<Ipv6Addr>,
    service_keys6: Keys6<(u8, Ipv6Addr, u16)>,
    nat_endpoints6: Keys6<(u8, Ipv6Addr, u16)>,
    nat_reals6: Keys6<Ipv6Addr>,
    /// The address of every real of every service, any method and family
    /// (`is_real`: the kernel path's budget for health checks' answers).
    real_addrs: KeyMap,
    real_addrs6: Keys6<Ipv6Addr>,
    /// Indexed by real id: whether the real is still configured.
    real_present: Vec<bool>,
    /// Indexed by real id: where packets to that IPv4 real leave
    /// ([`RealRoute`]); as long as the highest IPv4 real id.
    real_routes: Vec<RealRoute>,
    /// The same for IPv6 reals (those of 4in6 included).
    real_routes6: Vec<RealRoute<Ipv6Addr>>,
    /// Where IPv4 packets to no port's connected network leave (the first
    /// port with a `gateway`), as a [`RealRoute`] to the gateway.
    default_route: Option<RealRoute>,
    /// The same for IPv6 (`gateway6`).
    default_route6: Option<RealRoute<Ipv6Addr>>,
    /// The IPv6 reals of IPv4 services (4in6), by id: their IPv4 flows
    /// cannot hold the address.
    tunnel6_reals: HashMap<u32, Ipv6Addr>,
    /// Static neighbors, and an index of them by address.
    static_neighbors: Vec<(Ipv4Addr, MacAddr)>,
    neighbor_index: KeyMap,
    static_neighbors6: Keys6<Ipv6Addr>,
    static_macs6: Vec<MacAddr>,
    pub timeouts: Timeouts,
    /// Number of workers (flows are owned by `flow::owner_of`).
    pub workers: usize,
    /// The MSS the SYN proxy announces to clients: the smallest port MTU
    /// less 40 (IPv4 and TCP headers), at least 536.
    pub syn_proxy_mss: u16,
    /// The same for IPv6 clients: the smallest port MTU less 60 (IPv6 and
    /// TCP headers, as Linux computes it), at least 1220 (IPv6's minimum
    /// MTU, 1280, less 60).
    pub syn_proxy_mss6: u16,
    /// The smallest MTU of any port: an IP packet no longer fits every
    /// port, so only a longer one needs its out-port's MTU looked up.
    pub min_mtu: u16,
    /// The `[sync]` peer's address and this box's sync port (`listen`'s),
    /// for the kernel interfaces' budget of its datagrams
    /// (`exception::KernelClass::Sync`).
    pub sync_peer: Option<(IpAddr, u16)>,
    /// Raised by the control thread to have the floating gateways
    /// announced again (gratuitous ARP, unsolicited NA) though they did
    /// not move: the peer held them meanwhile (a healed partition).
    pub announce_epoch: u64,
    /// The connected networks that hold a NAT real, as (network, mask)
    /// bits, IPv4 and IPv6: each counts as one source for the per-source
    /// limit (`Conntrack::set_links`; found in review: a compromised real
    /// forged its neighbors' addresses, each a source of its own).
    pub nat_links: [Vec<(u128, u128)>; 2],
}

/// The MSS the SYN proxy announces to IPv4 clients: the smallest port
/// MTU (`min`) less 40 (IPv4 and TCP headers), at least 536.
fn proxy_mss(min: Option<u16>) -> u16 {
    min.unwrap_or(1500).saturating_sub(40).max(536)
}

/// The same for IPv6 clients: less 60, at least 1220 (IPv6's minimum MTU,
/// 1280, less 60).
fn proxy_mss6(min: Option<u16>) -> u16 {
    min.unwrap_or(1500)
        .saturating_sub(60)
        .max(lb_config::IPV6_MIN_MTU - 60)
}

#[inline]
fn endpoint_key(proto: u8, addr: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(addr)) << 32) | (u64::from(port) << 8) | u64::from(proto)
}

/// Where packets to one real leave, worked out when the snapshot is
/// built: the route of its address ([`route::lookup`], [`route::lookup6`])
/// and the static neighbor of the next hop are fixed for a snapshot's
/// life, and an established packet would otherwise look both up again (a
/// scan of the ports and a hash probe). Learned neighbors change between
/// packets and are still looked up when `mac` is None. `A`: the real's
/// family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(align(64))]
pub struct RealRoute<A = Ipv4Addr> {
    /// The real's address (what a flow to it carries).
    pub addr: A,
    /// The port's index in `ports`.
    pub port: u16,
    /// False for a real with no route (and for ids no real of this family
    /// has).
    pub routed: bool,
    /// Whether `addr` is on the port's connected network (`next_hop` is
    /// then `addr`). (No MTU: the port's is read where it is checked, as
    /// the dataplane sets it after compiling, [`Snapshot::set_port_mtus`].)
    pub connected: bool,
    pub next_hop: A,
    /// The port's own MAC, the frame's source.
    pub src_mac: MacAddr,
    /// The static neighbor entry of `next_hop`, if any: it wins over
    /// anything learned. Private, as `link` is: made only together, by
    /// [`RealRoute::with_link`], so that the two never disagree.
    mac: Option<MacAddr>,
    /// `mac` and `src_mac` joined as a frame's first 12 bytes
    /// (`wire::ethernet::addrs`), when `mac` is known: set in one copy
    /// (read as two MACs and written as four pieces, they were some ten
    /// instructions more a packet).
    link: Option<[u8; 12]>,
    /// An IPv4 NAT real's: the checksum changes of rewriting its service's
    /// VIP and port into its address and port (an id's service, address
    /// and port never change, [`Ids`]). Default for every other real.
    nat: NatSums,
}

impl<A> RealRoute<A> {
    /// The static neighbor entry of the next hop, if any.
    #[inline]
    pub fn mac(&self) -> Option<MacAddr> {
        self.mac
    }

    /// The frame's destination and source MACs as its first 12 bytes,
    /// when the next hop's MAC is a static entry.
    #[inline(always)]
    pub fn link(&self) -> Option<&[u8; 12]> {
        self.link.as_ref()
    }

    /// The checksum changes of a NAT request to this real (an IPv4 NAT
    /// real's; see the field).
    #[inline(always)]
    pub fn nat_sums(&self) -> NatSums {
        self.nat
    }

    /// The route with its `link` made from `mac` and `src_mac`.
    fn with_link(self) -> RealRoute<A> {
        RealRoute {
            link: self
                .mac
                .map(|m| crate::wire::ethernet::addrs(m, self.src_mac)),
            ..self
        }
    }
}

/// [`RealRoute`] of every real of family `A` (`family` picks its address
/// out), by id: `lookup` routes an address (port, next hop, connected),
/// `neighbor` is the static neighbor table.
fn routes_of_reals<A: Copy>(
    ports: &[PortView],
    services: &[ServiceView],
    unspecified: A,
    family: impl Fn(IpAddr) -> Option<A>,
    lookup: impl Fn(A) -> Option<(usize, A, bool)>,
    neighbor: impl Fn(A) -> Option<MacAddr>,
) -> Vec<RealRoute<A>> {
    let mut routes: Vec<RealRoute<A>> = Vec::new();
    for (s, r) in services
        .iter()
        .flat_map(|s| s.reals.iter().map(move |r| (s, r)))
    {
        let Some(addr) = family(r.address) else {
            continue;
        };
        let Some((at, next_hop, connected)) = lookup(addr) else {
            continue;
        };
        let Ok(port) = u16::try_from(at) else {
            continue;
        };
        let id = r.id as usize;
        if routes.len() <= id {
            routes.resize(
                id + 1,
                RealRoute {
                    addr: unspecified,
                    port: 0,
                    routed: false,
                    connected: false,
                    next_hop: unspecified,
                    src_mac: MacAddr::ZERO,
                    mac: None,
                    link: None,
                    nat: NatSums::default(),
                },
            );
        }
        let nat = match (s.vip, r.address, r.method) {
            (IpAddr::V4(vip), IpAddr::V4(real), ForwardingMethod::Nat) => {
                NatSums::new((vip, s.port), (real, r.port))
            }
            _ => NatSums::default(),
        };
        routes[id] = RealRoute {
            addr,
            port,
            routed: true,
            connected,
            next_hop,
            src_mac: ports[at].mac,
            mac: neighbor(next_hop),
            link: None,
            nat,
        }
        .with_link();
    }
    routes
}

/// The [`RealRoute`] to the gateway that [`route::lookup`] and
/// [`route::lookup6`] pick for an address on no connected network: the
/// first port's (`gateway` gives a port's gateway of the family).
fn gateway_route<A: Copy>(
    ports: &[PortView],
    gateway: impl Fn(&PortView) -> Option<A>,
    neighbor: impl Fn(A) -> Option<MacAddr>,
) -> Option<RealRoute<A>> {
    let (i, gw) = ports
        .iter()
        .enumerate()
        .find_map(|(i, p)| gateway(p).map(|gw| (i, gw)))?;
    Some(
        RealRoute {
            addr: gw,
            port: u16::try_from(i).ok()?,
            routed: true,
            connected: false,
            next_hop: gw,
            src_mac: ports[i].mac,
            mac: neighbor(gw),
            link: None,
            nat: NatSums::default(),
        }
        .with_link(),
    )
}

/// The scheduler's identity for a real: placement in Maglev and source
/// hash tables depends only on the real's address and port (fixed hashes:
/// the same on every appliance; an IPv4 real's as before IPv6 came).
pub fn backend_key(address: IpAddr, port: u16) -> u64 {
    match address {
        IpAddr::V4(a) => mix64((u64::from(u32::from(a)) << 16) | u64::from(port)),
        IpAddr::V6(a) => mix64(a.fold() ^ (u64::from(port) << 48) ^ BACKEND6),
    }
}

/// Keeps IPv6 backend keys apart from IPv4 ones.
const BACKEND6: u64 = 0x6a09_e667_f3bc_c908;

/// A key of an IPv6 lookup the snapshot answers, hashed to its slot in a
/// [`Keys6`].
pub trait Key6: Copy + Eq + fmt::Debug {
    /// What an empty slot holds (any key: the slot's value says it is
    /// empty).
    const FILL: Self;

    /// The slot hash: well mixed in its low bits, which pick the slot.
    fn hash64(&self) -> u64;
}

/// The slot hash of an IPv6 address with `extra` (ports and protocol):
/// the address folded to 64 bits (the high half times an odd constant, so
/// that addresses whose halves are alike do not cancel out), then one
/// 64-bit mix. It was two mixes, one per half: a NAT66 reply takes three
/// such lookups before its flow's (service, VIP, NAT endpoint), and the
/// second mix cost each about 8 instructions
/// (`scripts/bench-instructions.sh`). A multiply alone in place of the
/// mix (Fibonacci hashing, as `KeyMap` does for IPv4 addresses) left runs
/// of 90 to 200 slots for VIPs one per /64 (found in review). Only the
/// snapshot's own keys fill slots: a key a packet brings costs at most
/// the probe to the first empty slot
/// (`ipv6_keys_spread_in_the_shapes_configs_have`).
#[inline(always)]
fn hash6(addr: Ipv6Addr, extra: u64) -> u64 {
    let a = u128::from(addr);
    mix64(((a >> 64) as u64).wrapping_mul(KEY6_HI) ^ a as u64 ^ extra)
}

/// Odd.
const KEY6_HI: u64 = 0x3c6e_f372_fe94_f82b;

impl Key6 for Ipv6Addr {
    const FILL: Self = Ipv6Addr::UNSPECIFIED;

    #[inline(always)]
    fn hash64(&self) -> u64 {
        hash6(*self, 0)
    }
}

impl Key6 for (u8, Ipv6Addr, u16) {
    const FILL: Self = (0, Ipv6Addr::UNSPECIFIED, 0);

    #[inline(always)]
    fn hash64(&self) -> u64 {
        hash6(
            self.1,
            (u64::from(self.2) << 48) | (u64::from(self.0) << 40),
        )
    }
}

/// An immutable map from IPv6 keys to small values, for the lookups on the
/// packet path (as [`KeyMap`] is for IPv4): open addressing on the full
/// keys, at most half full, so a lookup is one hash, nearly always one
/// probe, and the compare of the key it finds there.
#[derive(Debug, Clone)]
pub struct Keys6<K> {
    /// (key, value + 1); value 0 marks an empty slot.
    slots: Box<[(K, u32)]>,
    mask: usize,
}

impl<K: Key6> Default for Keys6<K> {
    fn default() -> Self {
        Keys6::build(std::iter::empty())
    }
}

impl<K: Key6> Keys6<K> {
    /// Builds from (key, value) pairs; a repeated key keeps its first
    /// value.
    fn build(entries: impl IntoIterator<Item = (K, u32)>) -> Keys6<K> {
        let entries: Vec<(K, u32)> = entries.into_iter().collect();
        let size = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![(K::FILL, 0u32); size].into_boxed_slice();
        let mask = size - 1;
        for (k, v) in entries {
            let mut i = (k.hash64() as usize) & mask;
            loop {
                if slots[i].1 == 0 {
                    slots[i] = (k, v.saturating_add(1));
                    break;
                }
                if slots[i].0 == k {
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        Keys6 { slots, mask }
    }

    #[inline(always)]
    pub fn get(&self, key: &K) -> Option<u32> {
        let mut i = (key.hash64() as usize) & self.mask;
        loop {
            let (k, v) = self.slots[i];
            if v == 0 {
                return None;
            }
            if k == *key {
                return Some(v - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline(always)]
    pub fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// The slots a lookup of `key` reads.
    #[cfg(test)]
    fn probes(&self, key: &K) -> usize {
        let mut i = (key.hash64() as usize) & self.mask;
        let mut n = 1;
        while self.slots[i].1 != 0 && self.slots[i].0 != *key {
            i = (i + 1) & self.mask;
            n += 1;
        }
        n
    }
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
        is_up: impl Fn(&str, IpAddr, u16) -> bool,
    ) -> Result<Snapshot, CompileError> {
        // What a compile that failed halfway had begun to use is not this
        // one's.
        ids.used.clear();
        let timeouts = Timeouts::from_config(&config.flows)?;
        let ports: Vec<PortView> = config
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
                address6: p.address6,
                gateway6: p.gateway6,
                net6: p.address6.map_or(0, |a| u128::from(a.network())),
                mask6: p.address6.map_or(0, |a| u128::from(a.netmask())),
                kernel: p.kernel_interface.is_some(),
                floating: None,
                floating6: None,
                routing_peers: p.routing_peers.clone(),
            })
            .collect();
        let mut services = Vec::with_capacity(config.services.len());
        let mut real_present = vec![false; MAX_REALS];
        let mut tunnel6_reals = HashMap::new();
        let (mut nat_endpoints, mut nat_reals) = (Vec::new(), Vec::new());
        let (mut nat_endpoints6, mut nat_reals6) = (Vec::new(), Vec::new());
        let (mut real_addrs, mut real_addrs6) = (Vec::new(), Vec::new());
        // How many services have each NAT endpoint (protocol, address,
        // port) as a real.
        let mut endpoint_services: HashMap<(u8, IpAddr, u16), u32> = HashMap::new();
        for s in &config.services {
            let proto = ip_protocol(s.protocol);
            let mut own = std::collections::HashSet::new();
            for r in s
                .reals
                .iter()
                .filter(|r| r.forwarding == ForwardingMethod::Nat)
            {
                if own.insert((r.address, r.port)) {
                    *endpoint_services
                        .entry((proto, r.address, r.port))
                        .or_default() += 1;
                }
            }
        }
        for (i, s) in config.services.iter().enumerate() {
            let persistence_ms = millis(&format!("services[{i}].persistence"), s.persistence)?;
            let proto = ip_protocol(s.protocol);
            let service = (proto, s.vip, s.port);
            let sid = ids.service(service);
            let mut reals = Vec::with_capacity(s.reals.len());
            for (j, r) in s.reals.iter().enumerate() {
                // Named by its key, as validation names what it refuses
                // (found in audit: this refusal named none).
                let id = ids
                    .real((service, r.address, r.port, r.forwarding))
                    .map_err(|e| CompileError(format!("services[{i}].reals[{j}]: {e}")))?;
                real_present[id as usize] = true;
                match r.address {
                    IpAddr::V4(a) => real_addrs.push((u64::from(u32::from(a)), 0)),
                    IpAddr::V6(a) => real_addrs6.push((a, 0)),
                }
                match (s.vip, r.address) {
                    (IpAddr::V4(_), IpAddr::V6(a)) => {
                        tunnel6_reals.insert(id, a);
                    }
                    (_, IpAddr::V4(a)) if r.forwarding == ForwardingMethod::Nat => {
                        nat_endpoints.push(endpoint_key(proto, a, r.port));
                        nat_reals.push(u32::from(a));
                    }
                    (_, IpAddr::V6(a)) if r.forwarding == ForwardingMethod::Nat => {
                        nat_endpoints6.push(((proto, a, r.port), 0));
                        nat_reals6.push((a, 0));
                    }
                    _ => {}
                }
                reals.push(RealView {
                    id,
                    address: r.address,
                    port: r.port,
                    weight: r.weight,
                    method: r.forwarding,
                    up: s.health_check.is_none() || is_up(&s.name, r.address, r.port),
                    counted_before: ids.counted_before.get(&id).copied().unwrap_or_default(),
                    shared_endpoint: r.forwarding == ForwardingMethod::Nat
                        && endpoint_services
                            .get(&(proto, r.address, r.port))
                            .is_some_and(|&n| n > 1),
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
            // The SYN proxy must see both directions (NAT), in one family
            // (NAT66 or IPv4 NAT: validation keeps a NAT real in its VIP's).
            let proxy_capable = s.protocol == Protocol::Tcp
                && s.reals.iter().all(|r| {
                    r.forwarding == ForwardingMethod::Nat && r.address.is_ipv4() == s.vip.is_ipv4()
                });
            services.push(ServiceView {
                id: sid,
                name: s.name.clone(),
                vip: s.vip,
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
                scheduler: ids.scheduler(s.scheduler, &backends),
            });
        }
        ids.settle(generation, &real_present, &services);
        let service_keys = KeyMap::build(services.iter().enumerate().filter_map(|(i, s)| {
            let IpAddr::V4(vip) = s.vip else { return None };
            Some((endpoint_key(s.ip_protocol(), vip, s.port), i as u32))
        }));
        let service_ids = KeyMap::build(
            services
                .iter()
                .enumerate()
                .map(|(i, s)| (u64::from(s.id), i as u32)),
        );
        let service_keys6 = Keys6::build(services.iter().enumerate().filter_map(|(i, s)| {
            let IpAddr::V6(vip) = s.vip else { return None };
            Some(((s.ip_protocol(), vip, s.port), i as u32))
        }));
        let nat_endpoints = KeyMap::build(nat_endpoints.into_iter().map(|k| (k, 0)));
        let nat_reals = KeyMap::build(nat_reals.into_iter().map(|a| (u64::from(a), 0)));
        let mut vips: Vec<Ipv4Addr> = Vec::new();
        let mut vips6: Vec<Ipv6Addr> = Vec::new();
        for s in &services {
            match s.vip {
                IpAddr::V4(a) => vips.push(a),
                IpAddr::V6(a) => vips6.push(a),
            }
        }
        vips.sort_unstable();
        vips.dedup();
        vips6.sort_unstable();
        vips6.dedup();
        let mut static_neighbors: Vec<(Ipv4Addr, MacAddr)> = Vec::new();
        let mut neighbors6: Vec<(Ipv6Addr, MacAddr)> = Vec::new();
        for n in &config.neighbors {
            match n.address {
                IpAddr::V4(a) => static_neighbors.push((a, n.mac)),
                IpAddr::V6(a) => neighbors6.push((a, n.mac)),
            }
        }
        static_neighbors.sort_unstable_by_key(|n| n.0);
        let neighbor_index = KeyMap::build(
            static_neighbors
                .iter()
                .enumerate()
                .map(|(i, n)| (u64::from(u32::from(n.0)), i as u32)),
        );
        let static_neighbors6 =
            Keys6::build(neighbors6.iter().enumerate().map(|(i, n)| (n.0, i as u32)));
        let vip_set = KeyMap::build(vips.iter().map(|v| (u64::from(u32::from(*v)), 0)));
        let min_mtu = ports.iter().map(|p| p.mtu).min();
        let real_routes = routes_of_reals(
            &ports,
            &services,
            Ipv4Addr::UNSPECIFIED,
            |a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            },
            |a| route::lookup_in(&ports, a).map(|r| (r.port, r.next_hop, r.connected)),
            |a| {
                neighbor_index
                    .get(u64::from(u32::from(a)))
                    .map(|i| static_neighbors[i as usize].1)
            },
        );
        let default_route = gateway_route(
            &ports,
            |p| p.gateway,
            |a| {
                neighbor_index
                    .get(u64::from(u32::from(a)))
                    .map(|i| static_neighbors[i as usize].1)
            },
        );
        let real_routes6 = routes_of_reals(
            &ports,
            &services,
            Ipv6Addr::UNSPECIFIED,
            |a| match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            },
            |a| route::lookup6_in(&ports, a).map(|r| (r.port, r.next_hop, r.connected)),
            |a| static_neighbors6.get(&a).map(|i| neighbors6[i as usize].1),
        );
        let default_route6 = gateway_route(
            &ports,
            |p| p.gateway6,
            |a| static_neighbors6.get(&a).map(|i| neighbors6[i as usize].1),
        );
        let mut nat_links: [Vec<(u128, u128)>; 2] = [Vec::new(), Vec::new()];
        for r in services
            .iter()
            .flat_map(|s| &s.reals)
            .filter(|r| r.method == ForwardingMethod::Nat)
        {
            for p in &ports {
                let (family, link) = match r.address {
                    IpAddr::V4(a) if p.connected(a) => (0, (u128::from(p.net), u128::from(p.mask))),
                    IpAddr::V6(a) if p.connected6(a) => (1, (p.net6, p.mask6)),
                    _ => continue,
                };
                if !nat_links[family].contains(&link) {
                    nat_links[family].push(link);
                }
            }
        }
        Ok(Snapshot {
            nat_links,
            generation,
            ports,
            vip_set6: Keys6::build(vips6.iter().map(|v| (*v, 0))),
            vips,
            vips6,
            services,
            vip_set,
            service_keys,
            service_ids,
            nat_endpoints,
            nat_reals,
            service_keys6,
            nat_endpoints6: Keys6::build(nat_endpoints6),
            nat_reals6: Keys6::build(nat_reals6),
            real_addrs: {
                real_addrs.sort_unstable();
                real_addrs.dedup();
                KeyMap::build(real_addrs)
            },
            real_addrs6: {
                real_addrs6.sort_unstable();
                real_addrs6.dedup();
                Keys6::build(real_addrs6)
            },
            real_present,
            real_routes,
            real_routes6,
            default_route,
            default_route6,
            tunnel6_reals,
            static_neighbors,
            neighbor_index,
            static_neighbors6,
            static_macs6: neighbors6.iter().map(|n| n.1).collect(),
            timeouts,
            workers: config.workers.lcores.len().max(1),
            syn_proxy_mss: proxy_mss(min_mtu),
            syn_proxy_mss6: proxy_mss6(min_mtu),
            min_mtu: min_mtu.unwrap_or(0),
            sync_peer: config.sync.as_ref().map(|s| (s.peer.ip(), s.listen.port())),
            announce_epoch: 0,
        })
    }

    /// Whether `addr` is one of ours on `port`: the port's own address or any
    /// VIP (VIPs are answered for on every port, as a Linux director does).
    #[inline]
    pub fn is_local(&self, port: usize, addr: Ipv4Addr) -> bool {
        self.ports
            .get(port)
            .is_some_and(|p| p.ipv4() == Some(addr) || p.floating == Some(addr))
            || self.is_vip(addr)
    }

    /// Whether `src`, the source of a frame that came in on `port`, is
    /// another port's: that port's own address or on its link, and neither
    /// nor a routing peer to `port` (a frame that claims it on `port` is
    /// forged; checked before a frame goes to a kernel interface). Not
    /// another port's routing peer: a multihop peer may arrive on any
    /// port (found in review).
    pub fn source_elsewhere(&self, port: usize, src: IpAddr) -> bool {
        use crate::exception::Source;
        if self
            .ports
            .get(port)
            .is_some_and(|p| p.source_of(src) != Source::Far)
        {
            return false;
        }
        self.ports
            .iter()
            .enumerate()
            .any(|(i, p)| i != port && matches!(p.source_of(src), Source::Own | Source::OnLink))
    }

    /// Whether a flow to be for `client`, whose first packet came in on
    /// `port`, comes from where that client cannot be: [`source_elsewhere`]
    /// (another port's address or network), or a client off every
    /// connected network (and no routing peer of `port`) on another port
    /// than the gateway's of its family, the only way back to it. Found in
    /// audit (a compromised NAT real on the reals' port): it sent SYNs to
    /// a VIP from internet addresses of its choice, answered its own
    /// SYN-ACKs and ACKed as the "client", so every entry was confirmed
    /// and unevictable, from as many sources as it liked (no per-source
    /// limit bit), until genuine clients met a full table; and the
    /// appliance sent its SYN-ACKs from the VIP to addresses it chose.
    /// Asked only for a flow to be, never per packet.
    ///
    /// [`source_elsewhere`]: Snapshot::source_elsewhere
    pub fn client_elsewhere(&self, port: usize, client: IpAddr) -> bool {
        use crate::exception::Source;
        if self.source_elsewhere(port, client) {
            return true;
        }
        let here = self.ports.get(port).map(|p| p.source_of(client));
        if here.is_some_and(|s| s != Source::Far) {
            return false;
        }
        let gateway_port = self.ports.iter().position(|p| match client {
            IpAddr::V4(_) => p.gateway.is_some(),
            IpAddr::V6(_) => p.gateway6.is_some(),
        });
        gateway_port.is_some_and(|g| g != port)
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

    /// Whether no client may have `addr`: one of ours (a port's address,
    /// a floating gateway, a VIP), or the network or broadcast address of
    /// a port's connected IPv4 network (of a /30 or shorter), or the
    /// subnet-router anycast address of a connected IPv6 network. A
    /// packet from it came from a host that lies about its source, and an
    /// answer to it (a flow's replies, "fragmentation needed") would go to
    /// us or to a whole segment (RFC 1812 5.3.7). Asked when a flow is
    /// created, not per packet.
    pub fn is_martian_client(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let n = u32::from(a);
                self.is_vip(a)
                    || self.ports.iter().any(|p| {
                        p.ipv4() == Some(a)
                            || p.floating == Some(a)
                            || (p.connected(a)
                                && p.address.is_some_and(|c| c.prefix_len < 31)
                                && (n == p.net || n | p.mask == u32::MAX))
                    })
            }
            IpAddr::V6(a) => {
                self.is_vip6(a)
                    || self.ports.iter().any(|p| {
                        p.ipv6() == Some(a)
                            || p.floating6 == Some(a)
                            || (p.connected6(a)
                                && p.address6.is_some_and(|c| c.prefix_len < 127)
                                && u128::from(a) == p.net6)
                    })
            }
        }
    }

    /// [`Self::is_local`] for IPv6.
    #[inline]
    pub fn is_local6(&self, port: usize, addr: Ipv6Addr) -> bool {
        self.ports
            .get(port)
            .is_some_and(|p| p.ipv6() == Some(addr) || p.floating6 == Some(addr))
            || self.is_vip6(addr)
    }

    /// Makes this the snapshot of the active appliance of a pair: the
    /// floating gateways (`[sync] gateway`, `gateway6`) are answered on the
    /// port whose connected network holds each (config validation makes
    /// sure one does). A standby appliance's snapshot has none.
    pub fn float_gateways(&mut self, gateway: Option<Ipv4Addr>, gateway6: Option<Ipv6Addr>) {
        for p in &mut self.ports {
            p.floating = gateway.filter(|&g| p.connected(g));
            p.floating6 = gateway6.filter(|&g| p.connected6(g));
        }
    }

    #[inline]
    pub fn is_vip6(&self, addr: Ipv6Addr) -> bool {
        self.vip_set6.contains(&addr)
    }

    /// [`Self::service_for`] for IPv6.
    #[inline]
    pub fn service_for6(&self, proto: u8, vip: Ipv6Addr, port: u16) -> Option<usize> {
        self.service_keys6
            .get(&(proto, vip, port))
            .map(|i| i as usize)
    }

    /// [`Self::is_nat_endpoint`] for IPv6.
    #[inline]
    pub fn is_nat_endpoint6(&self, proto: u8, addr: Ipv6Addr, port: u16) -> bool {
        self.nat_endpoints6.contains(&(proto, addr, port))
    }

    /// [`Self::is_nat_real`] for IPv6.
    #[inline]
    pub fn is_nat_real6(&self, addr: Ipv6Addr) -> bool {
        self.nat_reals6.contains(&addr)
    }

    /// Whether `mac` is one of our ports' MACs: no neighbor is learned at
    /// it (a frame sent there would come back to us, or nowhere).
    pub fn is_own_mac(&self, mac: MacAddr) -> bool {
        self.ports.iter().any(|p| p.mac == mac)
    }

    /// Whether `addr` is a next hop the config names: a real, a port's
    /// gateway, or a static neighbor (not a client on a connected network,
    /// which strangers choose).
    pub fn is_configured_next_hop(&self, addr: IpAddr) -> bool {
        self.is_real(addr)
            || match addr {
                IpAddr::V4(a) => {
                    self.static_neighbor(a).is_some()
                        || self.ports.iter().any(|p| p.gateway == Some(a))
                }
                IpAddr::V6(a) => {
                    self.static_neighbor6(a).is_some()
                        || self.ports.iter().any(|p| p.gateway6 == Some(a))
                }
            }
    }

    /// Whether `addr` is the address of a real of any service (any method,
    /// either family).
    pub fn is_real(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.real_addrs.contains(u64::from(u32::from(a))),
            IpAddr::V6(a) => self.real_addrs6.contains(&a),
        }
    }

    /// Whether any port has an IPv6 address (then workers keep an IPv6
    /// flow table).
    pub fn has_ipv6(&self) -> bool {
        self.ports.iter().any(|p| p.address6.is_some())
    }

    /// The IPv6 address of an IPv4 service's real (4in6), by id.
    #[inline]
    pub fn tunnel6_real(&self, id: u32) -> Option<Ipv6Addr> {
        self.tunnel6_reals.get(&id).copied()
    }

    /// Whether the real with this id is still configured.
    #[inline]
    pub fn real_present(&self, id: u32) -> bool {
        self.real_present.get(id as usize).copied().unwrap_or(false)
    }

    /// Where packets to the IPv4 real `id` at `addr` leave: None when it
    /// has no route, or when `addr` is not that real's (then route by
    /// address, which gives the same answer the long way).
    #[inline(always)]
    pub fn real_route(&self, id: u32, addr: Ipv4Addr) -> Option<&RealRoute> {
        self.real_routes
            .get(id as usize)
            .filter(|r| r.routed && r.addr == addr)
    }

    /// Whether a packet from the IPv4 real `id` at `addr` came in on
    /// `port`, the one the real is reached through (any port when no route
    /// leads to it, or `id` is no longer that address's): loads only, on
    /// every NAT reply.
    #[inline(always)]
    pub fn real_on_port(&self, id: u32, addr: Ipv4Addr, port: usize) -> bool {
        self.real_routes
            .get(id as usize)
            .is_none_or(|r| !r.routed || r.addr != addr || usize::from(r.port) == port)
    }

    /// [`Self::real_on_port`] for a real of either family.
    #[inline(always)]
    pub fn real_reached_on<A: FlowAddr>(&self, id: u32, addr: A, port: usize) -> bool {
        match addr.to_ip() {
            IpAddr::V4(a) => self.real_on_port(id, a, port),
            IpAddr::V6(a) => self.real_on_port6(id, a, port),
        }
    }

    /// [`Self::real_on_port`] for an IPv6 real.
    #[inline(always)]
    pub fn real_on_port6(&self, id: u32, addr: Ipv6Addr, port: usize) -> bool {
        self.real_routes6
            .get(id as usize)
            .is_none_or(|r| !r.routed || r.addr != addr || usize::from(r.port) == port)
    }

    /// Where an IPv4 packet to no port's connected network leaves: to
    /// the first `gateway`, by its port (see [`route::lookup`]).
    #[inline(always)]
    pub fn default_route(&self) -> Option<&RealRoute> {
        self.default_route.as_ref()
    }

    /// Whether a packet to `client` has no way out: no gateway of its
    /// family and no port's connected network holds it. Nothing a NAT
    /// real says to such a client opens, ends or confirms a flow (it is
    /// sent on, and dropped as `no_route`) (found in audit: on a box without `gateway6`, a NAT66 real forged
    /// SYNs from routed clients, answered them and ACKed its own
    /// SYN-ACKs, which never left; each forged client one source, the
    /// confirmed entries pinned the table). A handshake whose SYN-ACK
    /// cannot reach its client proves nothing, so such a flow is never
    /// confirmed and stays evictable; one-way set-ups without a gateway
    /// (requests only) are unchanged.
    #[cold]
    #[inline(never)]
    pub fn no_way_back(&self, client: IpAddr) -> bool {
        match client {
            IpAddr::V4(c) => {
                self.default_route.is_none() && route::connected_in(&self.ports, c).is_none()
            }
            IpAddr::V6(c) => {
                self.default_route6.is_none() && route::connected6_in(&self.ports, c).is_none()
            }
        }
    }

    /// [`Self::default_route`] for IPv6 (`gateway6`).
    #[inline(always)]
    pub fn default_route6(&self) -> Option<&RealRoute<Ipv6Addr>> {
        self.default_route6.as_ref()
    }

    /// Each port's MTU as its device has it (`mtus`, in port order: the
    /// config's, unless the driver refused it) where that is smaller than
    /// the config's, and what follows from the smallest, `min_mtu` and the
    /// SYN proxy's MSS: MTU checks must match the wire, and never send
    /// more than the operator asked. (Found in review: the smallest MTU
    /// and the MSS stayed the config's, so a packet between the device's
    /// MTU and the config's skipped "fragmentation needed" and the SYN
    /// proxy promised segments the port could not carry.)
    pub fn set_port_mtus(&mut self, mtus: &[u16]) {
        for (view, &mtu) in self.ports.iter_mut().zip(mtus) {
            view.mtu = view.mtu.min(mtu);
        }
        let min = self.ports.iter().map(|p| p.mtu).min();
        self.min_mtu = min.unwrap_or(0);
        self.syn_proxy_mss = proxy_mss(min);
        self.syn_proxy_mss6 = proxy_mss6(min);
    }

    /// Refuses `config`'s IPv6 services' 6in6 reals that are reached by a
    /// port whose MTU, as the dataplane sends ([`Self::set_port_mtus`]),
    /// cannot carry an IPv6 packet of the minimum MTU (1280) with its
    /// 40-byte outer header: such packets would be neither tunnelled nor
    /// answered (no Packet Too Big below 1280). Validation holds the
    /// config's MTU to 1320; a device may keep a smaller one (found in
    /// audit: a device MTU of 1280 to 1319 started, and dropped them).
    pub fn check_tunnel6_mtus(&self, config: &Config) -> Result<(), CompileError> {
        let needed = crate::wire::ipv6::MIN_MTU + crate::forward::tunnel::OVERHEAD6;
        for (i, s) in config.services.iter().enumerate() {
            if !s.vip.is_ipv6() {
                continue;
            }
            for (j, r) in s.reals.iter().enumerate() {
                let (ForwardingMethod::Tunnel, IpAddr::V6(a)) = (r.forwarding, r.address) else {
                    continue;
                };
                let Some(port) = route::lookup6(self, a).and_then(|r| self.ports.get(r.port))
                else {
                    continue;
                };
                if usize::from(port.mtu) < needed {
                    return Err(CompileError(format!(
                        "services[{i}].reals[{j}].address: {a} is reached by port {}, whose device keeps an MTU of {}: 6in6 adds a 40-byte header, so an IPv6 packet of 1280 bytes, the minimum, needs {needed}",
                        port.name, port.mtu
                    )));
                }
            }
        }
        Ok(())
    }

    /// [`Self::real_route`] for an IPv6 real.
    #[inline(always)]
    pub fn real_route6(&self, id: u32, addr: Ipv6Addr) -> Option<&RealRoute<Ipv6Addr>> {
        self.real_routes6
            .get(id as usize)
            .filter(|r| r.routed && r.addr == addr)
    }

    /// The static neighbor entry for `ip`.
    #[inline(always)]
    pub fn static_neighbor(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.neighbor_index
            .get(u64::from(u32::from(ip)))
            .map(|i| self.static_neighbors[i as usize].1)
    }

    /// The static neighbor entry for an IPv6 `ip`.
    #[inline]
    pub fn static_neighbor6(&self, ip: Ipv6Addr) -> Option<MacAddr> {
        self.static_neighbors6
            .get(&ip)
            .map(|i| self.static_macs6[i as usize])
    }

    /// The service with a stable id.
    pub fn service_by_id(&self, id: u32) -> Option<&ServiceView> {
        self.service_ids
            .get(u64::from(id))
            .and_then(|i| self.services.get(i as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in audit: every publish rebuilt every scheduler (4,096 `mh`
    /// services took 16.8 s). A service whose kind and eligible reals did
    /// not change keeps the very scheduler it had.
    #[test]
    fn a_publish_rebuilds_only_the_schedulers_whose_reals_changed() {
        let text = |weight: u32| {
            let mut t = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                         device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n"
                .to_string();
            for (i, kind) in ["mh", "wrr", "sh"].iter().enumerate() {
                t += &format!(
                    "[[services]]\nname = \"s{i}\"\nvip = \"198.18.1.{}\"\nport = 80\n\
                     scheduler = \"{kind}\"\n[services.health_check]\nkind = \"tcp\"\n\
                     [[services.reals]]\naddress = \"198.18.0.11\"\n\
                     [[services.reals]]\naddress = \"198.18.0.12\"\nweight = {}\n",
                    100 + i,
                    if i == 1 { weight } else { 1 }
                );
            }
            Config::parse(&t).unwrap()
        };
        let mut ids = Ids::default();
        let build = |c: &Config, g: u64, ids: &mut Ids, down: Option<(&str, &str)>| {
            Snapshot::compile(c, &[MacAddr([2, 0, 0, 0, 0, 2])], g, ids, |s, a, _| {
                down != Some((s, &a.to_string()))
            })
            .unwrap()
        };
        let same = |a: &Snapshot, b: &Snapshot, i: usize| {
            std::sync::Arc::ptr_eq(&a.services[i].scheduler, &b.services[i].scheduler)
        };
        let first = build(&text(1), 1, &mut ids, None);
        let again = build(&text(1), 2, &mut ids, None);
        assert!((0..3).all(|i| same(&first, &again, i)), "nothing changed");
        // A weight edit in s1: only s1's is new.
        let edited = build(&text(5), 3, &mut ids, None);
        assert!(same(&again, &edited, 0) && !same(&again, &edited, 1) && same(&again, &edited, 2));
        // A real of s0 down: only s0's is new, and it is what a fresh
        // build over the same reals gives.
        let down = build(&text(5), 4, &mut ids, Some(("s0", "198.18.0.12")));
        assert!(!same(&edited, &down, 0) && same(&edited, &down, 1) && same(&edited, &down, 2));
        let fresh = build(
            &text(5),
            1,
            &mut Ids::default(),
            Some(("s0", "198.18.0.12")),
        );
        for i in 0..3 {
            assert_eq!(
                *down.services[i].scheduler, *fresh.services[i].scheduler,
                "s{i}"
            );
        }
        // A service gone and back gets the one it had (kept spare: found
        // in audit, a real flapping rebuilt every table it is in, both
        // ways).
        let mut fewer = text(5);
        fewer.services.truncate(1);
        build(&fewer, 5, &mut ids, None);
        let back = build(&text(5), 6, &mut ids, None);
        assert!(same(&edited, &back, 1));
    }

    /// Found in audit: services over one pool of reals each had their own
    /// Maglev table, so a reload of the pool's weights, or one shared
    /// real's health change, rebuilt every one of them on the control
    /// thread. Services of the same kind over the same reals and weights
    /// share one scheduler, built once, and apart once they differ.
    #[test]
    fn services_over_the_same_reals_share_one_scheduler() {
        let text = |weight: u32, kinds: [&str; 3]| {
            let mut t = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                         device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n"
                .to_string();
            for (i, kind) in kinds.iter().enumerate() {
                t += &format!(
                    "[[services]]\nname = \"s{i}\"\nvip = \"198.18.1.{}\"\nport = 80\n\
                     scheduler = \"{kind}\"\n[services.health_check]\nkind = \"tcp\"\n\
                     [[services.reals]]\naddress = \"198.18.0.11\"\n\
                     [[services.reals]]\naddress = \"198.18.0.12\"\nweight = {weight}\n",
                    100 + i,
                );
            }
            Config::parse(&t).unwrap()
        };
        let mut ids = Ids::default();
        let build = |c: &Config, g: u64, ids: &mut Ids, down: Option<&str>| {
            Snapshot::compile(c, &[MacAddr([2, 0, 0, 0, 0, 2])], g, ids, |_, a, _| {
                down != Some(&*a.to_string())
            })
            .unwrap()
        };
        let shared = |s: &Snapshot, i: usize, j: usize| {
            std::sync::Arc::ptr_eq(&s.services[i].scheduler, &s.services[j].scheduler)
        };
        let all_mh = ["mh", "mh", "mh"];
        let first = build(&text(1, all_mh), 1, &mut ids, None);
        assert!(shared(&first, 0, 1) && shared(&first, 1, 2));
        // One shared real down, then a reload of the pool's weights: one
        // new scheduler each time, shared again, and what a fresh build
        // of one service gives.
        let down = build(&text(1, all_mh), 2, &mut ids, Some("198.18.0.12"));
        assert!(!std::sync::Arc::ptr_eq(
            &first.services[0].scheduler,
            &down.services[0].scheduler
        ));
        assert!(shared(&down, 0, 1) && shared(&down, 1, 2));
        let reweighed = build(&text(3, all_mh), 3, &mut ids, None);
        assert!(shared(&reweighed, 0, 1) && shared(&reweighed, 1, 2));
        let fresh = build(&text(3, all_mh), 1, &mut Ids::default(), None);
        assert_eq!(
            *reweighed.services[2].scheduler,
            *fresh.services[0].scheduler
        );
        // Another kind over the same reals is another scheduler.
        let mixed = build(&text(3, ["mh", "wrr", "mh"]), 4, &mut ids, None);
        assert!(!shared(&mixed, 0, 1) && shared(&mixed, 0, 2));
        assert_eq!(
            mixed.services[1].scheduler.kind(),
            SchedulerKind::WeightedRoundRobin
        );
    }

    /// Found in audit: validation holds a port's configured MTU to 1320
    /// for a 6in6 real reached through it, but a device may keep a smaller
    /// one, and then IPv6 packets of 1280 bytes were neither tunnelled nor
    /// answered. A snapshot with the device's MTU refuses it, naming the
    /// real; a 4in6 real (an IPv4 service's) needs no such room.
    #[test]
    fn a_device_mtu_too_small_for_6in6_refuses_the_real() {
        let text = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                    device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
                    address6 = \"2001:2::2/64\"\n\
                    [[services]]\nname = \"v4\"\nvip = \"198.18.1.100\"\nport = 80\n\
                    forwarding = \"tun\"\n[[services.reals]]\naddress = \"2001:2::21\"\n\
                    [[services]]\nname = \"v6\"\nvip = \"2001:2:0:1::100\"\nport = 80\n\
                    forwarding = \"tun\"\n[[services.reals]]\naddress = \"2001:2::21\"\n";
        let config = Config::parse(text).unwrap();
        let with_mtu = |mtu: u16| {
            let mut snap = Snapshot::compile(
                &config,
                &[MacAddr([2, 0, 0, 0, 0, 2])],
                1,
                &mut Ids::default(),
                |_, _, _| true,
            )
            .unwrap();
            snap.set_port_mtus(&[mtu]);
            snap.check_tunnel6_mtus(&config)
        };
        assert!(with_mtu(1500).is_ok());
        assert!(with_mtu(1320).is_ok());
        let e = with_mtu(1300).unwrap_err();
        assert!(
            e.0.starts_with("services[1].reals[0].address: 2001:2::21 is reached by port wan"),
            "{e}"
        );
    }

    /// The route worked out per real when the snapshot is built is the
    /// one an address lookup and the static neighbors give, whichever way
    /// the real is reached and in either family; and an address that is
    /// not the id's real's (a flow of an id since given to another real)
    /// gets none. The same for the gateway's route (what an address off
    /// every connected network takes).
    #[test]
    fn each_real_is_routed_as_its_address_would_be() {
        let text = r#"
[workers]
lcores = [1]
[[ports]]
name = "lan"
device = "net_null0"
address = "198.18.0.2/24"
mtu = 1400
[[ports]]
name = "wan"
device = "net_null1"
address = "198.19.0.2/24"
gateway = "198.19.0.1"
address6 = "2001:2::2/64"
gateway6 = "2001:2::1"
[[neighbors]]
address = "198.18.0.11"
mac = "02:00:00:00:00:11"
[[neighbors]]
address = "198.19.0.1"
mac = "02:00:00:00:00:01"
[[neighbors]]
address = "2001:2::7"
mac = "02:00:00:00:00:07"
[[services]]
name = "web"
vip = "198.19.1.100"
port = 80
[[services.reals]]
address = "198.18.0.11"
[[services.reals]]
address = "198.18.0.12"
[[services.reals]]
address = "198.19.7.7"
[[services.reals]]
address = "2001:2::7"
forwarding = "tun"
"#;
        let config = Config::parse(text).unwrap();
        let macs = [MacAddr([2, 0, 0, 0, 0, 2]), MacAddr([2, 0, 0, 0, 0, 3])];
        let snap =
            Snapshot::compile(&config, &macs, 1, &mut Ids::default(), |_, _, _| true).unwrap();
        let mut seen = 0;
        for r in &snap.services[0].reals {
            let IpAddr::V4(addr) = r.address else {
                assert!(snap.real_route(r.id, Ipv4Addr::UNSPECIFIED).is_none());
                let IpAddr::V6(addr) = r.address else {
                    unreachable!()
                };
                let long = route::lookup6(&snap, addr).unwrap();
                let got = *snap.real_route6(r.id, addr).expect("a routed real");
                assert_eq!(
                    (usize::from(got.port), got.next_hop, got.connected),
                    (long.port, long.next_hop, long.connected)
                );
                assert_eq!(got.mac(), Some(MacAddr([2, 0, 0, 0, 0, 7])));
                assert!(snap
                    .real_route6(r.id, "2001:2::8".parse().unwrap())
                    .is_none());
                continue;
            };
            assert!(snap.real_route6(r.id, Ipv6Addr::UNSPECIFIED).is_none());
            let long = route::lookup(&snap, addr).unwrap();
            let got = *snap.real_route(r.id, addr).expect("a routed real");
            assert_eq!(
                (usize::from(got.port), got.next_hop, got.connected),
                (long.port, long.next_hop, long.connected),
                "{addr}"
            );
            assert_eq!(got.src_mac, snap.ports[long.port].mac);
            assert_eq!(got.mac(), snap.static_neighbor(long.next_hop), "{addr}");
            // A NAT real's request sums: its service's VIP and port into
            // its own address and port.
            assert_eq!(r.method, ForwardingMethod::Nat);
            assert_eq!(
                got.nat_sums(),
                NatSums::new((Ipv4Addr::new(198, 19, 1, 100), 80), (addr, r.port)),
                "{addr}"
            );
            assert_ne!(got.nat_sums(), NatSums::default());
            assert!(snap
                .real_route(r.id, Ipv4Addr::new(198, 18, 0, 99))
                .is_none());
            seen += 1;
        }
        assert_eq!(seen, 3);
        let by = |a: &str| {
            let a: Ipv4Addr = a.parse().unwrap();
            let r = snap.services[0]
                .reals
                .iter()
                .find(|r| r.address == IpAddr::V4(a));
            *snap.real_route(r.unwrap().id, a).unwrap()
        };
        // Static neighbor, learned neighbor, and through the gateway.
        assert_eq!(
            by("198.18.0.11").mac(),
            Some(MacAddr([2, 0, 0, 0, 0, 0x11]))
        );
        assert_eq!(by("198.18.0.12").mac(), None);
        let far = by("198.19.7.7");
        assert_eq!((far.port, far.connected), (1, false));
        assert_eq!(far.mac(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(snap
            .real_route(9_999, Ipv4Addr::new(198, 18, 0, 11))
            .is_none());
        // Off every connected network: the gateway's route, with its
        // static neighbor.
        let off = route::lookup(&snap, Ipv4Addr::new(198, 19, 200, 1)).unwrap();
        let d = *snap.default_route().unwrap();
        assert_eq!(
            (usize::from(d.port), d.next_hop, d.connected),
            (off.port, off.next_hop, false)
        );
        assert_eq!(d.mac(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        let off6 = route::lookup6(&snap, "2001:2:0:9::1".parse().unwrap()).unwrap();
        let d6 = *snap.default_route6().unwrap();
        assert_eq!(
            (usize::from(d6.port), d6.next_hop, d6.connected),
            (off6.port, off6.next_hop, false)
        );
        assert_eq!(d6.mac(), None, "no static entry: learned per packet");
        let mut none = config.clone();
        for p in &mut none.ports {
            p.gateway = None;
            p.gateway6 = None;
        }
        let none = Snapshot::compile(&none, &macs, 1, &mut Ids::default(), |_, _, _| true);
        let none = none.unwrap();
        assert!(none.default_route().is_none() && none.default_route6().is_none());
    }

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
    fn ipv6_keys_find_what_they_were_built_with_and_nothing_else() {
        // A /64 of consecutive VIPs, and the same addresses under other
        // ports and protocols: neighbours in the key space.
        let base = u128::from("2001:2:0:1::".parse::<Ipv6Addr>().unwrap());
        let addr = |i: u32| Ipv6Addr::from(base + u128::from(i));
        let vips = Keys6::build((0..500).map(|i| (addr(i), i)));
        let services = Keys6::build((0..500).map(|i| ((6, addr(i / 5), 80 + (i % 5) as u16), i)));
        for i in 0..500u32 {
            assert_eq!(vips.get(&addr(i)), Some(i));
            assert_eq!(vips.get(&addr(i + 500)), None);
            assert_eq!(
                services.get(&(6, addr(i / 5), 80 + (i % 5) as u16)),
                Some(i)
            );
            assert_eq!(services.get(&(17, addr(i / 5), 80 + (i % 5) as u16)), None);
            assert_eq!(services.get(&(6, addr(i / 5), 85)), None);
        }
        let dup = Keys6::build([(addr(1), 1), (addr(1), 2)]);
        assert_eq!(
            dup.get(&addr(1)),
            Some(1),
            "a repeated key keeps its first value"
        );
        assert_eq!(
            Keys6::<Ipv6Addr>::default().get(&Ipv6Addr::UNSPECIFIED),
            None
        );
        assert!(!Keys6::build([(addr(0), 0)]).contains(&Ipv6Addr::UNSPECIFIED));
    }

    /// The IPv6 maps hash a 64-bit fold of the key (one mix, not one per
    /// half): the shapes configs have (consecutive VIPs, a VIP's many
    /// ports, one VIP per /64, a varying sixth group, random interface
    /// identifiers, halves alike), under an even and an odd prefix and at
    /// sizes from a handful to 65,536, must spread as linear probing at
    /// half full does, or lookups would walk clusters (found in review: a
    /// multiply alone left runs of 90 to 200 slots for a VIP per /64 under
    /// 2001:db8::/32).
    #[test]
    fn ipv6_keys_spread_in_the_shapes_configs_have() {
        type Key = (u8, Ipv6Addr, u16);
        /// A name, and key `i` of the shape under a prefix.
        type Shape = (&'static str, fn(u128, u128) -> Key);
        let shapes: [Shape; 7] = [
            ("consecutive VIPs", |b, i| (6, Ipv6Addr::from(b + i), 80)),
            ("one VIP's ports", |b, i| {
                (6, Ipv6Addr::from(b + 1), i as u16)
            }),
            ("a VIP per /64", |b, i| {
                (17, Ipv6Addr::from(b + (i << 64) + 1), 53)
            }),
            ("the sixth group", |b, i| {
                (6, Ipv6Addr::from(b + (i << 32) + 1), 80)
            }),
            ("random identifiers", |b, i| {
                let iid = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (6, Ipv6Addr::from(b | u128::from(iid)), 443)
            }),
            ("halves alike", |b, i| {
                let h = (b >> 64) + i;
                (6, Ipv6Addr::from((h << 64) | h), 80)
            }),
            ("ports of a /64", |b, i| {
                (6, Ipv6Addr::from(b + (i >> 4) + 1), 8000 + (i & 15) as u16)
            }),
        ];
        for prefix in ["2001:db8::", "2001:2:0:1::"] {
            let base = u128::from(prefix.parse::<Ipv6Addr>().unwrap());
            for (shape, key) in shapes {
                for n in [8u128, 32, 64, 512, 4096, 8192, 16_384, 65_536] {
                    let keys: Vec<Key> = (0..n).map(|i| key(base, i)).collect();
                    let map = Keys6::build(keys.iter().enumerate().map(|(i, k)| (*k, i as u32)));
                    let probes: Vec<usize> = keys.iter().map(|k| map.probes(k)).collect();
                    let mean = probes.iter().sum::<usize>() as f64 / probes.len() as f64;
                    // The longest stretch of filled slots: what a miss can
                    // cost at most.
                    let (mut run, mut longest) = (0, 0);
                    for (_, v) in map.slots.iter().chain(map.slots.iter()) {
                        run = if *v == 0 { 0 } else { run + 1 };
                        longest = longest.max(run);
                    }
                    let what = format!("{shape} under {prefix}, {n} keys");
                    // Linear probing at half full: 1.5 slots a hit on
                    // average, runs of a few dozen at 65,536 keys.
                    let allowed = if n >= 512 { 1.75 } else { 2.5 };
                    assert!(mean < allowed, "{what}: mean {mean:.2}");
                    assert!(longest < 64, "{what}: a run of {longest}");
                    for (i, k) in keys.iter().enumerate().step_by(97) {
                        assert_eq!(map.get(k), Some(i as u32), "{what}");
                    }
                }
            }
        }
    }

    /// The kernel path's budgets ask what a source is to the port it
    /// came in on, and whether it is a real's.
    #[test]
    fn a_port_tells_its_own_its_peers_its_link_reals_and_next_hops() {
        use crate::exception::Source;
        let text = CONFIG.replace(
            "address = \"198.18.0.2/24\"\n",
            "address = \"198.18.0.2/24\"\ngateway = \"198.18.0.1\"\naddress6 = \"2001:2::2/64\"\nkernel_interface = \"lbk0\"\nrouting_peers = [\"198.19.9.9\", \"2001:2:0:9::9\"]\n",
        );
        let snap = compile(&Config::parse(&text).unwrap()).unwrap();
        let p = &snap.ports[0];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(p.source_of(ip("198.18.0.2")), Source::Own);
        assert_eq!(p.source_of(ip("2001:2::2")), Source::Own);
        assert_eq!(p.source_of(ip("198.19.9.9")), Source::Peer);
        assert_eq!(p.source_of(ip("2001:2:0:9::9")), Source::Peer);
        assert_eq!(p.source_of(ip("198.18.0.1")), Source::OnLink);
        assert_eq!(p.source_of(ip("2001:2::1")), Source::OnLink);
        assert_eq!(p.source_of(ip("fe80::1")), Source::OnLink);
        assert_eq!(p.source_of(ip("198.19.9.10")), Source::Far);
        assert_eq!(p.source_of(ip("2001:2:0:9::10")), Source::Far);
        assert!(snap.is_real(ip("198.18.0.11")));
        assert!(!snap.is_real(ip("198.18.0.12")));
        assert!(!snap.is_real(ip("198.18.1.100")), "a VIP is not a real");
        // Next hops the config names, and one a client's address makes.
        assert!(snap.is_configured_next_hop(ip("198.18.0.11")), "a real");
        assert!(snap.is_configured_next_hop(ip("198.18.0.1")), "the gateway");
        assert!(!snap.is_configured_next_hop(ip("198.18.0.77")), "a client");
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

    #[test]
    fn ipv6_services_reals_and_neighbors_compile_into_their_own_lookups() {
        let dual = CONFIG
            .replace(
                "address = \"198.18.0.2/24\"",
                "address = \"198.18.0.2/24\"\naddress6 = \"2001:2::2/64\"\ngateway6 = \"fe80::1\"",
            )
            .replace("[[services]]\nname = \"dns\"", "[[neighbors]]\naddress = \"fe80::1\"\nmac = \"02:00:00:00:00:01\"\n[[services]]\nname = \"web6\"\nvip = \"2001:2:0:1::100\"\nport = 80\n[[services.reals]]\naddress = \"2001:2::11\"\nport = 8080\n[[services]]\nname = \"web4in6\"\nvip = \"198.18.1.104\"\nport = 80\nforwarding = \"tun\"\n[[services.reals]]\naddress = \"2001:2::21\"\n[[services]]\nname = \"dns\"");
        let config = Config::parse(&dual).unwrap();
        let snap = compile(&config).unwrap();
        assert!(snap.has_ipv6());
        let vip6: Ipv6Addr = "2001:2:0:1::100".parse().unwrap();
        let real6: Ipv6Addr = "2001:2::11".parse().unwrap();
        assert_eq!(snap.vips6, vec![vip6]);
        assert!(snap.is_vip6(vip6) && snap.is_local6(0, vip6));
        assert!(snap.is_local6(0, "2001:2::2".parse().unwrap()));
        assert!(!snap.is_local6(0, "2001:2::3".parse().unwrap()));
        let web6 = snap.service_for6(6, vip6, 80).unwrap();
        assert_eq!(snap.services[web6].name, "web6");
        // auto (the default) applies to NAT66 as to IPv4 NAT.
        assert_eq!(snap.services[web6].syn_proxy, SynProxyMode::Auto);
        assert_eq!((snap.syn_proxy_mss, snap.syn_proxy_mss6), (1460, 1440));
        assert_eq!(snap.service_for6(17, vip6, 80), None);
        assert_eq!(snap.service_for6(6, vip6, 81), None);
        assert!(snap.is_nat_endpoint6(6, real6, 8080) && snap.is_nat_real6(real6));
        assert!(!snap.is_nat_endpoint6(6, real6, 80));
        assert_eq!(
            snap.static_neighbor6("fe80::1".parse().unwrap()),
            Some(MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(snap.static_neighbor6(real6), None);
        assert!(snap.ports[0].connected6(real6));
        assert!(!snap.ports[0].connected6("2001:3::11".parse().unwrap()));
        // 4in6: the IPv4 service's real is found by id.
        let s = &snap.services[snap
            .service_for(6, Ipv4Addr::new(198, 18, 1, 104), 80)
            .unwrap()];
        assert_eq!(
            snap.tunnel6_real(s.reals[0].id),
            Some("2001:2::21".parse().unwrap())
        );
        // IPv4 lookups are unchanged beside them.
        assert!(snap
            .service_for(17, Ipv4Addr::new(198, 18, 1, 53), 53)
            .is_some());
        assert!(!snap.is_vip(Ipv4Addr::new(198, 18, 1, 100)) || snap.vips.len() == 3);
    }

    #[test]
    fn backend_keys_of_ipv4_reals_are_what_they_were() {
        // Maglev tables are built from these: an upgrade must not move them.
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(
            backend_key(a, 8080),
            mix64((u64::from(u32::from(Ipv4Addr::new(198, 18, 0, 11))) << 16) | 8080)
        );
        let b = IpAddr::V6("2001:2::11".parse().unwrap());
        let c = IpAddr::V6("2001:3::11".parse().unwrap());
        assert_ne!(backend_key(b, 80), backend_key(c, 80));
        assert_ne!(backend_key(b, 80), backend_key(b, 81));
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

    /// Found in audit (churn): the schedulers a compile drops are kept
    /// spare, so that a state of a few publishes ago comes back without
    /// building, but no more of them than the config uses (or 16): whole
    /// generations go, oldest first, and what comes back after that is
    /// built again, the same value.
    #[test]
    fn dropped_schedulers_are_kept_spare_within_a_config_s_worth() {
        const SERVICES: usize = 20;
        let mut t = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                     device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n"
            .to_string();
        for i in 0..SERVICES {
            t += &format!(
                "[[services]]\nname = \"s{i}\"\nvip = \"198.18.1.100\"\nport = {}\n\
                 scheduler = \"mh\"\n[services.health_check]\nkind = \"tcp\"\n",
                1000 + i
            );
            // Reals .10 to .13 in every service, and one of its own.
            for j in 0..5 {
                let port = if j == 4 { 1000 + i } else { 80 };
                t += &format!(
                    "[[services.reals]]\naddress = \"198.18.0.{}\"\nport = {port}\n",
                    10 + j
                );
            }
        }
        let config = Config::parse(&t).unwrap();
        let macs = [MacAddr([2, 0, 0, 0, 0, 2])];
        let mut ids = Ids::default();
        let mut g = 0;
        let mut build = |down: Option<u8>, ids: &mut Ids| {
            g += 1;
            Snapshot::compile(&config, &macs, g, ids, |_, a, _| {
                down.is_none_or(|d| a != IpAddr::V4(Ipv4Addr::new(198, 18, 0, d)))
            })
            .unwrap()
        };
        let same = |a: &Snapshot, b: &Snapshot| {
            (0..SERVICES)
                .filter(|&i| {
                    std::sync::Arc::ptr_eq(&a.services[i].scheduler, &b.services[i].scheduler)
                })
                .count()
        };
        let all_up = build(None, &mut ids);
        // .10 flaps: both ways free.
        let down10 = build(Some(10), &mut ids);
        assert_eq!(same(&all_up, &build(None, &mut ids)), SERVICES);
        assert_eq!(same(&down10, &build(Some(10), &mut ids)), SERVICES);
        assert!(ids.spare.len() <= SERVICES);
        // Each of .11 and .12 down in turn: each drop a config's worth,
        // and only the newest stays spare beside what is in use.
        let down11 = build(Some(11), &mut ids);
        build(Some(12), &mut ids);
        assert_eq!(ids.spare.len(), SERVICES);
        assert_eq!(same(&down11, &build(Some(11), &mut ids)), SERVICES);
        let again10 = build(Some(10), &mut ids);
        assert_eq!(same(&down10, &again10), 0, "three states ago: built again");
        for i in 0..SERVICES {
            assert_eq!(
                *down10.services[i].scheduler,
                *again10.services[i].scheduler
            );
        }
        assert!(ids.spare.len() <= SERVICES && ids.schedulers.len() == SERVICES);
        // A smaller config keeps at least 16 spare, whole generations.
        let mut one = config.clone();
        one.services.truncate(1);
        let mut g = 100;
        for d in 10..14 {
            g += 1;
            Snapshot::compile(&one, &macs, g, &mut ids, |_, a, _| {
                a != IpAddr::V4(Ipv4Addr::new(198, 18, 0, d))
            })
            .unwrap();
            assert!(
                ids.spare.len() <= SPARE_SCHEDULERS_MIN,
                "{}",
                ids.spare.len()
            );
        }
    }

    /// Found in audit (churn): a service's id lasts while it is configured.
    /// One removed and added again gets a new id, never one another service
    /// had lately (a removed service's templates carry its id); its reals,
    /// keyed by the service's protocol, VIP and port, keep theirs, and so
    /// their counters.
    #[test]
    fn a_service_id_lasts_while_configured_and_is_not_given_again_soon() {
        let text = |ports: &[u16]| {
            let mut t = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                         device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n"
                .to_string();
            for p in ports {
                t += &format!(
                    "[[services]]\nname = \"s{p}\"\nvip = \"198.18.1.100\"\nport = {p}\n\
                     [[services.reals]]\naddress = \"198.18.0.11\"\n"
                );
            }
            Config::parse(&t).unwrap()
        };
        let macs = [MacAddr([2, 0, 0, 0, 0, 2])];
        let mut ids = Ids::default();
        let compile = |ports: &[u16], g: u64, ids: &mut Ids| {
            Snapshot::compile(&text(ports), &macs, g, ids, |_, _, _| true).unwrap()
        };
        let first = compile(&[80, 81], 1, &mut ids);
        let (sid80, real80) = (first.services[0].id, first.services[0].reals[0].id);
        let gone = compile(&[81], 2, &mut ids);
        assert_eq!(
            gone.services[0].id, first.services[1].id,
            "kept while configured"
        );
        assert_eq!(ids.services.len(), 1);
        let back = compile(&[80, 81], 3, &mut ids);
        assert_ne!(back.services[0].id, sid80, "a new id");
        assert_ne!(back.services[0].id, back.services[1].id);
        assert!(back.service_by_id(sid80).is_none());
        assert_eq!(
            back.services[0].reals[0].id, real80,
            "the real keeps its id"
        );
        assert_eq!(back.services[0].reals[0].counted_before, [0; 3]);
        // A compile that fails halfway leaves no id behind.
        let mut bad = text(&[82, 80, 81]);
        bad.services[1].persistence = MAX_FLOW_TIMEOUT * 2;
        assert!(Snapshot::compile(&bad, &macs, 4, &mut ids, |_, _, _| true).is_err());
        assert_eq!(ids.services.len(), 3, "82 had been given one");
        compile(&[80, 81], 4, &mut ids);
        assert_eq!(ids.services.len(), 2);
        // Past the last id they start over, skipping those in use.
        ids.next_service = u32::MAX;
        let (a, b) = (back.services[0].id, back.services[1].id);
        let wrapped = compile(&[80, 81, 82, 83, 84], 5, &mut ids);
        let new: Vec<u32> = wrapped.services[2..].iter().map(|s| s.id).collect();
        assert_eq!(new[0], u32::MAX);
        assert!(
            new[1..].iter().all(|&id| id != a && id != b && id < 10),
            "{new:?} {a} {b}"
        );
        let mut all: Vec<u32> = wrapped.services.iter().map(|s| s.id).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 5);
    }

    /// Found in audit (churn): `Ids` kept an id for every service key
    /// (protocol, VIP, port) it ever compiled, and never forgot one, though a
    /// service's id is looked up only in the snapshot that has it. A box
    /// whose services come and go through `ctl` (automation that makes a
    /// service per customer or per port) grows the map by one entry per
    /// new key for as long as it runs; and `Dataplane::compile` clones the
    /// whole `Ids` for every publish (every health change, reload and
    /// `ctl` edit), so the control thread's cost of a publish grows with
    /// the history, not with the config. A service has its id only while
    /// configured now.
    #[test]
    fn service_churn_leaves_the_ids_no_bigger_than_the_config() {
        let text = |port: u32| {
            format!(
                "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                 device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
                 [[services]]\nname = \"s\"\nvip = \"198.18.1.{}\"\nport = {}\n\
                 [[services.reals]]\naddress = \"198.18.0.11\"\n",
                100 + port / 60_000,
                1 + port % 60_000
            )
        };
        let mut ids = Ids::default();
        let macs = [MacAddr([2, 0, 0, 0, 0, 2])];
        // 2,000 changes, each replacing the one service by another: one
        // service configured at any time.
        for g in 0..2_000u32 {
            let c = Config::parse(&text(g)).unwrap();
            Snapshot::compile(&c, &macs, u64::from(g) + 1, &mut ids, |_, _, _| true).unwrap();
        }
        let after_churn = ids.services.len();
        // Where a year of such churn goes (a change a minute: ~525,000
        // keys): what every publish then clones.
        for k in 0..525_000u32 {
            ids.service((6, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k)), 80));
        }
        let t = std::time::Instant::now();
        let mut cloned = 0;
        for _ in 0..10 {
            cloned += ids.clone().services.len();
        }
        let per_clone = t.elapsed() / 10;
        let small = Ids::default();
        let t = std::time::Instant::now();
        for _ in 0..10 {
            cloned += small.clone().services.len();
        }
        let per_clone_fresh = t.elapsed() / 10;
        assert!(cloned > 0);
        assert!(
            after_churn <= 2,
            "one service configured, {after_churn} service ids kept after 2,000 changes; \
             with a year of a change a minute ({} keys, about {} MiB of map) the clone every \
             publish makes takes {per_clone:?} (fresh Ids: {per_clone_fresh:?})",
            ids.services.len(),
            ids.services.capacity() * (std::mem::size_of::<((u8, IpAddr, u16), u32)>() + 1)
                / (1 << 20)
        );
    }

    /// Found in audit (churn): the scheduler cache kept only what the last
    /// compile used, so a real that flapped rebuilt the Maglev table
    /// (65,537 entries) of every service it is in at every flip, both
    /// ways: going back to the state of two publishes ago built again what
    /// was just thrown away. A real (address and port) in many services whose pools
    /// differ (a shared host among per-customer pools) multiplies it: one
    /// flapping real costs that many table builds on the control thread
    /// per flip, and with several reals flapping the control thread (which
    /// also reads health reports, serves `ctl` and feeds the watchdog)
    /// does little else. The tables a compile drops are kept spare now, and
    /// a flap back builds nothing.
    #[test]
    fn a_real_flapping_back_reuses_the_maglev_tables_it_had() {
        const SERVICES: usize = 128;
        let mut t = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                     device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n"
            .to_string();
        for i in 0..SERVICES {
            t += &format!(
                "[[services]]\nname = \"s{i}\"\nvip = \"198.18.1.100\"\nport = {}\n\
                 scheduler = \"mh\"\n[services.health_check]\nkind = \"tcp\"\n\
                 [[services.reals]]\naddress = \"198.18.0.10\"\nport = 80\n",
                1000 + i
            );
            // Its own pool besides the shared real.
            for j in 0..15 {
                t += &format!(
                    "[[services.reals]]\naddress = \"198.18.0.{}\"\nport = {}\n",
                    11 + j,
                    1000 + i
                );
            }
        }
        let config = Config::parse(&t).unwrap();
        let macs = [MacAddr([2, 0, 0, 0, 0, 2])];
        let mut ids = Ids::default();
        let mut g = 0;
        let mut build = |up: bool, ids: &mut Ids| {
            g += 1;
            let start = std::time::Instant::now();
            let s = Snapshot::compile(&config, &macs, g, ids, |_, a, _| {
                up || a != IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10))
            })
            .unwrap();
            (s, start.elapsed())
        };
        let (up, _) = build(true, &mut ids);
        let (_down, flip_down) = build(false, &mut ids);
        let (up_again, flip_up) = build(true, &mut ids);
        let (_, unchanged) = build(true, &mut ids);
        let rebuilt = (0..SERVICES)
            .filter(|&i| {
                !std::sync::Arc::ptr_eq(&up.services[i].scheduler, &up_again.services[i].scheduler)
            })
            .count();
        assert_eq!(
            rebuilt, 0,
            "the shared real down and up again: {rebuilt} of {SERVICES} Maglev tables built \
             again (publish: down {flip_down:?}, up {flip_up:?}, nothing changed {unchanged:?})"
        );
    }
}
