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

/// Chromium's DOM of `url`, as a person's browser builds it.
async fn dom(url: String) -> String {
    let out = tokio::task::spawn_blocking(move || chromium(&["--dump-dom".to_string(), url]))
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` at `width`; copied to `$MEDIC_SCREENSHOT_DIR/name` when set (how
/// docs/status-*.png are made).
async fn screenshot(url: String, width: u32, height: u32, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join(name);
    let args = vec![
        format!("--screenshot={}", shot.display()),
        format!("--window-size={width},{height}"),
        "--hide-scrollbars".to_string(),
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
        "{name}: {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("MEDIC_SCREENSHOT_DIR") {
        std::fs::copy(&shot, std::path::Path::new(&keep).join(name)).unwrap();
    }
}

/// The `<article>` of one check on `/`.
fn card<'a>(dom: &'a str, check: &str) -> &'a str {
    let start = dom
        .find(&format!("data-check=\"{check}\""))
        .unwrap_or_else(|| panic!("no card for {check}: {dom}"));
    let end = dom[start..]
        .find("</article>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[tokio::test]
async fn status_pages_show_failing_checks_first_with_pictures_runs_and_forecasts() {
    let dir = tempfile::tempdir().unwrap();
    // Grows by one each probe: the prediction breaches its threshold soon.
    let disk = script(
        dir.path(),
        "disk",
        &format!(
            "n=$(cat '{f}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{f}'; echo \"<script>alert(1)</script> | used=$((n*3))\"; exit 2",
            f = dir.path().join("n").display()
        ),
    );
    let fix = script(
        dir.path(),
        "fix",
        "echo '<i>hostile</i> step output'; exit 0",
    );
    let mut config = format!(
        r#"defaults: {{history_size: 6}}
checks:
  - name: disk
    interval: 300ms
    recovery: nudge
    command: {{program: '{disk}'}}
  - name: warn
    interval: 300ms
    command: {{program: /bin/sh, args: ['-c', 'echo slow; exit 1']}}
recovery:
  chains:
    nudge:
      steps:
        - name: poke
          exec: {{program: '{fix}'}}
          max_attempts: 1
predictions:
  - name: disk_used
    check: disk
    measurement: used
    horizons: [1m, 5m]
    breach_above: 250
"#,
        disk = disk.display(),
        fix = fix.display()
    );
    // 150 more: two pages of 100.
    for i in 0..150 {
        config.push_str(&format!(
            "  - name: bulk{i}\n    interval: 1h\n    command: {{program: /bin/true}}\n"
        ));
    }
    // The bulk checks belong under `checks:`: put them before `recovery:`.
    let (head, tail) = config.split_once("recovery:\n").unwrap();
    let (tail, bulk) = tail.split_once("  - name: bulk0").unwrap();
    let config = format!("{head}  - name: bulk0{bulk}recovery:\n{tail}");
    let medic = Medic::start(&config).await;
    // A run with a step (it may still be verifying).
    let run_id = wait_for("a recovery step", Duration::from_secs(30), || async {
        let v = medic.json("/api/v1/recoveries").await;
        v["attempts"]
            .as_array()?
            .iter()
            .find_map(|a| a["run_id"].as_str().map(str::to_string))
    })
    .await;
    wait_for("a breach forecast", Duration::from_secs(60), || async {
        let v = medic.json("/api/v1/predictions").await;
        v["predictions"][0]["breach_seconds"].as_f64().map(|_| ())
    })
    .await;
    wait_for("a full history", Duration::from_secs(10), || async {
        let v = medic.json("/api/v1/checks/disk").await;
        (v["history"].as_array()?.len() == 6).then_some(())
    })
    .await;

    // The forecast moves with every probe (its model is chosen again as errors come in): wait
    // until the page, as the browser renders it, draws a breach, and judge that rendering.
    let index = wait_for(
        "the page to draw a breach",
        Duration::from_secs(60),
        || async {
            let index = dom(medic.url("/")).await;
            (index.contains(r#"class="breach""#) && index.contains(r#"class="threshold""#))
                .then_some(index)
        },
    )
    .await;
    // The banner, then failing checks first: critical, then warning, then the rest in
    // natural order (bulk2 before bulk10).
    assert!(
        index.contains(r#"id="overall""#) && index.contains("C critical"),
        "{index}"
    );
    let pos = |needle: &str| {
        index
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} missing: {index}"))
    };
    assert!(pos(r#"data-check="disk""#) < pos(r#"data-check="warn""#));
    assert!(pos(r#"data-check="warn""#) < pos(r#"data-check="bulk0""#));
    assert!(pos(r#"data-check="bulk2""#) < pos(r#"data-check="bulk10""#));
    assert!(index.contains("page 1 of 2"), "{index}");
    assert_eq!(
        index.matches("<article class=\"check").count(),
        100 + 1,
        "100 checks and one prediction"
    );
    // One mark per probe the history keeps.
    let disk_card = card(&index, "disk");
    assert_eq!(disk_card.matches("class=\"mark ").count(), 6, "{disk_card}");
    assert!(disk_card.contains("failing since"), "{disk_card}");
    assert!(disk_card.contains("last hour"), "{disk_card}");
    assert!(disk_card.contains("href=\"/runs/"), "{disk_card}");
    // The chart: threshold line and breach marker.
    let chart_at = pos(r#"data-prediction="disk_used""#);
    let chart = &index[chart_at..];
    assert!(
        chart.contains(r#"class="threshold""#) && chart.contains(r#"class="breach""#),
        "{}",
        &chart[..chart.len().min(4000)]
    );
    assert!(chart.contains(r#"class="band""#) || chart.contains(r#"class="forecast""#));
    // Hostile check output and step output stay text.
    assert!(
        !index.contains("<script>") && !index.contains("<i>hostile"),
        "{index}"
    );
    assert!(
        index.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{index}"
    );

    // Every run link resolves to its page.
    let mut links: Vec<&str> = index
        .match_indices("href=\"/runs/")
        .map(|(i, _)| {
            let rest = &index[i + 6..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    links.sort();
    links.dedup();
    assert!(!links.is_empty());
    for link in &links {
        let (code, body) = medic.get(link).await;
        assert_eq!(code, 200, "{link}: {body}");
    }

    // Filters, search, paging.
    let crit = dom(medic.url("/?status=critical")).await;
    assert!(crit.contains(r#"data-check="disk""#) && !crit.contains(r#"data-check="warn""#));
    assert!(!crit.contains(r#"data-check="bulk1""#), "{crit}");
    let search = dom(medic.url("/?q=BULK14")).await;
    assert_eq!(
        search.matches("data-check=").count(),
        11,
        "bulk14, bulk140..149"
    );
    let page2 = dom(medic.url("/?page=2")).await;
    assert!(page2.contains("page 2 of 2") && page2.contains(r#"data-check="bulk149""#));
    assert!(!page2.contains(r#"data-check="disk""#));

    // The check's page and the run's page.
    let check = dom(medic.url("/checks/disk")).await;
    assert_eq!(check.matches("<tr class=\"probe\"").count(), 6, "{check}");
    assert!(check.contains("href=\"/runs/") && !check.contains("<script>"));
    let run = dom(medic.url(&format!("/runs/{run_id}"))).await;
    assert!(run.contains("poke") && run.contains("check:disk"), "{run}");
    assert!(
        run.contains(r#"class="step "#) || run.contains(r#"class="decision "#),
        "{run}"
    );
    assert!(!run.contains("<i>hostile"), "{run}");
    let (code, body) = medic.get("/checks/%3Cscript%3Enope").await;
    assert_eq!(code, 404);
    assert!(
        body.contains("&lt;script&gt;nope") && !body.contains("<script>"),
        "{body}"
    );
    assert_eq!(medic.get("/runs/no-such-run").await.0, 404);

    // What the README shows: phone and desktop.
    screenshot(medic.url("/"), 390, 1400, "status-page.png").await;
    screenshot(medic.url("/"), 1280, 1000, "status-desktop.png").await;
    screenshot(medic.url("/checks/disk"), 1280, 1000, "status-check.png").await;
    screenshot(
        medic.url(&format!("/runs/{run_id}")),
        390,
        1000,
        "status-run.png",
    )
    .await;
}
