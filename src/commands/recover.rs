//! `medic recover CHAIN`: a chain run by hand, each step printed; `--stats` prints per-step
//! totals from the state store.

use crate::checks::Prober;
use crate::config::{ConfigSource, Overrides};

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
    use crate::recovery::engine::{Engine, Resolved, RunControl, RunEnd, RunOutcome, StepReport};
    use crate::recovery::trigger::Trigger;
    use crate::recovery::verify::{DirectChecks, Verifier};

    let config = match location.load(overrides) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("invalid config: {errors}");
            return 2;
        }
    };
    // --stats only reads: a store that is not where it looks is an error, never made empty.
    let opened = if request.stats {
        crate::store::Store::open_existing(&config.store.url).await
    } else {
        crate::store::Store::open(&config.store.url).await
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("medic recover: {}", config.redactor.redact(&e.to_string()));
            return 1;
        }
    };
    if request.stats {
        return match store.step_stats().await {
            Ok(steps) => {
                let steps: Vec<_> = steps
                    .into_iter()
                    .filter(|s| request.chain.as_ref().is_none_or(|c| *c == s.chain))
                    .collect();
                println!(
                    "{:<20} {:<20} {:>8} {:>9} {:>7} {:>11} {:>13}",
                    "chain", "step", "attempts", "successes", "ratio", "mean_secs", "effectiveness"
                );
                for s in steps {
                    println!(
                        "{:<20} {:<20} {:>8} {:>9} {:>7.3} {:>11} {:>13}",
                        s.chain,
                        s.step,
                        s.attempts,
                        s.successes,
                        s.success_ratio,
                        s.mean_duration_seconds
                            .map(|d| format!("{d:.3}"))
                            .unwrap_or_else(|| "-".into()),
                        s.effectiveness
                            .map(|e| format!("{e:.3}"))
                            .unwrap_or_else(|| "-".into()),
                    );
                }
                0
            }
            Err(e) => {
                eprintln!("medic recover: {e}");
                1
            }
        };
    }
    let Some(chain_name) = request.chain else {
        eprintln!("medic recover: name a chain");
        return 2;
    };
    let Some(chain) = config.recovery.chains.get(&chain_name).cloned() else {
        let names: Vec<&String> = config.recovery.chains.keys().collect();
        eprintln!("no recovery chain named {chain_name:?}; configured chains: {names:?}");
        return 2;
    };
    let mut labels = std::collections::BTreeMap::new();
    for pair in &request.labels {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => {
                eprintln!("--label takes NAME=VALUE, got {pair:?}");
                return 2;
            }
        }
    }
    if let Some(check) = &request.verify_check {
        if !config.checks.iter().any(|c| &c.name == check) {
            eprintln!("no check named {check:?} to verify with");
            return 2;
        }
    }
    let trigger = Trigger::manual(
        &chain_name,
        labels,
        request.verify_check.as_deref(),
        crate::timefmt::now_ms(),
    );
    // Manual runs obey what operators made (pauses, maintenance windows) unless forced; the
    // automatic brakes (limits, the circuit) are for automatic healing and do not apply.
    if let Some(held) = manual_hold(&config, &store, &trigger).await {
        if request.force {
            println!("{held}; --force: running anyway");
        } else {
            println!("outcome: not run: {held} (--force runs it anyway)");
            store.close().await;
            return 1;
        }
    }
    println!("limits and the circuit breaker do not hold manual runs");
    let prober = match Prober::new() {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            eprintln!("cannot set up probing: {e:#}");
            return 1;
        }
    };
    let actions = match crate::recovery::action::Actions::new() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot set up recovery actions: {e:#}");
            return 1;
        }
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
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
        if let Err(e) = am.apply(&config) {
            eprintln!("cannot set up the Alertmanager client: {e:#}");
            return 1;
        }
        actions.with_alertmanager(am)
    } else {
        actions
    };
    let engine = Engine {
        actions,
        metrics,
        verifier: Verifier::Direct(DirectChecks {
            prober,
            checks: config
                .checks
                .iter()
                .map(|c| (c.name.clone(), c.clone()))
                .collect(),
            redactor: config.redactor.clone(),
        }),
        owner,
    };
    let owner = engine.owner.clone();
    println!(
        "chain {chain_name}: {} run, target {}{}",
        trigger.kind.as_str(),
        trigger.target,
        if request.dry_run {
            " (dry run: nothing runs)"
        } else {
            ""
        }
    );
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    // Ctrl-C cancels the running step (its process group is killed) and records it.
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(true);
        }
    });
    let redactor = config.redactor.clone();
    let mut report = |r: StepReport| match r {
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
    };
    let current = std::sync::Mutex::new(String::new());
    let resolved = Resolved::default();
    let mut control = RunControl {
        dry_run: request.dry_run,
        resolved: &resolved,
        current_step: &current,
        cancel,
        // Manual runs ignore the limits and the circuit (they obey pauses and maintenance).
        limits: Default::default(),
    };
    let end = engine
        .run(&store, &chain, &trigger, &mut control, &mut report)
        .await;
    ctrl_c.abort();
    if matches!(end, RunEnd::Finished { .. }) && !request.dry_run {
        if let Some(id) = own_run_id(&store, &chain_name, &owner).await {
            println!("run {id} (GET /api/v1/runs/{id})");
        }
    }
    store.close().await;
    match end {
        RunEnd::Finished { outcome } if request.dry_run => {
            let _ = outcome;
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
        RunEnd::Held(reason) => {
            println!("outcome: not run: held ({})", reason.as_str());
            1
        }
    }
}

/// What operator-made hold keeps a manual run back, said for people.
async fn manual_hold(
    config: &crate::config::Config,
    store: &crate::store::Store,
    trigger: &crate::recovery::trigger::Trigger,
) -> Option<String> {
    let now = crate::timefmt::now_ms();
    let labels = trigger.hold_labels();
    match store.active_pauses(now).await {
        Ok(pauses) => {
            if let Some(p) = pauses.iter().find(|p| p.holds(&labels, now)) {
                return Some(format!("held by pause {} ({})", p.id, p.reason));
            }
        }
        // Unknown is not "not paused": a manual run waits for the store like any other.
        Err(e) => return Some(format!("the pauses cannot be read ({e})")),
    }
    config
        .recovery
        .maintenance
        .iter()
        .find(|w| w.holds(&labels, now))
        .map(|w| format!("held by maintenance window {:?}", w.name))
}

/// The id of the newest run of `chain` this process recorded: the owner name is this process's
/// own, so a medic running on the same store at the same time is not mistaken for it.
async fn own_run_id(store: &crate::store::Store, chain: &str, owner: &str) -> Option<String> {
    let runs = store.runs(Some(chain), 20).await.ok()?;
    runs.into_iter().find(|r| r.owner == owner).map(|r| r.id)
}
