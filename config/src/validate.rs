//! Validation: turns the raw schema into the typed [`Config`], checking every
//! value and every cross-reference and recording each problem (with its key
//! path) instead of stopping at the first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::lcores::{eal_cores, RTE_MAX_LCORE};
use crate::schema::*;
use crate::*;

const DEFAULT_MBUFS: u32 = 16383;
/// 64, not testpmd's 32: half the driver calls a packet, and on memif
/// 3 to 8 % more forwarded than 32 in every interleaved pair at 10k and
/// 1M flows (BENCHMARKS.md, "Session 42"; `scripts/bench-throughput.sh`
/// with `BURST=64 BASELINE_BURST=32`).
const DEFAULT_BURST: u16 = 64;
const DEFAULT_MTU: u16 = 1500;
const DEFAULT_CAPACITY: u32 = 1 << 20;
/// 16 Mi entries per worker (about 1.6 GB of table each): more would
/// rather fail to allocate at start than serve.
const MAX_CAPACITY: i64 = 1 << 24;
const DEFAULT_LISTEN: &str = "127.0.0.1:9101";

/// The most errors one check of a config reports: a file of a million bad
/// values would otherwise take a million errors' memory and time on the
/// control thread (found in audit: 4 MB of bad lcores, 1,000,000 errors
/// and 114 MB in 1.4 s). The rest are counted in one last error.
pub(crate) const MAX_ERRORS: usize = 100;

/// Collects errors; each check returns `None` when it recorded one.
struct Checker<'a> {
    errors: &'a mut Vec<ConfigError>,
    /// Errors beyond [`MAX_ERRORS`], counted only.
    more: usize,
    /// `[sync]`'s keys as the running config has them (`key_file`,
    /// `accept_key_file`): taken instead of reading the files again.
    keys: Option<[Option<SyncKey>; 2]>,
    /// The script checks' programs and users the running config has:
    /// taken without looking at them again (a `ctl` edit of the running
    /// text).
    known: Option<&'a Known>,
}

/// What the running config's script checks have, looked at when it was
/// loaded: a `ctl` edit of its text does not look at them again.
pub(crate) struct Known {
    /// Programs (`command[0]`).
    pub programs: std::collections::BTreeSet<String>,
    /// Users (`user`), by the name the file gives.
    pub users: std::collections::BTreeMap<String, crate::ScriptUser>,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.more += 1;
            return;
        }
        self.errors.push(ConfigError::new(path, message));
    }

    /// Counts the errors past [`MAX_ERRORS`] in one error of their own.
    fn finish(self) {
        if self.more > 0 {
            self.errors.push(ConfigError::new(
                "(config)",
                format!(
                    "{} more errors not shown: fix the ones above first",
                    self.more
                ),
            ));
        }
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
            Ok(a) => self.host4(path, a),
            Err(_) => {
                let hint = match text.parse::<Ipv6Addr>() {
                    Ok(_) => format!(" ({text} is IPv6: use {}6)", key_of(path)),
                    Err(_) => String::new(),
                };
                self.err(
                    path,
                    format!("invalid IPv4 address {text:?}: expected a.b.c.d{hint}"),
                );
                None
            }
        }
    }

    fn host4(&mut self, path: &str, a: Ipv4Addr) -> Option<Ipv4Addr> {
        if let Some(why) = not_a_host4(a) {
            self.err(path, format!("{a} is not a unicast host address: {why}"));
            return None;
        }
        Some(a)
    }

    /// An IPv6 unicast host address, link-local (`fe80::/10`) only where
    /// `link_local` allows it.
    fn host6(&mut self, path: &str, text: &str, link_local: LinkLocal) -> Option<Ipv6Addr> {
        match text.parse::<Ipv6Addr>() {
            Ok(a) => self.host6_addr(path, a, link_local),
            Err(_) => {
                let hint = match text.parse::<Ipv4Addr>() {
                    Ok(_) => {
                        let key = key_of(path);
                        format!(" ({text} is IPv4: use {})", key.trim_end_matches('6'))
                    }
                    Err(_) => String::new(),
                };
                self.err(
                    path,
                    format!("invalid IPv6 address {text:?}: expected e.g. 2001:2::1{hint}"),
                );
                None
            }
        }
    }

    fn host6_addr(&mut self, path: &str, a: Ipv6Addr, link_local: LinkLocal) -> Option<Ipv6Addr> {
        if let Some(why) = not_a_host6(a, link_local) {
            self.err(path, format!("{a} is not a unicast host address: {why}"));
            return None;
        }
        Some(a)
    }

    /// A host address of either family (VIPs, reals, neighbors).
    fn ip_host(&mut self, path: &str, text: &str, link_local: LinkLocal) -> Option<IpAddr> {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => self.host4(path, a).map(IpAddr::V4),
            Ok(IpAddr::V6(a)) => self.host6_addr(path, a, link_local).map(IpAddr::V6),
            Err(_) if text.contains(':') => {
                self.err(
                    path,
                    format!("invalid IPv6 address {text:?}: expected e.g. 2001:2::11"),
                );
                None
            }
            Err(_) => {
                self.err(
                    path,
                    format!("invalid IPv4 address {text:?}: expected a.b.c.d (or an IPv6 address)"),
                );
                None
            }
        }
    }

    /// `d` when it is at least `min` (else the error at `path`, and None).
    fn at_least(&mut self, path: &str, d: Option<Duration>, min: Duration) -> Option<Duration> {
        let d = d?;
        if d < min {
            self.err(
                path,
                format!(
                    "{} is below the minimum of {}",
                    format_duration(d),
                    format_duration(min)
                ),
            );
            return None;
        }
        Some(d)
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

    /// A name (of a port or a service): not empty, at most [`MAX_NAME`]
    /// bytes, and no control character. Names are printed in logs, in
    /// `--check`'s summary and in the `status` and `ctl list` tables, and a
    /// control socket client may choose one (found in review: a newline
    /// forged log lines, and escape sequences reached the operator's
    /// terminal).
    fn name(&mut self, path: &str, text: Option<String>) -> Option<String> {
        let text = self.non_empty(path, text)?;
        if !self.printable(path, &text, "names are printed in logs and tables") {
            return None;
        }
        if text.len() > MAX_NAME {
            self.err(
                path,
                format!("{} bytes: a name is at most {MAX_NAME}", text.len()),
            );
            return None;
        }
        Some(text)
    }
}

impl Checker<'_> {
    /// Whether `text`, which `why` says is printed somewhere, holds no
    /// control character (a newline forges log lines, an escape sequence
    /// reaches the operator's terminal: found in review) nor a character
    /// that reorders or hides text where it is printed (bidirectional
    /// controls, zero-width characters: found in audit, a ctl client
    /// could make a name read as another in a table). If it does, the
    /// error names `path`.
    fn printable(&mut self, path: &str, text: &str, why: &str) -> bool {
        if !text.chars().any(unsafe_to_print) {
            return true;
        }
        if let Some(ch) = text.chars().find(|ch| ch.is_control()) {
            self.err(
                path,
                format!("{text:?} holds the control character {ch:?}: {why}"),
            );
            return false;
        }
        if let Some(ch) = text.chars().find(|&ch| invisible_format(ch)) {
            self.err(
                path,
                format!(
                    "{text:?} holds the invisible formatting character U+{:04X}: {why}, and it would change how they read",
                    u32::from(ch)
                ),
            );
            return false;
        }
        true
    }
}

/// The longest name of a port or a service, in bytes.
const MAX_NAME: usize = 128;

/// Whether an IPv6 key accepts a link-local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkLocal {
    /// `gateway6` and neighbors: a next hop is often link-local.
    Allowed,
    /// Port addresses, VIPs and reals: they must be reachable beyond one
    /// link, and a link-local address does not say which link.
    Refused,
}

/// Why `a` cannot be a host's IPv4 address on a network (RFC 1122 3.2.1.3,
/// RFC 1812 5.3.7: the addresses the packet path drops as sources no host
/// has), if it cannot: as IPv6's `::1` is refused (found in review: VIPs,
/// gateways and port addresses there were accepted). Reals on loopback
/// are let through by their caller.
fn not_a_host4(a: Ipv4Addr) -> Option<&'static str> {
    let first = a.octets()[0];
    Some(if first == 0 {
        "0.0.0.0/8 is \"this network\", no host's"
    } else if a.is_loopback() {
        "127.0.0.0/8 is loopback, inside one host"
    } else if a.is_multicast() {
        "224.0.0.0/4 is multicast"
    } else if first >= 240 {
        "240.0.0.0/4 is reserved (and 255.255.255.255 the limited broadcast)"
    } else {
        return None;
    })
}

/// Why `a` cannot be an IPv6 host address, if it cannot.
fn not_a_host6(a: Ipv6Addr, link_local: LinkLocal) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("it is the unspecified address (::)")
    } else if a.is_loopback() {
        Some("it is the loopback address (::1)")
    } else if a.is_multicast() {
        Some("it is a multicast address (ff00::/8)")
    } else if a.to_ipv4_mapped().is_some() {
        Some("it is an IPv4-mapped address (::ffff:0:0/96); write the IPv4 address itself, where IPv4 is meant")
    } else if link_local == LinkLocal::Refused && is_link_local6(a) {
        Some("it is link-local (fe80::/10), which names no particular link; use a global or unique-local address")
    } else {
        None
    }
}

/// A character that must not reach a terminal or a log as written: a
/// control character (C0, DEL, C1: a line feed forges lines, an escape
/// sequence drives the terminal) or one of [`invisible_format`].
pub fn unsafe_to_print(ch: char) -> bool {
    ch.is_control() || invisible_format(ch)
}

/// `text` as it may be printed to an operator's terminal or a log: as
/// written, or with each [`unsafe_to_print`] character escaped (`\n`,
/// `\u{1b}`, `\u{202e}`). For what came from elsewhere: a status
/// document, a health check's answer, a config value printed back.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(unsafe_to_print) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else if invisible_format(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// A Unicode format character that reorders or hides text: the
/// bidirectional controls (U+061C, U+200E-U+200F, U+202A-U+202E,
/// U+2066-U+2069), zero-width ones (U+200B-U+200D, U+2060-U+2064,
/// U+FEFF), the soft hyphen and the Mongolian vowel separator; and the
/// line and paragraph separators (U+2028, U+2029), which some log
/// viewers break lines at (found in audit).
pub fn invisible_format(ch: char) -> bool {
    matches!(
        ch,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// `fe80::/10`.
fn is_link_local6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The last key of a path: `ports[0].gateway` -> `gateway`.
fn key_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
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
pub(crate) fn validate(
    raw: RawConfig,
    errors: &mut Vec<ConfigError>,
    keys: Option<[Option<SyncKey>; 2]>,
    known: Option<&Known>,
) -> Config {
    let mut c = Checker {
        errors,
        more: 0,
        keys,
        known,
    };
    let dpdk = dpdk(&mut c, raw.dpdk.unwrap_or_default());
    let workers = workers(&mut c, raw.workers, &dpdk.eal_args);
    let (ports, port_nets) = ports(&mut c, raw.ports);
    let neighbors = neighbors(&mut c, raw.neighbors.unwrap_or_default(), &port_nets);
    let flows = flows(&mut c, raw.flows.unwrap_or_default());
    let metrics = metrics(&mut c, raw.metrics.unwrap_or_default());
    let services = services(&mut c, raw.services.unwrap_or_default(), &port_nets);
    let announce = raw.announce.map(|a| announce(&mut c, a));
    let sync = raw
        .sync
        .and_then(|raw| sync(&mut c, raw, &services, &port_nets));
    let control = control(&mut c, raw.control.unwrap_or_default());
    let config = Config {
        dpdk,
        workers,
        ports,
        neighbors,
        flows,
        metrics,
        services,
        announce: announce.flatten(),
        sync,
        control,
    };
    across(&mut c, &config);
    c.finish();
    config
}

/// Rules that look at several sections at once, on the typed values.
fn across(c: &mut Checker<'_>, config: &Config) {
    addresses_taken(c, config);
    if let Some(s) = &config.sync {
        let floating = [
            ("sync.gateway", s.gateway.map(IpAddr::V4)),
            ("sync.gateway6", s.gateway6.map(IpAddr::V6)),
        ];
        for (path, g) in floating {
            let Some(g) = g else { continue };
            let router = config.ports.iter().enumerate().find(|(_, p)| {
                p.gateway.map(IpAddr::V4) == Some(g) || p.gateway6.map(IpAddr::V6) == Some(g)
            });
            if let Some((i, p)) = router {
                c.err(
                    path,
                    format!("{g} is the gateway of port {} (ports[{i}]): the router the appliance sends through, not an address of the pair", p.name),
                );
            } else if g == s.peer.ip() {
                c.err(path, format!("{g} is sync.peer's address: the other appliance's own, not one that moves between them"));
            } else if g == s.listen.ip() {
                c.err(path, format!("{g} is sync.listen's address: this appliance's own, not one that moves between them"));
            }
        }
    }
    if config.announce.is_some() && config.ports.iter().all(|p| p.kernel_interface.is_none()) {
        c.err(
            "announce",
            "needs a port with kernel_interface: the VIP routes go through a port's kernel interface, for the routing daemon to export",
        );
    }
    // Each kernel interface is a DPDK device too (a tap beside its port):
    // found in review, 17 ports with one each passed `--check` and made 34.
    let taps = config
        .ports
        .iter()
        .filter(|p| p.kernel_interface.is_some())
        .count();
    if config.ports.len() <= crate::MAX_PORTS && config.ports.len() + taps > crate::MAX_PORTS {
        c.err(
            "ports",
            format!(
                "{} ports and {taps} kernel interfaces: DPDK takes at most {} devices, and each kernel interface is one",
                config.ports.len(),
                crate::MAX_PORTS
            ),
        );
    }
    let mut devices: HashMap<String, usize> = HashMap::new();
    let mut gateway: Option<usize> = None;
    let mut gateway6: Option<usize> = None;
    let mut kernel: HashMap<&str, usize> = HashMap::new();
    for (i, p) in config.ports.iter().enumerate() {
        if let Some(k) = p.kernel_interface.as_deref() {
            match kernel.get(k) {
                Some(&first) => c.err(
                    format!("ports[{i}].kernel_interface"),
                    format!("{k:?} is the kernel interface of ports[{first}] already"),
                ),
                None => {
                    kernel.insert(k, i);
                }
            }
            // A tap of the name a port's af_packet or af_xdp device opens
            // could not be created (the name is taken): this port's, or
            // another's (found in audit).
            if let Some(j) = config
                .ports
                .iter()
                .position(|q| q.device.split(',').any(|arg| arg == format!("iface={k}")))
            {
                let whose = if j == i {
                    "the port's device".to_string()
                } else {
                    format!("the device of ports[{j}]")
                };
                c.err(
                    format!("ports[{i}].kernel_interface"),
                    format!("{k:?} is the interface {whose} uses; name another"),
                );
            }
        }
        if p.device.is_empty() {
            continue;
        }
        match devices.get(&pci_identity(&p.device)) {
            Some(&first) => c.err(
                format!("ports[{i}].device"),
                format!("the same device as ports[{first}]"),
            ),
            None => {
                devices.insert(pci_identity(&p.device), i);
            }
        }
        // Per family: an IPv4 network and an IPv6 one never overlap.
        for (k, q) in config.ports.iter().enumerate().take(i) {
            if let (Some(a), Some(b)) = (p.address, q.address) {
                if a.contains(b.network()) || b.contains(a.network()) {
                    overlaps(c, i, "address", a.network_cidr(), k, b.network_cidr());
                }
            }
            if let (Some(a), Some(b)) = (p.address6, q.address6) {
                if a.contains(b.network()) || b.contains(a.network()) {
                    overlaps(c, i, "address6", a.network_cidr(), k, b.network_cidr());
                }
            }
        }
        for (key, has, first) in [
            ("gateway", p.gateway.is_some(), &mut gateway),
            ("gateway6", p.gateway6.is_some(), &mut gateway6),
        ] {
            if !has {
                continue;
            }
            match *first {
                Some(first) => c.err(
                    format!("ports[{i}].{key}"),
                    format!("ports[{first}] has the {key} already; only one port may have one"),
                ),
                None => *first = Some(i),
            }
        }
    }
}

/// A device as DPDK names it, for telling two spellings of one apart: a
/// PCI address gets its domain (`0000:` when left out) and lower-case hex,
/// without its arguments (found in audit: `0000:01:00.0` and `01:00.0`
/// were taken as two ports); anything else (a virtual device with its
/// arguments) as written.
/// What names a port's device for DPDK: a PCI address in one spelling
/// (domain, lower case), or a virtual device's name without its arguments
/// (DPDK holds one vdev per name: `net_null0` and `net_null0,size=64` are
/// one device, which EAL refused at start with an error naming neither
/// port; found in audit).
fn pci_identity(device: &str) -> String {
    let name = device.split_once(',').map_or(device, |(n, _)| n);
    let hex = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = name.split(':').collect();
    let bdf = match parts.as_slice() {
        [bus, df] => Some(("0000", *bus, *df)),
        [domain, bus, df] if hex(domain, 4) => Some((*domain, *bus, *df)),
        _ => None,
    };
    match bdf {
        Some((domain, bus, df))
            if hex(bus, 2)
                && df
                    .split_once('.')
                    .is_some_and(|(d, f)| hex(d, 2) && hex(f, 1)) =>
        {
            format!("{domain}:{bus}:{df}").to_ascii_lowercase()
        }
        _ => name.to_string(),
    }
}

fn overlaps(
    c: &mut Checker<'_>,
    i: usize,
    key: &str,
    net: impl fmt::Display,
    k: usize,
    other: impl fmt::Display,
) {
    c.err(
        format!("ports[{i}].{key}"),
        format!(
            "its network {net} overlaps that of ports[{k}] ({other}): a destination must have one port"
        ),
    );
}

fn dpdk(c: &mut Checker<'_>, raw: RawDpdk) -> DpdkConfig {
    let mbufs = c.opt_int("dpdk.mbufs", raw.mbufs, DEFAULT_MBUFS, 1023, 1 << 24);
    let burst = c.opt_int("dpdk.burst", raw.burst, DEFAULT_BURST, 1, 128);
    let eal_args = raw.eal_args.unwrap_or_default();
    for (i, a) in eal_args.iter().enumerate() {
        // As a port's device (found in audit).
        c.printable(
            &format!("dpdk.eal_args[{i}]"),
            a,
            "EAL arguments are printed in logs and by --check",
        );
    }
    DpdkConfig {
        eal_args,
        mbufs: mbufs.unwrap_or(DEFAULT_MBUFS),
        burst: burst.unwrap_or(DEFAULT_BURST),
    }
}

fn workers(c: &mut Checker<'_>, raw: Option<RawWorkers>, eal_args: &[String]) -> WorkersConfig {
    let mut lcores = Vec::new();
    let Some(raw) = raw else {
        c.err("workers", "missing required section [workers]");
        return WorkersConfig {
            lcores,
            poll: PollMode::default(),
        };
    };
    let poll = c
        .word("workers.poll", raw.poll.as_deref(), PollMode::default())
        .unwrap_or_default();
    let Some(list) = c.required("workers.lcores", raw.lcores) else {
        return WorkersConfig { lcores, poll };
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
        // DPDK has no lcore beyond RTE_MAX_LCORE - 1.
        let Some(id) = c.int::<u32>(&path, value, 0, i64::from(RTE_MAX_LCORE) - 1) else {
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
    WorkersConfig { lcores, poll }
}

/// A port's index, name and connected network of one family, for
/// cross-checks.
struct PortNet<C> {
    index: usize,
    name: String,
    cidr: C,
    mtu: u16,
}

/// What the ports offer, per family, for the checks of neighbors, VIPs and
/// reals.
#[derive(Default)]
struct Nets {
    v4: Vec<PortNet<Ipv4Cidr>>,
    v6: Vec<PortNet<Ipv6Cidr>>,
    /// The `gateway6` of a port, if one has it, and that port's MTU.
    gateway6: Option<Ipv6Addr>,
    gateway6_mtu: u16,
    /// Whether every port's addresses were valid: otherwise "on no
    /// connected network" may only echo an error already reported.
    complete: bool,
}

impl Nets {
    /// Why `a` is no host of a connected network: its network or
    /// broadcast address (IPv4; a /31's two are hosts, RFC 3021), or its
    /// subnet-router anycast address (IPv6). Found in audit: a port's
    /// gateway, a real and a neighbor there were accepted, where a VIP is
    /// refused.
    fn network_end(&self, a: IpAddr) -> Option<String> {
        match a {
            IpAddr::V4(a) => self.v4.iter().find_map(|n| {
                n.cidr.is_network_end(a).then(|| {
                    format!(
                        "{a} is the network or broadcast address of port {}'s network {}: not one host's",
                        n.name,
                        n.cidr.network_cidr()
                    )
                })
            }),
            IpAddr::V6(a) => self.v6.iter().find_map(|n| {
                n.cidr.is_subnet_router(a).then(|| {
                    format!(
                        "{a} is the subnet-router anycast address of port {}'s network {}: the routers' on it",
                        n.name,
                        n.cidr.network_cidr()
                    )
                })
            }),
        }
    }

    /// The MTU of the port an IPv6 packet to `addr` leaves by (its
    /// connected network's, else the gateway6 port's).
    fn mtu6(&self, addr: Ipv6Addr) -> Option<u16> {
        self.v6
            .iter()
            .find(|n| n.cidr.contains(addr))
            .map(|n| n.mtu)
            .or(self.gateway6.map(|_| self.gateway6_mtu))
    }

    fn connected(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.cidr.contains(a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.cidr.contains(a)),
        }
    }

    /// Whether the ports have an address of `addr`'s family (or, with some
    /// port in error, might have).
    fn has_family(&self, addr: IpAddr) -> bool {
        !self.complete
            || match addr {
                IpAddr::V4(_) => !self.v4.is_empty(),
                IpAddr::V6(_) => !self.v6.is_empty(),
            }
    }

    /// The port whose own address (of either family) is `addr`.
    fn port_address(&self, addr: IpAddr) -> Option<(usize, &str)> {
        match addr {
            IpAddr::V4(a) => self
                .v4
                .iter()
                .find(|n| n.cidr.address == a)
                .map(|n| (n.index, n.name.as_str())),
            IpAddr::V6(a) => self
                .v6
                .iter()
                .find(|n| n.cidr.address == a)
                .map(|n| (n.index, n.name.as_str())),
        }
    }

    /// `198.18.0.0/24 on port wan, ...` for `addr`'s family.
    fn describe(&self, addr: IpAddr) -> String {
        let list: Vec<String> = match addr {
            IpAddr::V4(_) => self
                .v4
                .iter()
                .map(|n| format!("{} on port {}", n.cidr.network_cidr(), n.name))
                .collect(),
            IpAddr::V6(_) => self
                .v6
                .iter()
                .map(|n| format!("{} on port {}", n.cidr.network_cidr(), n.name))
                .collect(),
        };
        list.join(", ")
    }
}

/// `IPv4` or `IPv6`.
fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// The `[[ports]]` key of `addr`'s family: `address` or `address6`.
fn address_key(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "address",
        IpAddr::V6(_) => "address6",
    }
}

fn cidr6(c: &mut Checker<'_>, path: &str, text: &str) -> Option<Ipv6Cidr> {
    let cidr: Ipv6Cidr = match text.parse() {
        Ok(v) => v,
        Err(e) => {
            let hint = match text.parse::<Ipv4Cidr>() {
                Ok(_) => " (this is IPv4: use address)",
                Err(_) => "",
            };
            c.err(path, format!("{e}{hint}"));
            return None;
        }
    };
    let a = cidr.address;
    if cidr.prefix_len == 0 || cidr.prefix_len == 128 {
        // A /128 leaves the port no connected network: no neighbor, gateway
        // or dr real could be on it. The operator knows the on-link prefix.
        c.err(
            path,
            format!("invalid address {text:?}: prefix length must be 1..=127 (the port's on-link prefix, usually /64)"),
        );
        None
    } else if let Some(why) = not_a_host6(a, LinkLocal::Refused) {
        c.err(path, format!("{a} is not a unicast host address: {why}"));
        None
    } else if cidr.prefix_len <= 126 && a == cidr.network() {
        c.err(
            path,
            format!(
                "{a} is the subnet-router anycast address of {}; use a host address",
                cidr.network_cidr()
            ),
        );
        None
    } else {
        Some(cidr)
    }
}

fn cidr(c: &mut Checker<'_>, path: &str, text: &str) -> Option<Ipv4Cidr> {
    let cidr: Ipv4Cidr = match text.parse() {
        Ok(v) => v,
        Err(e) => {
            let hint = match text.parse::<Ipv6Cidr>() {
                Ok(_) => " (this is IPv6: use address6)",
                Err(_) => "",
            };
            c.err(path, format!("{e}{hint}"));
            return None;
        }
    };
    let a = cidr.address;
    if cidr.prefix_len == 0 || cidr.prefix_len == 32 {
        // A /32 leaves the port no connected network, as a /128 does over
        // IPv6 (found in audit: the one was refused, the other accepted).
        c.err(
            path,
            format!("invalid address {text:?}: prefix length must be 1..=31 (the port's connected network, e.g. /24)"),
        );
        None
    } else if let Some(why) = not_a_host4(a) {
        c.err(path, format!("{a} is not a unicast host address: {why}"));
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

fn ports(c: &mut Checker<'_>, raw: Option<Vec<RawPort>>) -> (Vec<PortConfig>, Nets) {
    let mut raw = raw.unwrap_or_default();
    if raw.is_empty() {
        c.err("ports", "at least one [[ports]] entry is required");
    }
    // Past the limit the rest is not looked at: the file is refused
    // anyway, and checks across ports take time with the square of their
    // number.
    if raw.len() > crate::MAX_PORTS {
        c.err(
            "ports",
            format!(
                "{} ports: at most {} (what DPDK and the workers' counters take)",
                raw.len(),
                crate::MAX_PORTS
            ),
        );
        raw.truncate(crate::MAX_PORTS);
    }
    let mut out = Vec::new();
    let mut nets = Nets {
        complete: true,
        ..Nets::default()
    };
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, p) in raw.into_iter().enumerate() {
        let path = |key: &str| format!("ports[{i}].{key}");
        let name = c.name(&path("name"), p.name);
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
        // Printed by `--check` and handed to DPDK, which logs it (found in
        // audit: a newline forged summary lines).
        let device = c.non_empty(&path("device"), p.device).filter(|d| {
            c.printable(
                &path("device"),
                d,
                "a device is printed in logs and by --check",
            )
        });
        if p.address.is_none() && p.address6.is_none() {
            c.err(
                path("address"),
                "missing required key: a port needs address (IPv4), address6 (IPv6), or both",
            );
            nets.complete = false;
        }
        let has_address = p.address.is_some();
        let has_address6 = p.address6.is_some();
        let address = p.address.and_then(|a| cidr(c, &path("address"), &a));
        let address6 = p.address6.and_then(|a| cidr6(c, &path("address6"), &a));
        if (has_address && address.is_none()) || (has_address6 && address6.is_none()) {
            nets.complete = false;
        }
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
                } else if net.is_network_end(gw) {
                    c.err(
                        path("gateway"),
                        format!(
                            "{gw} is the network or broadcast address of {}: a gateway is one host",
                            net.network_cidr()
                        ),
                    );
                }
            } else if !has_address {
                c.err(
                    path("gateway"),
                    "needs address on the same port: an IPv4 gateway is reached on the port's IPv4 network",
                );
            }
            Some(gw)
        });
        let gateway6 = p.gateway6.and_then(|g| {
            let gw = c.host6(&path("gateway6"), &g, LinkLocal::Allowed)?;
            if let Some(net) = address6 {
                if gw == net.address {
                    c.err(path("gateway6"), format!("{gw} is the port's own address"));
                } else if !net.contains(gw) && !is_link_local6(gw) {
                    c.err(
                        path("gateway6"),
                        format!(
                            "{gw} is neither inside the port's connected network {} nor link-local (fe80::/10)",
                            net.network_cidr()
                        ),
                    );
                }
            } else if !has_address6 {
                c.err(
                    path("gateway6"),
                    "needs address6 on the same port: the appliance sends IPv6 from the port's own IPv6 address",
                );
            }
            Some(gw)
        });
        let mtu = c.opt_int(&path("mtu"), p.mtu, DEFAULT_MTU, 68, 9600);
        if let (Some(m), Some(_)) = (mtu, address6) {
            if m < IPV6_MIN_MTU {
                c.err(
                    path("mtu"),
                    format!("{m} is below {IPV6_MIN_MTU}, the IPv6 minimum link MTU (RFC 8200): a port with address6 needs at least {IPV6_MIN_MTU}"),
                );
            }
        }
        let mac = p
            .mac
            .and_then(|m| unicast_mac(c, &path("mac"), &m, "a port"));
        let kernel_interface = p
            .kernel_interface
            .and_then(|k| interface_name(c, &path("kernel_interface"), k));
        let mut routing_peers = Vec::new();
        if let Some(peers) = p.routing_peers {
            if kernel_interface.is_none() && !peers.is_empty() {
                c.err(
                    path("routing_peers"),
                    "needs kernel_interface on the same port: routing peers talk to the port's kernel interface",
                );
            }
            if peers.len() > crate::MAX_ROUTING_PEERS {
                c.err(
                    path("routing_peers"),
                    format!(
                        "{} peers: at most {} on one port",
                        peers.len(),
                        crate::MAX_ROUTING_PEERS
                    ),
                );
            }
            for (j, text) in peers.iter().enumerate().take(crate::MAX_ROUTING_PEERS) {
                let at = format!("{}[{j}]", path("routing_peers"));
                if let Some(a) = c.ip_host(&at, text, LinkLocal::Allowed) {
                    if routing_peers.contains(&a) {
                        c.err(at, format!("{a} is listed twice"));
                    } else {
                        routing_peers.push(a);
                    }
                }
            }
        }
        let label = name.clone().unwrap_or_else(|| format!("ports[{i}]"));
        let port_mtu = mtu.unwrap_or(DEFAULT_MTU);
        if let Some(cidr) = address {
            nets.v4.push(PortNet {
                index: i,
                name: label.clone(),
                cidr,
                mtu: port_mtu,
            });
        }
        if let Some(cidr) = address6 {
            nets.v6.push(PortNet {
                index: i,
                name: label,
                cidr,
                mtu: port_mtu,
            });
        }
        if nets.gateway6.is_none() && gateway6.is_some() {
            nets.gateway6 = gateway6;
            nets.gateway6_mtu = port_mtu;
        }
        out.push(PortConfig {
            name: name.unwrap_or_default(),
            device: device.unwrap_or_default(),
            address,
            address6,
            gateway,
            gateway6,
            mtu: mtu.unwrap_or(DEFAULT_MTU),
            mac,
            kernel_interface,
            routing_peers,
        });
    }
    (out, nets)
}

/// The longest Linux interface name (`IFNAMSIZ` less its NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// A name the kernel accepts for a network interface (`dev_valid_name`:
/// 1..=15 bytes, not `.` or `..`, no `/`, `:` or whitespace) that also
/// fits in a DPDK device argument (no `,` or `=`, which separate them) and
/// in a line of `ip -batch`, which `[announce]` writes routes through (no
/// `#`, which starts a comment there even inside a word, nor quotes:
/// found in audit, `lb#0` put every VIP route in the main table through
/// a device `lb`, and a leading `"` failed every batch).
fn interface_name(c: &mut Checker<'_>, path: &str, name: String) -> Option<String> {
    let why = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > MAX_INTERFACE_NAME {
        Some(format!(
            "{name:?} is {} bytes long; a Linux interface name has at most {MAX_INTERFACE_NAME}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some(format!("{name:?} is not a valid interface name"))
    } else if let Some(bad) = name.chars().find(|ch| {
        ch.is_whitespace()
            || ch.is_control()
            || matches!(ch, '/' | ':' | ',' | '=' | '#' | '"' | '\'' | '\\')
    }) {
        let what = match bad {
            ',' | '=' => "it would split the DPDK device argument",
            '#' | '"' | '\'' | '\\' => "`ip -batch` would misread it in the routes of [announce]",
            _ => "Linux refuses it in interface names",
        };
        Some(format!("{name:?} contains {bad:?}: {what}"))
    } else {
        None
    };
    match why {
        Some(why) => {
            c.err(path, why);
            None
        }
        None => Some(name),
    }
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

fn neighbors(c: &mut Checker<'_>, raw: Vec<RawNeighbor>, nets: &Nets) -> Vec<NeighborConfig> {
    let mut out = Vec::new();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (i, n) in raw.into_iter().enumerate() {
        let path = |key: &str| format!("neighbors[{i}].{key}");
        let address = c
            .required(&path("address"), n.address)
            .and_then(|a| c.ip_host(&path("address"), &a, LinkLocal::Allowed));
        if let Some(a) = address {
            neighbor_on_link(c, &path("address"), a, nets);
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
            address: address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            mac: mac.unwrap_or(MacAddr::ZERO),
        });
    }
    out
}

/// A static neighbor is a next hop, so it must be on a connected network
/// of its family; an IPv6 one may instead be the link-local `gateway6`
/// (reached on that port). IPv4 neighbors are checked only where no port
/// has an IPv4 address: an entry off every network was accepted (and
/// unused) before IPv6, and stays so.
fn neighbor_on_link(c: &mut Checker<'_>, path: &str, a: IpAddr, nets: &Nets) {
    if let Some(why) = nets.network_end(a) {
        c.err(path, why);
        return;
    }
    if !nets.complete || nets.connected(a) {
        return;
    }
    match a {
        IpAddr::V4(_) if nets.v4.is_empty() => c.err(
            path,
            "no port has an IPv4 address (address): an IPv4 neighbor must be on a connected network",
        ),
        IpAddr::V4(_) => {}
        IpAddr::V6(a6) if is_link_local6(a6) => {
            if nets.gateway6 != Some(a6) {
                c.err(
                    path,
                    format!("{a} is link-local and no port has it as gateway6: a link-local neighbor is only used as a port's gateway6, reached on that port"),
                );
            }
        }
        IpAddr::V6(_) if nets.v6.is_empty() => c.err(
            path,
            "no port has an IPv6 address (address6): an IPv6 neighbor must be on a connected network",
        ),
        IpAddr::V6(_) => c.err(
            path,
            format!(
                "an IPv6 neighbor must be on a connected network ({}) or be the link-local gateway6",
                nets.describe(a)
            ),
        ),
    }
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

/// `[announce]`: `table` is required (there is no good default: the
/// routing daemon's configuration names it too), `withdraw_delay` is
/// "2s" unless given.
fn announce(c: &mut Checker<'_>, raw: RawAnnounce) -> Option<AnnounceConfig> {
    let table = match raw.table {
        None => {
            c.err(
                "announce.table",
                "missing required key: the kernel routing table (1..=252) the VIP routes go to",
            );
            None
        }
        Some(t) if !(1..=252).contains(&t) => {
            c.err(
                "announce.table",
                format!("{t} is out of range 1..=252 (0 is unspecified; 253, 254 and 255 are the kernel's default, main and local tables)"),
            );
            None
        }
        Some(t) => u32::try_from(t).ok(),
    };
    let withdraw_delay = c.duration(
        "announce.withdraw_delay",
        raw.withdraw_delay.as_deref(),
        DEFAULT_WITHDRAW_DELAY,
        false,
        MAX_WITHDRAW_DELAY,
    );
    Some(AnnounceConfig {
        table: table?,
        withdraw_delay: withdraw_delay?,
    })
}

/// `[announce] withdraw_delay` unless given.
const DEFAULT_WITHDRAW_DELAY: Duration = Duration::from_secs(2);

/// `[control]`: an absolute path short enough for a Unix socket address.
/// [`Config::client_endpoints`]: `[control]` and `[metrics]` of `text`,
/// checked as a whole file's are; nothing else of it is read.
pub(crate) fn client_endpoints(
    text: &str,
    source: &str,
) -> Result<(ControlConfig, MetricsConfig), ConfigErrors> {
    #[derive(serde::Deserialize)]
    struct Endpoints {
        control: Option<RawControl>,
        metrics: Option<RawMetrics>,
    }
    // Unknown keys in those two sections are refused, as the appliance
    // refuses them (found in review: a misspelt `socket` sent `ctl` to
    // the default socket); the rest of the file is not this reader's.
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| {
        let path = crate::schema::path_string(&path);
        if path.starts_with("control.") || path.starts_with("metrics.") {
            unknown.push(path);
        }
    };
    let ignored = serde_ignored::Deserializer::new(toml::Deserializer::new(text), &mut note);
    let raw: Endpoints = serde_path_to_error::deserialize(ignored)
        .map_err(|e| ConfigErrors(vec![crate::schema::toml_error(text, source, e)]))?;
    let mut errors: Vec<ConfigError> = unknown
        .into_iter()
        .map(|path| {
            let message = crate::schema::unknown_key_message(&path);
            ConfigError::new(path, message)
        })
        .collect();
    let mut c = Checker {
        errors: &mut errors,
        more: 0,
        keys: None,
        known: None,
    };
    let control = control(&mut c, raw.control.unwrap_or_default());
    let metrics = metrics(&mut c, raw.metrics.unwrap_or_default());
    c.finish();
    if errors.is_empty() {
        Ok((control, metrics))
    } else {
        Err(ConfigErrors(errors))
    }
}

fn control(c: &mut Checker<'_>, raw: RawControl) -> ControlConfig {
    let Some(text) = raw.socket else {
        return ControlConfig::default();
    };
    // sun_path holds 108 bytes with the terminating NUL.
    const MAX: usize = 107;
    let why = if !text.starts_with('/') {
        Some("must be an absolute path (e.g. /run/lb-appliance/control.sock)".to_string())
    } else if text.ends_with('/') {
        Some("names a folder; give the socket file's path".to_string())
    } else if text.len() > MAX {
        Some(format!(
            "is {} bytes long; a Unix socket path holds at most {MAX}",
            text.len()
        ))
    } else if text.contains('\0') {
        Some("contains a NUL byte".to_string())
    } else if text.chars().any(unsafe_to_print) {
        // Printed by `--check` and in the log (found in review).
        Some("holds a control or invisible formatting character: the path is printed in logs and by --check".to_string())
    } else {
        None
    };
    match why {
        Some(why) => {
            c.err("control.socket", format!("{text:?} {why}"));
            ControlConfig::default()
        }
        None => ControlConfig {
            socket: text.into(),
        },
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
    // Found in audit: a group address (nothing can listen there) was
    // taken. Port 0 stays: the kernel picks a free one, which the log
    // names (tests run several appliances side by side so).
    if listen.ip().is_multicast() || listen.ip() == IpAddr::V4(Ipv4Addr::BROADCAST) {
        c.err(
            "metrics.listen",
            format!(
                "{} is a group address: listen on one of the box's own, or 0.0.0.0",
                listen.ip()
            ),
        );
    }
    MetricsConfig { listen }
}

/// `[sync]`: `None` (with errors recorded) unless every key is valid.
fn sync(
    c: &mut Checker<'_>,
    raw: RawSync,
    services: &[ServiceConfig],
    nets: &Nets,
) -> Option<SyncConfig> {
    let role = c
        .required("sync.role", raw.role)
        .and_then(|r| c.word("sync.role", Some(&r), SyncRole::Primary));
    let peer = c
        .required("sync.peer", raw.peer)
        .and_then(|p| sync_address(c, "sync.peer", &p, false));
    if let Some(peer) = peer {
        let ip = peer.ip();
        if let Some((index, name)) = nets.port_address(ip) {
            c.err(
                "sync.peer",
                format!("{ip} is the address of port {name} (ports[{index}]): the peer is the other appliance"),
            );
        } else if let Some((i, s)) = services.iter().enumerate().find(|(_, s)| s.vip == ip) {
            c.err(
                "sync.peer",
                format!("{ip} is the VIP of services[{i}] ({:?}): the peer must be the other appliance's own address, which the dataplane does not take", s.name),
            );
        }
    }
    let listen = match raw.listen {
        Some(text) => sync_address(c, "sync.listen", &text, true).and_then(|l| {
            let vip = services.iter().position(|s| s.vip == l.ip());
            if let Some(i) = vip {
                c.err(
                    "sync.listen",
                    format!("{} is the VIP of services[{i}]: the dataplane takes every packet to a VIP, so the sync socket would hear nothing there", l.ip()),
                );
                return None;
            }
            match peer {
                Some(p) if p.is_ipv4() != l.is_ipv4() => {
                    c.err(
                        "sync.listen",
                        format!("{l} and the peer {p} are of different address families"),
                    );
                    None
                }
                Some(p) if p == l => {
                    c.err(
                        "sync.listen",
                        format!("{l} is also sync.peer: the peer is the other appliance"),
                    );
                    None
                }
                _ => Some(l),
            }
        }),
        None => peer.map(|p| match p {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, p.port())),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, p.port())),
        }),
    };
    let interval = c.duration(
        "sync.interval",
        raw.interval.as_deref(),
        DEFAULT_SYNC_INTERVAL,
        true,
        MAX_SYNC_INTERVAL,
    );
    let interval = c.at_least("sync.interval", interval, MIN_SYNC_INTERVAL);
    let dead_after = c.duration(
        "sync.dead_after",
        raw.dead_after.as_deref(),
        interval.unwrap_or(DEFAULT_SYNC_INTERVAL) * 3,
        true,
        MAX_SYNC_DEAD_AFTER,
    );
    let dead_after = match (dead_after, interval) {
        (Some(d), Some(i)) if d < i * 3 => {
            c.err(
                "sync.dead_after",
                format!(
                    "{} is less than three times sync.interval ({}): one lost or late message would make the backup take over",
                    format_duration(d),
                    format_duration(i)
                ),
            );
            None
        }
        (d, _) => d,
    };
    let gateway = raw.gateway.and_then(|text| {
        let Ok(a) = text.parse::<Ipv4Addr>() else {
            c.err(
                "sync.gateway",
                format!("invalid IPv4 address {text:?}: expected a.b.c.d (an IPv6 gateway goes in sync.gateway6)"),
            );
            return None;
        };
        let net = nets.v4.iter().find(|n| n.cidr.contains(a));
        let why = match net {
            _ if !nets.complete => None, // a port's error was reported
            None => Some(format!(
                "{a} is on no port's connected network ({}): the reals must reach their gateway directly",
                describe_nets(nets.v4.iter().map(|n| (n.name.as_str(), n.cidr.to_string())))
            )),
            Some(n) if n.cidr.address == a => Some(format!(
                "{a} is the address of port {} (ports[{}]): the floating gateway must be an address of its own, which moves between the appliances",
                n.name, n.index
            )),
            Some(n) if n.cidr.is_network_end(a) => Some(format!(
                "{a} is the network or broadcast address of port {}'s network {}",
                n.name,
                n.cidr.network_cidr()
            )),
            Some(_) => floating_clash(IpAddr::V4(a), services),
        };
        if let Some(why) = why {
            c.err("sync.gateway", why);
            return None;
        }
        Some(a)
    });
    let gateway6 = raw.gateway6.and_then(|text| {
        let Ok(a) = text.parse::<Ipv6Addr>() else {
            c.err(
                "sync.gateway6",
                format!("invalid IPv6 address {text:?}: expected an address such as 2001:db8::1 (an IPv4 gateway goes in sync.gateway)"),
            );
            return None;
        };
        let net = nets.v6.iter().find(|n| n.cidr.contains(a));
        let why = match net {
            _ if !nets.complete => None,
            None => Some(format!(
                "{a} is on no port's connected IPv6 network ({}): the reals must reach their gateway directly",
                describe_nets(nets.v6.iter().map(|n| (n.name.as_str(), n.cidr.to_string())))
            )),
            Some(n) if n.cidr.address == a => Some(format!(
                "{a} is the address6 of port {} (ports[{}]): the floating gateway must be an address of its own, which moves between the appliances",
                n.name, n.index
            )),
            Some(n) if a == n.cidr.network() => Some(format!(
                "{a} is the subnet-router anycast address of port {}'s network {}",
                n.name,
                n.cidr.network_cidr()
            )),
            Some(_) => floating_clash(IpAddr::V6(a), services),
        };
        if let Some(why) = why {
            c.err("sync.gateway6", why);
            return None;
        }
        Some(a)
    });
    let keyed = raw.key_file.is_some();
    // Each key file read and its errors reported, whatever the other's.
    let key = raw.key_file.map(|path| sync_key(c, "sync.key_file", &path));
    let accept_key = raw.accept_key_file.map(|path| {
        let k = sync_key(c, "sync.accept_key_file", &path);
        if !keyed {
            c.err(
                "sync.accept_key_file",
                "a second key accepted beside sync.key_file, which is not set: set sync.key_file too (or remove this key)",
            );
            return None;
        }
        if k.is_some() && k == key.flatten() {
            c.err(
                "sync.accept_key_file",
                format!("{path} holds the same key as sync.key_file: while the key changes it names the other key file (the old one, or the new one), and otherwise it is left out"),
            );
            return None;
        }
        k
    });
    let max_clock_skew = c.duration(
        "sync.max_clock_skew",
        raw.max_clock_skew.as_deref(),
        DEFAULT_SYNC_CLOCK_SKEW,
        true,
        MAX_SYNC_CLOCK_SKEW,
    );
    let max_clock_skew = c.at_least("sync.max_clock_skew", max_clock_skew, MIN_SYNC_CLOCK_SKEW);
    let max_clock_skew = max_clock_skew.filter(|_| {
        if raw.max_clock_skew.is_some() && !keyed {
            c.err(
                "sync.max_clock_skew",
                "applies only to keyed messages: set sync.key_file too (or remove this key)",
            );
            return false;
        }
        true
    });
    Some(SyncConfig {
        role: role?,
        peer: peer?,
        listen: listen?,
        interval: interval?,
        dead_after: dead_after?,
        gateway,
        gateway6,
        key: key.map(|k| k.ok_or(())).transpose().ok()?,
        accept_key: accept_key.map(|k| k.ok_or(())).transpose().ok()?,
        max_clock_skew: max_clock_skew?,
    })
}

/// Reads `[sync] key_file`: an absolute path to a regular file that only
/// its owner may read or write (mode 0600 or 0400: the key lets whoever
/// holds it steer the pair's election and install flows in the peer's
/// tables), of at least [`MIN_SYNC_KEY_LEN`] bytes besides trailing
/// whitespace and at most [`MAX_SYNC_KEY_FILE_LEN`]. The error never
/// shows the file's content.
fn sync_key(c: &mut Checker<'_>, at: &str, path: &str) -> Option<SyncKey> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let running = c
        .keys
        .map(|k| if at == "sync.key_file" { k[0] } else { k[1] });
    if let Some(Some(key)) = running {
        return Some(key);
    }
    if !path.starts_with('/') || path.contains('\0') {
        c.err(
            at,
            format!("{path:?} is not an absolute path: name the key file from the root, e.g. \"/etc/lb-appliance/sync.key\""),
        );
        return None;
    }
    let refuse = |c: &mut Checker<'_>, why: String| {
        c.err(at, why);
        None
    };
    // Only a regular file is opened: opening a device has effects of its
    // own (a watchdog arms, a tape rewinds), and --check, which runs
    // before every start, touches no device (found in review). The path is
    // resolved once, to a descriptor that opens nothing (O_PATH); what it
    // names is looked at through that descriptor, and only a regular file
    // is then opened for reading, through /proc/self/fd: the file looked
    // at, never one swapped in after the look (the race a stat of the path
    // then an open of it had).
    let mut file = match open_regular(path) {
        Ok(f) => f,
        Err(OpenError::Io(e)) => return refuse(c, format!("{path}: {e}")),
        Err(OpenError::NotRegular) => return refuse(c, format!("{path} is not a regular file")),
        Err(OpenError::Changed) => {
            return refuse(
                c,
                format!("{path} changed while it was being opened: try again"),
            )
        }
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return refuse(c, format!("{path}: {e}")),
    };
    // Its owner may read and rewrite it whatever its mode, so forge keyed
    // sync messages: only root or the appliance's own user (found in
    // audit: a key file of another user was taken).
    let owner = std::os::unix::fs::MetadataExt::uid(&meta);
    let me = rustix::process::geteuid().as_raw();
    if owner != 0 && owner != me {
        return refuse(
            c,
            format!("{path} belongs to user {owner}, who may read and rewrite it: a key file must be root's or the appliance's own user's (chown root {path})"),
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return refuse(
            c,
            format!("{path} has mode {mode:04o}: group and others may read it; only its owner may (chmod 600 {path})"),
        );
    }
    let mut bytes = Vec::new();
    if let Err(e) = file
        .by_ref()
        .take(MAX_SYNC_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
    {
        return refuse(c, format!("{path}: {e}"));
    }
    if bytes.len() as u64 > MAX_SYNC_KEY_FILE_LEN {
        return refuse(
            c,
            format!("{path} is longer than {MAX_SYNC_KEY_FILE_LEN} bytes: not a key file"),
        );
    }
    let len = crate::secret_of(&bytes).len();
    if len < MIN_SYNC_KEY_LEN {
        return refuse(
            c,
            format!("{path} holds {len} bytes of key (trailing whitespace not counted); at least {MIN_SYNC_KEY_LEN} are needed: write one with openssl rand -hex 32 > {path}"),
        );
    }
    Some(SyncKey::from_secret(&bytes))
}

/// Why [`open_regular`] opened nothing.
pub(crate) enum OpenError {
    Io(std::io::Error),
    NotRegular,
    Changed,
}

/// Opens `path` for reading if it is a regular file: resolved once to an
/// `O_PATH` descriptor (which opens no device and waits on no FIFO),
/// looked at through it, then reopened through `/proc/self/fd`, which
/// opens that very file whatever the path names by then. Without `/proc`
/// (a chroot, a minimal container) the path is opened again, without
/// blocking, and must still be that file (found in review: every read
/// failed there, and `ctl` took the failure for "no config file").
pub(crate) fn open_regular(path: impl AsRef<std::path::Path>) -> Result<std::fs::File, OpenError> {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::AsRawFd;
    let io = |e: rustix::io::Errno| OpenError::Io(e.into());
    let at = rustix::fs::open(path.as_ref(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(io)?;
    let looked = rustix::fs::fstat(&at).map_err(io)?;
    if rustix::fs::FileType::from_raw_mode(looked.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(OpenError::NotRegular);
    }
    let via = format!("/proc/self/fd/{}", at.as_raw_fd());
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(via.as_str(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            rustix::fs::open(path.as_ref(), flags, Mode::empty()).map_err(io)?
        }
        Err(e) => return Err(io(e)),
    };
    let opened = rustix::fs::fstat(&fd).map_err(io)?;
    if (opened.st_dev, opened.st_ino) != (looked.st_dev, looked.st_ino) {
        return Err(OpenError::Changed);
    }
    Ok(std::fs::File::from(fd))
}

/// "wan 198.18.0.2/24, lan ..." or "none".
fn describe_nets<'a>(nets: impl Iterator<Item = (&'a str, String)>) -> String {
    let list: Vec<String> = nets.map(|(name, cidr)| format!("{name} {cidr}")).collect();
    if list.is_empty() {
        "no port has an address of this family".to_string()
    } else {
        format!("ports: {}", list.join(", "))
    }
}

/// Addresses a VIP or a real must not be (found in review: both were
/// accepted). The appliance answers ARP and neighbor solicitations for
/// every VIP on every port, so a VIP that is a port's gateway, a static
/// neighbor or the network's own (IPv4 network or broadcast address,
/// IPv6 subnet-router anycast) takes that address from the hosts of the
/// segment: with the gateway's, every host there loses its router, and
/// the router's own answers are refused as coming from a VIP. A real that
/// is a VIP or a port's address sends its packets back to the appliance,
/// which forwards them again until their TTL runs out: each client packet
/// crosses the uplink some 60 times.
fn addresses_taken(c: &mut Checker<'_>, config: &Config) {
    // Looked up by address, not searched for each VIP and real (found in
    // audit: time grew with services times reals, neighbors or peers).
    let first_of = |addrs: &mut dyn Iterator<Item = IpAddr>| {
        let mut m: HashMap<IpAddr, usize> = HashMap::new();
        for (i, a) in addrs.enumerate() {
            m.entry(a).or_insert(i);
        }
        m
    };
    let neighbor_at = first_of(&mut config.neighbors.iter().map(|n| n.address));
    let vip_at = first_of(&mut config.services.iter().map(|s| s.vip));
    let mut peer_at: HashMap<IpAddr, (usize, usize)> = HashMap::new();
    for (k, p) in config.ports.iter().enumerate() {
        for (j, &a) in p.routing_peers.iter().enumerate() {
            peer_at.entry(a).or_insert((k, j));
        }
    }
    let routing_peer = |a: IpAddr| peer_at.get(&a).copied();
    let vip_taken = |vip: IpAddr| -> Option<String> {
        for (i, p) in config.ports.iter().enumerate() {
            let port = format!("port {} (ports[{i}])", p.name);
            if p.gateway.map(IpAddr::V4) == Some(vip) || p.gateway6.map(IpAddr::V6) == Some(vip) {
                return Some(format!(
                    "{vip} is the gateway of {port}: the appliance answers for every VIP, and would take the router's address from the segment"
                ));
            }
            match (vip, p.address, p.address6) {
                (IpAddr::V4(a), Some(net), _) if net.is_network_end(a) => {
                    return Some(format!(
                        "{vip} is the network or broadcast address of {port}'s network {}: not one host's",
                        net.network_cidr()
                    ));
                }
                (IpAddr::V6(a), _, Some(net)) if net.is_subnet_router(a) => {
                    return Some(format!(
                        "{vip} is the subnet-router anycast address of {port}'s network {}: the routers' on it",
                        net.network_cidr()
                    ));
                }
                _ => {}
            }
        }
        if let Some(k) = neighbor_at.get(&vip) {
            return Some(format!("{vip} is the address of neighbors[{k}], a host on the segment: the appliance answers for every VIP, and would take it"));
        }
        // Found in audit: a routing peer's address was accepted as a VIP,
        // and the BGP session to it would have become VIP traffic.
        routing_peer(vip).map(|(k, j)| format!(
            "{vip} is ports[{k}].routing_peers[{j}], a BGP/BFD peer: the appliance answers for every VIP, and would take the peer's address (and its session)"
        ))
    };
    // A static neighbor at a port's own address or MAC (found in audit:
    // both were taken; frames to it would come back to the appliance).
    for (k, n) in config.neighbors.iter().enumerate() {
        for (i, p) in config.ports.iter().enumerate() {
            let own = p.address.map(|a| IpAddr::V4(a.address)) == Some(n.address)
                || p.address6.map(|a| IpAddr::V6(a.address)) == Some(n.address);
            if own {
                c.err(
                    format!("neighbors[{k}].address"),
                    format!(
                        "{} is the address of port {} (ports[{i}]): the appliance's own, not a neighbor's",
                        n.address, p.name
                    ),
                );
            }
            if p.mac == Some(n.mac) {
                c.err(
                    format!("neighbors[{k}].mac"),
                    format!(
                        "{} is the MAC of port {} (ports[{i}]): frames to the neighbor would come back to the appliance",
                        n.mac, p.name
                    ),
                );
            }
        }
    }
    // The floating gateway, which the active appliance answers for: no
    // other host's address either (found in audit: a static neighbor's or
    // a routing peer's was accepted, and a multicast one behind a very
    // short prefix).
    if let Some(s) = &config.sync {
        for (key, a) in [
            ("sync.gateway", s.gateway.map(IpAddr::V4)),
            ("sync.gateway6", s.gateway6.map(IpAddr::V6)),
        ] {
            let Some(a) = a else { continue };
            let not_host = match a {
                IpAddr::V4(a4) => not_a_host4(a4),
                IpAddr::V6(a6) => not_a_host6(a6, LinkLocal::Refused),
            };
            let why = if let Some(why) = not_host {
                Some(format!("{a} is no host's address: {why}"))
            } else if let Some(k) = neighbor_at.get(&a) {
                Some(format!("{a} is the address of neighbors[{k}], a host on the segment: the active appliance answers for the floating gateway, and would take it"))
            } else {
                routing_peer(a).map(|(k, j)| format!("{a} is ports[{k}].routing_peers[{j}], a BGP/BFD peer: the active appliance answers for the floating gateway, and would take the peer's address"))
            };
            if let Some(why) = why {
                c.err(key, why);
            }
        }
    }
    for (i, s) in config.services.iter().enumerate() {
        if let Some(why) = vip_taken(s.vip) {
            c.err(format!("services[{i}].vip"), why);
        }
        for (j, r) in s.reals.iter().enumerate() {
            let why = if let Some(&k) = vip_at.get(&r.address) {
                Some(format!(
                    "{} is the VIP of services[{k}] ({:?}): a real is a host behind the appliance, and packets to a VIP come back to it (a loop until their TTL runs out)",
                    r.address, config.services[k].name
                ))
            } else {
                config.ports.iter().enumerate().find_map(|(k, p)| {
                    let own = p.address.map(|n| IpAddr::V4(n.address)) == Some(r.address)
                        || p.address6.map(|n| IpAddr::V6(n.address)) == Some(r.address);
                    own.then(|| {
                        format!(
                            "{} is the address of port {} (ports[{k}]): the appliance's own, not a real server's",
                            r.address, p.name
                        )
                    })
                })
            };
            if let Some(why) = why {
                c.err(format!("services[{i}].reals[{j}].address"), why);
            }
        }
    }
}

/// Why a floating gateway address may not be `a`: a VIP or a real's
/// address.
fn floating_clash(a: IpAddr, services: &[ServiceConfig]) -> Option<String> {
    for (i, s) in services.iter().enumerate() {
        if s.vip == a {
            return Some(format!("{a} is the VIP of services[{i}] ({:?})", s.name));
        }
        if let Some(j) = s.reals.iter().position(|r| r.address == a) {
            return Some(format!(
                "{a} is the address of services[{i}].reals[{j}]: the reals route through the gateway, it cannot be one of them"
            ));
        }
    }
    None
}

/// A sync socket address `ip:port` or `[ipv6]:port`: a port other than 0,
/// an address that can be one host's (`unspecified` allows `0.0.0.0` and
/// `::`, for `listen`). Loopback is allowed: two appliances on one host
/// (tests) sync over it.
fn sync_address(
    c: &mut Checker<'_>,
    path: &str,
    text: &str,
    unspecified: bool,
) -> Option<SocketAddr> {
    let Ok(addr) = text.parse::<SocketAddr>() else {
        c.err(
            path,
            format!("invalid socket address {text:?}: expected ip:port (e.g. 192.0.2.2:8848, or [2001:db8::2]:8848)"),
        );
        return None;
    };
    if addr.port() == 0 {
        c.err(path, format!("{addr}: the port must be 1..=65535"));
        return None;
    }
    let ip = addr.ip();
    let why = match ip {
        _ if ip.is_unspecified() && unspecified => None,
        _ if ip.is_unspecified() => Some("the unspecified address, which names no host"),
        _ if ip.is_multicast() => Some("a multicast address; sync is unicast to one peer"),
        IpAddr::V4(a) if a.is_broadcast() => {
            Some("the broadcast address; sync is unicast to one peer")
        }
        IpAddr::V4(a) if a.octets()[0] >= 240 => Some("reserved (240.0.0.0/4), no host's"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("an IPv4-mapped address; write the IPv4 address itself")
        }
        _ => None,
    };
    if let Some(why) = why {
        c.err(path, format!("{ip} is {why}"));
        return None;
    }
    Some(addr)
}

fn services(c: &mut Checker<'_>, mut raw: Vec<RawService>, nets: &Nets) -> Vec<ServiceConfig> {
    if raw.len() > crate::MAX_SERVICES {
        c.err(
            "services",
            format!(
                "{} services: at most {} (each is rebuilt at every reload and health change)",
                raw.len(),
                crate::MAX_SERVICES
            ),
        );
        // The rest is not looked at (found in audit: refusing 40,000
        // services took 16 s of the control thread on a reload).
        raw.truncate(crate::MAX_SERVICES);
    }
    let total_reals: usize = raw
        .iter()
        .map(|s| s.reals.as_ref().map_or(0, Vec::len))
        .sum();
    if total_reals > crate::MAX_REALS {
        c.err(
            "services",
            format!(
                "{total_reals} reals over all services: at most {} (the dataplane keeps counters for that many)",
                crate::MAX_REALS
            ),
        );
    }
    for (i, s) in raw.iter().enumerate() {
        let n = s.reals.as_ref().map_or(0, Vec::len);
        if n > crate::MAX_SERVICE_REALS {
            c.err(
                format!("services[{i}].reals"),
                format!(
                    "{n} reals: one service takes at most {} (its scheduler's tables index them with 16 bits)",
                    crate::MAX_SERVICE_REALS
                ),
            );
        }
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut endpoints: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
    for (i, s) in raw.into_iter().enumerate() {
        let base = format!("services[{i}]");
        let path = |key: &str| format!("{base}.{key}");
        let name = c.name(&path("name"), s.name);
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
            .and_then(|v| c.ip_host(&path("vip"), &v, LinkLocal::Refused));
        if let Some(vip) = vip {
            if matches!(vip, IpAddr::V4(a) if a.is_link_local()) {
                c.err(
                    path("vip"),
                    format!("{vip} is link-local (169.254.0.0/16), which no router forwards (RFC 3927), as fe80::/10 VIPs are refused"),
                );
            } else if let Some((index, port_name)) = nets.port_address(vip) {
                c.err(
                    path("vip"),
                    format!("{vip} is the address of port {port_name} (ports[{index}]); a VIP must be a separate address"),
                );
            } else if !nets.has_family(vip) {
                c.err(
                    path("vip"),
                    format!(
                        "{vip} is {} and no port has an {} address ({}): nothing could answer for it or route its replies",
                        family(vip),
                        family(vip),
                        address_key(vip)
                    ),
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
                let endpoint = SocketAddr::new(vip, port);
                c.err(
                    &base,
                    format!("duplicate of services[{first}] (same vip, port and protocol {endpoint}/{protocol})"),
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
            Service {
                vip,
                port,
                forwarding,
            },
            nets,
        );
        if syn_proxy == Some(SynProxyMode::On) {
            syn_proxy_on(c, &path("syn_proxy"), protocol, forwarding, &reals);
        }
        out.push(ServiceConfig {
            name: name.unwrap_or_default(),
            vip: vip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
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

/// `syn_proxy = "on"` needs a TCP service all of whose reals are NAT (an
/// IPv4 VIP with IPv4 reals, or an IPv6 VIP with NAT66 reals, which the
/// reals' own checks hold to the VIP's family): the proxy answers the
/// handshake itself and must see (and translate) both directions of every
/// segment afterwards. `auto` is accepted anywhere and is inert where `on`
/// would be refused.
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
    let interval = c.at_least(
        &path("interval"),
        interval,
        crate::MIN_HEALTH_CHECK_INTERVAL,
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
    // `path`, `expect_status` and `host` are read only by http checks; with
    // other kinds they are allowed (a config may switch kinds back and
    // forth) and have no effect. `command` is different: it names a program
    // run as the appliance's user, so a stray one is refused rather than
    // kept unused.
    let is_http = kind == Some(HealthCheckKind::Http);
    let check_path = h.path.unwrap_or_else(|| "/".to_string());
    if is_http {
        if !check_path.starts_with('/') {
            c.err(path("path"), format!("{check_path:?} must start with '/'"));
        } else if let Some(why) = not_request_target(&check_path) {
            c.err(path("path"), format!("{check_path:?} {why}"));
        }
    }
    let expect_status = if is_http {
        let v = c.opt_int(&path("expect_status"), h.expect_status, 200u16, 100, 599);
        // An interim response (1xx but 101) is skipped, never the answer:
        // a check expecting one could never pass (found in audit: every
        // real went down at its first check, its error about the close).
        if let Some(status @ (100 | 102..=199)) = v {
            c.err(
                path("expect_status"),
                format!("{status} is an interim response, which the check skips to the final one: expect 101 or 200 to 599"),
            );
        }
        v
    } else {
        None
    };
    if let Some(host) = &h.host {
        if let Some(why) = not_host_header(host) {
            c.err(path("host"), format!("{host:?} {why}"));
        }
    }
    let user = match (kind, h.user) {
        (Some(HealthCheckKind::Script), Some(u)) => script_user(c, &path("user"), &u),
        (Some(k), Some(_)) => {
            c.err(
                path("user"),
                format!(
                    "only for kind = \"script\" (this check is {k}); remove it or change the kind"
                ),
            );
            None
        }
        (None, _) | (_, None) => None,
    };
    let command = match (kind, h.command) {
        (Some(HealthCheckKind::Script), None) => {
            c.err(
                path("command"),
                "missing required key for kind = \"script\": the program and its arguments, e.g. [\"/usr/local/bin/check-db\", \"--quick\"]",
            );
            Vec::new()
        }
        (Some(HealthCheckKind::Script), Some(cmd)) => {
            script_command(c, &path("command"), &cmd, user.as_ref());
            cmd
        }
        (Some(k), Some(_)) => {
            c.err(
                path("command"),
                format!(
                    "only for kind = \"script\" (this check is {k}); remove it or change the kind"
                ),
            );
            Vec::new()
        }
        (None, cmd) => cmd.unwrap_or_default(),
        (Some(_), None) => Vec::new(),
    };
    let initial = c.word(&path("initial"), h.initial.as_deref(), InitialHealth::Up);
    HealthCheckConfig {
        kind: kind.unwrap_or(HealthCheckKind::Tcp),
        interval: interval.unwrap_or(Duration::from_secs(2)),
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
        rise: rise.unwrap_or(2),
        fall: fall.unwrap_or(3),
        path: check_path,
        expect_status: expect_status.unwrap_or(200),
        host: h.host,
        command,
        user,
        initial: initial.unwrap_or_default(),
    }
}

/// The longest `health_check.host`: a DNS name is at most 253 characters;
/// room for a `:port` after it.
pub(crate) const MAX_HOST_HEADER: usize = 260;

/// The most words in `health_check.command`, and the longest word: far
/// above any real check, low enough that a pasted file is refused.
pub(crate) const MAX_COMMAND_WORDS: usize = 64;
pub(crate) const MAX_COMMAND_WORD: usize = 4096;

/// Why `host` cannot be sent as a `Host` header, if it cannot: it goes
/// into the request as written, so anything but the characters of a URI
/// host and port (RFC 3986: letters, digits, `-._~`, `%`, `!$&'()*+,;=`,
/// and `:[]` for a port and an IPv6 literal) could end the header (CR,
/// LF) or the request line early.
fn not_host_header(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some("is empty; leave the key out to send the real's address".into());
    }
    if host.len() > MAX_HOST_HEADER {
        return Some(format!(
            "is {} bytes long; the most is {MAX_HOST_HEADER}",
            host.len()
        ));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b);
    host.bytes().position(|b| !allowed(b)).map(|i| {
        let what = match host.as_bytes()[i] {
            b'\r' => "a carriage return (CR)".to_string(),
            b'\n' => "a line feed (LF)".to_string(),
            b' ' => "a space".to_string(),
            b'\t' => "a tab".to_string(),
            b if b >= 0x80 => "a non-ASCII character (write an international name in its xn-- form)".to_string(),
            b if b.is_ascii_control() => format!("the control character 0x{b:02x}"),
            b => format!("{:?}", char::from(b)),
        };
        format!("contains {what} at byte {i}; a Host header is a host name or address, optionally with :port")
    })
}

/// Why `path` cannot be the target of the check's request line, if it
/// cannot: a space, a control character or a non-ASCII byte would break
/// the request (percent-encode them).
fn not_request_target(path: &str) -> Option<String> {
    if path.len() > 2048 {
        return Some(format!("is {} bytes long; the most is 2048", path.len()));
    }
    path.bytes().position(|b| !b.is_ascii_graphic()).map(|i| {
        format!("contains a space, control or non-ASCII byte at byte {i}; percent-encode it")
    })
}

/// The user a script check runs as (`user`): found in `/etc/passwd`, and
/// one the appliance can switch to (and kill the program of).
fn script_user(c: &mut Checker<'_>, path: &str, spec: &str) -> Option<crate::ScriptUser> {
    // Looked up when the running config was loaded: a `ctl` edit does not
    // look again (a user being edited in /etc/passwd does not fail it).
    if let Some(u) = c.known.and_then(|k| k.users.get(spec)) {
        return Some(u.clone());
    }
    let user = match crate::script::lookup_user(spec) {
        Ok(u) => u,
        Err(why) => {
            c.err(path, why);
            return None;
        }
    };
    // `user` is for running a check without root's privileges: root by
    // another name (`"0"`, an alias such as `toor`), or a user whose
    // primary group is root's, would run it with them while `--check`
    // and every failure say "as user ..." (found in review).
    if user.uid == 0 {
        c.err(
            path,
            format!("{spec:?} is root (uid 0): leave `user` out to run the program as the appliance's user, or name a user of its own"),
        );
        return None;
    }
    if user.gid == 0 {
        c.err(
            path,
            format!("{spec:?} has root's group (gid 0) as its primary group: the program would keep root's group; name a user of its own"),
        );
        return None;
    }
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let effective = match rustix::thread::capabilities(None) {
        Ok(sets) => sets.effective,
        Err(e) => {
            c.err(
                path,
                format!("the appliance's capabilities could not be read: {e}"),
            );
            return None;
        }
    };
    if let Some(why) = crate::script::cannot_switch(&user, me, effective) {
        c.err(path, why);
        return None;
    }
    Some(user)
}

/// Checks a script check's `command`: a program named by an absolute path
/// that exists and is executable now (so that a typo is refused at
/// `--check`, at start and at reload, with the running config unchanged,
/// instead of taking every real down at its first check), and words that
/// can be passed to `execve` (no NUL byte).
fn script_command(
    c: &mut Checker<'_>,
    path: &str,
    cmd: &[String],
    user: Option<&crate::ScriptUser>,
) {
    let Some(program) = cmd.first() else {
        c.err(
            path,
            "is empty: give the program and its arguments, e.g. [\"/usr/local/bin/check-db\"]",
        );
        return;
    };
    if cmd.len() > MAX_COMMAND_WORDS {
        c.err(
            path,
            format!("has {} words; the most is {MAX_COMMAND_WORDS}", cmd.len()),
        );
    }
    for (i, w) in cmd.iter().enumerate() {
        if w.contains('\0') {
            c.err(format!("{path}[{i}]"), "contains a NUL byte");
        } else if w.len() > MAX_COMMAND_WORD {
            c.err(
                format!("{path}[{i}]"),
                format!("is {} bytes long; the most is {MAX_COMMAND_WORD}", w.len()),
            );
        }
    }
    let at = format!("{path}[0]");
    // The program is printed in `--check`'s errors, in every failed
    // check and in the log (found in audit: a line feed in it forged log
    // lines, an escape sequence reached the terminal).
    if !program.contains('\0')
        && !c.printable(
            &at,
            program,
            "the program is printed in logs and in check failures",
        )
    {
        return;
    }
    if !program.starts_with('/') {
        c.err(
            at,
            format!("{program:?} is not an absolute path: the program is run without a shell or a PATH search (write e.g. \"/usr/bin/{program}\")"),
        );
        return;
    }
    if program.contains('\0') {
        return;
    }
    // A program the running config has was looked at when it was loaded;
    // a `ctl` edit does not look again (found in audit: while one
    // service's program was being replaced, a drain of another service
    // was refused). A reload looks at every one.
    if c.known.is_some_and(|k| k.programs.contains(program)) {
        return;
    }
    let me = rustix::process::geteuid().as_raw();
    if let Some(why) = program_refused(std::path::Path::new(program), me, user, 0) {
        c.err(at, why);
    }
}

/// Why a script check may not run the program at `path` (or, `depth` > 0,
/// the interpreter of a `#!` program), if it may not: it is missing, not
/// a regular file, not executable, or another user than root or `me` (the
/// appliance's user) could change it, or swap it through a folder or
/// symlink on its way; and the same of the interpreter its `#!` line
/// names, since the kernel runs that interpreter with the check's
/// privileges (found in review: a root-owned script whose `#!/opt/x/sh`
/// another user could rewrite gave that user root), and of that one's,
/// as deep as the kernel follows them.
fn program_refused(
    path: &std::path::Path,
    me: u32,
    user: Option<&crate::ScriptUser>,
    depth: usize,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => return Some(format!("{shown}: {e}")),
        Ok(m) if !m.is_file() => return Some(format!("{shown} is not a regular file")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            return Some(format!("{shown} is not executable (no x permission)"))
        }
        Ok(_) => {}
    }
    // It runs as the appliance's user, root under the unit: a program
    // another user could change, or swap through a folder or symlink on
    // its way, would run their code as root (found in audit; README asked
    // it of operators, nothing checked it), as keepalived's
    // `enable_script_security` refuses.
    use crate::owner::{
        denied_to, others_may_write, walk_searching, Denied, Unsafe, EXECUTE, READ,
    };
    // Run as `user`, every folder on the way must let it search (found
    // in session 41's closing note: a program `user` could not run was
    // taken, and every check of it failed at run time).
    let mut unsearchable = None;
    let walked = walk_searching(path, me, &mut |folder, m| {
        if let (Some(u), None) = (user, &unsearchable) {
            unsearchable = denied_to(folder, m, u.uid, u.gid, EXECUTE).map(|d| match d {
                Denied::By(why) => format!("cannot search folder {} ({why})", folder.display()),
                Denied::Unknown(why) => {
                    format!("may or may not search folder {}: {why}", folder.display())
                }
            });
        }
    });
    let (resolved, meta) = match walked {
        Ok((at, m)) => match others_may_write(&at, &m, me) {
            None => (at, m),
            Some(why) => return Some(changeable(&shown, &why, user)),
        },
        Err(Unsafe::Others(why)) => return Some(changeable(&shown, &why, user)),
        Err(Unsafe::Io(e)) => return Some(changeable(&shown, &e.to_string(), user)),
    };
    let head = match crate::script::head(&resolved) {
        Ok(h) => h,
        Err(why) => return Some(format!("{shown} {why}")),
    };
    if let Some(u) = user {
        // The kernel executes it; a `#!` script is then read by its
        // interpreter, as the user, and so is a program with neither a
        // `#!` line nor a binary's header, which glibc's `execvp` hands
        // to `/bin/sh` (found in review: one the user could execute but
        // not read was taken, and every check failed).
        // An interpreter (`depth` > 0) that is neither: the kernel checks
        // that it may be executed, then refuses its format, and the
        // script itself goes to `/bin/sh`; nothing reads the interpreter
        // (found in review: it was asked for read too).
        let want = match head {
            crate::script::Head::Binary => EXECUTE,
            crate::script::Head::Other if depth > 0 => EXECUTE,
            crate::script::Head::Script(..) | crate::script::Head::Other => READ | EXECUTE,
        };
        let denied = unsearchable.or_else(|| {
            denied_to(&resolved, &meta, u.uid, u.gid, want).map(|d| {
                let what = if want == EXECUTE {
                    "execute"
                } else {
                    "read and execute"
                };
                // (Found in review: an ACL that could not be read was
                // reported as a denial.)
                match d {
                    Denied::By(why) => format!("may not {what} it ({why})"),
                    Denied::Unknown(why) => format!("may or may not {what} it: {why}"),
                }
            })
        });
        if let Some(why) = denied {
            let outcome = if why.starts_with("may or may not") {
                "refused, since every check might fail"
            } else {
                "every check would fail"
            };
            return Some(format!(
                "{shown}: user {} (uid {}, gid {}, no other groups) {why}; {outcome} (give the user access, or run the check as another user)",
                u.name, u.uid, u.gid
            ));
        }
    }
    // Not a `#!` script: nothing more to look at.
    let crate::script::Head::Script(interpreter, arg) = head else {
        return None;
    };
    if depth + 1 >= crate::script::MAX_INTERPRETERS {
        return Some(format!(
            "{shown}: its interpreter {} is one #! program too many: the kernel runs at most {} in a row",
            interpreter.display(),
            crate::script::MAX_INTERPRETERS
        ));
    }
    if let Some(why) = program_refused(&interpreter, me, user, depth + 1) {
        return Some(format!("{shown}: its interpreter {why}"));
    }
    // `#!/usr/bin/env NAME`: `env` is checked above, and runs what it
    // finds along PATH, with the check's privileges (found in session
    // 41's closing note: not looked at, so a `python3` another user could
    // put in a folder early in PATH ran as root). Checked as an
    // interpreter is, and so is every folder PATH has before it.
    let env = interpreter.file_name() == Some(std::ffi::OsStr::new("env"));
    let arg = arg.filter(|_| env)?;
    let (target, search) = match crate::script::env_program(&arg) {
        Ok(run) => run,
        Err(why) => return Some(format!("{shown}: {why}")),
    };
    let target = target.as_os_str();
    let found = if std::os::unix::ffi::OsStrExt::as_bytes(target).contains(&b'/') {
        let target = std::path::Path::new(target);
        if !target.is_absolute() {
            return Some(format!(
                "{shown}: its #! line has env run {}, relative to the working folder (give an absolute path)",
                target.display()
            ));
        }
        target.to_path_buf()
    } else {
        // The PATH env searches: the appliance's (inherited by the
        // check), none (`-i`, `-u PATH`), or one the line sets (found in
        // review: `-S PATH=/x NAME` was looked for along the appliance's).
        let path = match search {
            crate::script::EnvPath::Inherited => {
                std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_EXEC_PATH.into())
            }
            crate::script::EnvPath::Unset => DEFAULT_EXEC_PATH.into(),
            crate::script::EnvPath::Set(p) => p,
        };
        let unsafe_folder = |dir: &std::path::Path| {
            // The last folder the walk looked in: where what is missing
            // would be.
            let mut last = None;
            match walk_searching(dir, me, &mut |f, m| {
                last = Some((f.to_path_buf(), m.clone()))
            }) {
                Ok((at, m)) => others_may_write(&at, &m, me),
                Err(Unsafe::Others(why)) => Some(why),
                // A folder that is not there holds nothing to run, unless
                // another user could create it (found in review: one in
                // a folder open to every user was taken).
                Err(Unsafe::Io(e)) => last.and_then(|(at, m)| {
                    others_may_write(&at, &m, me).map(|why| {
                        format!(
                            "it cannot be looked at ({e}), and {} could be written to: {why}",
                            at.display()
                        )
                    })
                }),
            }
        };
        match crate::script::find_in_path(target, &path, unsafe_folder) {
            Ok(p) => p,
            Err(why) => return Some(format!("{shown}: its #! line runs env: {why}")),
        }
    };
    program_refused(&found, me, user, depth + 1)
        .map(|why| format!("{shown}: the program its #! line has env run, {why}"))
}

/// The `PATH` `execvp` searches when the environment has none (glibc's).
const DEFAULT_EXEC_PATH: &str = "/bin:/usr/bin";

/// The refusal of a program another user than root could change. Run as
/// `user`, the same holds: whoever could change it decides which reals
/// get traffic (and, were it the user's own, a compromised service user
/// could steer the load balancer).
fn changeable(
    shown: &std::path::Display<'_>,
    why: &str,
    user: Option<&crate::ScriptUser>,
) -> String {
    let runs = match user {
        None => "the check runs it as root".to_string(),
        Some(u) => format!(
            "the check runs it as user {}, and its result decides which reals get traffic",
            u.name
        ),
    };
    format!("{shown} could be changed by another user than root: {why}; {runs} (keep it and every folder on its way writable by root only)")
}

/// What a service's reals are checked against (each `None` when invalid).
struct Service {
    vip: Option<IpAddr>,
    port: Option<u16>,
    forwarding: Option<ForwardingMethod>,
}

fn reals(
    c: &mut Checker<'_>,
    service: &str,
    raw: Vec<RawReal>,
    svc: Service,
    nets: &Nets,
) -> Vec<RealConfig> {
    let Service {
        vip,
        port: service_port,
        forwarding: service_forwarding,
    } = svc;
    let mut out = Vec::new();
    let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
    for (j, r) in raw.into_iter().enumerate() {
        let base = format!("{service}.reals[{j}]");
        let path = |key: &str| format!("{base}.{key}");
        let address =
            c.required(&path("address"), r.address)
                .and_then(|a| match a.parse::<Ipv4Addr>() {
                    // Loopback: a real on this host, which only its health
                    // checks reach (the tests' local servers); anything else
                    // of 127/8's kind is refused as for VIPs.
                    Ok(l) if l.is_loopback() => Some(IpAddr::V4(l)),
                    _ => c.ip_host(&path("address"), &a, LinkLocal::Refused),
                });
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
                let endpoint = SocketAddr::new(address, port);
                c.err(
                    &base,
                    format!(
                        "duplicate of {service}.reals[{first}] (same address and port {endpoint})"
                    ),
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
        if let (Some(f), Some(address)) = (forwarding, address) {
            real_address(c, &path("address"), address, f, vip, nets);
        }
        out.push(RealConfig {
            address: address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: port.unwrap_or(0),
            weight: weight.unwrap_or(1),
            forwarding: forwarding.unwrap_or(ForwardingMethod::Nat),
        });
    }
    out
}

/// The family and reachability rules of one real, each reported at its
/// `address`; at most one error per real.
///
/// - nat and dr keep the family: nat rewrites addresses within one, dr only
///   the MAC, so the real must be in the VIP's family.
/// - tun: IPv4 in IPv4 (IPIP), IPv6 in IPv6 and IPv4 in IPv6 (as Katran
///   offers); never IPv6 in IPv4 (6in4), refused.
/// - dr: on a connected network of its family.
/// - nat and tun: reachable, on a connected network of its family or through
///   a port's gateway of that family. For IPv4 this is checked only where no
///   port has an IPv4 address: an IPv4 real beyond every network with no
///   gateway was accepted before IPv6 (and is dropped as `no_route`).
fn real_address(
    c: &mut Checker<'_>,
    path: &str,
    address: IpAddr,
    f: ForwardingMethod,
    vip: Option<IpAddr>,
    nets: &Nets,
) {
    if let Some(vip) = vip.filter(|v| v.is_ipv4() != address.is_ipv4()) {
        let why = match (f, vip) {
            (ForwardingMethod::Tunnel, IpAddr::V4(_)) => None,
            (ForwardingMethod::Tunnel, IpAddr::V6(_)) => Some(
                "tun cannot carry IPv6 in IPv4 (6in4): give an IPv6 VIP IPv6 reals (6in6); IPv6 reals may also serve an IPv4 VIP (4in6)".to_string(),
            ),
            (ForwardingMethod::Nat, _) => Some(
                "a nat real must be in the VIP's family: nat translates addresses within one family".to_string(),
            ),
            (ForwardingMethod::DirectRoute, _) => Some(
                "a dr real must be in the VIP's family: dr changes only the MAC address".to_string(),
            ),
        };
        if let Some(why) = why {
            c.err(
                path,
                format!(
                    "{address} is {} and the VIP {vip} is {}: {why}",
                    family(address),
                    family(vip)
                ),
            );
            return;
        }
    }
    // IPv6 is never fragmented on the way, and a "packet too big" below
    // 1280 is not believed (RFC 8201): an IPv6 packet of the minimum MTU
    // must fit the tunnel.
    if let (ForwardingMethod::Tunnel, IpAddr::V6(real), Some(IpAddr::V6(_))) = (f, address, vip) {
        if let Some(mtu) = nets.mtu6(real).filter(|&m| m < IPV6_MIN_MTU + 40) {
            c.err(
                path,
                format!(
                    "{address} is reached by a port of MTU {mtu}: 6in6 adds a 40-byte header, so the port needs an MTU of at least {} for an IPv6 packet of {IPV6_MIN_MTU} bytes, the IPv6 minimum, to fit the tunnel",
                    IPV6_MIN_MTU + 40
                ),
            );
            return;
        }
    }
    if let Some(why) = nets.network_end(address) {
        c.err(path, why);
        return;
    }
    if !nets.complete || nets.connected(address) {
        return;
    }
    let no_family = match address {
        IpAddr::V4(_) => nets.v4.is_empty(),
        IpAddr::V6(_) => nets.v6.is_empty(),
    };
    if f == ForwardingMethod::DirectRoute {
        let message = if no_family {
            format!(
                "a dr real must be on a connected network, and no port has an {} address ({})",
                family(address),
                address_key(address)
            )
        } else if address.is_ipv4() {
            format!(
                "a dr real must be on a connected network ({})",
                nets.describe(address)
            )
        } else {
            format!(
                "a dr real must be on a connected IPv6 network ({})",
                nets.describe(address)
            )
        };
        c.err(path, message);
        return;
    }
    let message = match address {
        IpAddr::V4(_) if no_family => format!(
            "{address} is not reachable: no port has an IPv4 address (address)"
        ),
        IpAddr::V4(_) => return,
        IpAddr::V6(_) if nets.gateway6.is_some() => return,
        IpAddr::V6(_) if no_family => format!(
            "{address} is not reachable: no port has an IPv6 address (address6)"
        ),
        IpAddr::V6(_) => format!(
            "{address} is not reachable: it is on no connected IPv6 network ({}) and no port has a gateway6",
            nets.describe(address)
        ),
    };
    c.err(path, message);
}
