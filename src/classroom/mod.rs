//! Part II, wing: what a classroom needs beyond the lesson.
//!
//! [`origin`] refuses `/send` and `/drop` from other sites' pages; [`interfaces`] finds the
//! addresses students can type when the server listens on `0.0.0.0`; [`host`] refuses requests
//! sent under a name that is not this server's (DNS rebinding). Part I names this wing at three
//! seams: `routes.rs` calling the origin rule and the `Host` check, and `main.rs` printing the
//! addresses.

pub mod host;
pub mod interfaces;
pub mod origin;
