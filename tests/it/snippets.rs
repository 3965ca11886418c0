//! The wiring people copy routes as its comments say. Every Alertmanager and Prometheus snippet
//! in the docs (`*.md` at the top, `docs/`) and in `examples/` is checked with the real tools:
//! `amtool check-config`, then `amtool config routes test --verify.receivers` for every bundled
//! alert (`alerting-rules/medic.rules.yml`) with the receivers the snippet means; `promtool
//! check config` (its rule files resolved beside it) and `promtool check rules`; and medic's own
//! `recovery.routes` are posted the alerts Alertmanager sends medic, on a running medic.
//!
//! A snippet says what it is, and what it means, in a comment right before it: in Markdown an
//! HTML comment ending on the line before the fence, in a YAML file a comment block starting
//! `# check: KIND`. Each further line `ALERT{label="value"} -> receiver, receiver` says where an
//! alert goes; `*` stands for every bundled alert not named; for medic's routes the right side
//! is a chain, or `none` (unrouted):
//!
//! ```text
//! <!-- check: alertmanager
//! MedicCheckCritical -> medic, people
//! * -> people
//! -->
//! ```
//!
//! Kinds: `alertmanager`, `prometheus` (a prometheus.yml), `prometheus-rules` (a rule file),
//! `medic-routes` (a medic config whose `recovery.routes` are meant for those alerts). A YAML
//! snippet that looks like an Alertmanager or Prometheus config but carries no mark fails the
//! test, so a new snippet cannot escape the check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use crate::support::Medic;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "snippets-token-5d2a";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Alertmanager,
    Prometheus,
    PrometheusRules,
    MedicRoutes,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        Some(match word {
            "alertmanager" => Kind::Alertmanager,
            "prometheus" => Kind::Prometheus,
            "prometheus-rules" => Kind::PrometheusRules,
            "medic-routes" => Kind::MedicRoutes,
            _ => return None,
        })
    }

    /// What an unmarked snippet looks like, for the kinds that must be marked.
    fn guess(text: &str) -> Option<Kind> {
        let top = |key: &str| text.lines().any(|l| l.starts_with(key));
        let any = |key: &str| text.lines().any(|l| l.trim_start().starts_with(key));
        if top("route:") || top("receivers:") || top("inhibit_rules:") {
            Some(Kind::Alertmanager)
        } else if top("scrape_configs:") || top("rule_files:") || any("- job_name:") {
            Some(Kind::Prometheus)
        } else if top("groups:") || any("- alert:") || any("- record:") {
            Some(Kind::PrometheusRules)
        } else {
            None
        }
    }
}

/// One line of a mark: an alert (its name and labels beyond the bundled rule's) and what it
/// should reach: receivers, or a chain (empty: none).
#[derive(Debug, Clone)]
struct Expect {
    alert: String,
    labels: BTreeMap<String, String>,
    to: Vec<String>,
}

/// What a mark says: its kind (`Err` with the mark's text when it names no known kind,
/// `Ok(None)` when unmarked) and its expectations.
type Mark = (Result<Option<Kind>, String>, Vec<Expect>);

#[derive(Debug)]
struct Snippet {
    /// `README.md:587`
    origin: String,
    /// The document (or, for examples/, the directory) the snippet belongs with: medic's
    /// routes must cover what that group's Alertmanager snippets send medic.
    group: PathBuf,
    /// `Err` with the mark's text when the mark names no known kind; `Ok(None)` when unmarked.
    kind: Result<Option<Kind>, String>,
    expect: Vec<Expect>,
    text: String,
}

fn parse_expect(line: &str) -> Option<Expect> {
    let (left, right) = line.split_once("->")?;
    let left = left.trim();
    let (alert, labels) = match left.split_once('{') {
        Some((name, rest)) => {
            let inner = rest.trim_end().strip_suffix('}').unwrap_or(rest);
            let labels = inner
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            (name.trim().to_string(), labels)
        }
        None => (left.to_string(), BTreeMap::new()),
    };
    let to = right
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty() && *r != "none")
        .map(String::from)
        .collect();
    Some(Expect { alert, labels, to })
}

/// A mark's kind and expectations from its lines (comment markers already stripped); `None`
/// when the comment is not a mark at all.
fn parse_mark(lines: &[String]) -> Option<Mark> {
    let first = lines.first()?.trim();
    let rest = first.strip_prefix("check:")?.trim();
    let word = rest.split_whitespace().next().unwrap_or("");
    let kind = Kind::parse(word).map(Some).ok_or_else(|| first.to_string());
    let expect = lines[1..].iter().filter_map(|l| parse_expect(l)).collect();
    Some((kind, expect))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The fenced YAML blocks of a Markdown file, with the mark before each.
fn markdown_snippets(path: &Path) -> Vec<Snippet> {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let (fence, lang) = (i, lang.trim().to_string());
        let mut body = String::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push_str(lines[i]);
            body.push('\n');
            i += 1;
        }
        i += 1;
        if lang != "yaml" && lang != "yml" {
            continue;
        }
        // The HTML comment that ends on the line right before the fence.
        let mut mark = None;
        if fence > 0 && lines[fence - 1].trim_end().ends_with("-->") {
            let mut start = fence - 1;
            while start > 0 && !lines[start].contains("<!--") {
                start -= 1;
            }
            let comment: Vec<String> = lines[start..fence]
                .iter()
                .map(|l| l.replace("<!--", "").replace("-->", "").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            mark = parse_mark(&comment);
        }
        let (kind, expect) = mark.unwrap_or((Ok(None), Vec::new()));
        out.push(Snippet {
            origin: format!("{}:{}", relative(path), fence + 1),
            group: path.to_path_buf(),
            kind,
            expect,
            text: body,
        });
    }
    out
}

/// A YAML file of examples/, with its `# check:` comment block if it has one.
fn yaml_snippet(path: &Path) -> Snippet {
    let text = read(path);
    let lines: Vec<&str> = text.lines().collect();
    let mut mark = None;
    if let Some(start) = lines
        .iter()
        .position(|l| l.trim_start().starts_with("# check:"))
    {
        let comment: Vec<String> = lines[start..]
            .iter()
            .take_while(|l| l.trim_start().starts_with('#'))
            .map(|l| l.trim_start().trim_start_matches('#').trim().to_string())
            .collect();
        mark = parse_mark(&comment);
    }
    let (kind, expect) = mark.unwrap_or((Ok(None), Vec::new()));
    Snippet {
        origin: relative(path),
        group: path.parent().unwrap().to_path_buf(),
        kind,
        expect,
        text,
    }
}

fn files(dir: &Path, ends: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, ends, out);
        } else if ends
            .iter()
            .any(|e| path.to_string_lossy().ends_with(&format!(".{e}")))
        {
            out.push(path);
        }
    }
}

/// Every YAML snippet of the docs and examples/.
fn all_snippets() -> Vec<Snippet> {
    let root = Path::new(ROOT);
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files(&root.join("docs"), &["md"], &mut docs);
    let mut out: Vec<Snippet> = docs.iter().flat_map(|p| markdown_snippets(p)).collect();
    let mut examples = Vec::new();
    files(&root.join("examples"), &["yml", "yaml"], &mut examples);
    out.extend(examples.iter().map(|p| yaml_snippet(p)));
    out
}

fn marked(snippets: &[Snippet], kind: Kind) -> Vec<&Snippet> {
    snippets
        .iter()
        .filter(|s| s.kind == Ok(Some(kind)))
        .collect()
}

/// A bundled alert: its name and the labels its rule adds.
#[derive(Debug)]
struct Alert {
    name: String,
    labels: BTreeMap<String, String>,
}

fn bundled_alerts() -> Vec<Alert> {
    let path = Path::new(ROOT).join("alerting-rules/medic.rules.yml");
    let rules: Value = serde_yaml_ng::from_str(&read(&path)).expect("the bundled rules");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            let labels = rule["labels"]
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect();
            out.push(Alert {
                name: name.to_string(),
                labels,
            });
        }
    }
    assert!(
        out.len() >= 10,
        "the bundled rules hold {} alerts: {out:?}",
        out.len()
    );
    out
}

/// The labels an alert carries: its rule's, those medic's series give it, the mark's.
fn labels_of(alert: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), alert.to_string()),
        ("job".to_string(), "medic".to_string()),
        ("instance".to_string(), "127.0.0.1:7979".to_string()),
    ]);
    if let Some(rule) = bundled_alerts().into_iter().find(|a| a.name == alert) {
        labels.extend(rule.labels);
    }
    labels.extend(extra.clone());
    labels
}

/// Runs a tool; `Err` with everything it said when it fails. A missing tool fails the test.
fn run(program: &str, args: &[String], dir: &Path) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} (Debian packages prometheus and prometheus-alertmanager; scripts/test.sh installs them): {e}")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(said)
    }
}

/// The cases a mark asks for: every bundled alert (its own line, or `*`), and every other
/// alert the mark names. Problems for a bundled alert with neither.
fn cases(snippet: &Snippet, problems: &mut Vec<String>) -> Vec<(String, Expect)> {
    let bundled = bundled_alerts();
    let default = snippet.expect.iter().find(|e| e.alert == "*");
    let mut out = Vec::new();
    for e in snippet.expect.iter().filter(|e| e.alert != "*") {
        out.push((e.alert.clone(), e.clone()));
    }
    for alert in &bundled {
        if snippet.expect.iter().any(|e| e.alert == alert.name) {
            continue;
        }
        match default {
            Some(d) => out.push((
                alert.name.clone(),
                Expect {
                    alert: alert.name.clone(),
                    ..d.clone()
                },
            )),
            None => problems.push(format!(
                "{}: says nothing of where {} goes (add a line for it, or `* -> …`)",
                snippet.origin, alert.name
            )),
        }
    }
    out
}

/// The receivers that post to medic's webhook.
fn medic_receivers(config: &Value) -> BTreeSet<String> {
    config["receivers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["webhook_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|w| {
                    w["url"]
                        .as_str()
                        .is_some_and(|u| u.ends_with("/api/v1/alerts"))
                })
        })
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect()
}

/// Checks one Alertmanager snippet; returns the alerts it sends medic.
fn check_alertmanager(snippet: &Snippet, problems: &mut Vec<String>) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, &snippet.text).unwrap();
    let file_arg = format!("--config.file={}", file.display());
    if let Err(said) = run(
        "amtool",
        &["check-config".into(), file.display().to_string()],
        dir.path(),
    ) {
        problems.push(format!(
            "{}: amtool check-config fails:\n{said}",
            snippet.origin
        ));
        return BTreeSet::new();
    }
    let config: Value = serde_yaml_ng::from_str(&snippet.text).unwrap();
    let medic = medic_receivers(&config);
    if medic.is_empty() {
        problems.push(format!(
            "{}: no receiver posts to medic's /api/v1/alerts",
            snippet.origin
        ));
    }
    let mut to_medic = BTreeSet::new();
    let bundled = bundled_alerts();
    let cases = cases(snippet, problems);
    for (alert, expect) in &cases {
        let mut args = vec![
            "config".to_string(),
            "routes".into(),
            "test".into(),
            file_arg.clone(),
            format!("--verify.receivers={}", expect.to.join(",")),
        ];
        let labels = labels_of(alert, &expect.labels);
        args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        match run("amtool", &args, dir.path()) {
            Ok(_) => {
                let is_bundled = bundled.iter().any(|a| a.name == *alert);
                if is_bundled && expect.to.iter().any(|r| medic.contains(r)) {
                    to_medic.insert(alert.clone());
                }
            }
            Err(said) => problems.push(format!(
                "{}: {alert} {labels:?} should reach [{}], amtool says: {}",
                snippet.origin,
                expect.to.join(", "),
                said.lines()
                    .filter(|l| !l.starts_with("Warning: --config.file"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            )),
        }
    }
    assert!(
        cases.len() >= bundled.len(),
        "{}: only {} cases",
        snippet.origin,
        cases.len()
    );
    to_medic
}

#[tokio::test]
async fn every_alertmanager_snippet_routes_each_bundled_alert_as_it_says() {
    let snippets = all_snippets();
    let ams = marked(&snippets, Kind::Alertmanager);
    let origins: Vec<&str> = ams.iter().map(|s| s.origin.as_str()).collect();
    assert!(
        origins.iter().any(|o| o.starts_with("README.md"))
            && origins.contains(&"examples/alertmanager.yml"),
        "the marked Alertmanager snippets are not found where they live: {origins:?}"
    );
    let mut problems = Vec::new();
    for snippet in &ams {
        let to_medic = check_alertmanager(snippet, &mut problems);
        eprintln!(
            "{}: bundled alerts it sends medic: {to_medic:?}",
            snippet.origin
        );
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[tokio::test]
async fn every_prometheus_snippet_passes_promtool() {
    let snippets = all_snippets();
    let configs = marked(&snippets, Kind::Prometheus);
    let rules = marked(&snippets, Kind::PrometheusRules);
    let origins: Vec<&str> = configs
        .iter()
        .chain(&rules)
        .map(|s| s.origin.as_str())
        .collect();
    assert!(
        configs.iter().any(|s| s.origin.starts_with("README.md"))
            && origins.contains(&"examples/prometheus.yml")
            && !rules.is_empty(),
        "the marked Prometheus snippets are not found where they live: {origins:?}"
    );
    let bundled_rules = read(&Path::new(ROOT).join("alerting-rules/medic.rules.yml"));
    let mut problems = Vec::new();
    for snippet in &configs {
        let dir = tempfile::tempdir().unwrap();
        // The rule files it names, resolved beside it (as Prometheus does), hold the bundled
        // rules: promtool checks them too.
        let config: Value = serde_yaml_ng::from_str(&snippet.text).unwrap();
        for entry in config["rule_files"].as_sequence().into_iter().flatten() {
            let entry = entry.as_str().unwrap_or_default();
            if Path::new(entry).is_absolute() {
                problems.push(format!(
                    "{}: rule_files entry {entry} is absolute; a path relative to prometheus.yml can be checked",
                    snippet.origin
                ));
                continue;
            }
            let path = dir.path().join(entry);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bundled_rules).unwrap();
        }
        std::fs::write(dir.path().join("prometheus.yml"), &snippet.text).unwrap();
        if let Err(said) = run(
            "promtool",
            &["check".into(), "config".into(), "prometheus.yml".into()],
            dir.path(),
        ) {
            problems.push(format!(
                "{}: promtool check config fails:\n{said}",
                snippet.origin
            ));
        }
    }
    for snippet in &rules {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), &snippet.text).unwrap();
        if let Err(said) = run(
            "promtool",
            &["check".into(), "rules".into(), "rules.yml".into()],
            dir.path(),
        ) {
            problems.push(format!(
                "{}: promtool check rules fails:\n{said}",
                snippet.origin
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The chain medic's answer to a one-alert notification names, if any.
fn chain_in(answer: &serde_json::Value) -> Option<String> {
    ["started", "coalesced", "blocked", "held"]
        .iter()
        .flat_map(|k| answer[*k].as_array().cloned().unwrap_or_default())
        .find_map(|a| a["chain"].as_str().map(String::from))
}

/// Runs medic with the snippet's `recovery.routes` (chains and checks they name stand in as
/// no-ops) and posts each alert of the mark; problems where the chain is not the one meant.
async fn check_medic_routes(snippet: &Snippet, problems: &mut Vec<String>) {
    let config: Value = serde_yaml_ng::from_str(&snippet.text).unwrap();
    let Some(routes) = config["recovery"]["routes"].as_sequence() else {
        problems.push(format!("{}: no recovery.routes", snippet.origin));
        return;
    };
    let mut kept = Vec::new();
    let (mut chains, mut checks) = (BTreeSet::new(), BTreeSet::new());
    for route in routes {
        let mut r = serde_json::Map::new();
        for key in ["matchers", "chain", "verify_check"] {
            if !route[key].is_null() {
                r.insert(key.into(), serde_json::to_value(&route[key]).unwrap());
            }
        }
        chains.extend(route["chain"].as_str().map(String::from));
        checks.extend(route["verify_check"].as_str().map(String::from));
        kept.push(serde_json::Value::Object(r));
    }
    let chains: serde_json::Map<String, serde_json::Value> = chains
        .into_iter()
        .map(|c| {
            let steps =
                serde_json::json!({"steps": [{"name": "noop", "exec": {"program": "/bin/true"}}]});
            (c, steps)
        })
        .collect();
    let checks: Vec<serde_json::Value> = checks
        .into_iter()
        .map(|c| serde_json::json!({"name": c, "interval": "1h", "command": {"program": "/bin/true"}}))
        .collect();
    // YAML takes JSON as it is.
    let medic = Medic::start(&format!(
        "web:\n  webhook:\n    bearer_token: {TOKEN}\n{}recovery:\n  chains: {}\n  routes: {}\n",
        if checks.is_empty() {
            String::new()
        } else {
            format!("checks: {}\n", serde_json::Value::Array(checks))
        },
        serde_json::Value::Object(chains),
        serde_json::Value::Array(kept),
    ))
    .await;
    for (i, expect) in snippet.expect.iter().enumerate() {
        let labels = labels_of(&expect.alert, &expect.labels);
        let body = serde_json::json!({
            "version": "4",
            "status": "firing",
            "receiver": "medic",
            "alerts": [{
                "status": "firing",
                "labels": labels,
                "startsAt": "2026-01-01T00:00:00Z",
                "fingerprint": format!("snippet{i}"),
            }],
        });
        let r = crate::support::alert_post(&medic, TOKEN, body.to_string().into_bytes())
            .send()
            .await
            .expect("medic's webhook");
        let status = r.status();
        let text = r.text().await.expect("medic's answer");
        assert_eq!(status, 200, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        let got = chain_in(&answer);
        if got.as_deref() != expect.to.first().map(String::as_str) {
            problems.push(format!(
                "{}: {} {labels:?} should run {}, medic answers {answer}",
                snippet.origin,
                expect.alert,
                expect.to.first().map_or("no chain", String::as_str)
            ));
        }
    }
}

#[tokio::test]
async fn medics_routes_pick_a_chain_for_every_alert_alertmanager_sends_it() {
    let snippets = all_snippets();
    let routes = marked(&snippets, Kind::MedicRoutes);
    let origins: Vec<&str> = routes.iter().map(|s| s.origin.as_str()).collect();
    assert!(
        origins.iter().any(|o| o.starts_with("README.md"))
            && origins.contains(&"examples/medic.yml"),
        "the marked medic routes are not found where they live: {origins:?}"
    );
    let mut problems = Vec::new();
    for snippet in &routes {
        check_medic_routes(snippet, &mut problems).await;
    }
    // What the Alertmanager snippets of a document send medic, its medic routes heal.
    for am in marked(&snippets, Kind::Alertmanager) {
        let mut ignored = Vec::new();
        let to_medic = check_alertmanager(am, &mut ignored);
        for alert in to_medic {
            let covered = routes.iter().any(|r| {
                r.group == am.group
                    && r.expect
                        .iter()
                        .any(|e| e.alert == alert && !e.to.is_empty())
            });
            if !covered {
                problems.push(format!(
                    "{}: sends {alert} to medic, but no checked medic routes beside it run a chain for it",
                    am.origin
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_alertmanager_and_prometheus_snippet_is_marked_for_checking() {
    let snippets = all_snippets();
    let mut problems = Vec::new();
    for s in &snippets {
        match &s.kind {
            Err(mark) => problems.push(format!("{}: unknown mark {mark:?}", s.origin)),
            Ok(None) => {
                if let Some(kind) = Kind::guess(&s.text) {
                    problems.push(format!(
                        "{}: looks like {kind:?} but carries no `check:` mark (see tests/it/snippets.rs)",
                        s.origin
                    ));
                }
            }
            Ok(Some(kind)) => {
                if let Err(e) = serde_yaml_ng::from_str::<Value>(&s.text) {
                    problems.push(format!("{}: not YAML: {e}", s.origin));
                }
                if *kind == Kind::Alertmanager && s.expect.is_empty() {
                    problems.push(format!("{}: says nowhere where alerts go", s.origin));
                }
            }
        }
    }
    assert!(
        snippets
            .iter()
            .filter(|s| s.kind.as_ref().is_ok_and(|k| k.is_some()))
            .count()
            >= 8,
        "too few marked snippets found: {snippets:#?}"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
