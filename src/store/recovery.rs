//! Recovery records: runs, attempts, per-step counters and cooldowns, learned effectiveness.
//! Every attempt is written before its action starts, so a crash still leaves the record that
//! keeps its cooldown.

use std::collections::BTreeMap;

use sqlx::{Connection as _, Row};

use super::{discard, query_error, Store, StoreError};
use crate::process_group::{self, Fate, GroupIdentity};
use crate::timefmt::rfc3339_ms;
pub use crate::vocabulary::StepState;

/// How effectiveness is learned: an exponentially weighted average that keeps `keep` of the
/// old value, starting from `untried` (the recovery chain's rule, applied atomically here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    pub keep: f64,
    pub untried: f64,
}

/// One attempt as `/api/v1/recoveries` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub id: i64,
    pub run_id: String,
    pub chain: String,
    pub step: String,
    pub target: String,
    pub trigger: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `success`, `failure`, `timeout`; null while running.
    pub result: Option<String>,
    pub message: String,
    pub exit_code: Option<i64>,
    pub duration_seconds: Option<f64>,
    /// The fencing token of the attempt's run (what its action was given); null for runs
    /// recorded before tokens existed.
    pub fencing_token: Option<i64>,
    /// The tail of what the action printed or answered (at most 4 KiB).
    pub output: String,
}

/// Per-step totals for `/api/v1/recoveries/stats` and `medic recover --stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub chain: String,
    pub step: String,
    pub attempts: i64,
    pub successes: i64,
    pub success_ratio: f64,
    pub mean_duration_seconds: Option<f64>,
    pub effectiveness: Option<f64>,
}

/// How an attempt ended, for the store.
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub finished_ms: i64,
    pub result: &'static str,
    pub message: String,
    pub exit_code: Option<i64>,
    pub output: String,
    pub duration_seconds: f64,
}

/// An attempt about to start.
#[derive(Debug, Clone, Copy)]
pub struct AttemptStart<'a> {
    pub run_id: &'a str,
    pub chain: &'a str,
    pub step: &'a str,
    /// Whose counters it counts against.
    pub subject: &'a str,
    pub target: &'a str,
    pub trigger: &'a str,
    pub started_ms: i64,
}

/// The limits the store enforces across replicas when a run begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetLimits {
    /// Runs in progress at once, every chain.
    pub max_concurrent_runs: Option<u32>,
    /// Runs in progress at once of the run's chain.
    pub chain_max_concurrent_runs: Option<u32>,
    /// Runs started within the sliding window, every chain.
    pub max_runs: Option<crate::config::RateLimit>,
}

impl FleetLimits {
    fn is_empty(&self) -> bool {
        *self == FleetLimits::default()
    }
}

/// What became of a run the store was asked to begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Recorded, with its fencing token.
    Started(i64),
    /// A run for the same subject is active (here or on another replica).
    AlreadyRunning,
    /// A fleet-wide limit holds it.
    Held(crate::vocabulary::HoldReason),
}

/// A run the store holds as started, for starting one.
#[derive(Debug, Clone)]
pub struct RunStart<'a> {
    pub id: &'a str,
    pub chain: &'a str,
    pub target: &'a str,
    /// What the run heals: at most one active run per (chain, subject).
    pub subject: &'a str,
    pub trigger: &'a str,
    pub started_ms: i64,
    pub owner: &'a str,
    pub lease_until_ms: i64,
    pub labels_json: String,
}

/// The record of an attempt medic stopped during, saying what became of its process group.
fn interrupted_message(pgid: Option<i32>, fate: Option<Fate>) -> String {
    const BASE: &str = "interrupted: medic stopped during this attempt";
    match (pgid, fate) {
        (Some(pgid), Some(Fate::Killed)) => {
            format!("{BASE}; its process group {pgid} was still running and was killed")
        }
        (Some(pgid), Some(Fate::Ended { stragglers: 0 })) => {
            format!("{BASE}; its process group {pgid} had already ended")
        }
        (Some(pgid), Some(Fate::Ended { stragglers })) => format!(
            "{BASE}; its process group {pgid} had ended, but {stragglers} of its processes were still running and were killed"
        ),
        (Some(pgid), Some(Fate::Elsewhere)) => {
            format!("{BASE}; its process group {pgid} ran on another host or boot and was left alone")
        }
        _ => BASE.to_string(),
    }
}

impl Store {
    pub async fn step_states(
        &self,
        chain: &str,
        subject: &str,
    ) -> Result<BTreeMap<String, StepState>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, attempts, last_attempt_ms FROM recovery_step_state WHERE chain = $1 AND target = $2",
        )
        .bind(chain.to_string())
        .bind(subject.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let step: String = row.try_get(0).map_err(query_error("read"))?;
            let attempts: i64 = row.try_get(1).map_err(query_error("read"))?;
            let last: Option<i64> = row.try_get(2).map_err(query_error("read"))?;
            out.insert(
                step,
                StepState {
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_attempt_ms: last,
                },
            );
        }
        Ok(out)
    }

    /// Counts the attempt and writes its record, in one transaction, before the action runs.
    pub async fn begin_attempt(&self, a: &AttemptStart<'_>) -> Result<i64, StoreError> {
        let AttemptStart {
            run_id,
            chain,
            step,
            subject,
            target,
            trigger,
            started_ms,
        } = *a;
        // A failed transaction's connection is closed, not reused (see `discard`): it may hold
        // the write lock, and then no later attempt could be recorded.
        let mut conn = self.pool.acquire().await.map_err(query_error("write"))?;
        let result = async {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO recovery_step_state (chain, step, target, attempts, last_attempt_ms) VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (chain, step, target) DO UPDATE SET attempts = recovery_step_state.attempts + 1, last_attempt_ms = $4",
            )
            .bind(chain.to_string())
            .bind(step.to_string())
            .bind(subject.to_string())
            .bind(started_ms)
            .execute(&mut *tx)
            .await?;
            let id: i64 = sqlx::query(
                "INSERT INTO recovery_attempts (run_id, chain, step, target, trigger, started_ms) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(run_id.to_string())
            .bind(chain.to_string())
            .bind(step.to_string())
            .bind(target.to_string())
            .bind(trigger.to_string())
            .bind(started_ms)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(id)
        }
        .await;
        match result {
            Ok(id) => Ok(id),
            Err(source) => {
                discard(conn).await;
                Err(StoreError::Query {
                    operation: "write",
                    source,
                })
            }
        }
    }

    /// Records the step a shadow run would have run, already ended with result `shadow`. No
    /// counter moves: shadow mode changes no attempt count, cooldown or effectiveness.
    pub async fn record_shadow_attempt(
        &self,
        a: &AttemptStart<'_>,
        message: &str,
    ) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO recovery_attempts (run_id, chain, step, target, trigger, started_ms, finished_ms, result, message, duration_seconds) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, 'shadow', $7, 0) RETURNING id",
        )
        .bind(a.run_id.to_string())
        .bind(a.chain.to_string())
        .bind(a.step.to_string())
        .bind(a.target.to_string())
        .bind(a.trigger.to_string())
        .bind(a.started_ms)
        .bind(message.to_string())
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(query_error("write"))
    }

    pub async fn end_attempt(&self, id: i64, end: &AttemptEnd) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recovery_attempts SET finished_ms = $1, result = $2, message = $3, exit_code = $4, output = $5, duration_seconds = $6 WHERE id = $7",
        )
        .bind(end.finished_ms)
        .bind(end.result)
        .bind(end.message.clone())
        .bind(end.exit_code)
        .bind(end.output.clone())
        .bind(end.duration_seconds)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(())
    }

    /// Records the process group of a running attempt, once it is spawned.
    pub async fn set_attempt_group(
        &self,
        id: i64,
        group: &GroupIdentity,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recovery_attempts SET pgid = $1, boot_id = $2, leader_start_ticks = $3, process_tag = $4 WHERE id = $5",
        )
        .bind(i64::from(group.pgid))
        .bind(group.boot_id.clone())
        .bind(i64::try_from(group.leader_start_ticks).unwrap_or(i64::MAX))
        .bind(group.tag.clone())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(())
    }

    /// Resets attempt counters of `steps` (all steps when `None`) for a subject. Cooldowns stay:
    /// the time of the last attempt is kept.
    pub async fn reset_counters(
        &self,
        chain: &str,
        subject: &str,
        steps: Option<&[String]>,
    ) -> Result<(), StoreError> {
        match steps {
            None => {
                sqlx::query(
                    "UPDATE recovery_step_state SET attempts = 0 WHERE chain = $1 AND target = $2",
                )
                .bind(chain.to_string())
                .bind(subject.to_string())
                .execute(&self.pool)
                .await
                .map_err(query_error("write"))?;
            }
            Some(steps) => {
                for step in steps {
                    sqlx::query(
                        "UPDATE recovery_step_state SET attempts = 0 WHERE chain = $1 AND target = $2 AND step = $3",
                    )
                    .bind(chain.to_string())
                    .bind(subject.to_string())
                    .bind(step.clone())
                    .execute(&self.pool)
                    .await
                    .map_err(query_error("write"))?;
                }
            }
        }
        Ok(())
    }

    pub async fn healthy_since(
        &self,
        chain: &str,
        subject: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT healthy_since_ms FROM recovery_subjects WHERE chain = $1 AND subject = $2",
        )
        .bind(chain.to_string())
        .bind(subject.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read"))?;
        match row {
            Some(row) => row
                .try_get::<Option<i64>, _>(0)
                .map_err(query_error("read")),
            None => Ok(None),
        }
    }

    /// Marks a subject healthy since `since_ms` (kept if already healthy), or not healthy.
    pub async fn set_healthy_since(
        &self,
        chain: &str,
        subject: &str,
        since_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let sql = match since_ms {
            Some(_) => {
                "INSERT INTO recovery_subjects (chain, subject, healthy_since_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain, subject) DO UPDATE SET healthy_since_ms = COALESCE(recovery_subjects.healthy_since_ms, $3)"
            }
            None => {
                "INSERT INTO recovery_subjects (chain, subject, healthy_since_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain, subject) DO UPDATE SET healthy_since_ms = NULL"
            }
        };
        sqlx::query(sql)
            .bind(chain.to_string())
            .bind(subject.to_string())
            .bind(since_ms)
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
        Ok(())
    }

    /// Records a run as started and issues its fencing token, in one transaction. `None` when
    /// another run for the same (chain, subject) is still active (in this process or another
    /// replica); otherwise the token: larger than that of every run begun before.
    pub async fn begin_run(&self, run: &RunStart<'_>) -> Result<Option<i64>, StoreError> {
        match self.begin_run_within(run, &FleetLimits::default()).await? {
            Begun::Started(token) => Ok(Some(token)),
            Begun::AlreadyRunning | Begun::Held(_) => Ok(None),
        }
    }

    /// Begins a run unless one for its subject is active or a fleet-wide limit holds it: on
    /// PostgreSQL the store decides, counting every replica's runs under an advisory
    /// transaction lock.
    pub async fn begin_run_within(
        &self,
        run: &RunStart<'_>,
        limits: &FleetLimits,
    ) -> Result<Begun, StoreError> {
        // As every transaction of the store: a failed one's connection is closed, not reused
        // (see `discard`). After SQLITE_FULL it may still hold the write lock, and then nothing
        // else could be written until a restart.
        let mut conn = self.pool.acquire().await.map_err(query_error("write"))?;
        let result = async {
            let mut tx = conn.begin().await?;
            // Only a shared PostgreSQL store has a fleet to count: with SQLite this process is
            // the only one healing, its manager already counted, and a read before the write
            // would make two runs beginning at once fail on SQLite's snapshot.
            if !limits.is_empty() && self.backend == super::Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(797901)")
                    .execute(&mut *tx)
                    .await?;
                if let Some(reason) = fleet_hold(&mut tx, run, limits).await? {
                    tx.rollback().await?;
                    return Ok(Begun::Held(reason));
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO recovery_runs (id, chain, target, subject, trigger, started_ms, owner, lease_until_ms, labels) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(run.id.to_string())
            .bind(run.chain.to_string())
            .bind(run.target.to_string())
            .bind(run.subject.to_string())
            .bind(run.trigger.to_string())
            .bind(run.started_ms)
            .bind(run.owner.to_string())
            .bind(run.lease_until_ms)
            .bind(run.labels_json.clone())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(Begun::AlreadyRunning);
            }
            // The counter row is locked until commit: runs beginning at once take turns here,
            // so tokens are issued in the order the runs are recorded.
            let token: i64 = sqlx::query(
                "UPDATE medic_fencing SET token = token + 1 WHERE id = 1 RETURNING token",
            )
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))?;
            sqlx::query("UPDATE recovery_runs SET fencing_token = $1 WHERE id = $2")
                .bind(token)
                .bind(run.id.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Begun::Started(token))
        }
        .await;
        match result {
            Ok(token) => Ok(token),
            Err(source) => {
                discard(conn).await;
                Err(StoreError::Query {
                    operation: "write",
                    source,
                })
            }
        }
    }

    /// Forgets a run that turned out to have nothing to do.
    pub async fn discard_run(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recovery_runs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM recovery_attempts WHERE run_id = $1)")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
        // Its audit goes with it (a run kept for its attempts keeps its decisions too).
        sqlx::query("DELETE FROM recovery_decisions WHERE run_id = $1 AND NOT EXISTS (SELECT 1 FROM recovery_runs WHERE id = $1)")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
        Ok(())
    }

    /// The store's own clock, in ms since the epoch. Leases are written and compared in this
    /// time only, so replicas whose wall clocks disagree still agree on when a lease lapses.
    pub async fn clock_ms(&self) -> Result<i64, StoreError> {
        sqlx::query(&format!("SELECT {}", self.now_sql()))
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
            .map_err(query_error("read"))
    }

    /// The store's current time in ms as an SQL expression (the time of the statement, not of
    /// its transaction).
    pub(super) fn now_sql(&self) -> &'static str {
        match self.backend {
            super::Backend::Postgres => {
                "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
            }
            super::Backend::Sqlite => {
                "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
            }
        }
    }

    /// Extends a run's lease to `lease_ms` past the store's now. `false` when the lease is no
    /// longer this run's to renew: it lapsed (by the store's clock) or the run was ended, maybe
    /// by a replica that took it over. A lapsed lease is never revived.
    pub async fn renew_lease(&self, id: &str, lease_ms: i64) -> Result<bool, StoreError> {
        let now = self.now_sql();
        let result = sqlx::query(&format!(
            "UPDATE recovery_runs SET lease_until_ms = {now} + $1 \
             WHERE id = $2 AND finished_ms IS NULL AND lease_until_ms >= {now}"
        ))
        .bind(lease_ms)
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn end_run(
        &self,
        id: &str,
        finished_ms: i64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        // A run a replica already ended as abandoned keeps that end.
        sqlx::query("UPDATE recovery_runs SET finished_ms = $1, outcome = $2 WHERE id = $3 AND finished_ms IS NULL")
            .bind(finished_ms)
            .bind(outcome.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
        Ok(())
    }

    /// Ends runs whose owner stopped renewing their lease (it crashed, was killed or lost the
    /// store) more than `margin_ms` ago, and runs of `restarted_owner` (this process's previous
    /// life): the run is `cancelled` and its unfinished attempt a `failure`. `now_ms` is the
    /// store's clock ([`Store::clock_ms`]), the clock leases are written in. The margin is the
    /// time a fenced owner has to kill its step after it stopped acting. Returns (chain,
    /// trigger) of each.
    pub async fn end_abandoned_runs(
        &self,
        now_ms: i64,
        restarted_owner: &str,
        margin_ms: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, chain, trigger FROM recovery_runs WHERE finished_ms IS NULL AND (lease_until_ms < $1 OR (owner = $2 AND started_ms < $3))",
        )
        .bind(now_ms.saturating_sub(margin_ms))
        .bind(restarted_owner.to_string())
        .bind(crate::process_start_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        let mut ended = Vec::new();
        for row in rows {
            let id: String = row.try_get(0).map_err(query_error("read"))?;
            let chain: String = row.try_get(1).map_err(query_error("read"))?;
            let trigger: String = row.try_get(2).map_err(query_error("read"))?;
            self.interrupt_attempts(&id, now_ms).await?;
            let updated = sqlx::query(
                "UPDATE recovery_runs SET finished_ms = $1, outcome = 'cancelled' WHERE id = $2 AND finished_ms IS NULL",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
            if updated.rows_affected() == 1 {
                ended.push((chain, trigger));
            }
        }
        Ok(ended)
    }

    /// Marks a run's unfinished attempts interrupted, each after ending its process group if
    /// it still runs on this host (the record says so): no step outlives its record.
    async fn interrupt_attempts(&self, run_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let rows = sqlx::query(
            "SELECT id, pgid, boot_id, leader_start_ticks, process_tag FROM recovery_attempts WHERE run_id = $1 AND result IS NULL",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        for row in rows {
            let id: i64 = row.try_get(0).map_err(query_error("read"))?;
            let pgid: Option<i64> = row.try_get(1).map_err(query_error("read"))?;
            let boot_id: Option<String> = row.try_get(2).map_err(query_error("read"))?;
            let start: Option<i64> = row.try_get(3).map_err(query_error("read"))?;
            let tag: Option<String> = row.try_get(4).map_err(query_error("read"))?;
            let group = match (pgid, boot_id, start) {
                (Some(pgid), Some(boot_id), Some(start)) => Some(GroupIdentity {
                    pgid: i32::try_from(pgid).unwrap_or(0),
                    boot_id,
                    leader_start_ticks: u64::try_from(start).unwrap_or(0),
                    tag: tag.unwrap_or_default(),
                }),
                _ => None,
            };
            let fate = group.as_ref().map(|g| {
                let fate = process_group::end_recorded(g);
                if fate == Fate::Killed {
                    tracing::warn!(
                        pgid = g.pgid,
                        "killed the process group of a step a stopped medic left running"
                    );
                }
                fate
            });
            let message = interrupted_message(group.as_ref().map(|g| g.pgid), fate);
            sqlx::query(
                "UPDATE recovery_attempts SET finished_ms = $1, result = 'failure', message = $2 WHERE id = $3 AND result IS NULL",
            )
            .bind(now_ms)
            .bind(message)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
        }
        Ok(())
    }

    /// Learned effectiveness of every step that has any.
    pub async fn effectiveness(&self) -> Result<BTreeMap<(String, String), f64>, StoreError> {
        let rows = sqlx::query("SELECT chain, step, value FROM recovery_effectiveness")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("read"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let chain: String = row.try_get(0).map_err(query_error("read"))?;
            let step: String = row.try_get(1).map_err(query_error("read"))?;
            let value: f64 = row.try_get(2).map_err(query_error("read"))?;
            out.insert((chain, step), value);
        }
        Ok(out)
    }

    /// Folds one verified outcome into a step's effectiveness, atomically (replicas may learn
    /// at the same time). Returns the new value.
    pub async fn learn(
        &self,
        chain: &str,
        step: &str,
        success: bool,
        weights: Ewma,
        now_ms: i64,
    ) -> Result<f64, StoreError> {
        let outcome = if success { 1.0 } else { 0.0 };
        let first = weights.keep * weights.untried + (1.0 - weights.keep) * outcome;
        sqlx::query(
            "INSERT INTO recovery_effectiveness (chain, step, value, samples, updated_ms) VALUES ($1, $2, $3, 1, $5) \
             ON CONFLICT (chain, step) DO UPDATE SET value = $6 * recovery_effectiveness.value + (1 - $6) * $4, \
             samples = recovery_effectiveness.samples + 1, updated_ms = $5",
        )
        .bind(chain.to_string())
        .bind(step.to_string())
        .bind(first)
        .bind(outcome)
        .bind(now_ms)
        .bind(weights.keep)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        let value: f64 =
            sqlx::query("SELECT value FROM recovery_effectiveness WHERE chain = $1 AND step = $2")
                .bind(chain.to_string())
                .bind(step.to_string())
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get::<f64, _>(0))
                .map_err(query_error("read"))?;
        Ok(value)
    }

    /// Attempts, newest first.
    pub async fn recent_attempts(
        &self,
        chain: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let base = "SELECT id, run_id, chain, step, target, trigger, started_ms, finished_ms, result, message, exit_code, duration_seconds, \
                    (SELECT r.fencing_token FROM recovery_runs r WHERE r.id = recovery_attempts.run_id), output FROM recovery_attempts";
        let rows = match chain {
            Some(chain) => {
                sqlx::query(&format!(
                    "{base} WHERE chain = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(chain.to_string())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!("{base} ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(query_error("read"))?;
        rows.iter()
            .map(|row| {
                let started: i64 = row.try_get(6)?;
                let finished: Option<i64> = row.try_get(7)?;
                Ok(AttemptRecord {
                    id: row.try_get(0)?,
                    run_id: row.try_get(1)?,
                    chain: row.try_get(2)?,
                    step: row.try_get(3)?,
                    target: row.try_get(4)?,
                    trigger: row.try_get(5)?,
                    started_at: rfc3339_ms(started),
                    finished_at: finished.map(rfc3339_ms),
                    result: row.try_get(8)?,
                    message: row.try_get(9)?,
                    exit_code: row.try_get(10)?,
                    duration_seconds: row.try_get(11)?,
                    fencing_token: row.try_get(12)?,
                    output: row.try_get(13)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_error("read"))
    }

    /// Totals per (chain, step) over every finished attempt kept.
    pub async fn step_stats(&self) -> Result<Vec<StepStats>, StoreError> {
        let effectiveness = self.effectiveness().await?;
        let rows = sqlx::query(
            "SELECT chain, step, COUNT(*), SUM(CASE WHEN result = 'success' THEN 1 ELSE 0 END), AVG(duration_seconds) \
             FROM recovery_attempts WHERE result IS NOT NULL GROUP BY chain, step ORDER BY chain, step",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        rows.iter()
            .map(|row| {
                let chain: String = row.try_get(0)?;
                let step: String = row.try_get(1)?;
                let attempts: i64 = row.try_get(2)?;
                let successes: i64 = row.try_get::<Option<i64>, _>(3)?.unwrap_or(0);
                Ok(StepStats {
                    effectiveness: effectiveness.get(&(chain.clone(), step.clone())).copied(),
                    chain,
                    step,
                    attempts,
                    successes,
                    success_ratio: if attempts > 0 {
                        successes as f64 / attempts as f64
                    } else {
                        0.0
                    },
                    mean_duration_seconds: row.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_error("read"))
    }
}

/// Whether the fleet's runs leave room for this one, counted inside its transaction.
async fn fleet_hold(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    run: &RunStart<'_>,
    limits: &FleetLimits,
) -> Result<Option<crate::vocabulary::HoldReason>, sqlx::Error> {
    use crate::vocabulary::HoldReason;
    if let Some(rate) = limits.max_runs {
        let started: i64 = sqlx::query("SELECT COUNT(*) FROM recovery_runs WHERE started_ms > $1")
            .bind(run.started_ms.saturating_sub(rate.within_ms))
            .fetch_one(&mut **tx)
            .await
            .and_then(|r| r.try_get(0))?;
        if started >= i64::from(rate.count) {
            return Ok(Some(HoldReason::Rate));
        }
    }
    if let Some(max) = limits.max_concurrent_runs {
        let active: i64 =
            sqlx::query("SELECT COUNT(*) FROM recovery_runs WHERE finished_ms IS NULL")
                .fetch_one(&mut **tx)
                .await
                .and_then(|r| r.try_get(0))?;
        if active >= i64::from(max) {
            return Ok(Some(HoldReason::Concurrency));
        }
    }
    if let Some(max) = limits.chain_max_concurrent_runs {
        let active: i64 = sqlx::query(
            "SELECT COUNT(*) FROM recovery_runs WHERE finished_ms IS NULL AND chain = $1",
        )
        .bind(run.chain.to_string())
        .fetch_one(&mut **tx)
        .await
        .and_then(|r| r.try_get(0))?;
        if active >= i64::from(max) {
            return Ok(Some(HoldReason::Concurrency));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&Secret::new(format!(
            "sqlite://{}/m.db",
            dir.path().display()
        )))
        .await
        .unwrap()
    }

    fn run<'a>(id: &'a str, subject: &'a str, lease_until_ms: i64) -> RunStart<'a> {
        RunStart {
            id,
            chain: "c",
            target: subject,
            subject,
            trigger: "check",
            started_ms: 1000,
            owner: "me",
            lease_until_ms,
            labels_json: "{}".into(),
        }
    }

    #[tokio::test]
    async fn fencing_tokens_grow_with_every_run_begun_and_show_in_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let first = store.begin_run(&run("r1", "check:a", 0)).await.unwrap();
        let refused = store.begin_run(&run("r2", "check:a", 0)).await.unwrap();
        let other = store.begin_run(&run("r3", "check:b", 0)).await.unwrap();
        assert_eq!(refused, None, "one active run per subject");
        assert!(first.is_some() && other > first, "{first:?} {other:?}");
        store.end_run("r1", 2000, "recovered").await.unwrap();
        let again = store.begin_run(&run("r4", "check:a", 0)).await.unwrap();
        assert!(again > other, "a refused begin takes no token: {again:?}");

        let start = AttemptStart {
            run_id: "r4",
            chain: "c",
            step: "s",
            subject: "check:a",
            target: "check:a",
            trigger: "check",
            started_ms: 3000,
        };
        store.begin_attempt(&start).await.unwrap();
        let attempts = store.recent_attempts(Some("c"), 10).await.unwrap();
        assert_eq!(attempts[0].fencing_token, again);
    }

    #[tokio::test]
    async fn a_lease_renews_in_the_stores_clock_and_a_lapsed_one_never_revives() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let now = store.clock_ms().await.unwrap();
        let wall = crate::timefmt::now_ms();
        assert!((now - wall).abs() < 2000, "{now} {wall}");
        store
            .begin_run(&run("live", "check:a", now + 15_000))
            .await
            .unwrap();
        store
            .begin_run(&run("lapsed", "check:b", now - 1))
            .await
            .unwrap();
        assert!(store.renew_lease("live", 15_000).await.unwrap());
        assert!(!store.renew_lease("lapsed", 15_000).await.unwrap());
        assert!(!store.renew_lease("unknown", 15_000).await.unwrap());
        store.end_run("live", now, "recovered").await.unwrap();
        assert!(
            !store.renew_lease("live", 15_000).await.unwrap(),
            "an ended run holds no lease"
        );
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_taken_over_only_past_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        store
            .begin_run(&run("r1", "check:a", 10_000))
            .await
            .unwrap();
        let margin = 5_000;
        assert!(store
            .end_abandoned_runs(10_001, "other", margin)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .end_abandoned_runs(15_000, "other", margin)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .end_abandoned_runs(15_001, "other", margin)
                .await
                .unwrap(),
            vec![("c".to_string(), "check".to_string())]
        );
        // The fenced owner's later end does not overwrite the takeover's.
        store.end_run("r1", 99_999, "exhausted").await.unwrap();
        let outcome: (i64, String) =
            sqlx::query_as("SELECT finished_ms, outcome FROM recovery_runs WHERE id = 'r1'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(outcome, (15_001, "cancelled".to_string()));
    }

    #[test]
    fn the_interrupted_record_says_what_became_of_the_group() {
        assert_eq!(
            interrupted_message(Some(1234), Some(Fate::Killed)),
            "interrupted: medic stopped during this attempt; its process group 1234 was still running and was killed"
        );
        assert!(
            interrupted_message(Some(7), Some(Fate::Ended { stragglers: 0 }))
                .ends_with("had already ended")
        );
        assert!(
            interrupted_message(Some(7), Some(Fate::Ended { stragglers: 2 }))
                .contains("2 of its processes")
        );
        assert!(interrupted_message(Some(7), Some(Fate::Elsewhere)).contains("left alone"));
        assert_eq!(
            interrupted_message(None, None),
            "interrupted: medic stopped during this attempt"
        );
    }
}
