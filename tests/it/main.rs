//! The one integration test binary (`cargo test --test it`): one module per area, all
//! sharing `harness`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apply;
mod bench;
// The benchmark's driver, shared with `examples/bench` (examples cannot be imported).
#[path = "../../examples/bench/driver.rs"]
mod bench_driver;
mod harness;
mod plan;
mod sandbox;
mod support;
