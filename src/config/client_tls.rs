//! The TLS files a client config names (the Alertmanager client's `tls:`), read and parsed:
//! once at validation, so a bad file is refused at load, and again when the client is built.

use super::ClientTls;

/// The TLS pieces a config names, read and parsed: (CA certificates, client identity).
pub fn read(
    tls: &ClientTls,
) -> Result<(Vec<reqwest::Certificate>, Option<reqwest::Identity>), String> {
    let mut roots = Vec::new();
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not PEM certificates: {e}", ca.display()))?;
    }
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem =
                std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?,
            );
            // The error never quotes the key.
            Some(reqwest::Identity::from_pem(&pem).map_err(|_| {
                format!(
                    "{} and {} are not a PEM certificate and key",
                    cert.display(),
                    key.display()
                )
            })?)
        }
        _ => None,
    };
    Ok((roots, identity))
}
