"""scripts/reproduce_study.sh --smoke: the study's pipeline (fit, evaluate, report) end to end on tiny
offline stand-ins, so the script cannot rot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import run_process

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce_study.sh"


def run_study(out: Path, runs: str | None, timeout: float, *options: str) -> str:
    args = ["bash", str(SCRIPT), "--smoke", "--out", str(out), *options] + (["--runs", runs] if runs else [])
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "offline", "TORCH_HOME": str(out / "torch")}
    return run_process(args, env, timeout)


def sections(tables: str) -> list[list[str]]:
    """The table rows (``| …``, without header and rule) of each ``## `` section."""
    return [[line for line in part.splitlines() if line.startswith("| ")][1:] for part in tables.split("## ")[1:]]


def test_the_smoke_study_writes_the_three_tables(tmp_path):
    run_study(tmp_path, "batik_beta1 batik_beta1_kld1e-6 dcgan_batik", timeout=900)
    report = tmp_path / "report"
    recon, fid, kld = sections((report / "study_tables.md").read_text())
    assert len(recon) == 2 and all(row.startswith("| batik | 1 |") for row in recon)  # the GAN reconstructs nothing
    assert len(fid) == 3 and fid[0].startswith("| batik | DCGAN |")  # its FID beside the β-VAEs'
    for row in recon:  # SSIM and PSNR are numbers
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert 0 < float(cells[3]) <= 1 and float(cells[4]) > 0
    for row in fid:  # FID of the configured 32 samples against the validation split
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert float(cells[3]) > 0 and cells[5].startswith("32 / batik validation split")
    assert [row.split("|")[3].strip() for row in kld] == ["0.0025", "1e-06"]
    assert (report / "results.csv").is_file() and (report / "ssim.png").stat().st_size > 0
    for run in ("batik_beta1", "batik_beta1_kld1e-6", "dcgan_batik"):
        assert list((tmp_path / "runs" / run).glob("version_0/evaluation/last.json"))


@pytest.mark.slow
def test_the_whole_smoke_study(tmp_path):
    """All ten runs of the grid and the four DCGAN baselines (about 20 minutes on 2 CPU cores)."""
    run_study(tmp_path, None, 3600, "--with-gan")
    recon, fid, kld = sections((tmp_path / "report" / "study_tables.md").read_text())
    assert len(recon) == 10 and len(fid) == 14 and len(kld) == 2
    assert sum("| DCGAN |" in row for row in fid) == 4
    assert {row.split("|")[1].strip() for row in recon} == {"batik", "celeba", "cats", "stanfordcars"}
