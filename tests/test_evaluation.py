"""The evaluate and report commands: the study's table from checkpoints and run folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import write_images
from test_metrics import skimage_scores

from betavae.cli import BetaVAECLI, main
from betavae.evaluation import markdown_table
from betavae.evaluation.report import collect
from betavae.models import BetaVAE

MODEL = ["--model=betavae.models.BetaVAE", "--model.init_args.hidden_channels=[8,16]", "--model.init_args.latent_dim=4"]
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
    "--fid.feature_extractor=test_fid.TinyFeatures",
    "--fid.num_samples=24",
    "--fid.kid_subset_size=4",
    "--fid.kid_subsets=3",
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
    assert result["fid_reference"] == "shapes validation split" and "TinyFeatures" in result["fid_feature_extractor"]
    row = (run / "evaluation" / "last.md").read_text().splitlines()
    assert row[0].startswith("| dataset | β | SSIM | PSNR (dB) | FID | n |")
    assert row[2].startswith(f"| shapes | 4 | {result['ssim']:.3f} | {result['psnr']:.2f} | {result['fid']:.2f} | 8 |")
    assert "24 / shapes validation split (n=8)" in row[2]
    assert row[2] in capsys.readouterr().out


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
    assert row[0].endswith("| SSIM of input | PSNR of input (dB) |")
    assert row[2].endswith(f"| {result['ssim_input']:.3f} | {result['psnr_input']:.2f} |")


def test_evaluate_scores_a_folder_of_new_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    photos = write_images(tmp_path / "photos", 5, size=(30, 20), mode="L")
    ckpt = run / "checkpoints" / "last.ckpt"
    no_fid = ["--fid.on_missing=warn", f"--fid.weights_path={tmp_path / 'absent.pth'}"]  # never downloads
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


def test_evaluate_without_weights_fails_early_or_notes_the_missing_fid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train("shapes_b4")
    missing = ["--fid.weights_path", str(tmp_path / "no_such_weights.pth")]
    from betavae.callbacks import InceptionWeightsError

    with pytest.raises(InceptionWeightsError, match="python -m betavae prefetch"):
        main(["evaluate", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *missing])
    with pytest.warns(UserWarning, match="no FID"):
        main(["evaluate", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *missing, "--fid.on_missing=warn"])
    result = json.loads((run / "evaluation" / "last.json").read_text())
    assert result["fid"] is None and "weights are missing" in result["fid_note"] and result["psnr"] > 0


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


def test_report_tables_datasets_by_beta_with_csv_and_charts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, beta in (("b10", 10.0), ("b1", 1.0)):
        run = train(name, beta)
        main(["evaluate", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *TINY_FID])
    unevaluated = train("b4_log_only", 4.0)  # no evaluate: its training log is used
    main(["report", "runs/b10", "runs/b1", str(unevaluated), "--output_dir", "report"])
    table = (tmp_path / "report" / "results.md").read_text().splitlines()
    assert [line.split("|")[2].strip() for line in table[2:]] == ["1", "4", "10"]  # sorted by β
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
    assert table.splitlines()[2] == "| celeba | 100 | 0.512 | 21.00 | — | 50000 | — | — |"


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
