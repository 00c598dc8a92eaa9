//! The JSON served at `/status` and read back by `lb-appliance status`:
//! services, reals, health, weights, flows and traffic.
#![deny(unsafe_code)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub dpdk: String,
    pub generation: u64,
    pub services: Vec<ServiceStatus>,
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub protocol: String,
    pub vip: String,
    pub port: u16,
    pub scheduler: String,
    pub persistence_ms: u32,
    pub reals: Vec<RealStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealStatus {
    pub address: String,
    pub port: u16,
    pub forwarding: String,
    pub weight: u32,
    pub up: bool,
    /// The last health-check error, if the last check failed.
    pub last_error: Option<String>,
    pub active_flows: u64,
    pub flows_created: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub lcore: u32,
    pub active_flows: u64,
    pub flow_capacity: u64,
    pub busy_ratio: f64,
}

/// `address:port`, with an IPv6 address in brackets (`[2001:2::11]:80`).
pub fn endpoint(address: &str, port: u16) -> String {
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(a) => format!("[{a}]:{port}"),
        Err(_) => format!("{address}:{port}"),
    }
}

impl Status {
    /// A table in the manner of `ipvsadm -L -n --stats`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "lb-appliance {} ({}), config generation {}\n",
            self.version, self.dpdk, self.generation
        );
        out.push_str(&format!(
            "{:<5}{:<28}{:<10}{:>7}{:>8}{:>10}{:>12}{:>14}\n",
            "Prot", "LocalAddress:Port", "Scheduler", "Weight", "Active", "Conns", "Pkts", "Bytes"
        ));
        out.push_str(&format!(
            "  {:<31}{:<10}{:>7}{:>8}{:>10}{:>12}{:>14}\n",
            "-> RemoteAddress:Port", "Forward", "", "", "", "", ""
        ));
        for s in &self.services {
            let active: u64 = s.reals.iter().map(|r| r.active_flows).sum();
            let conns: u64 = s.reals.iter().map(|r| r.flows_created).sum();
            let pkts: u64 = s.reals.iter().map(|r| r.packets).sum();
            let bytes: u64 = s.reals.iter().map(|r| r.bytes).sum();
            let sched = if s.persistence_ms > 0 {
                format!("{} persistent {}s", s.scheduler, s.persistence_ms / 1000)
            } else {
                s.scheduler.clone()
            };
            out.push_str(&format!(
                "{:<5}{:<28}{:<10}{:>7}{:>8}{:>10}{:>12}{:>14}\n",
                s.protocol.to_uppercase(),
                endpoint(&s.vip, s.port),
                sched,
                "",
                active,
                conns,
                pkts,
                bytes
            ));
            for r in &s.reals {
                let state = if r.up { "" } else { " (down)" };
                out.push_str(&format!(
                    "  -> {:<28}{:<10}{:>7}{:>8}{:>10}{:>12}{:>14}{}\n",
                    endpoint(&r.address, r.port),
                    match r.forwarding.as_str() {
                        "nat" => "Masq",
                        "tun" => "Tunnel",
                        _ => "Route",
                    },
                    r.weight,
                    r.active_flows,
                    r.flows_created,
                    r.packets,
                    r.bytes,
                    state
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_bracket_ipv6_addresses() {
        assert_eq!(endpoint("198.18.1.100", 80), "198.18.1.100:80");
        assert_eq!(endpoint("2001:2::11", 80), "[2001:2::11]:80");
        let status = Status {
            version: "0".into(),
            dpdk: "x".into(),
            generation: 1,
            services: vec![ServiceStatus {
                name: "web6".into(),
                protocol: "tcp".into(),
                vip: "2001:2:0:1::100".into(),
                port: 80,
                scheduler: "wrr".into(),
                persistence_ms: 0,
                reals: vec![RealStatus {
                    address: "2001:2::11".into(),
                    port: 8080,
                    forwarding: "nat".into(),
                    weight: 1,
                    up: true,
                    last_error: None,
                    active_flows: 0,
                    flows_created: 0,
                    packets: 0,
                    bytes: 0,
                }],
            }],
            workers: vec![],
        };
        let t = status.table();
        assert!(t.contains("TCP  [2001:2:0:1::100]:80"), "{t}");
        assert!(t.contains("  -> [2001:2::11]:8080"), "{t}");
    }
}

/// Per-second rates of a real between two statuses (`ctl list --rate`,
/// as `ipvsadm -L --rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealRate {
    pub service: String,
    pub real: String,
    pub connections_per_second: f64,
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
}

/// The rates of every real present in both statuses, over `elapsed`.
pub fn rates(a: &Status, b: &Status, elapsed: std::time::Duration) -> Vec<RealRate> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
    let mut out = Vec::new();
    for s in &b.services {
        let before = a.services.iter().find(|x| x.name == s.name);
        for r in &s.reals {
            let Some(r0) = before.and_then(|x| {
                x.reals
                    .iter()
                    .find(|y| y.address == r.address && y.port == r.port)
            }) else {
                continue;
            };
            out.push(RealRate {
                service: s.name.clone(),
                real: endpoint(&r.address, r.port),
                connections_per_second: per(r0.flows_created, r.flows_created),
                packets_per_second: per(r0.packets, r.packets),
                bytes_per_second: per(r0.bytes, r.bytes),
            });
        }
    }
    out
}

/// The rates as a table.
pub fn rate_table(rates: &[RealRate]) -> String {
    let mut out = format!(
        "{:<16}{:<28}{:>12}{:>12}{:>14}\n",
        "Service", "RemoteAddress:Port", "CPS", "PPS", "BPS"
    );
    for r in rates {
        out.push_str(&format!(
            "{:<16}{:<28}{:>12.0}{:>12.0}{:>14.0}\n",
            r.service, r.real, r.connections_per_second, r.packets_per_second, r.bytes_per_second
        ));
    }
    out
}
