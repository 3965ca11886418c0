//! The state store: check results and recovery records in SQLite (the default, no server
//! needed) or PostgreSQL (shared by replicas). The only module that knows SQL.
//!
//! Nothing here assumes this process is the only writer: rows carry their own keys, and
//! migrations serialise on an advisory lock in PostgreSQL.

mod alertmanager;
mod cluster;
mod heartbeat;
mod incident;
mod pauses;
mod recovery;
mod runs;
mod schema;
mod sqlite_file;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Row};

use crate::checks::{Measure, Measurement};
use crate::config::{redact_url, Secret};
use crate::status::Status;

pub use alertmanager::EscalationRow;
pub use cluster::Presence;
pub use incident::Incident;
pub use recovery::{
    AttemptEnd, AttemptRecord, AttemptStart, Begun, Ewma, FleetLimits, RunStart, StepStats,
};
pub use runs::{AttemptView, DecisionKind, DecisionRow, DecisionView, RunRow};
pub use sqlite_file::{FileChange, FileIdentity};
pub use writer::{spawn_writer, WriterHandle, MAX_BACKLOG};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported state store URL {0} (use sqlite:… or postgres://…)")]
    UnsupportedUrl(String),
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open state store {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    /// A command that only reads found no store where it looked.
    #[error("no state store at {path}: {why}")]
    Missing { path: String, why: String },
    /// A command that only reads found a database without medic's tables.
    #[error("{url} holds no medic state store (no medic_schema table)")]
    NotAStore { url: String },
    #[error("migration {version} failed: {source}")]
    Migrate { version: i64, source: sqlx::Error },
    #[error("{operation} failed: {source}")]
    Query {
        operation: &'static str,
        source: sqlx::Error,
    },
}

impl StoreError {
    /// The `operation` label of `medic_state_store_errors_total` this error counts under.
    pub fn operation(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl(_)
            | StoreError::CreateDir { .. }
            | StoreError::Open { .. }
            | StoreError::Missing { .. }
            | StoreError::NotAStore { .. } => "open",
            StoreError::Migrate { .. } => "migrate",
            StoreError::Query { operation, .. } => operation,
        }
    }
}

/// A SQLite file's directory, made on first run.
fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.display().to_string(),
            source,
        }),
        None => Ok(()),
    }
}

/// A SQLite file a command only reads: it and its directory must be there.
fn must_exist(path: &Path) -> Result<(), StoreError> {
    let missing = |why: String| StoreError::Missing {
        path: path.display().to_string(),
        why,
    };
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.is_dir() => Err(missing(format!(
            "the directory {} does not exist",
            parent.display()
        ))),
        _ if !path.is_file() => Err(missing("no such file".to_string())),
        _ => Ok(()),
    }
}

fn query_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One stored check result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub check: String,
    pub at_ms: i64,
    pub status: Status,
    pub duration_seconds: f64,
    pub message: String,
    /// Everything the probe measured except `duration_seconds`, which has its own column.
    pub measurements: Vec<Measurement>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// One connection of its own for the cluster's membership (renew, join, leave, forget): a
    /// renewal must never queue behind bulk work on `pool` (loading an hour of 100,000 checks'
    /// results at start held every connection for minutes, the renewals lapsed, and each
    /// replica took itself for the only one). Opened on first use, by the membership's own
    /// thread and runtime, and with no idle or lifetime limits, so no maintenance task of
    /// another runtime ever touches it.
    membership: AnyPool,
    backend: Backend,
    /// For a SQLite file: its path and which file it was when opened, so that a file deleted
    /// or replaced under medic is noticed (writes would otherwise go to an unlinked inode).
    file: Option<(PathBuf, FileIdentity)>,
}

/// The most rows one INSERT carries. A batch is written as INSERTs of power-of-two sizes up to
/// this (200 rows: 64 + 64 + 64 + 8), so only seven statement texts ever exist, each prepared
/// once per connection and then reused from sqlx's statement cache. A text per batch size made
/// nearly every flush prepare a new statement, and the cache kept up to 100 of them per
/// connection (over 20 MB of SQLite programs at 1,000 results/s). Small statements also keep
/// binding cheap: SQLite looks a `$N` parameter up by a linear scan, so binding is quadratic in
/// the statement's size.
const INSERT_CHUNK: usize = 64;

/// Whether opening may create the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// `medic run`, `medic recover CHAIN`: a SQLite file and its directory are made on first run.
    MayCreate,
    /// A command that only reads: the store must be there, and nothing is made when it is not.
    Existing,
}

impl Store {
    /// Connects (creating a SQLite file and its directory on first run) and migrates.
    pub async fn open(url: &Secret) -> Result<Store, StoreError> {
        Store::connect(url, Opening::MayCreate).await
    }

    /// Opens a store that must already be there, for commands that only read it (`medic
    /// recover --stats`): a missing SQLite file or directory, or a database without medic's
    /// tables, is an error that says where it looked, and nothing is created.
    pub async fn open_existing(url: &Secret) -> Result<Store, StoreError> {
        Store::connect(url, Opening::Existing).await
    }

    async fn connect(url: &Secret, opening: Opening) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let raw = url.expose();
        let shown = redact_url(raw);
        let mut sqlite_path = None;
        let (backend, connect_url) = if let Some(rest) = raw.strip_prefix("sqlite:") {
            let path_part = rest.trim_start_matches("//");
            let path = path_part.split('?').next().unwrap_or("");
            if !path.is_empty() && path != ":memory:" {
                sqlite_path = Some(PathBuf::from(path));
                match opening {
                    Opening::MayCreate => create_parent(Path::new(path))?,
                    Opening::Existing => must_exist(Path::new(path))?,
                }
            }
            // Create the file on first run; open it only when it must exist.
            let url = match (raw.contains('?'), opening) {
                (true, _) => raw.to_string(),
                (false, Opening::MayCreate) => format!("{raw}?mode=rwc"),
                (false, Opening::Existing) => format!("{raw}?mode=rw"),
            };
            (Backend::Sqlite, url)
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            (Backend::Postgres, raw.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(shown));
        };
        if opening == Opening::Existing {
            // The pool retries a refused connection until it times out, and then says only
            // that; a command that only reads says at once why it cannot.
            let probe = AnyConnection::connect(&connect_url)
                .await
                .map_err(|source| StoreError::Open {
                    url: shown.clone(),
                    source,
                })?;
            let _ = probe.close().await;
        }
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(5));
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|source| StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        let membership = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy(&connect_url)
            .map_err(|source| StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        // Which file was opened, taken right after connecting: the check compares with this.
        let file = sqlite_path.and_then(|path| {
            let identity = FileIdentity::of(&path).ok()?;
            Some((path, identity))
        });
        let store = Store {
            pool,
            membership,
            backend,
            file,
        };
        if opening == Opening::Existing && !store.has_schema().await? {
            store.close().await;
            return Err(StoreError::NotAStore { url: shown });
        }
        if backend == Backend::Sqlite {
            // WAL lets the API read while the writer writes; the setting lives in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&store.pool)
                .await
                .map_err(|source| StoreError::Open {
                    url: shown.clone(),
                    source,
                })?;
        }
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether medic's schema table is there: a store medic made, not merely a database.
    async fn has_schema(&self) -> Result<bool, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'medic_schema'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'medic_schema'"
            }
        };
        let count: i64 = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<i64, _>(0))
            .map_err(query_error("open"))?;
        Ok(count > 0)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies pending migrations in one transaction. In PostgreSQL a transaction-scoped
    /// advisory lock makes replicas that start together take turns.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|source| StoreError::Migrate { version: 0, source })?;
        let result = self.migrate_on(&mut conn).await;
        if result.is_err() {
            discard(conn).await;
        }
        result
    }

    async fn migrate_on(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        let start = |source| StoreError::Migrate { version: 0, source };
        let mut tx = conn.begin().await.map_err(start)?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7979001)")
                .execute(&mut *tx)
                .await
                .map_err(start)?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS medic_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(start)?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM medic_schema")
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get::<i64, _>(0))
            .map_err(start)?;
        for (version, sqlite, postgres) in schema::MIGRATIONS {
            if *version <= current {
                continue;
            }
            let sql = match self.backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            let fail = |source| StoreError::Migrate {
                version: *version,
                source,
            };
            // One statement at a time: the migration texts hold no ';' inside literals.
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query("INSERT INTO medic_schema (version, applied_ms) VALUES ($1, $2)")
                .bind(*version)
                .bind(crate::timefmt::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tracing::info!(version, "state store migrated");
        }
        tx.commit().await.map_err(start)
    }

    /// Writes a batch of results in one transaction.
    pub async fn insert_results(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(query_error("write"))?;
        match insert_rows(&mut conn, rows).await {
            Ok(()) => Ok(()),
            Err(source) => {
                discard(conn).await;
                Err(StoreError::Query {
                    operation: "write",
                    source,
                })
            }
        }
    }

    /// Whether the SQLite file at the store's path is still the one opened; `None` for
    /// PostgreSQL and in-memory stores, and while the path cannot be read for another reason
    /// (a permission change is not a replacement).
    pub fn file_change(&self) -> Option<FileChange> {
        let (path, opened) = self.file.as_ref()?;
        sqlite_file::change(*opened, FileIdentity::of(path))
    }

    /// For a SQLite store whose file was deleted: copies the database, still readable through
    /// a connection open on the unlinked file, to its path (`VACUUM INTO` a temporary file,
    /// renamed into place), so that neither results written since the deletion nor attempt
    /// records and cooldowns are lost. `Ok(false)` when no idle connection is left to read it:
    /// a new one would open the path, not the deleted file.
    pub async fn salvage_deleted(&self) -> Result<bool, StoreError> {
        let Some((path, _)) = &self.file else {
            return Ok(false);
        };
        let Some(mut conn) = self.pool.try_acquire() else {
            return Ok(false);
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".salvage");
        let tmp = PathBuf::from(tmp);
        let io = |e: std::io::Error| StoreError::Query {
            operation: "replaced",
            source: sqlx::Error::Io(e),
        };
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        sqlx::query("VACUUM INTO $1")
            .bind(tmp.to_string_lossy().into_owned())
            .execute(&mut *conn)
            .await
            .map_err(query_error("replaced"))?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(true)
    }

    /// The SQLite file's path, when the store is one.
    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(path, _)| path.as_path())
    }

    /// Results since `since_ms`, oldest first, at most `per_check` of the newest per check.
    pub async fn load_results(
        &self,
        since_ms: i64,
        per_check: usize,
    ) -> Result<Vec<ResultRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT check_name, at_ms, status, duration_seconds, message, measurements FROM check_results \
             WHERE at_ms >= $1 ORDER BY check_name, at_ms",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read"))?;
        let mut out: Vec<ResultRow> = Vec::with_capacity(rows.len());
        let mut start_of_check = 0;
        for row in rows {
            let parsed = decode_result(&row).map_err(query_error("read"))?;
            if out
                .get(start_of_check)
                .is_some_and(|first| first.check != parsed.check)
            {
                trim_front(&mut out, start_of_check, per_check);
                start_of_check = out.len();
            }
            out.push(parsed);
        }
        trim_front(&mut out, start_of_check, per_check);
        Ok(out)
    }

    /// The newest result of each of `checks` (its raw status), by whichever replica probed it:
    /// how a replica learns the state of a dependency another replica probes.
    pub async fn latest_statuses(
        &self,
        checks: &[String],
    ) -> Result<BTreeMap<String, Status>, StoreError> {
        let mut out = BTreeMap::new();
        for check in checks {
            let row = sqlx::query(
                "SELECT status FROM check_results WHERE check_name = $1 ORDER BY at_ms DESC LIMIT 1",
            )
            .bind(check.clone())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read"))?;
            if let Some(row) = row {
                let status: String = row.try_get(0).map_err(query_error("read"))?;
                out.insert(
                    check.clone(),
                    Status::parse(&status).unwrap_or(Status::Unknown),
                );
            }
        }
        Ok(out)
    }

    /// Deletes results older than `before_ms`, and for every check all but the newest `keep`.
    /// Returns how many rows went.
    pub async fn prune(&self, before_ms: i64, keep: u64) -> Result<u64, StoreError> {
        // Deletes go in small batches with a pause between them: one statement removing
        // hundreds of thousands of rows holds SQLite's write lock for seconds, and the result
        // writer, locked out, would pile its batches up in memory.
        let mut removed = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM check_results WHERE id IN \
                 (SELECT id FROM check_results WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)",
            )
            .bind(before_ms)
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(query_error("prune"))?
            .rows_affected();
            removed += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        // Only checks over their count are touched (a read, which does not block the writer).
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let over: Vec<String> = sqlx::query(
            "SELECT check_name FROM check_results GROUP BY check_name HAVING COUNT(*) > $1",
        )
        .bind(keep)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("prune"))?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()
        .map_err(query_error("prune"))?;
        for check in &over {
            removed += sqlx::query(
                "DELETE FROM check_results WHERE check_name = $1 AND id <= \
                 (SELECT id FROM check_results WHERE check_name = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(check.clone())
            .bind(keep)
            .execute(&self.pool)
            .await
            .map_err(query_error("prune"))?
            .rows_affected();
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        Ok(removed)
    }

    /// How many results are stored for a check (tests and `medic` diagnostics).
    pub async fn count_results(&self, check: &str) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) FROM check_results WHERE check_name = $1")
            .bind(check.to_string())
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get::<i64, _>(0))
            .map_err(query_error("read"))
    }

    /// Closes the membership's connection (from the runtime that opened it, as the membership
    /// ends); a later use opens it again.
    pub async fn close_membership(&self) {
        self.membership.close().await;
    }

    pub async fn close(&self) {
        self.membership.close().await;
        self.pool.close().await;
    }
}

/// Closes a connection on which a write failed instead of returning it to the pool. After
/// SQLITE_FULL or SQLITE_IOERR, SQLite may already have rolled the transaction back on its own,
/// and sqlx's count of open transactions on that connection no longer matches SQLite's: the
/// next "BEGIN" became a SAVEPOINT inside a transaction that never commits, which kept the write
/// lock ("database is locked" for every other connection) while commits reported success.
/// Closing the connection ends whatever transaction it holds and releases its locks; the pool
/// opens a fresh one when it next needs it. For PostgreSQL it costs one reconnect.
async fn discard(conn: PoolConnection<Any>) {
    let closing = conn.detach().close();
    if tokio::time::timeout(DISCARD_TIMEOUT, closing)
        .await
        .is_err()
    {
        tracing::warn!("closing a failed state store connection timed out");
    }
}

const DISCARD_TIMEOUT: Duration = Duration::from_secs(5);

/// The batch's INSERTs in one transaction on `conn`.
async fn insert_rows(conn: &mut AnyConnection, rows: &[ResultRow]) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut rest = rows;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(insert_size(rest.len()));
        rest = tail;
        let mut query = sqlx::query(insert_sql(chunk.len()));
        for row in chunk {
            query = query
                .bind(row.check.clone())
                .bind(row.at_ms)
                .bind(row.status.as_str())
                .bind(row.duration_seconds)
                .bind(row.message.clone())
                .bind(encode_measurements(&row.measurements));
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Rows deleted per statement when pruning, and the pause between statements.
const PRUNE_BATCH: i64 = 5_000;
const PRUNE_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// How many of `remaining` (at least one) rows the next INSERT takes: the largest power of two
/// that fits, capped at [`INSERT_CHUNK`].
fn insert_size(remaining: usize) -> usize {
    if remaining >= INSERT_CHUNK {
        INSERT_CHUNK
    } else {
        1 << remaining.max(1).ilog2()
    }
}

/// The INSERT text for `rows` rows, a power of two up to [`INSERT_CHUNK`]. Built once per size:
/// sqlx finds its cached prepared statement by the text.
fn insert_sql(rows: usize) -> &'static str {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..=INSERT_CHUNK.ilog2())
            .map(|power| {
                let mut sql = String::from(
                    "INSERT INTO check_results (check_name, at_ms, status, duration_seconds, message, measurements) VALUES ",
                );
                for i in 0..1usize << power {
                    if i > 0 {
                        sql.push(',');
                    }
                    let b = i * 6;
                    let _ = write!(
                        sql,
                        "(${},${},${},${},${},${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6
                    );
                }
                sql
            })
            .collect()
    });
    &texts[rows.max(1).ilog2() as usize]
}

/// Keeps only the newest `keep` rows of `out[start..]`.
fn trim_front(out: &mut Vec<ResultRow>, start: usize, keep: usize) {
    let len = out.len() - start;
    if len > keep {
        out.drain(start..start + (len - keep));
    }
}

fn decode_result(row: &AnyRow) -> Result<ResultRow, sqlx::Error> {
    let status: String = row.try_get(2)?;
    let measurements: String = row.try_get(5)?;
    Ok(ResultRow {
        check: row.try_get(0)?,
        at_ms: row.try_get(1)?,
        status: Status::parse(&status).unwrap_or(Status::Unknown),
        duration_seconds: row.try_get(3)?,
        message: row.try_get(4)?,
        measurements: decode_measurements(&measurements),
    })
}

fn encode_measurements(measurements: &[Measurement]) -> String {
    let list: Vec<serde_json::Value> = measurements
        .iter()
        .map(|m| match m.measure.mountpoint() {
            Some(mp) => {
                serde_json::json!({"name": m.measure.name(), "mountpoint": mp, "value": m.value})
            }
            None => serde_json::json!({"name": m.measure.name(), "value": m.value}),
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn decode_measurements(text: &str) -> Vec<Measurement> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let mountpoint = item
                .get("mountpoint")
                .and_then(|m| m.as_str())
                .map(str::to_string);
            Some(Measurement::new(
                Measure::from_parts(item.get("name")?.as_str()?, mountpoint)?,
                item.get("value")?.as_f64()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(check: &str, at_ms: i64, status: Status) -> ResultRow {
        ResultRow {
            check: check.into(),
            at_ms,
            status,
            duration_seconds: 0.25,
            message: format!("m{at_ms}"),
            measurements: vec![Measurement::new(
                Measure::Disk {
                    mountpoint: "/".into(),
                },
                0.5,
            )],
        }
    }

    #[tokio::test]
    async fn sqlite_store_round_trips_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let url = Secret::new(format!(
            "sqlite://{}/nested/dir/medic.db",
            dir.path().display()
        ));
        let store = Store::open(&url).await.unwrap();
        // Opening twice (a restart) must not re-run migrations.
        let store2 = Store::open(&url).await.unwrap();
        store2.close().await;
        let rows: Vec<ResultRow> = (0..1200)
            .map(|i| {
                row(
                    if i % 2 == 0 { "a" } else { "b" },
                    1000 + i,
                    Status::Healthy,
                )
            })
            .collect();
        store.insert_results(&rows).await.unwrap();
        assert_eq!(store.count_results("a").await.unwrap(), 600);

        let loaded = store.load_results(0, 10).await.unwrap();
        assert_eq!(loaded.len(), 20);
        assert_eq!(loaded[0].check, "a");
        assert_eq!(loaded[9].at_ms, 1000 + 1198);
        assert_eq!(loaded[0].measurements, rows[0].measurements);
        assert_eq!(loaded[0].status, Status::Healthy);

        let removed = store.prune(1100, 100).await.unwrap();
        assert_eq!(removed, 1000);
        assert_eq!(store.count_results("a").await.unwrap(), 100);
        assert_eq!(store.count_results("b").await.unwrap(), 100);

        // More old rows than one delete batch takes: pruning goes on until none is left.
        let old: Vec<ResultRow> = (0..12_000)
            .map(|i| row("c", 10 + i, Status::Healthy))
            .collect();
        for chunk in old.chunks(1000) {
            store.insert_results(chunk).await.unwrap();
        }
        let removed = store.prune(50_000, 1_000_000).await.unwrap();
        assert_eq!(removed, 12_000 + 200);
        assert_eq!(store.count_results("c").await.unwrap(), 0);
    }

    #[test]
    fn batches_split_into_few_statement_shapes() {
        for total in 1..=1000 {
            let mut rest = total;
            let mut statements = 0;
            while rest > 0 {
                let n = insert_size(rest);
                assert!(n.is_power_of_two() && n <= INSERT_CHUNK && n <= rest);
                let params = insert_sql(n).matches('$').count();
                assert_eq!(params, n * 6);
                rest -= n;
                statements += 1;
            }
            assert!(
                statements <= total / INSERT_CHUNK + 6,
                "{total}: {statements}"
            );
        }
    }

    #[test]
    fn measurements_round_trip_and_tolerate_garbage() {
        let m = vec![
            Measurement::new(Measure::Perfdata("depth".into()), 42.0),
            Measurement::new(Measure::Cpu, 0.5),
            Measurement::new(
                Measure::Disk {
                    mountpoint: "/data".into(),
                },
                0.25,
            ),
        ];
        assert_eq!(decode_measurements(&encode_measurements(&m)), m);
        // A disk reading without its mountpoint says nothing.
        assert!(decode_measurements("[{\"name\": \"disk_utilization\", \"value\": 1}]").is_empty());
        assert!(decode_measurements("not json").is_empty());
        assert!(decode_measurements("[{\"name\": 5}]").is_empty());
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;

    #[tokio::test]
    async fn recovery_records_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Secret::new(format!(
            "sqlite://{}/m.db",
            dir.path().display()
        )))
        .await
        .unwrap();
        // Parameters used out of order and twice must bind by number.
        let v = store
            .learn("c", "s", true, crate::recovery::chain::LEARNING, 100)
            .await
            .unwrap();
        assert!((v - 0.65).abs() < 1e-9, "{v}");
        let v = store
            .learn("c", "s", false, crate::recovery::chain::LEARNING, 200)
            .await
            .unwrap();
        assert!((v - 0.455).abs() < 1e-9, "{v}");

        let start = AttemptStart {
            run_id: "r1",
            chain: "c",
            step: "s",
            subject: "check:web",
            target: "check:web",
            trigger: "check",
            started_ms: 1000,
        };
        let id = store.begin_attempt(&start).await.unwrap();
        let later = AttemptStart {
            started_ms: 2000,
            ..start
        };
        store.begin_attempt(&later).await.unwrap();
        let states = store.step_states("c", "check:web").await.unwrap();
        assert_eq!(states["s"].attempts, 2);
        assert_eq!(states["s"].last_attempt_ms, Some(2000));
        store
            .end_attempt(
                id,
                &AttemptEnd {
                    finished_ms: 1500,
                    result: "success",
                    message: "ok".into(),
                    exit_code: Some(0),
                    output: String::new(),
                    duration_seconds: 0.5,
                },
            )
            .await
            .unwrap();
        store
            .reset_counters("c", "check:web", Some(&["s".to_string()]))
            .await
            .unwrap();
        let states = store.step_states("c", "check:web").await.unwrap();
        assert_eq!(states["s"].attempts, 0);
        assert_eq!(
            states["s"].last_attempt_ms,
            Some(2000),
            "cooldowns survive a counter reset"
        );

        let run = RunStart {
            id: "r1",
            chain: "c",
            target: "check:web",
            subject: "check:web",
            trigger: "check",
            started_ms: 1000,
            owner: "me",
            lease_until_ms: 5000,
            labels_json: "{}".into(),
        };
        assert!(store.begin_run(&run).await.unwrap().is_some());
        let again = RunStart {
            id: "r2",
            ..run.clone()
        };
        assert!(
            store.begin_run(&again).await.unwrap().is_none(),
            "one active run per (chain, subject)"
        );
        let same_subject = RunStart {
            id: "r3",
            target: "alert:ab12@2026-11-28T00:00:00Z",
            trigger: "alert",
            ..run.clone()
        };
        assert!(
            store.begin_run(&same_subject).await.unwrap().is_none(),
            "an alert about the check waits for the check's run"
        );
        assert!(store
            .end_abandoned_runs(4000, "other", 0)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.end_abandoned_runs(6000, "other", 0).await.unwrap(),
            vec![("c".to_string(), "check".to_string())]
        );
        assert!(
            store.begin_run(&again).await.unwrap().is_some(),
            "a cancelled run frees its target"
        );

        store
            .set_healthy_since("c", "check:web", Some(10))
            .await
            .unwrap();
        store
            .set_healthy_since("c", "check:web", Some(20))
            .await
            .unwrap();
        assert_eq!(
            store.healthy_since("c", "check:web").await.unwrap(),
            Some(10)
        );
        store
            .set_healthy_since("c", "check:web", None)
            .await
            .unwrap();
        assert_eq!(store.healthy_since("c", "check:web").await.unwrap(), None);

        let attempts = store.recent_attempts(Some("c"), 10).await.unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[1].result.as_deref(), Some("success"));
        assert_eq!(
            attempts[0].result.as_deref(),
            Some("failure"),
            "interrupted by the abandoned run"
        );
        let stats = store.step_stats().await.unwrap();
        assert_eq!(stats[0].attempts, 2);
        assert_eq!(stats[0].successes, 1);
        assert!(stats[0].effectiveness.is_some());
    }
}
