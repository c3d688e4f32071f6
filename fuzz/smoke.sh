#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on stable Rust (RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz use the nightly-only flags it needs), installing cargo-fuzz if missing.
# Usage: fuzz/smoke.sh [seconds per target, default 30] [target ...]
# Prints one line per target: runs, executions per second, coverage reached.
# New corpus entries go to a scratch directory; the committed seed corpus is not touched.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frames cron config handle)
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "corpus/$t"
  log="$scratch/$t.log"
  if cargo fuzz run --sanitizer none "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
    tail -n 60 "$log"
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo '?')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo '?')
  echo "fuzz $t: $result, ${secs}s, $runs runs, $rate exec/s, coverage $cov edges, $ft features"
done
exit $status
