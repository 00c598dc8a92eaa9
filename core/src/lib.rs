//! The packet core: everything that decides what happens to a frame, with
//! no DPDK in sight, so that it builds, tests and fuzzes anywhere.
//!
//! Where to look:
//! - `wire/`: where a packet is parsed (zero-copy views, one per protocol);
//!   `classify` reads a frame once into a [`classify::Parsed`].
//! - `flow/`: where a flow is looked up, created, tracked and ended.
//! - `scheduler/`: where a real is chosen for a new flow.
//! - `forward/`: how a packet is rewritten for NAT, TUN or DR.
//! - `pipeline/`: the stages a frame goes through, in order.
//! - `neighbor`, `route`: where it leaves and to which MAC.
//! - `snapshot`: the compiled configuration a worker runs with.
//! - `stats`: per-worker counters, drops by reason.
//! - `golden`: the golden packets of `tests/fixtures/` (scapy-built frames
//!   and what must come of them), read as data by the tests.
//!
//! `hint` (CPU prefetch and huge-page advice) is the only module allowed
//! `unsafe`; the rest of the crate forbids it.

#[forbid(unsafe_code)]
pub mod buffer;
#[forbid(unsafe_code)]
pub mod flow;
#[forbid(unsafe_code)]
pub mod forward;
#[forbid(unsafe_code)]
pub mod golden;
pub mod hint;
#[forbid(unsafe_code)]
pub mod keymap;
#[forbid(unsafe_code)]
pub mod neighbor;
#[forbid(unsafe_code)]
pub mod pipeline;
#[forbid(unsafe_code)]
pub mod route;
#[forbid(unsafe_code)]
pub mod scheduler;
#[forbid(unsafe_code)]
pub mod snapshot;
#[forbid(unsafe_code)]
pub mod stats;
#[forbid(unsafe_code)]
pub mod wire;

pub use buffer::{PacketBuf, VecBuf};
pub use snapshot::Snapshot;
pub use stats::{DropReason, WorkerStats};
