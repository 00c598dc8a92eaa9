//! The compiled, immutable configuration a worker runs with. The control
//! thread builds a new one for every change and hands it to each worker,
//! which picks it up between bursts: the fast path never locks or waits.
#![deny(unsafe_code)]

use std::net::Ipv4Addr;

use lb_config::{Config, Ipv4Cidr, MacAddr};

/// One data port as the fast path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub name: String,
    pub mac: MacAddr,
    pub address: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u16,
}

/// Everything a worker needs to handle a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Increases by one with every published snapshot.
    pub generation: u64,
    /// Indexed like `[[ports]]` in the config.
    pub ports: Vec<PortView>,
    /// Every VIP, sorted and without duplicates.
    pub vips: Vec<Ipv4Addr>,
}

impl Snapshot {
    /// Compiles `config` with the MAC address each port reported at start.
    pub fn compile(config: &Config, port_macs: &[MacAddr], generation: u64) -> Snapshot {
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
            })
            .collect();
        let mut vips: Vec<Ipv4Addr> = config.services.iter().map(|s| s.vip).collect();
        vips.sort_unstable();
        vips.dedup();
        Snapshot {
            generation,
            ports,
            vips,
        }
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
        self.vips.binary_search(&addr).is_ok()
    }
}
