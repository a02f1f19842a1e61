"""Every name a page can score, in one place: the generators, baselines and references.

- generators (:data:`CONDITIONINGS`): the diffusion model with each conditioning; where a
  check wants one response per image it gets the model's conditional mean E[x | c] (the
  denoiser's x̂0 at the last step), where it wants trials it gets samples;
- baselines (:data:`BASELINES`): deterministic predictors of the mean response, ``ridge``
  on the pooled image embedding and ``train_mean`` (the training average for every image);
- references (:data:`REFERENCES`, :mod:`analysis.references`): signals whose place in any
  ranking is known, the yardsticks that show whether a check can fail;
- ``noiseless``: the true mean responses of simulated data (a perfect *mean* predictor).

Each reference's :data:`TIERS` entry is where a valid check must rank it: tier 0 (as good as
real data) above tier 1 (the linear-Gaussian model) above tier 2 (knows nothing of the image).
"""

from __future__ import annotations

from .config import CONDITIONINGS

#: Deterministic predictors of the mean response.
BASELINES = ("ridge", "train_mean")
#: Generators and baselines: everything the book compares, in display order.
MODELS = CONDITIONINGS + BASELINES
#: Models whose prediction differs per image (``train_mean`` predicts one response for all).
PER_IMAGE_MODELS = tuple(m for m in MODELS if m != "train_mean")
#: Reference generators, best first.
REFERENCES = ("oracle", "real_half", "ridge_noise", "mean_noise", "shuffled")
#: Where a valid check ranks each reference: 0 best (real data), 2 worst (image-blind).
TIERS = {"oracle": 0, "real_half": 0, "ridge_noise": 1, "mean_noise": 2, "shuffled": 2}
#: The signals ``shuffled`` permutes: ``ridge_noise``, whose marginal distribution is known
#: to be right, so that ``shuffled`` lacks *only* the image labels. (A model's samples would
#: carry the model's own flaws, and a check blind to the image, e.g. a pooled spectrum,
#: would then rank ``shuffled`` last for the wrong reason.)
SHUFFLED_SOURCE = "ridge_noise"
#: The comparisons the paper's claims rest on: its model against the ablation, the
#: capacity control (what the tokens add at equal injection), the linear baseline of the
#: field and the unconditional generator.
PAIRS = (("cross_attention", "concat"), ("cross_attention", "film"),
         ("cross_attention", "ridge"), ("cross_attention", "none"))

#: One line per name, for tables and legends.
DESCRIPTIONS = {
    "cross_attention": "diffusion model, image tokens through cross-attention",
    "concat": "diffusion model, pooled embedding concatenated to the input",
    "film": "diffusion model, pooled embedding scaling every block (FiLM; capacity control)",
    "none": "diffusion model without the image (unconditional)",
    "ridge": "ridge regression on the pooled embedding (mean predictor)",
    "train_mean": "the training average for every image (mean predictor)",
    "oracle": "true mean + new trial noise from the simulator (perfect generator)",
    "real_half": "held-out real test repetitions (the data's own ceiling)",
    "ridge_noise": "ridge mean + Gaussian noise of the training residuals' covariance",
    "mean_noise": "training mean + the same noise (knows nothing of the image)",
    "shuffled": f"{SHUFFLED_SOURCE} samples with image labels permuted",
    "noiseless": "true mean responses of the simulator (perfect mean predictor)",
}


def kind(name: str) -> str:
    """``'generator'``, ``'baseline'``, ``'reference'`` or ``'truth'`` (``noiseless``).

    Raises
    ------
    ValueError
        An unknown name; the message lists the known ones.
    """
    for group, names in (("generator", CONDITIONINGS), ("baseline", BASELINES),
                         ("reference", REFERENCES), ("truth", ("noiseless",))):
        if name in names:
            return group
    raise ValueError(f"unknown model or reference '{name}'; expected one of "
                     f"{MODELS + REFERENCES + ('noiseless',)}")
