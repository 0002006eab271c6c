"""The project's ``Trainer``: Lightning's, plus the ``evaluate``, ``traverse`` and ``explore`` subcommands."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from lightning.pytorch import Trainer

from betavae.data import ImageDataModule
from betavae.disentanglement import DCIEstimator, Preset
from betavae.evaluation import evaluate_checkpoint, traverse_checkpoint
from betavae.evaluation.explore import explore_checkpoint
from betavae.loaded_checkpoint import LoadedCheckpoint
from betavae.models import AutoencoderModule
from betavae.scoring.disentanglement import DisentanglementSettings
from betavae.scoring.fid import FIDSettings
from betavae.scoring.traversal import TraversalSettings

Settings = TypeVar("Settings")


class BetaVAETrainer(Trainer):
    """Lightning's ``Trainer`` plus the ``evaluate`` and ``traverse`` subcommands.

    LightningCLI takes a subcommand's options from the trainer method of that name, so these two get
    the same config system as ``fit`` (``--config``, ``--ckpt_path``, the model and data sections);
    their settings for FID, the disentanglement metrics (seed, interventions, n_jobs) and traversals are
    those of the run's ``fid``, ``disentanglement`` and ``traversal`` callbacks; the disentanglement preset
    and DCI's estimator are ``evaluate``'s own arguments.
    """

    #: the ``--ckpt_path`` as the CLI read it (``LoadedCheckpoint``), for ``evaluate``, ``traverse`` and ``explore``
    loaded_checkpoint: LoadedCheckpoint | None = None

    def _checkpoint(self, ckpt_path: str) -> LoadedCheckpoint | str:
        """The CLI's read of ``ckpt_path`` when it has one (with its contents), else the path to load."""
        read = self.loaded_checkpoint
        return read if read is not None and read.contents is not None and read.is_for(ckpt_path) else ckpt_path

    def _settings(self, kind: type[Settings]) -> Settings | None:
        """The settings of type ``kind`` (``betavae.scoring``) that one of the run's callbacks carries as
        ``settings``; ``None`` when none does."""
        found = (getattr(c, "settings", None) for c in self.callbacks)
        return next((s for s in found if isinstance(s, kind)), None)

    def evaluate(
        self,
        model: AutoencoderModule,
        datamodule: ImageDataModule,
        ckpt_path: str,
        images: str | None = None,
        crop_size: int | None = None,
        output_dir: str | None = None,
        weights_only: bool | None = None,
        disentanglement_preset: Literal["default", "fast", "none"] | Preset = "default",
        dci_estimator: DCIEstimator = "gbt",
        skip_fid: bool = False,
    ) -> dict[str, Any]:
        """Score a checkpoint for the study's table: mean SSIM and PSNR, FID of prior samples, and the
        disentanglement metrics on data with factors, attributes or class labels.

        Writes JSON and a Markdown row (dataset, model, β, SSIM, PSNR dB, FID, the disentanglement metrics,
        n, FID samples / reference, run). FID uses the ``fid`` settings (2,400 samples against the
        validation split by default); the disentanglement metrics the ``disentanglement`` settings' seed.

        Args:
            ckpt_path: The checkpoint; without --config its run's config.yaml supplies the data.
            images: A folder of images the model never saw (the study used photos from outside the
                training set), scored instead of the validation split.
            crop_size: Center crop (source pixels) of those images before resizing to the model's size.
            output_dir: Where the JSON and Markdown go; default: evaluation/ in the checkpoint's run folder.
            weights_only: As for fit: ``None``/``True`` loads only tensors; ``False`` unpickles anything
                (trusted files only).
            disentanglement_preset: Sample sizes of the disentanglement metrics: ``default`` (disentanglement_lib's,
                the protocol's numbers; slow on a CPU: about 2 hours on 64×64 shapes, most of it the BetaVAE and
                FactorVAE scores), ``fast`` (about a tenth), ``none`` (skip them), or the sizes of a
                ``betavae.disentanglement.Preset``.
            dci_estimator: DCI's classifier: ``gbt`` (disentanglement_lib's gradient-boosted trees, the
                protocol's numbers; ~350 s of CPU at the default preset) or ``random_forest`` (Eastwood &
                Williams 2018's estimator, fixed settings: ~13 s, 30x less CPU; other numbers, never compare DCI
                across estimators). The JSON records it as ``dci_estimator``.
            skip_fid: No FID/KID (e.g. a study's other seeds, where the Inception features cost more than
                the rest of the evaluation); the JSON says so in ``fid_note``.
        """
        fid = self._settings(FIDSettings)
        settings = self._settings(DisentanglementSettings) or DisentanglementSettings()
        result = evaluate_checkpoint(
            model,
            datamodule,
            self._checkpoint(ckpt_path),
            images,
            crop_size,
            fid,
            self.strategy.root_device,
            output_dir,
            weights_only=weights_only is not False,
            disentanglement={
                "preset": disentanglement_preset,
                "seed": settings.seed,
                "interventions": settings.interventions,
                "n_jobs": settings.n_jobs,
                "dci_estimator": dci_estimator,
            },
            skip_fid=skip_fid,
        )
        if self.is_global_zero:
            print(result["markdown"])
            scored = result["evaluated_on"] if result["n"] is None else f"n = {result['n']} ({result['evaluated_on']})"
            if result.get("psnr_input") is not None:
                scored += f"; the corrupted input: PSNR {result['psnr_input']:.2f} dB, SSIM {result['ssim_input']:.3f}"
            features = f", features: {result['fid_feature_extractor']}" if result.get("fid") is not None else ""
            print(
                f"{scored}; FID on {result['fid_num_samples'] or 0} samples "
                f"({result['fid_note'] or result['fid_reference']}{features}); "
                f"disentanglement: {result['disentanglement_basis'] or result['disentanglement_note']}; "
                f"seconds: {result['seconds']}\nwrote {', '.join(result['files'])}"
            )
        return result

    def traverse(
        self,
        model: AutoencoderModule,
        datamodule: ImageDataModule,
        ckpt_path: str,
        dims: list[int] | str | None = None,
        image: str | None = None,
        top_k: int | None = None,
        crop_size: int | None = None,
        output_dir: str | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """The study's manipulation figure: chosen latent dimensions swept over [-3, 3] (PNG and GIF).

        Rows are the dimensions (labelled with their mean KL on the validation split), columns the
        values; one panel starts from the reference image's μ, one from z = 0. Span, steps and the
        relative mode come from the ``traversal`` settings.

        Args:
            ckpt_path: The checkpoint; without --config its run's config.yaml supplies the data.
            dims: Latent dimensions, e.g. 11,16,31; default: the top_k with the largest mean KL.
            image: An image file as the reference; default: the first validation image.
            top_k: Number of dimensions when --dims is not given; default: traversal.top_k.
            crop_size: Center crop (source pixels) of --image before resizing to the model's size.
            output_dir: Where the files go; default: evaluation/ in the checkpoint's run folder.
            weights_only: As for fit: ``None``/``True`` loads only tensors; ``False`` unpickles anything
                (trusted files only).
        """
        record = traverse_checkpoint(
            model,
            datamodule,
            self._checkpoint(ckpt_path),
            dims=dims,
            image=image,
            top_k=top_k,
            settings=self._settings(TraversalSettings),
            crop_size=crop_size,
            device=self.strategy.root_device,
            output_dir=output_dir,
            weights_only=weights_only is not False,
        )
        if self.is_global_zero:
            kl = ", ".join(f"z{d}: {v:.3f}" for d, v in record["kl"].items())
            print(f"dims {record['dims']} (mean KL in nats: {kl})\nwrote {record['png']}, {record['gif']}")
        return record

    def explore(
        self,
        model: AutoencoderModule,
        datamodule: ImageDataModule,
        ckpt_path: str,
        port: int = 8765,
        host: str = "127.0.0.1",
        images: int = 32,
        kl_images: int | None = 5000,
        weights_only: bool | None = None,
        verbose: bool = False,
    ) -> None:
        """An interactive latent explorer: a local page with a slider per latent dimension over [-3, 3],
        the image decoded on this machine as a slider moves. Active dimensions come first, labelled like the
        traversal rows (KL, the factor or attribute they predict); start from the mean, a prior draw or the
        encoding of a validation image, with its reconstruction's PSNR; save the image with its z values.

        Args:
            ckpt_path: The checkpoint; without --config its run's config.yaml supplies the data.
            port: The port to serve on (0: any free one).
            host: The address to listen on: 127.0.0.1 (this machine only) by default; another (0.0.0.0: every
                interface) must be given explicitly and gets a warning, since the page has no authentication.
            images: Validation images offered as starting points (a strip of thumbnails).
            kl_images: Validation images the KL and the captions are measured on (the first ones); None: all.
            weights_only: As for fit: ``None``/``True`` loads only tensors; ``False`` unpickles anything
                (trusted files only).
            verbose: Log every request.
        """
        explore_checkpoint(
            model,
            datamodule,
            self._checkpoint(ckpt_path),
            host=host,
            port=port,
            num_images=images,
            kl_images=kl_images,
            device=self.strategy.root_device,
            weights_only=weights_only is not False,
            verbose=verbose,
        )
