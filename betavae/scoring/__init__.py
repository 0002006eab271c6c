"""The functional core of every score, shared by the callbacks (when to score, where to log) and the
``evaluate`` / ``traverse`` commands: functions and small classes, no Lightning hooks.

- ``reconstruction``: PSNR and the ``SSIM`` Metric of images in [0, 1];
- ``codes``: the codes of validation images with their observed ground truth (``ValidationCodes``, its
  DDP gather) and what each code dimension predicts (``dimension_captions``);
- ``traversal``: mean KL per dimension, the dimensions to show, the rendered traversal figure;
- ``disentanglement``: the metrics on a factor grid or on observed codes;
- ``fid``: FID/KID of prior samples, with ``FIDSettings``.
"""
