//! `database:` checks: a query against PostgreSQL, MySQL/MariaDB or SQLite.

use std::path::PathBuf;

use serde::Deserialize;

use super::{CheckAt, Kind};
use crate::config::duration::Duration;
use crate::config::secret::Secret;
use crate::config::validate::Context;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    url: Option<String>,
    url_file: Option<PathBuf>,
    query: Option<String>,
    warn_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSpec {
    pub url: Secret,
    pub query: String,
    pub warn_after: Option<Duration>,
}

const SUPPORTED: [&str; 5] = [
    "postgres://",
    "postgresql://",
    "mysql://",
    "mariadb://",
    "sqlite:",
];

impl Kind for DatabaseSpec {
    type File = DatabaseFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, db: DatabaseFile) -> Option<DatabaseSpec> {
        let path = at.path;
        let url = match (db.url, &db.url_file) {
            (Some(url), None) => Secret::new(url),
            (None, Some(file)) => {
                cx.read_secret_file(format!("{path}: database.url_file"), file)?
            }
            _ => {
                cx.error(
                    path,
                    "exactly one of database.url and database.url_file is required",
                );
                return None;
            }
        };
        cx.url_password_is_secret(url.expose());
        if !SUPPORTED.iter().any(|p| url.expose().starts_with(p)) {
            let message = match &db.url_file {
                // Secret whole: name the file, not the URL.
                Some(file) => format!(
                    "database.url_file: the URL in {} must start with postgres://, mysql:// or sqlite:",
                    file.display()
                ),
                None => format!(
                    "database.url {:?} must start with postgres://, mysql:// or sqlite:",
                    cx.show_url(url.expose())
                ),
            };
            cx.error(path, message);
            return None;
        }
        at.warn_after(cx, "database", db.warn_after);
        let query = db.query.unwrap_or_else(|| "SELECT 1".to_string());
        if query.trim().is_empty() {
            cx.error(path, "database.query must not be empty");
            return None;
        }
        Some(DatabaseSpec {
            url,
            query,
            warn_after: db.warn_after,
        })
    }
}
