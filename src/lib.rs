//! `provision`: keep Supabase Auth users in step with an engineering roster, with
//! reviewed plan/apply changesets. This file lists the modules and dispatches each
//! command to its module in `commands/`; it decides nothing else.

pub mod apply;
pub mod approval;
pub mod canonical;
pub mod cli;
pub mod commands;
pub mod config;
pub mod drift;
pub mod error;
pub mod explanation;
pub mod integrity;
pub mod jsonout;
pub mod lookalike;
pub mod model;
pub mod output;
pub mod planfile;
pub mod policyfile;
pub mod reconcile;
pub mod regular_file;
pub mod render;
pub mod report;
pub mod roster;
pub mod sanitize;
pub mod supabase;
pub mod term;

#[cfg(feature = "sandbox")]
pub mod sandbox;

use std::ffi::OsString;

use crate::cli::{Cli, Command};
use crate::commands::with_runtime;
use crate::config::{Env, process_env};
use crate::error::Exit;
use crate::output::Output;

/// Parse `args` (program name first), run the command, and say how to exit.
pub fn run<I, T>(args: I) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with_env(args, &process_env)
}

/// `run` with the environment given as a lookup function (the examples and tests use
/// it to point at a sandbox without touching the process environment).
pub fn run_with_env<I, T>(args: I, env: &Env<'_>) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Success
                }
                _ => Exit::Usage,
            };
        }
    };
    let (visible, every) = cli.command.progress();
    let out = Output::new(cli.command.color(), env)
        .quiet(cli.command.quiet())
        .progress(visible, every, env);
    let result = match cli.command {
        Command::Plan(ref args) => with_runtime(|| commands::plan::run(args, env, &out)),
        Command::Apply(ref args) => with_runtime(|| commands::apply::run(args, env, &out)),
        Command::Show(ref args) => commands::show::run(args, &out),
        Command::Explain(ref args) => commands::explain::run(args, env, &out),
        Command::Approve(ref args) => commands::approve::run(args, env, &out),
        Command::Completions { shell } => commands::docs::completions(shell, &out),
        Command::Man { ref command } => commands::docs::man(command.as_deref(), &out),
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            out.error(&e);
            e.exit()
        }
    }
}
