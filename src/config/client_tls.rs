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

/// `builder` with an endpoint's TLS: its CA roots, client identity and `insecure_skip_verify`,
/// and `server_name`. reqwest verifies the certificate against the URL's host, so with
/// `server_name` the URL's host becomes that name, resolved to where the URL's own host
/// resolves (unchanged when that host does not resolve). Returns the builder and the URL to
/// request. Blocking: it may resolve a name.
pub fn endpoint(
    mut builder: reqwest::ClientBuilder,
    tls: &ClientTls,
    url: &str,
) -> Result<(reqwest::ClientBuilder, String), String> {
    let (roots, identity) = read(tls)?;
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    let mut url = url.to_string();
    if let Some(name) = &tls.server_name {
        if let Ok(mut parsed) = reqwest::Url::parse(&url) {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let host = parsed.host_str().unwrap_or_default().to_string();
            let addrs: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map(Iterator::collect)
                    .unwrap_or_default();
            if !addrs.is_empty() && parsed.set_host(Some(name)).is_ok() {
                builder = builder.resolve_to_addrs(name, &addrs);
                url = parsed.to_string();
            }
        }
    }
    Ok((builder, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_becomes_the_host_requested_and_nothing_else_changes() {
        let named = ClientTls {
            server_name: Some("am.internal".into()),
            ..ClientTls::default()
        };
        let (_, url) = endpoint(
            reqwest::Client::builder(),
            &named,
            "https://127.0.0.1:9093/x",
        )
        .unwrap();
        assert_eq!(url, "https://am.internal:9093/x");
        let (_, url) = endpoint(
            reqwest::Client::builder(),
            &ClientTls::default(),
            "https://127.0.0.1:9093",
        )
        .unwrap();
        assert_eq!(
            url, "https://127.0.0.1:9093",
            "no server_name: the URL as written"
        );
    }
}
