"""Versions of the software behind a result.

Recorded with every dataset the simulator writes, every checkpoint, every run's provenance
and the reproducibility page, so that a number can be traced to the packages that made it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform

from . import __version__

#: The distributions whose versions can change a number in the book.
PACKAGES = ("torch", "open_clip_torch", "mne", "numpy", "scipy", "pandas", "scikit-learn",
            "matplotlib", "seaborn")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{'python': …, 'image2brain': …, <distribution>: <version> or 'not installed'}``."""
    versions = {"python": platform.python_version(), "image2brain": __version__}
    for dist in packages:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
