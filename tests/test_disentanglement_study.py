"""scripts/disentanglement_study.sh: the grid (β-VAE's β × seeds, the comparison models), fit, evaluate and
the report over seeds end to end with --smoke, and the SLURM submissions under a fake ``sbatch``."""

from __future__ import annotations

import csv
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_process

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


def test_the_smoke_study_aggregates_seeds(tmp_path):
    """Two seeds of one β-VAE: fit, evaluate and the report's row over seeds (~70 s on 2 idle cores)."""
    log = run_smoke(tmp_path, "--models", "betavae", "--betas", "4", "--seeds", "0 1", timeout=600)
    assert "dSprites skipped" in log
    check_report(tmp_path, {("BetaVAE β=4", "4.0"): 2})
    assert (tmp_path / "runs" / "shapes_betavae_b4_s1" / "version_0" / "evaluation" / "last.json").is_file()


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
            ("DIPVAE dip_type=i lambda_od=10 lambda_d=100", ""): 1,
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
    result = subprocess.run(["bash", str(SCRIPT), *options], env=env, capture_output=True, text=True, timeout=60)
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
