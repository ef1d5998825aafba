//! Part II, wing: one event log shared by several instances, kept in Redis (`--redis URL`).
//!
//! [`resp`] speaks Redis's protocol by hand; [`log`] keeps the broadcasts in a Redis stream.
//! Part I names it at one seam: `hub.rs` using the shared log instead of the in-memory one.

pub mod log;
pub mod resp;
