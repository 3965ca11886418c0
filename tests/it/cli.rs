//! The command line: `probe` exit codes, the built-in default config, flags.

use std::process::Command;
use std::time::Duration;

use crate::support::{free_port, wait_for, Target, MEDIC};

fn probe(config: &str, name: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(MEDIC)
        .args(["probe", name, "--config.file"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .expect("run medic probe");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn probe_exits_with_the_nagios_code() {
    let target = Target::start().await;
    let config = format!(
        "checks:\n  - name: web\n    http: {{url: '{u}'}}\n  - name: body\n    http: {{url: '{u}', expect_body: nope}}\n  - name: closed\n    tcp: {{address: '127.0.0.1:{p}'}}\n",
        u = target.url("/"),
        p = free_port()
    );
    let config2 = config.clone();
    let (code, out) = tokio::task::spawn_blocking(move || probe(&config2, "web"))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("status: healthy") && out.contains("status_code: 200"),
        "{out}"
    );
    let config2 = config.clone();
    let (code, out) = tokio::task::spawn_blocking(move || probe(&config2, "body"))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    let config2 = config.clone();
    let (code, out) = tokio::task::spawn_blocking(move || probe(&config2, "closed"))
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}");
    let (code, out) = tokio::task::spawn_blocking(move || probe(&config, "missing"))
        .await
        .unwrap();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no check named \"missing\""), "{out}");
}

#[test]
fn probe_runs_command_plugins_with_perfdata() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = crate::support::script(dir.path(), "p", "echo 'WARN disk | used=3GB;2;4'; exit 1");
    let (code, out) = probe(
        &format!(
            "checks:\n  - name: p\n    command: {{program: '{}'}}\n",
            plugin.display()
        ),
        "p",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("message: WARN disk"), "{out}");
    assert!(out.contains("used: 3221225472"), "{out}");
}

#[tokio::test]
async fn without_a_config_file_medic_runs_the_builtin_default() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(MEDIC)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .arg("--state.url")
        .arg(format!("sqlite://{}/m.db", dir.path().display()))
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start medic");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    let v: serde_json::Value =
        wait_for("default checks to run", Duration::from_secs(30), || async {
            let body = client.get(&url).send().await.ok()?.text().await.ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let ran = v["checks"]["host"]["last_run"].is_string()
                && v["checks"]["medic"]["last_run"].is_string();
            ran.then_some(v)
        })
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(v["checks"]["medic"]["status"], "healthy", "{v}");
    assert_eq!(v["checks"]["host"]["kind"], "system");
}

#[test]
fn an_explicit_config_file_that_is_missing_is_an_error() {
    let out = Command::new(MEDIC)
        .args([
            "--config.file",
            "/nonexistent/medic.yml",
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run medic");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/medic.yml"));
}

#[test]
fn invalid_config_stops_medic_before_binding_a_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(&path, "checks: 5\n").unwrap();
    let out = Command::new(MEDIC)
        .arg("--config.file")
        .arg(&path)
        .output()
        .expect("run medic");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid config"));
}

/// `medic ARGS` run in `dir`: exit code, stdout, stderr.
fn medic_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(MEDIC)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run medic");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What is in `dir`, by name.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn help_shows_each_default_once() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["recover", "--help"],
        &["pause", "--help"],
        &["detect", "--help"],
    ] {
        let (code, out, err) = medic_in(dir.path(), args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("--web.max-connections"), "{out}");
        for line in out.lines() {
            assert!(line.matches("[default:").count() <= 1, "{args:?}: {line}");
        }
    }
}

const ONE_STEP: &str =
    "recovery:\n  chains:\n    c:\n      steps:\n        - {name: t, exec: {program: /bin/true}}\n";

#[test]
fn recover_stats_never_makes_a_store_and_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("medic.yml"), ONE_STEP).unwrap();
    std::fs::write(dir.path().join("empty.db"), "").unwrap();
    let before = listing(dir.path());
    let port = free_port();
    let cases = [
        (
            format!("sqlite://{d}/nowhere/m.db"),
            format!("no state store at {d}/nowhere/m.db: the directory {d}/nowhere does not exist"),
        ),
        (
            format!("sqlite://{d}/m.db"),
            format!("no state store at {d}/m.db: no such file"),
        ),
        (
            format!("sqlite://{d}/empty.db"),
            format!("sqlite://{d}/empty.db holds no medic state store"),
        ),
        (
            format!("postgres://medic@127.0.0.1:{port}/medic"),
            format!("cannot open state store postgres://medic@127.0.0.1:{port}/medic: error communicating with database: Connection refused"),
        ),
    ];
    for (url, want) in cases {
        let (code, out, err) = medic_in(dir.path(), &["recover", "--stats", "--state.url", &url]);
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert!(err.contains(&want), "{url}: want {want:?} in {err}");
        assert_eq!(listing(dir.path()), before, "{url}: something was made");
        assert_eq!(
            std::fs::metadata(dir.path().join("empty.db"))
                .unwrap()
                .len(),
            0
        );
    }
    // A run makes the store, quietly; then the statistics read it.
    let url = format!("sqlite://{d}/data/m.db");
    let (code, out, err) = medic_in(dir.path(), &["recover", "c", "--state.url", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("outcome: recovered"), "{out}");
    assert!(
        !err.contains("migrated") && !err.contains("level=info"),
        "a one-shot command chatters: {err}"
    );
    let (code, out, err) = medic_in(dir.path(), &["recover", "--stats", "--state.url", &url]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("c ") && l.contains(" t ")),
        "{out}"
    );
}

#[test]
fn recover_stats_reads_only_a_postgresql_store_medic_made() {
    let pg = crate::pg::PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("medic.yml"), ONE_STEP).unwrap();
    let url = pg.url();
    let (code, out, err) = medic_in(dir.path(), &["recover", "--stats", "--state.url", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("postgres://medic:<secret>@127.0.0.1")
            && err.contains("holds no medic state store"),
        "{err}"
    );
    let (code, out, err) = medic_in(dir.path(), &["recover", "c", "--state.url", &url]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = medic_in(dir.path(), &["recover", "--stats", "--state.url", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("c ") && l.contains(" t ")),
        "{out}"
    );
}

#[test]
fn one_shot_commands_print_their_answer_without_log_chatter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("medic.yml"),
        "checks:\n  - name: ok\n    command: {program: /bin/true}\n",
    )
    .unwrap();
    let (code, out, err) = medic_in(dir.path(), &["probe", "ok"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.contains("status: healthy"), "{out}");
    // Asked for, the log is there.
    let (code, _, err) = medic_in(dir.path(), &["probe", "ok", "--log.level", "debug"]);
    assert_eq!(code, 0);
    assert!(err.contains("level=debug"), "{err}");
}
