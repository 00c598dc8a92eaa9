//! Prometheus metrics and the status view. Workers keep their own counters
//! (one writer each, no shared cache lines); at every scrape the exporter
//! sums them per port, reason, real and worker, together with what the
//! control thread keeps (health, reloads, generation), and encodes the
//! result with the `prometheus` crate.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lb_core::snapshot::{ServiceView, Snapshot};
use lb_core::sync::{Refused, SyncCounters};

use crate::sync::SyncStatus;
use lb_core::{DropReason, WorkerStats};
use lb_dataplane::dpdk::{LcoreId, Port};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::status::{RealStatus, ServiceStatus, Status, WorkerStatus};

/// What the control thread knows and the exporter reads (a copy of it:
/// the control thread waits for the lock, not for a render).
#[derive(Debug, Clone)]
pub struct Shared {
    pub snapshot: Arc<Snapshot>,
    /// (service, real) -> [successes, failures] of health checks.
    pub health_checks: BTreeMap<(String, String), [u64; 2]>,
    /// (service, real) -> the last failed check's error, while failing.
    pub last_errors: BTreeMap<(String, String), String>,
    pub reloads_success: u64,
    pub reloads_failure: u64,
    /// Per worker: share of polls that found packets, over the last second.
    pub busy: Vec<f64>,
    /// `[announce]`: every VIP and whether its route is announced now
    /// (empty without the section).
    pub announced: BTreeMap<std::net::IpAddr, bool>,
    /// Every VIP of the snapshot, and every route in the table: the route
    /// changes `[announce]` made for it (0 without the section).
    pub route_changes: BTreeMap<std::net::IpAddr, u64>,
    /// `ctl zero`: each real's counters (flows created, packets, bytes) at
    /// the time, which `/status` (so `status` and `ctl list`) counts from.
    /// `/metrics` is never zeroed: Prometheus counters only grow.
    pub zeroed: BTreeMap<u32, [u64; 3]>,
}

impl Shared {
    /// Before anything happened: `snapshot` running on `workers` workers.
    pub fn new(snapshot: Arc<Snapshot>, workers: usize) -> Shared {
        Shared {
            snapshot,
            health_checks: BTreeMap::new(),
            last_errors: BTreeMap::new(),
            reloads_success: 0,
            reloads_failure: 0,
            busy: vec![0.0; workers],
            announced: BTreeMap::new(),
            route_changes: BTreeMap::new(),
            zeroed: BTreeMap::new(),
        }
    }
}

/// The metric names (the public contract) with their help text.
pub const METRICS: &[(&str, &str)] = &[
    ("lb_port_rx_packets_total", "Packets received by the port."),
    (
        "lb_port_tx_packets_total",
        "Packets transmitted by the port.",
    ),
    ("lb_port_rx_bytes_total", "Bytes received by the port."),
    ("lb_port_tx_bytes_total", "Bytes transmitted by the port."),
    (
        "lb_port_rx_missed_total",
        "Packets the NIC dropped for lack of rx descriptors (imissed).",
    ),
    (
        "lb_port_tx_failed_total",
        "Packets the port did not transmit (driver errors and full tx queues).",
    ),
    (
        "lb_packets_dropped_total",
        "Packets the dataplane dropped, by reason.",
    ),
    ("lb_flows_created_total", "New flows scheduled to the real."),
    (
        "lb_packets_forwarded_total",
        "Packets forwarded for flows of the real, both directions.",
    ),
    (
        "lb_bytes_forwarded_total",
        "Bytes forwarded for flows of the real, both directions.",
    ),
    ("lb_active_flows", "Flows in the worker's IPv4 flow table."),
    (
        "lb_flows_by_trust",
        "Flows in the worker's IPv4 flow table by trust class (unconfirmed and one_way ones can be evicted).",
    ),
    (
        "lb_flow_table_capacity",
        "Flow entries the worker's IPv4 flow table holds.",
    ),
    (
        "lb_ipv6_active_flows",
        "Flows in the worker's IPv6 flow table (0 without an IPv6 port).",
    ),
    (
        "lb_ipv6_flows_by_trust",
        "Flows in the worker's IPv6 flow table by trust class.",
    ),
    (
        "lb_ipv6_flow_table_capacity",
        "Flow entries the worker's IPv6 flow table holds (0 without an IPv6 port).",
    ),
    (
        "lb_real_up",
        "1 if the real may take new flows by its health, else 0.",
    ),
    ("lb_real_weight", "The real's configured weight."),
    ("lb_health_checks_total", "Health checks run, by result."),
    (
        "lb_config_reloads_total",
        "Configuration reloads, by result.",
    ),
    (
        "lb_config_generation",
        "Generation of the configuration snapshot the workers run.",
    ),
    (
        "lb_vip_announced",
        "1 while the VIP's host route is announced ([announce]), else 0.",
    ),
    (
        "lb_vip_route_changes_total",
        "Changes made to the VIP's host route ([announce]): announced or withdrawn; a VIP that flaps is held down.",
    ),
    (
        "lb_worker_busy_ratio",
        "Share of the worker's polls that found packets, over the last second.",
    ),
    ("lb_build_info", "Version of lb-appliance and of DPDK."),
    (
        "lb_kernel_packets_total",
        "Frames of the exception path through the port's kernel interface: to_kernel (given to it) and from_kernel (sent by it, handed to the port's transmit queue; one the queue refuses is also a tx_full drop).",
    ),
    (
        "lb_syn_proxy_cookies_sent_total",
        "SYN-ACKs with a SYN cookie the worker's SYN proxy sent to clients.",
    ),
    (
        "lb_syn_proxy_cookies_accepted_total",
        "Client ACKs whose SYN cookie checked out (each a new flow and a SYN to a real).",
    ),
    (
        "lb_sync_messages_total",
        "Connection-sync datagrams sent to the peer, or received from its address ([sync]).",
    ),
    (
        "lb_sync_flows_total",
        "Connection-sync flow records: sent, received (parsed), and by the workers created, updated or removed in their tables.",
    ),
    (
        "lb_sync_refused_total",
        "Connection-sync input refused, by reason.",
    ),
    (
        "lb_sync_events_dropped_total",
        "Connection-sync records dropped for lack of room: a worker's queue of its own changes, or its queue of records to install.",
    ),
    (
        "lb_real_active_flows",
        "Flows on the real now, summed over the workers (status's ActiveConn counts those established).",
    ),
    (
        "lb_real_inactive_flows",
        "Of those, the ones not established: SYN sent, FIN wait, closed (ipvsadm's InActConn).",
    ),
    (
        "lb_metrics_connections_refused_total",
        "Connections to this metrics server closed unserved: over its bound of concurrent connections, or no thread or file descriptor to serve them with.",
    ),
    (
        "lb_control_requests_total",
        "Requests on the control socket (lb-appliance ctl), by command and result: ok, or refused (malformed, oversized, too slow, unknown, or a change that did not validate).",
    ),
    (
        "lb_sync_active",
        "1 on the active appliance of a [sync] pair (it answers for the floating gateway; a primary announces its VIPs only then), else 0.",
    ),
    (
        "lb_sync_peer_alive",
        "1 while a valid sync message from the peer arrived within [sync] dead_after, else 0.",
    ),
    (
        "lb_sync_messages_lost_total",
        "Sync messages from the peer that never arrived (gaps in its sequence numbers).",
    ),
    (
        "lb_sync_role_changes_total",
        "Changes between active and standby since start ([sync]).",
    ),
    (
        "lb_sync_segments_resent_total",
        "Datagrams of this appliance's bulk passes sent again because the peer's acks said they were missing ([sync]).",
    ),
    (
        "lb_syn_proxy_deferred_total",
        "Client segments the SYN proxy kept while their flow waited for the real's SYN-ACK, to send on once it answered.",
    ),
    (
        "lb_syn_proxy_syn_retransmits_total",
        "SYNs the SYN proxy sent to a real again while the real had not answered the first: asked by the client's segments, or by the timer for a client that sends nothing (at most three per flow, 1 s, 2 s, 4 s apart).",
    ),
];

/// How a worker counter is read from its block.
type WorkerRead = fn(&WorkerStats) -> u64;

/// A label beside `worker` that tells series of one metric apart
/// (`direction="out"`).
type ExtraLabel = Option<(&'static str, &'static str)>;

/// The worker counters exported as `lb_*_total` series with a `worker`
/// label (the lcore), one row per series: (name, further label, read). They
/// used to be logged only at stop ("worker on lcore N: ..."); the names
/// and their help are in [`WORKER_METRICS`], the README's metrics table
/// documents each.
pub const WORKER_COUNTERS: &[(&str, ExtraLabel, WorkerRead)] = &[
    ("lb_worker_rx_packets_total", None, |w| w.rx_packets.get()),
    ("lb_worker_tx_packets_total", None, |w| w.tx_packets.get()),
    ("lb_worker_polls_total", None, |w| w.polls.get()),
    ("lb_worker_busy_polls_total", None, |w| w.busy_polls.get()),
    ("lb_worker_packets_dropped_total", None, |w| {
        w.dropped_total()
    }),
    ("lb_worker_flows_created_total", None, |w| {
        w.flows_created.get()
    }),
    ("lb_flows_expired_total", None, |w| w.flows_expired.get()),
    ("lb_flows_evicted_total", None, |w| w.flows_evicted.get()),
    ("lb_flow_table_full_total", None, |w| {
        w.flow_table_full.get()
    }),
    ("lb_stateless_forwards_total", None, |w| {
        w.stateless_forwards.get()
    }),
    ("lb_nat_replies_unvouched_total", None, |w| {
        w.nat_replies_unvouched.get()
    }),
    ("lb_handoffs_total", Some(("direction", "out")), |w| {
        w.handoffs_out.get()
    }),
    ("lb_handoffs_total", Some(("direction", "in")), |w| {
        w.handoffs_in.get()
    }),
    ("lb_held_packets_total", None, |w| w.held.get()),
    ("lb_worker_packets_consumed_total", None, |w| {
        w.consumed.get()
    }),
    ("lb_icmp_frag_needed_sent_total", None, |w| {
        w.icmp_frag_needed.get()
    }),
    ("lb_icmp_frag_needed_rate_limited_total", None, |w| {
        w.icmp_rate_limited.get()
    }),
    ("lb_icmp_errors_forwarded_total", None, |w| {
        w.icmp_errors_forwarded.get()
    }),
    ("lb_icmp_echo_replies_total", None, |w| {
        w.icmp_echo_replies.get()
    }),
    (
        "lb_neighbor_messages_sent_total",
        Some(("type", "arp_request")),
        |w| w.arp_requests.get(),
    ),
    (
        "lb_neighbor_messages_sent_total",
        Some(("type", "arp_reply")),
        |w| w.arp_replies.get(),
    ),
    (
        "lb_neighbor_messages_sent_total",
        Some(("type", "ndp_solicitation")),
        |w| w.ndp_solicitations.get(),
    ),
    (
        "lb_neighbor_messages_sent_total",
        Some(("type", "ndp_advertisement")),
        |w| w.ndp_advertisements.get(),
    ),
    (
        "lb_neighbor_requests_refused_total",
        Some(("family", "ipv4")),
        |w| w.neighbor_requests_refused[0].get(),
    ),
    (
        "lb_neighbor_requests_refused_total",
        Some(("family", "ipv6")),
        |w| w.neighbor_requests_refused[1].get(),
    ),
];

/// The names and help of [`WORKER_COUNTERS`] (part of the contract, like
/// [`METRICS`]).
pub const WORKER_METRICS: &[(&str, &str)] = &[
    (
        "lb_worker_rx_packets_total",
        "Packets the worker received from its rx queues.",
    ),
    (
        "lb_worker_tx_packets_total",
        "Packets the worker transmitted.",
    ),
    (
        "lb_worker_polls_total",
        "Turns of the worker's poll loop (advances while the worker runs, even idle).",
    ),
    (
        "lb_worker_busy_polls_total",
        "Turns of the worker's poll loop that received packets.",
    ),
    (
        "lb_worker_packets_dropped_total",
        "Packets the worker dropped, all reasons together.",
    ),
    (
        "lb_worker_flows_created_total",
        "New flows the worker scheduled (with or without a table entry).",
    ),
    (
        "lb_flows_expired_total",
        "Flows the sweep ended in the worker's tables: by timeout, or because a reload removed their real.",
    ),
    (
        "lb_flows_evicted_total",
        "Unconfirmed or one-way flow entries evicted to make room for new flows.",
    ),
    (
        "lb_flow_table_full_total",
        "New mh TUN/DR flows (and sh TUN/DR UDP flows) forwarded without a table entry because every entry was confirmed (other flows are flow_table_full drops).",
    ),
    (
        "lb_stateless_forwards_total",
        "Packets of mh flows picked up mid-stream (TUN, DR) forwarded by hash without an entry, the table being at least half full.",
    ),
    (
        "lb_nat_replies_unvouched_total",
        "Packets from a NAT real's address to a flow not yet confirmed that did not come from where the real is reached (its port and next hop's MAC): passed on, believed in nothing (forged, or replies routed back another way).",
    ),
    (
        "lb_handoffs_total",
        "Packets handed to (out) or received from (in) the worker that owns their flow.",
    ),
    (
        "lb_held_packets_total",
        "Packets held while their next hop's MAC address was being resolved.",
    ),
    (
        "lb_worker_packets_consumed_total",
        "Frames the worker took in itself, neither sent nor dropped: ARP replies and Neighbor Advertisements it learned from.",
    ),
    (
        "lb_icmp_frag_needed_sent_total",
        "ICMP fragmentation-needed and ICMPv6 Packet Too Big errors sent for packets over the outgoing MTU.",
    ),
    (
        "lb_icmp_frag_needed_rate_limited_total",
        "Fragmentation-needed or Packet Too Big errors not sent, over the ICMP rate limit (the packet is a too_big drop).",
    ),
    (
        "lb_icmp_errors_forwarded_total",
        "ICMP and ICMPv6 errors about a flow passed on to its client or real.",
    ),
    (
        "lb_icmp_echo_replies_total",
        "ICMP and ICMPv6 echo replies sent for the port addresses and VIPs.",
    ),
    (
        "lb_neighbor_messages_sent_total",
        "ARP requests and replies, neighbor solicitations and advertisements the worker sent.",
    ),
    (
        "lb_neighbor_requests_refused_total",
        "Lookups that found an ARP request or neighbor solicitation due and the worker's request budget refused it (asked again by a later lookup).",
    ),
];

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .chain(WORKER_METRICS)
        .find(|m| m.0 == name)
        .map(|m| m.1)
        .unwrap_or("")
}

/// Adds the [`WORKER_COUNTERS`] of `workers` to `reg`.
fn export_worker_counters(reg: &Registry, workers: &[(LcoreId, Arc<WorkerStats>)]) {
    let mut families: BTreeMap<&str, IntCounterVec> = BTreeMap::new();
    for (name, extra, read) in WORKER_COUNTERS {
        let family = families.entry(name).or_insert_with(|| {
            let labels: Vec<&str> = std::iter::once("worker")
                .chain(extra.map(|(k, _)| k))
                .collect();
            let c =
                IntCounterVec::new(Opts::new(*name, help(name)), &labels).expect("valid metric");
            reg.register(Box::new(c.clone())).expect("registered once");
            c
        });
        for (lcore, w) in workers {
            let l = lcore.0.to_string();
            let values: Vec<&str> = std::iter::once(l.as_str())
                .chain(extra.map(|(_, v)| v))
                .collect();
            family.with_label_values(&values).inc_by(read(w));
        }
    }
}

/// Reads the dataplane's counters and the shared state.
pub struct Exporter {
    shared: Arc<Mutex<Shared>>,
    ports: Vec<(String, Port)>,
    workers: Vec<(LcoreId, Arc<WorkerStats>)>,
    dpdk: String,
    /// By port index: whether the port has a kernel interface.
    kernel: Vec<bool>,
    /// By port index: whether the last read of the port's counters failed.
    port_unread: Vec<std::sync::atomic::AtomicBool>,
    /// `[sync]`: the sync thread's counters (None without the section,
    /// and then no sync series).
    sync: Option<Arc<SyncCounters>>,
    /// `[sync]`: the election's outcome.
    sync_status: Option<Arc<SyncStatus>>,
    /// The control socket's request counts.
    ctl: Option<crate::ctl::RequestCounts>,
    /// The metrics server's count of connections it closed unserved.
    http_refused: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// `lb_health_checks_total` by `service`, `real` and `result`, in the text
/// format the encoder writes (labels by name; nothing without checks).
fn write_health_series(checks: &BTreeMap<(String, String), [u64; 2]>, out: &mut String) {
    use std::fmt::Write;
    if checks.is_empty() {
        return;
    }
    let name = "lb_health_checks_total";
    let help = help(name).replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    out.reserve(checks.len() * 2 * 96);
    for ((service, real), [ok, failed]) in checks {
        let (real, service) = (escape_label(real), escape_label(service));
        for (result, n) in [("failure", failed), ("success", ok)] {
            let _ = writeln!(
                out,
                "{name}{{real=\"{real}\",result=\"{result}\",service=\"{service}\"}} {n}"
            );
        }
    }
}

/// A label value as the text format writes it: backslash, double quote
/// and line feed escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `real` label: `198.18.0.11:8080`, `[2001:2::11]:80`; the same as
/// `RealKey::label` gives the health series.
fn real_label(address: impl Into<std::net::IpAddr>, port: u16) -> String {
    std::net::SocketAddr::new(address.into(), port).to_string()
}

impl Exporter {
    pub fn new(
        shared: Arc<Mutex<Shared>>,
        ports: Vec<(String, Port)>,
        workers: Vec<(LcoreId, Arc<WorkerStats>)>,
        dpdk: String,
    ) -> Exporter {
        let kernel = shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot
            .ports
            .iter()
            .map(|p| p.kernel)
            .collect();
        let port_unread = ports.iter().map(|_| Default::default()).collect();
        Exporter {
            shared,
            ports,
            workers,
            dpdk,
            kernel,
            port_unread,
            sync: None,
            sync_status: None,
            ctl: None,
            http_refused: None,
        }
    }

    /// Each configured real's counters now (flows created, packets,
    /// bytes), by real id: what `ctl zero` counts from.
    pub fn real_counters(&self) -> BTreeMap<u32, [u64; 3]> {
        let snap = Arc::clone(&self.shared().snapshot);
        snap.services
            .iter()
            .flat_map(|s| s.reals.iter())
            .map(|r| {
                (
                    r.id,
                    [
                        self.real_sum(r.id, |c| c.flows_created.get()),
                        self.real_sum(r.id, |c| c.packets.get()),
                        self.real_sum(r.id, |c| c.bytes.get()),
                    ],
                )
            })
            .collect()
    }

    /// Exports `lb_control_requests_total` from the control socket's
    /// counts.
    pub fn with_ctl(mut self, counts: crate::ctl::RequestCounts) -> Exporter {
        self.ctl = Some(counts);
        self
    }

    /// Exports `lb_metrics_connections_refused_total` from the metrics
    /// server's count.
    pub fn with_http_refused(mut self, refused: Arc<std::sync::atomic::AtomicU64>) -> Exporter {
        self.http_refused = Some(refused);
        self
    }

    /// Exports the connection-sync series, from the sync thread's
    /// `counters` and the workers'.
    pub fn with_sync(mut self, counters: Arc<SyncCounters>, status: Arc<SyncStatus>) -> Exporter {
        self.sync = Some(counters);
        self.sync_status = Some(status);
        self
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A real's counters (flows created, packets, bytes) over the workers,
    /// from `from` on (each at least what its id had counted before the
    /// real got it: `RealView::counted_before`).
    fn real_counts(&self, r: &lb_core::snapshot::RealView, from: [u64; 3]) -> [u64; 3] {
        let raw = [
            self.real_sum(r.id, |c| c.flows_created.get()),
            self.real_sum(r.id, |c| c.packets.get()),
            self.real_sum(r.id, |c| c.bytes.get()),
        ];
        std::array::from_fn(|i| raw[i].saturating_sub(from[i].max(r.counted_before[i])))
    }

    /// Sums a real's counter over the workers.
    fn real_sum(&self, id: u32, f: impl Fn(&lb_core::stats::RealCounters) -> u64) -> u64 {
        self.workers.iter().map(|(_, w)| f(w.real(id))).sum()
    }

    /// The Prometheus text exposition.
    pub fn metrics_text(&self) -> String {
        let reg = Registry::new();
        let counter = |name: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help(name)), labels).expect("valid metric");
            reg.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help(name)), labels).expect("valid metric");
            reg.register(Box::new(g.clone())).expect("registered once");
            g
        };

        let rx_p = counter("lb_port_rx_packets_total", &["port"]);
        let tx_p = counter("lb_port_tx_packets_total", &["port"]);
        let rx_b = counter("lb_port_rx_bytes_total", &["port"]);
        let tx_b = counter("lb_port_tx_bytes_total", &["port"]);
        let missed = counter("lb_port_rx_missed_total", &["port"]);
        let tx_failed = counter("lb_port_tx_failed_total", &["port"]);
        for (i, (name, port)) in self.ports.iter().enumerate() {
            // A read that failed (a VF's stats go through its PF's mailbox,
            // which can fail for a moment, during a reset) leaves the
            // port's series out of this scrape: zeros would read as a
            // counter reset, and the next scrape's full values as the
            // port's whole life in one interval (found in audit: a false
            // rx-missed alert). Logged when it starts and stops failing.
            let failing = &self.port_unread[i];
            let s = match port.stats() {
                Ok(s) => {
                    if failing.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        log::info!("metrics: port {name}'s counters are read again");
                    }
                    s
                }
                Err(e) => {
                    if !failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        log::warn!(
                            "metrics: port {name}'s counters could not be read ({e}): \
                             its lb_port_* series are left out until they can"
                        );
                    }
                    continue;
                }
            };
            let l = &[name.as_str()];
            rx_p.with_label_values(l).inc_by(s.rx_packets);
            tx_p.with_label_values(l).inc_by(s.tx_packets);
            rx_b.with_label_values(l).inc_by(s.rx_bytes);
            tx_b.with_label_values(l).inc_by(s.tx_bytes);
            missed.with_label_values(l).inc_by(s.rx_missed);
            let ours: u64 = self
                .workers
                .iter()
                .map(|(_, w)| w.tx_failed.get(i).map_or(0, |c| c.get()))
                .sum();
            tx_failed.with_label_values(l).inc_by(s.tx_errors + ours);
        }
        // By port index: only ports with a kernel interface have series.
        let kernel = counter("lb_kernel_packets_total", &["port", "direction"]);
        for (i, (name, _)) in self.ports.iter().enumerate() {
            if !self.kernel.get(i).copied().unwrap_or(false) {
                continue;
            }
            let sum = |f: fn(&WorkerStats) -> &[lb_core::stats::Counter]| -> u64 {
                self.workers
                    .iter()
                    .map(|(_, w)| f(w).get(i).map_or(0, |c| c.get()))
                    .sum()
            };
            kernel
                .with_label_values(&[name, "to_kernel"])
                .inc_by(sum(|w| &w.to_kernel));
            kernel
                .with_label_values(&[name, "from_kernel"])
                .inc_by(sum(|w| &w.from_kernel));
        }

        let dropped = counter("lb_packets_dropped_total", &["reason"]);
        for r in DropReason::ALL {
            let n: u64 = self.workers.iter().map(|(_, w)| w.dropped(r)).sum();
            dropped.with_label_values(&[r.as_str()]).inc_by(n);
        }

        if let Some(control) = &self.sync {
            let sum = |f: fn(&SyncCounters) -> u64| -> u64 {
                f(control) + self.workers.iter().map(|(_, w)| f(&w.sync)).sum::<u64>()
            };
            let messages = counter("lb_sync_messages_total", &["direction"]);
            messages
                .with_label_values(&["sent"])
                .inc_by(sum(|c| c.messages_sent.get()));
            messages
                .with_label_values(&["received"])
                .inc_by(sum(|c| c.messages_received.get()));
            let flows = counter("lb_sync_flows_total", &["direction"]);
            type Read = fn(&SyncCounters) -> u64;
            let by: [(&str, Read); 5] = [
                ("sent", |c| c.flows_sent.get()),
                ("received", |c| c.flows_received.get()),
                ("installed", |c| c.flows_installed.get()),
                ("updated", |c| c.flows_updated.get()),
                ("removed", |c| c.flows_removed.get()),
            ];
            for (direction, f) in by {
                flows.with_label_values(&[direction]).inc_by(sum(f));
            }
            let refused = counter("lb_sync_refused_total", &["reason"]);
            for r in Refused::ALL {
                let n = control.refused(r)
                    + self
                        .workers
                        .iter()
                        .map(|(_, w)| w.sync.refused(r))
                        .sum::<u64>();
                refused.with_label_values(&[r.as_str()]).inc_by(n);
            }
            let dropped = counter("lb_sync_events_dropped_total", &[]);
            dropped
                .with_label_values(&[])
                .inc_by(sum(|c| c.events_dropped.get()));
        }
        if let Some(st) = &self.sync_status {
            let g = |name: &str, v: bool| {
                gauge(name, &[]).with_label_values(&[]).set(i64::from(v));
            };
            g("lb_sync_active", st.is_active());
            g(
                "lb_sync_peer_alive",
                st.peer_alive.load(std::sync::atomic::Ordering::Relaxed),
            );
            counter("lb_sync_messages_lost_total", &[])
                .with_label_values(&[])
                .inc_by(st.messages_lost.get());
            counter("lb_sync_role_changes_total", &[])
                .with_label_values(&[])
                .inc_by(st.changes.get());
            counter("lb_sync_segments_resent_total", &[])
                .with_label_values(&[])
                .inc_by(st.segments_resent.get());
        }

        if let Some(refused) = &self.http_refused {
            counter("lb_metrics_connections_refused_total", &[])
                .with_label_values(&[])
                .inc_by(refused.load(std::sync::atomic::Ordering::Relaxed));
        }
        if let Some(counts) = &self.ctl {
            let c = counter("lb_control_requests_total", &["command", "result"]);
            let counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            for ((command, result), n) in counts.iter() {
                c.with_label_values(&[command, result]).inc_by(*n);
            }
        }
        // A copy, as in `status`: the render holds no lock.
        let mut shared = self.shared().clone();
        let announced = gauge("lb_vip_announced", &["vip"]);
        for (vip, on) in &shared.announced {
            announced
                .with_label_values(&[&vip.to_string()])
                .set(i64::from(*on));
        }
        let route_changes = counter("lb_vip_route_changes_total", &["vip"]);
        for (vip, n) in &shared.route_changes {
            route_changes
                .with_label_values(&[&vip.to_string()])
                .inc_by(*n);
        }
        // The per-real series are written by hand after the rest (below):
        // at the limits, 65,536 reals, they are 458,752 series, and the
        // registry took seconds over them (found in audit).
        let snap = Arc::clone(&shared.snapshot);

        // Written by hand too, with the per-real families (found in
        // audit: at 4,096 services of 16 checked reals the registry took
        // about 0.6 s of a scrape over them).
        let health = std::mem::take(&mut shared.health_checks);
        let reloads = counter("lb_config_reloads_total", &["result"]);
        reloads
            .with_label_values(&["success"])
            .inc_by(shared.reloads_success);
        reloads
            .with_label_values(&["failure"])
            .inc_by(shared.reloads_failure);
        let generation = IntGaugeVec::new(
            Opts::new("lb_config_generation", help("lb_config_generation")),
            &[],
        )
        .expect("valid metric");
        reg.register(Box::new(generation.clone()))
            .expect("registered once");
        generation
            .with_label_values(&[])
            .set(snap.generation as i64);

        let cookies_sent = counter("lb_syn_proxy_cookies_sent_total", &["worker"]);
        let cookies_accepted = counter("lb_syn_proxy_cookies_accepted_total", &["worker"]);
        let deferred = counter("lb_syn_proxy_deferred_total", &["worker"]);
        let syn_retransmits = counter("lb_syn_proxy_syn_retransmits_total", &["worker"]);
        let active = gauge("lb_active_flows", &["worker"]);
        let by_trust = gauge("lb_flows_by_trust", &["worker", "trust"]);
        let capacity = gauge("lb_flow_table_capacity", &["worker"]);
        let active6 = gauge("lb_ipv6_active_flows", &["worker"]);
        let by_trust6 = gauge("lb_ipv6_flows_by_trust", &["worker", "trust"]);
        let capacity6 = gauge("lb_ipv6_flow_table_capacity", &["worker"]);
        let busy = GaugeVec::new(
            Opts::new("lb_worker_busy_ratio", help("lb_worker_busy_ratio")),
            &["worker"],
        )
        .expect("valid metric");
        reg.register(Box::new(busy.clone()))
            .expect("registered once");
        for (i, (lcore, w)) in self.workers.iter().enumerate() {
            let l = lcore.0.to_string();
            active
                .with_label_values(&[&l])
                .set(w.active_flows.get() as i64);
            for t in lb_core::flow::Trust::ALL {
                by_trust
                    .with_label_values(&[&l, t.name()])
                    .set(w.flows_by_trust[t as usize].get() as i64);
            }
            capacity
                .with_label_values(&[&l])
                .set(w.flow_capacity.get() as i64);
            let v6 = &w.ipv6_flows;
            active6.with_label_values(&[&l]).set(v6.active.get() as i64);
            for t in lb_core::flow::Trust::ALL {
                by_trust6
                    .with_label_values(&[&l, t.name()])
                    .set(v6.by_trust[t as usize].get() as i64);
            }
            capacity6
                .with_label_values(&[&l])
                .set(v6.capacity.get() as i64);
            busy.with_label_values(&[&l])
                .set(shared.busy.get(i).copied().unwrap_or(0.0));
            cookies_sent
                .with_label_values(&[&l])
                .inc_by(w.syn_proxy_cookies_sent.get());
            cookies_accepted
                .with_label_values(&[&l])
                .inc_by(w.syn_proxy_cookies_accepted.get());
            deferred
                .with_label_values(&[&l])
                .inc_by(w.syn_proxy_deferred.get());
            syn_retransmits
                .with_label_values(&[&l])
                .inc_by(w.syn_proxy_syn_retransmits.get());
        }
        drop(shared);

        export_worker_counters(&reg, &self.workers);
        // process_cpu_seconds_total, process_resident_memory_bytes, ...:
        // the names every Prometheus client exports for its process.
        let _ = reg.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        let build = gauge("lb_build_info", &["version", "dpdk"]);
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), &self.dpdk])
            .set(1);

        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&reg.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        self.write_real_series(&snap, &mut text);
        write_health_series(&health, &mut text);
        text
    }

    /// The per-real families (`lb_flows_created_total` and the rest, by
    /// `service` and `real`) in the text format the encoder writes: HELP
    /// and TYPE, then each series, sorted by its labels; a family without
    /// series is left out, as the encoder does.
    fn write_real_series(&self, snap: &Snapshot, out: &mut String) {
        use std::fmt::Write;
        // By (real, service): the encoder's label order (by name) and its
        // sort; series of one label set merged, as its vectors would.
        let mut series: BTreeMap<(String, String), [u64; 7]> = BTreeMap::new();
        for s in &snap.services {
            for r in &s.reals {
                let [c, p, b] = self.real_counts(r, [0; 3]);
                let v = series
                    .entry((real_label(r.address, r.port), escape_label(&s.name)))
                    .or_default();
                v[0] += c;
                v[1] += p;
                v[2] += b;
                v[3] = u64::from(r.up);
                v[4] = u64::from(r.weight);
                v[5] = self.real_sum(r.id, |c| c.active.get());
                v[6] = self.real_sum(r.id, |c| c.inactive.get());
            }
        }
        if series.is_empty() {
            return;
        }
        const FAMILIES: [(&str, &str); 7] = [
            ("lb_flows_created_total", "counter"),
            ("lb_packets_forwarded_total", "counter"),
            ("lb_bytes_forwarded_total", "counter"),
            ("lb_real_up", "gauge"),
            ("lb_real_weight", "gauge"),
            ("lb_real_active_flows", "gauge"),
            ("lb_real_inactive_flows", "gauge"),
        ];
        out.reserve(series.len() * FAMILIES.len() * 80);
        for (i, (name, kind)) in FAMILIES.iter().enumerate() {
            let help = help(name).replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((real, service), v) in &series {
                let _ = writeln!(
                    out,
                    "{name}{{real=\"{real}\",service=\"{service}\"}} {}",
                    v[i]
                );
            }
        }
    }

    /// The `/status` view.
    pub fn status(&self) -> Status {
        // A copy: the control thread must not wait for the render (found
        // in audit: at 65,536 reals the lock was held for over a second
        // per scrape, stalling health changes and publishes).
        let shared = self.shared().clone();
        let snap = Arc::clone(&shared.snapshot);
        let zero = |id: u32| shared.zeroed.get(&id).copied().unwrap_or_default();
        let services = snap
            .services
            .iter()
            .map(|s: &ServiceView| ServiceStatus {
                name: s.name.clone(),
                protocol: s.protocol.to_string(),
                vip: s.vip.to_string(),
                port: s.port,
                scheduler: s.kind.to_string(),
                persistence_ms: s.persistence_ms,
                reals: s
                    .reals
                    .iter()
                    .map(|r| {
                        let label = real_label(r.address, r.port);
                        let [flows_created, packets, bytes] = self.real_counts(r, zero(r.id));
                        RealStatus {
                            address: r.address.to_string(),
                            port: r.port,
                            forwarding: r.method.to_string(),
                            weight: r.weight,
                            up: r.up,
                            last_error: shared.last_errors.get(&(s.name.clone(), label)).cloned(),
                            active_flows: self.real_sum(r.id, |c| c.active.get()),
                            inactive_flows: self.real_sum(r.id, |c| c.inactive.get()),
                            flows_created,
                            packets,
                            bytes,
                        }
                    })
                    .collect(),
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, (lcore, w))| WorkerStatus {
                lcore: lcore.0,
                active_flows: w.active_flows.get(),
                flow_capacity: w.flow_capacity.get(),
                busy_ratio: shared.busy.get(i).copied().unwrap_or(0.0),
                active_flows6: w.ipv6_flows.active.get(),
                flow_capacity6: w.ipv6_flows.capacity.get(),
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            dpdk: self.dpdk.clone(),
            generation: snap.generation,
            services,
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_counter_is_exported_per_worker_with_its_own_value() {
        let workers: Vec<(LcoreId, Arc<WorkerStats>)> = [3, 5]
            .into_iter()
            .map(|l| (LcoreId(l), Arc::new(WorkerStats::default())))
            .collect();
        // A distinct value per field, per worker: a row that reads the
        // wrong field shows.
        let fields: Vec<&lb_core::stats::Counter> = {
            let w = &workers[0].1;
            vec![
                &w.rx_packets,
                &w.tx_packets,
                &w.polls,
                &w.busy_polls,
                &w.flows_created,
                &w.flows_expired,
                &w.flows_evicted,
                &w.flow_table_full,
                &w.stateless_forwards,
                &w.handoffs_out,
                &w.handoffs_in,
                &w.held,
                &w.icmp_frag_needed,
                &w.icmp_rate_limited,
                &w.icmp_errors_forwarded,
                &w.icmp_echo_replies,
                &w.arp_requests,
                &w.arp_replies,
                &w.ndp_solicitations,
                &w.ndp_advertisements,
                &w.nat_replies_unvouched,
                &w.consumed,
                &w.neighbor_requests_refused[0],
                &w.neighbor_requests_refused[1],
            ]
        };
        for (i, c) in fields.iter().enumerate() {
            c.add(100 + i as u64);
        }
        workers[0].1.drop_packets(DropReason::NoFlow, 7);
        workers[0].1.drop_packets(DropReason::TooBig, 5);
        workers[1].1.held.add(9);

        let reg = Registry::new();
        export_worker_counters(&reg, &workers);
        let mut out = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let value = |series: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
        };
        let want = [
            ("lb_worker_rx_packets_total{worker=\"3\"}", 100),
            ("lb_worker_tx_packets_total{worker=\"3\"}", 101),
            ("lb_worker_polls_total{worker=\"3\"}", 102),
            ("lb_worker_busy_polls_total{worker=\"3\"}", 103),
            ("lb_worker_flows_created_total{worker=\"3\"}", 104),
            ("lb_flows_expired_total{worker=\"3\"}", 105),
            ("lb_flows_evicted_total{worker=\"3\"}", 106),
            ("lb_flow_table_full_total{worker=\"3\"}", 107),
            ("lb_stateless_forwards_total{worker=\"3\"}", 108),
            ("lb_handoffs_total{direction=\"out\",worker=\"3\"}", 109),
            ("lb_handoffs_total{direction=\"in\",worker=\"3\"}", 110),
            ("lb_held_packets_total{worker=\"3\"}", 111),
            ("lb_icmp_frag_needed_sent_total{worker=\"3\"}", 112),
            ("lb_icmp_frag_needed_rate_limited_total{worker=\"3\"}", 113),
            ("lb_icmp_errors_forwarded_total{worker=\"3\"}", 114),
            ("lb_icmp_echo_replies_total{worker=\"3\"}", 115),
            (
                "lb_neighbor_messages_sent_total{type=\"arp_request\",worker=\"3\"}",
                116,
            ),
            (
                "lb_neighbor_messages_sent_total{type=\"arp_reply\",worker=\"3\"}",
                117,
            ),
            (
                "lb_neighbor_messages_sent_total{type=\"ndp_solicitation\",worker=\"3\"}",
                118,
            ),
            (
                "lb_neighbor_messages_sent_total{type=\"ndp_advertisement\",worker=\"3\"}",
                119,
            ),
            ("lb_nat_replies_unvouched_total{worker=\"3\"}", 120),
            ("lb_worker_packets_consumed_total{worker=\"3\"}", 121),
            (
                "lb_neighbor_requests_refused_total{family=\"ipv4\",worker=\"3\"}",
                122,
            ),
            (
                "lb_neighbor_requests_refused_total{family=\"ipv6\",worker=\"3\"}",
                123,
            ),
            ("lb_worker_packets_dropped_total{worker=\"3\"}", 12),
            ("lb_held_packets_total{worker=\"5\"}", 9),
            ("lb_worker_rx_packets_total{worker=\"5\"}", 0),
        ];
        for (series, v) in want {
            assert_eq!(value(series), v, "{series}");
        }
        // Every row is checked above, every name has its help.
        assert_eq!(fields.len() + 1, WORKER_COUNTERS.len());
        for (name, _, _) in WORKER_COUNTERS {
            assert!(!help(name).is_empty(), "{name} has no help");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn a_real_with_a_removed_reals_id_counts_from_zero() {
        let config = |reals: &[u8]| {
            let mut text = "[workers]\nlcores = [1]\n[[ports]]\nname = \"wan\"\n\
                            device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
                            mac = \"02:00:00:00:00:02\"\n[[services]]\nname = \"web\"\n\
                            vip = \"198.18.1.100\"\nport = 80\n"
                .to_string();
            for r in reals {
                text += &format!("[[services.reals]]\naddress = \"198.18.0.{r}\"\nport = 8080\n");
            }
            lb_config::Config::parse(&text).unwrap()
        };
        let worker = Arc::new(WorkerStats::default());
        let mut ids = lb_core::snapshot::Ids::with_limit(2);
        let compile = |reals: &[u8], generation: u64, ids: &mut lb_core::snapshot::Ids| {
            Snapshot::compile(
                &config(reals),
                &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
                generation,
                ids,
                |_, _, _| true,
            )
            .unwrap()
        };
        let first = compile(&[11, 13], 1, &mut ids);
        let id = first.services[0].reals[0].id;
        let c = worker.real(id);
        c.flows_created.add(5);
        c.packets.add(50);
        c.bytes.add(5000);
        compile(&[13], 2, &mut ids);
        worker.generation.set(2);
        ids.offer_drained(&[&*worker]);
        let snap = compile(&[12, 13], 3, &mut ids);
        assert_eq!(
            snap.services[0].reals[0].id, id,
            "the id went to the new real"
        );
        c.packets.add(1);
        c.bytes.add(60);

        let shared = Arc::new(Mutex::new(Shared {
            // A `ctl zero` from the old real's days.
            zeroed: BTreeMap::from([(id, [2, 20, 2000])]),
            ..Shared::new(Arc::new(snap), 0)
        }));
        let exporter = Exporter::new(
            Arc::clone(&shared),
            Vec::new(),
            vec![(LcoreId(1), Arc::clone(&worker))],
            String::new(),
        );
        let r = &exporter.status().services[0].reals[0];
        assert_eq!(r.address, "198.18.0.12");
        assert_eq!((r.flows_created, r.packets, r.bytes), (0, 1, 60));
        let text = exporter.metrics_text();
        for (name, want) in [
            ("lb_flows_created_total", 0),
            ("lb_packets_forwarded_total", 1),
            ("lb_bytes_forwarded_total", 60),
        ] {
            let series = format!("{name}{{real=\"198.18.0.12:8080\",service=\"web\"}} {want}");
            assert!(text.lines().any(|l| l == series), "{series} in:\n{text}");
        }
        // A `ctl zero` since counts from then.
        shared.lock().unwrap().zeroed = exporter.real_counters();
        c.packets.add(1);
        let r = &exporter.status().services[0].reals[0];
        assert_eq!((r.flows_created, r.packets, r.bytes), (0, 1, 0));
    }

    /// The per-real series are written by hand (the registry took seconds
    /// at 65,536 reals): exactly what the encoder writes for them.
    #[test]
    fn the_hand_written_real_series_are_what_the_encoder_writes() {
        let mut text = "[workers]\nlcores = [1, 2]\n[[ports]]\nname = \"wan\"\n\
                        device = \"net_null0\"\naddress = \"198.18.0.2/24\"\n\
                        address6 = \"2001:2::2/64\"\n"
            .to_string();
        for (i, name) in ["web", "a \\\"quoted\\\" \\\\ name", "zz"]
            .iter()
            .enumerate()
        {
            text += &format!(
                "[[services]]\nname = \"{name}\"\nvip = \"198.18.1.{}\"\nport = 80\n\
                 [[services.reals]]\naddress = \"198.18.0.12\"\nweight = 3\n\
                 [[services.reals]]\naddress = \"198.18.0.11\"\nport = 8080\n",
                100 + i
            );
        }
        text += "[[services]]\nname = \"v6\"\nvip = \"2001:2:0:1::100\"\nport = 80\n\
                 [[services.reals]]\naddress = \"2001:2::11\"\n";
        let config = lb_config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let snap = Snapshot::compile(
            &config,
            &[lb_config::MacAddr([2, 0, 0, 0, 0, 2])],
            1,
            &mut lb_core::snapshot::Ids::default(),
            |_, a, _| a.to_string() != "198.18.0.12",
        )
        .unwrap();
        let workers: Vec<(LcoreId, Arc<WorkerStats>)> = [1, 2]
            .into_iter()
            .map(|l| (LcoreId(l), Arc::new(WorkerStats::default())))
            .collect();
        for (k, (_, w)) in workers.iter().enumerate() {
            for s in &snap.services {
                for r in &s.reals {
                    let c = w.real(r.id);
                    c.flows_created.add(u64::from(r.id) + 1 + k as u64);
                    c.packets.add(10 * u64::from(r.id) + 7);
                    c.bytes.add(1000 * u64::from(r.id) + 3);
                    c.active.set(u64::from(r.id) % 3);
                    c.inactive.set(u64::from(r.id) % 2);
                }
            }
        }
        let exporter = Exporter::new(
            Arc::new(Mutex::new(Shared::new(Arc::new(snap), 0))),
            Vec::new(),
            workers,
            String::new(),
        );
        let snap = Arc::clone(&exporter.shared().snapshot);
        let mut mine = String::new();
        exporter.write_real_series(&snap, &mut mine);

        // The encoder's, as the exporter made them before.
        let reg = Registry::new();
        type Set = Box<dyn Fn(&[&str], u64)>;
        let vec = |name: &str, counter: bool| -> Set {
            let opts = Opts::new(name, help(name));
            if counter {
                let c = IntCounterVec::new(opts, &["service", "real"]).unwrap();
                reg.register(Box::new(c.clone())).unwrap();
                Box::new(move |l, v| c.with_label_values(l).inc_by(v))
            } else {
                let g = IntGaugeVec::new(opts, &["service", "real"]).unwrap();
                reg.register(Box::new(g.clone())).unwrap();
                Box::new(move |l, v| g.with_label_values(l).set(v as i64))
            }
        };
        let families = [
            vec("lb_flows_created_total", true),
            vec("lb_packets_forwarded_total", true),
            vec("lb_bytes_forwarded_total", true),
            vec("lb_real_up", false),
            vec("lb_real_weight", false),
            vec("lb_real_active_flows", false),
            vec("lb_real_inactive_flows", false),
        ];
        for s in &snap.services {
            for r in &s.reals {
                let real = real_label(r.address, r.port);
                let l = &[s.name.as_str(), real.as_str()];
                let [c, p, b] = exporter.real_counts(r, [0; 3]);
                let values = [
                    c,
                    p,
                    b,
                    u64::from(r.up),
                    u64::from(r.weight),
                    exporter.real_sum(r.id, |c| c.active.get()),
                    exporter.real_sum(r.id, |c| c.inactive.get()),
                ];
                for (f, v) in families.iter().zip(values) {
                    f(l, v);
                }
            }
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&reg.gather(), &mut out).unwrap();
        let theirs = String::from_utf8(out).unwrap();
        // The encoder orders families by name; ours come in a fixed order.
        let blocks = |t: &str| {
            let mut b: Vec<String> = t
                .split("# HELP ")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            b.sort();
            b
        };
        assert_eq!(
            blocks(&mine),
            blocks(&theirs),
            "mine:\n{mine}\ntheirs:\n{theirs}"
        );
        assert!(mine.contains(r#"service="a \"quoted\" \\ name""#), "{mine}");
    }

    #[test]
    fn the_real_label_brackets_an_ipv6_address() {
        let v6: std::net::Ipv6Addr = "2001:2::11".parse().unwrap();
        assert_eq!(real_label(v6, 80), "[2001:2::11]:80");
        assert_eq!(
            real_label(std::net::Ipv4Addr::new(198, 18, 0, 11), 8080),
            "198.18.0.11:8080"
        );
    }
}
