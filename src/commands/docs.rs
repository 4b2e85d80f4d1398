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

pub fn man(out: &Output) -> Result<Exit, Error> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
    out.stdout_bytes(&buf);
    Ok(Exit::Success)
}
