#!/usr/bin/env bash
# Scores `medic detect` on the Numenta Anomaly Benchmark part in ../shared/nab (fresh state per
# file, as NAB requires) and prints the scorer's table.
# Usage: scripts/eval-nab.sh [OUT_DIR] [nab_score.py args, e.g. --per-file]
set -euo pipefail
cd "$(dirname "$0")/.."
nab=${NAB_DIR:-$(cd .. && pwd)/shared/nab}
out=${1:-$(mktemp -d)}
[ $# -gt 0 ] && shift
cargo build --release --quiet
rm -rf "$out"
start=$(date +%s.%N)
files=0
for f in "$nab"/data/*/*.csv; do
  category=$(basename "$(dirname "$f")")
  mkdir -p "$out/$category"
  target/release/medic detect --input "$f" --output "$out/$category/$(basename "$f")"
  files=$((files + 1))
done
end=$(date +%s.%N)
python3 -c "print(f'medic detect: $files files in {$end - $start:.2f} s')"
python3 "$nab/nab_score.py" "$out" "$@"
