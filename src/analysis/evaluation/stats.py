"""Statistics over test images: Pearson r, bootstrap CIs, paired tests, input checks.

The unit of resampling everywhere is the *test image* (axis 0): images are the independent
samples of an M/EEG test set, while channels and time points are strongly correlated
within an image. Resampling uses :func:`scipy.stats.bootstrap` (percentile intervals by
default) and :func:`scipy.stats.permutation_test` (sign flips), so the code here only
decides *what* is resampled, never re-implements the resampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats as _scipy_stats

#: An input is "constant" along the correlated axis when its standard deviation there is at
#: most this fraction of its largest absolute value (exactly zero for an all-zero input).
#: Float64 rounding of a truly constant float32 vector stays far below this.
ZERO_VARIANCE_RTOL = 1e-10


def check_array(
    x: Any,
    name: str,
    axes: Sequence[str],
    *,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Validate a real-valued array at a public boundary and return it (dtype unchanged).

    Parameters
    ----------
    x : array-like
        The candidate array.
    name : str
        The argument's name, used verbatim in the error message.
    axes : sequence of str
        One name per expected axis, e.g. ``('n_images', 'n_channels', 'n_times')``;
        fixes the expected rank.
    shape : sequence of int or None, optional
        Required size per axis (``None``: any size). Omitted: any non-empty shape.
    finite : bool
        Also require every value to be finite (no NaN/inf).

    Returns
    -------
    ndarray
        ``np.asarray(x)``, same dtype (so a large float32 array is never copied).

    Raises
    ------
    ValueError
        Message ``"<name>: expected <what>, found <what>"``: not real-valued, wrong rank,
        wrong or empty axis, or non-finite values.
    """
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued numeric array, found dtype {arr.dtype}")
    spec = ", ".join(axes)
    if arr.ndim != len(axes):
        raise ValueError(
            f"{name}: expected rank {len(axes)} with shape ({spec}), "
            f"found rank {arr.ndim} with shape {arr.shape}"
        )
    if shape is not None:
        for size, found in zip(shape, arr.shape):
            if size is not None and size != found:
                wanted = ", ".join(f"{a}={'any' if s is None else s}" for a, s in zip(axes, shape))
                raise ValueError(f"{name}: expected shape ({wanted}), found {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected no empty axis in ({spec}), found shape {arr.shape}")
    if finite and np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}: expected only finite values, found {int(bad.sum())} NaN/inf "
                f"values, first at index {first}"
            )
    return arr


#: Values of ``x`` above which :func:`pearson_r` works in slices (float64: 128 MB each).
PEARSON_BLOCK_VALUES = 2**24


def pearson_r(x: np.ndarray, y: np.ndarray, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    """Pearson correlation along ``axis`` with explicit centring, computed in float64.

    Parameters
    ----------
    x, y : ndarray
        Same shape (any units; r is unitless).
    axis : int or tuple of int
        Axis (or axes, flattened together) over which each correlation is taken.

    Returns
    -------
    ndarray or float
        ``x`` 's shape with ``axis`` removed (a float when nothing is left), values in
        [-1, 1].
        **Zero-variance rule:** r is NaN wherever ``x`` or ``y`` is constant along ``axis``
        (standard deviation at most :data:`ZERO_VARIANCE_RTOL` times its largest absolute
        value there), because a correlation with a constant is undefined.

    Notes
    -----
    Inputs over :data:`PEARSON_BLOCK_VALUES` values are correlated in slices along the
    first axis that is not correlated over (each correlation sees all of its samples, so
    the result is the same): the float64 copies and centred temporaries of a whole
    THINGS-MEG validation split (2218 images × 275 × 281) would be about 7 GB.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x {x.shape}, found {y.shape}")
    axes = tuple(a % x.ndim for a in np.atleast_1d(axis)) if x.ndim else ()
    kept = [a for a in range(x.ndim) if a not in axes]
    if x.size <= PEARSON_BLOCK_VALUES or not kept:
        return _pearson_r_whole(x, y, axis)
    sliced = kept[0]
    step = max(1, PEARSON_BLOCK_VALUES * x.shape[sliced] // x.size)
    parts = []
    for start in range(0, x.shape[sliced], step):
        window = [slice(None)] * x.ndim
        window[sliced] = slice(start, start + step)
        window = tuple(window)
        parts.append(_pearson_r_whole(x[window], y[window], axis))
    return np.concatenate(parts, axis=0)  # the sliced axis leads the result


def _pearson_r_whole(x: np.ndarray, y: np.ndarray, axis) -> np.ndarray | float:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    sxx = (xc * xc).sum(axis=axis)
    syy = (yc * yc).sum(axis=axis)
    sxy = (xc * yc).sum(axis=axis)
    n = x.size // max(np.size(sxx), 1)  # samples per correlation
    constant = (np.sqrt(sxx / n) <= ZERO_VARIANCE_RTOL * np.abs(x).max(axis=axis)) | (
        np.sqrt(syy / n) <= ZERO_VARIANCE_RTOL * np.abs(y).max(axis=axis)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(constant, np.nan, np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0))
    return float(r) if r.ndim == 0 else r


def mean_ignoring_nan(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean over the defined (non-NaN) entries; NaN, silently, where none is defined.

    This is the one rule every score summary follows: entries whose r is undefined under
    the zero-variance rule of :func:`pearson_r` are left out of the mean (callers report
    how many were left out).

    Parameters
    ----------
    values : ndarray
        Any shape and units.
    axis : int or None
        Axis to average over; ``None`` averages everything.
    """
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=axis)
    count = defined.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return float(mean) if np.ndim(mean) == 0 else mean


def blockwise_mean_and_variance(parts: Sequence[np.ndarray], block_values: int
                                ) -> tuple[np.ndarray, float]:
    """The mean over axis 0 of ``parts`` stacked along it, and the variance of every value
    around that mean, accumulated in float64 over blocks of about ``block_values`` values.

    For arrays too large to copy: no float64 (or concatenated) copy of the whole is made.

    Parameters
    ----------
    parts : sequence of ndarray
        Arrays of one shape ``(n_i, *rest)`` (e.g. examples × channels × times), taken as
        one ``(sum n_i, *rest)`` array.
    block_values : int
        About how many values each block holds (at least one row per block).

    Returns
    -------
    mean : ndarray, shape ``rest``, float64
    variance : float
        ``mean((x - mean)²)`` over all values (the population variance around the mean
        over axis 0, not around the grand mean).
    """
    n_rows = sum(len(part) for part in parts)
    per_row = int(np.prod(parts[0].shape[1:]))
    step = max(1, block_values // per_row)
    blocks = [part[i:i + step] for part in parts for i in range(0, len(part), step)]
    mean = sum(block.sum(axis=0, dtype=np.float64) for block in blocks) / n_rows
    squares = sum(float(np.square(block - mean).sum()) for block in blocks)
    return mean, squares / (n_rows * per_row)


@dataclass(frozen=True)
class BootstrapCI:
    """A statistic with its bootstrap confidence interval over images.

    Attributes
    ----------
    value : float
        The statistic on the original sample (all images once).
    low, high : float
        Interval bounds at level ``ci`` (percentile method unless asked otherwise).
    ci : float
        Confidence level, e.g. 0.95.
    n_boot : int
        Number of bootstrap resamples.
    distribution : ndarray, shape (n_boot,)
        The statistic on every resample.
    """

    value: float
    low: float
    high: float
    ci: float
    n_boot: int
    distribution: np.ndarray


def bootstrap_ci(
    values_or_fn: np.ndarray | Callable[[np.ndarray], Any],
    *,
    n_images: int | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    vectorized: bool = False,
    batch: int | None = None,
    method: str = "percentile",
) -> BootstrapCI:
    """Bootstrap CI (percentile by default), resampling test images with replacement.

    Parameters
    ----------
    values_or_fn : ndarray, shape (n_images,), or callable
        Either per-image values (finite; the statistic is their mean), or a statistic of
        resampled image *indices*: ``fn(idx) -> float`` with ``idx`` an int array of shape
        ``(n_images,)`` (values in ``0..n_images-1``, with repeats). Because one index
        vector drives everything ``fn`` touches, paired quantities are resampled jointly,
        e.g. ``fn = lambda idx: score_a[idx].mean() - score_b[idx].mean()``, or a metric
        recomputed from ``pred[idx]`` and ``target[idx]``.
    n_images : int, optional
        Number of images; required with a callable, ignored with values.
    n_boot : int
        Number of resamples.
    ci : float
        Confidence level in (0, 1).
    seed : int
        Seed of the resampling; the same seed and ``n_images`` give the same resamples.
    vectorized : bool
        With a callable: ``fn`` takes a batch ``idx`` of shape ``(b, n_images)`` and
        returns shape ``(b,)``, much faster than one call per resample.
    batch : int, optional
        Resamples per call of a vectorized ``fn`` (bounds memory); default all at once.
    method : {'percentile', 'basic', 'BCa'}
        Interval method of :func:`scipy.stats.bootstrap`. ``'percentile'``: the
        ``(1 - ci)/2`` and ``(1 + ci)/2`` quantiles of the resampled statistic. For a
        biased statistic (e.g. a correlation: resampled r sits about ``r (1 - r**2) / (2
        n_images)`` below r) a very narrow percentile interval can miss ``value``;
        ``'BCa'`` corrects bias and skew (at the cost of ``n_images`` extra leave-one-out
        evaluations), ``'basic'`` reflects the interval about ``value``.

    Returns
    -------
    BootstrapCI
        ``value`` is the statistic on all images (``fn(arange(n_images))``); ``low`` and
        ``high`` the interval bounds.

    Raises
    ------
    ValueError
        Values not 1-D, non-finite or fewer than 2 images; ``n_images`` missing for a
        callable; ``ci`` outside (0, 1); ``n_boot`` < 1.
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci: expected a confidence level in (0, 1), found {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot: expected at least 1 resample, found {n_boot}")
    if callable(values_or_fn):
        if n_images is None:
            raise ValueError("n_images: expected the number of images with a callable statistic, "
                             "found None")
        fn = values_or_fn
        if vectorized:
            def batched(idx: np.ndarray) -> np.ndarray:
                return np.asarray(fn(idx), dtype=np.float64).reshape(idx.shape[0])
        else:
            def batched(idx: np.ndarray) -> np.ndarray:
                return np.array([fn(row) for row in idx], dtype=np.float64)
    else:
        values = check_array(values_or_fn, "values_or_fn", ("n_images",)).astype(np.float64)
        n_images = values.shape[0]

        def batched(idx: np.ndarray) -> np.ndarray:
            return values[idx].mean(axis=-1)
    if n_images < 2:
        raise ValueError(f"n_images: expected at least 2 images to resample, found {n_images}")

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        flat = idx.reshape(-1, idx.shape[-1])
        return batched(flat).reshape(idx.shape[:-1])

    result = _scipy_stats.bootstrap(
        (np.arange(n_images),), statistic, n_resamples=n_boot, batch=batch, vectorized=True,
        confidence_level=ci, method=method, rng=np.random.default_rng(seed),
    )
    return BootstrapCI(
        value=float(statistic(np.arange(n_images)[None])[0]),
        low=float(result.confidence_interval.low),
        high=float(result.confidence_interval.high),
        ci=ci,
        n_boot=n_boot,
        distribution=np.asarray(result.bootstrap_distribution),
    )


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of a paired comparison of two per-image metrics (``a`` minus ``b``).

    Attributes
    ----------
    difference : float
        Mean over images of ``a - b`` (units of the metric).
    ci_low, ci_high : float
        Percentile bootstrap CI of that mean difference, resampling images.
    p_value : float
        Two-sided p-value for "no difference"; never 0 (see the test functions).
    n_images : int
        Number of paired images.
    n_resamples : int
        Resamples behind ``p_value``.
    method : str
        ``'paired bootstrap'`` or ``'sign-flip permutation'`` (``' (exact)'`` when every
        sign pattern was enumerated).
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_images: int
    n_resamples: int
    method: str


def _paired_differences(a: Any, b: Any) -> np.ndarray:
    a = check_array(a, "a", ("n_images",))
    b = check_array(b, "b", ("n_images",), shape=a.shape)
    return a.astype(np.float64) - b.astype(np.float64)


def paired_bootstrap_test(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
) -> PairedTestResult:
    """Paired bootstrap test of the mean per-image difference ``a - b``.

    Parameters
    ----------
    a, b : ndarray, shape (n_images,)
        One metric per test image for two models (or model vs baseline), same image order,
        finite (drop images with an undefined r from both first).
    n_boot, ci, seed
        As in :func:`bootstrap_ci`.

    Returns
    -------
    PairedTestResult
        The p-value uses the bootstrap distribution shifted to the null:
        ``p = (1 + #{|d*_k - d| >= |d|}) / (n_boot + 1)``, with ``d`` the observed mean
        difference and ``d*_k`` its resampled values; the +1 counts the observed sample
        among the resamples, so p is never 0 (smallest ``1 / (n_boot + 1)``).
        Identical inputs give difference 0 and p = 1.

    Notes
    -----
    For a metric that is not a per-image mean (e.g. the encoding score), resample both
    models jointly with :func:`bootstrap_ci` and a callable of the image indices instead.
    """
    d = _paired_differences(a, b)
    boot = bootstrap_ci(d, n_boot=n_boot, ci=ci, seed=seed)
    extreme = np.abs(boot.distribution - boot.value) >= abs(boot.value)
    return PairedTestResult(
        difference=boot.value, ci_low=boot.low, ci_high=boot.high,
        p_value=float((1 + extreme.sum()) / (n_boot + 1)), n_images=d.size,
        n_resamples=n_boot, method="paired bootstrap",
    )


def paired_permutation_test(
    a: np.ndarray, b: np.ndarray, *, n_perm: int = 10000, n_boot: int = 2000,
    ci: float = 0.95, seed: int = 0,
) -> PairedTestResult:
    """Sign-flip permutation test of the mean per-image difference ``a - b``.

    Under the null hypothesis that the two models are exchangeable on every image, each
    difference ``a_i - b_i`` is as likely to carry either sign; the null distribution of
    the mean difference is built by flipping signs at random
    (:func:`scipy.stats.permutation_test`, ``permutation_type='samples'`` on one sample).

    Parameters
    ----------
    a, b : ndarray, shape (n_images,)
        One metric per test image for the two models, same image order, finite.
    n_perm : int
        Random sign patterns. When ``2 ** n_images <= n_perm`` all patterns are enumerated
        instead (an exact test).
    n_boot, ci : int, float
        Bootstrap resamples and level of the CI on the mean difference (the permutation
        test itself gives no interval; the CI is that of :func:`paired_bootstrap_test`).
    seed : int
        Seed of both the sign flips and the bootstrap.

    Returns
    -------
    PairedTestResult
        Two-sided p-value = twice the smaller one-sided p-value (capped at 1); each
        one-sided p-value is ``(1 + #{null as or more extreme}) / (n_perm + 1)`` for random
        flips, so it is never 0 (smallest ``2 / (n_perm + 1)``). An exact test counts the
        observed pattern among the ``2 ** n_images`` enumerated ones, so it is never 0
        either. Identical inputs give difference 0 and p = 1.
    """
    d = _paired_differences(a, b)
    if n_perm < 1:
        raise ValueError(f"n_perm: expected at least 1 sign pattern, found {n_perm}")
    result = _scipy_stats.permutation_test(
        (d,), lambda x, axis=-1: x.mean(axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=n_perm, alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    n_null = int(np.size(result.null_distribution))
    boot = bootstrap_ci(d, n_boot=n_boot, ci=ci, seed=seed)
    return PairedTestResult(
        difference=boot.value, ci_low=boot.low, ci_high=boot.high,
        p_value=float(result.pvalue), n_images=d.size, n_resamples=n_null,
        method="sign-flip permutation" + (" (exact)" if 2 ** d.size <= n_perm else ""),
    )


def format_ci(value: float, low: float, high: float, digits: int = 2) -> str:
    """Format a value and its CI for text and tables: ``'0.42 [0.38, 0.46]'``.

    Parameters
    ----------
    value, low, high : float
        Point estimate and interval bounds (same units).
    digits : int
        Decimal places, applied to all three.

    An undefined value (NaN, e.g. an encoding score of a prediction that is the same for
    every image) reads ``'undefined'``; a value whose interval is undefined (e.g. a
    Student-t interval over one subject) reads ``'0.42 [no CI]'``.
    """
    def number(x: float) -> str:
        text = f"{x:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"

    if not np.isfinite(value):
        return "undefined"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{number(value)} [no CI]"
    return f"{number(value)} [{number(low)}, {number(high)}]"


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error), same order as given.

    The ``k``-th smallest of ``m`` p-values is multiplied by ``m - k + 1`` (k from 1),
    made non-decreasing in that order and capped at 1; reject where adjusted p ≤ α.
    NaNs stay NaN and do not count towards ``m``.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def t_interval(values, ci: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t CI of the mean (``n - 1`` degrees of freedom), NaNs left out.

    For means over subjects or seeds, treated as a random sample. Returns NaN bounds with
    fewer than 2 finite values (one subject has no spread to estimate), and the mean as
    both bounds when every value is equal.

    Returns
    -------
    (mean, low, high) : floats
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    sem = _scipy_stats.sem(values)
    if sem == 0:
        return mean, mean, mean
    low, high = _scipy_stats.t.interval(ci, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def wilson_interval(successes: int, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (e.g. top-1 accuracy over
    images); unlike the normal approximation it stays inside [0, 1] and is not empty at
    0 or ``n`` successes."""
    interval = _scipy_stats.binomtest(int(successes), int(n)).proportion_ci(ci, method="wilson")
    return float(interval.low), float(interval.high)


def fisher_z_interval(value: float, resampled, ci: float = 0.95) -> tuple[float, float]:
    """CI of a correlation from the bootstrap standard error of Fisher's ``z = arctanh(r)``:
    ``tanh(z ± z_crit · se)``.

    For a correlation of two *means* over resampled images (e.g. an evoked scalp map): a
    resampled mean is noisier, so resampled r sit below r and a percentile interval can
    miss it, while the spread of ``z`` still measures the uncertainty.

    Parameters
    ----------
    value : float
        The correlation on the full sample.
    resampled : array-like
        Its bootstrap replicates (NaNs ignored).
    """
    z_crit = _scipy_stats.norm.ppf(0.5 + ci / 2)
    z = np.arctanh(np.clip(value, -1 + 1e-12, 1 - 1e-12))
    se = np.nanstd(np.arctanh(np.clip(np.asarray(resampled, float), -1 + 1e-12, 1 - 1e-12)),
                   ddof=1)
    return float(np.tanh(z - z_crit * se)), float(np.tanh(z + z_crit * se))
