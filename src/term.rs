//! The terminal: TTY checks, the confirmation prompt and progress (a bar on a terminal,
//! plain lines elsewhere). Nothing here decides what to print; callers hand it
//! rendered, sanitised strings.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
            // Ctrl-C while reading: nothing was sent; say not confirmed, not a bug.
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
                Error::InterruptedAtPrompt
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

/// How progress is shown on stderr while a command reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// `--quiet`, `--format json`: nothing.
    Hidden,
    /// A terminal: an indicatif bar or spinner, redrawn in place.
    Bar,
    /// Not a terminal (CI, cron, `TERM=dumb`): a plain line at most once per interval,
    /// like Terraform's "Still creating... [10s elapsed]".
    Lines { every: Duration },
}

impl ProgressMode {
    /// `visible`: the command's output allows progress; `fancy`: stderr is a terminal
    /// that can redraw (not `TERM=dumb`).
    pub fn choose(visible: bool, fancy: bool, every: Duration) -> ProgressMode {
        match (visible, fancy) {
            (false, _) => ProgressMode::Hidden,
            (true, true) => ProgressMode::Bar,
            (true, false) => ProgressMode::Lines { every },
        }
    }
}

/// What a phase has done so far: counted work has a total; a listing describes itself.
type Describe = dyn Fn(&Tally) -> String + Send + Sync;

/// The numbers a progress line is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    pub done: u64,
    pub total: Option<u64>,
    pub elapsed: Duration,
}

impl Tally {
    /// Items per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the rate so far, once anything is done.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        let rate = self.rate();
        (self.done > 0 && rate > 0.0)
            .then(|| Duration::from_secs_f64(total.saturating_sub(self.done) as f64 / rate))
    }
}

/// One phase of work shown on stderr while it runs (reading, applying, checking). Must
/// be created inside the runtime: lines and spinners are drawn by a ticking task, so a
/// phase that makes no progress for a while still says it is alive.
pub struct Progress {
    state: Arc<PhaseState>,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

struct PhaseState {
    label: &'static str,
    done: AtomicU64,
    total: Option<u64>,
    start: Instant,
    lines_printed: AtomicU64,
    describe: Box<Describe>,
}

impl PhaseState {
    fn tally(&self) -> Tally {
        Tally {
            done: self.done.load(Ordering::Relaxed),
            total: self.total,
            elapsed: self.start.elapsed(),
        }
    }

    /// `applying: 150/400 changes, 12.5/s, about 20s left [10s elapsed]`
    fn line(&self) -> String {
        let tally = self.tally();
        format!(
            "{}: {} [{}s elapsed]",
            self.label,
            (self.describe)(&tally),
            tally.elapsed.as_secs()
        )
    }

    fn print_line(&self) {
        self.lines_printed.fetch_add(1, Ordering::Relaxed);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", self.line());
        let _ = err.flush();
    }
}

impl Progress {
    /// Counted work (`total` items): position, rate and time left.
    pub fn counted(
        mode: ProgressMode,
        label: &'static str,
        noun: &'static str,
        total: u64,
    ) -> Progress {
        let describe = move |t: &Tally| {
            let mut s = format!(
                "{}/{} {noun}, {:.1}/s",
                t.done,
                t.total.unwrap_or(0),
                t.rate()
            );
            if let Some(eta) = t.eta() {
                s.push_str(&format!(", about {}s left", eta.as_secs()));
            }
            s
        };
        Progress::start(mode, label, Some(total), Box::new(describe))
    }

    /// Work whose progress `describe` words (a listing: pages and rows so far).
    pub fn activity(
        mode: ProgressMode,
        label: &'static str,
        describe: impl Fn(&Tally) -> String + Send + Sync + 'static,
    ) -> Progress {
        Progress::start(mode, label, None, Box::new(describe))
    }

    fn start(
        mode: ProgressMode,
        label: &'static str,
        total: Option<u64>,
        describe: Box<Describe>,
    ) -> Progress {
        let state = Arc::new(PhaseState {
            label,
            done: AtomicU64::new(0),
            total,
            start: Instant::now(),
            lines_printed: AtomicU64::new(0),
            describe,
        });
        let (bar, ticker) = match mode {
            ProgressMode::Hidden => (None, None),
            ProgressMode::Bar => {
                let bar = match total {
                    Some(len) => {
                        let bar =
                            ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
                        if let Ok(style) = ProgressStyle::with_template(&format!(
                            "{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}} [{{elapsed}}]"
                        )) {
                            bar.set_style(style.progress_chars("=> "));
                        }
                        bar
                    }
                    None => {
                        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                        if let Ok(style) = ProgressStyle::with_template(&format!(
                            "{{spinner}} {label}: {{msg}} [{{elapsed}}]"
                        )) {
                            bar.set_style(style);
                        }
                        bar
                    }
                };
                // The spinner turns and a listing's message is refreshed while nothing
                // else happens.
                let ticker = {
                    let (bar, state) = (bar.clone(), state.clone());
                    tokio::spawn(async move {
                        loop {
                            if state.total.is_none() {
                                bar.set_message((state.describe)(&state.tally()));
                            }
                            bar.tick();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    })
                };
                (Some(bar), Some(ticker))
            }
            ProgressMode::Lines { every } => {
                let state = state.clone();
                let ticker = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        state.print_line();
                    }
                });
                (None, Some(ticker))
            }
        };
        Progress { state, bar, ticker }
    }

    /// One more item done.
    pub fn inc(&self) {
        self.state.done.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// End the phase. A finished bar is cleared; an interrupted one is left on screen at
    /// its final count. Plain lines end with a final line (when any line was printed, or
    /// when interrupted), so the last count shown is the true one.
    pub fn finish(self, interrupted: bool) {
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
        match &self.bar {
            Some(bar) if interrupted => {
                if self.state.total.is_none() {
                    bar.set_message((self.state.describe)(&self.state.tally()));
                }
                bar.abandon();
            }
            Some(bar) => bar.finish_and_clear(),
            None if self.ticker.is_some()
                && (interrupted || self.state.lines_printed.load(Ordering::Relaxed) > 0) =>
            {
                self.state.print_line();
            }
            None => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A phase left by `?` stops drawing too.
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_output_and_terminal() {
        let every = Duration::from_secs(10);
        assert_eq!(
            ProgressMode::choose(false, true, every),
            ProgressMode::Hidden
        );
        assert_eq!(ProgressMode::choose(true, true, every), ProgressMode::Bar);
        assert_eq!(
            ProgressMode::choose(true, false, every),
            ProgressMode::Lines { every }
        );
    }

    #[test]
    fn rate_and_time_left_follow_the_count() {
        let t = Tally {
            done: 150,
            total: Some(400),
            elapsed: Duration::from_secs(10),
        };
        assert_eq!(t.rate(), 15.0);
        assert_eq!(t.eta(), Some(Duration::from_secs_f64(250.0 / 15.0)));
        let none_yet = Tally { done: 0, ..t };
        assert_eq!(none_yet.eta(), None);
        assert_eq!(Tally { total: None, ..t }.eta(), None);
    }

    #[test]
    fn a_counted_line_says_position_rate_and_time_left() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Progress::counted(ProgressMode::Hidden, "applying", "changes", 4);
            p.inc();
            p.inc();
            let line = p.state.line();
            assert!(line.starts_with("applying: 2/4 changes, "), "{line}");
            assert!(line.contains("/s, about "), "{line}");
            assert!(line.ends_with("s elapsed]"), "{line}");
            p.finish(false);
        });
    }
}
