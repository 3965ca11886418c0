//! The run audit: every run with its trigger and end, and every decision it made, in order. The
//! engine records a decision as it makes it (one INSERT); the API reads a run back with each
//! step that ran joined to its attempt record.
//!
//! A run's attempts that no decision points at (runs recorded before the audit existed, or an
//! engine that records only skips and holds) still show, as the steps that ran, in time order:
//! the attempt record is the proof that a step ran, the decision only says why.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::{query_error, Store, StoreError};

/// What became of a step (or of the trigger, before the run started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// The step's action ran; its attempt record says how it went.
    Ran,
    /// The step was skipped (cooldown, max_attempts, …).
    Skipped,
    /// The trigger was held back (a limit, the circuit, maintenance, a pause) before this run
    /// could start.
    Held,
    /// Shadow mode: the step would have run; nothing ran.
    Shadow,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Ran => "ran",
            DecisionKind::Skipped => "skipped",
            DecisionKind::Held => "held",
            DecisionKind::Shadow => "shadow",
        }
    }

    pub fn parse(text: &str) -> Option<DecisionKind> {
        Some(match text {
            "ran" => DecisionKind::Ran,
            "skipped" => DecisionKind::Skipped,
            "held" => DecisionKind::Held,
            "shadow" => DecisionKind::Shadow,
            _ => return None,
        })
    }
}

/// One decision to record.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRow<'a> {
    pub run_id: &'a str,
    /// When it was made; for `held`, when the hold began.
    pub at_ms: i64,
    /// The step it is about; `None` for a hold (no step was chosen yet).
    pub step: Option<&'a str>,
    pub kind: DecisionKind,
    /// Why a step was skipped or a trigger held (`cooldown`, `concurrency`, …).
    pub reason: Option<&'a str>,
    /// For a cooldown: when it ends.
    pub until_ms: Option<i64>,
    /// For `ran` and `shadow`: the attempt row.
    pub attempt_id: Option<i64>,
    /// Anything else worth saying (how the fix was verified, what held it).
    pub detail: Option<&'a str>,
}

/// A run as the audit lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub chain: String,
    pub subject: String,
    pub target: String,
    /// `check`, `alert` or `manual`.
    pub trigger: String,
    pub labels: BTreeMap<String, String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// Null while the run is in progress.
    pub outcome: Option<String>,
    pub fencing_token: Option<i64>,
    pub owner: String,
}

/// A step's attempt, joined to the decision that ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptView {
    pub id: i64,
    /// The how-manieth attempt of this step on this run's subject, counting every run kept.
    pub number: i64,
    pub result: Option<String>,
    pub message: String,
    pub exit_code: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// The tail of what the action printed or answered (at most 4 KiB).
    pub output: String,
}

/// One decision of a run, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionView {
    pub at_ms: i64,
    pub step: Option<String>,
    pub kind: DecisionKind,
    pub reason: Option<String>,
    pub until_ms: Option<i64>,
    pub detail: Option<String>,
    pub attempt: Option<AttemptView>,
}

const RUN_COLUMNS: &str =
    "id, chain, subject, target, trigger, labels, started_ms, finished_ms, outcome, fencing_token, owner";

fn decode_run(row: &sqlx::any::AnyRow) -> Result<RunRow, sqlx::Error> {
    let labels: String = row.try_get(5)?;
    Ok(RunRow {
        id: row.try_get(0)?,
        chain: row.try_get(1)?,
        subject: row.try_get(2)?,
        target: row.try_get(3)?,
        trigger: row.try_get(4)?,
        // Written by medic from a string map; anything else (a hand-edited row) shows as none.
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        started_ms: row.try_get(6)?,
        finished_ms: row.try_get(7)?,
        outcome: row.try_get(8)?,
        fencing_token: row.try_get(9)?,
        owner: row.try_get(10)?,
    })
}

impl Store {
    /// Records one decision of a run, after the run's earlier ones. Returns its sequence
    /// number within the run. A run's decisions are made one at a time, by the run's owner.
    pub async fn record_decision(&self, d: &DecisionRow<'_>) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO recovery_decisions (run_id, seq, at_ms, step, kind, reason, until_ms, attempt_id, detail) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7, $8 FROM recovery_decisions WHERE run_id = $1 \
             RETURNING seq",
        )
        .bind(d.run_id.to_string())
        .bind(d.at_ms)
        .bind(d.step.map(str::to_string))
        .bind(d.kind.as_str())
        .bind(d.reason.map(str::to_string))
        .bind(d.until_ms)
        .bind(d.attempt_id)
        .bind(d.detail.map(str::to_string))
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .map_err(query_error("write"))
    }

    /// Runs, newest first.
    pub async fn runs(&self, chain: Option<&str>, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let rows = match chain {
            Some(chain) => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM recovery_runs WHERE chain = $1 ORDER BY started_ms DESC, id DESC LIMIT $2"
                ))
                .bind(chain.to_string())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLUMNS} FROM recovery_runs ORDER BY started_ms DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(query_error("read"))?;
        rows.iter()
            .map(decode_run)
            .collect::<Result<_, _>>()
            .map_err(query_error("read"))
    }

    /// One subject's runs (`check:NAME`, an alert's fingerprint), newest first.
    pub async fn runs_for_subject(
        &self,
        subject: &str,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM recovery_runs WHERE subject = $1 ORDER BY started_ms DESC, id DESC LIMIT $2"
        ))
        .bind(subject.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?
        .iter()
        .map(decode_run)
        .collect::<Result<_, _>>()
        .map_err(query_error("read"))
    }

    /// One run and its decisions in order; `None` for an unknown id.
    pub async fn run(&self, id: &str) -> Result<Option<(RunRow, Vec<DecisionView>)>, StoreError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM recovery_runs WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read"))?
        else {
            return Ok(None);
        };
        let run = decode_run(&row).map_err(query_error("read"))?;

        // Each attempt's number: the attempts of its step on the same subject up to it.
        let attempts = sqlx::query(
            "SELECT a.id, a.step, a.result, a.message, a.exit_code, a.duration_seconds, a.started_ms, a.finished_ms, \
             (SELECT COUNT(*) FROM recovery_attempts p JOIN recovery_runs pr ON pr.id = p.run_id \
              WHERE p.chain = a.chain AND p.step = a.step AND pr.subject = $2 AND p.id <= a.id), a.output \
             FROM recovery_attempts a WHERE a.run_id = $1 ORDER BY a.id",
        )
        .bind(id.to_string())
        .bind(run.subject.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(1)?,
                AttemptView {
                    id: r.try_get(0)?,
                    result: r.try_get(2)?,
                    message: r.try_get(3)?,
                    exit_code: r.try_get(4)?,
                    duration_seconds: r.try_get(5)?,
                    started_ms: r.try_get(6)?,
                    finished_ms: r.try_get(7)?,
                    number: r.try_get(8)?,
                    output: r.try_get(9)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(query_error("read"))?;

        let recorded = sqlx::query(
            "SELECT at_ms, step, kind, reason, until_ms, attempt_id, detail FROM recovery_decisions \
             WHERE run_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?
        .iter()
        .map(|r| {
            let kind: String = r.try_get(2)?;
            Ok((
                r.try_get::<Option<i64>, _>(5)?,
                DecisionView {
                    at_ms: r.try_get(0)?,
                    step: r.try_get(1)?,
                    // Only medic writes the column; an unknown word would be a newer medic's.
                    kind: DecisionKind::parse(&kind).unwrap_or(DecisionKind::Skipped),
                    reason: r.try_get(3)?,
                    until_ms: r.try_get(4)?,
                    detail: r.try_get(6)?,
                    attempt: None,
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(query_error("read"))?;
        Ok(Some((run, merge(recorded, attempts))))
    }
}

/// The run's decisions in order: the recorded ones in their sequence, each joined to its
/// attempt, and the attempts no decision points at placed among them by start time (ties after
/// the recorded decision), as the steps that ran.
fn merge(
    recorded: Vec<(Option<i64>, DecisionView)>,
    attempts: Vec<(String, AttemptView)>,
) -> Vec<DecisionView> {
    let mut by_id: HashMap<i64, (String, AttemptView)> = attempts
        .iter()
        .map(|(s, a)| (a.id, (s.clone(), a.clone())))
        .collect();
    let recorded: Vec<DecisionView> = recorded
        .into_iter()
        .map(|(attempt_id, mut d)| {
            if let Some((_, a)) = attempt_id.and_then(|id| by_id.remove(&id)) {
                d.attempt = Some(a);
            }
            d
        })
        .collect();
    let mut unreferenced = attempts
        .into_iter()
        .filter(|(_, a)| by_id.contains_key(&a.id))
        .map(|(step, a)| DecisionView {
            at_ms: a.started_ms,
            step: Some(step),
            kind: if a.result.as_deref() == Some("shadow") {
                DecisionKind::Shadow
            } else {
                DecisionKind::Ran
            },
            reason: None,
            until_ms: None,
            detail: None,
            attempt: Some(a),
        })
        .peekable();
    let mut out = Vec::with_capacity(recorded.len() + by_id.len());
    for d in recorded {
        while let Some(next) = unreferenced.next_if(|u| u.at_ms < d.at_ms) {
            out.push(next);
        }
        out.push(d);
    }
    out.extend(unreferenced);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::store::{AttemptEnd, AttemptStart, RunStart};

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&Secret::new(format!(
            "sqlite://{}/m.db",
            dir.path().display()
        )))
        .await
        .unwrap()
    }

    fn start<'a>(id: &'a str, chain: &'a str, subject: &'a str, at: i64) -> RunStart<'a> {
        RunStart {
            id,
            chain,
            target: subject,
            subject,
            trigger: "check",
            started_ms: at,
            owner: "me",
            lease_until_ms: i64::MAX,
            labels_json: r#"{"service":"web","quote":"a\"b"}"#.into(),
        }
    }

    async fn attempt(store: &Store, run: &str, step: &str, at: i64, code: i64) -> i64 {
        let id = store
            .begin_attempt(&AttemptStart {
                run_id: run,
                chain: "c",
                step,
                subject: "check:web",
                target: "check:web",
                trigger: "check",
                started_ms: at,
            })
            .await
            .unwrap();
        store
            .end_attempt(
                id,
                &AttemptEnd {
                    finished_ms: at + 500,
                    result: if code == 0 { "success" } else { "failure" },
                    message: format!("exit code {code}"),
                    exit_code: Some(code),
                    output: String::new(),
                    duration_seconds: 0.5,
                },
            )
            .await
            .unwrap();
        id
    }

    fn decision(run_id: &str, at_ms: i64, kind: DecisionKind) -> DecisionRow<'_> {
        DecisionRow {
            run_id,
            at_ms,
            step: None,
            kind,
            reason: None,
            until_ms: None,
            attempt_id: None,
            detail: None,
        }
    }

    #[tokio::test]
    async fn runs_list_newest_first_filtered_by_chain_with_labels() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        store
            .begin_run(&start("r1", "c", "check:a", 1000))
            .await
            .unwrap();
        store
            .begin_run(&start("r2", "d", "check:b", 2000))
            .await
            .unwrap();
        store
            .begin_run(&start("r3", "c", "check:c", 3000))
            .await
            .unwrap();
        store.end_run("r1", 1500, "recovered").await.unwrap();

        let all = store.runs(None, 10).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r3", "r2", "r1"]);
        let c = store.runs(Some("c"), 10).await.unwrap();
        let ids: Vec<&str> = c.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r3", "r1"]);
        assert_eq!(store.runs(None, 1).await.unwrap().len(), 1);
        assert!(store.runs(Some("none"), 10).await.unwrap().is_empty());

        let r1 = &c[1];
        assert_eq!(r1.outcome.as_deref(), Some("recovered"));
        assert_eq!(r1.finished_ms, Some(1500));
        assert_eq!(r1.labels["quote"], "a\"b");
        assert_eq!(r1.trigger, "check");
        assert_eq!(r1.subject, "check:a");
        assert!(r1.fencing_token.is_some());
        assert_eq!(c[0].outcome, None, "in progress");
    }

    #[tokio::test]
    async fn a_run_reads_back_its_decisions_in_order_joined_to_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        // An earlier run of the same subject: attempt numbers count across runs.
        store
            .begin_run(&start("r0", "c", "check:web", 100))
            .await
            .unwrap();
        attempt(&store, "r0", "restart", 100, 1).await;
        store.end_run("r0", 700, "exhausted").await.unwrap();

        store
            .begin_run(&start("r1", "c", "check:web", 1000))
            .await
            .unwrap();
        let held = DecisionRow {
            reason: Some("concurrency"),
            detail: Some("3 runs in progress"),
            ..decision("r1", 900, DecisionKind::Held)
        };
        assert_eq!(store.record_decision(&held).await.unwrap(), 1);
        let skipped = DecisionRow {
            step: Some("flush"),
            reason: Some("cooldown"),
            until_ms: Some(60_000),
            ..decision("r1", 1000, DecisionKind::Skipped)
        };
        assert_eq!(store.record_decision(&skipped).await.unwrap(), 2);
        let restart = attempt(&store, "r1", "restart", 1001, 1).await;
        store
            .record_decision(&DecisionRow {
                step: Some("restart"),
                attempt_id: Some(restart),
                ..decision("r1", 1001, DecisionKind::Ran)
            })
            .await
            .unwrap();
        let reboot = attempt(&store, "r1", "reboot", 2000, 0).await;
        store
            .record_decision(&DecisionRow {
                step: Some("reboot"),
                attempt_id: Some(reboot),
                detail: Some("verified: web healthy"),
                ..decision("r1", 2000, DecisionKind::Ran)
            })
            .await
            .unwrap();
        // Another run's decisions do not mix in.
        store
            .record_decision(&decision("r0", 5, DecisionKind::Held))
            .await
            .unwrap();
        store.end_run("r1", 2600, "recovered").await.unwrap();

        let (run, decisions) = store.run("r1").await.unwrap().unwrap();
        assert_eq!(run.outcome.as_deref(), Some("recovered"));
        let kinds: Vec<_> = decisions.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                DecisionKind::Held,
                DecisionKind::Skipped,
                DecisionKind::Ran,
                DecisionKind::Ran
            ]
        );
        assert_eq!(decisions[0].reason.as_deref(), Some("concurrency"));
        assert_eq!(decisions[0].step, None);
        assert_eq!(decisions[1].until_ms, Some(60_000));
        let a = decisions[2].attempt.as_ref().unwrap();
        assert_eq!(
            (a.id, a.number),
            (restart, 2),
            "the second restart of check:web"
        );
        assert_eq!(a.exit_code, Some(1));
        assert_eq!(a.result.as_deref(), Some("failure"));
        let b = decisions[3].attempt.as_ref().unwrap();
        assert_eq!((b.number, b.exit_code), (1, Some(0)));
        assert_eq!(b.message, "exit code 0");
        assert_eq!(b.duration_seconds, Some(0.5));
        assert_eq!(b.finished_ms, Some(2500));
        assert_eq!(
            decisions[3].detail.as_deref(),
            Some("verified: web healthy")
        );

        assert_eq!(store.run("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn attempts_without_a_decision_show_as_steps_that_ran_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        store
            .begin_run(&start("r1", "c", "check:web", 1000))
            .await
            .unwrap();
        let first = attempt(&store, "r1", "restart", 1000, 1).await;
        store
            .record_decision(&DecisionRow {
                step: Some("flush"),
                reason: Some("cooldown"),
                until_ms: Some(9000),
                ..decision("r1", 1500, DecisionKind::Skipped)
            })
            .await
            .unwrap();
        let second = attempt(&store, "r1", "reboot", 2000, 0).await;
        let (_, decisions) = store.run("r1").await.unwrap().unwrap();
        let shown: Vec<_> = decisions
            .iter()
            .map(|d| {
                (
                    d.kind,
                    d.step.clone().unwrap(),
                    d.attempt.as_ref().map(|a| a.id),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (DecisionKind::Ran, "restart".to_string(), Some(first)),
                (DecisionKind::Skipped, "flush".to_string(), None),
                (DecisionKind::Ran, "reboot".to_string(), Some(second)),
            ]
        );
    }

    #[test]
    fn decision_kinds_round_trip() {
        for kind in [
            DecisionKind::Ran,
            DecisionKind::Skipped,
            DecisionKind::Held,
            DecisionKind::Shadow,
        ] {
            assert_eq!(DecisionKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(DecisionKind::parse("ran "), None);
    }
}
