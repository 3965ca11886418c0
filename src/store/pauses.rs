//! Pauses in the store: made by the API, ended early by it, read by every replica's pause book.

use sqlx::Row;

use super::{query_error, Store, StoreError};
use crate::alertmanager::Matcher;
use crate::pause::Pause;

impl Store {
    /// Records a new pause.
    pub async fn create_pause(&self, pause: &Pause) -> Result<(), StoreError> {
        let matchers: Vec<String> = pause.matchers.iter().map(Matcher::to_string).collect();
        let matchers = serde_json::Value::from(matchers).to_string();
        sqlx::query(
            "INSERT INTO recovery_pauses (id, matchers, reason, created_ms, ends_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(pause.id.clone())
        .bind(matchers)
        .bind(pause.reason.clone())
        .bind(pause.created_ms)
        .bind(pause.ends_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?;
        Ok(())
    }

    /// The pauses in force at `now_ms`, oldest first. A row whose matchers no longer parse (a
    /// newer medic's syntax, a hand edit) is skipped with a warning rather than failing all.
    pub async fn active_pauses(&self, now_ms: i64) -> Result<Vec<Pause>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, matchers, reason, created_ms, ends_ms FROM recovery_pauses \
             WHERE ends_ms > $1 AND ended_ms IS NULL ORDER BY created_ms, id",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        let mut pauses = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(query_error("read"))?;
            let text: String = row.try_get(1).map_err(query_error("read"))?;
            let Some(matchers) = decode_matchers(&text) else {
                tracing::warn!(pause = %id, "a stored pause has matchers medic cannot read; ignoring it");
                continue;
            };
            pauses.push(Pause {
                id,
                matchers,
                reason: row.try_get(2).map_err(query_error("read"))?,
                created_ms: row.try_get(3).map_err(query_error("read"))?,
                ends_ms: row.try_get(4).map_err(query_error("read"))?,
            });
        }
        Ok(pauses)
    }

    /// Ends a pause now. `false` when no active pause has that id (unknown, ended early, or
    /// already run out).
    pub async fn end_pause(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE recovery_pauses SET ended_ms = $2 WHERE id = $1 AND ended_ms IS NULL AND ends_ms > $2",
        )
        .bind(id.to_string())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error("write"))?
        .rows_affected();
        Ok(changed > 0)
    }
}

/// The stored JSON array of matcher texts, or `None` when any of it does not parse.
fn decode_matchers(text: &str) -> Option<Vec<Matcher>> {
    let texts: Vec<String> = serde_json::from_str(text).ok()?;
    texts.iter().map(|t| Matcher::parse(t).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::pause::PauseRequest;

    fn pause(id: &str, matchers: &[&str], created_ms: i64, duration: &str) -> Pause {
        let matchers: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
        PauseRequest::parse(&matchers, duration, "deploy")
            .unwrap()
            .into_pause(id.into(), created_ms)
    }

    #[tokio::test]
    async fn pauses_round_trip_end_early_and_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let url = Secret::new(format!("sqlite://{}/m.db", dir.path().display()));
        let store = Store::open(&url).await.unwrap();
        let web = pause("a", &[r#"chain="web""#, r#"check=~"api-\d+""#], 1_000, "1h");
        let all = pause("b", &[], 2_000, "10s");
        store.create_pause(&web).await.unwrap();
        store.create_pause(&all).await.unwrap();
        assert!(store.create_pause(&web).await.is_err(), "ids are unique");

        assert_eq!(
            store.active_pauses(5_000).await.unwrap(),
            [web.clone(), all.clone()]
        );
        let back = &store.active_pauses(5_000).await.unwrap()[0];
        let labels = [
            ("chain".to_string(), "web".to_string()),
            ("check".to_string(), "api-12".to_string()),
        ]
        .into_iter()
        .collect();
        assert!(
            back.holds(&labels, 5_000),
            "regex matchers survive the round trip"
        );
        assert_eq!(
            store.active_pauses(12_000).await.unwrap(),
            std::slice::from_ref(&web),
            "a pause that ran out is not active"
        );
        assert!(
            !store.end_pause("b", 12_000).await.unwrap(),
            "already run out"
        );
        assert!(!store.end_pause("nope", 12_000).await.unwrap());
        assert!(store.end_pause("a", 12_000).await.unwrap());
        assert!(!store.end_pause("a", 13_000).await.unwrap(), "ended twice");
        assert!(store.active_pauses(12_000).await.unwrap().is_empty());

        // A row medic cannot read is skipped; the others still count. Reopening keeps them.
        sqlx::query("INSERT INTO recovery_pauses (id, matchers, reason, created_ms, ends_ms) VALUES ('bad', '[\"chain\"]', 'x', 1, 99999999)")
            .execute(store.pool())
            .await
            .unwrap();
        let c = pause("c", &[r#"chain!="db""#], 20_000, "1h");
        store.create_pause(&c).await.unwrap();
        store.close().await;
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.active_pauses(21_000).await.unwrap(), [c]);
    }

    #[test]
    fn stored_matchers_decode_or_refuse() {
        assert_eq!(decode_matchers("[]"), Some(vec![]));
        assert!(decode_matchers(r#"["a=\"1\""]"#).is_some());
        assert!(decode_matchers("not json").is_none());
        assert!(decode_matchers(r#"["a"]"#).is_none());
        assert!(decode_matchers(r#"[1]"#).is_none());
    }
}
