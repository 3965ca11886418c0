#!/usr/bin/env bash
# Anomaly scores on the Numenta Anomaly Benchmark part in ../shared/nab, judged by
# leave-one-category-out cross-validation: every detector variant of benches/anomaly_nab.rs is
# run (fresh state per file, as NAB requires); for each of the four labelled categories the
# variant and its thresholds are chosen on the other files and scored on the held-out one.
# Prints each variant's cost per sample and memory, the in-sample scores, and the CV folds.
# Usage: scripts/eval-nab.sh [OUT_DIR] [variant,variant,...]
set -euo pipefail
cd "$(dirname "$0")/.."
# ../shared/nab from the main checkout, ../../shared/nab from a worktree under wt/.
nab=${NAB_DIR:-}
for d in ../shared/nab ../../shared/nab; do
  [ -z "$nab" ] && [ -d "$d/data" ] && nab=$(cd "$d" && pwd)
done
[ -n "$nab" ] || { echo "NAB data not found: set NAB_DIR" >&2; exit 1; }
out=${1:-$(mktemp -d)}
rm -rf "$out"
cargo bench --quiet --bench anomaly_nab -- "$nab/data" "$out" ${2:+"$2"}
python3 scripts/lib/nab_cv.py "$out" "$nab"
