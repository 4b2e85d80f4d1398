//! The one writer: data to stdout, everything else (diffs shown before a prompt, warnings,
//! errors) to stderr, each line escaped. Write errors (a closed pipe) are ignored rather
//! than turned into panics.

use std::io::Write;
use std::time::Duration;

use crate::cli::ColorChoice;
use crate::config::{Env, is_dumb_terminal, use_color};
use crate::error::Error;
use crate::render::Style;
use crate::sanitize::sanitize;
use crate::term::{self, ProgressMode};

pub struct Output {
    pub stdout_style: Style,
    pub stderr_style: Style,
    /// `--quiet`: nothing on stderr but errors (`note` and `warn` print nothing); the
    /// command decides what of its stdout is still printed.
    pub quiet: bool,
    /// How reading and writing show progress on stderr.
    pub progress: ProgressMode,
}

impl Output {
    pub fn new(color: ColorChoice, env: &Env<'_>) -> Output {
        Output {
            stdout_style: Style {
                color: use_color(color, term::stdout_is_terminal(), env),
            },
            stderr_style: Style {
                color: use_color(color, term::stderr_is_terminal(), env),
            },
            quiet: false,
            progress: ProgressMode::Hidden,
        }
    }

    /// Progress for a command whose output allows it (`visible`): a bar on a terminal
    /// that can redraw, plain lines at most once per `every` elsewhere.
    pub fn progress(self, visible: bool, every: Duration, env: &Env<'_>) -> Output {
        let fancy = term::stderr_is_terminal() && !is_dumb_terminal(env);
        Output {
            progress: ProgressMode::choose(visible, fancy, every),
            ..self
        }
    }

    pub fn quiet(self, quiet: bool) -> Output {
        Output { quiet, ..self }
    }

    /// Information for the operator on stderr (what is shown, where a file went);
    /// nothing under `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            self.stderr(text);
        }
    }

    pub fn stdout(&self, text: &str) {
        self.stdout_bytes(text.as_bytes());
    }

    pub fn stdout_bytes(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    pub fn stderr(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    pub fn warn(&self, text: &str) {
        if self.quiet {
            return;
        }
        let prefix = if self.stderr_style.color {
            console::style("warning:")
                .yellow()
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            "warning:".to_string()
        };
        self.stderr(&format!("{prefix} {}\n", sanitize(text)));
    }

    pub fn error(&self, e: &Error) {
        // Every line sanitised: messages carry emails and server text.
        let text: Vec<String> = e.to_string().lines().map(sanitize).collect();
        self.stderr(&format!("{}\n", text.join("\n")));
    }
}
