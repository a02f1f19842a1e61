"""The judge on known answers: references of known quality, checks that must pass or fail.

Synthetic images have a shared response plus an image-specific one; trials add white noise.
``oracle`` draws new trials of the truth, ``ridge`` shrinks the image-specific part by half,
``mean`` has none of it, ``shuffled`` is ``ridge`` with image labels permuted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.evaluation import decoding
from analysis.evaluation.metric_validation import (CHECKS, CHECKS_BY_NAME, Context, score_checks,
                                                   verdicts)
from analysis.names import TIERS, kind
from analysis.references import shuffled

N_IMAGES, N_CH, N_TIMES = 150, 6, 50
TIMES = np.linspace(-0.1, 0.6, N_TIMES)
SFREQ = 1 / (TIMES[1] - TIMES[0])


def world(n_target=10, n=6, noise=1.0, seed=0, specific_sd=0.3):
    rng = np.random.default_rng(seed)
    shared = 2 * np.sin(2 * np.pi * 3 * TIMES)[None, None] * rng.standard_normal((1, N_CH, 1))
    specific = specific_sd * rng.standard_normal((N_IMAGES, N_CH, N_TIMES))
    truth = shared + specific

    def draw(mean, count):
        return mean[:, None] + noise * rng.standard_normal((N_IMAGES, count, N_CH, N_TIMES))

    target = draw(truth, n_target)
    ridge = draw(shared + 0.5 * specific, n)
    signals = {"oracle": draw(truth, n), "real_half": draw(truth, n), "ridge_noise": ridge,
               "mean_noise": draw(np.broadcast_to(shared, truth.shape), n),
               "shuffled": shuffled(ridge, seed=1)}
    return signals, target


@pytest.fixture(scope="module")
def scored():
    signals, target = world()
    return score_checks(signals, target, Context(TIMES, SFREQ))


def test_every_check_is_scored_for_every_reference(scored):
    assert set(scored["check"]) == {c.name for c in CHECKS}
    assert len(scored) == 5 * len(CHECKS)
    assert set(kind(g) for g in scored["generator"]) == {"reference"}


def test_image_conditional_checks_rank_the_references_as_they_claim(scored):
    table = verdicts(scored, TIERS).set_index("check")
    for check in ("encoding_score", "paper_r", "paper_mse", "top1", "map_r", "rsa",
                  "auc_residual"):
        assert table.loc[check, "valid"], (check, table.loc[check].to_dict())
    values = scored.pivot(index="generator", columns="check", values="value")
    assert abs(values.loc["oracle", "auc_residual"] - 0.5) < 0.1  # the truth passes for real
    assert values.loc["mean_noise", "auc_residual"] > 0.75
    assert values.loc["shuffled", "auc_residual"] > 0.75  # labels permuted: caught
    assert values.loc["oracle", "top1"] > 0.9 and values.loc["shuffled", "top1"] < 0.1


def test_a_check_blind_to_the_image_fails_its_verdict(scored):
    # A spectrum pooled over all signals cannot see labels: shuffled ridge_noise has exactly
    # ridge_noise's spectrum, so the check cannot rank the image-blind tier below it.
    values = scored[scored["check"] == "spectrum_error"].set_index("generator")["value"]
    assert values["shuffled"] == pytest.approx(values["ridge_noise"], rel=1e-9)
    row = verdicts(scored, TIERS).set_index("check").loc["spectrum_error"]
    assert not row["valid"] and "image-blind" in row["reason"]


def test_verdicts_without_the_oracle_and_with_an_unrankable_tier(scored):
    real = scored[scored["generator"] != "oracle"]
    assert verdicts(real, TIERS).set_index("check").loc["top1", "valid"]
    blank = scored.copy()
    blank.loc[blank["generator"] == "ridge_noise", "value"] = np.nan
    row = verdicts(blank, TIERS).set_index("check").loc["top1"]
    assert not row["valid"] and "tier 1" in row["reason"]


def test_directions_map_to_goodness():
    assert CHECKS_BY_NAME["paper_mse"].goodness(2.0) < CHECKS_BY_NAME["paper_mse"].goodness(1.0)
    auc = CHECKS_BY_NAME["auc_residual"]
    assert auc.goodness(0.5) > auc.goodness(0.6) and auc.goodness(0.4) == auc.goodness(0.5)


def test_score_checks_rejects_unequal_counts_and_wrong_shapes():
    signals, target = world(n=4)
    context = Context(TIMES, SFREQ)
    unequal = dict(signals, oracle=signals["oracle"][:, :3])
    with pytest.raises(ValueError, match="same number of signals"):
        score_checks(unequal, target, context, CHECKS[:1])
    with pytest.raises(ValueError, match=r"signals\['oracle'\]"):
        score_checks({"oracle": signals["oracle"][:10]}, target, context, CHECKS[:1])
    with pytest.raises(ValueError, match="n_reps >= 2"):
        score_checks(signals, target[:, :1], context, CHECKS[:1])


def test_residual_auc_matches_counts_and_catches_an_image_blind_generator():
    signals, target = world(n_target=8, n=8, seed=3, specific_sd=0.8)
    truth = decoding.residual_auc(target, signals["oracle"], n_permutations=9)
    assert truth.n_real == truth.n_generated == N_IMAGES
    assert abs(truth.auc - 0.5) < 0.1 and truth.p_value > 0.05
    blind = decoding.residual_auc(target, signals["mean_noise"], n_permutations=9)
    assert blind.auc > 0.9 and blind.p_value == pytest.approx(0.1)  # 1 / (9 + 1): the smallest
    with pytest.raises(ValueError, match="k: expected an integer in"):
        decoding.residual_auc(target, signals["oracle"], k=5)
    with pytest.raises(ValueError, match="generated: expected shape"):
        decoding.residual_auc(target, signals["oracle"][:, :, :3])


def test_scores_table_has_one_value_per_generator_and_check(scored):
    assert not scored.duplicated(["generator", "check"]).any()
    assert isinstance(scored, pd.DataFrame) and set(scored["better"]) == {"higher", "lower",
                                                                         "chance"}


def test_reference_table_lists_every_reference_with_its_rank():
    from analysis.calibration import reference_table

    table = reference_table()
    assert list(table.index) == ["oracle", "real_half", "ridge_noise", "mean_noise", "shuffled"]
    assert table["a valid check ranks it"].tolist() == ["best", "best", "middle", "worst", "worst"]
    assert CHECKS_BY_NAME["auc_residual"].arrow == "→ 0.5" and CHECKS_BY_NAME["top1"].arrow == "↑"
