//! The one writer: data to stdout, everything else (diffs shown before a prompt, warnings,
//! errors) to stderr, each line escaped. Write errors (a closed pipe) are ignored rather
//! than turned into panics.

use std::io::Write;

use crate::cli::Common;
use crate::config::{Env, use_color};
use crate::error::Error;
use crate::render::Style;
use crate::sanitize::sanitize;
use crate::term;

pub struct Output {
    pub stdout_style: Style,
    pub stderr_style: Style,
}

impl Output {
    pub fn new(common: &Common, env: &Env<'_>) -> Output {
        Output {
            stdout_style: Style {
                color: use_color(common.color, term::stdout_is_terminal(), env),
            },
            stderr_style: Style {
                color: use_color(common.color, term::stderr_is_terminal(), env),
            },
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
