//! `command:` checks: a Nagios-style plugin, run without a shell; its exit code is the status
//! and its perfdata become measurements.

use serde::Deserialize;

use super::{CheckAt, Kind};
use crate::config::validate::Context;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    program: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
}

impl Kind for CommandSpec {
    type File = CommandFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, command: CommandFile) -> Option<CommandSpec> {
        if command.program.trim().is_empty() {
            cx.error(at.path, "command.program must not be empty");
            return None;
        }
        Some(CommandSpec {
            program: command.program,
            args: command.args,
        })
    }

    /// Perfdata labels are only known once the plugin has run: any may be followed.
    fn measures(&self, _measurement: &str) -> bool {
        true
    }
}
