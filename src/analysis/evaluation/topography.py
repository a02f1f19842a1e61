"""Topography: do generated responses have the scalp distribution of the real ones?

Three questions, from the narrowest to the broadest:

1. **Intra-subject.** Averaged over fixed time windows (P1, N1, P300 by default), does
   the generated scalp map of a subject correlate with the real one across channels
   (:func:`window_maps`, :func:`spatial_correlation`,
   :func:`spatial_correlation_timecourse`)?
2. **Inter-subject.** Subjects differ in their maps (head shape, cortical folding). Does
   the generator preserve each subject's own pattern, i.e. are generated maps closer to
   their own subject's real maps than to other subjects' (:func:`subject_similarity_matrix`,
   :func:`own_vs_other_index`, with a permutation test over subject labels)?
3. **Representational geometry.** Do images that evoke similar real maps also evoke
   similar generated maps (:func:`rdm`, :func:`rdm_similarity`, :func:`rsa_timecourse`)?

Arrays follow the data contract: responses are ``[n_images, n_channels, n_times]`` (real
test averages or generated), ``times`` in seconds, units those of the data (µV, fT, …):
correlations do not depend on them. Plot helpers return matplotlib Figures and never
call ``plt.show``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import mne
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

#: A time window ``(start, stop)`` in seconds; ``start`` included, ``stop`` excluded.
Window = tuple[float, float]
Windows = Mapping[str, Window] | Sequence[Window]

# Times closer than this (s) to a window edge count as on the edge; absorbs float noise
# such as 0.1 + 0.02 != 0.12 without ever moving a whole sample at ≤ 10 kHz.
_EDGE_TOL_S = 1e-9


def default_windows() -> dict[str, Window]:
    """The classic visual ERP components, as ``{name: (start, stop)}`` in seconds.

    P1 80–120 ms, N1 150–200 ms, P300 300–450 ms after stimulus onset.
    """
    return {"P1": (0.08, 0.12), "N1": (0.15, 0.20), "P300": (0.30, 0.45)}


# --------------------------------------------------------------------------- validation


def _as_float_array(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, found shape {arr.shape}")
    return arr


def _check_times(times, n_times: int, name: str) -> np.ndarray:
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) != n_times:
        raise ValueError(
            f"times: expected shape ({n_times},) to match the last axis of {name}, "
            f"found shape {times.shape}"
        )
    return times


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b}: expected the shape of {name_a} {a.shape}, found shape {b.shape}"
        )


def _window_table(windows: Windows | None) -> tuple[list[str], np.ndarray]:
    """Labels and a ``[n_windows, 2]`` array of (start, stop) seconds."""
    if windows is None:
        windows = default_windows()
    if isinstance(windows, Mapping):
        labels, bounds = list(windows), list(windows.values())
    else:
        bounds = list(windows)
        labels = [f"{1e3 * b[0]:g}–{1e3 * b[1]:g} ms" for b in bounds]
    table = np.asarray(bounds, dtype=float)
    if table.ndim != 2 or table.shape[1] != 2 or len(table) == 0:
        raise ValueError(
            f"windows: expected (start, stop) pairs in seconds, shape (n_windows, 2), "
            f"found shape {table.shape}"
        )
    bad = np.flatnonzero(table[:, 0] >= table[:, 1])
    if len(bad):
        raise ValueError(
            f"windows: expected start < stop, found {tuple(table[bad[0]])} for "
            f"'{labels[bad[0]]}'"
        )
    return labels, table


def _window_mask(times: np.ndarray, start: float, stop: float) -> np.ndarray:
    return (times >= start - _EDGE_TOL_S) & (times < stop - _EDGE_TOL_S)


# --------------------------------------------------------------------------- maps


def window_maps(responses, times, windows: Windows | None = None) -> np.ndarray:
    """Average responses over time windows into scalp maps.

    Parameters
    ----------
    responses : array-like, shape (n_images, n_channels, n_times) or (n_channels, n_times)
        Responses in any unit (µV, fT, …); the maps keep it.
    times : array-like, shape (n_times,)
        Sample times in seconds.
    windows : dict of str to (float, float), or sequence of (float, float), optional
        ``(start, stop)`` in seconds. A sample at time ``t`` belongs to a window when
        ``start <= t < stop``. Default :func:`default_windows`.

    Returns
    -------
    maps : ndarray, shape (n_windows, n_images, n_channels) or (n_windows, n_channels)
        Mean over the samples of each window; the image axis is kept when the input has one.

    Raises
    ------
    ValueError
        Wrong rank, ``times`` not matching the last axis, a window with start >= stop or
        containing no sample.
    """
    responses = _as_float_array(responses, "responses")
    if responses.ndim not in (2, 3):
        raise ValueError(
            "responses: expected shape (n_images, n_channels, n_times) or "
            f"(n_channels, n_times), found shape {responses.shape}"
        )
    times = _check_times(times, responses.shape[-1], "responses")
    labels, table = _window_table(windows)
    maps = []
    for label, (start, stop) in zip(labels, table):
        mask = _window_mask(times, start, stop)
        if not mask.any():
            raise ValueError(
                f"windows: '{label}' = ({start:g}, {stop:g}) s contains no sample of times "
                f"({times[0]:g} … {times[-1]:g} s)"
            )
        maps.append(responses[..., mask].mean(axis=-1))
    return np.stack(maps)


def _pearson(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson correlation along ``axis`` (NaN where either input is constant)."""
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))


def _image_average(maps: np.ndarray, name: str) -> np.ndarray:
    """Window maps ``(n_windows, [n_images,] n_channels)`` averaged over images if present."""
    if maps.ndim == 3:
        return maps.mean(axis=1)
    if maps.ndim == 2:
        return maps
    raise ValueError(
        f"{name}: expected shape (n_windows, n_images, n_channels) or (n_windows, n_channels), "
        f"found shape {maps.shape}"
    )


# --------------------------------------------------------------------------- intra-subject


def spatial_correlation(real_maps, generated_maps, *, per_image: bool = False) -> np.ndarray:
    """Pearson correlation across channels between real and generated maps, per window.

    Parameters
    ----------
    real_maps, generated_maps : array-like, shape (n_windows, n_images, n_channels) or (n_windows, n_channels)
        Window maps of one subject (:func:`window_maps`), same shape.
    per_image : bool
        False (default): correlate the image-averaged maps (the ERP topography).
        True: correlate each image's maps, then average the correlations over images
        (needs the image axis).

    Returns
    -------
    r : ndarray, shape (n_windows,)
        NaN for a window where either map is constant across channels.
    """
    real = _as_float_array(real_maps, "real_maps")
    gen = _as_float_array(generated_maps, "generated_maps")
    _check_same_shape(real, gen, "real_maps", "generated_maps")
    if per_image:
        if real.ndim != 3:
            raise ValueError(
                "real_maps: per_image=True needs shape (n_windows, n_images, n_channels), "
                f"found shape {real.shape}"
            )
        return _pearson(real, gen).mean(axis=1)
    return _pearson(_image_average(real, "real_maps"), _image_average(gen, "generated_maps"))


def spatial_correlation_timecourse(real, generated) -> np.ndarray:
    """Spatial (across-channel) correlation of the image-averaged responses at every time.

    Parameters
    ----------
    real, generated : array-like, shape (n_images, n_channels, n_times) or (n_channels, n_times)
        Responses of one subject, same shape.

    Returns
    -------
    r : ndarray, shape (n_times,)
        NaN at times where either map is constant across channels.
    """
    real = _as_float_array(real, "real")
    gen = _as_float_array(generated, "generated")
    _check_same_shape(real, gen, "real", "generated")
    if real.ndim == 3:
        real, gen = real.mean(axis=0), gen.mean(axis=0)
    elif real.ndim != 2:
        raise ValueError(
            "real: expected shape (n_images, n_channels, n_times) or (n_channels, n_times), "
            f"found shape {real.shape}"
        )
    return _pearson(real, gen, axis=0)


# --------------------------------------------------------------------------- inter-subject


def image_specific_maps(maps, axis: int = -2) -> np.ndarray:
    """Maps minus their mean over images (``axis``): how each image's map differs from the
    evoked map every image shares.

    One map for every image (a train-mean predictor) leaves only rounding noise; that is
    returned as exact zeros, so a correlation with it is undefined (NaN), not a correlation
    of noise.

    Parameters
    ----------
    maps : ndarray, e.g. (n_images, n_channels) or (n_windows, n_images, n_channels)
    axis : int
        The image axis.
    """
    maps = np.asarray(maps, dtype=float)
    specific = maps - maps.mean(axis=axis, keepdims=True)
    if np.abs(specific).max() <= 1e-9 * max(np.abs(maps).max(), 1e-300):
        return np.zeros_like(specific)
    return specific


def _subject_vectors(maps_by_subject: Mapping[str, np.ndarray], name: str,
                     window: int | None, image_specific: bool = False
                     ) -> tuple[list, np.ndarray]:
    """Subjects and one topography vector each, shape (n_subjects, n_features): the
    image-averaged maps, or with ``image_specific`` every image's map minus that mean."""
    if len(maps_by_subject) < 2:
        raise ValueError(f"{name}: expected at least 2 subjects, found {len(maps_by_subject)}")
    subjects = list(maps_by_subject)
    arrays = [_as_float_array(maps_by_subject[s], f"{name}[{s!r}]") for s in subjects]
    for s, arr in zip(subjects, arrays):
        _check_same_shape(arrays[0], arr, f"{name}[{subjects[0]!r}]", f"{name}[{s!r}]")
    if image_specific and arrays[0].ndim != 3:
        raise ValueError(f"{name}: image-specific maps need shape (n_windows, n_images, "
                         f"n_channels), found {arrays[0].shape}")
    vectors = []
    for s, arr in zip(subjects, arrays):
        if image_specific:  # (n_windows, n_images, n_channels), shared response removed
            maps = image_specific_maps(arr, axis=1)
        else:
            maps = _image_average(arr, f"{name}[{s!r}]")  # (n_windows, n_channels)
        if window is not None:
            if not -len(maps) <= window < len(maps):
                raise ValueError(
                    f"window: expected an index into {len(maps)} windows, found {window}"
                )
            maps = maps[window]
        vectors.append(maps.ravel())
    return subjects, np.array(vectors)


def subject_similarity_matrix(maps_by_subject: Mapping[str, np.ndarray],
                              reference_by_subject: Mapping[str, np.ndarray] | None = None,
                              *, window: int | None = None,
                              image_specific: bool = False) -> np.ndarray:
    """Subject × subject Pearson correlation of scalp maps.

    Each subject's maps are averaged over images (when they have an image axis) and
    either one window is taken or all windows are concatenated channel by channel
    (so windows with larger amplitudes weigh more). With ``image_specific`` the maps are
    instead each image's map minus the mean over images, all images concatenated (the
    subjects must share their test images, in the same order): the evoked response every
    image shares, which otherwise dominates and makes every pair of subjects look alike,
    is removed. A map set without image-specific variation (one prediction for every
    image) then gives NaN.

    Parameters
    ----------
    maps_by_subject : dict of subject to array, shape (n_windows, n_images, n_channels) or (n_windows, n_channels)
        Window maps (:func:`window_maps`), same shape for every subject; the rows.
    reference_by_subject : dict, optional
        The columns, same form and subjects (e.g. real maps when the rows are generated);
        default ``maps_by_subject`` itself.
    window : int, optional
        Index of the window to compare; default all windows concatenated.
    image_specific : bool
        Compare image-specific maps (see above) instead of image-averaged ones.

    Returns
    -------
    matrix : ndarray, shape (n_subjects, n_subjects)
        ``matrix[i, j]`` = corr(rows subject i, columns subject j), subjects in the order
        of ``maps_by_subject``. Symmetric with a unit diagonal when there is no reference.
    """
    subjects, rows = _subject_vectors(maps_by_subject, "maps_by_subject", window,
                                      image_specific)
    if reference_by_subject is None:
        cols = rows
    else:
        if set(reference_by_subject) != set(subjects):
            raise ValueError(
                f"reference_by_subject: expected subjects {subjects}, "
                f"found {list(reference_by_subject)}"
            )
        _, cols = _subject_vectors({s: reference_by_subject[s] for s in subjects},
                                   "reference_by_subject", window, image_specific)
        _check_same_shape(rows, cols, "maps_by_subject", "reference_by_subject")
    return _pearson(rows[:, None, :], cols[None, :, :])


@dataclass
class OwnVsOther:
    """How much better generated maps match their own subject than other subjects.

    Attributes
    ----------
    subjects : list
        Subject keys, in the order of the arrays.
    matrix : ndarray, shape (n_subjects, n_subjects)
        ``matrix[s, o]`` = corr(generated maps of s, real maps of o).
    per_subject : ndarray, shape (n_subjects,)
        ``matrix[s, s]`` minus the mean over ``o != s`` of ``matrix[s, o]``.
    index : float
        Mean of ``per_subject``; > 0 when the generator keeps individual patterns.
    p_value : float
        One-sided: share of the null at least as large as ``index``.
    null : ndarray, shape (n_permutations,)
        Index under relabelled generated subjects. With exact enumeration it holds every
        permutation (the identity included), so the smallest p-value is 1 / n_subjects!;
        otherwise random permutations and ``p = (1 + #{null >= index}) / (1 + n_perm)``.
    exact : bool
        Whether ``null`` enumerates all permutations.
    """

    subjects: list
    matrix: np.ndarray
    per_subject: np.ndarray
    index: float
    p_value: float
    null: np.ndarray
    exact: bool


def _own_vs_other(matrix: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Per-subject own-minus-other for generated labels permuted, shape (n_perms, n_subjects).

    Under permutation ``p`` the generated maps called subject ``s`` are those of ``p[s]``.
    """
    n = matrix.shape[0]
    own = matrix[perms, np.arange(n)]
    other = (matrix.sum(axis=1)[perms] - own) / (n - 1)
    return own - other


def own_vs_other_index(generated_by_subject: Mapping[str, np.ndarray],
                       real_by_subject: Mapping[str, np.ndarray], *, window: int | None = None,
                       n_perm: int = 10_000, seed: int = 0,
                       image_specific: bool = False) -> OwnVsOther:
    """Own-subject vs other-subject match of generated maps, with a permutation test.

    For each subject ``s``: corr(gen_s, real_s) minus the mean over ``o != s`` of
    corr(gen_s, real_o) (maps as in :func:`subject_similarity_matrix`). The group index is
    the mean over subjects. The null distribution shuffles the subject labels of the
    generated set; all ``n_subjects!`` permutations are enumerated when that is at most
    ``n_perm`` (e.g. 5 subjects → 120), otherwise ``n_perm`` random ones are drawn.

    Parameters
    ----------
    generated_by_subject, real_by_subject : dict of subject to array, shape (n_windows, n_images, n_channels) or (n_windows, n_channels)
        Window maps per subject, same subjects and shapes.
    window : int, optional
        Index of the window to compare; default all windows concatenated.
    image_specific : bool
        Compare image-specific maps (:func:`subject_similarity_matrix`).
    n_perm : int
        Number of random permutations (and the threshold for exact enumeration).
    seed : int
        Seed of the random permutations.

    Returns
    -------
    OwnVsOther
    """
    if n_perm < 1:
        raise ValueError(f"n_perm: expected a positive integer, found {n_perm}")
    matrix = subject_similarity_matrix(generated_by_subject, real_by_subject, window=window,
                                       image_specific=image_specific)
    subjects = list(generated_by_subject)
    n = len(subjects)
    identity = np.arange(n)[None]
    per_subject = _own_vs_other(matrix, identity)[0]
    index = float(per_subject.mean())
    exact = math.factorial(n) <= n_perm
    if exact:
        perms = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(seed)
        perms = rng.permuted(np.tile(np.arange(n), (n_perm, 1)), axis=1)
    null = _own_vs_other(matrix, perms).mean(axis=1)
    # Permutations giving the same value up to float rounding must count as ties.
    at_least = int((null >= index - 1e-12 * max(1.0, abs(index))).sum())
    p_value = at_least / len(null) if exact else (1 + at_least) / (1 + len(null))
    return OwnVsOther(subjects=subjects, matrix=matrix, per_subject=per_subject, index=index,
                      p_value=float(p_value), null=null, exact=exact)


# --------------------------------------------------------------------------- RSA


def rdm(responses, times=None, window: Window | None = None) -> np.ndarray:
    """Image × image dissimilarity: 1 − Pearson correlation across channels.

    Parameters
    ----------
    responses : array-like, shape (n_images, n_channels, n_times) or (n_images, n_channels)
        Responses, or maps already averaged over a window.
    times : array-like, shape (n_times,), optional
        Seconds; needed with ``window``.
    window : (float, float), optional
        ``(start, stop)`` in seconds: average the responses over ``start <= t < stop`` first.
        Without it, 3-D responses give one RDM per time sample.

    Returns
    -------
    rdm : ndarray, shape (n_images, n_images) or (n_times, n_images, n_images)
        Values in [0, 2]; zero diagonal, symmetric; NaN off the diagonal for an image
        whose map is constant across channels.
    """
    x = _as_float_array(responses, "responses")
    if x.ndim == 3 and window is not None:
        if times is None:
            raise ValueError("times: expected the time axis in seconds with window, found None")
        x = window_maps(x, times, [window])[0]
    elif window is not None:
        raise ValueError(
            "responses: a window needs shape (n_images, n_channels, n_times), "
            f"found shape {x.shape}"
        )
    if x.ndim == 3:  # time-resolved: (n_times, n_images, n_channels)
        x = np.moveaxis(x, -1, 0)
    elif x.ndim != 2:
        raise ValueError(
            "responses: expected shape (n_images, n_channels, n_times) or "
            f"(n_images, n_channels), found shape {x.shape}"
        )
    x = x - x.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    out = 1.0 - x @ np.swapaxes(x, -1, -2)
    # Exact zeros on the diagonal and exact symmetry (rounding leaves ~1e-16 otherwise).
    out = (out + np.swapaxes(out, -1, -2)) / 2
    idx = np.arange(out.shape[-1])
    out[..., idx, idx] = 0.0
    return out


def mantel_test(rdm_a, rdm_b, n_perm: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Spearman ρ between two RDMs' upper triangles and its Mantel permutation p.

    The null permutes the image labels of ``rdm_b`` (rows and columns together), which
    keeps its structure; one-sided, ``p = (1 + #{null ≥ ρ}) / (n_perm + 1)``. Permutations
    are evaluated in blocks of at most 2**24 values.

    Parameters
    ----------
    rdm_a, rdm_b : ndarray, shape (n_images, n_images)
        Symmetric dissimilarity matrices (:func:`rdm`).

    Returns
    -------
    (rho, p) : floats; NaN when ``rdm_b`` is constant or not finite.
    """
    a, b = np.asarray(rdm_a, float), np.asarray(rdm_b, float)
    n = a.shape[0]
    upper = np.triu_indices(n, k=1)
    if not np.isfinite(b).all() or np.ptp(b[upper]) <= 0:
        return np.nan, np.nan
    rank_a = stats.rankdata(a[upper])
    full = np.zeros((n, n))
    full[upper] = stats.rankdata(b[upper])
    full = full + full.T
    rho = float(_pearson(rank_a, full[upper]))
    perms = np.argsort(np.random.default_rng(seed).random((n_perm, n)), axis=1)
    null = np.concatenate([
        _pearson(np.broadcast_to(rank_a, (len(chunk), len(rank_a))),
                 full[chunk[:, :, None], chunk[:, None, :]][:, upper[0], upper[1]], axis=-1)
        for chunk in np.array_split(perms, max(1, n_perm * n * n // 2**24))])
    return rho, float((1 + np.sum(null >= rho)) / (n_perm + 1))


def rdm_similarity(rdm_a, rdm_b) -> float:
    """Spearman correlation of the upper triangles (diagonal excluded) of two RDMs.

    Parameters
    ----------
    rdm_a, rdm_b : array-like, shape (n_images, n_images)

    Returns
    -------
    rho : float
    """
    a = _as_float_array(rdm_a, "rdm_a")
    b = _as_float_array(rdm_b, "rdm_b")
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(
            f"rdm_a: expected a square (n_images, n_images) matrix with n_images >= 3, "
            f"found shape {a.shape}"
        )
    _check_same_shape(a, b, "rdm_a", "rdm_b")
    upper = np.triu_indices(a.shape[0], k=1)
    return float(stats.spearmanr(a[upper], b[upper]).statistic)


def rsa_timecourse(real, generated, times, win: float | None = None) -> np.ndarray:
    """Similarity of real and generated RDMs at every time sample.

    Parameters
    ----------
    real, generated : array-like, shape (n_images, n_channels, n_times)
        Responses of one subject, same shape.
    times : array-like, shape (n_times,)
        Seconds.
    win : float, optional
        Width in seconds of a centred boxcar: each time's RDM is built from the responses
        averaged over the samples within ``win / 2`` of it (fewer at the edges of the
        epoch). Default: single samples.

    Returns
    -------
    rho : ndarray, shape (n_times,)
        Spearman correlation (:func:`rdm_similarity`) of the real and generated RDMs.
    """
    real = _as_float_array(real, "real")
    gen = _as_float_array(generated, "generated")
    if real.ndim != 3:
        raise ValueError(
            f"real: expected shape (n_images, n_channels, n_times), found shape {real.shape}"
        )
    _check_same_shape(real, gen, "real", "generated")
    times = _check_times(times, real.shape[-1], "real")
    if win is not None and win > 0:
        near = np.abs(times[:, None] - times[None, :]) <= win / 2 + _EDGE_TOL_S
        weights = near / near.sum(axis=1, keepdims=True)  # (n_times, n_times), rows sum to 1
        real, gen = real @ weights.T, gen @ weights.T
    rdms_real, rdms_gen = rdm(real), rdm(gen)
    return np.array([rdm_similarity(a, b) for a, b in zip(rdms_real, rdms_gen)])


# --------------------------------------------------------------------------- plots


def topomap_sphere(info: mne.Info) -> tuple[float, float, float, float]:
    """The head sphere ``(x, y, z, radius)`` in metres to pass as ``sphere=`` to MNE topomaps.

    - EEG with fiducials (any standard montage): centre at the midpoint of the
      preauricular points (the head-frame origin), radius the mean distance from it to
      LPA, RPA and nasion. A fit to the electrodes themselves would be wrong for a partial
      cap such as THINGS-EEG2's 17 posterior channels: the fitted sphere shrinks onto them
      and spreads them over the whole head outline.
    - EEG without fiducials: MNE's default head sphere, ``(0, 0, 0, 0.095)``.
    - MEG: a least-squares sphere through the sensor positions (the helmet). Sensors sit
      in the device frame, but MNE expects the sphere in the head frame (it maps the
      centre back with ``info['dev_head_t']``), so the centre is returned in head
      coordinates.
    """
    picks = mne.pick_types(info, meg=True, eeg=True, ref_meg=False, exclude=())
    if len(picks) == 0:
        raise ValueError("info: expected EEG or MEG channels, found none")
    positions = np.array([info["chs"][i]["loc"][:3] for i in picks])
    if not np.isfinite(positions).all() or np.allclose(positions, 0):
        raise ValueError("info: expected sensor positions (set a montage), found none")
    is_eeg = info["chs"][picks[0]]["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH
    if is_eeg:
        fiducials = {d["ident"]: np.asarray(d["r"]) for d in (info["dig"] or [])
                     if d["kind"] == mne.io.constants.FIFF.FIFFV_POINT_CARDINAL}
        const = mne.io.constants.FIFF
        keys = (const.FIFFV_POINT_LPA, const.FIFFV_POINT_RPA, const.FIFFV_POINT_NASION)
        if not all(k in fiducials for k in keys):
            return (0.0, 0.0, 0.0, 0.095)
        centre = (fiducials[keys[0]] + fiducials[keys[1]]) / 2
        radius = np.mean([np.linalg.norm(fiducials[k] - centre) for k in keys])
        return (*(float(c) for c in centre), float(radius))
    # |p|² = 2 p·c + (r² − |c|²) is linear in c and k = r² − |c|².
    design = np.column_stack([2 * positions, np.ones(len(positions))])
    solution = np.linalg.lstsq(design, (positions ** 2).sum(axis=1), rcond=None)[0]
    centre, k = solution[:3], solution[3]
    radius = float(np.sqrt(k + centre @ centre))
    if info["dev_head_t"] is not None:
        centre = mne.transforms.apply_trans(info["dev_head_t"], centre)
    return (*(float(c) for c in centre), radius)


def plot_window_topomaps(real_maps, generated_maps, info: mne.Info,
                         windows: Windows | None = None, *,
                         row_labels: tuple[str, str] = ("real", "generated"),
                         units: str = "", extrapolate: str = "local") -> Figure:
    """Real (top row) and generated (bottom row) scalp maps, one column per window.

    Each column shares symmetric colour limits ``±max|map|`` over both rows and has one
    colourbar; the head sphere is :func:`topomap_sphere` of ``info``.

    Parameters
    ----------
    real_maps, generated_maps : array-like, shape (n_windows, n_images, n_channels) or (n_windows, n_channels)
        Window maps (:func:`window_maps`); averaged over images when they have the axis.
    info : mne.Info
        Channels (one type: EEG or MEG magnetometers) with positions, in the maps' order.
    windows : dict or sequence of (start, stop), optional
        The windows the maps were made with (titles only); default :func:`default_windows`.
    row_labels : (str, str)
        Names of the two rows.
    units : str
        Colourbar label, e.g. ``"µV"``.
    extrapolate : str
        Passed to :func:`mne.viz.plot_topomap`; ``'local'`` keeps a partial cap from being
        extrapolated over the whole head.

    Returns
    -------
    Figure
        ``2 * n_windows`` topomap axes plus ``n_windows`` colourbar axes.
    """
    real = _image_average(_as_float_array(real_maps, "real_maps"), "real_maps")
    gen = _image_average(_as_float_array(generated_maps, "generated_maps"), "generated_maps")
    _check_same_shape(real, gen, "real_maps", "generated_maps")
    labels, table = _window_table(windows)
    if len(labels) != real.shape[0]:
        raise ValueError(
            f"windows: expected {real.shape[0]} windows (axis 0 of real_maps), found {len(labels)}"
        )
    if real.shape[1] != len(info["ch_names"]):
        raise ValueError(
            f"info: expected {real.shape[1]} channels (last axis of real_maps), "
            f"found {len(info['ch_names'])}"
        )
    sphere = topomap_sphere(info)
    n_win = len(labels)
    fig, axes = plt.subplots(2, n_win, figsize=(2.6 * n_win + 0.8, 5.6), squeeze=False,
                             layout="constrained")
    for j, (label, (start, stop)) in enumerate(zip(labels, table)):
        limit = float(np.nanmax(np.abs([real[j], gen[j]]))) or 1.0
        for i, values in enumerate((real[j], gen[j])):
            image, _ = mne.viz.plot_topomap(
                values, info, axes=axes[i, j], show=False, sphere=sphere,
                extrapolate=extrapolate, vlim=(-limit, limit), cmap="RdBu_r", contours=6,
            )
        axes[0, j].set_title(f"{label}\n{1e3 * start:g}–{1e3 * stop:g} ms")
        fig.colorbar(image, ax=axes[:, j], orientation="horizontal", shrink=0.8, label=units)
    for i, name in enumerate(row_labels):
        axes[i, 0].text(-0.08, 0.5, name, transform=axes[i, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize="large")
    return fig


def plot_similarity_matrix(matrix, labels: Sequence[str], title: str = "", *,
                           vmin: float | None = None, vmax: float | None = None,
                           cmap: str = "viridis", xlabel: str = "", ylabel: str = "") -> Figure:
    """Annotated heatmap of a square correlation matrix (e.g. subject × subject).

    Parameters
    ----------
    matrix : array-like, shape (n, n)
    labels : sequence of str, length n
        Tick labels for rows and columns.
    title, xlabel, ylabel : str
    vmin, vmax : float, optional
        Colour limits; default the data range, so that the structure among high
        correlations (maps of different subjects typically correlate > 0.8) stays visible.
        Pass ``vmin=-1, vmax=1, cmap="RdBu_r"`` for an absolute scale.
    cmap : str
        Matplotlib colormap name.

    Returns
    -------
    Figure
        One heatmap axes and its colourbar axes.
    """
    matrix = _as_float_array(matrix, "matrix")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix: expected a square (n, n) array, found shape {matrix.shape}")
    labels = [str(label) for label in labels]
    if len(labels) != matrix.shape[0]:
        raise ValueError(f"labels: expected {matrix.shape[0]} labels, found {len(labels)}")
    size = 1.2 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    sns.heatmap(matrix, ax=ax, annot=True, fmt=".2f", cmap=cmap, vmin=vmin, vmax=vmax, square=True, xticklabels=labels, yticklabels=labels,
                cbar_kws={"label": "Pearson r"})
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def plot_spatial_corr_timecourse(times, r, *, windows: Windows | None = None,
                                 ylabel: str = "spatial correlation (r)") -> Figure:
    """Spatial correlation over time, with the analysis windows shaded.

    Parameters
    ----------
    times : array-like, shape (n_times,)
        Seconds (plotted in ms).
    r : array-like, shape (n_times,), or dict of str to such arrays
        One curve, or several labelled ones (e.g. one per model or subject).
    windows : dict or sequence of (start, stop), optional
        Shaded and labelled; default :func:`default_windows`; pass ``[]`` for none.
    ylabel : str

    Returns
    -------
    Figure
        One axes.
    """
    curves = dict(r) if isinstance(r, Mapping) else {"": r}
    times = np.asarray(times, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    if windows is None or len(windows):
        labels, table = _window_table(windows)
        for label, (start, stop) in zip(labels, table):
            ax.axvspan(1e3 * start, 1e3 * stop, color="0.9", zorder=0)
            ax.text(1e3 * (start + stop) / 2, 1.0, label, ha="center", va="bottom",
                    transform=ax.get_xaxis_transform(), fontsize="small")
    for label, values in curves.items():
        name = f"r[{label!r}]" if label else "r"
        values = _as_float_array(values, name)
        if values.shape != times.shape:
            raise ValueError(f"{name}: expected shape {times.shape} (that of times), "
                             f"found shape {values.shape}")
        ax.plot(1e3 * times, values, label=label or None)
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(0, color="k", lw=0.8, ls=":")
    ax.set(xlabel="time (ms)", ylabel=ylabel, ylim=(-1.05, 1.05), xlim=(1e3 * times[0], 1e3 * times[-1]))
    if any(curves):
        ax.legend(loc="lower right", fontsize="small")
    return fig
