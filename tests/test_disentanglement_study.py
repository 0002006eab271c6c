"""scripts/disentanglement_study.sh: the grid (β-VAE's β × seeds, the comparison models), fit, evaluate and
the report over seeds end to end with --smoke, the SLURM submissions under a fake ``sbatch``, and --cpu's
seed-major plan, resume states, option checks and W&B runs."""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import flush_wandb, run_process

from betavae.tracking import ID_FILE
from betavae.wandb_runs import evaluation_summary

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "disentanglement_study.sh"
METRICS = ("mig", "sap", "dci_disentanglement", "factorvae_score", "betavae_score", "psnr", "ssim", "fid")


def run_smoke(out: Path, *options: str, timeout: float) -> str:
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline", "TORCH_HOME": str(out / "torch")}
    return run_process(["bash", str(SCRIPT), "--smoke", "--out", str(out), *options], env, timeout)


def check_report(out: Path, expected: dict[tuple[str, str], int]) -> None:
    """One row of seeds.csv per (model label, β) with its number of seeds, every metric finite, the charts."""
    rows = list(csv.DictReader((out / "report" / "seeds.csv").open()))
    assert {(r["label"], r["beta"]): int(r["n_seeds"]) for r in rows} == expected
    for row in rows:
        for key in METRICS:
            values = [float(row[f"{key}_{s}"]) for s in ("median", "min", "max")]
            assert all(math.isfinite(v) for v in values) and values[1] <= values[0] <= values[2], (row["label"], key)
            assert row[f"{key}_n"] == row["n_seeds"]
    table = (out / "report" / "seeds.md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| shapes |")]) == len(expected)
    for chart in ("mig_vs_beta.png", "dci_disentanglement_vs_beta.png", "tradeoff_psnr_mig.png"):
        assert (out / "report" / chart).stat().st_size > 0
    results = list(csv.DictReader((out / "report" / "results.csv").open()))
    assert len(results) == sum(expected.values()) and all(r["seed"] in ("0", "1") for r in results)


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_the_smoke_study_aggregates_seeds(tmp_path):
    """Two seeds of one β-VAE: fit, evaluate and the report's row over seeds (~70 s on 2 idle cores)."""
    log = run_smoke(tmp_path, "--models", "betavae", "--betas", "4", "--seeds", "0 1", timeout=600)
    assert "dSprites skipped" in log
    check_report(tmp_path, {("BetaVAE β=4", "4.0"): 2})
    assert (tmp_path / "runs" / "shapes_betavae_b4_s1" / "version_0" / "evaluation" / "last.json").is_file()
    # the published traversal figure: the median run by MIG of each setting (of two seeds: the lower one)
    migs = {
        s: json.loads((tmp_path / "runs" / f"shapes_betavae_b4_s{s}/version_0/evaluation/last.json").read_text())["mig"]
        for s in (0, 1)
    }
    figure = tmp_path / "pair.png"
    script = [sys.executable, str(REPO / "scripts" / "study_traversals.py"), str(tmp_path)]
    options = ["--top_k", "2", "--output", str(figure)]
    out = run_process([*script, "shapes_betavae_b4", "shapes_betavae_b4", *options], dict(os.environ), 600, REPO)
    lower = min(migs, key=lambda s: (migs[s], s))
    assert f"shapes_betavae_b4: seed {lower} (mig {migs[lower]:.3f}, median of 2)" in out
    assert figure.stat().st_size > 0


@pytest.mark.slow
def test_the_whole_smoke_study_covers_every_model(tmp_path):
    """β 1 and 4 × seeds 0 and 1, and each comparison model at seed 0 (9 runs, about 5-7 minutes)."""
    run_smoke(tmp_path, timeout=3600)
    check_report(
        tmp_path,
        {
            ("BetaVAE loss_type=H β=1", "1.0"): 2,
            ("BetaVAE loss_type=H β=4", "4.0"): 2,
            ("BetaVAE loss_type=B", ""): 1,
            ("BetaTCVAE β=6", "6.0"): 1,
            ("FactorVAE", ""): 1,
            ("DIPVAE dip_type=i lambda_d=100", ""): 1,  # λ_od 10: its class default, not named
            ("DIPVAE dip_type=ii lambda_od=1 lambda_d=1", ""): 1,
        },
    )


def test_slurm_submits_a_fit_and_an_evaluate_job_per_run_then_the_report(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls"
    fake = bin_dir / "sbatch"  # records its arguments (tab-separated, a call per line) and answers a job id
    fake.write_text(f'#!/bin/bash\nprintf "%s\\t" "$@" >> {calls}\necho >> {calls}\nwc -l < {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "out"
    options = ["--slurm", "--out", str(out), "--models", "betavae factorvae", "--betas", "1 4", "--seeds", "0 1"]
    options += ["--dsprites-root", str(tmp_path / "no_dsprites"), "--", "--trainer.max_epochs=2"]
    # 300 s: the script runs `betavae prefetch`, which converts the FID weights once when the cache is empty
    result = subprocess.run(["bash", str(SCRIPT), *options], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "dSprites skipped: no" in result.stdout
    lines = [line.rstrip("\t").split("\t") for line in calls.read_text().splitlines()]
    fits, evals, report = lines[0:-1:2], lines[1:-1:2], lines[-1]
    names = ["shapes_betavae_b1_s0", "shapes_betavae_b1_s1", "shapes_betavae_b4_s0", "shapes_betavae_b4_s1"]
    names += ["shapes_factorvae_s0", "shapes_factorvae_s1"]
    assert len(fits) == len(evals) == len(names)
    grid = ["--out", str(out), "--betas", "1 4", "--seeds", "0 1", "--models", "betavae factorvae"]
    grid += ["--dsprites-root", str(tmp_path / "no_dsprites")]
    for i, (name, fit, evaluate) in enumerate(zip(names, fits, evals, strict=True)):
        config = "shapes_factorvae.yaml" if "factorvae" in name else "shapes_betavae.yaml"
        assert fit[:5] == [
            "--parsable",
            f"--job-name={name}",
            "scripts/slurm/fit.sbatch",
            config,
            f"--seed_everything={name[-1]}",
        ]
        assert f"--trainer.logger.name={name}" in fit and fit[-1] == "--trainer.max_epochs=2"
        assert ("factorvae" in name) != (f"--model.init_args.beta={name.split('_b')[-1][0]}" in fit)
        assert not any("default_root_dir" in arg for arg in fit)  # fit.sbatch sets it per job
        assert f"--dependency=afterok:{2 * i + 1}" in evaluate and "--gres=gpu:1" in evaluate
        wrapped = shlex.split(evaluate[evaluate.index("--wrap") + 1])
        assert wrapped == ["scripts/disentanglement_study.sh", "--evaluate-only", "--no-report", *grid, "--runs", name]
    assert f"--dependency=afterok:{':'.join(str(2 * i + 2) for i in range(len(names)))}" in report
    assert shlex.split(report[report.index("--wrap") + 1]) == [
        "scripts/disentanglement_study.sh",
        "--report-only",
        *grid,
    ]


# --cpu: the CPU-sized study (configs/study_cpu/), seed-major, resumable, every run a W&B run
CPU_TINY = [  # a few steps of a narrow net on few images: the plumbing, not the model
    "--trainer.max_steps=2",
    "--trainer.log_every_n_steps=1",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.enable_model_summary=false",
    "--data.init_args.num_images=128",
    "--data.init_args.batch_size=32",
    "--model.init_args.encoder.init_args.hidden_channels=[8,8,8,8]",
    "--model.init_args.decoder.init_args.hidden_channels=[8,8,8,8]",
    "--traversal.every_n_epochs=100",
    "--grids.every_n_epochs=100",
]


def dry_run(out: Path, *options: str) -> list[str]:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--cpu", "--dry-run", "--out", str(out), *options],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_cpu_plan_is_seed_major_and_resumes_finished_runs(tmp_path):
    """The 30 runs, every setting of seed 0 first; FID on the first seed only; what a rerun skips."""
    plan = [line for line in dry_run(tmp_path) if line[:1].isdigit()]
    names = [line.split()[1] for line in plan]
    settings = ["betavae_b1", "betavae_b2", "betavae_b4", "betavae_b8", "betavae_b16", "beta_tcvae", "factorvae"]
    settings += ["dipvae_i", "dipvae_ii", "annealedvae"]
    assert names == [f"shapes_{setting}_s{seed}" for seed in (0, 1, 2) for setting in settings]
    assert all(("fid=yes" in line) == line.split()[1].endswith("_s0") for line in plan)
    assert all((REPO / line.split()[2].removeprefix("config=")).is_file() for line in plan)
    assert all("fit=todo evaluate=todo" in line for line in plan)

    runs = tmp_path / "runs"
    for beta, state in [(1, "done"), (2, "stopped"), (4, "old")]:
        name = f"shapes_betavae_b{beta}_s0"
        version = runs / name / "version_0"
        (version / "checkpoints").mkdir(parents=True)
        (version / "evaluation").mkdir()
        if state == "old":  # evaluated, then trained on: the evaluation is stale
            (version / "evaluation" / "last.json").write_text("{}")
            os.utime(version / "evaluation" / "last.json", (1, 1))
        (version / "checkpoints" / "last.ckpt").write_bytes(b"")
        if state == "done":
            (runs / name / "fit.done").write_text("finished\n")
            (version / "evaluation" / "last.json").write_text("{}")
    lines = dry_run(tmp_path, "--seeds", "0", "--models", "betavae", "--fid-seeds", "", "--stage", "fit")
    assert "plan: 5 runs" in lines[1] and "(stage fit)" in lines[1]
    states = {line.split()[1]: line.split()[-3:] for line in lines if line[:1].isdigit()}
    assert states["shapes_betavae_b1_s0"] == ["fit=done", "evaluate=done", "fid=no"]
    assert states["shapes_betavae_b2_s0"] == ["fit=partial", "evaluate=todo", "fid=no"]  # continues from last.ckpt
    assert states["shapes_betavae_b4_s0"] == ["fit=partial", "evaluate=todo", "fid=no"]
    assert states["shapes_betavae_b8_s0"] == ["fit=todo", "evaluate=todo", "fid=no"]


def test_the_dci_estimator_reaches_every_evaluate_command(tmp_path):
    evaluations = [line for line in dry_run(tmp_path, "--dci-estimator", "random_forest") if "evaluate:" in line]
    assert len(evaluations) == 30 and all("'--dci_estimator' 'random_forest'" in line for line in evaluations)
    assert not any("--dci_estimator" in line for line in dry_run(tmp_path) if "evaluate:" in line)  # gbt: the default


def test_parallel_workers_share_the_runs_and_a_rerun_skips_them(tmp_path):
    """--jobs 2: two workers, each run fitted by exactly one of them, each line prefixed with its worker; the
    claims are gone afterwards, and the same command again finds both runs done."""
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline"}
    runs = ["shapes_betavae_b4_s0", "shapes_betavae_b8_s0"]
    options = ["--cpu", "--jobs", "2", "--out", str(tmp_path), "--runs", " ".join(runs), "--stage", "fit"]
    log = run_process(["bash", str(SCRIPT), *options, "--", *CPU_TINY], env, 600)
    assert "=== 2 workers over 2 runs, OMP_NUM_THREADS=" in log and "=== 2 workers done in" in log
    for run in runs:
        fits = [line for line in log.splitlines() if line.endswith(f"=== fit {run} (seed 0)")]
        assert len(fits) == 1 and fits[0].startswith("[worker "), fits
        assert (tmp_path / "runs" / run / "fit.done").is_file()
    assert {line.split("]")[0] for line in log.splitlines() if line.startswith("[worker")} == {"[worker 1", "[worker 2"}
    assert not list(tmp_path.glob(".claims.*"))
    progress = [line for line in log.splitlines() if " fit in " in line and "study:" in line]
    assert len(progress) == 2 and all(line.endswith(" each, 2 workers)") for line in progress), progress
    assert any("~0h00m00s left (0 runs at" in line for line in progress)  # the second run to finish: none left
    log = run_process(["bash", str(SCRIPT), *options, "--", *CPU_TINY], env, 300)
    assert log.count("already done, skipped") == 2 and "=== fit" not in log


def test_workers_that_start_together_share_no_scratch_file(tmp_path):
    """Workers over finished runs start and end within milliseconds of each other: each keeps its own CPU-time
    scratch file (a shared one was read empty by one worker while another rewrote it, a 1-in-5 failure), and
    none is left behind."""
    runs = [f"shapes_betavae_b{beta}_s0" for beta in (1, 2, 4, 8)]
    for run in runs:
        (tmp_path / "runs" / run).mkdir(parents=True)
        (tmp_path / "runs" / run / "fit.done").write_text("finished\n")
    options = ["--cpu", "--jobs", "4", "--out", str(tmp_path), "--runs", " ".join(runs), "--stage", "fit"]
    for _ in range(15):
        log = run_process(["bash", str(SCRIPT), *options], dict(os.environ), 60)
        assert log.count("already done, skipped") == 4 and "=== 4 workers done in" in log, log
    assert not [path.name for path in tmp_path.iterdir() if path.name != "runs"]


def test_cpu_options_are_checked(tmp_path):
    for options, message in [
        (["--stage", "train"], "--stage must be one of fit, evaluate, report, all"),
        (["--preset", "quick"], "--preset must be default, fast or none"),
        (["--fid-samples", "1"], "--fid-samples must be an integer >= 2"),
        (["--fid-real", "x"], "--fid-real must be an integer >= 2"),
        (["--smoke"], "exclude each other"),
        (["--stage"], "--stage needs a value"),
        (["--dci-estimator", "lasso"], "--dci-estimator must be gbt or random_forest"),
        (["--jobs", "0"], "--jobs must be an integer >= 1"),
    ]:
        result = subprocess.run(
            ["bash", str(SCRIPT), "--cpu", "--out", str(tmp_path), *options], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and message in result.stderr, (options, result.stderr)


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_a_cpu_run_is_a_wandb_run_a_dashboard_can_group(tmp_path, monkeypatch):
    """The fit command the script plans, run in-process: its offline W&B run holds the comparison keys, the
    group and the tags (dataset, variant, beta8, seed1), and after `evaluate` + `wandb-summary` the scores."""
    from betavae.cli import main
    from betavae.wandb_runs import read_offline_run

    monkeypatch.chdir(REPO)  # the planned command names configs/study_cpu/betavae.yaml
    lines = dry_run(tmp_path, "--runs", "shapes_betavae_b8_s1", "--", *CPU_TINY)
    fit_command = shlex.split(next(line for line in lines if line.startswith("  fit: ")).removeprefix("  fit: "))
    assert fit_command[:4] == [sys.executable, "-m", "betavae", "fit"]
    main(fit_command[3:])
    flush_wandb()
    run = tmp_path / "runs" / "shapes_betavae_b8_s1"
    ckpt = run / "version_0" / "checkpoints" / "last.ckpt"
    evaluate = shlex.split(next(line for line in lines if line.startswith("  evaluate: ")).removeprefix("  evaluate: "))
    assert evaluate[-4:] == ["--disentanglement_preset", "default", "--skip_fid", "true"]
    main(["evaluate", "--ckpt_path", str(ckpt), "--disentanglement_preset", "none", "--skip_fid", "true"])
    main(["wandb-summary", str(run / "version_0" / "evaluation" / "last.json")])

    offline = read_offline_run(run / "wandb")
    assert offline["group"] == "shapes"
    assert {"shapes", "BetaVAE", "beta8", "seed1", "study_cpu"} <= set(offline["tags"])
    config = offline["config"]
    assert (config["dataset"], config["variant"], config["beta"], config["seed_everything"]) == (
        "shapes",
        "BetaVAE",
        8.0,
        1,
    )
    assert {"latent_dim", "likelihood", "kld_weight", "loss_type"} <= set(config)
    summary = offline["summary"]
    assert {"train/loss", "val/psnr", "val/ssim", "eval/psnr", "eval/ssim"} <= set(summary)
    scores = json.loads((run / "version_0" / "evaluation" / "last.json").read_text())
    assert summary["eval/psnr"] == pytest.approx(scores["psnr"]) and scores["fid"] is None
    assert scores["fid_note"] == "not computed (skip_fid)"
    assert (run / "version_0" / ID_FILE).read_text().strip() == offline["id"]


def test_evaluation_summary_keeps_finite_numbers_only():
    scores = {"mig": 0.3, "psnr": 23.1, "fid": None, "n": 64, "model": "BetaVAE", "kid": math.nan, "ok": True}
    assert evaluation_summary(scores) == {"eval/mig": 0.3, "eval/psnr": 23.1, "eval/n": 64.0}


def test_wandb_summary_names_a_missing_file_or_run(tmp_path, capsys):
    from betavae.cli import main

    with pytest.raises(SystemExit):
        main(["wandb-summary", str(tmp_path / "nope.json")])
    assert "no evaluation file" in capsys.readouterr().err
    (tmp_path / "version_0" / "evaluation").mkdir(parents=True)
    (tmp_path / "version_0" / "evaluation" / "last.json").write_text(json.dumps({"run": str(tmp_path / "version_0")}))
    with pytest.raises(SystemExit):
        main(["wandb-summary", str(tmp_path / "version_0" / "evaluation" / "last.json")])
    assert "has no W&B run" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cpu_study_resumes(tmp_path):
    """Fit, evaluate and report of one tiny --cpu run; a rerun skips it; a lost evaluation is redone alone."""
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline"}
    options = ["--cpu", "--out", str(tmp_path), "--runs", "shapes_betavae_b4_s0", "--preset", "none", "--fid-seeds", ""]
    log = run_process(["bash", str(SCRIPT), *options, "--", *CPU_TINY], env, 900)
    assert "=== fit shapes_betavae_b4_s0" in log and "--- [1/1] shapes_betavae_b4_s0: fit evaluate in" in log
    run = tmp_path / "runs" / "shapes_betavae_b4_s0"
    assert (run / "fit.done").is_file() and (tmp_path / "report" / "results.csv").is_file()
    log = run_process(["bash", str(SCRIPT), *options, "--stage", "fit", "--", *CPU_TINY], env, 300)
    assert "already done, skipped" in log and "=== fit" not in log
    (run / "version_0" / "evaluation" / "last.json").unlink()
    log = run_process(["bash", str(SCRIPT), *options, "--stage", "evaluate"], env, 600)
    assert "=== fit" not in log and "=== evaluate shapes_betavae_b4_s0" in log
    (run / "fit.done").unlink()  # as if stopped after its checkpoint at epoch 1 of 2: it continues there, to step 4
    # bound by max_epochs alone, as the study's configs are: Lightning 2.6 resumes a fit bound by max_steps from an
    # epoch-end checkpoint as "restarted on epoch end", counts that epoch again, and so stops one epoch early when
    # max_epochs binds as well (docs/reliability.md)
    longer = [*[a for a in CPU_TINY if not a.startswith("--trainer.max_steps")], "--trainer.max_steps=-1"]
    longer = [a if a != "--trainer.max_epochs=1" else "--trainer.max_epochs=2" for a in longer]
    log = run_process(["bash", str(SCRIPT), *options, "--stage", "fit", "--", *longer], env, 600)
    assert "continuing from" in log and (run / "fit.done").is_file()
    assert [p.name for p in run.iterdir() if p.name.startswith("version_")] == ["version_0"]
    kept = list((run / "version_0").glob("metrics.until_*.csv"))  # the log before the resume, not deleted
    assert len(kept) == 1 and "kept the training log so far as" in log
    before = [int(r["step"]) for r in csv.DictReader(kept[0].open()) if r.get("train/loss")]
    assert len(before) == 2
    steps = [int(r["step"]) for r in csv.DictReader((run / "version_0" / "metrics.csv").open()) if r.get("train/loss")]
    assert len(steps) == 2 and min(steps) > max(before)  # then 2 more steps, in the new metrics.csv
    assert len({p.name for p in (run / "wandb").glob("offline-run-*")}) >= 2  # the same W&B id, resumed
    assert len({p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}) == 1
