#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) and prints what it found.
# Installs cargo-fuzz when missing. Stable Rust runs libFuzzer through RUSTC_BOOTSTRAP=1.
# Usage: scripts/fuzz.sh [seconds per target] [target…]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
# Seed the webhook corpus with the real Alertmanager payloads.
mkdir -p fuzz/corpus/webhook_payload fuzz/corpus/matcher fuzz/corpus/config
cp tests/testdata/alertmanager/*.raw.json fuzz/corpus/webhook_payload/
# ...and the config corpus with every valid and invalid config the tests know.
cp tests/testdata/*.yml examples/medic.yml fuzz/corpus/config/
printf 'alertname=~"Predicted.*"\nPredictedDiskFull' > fuzz/corpus/matcher/seed
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "==> $t for ${seconds}s"
  log="fuzz/$t.log"
  if cargo fuzz run "$t" --fuzz-dir fuzz -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 > "$log" 2>&1; then
    echo "$t: no crash; $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
  else
    echo "$t: CRASH (input in fuzz/artifacts/$t):"; grep -E "panicked|ERROR|SUMMARY|error\[" "$log" | head -n 10; status=1
  fi
done
exit $status
