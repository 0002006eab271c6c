"""Latent traversals: grid shape, the middle column, KL ranking on a model where it is known, the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from helpers import SCALES, KnownKL
from PIL import Image

from betavae.callbacks import LatentTraversal
from betavae.cli import BetaVAECLI, main
from betavae.data import ShapesDataModule
from betavae.evaluation import parse_dims
from betavae.scoring.traversal import (
    check_dims,
    mean_kl_per_dim,
    render_traversal,
    top_dims,
    traversal_values,
    traverse_latents,
)


def data(n: int = 48) -> ShapesDataModule:
    dm = ShapesDataModule(num_images=n, image_size=16, batch_size=4)
    dm.setup()
    return dm


def analytic_kl(dm: ShapesDataModule) -> torch.Tensor:
    images = (dm.prepare_batch({"image": item["image"].unsqueeze(0)})["image"] for item in dm.val_set)
    f = torch.stack([KnownKL.feature(image)[0, 0] for image in images])
    return 0.5 * torch.tensor(SCALES).pow(2) * f.pow(2).mean()


def trainer(tmp_path: Path, callbacks: list, **kwargs: Any) -> L.Trainer:
    kwargs = {"max_epochs": 1, "limit_train_batches": 2, **kwargs}
    return L.Trainer(
        callbacks=callbacks,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_grid_is_k_rows_by_7_columns_and_its_middle_column_decodes_the_unchanged_code():
    model = KnownKL().eval()
    values = traversal_values()
    assert values.tolist() == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    dims = [1, 4, 3]
    mu = torch.tensor([0.3, -1.2, 0.0, 0.7, 0.4, -0.1])
    with torch.no_grad():
        zero = traverse_latents(model, torch.zeros(6), dims, values)
        shifted = traverse_latents(model, mu, dims, values, relative=True)
        absolute = traverse_latents(model, mu, dims, values)
        decode = lambda z: model.to_pixels(model.decode(z.unsqueeze(0)))[0]  # noqa: E731
        assert zero.shape == shifted.shape == (3, 7, 1, 16, 16)
        for row, d in enumerate(dims):
            torch.testing.assert_close(zero[row, 3], decode(torch.zeros(6)))  # z = 0: value 0 is z itself
            torch.testing.assert_close(shifted[row, 3], decode(mu))  # relative: shift 0 is μ itself
            z = mu.clone()
            z[d] = 2.0
            torch.testing.assert_close(absolute[row, 5], decode(z))  # the dimension set to 2, the others kept
            assert not torch.equal(zero[row, 0], zero[row, 6])  # the dimension does change the image


def test_dimensions_are_ranked_by_their_mean_kl():
    dm = data()
    model = KnownKL()
    kl = mean_kl_per_dim(model, (batch["image"] for batch in dm.eval_batches("val")))
    torch.testing.assert_close(kl, analytic_kl(dm), rtol=1e-5, atol=1e-8)
    assert top_dims(kl, 3) == [1, 4, 3]
    assert top_dims(kl, 100) == [1, 4, 3, 0, 5, 2]


def test_callback_picks_the_largest_kl_dimensions_and_writes_png_and_gif(tmp_path):
    dm = data()
    callback = LatentTraversal(top_k=3)
    run = trainer(tmp_path, [callback])
    run.fit(KnownKL(), dm)
    assert callback.last_dims == [1, 4, 3]
    torch.testing.assert_close(callback.last_kl, analytic_kl(dm), rtol=1e-5, atol=1e-8)
    folder = Path(run.log_dir) / "images"
    assert (folder / "traversal_epoch=000.png").is_file()
    kl_rows = (folder.parent / "kl_per_dim.csv").read_text().splitlines()  # the KL behind the ranking, per epoch
    assert kl_rows[0].split(",")[:3] == ["epoch", "step", "z0"] and len(kl_rows) >= 2
    with Image.open(folder / "traversal_epoch=000.gif") as gif:
        assert gif.n_frames == 7 + 5  # -3 … 3 and back


def test_callback_shows_given_dimensions_in_order(tmp_path):
    callback = LatentTraversal(dims=[5, 0], every_n_epochs=2)
    run = trainer(tmp_path, [callback], max_epochs=3)
    run.fit(KnownKL(), data())
    assert callback.last_dims == [5, 0]
    names = sorted(p.name for p in (Path(run.log_dir) / "images").glob("traversal_*.png"))
    assert names == ["traversal_epoch=001.png", "traversal_epoch=002.png"]  # its period, and the last epoch


def test_bad_dimensions_are_named():
    with pytest.raises(ValueError, match="latent size is 6"):
        check_dims([2, 6], 6)
    with pytest.raises(ValueError, match="non-empty"):
        LatentTraversal(dims=[])
    with pytest.raises(ValueError, match="span"):
        LatentTraversal(span=0)
    assert parse_dims("11,16,31") == parse_dims("11 16 31") == parse_dims([11, 16, 31]) == [11, 16, 31]
    with pytest.raises(ValueError, match="like 11,16,31"):
        parse_dims("11;16")


def test_render_draws_both_references_and_returns_the_panels(tmp_path):
    model = KnownKL()
    reference = next(data().eval_batches("val"))["image"][0]
    out = render_traversal(model, reference, [1, 4], torch.ones(6), traversal_values(2.0, 5), tmp_path / "t.png")
    assert set(out["panels"]) == {"from μ of the reference", "from z = 0"}
    assert all(p.shape == (2, 5, 1, 16, 16) for p in out["panels"].values())
    assert out["figure"].shape[0] == 3 and out["png"].is_file() and out["gif"].is_file()


def test_models_without_a_posterior_get_one_warning_and_no_figure(tmp_path):
    class Deterministic(KnownKL):
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.feature(x) * self.scales

        def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(self.encode(x))

    run = trainer(tmp_path, [LatentTraversal()], max_epochs=2)
    with pytest.warns(UserWarning, match="not a posterior") as record:
        run.fit(Deterministic(), data())
    assert len([w for w in record if "LatentTraversal" in str(w.message)]) == 1
    assert not list(Path(run.log_dir).rglob("traversal_*"))


def test_traverse_command_writes_the_figure_for_chosen_dimensions(shapes_args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *shapes_args,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir=runs",
            "--trainer.logger.name=test",
            "--progress_bar.refresh_rate=0",
        ]
    )
    ckpt = tmp_path / "runs" / "test" / "version_0" / "checkpoints" / "last.ckpt"
    photo = tmp_path / "photo.png"
    Image.new("L", (40, 30), 128).save(photo)
    # no --config: the run's config.yaml is found next to the checkpoint
    main(["traverse", f"--ckpt_path={ckpt}", "--dims", "2,0", "--image", str(photo)])
    out = tmp_path / "runs" / "test" / "version_0" / "evaluation"
    assert (out / "traversal_last_photo_dims-2-0.png").is_file()
    assert (out / "traversal_last_photo_dims-2-0.gif").is_file()
    record = (out / "traversal_last_photo_dims-2-0.json").read_text()
    assert '"dims": [\n    2,\n    0\n  ]' in record
    captions = json.loads(record)["captions"]  # shapes have factors: what each dimension predicts best
    assert set(captions) == {"0", "1", "2", "3"} and all(" (MI " in c or " (AUC " in c for c in captions.values())
    with pytest.raises(ValueError, match="latent size is 4"):
        BetaVAECLI(args=["traverse", f"--ckpt_path={ckpt}", "--dims", "7"])
