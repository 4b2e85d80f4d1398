//! The terminal: TTY checks, the confirmation prompt and the progress bar. Nothing here
//! decides what to print; callers hand it rendered, sanitised strings.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Error;

/// "On a terminal" means stdin and stderr are both terminals: the prompt goes to stderr
/// and the answer comes from stdin.
pub fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Ask on stderr; only the exact answer `yes` confirms. Call only when `is_interactive`.
pub fn confirm(question: &str) -> Result<bool, Error> {
    let answer: String = dialoguer::Input::new()
        .with_prompt(question)
        .allow_empty(true)
        .interact_text()
        .map_err(|e| match e {
            // Ctrl-C while reading: the signal handler has it; say interrupted, not a bug.
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
                Error::Interrupted
            }
            other => Error::Internal(format!("cannot read the confirmation: {other}")),
        })?;
    Ok(answer.trim() == "yes")
}

/// Ask on the terminal for a passphrase, echoing nothing. Call only when
/// `is_interactive`.
pub fn passphrase(prompt: &str) -> Result<String, Error> {
    dialoguer::Password::new()
        .with_prompt(prompt)
        .allow_empty_password(true)
        .interact()
        .map_err(|e| match e {
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
                Error::Interrupted
            }
            other => Error::Internal(format!("cannot read the passphrase: {other}")),
        })
}

/// A progress bar on stderr, or a hidden one when stderr is not a terminal or the
/// output is machine-readable.
pub fn progress(total: usize, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} applying [{bar:30}] {pos}/{len} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
