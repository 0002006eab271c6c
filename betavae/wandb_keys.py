"""The names W&B sees: the metric, media and config keys every run logs, in one place.

``betavae dashboard`` builds its panels from these names and ``report --wandb`` names its table columns and
charts with them, so the two cannot drift apart; ``tests/test_dashboard.py`` checks them against the keys an
offline run really logs, so a renamed metric fails a test instead of leaving an empty panel.

Where each key comes from (the callbacks in ``betavae.callbacks``; the config keys from
``betavae.run_labels.run_keys`` through ``betavae.tracking``):

- ``val/loss``, ``val/recon``, ``val/kl``: the model's validation loss parts (``AutoencoderModule``);
- ``val/psnr``, ``val/ssim``: ``ReconstructionMetrics``, every validation epoch;
- ``val/fid``, ``val/kid``: ``FID``, when ``--fid.every_n_epochs`` is set;
- ``val/<metric>`` for each of ``betavae.disentanglement.ALL_KEYS``: ``DisentanglementMetrics``, when
  ``--disentanglement.every_n_epochs`` is set;
- ``val/kl_per_dim`` (a histogram) and ``val/traversal`` (an image): ``LatentTraversal``;
- ``val/samples`` and ``val/reconstructions`` (images): ``ImageGrids``;
- ``epoch`` and ``train/loss``: Lightning and the model, per step.
"""

from __future__ import annotations

from betavae.disentanglement import ALL_KEYS

__all__ = [
    "BETA",
    "CONFIG_KEYS",
    "DATASET",
    "DISENTANGLEMENT",
    "EPOCH",
    "GROUP_BY",
    "HISTOGRAM",
    "MEDIA",
    "REPORT_PREFIX",
    "SCORES",
    "TRADEOFF",
    "VARIANT",
    "beta_tag",
    "report_key",
    "val_key",
]

#: config keys every run carries (``betavae.run_labels.run_keys``)
DATASET, BETA, VARIANT = "dataset", "beta", "variant"
CONFIG_KEYS = (DATASET, BETA, VARIANT)
#: the dashboard's grouping: one group per dataset, then one per β inside it
GROUP_BY = (DATASET, BETA)
#: the x axis of the curves over training (Lightning logs it with every metric)
EPOCH = "epoch"

#: (name, label, higher is better) of the scores plotted against β; ``val/<name>`` in a training run,
#: ``<name>`` in ``report``'s table
SCORES: tuple[tuple[str, str, bool], ...] = (
    ("fid", "FID", False),
    ("ssim", "SSIM", True),
    ("psnr", "PSNR (dB)", True),
    ("kl", "KL (nats)", False),
)
#: (name, label) of the disentanglement metrics, in ``betavae.disentanglement.ALL_KEYS``' order
_LABELS = {
    "mig": "MIG",
    "sap": "SAP",
    "dci_disentanglement": "DCI disentanglement",
    "dci_completeness": "DCI completeness",
    "dci_informativeness": "DCI informativeness",
    "modularity": "Modularity",
    "explicitness": "Explicitness",
    "factorvae_score": "FactorVAE score",
    "betavae_score": "BetaVAE score",
}
DISENTANGLEMENT: tuple[tuple[str, str], ...] = tuple((key, _LABELS[key]) for key in ALL_KEYS)
#: the reconstruction–disentanglement trade-off: (x, y) = (MIG, PSNR)
TRADEOFF = ("mig", "psnr")
#: the latent usage histogram (one value per latent dimension: its mean KL in nats)
HISTOGRAM = "val/kl_per_dim"
#: (key, title) of the image panels, each ordered by β
MEDIA: tuple[tuple[str, str], ...] = (
    ("val/traversal", "Latent traversals"),
    ("val/samples", "Samples from the prior"),
    ("val/reconstructions", "Reconstructions (inputs above)"),
)
#: what ``report --wandb`` logs under: ``report/results`` (the table) and ``report/<chart>``
REPORT_PREFIX = "report"


def val_key(name: str) -> str:
    """The key a training run logs a score under: ``val/fid`` for ``fid``."""
    return f"val/{name}"


def report_key(name: str) -> str:
    """The key ``report --wandb`` logs a table or chart under: ``report/results``, ``report/tradeoff``."""
    return f"{REPORT_PREFIX}/{name}"


def beta_tag(beta: float) -> str:
    """The tag of a run with this β (``betavae.tracking.run_tags``): ``beta10`` for 10, ``beta0.5`` for 0.5."""
    return f"beta{beta:g}"
