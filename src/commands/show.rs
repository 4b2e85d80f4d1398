//! `provision show PLAN`: render a saved plan, offline, after the checks `Plan::parse` and
//! `integrity::check` make.

use std::path::Path;

use time::OffsetDateTime;

use crate::cli::{PlanFormat, ShowArgs};
use crate::config::ShowConfig;
use crate::error::{Error, Exit};
use crate::jsonout;
use crate::output::Output;
use crate::planfile::Plan;
use crate::render;

pub fn run(args: &ShowArgs, out: &Output) -> Result<Exit, Error> {
    // The policy file is checked like every command's (its approvals are for `show`, too).
    let _config = ShowConfig::resolve(args, Path::new(""))?;
    let text = std::fs::read_to_string(&args.plan).map_err(|e| Error::ReadFile {
        path: args.plan.clone(),
        reason: e.to_string(),
    })?;
    let plan = super::checked(Plan::parse(&text, &args.plan)?)?;
    match args.format {
        // As stored, with controls and bidi characters escaped (same values).
        PlanFormat::Json => out.stdout(&jsonout::escape_text(&text)),
        PlanFormat::Markdown => out.stdout(&render::plan_markdown(&plan)),
        PlanFormat::Text => {
            out.stdout(&render::plan_text(&plan, out.stdout_style));
            out.stdout(&render::plan_details(&plan, OffsetDateTime::now_utc()));
        }
    }
    Ok(Exit::Success)
}
