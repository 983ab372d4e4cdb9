#!/usr/bin/env bash
# F16 twins of committed low-resource cells of the base in the `cpu` preset: the cell's training run
# again into scratch folders (its Q8_0 export's sha256 printed beside the committed one), the same
# checkpoint exported as F16, scored on the cell's test sample into results/export-twins/, and
# compared with the committed run of the Q8_0 file into
# reports/export-twins/<set>-p<share>-s<seed>-base.md. It sizes what the export type alone does to a
# cell's score.
# Usage: benchmarks/export-twins.sh SET SHARE SEED [SET SHARE SEED …]   (from the repository root,
#   after cargo build --release; RNER_DATA set; shares as the preset writes them: at most 3 decimals
#   of a percent)
#   e.g. benchmarks/export-twins.sh crossner_ai 0.1 1 crossner_ai 0.25 1 crossner_ai 0.5 1
set -euo pipefail
bin=${RNER_BIN:-./target/release/rner}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# the Q8_0 export a cell's logs record (the current log, else one kept in earlier/)
q8_sha() {
  python3 - "$1" <<'EOF'
import glob, json, sys
for f in [f"results/train/{sys.argv[1]}/run.json"] + sorted(glob.glob(f"results/train/{sys.argv[1]}/earlier/*/run.json")):
    log = json.load(open(f))
    kind = log.get("export_type") or ("f16" if "--export f16" in log.get("command", "") else "q8_0")
    if log.get("export_sha256") and kind == "q8_0":
        print(log["export_sha256"])
        break
EOF
}
# run_of NAME SHA
. "$(dirname "$0")/twins-common.sh"
while [ $# -ge 3 ]; do
  set_=$1 share=$2 seed=$3
  shift 3
  pct=$(awk -v f="$share" 'BEGIN {s = sprintf("%.3f", f * 100); sub(/\.?0+$/, "", s); print s}')
  name="cpu-lr-${set_}-p${pct}-s${seed}-base"
  committed=$(q8_sha "$name")
  [ -n "$committed" ] || { echo "$name: no log records a Q8_0 export" >&2; exit 1; }
  a=$(run_of "${name//_/-}" "$committed")
  [ -n "$a" ] || { echo "$name: no committed run of its Q8_0 file ($committed)" >&2; exit 1; }
  "$bin" -q --results results/export-twins --models "$scratch/models" --reports "$scratch/reports" sft \
    --model smollm2-135m-instruct --train-set "$set_" --fraction "$share" --target direct --name "$name" \
    --seed "$seed" --epochs 2 --batch 8 --lr 0.0001 --save-every 20 --keep 1 --checkpoints "$scratch/ck" --export q8-0
  echo "twin's Q8_0 export: $(sha256sum "$scratch/models/$name.gguf" | cut -d' ' -f1)"
  echo "committed export:   $committed"
  "$bin" -q export "$scratch/ck/$name" --type f16 --out "$scratch/models/$name-f16.gguf"
  "$bin" -q --results results/export-twins eval --model "$scratch/models/$name-f16.gguf" --datasets "$set_" \
    --split test --limit 200 --seed 42 --parallel 16
  b=$(run_of "export-twins/${name//_/-}-f16" "$(sha256sum "$scratch/models/$name-f16.gguf" | cut -d' ' -f1)")
  mkdir -p reports/export-twins
  "$bin" -q compare "$a" "$b" --out "reports/export-twins/${set_}-p${pct}-s${seed}-base.md"
done
