//! `provision show PLAN`: render a saved plan, offline, after the checks `Plan::parse` makes.

use time::OffsetDateTime;

use crate::cli::{PlanFormat, ShowArgs};
use crate::error::{Error, Exit};
use crate::output::Output;
use crate::planfile::Plan;
use crate::render;

pub fn run(args: &ShowArgs, out: &Output) -> Result<Exit, Error> {
    let text = std::fs::read_to_string(&args.plan).map_err(|e| Error::ReadFile {
        path: args.plan.clone(),
        reason: e.to_string(),
    })?;
    let plan = Plan::parse(&text, &args.plan)?;
    match args.format {
        PlanFormat::Json => out.stdout(&text),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(&plan)),
        PlanFormat::Text => {
            out.stdout(&render::plan_text(&plan, out.stdout_style));
            out.stdout(&render::plan_details(&plan, OffsetDateTime::now_utc()));
        }
    }
    Ok(Exit::Success)
}
