//! The status page in a real browser: Debian's headless Chromium renders `GET /`, and what a
//! person would see is checked: checks, predictions, recoveries, and check output shown as
//! text, never run as markup.

use std::process::Command;
use std::time::Duration;

use crate::support::{script, wait_for, Medic};

fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium (Debian package chromium) must be installed: scripts/test.sh installs it")
}

#[tokio::test]
async fn the_status_page_renders_in_a_browser_and_escapes_check_output() {
    let dir = tempfile::tempdir().unwrap();
    let xss = script(
        dir.path(),
        "xss",
        "echo '<script>document.title=\"pwned\"</script><b>bold</b> | queue=7'; exit 2",
    );
    let medic = Medic::start(&format!(
        r#"checks:
  - name: xss
    interval: 500ms
    recovery: nudge
    command: {{program: '{}'}}
recovery:
  chains:
    nudge:
      steps:
        - name: poke
          exec: {{program: /bin/true}}
          max_attempts: 1
predictions:
  - name: queue_depth
    check: xss
    measurement: queue
    horizons: [1h]
    breach_above: 100
"#,
        xss.display()
    ))
    .await;
    wait_for("a recovery attempt", Duration::from_secs(20), || async {
        let v = medic.json("/api/v1/recoveries").await;
        v["attempts"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| ())
    })
    .await;
    let url = medic.url("/");
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom".to_string(), url]))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("<title>medic: critical</title>"), "{dom}");
    assert!(dom.contains("xss") && dom.contains("critical"), "{dom}");
    assert!(
        dom.contains(
            "&lt;script&gt;document.title=\"pwned\"&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;"
        ),
        "{dom}"
    );
    assert!(
        !dom.contains("<script>") && !dom.contains("<b>bold"),
        "check output became markup: {dom}"
    );
    assert!(dom.contains("queue_depth"), "{dom}");
    assert!(dom.contains("poke") && dom.contains("nudge"), "{dom}");
    assert!(dom.contains(r#"<meta http-equiv="refresh""#));

    // A phone-sized screenshot, as the README shows it.
    let shot = dir.path().join("page.png");
    let url = medic.url("/");
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=412,900".to_string(),
        url,
    ];
    let out = tokio::task::spawn_blocking(move || chromium(&args))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("MEDIC_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
