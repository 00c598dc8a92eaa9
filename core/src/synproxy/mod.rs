//! The SYN proxy (placeholder; see the design below once written).

pub mod cookie;
pub mod siphash;

pub use cookie::{CookieKey, CookieOptions, CookieTuple, PERIOD_MS};
