"""The evaluate and report commands: the study's table from checkpoints and run folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import conv_nets, write_images
from helpers import flush_wandb, skimage_scores

from betavae.cli import BetaVAECLI, main
from betavae.evaluation import markdown_table
from betavae.evaluation.report import collect
from betavae.models import BetaVAE

MODEL = [
    "--model=betavae.models.BetaVAE",
    "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.latent_dim=4",
]
DATA = [
    "--data=betavae.data.ShapesDataModule",
    "--data.init_args.num_images=32",
    "--data.init_args.image_size=16",
    "--data.init_args.batch_size=4",
]
TRAIN = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=runs",
    "--trainer.enable_model_summary=false",
    "--progress_bar.refresh_rate=0",
]
TINY_FID = [
    "--fid.feature_extractor=helpers.CountingFeatures",
    "--fid.num_samples=24",
    "--fid.kid_subset_size=4",
    "--fid.kid_subsets=3",
    "--disentanglement_preset=none",  # the protocol's sizes take an hour on shapes; tested below on a small grid
]


def train(name: str, beta: float = 4.0) -> Path:
    main(["fit", *MODEL, *DATA, *TRAIN, f"--trainer.logger.name={name}", f"--model.init_args.beta={beta}"])
    return Path("runs") / name / "version_0"


def test_evaluate_scores_the_validation_split_and_writes_json_and_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["evaluate", f"--ckpt_path={ckpt}", *TINY_FID])  # the run's config.yaml is found by itself
    result = json.loads((run / "evaluation" / "last.json").read_text())
    assert result["dataset"] == "shapes" and result["beta"] == 4.0 and result["model"] == "BetaVAE"
    assert result["n"] == 8 and result["evaluated_on"] == "validation split"
    # the same numbers the training run logged for this (last) checkpoint's epoch
    logged = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/psnr")][-1]
    assert result["psnr"] == pytest.approx(float(logged["val/psnr"]), rel=1e-5)
    assert result["ssim"] == pytest.approx(float(logged["val/ssim"]), rel=1e-5, abs=1e-6)
    assert result["fid"] is not None and result["fid_num_samples"] == 24 and result["fid_num_real"] == 8
    assert result["fid_reference"] == "shapes validation split" and "PixelFeatures" in result["fid_feature_extractor"]
    row = (run / "evaluation" / "last.md").read_text().splitlines()
    assert row[0].startswith("| dataset | model | β | SSIM | PSNR (dB) | FID | n |") and row[0].endswith("| run |")
    assert row[2].startswith(
        f"| shapes | BetaVAE | 4 | {result['ssim']:.3f} | {result['psnr']:.2f} | {result['fid']:.2f} | 8 |"
    )
    assert row[2].endswith("| shapes_b4/version_0 · last |")  # the run and the checkpoint
    assert "24 / shapes validation split (n=8)" in row[2]
    assert row[2] in capsys.readouterr().out


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_evaluate_and_traverse_check_and_read_the_checkpoint_once(tmp_path, monkeypatch):
    """The CLI checks and reads --ckpt_path once (``LoadedCheckpoint``) and the command loads its weights from
    that read; LightningCLI's own read of the hyperparameters is the only other ``torch.load``."""
    import inspect

    import torch

    import betavae.checkpoints

    monkeypatch.chdir(tmp_path)
    ckpt = train("shapes_once") / "checkpoints" / "last.ckpt"
    checks, loads = [], []
    problem, load = betavae.checkpoints.checkpoint_problem, torch.load

    def counting_problem(path):
        checks.append(path)
        return problem(path)

    def counting_load(*args, **kwargs):
        loads.append(inspect.stack()[1].frame.f_globals.get("__name__", "?").split(".")[0])
        return load(*args, **kwargs)

    monkeypatch.setattr(betavae.checkpoints, "checkpoint_problem", counting_problem)
    monkeypatch.setattr(torch, "load", counting_load)
    main(["evaluate", f"--ckpt_path={ckpt}", *TINY_FID])
    assert len(checks) == 1 and sorted(loads) == ["betavae", "lightning"]
    checks.clear(), loads.clear()
    main(["traverse", f"--ckpt_path={ckpt}", "--dims=0,1"])
    assert len(checks) == 1 and sorted(loads) == ["betavae", "lightning"]


def test_evaluate_scores_a_denoiser_on_its_corrupted_input_exactly_as_validation_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    masking = [
        "--model=betavae.models.Autoencoder",
        "--model.init_args.net=betavae.nets.StackedDenseNet",
        "--model.init_args.net.init_args.hidden=[32]",
        "--model.init_args.net.init_args.latent_dim=8",
        "--model.init_args.corruption=betavae.models.Masking",
        "--model.init_args.corruption.init_args.p=0.5",
        "--model.init_args.output_activation=sigmoid",
    ]
    main(["fit", *masking, *DATA, *TRAIN, "--trainer.max_epochs=2", "--trainer.logger.name=masking"])
    run = Path("runs/masking/version_0")
    ckpt = run / "checkpoints" / "last.ckpt"
    logged = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/psnr")][-1]
    validated = BetaVAECLI(args=["validate", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}"])
    scores = {k: float(v) for k, v in validated.trainer.callback_metrics.items()}
    main(["evaluate", f"--ckpt_path={ckpt}", *TINY_FID])
    result = json.loads((run / "evaluation" / "last.json").read_text())
    for key in ("psnr", "ssim", "psnr_input", "ssim_input"):
        assert result[key] == pytest.approx(scores[f"val/{key}"], rel=1e-5, abs=1e-6), key
        assert result[key] == pytest.approx(float(logged[f"val/{key}"]), rel=1e-5, abs=1e-6), key
    assert result["psnr_input"] != pytest.approx(result["psnr"])  # the input's own score, not the model's
    row = (run / "evaluation" / "last.md").read_text().splitlines()
    assert "| FID | SSIM of input | PSNR of input (dB) | n |" in row[0]  # beside the model's own scores
    assert f"| {result['ssim_input']:.3f} | {result['psnr_input']:.2f} | 8 |" in row[2]


def test_evaluate_scores_a_folder_of_new_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    photos = write_images(tmp_path / "photos", 5, size=(30, 20), mode="L")
    ckpt = run / "checkpoints" / "last.ckpt"
    no_fid = ["--fid.on_missing=warn", f"--fid.weights_path={tmp_path / 'absent.pth'}"]  # never downloads
    no_fid.append("--disentanglement_preset=none")
    main(["evaluate", f"--ckpt_path={ckpt}", f"--images={photos[0].parent}", *no_fid])
    result = json.loads((run / "evaluation" / "last__photos.json").read_text())
    assert result["n"] == 5 and result["evaluated_on"] == "images: photos"
    # independently: decode the files, reconstruct, and score with scikit-image
    model = BetaVAE.load_from_checkpoint(ckpt).eval()
    from betavae.data import load_image

    pixels = torch.stack([load_image(p, 1, 16) for p in photos]).float() / 255
    with torch.no_grad():
        recon = model.to_pixels(model.reconstruct(model.normalize(pixels)))
    psnr, ssim = skimage_scores(recon, pixels)
    assert result["psnr"] == pytest.approx(psnr, abs=1e-3) and result["ssim"] == pytest.approx(ssim, abs=1e-3)


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_evaluate_without_weights_fails_early_or_notes_the_missing_fid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    missing = ["--fid.weights_path", str(tmp_path / "no_such_weights.pth"), "--disentanglement_preset=none"]
    from betavae.fid import InceptionWeightsError

    with pytest.raises(InceptionWeightsError, match="python -m betavae prefetch"):
        BetaVAECLI(args=["evaluate", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *missing])
    with pytest.warns(UserWarning, match="no FID"):
        main(["evaluate", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *missing, "--fid.on_missing=warn"])
    result = json.loads((run / "evaluation" / "last.json").read_text())
    assert result["fid"] is None and "weights are missing" in result["fid_note"] and result["psnr"] > 0


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_evaluate_needs_a_config_when_the_run_has_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    lonely = tmp_path / "elsewhere" / "model.ckpt"
    lonely.parent.mkdir()
    lonely.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(SystemExit):
        main(["evaluate", f"--ckpt_path={lonely}"])
    assert "pass the run's config with --config" in capsys.readouterr().err
    main(["evaluate", f"--ckpt_path={lonely}", "--config", str(run / "config.yaml"), *TINY_FID])
    assert (lonely.parent / "evaluation" / "model.json").is_file()


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_report_tables_datasets_by_beta_with_csv_and_charts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, beta in (("b10", 10.0), ("b1", 1.0)):
        run = train(name, beta)
        main(["evaluate", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *TINY_FID])
    unevaluated = train("b4_log_only", 4.0)  # no evaluate: its training log is used
    main(["report", "runs/b10", "runs/b1", str(unevaluated), "--output_dir", "report"])
    table = (tmp_path / "report" / "results.md").read_text().splitlines()
    assert [line.split("|")[3].strip() for line in table[2:]] == ["1", "4", "10"]  # sorted by β
    assert "training log" in table[3] and "validation split" in table[2]
    with (tmp_path / "report" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["beta"]) for r in rows] == [1.0, 4.0, 10.0] and all(r["dataset"] == "shapes" for r in rows)
    assert rows[0]["fid_num_samples"] == "24" and rows[1]["fid"] == ""
    for metric in ("ssim", "psnr", "fid"):
        assert (tmp_path / "report" / f"{metric}.png").stat().st_size > 0
    assert table[0] in capsys.readouterr().out


def test_report_names_a_folder_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no scores under"):
        collect([tmp_path / "empty"])


def test_markdown_table_marks_missing_values():
    table = markdown_table([{"dataset": "celeba", "beta": 100.0, "ssim": 0.51234, "psnr": 21.0, "n": 50000}])
    assert table.splitlines()[2] == "| celeba | — | 100 | 0.512 | 21.00 | — | 50000 | — | — | — |"


def test_study_tables_split_reconstruction_fid_and_the_kld_weight_comparison():
    from betavae.evaluation.report import study_tables

    def record(dataset, beta, kld, ssim, fid):
        return {
            "dataset": dataset,
            "beta": beta,
            "kld_weight": kld,
            "ssim": ssim,
            "psnr": 20.0,
            "fid": fid,
            "n": 100,
            "evaluated_on": "validation split",
            "fid_num_samples": 2400,
            "fid_reference": f"{dataset} validation split",
            "fid_num_real": 100,
        }

    records = [
        record("batik", 1.0, 0.0025, 0.30, 80.0),
        record("batik", 1.0, 1e-6, 0.60, 120.0),
        record("batik", 10.0, 0.0025, 0.25, 90.0),
        record("celeba", 10.0, 0.0025, 0.40, 60.0),
    ]
    text = study_tables(records)
    recon, fid, kld = text.split("## ")[1:]
    assert recon.count("\n| batik") == 3 and "| celeba | 10 | 0.0025 | 0.400 | 20.00 | 100 |" in recon
    assert "| celeba | 10 | 0.0025 | 60.00 |" in fid and "2400 / celeba validation split (n=100)" in fid
    kld_rows = [line for line in kld.splitlines() if line.startswith("| batik")]
    assert kld_rows == [
        "| batik | 1 | 0.0025 | 0.0025 | 0.300 | 20.00 | 80.00 |",
        "| batik | 1 | 1e-06 | 1e-06 | 0.600 | 20.00 | 120.00 |",
    ]  # only the dataset and β trained with two kld_weights, largest weight first


# ---------------------------------------------------------------- disentanglement in evaluate and report
TINY_PRESET = {
    "num_train": 60,
    "num_test": 30,
    "dci_train": 40,
    "dci_test": 20,
    "batch_size": 8,
    "betavae_train": 20,
    "betavae_eval": 10,
    "factorvae_train": 20,
    "factorvae_eval": 10,
    "factorvae_variance": 50,
}


def test_fit_evaluate_and_report_carry_every_disentanglement_metric(tmp_path, monkeypatch):
    from conftest import write_dsprites

    from betavae.data.dsprites import DSPRITES_FILE
    from betavae.disentanglement import ALL_KEYS

    monkeypatch.chdir(tmp_path)
    write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE)  # factors 3 × 2 × 4 × 3 × 3: quick metrics
    data = ["--data=betavae.data.DSpritesDataModule", "--data.init_args.root=dsprites", *DATA[2:]]
    preset = json.dumps(TINY_PRESET)
    main(
        [
            "fit",
            *MODEL,
            *data,
            *TRAIN,
            "--trainer.logger.name=ds",
            "--disentanglement.every_n_epochs=1",
            f"--disentanglement.preset={preset}",
            "--disentanglement.seed=5",
        ]
    )
    run = Path("runs") / "ds" / "version_0"
    row = [r for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/mig")][-1]
    assert all(row[f"val/{key}"] for key in ALL_KEYS)  # the callback logged every metric

    main(
        [
            "evaluate",
            f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            f"--disentanglement_preset={preset}",
            "--fid.on_missing=warn",
            f"--fid.weights_path={tmp_path / 'absent.pth'}",
        ]
    )
    result = json.loads((run / "evaluation" / "last.json").read_text())
    assert all(isinstance(result[key], float) for key in ALL_KEYS)
    assert result["disentanglement_preset"]["num_train"] == 60 and result["disentanglement_seed"] == 5
    assert result["disentanglement_basis"] == "dsprites factor grid (3×2×4×3×3), uniform draws"
    assert result["seconds"]["disentanglement_cpu"] > 0
    # the same weights, preset and seed as the callback's last epoch: the same numbers
    assert result["mig"] == pytest.approx(float(row["val/mig"]), rel=1e-5)
    md = (run / "evaluation" / "last.md").read_text().splitlines()
    assert md[0].startswith("| dataset | model | β | SSIM | PSNR (dB) | FID | MIG | SAP | DCI D |")
    assert md[2].startswith("| dsprites | BetaVAE | 4 |") and md[2].endswith("| ds/version_0 · last |")

    main(["report", "runs/ds", "--output_dir", "report"])
    table = (tmp_path / "report" / "results.md").read_text()
    assert "| MIG |" in table and f"| {result['mig']:.3f} |" in table
    for chart in ("mig_vs_beta", "dci_disentanglement_vs_beta", "tradeoff_psnr_mig"):
        assert (tmp_path / "report" / f"{chart}.png").stat().st_size > 0


def test_evaluate_with_the_random_forest_records_and_shows_dcis_estimator(tmp_path, monkeypatch, capsys):
    from betavae.errors import ConfigError
    from betavae.evaluation import score_disentanglement

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "--dci_estimator {gbt,random_forest}" in capsys.readouterr().out
    model = BetaVAE(in_channels=3, image_size=16, **conv_nets(8), latent_dim=2)
    with pytest.raises(ConfigError, match="dci_estimator must be one of 'gbt', 'random_forest'; got 'lasso'"):
        score_disentanglement(model, None, [], preset="fast", dci_estimator="lasso")  # before any work
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    ckpt = run / "checkpoints" / "last.ckpt"
    tiny = f"--disentanglement_preset={json.dumps(TINY_PRESET)}"
    main(["evaluate", f"--ckpt_path={ckpt}", tiny, "--dci_estimator=random_forest", "--skip_fid=true"])
    result = json.loads((run / "evaluation" / "last.json").read_text())
    assert result["dci_estimator"] == "random_forest"
    assert all(0.0 <= result[f"dci_{k}"] <= 1.0 for k in ("disentanglement", "completeness", "informativeness"))
    md = (run / "evaluation" / "last.md").read_text().splitlines()
    assert "| Explicitness | DCI estimator | n |" in md[0] and "| random_forest |" in md[2]
    with pytest.raises(SystemExit):
        main(["evaluate", f"--ckpt_path={ckpt}", tiny, "--dci_estimator=lasso", "--skip_fid=true"])


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_evaluate_with_preset_none_or_without_ground_truth_notes_why(tmp_path, monkeypatch, image_folder):
    from betavae.data import ImageFolderDataModule
    from betavae.evaluation import score_disentanglement

    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["evaluate", f"--ckpt_path={ckpt}", *TINY_FID])  # with --disentanglement_preset=none
    result = json.loads((run / "evaluation" / "last.json").read_text())
    assert result["mig"] is None and result["disentanglement_note"] == "not computed (--disentanglement_preset none)"
    assert "| MIG |" not in (run / "evaluation" / "last.md").read_text()  # no metric, no columns
    with pytest.raises(SystemExit):
        main(["evaluate", f"--ckpt_path={ckpt}", "--disentanglement_preset=slow"])
    folder = ImageFolderDataModule(root=str(image_folder), image_size=16)
    folder.setup("validate")
    model = BetaVAE(in_channels=3, image_size=16, **conv_nets(8), latent_dim=2)
    out = score_disentanglement(model, folder, folder.val_dataloader(), preset="fast")
    assert out["mig"] is None and out["disentanglement_note"].endswith("has no factors, attributes or class labels")


def record(run: str, model: str, beta: float | None, psnr: float, mig: float | None, dataset: str = "shapes") -> dict:
    """An ``evaluate`` JSON record as the report reads it."""
    return {
        "dataset": dataset,
        "model": model,
        "beta": beta,
        "ssim": 0.8,
        "psnr": psnr,
        "n": 100,
        "evaluated_on": "validation split",
        "mig": mig,
        "sap": mig / 2 if mig is not None else None,
        "checkpoint": f"{run}/checkpoints/last.ckpt",
    }


def write_runs(root: Path, records: list[dict]) -> list[Path]:
    runs = []
    for r in records:
        folder = root / r["checkpoint"].split("/checkpoints/")[0]
        (folder / "evaluation").mkdir(parents=True)
        (folder / "evaluation" / "last.json").write_text(json.dumps(r))
        runs.append(folder)
    return runs


def test_report_rows_name_run_and_model_and_chart_each_metric_against_beta(tmp_path):
    from betavae.evaluation.report import write_report

    records = collect(
        write_runs(
            tmp_path,
            [
                record("vae/version_0", "VAE", 1.0, 24.0, 0.05, "fashion_mnist"),
                record("ae/version_0", "Autoencoder", None, 26.0, 0.02, "fashion_mnist"),
                record("b4/version_0", "BetaVAE", 4.0, 22.0, 0.20),
                record("b16/version_0", "BetaVAE", 16.0, 19.0, 0.35),
                record("b4tc/version_0", "BetaTCVAE", 4.0, 21.0, 0.30),
            ],
        )
    )
    files = write_report(records, tmp_path / "report")
    lines = files["markdown"].read_text().splitlines()
    fashion = [line for line in lines if line.startswith("| fashion_mnist")]
    assert fashion[0].startswith("| fashion_mnist | Autoencoder | — |") and "| ae/version_0 · last |" in fashion[0]
    assert fashion[1].startswith("| fashion_mnist | VAE | 1 |") and "| vae/version_0 · last |" in fashion[1]
    rows = list(csv.DictReader(files["csv"].open()))
    assert [(r["run"], r["model"], r["mig"]) for r in rows][:2] == [
        ("ae/version_0 · last", "Autoencoder", "0.02"),
        ("vae/version_0 · last", "VAE", "0.05"),
    ]
    assert rows[0]["run_dir"].endswith("ae/version_0")
    assert {"mig_vs_beta", "sap_vs_beta", "tradeoff"} <= set(files) and "dci_completeness_vs_beta" not in files
    assert all(files[name].stat().st_size > 0 for name in ("mig_vs_beta", "tradeoff"))


def test_report_charts_draw_every_run_they_name(tmp_path, monkeypatch):
    from betavae.evaluation import charts

    drawn = {}
    monkeypatch.setattr(charts, "median_chart", lambda series, path, *a, **k: drawn.setdefault(path.stem, series))
    monkeypatch.setattr(charts, "labelled_scatter", lambda points, path, *a, **k: drawn.setdefault(path.stem, points))
    records = [record("b4", "BetaVAE", 4.0, 22.0, 0.2), record("b16", "BetaVAE", 16.0, 19.0, 0.35)]
    records += [record("b4s1", "BetaVAE", 4.0, 23.0, 0.4), record("ae", "Autoencoder", None, 26.0, 0.02)]
    charts.write_charts(records, ["a", "b", "c", "d"], tmp_path)
    # runs without a config.yaml are never merged over seeds: each its own point (median = min = max)
    assert drawn["mig_vs_beta"] == {
        "BetaVAE · shapes": [(4.0, 0.2, 0.2, 0.2), (4.0, 0.4, 0.4, 0.4), (16.0, 0.35, 0.35, 0.35)]
    }
    assert drawn["tradeoff_psnr_mig"] == [
        (0.2, 22.0, "BetaVAE β=4", "shapes"),
        (0.35, 19.0, "BetaVAE β=16", "shapes"),
        (0.4, 23.0, "BetaVAE β=4", "shapes"),
        (0.02, 26.0, "Autoencoder", "shapes"),
    ]


def test_report_logs_its_table_and_charts_to_an_offline_wandb_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = write_runs(
        tmp_path,
        [record("b4/version_0", "BetaVAE", 4.0, 22.0, 0.2), record("b16/version_0", "BetaVAE", 16.0, 19.0, 0.35)],
    )
    main(["report", *map(str, runs), "--output_dir", str(tmp_path / "report"), "--wandb", "true"])
    folder = Path(capsys.readouterr().out.split("W&B: ")[1].split()[0])
    assert folder.parent == tmp_path / "report" / "wandb" and folder.name.startswith("offline-run-")
    flush_wandb()  # the report's run is finished; its file is whole once W&B's service is done
    stored = (folder / f"run-{folder.name.split('-')[-1]}.wandb").read_bytes()
    assert b"report/results" in stored and b"report/mig_vs_beta" in stored and b"report/tradeoff" in stored


def test_report_reads_the_metrics_of_a_training_log(tmp_path):
    run = tmp_path / "runs" / "quickstart" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "model:\n  class_path: betavae.models.BetaVAE\n  init_args:\n    beta: 4.0\n"
        "data:\n  class_path: betavae.data.ShapesDataModule\n  init_args: {}\n"
    )
    (run / "metrics.csv").write_text(
        "epoch,step,val/psnr,val/ssim,val/mig,val/betavae_score\n0,10,20.0,0.5,,\n1,20,21.0,0.6,0.25,0.7\n2,30,22.0,0.7,,\n"
    )
    line = {"preset": {"name": "fast"}, "dci_estimator": "random_forest", "seed": 0, "basis": "grid"}
    (run / "disentanglement.jsonl").write_text(json.dumps(line))
    (found,) = collect([tmp_path / "runs"])
    assert found["psnr"] == 22.0 and found["mig"] == 0.25 and found["betavae_score"] == 0.7 and found["sap"] is None
    assert found["model"] == "BetaVAE" and found["disentanglement_preset"] == {"name": "fast"}
    assert found["dci_estimator"] == "random_forest"
    assert "| quickstart/version_0 |" in markdown_table([found])
