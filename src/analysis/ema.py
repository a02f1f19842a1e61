"""Exponential moving average of a network's weights, kept beside training.

The diffusion process (:mod:`analysis.models.diffusion`) knows nothing of weights; the
training loop folds each optimiser step into an :class:`EMA` and the checkpoint samples from
the averaged weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The module behind DistributedDataParallel / DataParallel and ``torch.compile``."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


class EMA:
    """Exponential moving average of a model's weights (parameters and buffers).

    Sampling with averaged weights gives markedly better diffusion samples than the last
    iterate (Ho et al. 2020 use decay 0.9999; Song & Ermon 2020). Each :meth:`update` sets
    ``shadow ← d · shadow + (1 - d) · current`` for every floating-point tensor in the
    model's ``state_dict``, with ``d = min(decay, (1 + n) / (10 + n))`` and ``n`` the number of
    earlier updates: the warm-up keeps the random initial weights from dominating the
    average early in training. Integer buffers (e.g. BatchNorm's ``num_batches_tracked``)
    are copied. Models wrapped in DDP / DataParallel / ``torch.compile`` are unwrapped, so
    keys never carry a ``module.`` prefix.

    Parameters
    ----------
    model : nn.Module
        The model whose weights to average; the shadow starts as a copy of them, on the
        same device.
    decay : float
        The long-run decay, in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            name: tensor.detach().clone() for name, tensor in _unwrap(model).state_dict().items()
        }

    def _current(self, model: nn.Module) -> dict[str, Tensor]:
        current = _unwrap(model).state_dict()
        if current.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() - current.keys())
            unexpected = sorted(current.keys() - self.shadow.keys())
            raise ValueError(f"model does not match the EMA's weights: missing {missing}, "
                             f"unexpected {unexpected}")
        return current

    @property
    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use (warm-up included)."""
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average."""
        decay = self.current_decay
        for name, tensor in self._current(model).items():
            shadow = self.shadow[name]
            if shadow.device != tensor.device:  # the model was moved since the EMA was made
                shadow = self.shadow[name] = shadow.to(tensor.device)
            if shadow.is_floating_point():
                shadow.lerp_(tensor.detach().to(shadow.dtype), 1 - decay)
            else:
                shadow.copy_(tensor)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averaged ones (in place, any device)."""
        for name, tensor in self._current(model).items():
            tensor.copy_(self.shadow[name])

    def state_dict(self) -> dict[str, Any]:
        """``{'decay', 'num_updates', 'shadow'}`` for a checkpoint."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the shadow tensors keep their current devices."""
        missing = {"decay", "num_updates", "shadow"} - set(state)
        if missing:
            raise ValueError(f"EMA state is missing {sorted(missing)}")
        shadow = state["shadow"]
        if shadow.keys() != self.shadow.keys():
            raise ValueError(
                f"EMA state does not match this model: missing {sorted(self.shadow.keys() - shadow.keys())}, "
                f"unexpected {sorted(shadow.keys() - self.shadow.keys())}"
            )
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.shadow = {name: value.detach().clone().to(self.shadow[name].device)
                       for name, value in shadow.items()}
