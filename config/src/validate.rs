//! Validation: turns the raw schema into the typed [`Config`], checking every
//! value and every cross-reference and recording each problem (with its key
//! path) instead of stopping at the first.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::lcores::eal_cores;
use crate::schema::*;
use crate::*;

const DEFAULT_MBUFS: u32 = 16383;
const DEFAULT_BURST: u16 = 32;
const DEFAULT_MTU: u16 = 1500;
const DEFAULT_CAPACITY: u32 = 1 << 20;
/// 16 Mi entries per worker (about 1.6 GB of table each): more would
/// rather fail to allocate at start than serve.
const MAX_CAPACITY: i64 = 1 << 24;
const DEFAULT_LISTEN: &str = "127.0.0.1:9101";

/// Collects errors; each check returns `None` when it recorded one.
struct Checker<'a> {
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        if value.is_none() {
            self.err(path, "missing required key");
        }
        value
    }

    fn int<T: TryFrom<i64>>(&mut self, path: &str, value: i64, lo: i64, hi: i64) -> Option<T> {
        if value < lo || value > hi {
            self.err(path, format!("{value} is out of range ({lo}..={hi})"));
            return None;
        }
        match T::try_from(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.err(path, format!("{value} is out of range"));
                None
            }
        }
    }

    fn opt_int<T: TryFrom<i64>>(
        &mut self,
        path: &str,
        value: Option<i64>,
        default: T,
        lo: i64,
        hi: i64,
    ) -> Option<T> {
        match value {
            Some(v) => self.int(path, v, lo, hi),
            None => Some(default),
        }
    }

    /// A unicast host address (not 0.0.0.0, broadcast or multicast).
    fn host(&mut self, path: &str, text: &str) -> Option<Ipv4Addr> {
        match text.parse::<Ipv4Addr>() {
            Ok(a) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() => {
                self.err(path, format!("{a} is not a unicast host address"));
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    path,
                    format!("invalid IPv4 address {text:?}: expected a.b.c.d"),
                );
                None
            }
        }
    }

    /// A duration no longer than `max`, and not zero when `positive`.
    fn duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: Duration,
        positive: bool,
        max: Duration,
    ) -> Option<Duration> {
        let d = match text {
            None => return Some(default),
            Some(t) => match parse_duration(t) {
                Ok(d) => d,
                Err(e) => {
                    self.err(path, e);
                    return None;
                }
            },
        };
        if positive && d.is_zero() {
            self.err(path, "must be greater than 0");
            return None;
        }
        if d > max {
            self.err(
                path,
                format!(
                    "{} is above the maximum of {}",
                    format_duration(d),
                    describe_max(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    fn word<T: FromStr<Err = String>>(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: T,
    ) -> Option<T> {
        match text {
            None => Some(default),
            Some(t) => match t.parse() {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(path, e);
                    None
                }
            },
        }
    }

    fn non_empty(&mut self, path: &str, text: Option<String>) -> Option<String> {
        let text = self.required(path, text)?;
        if text.trim().is_empty() {
            self.err(path, "must not be empty");
            return None;
        }
        Some(text)
    }
}

/// A maximum duration as `576h (24 days)`: the accepted form, and the days
/// when it is a whole number of them (the form has no day unit).
fn describe_max(max: Duration) -> String {
    const DAY: u64 = 24 * 60 * 60;
    let text = format_duration(max);
    match max.as_secs() {
        s if s >= DAY && s % DAY == 0 && max.subsec_nanos() == 0 => {
            format!("{text} ({} days)", s / DAY)
        }
        _ => text,
    }
}

/// Validates `raw`, appending every problem to `errors`. The returned config
/// is meaningful only when `errors` is empty afterwards.
pub(crate) fn validate(raw: RawConfig, errors: &mut Vec<ConfigError>) -> Config {
    let mut c = Checker { errors };
    let dpdk = dpdk(&mut c, raw.dpdk.unwrap_or_default());
    let workers = workers(&mut c, raw.workers, &dpdk.eal_args);
    let (ports, port_nets) = ports(&mut c, raw.ports);
    let neighbors = neighbors(&mut c, raw.neighbors.unwrap_or_default());
    let flows = flows(&mut c, raw.flows.unwrap_or_default());
    let metrics = metrics(&mut c, raw.metrics.unwrap_or_default());
    let services = services(&mut c, raw.services.unwrap_or_default(), &port_nets);
    let config = Config {
        dpdk,
        workers,
        ports,
        neighbors,
        flows,
        metrics,
        services,
    };
    across(&mut c, &config);
    config
}

/// Rules that look at several sections at once, on the typed values.
fn across(c: &mut Checker<'_>, config: &Config) {
    let mut devices: HashMap<&str, usize> = HashMap::new();
    let mut gateway: Option<usize> = None;
    for (i, p) in config.ports.iter().enumerate() {
        if p.device.is_empty() {
            continue;
        }
        match devices.get(p.device.as_str()) {
            Some(&first) => c.err(
                format!("ports[{i}].device"),
                format!("the same device as ports[{first}]"),
            ),
            None => {
                devices.insert(p.device.as_str(), i);
            }
        }
        if p.address.prefix_len > 0 {
            for (k, q) in config.ports.iter().enumerate().take(i) {
                let overlap = q.address.prefix_len > 0
                    && (p.address.contains(q.address.network())
                        || q.address.contains(p.address.network()));
                if overlap {
                    c.err(
                        format!("ports[{i}].address"),
                        format!(
                            "its network {} overlaps that of ports[{k}] ({}): a destination must have one port",
                            p.address.network_cidr(),
                            q.address.network_cidr()
                        ),
                    );
                }
            }
        }
        if p.gateway.is_some() {
            match gateway {
                Some(first) => c.err(
                    format!("ports[{i}].gateway"),
                    format!("ports[{first}] has the gateway already; only one port may have one"),
                ),
                None => gateway = Some(i),
            }
        }
    }
}

fn dpdk(c: &mut Checker<'_>, raw: RawDpdk) -> DpdkConfig {
    let mbufs = c.opt_int("dpdk.mbufs", raw.mbufs, DEFAULT_MBUFS, 1023, 1 << 24);
    let burst = c.opt_int("dpdk.burst", raw.burst, DEFAULT_BURST, 1, 128);
    DpdkConfig {
        eal_args: raw.eal_args.unwrap_or_default(),
        mbufs: mbufs.unwrap_or(DEFAULT_MBUFS),
        burst: burst.unwrap_or(DEFAULT_BURST),
    }
}

fn workers(c: &mut Checker<'_>, raw: Option<RawWorkers>, eal_args: &[String]) -> WorkersConfig {
    let mut lcores = Vec::new();
    let Some(raw) = raw else {
        c.err("workers", "missing required section [workers]");
        return WorkersConfig { lcores };
    };
    let Some(list) = c.required("workers.lcores", raw.lcores) else {
        return WorkersConfig { lcores };
    };
    if list.is_empty() {
        c.err("workers.lcores", "must list at least one lcore");
    }
    let eal = match eal_cores(eal_args) {
        Ok(eal) => eal,
        Err(errs) => {
            for (i, message) in errs {
                c.err(format!("dpdk.eal_args[{i}]"), message);
            }
            None
        }
    };
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (i, &value) in list.iter().enumerate() {
        let path = format!("workers.lcores[{i}]");
        let Some(id) = c.int::<u32>(&path, value, 0, i64::from(u32::MAX)) else {
            continue;
        };
        if let Some(&first) = seen.get(&id) {
            c.err(
                &path,
                format!("duplicate of workers.lcores[{first}] (lcore {id})"),
            );
            continue;
        }
        seen.insert(id, i);
        if let Some(eal) = &eal {
            if !eal.lcores.contains(&id) {
                c.err(
                    &path,
                    format!("lcore {id} is not in the EAL core list ({})", eal.text),
                );
            } else if id == eal.main {
                c.err(
                    &path,
                    format!("lcore {id} is the EAL main lcore, which runs the control thread"),
                );
            }
        }
        lcores.push(id);
    }
    WorkersConfig { lcores }
}

/// A port's name and connected network, for cross-checks.
type PortNet = (usize, String, Ipv4Cidr);

fn cidr(c: &mut Checker<'_>, path: &str, text: &str) -> Option<Ipv4Cidr> {
    let cidr: Ipv4Cidr = match text.parse() {
        Ok(v) => v,
        Err(e) => {
            c.err(path, e);
            return None;
        }
    };
    let a = cidr.address;
    if cidr.prefix_len == 0 {
        c.err(
            path,
            format!("invalid address {text:?}: prefix length must be 1..=32"),
        );
        None
    } else if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        c.err(path, format!("{a} is not a unicast host address"));
        None
    } else if cidr.prefix_len <= 30 && a == cidr.network() {
        c.err(
            path,
            format!(
                "{a} is the network address of {}; use a host address",
                cidr.network_cidr()
            ),
        );
        None
    } else if cidr.prefix_len <= 30 && a == cidr.broadcast() {
        c.err(
            path,
            format!(
                "{a} is the broadcast address of {}; use a host address",
                cidr.network_cidr()
            ),
        );
        None
    } else {
        Some(cidr)
    }
}

fn ports(c: &mut Checker<'_>, raw: Option<Vec<RawPort>>) -> (Vec<PortConfig>, Vec<PortNet>) {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        c.err("ports", "at least one [[ports]] entry is required");
    }
    let mut out = Vec::new();
    let mut nets = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, p) in raw.into_iter().enumerate() {
        let path = |key: &str| format!("ports[{i}].{key}");
        let name = c.non_empty(&path("name"), p.name);
        if let Some(name) = &name {
            if let Some(&first) = names.get(name) {
                c.err(
                    path("name"),
                    format!("duplicate port name {name:?} (also ports[{first}])"),
                );
            } else {
                names.insert(name.clone(), i);
            }
        }
        let device = c.non_empty(&path("device"), p.device);
        let address = c
            .required(&path("address"), p.address)
            .and_then(|a| cidr(c, &path("address"), &a));
        let gateway = p.gateway.and_then(|g| {
            let gw = c.host(&path("gateway"), &g)?;
            if let Some(net) = address {
                if !net.contains(gw) {
                    c.err(
                        path("gateway"),
                        format!(
                            "{gw} is not inside the port's connected network {}",
                            net.network_cidr()
                        ),
                    );
                } else if gw == net.address {
                    c.err(path("gateway"), format!("{gw} is the port's own address"));
                }
            }
            Some(gw)
        });
        let mtu = c.opt_int(&path("mtu"), p.mtu, DEFAULT_MTU, 68, 9600);
        let mac = p
            .mac
            .and_then(|m| unicast_mac(c, &path("mac"), &m, "a port"));
        if let (Some(name), Some(net)) = (&name, address) {
            nets.push((i, name.clone(), net));
        }
        out.push(PortConfig {
            name: name.unwrap_or_default(),
            device: device.unwrap_or_default(),
            address: address.unwrap_or(Ipv4Cidr {
                address: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
            }),
            gateway,
            mtu: mtu.unwrap_or(DEFAULT_MTU),
            mac,
        });
    }
    (out, nets)
}

/// A MAC address that may be assigned to one host: unicast and not zero.
fn unicast_mac(c: &mut Checker<'_>, path: &str, text: &str, what: &str) -> Option<MacAddr> {
    match text.parse::<MacAddr>() {
        Ok(mac) if mac.is_zero() => {
            c.err(
                path.to_string(),
                format!("{mac} is the zero address; {what} needs a unicast MAC"),
            );
            None
        }
        Ok(mac) if mac.is_multicast() => {
            c.err(
                path.to_string(),
                format!("{mac} is a multicast address; {what} needs a unicast MAC"),
            );
            None
        }
        Ok(mac) => Some(mac),
        Err(e) => {
            c.err(path.to_string(), e);
            None
        }
    }
}

fn neighbors(c: &mut Checker<'_>, raw: Vec<RawNeighbor>) -> Vec<NeighborConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, n) in raw.into_iter().enumerate() {
        let path = |key: &str| format!("neighbors[{i}].{key}");
        let address = c
            .required(&path("address"), n.address)
            .and_then(|a| c.host(&path("address"), &a));
        if let Some(a) = address {
            if let Some(&first) = seen.get(&a) {
                c.err(
                    path("address"),
                    format!("duplicate neighbor {a} (also neighbors[{first}])"),
                );
            } else {
                seen.insert(a, i);
            }
        }
        let mac = c
            .required(&path("mac"), n.mac)
            .and_then(|m| unicast_mac(c, &path("mac"), &m, "a neighbor"));
        out.push(NeighborConfig {
            address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            mac: mac.unwrap_or(MacAddr::ZERO),
        });
    }
    out
}

fn flows(c: &mut Checker<'_>, raw: RawFlows) -> FlowsConfig {
    let capacity = c.opt_int(
        "flows.capacity",
        raw.capacity,
        DEFAULT_CAPACITY,
        1,
        MAX_CAPACITY,
    );
    let mut timeout = |key: &str, text: Option<String>, default: Duration| {
        c.duration(
            &format!("flows.{key}"),
            text.as_deref(),
            default,
            true,
            MAX_FLOW_TIMEOUT,
        )
        .unwrap_or(default)
    };
    FlowsConfig {
        tcp_timeout: timeout("tcp_timeout", raw.tcp_timeout, Duration::from_secs(15 * 60)),
        tcp_fin_timeout: timeout(
            "tcp_fin_timeout",
            raw.tcp_fin_timeout,
            Duration::from_secs(2 * 60),
        ),
        tcp_syn_timeout: timeout(
            "tcp_syn_timeout",
            raw.tcp_syn_timeout,
            Duration::from_secs(30),
        ),
        udp_timeout: timeout("udp_timeout", raw.udp_timeout, Duration::from_secs(5 * 60)),
        capacity: capacity.unwrap_or(DEFAULT_CAPACITY),
    }
}

fn metrics(c: &mut Checker<'_>, raw: RawMetrics) -> MetricsConfig {
    let default: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9101));
    let listen = match raw.listen {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            c.err(
                "metrics.listen",
                format!(
                    "invalid socket address {text:?}: expected ip:port (e.g. {DEFAULT_LISTEN})"
                ),
            );
            default
        }),
    };
    MetricsConfig { listen }
}

fn connected_networks(nets: &[PortNet]) -> String {
    let list: Vec<String> = nets
        .iter()
        .map(|(_, name, net)| format!("{} on port {name}", net.network_cidr()))
        .collect();
    list.join(", ")
}

fn services(c: &mut Checker<'_>, raw: Vec<RawService>, nets: &[PortNet]) -> Vec<ServiceConfig> {
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut endpoints: HashMap<(Ipv4Addr, u16, Protocol), usize> = HashMap::new();
    for (i, s) in raw.into_iter().enumerate() {
        let base = format!("services[{i}]");
        let path = |key: &str| format!("{base}.{key}");
        let name = c.non_empty(&path("name"), s.name);
        if let Some(name) = &name {
            if let Some(&first) = names.get(name) {
                c.err(
                    path("name"),
                    format!("duplicate service name {name:?} (also services[{first}])"),
                );
            } else {
                names.insert(name.clone(), i);
            }
        }
        let vip = c
            .required(&path("vip"), s.vip)
            .and_then(|v| c.host(&path("vip"), &v));
        if let Some(vip) = vip {
            if let Some((index, port_name, _)) = nets.iter().find(|(_, _, net)| net.address == vip)
            {
                c.err(
                    path("vip"),
                    format!("{vip} is the address of port {port_name} (ports[{index}]); a VIP must be a separate address"),
                );
            }
        }
        let port = c
            .required(&path("port"), s.port)
            .and_then(|p| c.int::<u16>(&path("port"), p, 1, 65535));
        let protocol = c.word(&path("protocol"), s.protocol.as_deref(), Protocol::Tcp);
        let scheduler = c.word(
            &path("scheduler"),
            s.scheduler.as_deref(),
            SchedulerKind::WeightedRoundRobin,
        );
        let forwarding = c.word(
            &path("forwarding"),
            s.forwarding.as_deref(),
            ForwardingMethod::Nat,
        );
        let persistence = c.duration(
            &path("persistence"),
            s.persistence.as_deref(),
            Duration::ZERO,
            false,
            MAX_FLOW_TIMEOUT,
        );
        if let (Some(vip), Some(port), Some(protocol)) = (vip, port, protocol) {
            if let Some(&first) = endpoints.get(&(vip, port, protocol)) {
                c.err(
                    &base,
                    format!("duplicate of services[{first}] (same vip, port and protocol {vip}:{port}/{protocol})"),
                );
            } else {
                endpoints.insert((vip, port, protocol), i);
            }
        }
        let syn_proxy = c.word(
            &path("syn_proxy"),
            s.syn_proxy.as_deref(),
            SynProxyMode::default(),
        );
        let health_check = s
            .health_check
            .map(|h| health_check(c, &path("health_check"), h));
        let reals = reals(
            c,
            &base,
            s.reals.unwrap_or_default(),
            port,
            forwarding,
            nets,
        );
        if syn_proxy == Some(SynProxyMode::On) {
            syn_proxy_on(c, &path("syn_proxy"), protocol, forwarding, &reals);
        }
        out.push(ServiceConfig {
            name: name.unwrap_or_default(),
            vip: vip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: port.unwrap_or(0),
            protocol: protocol.unwrap_or(Protocol::Tcp),
            scheduler: scheduler.unwrap_or(SchedulerKind::WeightedRoundRobin),
            forwarding: forwarding.unwrap_or(ForwardingMethod::Nat),
            persistence: persistence.unwrap_or(Duration::ZERO),
            syn_proxy: syn_proxy.unwrap_or_default(),
            health_check,
            reals,
        });
    }
    out
}

/// `syn_proxy = "on"` needs a TCP service all of whose reals are NAT: the
/// proxy answers the handshake itself and must see (and translate) both
/// directions of every segment afterwards. `auto` is accepted anywhere and
/// is inert where `on` would be refused.
fn syn_proxy_on(
    c: &mut Checker<'_>,
    path: &str,
    protocol: Option<Protocol>,
    forwarding: Option<ForwardingMethod>,
    reals: &[RealConfig],
) {
    if protocol == Some(Protocol::Udp) {
        c.err(
            path,
            "\"on\" needs protocol = \"tcp\" (this service is udp); use \"off\" or \"auto\"",
        );
        return;
    }
    if let Some(f) = forwarding.filter(|f| *f != ForwardingMethod::Nat) {
        c.err(
            path,
            format!("\"on\" needs forwarding = \"nat\" (this service uses {f}): replies must come back through the appliance"),
        );
        return;
    }
    if let Some((j, r)) = reals
        .iter()
        .enumerate()
        .find(|(_, r)| r.forwarding != ForwardingMethod::Nat)
    {
        c.err(
            path,
            format!(
                "\"on\" needs every real to be nat (reals[{j}] uses {}): replies must come back through the appliance",
                r.forwarding
            ),
        );
    }
}

fn health_check(c: &mut Checker<'_>, base: &str, h: RawHealthCheck) -> HealthCheckConfig {
    let path = |key: &str| format!("{base}.{key}");
    let kind = c
        .required(&path("kind"), h.kind)
        .and_then(|k| c.word(&path("kind"), Some(&k), HealthCheckKind::Tcp));
    let interval = c.duration(
        &path("interval"),
        h.interval.as_deref(),
        Duration::from_secs(2),
        true,
        MAX_HEALTH_CHECK_INTERVAL,
    );
    let timeout = c.duration(
        &path("timeout"),
        h.timeout.as_deref(),
        Duration::from_secs(1),
        true,
        MAX_HEALTH_CHECK_TIMEOUT,
    );
    if let (Some(interval), Some(timeout)) = (interval, timeout) {
        if timeout > interval {
            c.err(
                path("timeout"),
                format!(
                    "{} exceeds the interval ({}); timeout must be <= interval",
                    format_duration(timeout),
                    format_duration(interval)
                ),
            );
        }
    }
    let rise = c.opt_int(&path("rise"), h.rise, 2u32, 1, 100);
    let fall = c.opt_int(&path("fall"), h.fall, 3u32, 1, 100);
    // `path` and `expect_status` are read only by http checks; with other
    // kinds they are allowed (a config may switch kinds back and forth) and
    // have no effect.
    let is_http = kind == Some(HealthCheckKind::Http);
    let check_path = h.path.unwrap_or_else(|| "/".to_string());
    if is_http && !check_path.starts_with('/') {
        c.err(path("path"), format!("{check_path:?} must start with '/'"));
    }
    let expect_status = if is_http {
        c.opt_int(&path("expect_status"), h.expect_status, 200u16, 100, 599)
    } else {
        None
    };
    HealthCheckConfig {
        kind: kind.unwrap_or(HealthCheckKind::Tcp),
        interval: interval.unwrap_or(Duration::from_secs(2)),
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
        rise: rise.unwrap_or(2),
        fall: fall.unwrap_or(3),
        path: check_path,
        expect_status: expect_status.unwrap_or(200),
    }
}

fn reals(
    c: &mut Checker<'_>,
    service: &str,
    raw: Vec<RawReal>,
    service_port: Option<u16>,
    service_forwarding: Option<ForwardingMethod>,
    nets: &[PortNet],
) -> Vec<RealConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<(Ipv4Addr, u16), usize> = HashMap::new();
    for (j, r) in raw.into_iter().enumerate() {
        let base = format!("{service}.reals[{j}]");
        let path = |key: &str| format!("{base}.{key}");
        let address = c
            .required(&path("address"), r.address)
            .and_then(|a| c.host(&path("address"), &a));
        let explicit_port = r.port.is_some();
        let port = match r.port {
            Some(p) => c.int::<u16>(&path("port"), p, 1, 65535),
            None => service_port,
        };
        let weight = c.opt_int(&path("weight"), r.weight, 1u32, 0, 65535);
        let forwarding = match r.forwarding {
            Some(f) => c.word(&path("forwarding"), Some(&f), ForwardingMethod::Nat),
            None => service_forwarding,
        };
        if let (Some(address), Some(port)) = (address, port) {
            if let Some(&first) = seen.get(&(address, port)) {
                c.err(
                    &base,
                    format!("duplicate of {service}.reals[{first}] (same address and port {address}:{port})"),
                );
            } else {
                seen.insert((address, port), j);
            }
        }
        if let (Some(f), Some(port), Some(sport)) = (forwarding, port, service_port) {
            if explicit_port && f != ForwardingMethod::Nat && port != sport {
                c.err(
                    path("port"),
                    format!("differs from the service port ({sport}), which only nat allows (this real uses {f})"),
                );
            }
        }
        if let (Some(ForwardingMethod::DirectRoute), Some(address)) = (forwarding, address) {
            if !nets.is_empty() && !nets.iter().any(|(_, _, net)| net.contains(address)) {
                c.err(
                    path("address"),
                    format!(
                        "a dr real must be on a connected network ({})",
                        connected_networks(nets)
                    ),
                );
            }
        }
        out.push(RealConfig {
            address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: port.unwrap_or(0),
            weight: weight.unwrap_or(1),
            forwarding: forwarding.unwrap_or(ForwardingMethod::Nat),
        });
    }
    out
}
