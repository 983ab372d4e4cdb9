#!/usr/bin/env bash
# Two llama.cpp processes on shared cores: one small eval alone, then two side by side, under
# libgomp's default spin (GOMP_SPINCOUNT=300000, what it uses when nothing is set), rner's
# default (1000, set by the binary itself) and OMP_WAIT_POLICY=PASSIVE (no spin).
# Usage: benchmarks/shared-cores.sh [rounds]   (from the repository root, after cargo build --release)
# Prints a markdown table of wall seconds (median of the rounds) per setting.
set -euo pipefail
rounds="${1:-3}"
bin=./target/release/rner
model="$($bin -q fetch-model smollm2-135m-instruct | tail -1 | cut -f2)"
one() {
  "$bin" --quiet --results "$(mktemp -d)" eval --model "$model" --datasets crossner_ai --limit 6 \
    --max-tokens 48 --parallel 4 >/dev/null 2>&1
}
secs() { local t0; t0=$(date +%s%N); "$@"; awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {print (b - a) / 1e9}'; }
pair() { local a b; ( one ) & a=$!; ( one ) & b=$!; wait $a $b; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "| setting | alone (s) | each of two side by side (s) |"
echo "|---|---|---|"
for setting in "GOMP_SPINCOUNT=300000" "GOMP_SPINCOUNT=1000" "OMP_WAIT_POLICY=PASSIVE"; do
  export "${setting?}"
  alone=$(for _ in $(seq "$rounds"); do secs one; done | median)
  both=$(for _ in $(seq "$rounds"); do secs pair; done | median)
  unset "${setting%%=*}"
  printf '| %s | %.2f | %.2f |\n' "$setting" "$alone" "$both"
done
echo
echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(git rev-parse --short HEAD), $(date -u +%FT%TZ), rounds: $rounds"
