//! The `medic` command line: flags in Prometheus style, one subcommand per job.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medic::app::{self, ConfigLocation};
use medic::config::Overrides;
use medic::logging::{self, LogFormat, LogLevel};

/// mimalloc hands freed memory back to the system where glibc's allocator kept the churn of
/// thousands of probes a second resident (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "medic",
    version,
    about = "Health checks, predictions and graduated recovery for Prometheus users"
)]
struct Cli {
    /// Config file [default: medic.yml; without one, a built-in default config]
    #[arg(long = "config.file", value_name = "FILE", global = true)]
    config_file: Option<PathBuf>,
    /// Address for /metrics, the API and the webhook [default: 127.0.0.1:7979]
    #[arg(long = "web.listen-address", value_name = "ADDRESS", global = true)]
    listen_address: Option<String>,
    /// TLS and basic auth for every endpoint, in Prometheus' web config format [default: none]
    #[arg(long = "web.config.file", value_name = "FILE", global = true)]
    web_config_file: Option<PathBuf>,
    /// Probe only this share of the checks: INDEX/COUNT, e.g. 0/2 [default: all]
    #[arg(long = "cluster.shard", value_name = "INDEX/COUNT", global = true)]
    cluster_shard: Option<medic::cluster::Shard>,
    /// State store URL [default: sqlite://data/medic.db]
    #[arg(long = "state.url", value_name = "URL", global = true)]
    state_url: Option<String>,
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: LogLevel,
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exporter, scheduler, recovery engine and webhook receiver (the default)
    Run,
    /// Validate a config file; exit 0 valid, 1 invalid
    CheckConfig {
        /// The file to check [default: --config.file, else medic.yml]
        file: Option<PathBuf>,
    },
    /// Run one check once and print its result; exit 0/1/2/3 as Nagios does
    Probe {
        /// The check's name in the config
        name: String,
    },
    /// Run a recovery chain by hand, printing each step and its outcome
    Recover {
        /// The chain's name in the config (optional with --stats)
        #[arg(required_unless_present = "stats")]
        chain: Option<String>,
        /// A template value for the run, NAME=VALUE (repeatable)
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
        /// Show what would run, run nothing
        #[arg(long)]
        dry_run: bool,
        /// Verify each step with this check (probed directly)
        #[arg(long = "verify-check", value_name = "CHECK")]
        verify_check: Option<String>,
        /// Print per-step totals from the state store instead of running anything
        #[arg(long)]
        stats: bool,
    },
    /// Score a `timestamp,value` CSV for anomalies and forecast it (the live predictor's code)
    Detect {
        /// Input CSV [default: stdin]
        #[arg(long)]
        input: Option<PathBuf>,
        /// Output CSV [default: stdout]
        #[arg(long)]
        output: Option<PathBuf>,
        /// Rows ahead that the `forecast` column predicts
        #[arg(long, default_value_t = 1)]
        horizon: usize,
        /// Adds a `breach_seconds` column: time until the forecast rises above this value
        #[arg(long, conflicts_with = "breach_below")]
        breach_above: Option<f64>,
        /// Adds a `breach_seconds` column: time until the forecast falls below this value
        #[arg(long)]
        breach_below: Option<f64>,
        /// Forecaster window, as a prediction's `window` (e.g. 6h)
        #[arg(long, default_value = "6h")]
        window: medic::config::Duration,
        /// Farthest breach `breach_seconds` reports, as a prediction's `max_horizon`
        #[arg(long, default_value = "7d")]
        max_horizon: medic::config::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);
    let overrides = Overrides {
        listen_address: cli.listen_address.clone(),
        state_url: cli.state_url.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("medic: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let location = ConfigLocation::resolve(cli.config_file);
            let options = app::RunOptions {
                web_config: cli.web_config_file,
                shard: cli.cluster_shard.unwrap_or_default(),
            };
            match runtime.block_on(app::run(location, overrides, options)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "medic failed");
                    eprintln!("medic: {e:#}");
                    1
                }
            }
        }
        Command::CheckConfig { file } => medic::commands::check_config(
            file.or(cli.config_file),
            cli.web_config_file.as_deref(),
            &overrides,
        ),
        Command::Probe { name } => {
            let location = ConfigLocation::resolve(cli.config_file);
            runtime.block_on(medic::commands::probe(&name, location, &overrides))
        }
        Command::Recover {
            chain,
            labels,
            dry_run,
            verify_check,
            stats,
        } => {
            let location = ConfigLocation::resolve(cli.config_file);
            let request = medic::commands::RecoverRequest {
                chain,
                labels,
                dry_run,
                verify_check,
                stats,
            };
            runtime.block_on(medic::commands::recover(request, location, &overrides))
        }
        Command::Detect {
            input,
            output,
            horizon,
            breach_above,
            breach_below,
            window,
            max_horizon,
        } => {
            use medic::forecast::Direction;
            let breach = match (breach_above, breach_below) {
                (Some(v), _) => Some((v, Direction::Above)),
                (None, Some(v)) => Some((v, Direction::Below)),
                (None, None) => None,
            };
            let opts = medic::detect::DetectOptions {
                horizon,
                window_seconds: window.as_secs_f64(),
                breach,
                max_horizon_seconds: max_horizon.as_secs_f64(),
            };
            medic::commands::detect_with(input.as_deref(), output.as_deref(), &opts)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
