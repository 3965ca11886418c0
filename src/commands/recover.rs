//! `medic recover CHAIN`: a chain run by hand, each step printed; `--stats` prints per-step
//! totals from the state store. A manual run passes the same gate as every other trigger
//! (`recovery::gate`): pauses and maintenance windows hold it unless `--force`; the limits and
//! the circuit are for automatic healing and do not.

use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::Instrument;

use crate::checks::Prober;
use crate::config::{ChainSpec, Config, ConfigSource, Overrides};
use crate::recovery::engine::{Engine, Resolved, RunControl, RunEnd, RunOutcome, StepReport};
use crate::recovery::gate::{self, Load, OperatorHolds, Origin};
use crate::recovery::trigger::Trigger;
use crate::recovery::verify::{DirectChecks, Verifier};
use crate::status::Status;
use crate::store::Store;
use crate::vocabulary::HoldReason;

/// What `medic recover` was asked to do.
pub struct RecoverRequest {
    pub chain: Option<String>,
    pub labels: Vec<String>,
    pub dry_run: bool,
    pub verify_check: Option<String>,
    /// Run even while a pause or a maintenance window holds the chain.
    pub force: bool,
    pub stats: bool,
}

/// `medic recover`: runs a chain by hand (or prints statistics). Exit 0 when the run
/// recovered (or a dry run / stats printed), 1 when it did not, 2 for usage and config errors.
pub async fn recover(
    request: RecoverRequest,
    location: ConfigSource,
    overrides: &Overrides,
) -> i32 {
    let config = match location.load(overrides) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("invalid config: {errors}");
            return 2;
        }
    };
    // --stats only reads: a store that is not where it looks is an error, never made empty.
    let opened = if request.stats {
        Store::open_existing(&config.store.url).await
    } else {
        Store::open(&config.store.url).await
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("medic recover: {}", config.redactor.redact(&e.to_string()));
            return 1;
        }
    };
    let code = if request.stats {
        print_stats(&store, request.chain.as_deref()).await
    } else {
        match prepare(&config, &request) {
            Ok((chain, trigger)) => run_by_hand(&config, &store, &chain, &trigger, &request).await,
            Err(code) => code,
        }
    };
    store.close().await;
    code
}

/// `--stats`: per-step totals over every finished attempt kept.
async fn print_stats(store: &Store, chain: Option<&str>) -> i32 {
    let steps = match store.step_stats().await {
        Ok(steps) => steps,
        Err(e) => {
            eprintln!("medic recover: {e}");
            return 1;
        }
    };
    println!(
        "{:<20} {:<20} {:>8} {:>9} {:>7} {:>11} {:>13}",
        "chain", "step", "attempts", "successes", "ratio", "mean_secs", "effectiveness"
    );
    let shown = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
    for s in steps.iter().filter(|s| chain.is_none_or(|c| c == s.chain)) {
        println!(
            "{:<20} {:<20} {:>8} {:>9} {:>7.3} {:>11} {:>13}",
            s.chain,
            s.step,
            s.attempts,
            s.successes,
            s.success_ratio,
            shown(s.mean_duration_seconds),
            shown(s.effectiveness),
        );
    }
    0
}

/// The chain and the manual trigger the request names; `Err` with the exit code (2) after
/// saying what is wrong.
fn prepare(config: &Config, request: &RecoverRequest) -> Result<(Arc<ChainSpec>, Trigger), i32> {
    let Some(name) = &request.chain else {
        eprintln!("medic recover: name a chain");
        return Err(2);
    };
    let Some(chain) = config.recovery.chains.get(name).cloned() else {
        let names: Vec<&String> = config.recovery.chains.keys().collect();
        eprintln!("no recovery chain named {name:?}; configured chains: {names:?}");
        return Err(2);
    };
    let mut labels = BTreeMap::new();
    for pair in &request.labels {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => {
                eprintln!("--label takes NAME=VALUE, got {pair:?}");
                return Err(2);
            }
        }
    }
    if let Some(check) = &request.verify_check {
        if !config.checks.iter().any(|c| &c.name == check) {
            eprintln!("no check named {check:?} to verify with");
            return Err(2);
        }
    }
    let now = crate::timefmt::now_ms();
    Ok((
        chain,
        Trigger::manual(name, labels, request.verify_check.as_deref(), now),
    ))
}

/// Asks the gate, then runs the chain and prints every step and the outcome.
async fn run_by_hand(
    config: &Config,
    store: &Store,
    chain: &ChainSpec,
    trigger: &Trigger,
    request: &RecoverRequest,
) -> i32 {
    if !passes_the_gate(config, store, trigger, request.force).await {
        return 1;
    }
    let engine = match engine(config, store) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("{e:#}");
            return 1;
        }
    };
    println!(
        "chain {}: {} run, target {}{}",
        chain.name,
        trigger.kind.as_str(),
        trigger.target,
        if request.dry_run {
            " (dry run: nothing runs)"
        } else {
            ""
        }
    );
    let end = run_until_done(&engine, store, chain, trigger, config, request.dry_run).await;
    if matches!(end, RunEnd::Finished { .. }) && !request.dry_run {
        if let Some(id) = own_run_id(store, &chain.name, &engine.owner).await {
            println!("run {id} (GET /api/v1/runs/{id})");
        }
    }
    print_end(end, request.dry_run)
}

/// The one gate, as every trigger meets it, for a manual origin: a pause or an open
/// maintenance window holds the run unless `force`; the limits and the circuit never do.
/// Unknown pauses (the store cannot say) are not "no pause": the run waits for the store.
async fn passes_the_gate(config: &Config, store: &Store, trigger: &Trigger, force: bool) -> bool {
    let now = crate::timefmt::now_ms();
    let pauses = match store.active_pauses(now).await {
        Ok(pauses) => pauses,
        Err(e) => {
            println!("outcome: not run: the pauses cannot be read ({e})");
            return false;
        }
    };
    let labels = trigger.hold_labels();
    let mut operator = OperatorHolds::of(&pauses, &config.recovery.maintenance, &labels, now);
    let roots = dependency_roots(config, trigger).await;
    operator.blocked = !roots.is_empty();
    let held = gate::hold_reason(
        &config.recovery.limits,
        &trigger.chain,
        operator,
        Load::default(),
        &[],
        Origin::Manual { force: false },
        now,
    );
    if let Some(reason) = held {
        let why = match reason {
            HoldReason::Dependency => Some(format!("held: blocked by {}", roots.join(", "))),
            HoldReason::Paused => pauses
                .iter()
                .find(|p| p.holds(&labels, now))
                .map(|p| format!("held by pause {} ({})", p.id, p.reason)),
            _ => config
                .recovery
                .maintenance
                .iter()
                .find(|w| w.holds(&labels, now))
                .map(|w| format!("held by maintenance window {:?}", w.name)),
        }
        .unwrap_or_else(|| format!("held ({})", reason.as_str()));
        if !force {
            println!("outcome: not run: {why} (--force runs it anyway)");
            return false;
        }
        println!("{why}; --force: running anyway");
    }
    println!("limits and the circuit breaker do not hold manual runs");
    true
}

/// What blocks a manual run verified with a check that has `depends_on`: its dependencies
/// are probed directly (raw status, as `--verify-check` is), and the failing ones that nothing
/// failing blocks are the roots.
async fn dependency_roots(config: &Config, trigger: &Trigger) -> Vec<String> {
    let Some(check) = trigger.dependent_check() else {
        return Vec::new();
    };
    let graph = config.dependencies();
    let dependencies = graph.dependencies_of(check);
    if dependencies.is_empty() {
        return Vec::new();
    }
    let Ok(prober) = Prober::new() else {
        return Vec::new();
    };
    let mut failing = std::collections::BTreeSet::new();
    for spec in config
        .checks
        .iter()
        .filter(|c| dependencies.contains(&c.name))
    {
        let outcome = prober.probe(spec, &config.redactor).await;
        if spec.enabled && matches!(outcome.status, Status::Critical | Status::Unknown) {
            failing.insert(spec.name.clone());
        }
    }
    graph.roots(check, |c| failing.contains(c))
}

/// The engine of a manual run: steps' actions (and `alert` steps' Alertmanager), checks
/// probed directly to verify, the run recorded under this process's own owner name.
fn engine(config: &Config, store: &Store) -> anyhow::Result<Engine> {
    use anyhow::Context;
    let prober = Arc::new(Prober::new().context("cannot set up probing")?);
    let actions =
        crate::recovery::action::Actions::new().context("cannot set up recovery actions")?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let owner = crate::app::owner_name(&format!("recover-{}", std::process::id()));
    // An alert step posts from here too; the escalation goes into the store, where a running
    // medic keeps it alive and resolves it.
    let actions = if config.alertmanager.is_some() {
        // The receiver keeps the last value after its sender is gone.
        let (_, store_rx) = tokio::sync::watch::channel(Some(store.clone()));
        let am = crate::am_api::Alertmanager::new(
            store_rx,
            metrics.clone(),
            owner.clone(),
            crate::am_api::default_external_url(&config.web.listen_address, false),
            None,
        );
        am.apply(config)
            .context("cannot set up the Alertmanager client")?;
        actions.with_alertmanager(am)
    } else {
        actions
    };
    let checks = config
        .checks
        .iter()
        .map(|c| (c.name.clone(), Arc::new(c.clone())))
        .collect();
    Ok(Engine {
        actions,
        metrics,
        verifier: Verifier::Direct(DirectChecks {
            prober,
            checks,
            redactor: config.redactor.clone(),
        }),
        owner,
        // A manual run knows of no blocked dependents: it runs in a process of its own.
        blocked: tokio::sync::watch::channel(Arc::default()).1,
        // Nor is it a member of any cluster: an operator asked for it.
        cluster: None,
    })
}

/// Runs the chain, printing each step as it is decided; Ctrl-C cancels the running step
/// (its process group is killed) and records it.
async fn run_until_done(
    engine: &Engine,
    store: &Store,
    chain: &ChainSpec,
    trigger: &Trigger,
    config: &Config,
    dry_run: bool,
) -> RunEnd {
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let ctrl_c = tokio::spawn(
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = cancel_tx.send(true);
            }
        }
        .instrument(tracing::info_span!("ctrl_c")),
    );
    let redactor = config.redactor.clone();
    let mut report = |r: StepReport| print_step(&redactor, r);
    let current = std::sync::Mutex::new(String::new());
    let resolved = Resolved::default();
    let mut control = RunControl {
        dry_run,
        resolved: &resolved,
        current_step: &current,
        cancel,
        // Manual runs ignore the limits and the circuit (the gate above said so).
        limits: Default::default(),
    };
    let end = engine
        .run(store, chain, trigger, &mut control, &mut report)
        .await;
    ctrl_c.abort();
    end
}

/// One step, as `medic recover` prints it, with the tail of what it said under it.
fn print_step(redactor: &crate::config::Redactor, report: StepReport) {
    match report {
        StepReport::Skipped { step, reason } => println!("  {step}: skipped ({})", reason.as_str()),
        StepReport::WouldRun { step, action } => {
            println!("  {step}: would run {}", redactor.redact(&action))
        }
        StepReport::Ran {
            step,
            action,
            result,
            message,
            seconds,
            output,
        } => {
            println!(
                "  {step}: ran {} -> {} ({}) in {seconds:.3}s",
                redactor.redact(&action),
                result.as_str(),
                redactor.redact(&message)
            );
            // The evidence: what the step said, as stored (its last 4 KiB).
            for line in redactor.redact(&output).lines() {
                println!("    | {line}");
            }
        }
    }
}

/// The run's end, printed; the exit code (0 only when it recovered, or for a dry run).
fn print_end(end: RunEnd, dry_run: bool) -> i32 {
    match end {
        RunEnd::Finished { .. } if dry_run => {
            println!("dry run: nothing was run or recorded");
            0
        }
        RunEnd::Finished { outcome } => {
            println!("outcome: {}", outcome.as_str());
            i32::from(outcome != RunOutcome::Recovered)
        }
        RunEnd::NothingToRun { .. } => {
            println!("outcome: nothing to run (every step is in cooldown or at max_attempts)");
            1
        }
        RunEnd::AlreadyRunning => {
            println!("outcome: a run for this target is already in progress");
            1
        }
        RunEnd::NoStore => {
            println!("outcome: not run: the state store is unavailable");
            1
        }
        RunEnd::NotOwned => {
            println!("outcome: not run: another replica owns it");
            1
        }
        RunEnd::Held(reason) => {
            println!("outcome: not run: held ({})", reason.as_str());
            1
        }
    }
}

/// The id of the newest run of `chain` this process recorded: the owner name is this process's
/// own, so a medic running on the same store at the same time is not mistaken for it.
async fn own_run_id(store: &Store, chain: &str, owner: &str) -> Option<String> {
    let runs = store.runs(Some(chain), 20).await.ok()?;
    runs.into_iter().find(|r| r.owner == owner).map(|r| r.id)
}
