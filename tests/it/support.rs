//! Test support: start the real medic binary on a free port, real HTTP targets that can be
//! switched, and waiting on conditions with deadlines (never bare sleeps).

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

pub const MEDIC: &str = env!("CARGO_BIN_EXE_medic");

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running medic process with its own temp dir; killed on drop.
pub struct Medic {
    pub child: Option<Child>,
    pub state_url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub client: reqwest::Client,
    /// A file descriptor limit (soft and hard) set on the process before it starts.
    pub fd_limit: Option<u64>,
}

impl Medic {
    /// Writes `config` (with `{{port}}` replaced by medic's port) and starts medic on it.
    pub async fn start(config: &str) -> Medic {
        Self::start_with(config, &[]).await
    }

    pub async fn start_with(config: &str, extra_args: &[&str]) -> Medic {
        let mut medic = Self::spawn_unready(config, extra_args, None);
        medic.wait_ready().await;
        medic
    }

    /// Starts medic without waiting for `/-/ready`; `state_url` defaults to a SQLite file in
    /// the temp dir.
    pub fn spawn_unready(config: &str, extra_args: &[&str], state_url: Option<String>) -> Medic {
        let mut medic = Self::prepare(config, state_url);
        medic.spawn(extra_args);
        medic
    }

    /// Starts medic with at most `fds` file descriptors (soft and hard limit), ready.
    pub async fn start_with_fd_limit(config: &str, fds: u64) -> Medic {
        let mut medic = Self::prepare(config, None);
        medic.fd_limit = Some(fds);
        medic.spawn(&[]);
        medic.wait_ready().await;
        medic
    }

    /// Its temp dir, port and config, not started.
    fn prepare(config: &str, state_url: Option<String>) -> Medic {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config_path = dir.path().join("medic.yml");
        std::fs::write(&config_path, config.replace("{{port}}", &port.to_string()))
            .expect("write config");
        let state_url =
            state_url.unwrap_or_else(|| format!("sqlite://{}/medic.db", dir.path().display()));
        Medic {
            child: None,
            state_url,
            port,
            log_path: dir.path().join("medic.log"),
            dir,
            config_path,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            fd_limit: None,
        }
    }

    /// Waits until medic answers on its port (ready or not).
    pub async fn wait_up(&mut self) {
        let url = self.url("/-/healthy");
        let client = self.client.clone();
        wait_for("medic to answer", Duration::from_secs(30), || async {
            let r = client.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    pub fn spawn(&mut self, extra_args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut command = Command::new(MEDIC);
        if let Some(fds) = self.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        fds,
                        fds,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = command
            .arg("--config.file")
            .arg(&self.config_path)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--state.url")
            .arg(&self.state_url)
            .args(extra_args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("start medic");
        self.child = Some(child);
    }

    pub async fn wait_ready(&mut self) {
        let url = self.url("/-/ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("medic exited early with {status}:\n{}", self.logs());
                }
            }
            if let Ok(r) = self.client.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("medic not ready in time:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal");
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("medic did not exit in time:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(
            &self.config_path,
            config.replace("{{port}}", &self.port.to_string()),
        )
        .expect("write config");
    }

    /// A GET. One that fails before an answer is tried once more: a pooled keep-alive
    /// connection the server closed as idle at the moment it was reused resets, which says
    /// nothing about medic (and a GET is safe to repeat).
    pub async fn get(&self, path: &str) -> (u16, String) {
        match self.try_get(path).await {
            Ok(answer) => answer,
            Err(first) => self
                .try_get(path)
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e} (first try: {first})")),
        }
    }

    async fn try_get(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        let r = self.client.get(self.url(path)).send().await?;
        let code = r.status().as_u16();
        Ok((code, r.text().await?))
    }

    pub async fn post(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .post(self.url(path))
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        (code, r.text().await.expect("the response body"))
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let (_, body) = self.get(path).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// A scrape of `/metrics`; one that fails fails the test, so a missing series is never a
    /// failed scrape.
    pub async fn metrics(&self) -> String {
        let (code, text) = self.get("/metrics").await;
        assert_eq!(code, 200, "GET /metrics: {text}");
        text
    }

    /// The check's status from the JSON API.
    pub async fn status(&self, check: &str) -> String {
        let v = self.json(&format!("/api/v1/checks/{check}")).await;
        v["status"].as_str().unwrap_or("").to_string()
    }

    /// Waits until the check has been probed and its status (after thresholds) is `want`.
    pub async fn wait_status(&self, check: &str, want: &str) -> serde_json::Value {
        let what = format!("check {check} to be {want}");
        wait_for(&what, Duration::from_secs(20), || async {
            let v = self.json(&format!("/api/v1/checks/{check}")).await;
            (v["status"] == want && v["last_run"].is_string()).then_some(v)
        })
        .await
    }

    /// The value of one sample line in `/metrics`, e.g. `medic_check_success{check="web"}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics().await, series)
    }

    /// Waits (at most `timeout`) until `series` is at least `min`, and returns its value.
    pub async fn wait_metric(&self, series: &str, min: f64, timeout: Duration) -> f64 {
        wait_for(&format!("{series} >= {min}"), timeout, || async {
            self.metric(series).await.filter(|v| *v >= min)
        })
        .await
    }
}

impl Drop for Medic {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

/// How a [`Target`] answers.
#[derive(Clone, Debug)]
pub struct Mode {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

/// A real HTTP server whose answers a test can switch.
pub struct Target {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<Mutex<Vec<String>>>,
    /// Whether `/flap` alternates; otherwise it answers like any other path.
    flapping: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Target {
    pub async fn start() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind target");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(Mutex::new(Mode {
            status: 200,
            body: "ok".into(),
            delay: Duration::ZERO,
        }));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let flaps = Arc::new(AtomicU64::new(0));
        let flapping = Arc::new(AtomicBool::new(true));
        let flapping_on = flapping.clone();
        let (m, h) = (mode.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (m, h, f, on) = (m.clone(), h.clone(), flaps.clone(), flapping_on.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (m, h, f, on) = (m.clone(), h.clone(), f.clone(), on.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let line = format!("{} {}", req.method(), req.uri());
                            let path = req.uri().path().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let hit = format!("{line} {}", String::from_utf8_lossy(&body));
                            h.lock().unwrap().push(hit.trim_end().to_string());
                            // Control paths, as a recovery action would use them.
                            let control = Mode {
                                status: 200,
                                body: "done".into(),
                                delay: Duration::ZERO,
                            };
                            let mode = match path.as_str() {
                                "/fix" => {
                                    *m.lock().unwrap() = Mode {
                                        status: 200,
                                        body: "ok".into(),
                                        delay: Duration::ZERO,
                                    };
                                    control
                                }
                                "/noop" => control,
                                // A flapping service: down on every other request.
                                "/flap" if on.load(Ordering::SeqCst) => Mode {
                                    status: if f.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                                        500
                                    } else {
                                        200
                                    },
                                    ..control
                                },
                                _ => m.lock().unwrap().clone(),
                            };
                            if !mode.delay.is_zero() {
                                tokio::time::sleep(mode.delay).await;
                            }
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(mode.body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(mode.status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Target {
            addr,
            mode,
            hits,
            flapping,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, status: u16, body: &str, delay: Duration) {
        *self.mode.lock().unwrap() = Mode {
            status,
            body: body.into(),
            delay,
        };
    }

    pub fn stop_flapping(&self) {
        self.flapping.store(false, Ordering::SeqCst);
    }

    pub fn healthy(&self) {
        self.set(200, "ok", Duration::ZERO);
    }

    /// How many requests went to a path that contains `path`.
    pub fn hit_count(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.contains(path)).count()
    }

    /// Requests per path (without the leading `/`), readable from another task.
    pub fn hit_counter(
        &self,
    ) -> impl Fn() -> std::collections::BTreeMap<String, usize> + Send + Sync + 'static {
        let hits = self.hits.clone();
        move || {
            let mut counts = std::collections::BTreeMap::new();
            for hit in hits.lock().unwrap().iter() {
                if let Some(path) = hit.split_whitespace().nth(1) {
                    *counts
                        .entry(path.trim_start_matches('/').to_string())
                        .or_default() += 1;
                }
            }
            counts
        }
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes an executable script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Waits until the process `pid` is gone (or a zombie nobody reaped): killed, not just orphaned.
pub async fn wait_process_gone(pid: i32, what: &str) {
    wait_for(what, Duration::from_secs(5), || async {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        (!alive).then_some(())
    })
    .await;
}

/// A file from tests/testdata.
pub fn testdata(path: &str) -> Vec<u8> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// An authorized Alertmanager notification to medic's webhook, ready to send.
pub fn alert_post(medic: &Medic, token: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    medic
        .client
        .post(medic.url("/api/v1/alerts"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body)
}

/// A program the test started (Prometheus, Alertmanager), killed when dropped.
pub struct Daemon(Child);

impl Daemon {
    /// Starts `program` with its output in `log`.
    pub fn start(program: &str, args: &[String], log: &Path) -> Daemon {
        let log = std::fs::File::create(log).expect("daemon log");
        Daemon(
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log clone"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} (Debian packages prometheus, prometheus-alertmanager; scripts/test.sh installs them): {e}")
                }),
        )
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus on a free port, scraping and evaluating every second.
pub struct Prometheus {
    pub port: u16,
    _daemon: Daemon,
    client: reqwest::Client,
}

impl Prometheus {
    /// Scrapes `targets` (as job `medic`) and evaluates `rule_files`, every second.
    pub async fn start(dir: &Path, targets: &[u16], rule_files: &[PathBuf]) -> Prometheus {
        let port = free_port();
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|r| format!("'{}'", r.display()))
            .collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n  - job_name: medic\n    static_configs: [{{targets: [{}]}}]\n",
                rules.join(", "),
                targets.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let d = dir.display();
        let daemon = Daemon::start(
            "prometheus",
            &[
                format!("--config.file={d}/prometheus.yml"),
                format!("--storage.tsdb.path={d}/prometheus-data"),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            &dir.join("prometheus.log"),
        );
        let prometheus = Prometheus {
            port,
            _daemon: daemon,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let client = prometheus.client.clone();
        wait_for(
            "Prometheus to be ready",
            Duration::from_secs(60),
            || async { (client.get(&ready).send().await.ok()?.status() == 200).then_some(()) },
        )
        .await;
        prometheus
    }

    /// An instant query's result vector; an error answer fails the test.
    pub async fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
        );
        let r = self
            .client
            .get(&url)
            .send()
            .await
            .expect("Prometheus answers");
        let body = r.text().await.expect("Prometheus' body");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `q` returns something; returns it.
    pub async fn wait_query(&self, q: &str, timeout: Duration) -> Vec<serde_json::Value> {
        wait_for(q, timeout, || async {
            let r = self.query(q).await;
            (!r.is_empty()).then_some(r)
        })
        .await
    }

    /// Waits until the alert `name` fires with these labels (`k="v"` matchers, comma-joined).
    pub async fn wait_firing(&self, name: &str, labels: &str, timeout: Duration) {
        let sep = if labels.is_empty() { "" } else { "," };
        let q = format!(r#"ALERTS{{alertname="{name}",alertstate="firing"{sep}{labels}}}"#);
        self.wait_query(&q, timeout).await;
    }
}

/// A real Alertmanager on a free loopback port, sending everything to `receiver` (grouped by
/// alertname and chain, after 1 s, again only after `repeat_interval`).
pub struct Alertmanager {
    pub port: u16,
    _daemon: Daemon,
    pub client: reqwest::Client,
}

impl Alertmanager {
    pub async fn start(dir: &Path, repeat_interval: &str, receiver: &str) -> Alertmanager {
        Self::start_on(free_port(), dir, repeat_interval, receiver).await
    }

    /// [`Alertmanager::start`] on a port chosen beforehand (medic's config names it).
    pub async fn start_on(
        port: u16,
        dir: &Path,
        repeat_interval: &str,
        receiver: &str,
    ) -> Alertmanager {
        let config = format!(
            r#"global:
  resolve_timeout: 10s
route:
  receiver: people
  group_by: [alertname, chain]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: {repeat_interval}
receivers:
  - name: people
    webhook_configs:
      - url: {receiver}
        send_resolved: true
"#
        );
        std::fs::write(dir.join("alertmanager.yml"), config).expect("write am config");
        let d = dir.display();
        let daemon = Daemon::start(
            "prometheus-alertmanager",
            &[
                format!("--config.file={d}/alertmanager.yml"),
                format!("--storage.path={d}/am"),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".into(),
            ],
            &dir.join("alertmanager.log"),
        );
        let am = Alertmanager {
            port,
            _daemon: daemon,
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        };
        let ready = am.url("/-/ready");
        let client = am.client.clone();
        wait_for(
            "Alertmanager to be ready",
            Duration::from_secs(60),
            || async { (client.get(&ready).send().await.ok()?.status() == 200).then_some(()) },
        )
        .await;
        am
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A list from Alertmanager's API. No answer, an error status or anything but a JSON list
    /// fails the test: an empty list is Alertmanager saying so, never a dead Alertmanager.
    pub async fn get(&self, path: &str) -> Vec<serde_json::Value> {
        let url = self.url(path);
        let r = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = r.status();
        let text = r
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        assert!(status.is_success(), "GET {url}: {status}: {text}");
        serde_json::from_str::<Vec<serde_json::Value>>(&text)
            .unwrap_or_else(|e| panic!("GET {url}: not a JSON list: {e}: {text}"))
    }

    /// Posts alerts as Prometheus does (`POST /api/v2/alerts`); a refusal fails the test.
    pub async fn post_alerts(&self, alerts: serde_json::Value) {
        let url = self.url("/api/v2/alerts");
        let r = self
            .client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(alerts.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert!(r.status().is_success(), "POST {url}: {}", r.status());
    }
}
