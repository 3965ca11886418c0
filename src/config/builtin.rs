//! The config medic runs without a file: it watches this host and itself, and forecasts when
//! the root disk fills up, so a first `medic` shows real metrics at once.

/// The built-in config's YAML, with medic's own address filled in for the self-check.
pub fn builtin_yaml(listen_address: &str) -> String {
    // A wildcard bind address is not something to connect to; loopback reaches the same server.
    let target = match listen_address.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => listen_address.to_string(),
    };
    format!(
        r#"# medic's built-in default config: this host's resources and medic itself.
defaults:
  interval: 15s
  timeout: 5s
checks:
  - name: host
    system:
      cpu: {{warning: 0.90, critical: 0.98}}
      memory: {{warning: 0.90, critical: 0.98}}
      disk: {{warning: 0.90, critical: 0.98, mountpoints: [/]}}
  - name: medic
    http:
      url: http://{target}/-/healthy
      expect_status: [200]
predictions:
  - name: root_disk
    check: host
    measurement: disk_utilization
    mountpoint: /
    window: 6h
    horizons: [1h, 24h]
    breach_above: 0.98
    max_horizon: 7d
"#
    )
}
