//! `provision explain EMAIL [PLAN]`: what happens to one email and why, from a plan
//! (offline, after the checks `Plan::load` makes) or from a live, read-only look with the
//! reads and policy `plan` uses. Writes nothing anywhere: no request but reads, no file.

use crate::cli::{Common, ExplainArgs, ExplainFormat};
use crate::config::{Connection, Env};
use crate::error::{Error, Exit};
use crate::explanation::{self, Explanation};
use crate::model::RosterSource;
use crate::output::Output;
use crate::planfile::Plan;
use crate::reconcile::Policy;
use crate::render;

use super::plan::{policy_of, roster_source};
use super::{client_for, now, read_state, with_runtime};

pub fn run(
    args: &ExplainArgs,
    common: &Common,
    env: &Env<'_>,
    out: &Output,
) -> Result<Exit, Error> {
    let explanation = match &args.plan {
        Some(path) => explanation::from_plan(&args.email, &Plan::load(path)?),
        None => {
            let source = roster_source(&args.roster_table, args.roster_file.as_deref())?;
            let policy = policy_of(&args.protect);
            let mut found = None;
            with_runtime(|| async {
                found = Some(live(&args.email, &source, &policy, common, env).await?);
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

/// Read the state as `plan` does (the same source and policy, resolved by the caller)
/// and explain `email` from it.
pub async fn live(
    email: &str,
    source: &RosterSource,
    policy: &Policy,
    common: &Common,
    env: &Env<'_>,
) -> Result<Explanation, Error> {
    let conn = Connection::from_env(env)?;
    let client = client_for(&conn, common)?;
    let (roster, users) = read_state(&client, source).await?;
    Ok(explanation::live(email, &roster, &users, now(), policy))
}
