//! Nobody can starve the server: while ten times `--web.max-connections` is held open by idle
//! keep-alive clients, slow-loris clients or both (each reconnecting as soon as medic closes
//! it), `/metrics`, `/-/healthy`, `/-/ready` and the webhook answer within 1 s, medic holds
//! no more sockets than the cap and a small margin, and what it shed is counted by reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::support::{metric_value, testdata, wait_for, Medic};

const CAP: usize = 20;
/// Sockets medic may hold past the cap (`server::OVER_CAP`), and a few more it holds anyway
/// (the listener; a connection accepted while counting).
const OVER_CAP: usize = 32 + 4;
/// How long an answer may take under a flood.
const WITHIN: Duration = Duration::from_secs(1);

/// One flood at a time: three at once on a small machine would test the machine.
static ONE_FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Default)]
struct FloodStats {
    /// Client connections open now.
    open: AtomicUsize,
    /// Answers idle clients got before they went idle.
    answers: AtomicU64,
    /// Connections medic closed under a client.
    closed: AtomicU64,
}

/// Keeps `open` counting a connection for as long as it lives.
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn new(open: &'a AtomicUsize) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Held(open)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Makes one request, reads the answer and keeps the connection open.
    Idle,
    /// Sends a request line and a header, then a byte every 200 ms, never finishing.
    Slowloris,
    /// Sends nothing: a request that never starts, or a TLS handshake that never does.
    Silent,
}

/// Clients holding connections to medic, on a thread and runtime of their own so that the
/// probes' timing is not theirs.
struct Flood {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<FloodStats>,
}

impl Flood {
    /// Starts `count` clients of each kind.
    fn start(port: u16, clients: &[(Kind, usize)]) -> Flood {
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(FloodStats::default());
        let kinds: Vec<Kind> = clients
            .iter()
            .flat_map(|&(kind, count)| std::iter::repeat_n(kind, count))
            .collect();
        let thread = {
            let stats = stats.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("flood runtime");
                runtime.block_on(async move {
                    let mut clients = tokio::task::JoinSet::new();
                    for kind in kinds {
                        clients.spawn(client(port, kind, stats.clone(), stopped.clone()));
                    }
                    while clients.join_next().await.is_some() {}
                });
            })
        };
        Flood {
            stop,
            thread: Some(thread),
            stats,
        }
    }

    /// Waits until `n` client connections are open at once.
    async fn wait_open(&self, n: usize) {
        wait_for(
            &format!("{n} flood connections open"),
            Duration::from_secs(30),
            || async { (self.stats.open.load(Ordering::SeqCst) >= n).then_some(()) },
        )
        .await;
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One flood client: holds a connection the way `kind` does and opens a new one as soon as
/// medic closes it, until `stop`.
async fn client(port: u16, kind: Kind, stats: Arc<FloodStats>, mut stop: watch::Receiver<bool>) {
    const DRIBBLE: &[u8] = b"x-dribble: 1\r\n";
    let mut buf = [0u8; 1024];
    while !*stop.borrow() {
        let mut stream = tokio::select! {
            connected = TcpStream::connect(("127.0.0.1", port)) => match connected {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _held = Held::new(&stats.open);
        let first: &[u8] = match kind {
            Kind::Idle => b"GET /-/healthy HTTP/1.1\r\nhost: medic\r\n\r\n",
            Kind::Slowloris => b"GET /-/healthy HTTP/1.1\r\nhost: medic\r\n",
            Kind::Silent => b"",
        };
        if stream.write_all(first).await.is_err() {
            continue;
        }
        let mut received = Vec::new();
        let mut answered = false;
        let mut dribble = tokio::time::interval(Duration::from_millis(200));
        dribble.reset();
        let mut next_byte = 0;
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        received.extend_from_slice(&buf[..n]);
                        if !answered && received.windows(9).any(|w| w == b"healthy.\n") {
                            answered = true;
                            stats.answers.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                },
                _ = dribble.tick(), if matches!(kind, Kind::Slowloris) => {
                    let byte = DRIBBLE[next_byte % DRIBBLE.len()];
                    next_byte += 1;
                    if stream.write_all(&[byte]).await.is_err() {
                        break;
                    }
                }
                _ = stop.changed() => return,
            }
        }
        stats.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A client that opens a new connection for every request, as a scraper after its idle
/// connection was shed must.
fn fresh_client() -> reqwest::Client {
    fresh_client_builder().build().expect("client")
}

fn fresh_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
}

/// Sockets `pid` holds now (the listener, accepted connections, any client sockets).
fn sockets_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// Sends one request on a fresh connection; returns how long the whole answer took.
async fn timed(request: reqwest::RequestBuilder, what: &str) -> Duration {
    let started = Instant::now();
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e} after {:?}", started.elapsed()));
    let status = response.status();
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: body: {e} after {:?}", started.elapsed()));
    let took = started.elapsed();
    assert_eq!(status, 200, "{what}: {body}");
    took
}

/// The answer times of each endpoint, and the most sockets medic held while they were asked.
#[derive(Default)]
struct Probed {
    times: BTreeMap<&'static str, Vec<Duration>>,
    most_sockets: usize,
}

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (endpoint, times) in &self.times {
            let mut sorted = times.clone();
            sorted.sort();
            let median = sorted[sorted.len() / 2];
            let max = sorted[sorted.len() - 1];
            write!(f, "{endpoint} median {median:.0?} max {max:.0?}; ")?;
        }
        write!(f, "medic held at most {} sockets", self.most_sockets)
    }
}

/// Asks each endpoint `rounds` times, 100 ms apart, each on a new connection; every answer
/// must come within [`WITHIN`].
async fn probe_endpoints(
    client: &reqwest::Client,
    base: &str,
    medic: &Medic,
    rounds: usize,
) -> Probed {
    let alert = testdata("alertmanager/alertmanager-0.25-firing.raw.json");
    let mut probed = Probed::default();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..rounds {
        every.tick().await;
        for endpoint in ["/metrics", "/-/healthy", "/-/ready", "POST /api/v1/alerts"] {
            let request = match endpoint.strip_prefix("POST ") {
                // A loopback client needs no credential; no route matches: 200.
                Some(path) => client
                    .post(format!("{base}{path}"))
                    .header("Content-Type", "application/json")
                    .body(alert.clone()),
                None => client.get(format!("{base}{endpoint}")),
            };
            let took = timed(request, endpoint).await;
            assert!(
                took < WITHIN,
                "{endpoint} took {took:?} under the flood\n{}",
                medic.logs()
            );
            probed.times.entry(endpoint).or_default().push(took);
            probed.most_sockets = probed.most_sockets.max(sockets_of(medic.pid()));
        }
    }
    probed
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body")
}

fn shed(metrics: &str, reason: &str) -> f64 {
    let series = format!("medic_web_connections_shed_total{{reason=\"{reason}\"}}");
    metric_value(metrics, &series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

/// medic with a cap of [`CAP`] on plain HTTP.
async fn capped_medic() -> Medic {
    Medic::start_with("checks: []\n", &["--web.max-connections", &CAP.to_string()]).await
}

/// Checks both shed series start at 0, holds ten times the cap open with `clients`, asks every
/// endpoint under it (at `base`, with `client`), and returns the shed counts by reason.
async fn under_flood(
    medic: &Medic,
    client: &reqwest::Client,
    base: &str,
    clients: &[(Kind, usize)],
) -> (f64, f64) {
    let first = scrape(client, base).await;
    assert_eq!(shed(&first, "idle"), 0.0, "{first}");
    assert_eq!(shed(&first, "reading_headers"), 0.0, "{first}");

    let flood = Flood::start(medic.port, clients);
    // Ten times the cap open at once. The listen backlog alone would hold as many, so wait
    // for medic to shed too.
    flood.wait_open(10 * CAP).await;
    wait_for(
        "medic to shed past the cap",
        Duration::from_secs(30),
        || async {
            let text = scrape(client, base).await;
            (shed(&text, "idle") + shed(&text, "reading_headers") >= CAP as f64).then_some(())
        },
    )
    .await;
    let closed_before = flood.stats.closed.load(Ordering::SeqCst);
    let probed = probe_endpoints(client, base, medic, 20).await;
    let closed_while_probing = flood.stats.closed.load(Ordering::SeqCst) - closed_before;
    assert!(
        closed_while_probing >= CAP as u64,
        "the flood was not being shed while medic was asked: {closed_while_probing} closed"
    );
    assert!(
        probed.most_sockets <= CAP + OVER_CAP,
        "medic held {} sockets under a cap of {CAP}",
        probed.most_sockets
    );
    let text = scrape(client, base).await;
    let open = metric_value(&text, "medic_web_connections_open").expect("open gauge");
    assert!(open <= (CAP + OVER_CAP) as f64, "{open} open");
    eprintln!(
        "{clients:?} at cap {CAP}: {probed}; flood clients got {} answers and had {} \
         connections closed ({closed_while_probing} while medic was asked), {} open at the end",
        flood.stats.answers.load(Ordering::SeqCst),
        flood.stats.closed.load(Ordering::SeqCst),
        flood.stats.open.load(Ordering::SeqCst),
    );
    drop(flood);
    (shed(&text, "idle"), shed(&text, "reading_headers"))
}

#[tokio::test]
async fn idle_keep_alive_clients_at_ten_times_the_cap_starve_nothing() {
    let _one = ONE_FLOOD.lock().await;
    let medic = capped_medic().await;
    let (idle, _) = under_flood(
        &medic,
        &fresh_client(),
        &medic.url(""),
        &[(Kind::Idle, 10 * CAP)],
    )
    .await;
    assert!(idle >= CAP as f64, "{idle} idle connections shed");
}

#[tokio::test]
async fn slow_loris_clients_at_ten_times_the_cap_starve_nothing() {
    let _one = ONE_FLOOD.lock().await;
    let medic = capped_medic().await;
    let (_, reading) = under_flood(
        &medic,
        &fresh_client(),
        &medic.url(""),
        &[(Kind::Slowloris, 10 * CAP)],
    )
    .await;
    assert!(
        reading >= CAP as f64,
        "{reading} header-sending connections shed"
    );
}

#[tokio::test]
async fn a_mix_of_idle_and_slow_clients_starves_nothing() {
    let _one = ONE_FLOOD.lock().await;
    let medic = capped_medic().await;
    let (idle, reading) = under_flood(
        &medic,
        &fresh_client(),
        &medic.url(""),
        &[(Kind::Idle, 5 * CAP), (Kind::Slowloris, 5 * CAP)],
    )
    .await;
    assert!(
        idle > 0.0 && reading > 0.0,
        "shed: {idle} idle, {reading} reading headers"
    );
}

/// TLS connections count the same: a handshake that never starts holds a slot only until shed.
#[tokio::test]
async fn stalled_tls_handshakes_at_ten_times_the_cap_starve_nothing() {
    let _one = ONE_FLOOD.lock().await;
    let certs = tempfile::tempdir().unwrap();
    crate::web::certificates(certs.path(), "shed");
    let web = certs.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: shed.crt\n  key_file: shed.key\n",
    )
    .unwrap();
    let medic = Medic::spawn_unready(
        "checks: []\n",
        &[
            "--web.config.file",
            web.to_str().unwrap(),
            "--web.max-connections",
            &CAP.to_string(),
        ],
        None,
    );
    let ca = std::fs::read(certs.path().join("shed-ca.crt")).unwrap();
    let client = fresh_client_builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", medic.port);
    wait_for("medic ready over TLS", Duration::from_secs(30), || async {
        let r = client.get(format!("{base}/-/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let (_, reading) = under_flood(&medic, &client, &base, &[(Kind::Silent, 10 * CAP)]).await;
    assert!(reading >= CAP as f64, "{reading} stalled handshakes shed");
}

/// Three times as many hanging probes as file descriptors medic may open: past the budget the
/// limit leaves for probes they wait for room, and /metrics keeps answering throughout. Without
/// the budget every probe past the limit, and every accept, failed with EMFILE.
#[tokio::test]
async fn probes_past_the_file_descriptor_budget_wait_and_metrics_keeps_answering() {
    const FDS: u64 = 700;
    // (700 - 512 kept) / 2, as medic computes it.
    const BUDGET: usize = 94;
    // A server that accepts and never answers: each probe holds its socket until its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut config = String::from("checks:\n");
    for i in 0..3 * FDS {
        config.push_str(&format!(
            "  - {{name: h{i}, interval: 5s, timeout: 4s, http: {{url: 'http://{addr}/{i}'}}}}\n"
        ));
    }
    let medic = Medic::start_with_fd_limit(&config, FDS).await;
    let client = fresh_client();
    let mut most = 0;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        every.tick().await;
        let answer = client
            .get(medic.url("/metrics"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("GET /metrics under the probe burst: {e}\n{}", medic.logs())
            });
        assert_eq!(answer.status(), 200);
        most = most.max(sockets_of(medic.pid()));
    }
    assert!(
        (BUDGET / 2..=BUDGET + 40).contains(&most),
        "at most {most} sockets open (probe budget {BUDGET})"
    );
    wait_for(
        "the warning that probes wait",
        Duration::from_secs(5),
        || async { medic.logs().contains("probes wait for room").then_some(()) },
    )
    .await;
}
