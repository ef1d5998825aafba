//! Part II, wing: what a classroom needs beyond the lesson.
//!
//! [`origin`] refuses `/send` and `/drop` from other sites' pages; [`interfaces`] finds the
//! addresses students can type when the server listens on `0.0.0.0`. Part I names this wing at
//! two seams: `routes.rs` calling the origin rule, and `main.rs` printing the addresses.

pub mod interfaces;
pub mod origin;
