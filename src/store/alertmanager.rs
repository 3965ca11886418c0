//! What medic holds in Alertmanager: escalations it keeps alive and silences it holds for runs.
//! In the store so that a restart (even `kill -9`) or another replica carries on, and so that
//! conditional updates decide which replica does a thing once.

use sqlx::Row;

use super::{query_error, Store, StoreError};

/// One escalation alert, as posted (labels and annotations as JSON objects).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationRow {
    /// Stable per (chain, step, subject): a later escalation of the same subject replaces it.
    pub id: String,
    pub chain: String,
    pub step: String,
    pub subject: String,
    pub labels_json: String,
    pub annotations_json: String,
    pub generator_url: String,
    pub started_ms: i64,
    pub owner: String,
    pub last_posted_ms: i64,
}

const COLUMNS: &str = "id, chain, step, subject, labels_json, annotations_json, generator_url, started_ms, owner, last_posted_ms";

fn row(r: &sqlx::any::AnyRow) -> Result<EscalationRow, sqlx::Error> {
    Ok(EscalationRow {
        id: r.try_get(0)?,
        chain: r.try_get(1)?,
        step: r.try_get(2)?,
        subject: r.try_get(3)?,
        labels_json: r.try_get(4)?,
        annotations_json: r.try_get(5)?,
        generator_url: r.try_get(6)?,
        started_ms: r.try_get(7)?,
        owner: r.try_get(8)?,
        last_posted_ms: r.try_get(9)?,
    })
}

impl Store {
    /// Records a posted escalation, active again if it had resolved.
    pub async fn upsert_escalation(&self, e: &EscalationRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO escalations (id, chain, step, subject, labels_json, annotations_json, generator_url, started_ms, resolved_ms, owner, last_posted_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET labels_json = excluded.labels_json, annotations_json = excluded.annotations_json, \
             generator_url = excluded.generator_url, started_ms = excluded.started_ms, resolved_ms = NULL, \
             owner = excluded.owner, last_posted_ms = excluded.last_posted_ms",
        )
        .bind(e.id.clone())
        .bind(e.chain.clone())
        .bind(e.step.clone())
        .bind(e.subject.clone())
        .bind(e.labels_json.clone())
        .bind(e.annotations_json.clone())
        .bind(e.generator_url.clone())
        .bind(e.started_ms)
        .bind(e.owner.clone())
        .bind(e.last_posted_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(())
    }

    pub async fn active_escalations(&self) -> Result<Vec<EscalationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM escalations WHERE resolved_ms IS NULL ORDER BY started_ms"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        rows.iter()
            .map(row)
            .collect::<Result<_, _>>()
            .map_err(query_error("read"))
    }

    /// Takes the next re-post of an escalation unless someone posted it since `posted_before_ms`:
    /// of replicas that try at once, exactly one gets `true`.
    pub async fn claim_escalation(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        posted_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE escalations SET last_posted_ms = $1, owner = $2 \
             WHERE id = $3 AND resolved_ms IS NULL AND last_posted_ms < $4",
        )
        .bind(now_ms)
        .bind(owner.to_string())
        .bind(id.to_string())
        .bind(posted_before_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the subject's active escalations of this chain resolved and returns those this
    /// call resolved (another replica resolving at once gets the others): each is posted
    /// resolved once.
    pub async fn resolve_escalations(
        &self,
        chain: &str,
        subject: &str,
        now_ms: i64,
    ) -> Result<Vec<EscalationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM escalations WHERE chain = $1 AND subject = $2 AND resolved_ms IS NULL"
        ))
        .bind(chain.to_string())
        .bind(subject.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        let mut resolved = Vec::new();
        for r in &rows {
            let e = row(r).map_err(query_error("read"))?;
            let done = sqlx::query(
                "UPDATE escalations SET resolved_ms = $1 WHERE id = $2 AND resolved_ms IS NULL",
            )
            .bind(now_ms)
            .bind(e.id.clone())
            .execute(&self.pool)
            .await
            .map_err(query_error("write"))?;
            if done.rows_affected() == 1 {
                resolved.push(e);
            }
        }
        Ok(resolved)
    }

    pub async fn insert_silence(
        &self,
        run_id: &str,
        silence_id: &str,
        owner: &str,
        ends_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO silences (run_id, silence_id, owner, ends_ms, expired_ms) VALUES ($1, $2, $3, $4, NULL) \
             ON CONFLICT (run_id) DO UPDATE SET silence_id = excluded.silence_id, owner = excluded.owner, ends_ms = excluded.ends_ms",
        )
        .bind(run_id.to_string())
        .bind(silence_id.to_string())
        .bind(owner.to_string())
        .bind(ends_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(())
    }

    /// Marks the run's silence expired; `true` for the one caller that did.
    pub async fn claim_silence_expiry(
        &self,
        run_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE silences SET expired_ms = $1 WHERE run_id = $2 AND expired_ms IS NULL",
        )
        .bind(now_ms)
        .bind(run_id.to_string())
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Silences still held for runs that have ended (their owner died with them): (run id,
    /// silence id).
    pub async fn orphaned_silences(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.run_id, s.silence_id FROM silences s LEFT JOIN recovery_runs r ON r.id = s.run_id \
             WHERE s.expired_ms IS NULL AND (r.id IS NULL OR r.finished_ms IS NOT NULL)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("read"))
    }
}
