"""Cross-check ``betavae.disentanglement`` against disentanglement_lib's own metric functions.

disentanglement_lib (google-research/disentanglement_lib, Apache-2.0) computes its scores with NumPy and
scikit-learn once the codes are sampled; only its imports (gin, absl, six, TensorFlow) stand in the way.
This script loads its ``evaluation/metrics`` modules from a checkout with those imports stubbed, feeds
both implementations the same arrays (the benchmark's 10-d code on the dSprites grid) and prints both
numbers. The sample-based scores must agree exactly; the BetaVAE and FactorVAE scores draw their own
batches with different random generators, so they are compared over seeds.

Two pieces of the old environment are restored in disentanglement_lib's modules for the comparison:
``LogisticRegression()`` gets the defaults of the scikit-learn it ran with (<= 0.21: liblinear,
one-vs-rest), which ours uses on purpose, and ``GradientBoostingClassifier()`` gets our seed. Also
printed: Explicitness with today's ``LogisticRegression()`` default (lbfgs, multinomial).

    git clone https://github.com/google-research/disentanglement_lib /tmp/dl_src
    python scripts/crosscheck_disentanglement_lib.py --dl-root /tmp/dl_src
"""

from __future__ import annotations

import argparse  # a check script, not a betavae command: plain argparse is enough here
import importlib
import sys
import types
from pathlib import Path

import numpy as np
from sklearn import ensemble, linear_model
from sklearn.multiclass import OneVsRestClassifier

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_disentanglement import benchmark_representation  # noqa: E402

import betavae.disentanglement as ours  # noqa: E402
from betavae.disentanglement.arrays import split_indices  # noqa: E402


def stub_imports() -> None:
    """Empty stand-ins for gin (its decorators return the function), absl.logging and six.moves."""

    def configurable(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda function: function)

    gin = types.ModuleType("gin")
    gin.tf = types.ModuleType("gin.tf")
    for module in (gin, gin.tf):
        module.configurable, module.REQUIRED = configurable, None
    absl = types.ModuleType("absl")
    absl.logging = types.SimpleNamespace(info=lambda *a, **k: None)
    six = types.ModuleType("six")
    six.moves = types.ModuleType("six.moves")
    six.moves.range = range
    sys.modules.update({"gin": gin, "gin.tf": gin.tf, "absl": absl, "absl.logging": absl.logging})
    sys.modules.setdefault("six", six)
    sys.modules.setdefault("six.moves", six.moves)


def old_logistic_regression(random_state=None) -> OneVsRestClassifier:
    """``LogisticRegression()`` as scikit-learn <= 0.21 built it: liblinear, one-vs-rest."""
    return OneVsRestClassifier(linear_model.LogisticRegression(solver="liblinear", random_state=0))


class GridAdapter:
    """disentanglement_lib's ground-truth data interface around a ``FactorGrid`` (NumPy RandomState)."""

    def __init__(self, grid: ours.FactorGrid) -> None:
        self.grid, self.num_factors = grid, len(grid.factor_sizes)

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(size, size=num) for size in self.grid.factor_sizes], axis=1)

    def sample_observations_from_factors(self, factors, random_state):
        return self.grid.images_of(factors)

    def sample_observations(self, num, random_state):
        return self.grid.images_of(self.sample_factors(num, random_state))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dl-root", type=Path, required=True, help="a disentanglement_lib checkout")
    parser.add_argument("--num-samples", type=int, default=3000, help="rows for the sample-based scores")
    parser.add_argument("--dci-samples", type=int, default=750, help="rows for DCI (its trees are slow)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the intervention scores")
    args = parser.parse_args()
    if not (args.dl_root / "disentanglement_lib" / "evaluation" / "metrics" / "utils.py").is_file():
        raise SystemExit(f"{args.dl_root} is not a disentanglement_lib checkout (no disentanglement_lib/evaluation)")
    stub_imports()
    sys.path.insert(0, str(args.dl_root))
    dl = {
        name: importlib.import_module(f"disentanglement_lib.evaluation.metrics.{name}")
        for name in ("utils", "mig", "dci", "sap_score", "modularity_explicitness", "beta_vae", "factor_vae")
    }
    utils = dl["utils"]
    discretize = utils._histogram_discretize
    utils.make_discretizer = lambda target: discretize(target, 20)
    dl["dci"].ensemble = types.SimpleNamespace(
        GradientBoostingClassifier=lambda: ensemble.GradientBoostingClassifier(random_state=0)
    )

    grid = ours.FactorGrid()
    represent = benchmark_representation(grid)
    n = args.num_samples
    codes, factors = ours.sample_codes(grid, represent, n, np.random.default_rng(0))
    train, test = split_indices(n, 2 / 3, 0)
    (xt, yt), (xs, ys) = (codes[train].T, factors[train].T), (codes[test].T, factors[test].T)  # theirs: (D, N)
    rows = [
        ("MIG", ours.mig(codes[train], factors[train]), dl["mig"]._compute_mig(xt, yt)["discrete_mig"]),
        (
            "Modularity",
            ours.modularity(codes[train], factors[train]),
            dl["modularity_explicitness"].modularity(utils.discrete_mutual_info(discretize(xt, 20), yt)),
        ),
        ("SAP", ours.sap(codes, factors), dl["sap_score"]._compute_sap(xt, yt, xs, ys, False)["SAP_score"]),
        (
            "SAP, continuous factors",
            ours.sap(codes, factors, continuous_factors=True),
            dl["sap_score"]._compute_sap(codes.T, factors.T, codes.T, factors.T, True)["SAP_score"],
        ),
    ]
    me = dl["modularity_explicitness"]
    train_norm, mean, std = utils.normalize_data(xt)
    test_norm, _, _ = utils.normalize_data(xs, mean, std)

    def their_explicitness() -> float:
        return float(
            np.mean([me.explicitness_per_factor(train_norm, y, test_norm, z)[1] for y, z in zip(yt, ys, strict=True)])
        )

    me.linear_model = types.SimpleNamespace(LogisticRegression=old_logistic_regression)
    rows.append(("Explicitness", ours.explicitness(codes, factors), their_explicitness()))
    me.linear_model = linear_model
    rows.append(("Explicitness, today's LogisticRegression()", ours.explicitness(codes, factors), their_explicitness()))
    m = args.dci_samples
    dci_train, dci_test = split_indices(m, 2 / 3, 0)
    mine = ours.dci(codes[:m], factors[:m])
    x, y = codes[:m], factors[:m]
    theirs = dl["dci"]._compute_dci(x[dci_train].T, y[dci_train].T, x[dci_test].T, y[dci_test].T)
    for part, key in (("disentanglement", "disentanglement"), ("completeness", "completeness")):
        rows.append((f"DCI {part}", mine[part], theirs[key]))
    rows.append(("DCI informativeness", mine["informativeness"], theirs["informativeness_test"]))

    dl["beta_vae"].linear_model = types.SimpleNamespace(LogisticRegression=old_logistic_regression)
    adapter = GridAdapter(grid)
    for seed in range(args.seeds):
        state = np.random.RandomState(seed)
        their_beta = dl["beta_vae"].compute_beta_vae_sklearn(adapter, represent, state, None, 64, 10_000, 5_000)
        their_factor = dl["factor_vae"].compute_factor_vae(
            adapter, represent, np.random.RandomState(seed), None, 64, 10_000, 5_000, 10_000
        )  # their default prune threshold is 0 (0.05 comes from gin): compare with 0
        rows.append(
            (f"BetaVAE score, seed {seed}", ours.betavae_score(grid, represent, seed=seed), their_beta["eval_accuracy"])
        )
        mine_factor = ours.factorvae_score(grid, represent, seed=seed, prune_threshold=0.0)
        rows.append((f"FactorVAE score (threshold 0), seed {seed}", mine_factor, their_factor["eval_accuracy"]))

    print("| score | betavae | disentanglement_lib | difference |\n|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.6f} | {b:.6f} | {a - b:+.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
