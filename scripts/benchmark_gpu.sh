#!/usr/bin/env bash
# The GPU figures in one run (one GPU, under 10 minutes on a recent data-centre GPU), printed as one table:
#
#   1. training overhead: a bare PyTorch loop against `betavae fit`, the study's β-VAE, 64x64x3, batch 64
#      (scripts/benchmark_train.py; target framework/bare >= 0.95);
#   2. precision and layout switches: fp32 against bf16-mixed, channels_last and torch.compile, their
#      images/s and how far their validation scores move (scripts/benchmark_scaling.py, 1 process);
#   3. the data pipeline feeding the GPU: torchvision's ImageFolder against our cached DataModule, uint8
#      batches normalized on the GPU after the copy (scripts/benchmark_data.py --device cuda);
#   4. FID of 2,400 samples against 2,000 validation images with InceptionV3 (random-init weights when the
#      real ones are not there: the real cost, meaningless scores) (scripts/benchmark_fid.py).
#
#   scripts/benchmark_gpu.sh                # on a GPU machine; figures and logs in benchmark_gpu/
#   scripts/benchmark_gpu.sh --smoke        # the same pipeline at toy sizes on the CPU (checks the script)
#
# Each step's full output is in benchmark_gpu/<step>.log and its figures in benchmark_gpu/<step>.json; a step
# that fails is reported in the table and the script goes on, exiting 1 at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
OUT=${BENCHMARK_OUT:-benchmark_gpu}
mkdir -p "$OUT"
export PYTHONPATH="scripts${PYTHONPATH:+:$PYTHONPATH}"

if (( SMOKE )); then
  ACC=cpu; DEV=cpu
  TRAIN=(--num-images 400 --rounds 1 --warmup 1)
  SCALING=(--num-images 400 --devices 1 --warmup 1 --val-batches 1 --no-compile --channels-last)
  DATA=(--num-images 64 --epochs 2 --workers 1 --digest-rows 200)
  FID_ARGS=(--num-samples 16 --num-real 16 --batch-size 8)
else
  ACC=gpu; DEV=cuda
  TRAIN=(--num-images 20000 --rounds 3)
  SCALING=(--num-images 20000 --devices 1 --channels-last)
  DATA=(--num-images 20000 --epochs 3 --workers 8)
  FID_ARGS=(--num-samples 2400 --num-real 2000)
fi

status=0
run() {  # name, command...: output to OUT/name.log, figures to OUT/name.json
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" --json "$OUT/$name.json" >"$OUT/$name.log" 2>&1
  local rc=$?
  if (( rc == 0 )); then
    echo "   done in $((SECONDS - start)) s"
  else
    echo "   exit $rc after $((SECONDS - start)) s; see $OUT/$name.log"; tail -3 "$OUT/$name.log"; status=1
  fi
}

run train python scripts/benchmark_train.py --accelerator "$ACC" "${TRAIN[@]}"
run scaling python scripts/benchmark_scaling.py --accelerator "$ACC" "${SCALING[@]}"
run data python scripts/benchmark_data.py --device "$DEV" "${DATA[@]}"
run fid python scripts/benchmark_fid.py --device "$DEV" "${FID_ARGS[@]}"

python - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


rows = []
train = load("train")
if train:
    rows.append(("training overhead: bare PyTorch", f"{train['bare']:.0f} img/s", ""))
    rows.append(("training overhead: betavae fit", f"{train['framework']:.0f} img/s", f"ratio {train['ratio']:.3f}"))
scaling = load("scaling")
if scaling:
    base = scaling["rows"][0]
    for row in scaling["rows"]:
        moved = max(abs(row["scores"][k] - base["scores"][k]) / abs(base["scores"][k]) for k in row["scores"])
        rows.append(
            (
                f"β-VAE 1 process, {row['label'].split(', ', 1)[-1]}",
                f"{row['images_per_s']:.0f} img/s",
                f"{row['images_per_s'] / base['images_per_s']:.2f}x fp32; scores moved {moved:.2%}",
            )
        )
data = load("data")
if data:
    rows.append((f"data: torchvision ImageFolder, {data['workers']} workers", f"{data['torchvision']:.0f} img/s", ""))
    rows.append(
        (
            f"data: cached DataModule, uint8 to {data['device']}",
            f"{data['ours']:.0f} img/s",
            f"{data['ratio']:.1f}x; cache check {data['digest']['ratio']:.1%} of an epoch",
        )
    )
fid = load("fid")
if fid:
    rows.append(
        (
            f"FID, {fid['num_samples']} samples vs {fid['num_real']} images",
            f"{fid['later_s']:.1f} s",
            f"first score {fid['first_s']:.1f} s with the reference; weights: {fid['weights']}",
        )
    )
device = next((f["device"] for f in (train, scaling, data, fid) if f), "unknown device")
print(f"\n{device}\n\n| measurement | figure | note |\n|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
EOF
exit $status
