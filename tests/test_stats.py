"""Tests for analysis.evaluation.stats: Pearson r, bootstrap CIs, paired tests, formatting."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.evaluation import stats
from analysis.evaluation.stats import (
    blockwise_mean_and_variance,
    bootstrap_ci,
    check_array,
    format_ci,
    mean_ignoring_nan,
    paired_bootstrap_test,
    paired_permutation_test,
    pearson_r,
)


# --- Pearson r ---------------------------------------------------------------------------

def test_pearson_r_hand_values_and_axes():
    x = np.array([[0.0, 2.0, 1.0], [3.0, 1.0, 4.0]])
    y = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 4.0]])
    # row 0: centred (-1, 1, 0) and (-1, 0, 1) -> 1 / 2; row 1: 4 / sqrt(42/9 * 6) = 2/sqrt(7)
    np.testing.assert_allclose(pearson_r(x, y, axis=1), [0.5, 2 / np.sqrt(7)])
    np.testing.assert_allclose(pearson_r(x.T, y.T, axis=0), [0.5, 2 / np.sqrt(7)])
    assert pearson_r(x, 5 * x - 2, axis=1) == pytest.approx([1.0, 1.0])
    assert pearson_r(x, -x, axis=(0, 1)) == pytest.approx(-1.0)


def test_pearson_r_is_nan_where_an_input_is_constant():
    x = np.array([[1.0, 2.0, 3.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]])
    y = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 4.0]])
    r = pearson_r(x, y, axis=1)
    assert r[0] == pytest.approx(-0.5)
    assert np.isnan(r[1]) and np.isnan(r[2])
    assert np.isnan(pearson_r(y, x, axis=1)[1])  # either side constant


@pytest.mark.parametrize("axis", [0, (1, 2), -1, (0, 2)])
def test_pearson_r_in_slices_equals_in_one_piece(monkeypatch, axis):
    # Large inputs are correlated in slices along the first axis not correlated over; any
    # slice size (here 1 to 3 values of that axis at a time) gives the one-piece result,
    # the zero-variance rule included.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 4)).astype(np.float32)
    y = x + rng.standard_normal((6, 5, 4)).astype(np.float32)
    x[:, 2, :] = 1.5  # constant across images (axis 0) at channel 2
    whole = pearson_r(x, y, axis=axis)
    for block in (1, 20, 50):
        monkeypatch.setattr(stats, "PEARSON_BLOCK_VALUES", block)
        np.testing.assert_allclose(pearson_r(x, y, axis=axis), whole, rtol=1e-12)
        np.testing.assert_array_equal(np.isnan(pearson_r(x, y, axis=axis)), np.isnan(whole))
    # channel 2 is constant across images and along time, not across one image's points
    assert np.isnan(whole).any() == (axis != (1, 2))


def test_blockwise_mean_and_variance_by_hand_and_in_any_blocks():
    # Rows [0, 2] and [2, 4] around their mean [1, 3]: every value is 1 away, variance 1.
    mean, variance = blockwise_mean_and_variance([np.array([[0.0, 2.0]]), np.array([[2.0, 4.0]])], 1)
    np.testing.assert_array_equal(mean, [1.0, 3.0])
    assert variance == 1.0
    x = np.random.default_rng(0).normal(3, 2, size=(50, 4, 6)).astype(np.float32)
    for block_values in (1, 24 * 7 + 5, 10**6):  # a row per block, uneven blocks, one block
        for parts in ([x], [x[:13], x[13:]]):
            mean, variance = blockwise_mean_and_variance(parts, block_values)
            assert mean.dtype == np.float64 and mean.shape == (4, 6)
            np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-12)
            assert variance == pytest.approx(np.var(x.astype(np.float64) - mean), rel=1e-12)


def test_mean_ignoring_nan_skips_undefined_and_is_quiet_when_all_are():
    assert mean_ignoring_nan(np.array([1.0, np.nan, 3.0])) == 2.0
    with np.testing.assert_no_warnings():
        out = mean_ignoring_nan(np.array([[np.nan, np.nan], [1.0, np.nan]]), axis=1)
    assert np.isnan(out[0]) and out[1] == 1.0


def test_check_array_messages_name_argument_and_shapes():
    with pytest.raises(ValueError, match=r"pred: expected rank 3 with shape \(n_images, "
                                         r"n_channels, n_times\), found rank 2 with shape "
                                         r"\(4, 5\)"):
        check_array(np.zeros((4, 5)), "pred", ("n_images", "n_channels", "n_times"))
    with pytest.raises(ValueError, match=r"b: expected shape \(n_images=4\), found \(5,\)"):
        check_array(np.zeros(5), "b", ("n_images",), shape=(4,))
    with pytest.raises(ValueError, match=r"a: expected only finite values, found 1 NaN/inf values, "
                                         r"first at index \(2,\)"):
        check_array(np.array([0.0, 1.0, np.inf]), "a", ("n_images",))
    with pytest.raises(ValueError, match="x: expected a real-valued numeric array"):
        check_array(np.array(["a"]), "x", ("n",))


# --- bootstrap ---------------------------------------------------------------------------

def test_bootstrap_ci_of_a_normal_mean_covers_truth_with_textbook_width():
    rng = np.random.default_rng(1)
    n, sigma, mu = 2000, 2.0, 5.0
    values = rng.normal(mu, sigma, n)
    result = bootstrap_ci(values, n_boot=2000, seed=0)
    assert result.value == pytest.approx(values.mean())
    assert result.low < mu < result.high
    # normal theory: width = 2 * 1.96 * s / sqrt(n) (0.175 here); the percentile quantiles
    # of 2000 resamples are good to a few per cent
    expected = 2 * 1.96 * values.std(ddof=1) / np.sqrt(n)
    assert result.high - result.low == pytest.approx(expected, rel=0.08)
    assert result.distribution.shape == (2000,)


def test_bootstrap_ci_callable_forms_match_the_values_form():
    values = np.random.default_rng(2).normal(size=50)
    from_values = bootstrap_ci(values, n_boot=500, seed=3)
    one_at_a_time = bootstrap_ci(lambda idx: values[idx].mean(), n_images=50, n_boot=500, seed=3)
    batched = bootstrap_ci(lambda idx: values[idx].mean(axis=-1), n_images=50, n_boot=500,
                           seed=3, vectorized=True, batch=64)
    for other in (one_at_a_time, batched):
        assert (other.value, other.low, other.high) == pytest.approx(
            (from_values.value, from_values.low, from_values.high))


def test_bootstrap_ci_resamples_paired_metrics_jointly():
    rng = np.random.default_rng(4)
    a = rng.normal(size=100)
    b = a + 0.01  # perfectly paired: the difference never varies under joint resampling
    result = bootstrap_ci(lambda idx: a[idx].mean() - b[idx].mean(), n_images=100, n_boot=200)
    assert (result.low, result.value, result.high) == pytest.approx((-0.01, -0.01, -0.01))


def test_bootstrap_ci_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_images: expected the number of images"):
        bootstrap_ci(lambda idx: 0.0)
    with pytest.raises(ValueError, match="n_images: expected at least 2 images"):
        bootstrap_ci(np.array([1.0]))
    with pytest.raises(ValueError, match=r"ci: expected a confidence level in \(0, 1\), found 95"):
        bootstrap_ci(np.ones(5), ci=95)
    with pytest.raises(ValueError, match=r"values_or_fn: expected rank 1 with shape \(n_images\)"):
        bootstrap_ci(np.ones((5, 2)))


# --- paired tests ------------------------------------------------------------------------

@pytest.mark.parametrize("test", [paired_bootstrap_test, paired_permutation_test])
def test_paired_tests_on_identical_inputs_find_nothing(test):
    a = np.random.default_rng(5).normal(size=60)
    result = test(a, a.copy())
    assert result.difference == 0.0
    assert result.ci_low == 0.0 and result.ci_high == 0.0
    assert result.p_value == pytest.approx(1.0)


@pytest.mark.parametrize("test", [paired_bootstrap_test, paired_permutation_test])
def test_paired_tests_detect_a_clear_shift(test):
    rng = np.random.default_rng(6)
    base = rng.normal(size=80)
    a = base + 0.5 + rng.normal(0, 0.3, 80)
    result = test(a, base)
    assert result.p_value < 0.01
    assert result.ci_low < 0.5 < result.ci_high
    assert result.difference == pytest.approx((a - base).mean())
    assert result.n_images == 80


def test_sign_flip_p_value_has_the_plus_one_correction_and_is_never_zero():
    a = np.full(40, 10.0)
    b = np.zeros(40)
    result = paired_permutation_test(a, b, n_perm=99)
    # every random flip is less extreme: each one-sided p is (0 + 1) / (99 + 1), two-sided 2x
    assert result.p_value == pytest.approx(2 / 100)
    assert result.method == "sign-flip permutation" and result.n_resamples == 99
    boot = paired_bootstrap_test(a + np.linspace(0, 1, 40), b, n_boot=999)
    assert boot.p_value == pytest.approx(1 / 1000)


def test_sign_flip_is_exact_when_all_patterns_fit():
    result = paired_permutation_test(np.ones(4), np.zeros(4), n_perm=1000)
    # 16 sign patterns, the observed (all +) is the single most extreme on each side
    assert result.method == "sign-flip permutation (exact)" and result.n_resamples == 16
    assert result.p_value == pytest.approx(2 / 16)


def test_paired_tests_validate_pairing():
    with pytest.raises(ValueError, match=r"b: expected shape \(n_images=3\), found \(4,\)"):
        paired_bootstrap_test(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="a: expected only finite values"):
        paired_permutation_test(np.array([0.0, np.nan, 1.0]), np.zeros(3))


def test_format_ci():
    assert format_ci(0.4213, 0.379, 0.4649) == "0.42 [0.38, 0.46]"
    assert format_ci(1.0, -0.5, 2.25, digits=3) == "1.000 [-0.500, 2.250]"
    # A bound that rounds to zero is "0.000", not "-0.000".
    assert format_ci(-0.009, -0.018, -0.0003, digits=3) == "-0.009 [-0.018, 0.000]"
    assert format_ci(float("nan"), float("nan"), float("nan")) == "undefined"
    assert format_ci(0.4213, float("nan"), float("nan")) == "0.42 [no CI]"


def test_t_wilson_and_fisher_intervals_by_hand():
    from analysis.evaluation.stats import fisher_z_interval, t_interval, wilson_interval

    mean, low, high = t_interval([1.0, 2.0, 3.0, np.nan])
    half = 4.302652729749464 / np.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert np.isnan(t_interval([5.0])[1]) and t_interval([4.0, 4.0]) == (4.0, 4.0, 4.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2  # never empty at zero successes (≈ 0.161)
    # with zero bootstrap spread the Fisher interval collapses onto the value
    assert fisher_z_interval(0.5, [0.5, 0.5, 0.5]) == pytest.approx((0.5, 0.5))
    low, high = fisher_z_interval(0.5, np.tanh(np.arctanh(0.5) + np.array([-0.1, 0.1])))
    assert low < 0.5 < high
