//! An incident's record across runs: the attempts made for it (what an escalation lists) and
//! the run that says nothing could be tried, written once per incident.
//!
//! An incident's runs are those of its (chain, subject) that started since it began, and, for
//! an alert, those of its firing (its target names the alert's `startsAt`, which needs no
//! agreement between Prometheus' clock and medic's).

use sqlx::{Connection as _, Row};

use super::{discard, query_error, DecisionKind, RunStart, Store, StoreError};
use crate::vocabulary::{AttemptResult, RunOutcome, SkippedStep, TriedStep};

/// Which runs belong to one incident.
#[derive(Debug, Clone, Copy)]
pub struct Incident<'a> {
    pub chain: &'a str,
    pub subject: &'a str,
    /// When it began (unix ms): runs started since are its.
    pub since_ms: i64,
    /// An alert's run target (`alert:FP@startsAt`): runs with it are its too.
    pub target: Option<&'a str>,
}

/// At most this many attempts are listed for an incident: the newest.
const MAX_LISTED: i64 = 50;

/// Runs of the incident, as an SQL condition on `recovery_runs` aliased `r`, with $1..$4 bound
/// by [`bind_incident`].
const OF_INCIDENT: &str =
    "r.chain = $1 AND r.subject = $2 AND (r.started_ms >= $3 OR r.target = $4)";

fn bind_incident<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    incident: &Incident<'_>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(incident.chain.to_string())
        .bind(incident.subject.to_string())
        .bind(incident.since_ms)
        // No run target is empty: without an alert's, only the time counts.
        .bind(incident.target.unwrap_or_default().to_string())
}

impl Store {
    /// The finished attempts of the incident's runs other than `except_run`, oldest first
    /// (shadow records are not attempts).
    pub async fn incident_attempts(
        &self,
        incident: &Incident<'_>,
        except_run: &str,
    ) -> Result<Vec<TriedStep>, StoreError> {
        let sql = format!(
            "SELECT a.step, a.result, a.message, COALESCE(a.finished_ms, a.started_ms), a.id \
             FROM recovery_attempts a JOIN recovery_runs r ON r.id = a.run_id \
             WHERE {OF_INCIDENT} AND r.id <> $5 AND a.result IS NOT NULL AND a.result <> 'shadow' \
             ORDER BY a.id DESC LIMIT $6"
        );
        let rows = bind_incident(sqlx::query(&sql), incident)
            .bind(except_run.to_string())
            .bind(MAX_LISTED)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("read"))?;
        let mut tried = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            let result: String = row.try_get(1).map_err(query_error("read"))?;
            // Written by medic from the closed set; another word is not shown as a result.
            let Ok(result) = result.parse::<AttemptResult>() else {
                continue;
            };
            tried.push(TriedStep {
                step: row.try_get(0).map_err(query_error("read"))?,
                result,
                message: row.try_get(2).map_err(query_error("read"))?,
                at_ms: row.try_get(3).map_err(query_error("read"))?,
            });
        }
        Ok(tried)
    }

    /// Records a run that could try nothing: ended at once with outcome `unavailable`, one
    /// `skipped` decision per step. Only the incident's first run is recorded so: `false` when
    /// it already has one (of any outcome, by any replica).
    pub async fn record_unavailable_run(
        &self,
        run: &RunStart<'_>,
        incident: &Incident<'_>,
        skips: &[SkippedStep],
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query_error("write"))?;
        let result = async {
            let mut tx = conn.begin().await?;
            // One statement decides and writes, so two replicas cannot both record it.
            let insert = format!(
                "INSERT INTO recovery_runs (id, chain, target, subject, trigger, started_ms, finished_ms, outcome, owner, lease_until_ms, labels) \
                 SELECT $5, $1, $6, $2, $7, $8, $8, $11, $9, $8, $10 \
                 WHERE NOT EXISTS (SELECT 1 FROM recovery_runs r WHERE {OF_INCIDENT})"
            );
            let inserted = bind_incident(sqlx::query(&insert), incident)
                .bind(run.id.to_string())
                .bind(run.target.to_string())
                .bind(run.trigger.to_string())
                .bind(run.started_ms)
                .bind(run.owner.to_string())
                .bind(run.labels_json.clone())
                .bind(RunOutcome::Unavailable.as_str())
                .execute(&mut *tx)
                .await?;
            if inserted.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            for (seq, skip) in skips.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO recovery_decisions (run_id, seq, at_ms, step, kind, reason, until_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(run.id.to_string())
                .bind(seq as i64 + 1)
                .bind(run.started_ms)
                .bind(skip.step.clone())
                .bind(DecisionKind::Skipped.as_str())
                .bind(skip.reason.as_str())
                .bind(skip.until_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        }
        .await;
        match result {
            Ok(recorded) => Ok(recorded),
            Err(source) => {
                discard(conn).await;
                Err(StoreError::Query {
                    operation: "write",
                    source,
                })
            }
        }
    }
}
