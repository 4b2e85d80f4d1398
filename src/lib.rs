//! `provision`: keep Supabase Auth users in step with an engineering roster, with
//! reviewed plan/apply changesets. This file wires config, client, core and rendering.

pub mod apply;
pub mod cli;
pub mod config;
pub mod error;
pub mod model;

#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod term;
