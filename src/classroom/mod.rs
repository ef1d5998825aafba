//! Part II, wing: what a classroom needs beyond the lesson.
//!
//! [`origin`] refuses `/send` and `/drop` from other sites' pages; [`interfaces`] finds the
//! addresses students can type when the server listens on `0.0.0.0`; [`host`] refuses requests
//! sent under a name that is not this server's (DNS rebinding); [`lab`] serves any bytes for the
//! page's Lab panel. Part I names this wing at two places: `routes.rs` calling its rules (origin,
//! `Host`, lab), and `main.rs` printing the addresses.

pub mod host;
pub mod interfaces;
pub mod lab;
pub mod origin;
