//! What an apply did: one result per planned change and the contract's counters. Pure
//! data, shared by the executor (`apply`), which fills it, and `render`, which words it.

use crate::model::{ActionKind, Change};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    AlreadyApplied,
    Failed { code: String, message: String },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AlreadyApplied => "already_applied",
            Outcome::Failed { .. } => "failed",
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match self {
            Outcome::Failed { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn failed(code: &str, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// What happened to one planned change. `user_id` is the plan's, or for a create the
/// id the server gave the new user (when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub change: Change,
    pub user_id: Option<String>,
    pub outcome: Outcome,
}

impl ChangeResult {
    pub fn already_applied(change: Change) -> ChangeResult {
        ChangeResult {
            user_id: change.user_id.clone(),
            change,
            outcome: Outcome::AlreadyApplied,
        }
    }
}

/// The outcome of an apply: one result per change that was attempted or skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub results: Vec<ChangeResult>,
    /// The plan's `unchanged` count, reported as-is.
    pub unchanged: usize,
    /// Changes never started because of Ctrl-C.
    pub not_started: usize,
    pub interrupted: bool,
}

/// The contract's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub created: usize,
    pub restored: usize,
    pub decommissioned: usize,
    pub unchanged: usize,
    pub already_applied: usize,
    pub failed: usize,
}

impl ApplyReport {
    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            unchanged: self.unchanged,
            ..Counters::default()
        };
        for r in &self.results {
            match (&r.outcome, r.change.action) {
                (Outcome::Applied, ActionKind::Create) => c.created += 1,
                (Outcome::Applied, ActionKind::Restore) => c.restored += 1,
                (Outcome::Applied, ActionKind::Ban) => c.decommissioned += 1,
                (Outcome::AlreadyApplied, _) => c.already_applied += 1,
                (Outcome::Failed { .. }, _) => c.failed += 1,
            }
        }
        c
    }

    pub fn failed(&self) -> usize {
        self.counters().failed
    }
}
