//! Where a packet leaves: the connected network of a port, else the first
//! port with a `gateway` (IPv6: `address6` and `gateway6`). A handful of ports, so a linear scan is the fast
//! path.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::snapshot::{PortView, Snapshot};

/// Whether no host can send from `a` (RFC 1812 5.3.7): 0/8, 127/8, a
/// group (224/4) or 240/4, the limited broadcast included. Such a source
/// makes no flow and gets no answer. One comparison for 0 and 224..=255
/// (0 wraps to 255): it is asked of every IPv4 packet.
#[inline]
pub fn no_host_has(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first.wrapping_sub(1) >= 223 || first == 127
}

/// [`no_host_has`] for IPv6: `::`, `::1`, a group, or an IPv4-mapped
/// address (RFC 4291 2.5.2, 2.5.3, 2.7, 2.5.5.2).
#[inline]
pub fn no_host_has6(a: Ipv6Addr) -> bool {
    a.is_multicast() || a.is_unspecified() || a.is_loopback() || a.to_ipv4_mapped().is_some()
}

/// The first port whose connected IPv4 network holds `dst`: the route
/// to `dst` when there is one ([`lookup`]), else the gateway's
/// ([`Snapshot::default_route`]).
#[inline]
pub fn connected_in(ports: &[PortView], dst: Ipv4Addr) -> Option<usize> {
    ports.iter().position(|p| p.connected(dst))
}

/// [`connected_in`] for IPv6.
#[inline]
pub fn connected6_in(ports: &[PortView], dst: Ipv6Addr) -> Option<usize> {
    ports.iter().position(|p| p.connected6(dst))
}

/// The port to send by and the neighbor to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub port: usize,
    pub next_hop: Ipv4Addr,
    /// Whether `dst` itself is on the port's segment.
    pub connected: bool,
}

#[inline]
pub fn lookup(snap: &Snapshot, dst: Ipv4Addr) -> Option<Route> {
    lookup_in(&snap.ports, dst)
}

/// [`lookup`] over a snapshot's ports, before the snapshot is built.
#[inline]
pub fn lookup_in(ports: &[PortView], dst: Ipv4Addr) -> Option<Route> {
    if let Some(i) = connected_in(ports, dst) {
        return Some(Route {
            port: i,
            next_hop: dst,
            connected: true,
        });
    }
    ports.iter().enumerate().find_map(|(i, p)| {
        p.gateway.map(|gw| Route {
            port: i,
            next_hop: gw,
            connected: false,
        })
    })
}

/// Where an IPv6 packet to `dst` leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    pub port: usize,
    pub next_hop: Ipv6Addr,
    pub connected: bool,
}

/// [`lookup`] for IPv6: a port's `address6` network, else the port with a
/// `gateway6` (which may be link-local on that port).
#[inline]
pub fn lookup6(snap: &Snapshot, dst: Ipv6Addr) -> Option<Route6> {
    lookup6_in(&snap.ports, dst)
}

/// [`lookup6`] over a snapshot's ports, before the snapshot is built.
#[inline]
pub fn lookup6_in(ports: &[PortView], dst: Ipv6Addr) -> Option<Route6> {
    if let Some(i) = connected6_in(ports, dst) {
        return Some(Route6 {
            port: i,
            next_hop: dst,
            connected: true,
        });
    }
    ports.iter().enumerate().find_map(|(i, p)| {
        p.gateway6.map(|gw| Route6 {
            port: i,
            next_hop: gw,
            connected: false,
        })
    })
}
