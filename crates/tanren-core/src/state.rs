//! Lifecycle states of studies and trials, stored as snake_case text in the database and on the wire.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }
        impl $name {
            pub fn as_str(self) -> &'static str { match self { $(Self::$variant => $text),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($text => Ok(Self::$variant),)+ other => Err(format!("unknown {} `{other}`", stringify!($name))) }
            }
        }
    };
}

text_enum!(TrialState {
    Queued => "queued",
    Running => "running",
    Complete => "complete",
    Pruned => "pruned",
    Failed => "failed",
});

text_enum!(StudyState {
    Running => "running",
    Complete => "complete",
    Stopped => "stopped",
    Failed => "failed",
});

impl TrialState {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Complete | Self::Pruned | Self::Failed)
    }
}

impl StudyState {
    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Running)
    }
}

text_enum!(FailureKind {
    // The trial itself failed (bad config, diverged, libtorch error): counts toward the budget and
    // toward the consecutive failures that end a study.
    Error => "error",
    // The worker or its connection went away (lost, refused, deadline, shutdown): the trial is retried
    // with the same parameters and counts toward nothing.
    Interrupted => "interrupted",
    // Interrupted more often than the retry limit allows: counts like an error.
    RetriesExhausted => "retries_exhausted",
    // Cancelled because the study was stopped or ran out of its minutes budget.
    Stopped => "stopped",
});

text_enum!(EndReason {
    TrialBudget => "trial_budget",
    MinutesBudget => "minutes_budget",
    // A finite space (grid) has no configuration left.
    SpaceExhausted => "space_exhausted",
    Stopped => "stopped",
    Failed => "failed",
});

impl FailureKind {
    /// Whether a trial that failed this way uses up the trial budget (all but interrupted ones).
    pub fn uses_budget(self) -> bool {
        !matches!(self, Self::Interrupted)
    }

    /// Whether it counts toward the consecutive failures that end a study.
    pub fn is_trial_fault(self) -> bool {
        matches!(self, Self::Error | Self::RetriesExhausted)
    }
}

impl EndReason {
    /// The study did all it was going to do (its progress reads as complete).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Self::TrialBudget | Self::MinutesBudget | Self::SpaceExhausted
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::TrialBudget => "trial budget reached",
            Self::MinutesBudget => "minutes budget reached",
            Self::SpaceExhausted => "every configuration of the search space was tried",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}
