//! The latest pings of heartbeat checks, so a restarted medic still knows when each job last
//! reported (a missed heartbeat must not be forgotten by a restart, nor a fresh one invented).

use sqlx::Row;

use super::{query_error, Store, StoreError};
use crate::checks::Pings;

impl Store {
    /// Replaces the check's stored pings.
    pub async fn save_heartbeat(&self, check: &str, p: &Pings) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO heartbeats (check_name, success_ms, start_ms, failure_ms, exit_code) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (check_name) DO UPDATE SET \
             success_ms = excluded.success_ms, start_ms = excluded.start_ms, \
             failure_ms = excluded.failure_ms, exit_code = excluded.exit_code",
        )
        .bind(check)
        .bind(p.success_ms)
        .bind(p.start_ms)
        .bind(p.failure_ms)
        .bind(p.exit_code.map(i64::from))
        .execute(self.pool())
        .await
        .map_err(query_error("write"))?;
        Ok(())
    }

    pub async fn load_heartbeats(&self) -> Result<Vec<(String, Pings)>, StoreError> {
        let rows = sqlx::query(
            "SELECT check_name, success_ms, start_ms, failure_ms, exit_code FROM heartbeats",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("read"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    Pings {
                        success_ms: row.try_get(1)?,
                        start_ms: row.try_get(2)?,
                        failure_ms: row.try_get(3)?,
                        exit_code: row
                            .try_get::<Option<i64>, _>(4)?
                            .and_then(|c| i32::try_from(c).ok()),
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("read"))
    }
}
