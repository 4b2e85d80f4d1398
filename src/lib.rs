//! `provision`: keep Supabase Auth users in step with an engineering roster, with
//! reviewed plan/apply changesets. This file wires config, client, core and rendering.

pub mod config;
pub mod error;
pub mod model;
pub mod roster;
pub mod supabase;

#[cfg(feature = "sandbox")]
pub mod sandbox;
