#!/usr/bin/env bash
# Soak: medic under steady load for a long while; RSS and open file descriptors must stay flat.
#   - 1,000 HTTP checks at 1 s against a local nginx (1,000 probes/s, a fresh connection each);
#   - /metrics scraped every second, as Prometheus would;
#   - the Alertmanager webhook posted 20 times a second (10 alerts each, 200 distinct alerts),
#     each alert routed to a chain whose exec step runs a real child process every 10 s.
# After a warm-up (history rings fill), RSS, fds and counters are sampled every minute; the last
# lines compare the end with the start. One structure grows by design for the first hour: each
# check's trend window (the API's `trend` covers the last hour) keeps 4 bytes a probe, in a
# ring that doubles as it fills, until it holds an hour; the allowance is 8 bytes a probe, about
# 0.5 MB a minute at 1,000 probes/s. Exit 1 when fds grew by more than 10, or RSS grew by more
# than that allowance plus 10%.
# Installs nginx-light as root if missing.
# Results are kept 2 minutes and pruned every 5, so the table is at its steady size from the
# second pruning on (10 minutes after start); the warm-up (11 minutes by default) covers it, as
# SQLite's page caches and the allocator's arenas settle with the table's size.
# Usage: scripts/soak.sh [soak seconds, default 600] [warm-up seconds, default 660]
# Output: also written to docs/soak.txt (or $BENCH_OUT), headed by the date, machine and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
warmup=${2:-660}

source scripts/lib/bench.sh
command -v nginx >/dev/null 2>&1 || install_debian nginx-light
bench_setup
bench_record soak "$@"
start_nginx

port=$(free_port)
{
  echo "web: {webhook: {bearer_token: soak-token}}"
  echo "defaults: {interval: 1s, timeout: 900ms}"
  echo "state: {retention: 2m}"
  echo "checks:"
  for i in $(seq 1 1000); do
    echo "  - {name: c$i, http: {url: 'http://127.0.0.1:$nginx_port/c$i'}}"
  done
  echo "recovery:"
  echo "  chains:"
  echo "    soak: {steps: [{name: touch, exec: {program: /bin/true, args: ['{{ labels.instance }}']}, max_attempts: 100000, cooldown: 10s}]}"
  echo "  routes:"
  echo "    - {matchers: ['alertname=\"Soak\"'], chain: soak}"
} > "$work/soak.yml"
"$medic_bin" --config.file "$work/soak.yml" --web.listen-address "127.0.0.1:$port" \
  --state.url "sqlite://$work/soak.db" --log.level warn 2> "$work/medic.log" &
pid=$!
pids+=($pid)
wait_http "http://127.0.0.1:$port/-/ready"

# Prometheus: a scrape every second.
(while sleep 1; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" || true; done) &
pids+=($!)
# Alertmanager: 20 notifications a second over one keep-alive connection.
python3 - "$port" > "$work/webhook.txt" 2>&1 <<'PY' &
import http.client, json, sys, time
port = int(sys.argv[1])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
sent = failed = 0
n = 0
next_at = time.monotonic()
while True:
    alerts = []
    for k in range(10):
        i = (n * 10 + k) % 200
        alerts.append({"status": "firing", "labels": {"alertname": "Soak", "instance": f"host{i}:9100"},
                       "annotations": {}, "startsAt": "2026-11-28T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                       "generatorURL": "http://prometheus/graph", "fingerprint": f"{i:016x}"})
    body = json.dumps({"receiver": "medic", "status": "firing", "alerts": alerts, "groupLabels": {},
                       "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                       "version": "4", "groupKey": "{}", "truncatedAlerts": 0})
    try:
        conn.request("POST", "/api/v1/alerts", body,
                     {"Content-Type": "application/json", "Authorization": "Bearer soak-token"})
        r = conn.getresponse(); r.read()
        sent += 1
        if r.status != 200:
            failed += 1
    except Exception:
        failed += 1
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    n += 1
    if n % 200 == 0:
        print(sent, failed, flush=True)
    next_at += 0.05
    time.sleep(max(0.0, next_at - time.monotonic()))
PY
pids+=($!)

metric_sum() { # sum of a metric family's samples matching a regex
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v re="$1" '$0 ~ re {s += $NF} END {printf "%d\n", s}'
}
fds() { ls "/proc/$pid/fd" | wc -l; }
sample() { # elapsed seconds
  printf '%8s %8.1f %6d %12d %10d %10d %8d %8d\n' "$1" "$(echo "$(rss_kb "$pid") / 1024" | bc -l)" \
    "$(fds)" "$(metric_sum '^medic_check_runs_total')" \
    "$(metric_sum '^medic_webhook_notifications_total')" "$(metric_sum '^medic_recovery_runs_total')" \
    "$(metric_sum '^medic_state_store_backlog_results')" "$(metric_sum '^medic_state_store_errors_total')"
}

echo "== soak: 1000 HTTP checks at 1 s, /metrics every 1 s, 20 webhook posts/s; warm-up ${warmup}s, then ${duration}s"
sleep "$warmup"
printf '%8s %8s %6s %12s %10s %10s %8s %8s\n' seconds "RSS MB" fds probes webhooks runs backlog "store errors"
rss0=$(rss_kb "$pid"); fd0=$(fds); c0=$(cpu_ticks "$pid"); probes0=$(metric_sum '^medic_check_runs_total')
sample 0
elapsed=0
while ((elapsed < duration)); do
  step=$((duration - elapsed < 60 ? duration - elapsed : 60))
  sleep "$step"
  elapsed=$((elapsed + step))
  kill -0 "$pid" 2>/dev/null || { echo "medic died:"; tail -n 20 "$work/medic.log"; exit 1; }
  sample "$elapsed"
done
rss1=$(rss_kb "$pid"); fd1=$(fds); c1=$(cpu_ticks "$pid"); probes1=$(metric_sum '^medic_check_runs_total')
rate=$(( (probes1 - probes0) / duration ))
cpu=$(echo "($c1 - $c0) / $clk / $duration * 100" | bc -l)
webhook_failed=$(tail -n 1 "$work/webhook.txt" | awk '{print $2}')
errors=$(grep -c -E 'level=(error|warn)' "$work/medic.log" || true)
printf 'probes/s %d, CPU %.1f%% of one core, webhook failures %s, warnings+errors in the log %s\n' \
  "$rate" "$cpu" "${webhook_failed:-?}" "$errors"
if ((errors > 0)); then
  echo "the log's warnings and errors (first 10):"
  grep -E 'level=(error|warn)' "$work/medic.log" | head -n 10
fi
growth=$(echo "($rss1 - $rss0) * 100 / $rss0" | bc -l)
# The trend window's designed growth: 4 bytes a probe in a ring that doubles, so 8 at most, while
# the process is under an hour old.
trend_kb=$(( (probes1 - probes0) * 8 / 1024 ))
uptime_s=$(( $(date +%s) - $(stat -c %Y "/proc/$pid") ))
((uptime_s > 3600)) && trend_kb=0
excess=$(echo "($rss1 - $rss0 - $trend_kb) * 100 / $rss0" | bc -l)
printf 'RSS start %.1f MB, end %.1f MB (%+.1f%%; %+.1f%% beyond the trend window'"'"'s %.1f MB); fds start %d, end %d\n' \
  "$(echo "$rss0/1024" | bc -l)" "$(echo "$rss1/1024" | bc -l)" "$growth" "$excess" \
  "$(echo "$trend_kb/1024" | bc -l)" "$fd0" "$fd1"
if ((fd1 > fd0 + 10)) || (($(echo "$excess > 10" | bc -l))); then
  echo "NOT FLAT"
  exit 1
fi
echo "flat"
