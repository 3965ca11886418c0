//! `medic check-config` over `tests/testdata/*.yml`: each invalid file names its exact errors in
//! `# expect:` lines; valid files must pass.

use std::path::Path;
use std::process::Command;

use crate::support::MEDIC;

#[test]
fn every_invalid_config_fails_with_its_exact_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("invalid-") || !name.ends_with(".yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expected.is_empty(), "{name} has no # expect: line");
        let out = Command::new(MEDIC)
            .args(["check-config"])
            .arg(&path)
            .env_remove("MEDIC_TEST_DEFINITELY_UNSET")
            .output()
            .expect("run medic");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name} should be invalid; stderr:\n{stderr}"
        );
        let reported: Vec<&str> = stderr.lines().skip(1).map(str::trim).collect();
        assert_eq!(reported, expected, "{name}: wrong errors");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} invalid configs found");
}

#[test]
fn valid_configs_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("valid-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let out = Command::new(MEDIC)
            .args(["check-config"])
            .arg(&path)
            .output()
            .expect("run medic");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for summary in text.lines().filter_map(|l| l.strip_prefix("# summary: ")) {
            assert!(stdout.contains(summary), "{name}: {stdout}");
        }
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn config_file_flag_is_used_when_no_argument_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yml");
    std::fs::write(&path, "checks:\n  - name: a\n    tcp: {address: nope}\n").unwrap();
    let out = Command::new(MEDIC)
        .args(["check-config", "--config.file"])
        .arg(&path)
        .output()
        .expect("run medic");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(r#"checks[0] "a": tcp.address "nope" is not host:port"#));
}
