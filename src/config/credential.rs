//! The one credential of an HTTP endpoint, as Prometheus spells it: a bearer token inline or in
//! a file, or basic auth with its password inline or in a file; at most one of them. Shared by
//! `web.webhook` (what callers must present) and `alertmanager` (what medic presents).

use std::path::PathBuf;

use serde::Deserialize;

use super::path::YamlPath;
use super::secret::Secret;
use super::validate::Context;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BasicAuthFile {
    username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

/// A credential before it is given its place (the webhook's or the Alertmanager client's).
pub(super) enum Credential {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// The credential given at `path` (none: `None`), every file read and every value kept secret.
pub(super) fn credential(
    cx: &mut Context,
    path: &YamlPath,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<BasicAuthFile>,
) -> Option<Credential> {
    let given = usize::from(bearer_token.is_some())
        + usize::from(bearer_token_file.is_some())
        + usize::from(basic_auth.is_some());
    let mut credential = None;
    if let Some(token) = bearer_token {
        credential = Some(Credential::Bearer(cx.secret(token)));
    }
    if let Some(file) = bearer_token_file {
        if let Some(token) = cx.read_secret_file(path.key("bearer_token_file"), &file) {
            credential = Some(Credential::Bearer(token));
        }
    }
    if let Some(basic) = basic_auth {
        if let Some(password) = password(
            cx,
            &path.key("basic_auth"),
            basic.password,
            basic.password_file,
        ) {
            credential = Some(Credential::Basic {
                username: basic.username,
                password,
            });
        }
    }
    if given > 1 {
        cx.error(
            path,
            "at most one of bearer_token, bearer_token_file and basic_auth may be set",
        );
    }
    if matches!(&credential, Some(Credential::Bearer(t)) if t.expose().is_empty()) {
        cx.error(path, "bearer token is empty");
    }
    credential
}

fn password(
    cx: &mut Context,
    path: &YamlPath,
    password: Option<String>,
    password_file: Option<PathBuf>,
) -> Option<Secret> {
    match (password, password_file) {
        (Some(p), None) => Some(cx.secret(p)),
        (None, Some(file)) => cx.read_secret_file(path.key("password_file"), &file),
        _ => {
            cx.error(
                path,
                "exactly one of password and password_file is required",
            );
            None
        }
    }
}

/// The credential as medic sends it to an endpoint (Alertmanager, an http_sd server).
pub(super) fn client_auth(credential: Option<Credential>) -> super::ClientAuth {
    match credential {
        None => super::ClientAuth::None,
        Some(Credential::Bearer(token)) => super::ClientAuth::Bearer(token),
        Some(Credential::Basic { username, password }) => {
            super::ClientAuth::Basic { username, password }
        }
    }
}
