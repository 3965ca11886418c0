//! The `medic` command line: flags in Prometheus style, one subcommand per job.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medic::app;
use medic::config::ConfigSource;
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
    /// The URL medic is reachable at, for links it sends out (an escalation's generatorURL)
    /// [default: from --web.listen-address]
    #[arg(long = "web.external-url", value_name = "URL", global = true)]
    external_url: Option<String>,
    /// Connections the server keeps open at once; more wait unaccepted
    #[arg(long = "web.max-connections", value_name = "N", global = true, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Child processes (command checks and exec steps together) running at once; more wait
    /// for a slot within their timeout
    #[arg(long = "process.max-children", value_name = "N", global = true, default_value_t = medic::resources::DEFAULT_MAX_CHILDREN, value_parser = parse_positive)]
    max_children: usize,
    /// Probe only this share of the checks: INDEX/COUNT, e.g. 0/2, or auto (replicas on one
    /// PostgreSQL store share the checks among the live ones) [default: all]
    #[arg(long = "cluster.shard", value_name = "INDEX/COUNT|auto", global = true)]
    cluster_shard: Option<String>,
    /// With --cluster.shard auto: how many replicas probe each check [default: 1]
    #[arg(long = "cluster.replication", value_name = "K", global = true)]
    cluster_replication: Option<u32>,
    /// Where this replica probes from (a zone, a site), shown to the other replicas
    #[arg(long = "cluster.location", value_name = "NAME", global = true)]
    cluster_location: Option<String>,
    /// State store URL [default: sqlite://data/medic.db]
    #[arg(long = "state.url", value_name = "URL", global = true)]
    state_url: Option<String>,
    /// Log level [default: info; warn for the one-shot commands, whose output is their answer]
    #[arg(long = "log.level", value_enum, global = true)]
    log_level: Option<LogLevel>,
    /// Log format (logs go to stderr)
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
        /// Run even while a pause or a maintenance window holds the chain
        #[arg(long)]
        force: bool,
        /// Print per-step totals from the state store instead of running anything
        #[arg(long)]
        stats: bool,
    },
    /// Pause automatic and manual healing on a running medic, for a while, scoped by matchers
    /// (or, with --list, show the active pauses)
    Pause {
        /// How long, e.g. 30m or 2h (at most 30d)
        #[arg(
            long = "for",
            value_name = "DURATION",
            required_unless_present = "list"
        )]
        duration: Option<String>,
        /// Why: shown to whoever wonders why nothing heals
        #[arg(long, required_unless_present = "list")]
        reason: Option<String>,
        /// Only runs whose labels (check, chain, alert labels) match, amtool syntax (repeatable;
        /// none = every run)
        #[arg(long = "matcher", value_name = "MATCHER")]
        matchers: Vec<String>,
        /// List the active pauses (id, ends, matchers, reason) instead of making one
        #[arg(long, conflicts_with_all = ["duration", "reason", "matchers"])]
        list: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// End a pause on a running medic
    Resume {
        /// The pause's id, as `medic pause` printed it
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
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

/// Where `medic pause` and `medic resume` find the running medic.
#[derive(clap::Args)]
struct RemoteArgs {
    /// The running medic's base URL [default: http:// and the listen address]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Present this bearer token [default: the config's web.webhook credential]
    #[arg(long = "bearer-token-file", value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,
}

impl From<RemoteArgs> for medic::commands::Remote {
    fn from(a: RemoteArgs) -> Self {
        medic::commands::Remote {
            url: a.url,
            bearer_token_file: a.bearer_token_file,
        }
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive whole number")),
    }
}

fn main() -> ExitCode {
    // A step's supervisor (see process_group::supervise): medic runs itself this way, so it
    // is dispatched before anything else, and `--help` never lists it.
    if let Some(code) = supervise_if_asked() {
        std::process::exit(code);
    }
    medic::process_group::use_supervisor();
    let cli = Cli::parse();
    set_up_process(&cli);
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
    let code = dispatch(cli, &runtime);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `medic __supervise PROGRAM ARGS...`: the exit code to end with, or `None` for any other
/// command line.
fn supervise_if_asked() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(medic::process_group::SUPERVISE_ARG)) {
        return None;
    }
    let Some(program) = args.next() else {
        return Some(2);
    };
    let rest: Vec<std::ffi::OsString> = args.collect();
    Some(medic::process_group::supervise(&program, &rest))
}

/// Logging, the open-files limit and the child-process cap, for every command.
fn set_up_process(cli: &Cli) {
    // A one-shot command prints its answer; its log says only what went wrong.
    let one_shot = !matches!(cli.command, None | Some(Command::Run));
    let level = cli.log_level.unwrap_or(if one_shot {
        LogLevel::Warn
    } else {
        LogLevel::Info
    });
    logging::init(level, cli.log_format);
    // Idle clients and probes share the fd table; the soft limit services start with (1,024
    // under systemd) is far below what the kernel allows.
    match medic::resources::raise_fd_limit() {
        Ok((old, new)) => tracing::debug!(
            old,
            new,
            "raised the soft open-files limit to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    medic::resources::set_max_children(cli.max_children);
}

/// `medic run`: until SIGINT or SIGTERM; 1 when it could not start or failed.
fn run(
    runtime: &tokio::runtime::Runtime,
    location: ConfigSource,
    overrides: Overrides,
    options: app::RunOptions,
) -> i32 {
    match runtime.block_on(app::run(location, overrides, options)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "medic failed");
            eprintln!("medic: {e:#}");
            1
        }
    }
}

/// Runs the command the line asks for; its exit code.
fn dispatch(cli: Cli, runtime: &tokio::runtime::Runtime) -> i32 {
    let overrides = Overrides {
        listen_address: cli.listen_address.clone(),
        state_url: cli.state_url.clone(),
        cluster_shard: cli.cluster_shard.clone(),
        cluster_replication: cli.cluster_replication,
        cluster_location: cli.cluster_location.clone(),
    };
    let location = || ConfigSource::resolve(cli.config_file.clone());
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let options = app::RunOptions {
                web_config: cli.web_config_file,
                max_connections: cli.max_connections as usize,
                external_url: cli.external_url,
            };
            run(runtime, location(), overrides, options)
        }
        Command::CheckConfig { file } => medic::commands::check_config(
            file.or(cli.config_file),
            cli.web_config_file.as_deref(),
            &overrides,
        ),
        Command::Probe { name } => {
            runtime.block_on(medic::commands::probe(&name, location(), &overrides))
        }
        Command::Recover {
            chain,
            labels,
            dry_run,
            verify_check,
            force,
            stats,
        } => runtime.block_on(medic::commands::recover(
            medic::commands::RecoverRequest {
                chain,
                labels,
                dry_run,
                verify_check,
                force,
                stats,
            },
            location(),
            &overrides,
        )),
        Command::Pause {
            list: true, remote, ..
        } => runtime.block_on(medic::commands::list_pauses(
            remote.into(),
            location(),
            &overrides,
        )),
        Command::Pause {
            duration,
            reason,
            matchers,
            remote,
            ..
        } => {
            // clap requires both without --list.
            let command = medic::commands::PauseCommand {
                duration: duration.unwrap_or_default(),
                reason: reason.unwrap_or_default(),
                matchers,
                remote: remote.into(),
            };
            runtime.block_on(medic::commands::pause(command, location(), &overrides))
        }
        Command::Resume { id, remote } => runtime.block_on(medic::commands::resume(
            &id,
            remote.into(),
            location(),
            &overrides,
        )),
        Command::Detect {
            input,
            output,
            horizon,
            breach_above,
            breach_below,
            window,
            max_horizon,
        } => {
            let breach = match (breach_above, breach_below) {
                (Some(v), _) => Some((v, medic::forecast::Direction::Above)),
                (None, Some(v)) => Some((v, medic::forecast::Direction::Below)),
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
    }
}
