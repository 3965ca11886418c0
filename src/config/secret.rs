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
/// of them, every outgoing message passes through here. A secret is also found in the forms
/// other code writes it in: percent-encoded (a URL), quoted by `{:?}` or JSON, and quoted twice
/// (a log field holding a `{:?}` string).
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    /// The secrets as given, for merging.
    secrets: Arc<BTreeSet<String>>,
    /// Every form of every secret, longest first, so a secret that contains another is
    /// replaced whole.
    patterns: Arc<Vec<String>>,
}

/// Secrets shorter than this are not scrubbed from text: replacing every "a" or "1" would make
/// messages unreadable while hiding nothing a guess could not find.
pub(crate) const MIN_REDACTED_LEN: usize = 3;

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let secrets: BTreeSet<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_REDACTED_LEN)
            .collect();
        let mut patterns: BTreeSet<String> = BTreeSet::new();
        for secret in &secrets {
            patterns.extend(forms(secret));
        }
        let mut patterns: Vec<String> = patterns.into_iter().collect();
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Redactor {
            secrets: Arc::new(secrets),
            patterns: Arc::new(patterns),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// This redactor's secrets and `other`'s.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        if other.secrets.is_subset(&self.secrets) {
            return self.clone();
        }
        Redactor::new(self.secrets.iter().chain(other.secrets.iter()).cloned())
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for pattern in self.patterns.iter() {
            if out.contains(pattern.as_str()) {
                out = out.replace(pattern.as_str(), REDACTED);
            }
        }
        out
    }
}

/// The ways a secret may be written out by code that quotes or encodes it.
fn forms(secret: &str) -> Vec<String> {
    let debug = secret.escape_debug().to_string();
    let twice = debug.escape_debug().to_string();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or_default()
        .to_string();
    let encoded = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    // The `url` crate leaves more unencoded than NON_ALPHANUMERIC does; a query keeps '@', ':'
    // and '/' as they are.
    let query = percent_encoding::utf8_percent_encode(secret, QUERY).to_string();
    let mut all = vec![secret.to_string(), debug, twice, json, encoded, query];
    all.retain(|f| f.len() >= MIN_REDACTED_LEN);
    all
}

/// Roughly what a URL parser escapes in a query or a path.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Every secret any config loaded by this process has held, for the outputs that do not carry
/// a config (the log writer, rendered actions). Secrets are never forgotten: one dropped by a
/// reload may still sit in a message about the old config.
static KNOWN: std::sync::RwLock<Option<Redactor>> = std::sync::RwLock::new(None);

/// Adds these secrets to the ones every later [`known_secrets`] scrubs.
pub fn remember_secrets(redactor: &Redactor) {
    if redactor.is_empty() {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    let merged = match known.as_ref() {
        Some(k) => k.merged(redactor),
        None => redactor.clone(),
    };
    *known = Some(merged);
}

/// Every secret this process has learned from a config.
pub fn known_secrets() -> Redactor {
    KNOWN
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Returns the URL with its password and its query values replaced, for messages and metadata.
/// (A query often carries the credential: `?token=…`, a webhook's `?sig=…`.) Values shorter
/// than [`MIN_REDACTED_LEN`] stay, as the [`Redactor`] leaves them.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:{}{}", &userinfo[..colon], REDACTED, &authority[at..]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    format!(
        "{}{}{}",
        &url[..scheme_end + 3],
        authority,
        redact_query(rest)
    )
}

/// `path?a=1&token=…#frag` with every query value of [`MIN_REDACTED_LEN`] or more replaced.
fn redact_query(rest: &str) -> String {
    let Some(q) = rest.find('?') else {
        return rest.to_string();
    };
    let (path, query) = rest.split_at(q);
    let query = &query[1..];
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if value.len() >= MIN_REDACTED_LEN => format!("{key}={REDACTED}"),
            Some(_) => pair.to_string(),
            // A bare `?s3cr3t` is a value without a name.
            None if pair.len() >= MIN_REDACTED_LEN => REDACTED.to_string(),
            None => pair.to_string(),
        })
        .collect();
    format!("{path}?{}{fragment}", pairs.join("&"))
}

/// The secrets inside a URL: its password and its query values, raw and percent-decoded.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |raw: &str| {
        out.push(raw.to_string());
        if let Ok(decoded) = percent_encoding::percent_decode_str(raw).decode_utf8() {
            out.push(decoded.into_owned());
        }
    };
    let Some(scheme_end) = url.find("://") else {
        return out;
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    if let Some(at) = authority.rfind('@') {
        if let Some((_, password)) = authority[..at].split_once(':') {
            push(password);
        }
    }
    if let Some(q) = rest.find('?') {
        let query = &rest[q + 1..];
        let query = query.split('#').next().unwrap_or("");
        for pair in query.split('&') {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            push(value);
            // A form-encoded space.
            if value.contains('+') {
                push(&value.replace('+', " "));
            }
        }
    }
    out
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
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
    fn redactor_scrubs_quoted_and_escaped_copies() {
        let r = Redactor::new(["s3cr3t\"q\\x".to_string()]);
        let plain = "s3cr3t\"q\\x";
        let debug = format!("{plain:?}");
        let twice = format!("{debug:?}");
        let json = serde_json::to_string(plain).unwrap();
        for text in [plain.to_string(), debug, twice, json] {
            let out = r.redact(&format!("arg {text} end"));
            assert!(!out.contains("s3cr3t"), "{text} -> {out}");
        }
    }

    #[test]
    fn urls_lose_their_query_values() {
        assert_eq!(
            redact_url("https://hooks.example/x?token=s3cr3t-q&a=1#frag"),
            "https://hooks.example/x?token=<secret>&a=1#frag"
        );
        assert_eq!(redact_url("http://h/?s3cr3t"), "http://h/?<secret>");
        assert_eq!(
            redact_url("http://u:pw@h:1/p?k=long-value"),
            "http://u:<secret>@h:1/p?k=<secret>"
        );
    }

    #[test]
    fn url_secrets_are_the_password_and_query_values() {
        let s = url_secrets("http://u:p%40w@h/p?a=s3cr3t%20q&b=x+y+z&flag");
        for want in [
            "p%40w",
            "p@w",
            "s3cr3t%20q",
            "s3cr3t q",
            "x+y+z",
            "x y z",
            "flag",
        ] {
            assert!(s.iter().any(|v| v == want), "{want} not in {s:?}");
        }
        assert!(!s.iter().any(|v| v == "u" || v == "h"), "{s:?}");
    }

    #[test]
    fn remembered_secrets_are_known_and_never_forgotten() {
        remember_secrets(&Redactor::new(["remembered-one-91f".to_string()]));
        remember_secrets(&Redactor::new(["remembered-two-3ac".to_string()]));
        let known = known_secrets();
        assert_eq!(
            known.redact("remembered-one-91f remembered-two-3ac"),
            "<secret> <secret>"
        );
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
