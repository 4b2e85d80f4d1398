//! The one integration test binary (`cargo test --test it`): one module per area, all
//! sharing `harness`.

// clippy.toml allows unwrap/expect inside #[test] functions only; the helpers these
// tests share (request builders, parsers) fail the test the same way, so allow them
// throughout the test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod harness;
mod sandbox;
