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
