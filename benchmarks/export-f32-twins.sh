#!/usr/bin/env bash
# F32 twins of committed low-resource cells exported as F16: the cell's logged `rner sft` command
# again into scratch folders (its F16 export must have the committed sha256, else it stops), the
# same checkpoint exported as F32 (which keeps every update), scored on the cell's test sample into
# results/export-twins/, and compared with the committed run of the F16 file into
# reports/export-twins/<cell>-f32.md. It sizes what F16's rounding alone does to a cell's score
# (each export's `rner export` line, with the share of the moved weights it rounds back, is printed
# and kept in that report's folder as <cell>-rounding.txt).
# Usage: benchmarks/export-f32-twins.sh CELL [CELL …]   (from the repository root, after
#   cargo build --release; RNER_DATA set), e.g.
#   benchmarks/export-f32-twins.sh cpu-lr-crossner_ai-p10-s1-base cpu-lr-crossner_ai-p10-s1-reasoningner
set -euo pipefail
bin=${RNER_BIN:-./target/release/rner}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# a field of a cell's current log
field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "results/train/$1/run.json" "$2"
}
# run_of NAME SHA
. "$(dirname "$0")/twins-common.sh"
mkdir -p reports/export-twins "$scratch/models"
# the fetched base model, linked rather than fetched again into the scratch models folder
for f in models/SmolLM2-135M-Instruct.Q4_1.gguf; do [ -f "$f" ] && ln -s "$PWD/$f" "$scratch/models/"; done
for name in "$@"; do
  [ "$(field "$name" export_type)" = f16 ] || { echo "$name: its log records no F16 export" >&2; exit 1; }
  committed=$(field "$name" export_sha256)
  set_=$(field "$name" train_set)
  a=$(run_of "${name//_/-}" "$committed")
  [ -n "$a" ] || { echo "$name: no committed run of its F16 file ($committed)" >&2; exit 1; }
  # the logged command without the reproduce note, into scratch folders
  cmd=$(field "$name" command | sed 's/  # step of:.*//; s/^rner //; s/--checkpoints [^ ]*//')
  # shellcheck disable=SC2086
  "$bin" -q --results "$scratch/results" --models "$scratch/models" --reports "$scratch/reports" $cmd --checkpoints "$scratch/ck"
  again=$(sha256sum "$scratch/models/$name.gguf" | cut -d' ' -f1)
  [ "$again" = "$committed" ] || { echo "$name: the F16 export trained again is $again, not the committed $committed" >&2; exit 1; }
  {
    echo "\$ rner export <checkpoint of: $(field "$name" command | sed 's/  # step of:.*//')> --type f16"
    "$bin" -q export "$scratch/ck/$name" --type f16 --out "$scratch/models/$name-f16.gguf" 2>&1
    echo "\$ rner export <the same checkpoint> --type f32"
    "$bin" -q export "$scratch/ck/$name" --type f32 --out "$scratch/models/$name-f32.gguf" 2>&1
  } | tee "reports/export-twins/$name-rounding.txt"
  cmp -s "$scratch/models/$name-f16.gguf" "$scratch/models/$name.gguf" || { echo "$name: rner export wrote another F16 file than rner sft" >&2; exit 1; }
  "$bin" -q --results results/export-twins eval --model "$scratch/models/$name-f32.gguf" --datasets "$set_" \
    --split test --limit 200 --seed 42 --parallel 16
  b=$(run_of "export-twins/${name//_/-}-f32" "$(sha256sum "$scratch/models/$name-f32.gguf" | cut -d' ' -f1)")
  "$bin" -q compare "$a" "$b" --out "reports/export-twins/$name-f32.md"
done
