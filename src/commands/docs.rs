//! `provision completions SHELL` and `provision man`: generated from the clap types.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::{Error, Exit};
use crate::output::Output;

pub fn completions(shell: Shell, out: &Output) -> Result<Exit, Error> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "provision", &mut buf);
    out.stdout_bytes(&buf);
    Ok(Exit::Success)
}

/// One page per command, named as cargo and git name theirs: provision(1) lists the
/// commands, and `provision man plan` prints provision-plan(1).
pub fn man(command: Option<&str>, out: &Output) -> Result<Exit, Error> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    // Propagates the global options into each command and names it `provision-COMMAND`.
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => cli
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no command `{name}` for a man page")))?,
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
    out.stdout_bytes(&buf);
    Ok(Exit::Success)
}
