//! `cluster:` — how replicas share the checks: a fixed `INDEX/COUNT` split, or `auto` (a
//! membership kept in a PostgreSQL store), how many replicas probe each check, and where this
//! one probes from. The `--cluster.*` flags override the keys.

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::path::YamlPath;
use super::state::StoreConfig;
use super::validate::Context;
use super::Overrides;
use crate::cluster::Shard;

/// The most replicas one check can have: each probes it, and a confirmation counts them.
pub const MAX_REPLICATION: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    pub sharding: Sharding,
    /// How many live members probe each check (`auto` only; 1 otherwise).
    pub replication: u32,
    /// Where this replica probes from (a word for people: a zone, a site).
    pub location: Option<String>,
}

/// How the checks are split among replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharding {
    /// `INDEX/COUNT`, or every check when there is no split (`0/1`, the default).
    Fixed(Shard),
    /// Membership in the PostgreSQL store, ownership by rendezvous hashing.
    Auto,
}

impl Default for Sharding {
    fn default() -> Self {
        Sharding::Fixed(Shard::default())
    }
}

impl ClusterConfig {
    pub fn is_auto(&self) -> bool {
        self.sharding == Sharding::Auto
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    shard: Option<String>,
    replication: Option<u32>,
    location: Option<String>,
}

pub(super) fn section(
    cx: &mut Context,
    value: Option<Value>,
    overrides: &Overrides,
    store: &StoreConfig,
) -> ClusterConfig {
    let path = YamlPath::top("cluster");
    let file: ClusterFile = cx.parse_or_default(value, &path);
    let (shard, shard_from) = match (&overrides.cluster_shard, &file.shard) {
        (Some(flag), _) => (Some(flag.as_str()), "--cluster.shard"),
        (None, Some(key)) => (Some(key.as_str()), "cluster.shard"),
        (None, None) => (None, "cluster.shard"),
    };
    let sharding = match shard.map(str::trim) {
        None => Sharding::default(),
        Some("auto") => Sharding::Auto,
        Some(text) => match text.parse::<Shard>() {
            Ok(fixed) => Sharding::Fixed(fixed),
            Err(e) => {
                cx.error(path.key("shard"), format!("{shard_from}: {e}, or auto"));
                Sharding::default()
            }
        },
    };
    let is_postgres = ["postgres://", "postgresql://"]
        .iter()
        .any(|p| store.url.expose().starts_with(p));
    if sharding == Sharding::Auto && !is_postgres {
        cx.error(
            path.key("shard"),
            format!("{shard_from} auto needs a PostgreSQL state store (state.url or --state.url postgres://…): the members meet there; use INDEX/COUNT without one"),
        );
    }
    let replication = overrides
        .cluster_replication
        .or(file.replication)
        .unwrap_or(1);
    if !(1..=MAX_REPLICATION).contains(&replication) {
        cx.error(
            path.key("replication"),
            format!("must be between 1 and {MAX_REPLICATION}, not {replication}"),
        );
    } else if replication > 1 && sharding != Sharding::Auto {
        cx.error(
            path.key("replication"),
            "needs shard: auto (--cluster.shard auto): a fixed split gives each check one replica",
        );
    }
    let location = overrides
        .cluster_location
        .clone()
        .or(file.location)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    if location.as_ref().is_some_and(|l| l.len() > 64) {
        cx.error(path.key("location"), "must be at most 64 characters");
    }
    ClusterConfig {
        sharding,
        replication: replication.clamp(1, MAX_REPLICATION),
        location,
    }
}
