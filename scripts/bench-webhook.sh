#!/usr/bin/env bash
# Webhook and reaction benchmarks; prints figures, asserts nothing.
#   1. Webhook throughput: wrk posts Alertmanager notifications (10 alerts each) to medic with a
#      route table of 100 routes; notifications/s and latency percentiles.
#   2. Detection to action: a target breaks; medic (1 s interval, failures_before_critical: 1)
#      runs its chain; time from the break to the first step reaching the target, 5 times.
# Usage: scripts/bench-webhook.sh [seconds, default 10]
# Output: also written to docs/bench-webhook.txt (or $BENCH_OUT), headed by the date, machine and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
source scripts/lib/bench.sh
command -v wrk >/dev/null 2>&1 || install_debian wrk
bench_setup
bench_record bench-webhook "$@"

# 1. Webhook throughput.
port=$(free_port)
{
  echo "web: {webhook: {bearer_token: bench-token}}"
  echo "recovery:"
  echo "  chains:"
  echo "    noop: {steps: [{name: once, exec: {program: /bin/true}, max_attempts: 1, cooldown: 1h}]}"
  echo "  routes:"
  for i in $(seq 1 99); do echo "    - {matchers: ['alertname=\"Route$i\"', 'severity=~\"crit.*\"'], chain: noop}"; done
  echo "    - {matchers: ['alertname=\"Bench\"'], chain: noop}"
} > "$work/webhook.yml"
"$medic_bin" --config.file "$work/webhook.yml" --web.listen-address "127.0.0.1:$port" \
  --state.url "sqlite://$work/webhook.db" --log.level error & pids+=($!)
wait_http "http://127.0.0.1:$port/-/ready"
python3 - "$work/body.json" <<'PY'
import json, sys
alerts = [{"status": "firing", "labels": {"alertname": "Bench", "instance": f"host{i}:9100", "severity": "critical"},
           "annotations": {"summary": "bench"}, "startsAt": "2026-11-28T19:17:13.011Z",
           "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": f"{i:016x}"}
          for i in range(10)]
json.dump({"receiver": "medic", "status": "firing", "alerts": alerts, "groupLabels": {}, "commonLabels": {},
           "commonAnnotations": {}, "externalURL": "http://am", "version": "4", "groupKey": "{}", "truncatedAlerts": 0},
          open(sys.argv[1], "w"))
PY
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
local f = io.open("$work/body.json", "r")
wrk.body = f:read("*a")
f:close()
LUA
echo "== webhook: notifications of 10 alerts against 100 routes (wrk, 4 connections, ${duration}s)"
wrk -t2 -c4 -d"${duration}s" --latency -s "$work/post.lua" "http://127.0.0.1:$port/api/v1/alerts" \
  | grep -E "Requests/sec|50%|90%|99%|Non-2xx"

# 2. Detection to first step.
tport=$(free_port)
cat > "$work/target.py" <<'PY'
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
state = {"healthy": True, "broken_at": 0.0}
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, code, body):
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.answer(200 if state["healthy"] else 503, b"ok")
    def do_POST(self):
        if self.path == "/break":
            state["healthy"] = False; state["broken_at"] = time.time(); self.answer(200, b"")
        elif self.path == "/fix":
            if not state["healthy"]:
                print(f"{(time.time() - state['broken_at']) * 1000:.0f}", flush=True)
            state["healthy"] = True; self.answer(200, b"")
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$work/target.py" "$tport" > "$work/latency.txt" & pids+=($!)
wait_http "http://127.0.0.1:$tport/"
port=$(free_port)
cat > "$work/react.yml" <<YML
checks:
  - name: web
    interval: 1s
    timeout: 500ms
    failures_before_critical: 1
    recovery: fix
    http: {url: 'http://127.0.0.1:$tport/health'}
recovery:
  chains:
    fix:
      verify_timeout: 5s
      steps:
        - {name: fix, http: {url: 'http://127.0.0.1:$tport/fix', method: POST}, max_attempts: 100, cooldown: 0s}
YML
"$medic_bin" --config.file "$work/react.yml" --web.listen-address "127.0.0.1:$port" \
  --state.url "sqlite://$work/react.db" --log.level error & pids+=($!)
wait_http "http://127.0.0.1:$port/-/ready"
sleep 2
for i in 1 2 3 4 5; do
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$tport/break"
  for _ in $(seq 1 100); do [ "$(wc -l < "$work/latency.txt")" -ge "$i" ] && break; sleep 0.1; done
  sleep 1.5
done
echo "== detection to first step (interval 1s, failures_before_critical 1), ms:"
tr '\n' ' ' < "$work/latency.txt"; echo
sort -n "$work/latency.txt" | awk '{a[NR]=$1} END {if (NR) printf "median %d ms, max %d ms over %d breaks (goal: under interval + 100 ms = 1100 ms)\n", a[int((NR+1)/2)], a[NR], NR}'
