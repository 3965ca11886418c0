//! The only IO of recovery: running a step's action. `exec` runs a program (no shell, its own
//! process group, killed with its children at the timeout); `http` makes a request (2xx is
//! success); `notify` POSTs a JSON account of the run to people.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::am_api::escalation::skip_words;
use crate::config::{known_secrets, redact_url, ActionSpec, Redactor, StepSpec};
use crate::process_group::{self, Job, Keep, Leftover, OnSpawn, RunError};
use crate::template::{Escape, TemplateError, Values};
use crate::timefmt::rfc3339_ms;

pub use crate::vocabulary::AttemptResult;

/// What an action did.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    pub result: AttemptResult,
    pub message: String,
    pub exit_code: Option<i64>,
    /// The tail of the program's output or the response body.
    pub output: String,
}

impl ActionOutcome {
    /// A failed attempt that says why and ran nothing (or nothing that reported more).
    pub fn failure(message: impl Into<String>) -> Self {
        ActionOutcome {
            result: AttemptResult::Failure,
            message: message.into(),
            exit_code: None,
            output: String::new(),
        }
    }
}

pub use crate::vocabulary::{SkippedStep, TriedStep};

/// Everything an action may use besides its own spec.
pub struct ActionContext<'a> {
    pub values: &'a Values,
    pub trigger: &'a str,
    pub target: &'a str,
    /// The check's last message or the alert's summary.
    pub message: &'a str,
    /// What was tried for this incident, in this run and the ones before it.
    pub tried: &'a [TriedStep],
    /// What this run skipped, and until when.
    pub skipped: &'a [SkippedStep],
    /// Checks the run's check blocks now (it is their root): not healed, not paged.
    pub blocked_dependents: &'a [String],
    /// The run's fencing token, when the store issued one (not in dry runs).
    pub fencing_token: Option<i64>,
    /// The run, for an `alert` step's `run_id` and link.
    pub run_id: &'a str,
    /// Whose counters apply (`check:NAME`, `alert:FINGERPRINT`): an escalation resolves when
    /// this subject is healthy again.
    pub subject: &'a str,
}

/// The environment variable an exec step finds its run's id in.
pub const RUN_ID_ENV: &str = "MEDIC_RUN_ID";

/// The environment variable an exec step finds its run's fencing token in.
pub const FENCING_ENV: &str = "MEDIC_FENCING_TOKEN";
/// The header http and notify steps send their run's fencing token in.
pub const FENCING_HEADER: &str = "X-Medic-Fencing-Token";

/// Adds the fencing token header, replacing any configured header of that name: a target that
/// refuses stale actors must see the token medic issued, not a template's.
fn with_fencing_header(
    mut headers: Vec<(String, String)>,
    token: Option<i64>,
) -> Vec<(String, String)> {
    if let Some(token) = token {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(FENCING_HEADER));
        headers.push((FENCING_HEADER.to_string(), token.to_string()));
    }
    headers
}

/// An action with its templates rendered: what will run.
#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Exec {
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        /// What it starts outlives it.
        detach: bool,
    },
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    Notify {
        url: String,
        headers: Vec<(String, String)>,
        body: serde_json::Value,
    },
    /// `MedicEscalation`, for the configured Alertmanager.
    Alert(crate::am_api::Escalation),
}

/// Output kept per attempt.
const OUTPUT_TAIL: usize = 4096;

impl Rendered {
    /// For people (dry runs, logs, `medic recover`): header values and bodies are never shown,
    /// a URL's password and query values are `<secret>`, and so is any secret of the config
    /// in a program, an argument or a URL (an `${ENV}` value, a file's contents).
    pub fn shown(&self, secrets: &Redactor) -> String {
        let text = match self {
            Rendered::Exec { program, args, .. } => {
                let mut text = format!("exec {program:?}");
                for a in args {
                    text.push_str(&format!(" {a:?}"));
                }
                text
            }
            // Whole secrets first: a URL that is one (a webhook's) goes before it is cut up.
            Rendered::Http { method, url, .. } => {
                format!("http {method} {}", redact_url(&secrets.redact(url)))
            }
            Rendered::Notify { url, .. } => {
                format!("notify POST {}", redact_url(&secrets.redact(url)))
            }
            Rendered::Alert(e) => format!(
                "alert {} step {} to Alertmanager",
                crate::am_api::escalation::ALERTNAME,
                e.step
            ),
        };
        secrets.redact(&text)
    }
}

impl fmt::Display for Rendered {
    /// [`Rendered::shown`] with every secret medic knows of.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown(&known_secrets()))
    }
}

/// Renders a step's templates for this trigger; a value the trigger lacks fails the step.
pub fn render(
    step: &StepSpec,
    chain: &str,
    ctx: &ActionContext<'_>,
) -> Result<Rendered, TemplateError> {
    let v = ctx.values;
    Ok(match &step.action {
        ActionSpec::Exec {
            program,
            args,
            detach,
        } => Rendered::Exec {
            program: program.render(v, Escape::None)?,
            args: args
                .iter()
                .map(|a| a.render(v, Escape::None))
                .collect::<Result<_, _>>()?,
            env: exec_env(step, chain, ctx),
            detach: *detach,
        },
        ActionSpec::Http {
            method,
            url,
            headers,
            body,
        } => Rendered::Http {
            method: method.clone(),
            url: url.render(v, Escape::Url)?,
            headers: with_fencing_header(render_pairs(headers, v)?, ctx.fencing_token),
            body: body
                .as_ref()
                .map(|b| b.render(v, Escape::Json))
                .transpose()?,
        },
        ActionSpec::Notify { url, headers } => Rendered::Notify {
            url: url.render(v, Escape::Url)?,
            headers: with_fencing_header(render_pairs(headers, v)?, ctx.fencing_token),
            body: notify_body(step, chain, ctx),
        },
        ActionSpec::Alert {
            labels,
            annotations,
        } => render_alert(step, chain, ctx, labels, annotations)?,
    })
}

type Pairs = [(String, crate::template::Template)];

/// Header (or label) values rendered as they are: they are no shell, URL or JSON.
fn render_pairs(list: &Pairs, v: &Values) -> Result<Vec<(String, String)>, TemplateError> {
    list.iter()
        .map(|(name, t)| Ok((name.clone(), t.render(v, Escape::None)?)))
        .collect()
}

/// What an exec step learns from its environment: values reach a program there, never by
/// being spliced into a command line.
fn exec_env(step: &StepSpec, chain: &str, ctx: &ActionContext<'_>) -> Vec<(String, String)> {
    let v = ctx.values;
    let mut env = vec![
        ("MEDIC_CHAIN".to_string(), chain.to_string()),
        ("MEDIC_STEP".to_string(), step.name.clone()),
        ("MEDIC_TRIGGER".to_string(), ctx.trigger.to_string()),
        ("MEDIC_TARGET".to_string(), ctx.target.to_string()),
        (RUN_ID_ENV.to_string(), ctx.run_id.to_string()),
    ];
    if let Some(check) = &v.check {
        env.push(("MEDIC_CHECK".to_string(), check.clone()));
    }
    for (name, value) in &v.labels {
        env.push((format!("MEDIC_LABEL_{}", env_name(name)), value.clone()));
    }
    if let Some(token) = ctx.fencing_token {
        env.push((FENCING_ENV.to_string(), token.to_string()));
    }
    env
}

/// A notify step's JSON: a human line (`text`, for Slack-style hooks) and the incident's
/// facts: every step tried since it began (this run and the ones before) and what this run
/// skipped.
fn notify_body(step: &StepSpec, chain: &str, ctx: &ActionContext<'_>) -> serde_json::Value {
    let v = ctx.values;
    let subject = v.check.clone().unwrap_or_else(|| ctx.target.to_string());
    let tried: Vec<String> = ctx
        .tried
        .iter()
        .map(|t| format!("{} ({} at {})", t.step, t.result, rfc3339_ms(t.at_ms)))
        .collect();
    let skipped: Vec<String> = ctx
        .skipped
        .iter()
        .map(|s| format!("{} ({})", s.step, skip_words(s)))
        .collect();
    let mut text = format!(
        "medic: chain {chain} could not fix {subject}: {}. Tried: {}.",
        ctx.message,
        if tried.is_empty() {
            "nothing".to_string()
        } else {
            tried.join(", ")
        }
    );
    if !skipped.is_empty() {
        text.push_str(&format!(" Skipped: {}.", skipped.join(", ")));
    }
    if !ctx.blocked_dependents.is_empty() {
        text.push_str(&format!(
            " Blocked by it: {}.",
            ctx.blocked_dependents.join(", ")
        ));
    }
    let tried: Vec<serde_json::Value> = ctx
        .tried
        .iter()
        .map(|t| {
            serde_json::json!({
                "step": t.step,
                "result": t.result.as_str(),
                "message": t.message,
                "at": rfc3339_ms(t.at_ms),
            })
        })
        .collect();
    let skipped: Vec<serde_json::Value> = ctx
        .skipped
        .iter()
        .map(|s| {
            serde_json::json!({
                "step": s.step,
                "reason": s.reason.as_str(),
                "until": s.until_ms.map(rfc3339_ms),
            })
        })
        .collect();
    serde_json::json!({
        "run_id": ctx.run_id,
        "text": text,
        "chain": chain,
        "step": step.name,
        "trigger": ctx.trigger,
        "target": ctx.target,
        "check": v.check,
        "labels": v.labels,
        "annotations": v.annotations,
        "message": ctx.message,
        "tried": tried,
        "skipped": skipped,
        "blocked_dependents": ctx.blocked_dependents,
    })
}

/// An `alert` step: an escalation into Alertmanager whose description says what was tried.
fn render_alert(
    step: &StepSpec,
    chain: &str,
    ctx: &ActionContext<'_>,
    labels: &Pairs,
    annotations: &Pairs,
) -> Result<Rendered, TemplateError> {
    let v = ctx.values;
    let step_labels = render_pairs(labels, v)?;
    let mut rendered: BTreeMap<String, String> =
        render_pairs(annotations, v)?.into_iter().collect();
    let subject = v.check.clone().unwrap_or_else(|| ctx.subject.to_string());
    let mut tried = crate::am_api::escalation::description(
        chain,
        &subject,
        ctx.message,
        ctx.tried,
        ctx.skipped,
    );
    if !ctx.blocked_dependents.is_empty() {
        tried.push_str(&format!(
            "\nBlocked by it (their runs wait, their alerts are suppressed): {}",
            ctx.blocked_dependents.join(", ")
        ));
    }
    let description = match rendered.remove("description") {
        Some(own) => format!("{own}\n\n{tried}"),
        None => tried,
    };
    rendered.insert("description".to_string(), description);
    rendered.insert("run_id".to_string(), ctx.run_id.to_string());
    Ok(Rendered::Alert(crate::am_api::Escalation {
        chain: chain.to_string(),
        step: step.name.clone(),
        subject: ctx.subject.to_string(),
        run_id: ctx.run_id.to_string(),
        labels: crate::am_api::escalation::labels(chain, &step.name, ctx.trigger, v, &step_labels),
        annotations: rendered,
    }))
}

/// `MEDIC_LABEL_<NAME>`: upper-cased, anything but letters and digits as `_`.
fn env_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs rendered actions; holds the HTTP client they share.
pub struct Actions {
    client: reqwest::Client,
    /// Where `alert` steps post, when this process talks to an Alertmanager.
    alertmanager: Option<std::sync::Arc<crate::am_api::Alertmanager>>,
}

impl Actions {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Actions {
            client: reqwest::Client::builder()
                .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .redirect(reqwest::redirect::Policy::limited(5))
                .build()?,
            alertmanager: None,
        })
    }

    /// `alert` steps post through this Alertmanager link.
    pub fn with_alertmanager(mut self, am: std::sync::Arc<crate::am_api::Alertmanager>) -> Self {
        self.alertmanager = Some(am);
        self
    }

    /// The Alertmanager link, for the run's silences and the manager's resolutions.
    pub fn alertmanager(&self) -> Option<&std::sync::Arc<crate::am_api::Alertmanager>> {
        self.alertmanager.as_ref()
    }

    /// Runs the action, bounded by `timeout`. An `exec` action tells `on_spawn` its process
    /// group as soon as it runs (for the attempt's record); other actions drop it. What it says
    /// (a library's error quoting the URL, a program echoing its arguments) is scrubbed of
    /// secrets before anyone stores or logs it.
    pub async fn run(
        &self,
        rendered: &Rendered,
        timeout: Duration,
        on_spawn: Option<OnSpawn>,
    ) -> ActionOutcome {
        let mut outcome = self.run_unscrubbed(rendered, timeout, on_spawn).await;
        let secrets = known_secrets();
        if !secrets.is_empty() {
            outcome.message = secrets.redact(&outcome.message);
            outcome.output = secrets.redact(&outcome.output);
        }
        if let Rendered::Http { url, .. } | Rendered::Notify { url, .. } = rendered {
            let shown = redact_url(url);
            if shown != *url {
                outcome.message = outcome.message.replace(url.as_str(), &shown);
            }
        }
        outcome
    }

    async fn run_unscrubbed(
        &self,
        rendered: &Rendered,
        timeout: Duration,
        on_spawn: Option<OnSpawn>,
    ) -> ActionOutcome {
        match rendered {
            Rendered::Exec {
                program,
                args,
                env,
                detach,
            } => exec(program, args, env, *detach, timeout, on_spawn).await,
            Rendered::Http {
                method,
                url,
                headers,
                body,
            } => {
                let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
                    return ActionOutcome::failure(format!("invalid method {method}"));
                };
                self.request(method, url, headers, body.clone(), timeout)
                    .await
            }
            Rendered::Alert(escalation) => {
                let Some(am) = &self.alertmanager else {
                    return ActionOutcome::failure("alertmanager: is not configured");
                };
                match tokio::time::timeout(timeout, am.escalate(escalation)).await {
                    Ok(Ok(message)) => ActionOutcome {
                        result: AttemptResult::Success,
                        message,
                        exit_code: None,
                        output: String::new(),
                    },
                    Ok(Err(message)) => ActionOutcome::failure(message),
                    Err(_) => ActionOutcome {
                        result: AttemptResult::Timeout,
                        message: format!(
                            "Alertmanager did not answer within {}s",
                            timeout.as_secs_f64()
                        ),
                        exit_code: None,
                        output: String::new(),
                    },
                }
            }
            Rendered::Notify { url, headers, body } => {
                let mut headers = headers.clone();
                headers.push(("Content-Type".into(), "application/json".into()));
                self.request(
                    reqwest::Method::POST,
                    url,
                    &headers,
                    Some(body.to_string()),
                    timeout,
                )
                .await
            }
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<String>,
        timeout: Duration,
    ) -> ActionOutcome {
        let mut request = self.client.request(method, url).timeout(timeout);
        for (name, value) in headers {
            // A rendered value with a line break would smuggle in another header.
            let Ok(value) = reqwest::header::HeaderValue::from_str(value) else {
                return ActionOutcome::failure(format!("header {name} has an invalid value"));
            };
            request = request.header(name.as_str(), value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        match request.send().await {
            Ok(response) => {
                let code = response.status();
                let text = response.text().await.unwrap_or_default();
                let output = tail(&text, OUTPUT_TAIL);
                if code.is_success() {
                    ActionOutcome {
                        result: AttemptResult::Success,
                        message: format!("HTTP {}", code.as_u16()),
                        exit_code: None,
                        output,
                    }
                } else {
                    ActionOutcome {
                        result: AttemptResult::Failure,
                        message: format!("HTTP {}", code.as_u16()),
                        exit_code: None,
                        output,
                    }
                }
            }
            Err(e) if e.is_timeout() => ActionOutcome {
                result: AttemptResult::Timeout,
                message: format!("no answer within {}s", timeout.as_secs_f64()),
                exit_code: None,
                output: String::new(),
            },
            Err(e) => {
                ActionOutcome::failure(format!("request failed: {}", crate::checks::root_cause(&e)))
            }
        }
    }
}

async fn exec(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    detach: bool,
    timeout: Duration,
    on_spawn: Option<OnSpawn>,
) -> ActionOutcome {
    let job = Job {
        program,
        args,
        env,
        timeout,
        keep: Keep::Tail(OUTPUT_TAIL),
        on_spawn,
        detach,
        supervised: true,
    };
    match process_group::run(job).await {
        Err(e @ RunError::Timeout(_)) => ActionOutcome {
            result: AttemptResult::Timeout,
            message: e.to_string(),
            exit_code: None,
            output: String::new(),
        },
        Err(e) => ActionOutcome::failure(e.to_string()),
        Ok(exited) => {
            let output = join_output(&exited.stdout, &exited.stderr, OUTPUT_TAIL);
            let code = exited.status.code();
            let mut message = match code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".into(),
            };
            if let Some(left) = leftovers_words(&exited.leftovers, exited.detached) {
                message.push_str("; ");
                message.push_str(&left);
            }
            ActionOutcome {
                result: if exited.status.success() {
                    AttemptResult::Success
                } else {
                    AttemptResult::Failure
                },
                message,
                exit_code: code.map(i64::from),
                output,
            }
        }
    }
}

/// What a step left running, for its attempt's message: "killed 1 leftover process: python3",
/// or, detached, "left 1 process running (detach): python3 (pid 4242)" — the pids are the
/// attempt's record of them.
fn leftovers_words(leftovers: &[Leftover], detached: bool) -> Option<String> {
    if leftovers.is_empty() {
        return None;
    }
    let n = leftovers.len();
    let plural = if n == 1 { "process" } else { "processes" };
    Some(if detached {
        let list: Vec<String> = leftovers
            .iter()
            .map(|l| format!("{} (pid {})", l.name, l.pid))
            .collect();
        format!("left {n} {plural} running (detach): {}", list.join(", "))
    } else {
        let names: Vec<&str> = leftovers.iter().map(|l| l.name.as_str()).collect();
        format!("killed {n} leftover {plural}: {}", names.join(", "))
    })
}

/// stdout's tail then stderr's, in at most `max` bytes. Each gets half the room, and one
/// that needs less leaves the rest to the other: a large stderr never pushes out the last line
/// of stdout, where a script says what it did.
fn join_output(stdout: &str, stderr: &str, max: usize) -> String {
    let half = max / 2;
    let out_room = if stderr.len() < half {
        max - stderr.len()
    } else {
        half
    };
    let mut joined = tail(stdout, out_room);
    let err_room = max - joined.len();
    joined.push_str(&tail(stderr, err_room));
    joined
}

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// Labels as the JSON object the store keeps with a run.
pub fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("service"), "SERVICE");
        assert_eq!(env_name("k8s.pod-name"), "K8S_POD_NAME");
    }

    #[test]
    fn a_large_stderr_keeps_the_last_line_of_stdout() {
        let stdout = format!("{}\nrestarted web\n", "x".repeat(3000));
        let stderr = format!("{}\nlast warning\n", "e".repeat(10_000));
        let joined = join_output(&stdout, &stderr, 4096);
        assert!(joined.len() <= 4096, "{}", joined.len());
        assert!(joined.contains("restarted web\n"), "{joined}");
        assert!(joined.ends_with("last warning\n"), "{joined}");
        // Small outputs are kept whole, stdout first.
        assert_eq!(join_output("out\n", "err\n", 4096), "out\nerr\n");
        // Either one may use the room the other leaves.
        let big = "o".repeat(5000);
        assert_eq!(join_output(&big, "err\n", 4096).len(), 4096);
        assert!(join_output(&big, "err\n", 4096).ends_with("oerr\n"));
        assert_eq!(join_output("", &big, 4096).len(), 4096);
    }

    #[test]
    fn leftovers_are_named_in_the_message() {
        let python = Leftover {
            pid: 4242,
            name: "python3".into(),
        };
        let sleep = Leftover {
            pid: 4243,
            name: "sleep".into(),
        };
        assert_eq!(leftovers_words(&[], false), None);
        assert_eq!(
            leftovers_words(std::slice::from_ref(&python), false).as_deref(),
            Some("killed 1 leftover process: python3")
        );
        assert_eq!(
            leftovers_words(&[python.clone(), sleep], false).as_deref(),
            Some("killed 2 leftover processes: python3, sleep")
        );
        assert_eq!(
            leftovers_words(&[python], true).as_deref(),
            Some("left 1 process running (detach): python3 (pid 4242)")
        );
    }

    #[test]
    fn shown_actions_hide_secrets_in_args_and_urls() {
        let secrets = Redactor::new([
            "s3cr3t\"arg".to_string(),
            "https://hooks.example/s3cr3t-path".to_string(),
        ]);
        let exec = Rendered::Exec {
            program: "/bin/deploy".into(),
            args: vec!["--token=s3cr3t\"arg".into(), "plain".into()],
            env: vec![],
            detach: false,
        };
        assert_eq!(
            exec.shown(&secrets),
            r#"exec "/bin/deploy" "--token=<secret>" "plain""#
        );
        let notify = Rendered::Notify {
            url: "https://hooks.example/s3cr3t-path".into(),
            headers: vec![("Authorization".into(), "Bearer s3cr3t-header".into())],
            body: serde_json::json!({}),
        };
        assert_eq!(notify.shown(&secrets), "notify POST <secret>");
        let http = Rendered::Http {
            method: "POST".into(),
            url: "https://u:s3cr3t-pw@h/x?sig=s3cr3t-sig".into(),
            headers: vec![],
            body: None,
        };
        assert_eq!(
            http.shown(&secrets),
            "http POST https://u:<secret>@h/x?sig=<secret>"
        );
    }

    #[test]
    fn the_fencing_token_replaces_a_configured_header_of_its_name() {
        let configured = vec![
            ("x-medic-fencing-token".to_string(), "999".to_string()),
            ("Authorization".to_string(), "Bearer t".to_string()),
        ];
        assert_eq!(
            with_fencing_header(configured.clone(), Some(7)),
            vec![
                ("Authorization".to_string(), "Bearer t".to_string()),
                (FENCING_HEADER.to_string(), "7".to_string()),
            ]
        );
        assert_eq!(with_fencing_header(configured.clone(), None), configured);
    }

    #[test]
    fn exec_and_notify_carry_the_run_id() {
        use crate::template::Template;
        let step = |action| StepSpec {
            name: "s".into(),
            action,
            max_attempts: 1,
            cooldown: std::time::Duration::ZERO.into(),
            timeout: std::time::Duration::from_secs(1).into(),
            tier: None,
            confirm: None,
        };
        let values = Values {
            check: Some("web".into()),
            chain: "c".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let ctx = ActionContext {
            values: &values,
            trigger: "check",
            target: "check:web",
            message: "down",
            tried: &[],
            skipped: &[],
            blocked_dependents: &[],
            fencing_token: None,
            run_id: "18f-abc",
            subject: "check:web",
        };
        let exec = step(ActionSpec::Exec {
            program: Template::parse("/bin/true").unwrap(),
            args: vec![],
            detach: false,
        });
        let Ok(Rendered::Exec { env, .. }) = render(&exec, "c", &ctx) else {
            panic!("exec renders");
        };
        assert!(env.contains(&(RUN_ID_ENV.to_string(), "18f-abc".to_string())));
        let notify = step(ActionSpec::Notify {
            url: Template::parse("http://127.0.0.1/hook").unwrap(),
            headers: vec![],
        });
        let Ok(Rendered::Notify { body, .. }) = render(&notify, "c", &ctx) else {
            panic!("notify renders");
        };
        assert_eq!(body["run_id"], "18f-abc");
    }

    #[test]
    fn tails_respect_char_boundaries() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
    }
}
