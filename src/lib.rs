//! `provision`: keep Supabase Auth users in step with an engineering roster, with
//! reviewed plan/apply changesets. This file wires config, client, core and rendering.

pub mod config;
pub mod drift;
pub mod error;
pub mod model;
pub mod planfile;
pub mod reconcile;
pub mod render;

#[cfg(feature = "sandbox")]
pub mod sandbox;
