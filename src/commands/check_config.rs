//! `medic check-config [FILE]`: every error of a config (and of `--web.config.file`), with its
//! YAML path.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{ConfigSource, Overrides};

/// `medic check-config [FILE]`: prints every error with its YAML path; exit 0 valid, 1 invalid.
/// With `--web.config.file`, that file is checked too (as `promtool check web-config` does).
pub fn check_config(
    file: Option<PathBuf>,
    web_config: Option<&Path>,
    overrides: &Overrides,
) -> i32 {
    let web_code = match web_config.map(crate::server::web_security::WebSecurity::load) {
        None => 0,
        Some(Ok(web)) => {
            println!(
                "{}: valid (TLS {}, {} basic auth user(s))",
                web_config
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                if web.tls.is_some() { "on" } else { "off" },
                web.user_count()
            );
            0
        }
        Some(Err(e)) => {
            eprintln!("{e}");
            1
        }
    };
    let location = ConfigSource::resolve(file);
    let shown = location.to_string();
    let code = match location.load(overrides) {
        Ok(config) => {
            println!(
                "{shown}: valid ({} checks, {} recovery chains, {} routes, {} predictions)",
                config.checks.len(),
                config.recovery.chains.len(),
                config.recovery.routes.len(),
                config.predictions.len()
            );
            0
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{shown}: invalid, {} error(s):", errors.0.len());
            for e in &errors.0 {
                let _ = writeln!(err, "  {e}");
            }
            1
        }
    };
    code.max(web_code)
}
