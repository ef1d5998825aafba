//! Part II, wing: the fast fan-out, for thousands of clients (`--broadcast-writers N`).
//!
//! Read `simple_fanout.rs` first: this wing does the same job with a few writer threads instead of
//! one wake-up per connection thread. Part I names it at one seam: `hub.rs` choosing the fan-out.

pub mod writers;
