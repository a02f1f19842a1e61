"""The diffusion process: schedules, forward process, parameterisations, samplers, guidance, EMA.

The samplers are checked against an *oracle* network that knows the clean signal ``x0``
and returns the exact ε or v for whatever ``x_t`` it is given: every correct sampler must
then return ``x0`` itself, for any number of steps, so the tests need no trained network.
"""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
from torch import nn

from analysis.config import SAMPLING_METHODS
from analysis.ema import EMA
from analysis.models.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    GaussianDiffusion,
    SAMPLERS,
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_sampler,
    make_schedule,
)

N_STEPS = 1000
SHAPE = (3, 4, 16)  # (batch, n_channels, n_times), small so 1000-step loops stay fast


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return cosine_schedule(N_STEPS)


def make_x0(dtype=torch.float64, shape=SHAPE, seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make_oracle(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """A network that returns the exact target for a known x0, whatever x_t it sees."""

    def model(x_t, t, cond=None, drop_cond=None):
        alpha_bar = diffusion.schedule.alphas_cumprod.to(x_t)[t].view(-1, 1, 1)
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        eps = (x_t - a * x0) / b
        return eps if diffusion.prediction == "eps" else a * eps - b * x0

    return model


def linear_model(x_t, t, cond=None, drop_cond=None):
    """A fixed, non-trivial, t-dependent map: stands in for an untrained network."""
    return 0.5 * x_t + 0.1 * (t.to(x_t) / N_STEPS).view(-1, 1, 1)


class ConstantModel(nn.Module):
    """Returns ``c`` for conditioned samples and ``u`` for dropped ones; counts its calls."""

    def __init__(self, c: float, u: float):
        super().__init__()
        self.c, self.u = c, u
        self.calls: list[dict] = []

    def forward(self, x_t, t, cond=None, drop_cond=None):
        self.calls.append({"batch": x_t.shape[0], "cond": cond, "drop_cond": drop_cond})
        dropped = torch.zeros(x_t.shape[0], dtype=torch.bool) if drop_cond is None else drop_cond
        if cond is None:
            dropped = torch.ones_like(dropped)
        value = torch.where(dropped, torch.tensor(self.u), torch.tensor(self.c))
        return value.to(x_t).view(-1, 1, 1).expand_as(x_t).clone()


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("make", [cosine_schedule, linear_schedule], ids=["cosine", "linear"])
def test_schedule_invariants(make):
    s = make(N_STEPS)
    assert s.n_steps == N_STEPS
    for tensor in (s.betas, s.alphas, s.alphas_cumprod, s.alphas_cumprod_prev,
                   s.sqrt_alphas_cumprod, s.sqrt_one_minus_alphas_cumprod):
        assert tensor.dtype == torch.float64 and tensor.shape == (N_STEPS,)
    assert ((s.betas > 0) & (s.betas < 1)).all()
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    assert (s.alphas_cumprod.diff() < 0).all(), "alphas_cumprod must be strictly decreasing"
    # With 1000 steps both schedules start almost noise-free (β_0 = 1e-4 linear, ~4e-5 cosine)
    # and end almost pure noise (linear: exp(-Σβ) ≈ 4e-5; cosine: clipped last β = 0.999).
    assert s.alphas_cumprod[0] > 1 - 2e-4
    assert s.alphas_cumprod[-1] < 1e-4
    assert s.alphas_cumprod_prev[0] == 1
    assert torch.equal(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1])
    torch.testing.assert_close(s.sqrt_alphas_cumprod ** 2 + s.sqrt_one_minus_alphas_cumprod ** 2,
                               torch.ones(N_STEPS, dtype=torch.float64))


def test_cosine_schedule_matches_closed_form():
    s = cosine_schedule(N_STEPS)
    t = torch.arange(N_STEPS + 1, dtype=torch.float64)
    f = torch.cos((t / N_STEPS + 0.008) / 1.008 * math.pi / 2) ** 2
    # Every step but the clipped last one follows ᾱ_t = f(t + 1) / f(0) (Nichol & Dhariwal).
    torch.testing.assert_close(s.alphas_cumprod[:-1], (f / f[0])[1:-1], rtol=1e-10, atol=0)
    assert s.betas[-1] == pytest.approx(0.999)
    assert (s.betas <= 0.999).all()


def test_short_cosine_schedule_still_reaches_noise():
    s = cosine_schedule(10)
    assert (s.alphas_cumprod.diff() < 0).all() and s.alphas_cumprod[-1] < 1e-3


def test_short_linear_schedule_warns_that_it_does_not_reach_noise():
    with pytest.warns(UserWarning, match="not close to pure noise"):
        linear_schedule(10)


@pytest.mark.parametrize("call, match", [
    (lambda: cosine_schedule(0), "n_steps must be a positive integer"),
    (lambda: cosine_schedule(2.5), "n_steps must be a positive integer"),
    (lambda: linear_schedule(100, beta_start=0.1, beta_end=0.01), "beta_start <= beta_end"),
    (lambda: linear_schedule(100, beta_end=1.0), "beta_end < 1"),
    (lambda: NoiseSchedule.from_betas([0.1, 1.5]), r"open interval \(0, 1\)"),
    (lambda: make_schedule("sigmoid", 10), r"schedule must be one of \['cosine', 'linear'\]"),
])
def test_schedule_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_make_schedule_by_name():
    torch.testing.assert_close(make_schedule("cosine", 50).betas, cosine_schedule(50).betas)


# --------------------------------------------------------------------------- forward process


@pytest.mark.parametrize("step", [0, 300, 999])
def test_q_sample_statistics(schedule, step):
    diffusion = GaussianDiffusion(schedule)
    n = 20_000
    x0 = torch.tensor([[[1.5, -2.0, 0.25]]], dtype=torch.float64)
    noise = torch.randn((n, 1, 3), generator=torch.Generator().manual_seed(step), dtype=torch.float64)
    x_t = diffusion.q_sample(x0.expand(n, 1, 3), torch.full((n,), step), noise)
    alpha_bar = schedule.alphas_cumprod[step]
    var = 1 - alpha_bar
    # 5 standard errors: the sample mean has SE sqrt(var / n); the sample variance of a
    # Gaussian has SE var * sqrt(2 / (n - 1)).
    torch.testing.assert_close(x_t.mean(0), alpha_bar.sqrt() * x0[0], rtol=0,
                               atol=5 * math.sqrt(var / n) + 1e-12)
    torch.testing.assert_close(x_t.var(0), torch.full((1, 3), float(var), dtype=torch.float64),
                               rtol=0, atol=5 * var * math.sqrt(2 / (n - 1)) + 1e-12)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_target_and_predict_x0_round_trip(schedule, prediction):
    diffusion = GaussianDiffusion(schedule, prediction=prediction)
    x0, noise = make_x0(seed=1), make_x0(seed=2)
    t = torch.tensor([0, 500, 999])
    x_t = diffusion.q_sample(x0, t, noise)
    target = diffusion.target(x0, noise, t)
    if prediction == "eps":
        assert torch.equal(target, noise)
    else:
        a = schedule.sqrt_alphas_cumprod[t].view(-1, 1, 1)
        torch.testing.assert_close(target, a * noise - (1 - a ** 2).sqrt() * x0)
    x0_hat, eps_hat = diffusion.predict_x0_and_eps(target, x_t, t)
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-5)
    torch.testing.assert_close(eps_hat, noise, rtol=0, atol=1e-5)


def test_int_t_is_broadcast_over_the_batch(schedule):
    diffusion = GaussianDiffusion(schedule)
    x0, noise = make_x0(), make_x0(seed=1)
    torch.testing.assert_close(diffusion.q_sample(x0, 7, noise),
                               diffusion.q_sample(x0, torch.full((SHAPE[0],), 7), noise))


# --------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("steps", [1, 10, 50, N_STEPS])
def test_ddim_with_oracle_recovers_x0(schedule, prediction, steps):
    diffusion = GaussianDiffusion(schedule, prediction=prediction)
    x0 = make_x0()
    x_T = make_x0(seed=5)
    out = diffusion.sample(make_oracle(diffusion, x0), SHAPE, DDIMSampler(steps), x_T=x_T)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddpm_with_oracle_recovers_x0(schedule, prediction):
    diffusion = GaussianDiffusion(schedule, prediction=prediction)
    x0 = make_x0()
    out = diffusion.sample(make_oracle(diffusion, x0), SHAPE, DDPMSampler(), x_T=make_x0(seed=5),
                                generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_oracle_recovery_in_float32(schedule, prediction):
    diffusion = GaussianDiffusion(schedule, prediction=prediction)
    x0 = make_x0(torch.float32)
    out = diffusion.sample(make_oracle(diffusion, x0), SHAPE, DDIMSampler(50),
                                generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-3)


def recording(model):
    """Wrap a model so it records every (t, x_t) it is called with."""
    seen = []

    def wrapped(x_t, t, cond=None, drop_cond=None):
        seen.append((int(t[0]), x_t.clone()))
        return model(x_t, t, cond, drop_cond)

    return wrapped, seen


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_oracle_trajectory_keeps_its_noise(schedule, prediction):
    # End-point recovery only checks the last update. With an oracle and η = 0, every DDIM
    # state must be x_s = sqrt(ᾱ_s) x0 + sqrt(1 - ᾱ_s) ε_T: the noise implied by x_T is
    # carried unchanged along the whole trajectory (Song et al. 2021, eq. 12).
    diffusion = GaussianDiffusion(schedule, prediction=prediction)
    x0, x_T = make_x0(), make_x0(seed=5)
    model, seen = recording(make_oracle(diffusion, x0))
    diffusion.sample(model, SHAPE, DDIMSampler(7), x_T=x_T)
    assert [t for t, _ in seen] == DDIMSampler(7).timesteps(diffusion)
    a, b = schedule.sqrt_alphas_cumprod, schedule.sqrt_one_minus_alphas_cumprod
    eps_T = (x_T - a[-1] * x0) / b[-1]
    for t, x_t in seen:
        torch.testing.assert_close(x_t, a[t] * x0 + b[t] * eps_T, rtol=0, atol=1e-6)


def test_ddpm_oracle_trajectory_has_the_forward_marginals(schedule):
    # With an exact x0, each DDPM step samples the true posterior q(x_{t-1} | x_t, x0), so
    # every visited x_t must follow the forward marginal N(sqrt(ᾱ_t) x0, 1 - ᾱ_t): this
    # checks the posterior mean coefficients and variance β̃ at every step, not just the last.
    diffusion = GaussianDiffusion(schedule, prediction="v")
    n = 2000
    x0 = make_x0(shape=(n, 1, 3))
    model, seen = recording(make_oracle(diffusion, x0))
    diffusion.sample(model, (n, 1, 3), DDPMSampler(), x_T=torch.randn(n, 1, 3, dtype=torch.float64),
                          generator=torch.Generator().manual_seed(0))
    a, b = schedule.sqrt_alphas_cumprod, schedule.sqrt_one_minus_alphas_cumprod
    for t, x_t in seen:
        if t not in (900, 500, 100, 10, 1):
            continue
        z = ((x_t - a[t] * x0) / b[t]).flatten()  # should be N(0, 1), 3n draws
        assert abs(z.mean()) < 5 / math.sqrt(z.numel()), t
        assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.numel()), t


def test_ddim_eta_one_on_every_step_is_ddpm(schedule):
    # With σ = β̃ and the posterior mean, DDIM(η=1, all steps) is DDPM step for step; both
    # draw the same noise from the same generator, so they agree to round-off.
    diffusion = GaussianDiffusion(schedule, prediction="v")
    x_T = make_x0(seed=3)
    ddpm = diffusion.sample(linear_model, SHAPE, DDPMSampler(), x_T=x_T, generator=torch.Generator().manual_seed(1))
    ddim = diffusion.sample(linear_model, SHAPE, DDIMSampler(N_STEPS, eta=1.0), x_T=x_T,
                                 generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-9, atol=1e-9)


def test_ddim_timesteps(schedule):
    diffusion = GaussianDiffusion(schedule)
    assert DDIMSampler(1).timesteps(diffusion) == [N_STEPS - 1]
    assert DDIMSampler(2).timesteps(diffusion) == [N_STEPS - 1, 0]
    assert DDIMSampler(N_STEPS).timesteps(diffusion) == list(range(N_STEPS - 1, -1, -1))
    assert DDPMSampler().timesteps(diffusion) == list(range(N_STEPS - 1, -1, -1))
    for steps in (3, 10, 50, 999):
        timesteps = DDIMSampler(steps).timesteps(diffusion)
        assert len(timesteps) == steps and timesteps[0] == N_STEPS - 1 and timesteps[-1] == 0
        assert all(a > b for a, b in zip(timesteps, timesteps[1:]))


def test_clip_x0_bounds_the_samples(schedule):
    diffusion = GaussianDiffusion(schedule)
    x0 = 3 * make_x0()
    out = diffusion.sample(make_oracle(diffusion, x0), SHAPE, DDIMSampler(10), clip_x0=1.0,
                                x_T=make_x0(seed=5))
    assert out.abs().max() <= 1.0
    torch.testing.assert_close(out, x0.clamp(-1, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 8), (2, 17, 100), (5, 3, 1)])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_sample_shapes(schedule, shape, prediction):
    diffusion = GaussianDiffusion(cosine_schedule(20), prediction=prediction)
    generator = torch.Generator().manual_seed(0)
    for sample in (diffusion.sample(linear_model, shape, DDPMSampler(), generator=generator),
                   diffusion.sample(linear_model, shape, DDIMSampler(5), generator=generator),
                   diffusion.sample(linear_model, shape, DDIMSampler(5, eta=0.5), generator=generator)):
        assert sample.shape == shape and sample.dtype == torch.float32
        assert torch.isfinite(sample).all()


def test_samplers_are_reproducible_from_a_seed():
    diffusion = GaussianDiffusion(cosine_schedule(50), prediction="v")

    def draw(sampler, seed):
        return diffusion.sample(linear_model, SHAPE, sampler, generator=torch.Generator().manual_seed(seed))

    for sampler in (DDPMSampler(), DDIMSampler(10), DDIMSampler(10, eta=0.5)):
        assert torch.equal(draw(sampler, 0), draw(sampler, 0))
        assert not torch.allclose(draw(sampler, 0), draw(sampler, 1))


def test_samplers_are_interchangeable_objects_for_one_trained_network(schedule):
    # One network, one loop: the sampler is the only thing that changes. By name they are
    # what a SamplingConfig asks for; with the oracle each recovers x0.
    diffusion = GaussianDiffusion(schedule, prediction="v")
    x0, x_T = make_x0(), make_x0(seed=5)
    oracle = make_oracle(diffusion, x0)
    for sampler in (make_sampler("ddim", 10), make_sampler("ddpm"), DDIMSampler(25, eta=0.3),
                    make_sampler("dpmpp", 10), DPMSolverSampler(3)):
        out = diffusion.sample(oracle, SHAPE, sampler, x_T=x_T, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)
    assert make_sampler("ddim", 10) == DDIMSampler(10) != DDIMSampler(11)
    assert make_sampler("ddpm") == DDPMSampler()
    assert make_sampler("dpmpp", 10) == DPMSolverSampler(10) != DDIMSampler(10)
    with pytest.raises(ValueError, match="method must be one of"):
        make_sampler("euler")
    with pytest.raises(ValueError, match="deterministic: eta must be 0"):
        make_sampler("dpmpp", 10, eta=0.5)
    assert tuple(SAMPLERS) == SAMPLING_METHODS  # the command line offers the config's names


def gaussian_data_model(diffusion: GaussianDiffusion, scale: float):
    """The exact denoiser for data x0 ~ N(0, scale²) per value: E[x0 | x_t] is linear,
    ``sqrt(ᾱ) scale² / (ᾱ scale² + 1 - ᾱ) x_t``; returned as the ε the network would give."""

    def model(x_t, t, cond=None, drop_cond=None):
        a = diffusion.schedule.alphas_cumprod.to(x_t)[t].view(-1, 1, 1)
        x0 = a.sqrt() * scale ** 2 / (a * scale ** 2 + 1 - a) * x_t
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return model


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_dpm_solver_is_a_second_order_solver_of_the_probability_flow(schedule, scale):
    # For Gaussian data the probability-flow ODE keeps x_t / sqrt(ᾱ_t scale² + 1 - ᾱ_t)
    # constant, so the exact sample from x_T is known. Deterministic DDIM is the ODE's
    # first-order solver, DPM-Solver++(2M) its second-order one: doubling the steps must
    # cut DDIM's error by ~2 and DPM-Solver's by ~4 or more.
    diffusion = GaussianDiffusion(schedule, prediction="eps")
    model = gaussian_data_model(diffusion, scale)
    x_T = make_x0(seed=7)
    a_T = schedule.alphas_cumprod[-1].item()
    exact = scale * x_T / math.sqrt(a_T * scale ** 2 + 1 - a_T)

    def error(sampler):
        out = diffusion.sample(model, SHAPE, sampler, x_T=x_T)
        return ((out - exact).abs().max() / exact.abs().max()).item()

    ddim, dpm = error(DDIMSampler(100)) / error(DDIMSampler(200)), \
        error(DPMSolverSampler(100)) / error(DPMSolverSampler(200))
    assert 1.7 < ddim < 2.5 and dpm > 3
    assert error(DPMSolverSampler(200)) < 0.25 * error(DDIMSampler(200))
    if scale >= 1:  # unit-variance data (the normalised signals): 25 steps beat DDIM's 50
        assert error(DPMSolverSampler(25)) < error(DDIMSampler(50))


def test_dpm_solver_first_step_is_ddim(schedule):
    # One step (to x̂0) and the first update of any run are DDIM's first-order update.
    diffusion = GaussianDiffusion(schedule, prediction="v")
    x_T = make_x0(seed=3)
    for steps in (1, 2):
        torch.testing.assert_close(diffusion.sample(linear_model, SHAPE, DPMSolverSampler(steps), x_T=x_T),
                                   diffusion.sample(linear_model, SHAPE, DDIMSampler(steps), x_T=x_T))
    three = diffusion.sample(linear_model, SHAPE, DPMSolverSampler(3), x_T=x_T)
    assert not torch.allclose(three, diffusion.sample(linear_model, SHAPE, DDIMSampler(3), x_T=x_T))


def test_ddim_eta_zero_is_deterministic_given_x_T():
    diffusion = GaussianDiffusion(cosine_schedule(50))
    x_T = make_x0(torch.float32)
    first = diffusion.sample(linear_model, SHAPE, DDIMSampler(10), x_T=x_T,
                                  generator=torch.Generator().manual_seed(0))
    second = diffusion.sample(linear_model, SHAPE, DDIMSampler(10), x_T=x_T,
                                   generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second)


def test_progress_bar_runs(capsys):
    diffusion = GaussianDiffusion(cosine_schedule(5))
    diffusion.sample(linear_model, SHAPE, DDIMSampler(5), progress=True)
    assert "DDIM sampling" in capsys.readouterr().err


def test_samplers_do_not_track_gradients():
    diffusion = GaussianDiffusion(cosine_schedule(5))
    net = nn.Conv1d(SHAPE[1], SHAPE[1], 1)
    sample = diffusion.sample(lambda x, t, cond=None, drop_cond=None: net(x), SHAPE, DDIMSampler(2))
    assert not sample.requires_grad


# --------------------------------------------------------------------------- guidance


@pytest.mark.parametrize("w", [0.0, 0.5, 2.5, 7.0])
def test_guided_output_is_linear_extrapolation(schedule, w):
    diffusion = GaussianDiffusion(schedule)
    model = ConstantModel(c=3.0, u=1.0)
    x_t = make_x0(torch.float32)
    cond = torch.randn(SHAPE[0], 5)
    out = diffusion.guided_output(model, x_t, torch.full((SHAPE[0],), 10), cond, w)
    expected = torch.full_like(x_t, 1.0) + w * (torch.full_like(x_t, 3.0) - torch.full_like(x_t, 1.0))
    assert torch.equal(out, expected)
    assert len(model.calls) == 1, "both branches must share one forward call"
    if w not in (0.0, 1.0):
        call = model.calls[0]
        assert call["batch"] == 2 * SHAPE[0]
        assert torch.equal(call["cond"], torch.cat([cond, cond]))
        assert call["drop_cond"].tolist() == [False] * SHAPE[0] + [True] * SHAPE[0]


def test_guidance_scale_one_is_a_single_conditional_pass(schedule):
    diffusion = GaussianDiffusion(schedule)
    model = ConstantModel(c=3.0, u=1.0)
    x_t = make_x0(torch.float32)
    cond = torch.randn(SHAPE[0], 5)
    out = diffusion.guided_output(model, x_t, 10, cond, 1.0)
    assert torch.equal(out, torch.full_like(x_t, 3.0))
    assert len(model.calls) == 1 and model.calls[0]["batch"] == SHAPE[0]
    assert model.calls[0]["cond"] is cond and model.calls[0]["drop_cond"] is None


def test_unconditional_model_is_a_single_pass_at_any_scale(schedule):
    diffusion = GaussianDiffusion(schedule)
    model = ConstantModel(c=3.0, u=1.0)
    x_t = make_x0(torch.float32)
    out = diffusion.guided_output(model, x_t, 10, None, 4.0)
    assert torch.equal(out, torch.full_like(x_t, 1.0))
    assert len(model.calls) == 1 and model.calls[0]["batch"] == SHAPE[0]


def test_guidance_skips_samples_with_dropped_condition(schedule):
    diffusion = GaussianDiffusion(schedule)
    model = ConstantModel(c=3.0, u=1.0)
    x_t = make_x0(torch.float32)
    drop = torch.tensor([True, False, False])
    out = diffusion.guided_output(model, x_t, 10, torch.randn(SHAPE[0], 5), 2.0, drop_cond=drop)
    assert out[0].eq(1.0).all() and out[1:].eq(1.0 + 2.0 * 2.0).all()


def test_guidance_concatenates_structured_conditions(schedule):
    diffusion = GaussianDiffusion(schedule)
    model = ConstantModel(c=3.0, u=1.0)
    cond = {"tokens": torch.randn(SHAPE[0], 7, 8), "extra": (torch.randn(SHAPE[0]), "name")}
    diffusion.guided_output(model, make_x0(torch.float32), 10, cond, 3.0)
    seen = model.calls[0]["cond"]
    assert torch.equal(seen["tokens"], torch.cat([cond["tokens"], cond["tokens"]]))
    assert seen["extra"][0].shape == (2 * SHAPE[0],) and seen["extra"][1] == "name"


@dataclasses.dataclass
class Features:
    pooled: torch.Tensor
    tokens: torch.Tensor


def test_guidance_concatenates_dataclass_conditions(schedule):
    diffusion = GaussianDiffusion(schedule)
    model = ConstantModel(c=3.0, u=1.0)
    cond = Features(torch.randn(SHAPE[0], 8), torch.randn(SHAPE[0], 0, 8))  # empty token axis
    diffusion.guided_output(model, make_x0(torch.float32), 10, cond, 3.0)
    seen = model.calls[0]["cond"]
    assert isinstance(seen, Features)
    assert torch.equal(seen.pooled, torch.cat([cond.pooled, cond.pooled]))
    assert seen.tokens.shape == (2 * SHAPE[0], 0, 8)


def test_guided_sampling_calls_the_model_once_per_step():
    diffusion = GaussianDiffusion(cosine_schedule(20))
    model = ConstantModel(c=0.1, u=0.0)
    sample = diffusion.sample(model, SHAPE, DDIMSampler(4), cond=torch.randn(SHAPE[0], 5),
                                   guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert sample.shape == SHAPE
    assert len(model.calls) == 4 and all(call["batch"] == 2 * SHAPE[0] for call in model.calls)


# --------------------------------------------------------------------------- loss


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_is_near_zero_for_the_oracle(schedule, prediction):
    diffusion = GaussianDiffusion(schedule, prediction=prediction)
    x0 = make_x0()
    loss = diffusion.loss(make_oracle(diffusion, x0), x0, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and loss < 1e-18


def test_loss_is_a_finite_scalar_and_reproducible(schedule):
    diffusion = GaussianDiffusion(schedule)
    net = nn.Conv1d(SHAPE[1], SHAPE[1], 3, padding=1)
    model = lambda x, t, cond=None, drop_cond=None: net(x)  # noqa: E731
    x0 = make_x0(torch.float32)
    loss = diffusion.loss(model, x0, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    assert torch.equal(loss, diffusion.loss(model, x0, generator=torch.Generator().manual_seed(0)))
    loss.backward()
    assert net.weight.grad is not None
    per_sample = diffusion.loss(model, x0, generator=torch.Generator().manual_seed(0), reduction="none")
    assert per_sample.shape == (SHAPE[0],)
    torch.testing.assert_close(per_sample.mean(), loss)


def test_loss_at_fixed_t_uses_that_t(schedule):
    diffusion = GaussianDiffusion(schedule)
    seen = []
    model = lambda x, t, cond=None, drop_cond=None: seen.append(t) or torch.zeros_like(x)  # noqa: E731
    diffusion.loss(model, make_x0(), t=torch.tensor([0, 1, 2]))
    assert seen[0].tolist() == [0, 1, 2]


def test_loss_condition_dropout(schedule):
    diffusion = GaussianDiffusion(schedule)
    seen = []

    def model(x, t, cond=None, drop_cond=None):
        seen.append(drop_cond)
        return torch.zeros_like(x)

    x0, cond = make_x0(), torch.randn(SHAPE[0], 5)
    diffusion.loss(model, x0, cond, cond_drop_prob=1.0)
    diffusion.loss(model, x0, cond, cond_drop_prob=0.0)
    diffusion.loss(model, x0, None, cond_drop_prob=1.0)
    diffusion.loss(model, x0, cond, drop_cond=torch.tensor([True, False, False]), cond_drop_prob=0.0)
    assert seen[0].all() and seen[1] is None and seen[2] is None
    assert seen[3].tolist() == [True, False, False]


# --------------------------------------------------------------------------- errors


def test_bad_prediction():
    with pytest.raises(ValueError, match=r"prediction must be one of \('eps', 'v'\), got 'x0'"):
        GaussianDiffusion(cosine_schedule(10), prediction="x0")


@pytest.mark.parametrize("steps", [0, 11, 2.5, True])
def test_ddim_steps_out_of_range(steps):
    diffusion = GaussianDiffusion(cosine_schedule(10))
    with pytest.raises(ValueError, match=r"steps must be (a positive integer|an integer in 1\.\.10)"):
        diffusion.sample(linear_model, SHAPE, DDIMSampler(steps))


def test_sampler_argument_errors():
    diffusion = GaussianDiffusion(cosine_schedule(10))
    cases = [
        (lambda: diffusion.sample(linear_model, SHAPE, DDIMSampler(2), guidance_scale=-1.0),
         "guidance_scale must be >= 0"),
        (lambda: diffusion.sample(linear_model, SHAPE, DDPMSampler(), guidance_scale=float("nan")),
         "guidance_scale must be >= 0"),
        (lambda: diffusion.sample(linear_model, SHAPE, DDIMSampler(2, eta=1.5)), r"eta must lie in \[0, 1\]"),
        (lambda: diffusion.sample(linear_model, SHAPE, DDIMSampler(2), x_T=torch.zeros(2, 4, 16)),
         r"x_T must have the requested shape \(3, 4, 16\), got \(2, 4, 16\)"),
        (lambda: diffusion.sample(linear_model, (3, 0, 16), DDPMSampler()), "shape must be"),
        (lambda: diffusion.sample(linear_model, SHAPE, DDPMSampler(), clip_x0=0.0), "clip_x0 must be None or > 0"),
        (lambda: diffusion.sample(linear_model, SHAPE, DDPMSampler(), cond=torch.zeros(2, 5), guidance_scale=2.0),
         r"batch \(3\) as its first axis, got a tensor of shape \(2, 5\)"),
        (lambda: diffusion.sample(lambda x, t, cond=None, drop_cond=None: x[:, :1], SHAPE, DDIMSampler(2)),
         r"the model output must have the shape of x_t \(3, 4, 16\), got \(3, 1, 16\)"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_forward_process_argument_errors():
    diffusion = GaussianDiffusion(cosine_schedule(10))
    x0 = make_x0()
    cases = [
        (lambda: diffusion.q_sample(x0, torch.zeros(3, dtype=torch.long), x0[:, :2]),
         r"noise must have the shape of x0 \(3, 4, 16\), got \(3, 2, 16\)"),
        (lambda: diffusion.q_sample(x0, torch.zeros(2, dtype=torch.long), x0),
         r"t must be an integer tensor of shape \(3,\)"),
        (lambda: diffusion.q_sample(x0, torch.zeros(3), x0), r"t must be an integer tensor"),
        (lambda: diffusion.q_sample(x0, 10, x0), r"t must lie in 0\.\.9, got 10"),
        (lambda: diffusion.predict_x0_and_eps(x0[:2], x0, 0), "model_out must have the shape of x_t"),
        (lambda: diffusion.loss(linear_model, x0, reduction="sum"), "reduction must be 'mean' or 'none'"),
        (lambda: diffusion.loss(linear_model, x0, drop_cond=torch.zeros(3)),
         r"drop_cond must be None or a torch.bool tensor of shape \(3,\)"),
        (lambda: diffusion.loss(linear_model, x0, cond_drop_prob=1.5), r"cond_drop_prob must lie in \[0, 1\]"),
        (lambda: GaussianDiffusion("cosine"), "schedule must be a NoiseSchedule"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


# --------------------------------------------------------------------------- EMA


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def set_weights(net: SmallNet, value: float) -> None:
    with torch.no_grad():
        net.linear.weight.fill_(value)
        net.linear.bias.fill_(-value)
        net.norm.running_mean.fill_(value)
        net.norm.num_batches_tracked.fill_(int(value))


def test_ema_update_matches_hand_computation():
    net = SmallNet()
    set_weights(net, 1.0)
    ema = EMA(net, decay=0.9)
    set_weights(net, 3.0)
    ema.update(net)  # warm-up: d = min(0.9, 1/10) = 0.1
    assert ema.shadow["linear.weight"].allclose(torch.full((2, 3), 0.1 * 1.0 + 0.9 * 3.0))
    assert ema.shadow["linear.bias"].allclose(torch.full((2,), -(0.1 * 1.0 + 0.9 * 3.0)))
    assert ema.shadow["norm.running_mean"].allclose(torch.full((2,), 0.1 * 1.0 + 0.9 * 3.0))
    assert ema.shadow["norm.num_batches_tracked"] == 3  # integer buffers are copied
    previous = 0.1 * 1.0 + 0.9 * 3.0
    set_weights(net, 5.0)
    assert ema.current_decay == pytest.approx(2 / 11)
    ema.update(net)  # d = min(0.9, 2/11)
    assert ema.shadow["linear.weight"].allclose(torch.full((2, 3), 2 / 11 * previous + 9 / 11 * 5.0))
    for _ in range(200):
        ema.update(net)
    assert ema.current_decay == pytest.approx(0.9)  # warm-up over: the configured decay


def test_ema_without_warm_up_effect():
    net = SmallNet()
    set_weights(net, 2.0)
    ema = EMA(net, decay=0.05)  # below the warm-up value 0.1, so d = 0.05
    set_weights(net, 4.0)
    ema.update(net)
    assert ema.shadow["linear.weight"].allclose(torch.full((2, 3), 0.05 * 2.0 + 0.95 * 4.0))


def test_ema_copy_to_and_state_dict_round_trip():
    net = SmallNet()
    set_weights(net, 1.0)
    ema = EMA(net, decay=0.5)
    set_weights(net, 2.0)
    ema.update(net)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    restored = EMA(SmallNet(), decay=0.1)
    restored.load_state_dict(torch.load(buffer))
    assert restored.decay == 0.5 and restored.num_updates == 1
    target = SmallNet()
    restored.copy_to(target)
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, ema.shadow[name]), name
    # The shadow is a copy, not a view: training the model further leaves it alone.
    set_weights(target, 9.0)
    assert not torch.equal(target.linear.weight, restored.shadow["linear.weight"])


def test_ema_unwraps_data_parallel_and_rejects_other_models():
    net = SmallNet()
    ema = EMA(nn.DataParallel(net))
    assert set(ema.shadow) == set(net.state_dict())
    with pytest.raises(ValueError, match="model does not match the EMA's weights"):
        ema.update(nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\)"):
        EMA(net, decay=1.0)


# --------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_matches_cpu_with_a_cpu_generator():
    diffusion = GaussianDiffusion(cosine_schedule(50), prediction="v")
    net = nn.Conv1d(SHAPE[1], SHAPE[1], 3, padding=1).double()
    model = lambda x, t, cond=None, drop_cond=None: net.to(x.device)(x)  # noqa: E731
    cpu = diffusion.sample(model, SHAPE, DDIMSampler(10, eta=0.5), x_T=make_x0(),
                                generator=torch.Generator().manual_seed(0))
    gpu = diffusion.sample(model, SHAPE, DDIMSampler(10, eta=0.5), x_T=make_x0(), device="cuda",
                                generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)
    net.cuda()
    loss = diffusion.loss(lambda x, t, cond=None, drop_cond=None: net(x), make_x0().cuda(),
                          generator=torch.Generator().manual_seed(0))
    assert loss.device.type == "cuda" and torch.isfinite(loss)
    ema = EMA(net, decay=0.9)
    ema.update(net)
    ema.copy_to(net)
    assert ema.shadow["weight"].device.type == "cuda"


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_min_snr_weighting_is_min_snr_gamma_times_the_x0_error(schedule, prediction):
    """An oracle built around x0 + δ predicts x̂0 = x0 + δ; its weighted loss must then be
    min(SNR_t, γ)·mean(δ²) for either parameterisation (Hang et al. 2023, eq. 8)."""
    diffusion = GaussianDiffusion(schedule, prediction=prediction, weighting="min_snr",
                                  min_snr_gamma=5.0)
    x0, delta = make_x0(), 0.1 * make_x0(seed=1)
    t = torch.tensor([5, 300, 990])  # SNR far above, near and far below γ = 5
    per_sample = diffusion.loss(make_oracle(diffusion, x0 + delta), x0, t=t, reduction="none",
                                generator=torch.Generator().manual_seed(0))
    snr = schedule.alphas_cumprod[t] / (1 - schedule.alphas_cumprod[t])
    expected = snr.clamp(max=5.0) * delta.square().flatten(1).mean(1)
    torch.testing.assert_close(per_sample, expected, rtol=1e-6, atol=1e-12)
    assert snr[0] > 5 > snr[2]


def test_min_snr_weight_and_bad_weighting(schedule):
    diffusion = GaussianDiffusion(schedule, prediction="eps")
    t = torch.tensor([0, 999])
    snr = diffusion.snr(t)
    torch.testing.assert_close(diffusion.min_snr_weight(t, 5.0), torch.stack([5.0 / snr[0], snr[1] / snr[1]]))
    torch.testing.assert_close(diffusion.min_snr_weight(t), diffusion.min_snr_weight(t, 5.0))
    with pytest.raises(ValueError, match="weighting must be 'uniform' or 'min_snr'"):
        GaussianDiffusion(schedule, weighting="snr")
    with pytest.raises(ValueError, match="min_snr_gamma must be positive"):
        diffusion.min_snr_weight(t, 0.0)
    with pytest.raises(ValueError, match="t_power must be > 0"):
        GaussianDiffusion(schedule, t_power=0.0)


@pytest.mark.parametrize("t_power", [1.0, 0.3])
def test_training_timesteps_follow_the_power_law(schedule, t_power):
    # t = floor(T u^p): P(t >= s) = 1 - (s / T)^(1 / p); uniform for p = 1. The loss draws
    # its steps from the same distribution (same generator, same first draw).
    diffusion = GaussianDiffusion(schedule, t_power=t_power)
    t = diffusion.sample_timesteps(200_000, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= N_STEPS - 1
    for s in (100, 500, 900):
        expected = 1 - (s / N_STEPS) ** (1 / t_power)
        assert abs((t >= s).double().mean().item() - expected) < 0.005, s
    seen = []

    def model(x_t, t, cond=None, drop_cond=None):
        seen.append(t.clone())
        return torch.zeros_like(x_t)

    diffusion.loss(model, make_x0(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(seen[0], diffusion.sample_timesteps(SHAPE[0], torch.Generator().manual_seed(0)))
