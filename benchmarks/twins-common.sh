# Shared by benchmarks/export-twins.sh and benchmarks/export-f32-twins.sh (sourced, from the
# repository root).
# run_of NAME SHA: the run under results/ (NAME may start with export-twins/) named NAME on the
# 200-sentence test sample (seed 42) whose manifest records the model file with sha256 SHA.
run_of() {
  python3 - "$1" "$2" <<'PY'
import glob, json, sys
for d in sorted(glob.glob(f"results/{sys.argv[1]}-direct-free-test-n200-s42-*")):
    if json.load(open(f"{d}/manifest.json"))["config"].get("model_sha256") == sys.argv[2]:
        print(d)
        break
PY
}
