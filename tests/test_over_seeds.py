"""Seed aggregation of ``report`` (Locatello et al. 2019): runs that differ only in their seed are one row,
median [min, max] over seeds, checked against numpy on hand-made records."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from betavae.evaluation import charts
from betavae.evaluation.over_seeds import SEED_METRICS, aggregate, spread_cell, with_seeds
from betavae.evaluation.report import report, write_report

METRICS = [key for _, key in SEED_METRICS]


def run(tmp_path: Path, name: str, seed: int, model: str, created: str = "2025-01-01T00:00:00", **args: Any) -> dict:
    """A run folder with a config.yaml as LightningCLI writes it, and the record ``evaluate`` would give it,
    its metrics drawn from a generator seeded by the run's name."""
    folder = tmp_path / name / "version_0"
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "seed_everything": seed,
        "model": {"class_path": f"betavae.models.{model}", "init_args": {"latent_dim": 10, **args}},
        "data": {"class_path": "betavae.data.ShapesDataModule", "init_args": {"num_images": 128}},
        "trainer": {"max_epochs": 1},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(sum(map(ord, name)))
    return {
        "run": str(folder),
        "checkpoint": str(folder / "checkpoints" / "last.ckpt"),
        "dataset": "shapes",
        "model": model,
        "beta": args.get("beta"),
        "evaluated_on": "validation split",
        "created": created,
        **{key: float(rng.uniform(0, 1)) for key in METRICS},
    }


@pytest.fixture
def records(tmp_path):
    b4 = [run(tmp_path, f"b4_s{s}", s, "BetaVAE", beta=4.0, loss_type="H") for s in (0, 1, 2)]
    b16 = [run(tmp_path, f"b16_s{s}", s, "BetaVAE", beta=16.0, loss_type="H") for s in (0, 1)]
    b16[1]["mig"] = None  # a metric one seed lacks
    annealed = [run(tmp_path, f"annealed_s{s}", s, "BetaVAE", beta=4.0, loss_type="B") for s in (0, 1)]
    factor = [run(tmp_path, f"factor_s{s}", s, "FactorVAE", gamma=35.0) for s in (0, 1, 2)]
    rerun = run(tmp_path, "b4_s1_again", 1, "BetaVAE", created="2025-02-01T00:00:00", beta=4.0, loss_type="H")
    return {"b4": b4, "b16": b16, "annealed": annealed, "factor": factor, "rerun": rerun}


def test_runs_that_differ_only_in_seed_are_one_row_with_numpys_median_and_range(records):
    everything = [r for key in ("b4", "b16", "annealed", "factor") for r in records[key]] + [records["rerun"]]
    groups = {g.label: g for g in aggregate(everything)}
    assert set(groups) == {"BetaVAE loss_type=H β=4", "BetaVAE loss_type=H β=16", "BetaVAE loss_type=B", "FactorVAE"}
    b4 = groups["BetaVAE loss_type=H β=4"]
    counted = [records["b4"][0], records["rerun"], records["b4"][2]]  # seed 1 scored twice: the newer counts
    assert b4.seeds == [0, 1, 2] and [r["run"] for r in b4.skipped] == [records["b4"][1]["run"]]
    for key in METRICS:
        values = np.array([r[key] for r in counted])
        assert b4.stats[key] == pytest.approx((np.median(values), values.min(), values.max(), 3))
    b16 = groups["BetaVAE loss_type=H β=16"]
    mig = np.array([records["b16"][0]["mig"]])
    assert b16.stats["mig"] == pytest.approx((mig[0], mig[0], mig[0], 1))  # over the seed that has it
    values = np.array([r["sap"] for r in records["b16"]])
    assert b16.stats["sap"] == pytest.approx((np.median(values), values.min(), values.max(), 2))
    assert groups["BetaVAE loss_type=B"].beta is None  # the capacity loss has no β (its beta is unused)
    assert groups["FactorVAE"].beta is None and groups["FactorVAE"].seeds == [0, 1, 2]


def test_different_weights_or_unknown_seeds_are_never_merged(tmp_path, records):
    g35, g10 = (run(tmp_path, f"factor_g{g}", 0, "FactorVAE", gamma=float(g)) for g in (35, 10))
    no_config = {**records["b4"][0], "run": str(tmp_path / "elsewhere")}
    groups = aggregate([g35, g10, no_config, {**no_config, "source": "other.json"}])
    # γ 35 is FactorVAE's default: not in its label
    assert sorted(g.label for g in groups) == ["BetaVAE β=4", "BetaVAE β=4", "FactorVAE", "FactorVAE gamma=10"]
    assert all(len(g.records) == 1 for g in groups)
    assert [r["seed"] for r in with_seeds([no_config, g35])] == [None, 0]


def test_dci_numbers_of_different_estimators_are_never_one_row(tmp_path, records):
    legacy = records["b4"]  # no dci_estimator: written when gradient-boosted trees were the only estimator
    # the same runs, evaluated again with the random forest
    forest = [
        {**r, "dci_estimator": "random_forest", "dci_disentanglement": 0.9 + 0.01 * i} for i, r in enumerate(legacy)
    ]
    groups = {g.label: g for g in aggregate(legacy + forest)}
    assert set(groups) == {"BetaVAE β=4", "BetaVAE (DCI: random_forest) β=4"}
    gbt, rf = groups["BetaVAE β=4"], groups["BetaVAE (DCI: random_forest) β=4"]
    assert gbt.seeds == rf.seeds == [0, 1, 2] and (gbt.dci_estimator, rf.dci_estimator) == ("gbt", "random_forest")
    assert rf.stats["dci_disentanglement"] == pytest.approx((0.91, 0.9, 0.92, 3))
    values = np.array([r["dci_disentanglement"] for r in legacy])
    assert gbt.stats["dci_disentanglement"] == pytest.approx((np.median(values), values.min(), values.max(), 3))
    explicit = [{**r, "dci_estimator": "gbt"} for r in legacy[1:]]
    assert len(aggregate(legacy[:1] + explicit)) == 1  # "gbt" and no estimator: the same numbers' kind

    files = write_report(legacy + forest, tmp_path / "report")
    results = list(csv.DictReader(files["csv"].open()))
    assert sorted(r["dci_estimator"] for r in results) == ["gbt"] * 3 + ["random_forest"] * 3
    table = files["markdown"].read_text().splitlines()
    assert "| DCI estimator |" in table[0] and sum("| random_forest |" in line for line in table) == 3
    seeds = {r["label"]: r for r in csv.DictReader(files["seeds_csv"].open())}
    assert seeds["BetaVAE (DCI: random_forest) β=4"]["dci_estimator"] == "random_forest"
    assert seeds["BetaVAE β=4"]["dci_estimator"] == "gbt"
    assert "| BetaVAE (DCI: random_forest) | 4 | 3 | 0, 1, 2 |" in files["seeds"].read_text()
    assert "DCI estimator" not in write_report(legacy, tmp_path / "gbt")["markdown"].read_text().splitlines()[0]


def test_spread_cell_formats_median_range_and_missing_seeds():
    assert spread_cell((0.5, 0.25, 0.75, 3), 3, 3) == "0.500 [0.250, 0.750]"
    assert spread_cell((0.5, 0.5, 0.5, 1), 1, 2) == "0.50"
    assert spread_cell((0.5, 0.4, 0.6, 2), 3, 2) == "0.50 [0.40, 0.60] (n=2)"
    assert spread_cell(None, 3, 3) == "—"


def test_report_writes_the_seed_table_csv_and_seed_column(tmp_path, records):
    everything = records["b4"] + records["factor"] + [records["rerun"]]
    files = write_report(everything, tmp_path / "report")
    text = files["seeds"].read_text()
    rows = [line for line in text.splitlines() if line.startswith("| shapes")]
    assert len(rows) == 2 and rows[0].startswith("| shapes | BetaVAE | 4 | 3 | 0, 1, 2 |")
    assert "Not counted" in text and "b4_s1/version_0 · last" in text
    mig = np.array([records["factor"][s]["mig"] for s in (0, 1, 2)])
    assert f"{np.median(mig):.3f} [{mig.min():.3f}, {mig.max():.3f}]" in rows[1]
    table = {r["label"]: r for r in csv.DictReader(files["seeds_csv"].open())}
    assert float(table["FactorVAE"]["mig_median"]) == pytest.approx(np.median(mig))
    assert table["FactorVAE"]["mig_n"] == "3" and table["FactorVAE"]["gamma"] == "35.0"
    results = list(csv.DictReader(files["csv"].open()))
    assert sorted(r["seed"] for r in results) == ["0", "0", "1", "1", "1", "2", "2"]


def test_beta_charts_draw_medians_with_their_range(records, tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(charts, "median_chart", lambda s, path, *a, **k: drawn.setdefault(path.stem, (s, k)))
    charts.beta_charts(records["b4"] + records["b16"] + records["factor"], tmp_path)
    series, kwargs = drawn["mig_vs_beta"]
    mig4 = np.array([r["mig"] for r in records["b4"]])
    assert series["BetaVAE · shapes"][0] == pytest.approx((4.0, np.median(mig4), mig4.min(), mig4.max()))
    assert [p[0] for p in series["BetaVAE · shapes"]] == [4.0, 16.0]
    mig = np.array([r["mig"] for r in records["factor"]])
    assert kwargs["references"]["FactorVAE · shapes"] == pytest.approx((np.median(mig), mig.min(), mig.max()))
    monkeypatch.undo()
    assert charts.beta_charts(records["b4"], tmp_path / "png")["mig_vs_beta"].stat().st_size > 0


def test_report_reads_each_runs_config_once(tmp_path, records, monkeypatch):
    """Each run's config.yaml is read once per report (``RunConfig``, carried with the records), whether the
    run was evaluated (evaluation/*.json) or contributes its training log (metrics.csv)."""
    evaluated = records["b4"] + records["factor"]
    for r in evaluated:
        (Path(r["run"]) / "evaluation").mkdir()
        (Path(r["run"]) / "evaluation" / "last.json").write_text(json.dumps({**r, "ssim": 0.5, "psnr": 20.0}))
    logged = Path(records["b16"][0]["run"])  # never evaluated: its metrics.csv counts
    (logged / "metrics.csv").write_text("epoch,step,val/psnr,val/ssim\n0,10,21.5,0.61\n")
    reads: dict[str, int] = {}
    read_text = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "config.yaml":
            reads[str(self.parent)] = reads.get(str(self.parent), 0) + 1
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    runs = [*(r["run"] for r in evaluated), str(logged)]
    report(runs, tmp_path / "report")
    assert reads == {run: 1 for run in runs}
    seeds = (tmp_path / "report" / "seeds.md").read_text()
    assert "FactorVAE" in seeds and "0, 1, 2" in seeds  # the seeds still come from the configs


def test_a_run_from_before_the_redesign_is_one_row_with_its_reruns(tmp_path, records):
    """A seed written with the old model arguments (lr, hidden_channels, ...: betavae.models.legacy) and its rerun
    written in full by jsonargparse (every optimizer default, 0 as 0.0) are one setting."""
    old = run(
        tmp_path,
        "old_s0",
        0,
        "BetaVAE",
        beta=4.0,
        hidden_channels=[4, 8],
        architecture="study",
        lr=0.005,
        weight_decay=0.0,
        scheduler_gamma=None,
    )
    adam = {"lr": 0.005, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0, "amsgrad": False}
    nets = {"hidden_channels": [4, 8]}
    new = run(
        tmp_path,
        "new_s1",
        1,
        "BetaVAE",
        beta=4.0,
        lr_scheduler=None,
        optimizer={"class_path": "torch.optim.Adam", "init_args": adam},
        encoder={"class_path": "betavae.nets.ConvEncoder", "init_args": nets},
        decoder={"class_path": "betavae.nets.ConvDecoder", "init_args": {**nets, "kernel_size": 3}},
    )
    groups = aggregate([old, new])
    assert len(groups) == 1 and [r["seed"] for r in groups[0].records] == [0, 1]
    other = run(
        tmp_path,
        "new_s2",
        2,
        "BetaVAE",
        beta=4.0,
        lr_scheduler=None,
        optimizer={"class_path": "torch.optim.Adam", "init_args": {**adam, "lr": 0.001}},
    )
    assert len(aggregate([old, new, other])) == 2  # a different learning rate stays its own row


def test_labels_leave_out_weights_at_their_class_default(tmp_path):
    """A config that LightningCLI writes in full gives β-VAE its unused gamma=1000 and max_capacity=25 (BetaVAE's
    defaults); beside AnnealedVAE's gamma=10 they would vary and be named. A weight at its default is left out
    of the label; the loss's kind is named wherever it varies."""
    full = {"gamma": 1000.0, "max_capacity": 25.0}
    h = [run(tmp_path, f"h_s{s}", s, "BetaVAE", beta=4.0, loss_type="H", **full) for s in (0, 1)]
    b = run(tmp_path, "b_s0", 0, "BetaVAE", beta=4.0, loss_type="B", gamma=10.0, max_capacity=10.0)
    tc = [run(tmp_path, f"tc_{g}", 0, "BetaTCVAE", beta=6.0, gamma=g) for g in (1.0, 2.0)]  # gamma 1 is its default
    labels = sorted(g.label for g in aggregate([*h, b, *tc]))
    assert labels == [
        "BetaTCVAE gamma=2 β=6",
        "BetaTCVAE β=6",
        "BetaVAE loss_type=B gamma=10 max_capacity=10",
        "BetaVAE loss_type=H β=4",
    ]
