//! Replicas in the store (`--cluster.shard auto`): membership renewed in the store's clock,
//! each member's critical checks (for `confirm:`), and the recent results of checks a member
//! takes over.

use std::fmt::Write as _;
use std::sync::OnceLock;

use sqlx::Row;

use super::{decode_result, query_error, ResultRow, Store, StoreError};
use crate::cluster::MemberRow;

/// How this member presents itself at a renewal.
#[derive(Debug, Clone)]
pub struct Presence<'a> {
    pub id: &'a str,
    pub location: Option<&'a str>,
    pub external_url: &'a str,
    /// Checks it owns now.
    pub owned: i64,
}

/// Names per `IN (...)` list when loading a moved check's results.
const NAMES_PER_READ: usize = 256;

impl Store {
    /// Renews this member (registering it on first call) in the store's clock, and reads every
    /// member's row. Returns the store's clock at the read and the rows.
    pub async fn renew_member(
        &self,
        me: &Presence<'_>,
    ) -> Result<(i64, Vec<MemberRow>), StoreError> {
        let now = self.now_sql();
        sqlx::query(&format!(
            "INSERT INTO cluster_members (id, location, external_url, started_ms, renewed_ms, owned) \
             VALUES ($1, $2, $3, {now}, {now}, $4) \
             ON CONFLICT (id) DO UPDATE SET location = excluded.location, \
             external_url = excluded.external_url, renewed_ms = excluded.renewed_ms, owned = excluded.owned"
        ))
        .bind(me.id.to_string())
        .bind(me.location.map(str::to_string))
        .bind(me.external_url.to_string())
        .bind(me.owned)
        .execute(&self.membership)
        .await
        .map_err(query_error("write"))?;
        self.read_members().await
    }

    /// Every member row and the store's clock (ms), without renewing: read between renewals so
    /// a member's death is seen soon after it is due.
    pub async fn read_members(&self) -> Result<(i64, Vec<MemberRow>), StoreError> {
        let now = self.now_sql();
        let rows = sqlx::query(&format!(
            "SELECT id, location, external_url, renewed_ms, owned, {now} FROM cluster_members ORDER BY id"
        ))
        .fetch_all(&self.membership)
        .await
        .map_err(query_error("read"))?;
        let mut store_now = 0;
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            store_now = row.try_get::<i64, _>(5).map_err(query_error("read"))?;
            members.push(MemberRow {
                id: row.try_get(0).map_err(query_error("read"))?,
                location: row.try_get(1).map_err(query_error("read"))?,
                external_url: row.try_get(2).map_err(query_error("read"))?,
                renewed_ms: row.try_get(3).map_err(query_error("read"))?,
                owned: row.try_get(4).map_err(query_error("read"))?,
            });
        }
        Ok((store_now, members))
    }

    /// A member starting (again): what its previous life said was critical no longer holds.
    pub async fn reset_member(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cluster_critical WHERE member = $1")
            .bind(id.to_string())
            .execute(&self.membership)
            .await
            .map_err(query_error("write"))?;
        Ok(())
    }

    /// A member leaving on purpose (shutdown): the others take its checks at their next
    /// renewal instead of waiting for it to lapse.
    pub async fn leave(&self, id: &str) -> Result<(), StoreError> {
        self.reset_member(id).await?;
        sqlx::query("DELETE FROM cluster_members WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.membership)
            .await
            .map_err(query_error("write"))?;
        Ok(())
    }

    /// Forgets members gone for longer than `older_than_ms` (the store's clock).
    pub async fn forget_members(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let now = self.now_sql();
        let removed = sqlx::query(&format!(
            "DELETE FROM cluster_members WHERE renewed_ms < {now} - $1"
        ))
        .bind(older_than_ms)
        .execute(&self.membership)
        .await
        .map_err(query_error("write"))?
        .rows_affected();
        sqlx::query(
            "DELETE FROM cluster_critical WHERE member NOT IN (SELECT id FROM cluster_members)",
        )
        .execute(&self.membership)
        .await
        .map_err(query_error("write"))?;
        Ok(removed)
    }

    /// Records which of `member`'s checks are critical now (`true`) or no longer (`false`), in
    /// one transaction.
    pub async fn set_critical(
        &self,
        member: &str,
        changes: &[(String, bool, i64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_error("write"))?;
        for (check, critical, at_ms) in changes {
            let query = if *critical {
                sqlx::query("INSERT INTO cluster_critical (check_name, member, since_ms) VALUES ($1, $2, $3) ON CONFLICT (check_name, member) DO NOTHING")
                    .bind(check.clone())
                    .bind(member.to_string())
                    .bind(*at_ms)
            } else {
                sqlx::query("DELETE FROM cluster_critical WHERE check_name = $1 AND member = $2")
                    .bind(check.clone())
                    .bind(member.to_string())
            };
            query
                .execute(&mut *tx)
                .await
                .map_err(query_error("write"))?;
        }
        tx.commit().await.map_err(query_error("write"))
    }

    /// The live members (renewed within `live_ms` by the store's clock) whose latest result
    /// for `check` is critical.
    pub async fn critical_members(
        &self,
        check: &str,
        live_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let now = self.now_sql();
        sqlx::query(&format!(
            "SELECT c.member FROM cluster_critical c JOIN cluster_members m ON m.id = c.member \
             WHERE c.check_name = $1 AND m.renewed_ms >= {now} - $2 ORDER BY c.member"
        ))
        .bind(check.to_string())
        .bind(live_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(query_error("read"))
    }

    /// The results since `since_ms` of the named checks (a member takes them over), oldest
    /// first per check, at most `per_check` of the newest each.
    pub async fn load_results_of(
        &self,
        checks: &[String],
        since_ms: i64,
        per_check: usize,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let mut out = Vec::new();
        for names in checks.chunks(NAMES_PER_READ) {
            let mut query = sqlx::query(names_sql()).bind(since_ms);
            // The list is always full (the last name repeated): one statement text.
            for i in 0..NAMES_PER_READ {
                query = query.bind(names[i.min(names.len() - 1)].clone());
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(query_error("read"))?;
            let mut parsed = Vec::with_capacity(rows.len());
            for row in &rows {
                parsed.push(decode_result(row).map_err(query_error("read"))?);
            }
            keep_newest(&mut parsed, per_check);
            out.extend(parsed);
        }
        Ok(out)
    }
}

/// Keeps the newest `keep` of each check's run of rows (rows come sorted by check, then time).
fn keep_newest(rows: &mut Vec<ResultRow>, keep: usize) {
    let mut kept = Vec::with_capacity(rows.len());
    let mut start = 0;
    while start < rows.len() {
        let end = rows[start..]
            .iter()
            .position(|r| r.check != rows[start].check)
            .map_or(rows.len(), |n| start + n);
        let from = end.saturating_sub(keep).max(start);
        kept.extend(rows[from..end].iter().cloned());
        start = end;
    }
    *rows = kept;
}

fn names_sql() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut sql = String::from(
            "SELECT check_name, at_ms, status, duration_seconds, message, measurements FROM check_results \
             WHERE at_ms >= $1 AND check_name IN (",
        );
        for i in 0..NAMES_PER_READ {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${}", i + 2);
        }
        sql.push_str(") ORDER BY check_name, at_ms");
        sql
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::status::Status;

    fn presence(id: &str) -> Presence<'_> {
        Presence {
            id,
            location: Some("eu"),
            external_url: "http://x",
            owned: 3,
        }
    }

    #[tokio::test]
    async fn members_renew_and_critical_rows_count_only_live_members() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Secret::new(format!(
            "sqlite://{}/m.db",
            dir.path().display()
        )))
        .await
        .unwrap();
        let (now, rows) = store.renew_member(&presence("a")).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].renewed_ms <= now && rows[0].renewed_ms > now - 1000);
        assert_eq!(rows[0].location.as_deref(), Some("eu"));
        let (_, rows) = store.renew_member(&presence("b")).await.unwrap();
        assert_eq!(rows.len(), 2);
        store
            .set_critical("a", &[("web".into(), true, 1), ("db".into(), true, 1)])
            .await
            .unwrap();
        store
            .set_critical("b", &[("web".into(), true, 2)])
            .await
            .unwrap();
        assert_eq!(
            store.critical_members("web", 6000).await.unwrap(),
            ["a", "b"]
        );
        store
            .set_critical("a", &[("web".into(), false, 3)])
            .await
            .unwrap();
        assert_eq!(store.critical_members("web", 6000).await.unwrap(), ["b"]);
        assert_eq!(store.critical_members("db", 6000).await.unwrap(), ["a"]);
        // A member that is not live does not count.
        assert_eq!(
            store.critical_members("db", -60_000).await.unwrap().len(),
            0
        );
        store.leave("a").await.unwrap();
        assert_eq!(store.critical_members("db", 6000).await.unwrap().len(), 0);
        let (_, rows) = store.renew_member(&presence("b")).await.unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[tokio::test]
    async fn results_of_named_checks_load_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Secret::new(format!(
            "sqlite://{}/m.db",
            dir.path().display()
        )))
        .await
        .unwrap();
        let rows: Vec<ResultRow> = (0..600)
            .flat_map(|i| {
                (0..3).map(move |t| ResultRow {
                    check: format!("c{i}"),
                    at_ms: 1000 + t,
                    status: Status::Healthy,
                    duration_seconds: 0.1,
                    message: String::new(),
                    measurements: Vec::new(),
                })
            })
            .collect();
        store.insert_results(&rows).await.unwrap();
        let names: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
        let loaded = store.load_results_of(&names, 0, 2).await.unwrap();
        assert_eq!(loaded.len(), 600, "two newest of each of 300 checks");
        assert!(loaded.iter().all(|r| r.at_ms >= 1001));
        assert!(store
            .load_results_of(&names, 5000, 2)
            .await
            .unwrap()
            .is_empty());
    }
}
