"""Disentanglement metrics against known answers on seeded synthetic factors.

Codes are built from the true factors of a ``FactorGrid`` (whose images are their own factor indices):
the factors themselves in any order and under monotone maps, independent noise, or a rotation that
mixes two factors. References are computed independently here (counts and ``scipy.stats.entropy``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import conv_nets
from joblib import parallel_config
from scipy.stats import entropy
from sklearn.metrics import roc_auc_score

from betavae.disentanglement import (
    ALL_KEYS,
    SAMPLE_KEYS,
    FactorGrid,
    Preset,
    betavae_score,
    dci,
    dci_classifier,
    dimension_attributes,
    disentanglement_completeness,
    evaluate_codes,
    evaluate_representation,
    explicitness,
    factorvae_score,
    histogram_discretize,
    mig,
    model_representation,
    modularity,
    sap,
)

DSPRITES = FactorGrid()  # 3 x 6 x 40 x 32 x 32
SMALL = FactorGrid((2, 3, 4, 6))  # few classes: gradient-boosted trees stay cheap
TINY = Preset(
    num_train=300,
    num_test=150,
    dci_train=120,
    dci_test=60,
    batch_size=16,
    betavae_train=150,
    betavae_eval=75,
    factorvae_train=150,
    factorvae_eval=75,
    factorvae_variance=500,
)
ORDER = [4, 2, 0, 3, 1]  # code dimension j holds factor ORDER[j]
MONOTONE = [lambda v: np.exp(v / 8), lambda v: -3 * v + 1, lambda v: v**3, lambda v: np.arctan(v - 2), np.log1p]


def factors_of(grid: FactorGrid, n: int, seed: int = 0) -> np.ndarray:
    return grid.sample_factors(n, np.random.default_rng(seed))


def rotate(codes: np.ndarray, i: int, j: int, angle: float = np.pi / 4) -> np.ndarray:
    """Codes with dimensions i and j rotated into each other (each then mixes two factors)."""
    out = codes.copy()
    c, s = np.cos(angle), np.sin(angle)
    out[:, i], out[:, j] = c * codes[:, i] - s * codes[:, j], s * codes[:, i] + c * codes[:, j]
    return out


def permuted_monotone(factors: np.ndarray) -> np.ndarray:
    """The true factors, reordered and each mapped by a different monotone function."""
    return np.stack([MONOTONE[j](factors[:, k].astype(float)) for j, k in enumerate(ORDER)], axis=1)


def representation(grid: FactorGrid, transform=lambda f: f):
    """images → transform(true factors as floats)."""
    return lambda images: transform(grid.factors_of(images).astype(float))


def noise_representation(dim: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return lambda images: rng.normal(size=(len(images), dim))


def plug_in_entropy(counts) -> float:
    return float(entropy(np.asarray(counts, dtype=float)))


# ----------------------------------------------------------------- discretization and MIG


def test_histogram_bins_of_the_dsprites_factors():
    """20 equal-width bins: 40 orientations fall two per bin, 32 positions 12 bins of two and 8 of one."""
    bins = histogram_discretize(np.array([np.arange(40.0), np.arange(40.0) * 0.5 + 3]).T)  # affine: same bins
    assert np.array_equal(bins[:, 0], bins[:, 1])
    assert sorted(np.bincount(bins[:, 0])[1:].tolist()) == [2] * 20
    counts = np.bincount(histogram_discretize(np.arange(32.0)[:, None])[:, 0])[1:]
    assert sorted(counts.tolist()) == [1] * 8 + [2] * 12
    assert bins.min() == 1 and bins.max() == 20


def test_mig_hand_computed():
    """Two binary factors, two codes: the mutual informations from counts by hand."""
    y0 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y1 = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    z0 = 3.0 * y0 - 1  # a copy of y0
    z1 = np.array([0, 1, 0, 1, 0, 1, 0, 0]) * 0.2  # y1 with the last sample flipped
    h = plug_in_entropy([4, 4])  # each factor: ln 2
    h_z1 = plug_in_entropy([5, 3])
    mi_z1_y0 = h + h_z1 - plug_in_entropy([2, 2, 3, 1])  # joint counts of (y0, z1)
    mi_z1_y1 = h + h_z1 - plug_in_entropy([4, 3, 1])  # (0,0): 4, (1,1): 3, (1,0): 1
    expected = ((h - mi_z1_y0) / h + (mi_z1_y1 - 0.0) / h) / 2  # z0 carries nothing about y1
    assert mig(np.stack([z0, z1], 1), np.stack([y0, y1], 1)) == pytest.approx(expected, abs=1e-12)


def test_mig_of_true_factors_is_the_discretization_cap():
    """Any order, any monotone map: MIG is the entropy the bins keep, minus the plug-in bias (< 0.015)."""
    factors = factors_of(DSPRITES, 10_000)
    codes = permuted_monotone(factors)
    caps = []
    for j, k in enumerate(ORDER):
        kept = plug_in_entropy(np.histogram(codes[:, j], bins=20)[0])  # binned code is a function of v_k
        caps.append(kept / plug_in_entropy(np.bincount(factors[:, k])))
    cap = np.mean(caps)
    assert cap - 0.015 < mig(codes, factors) <= cap + 1e-12
    # affine maps keep the bins: the cap of the plain factors, (1 + 1 + 0.812 + 0.85 + 0.85) / 5 at uniform counts
    plain = mig(factors.astype(float), factors)
    assert 0.902 - 0.02 < plain <= 0.9025
    assert mig(factors * -2.0 + 7, factors) == pytest.approx(plain)
    assert np.log(20) / np.log(40) == pytest.approx(0.812, abs=1e-3)


def test_mig_noise_and_mixing():
    factors = factors_of(DSPRITES, 10_000)
    noise = np.random.default_rng(1).normal(size=(10_000, 10))
    assert 0 <= mig(noise, factors) < 0.01
    codes = factors.astype(float)
    assert mig(rotate(codes, 3, 4), factors) < mig(codes, factors) - 0.2


# ----------------------------------------------------------------- SAP, Modularity, Explicitness


def test_sap_known_answers():
    factors = factors_of(DSPRITES, 3000)
    codes = permuted_monotone(factors)
    true = sap(codes, factors)
    noise = sap(np.random.default_rng(1).normal(size=(3000, 5)), factors)
    assert true > 0.15 and abs(noise) < 0.03
    assert sap(rotate(factors.astype(float), 3, 4), factors) < sap(factors.astype(float), factors) - 0.02
    # continuous factors: squared correlation, 1 for a linear copy and ~0 for the others
    assert sap(factors * 0.5 - 1.0, factors, continuous_factors=True) == pytest.approx(1.0, abs=0.01)
    # two binary factors, each copied exactly into its own dimension: accuracy 1 against ~0.5
    binary = factors_of(FactorGrid((2, 2)), 2000)
    assert sap(binary + 0.0, binary) == pytest.approx(0.5, abs=0.05)


def test_modularity_and_explicitness_known_answers():
    factors = factors_of(DSPRITES, 2000)
    codes = permuted_monotone(factors)
    noise = np.random.default_rng(1).normal(size=(2000, 5))
    assert modularity(codes, factors) > 0.97
    assert modularity(noise, factors) < modularity(codes, factors) - 0.1  # noise is not near 0 (see docstring)
    linear = factors.astype(float)
    assert modularity(rotate(linear, 3, 4), factors) < modularity(linear, factors) - 0.1
    explicit = explicitness(linear, factors)
    assert explicit > 0.85  # one-vs-rest linear read-out of a linear code
    assert explicitness(noise, factors) == pytest.approx(0.5, abs=0.03)
    # a rotation keeps what is linearly decodable: explicitness measures information, not its arrangement
    assert explicitness(rotate(linear, 3, 4), factors) == pytest.approx(explicit, abs=0.02)


# ----------------------------------------------------------------- DCI


def test_dci_formulas_on_hand_matrices():
    assert disentanglement_completeness(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert disentanglement_completeness(np.ones((3, 4))) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert disentanglement_completeness([[1, 0], [1, 0]]) == pytest.approx((1.0, 0.0), abs=1e-9)
    assert disentanglement_completeness([[1, 1], [0, 0]]) == pytest.approx((0.0, 1.0), abs=1e-9)
    r = np.array([[0.6, 0.2], [0.1, 0.1]])  # D: rows' entropies in base 2, weighted by row sums
    d = (0.8 * (1 - entropy([0.75, 0.25], base=2)) + 0.2 * (1 - entropy([0.5, 0.5], base=2))) / 1.0
    c = 0.7 * (1 - entropy([6 / 7, 1 / 7], base=2)) + 0.3 * (1 - entropy([2 / 3, 1 / 3], base=2))
    assert disentanglement_completeness(r) == pytest.approx((d, c), abs=1e-9)


def test_dci_known_answers():
    factors = factors_of(SMALL, 450)
    codes = np.stack([MONOTONE[j](factors[:, k] + 0.0) for j, k in enumerate([3, 1, 0, 2])], axis=1)
    true = dci(codes, factors)
    assert true["disentanglement"] > 0.99 and true["completeness"] > 0.99 and true["informativeness"] > 0.99
    noise = dci(np.random.default_rng(1).normal(size=(450, 4)), factors)
    assert noise["disentanglement"] < 0.05 and noise["completeness"] < 0.05
    chance = np.mean([1 / 2, 1 / 3, 1 / 4, 1 / 6])
    assert noise["informativeness"] < chance + 0.1
    mixed = dci(rotate(factors.astype(float), 2, 3), factors)
    assert mixed["disentanglement"] < true["disentanglement"] - 0.1
    assert mixed["completeness"] < true["completeness"] - 0.1


def test_dci_other_estimators_and_parallel_factors_give_the_same_numbers():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    factors = factors_of(SMALL, 200)
    codes = factors + np.random.default_rng(3).normal(scale=0.5, size=factors.shape)
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    with parallel_config(backend="threading"):  # the n_jobs path without starting processes
        assert dci(codes, factors, estimator=forest, n_jobs=2) == dci(codes, factors, estimator=forest)
    with pytest.raises(ValueError, match="LogisticRegression has no feature_importances_"):
        dci(codes, factors, estimator=LogisticRegression())


def test_dci_estimator_gbt_is_the_default_bit_for_bit():
    from sklearn.ensemble import GradientBoostingClassifier

    factors = factors_of(SMALL, 200)
    codes = factors + np.random.default_rng(3).normal(scale=0.5, size=factors.shape)
    assert dci(codes, factors, seed=2, estimator="gbt") == dci(codes, factors, seed=2)
    assert dci_classifier("gbt", 2).get_params() == GradientBoostingClassifier(random_state=2).get_params()
    suite = evaluate_codes(codes, factors, preset=TINY, seed=1)
    assert evaluate_codes(codes, factors, preset=TINY, seed=1, dci_estimator="gbt") == suite


def test_dci_random_forest_is_bounded_seeded_and_ranks_a_disentangled_code_first():
    factors = factors_of(SMALL, 450)
    rng = np.random.default_rng(4)
    disentangled = factors[:, [3, 1, 0, 2]] + rng.normal(scale=0.1, size=factors.shape)
    mixing = np.linalg.qr(rng.normal(size=(4, 4)))[0]  # a random rotation: every dimension mixes all factors
    entangled = disentangled @ mixing
    noisy = disentangled + rng.normal(scale=0.7, size=factors.shape)  # scores well inside (0, 1)
    seeded = dci(noisy, factors, seed=1, estimator="random_forest")
    assert all(0.05 < v < 0.95 for v in seeded.values())
    assert dci(noisy, factors, seed=1, estimator="random_forest") == seeded
    assert dci(noisy, factors, seed=2, estimator="random_forest") != seeded
    assert dci(noisy, factors, seed=1) != seeded  # another estimator: other numbers
    first = dci(disentangled, factors, seed=1, estimator="random_forest")
    assert all(0.9 < v <= 1.0 for v in first.values())
    mixed = dci(entangled, factors, seed=1, estimator="random_forest")
    assert mixed["disentanglement"] < first["disentanglement"] - 0.3
    assert mixed["completeness"] < first["completeness"] - 0.3
    suite = evaluate_codes(disentangled, factors, preset=TINY, seed=1, dci_estimator="random_forest")
    assert suite == evaluate_codes(disentangled, factors, preset=TINY, seed=1, dci_estimator="random_forest")
    assert (
        suite["dci_disentanglement"]
        != evaluate_codes(disentangled, factors, preset=TINY, seed=1)["dci_disentanglement"]
    )


def test_an_unknown_dci_estimator_is_one_error_before_any_work():
    factors = factors_of(SMALL, 200)
    message = "dci_estimator must be one of 'gbt', 'random_forest'; got 'xgboost'"
    with pytest.raises(ValueError, match=message):
        dci(factors + 0.5, factors, estimator="xgboost")
    with pytest.raises(ValueError, match=message):
        evaluate_codes(factors + 0.5, factors, preset=TINY, dci_estimator="xgboost")

    def never(images):
        raise AssertionError("no image is drawn for a wrong name")

    with pytest.raises(ValueError, match=message):
        evaluate_representation(SMALL, never, preset=TINY, dci_estimator="xgboost")


# ----------------------------------------------------------------- intervention scores


def test_intervention_scores_known_answers():
    sizes = dict(batch_size=32, num_train=300, num_eval=150)
    true = representation(DSPRITES, permuted_monotone)
    assert betavae_score(DSPRITES, true, **sizes) == 1.0
    assert factorvae_score(DSPRITES, true, num_variance_estimate=1000, **sizes) == 1.0
    noise = noise_representation(5)
    assert betavae_score(DSPRITES, noise, **sizes) < 0.2 + 0.12  # chance: 1 / 5
    assert factorvae_score(DSPRITES, noise_representation(5), num_variance_estimate=1000, **sizes) < 0.2 + 0.12
    mixed = representation(DSPRITES, lambda f: rotate(f, 3, 4))
    assert betavae_score(DSPRITES, mixed, **sizes) < 0.9
    assert factorvae_score(DSPRITES, mixed, num_variance_estimate=1000, **sizes) < 0.9


def test_factorvae_prunes_collapsed_dimensions():
    sizes = dict(batch_size=16, num_train=100, num_eval=50, num_variance_estimate=200)
    collapsed = representation(SMALL, lambda f: np.concatenate([f, np.zeros((len(f), 2))], axis=1))
    assert factorvae_score(SMALL, collapsed, **sizes) == 1.0
    assert factorvae_score(SMALL, representation(SMALL, lambda f: f * 1e-3), **sizes) == 0.0  # all below 0.05


# ----------------------------------------------------------------- the suite, seeds, attributes


def test_suites_have_the_agreed_keys_and_are_seeded():
    grid = FactorGrid((2, 3, 4))
    noisy = representation(grid, lambda f: f + np.random.default_rng(0).normal(scale=0.3, size=f.shape))
    first = evaluate_representation(grid, noisy, preset=TINY, seed=3)
    assert tuple(first) == ALL_KEYS and all(isinstance(v, float) for v in first.values())
    assert first["dci_disentanglement"] > 0.7 and first["factorvae_score"] > 0.9 and first["betavae_score"] > 0.9
    assert evaluate_representation(grid, noisy, preset=TINY, seed=3) == first
    assert evaluate_representation(grid, noisy, preset=TINY, seed=4) != first
    factors = factors_of(grid, 1000)
    codes = factors + np.random.default_rng(2).normal(size=factors.shape)
    scores = evaluate_codes(codes, factors, preset=TINY, seed=1)
    assert tuple(scores) == SAMPLE_KEYS and evaluate_codes(codes, factors, preset=TINY, seed=1) == scores


def test_dimension_attributes_names_scores_and_directions():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(2, size=2000), rng.integers(40, size=2000)], axis=1)  # binary, 40 values
    codes = np.stack([factors[:, 0] + rng.normal(scale=0.5, size=2000), -factors[:, 1] * 0.1], axis=1)
    first, second = dimension_attributes(codes, factors, ["smiling", "orientation"])
    assert (first.name, first.measure, first.direction) == ("smiling", "auc", 1)
    assert first.score == pytest.approx(roc_auc_score(factors[:, 0], codes[:, 0]))
    assert (second.name, second.measure, second.direction) == ("orientation", "normalized_mi", -1)
    kept = plug_in_entropy(np.bincount(factors[:, 1] // 2))  # 20 bins hold the pairs {2m, 2m + 1}
    assert second.score == pytest.approx(kept / plug_in_entropy(np.bincount(factors[:, 1])))
    assert first.label.startswith("smiling ↑ (AUC") and second.label.startswith("orientation ↓ (MI")


def test_model_representation_is_mu_in_eval_mode_in_batches():
    from betavae.models import BetaVAE

    model = BetaVAE(latent_dim=3, **conv_nets(8, 16), in_channels=1, image_size=16).train()
    images = torch.randint(0, 256, (7, 1, 16, 16), dtype=torch.uint8)
    codes = model_representation(model, batch_size=3)(images)
    assert model.training  # mode restored
    with torch.no_grad():
        expected = model.eval().encode(model.normalize(images.float() / 255)).mean.numpy()
    assert codes.shape == (7, 3) and np.allclose(codes, expected, atol=1e-5)

    class Recorder(torch.nn.Module):  # duck-typed: normalize and embed
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[tuple[int, bool]] = []

        def normalize(self, pixels):
            return pixels * 2 - 1

        def embed(self, x):
            self.batches.append((len(x), self.training))
            return x.flatten(1)[:, :2]

    recorder = Recorder()
    out = model_representation(recorder, batch_size=3)(images)
    assert recorder.batches == [(3, False), (3, False), (1, False)] and recorder.training
    assert np.allclose(out, images.flatten(1)[:, :2].numpy() / 255 * 2 - 1)


# ----------------------------------------------------------------- one clear message per bad input


@pytest.mark.parametrize(
    ("codes", "factors", "message"),
    [
        (np.zeros((10, 3)), np.zeros((9, 2), dtype=int), "codes have 10 rows but factors have 9"),
        (np.zeros(10), np.zeros((10, 2), dtype=int), "codes must be a 2-d array"),
        (np.ones((10, 3)), np.full((10, 2), 0.5), "factors must be integer indices"),
        (np.array([[np.nan, 1.0]] * 10), np.zeros((10, 2), dtype=int), "NaN or infinite values in 10 of 10 rows"),
        (np.ones((1, 3)), np.zeros((1, 2), dtype=int), "at least 2 samples"),
        (np.ones((10, 3)), np.zeros((10, 2), dtype=int), "factor 0 takes the single value 0"),
        (np.ones((10, 1)), np.arange(20).reshape(10, 2), "at least 2 dimensions"),
    ],
)
def test_input_checks(codes, factors, message):
    with pytest.raises(ValueError, match=message):
        mig(codes, factors)


def test_input_checks_of_split_metrics_and_representations():
    factors = np.stack([np.zeros(30, dtype=int), np.arange(30) % 3], axis=1)
    with pytest.raises(ValueError, match="DCI: factor 0 takes the single value 0 in the training part"):
        dci(np.random.default_rng(0).normal(size=(30, 2)), factors)
    with pytest.raises(ValueError, match="at least 2 and 1 are needed"):
        sap(np.ones((2, 2)), np.array([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match="preset must be 'default', 'fast'"):
        evaluate_codes(np.ones((10, 2)), np.ones((10, 2), dtype=int), preset="quick")
    broken = representation(SMALL, lambda f: np.where(f[:, :1] > 0, np.nan, f))
    with pytest.raises(ValueError, match="NaN or infinite codes for"):
        betavae_score(SMALL, broken, batch_size=4, num_train=4, num_eval=2)
    with pytest.raises(ValueError, match=r"codes \(n, D\) for n = "):
        factorvae_score(SMALL, lambda images: np.zeros(len(images)), num_variance_estimate=10)

    class Transposed(FactorGrid):
        def sample_factors(self, n, rng):
            return super().sample_factors(n, rng).T

    with pytest.raises(
        ValueError, match=r"Transposed.sample_factors\(10\) returned shape \(4, 10\), expected \(10, 4\)"
    ):
        factorvae_score(Transposed((2, 3, 4, 6)), representation(SMALL), num_variance_estimate=10)
