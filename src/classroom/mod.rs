//! Part II, wing: what a classroom needs beyond the lesson.
//!
//! [`origin`] refuses `/send` and `/drop` from other sites' pages; [`interfaces`] finds the
//! addresses students can type when the server listens on `0.0.0.0`; [`lab`] serves any bytes
//! for the page's Lab panel. Part I names this wing at three seams: `routes.rs` calling the
//! origin rule and the lab, and `main.rs` printing the addresses.

pub mod interfaces;
pub mod lab;
pub mod origin;
