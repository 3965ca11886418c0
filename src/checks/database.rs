//! Database checks through sqlx: PostgreSQL, MySQL/MariaDB and SQLite. One small pool per
//! database URL, reused between probes; a broken connection is noticed by the pool's ping and
//! replaced, so a database that comes back is seen at the next probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::Outcome;
use crate::config::DatabaseSpec;
use crate::status::Status;

// The state store itself needs SQLite or PostgreSQL.
#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("medic needs at least one of the features sqlite, postgres for its state store");

/// Connections per database: probes of one check never overlap, two allow a slow one to finish.
const POOL_SIZE: u32 = 2;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

enum Pool {
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

struct Database {
    pool: Pool,
    /// Asked once per pool: it costs a round trip.
    server_version: OnceLock<String>,
}

/// The pools of every database check, keyed by URL.
#[derive(Default)]
pub struct Databases {
    pools: Mutex<HashMap<String, Arc<Database>>>,
}

impl Databases {
    pub async fn probe(&self, spec: &DatabaseSpec, timeout: Duration) -> Outcome {
        let db = match self.database(spec, timeout) {
            Ok(db) => db,
            Err(message) => {
                return Outcome::failed(Status::Unknown, super::FailureReason::Other, message)
            }
        };
        let started = Instant::now();
        let result = run_query(&db.pool, &spec.query).await;
        let elapsed = started.elapsed();
        let rows = match result {
            Ok(rows) => rows,
            Err((phase, e)) => {
                return Outcome::from_error(
                    &e,
                    Status::Critical,
                    Some(classify(phase, &e)),
                    format!("{phase} failed: {}", describe(&e)),
                )
                .with("driver", db.pool.driver());
            }
        };
        if db.server_version.get().is_none() {
            if let Ok(version) = server_version(&db.pool).await {
                let _ = db.server_version.set(version);
            }
        }
        let mut outcome = Outcome::new(
            Status::Healthy,
            // No timing in the message: it is in duration_seconds, and a steady message is
            // stored once for the whole history.
            format!("query returned {rows} row(s)"),
        )
        .warn_if_slow(elapsed, spec.warn_after)
        .with("driver", db.pool.driver())
        .with("rows", rows as u64)
        .with("query_seconds", elapsed.as_secs_f64());
        if let Some(version) = db.server_version.get() {
            outcome = outcome.with("server_version", version.clone());
        }
        outcome
    }

    /// Drops the pools of databases no check uses any more (after a reload).
    pub fn retain(&self, urls: &[&str]) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|url, _| urls.contains(&url.as_str()));
    }

    fn database(&self, spec: &DatabaseSpec, timeout: Duration) -> Result<Arc<Database>, String> {
        let url = spec.url.expose();
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = pools.get(url) {
            return Ok(db.clone());
        }
        let pool = connect_lazy(url, timeout)?;
        let db = Arc::new(Database {
            pool,
            server_version: OnceLock::new(),
        });
        pools.insert(url.to_string(), db.clone());
        Ok(db)
    }
}

impl Pool {
    fn driver(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => "postgres",
            #[cfg(feature = "mysql")]
            Pool::MySql(_) => "mysql",
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => "sqlite",
        }
    }
}

/// A pool that connects on first use, so a database that is down at start is just a failing
/// check.
fn connect_lazy(url: &str, timeout: Duration) -> Result<Pool, String> {
    macro_rules! options {
        ($db:ty) => {
            sqlx::pool::PoolOptions::<$db>::new()
                .max_connections(POOL_SIZE)
                .min_connections(0)
                .acquire_timeout(timeout)
                .idle_timeout(IDLE_TIMEOUT)
                .test_before_acquire(true)
        };
    }
    let bad = |e: sqlx::Error| format!("invalid database URL: {}", describe(&e));
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let opts: sqlx::postgres::PgConnectOptions = url.parse().map_err(bad)?;
        return Ok(Pool::Postgres(
            options!(sqlx::Postgres).connect_lazy_with(opts),
        ));
    }
    #[cfg(feature = "mysql")]
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let opts: sqlx::mysql::MySqlConnectOptions = url.parse().map_err(bad)?;
        return Ok(Pool::MySql(options!(sqlx::MySql).connect_lazy_with(opts)));
    }
    #[cfg(feature = "sqlite")]
    if url.starts_with("sqlite:") {
        // A check must never create the database it is checking.
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().map_err(bad)?;
        return Ok(Pool::Sqlite(
            options!(sqlx::Sqlite).connect_lazy_with(opts.create_if_missing(false)),
        ));
    }
    let _ = bad;
    Err("this medic was built without the driver for this database URL".to_string())
}

/// Runs the query and counts rows; the error says whether connecting or the query failed.
async fn run_query(pool: &Pool, query: &str) -> Result<usize, (&'static str, sqlx::Error)> {
    macro_rules! run {
        ($pool:expr) => {{
            let mut conn = $pool.acquire().await.map_err(|e| ("connect", e))?;
            sqlx::query(query)
                .fetch_all(&mut *conn)
                .await
                .map(|rows| rows.len())
                .map_err(|e| ("query", e))
        }};
    }
    match pool {
        #[cfg(feature = "postgres")]
        Pool::Postgres(p) => run!(p),
        #[cfg(feature = "mysql")]
        Pool::MySql(p) => run!(p),
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(p) => run!(p),
    }
}

async fn server_version(pool: &Pool) -> Result<String, sqlx::Error> {
    match pool {
        #[cfg(feature = "postgres")]
        Pool::Postgres(p) => sqlx::query_scalar("SHOW server_version").fetch_one(p).await,
        #[cfg(feature = "mysql")]
        Pool::MySql(p) => sqlx::query_scalar("SELECT VERSION()").fetch_one(p).await,
        #[cfg(feature = "sqlite")]
        Pool::Sqlite(p) => {
            sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(p)
                .await
        }
    }
}

/// The closed-set reason of a failed connect or query.
fn classify(phase: &str, e: &sqlx::Error) -> super::FailureReason {
    use super::FailureReason;
    match e {
        sqlx::Error::PoolTimedOut => FailureReason::Timeout,
        sqlx::Error::Io(io) => match FailureReason::of_io(io) {
            FailureReason::Other if phase == "connect" => FailureReason::Other,
            reason => reason,
        },
        sqlx::Error::Tls(_) => FailureReason::Tls,
        sqlx::Error::Database(db) => {
            // SQLSTATE class 28 (PostgreSQL) and MySQL's 1044/1045: the credentials were refused.
            let code = db.code().unwrap_or_default();
            if code.starts_with("28") || code == "1044" || code == "1045" {
                FailureReason::Auth
            } else if phase == "connect" {
                FailureReason::Other
            } else {
                FailureReason::Query
            }
        }
        _ if phase == "query" => FailureReason::Query,
        _ => FailureReason::Other,
    }
}

/// What went wrong, in the database's own words where it gave some.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_string(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        sqlx::Error::Configuration(c) => c.to_string(),
        other => super::root_cause(other),
    }
}
