//! The packet core: everything that decides what happens to a frame, with
//! no DPDK in sight, so that it builds, tests and fuzzes anywhere.
//!
//! Where to look:
//! - `wire/`: where a packet is parsed (zero-copy views, one per protocol);
//!   `pipeline::classify` reads a frame once into a
//!   [`pipeline::classify::Parsed`].
//! - `flow/`: where a flow is looked up, created, tracked and ended.
//! - `scheduler/`: where a real is chosen for a new flow.
//! - `forward/`: how a packet is rewritten for NAT, TUN or DR.
//! - `pipeline/`: the stages a frame goes through, in order.
//! - `neighbor`, `route`: where it leaves and to which MAC.
//! - `snapshot`: the compiled configuration a worker runs with.
//! - `stats`: per-worker counters, drops by reason.
//! - `random`: secret keys from the kernel's random source.
//! - `exception`: how much a worker gives a port's kernel interface.
//! - `sync`: connection sync with a backup appliance (`[sync]`): the
//!   events a primary's workers record, the counters; the message format
//!   is `wire::sync`, installing a synced flow `flow::Conntrack::sync_install`.
//! - `golden` (feature `golden`, and in unit tests): the golden packets of
//!   `tests/fixtures/` (scapy-built frames and what must come of them), read
//!   as data by the tests; not part of the appliance.
//!
//! lb-core has no `unsafe`: core/Cargo.toml forbids it, and
//! `tests/layout.rs` checks it stays so. What needs it on the packet path,
//! the CPU prefetch of a burst's flow-table lines and huge-page advice for
//! the tables, comes from the platform: `PacketBuf::prefetch` and
//! `hint::set_huge_page_advice`, which the DPDK wrapper implements.

pub mod buffer;
pub mod exception;
pub mod flow;
pub mod forward;
#[cfg(any(test, feature = "golden"))]
pub mod golden;
pub mod hint;
pub mod keymap;
pub mod neighbor;
pub mod pipeline;
pub mod random;
pub mod route;
pub mod scheduler;
pub mod snapshot;
pub mod stats;
pub mod sync;
pub mod synproxy;
pub mod wire;

pub use buffer::{PacketBuf, RxChecksum, VecBuf};
pub use snapshot::Snapshot;
pub use stats::{DropReason, WorkerStats};
