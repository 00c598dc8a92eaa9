//! What `lb-appliance ctl connections` shows of a worker's flows (in the
//! manner of `ipvsadm -Lnc`): a page of entries at a time, read by the
//! worker that owns the table between two bursts, so that listing a
//! million flows never holds a worker for more than one page.

use std::net::IpAddr;

use lb_config::ForwardingMethod;

use super::table::FlowTable;
use super::{FlowAddr, FlowState, Trust};
use crate::snapshot::Snapshot;

/// Entries a worker looks at for one page, at most: a free entry costs a
/// byte read, a live one a copy, so a page is some tens of microseconds
/// of its time; a table of a million entries is 64 pages.
pub const PAGE_ENTRIES: usize = 16384;

/// One flow as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowInfo {
    pub proto: u8,
    pub state: FlowState,
    pub trust: Trust,
    /// Milliseconds until it expires unless a packet comes.
    pub expires_in_ms: u32,
    pub client: IpAddr,
    pub client_port: u16,
    pub vip: IpAddr,
    pub vip_port: u16,
    /// The real (a 4in6 TUN flow's IPv6 real from the snapshot; None if
    /// the real is no longer configured).
    pub real: Option<IpAddr>,
    pub real_port: u16,
    pub method: ForwardingMethod,
    /// The connection-sync peer made it and no packet of it was seen here.
    pub synced: bool,
}

/// Appends the flows (not persistence templates) of up to `budget`
/// entries of `table` from entry `from` on to `out`; returns where the
/// next page starts, or None at the end of the table.
pub fn page<A: FlowAddr>(
    table: &FlowTable<A>,
    snap: &Snapshot,
    now: u32,
    from: usize,
    budget: usize,
    out: &mut Vec<FlowInfo>,
) -> Option<usize> {
    table.page(from, budget, |e, f| {
        if f.is_template() {
            return;
        }
        let real = if f.real() == A::UNSPECIFIED {
            snap.tunnel6_real(f.real_id).map(IpAddr::V6)
        } else {
            Some(f.real().to_ip())
        };
        let timeout = snap.timeouts.of(f.state());
        let age = now.wrapping_sub(f.last_seen);
        out.push(FlowInfo {
            proto: f.key().proto,
            state: f.state(),
            // The class the entry is in (a flow held at `one_way` for its
            // source's share earned more: found in review, shown so).
            trust: table.trust(e),
            expires_in_ms: timeout.saturating_sub(age),
            client: f.client().to_ip(),
            client_port: f.client_port(),
            vip: f.vip().to_ip(),
            vip_port: f.vip_port(),
            real: real.filter(|_| snap.real_present(f.real_id)),
            real_port: f.real_port(),
            method: f.method,
            synced: f.is_synced(),
        });
    })
}
