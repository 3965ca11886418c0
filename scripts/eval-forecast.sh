#!/usr/bin/env bash
# Forecast accuracy over the NAB series in ../shared/nab: medic's served forecast at 1, 12 and 60
# steps against the naive last value and the seasonal naive (same time of day, from what was seen), per category, and the
# coverage of its 80 % interval. Usage: scripts/eval-forecast.sh [data dir] [window s]
set -euo pipefail
cd "$(dirname "$0")/.."
nab=${NAB_DIR:-}
for d in ../shared/nab ../../shared/nab; do
  [ -z "$nab" ] && [ -d "$d/data" ] && nab=$(cd "$d" && pwd)
done
exec cargo bench --quiet --bench forecast_mase -- "${1:-$nab/data}" ${2:+"$2"}
