//! Secrets: values that must never be shown, and the redactor that scrubs them from any text.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A value that came from a `*_file` key, an `${ENV}` reference, a header or a URL password.
/// Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (a request header, a driver).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The text that replaces a secret wherever it would otherwise appear.
pub const REDACTED: &str = "<secret>";

/// Scrubs every known secret from text on its way out (messages, logs, API answers).
///
/// Probes report errors from libraries that may quote a URL or a header; rather than trust each
/// of them, every outgoing message passes through here.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    // Longest first, so a secret that contains another is replaced whole.
    secrets: Arc<Vec<String>>,
}

/// Secrets shorter than this are not scrubbed from text: replacing every "a" or "1" would make
/// messages unreadable while hiding nothing a guess could not find.
const MIN_REDACTED_LEN: usize = 3;

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let set: BTreeSet<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_REDACTED_LEN)
            .collect();
        let mut secrets: Vec<String> = set.into_iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
            // A percent-encoded copy (in a URL) is just as secret.
            let encoded =
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            if encoded != *secret && out.contains(encoded.as_str()) {
                out = out.replace(encoded.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Returns the URL with any password replaced, for messages and metadata.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let Some(at) = after[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &after[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{}{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            REDACTED,
            &after[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
    }

    #[test]
    fn redactor_scrubs_plain_and_encoded_copies() {
        let r = Redactor::new([
            "p@ss word".to_string(),
            "hunter2".to_string(),
            "x".to_string(),
        ]);
        assert_eq!(r.redact("auth hunter2 failed"), "auth <secret> failed");
        assert_eq!(
            r.redact("url http://u:p%40ss%20word@h/"),
            "url http://u:<secret>@h/"
        );
        assert_eq!(r.redact("x marks"), "x marks");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://medic:topsecret@db:5432/medic"),
            "postgres://medic:<secret>@db:5432/medic"
        );
        assert_eq!(redact_url("http://host/path?q=1"), "http://host/path?q=1");
        assert_eq!(redact_url("weird://u:pw@"), "weird://u:<secret>@");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("http://user@h/"), "http://user@h/");
    }
}
