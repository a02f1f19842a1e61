"""Device choice shared by feature extraction, training and sampling.

CUDA when available, else CPU; an explicit override (``"cpu"``, ``"cuda"``, ``"cuda:1"``)
always wins so a user can force CPU on a GPU machine, and asking for CUDA where there is
none fails loudly instead of silently running on the CPU.
"""

from __future__ import annotations

import torch


def select_device(override: str | torch.device | None = None) -> torch.device:
    """Return the torch device to use.

    Parameters
    ----------
    override : str | torch.device | None
        ``None`` or ``"auto"`` picks CUDA when available, else CPU.

    Raises
    ------
    RuntimeError
        If CUDA is requested but not available.
    """
    if override is None or str(override) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(override)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device '{override}' was requested but CUDA is not available on this machine; "
            "use --device cpu or leave the device on 'auto'"
        )
    return device
