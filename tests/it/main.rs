//! The one integration test binary (`cargo test --test it`): one module per area, all
//! sharing `harness`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apply;
mod cli;
mod harness;
mod plan;
mod quickstart;
mod sandbox;
mod support;
