//! `provision explain EMAIL [PLAN]`: what happens to one email and why, from a plan
//! (offline, after the checks `Plan::load` makes) or from a live, read-only look with the
//! reads, policy flags and policy file `plan` uses. Writes nothing anywhere: no request
//! but reads, no file.

use std::path::Path;

use crate::cli::{ExplainArgs, ExplainFormat};
use crate::config::{Connection, Env, ExplainConfig, PlanPolicy};
use crate::error::{Error, Exit};
use crate::explanation::{self, Explanation};
use crate::output::Output;
use crate::planfile::Plan;
use crate::render;

use super::plan::policy_of;
use super::{client_for, now, read_state};

pub fn run(args: &ExplainArgs, env: &Env<'_>, out: &Output) -> Result<Exit, Error> {
    let explanation = match &args.plan {
        Some(path) => explanation::from_plan(&args.email, &Plan::load(path)?),
        None => {
            // The policy file is read and checked before anything is read from the network.
            let config = ExplainConfig::resolve(args, Path::new(""))?;
            let mut found = None;
            super::with_runtime(|| async {
                found = Some(live(&args.email, &config, env).await?);
                Ok(Exit::Success)
            })?;
            found.ok_or_else(|| Error::Internal("the live look returned nothing".into()))?
        }
    };
    out.stdout(&match args.format {
        ExplainFormat::Text => render::explanation_text(&explanation),
        ExplainFormat::Json => render::explanation_json(&explanation),
    });
    Ok(Exit::Success)
}

/// Read the state as `plan` does, under the same resolved policy, and explain `email`.
pub async fn live(
    email: &str,
    config: &ExplainConfig,
    env: &Env<'_>,
) -> Result<Explanation, Error> {
    let PlanPolicy {
        source, protect, ..
    } = &config.policy;
    let conn = Connection::from_env(env)?;
    let client = client_for(&conn, &config.client)?;
    let (roster, users) = read_state(&client, source)
        .await
        .map_err(|e| conn.explain(e))?;
    Ok(explanation::live(
        email,
        &roster,
        &users,
        now(),
        &policy_of(protect),
    ))
}
