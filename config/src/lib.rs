//! The `lb.toml` contract: schema, validation, and the validated runtime form.
//!
//! Design: text is parsed into a loose private serde schema (`schema`), then
//! `validate` checks everything and reports every problem at once, each with
//! its key path, and only a fully valid file becomes the typed [`Config`].
#![deny(unsafe_code)]

mod cidr;
mod duration;
mod lcores;
mod mac;
pub mod owner;
mod schema;
mod script;
mod validate;

use std::fmt;

pub use cidr::{Ipv4Cidr, Ipv6Cidr};
pub use duration::{format_duration, parse_duration};
pub use lcores::{parse_core_list, parse_core_mask, parse_lcores_map, RTE_MAX_LCORE};
pub use mac::MacAddr;
pub use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
pub use std::time::Duration;
pub use validate::{invisible_format, shown, unsafe_to_print};

/// The name used as the error path for syntax errors when text is not read from a file.
pub const DEFAULT_SOURCE: &str = "lb.toml";

/// The most services one config may have. The first compile builds
/// every service's scheduler on the control thread (20,000 `mh` services
/// took 12 s and 2.5 GB, found in review; 4,096 of 16 reals about 17 s,
/// about 4 s since a Maglev build takes no division per probe); later
/// ones (a reload, a `ctl` edit, a health change) rebuild only the
/// services whose eligible reals changed, and services over the same
/// reals share one.
pub const MAX_SERVICES: usize = 4_096;

/// The most ports one config may have: DPDK's `RTE_MAX_ETHPORTS` as
/// Debian builds it, and what the workers keep per-port counters for
/// (`lb_core::stats::MAX_PORTS`); a file with more passed `--check` and
/// then could not start (found in audit, as was validation time growing
/// with the square of the ports' count in a file of 16 MiB).
pub const MAX_PORTS: usize = 32;

/// The most routing peers (`ports[N].routing_peers`) one port may list:
/// far more BGP and BFD sessions than one segment needs.
pub const MAX_ROUTING_PEERS: usize = 256;

/// The most reals one config may have, over all its services: the
/// dataplane keeps counters for at most this many reals at a time
/// (`lb_core::snapshot::MAX_REALS`; a removed real's slot is given to a
/// new one once its flows have ended), so a file with more passed
/// `--check` and then could not start.
pub const MAX_REALS: usize = 65_536;

/// The IPv6 minimum link MTU (RFC 8200 §5): what a port with `address6`
/// needs at least (validation for the config's MTU, the dataplane for the
/// device's).
pub const IPV6_MIN_MTU: u16 = 1280;

/// The longest config file read: far more than 4,096 services and 65,536
/// reals take, and little enough to parse well within the control
/// thread's watchdog on a reload.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file as the appliance does, on start and on every
/// reload: only a regular file (a FIFO or a device in its place is refused
/// at once, never waited on or opened: found in audit, a FIFO there
/// blocked the control thread until the watchdog killed the appliance),
/// of at most [`MAX_CONFIG_BYTES`], in UTF-8.
pub fn read_config_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let file = validate::open_regular(path).map_err(|e| match e {
        validate::OpenError::Io(e) => e,
        validate::OpenError::NotRegular => invalid("not a regular file".to_string()),
        validate::OpenError::Changed => invalid("changed while it was being opened".to_string()),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(format!(
            "longer than {} MiB: not a config file",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|_| invalid("not valid UTF-8".to_string()))
}

/// The most reals one service may have: a scheduler's tables index them
/// with a `u16` (`lb_core::scheduler::MAX_BACKENDS`), so one more would be
/// configured, up and counted, and never get a flow (found in audit).
pub const MAX_SERVICE_REALS: usize = 65_535;

/// The longest flow timeout (`flows.tcp_timeout`, `tcp_fin_timeout`,
/// `tcp_syn_timeout`, `udp_timeout`) and `services[].persistence`: 24 days
/// (`576h`). A worker's clock is a wrapping `u32` of milliseconds and a flow
/// expires when the time since its last packet, taken modulo 2^32, exceeds
/// its timeout; so a timeout must stay below 2^31 ms (about 24.8 days) to
/// leave the sweep as long again to find it. 24 days is the round number
/// under that.
pub const MAX_FLOW_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 60 * 60);

/// The longest `health_check.interval`: 1 hour. Nothing breaks above it, but
/// a real checked less often than hourly is not watched; the bound is there
/// so that a typo (`"2h"` for `"2s"`) is refused rather than obeyed.
pub const MAX_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The shortest `health_check.interval`: 10 ms. Found in audit: `1ms` was
/// taken (from the file or `ctl add-service --set`), and every real's
/// checker then connected, or started its script, a thousand times a
/// second.
pub const MIN_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// The longest `[announce] withdraw_delay`: 20 s. A clean stop waits that
/// long after withdrawing, on top of the health checks under way (up to
/// `MAX_HEALTH_CHECK_TIMEOUT`), and the systemd unit allows 30 s.
pub const MAX_WITHDRAW_DELAY: Duration = Duration::from_secs(20);

/// The longest `health_check.timeout`: 10 s. Stopping the appliance waits
/// for the checks under way, each for up to its timeout, and the systemd unit
/// (`packaging/systemd/lb-appliance.service`) allows 30 s for a clean stop.
pub const MAX_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The default `sync.interval`: how often each appliance sends its status
/// (the heartbeat a backup judges the primary alive by). Flow records go
/// sooner, every 10 ms (or every interval if shorter), so what a takeover
/// loses is the new flows of about the last 10 ms.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// The shortest `sync.interval`: 10 ms. Each interval the sender wakes,
/// collects every worker's events and sends at least one datagram (a
/// heartbeat when there is nothing else); below 10 ms that is waking for
/// nothing, and a burst of flows is not batched any better.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);

/// The longest `sync.interval`: 5 s. The peer's silence is how a backup
/// will tell that the primary is dead (`dead_after`, by default a few
/// intervals): above 5 s a failover would start too late.
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// The longest `[sync] dead_after`.
pub const MAX_SYNC_DEAD_AFTER: Duration = Duration::from_secs(60);

/// The default `[sync] max_clock_skew`: how far apart the two appliances'
/// clocks may be for keyed sync messages to be taken (each carries the
/// sender's time, and one older or newer than this is refused as
/// `stale`). NTP keeps a pair within milliseconds; 10 s leaves room for a
/// box whose NTP stopped days ago, and bounds what a recorded message
/// replayed to a restarted appliance can do to 10 s after it was sent.
pub const DEFAULT_SYNC_CLOCK_SKEW: Duration = Duration::from_secs(10);

/// The shortest `[sync] max_clock_skew`: 1 s.
pub const MIN_SYNC_CLOCK_SKEW: Duration = Duration::from_secs(1);

/// The longest `[sync] max_clock_skew`: 5 minutes.
pub const MAX_SYNC_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The fewest bytes a `[sync] key_file` must hold (trailing whitespace not
/// counted): 32, which as hex digits are 128 bits (a recorded message
/// lets a key be guessed offline, so a short one will not do). `openssl
/// rand -hex 32` writes 64.
pub const MIN_SYNC_KEY_LEN: usize = 32;

/// The most bytes a `[sync] key_file` may hold: a longer file is not a
/// key file.
pub const MAX_SYNC_KEY_FILE_LEN: u64 = 4096;

/// The secret of `[sync] key_file` as sync messages are keyed with: the
/// SHA-256 of the file's bytes, trailing whitespace left out (so that a
/// copy saved by an editor with a final newline is the same key). Both
/// appliances of a pair need the same file. `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncKey(pub [u8; 32]);

impl SyncKey {
    /// The key of a key file's bytes.
    pub fn from_secret(bytes: &[u8]) -> SyncKey {
        use sha2::{Digest, Sha256};
        SyncKey(Sha256::digest(secret_of(bytes)).into())
    }

    /// A short name of the key for logs and `--check` (8 hex digits of a
    /// hash of it under a label of its own): two appliances show the same
    /// id when, and in practice only when, their key files hold the same
    /// secret, so an operator can compare them without showing either.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::new()
            .chain_update(b"lb-appliance sync key id\0")
            .chain_update(self.0)
            .finalize();
        h[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A key file's bytes without their trailing whitespace.
pub(crate) fn secret_of(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncKey(..)")
    }
}

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// Real-server scheduler of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `rr`
    RoundRobin,
    /// `wrr`
    WeightedRoundRobin,
    /// `lc`
    LeastConnection,
    /// `wlc`
    WeightedLeastConnection,
    /// `sh`
    SourceHash,
    /// `mh` (Maglev hashing)
    Maglev,
}

/// How packets reach a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardingMethod {
    /// `nat`: destination rewritten, replies come back through the balancer.
    Nat,
    /// `tun`: IP-in-IP encapsulation: IPIP (IPv4 in IPv4), 6in6, or 4in6
    /// (an IPv4 VIP with IPv6 reals); never 6in4.
    Tunnel,
    /// `dr`: MAC rewrite on a connected network.
    DirectRoute,
}

/// Whether a TCP service's new connections are answered by the appliance
/// with a SYN cookie before the real sees them (a SYN proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SynProxyMode {
    /// `off`: every SYN goes to a real, as before.
    Off,
    /// `on`: every new connection is proxied (TCP services whose reals
    /// are all NAT, IPv4 or NAT66).
    On,
    /// `auto` (the default): proxied while the worker is under SYN pressure
    /// (the flow table of the service's family at least half full); inert
    /// on a UDP service or one with a real that is not NAT.
    #[default]
    Auto,
}

/// Which side of a connection-sync pair this appliance is (`[sync] role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncRole {
    /// `primary`: sends its flows' creations, changes and removals.
    Primary,
    /// `backup`: installs what the primary sends, to continue those flows
    /// after a takeover.
    Backup,
}

/// Health check of a service's reals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthCheckKind {
    Tcp,
    Http,
    /// A program of the operator's (`command`), as keepalived's
    /// `MISC_CHECK`: exit status 0 is success.
    Script,
    None,
}

/// The health a checked real has until its checks say otherwise
/// (`[services.health_check] initial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitialHealth {
    /// `up` (the default, as keepalived without `alpha`): the real takes
    /// flows from the start, and its first failed check takes it down.
    #[default]
    Up,
    /// `down` (keepalived's `alpha` mode): the real takes no flows until
    /// `rise` checks in a row succeeded.
    Down,
}

/// How a worker polls its queues when they are empty (`[workers] poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PollMode {
    /// `busy` (the default): every worker polls without pause, so a packet
    /// is picked up within one poll, at the price of a whole CPU per worker
    /// even when idle.
    #[default]
    Busy,
    /// `adaptive`: after a run of empty polls the worker pauses, then sleeps
    /// in short growing steps (at most 1 ms), and polls busily again from
    /// the first packet; for machines whose CPUs other programs share.
    Adaptive,
}

/// Implements the `lb.toml` words for an enum: `Display`, `FromStr` and the accepted list.
macro_rules! config_words {
    ($ty:ty { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// The words accepted in `lb.toml`, in order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The `lb.toml` word for this value.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok(Self::$variant),)+
                    _ => Err(format!(
                        "unknown value {s:?}; accepted values: {}",
                        Self::WORDS.join(", ")
                    )),
                }
            }
        }
    };
}

config_words!(Protocol { Tcp => "tcp", Udp => "udp" });
config_words!(SchedulerKind {
    RoundRobin => "rr",
    WeightedRoundRobin => "wrr",
    LeastConnection => "lc",
    WeightedLeastConnection => "wlc",
    SourceHash => "sh",
    Maglev => "mh",
});
config_words!(ForwardingMethod { Nat => "nat", Tunnel => "tun", DirectRoute => "dr" });
config_words!(SynProxyMode { Off => "off", On => "on", Auto => "auto" });
config_words!(SyncRole { Primary => "primary", Backup => "backup" });
config_words!(HealthCheckKind { Tcp => "tcp", Http => "http", Script => "script", None => "none" });
config_words!(InitialHealth { Up => "up", Down => "down" });
config_words!(PollMode { Busy => "busy", Adaptive => "adaptive" });

/// A validated `lb.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dpdk: DpdkConfig,
    pub workers: WorkersConfig,
    pub ports: Vec<PortConfig>,
    pub neighbors: Vec<NeighborConfig>,
    pub flows: FlowsConfig,
    pub metrics: MetricsConfig,
    pub services: Vec<ServiceConfig>,
    /// `[announce]`: None without the section (nothing is announced).
    pub announce: Option<AnnounceConfig>,
    /// `[sync]`; `None` without the section (no connection sync).
    pub sync: Option<SyncConfig>,
    /// `[control]`: the runtime control socket of `lb-appliance ctl`.
    pub control: ControlConfig,
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlConfig {
    /// `socket`: the path of the Unix socket `lb-appliance ctl` talks to,
    /// created mode 0660 (owner and group only). Default
    /// [`DEFAULT_CONTROL_SOCKET`]. Restart-only.
    pub socket: std::path::PathBuf,
}

/// Where the control socket is unless `[control] socket` says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/lb-appliance/control.sock";

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: DEFAULT_CONTROL_SOCKET.into(),
        }
    }
}

/// `[announce]`: the VIPs' host routes the appliance keeps in a kernel
/// routing table, for a routing daemon (BIRD, FRR) to export over BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnounceConfig {
    /// `table`: the kernel routing table, 1..=252 (253-255 are the
    /// kernel's default, main and local tables; 0 is unspecified).
    pub table: u32,
    /// `withdraw_delay`: how long a clean stop waits after withdrawing
    /// every route before the ports stop, so that routers move traffic
    /// first.
    pub withdraw_delay: Duration,
}

/// `[sync]`: connection sync with the other appliance of a primary/backup
/// pair, over UDP on a kernel interface or a management NIC (not through
/// the dataplane). Restart-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncConfig {
    pub role: SyncRole,
    /// `peer`: the other appliance's sync address and port. Only datagrams
    /// from this address are read; the primary sends to it.
    pub peer: SocketAddr,
    /// `listen`: the local address and port the sync socket binds (both
    /// roles: the backup receives there, the primary sends from it).
    /// Resolved: without the key, the unspecified address of the peer's
    /// family on the peer's port (`0.0.0.0:PORT` or `[::]:PORT`), so that
    /// two appliances can share one `[sync]` text but for `peer`.
    pub listen: SocketAddr,
    /// `interval`: how often the sender sends a batch (at least a
    /// heartbeat), [`MIN_SYNC_INTERVAL`]..=[`MAX_SYNC_INTERVAL`], default
    /// [`DEFAULT_SYNC_INTERVAL`].
    pub interval: Duration,
    /// `dead_after`: how long a silent peer is taken for dead (the backup
    /// then takes over): at least three times `interval`, at most
    /// [`MAX_SYNC_DEAD_AFTER`]; default three intervals.
    pub dead_after: Duration,
    /// `gateway`: the floating address the NAT reals route through, which
    /// only the active appliance of the pair answers ARP for (on the port
    /// whose connected network holds it).
    pub gateway: Option<Ipv4Addr>,
    /// `gateway6`: the same for IPv6 (Neighbor Solicitations).
    pub gateway6: Option<Ipv6Addr>,
    /// `key_file`: read when the config is loaded; with it every message
    /// sent is tagged (HMAC-SHA256) and every message received must carry
    /// a valid tag, a fresh time and a counter not seen before. Without
    /// it, messages are neither tagged nor checked (a tag received is
    /// ignored), as before.
    pub key: Option<SyncKey>,
    /// `accept_key_file`: a second key, read as `key_file` is and only
    /// with it, that messages received may be tagged with too; nothing is
    /// sent with it. It is what lets a pair change its key with neither
    /// appliance refusing the other's messages at any moment (README,
    /// "Changing the key").
    pub accept_key: Option<SyncKey>,
    /// `max_clock_skew`: how far a keyed message's time may be from this
    /// appliance's clock, [`MIN_SYNC_CLOCK_SKEW`]..=[`MAX_SYNC_CLOCK_SKEW`],
    /// default [`DEFAULT_SYNC_CLOCK_SKEW`]; only with `key_file`.
    pub max_clock_skew: Duration,
}

impl SyncConfig {
    /// What only a restart changes: all but `key_file` (the key),
    /// `accept_key_file` and `max_clock_skew`, which a reload hands to the
    /// running sync thread, so that a pair is keyed, or its key changed,
    /// without a takeover.
    pub fn restart_part(&self) -> SyncConfig {
        SyncConfig {
            key: None,
            accept_key: None,
            max_clock_skew: DEFAULT_SYNC_CLOCK_SKEW,
            ..*self
        }
    }
}

/// `[dpdk]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DpdkConfig {
    /// Passed to `rte_eal_init` as given.
    pub eal_args: Vec<String>,
    /// Mempool size.
    pub mbufs: u32,
    /// Rx/tx burst size.
    pub burst: u16,
}

/// `[workers]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkersConfig {
    /// Lcores running pinned poll-mode workers.
    pub lcores: Vec<u32>,
    /// `poll`: busy polling, or backing off when idle. Needs a restart
    /// (read once by each worker as it starts).
    pub poll: PollMode,
}

/// One `[[ports]]` entry. A port has an IPv4 address, an IPv6 one, or both
/// (validation refuses neither); a gateway of a family needs the port's
/// address of that family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortConfig {
    pub name: String,
    /// PCI address or DPDK vdev string.
    pub device: String,
    /// `address`: the appliance's own IPv4 address and connected network.
    pub address: Option<Ipv4Cidr>,
    /// `address6`: the appliance's own IPv6 address and connected network
    /// (prefix length 1..=127).
    pub address6: Option<Ipv6Cidr>,
    /// `gateway`: IPv4 next hop beyond every connected network (one port at
    /// most).
    pub gateway: Option<Ipv4Addr>,
    /// `gateway6`: IPv6 next hop beyond every connected network (one port
    /// at most): on `address6`'s network, or link-local (`fe80::/10`),
    /// which is then reached on this port.
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: u16,
    /// Optional: the MAC address to give the port instead of the device's
    /// own (set at start; for vdevs whose MAC is made up, and for pinning a
    /// replacement NIC to the address the neighbors already know).
    pub mac: Option<MacAddr>,
    /// `kernel_interface`: the name of the kernel network interface (a
    /// `net_tap` device) that carries the port's MAC and addresses, and
    /// receives what is for the port's own address that the dataplane does
    /// not handle itself (the exception path). `None`: no such interface,
    /// and that traffic is dropped as before.
    pub kernel_interface: Option<String>,
    /// `routing_peers`: addresses of BGP and BFD peers beyond the port's
    /// connected network (multihop eBGP, iBGP between loopbacks, multihop
    /// BFD) whose traffic to the kernel interface counts as routing
    /// traffic, with its own budget, as a peer on the link does. Only with
    /// `kernel_interface`. Empty by default.
    pub routing_peers: Vec<std::net::IpAddr>,
}

/// One static `[[neighbors]]` entry: ARP for IPv4, neighbor discovery for
/// IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborConfig {
    pub address: IpAddr,
    pub mac: MacAddr,
}

/// `[flows]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowsConfig {
    /// Flow entries per worker.
    pub capacity: u32,
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub tcp_syn_timeout: Duration,
    pub udp_timeout: Duration,
}

/// `[metrics]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// One `[[services]]` entry (a virtual service).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceConfig {
    pub name: String,
    /// IPv4 or IPv6.
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: SchedulerKind,
    /// Default forwarding of this service's reals (already applied to each real).
    pub forwarding: ForwardingMethod,
    /// Zero: no persistence.
    pub persistence: Duration,
    /// `syn_proxy`: `on` only for TCP services whose reals are all NAT
    /// (IPv4, or NAT66 with an IPv6 VIP).
    pub syn_proxy: SynProxyMode,
    /// `None`: every real counts as up.
    pub health_check: Option<HealthCheckConfig>,
    pub reals: Vec<RealConfig>,
}

/// `[services.health_check]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// HTTP only (default `/`).
    pub path: String,
    /// HTTP only (default 200).
    pub expect_status: u16,
    /// HTTP only: the `Host` header sent, as written; `None` sends the
    /// real's `address:port` (`[v6]:port`).
    pub host: Option<String>,
    /// Script only: the program (an absolute path) and its arguments, run
    /// without a shell.
    pub command: Vec<String>,
    /// Script only: the user the program runs as (`user`); `None` runs it
    /// as the appliance's user (root under the unit).
    pub user: Option<ScriptUser>,
    /// The state of a real before its checks decide (a new real at start
    /// or added by a reload, or one whose check changed).
    pub initial: InitialHealth,
}

/// The user a script check's program runs as (`[services.health_check]
/// user`): looked up when the file is loaded, in `/etc/passwd`. The
/// program gets `uid`, `gid` (the user's primary group) and no
/// supplementary group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScriptUser {
    /// As the file gives it: a user name or a numeric uid.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One `[[services.reals]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RealConfig {
    /// In the VIP's family for `nat` and `dr`; for `tun`, IPv6 reals may
    /// serve an IPv4 VIP (4in6), not the reverse.
    pub address: IpAddr,
    pub port: u16,
    /// 0 drains the real.
    pub weight: u32,
    /// Resolved: the real's own setting or the service default.
    pub forwarding: ForwardingMethod,
}

/// One problem in a configuration: the key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// Key path such as `services[0].reals[1].port`, or the file for syntax errors.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors whose path is exactly `path`.
    pub fn at<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a ConfigError> + 'a {
        self.0.iter().filter(move |e| e.path == path)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// `prefix.key` for each key whose flag says it differs (the names a
/// refused reload gives).
fn keys_that_differ<'a>(
    prefix: &'a str,
    differ: &'a [(&'a str, bool)],
) -> impl Iterator<Item = String> + 'a {
    differ
        .iter()
        .filter(|(_, d)| *d)
        .map(move |(key, _)| format!("{prefix}.{key}"))
}

impl Config {
    /// Parses and validates `lb.toml` text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Self::parse_named(text, DEFAULT_SOURCE)
    }

    /// Like [`Config::parse`], naming `source` in syntax errors.
    pub fn parse_named(text: &str, source: &str) -> Result<Config, ConfigErrors> {
        Self::parse_with(text, source, None, None)
    }

    /// [`Config::parse`] of an edit of `running`'s text (`ctl`): `[sync]`'s
    /// key files are not read again, `running`'s keys stand for them (only
    /// a reload takes new keys; found in audit: a key file moved or being
    /// replaced for the next reload made every `ctl` change fail); nor
    /// are the programs of script checks `running` has looked at on disk
    /// again (found in audit: one service's program being replaced made a
    /// drain of another fail). A text longer than a config file may be
    /// ([`MAX_CONFIG_BYTES`]) is refused, as `ctl save` would write a file
    /// nothing reads (found in audit).
    pub fn parse_keeping_keys(text: &str, running: &Config) -> Result<Config, ConfigErrors> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigErrors(vec![ConfigError::new(
                DEFAULT_SOURCE,
                format!(
                    "the running configuration would be {} bytes, above the {} MiB a config file may have (a start, --check or a reload would refuse what ctl save wrote): trim it, then reload",
                    text.len(),
                    MAX_CONFIG_BYTES >> 20
                ),
            )]));
        }
        let keys = running.sync.as_ref().map(|s| [s.key, s.accept_key]);
        let scripts = running
            .services
            .iter()
            .filter_map(|s| s.health_check.as_ref())
            .filter(|h| h.kind == HealthCheckKind::Script);
        let known = validate::Known {
            programs: scripts
                .clone()
                .filter_map(|h| h.command.first().cloned())
                .collect(),
            users: scripts
                .filter_map(|h| h.user.clone())
                .map(|u| (u.name.clone(), u))
                .collect(),
        };
        Self::parse_with(text, DEFAULT_SOURCE, keys, Some(&known))
    }

    fn parse_with(
        text: &str,
        source: &str,
        keys: Option<[Option<SyncKey>; 2]>,
        known: Option<&validate::Known>,
    ) -> Result<Config, ConfigErrors> {
        let (raw, mut errors) = schema::read(text, source)?;
        let config = validate::validate(raw, &mut errors, keys, known);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads, parses and validates a file; a read error is reported on the file path.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        Self::load_text(path).map(|(c, _)| c)
    }

    /// [`Self::load`], and the text it was parsed from: what the appliance
    /// runs and what `ctl` edits must be the same bytes, read once.
    pub fn load_text(path: &std::path::Path) -> Result<(Config, String), ConfigErrors> {
        let name = path.display().to_string();
        let text = read_config_file(path)
            .map_err(|e| ConfigError::new(name.clone(), format!("cannot read: {e}")))?;
        Self::parse_named(&text, &name).map(|c| (c, text))
    }

    /// Where the appliance that runs the file at `path` listens (its
    /// `[control]` socket and `[metrics]` address), for the client
    /// commands (`ctl`, `status`). Only those keys are read and checked:
    /// the rest of the file, a key file only root may read among it, is
    /// the appliance's business (found in review: a group member of the
    /// socket could not run `ctl` with keyed sync configured). No file at
    /// `path`: the defaults.
    pub fn client_endpoints(
        path: &std::path::Path,
    ) -> Result<(ControlConfig, MetricsConfig), ConfigErrors> {
        let name = path.display().to_string();
        let text = match read_config_file(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ConfigError::new(name, format!("cannot read: {e}")).into()),
        };
        validate::client_endpoints(&text, &name)
    }

    /// The EAL main lcore (runs the control thread): `--main-lcore`, else the
    /// lowest lcore of the EAL core list; `None` when `eal_args` name neither.
    pub fn eal_main_lcore(&self) -> Option<u32> {
        lcores::eal_main_lcore(&self.dpdk.eal_args)
    }

    /// The kernel interface a VIP's host route goes through (`[announce]`):
    /// that of the port with the gateway of the VIP's family, else of the
    /// first port with an address of that family, else of the first port
    /// that has one; None when no port has a kernel interface.
    pub fn announce_interface(&self, vip: IpAddr) -> Option<&str> {
        let with = || self.ports.iter().filter(|p| p.kernel_interface.is_some());
        let gateway = |p: &&PortConfig| match vip {
            IpAddr::V4(_) => p.gateway.is_some(),
            IpAddr::V6(_) => p.gateway6.is_some(),
        };
        let family = |p: &&PortConfig| match vip {
            IpAddr::V4(_) => p.address.is_some(),
            IpAddr::V6(_) => p.address6.is_some(),
        };
        with()
            .find(gateway)
            .or_else(|| with().find(family))
            .or_else(|| with().next())
            .and_then(|p| p.kernel_interface.as_deref())
    }

    /// Index of the port whose connected network of `addr`'s family
    /// contains `addr`.
    pub fn port_for(&self, addr: IpAddr) -> Option<usize> {
        self.ports.iter().position(|p| match addr {
            IpAddr::V4(a) => p.address.is_some_and(|net| net.contains(a)),
            IpAddr::V6(a) => p.address6.is_some_and(|net| net.contains(a)),
        })
    }

    /// Names of the settings that differ from `new` and can only change with a
    /// restart: `dpdk`, `ports`, `workers.lcores`, `workers.poll`,
    /// `flows.capacity`, `metrics.listen`, `sync` (the sync socket is bound
    /// and each worker told its role at start; a role changed under running
    /// flows would have half of them synced one way and half the other).
    /// Everything else (services, neighbors, flow timeouts) may be reloaded.
    pub fn restart_required_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.dpdk != new.dpdk {
            out.push("dpdk");
        }
        if self.ports != new.ports {
            out.push("ports");
        }
        if self.workers.lcores != new.workers.lcores {
            out.push("workers.lcores");
        }
        if self.workers.poll != new.workers.poll {
            out.push("workers.poll");
        }
        if self.flows.capacity != new.flows.capacity {
            out.push("flows.capacity");
        }
        if self.metrics.listen != new.metrics.listen {
            out.push("metrics.listen");
        }
        if self.sync.map(|s| s.restart_part()) != new.sync.map(|s| s.restart_part()) {
            out.push("sync");
        }
        if self.control != new.control {
            out.push("control.socket");
        }
        out
    }

    /// The restart-only keys of `[sync]` that differ from `new`
    /// (`sync.peer`), or the section added or removed: what a refusal for
    /// [`Self::restart_required_changes`]'s `sync` names (it named only
    /// the section). The keys a reload takes (`key_file`,
    /// `accept_key_file`, `max_clock_skew`) are not among them.
    pub fn sync_changed(&self, new: &Config) -> Vec<String> {
        let (a, b) = match (&self.sync, &new.sync) {
            (Some(a), Some(b)) => (a, b),
            (None, Some(_)) => return vec!["sync added".to_string()],
            (Some(_), None) => return vec!["sync removed".to_string()],
            (None, None) => return Vec::new(),
        };
        keys_that_differ(
            "sync",
            &[
                ("role", a.role != b.role),
                ("peer", a.peer != b.peer),
                ("listen", a.listen != b.listen),
                ("interval", a.interval != b.interval),
                ("dead_after", a.dead_after != b.dead_after),
                ("gateway", a.gateway != b.gateway),
                ("gateway6", a.gateway6 != b.gateway6),
            ],
        )
        .collect()
    }

    /// The keys of `[dpdk]` that differ from `new` (`dpdk.burst`): what a
    /// refusal for [`Self::restart_required_changes`]'s `dpdk` names
    /// (found in audit: only the section was named).
    pub fn dpdk_changed(&self, new: &Config) -> Vec<String> {
        let (a, b) = (&self.dpdk, &new.dpdk);
        keys_that_differ(
            "dpdk",
            &[
                ("eal_args", a.eal_args != b.eal_args),
                ("mbufs", a.mbufs != b.mbufs),
                ("burst", a.burst != b.burst),
            ],
        )
        .collect()
    }

    /// The keys of `ports` that differ from `new` (`ports[0].mtu`), or
    /// the count of ports when that changed: what a refusal for
    /// [`Self::restart_required_changes`]'s `ports` names (found in audit:
    /// only the section was named).
    pub fn ports_changed(&self, new: &Config) -> Vec<String> {
        if self.ports.len() != new.ports.len() {
            return vec![format!(
                "{} ports instead of {}",
                new.ports.len(),
                self.ports.len()
            )];
        }
        let mut out = Vec::new();
        for (i, (a, b)) in self.ports.iter().zip(&new.ports).enumerate() {
            let prefix = format!("ports[{i}]");
            let differ = [
                ("name", a.name != b.name),
                ("device", a.device != b.device),
                ("address", a.address != b.address),
                ("address6", a.address6 != b.address6),
                ("gateway", a.gateway != b.gateway),
                ("gateway6", a.gateway6 != b.gateway6),
                ("mtu", a.mtu != b.mtu),
                ("mac", a.mac != b.mac),
                ("kernel_interface", a.kernel_interface != b.kernel_interface),
                ("routing_peers", a.routing_peers != b.routing_peers),
            ];
            out.extend(keys_that_differ(&prefix, &differ));
        }
        out
    }

    /// A human summary for `--check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let lcores: Vec<String> = self.workers.lcores.iter().map(u32::to_string).collect();
        let main = match self.eal_main_lcore() {
            Some(m) => format!("main lcore {m}"),
            None => "main lcore chosen by EAL".to_string(),
        };
        let _ = writeln!(
            s,
            "dpdk: {} mbufs, burst {}, eal args: {}",
            self.dpdk.mbufs,
            self.dpdk.burst,
            self.dpdk.eal_args.join(" ")
        );
        let _ = writeln!(
            s,
            "workers: lcores {} ({main}), poll {}",
            lcores.join(", "),
            self.workers.poll
        );
        let _ = writeln!(s, "ports: {}", self.ports.len());
        for p in &self.ports {
            let mut words = vec![p.name.clone(), p.device.clone()];
            words.extend(p.address.map(|a| a.to_string()));
            words.extend(p.address6.map(|a| a.to_string()));
            words.extend(p.gateway.map(|g| format!("gateway {g}")));
            words.extend(p.gateway6.map(|g| format!("gateway6 {g}")));
            if p.gateway.is_none() && p.gateway6.is_none() {
                words.push("no gateway".to_string());
            }
            words.extend(
                p.kernel_interface
                    .as_ref()
                    .map(|k| format!("kernel interface {k}")),
            );
            if !p.routing_peers.is_empty() {
                let peers: Vec<String> = p.routing_peers.iter().map(|a| a.to_string()).collect();
                words.push(format!("routing peers {}", peers.join(", ")));
            }
            let _ = writeln!(s, "  {} mtu {}", words.join(" "), p.mtu);
        }
        if !self.neighbors.is_empty() {
            let _ = writeln!(s, "neighbors: {}", self.neighbors.len());
            for n in &self.neighbors {
                let _ = writeln!(s, "  {} is-at {}", n.address, n.mac);
            }
        }
        let f = &self.flows;
        let _ = writeln!(
            s,
            "flows: capacity {} per worker, tcp {} (fin {}, syn {}), udp {}",
            f.capacity,
            format_duration(f.tcp_timeout),
            format_duration(f.tcp_fin_timeout),
            format_duration(f.tcp_syn_timeout),
            format_duration(f.udp_timeout)
        );
        let _ = writeln!(s, "metrics: listen {}", self.metrics.listen);
        let _ = writeln!(
            s,
            "control: socket {}",
            shown(&self.control.socket.display().to_string())
        );
        if let Some(a) = &self.announce {
            let _ = writeln!(
                s,
                "announce: VIP routes in kernel table {}, withdraw delay {}",
                a.table,
                format_duration(a.withdraw_delay)
            );
        }
        if let Some(sync) = &self.sync {
            let _ = writeln!(
                s,
                "sync: {} with peer {}, listen {}, every {}, dead after {}",
                sync.role,
                sync.peer,
                sync.listen,
                format_duration(sync.interval),
                format_duration(sync.dead_after)
            );
            let _ = writeln!(
                s,
                "{}",
                match sync.key {
                    Some(key) => format!(
                        "sync: keyed (HMAC-SHA256){}, clocks within {}; key id {}{}",
                        if sync.accept_key.is_some() {
                            ", a second key accepted (accept_key_file)"
                        } else {
                            ""
                        },
                        format_duration(sync.max_clock_skew),
                        key.id(),
                        sync.accept_key
                            .map(|k| format!(", accepted key id {}", k.id()))
                            .unwrap_or_default()
                    ),
                    None => "sync: not keyed (no key_file): run it on a link only the pair reaches"
                        .to_string(),
                }
            );
            match (sync.gateway, sync.gateway6) {
                (None, None) => {}
                (a, b) => {
                    let list: Vec<String> = a
                        .map(|a| a.to_string())
                        .into_iter()
                        .chain(b.map(|b| b.to_string()))
                        .collect();
                    let _ = writeln!(
                        s,
                        "sync: floating gateway {} (answered while active)",
                        list.join(" and ")
                    );
                }
            }
        }
        let _ = writeln!(s, "services: {}", self.services.len());
        for svc in &self.services {
            let reals = match svc.reals.len() {
                1 => "1 real".to_string(),
                n => format!("{n} reals"),
            };
            let health = match &svc.health_check {
                Some(h) if h.kind != HealthCheckKind::None => {
                    let what = match h.kind {
                        HealthCheckKind::Http => match &h.host {
                            Some(host) => {
                                format!("http {} host {host} expect {}", h.path, h.expect_status)
                            }
                            None => format!("http {} expect {}", h.path, h.expect_status),
                        },
                        HealthCheckKind::Script => match &h.user {
                            // Arguments may hold line feeds (`sh -c` over
                            // lines: found in review); the program and the
                            // user name cannot.
                            Some(u) => {
                                format!("script {} as {}", shown(&h.command.join(" ")), u.name)
                            }
                            None => format!("script {}", shown(&h.command.join(" "))),
                        },
                        k => k.to_string(),
                    };
                    let initially = match h.initial {
                        InitialHealth::Up => "",
                        InitialHealth::Down => ", initially down",
                    };
                    format!(
                        "health {what} every {}{initially}",
                        format_duration(h.interval)
                    )
                }
                _ => "no health check".to_string(),
            };
            let persistence = if svc.persistence.is_zero() {
                String::new()
            } else {
                format!(", persistence {}", format_duration(svc.persistence))
            };
            let persistence = if svc.protocol == Protocol::Tcp {
                format!("{persistence}, syn proxy {}", svc.syn_proxy)
            } else {
                persistence
            };
            let _ = writeln!(
                s,
                "  {} {} {} {} {}, {reals} ({health}){persistence}",
                svc.name,
                svc.protocol,
                SocketAddr::new(svc.vip, svc.port),
                svc.scheduler,
                svc.forwarding
            );
            for r in &svc.reals {
                let _ = writeln!(
                    s,
                    "    -> {} weight {} {}",
                    SocketAddr::new(r.address, r.port),
                    r.weight,
                    r.forwarding
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests;
