"""What every page's tables share: predictions by name, the names a table shows by default,
example images and channels, ERP windows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..evaluation import topography as topo
from ..names import MODELS, REFERENCES

if TYPE_CHECKING:
    from ..experiment import SubjectRun


#: Where a simulated dataset stores the per-image attributes (``meta`` key).
ATTRIBUTES_KEY = "image_attributes"


def prediction(run: SubjectRun, name: str) -> np.ndarray:
    """Predicted test responses ``(n_test_images, n_channels, n_times)`` of a model.

    ``name`` is anything :meth:`SubjectRun.prediction` accepts, or ``'noiseless'`` for the
    true means of simulated data.

    Raises
    ------
    ValueError
        ``'noiseless'`` on a dataset without noiseless means (real recordings).
    """
    if name == "noiseless":
        if run.dataset.noiseless is None:
            raise ValueError(f"name: 'noiseless' needs simulated data, found dataset "
                             f"'{run.dataset_name}' without noiseless means")
        return run.dataset.noiseless["test"]
    return run.prediction(name)


def shown(run: SubjectRun, models: Sequence[str] = MODELS) -> list[str]:
    """What a page's table shows by default: every reference the data allow (``oracle``
    needs simulated data), then ``models``."""
    from ..calibration import available

    return available(run, REFERENCES + tuple(models))


def with_noiseless(run: SubjectRun, models: Sequence[str], reference: bool) -> list[str]:
    models = list(models)
    if reference and run.dataset.noiseless is not None and "noiseless" not in models:
        models.append("noiseless")
    return models


def example_images(run: SubjectRun, n: int = 3) -> np.ndarray:
    """Indices of ``n`` test images spread evenly over the test set (first, …, last)."""
    n_images = run.dataset.test.n_images
    return np.unique(np.linspace(0, n_images - 1, min(n, n_images)).round().astype(int))


def example_channels(run: SubjectRun, preferred: Sequence[str] = ("Oz", "P8"),
                     n: int = 2) -> list[str]:
    """The preferred channels that the recording has, topped up with its first channels."""
    names = run.dataset.ch_names
    chosen = [c for c in preferred if c in names][:n]
    return chosen + [c for c in names if c not in chosen][:n - len(chosen)]


def window_bounds(windows) -> tuple[list[str], list[tuple[float, float]]]:
    windows = topo.default_windows() if windows is None else windows
    if isinstance(windows, Mapping):
        return list(windows), [tuple(map(float, w)) for w in windows.values()]
    bounds = [tuple(map(float, w)) for w in windows]
    return [f"{1e3 * a:g}–{1e3 * b:g} ms" for a, b in bounds], bounds


def window_maps(run: SubjectRun, model: str | None = None, windows=None) -> np.ndarray:
    """Window maps ``(n_windows, n_images, n_channels)`` of the real test averages
    (``model=None``) or of a model's predictions."""
    responses = run.target_average if model is None else prediction(run, model)
    return topo.window_maps(responses, run.dataset.times, windows)


def difference_verdict(model_a: str, model_b: str, difference: float, p_holm: float,
                       alpha: float = 0.05) -> str:
    """What a paired A − B test says, for "What we found" sentences: which model scores
    higher when the Holm-adjusted p is below ``alpha``, else that no difference was shown."""
    better, worse = (model_a, model_b) if difference > 0 else (model_b, model_a)
    shown = f"`{better}` scores higher than `{worse}`" if p_holm < alpha else "no difference shown"
    return f"{shown} at α = {alpha:g}"
