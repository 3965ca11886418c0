//! The reference in `docs/` and the code say the same: every config key, every flag and every
//! metric. Each list is taken from the code as it runs, never from a copy kept in this test:
//!
//! - **Config keys.** medic itself is asked. Every block of the YAML (the top level, `web`,
//!   `checks[]`, `checks[].http`, `recovery.chains.<name>.steps[]`, …, and the two blocks of
//!   `--web.config.file`) is put in a config with one unknown key, `zz_probe`, and `medic
//!   check-config` answers with serde's own list of the block's keys (`unknown field
//!   `zz_probe`, expected one of `url`, `method`, …`): unknown keys are denied everywhere, so that
//!   list is exactly what the code reads. It must equal the keys of that block's table in the
//!   docs: a table whose header starts `| key |`, under a heading that names the block in a
//!   code span (`### `checks[].http``). A block this test does not know yet cannot slip by
//!   either: every key that is not itself a known block is given a mapping, and a list of
//!   mappings, holding an unknown key; if the code answers "unknown field" for it, the key is a
//!   block of its own and the test fails until it is added to [`BLOCKS`] and documented. (A
//!   block read as an untagged enum, `recovery.routes[].silence`, says "did not match any
//!   variant" instead: it is documented as a key, with its one key `matchers`.)
//! - **Flags.** `medic --help` and each command's `--help`: every flag there is in a table of
//!   `docs/cli.md` whose header starts `| flag |` (the global ones in a table under a heading
//!   without a command, a command's own under a heading naming `medic COMMAND`), every flag
//!   there is in the help, and every command is in the table of commands.
//! - **Metrics.** A real medic, started with a config that makes every family it can appear
//!   (a check of each sort that exports its own series, a chain, a route, a maintenance window,
//!   a prediction, a TLS endpoint to check, a heartbeat that pings), is scraped: every family
//!   there is in the table of `docs/metrics.md` with its type and labels. The families a short
//!   run cannot make appear (the prediction interval needs 20 scored forecasts) are found in
//!   `src/metrics/` by the names they are registered under: every registered name is
//!   documented, and every documented name is scraped or registered.
//! - **The built-in config** shown in `docs/configuration.md` is the one medic runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use regex::Regex;
use serde_yaml_ng::{Mapping, Value};

use crate::support::{wait_for, Medic, MEDIC};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every block of medic.yml, as the docs name it, and a config that holds it with the key
/// `PROBE` inside (the rest is what the block needs around it to be read at all).
const BLOCKS: &[(&str, &str)] = &[
    ("medic.yml", "PROBE: 1"),
    ("web", "web: {PROBE: 1}"),
    ("web.webhook", "web: {webhook: {PROBE: 1}}"),
    (
        "web.webhook.basic_auth",
        "web: {webhook: {basic_auth: {username: u, password: p, PROBE: 1}}}",
    ),
    ("state", "state: {PROBE: 1}"),
    ("defaults", "defaults: {PROBE: 1}"),
    (
        "defaults.flapping",
        "defaults: {flapping: {failures: 2, within: 4, PROBE: 1}}",
    ),
    ("checks[]", "checks: [{name: a, tcp: {address: 'localhost:1'}, PROBE: 1}]"),
    (
        "checks[].flapping",
        "checks: [{name: a, tcp: {address: 'localhost:1'}, flapping: {failures: 2, within: 4, PROBE: 1}}]",
    ),
    (
        "checks[].http",
        "checks: [{name: a, http: {url: 'http://localhost/', PROBE: 1}}]",
    ),
    ("checks[].tcp", "checks: [{name: a, tcp: {address: 'localhost:1', PROBE: 1}}]"),
    (
        "checks[].database",
        "checks: [{name: a, database: {url: 'sqlite://x.db', PROBE: 1}}]",
    ),
    (
        "checks[].system",
        "checks: [{name: a, system: {cpu: {warning: 0.9}, PROBE: 1}}]",
    ),
    (
        "checks[].system.cpu",
        "checks: [{name: a, system: {cpu: {warning: 0.9, PROBE: 1}}}]",
    ),
    (
        "checks[].system.memory",
        "checks: [{name: a, system: {memory: {warning: 0.9, PROBE: 1}}}]",
    ),
    (
        "checks[].system.disk",
        "checks: [{name: a, system: {disk: {warning: 0.9, PROBE: 1}}}]",
    ),
    (
        "checks[].command",
        "checks: [{name: a, command: {program: /bin/true, PROBE: 1}}]",
    ),
    ("checks[].tls", "checks: [{name: a, tls: {address: 'localhost:1', PROBE: 1}}]"),
    ("checks[].dns", "checks: [{name: a, dns: {name: example.com, PROBE: 1}}]"),
    ("checks[].grpc", "checks: [{name: a, grpc: {address: 'localhost:1', PROBE: 1}}]"),
    ("checks[].heartbeat", "checks: [{name: a, heartbeat: {PROBE: 1}}]"),
    (
        "check_templates[]",
        "check_templates: [{name: t, file_sd: [t.json], tcp: {address: 'localhost:1'}, PROBE: 1}]",
    ),
    (
        "check_templates[].flapping",
        "check_templates: [{name: t, file_sd: [t.json], tcp: {address: 'localhost:1'}, flapping: {failures: 2, within: 4, PROBE: 1}}]",
    ),
    (
        "check_templates[].http",
        "check_templates: [{name: t, file_sd: [t.json], http: {url: 'http://localhost/', PROBE: 1}}]",
    ),
    (
        "check_templates[].tcp",
        "check_templates: [{name: t, file_sd: [t.json], tcp: {address: 'localhost:1', PROBE: 1}}]",
    ),
    (
        "check_templates[].database",
        "check_templates: [{name: t, file_sd: [t.json], database: {url: 'sqlite://x.db', PROBE: 1}}]",
    ),
    (
        "check_templates[].system",
        "check_templates: [{name: t, file_sd: [t.json], system: {cpu: {warning: 0.9}, PROBE: 1}}]",
    ),
    (
        "check_templates[].system.cpu",
        "check_templates: [{name: t, file_sd: [t.json], system: {cpu: {warning: 0.9, PROBE: 1}}}]",
    ),
    (
        "check_templates[].system.memory",
        "check_templates: [{name: t, file_sd: [t.json], system: {memory: {warning: 0.9, PROBE: 1}}}]",
    ),
    (
        "check_templates[].system.disk",
        "check_templates: [{name: t, file_sd: [t.json], system: {disk: {warning: 0.9, PROBE: 1}}}]",
    ),
    (
        "check_templates[].command",
        "check_templates: [{name: t, file_sd: [t.json], command: {program: /bin/true, PROBE: 1}}]",
    ),
    (
        "check_templates[].tls",
        "check_templates: [{name: t, file_sd: [t.json], tls: {address: 'localhost:1', PROBE: 1}}]",
    ),
    (
        "check_templates[].dns",
        "check_templates: [{name: t, file_sd: [t.json], dns: {name: example.com, PROBE: 1}}]",
    ),
    (
        "check_templates[].grpc",
        "check_templates: [{name: t, file_sd: [t.json], grpc: {address: 'localhost:1', PROBE: 1}}]",
    ),
    (
        "check_templates[].http_sd",
        "check_templates: [{name: t, http_sd: {url: 'http://localhost/', PROBE: 1}, tcp: {address: 'localhost:1'}}]",
    ),
    (
        "check_templates[].http_sd.basic_auth",
        "check_templates: [{name: t, http_sd: {url: 'http://localhost/', basic_auth: {username: u, password: p, PROBE: 1}}, tcp: {address: 'localhost:1'}}]",
    ),
    (
        "check_templates[].http_sd.tls_config",
        "check_templates: [{name: t, http_sd: {url: 'http://localhost/', tls_config: {PROBE: 1}}, tcp: {address: 'localhost:1'}}]",
    ),
    (
        "check_templates[].dns_sd",
        "check_templates: [{name: t, dns_sd: {names: [example.com], PROBE: 1}, tcp: {address: 'localhost:1'}}]",
    ),
    ("cluster", "cluster: {PROBE: 1}"),
    ("recovery", "recovery: {PROBE: 1}"),
    ("recovery.limits", "recovery: {limits: {PROBE: 1}}"),
    (
        "recovery.limits.max_runs",
        "recovery: {limits: {max_runs: {count: 1, within: 1m, PROBE: 1}}}",
    ),
    (
        "recovery.chains.<name>",
        "recovery: {chains: {c: {steps: [{name: s, exec: {program: /bin/true}}], PROBE: 1}}}",
    ),
    (
        "recovery.chains.<name>.steps[]",
        "recovery: {chains: {c: {steps: [{name: s, exec: {program: /bin/true}, PROBE: 1}]}}}",
    ),
    (
        "recovery.chains.<name>.confirm",
        "recovery: {chains: {c: {confirm: {replicas: 2, PROBE: 1}, steps: [{name: s, exec: {program: /bin/true}}]}}}",
    ),
    (
        "recovery.chains.<name>.steps[].confirm",
        "recovery: {chains: {c: {steps: [{name: s, exec: {program: /bin/true}, confirm: {replicas: 2, PROBE: 1}}]}}}",
    ),
    (
        "recovery.chains.<name>.steps[].exec",
        "recovery: {chains: {c: {steps: [{name: s, exec: {program: /bin/true, PROBE: 1}}]}}}",
    ),
    (
        "recovery.chains.<name>.steps[].http",
        "recovery: {chains: {c: {steps: [{name: s, http: {url: 'http://localhost/', PROBE: 1}}]}}}",
    ),
    (
        "recovery.chains.<name>.steps[].notify",
        "recovery: {chains: {c: {steps: [{name: s, notify: {url: 'http://localhost/', PROBE: 1}}]}}}",
    ),
    (
        "recovery.chains.<name>.steps[].alert",
        "alertmanager: {url: 'http://localhost:9093'}\n\
         recovery: {chains: {c: {steps: [{name: s, alert: {PROBE: 1}}]}}}",
    ),
    (
        "recovery.routes[]",
        "recovery:\n  chains: {c: {steps: [{name: s, exec: {program: /bin/true}}]}}\n  \
         routes: [{matchers: ['a=\"b\"'], chain: c, PROBE: 1}]",
    ),
    (
        "maintenance[]",
        "maintenance: [{name: w, between: ['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'], PROBE: 1}]",
    ),
    (
        "maintenance[].schedule",
        "maintenance: [{name: w, schedule: {days: [mon], start: '02:00', duration: 1h, PROBE: 1}}]",
    ),
    (
        "predictions[]",
        "checks: [{name: a, tcp: {address: 'localhost:1'}}]\n\
         predictions: [{name: p, check: a, measurement: duration_seconds, horizons: [1m], breach_above: 1, PROBE: 1}]",
    ),
    ("alertmanager", "alertmanager: {url: 'http://localhost:9093', PROBE: 1}"),
    (
        "alertmanager.basic_auth",
        "alertmanager: {url: 'http://localhost:9093', basic_auth: {username: u, password: p, PROBE: 1}}",
    ),
    (
        "alertmanager.tls_config",
        "alertmanager: {url: 'http://localhost:9093', tls_config: {PROBE: 1}}",
    ),
];

/// The blocks of the file `--web.config.file` names.
const WEB_CONFIG_BLOCKS: &[(&str, &str)] = &[
    ("--web.config.file", "PROBE: 1"),
    (
        "tls_server_config",
        "tls_server_config: {cert_file: a.crt, key_file: a.key, PROBE: 1}",
    ),
];

#[derive(Clone, Copy, PartialEq)]
enum File {
    Medic,
    WebConfig,
}

// ---------------------------------------------------------------------------------------------
// Markdown tables

/// One table of a docs file: the code spans of the heading it is under, its header, its rows.
#[derive(Debug)]
struct Table {
    file: String,
    heading: Vec<String>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn docs_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// `a `b` c `d`` -> ["b", "d"].
fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().to_string())
        .collect()
}

/// A table row's cells; a `|` inside a code span does not split.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut in_code = false;
    for c in inner.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.last_mut().unwrap().push(c);
            }
            '|' if !in_code => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

fn tables(path: &Path) -> Vec<Table> {
    let text = std::fs::read_to_string(path).expect("read docs file");
    let file = path.strip_prefix(ROOT).unwrap().display().to_string();
    let mut out: Vec<Table> = Vec::new();
    let mut heading = Vec::new();
    let mut in_fence = false;
    let mut current: Option<Table> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence {
            continue;
        }
        if line.starts_with('#') {
            heading = code_spans(line);
        }
        if line.trim_start().starts_with('|') {
            let row = cells(line);
            match current.as_mut() {
                None => {
                    current = Some(Table {
                        file: file.clone(),
                        heading: heading.clone(),
                        header: row,
                        rows: Vec::new(),
                    })
                }
                Some(t) if row.iter().all(|c| c.chars().all(|c| c == '-' || c == ':')) => {
                    let _ = t;
                }
                Some(t) => t.rows.push(row),
            }
        } else if let Some(t) = current.take() {
            out.push(t);
        }
    }
    out.extend(current);
    out
}

fn all_tables() -> Vec<Table> {
    docs_files().iter().flat_map(|p| tables(p)).collect()
}

// ---------------------------------------------------------------------------------------------
// Config keys

/// What `medic check-config` says about `yaml` (as medic.yml, or as the web config file).
fn check_config(file: File, yaml: &str, dir: &Path, n: usize) -> String {
    let path = dir.join(format!("probe-{n}.yml"));
    std::fs::write(&path, yaml).expect("write probe config");
    let mut cmd = Command::new(MEDIC);
    cmd.arg("check-config").current_dir(dir);
    match file {
        File::Medic => cmd.arg(&path),
        File::WebConfig => {
            let medic = dir.join(format!("empty-{n}.yml"));
            std::fs::write(&medic, "checks: []\n").unwrap();
            cmd.arg("--web.config.file").arg(&path).arg(&medic)
        }
    };
    let out = cmd.output().expect("run medic check-config");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The keys serde listed for the unknown key `marker`, if it said so.
fn expected_keys(output: &str, marker: &str) -> Option<BTreeSet<String>> {
    let needle = format!("unknown field `{marker}`");
    let line = output.lines().find(|l| l.contains(&needle))?;
    let rest = &line[line.find(&needle).unwrap() + needle.len()..];
    let rest = rest.split(" (line ").next().unwrap();
    if rest.contains("there are no fields") {
        return Some(BTreeSet::new());
    }
    let rest = rest.split_once("expected").map(|(_, r)| r)?;
    Some(code_spans(rest).into_iter().collect())
}

/// The template with the mapping that holds `PROBE` changed by `edit`.
fn with_probe(template: &str, edit: &dyn Fn(&mut Mapping)) -> String {
    fn visit(v: &mut Value, edit: &dyn Fn(&mut Mapping)) -> bool {
        match v {
            Value::Mapping(m) => {
                if m.contains_key("PROBE") {
                    m.shift_remove("PROBE");
                    edit(m);
                    return true;
                }
                m.values_mut().any(|v| visit(v, edit))
            }
            Value::Sequence(s) => s.iter_mut().any(|v| visit(v, edit)),
            _ => false,
        }
    }
    let mut value: Value = serde_yaml_ng::from_str(template).expect("template is YAML");
    assert!(visit(&mut value, edit), "no PROBE in {template}");
    serde_yaml_ng::to_string(&value).unwrap()
}

/// A unit of work for [`run_all`].
type Job<'a, T> = Box<dyn FnOnce() -> T + Send + 'a>;

/// Runs `jobs` two at a time (the machine's cores are shared), results in order.
fn run_all<T: Send>(jobs: Vec<Job<'_, T>>) -> Vec<T> {
    use std::sync::Mutex;
    let slots: Vec<Mutex<Option<Job<'_, T>>>> =
        jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Option<T>>> = slots.iter().map(|_| Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                let job = slot.lock().unwrap().take().unwrap();
                *results[i].lock().unwrap() = Some(job());
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap().unwrap())
        .collect()
}

/// What `medic check-config` said for a block: the block, its file, the keys it listed (if it
/// did), and its whole output for the message when it did not.
type Answer = (String, File, Option<BTreeSet<String>>, String);

/// Each block's keys, as the code reads them.
fn code_keys(dir: &Path) -> BTreeMap<String, (File, BTreeSet<String>)> {
    let blocks: Vec<(File, &str, &str)> = BLOCKS
        .iter()
        .map(|(b, t)| (File::Medic, *b, *t))
        .chain(
            WEB_CONFIG_BLOCKS
                .iter()
                .map(|(b, t)| (File::WebConfig, *b, *t)),
        )
        .collect();
    let jobs: Vec<Job<'_, Answer>> = blocks
        .iter()
        .enumerate()
        .map(|(n, &(file, block, template))| {
            Box::new(move || {
                let yaml = template.replace("PROBE", "zz_probe");
                let out = check_config(file, &yaml, dir, n);
                (
                    block.to_string(),
                    file,
                    expected_keys(&out, "zz_probe"),
                    out,
                )
            }) as Job<'_, _>
        })
        .collect();
    let mut keys = BTreeMap::new();
    for (block, file, found, out) in run_all(jobs) {
        let found = found.unwrap_or_else(|| {
            panic!("block {block}: medic did not list its keys for an unknown one:\n{out}")
        });
        keys.insert(block, (file, found));
    }
    keys
}

/// Each block's keys, as the docs list them.
fn docs_keys(tables: &[Table]) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut keys: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for t in tables
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "key"))
    {
        assert!(
            !t.heading.is_empty(),
            "{}: a key table under a heading that names no block: {:?}",
            t.file,
            t.header
        );
        for block in &t.heading {
            let entry = keys
                .entry(block.clone())
                .or_insert_with(|| (t.file.clone(), BTreeSet::new()));
            for row in &t.rows {
                entry.1.extend(code_spans(&row[0]));
            }
        }
    }
    keys
}

/// `key` of `block` as a block's own name, in each shape one can take.
fn sub_blocks(block: &str, key: &str) -> [String; 3] {
    let base = if block == "medic.yml" || block == "--web.config.file" {
        key.to_string()
    } else {
        format!("{block}.{key}")
    };
    [base.clone(), format!("{base}[]"), format!("{base}.<name>")]
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let code = code_keys(dir.path());
    let tables = all_tables();
    let docs = docs_keys(&tables);
    let mut problems = Vec::new();

    for (block, (_, keys)) in &code {
        match docs.get(block) {
            None => problems.push(format!(
                "block `{block}` has no key table in docs/ (a `| key | default | meaning |` table \
                 under a heading naming `{block}`); its keys: {keys:?}"
            )),
            Some((file, documented)) => {
                for k in keys.difference(documented) {
                    problems.push(format!(
                        "{file}: `{block}`: key `{k}` is read by medic but not documented"
                    ));
                }
                for k in documented.difference(keys) {
                    problems.push(format!(
                        "{file}: `{block}`: key `{k}` is documented but medic does not know it"
                    ));
                }
            }
        }
    }
    for (block, (file, _)) in &docs {
        if !code.contains_key(block) {
            problems.push(format!(
                "{file}: a key table for `{block}`, which is no block this test knows (BLOCKS in tests/it/docs.rs)"
            ));
        }
    }

    // A key that is not a known block must not take keys of its own.
    let templates: BTreeMap<&str, (File, &str)> = BLOCKS
        .iter()
        .map(|(b, t)| (*b, (File::Medic, *t)))
        .chain(
            WEB_CONFIG_BLOCKS
                .iter()
                .map(|(b, t)| (*b, (File::WebConfig, *t))),
        )
        .collect();
    let mut leaves = Vec::new();
    for (block, (_, keys)) in &code {
        for key in keys {
            if sub_blocks(block, key).iter().any(|b| code.contains_key(b)) {
                continue;
            }
            leaves.push((block.clone(), key.clone()));
        }
    }
    let shapes: [fn() -> Value; 2] = [
        || serde_yaml_ng::from_str("{zz_leaf: {zz_leaf: 1}}").unwrap(),
        || serde_yaml_ng::from_str("[{zz_leaf: 1}]").unwrap(),
    ];
    let mut jobs: Vec<Job<'_, Option<String>>> = Vec::new();
    let base = BLOCKS.len() + WEB_CONFIG_BLOCKS.len();
    for (i, (block, key)) in leaves.iter().enumerate() {
        let (file, template) = templates[block.as_str()];
        for (j, shape) in shapes.iter().enumerate() {
            let yaml = with_probe(template, &|m: &mut Mapping| {
                m.insert(Value::from(key.as_str()), shape());
            });
            let dir = dir.path();
            let n = base + i * 2 + j;
            let (block, key) = (block.clone(), key.clone());
            jobs.push(Box::new(move || {
                let out = check_config(file, &yaml, dir, n);
                out.contains("unknown field `zz_leaf`").then(|| {
                    format!(
                        "`{block}`: key `{key}` takes keys of its own: add it to BLOCKS in \
                         tests/it/docs.rs and document its keys"
                    )
                })
            }));
        }
    }
    problems.extend(run_all(jobs).into_iter().flatten());
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Flags

fn help(args: &[&str]) -> String {
    let out = Command::new(MEDIC)
        .args(args)
        .output()
        .expect("medic --help");
    assert!(out.status.success(), "medic {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn help_flags(text: &str) -> BTreeSet<String> {
    let re = Regex::new(r"(?m)^\s+(?:-[A-Za-z], )?(--[a-z][a-z0-9.-]*)").unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

fn help_commands(text: &str) -> Vec<String> {
    text.split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// The command a heading's code spans name (`medic recover` -> recover).
fn heading_command(heading: &[String]) -> Option<String> {
    heading.iter().find_map(|s| {
        s.strip_prefix("medic ")
            .map(|c| c.split_whitespace().next().unwrap().to_string())
    })
}

#[test]
fn every_flag_and_command_is_in_the_docs_and_every_documented_one_exists() {
    let top = help(&["--help"]);
    let global = help_flags(&top);
    let commands = help_commands(&top);
    let cli = tables(&Path::new(ROOT).join("docs/cli.md"));
    let mut problems = Vec::new();

    // The docs' flags: global, and per command.
    let mut documented: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
    for t in cli
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "flag"))
    {
        let flags = documented.entry(heading_command(&t.heading)).or_default();
        for row in &t.rows {
            for span in code_spans(&row[0]) {
                let flag = span.split_whitespace().next().unwrap_or_default();
                if flag.starts_with("--") {
                    flags.insert(flag.to_string());
                }
            }
        }
    }
    let mut compare = |what: String, in_help: &BTreeSet<String>, in_docs: &BTreeSet<String>| {
        for f in in_help.difference(in_docs) {
            problems.push(format!("{what}: `{f}` is in --help but not in docs/cli.md"));
        }
        for f in in_docs.difference(in_help) {
            problems.push(format!("{what}: `{f}` is in docs/cli.md but not in --help"));
        }
    };
    let none = BTreeSet::new();
    compare(
        "flags of every command".into(),
        &global,
        documented.get(&None).unwrap_or(&none),
    );
    for command in &commands {
        let own: BTreeSet<String> = help_flags(&help(&[command, "--help"]))
            .difference(&global)
            .cloned()
            .collect();
        let docs = documented.get(&Some(command.clone())).unwrap_or(&none);
        compare(format!("medic {command}"), &own, docs);
    }
    for command in documented.keys().flatten() {
        if !commands.contains(command) {
            problems.push(format!(
                "docs/cli.md: flags of `medic {command}`, which is no command"
            ));
        }
    }

    // The commands.
    let mut listed = BTreeSet::new();
    for t in cli
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "command"))
    {
        for row in &t.rows {
            for span in code_spans(&row[0]) {
                if let Some(c) = span.strip_prefix("medic ") {
                    listed.insert(c.split_whitespace().next().unwrap().to_string());
                }
            }
        }
    }
    let commands: BTreeSet<String> = commands.into_iter().collect();
    for c in commands.difference(&listed) {
        problems.push(format!(
            "`medic {c}` is not in docs/cli.md's table of commands"
        ));
    }
    for c in listed.difference(&commands) {
        problems.push(format!(
            "docs/cli.md lists `medic {c}`, which is no command"
        ));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// A family as the docs or a scrape describe it: its type, and its labels (a scraped family
/// without samples shows none).
#[derive(Debug, Clone, Default, PartialEq)]
struct Family {
    kind: String,
    labels: Option<BTreeSet<String>>,
}

/// The scrape's families, by the name their samples carry (`_total` for counters).
fn scraped(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let name = match kind {
                "counter" if !name.ends_with("_total") => format!("{name}_total"),
                _ => name.to_string(),
            };
            let kind = kind.to_string();
            out.insert(name, Family { kind, labels: None });
        }
    }
    let sample = Regex::new(r"^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? ").unwrap();
    let label = Regex::new(r#"([a-z_][a-z0-9_]*)="#).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(c) = sample.captures(line) else {
            continue;
        };
        let name = &c[1];
        let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            out.get(base)
                .filter(|f| f.kind == "histogram")
                .map(|_| base)
        });
        let Some(family) = out.get_mut(histogram.unwrap_or(name)) else {
            continue;
        };
        let labels = c
            .get(2)
            .map(|l| {
                label
                    .captures_iter(l.as_str())
                    .map(|c| c[1].to_string())
                    .collect::<Vec<String>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l != "le")
            .collect();
        family.labels = Some(labels);
    }
    out
}

/// The names `src/metrics/` registers families under (before the unit and `_total` suffixes
/// the encoder adds), outside its tests.
fn registered() -> BTreeSet<String> {
    let re = Regex::new(r#""(medic_[a-z0-9_]*[a-z0-9])""#).unwrap();
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(ROOT).join("src/metrics")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        names.extend(re.captures_iter(code).map(|c| c[1].to_string()));
    }
    names
}

/// Whether `documented` is the name `registered` gets on the wire: as is, or with the unit and
/// counter suffixes the encoder appends; or `registered` is one of a documented histogram's
/// series (the per-check lines are written by name, `_bucket`, `_sum` and `_count` included).
fn registered_as(registered: &str, documented: &str) -> bool {
    documented == registered
        || registered
            .strip_prefix(documented)
            .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
        || documented.strip_prefix(registered).is_some_and(|rest| {
            rest.split('_')
                .skip(1)
                .all(|s| ["seconds", "ratio", "bytes", "total"].contains(&s))
                && rest.starts_with('_')
        })
}

fn documented_metrics() -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    for t in tables(&Path::new(ROOT).join("docs/metrics.md"))
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "metric"))
    {
        assert_eq!(
            t.header[..3],
            ["metric", "type", "labels"],
            "docs/metrics.md: the metrics table's columns"
        );
        for row in &t.rows {
            let name = code_spans(&row[0]).first().cloned().expect("a metric name");
            let labels = row[2]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_string())
                .filter(|l| !l.is_empty())
                .collect();
            out.insert(
                name,
                Family {
                    kind: row[1].trim().to_string(),
                    labels: Some(labels),
                },
            );
        }
    }
    out
}

/// Everything that makes a family appear: a check of each sort with series of its own (a
/// system check watching all three resources, a failing one, a dependent, a TLS one against a
/// medic serving TLS, a heartbeat), a chain and a route, a maintenance window, a prediction, a
/// check template (its list not there yet: its `medic_sd_*` series are at 0).
fn full_config(tls_port: u16) -> String {
    format!(
        r#"
alertmanager: {{url: "http://127.0.0.1:1"}}
checks:
  - name: host
    interval: 1s
    system:
      cpu: {{warning: 0.99, critical: 1.0}}
      memory: {{warning: 0.99, critical: 1.0}}
      disk: {{warning: 0.99, critical: 1.0, mountpoints: [/]}}
  - name: down
    interval: 1s
    tcp: {{address: "127.0.0.1:1"}}
  - name: web
    interval: 1s
    depends_on: [down]
    recovery: fix
    tcp: {{address: "127.0.0.1:1"}}
  - name: cert
    interval: 1s
    tls: {{address: "127.0.0.1:{tls_port}"}}
  - name: job
    interval: 1m
    heartbeat: {{}}
check_templates:
  - name: fleet
    file_sd: [/nonexistent/medic-docs/*.json]
    tcp: {{address: "{{{{ target }}}}"}}
recovery:
  limits: {{max_unhealthy: 100%}}
  chains:
    fix:
      steps:
        - {{name: restart, exec: {{program: /bin/true}}}}
  routes:
    - {{matchers: ['alertname="X"'], chain: fix, silence: true}}
maintenance:
  - name: never
    matchers: ['chain="none"']
    between: ["2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"]
predictions:
  - name: cpu
    check: host
    measurement: cpu_utilization
    horizons: [1m]
    breach_above: 0.99
"#
    )
}

#[tokio::test]
async fn every_metric_is_documented_and_every_documented_metric_exists() {
    // A medic serving TLS, for the `tls` check's certificate series.
    let tls_dir = tempfile::tempdir().unwrap();
    crate::web::certificates(tls_dir.path(), "docs");
    let web_config = tls_dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        "tls_server_config:\n  cert_file: docs.crt\n  key_file: docs.key\n",
    )
    .unwrap();
    let tls = Medic::spawn_unready(
        "checks: []\n",
        &["--web.config.file", web_config.to_str().unwrap()],
        None,
    );

    let medic = Medic::start(&full_config(tls.port)).await;
    let (code, _) = medic.post("/api/v1/heartbeats/job").await;
    assert_eq!(code, 200, "heartbeat ping");
    let text = wait_for(
        "every family a probe round brings",
        Duration::from_secs(30),
        || async {
            let text = medic.metrics().await;
            [
                "medic_tls_certificate_expiry_timestamp_seconds{",
                "medic_check_failure_info{",
                "medic_system_memory_utilization_ratio{",
            ]
            .iter()
            .all(|s| text.contains(s))
            .then_some(text)
        },
    )
    .await;

    let scrape = scraped(&text);
    let docs = documented_metrics();
    let registered = registered();
    let mut problems = Vec::new();
    for (name, family) in &scrape {
        let Some(doc) = docs.get(name) else {
            problems.push(format!("`{name}` is exported but not in docs/metrics.md"));
            continue;
        };
        let labels_differ = family.labels.is_some() && family.labels != doc.labels;
        if doc.kind != family.kind || labels_differ {
            problems.push(format!(
                "`{name}`: docs/metrics.md says {} with labels {:?}, a scrape shows {} with {:?}",
                doc.kind, doc.labels, family.kind, family.labels
            ));
        }
    }
    for name in &registered {
        if !docs.keys().any(|d| registered_as(name, d)) {
            problems.push(format!(
                "`{name}` is registered in src/metrics/ but no metric of docs/metrics.md is named for it"
            ));
        }
    }
    for name in docs.keys() {
        if !scrape.contains_key(name) && !registered.iter().any(|r| registered_as(r, name)) {
            problems.push(format!(
                "docs/metrics.md: `{name}` is neither exported by a running medic nor registered in src/metrics/"
            ));
        }
    }
    assert!(
        scrape.len() >= 40,
        "too few families scraped: {:?}",
        scrape.keys()
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The built-in config

/// The YAML blocks of a Markdown file under the heading `heading`.
fn yaml_blocks_under(path: &Path, heading: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("\n#")
        .find(|s| s.trim_start_matches('#').trim_start().starts_with(heading))
        .unwrap_or_else(|| panic!("{}: no heading {heading:?}", path.display()));
    section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_built_in_config_in_the_docs_is_the_one_medic_runs() {
    let path = Path::new(ROOT).join("docs/configuration.md");
    let blocks = yaml_blocks_under(&path, "The built-in config");
    let documented: Value = serde_yaml_ng::from_str(&blocks[0]).unwrap();
    let builtin: Value =
        serde_yaml_ng::from_str(&medic::config::builtin_yaml("127.0.0.1:7979")).unwrap();
    assert_eq!(
        documented, builtin,
        "docs/configuration.md, \"The built-in config\", differs from src/config/builtin.rs"
    );
}
