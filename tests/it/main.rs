//! The one integration test binary (`cargo test --test it`): one module per area, all
//! sharing `harness`.

mod apply;
mod harness;
mod plan;
mod sandbox;
mod support;
