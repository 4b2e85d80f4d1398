//! The one integration test binary (`cargo test --test it`): one module per area. The
//! CLI tests share `support` (a fresh sandbox and a clean environment per test); the
//! sandbox's and the client's tests share `harness`.

// clippy.toml allows unwrap/expect inside #[test] functions only; the helpers these
// tests share fail the test the same way, so allow them throughout the test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apply;
mod approve;
mod bench;
// The benchmark's driver, shared with `examples/bench` (examples cannot be imported).
#[path = "../../examples/bench/driver.rs"]
mod bench_driver;
mod cli;
mod client;
mod errors;
mod explain;
mod harness;
mod one_step;
mod plan;
mod policy_file;
mod progress;
mod quickstart;
mod sandbox;
mod support;
mod trust;
