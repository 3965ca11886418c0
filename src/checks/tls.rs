//! TLS checks: a handshake to `address`, verified against the system roots or `ca_file`, and
//! the earliest `notAfter` of the presented chain against `warn_before`/`critical_before`.
//!
//! The chain is recorded before it is judged, so its expiry is known (and exported) even when
//! verification fails: an expired or misissued certificate is exactly when people look.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{FailureReason, Measure, Measurement, Outcome};
use crate::config::{CaCerts, TlsSpec};
use crate::status::Status;
use crate::timefmt::{days_from_civil, rfc3339_ms};

pub(super) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The system's trust anchors, read once: the same store the OS tools use.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(match found.errors.first() {
                    Some(e) => format!("no system root certificates: {e}"),
                    None => "no system root certificates".to_string(),
                });
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

pub(super) fn verifier(ca: Option<&CaCerts>) -> Result<Arc<WebPkiServerVerifier>, String> {
    let roots = match ca {
        None => system_roots()?,
        Some(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs.iter() {
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("ca_file: {e}"))?;
            }
            Arc::new(roots)
        }
    };
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| e.to_string())
}

/// Records the chain the server presented, then lets `inner` judge it (or accepts it, when
/// only the chain is wanted).
#[derive(Debug)]
struct Recording {
    inner: Option<Arc<WebPkiServerVerifier>>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What one handshake showed.
struct Handshake {
    /// The earliest `notAfter` in the chain, Unix seconds; `None` when no certificate came.
    earliest_not_after: Option<i64>,
    result: Result<(), String>,
}

/// Connects and handshakes; `inner: None` only records the chain.
async fn handshake(
    address: &str,
    server_name: &str,
    inner: Option<Arc<WebPkiServerVerifier>>,
) -> Result<Handshake, Outcome> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        Outcome::failed(
            Status::Unknown,
            FailureReason::Other,
            format!("server name {server_name:?}: {e}"),
        )
    })?;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| super::tcp::connect_failed(address, &e))?;
    let recording = Arc::new(Recording {
        inner,
        seen: Mutex::new(Vec::new()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Outcome::failed(Status::Unknown, FailureReason::Other, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = connector
        .connect(name, stream)
        .await
        .map(drop)
        .map_err(|e| match e.get_ref() {
            Some(inner) => inner.to_string(),
            None => e.to_string(),
        });
    let seen = recording.seen.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Handshake {
        earliest_not_after: seen.iter().filter_map(|c| not_after(c)).min(),
        result,
    })
}

pub async fn probe(spec: &TlsSpec) -> Outcome {
    let inner = match verifier(spec.ca.as_ref()) {
        Ok(v) => v,
        Err(e) => return Outcome::failed(Status::Unknown, FailureReason::Other, e),
    };
    let shake = match handshake(&spec.address, &spec.server_name, Some(inner)).await {
        Ok(h) => h,
        Err(outcome) => return outcome.with("address", spec.address.clone()),
    };
    let now = unix_now();
    let outcome = match (&shake.result, shake.earliest_not_after) {
        (Err(e), _) => Outcome::failed(
            Status::Critical,
            FailureReason::Tls,
            format!("TLS handshake with {} failed: {e}", spec.address),
        ),
        (Ok(()), None) => Outcome::failed(
            Status::Critical,
            FailureReason::Tls,
            format!("{} presented no certificate medic could read", spec.address),
        ),
        (Ok(()), Some(earliest)) => {
            let (status, message) = judge_expiry(
                earliest,
                now,
                spec.warn_before.std().as_secs() as i64,
                spec.critical_before.std().as_secs() as i64,
            );
            let mut outcome = Outcome::new(status, message);
            if status == Status::Critical {
                outcome.reason = Some(FailureReason::Tls);
            }
            outcome
        }
    };
    with_expiry(outcome, shake.earliest_not_after, now)
        .with("address", spec.address.clone())
        .with("server_name", spec.server_name.clone())
}

/// The earliest `notAfter` of the chain an `https://` URL's server presents, unverified (the
/// request itself verifies): for `http` checks' expiry metric.
pub async fn peek_expiry(host: &str, port: u16) -> Option<i64> {
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    handshake(&address, host, None)
        .await
        .ok()?
        .earliest_not_after
}

/// Adds the expiry's metadata and the `cert_expiry_seconds` measurement, when known.
pub fn with_expiry(mut outcome: Outcome, not_after: Option<i64>, now: i64) -> Outcome {
    if let Some(t) = not_after {
        outcome = outcome
            .with("cert_not_after", rfc3339_ms(t * 1000))
            .with(EXPIRY_KEY, t);
        outcome
            .measurements
            .push(Measurement::new(Measure::CertExpiry, (t - now) as f64));
    }
    outcome
}

/// The metadata key the metrics read the expiry timestamp from.
pub const EXPIRY_KEY: &str = "cert_expiry_timestamp_seconds";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Status and message of a verified chain whose earliest certificate expires at `not_after`.
fn judge_expiry(
    not_after: i64,
    now: i64,
    warn_before: i64,
    critical_before: i64,
) -> (Status, String) {
    let left = not_after - now;
    let when = rfc3339_ms(not_after * 1000);
    if left <= 0 {
        (Status::Critical, format!("certificate expired at {when}"))
    } else if left <= critical_before {
        (
            Status::Critical,
            format!("certificate expires in {} at {when}", human(left)),
        )
    } else if left <= warn_before {
        (
            Status::Warning,
            format!("certificate expires in {} at {when}", human(left)),
        )
    } else {
        (Status::Healthy, format!("certificate valid until {when}"))
    }
}

fn human(seconds: i64) -> String {
    if seconds >= 86_400 {
        format!("{}d{}h", seconds / 86_400, seconds % 86_400 / 3600)
    } else {
        format!("{}h{}m", seconds / 3600, seconds % 3600 / 60)
    }
}

/// `notAfter` of a DER certificate, Unix seconds. Five fields into the TBSCertificate
/// (RFC 5280 4.1): a few lines of DER walking instead of an X.509 crate and its parser stack.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert, 0x30)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest, 0xa0)?.1;
    }
    rest = tlv(rest, 0x02)?.1; // serialNumber
    rest = tlv(rest, 0x30)?.1; // signature AlgorithmIdentifier
    rest = tlv(rest, 0x30)?.1; // issuer
    let (validity, _) = tlv(rest, 0x30)?;
    let (_, after_not_before) = any_time(validity)?;
    let (not_after, _) = any_time(after_not_before)?;
    Some(not_after)
}

/// One DER element of `tag`: its contents and what follows it.
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (&rest[..len], &rest[len..]))
}

/// A UTCTime or GeneralizedTime (both `Z`, as RFC 5280 requires), as Unix seconds.
fn any_time(input: &[u8]) -> Option<(i64, &[u8])> {
    let tag = *input.first()?;
    let (text, rest) = tlv(input, tag)?;
    let text = std::str::from_utf8(text).ok()?;
    let seconds = match tag {
        0x17 => parse_time(text, 2)?,
        0x18 => parse_time(text, 4)?,
        _ => return None,
    };
    Some((seconds, rest))
}

/// `YYMMDDHHMMSSZ` (`year_digits` 2, 1950-2049) or `YYYYMMDDHHMMSSZ` (4).
fn parse_time(text: &str, year_digits: usize) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if digits.len() != year_digits + 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |from: usize, len: usize| digits[from..from + len].parse::<i64>().ok();
    let mut year = num(0, year_digits)?;
    if year_digits == 2 {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let at = year_digits;
    let (month, day) = (num(at, 2)?, num(at + 2, 2)?);
    let (hour, minute, second) = (num(at + 4, 2)?, num(at + 6, 2)?, num(at + 8, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_both_encodings() {
        assert_eq!(parse_time("700101000000Z", 2), Some(0));
        assert_eq!(parse_time("491231235959Z", 2), Some(2_524_607_999));
        assert_eq!(parse_time("20500101000000Z", 4), Some(2_524_608_000));
        assert_eq!(parse_time("20240229120000Z", 4), Some(1_709_208_000));
        for bad in [
            "2024022912000Z",
            "20241329120000Z",
            "20240229120000",
            "2024022912000xZ",
        ] {
            assert_eq!(parse_time(bad, 4), None, "{bad}");
        }
    }

    #[test]
    fn truncated_or_garbage_der_is_none_not_a_panic() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn expiry_is_judged_against_both_limits() {
        let day = 86_400;
        let table = [
            (30 * day, Status::Healthy),
            (14 * day + 1, Status::Healthy),
            (14 * day, Status::Warning),
            (3 * day + 1, Status::Warning),
            (3 * day, Status::Critical),
            (1, Status::Critical),
            (0, Status::Critical),
            (-day, Status::Critical),
        ];
        for (left, want) in table {
            let (status, message) = judge_expiry(1_000_000 + left, 1_000_000, 14 * day, 3 * day);
            assert_eq!(status, want, "{left}s left: {message}");
        }
    }
}
