//! `heartbeat:` checks: a push check for cron jobs and backups; the job pings medic, and the
//! probe judges the pings against the clock.

use std::path::PathBuf;

use serde::Deserialize;

use super::{CheckAt, Kind};
use crate::config::duration::Duration;
use crate::config::secret::Secret;
use crate::config::validate::Context;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    grace: Option<Duration>,
    token_file: Option<PathBuf>,
}

/// A push check: the job pings medic; the probe only judges the pings against the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatSpec {
    /// Slack after `interval` before a missing success counts, and how long a `/start` may
    /// run without one.
    pub grace: Duration,
    /// `Authorization: Bearer` the pings must carry, from `token_file`.
    pub token: Option<Secret>,
}

impl Kind for HeartbeatSpec {
    type File = HeartbeatFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, h: HeartbeatFile) -> Option<HeartbeatSpec> {
        let grace = h.grace.unwrap_or(at.interval);
        if grace.is_zero() {
            cx.error(at.path, "heartbeat.grace must be greater than 0s");
            return None;
        }
        let token = match &h.token_file {
            Some(file) => {
                let token =
                    cx.read_secret_file(format!("{}: heartbeat.token_file", at.path), file)?;
                if token.expose().is_empty() {
                    cx.error(at.path, "heartbeat.token_file must not be empty");
                    return None;
                }
                Some(token)
            }
            None => None,
        };
        Some(HeartbeatSpec { grace, token })
    }
}
