"""Each grid image encoded once (``GridCodes``) gives the numbers of the straightforward computation.

The reference is the old path, kept callable: every metric run on its own with every draw rendered and
encoded when drawn (``cache=None``) and DCI's factors fitted one at a time (``n_jobs=1``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from betavae import cli
from betavae.disentanglement import (
    FactorGrid,
    Preset,
    betavae_score,
    dci,
    evaluate_codes,
    evaluate_representation,
    factorvae_score,
    model_representation,
    sample_codes,
)
from betavae.disentanglement.grid_codes import GridCodes
from betavae.disentanglement.progress import CostRecorder, RichProgress

TINY = Preset(
    num_train=300,
    num_test=150,
    dci_train=200,
    dci_test=100,
    batch_size=8,
    betavae_train=60,
    betavae_eval=30,
    factorvae_train=40,
    factorvae_eval=20,
    factorvae_variance=300,
)
SIZES = (3, 4, 5, 6)


class Counting:
    """A deterministic code of FactorGrid images (mixed and noisy, like a real model's), counting images."""

    def __init__(self, grid: FactorGrid) -> None:
        self.grid = grid
        self.images = 0
        sizes = np.array(grid.factor_sizes)
        self.sizes = sizes
        self.noise = np.random.default_rng(7).standard_normal((int(np.prod(sizes)), 6))
        self.mix = np.random.default_rng(8).standard_normal((4, 6))

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.images += len(images)
        factors = self.grid.factors_of(images)  # (n, 4)
        noise = self.noise[np.ravel_multi_index(factors.T, self.sizes)]  # (n, 6) fixed per image
        return (factors / (self.sizes - 1)) @ self.mix + 0.3 * noise  # (n, 6) float64


def reference_suite(grid: FactorGrid, represent, p: Preset, seed: int, chunk: int = 4096) -> dict[str, float]:
    """The straightforward computation: every draw encoded when drawn, DCI one factor at a time.

    ``chunk`` (max_images_per_call) also sets how the intervention scores group their draws.
    """
    codes, factors = sample_codes(grid, represent, p.num_train + p.num_test, np.random.default_rng(seed), chunk)
    scores = evaluate_codes(codes, factors, p, seed, n_jobs=1)
    scores["factorvae_score"] = factorvae_score(
        grid,
        represent,
        p.batch_size,
        p.factorvae_train,
        p.factorvae_eval,
        p.factorvae_variance,
        seed=seed,
        max_images_per_call=chunk,
    )
    scores["betavae_score"] = betavae_score(
        grid, represent, p.batch_size, p.betavae_train, p.betavae_eval, seed=seed, max_images_per_call=chunk
    )
    return scores


@pytest.mark.parametrize("seed", [0, 3])
def test_suite_equals_the_reference_and_encodes_each_image_once(seed: int) -> None:
    grid = FactorGrid(SIZES)
    old, new = Counting(grid), Counting(grid)
    expected = reference_suite(grid, old, TINY, seed, chunk=97)
    got = evaluate_representation(grid, new, TINY, seed, max_images_per_call=97)
    assert got == expected  # exactly: the same codes, draws and estimators
    drawn = TINY.num_train + TINY.num_test + TINY.factorvae_variance
    drawn += TINY.batch_size * (TINY.factorvae_train + TINY.factorvae_eval)
    drawn += 2 * TINY.batch_size * (TINY.betavae_train + TINY.betavae_eval)
    assert old.images == drawn
    assert new.images <= int(np.prod(SIZES)) < drawn  # each of the 360 grid images at most once


def test_without_a_table_the_numbers_are_the_same() -> None:
    grid = FactorGrid(SIZES)
    expected = evaluate_representation(grid, Counting(grid), TINY, 1)
    small = Counting(grid)
    assert evaluate_representation(grid, small, TINY, 1, cache_bytes=100) == expected  # table too large: fallback
    assert small.images > int(np.prod(SIZES))
    assert evaluate_representation(grid, Counting(grid), TINY, 1, cache_bytes=0) == expected


def test_grid_codes_fills_only_what_is_missing_and_counts() -> None:
    grid = FactorGrid(SIZES)
    represent = Counting(grid)
    cache = GridCodes(grid, represent, max_images_per_call=5)
    rows = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0], [2, 3, 4, 5]])
    first = cache.codes_of(rows)
    np.testing.assert_array_equal(first, represent(grid.images_of(rows)))
    assert cache.cached and cache.rendered == 3 and cache.requested == 4
    again = cache.codes_of(rows[::-1])
    np.testing.assert_array_equal(again, first[::-1])
    assert cache.rendered == 3 and cache.requested == 8
    seen = []
    cache.progress = seen.append
    cache.codes_of(np.array([[1, 1, 1, 1], [0, 0, 0, 0]]))
    assert seen == [2] and cache.rendered == 4


def test_grid_codes_names_a_broken_code() -> None:
    grid = FactorGrid(SIZES)

    def broken(images: torch.Tensor) -> np.ndarray:
        codes = np.zeros((len(images), 2))
        codes[grid.factors_of(images)[:, 0] == 2] = np.nan
        return codes

    with pytest.raises(ValueError, match=r"NaN or infinite codes for 1 of 2 images \(first: factors \[2, 0, 0, 0\]\)"):
        GridCodes(grid, broken).codes_of(np.array([[0, 0, 0, 0], [2, 0, 0, 0]]))
    with pytest.raises(ValueError, match="must return codes"):
        GridCodes(grid, lambda images: np.zeros(len(images))).codes_of(np.array([[0, 0, 0, 0]]))


def test_dci_in_parallel_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(0)
    factors = rng.integers(0, [2, 5, 3], size=(240, 3))
    codes = np.concatenate([factors + 0.5 * rng.standard_normal((240, 3)), rng.standard_normal((240, 2))], axis=1)
    assert dci(codes, factors, seed=2, n_jobs=2) == dci(codes, factors, seed=2, n_jobs=1)
    assert dci(codes, factors, seed=2) == dci(codes, factors, seed=2, n_jobs=1)


def test_a_model_scores_within_float_noise_of_the_reference() -> None:
    """A torch model's codes may differ in the last bits when an image meets other images in its batch."""
    torch.manual_seed(0)
    grid = FactorGrid(SIZES)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)
            )

        def normalize(self, x: torch.Tensor) -> torch.Tensor:
            return x * 255.0 / 6.0

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    represent = model_representation(Tiny(), batch_size=32)
    expected = reference_suite(grid, represent, TINY, 0)
    got = evaluate_representation(grid, represent, TINY, 0)
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key


def test_progress_reports_every_metric_and_its_rows() -> None:
    grid = FactorGrid(SIZES)
    recorder = CostRecorder()
    evaluate_representation(grid, Counting(grid), TINY, 0, progress=recorder)
    assert list(recorder.costs) == [
        "sampling codes",
        "dci",
        "mig",
        "sap",
        "modularity",
        "explicitness",
        "factorvae_score",
        "betavae_score",
    ]
    costs = recorder.costs
    assert costs["sampling codes"].requested == TINY.num_train + TINY.num_test
    assert costs["betavae_score"].requested == 2 * TINY.batch_size * (TINY.betavae_train + TINY.betavae_eval)
    assert costs["dci"].requested == costs["dci"].encoded == 0
    assert sum(c.encoded for c in costs.values()) == recorder.cache.rendered <= int(np.prod(SIZES))
    assert all(c.wall >= 0 and c.cpu >= 0 for c in costs.values())


def test_ctrl_c_stops_the_bar_and_the_cli_prints_one_line(monkeypatch, capsys) -> None:
    grid = FactorGrid(SIZES)
    represent = Counting(grid)

    def interrupted(images: torch.Tensor) -> np.ndarray:
        if represent.images > 100:
            raise KeyboardInterrupt
        return represent(images)

    bar = RichProgress("test")
    with pytest.raises(KeyboardInterrupt), bar:
        evaluate_representation(grid, interrupted, TINY, 0, max_images_per_call=64, progress=bar)
    assert not bar.live.is_started  # the display is stopped, the terminal given back
    assert "sampling codes" in capsys.readouterr().err  # the bar of the metric that was interrupted

    def scoring(argv: list[str]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.STANDALONE_COMMANDS, "report", scoring)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "betavae report: interrupted\n"
