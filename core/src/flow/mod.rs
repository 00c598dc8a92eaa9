//! Where a flow is looked up: the per-worker connection table and the
//! flow lifecycle around it (`conntrack`, the one entry point the pipeline
//! uses).
//!
//! Each worker owns its table outright (no lock, no atomics); entries live
//! in a slab allocated once at start, and one open-addressed index maps both
//! the client-side key and, for NAT, the real-side key of the reply to the
//! same entry. Expired entries are reclaimed by a sweep of a bounded number
//! of slots per poll, never by scanning the whole table on the fast path.

mod conntrack;
mod hash;
pub mod listing;
mod state;
mod sync;
pub mod synproxy;
mod table;

pub use conntrack::{Conntrack, ReplyTarget, Target, SOURCE_SHARE};
pub use hash::{fix_owner_key, flow_hash, mix64, owner_of, source_hash, FlowAddr, IndexSeed};
pub use state::{
    seq_near, seq_within, FlowState, Segment, Timeouts, ACK_WINDOW, RST_WINDOW, SEQ_WINDOW,
};
pub use sync::Installed;
pub use synproxy::{sender_mark, Cover, ProxyStep, ProxySyn, ReplyStep, Waiting};
pub use table::{
    Flow, FlowKey, FlowTable, InsertError, NewFlow, ReplyKey, Trust, FLOW_TEMPLATE, SECOND_CHANCES,
};
