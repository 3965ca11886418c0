//! `medic check-config [FILE]`: every error of a config (and of `--web.config.file`), with its
//! YAML path; and for each check template, what one reading of its sources would make.

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
            census(&config.templates);
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

/// Each template's sources read once: the checks they would make, the targets refused and
/// the lists that could not be read. These are the data of the moment, not the config's
/// errors: the exit code stays the config's.
fn census(templates: &[std::sync::Arc<crate::config::CheckTemplate>]) {
    if templates.is_empty() {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot read the check templates' sources: {e}");
            return;
        }
    };
    for template in templates {
        let census = runtime.block_on(crate::discovery::read_once(template));
        let mechanisms: Vec<&str> = template.mechanisms().iter().map(|m| m.as_str()).collect();
        let refused: usize = census.refused.values().map(|(n, _)| n).sum();
        println!(
            "check template {:?} ({}): {} {} checks, {refused} targets refused, {} lists unreadable",
            template.name,
            mechanisms.join(", "),
            census.checks,
            template.kind(),
            census.failures.len(),
        );
        for (reason, (count, first)) in &census.refused {
            println!("  refused ({reason}): {count}, the first: {first}");
        }
        for failure in &census.failures {
            println!("  cannot read: {failure}");
        }
    }
}
