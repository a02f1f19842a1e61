"""The Gaussian diffusion process: noise schedules, the timestep distribution and loss
weighting of training, DDPM/DDIM samplers and classifier-free guidance — everything except
the network (and the EMA of its weights, which belongs to training: :mod:`analysis.ema`).

The network and the process are kept apart (diffusers' model/scheduler split): the
denoiser only maps ``(x_t, t, cond, drop_cond) -> prediction`` and knows nothing about
schedules, so a sampler or schedule can be swapped without touching or retraining it. The
one contract the network must honour is

``model(x_t, t, cond=None, drop_cond=None) -> Tensor`` of the same shape as ``x_t``

* ``x_t`` — noisy signals ``[batch, n_channels, n_times]`` (any rank ≥ 2 works here);
* ``t`` — ``torch.long`` ``[batch]``, the step *index* in ``0 .. n_steps - 1`` (index 0 is
  the least noisy step, ``n_steps - 1`` is almost pure noise);
* ``cond`` — passed through untouched (``None`` for unconditional models); for guidance it
  may be a tensor or a (nested) dict / list / tuple / dataclass of tensors whose first axis
  is the batch;
* ``drop_cond`` — ``torch.bool`` ``[batch]`` or ``None``: ``True`` means "ignore the
  condition for this sample" (the unconditional branch of classifier-free guidance);
* the output is ε (``prediction='eps'``) or v (``prediction='v'``).

References
----------
* Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models* (DDPM): the forward
  process ``q(x_t | x_0)``, the ε-prediction loss and ancestral sampling with the posterior
  ``q(x_{t-1} | x_t, x_0)``; the linear schedule.
* Nichol & Dhariwal (2021), *Improved Denoising Diffusion Probabilistic Models*: the cosine
  schedule.
* Song, Meng & Ermon (2021), *Denoising Diffusion Implicit Models* (DDIM): deterministic
  (η = 0) sampling on any sub-sequence of steps.
* Salimans & Ho (2022), *Progressive Distillation for Fast Sampling of Diffusion Models*:
  the v-parameterisation ``v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x_0``.
* Ho & Salimans (2022), *Classifier-Free Diffusion Guidance* (CFG): condition dropout in
  training and ``out_u + w (out_c - out_u)`` at sampling time.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..config import SAMPLING_METHODS

#: Valid values of ``GaussianDiffusion(prediction=...)``.
PREDICTIONS = ("eps", "v")
#: Valid values of ``GaussianDiffusion(weighting=...)``.
WEIGHTINGS = ("uniform", "min_snr")

# A schedule whose last step keeps more signal than this is not "pure noise": sampling from
# N(0, I) then starts off the distribution the network was trained on.
_MAX_FINAL_ALPHA_CUMPROD = 1e-2


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete variance schedule ``β_0 .. β_{T-1}`` and the products derived from it.

    All tensors are float64 on the CPU, shape ``(n_steps,)``; index ``t`` is the step the
    network sees as ``t``. :class:`GaussianDiffusion` casts them to the inputs' device and
    dtype when used. Build one with :func:`cosine_schedule`, :func:`linear_schedule` or
    :meth:`from_betas`.

    Attributes
    ----------
    betas : Tensor
        ``β_t``, in ``(0, 1)``.
    alphas : Tensor
        ``α_t = 1 - β_t``.
    alphas_cumprod : Tensor
        ``ᾱ_t = ∏_{s≤t} α_s``: the signal variance kept at step ``t``.
    alphas_cumprod_prev : Tensor
        ``ᾱ_{t-1}``, with ``ᾱ_{-1} = 1`` (no noise before the first step).
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod : Tensor
        ``sqrt(ᾱ_t)`` and ``sqrt(1 - ᾱ_t)``: the signal and noise scales of ``x_t``.
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor

    @classmethod
    def from_betas(cls, betas: Tensor | Sequence[float]) -> NoiseSchedule:
        """Derive every schedule tensor from ``betas`` (1-D, each in ``(0, 1)``).

        Warns when ``ᾱ_{T-1} > 0.01``: the last step is then not close to pure noise, and
        samplers that start from ``N(0, I)`` start off the training distribution.
        """
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().clone()
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(
                f"betas must all lie in the open interval (0, 1), got min {betas.min().item():.3g} "
                f"and max {betas.max().item():.3g}"
            )
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        if alphas_cumprod[-1] > _MAX_FINAL_ALPHA_CUMPROD:
            warnings.warn(
                f"noise schedule ends at alphas_cumprod = {alphas_cumprod[-1].item():.3g} "
                f"(> {_MAX_FINAL_ALPHA_CUMPROD}): the last of its {betas.numel()} steps is not "
                "close to pure noise, so sampling from N(0, I) is biased; use more steps, larger "
                "betas or the cosine schedule",
                stacklevel=2,
            )
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        return cls(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1.0 - alphas_cumprod).sqrt(),
        )

    @property
    def n_steps(self) -> int:
        """Number of diffusion steps ``T``."""
        return self.betas.numel()


def _positive_int(value: int, name: str) -> int:
    """``value`` as a positive int, else a ValueError naming ``name``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def cosine_schedule(n_steps: int, s: float = 0.008) -> NoiseSchedule:
    """The cosine schedule of Nichol & Dhariwal (2021).

    ``ᾱ(t) = f(t) / f(0)`` with ``f(t) = cos²((t / T + s) / (1 + s) · π / 2)``, and
    ``β_t = 1 - ᾱ(t + 1) / ᾱ(t)`` clipped at 0.999. It destroys information more evenly
    over the steps than the linear schedule, and reaches (almost) pure noise for any ``T``.

    Parameters
    ----------
    n_steps : int
        Number of steps ``T`` (≥ 1).
    s : float
        Small offset that keeps ``β_0`` from being vanishingly small (paper: 0.008).

    Returns
    -------
    NoiseSchedule
    """
    n_steps = _positive_int(n_steps, "n_steps")
    if not s >= 0:
        raise ValueError(f"s must be >= 0, got {s}")
    steps = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    # The clip stops the last β (which is exactly 1 since f(T) = 0) from zeroing every
    # later ᾱ and making ε-prediction singular at t = T - 1 (Nichol & Dhariwal, sec. 3.2).
    betas = (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(max=0.999)
    return NoiseSchedule.from_betas(betas)


def linear_schedule(n_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """The linear schedule of Ho et al. (2020): ``β_t`` evenly spaced in ``[beta_start, beta_end]``.

    The defaults are the paper's values for ``T = 1000``. With far fewer steps they leave a
    lot of signal at the last step (a warning says so); scale both by ``1000 / n_steps``, as
    Nichol & Dhariwal (2021) do, or use :func:`cosine_schedule`.

    Parameters
    ----------
    n_steps : int
        Number of steps ``T`` (≥ 1).
    beta_start, beta_end : float
        First and last ``β``, with ``0 < beta_start <= beta_end < 1``.

    Returns
    -------
    NoiseSchedule
    """
    n_steps = _positive_int(n_steps, "n_steps")
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(
            f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
            f"got beta_start={beta_start}, beta_end={beta_end}"
        )
    return NoiseSchedule.from_betas(torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64))


#: Schedules by the name a run configuration uses.
SCHEDULES: dict[str, Callable[[int], NoiseSchedule]] = {
    "cosine": cosine_schedule,
    "linear": linear_schedule,
}


def make_schedule(name: str, n_steps: int) -> NoiseSchedule:
    """Build a schedule by name (``'cosine'`` or ``'linear'``) with its default parameters."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](n_steps)


# --------------------------------------------------------------------------- helpers


def _randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device,
           dtype: torch.dtype) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``.

    Drawing where the generator lives lets a CPU generator seed GPU sampling, and makes a
    seed give the same numbers on every device.
    """
    if generator is None:
        return torch.randn(tuple(shape), device=device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=generator.device,
                       dtype=dtype).to(device)


def _model_device(model: Any) -> torch.device:
    """Where ``model``'s first parameter or buffer lives; CPU for closures and empty modules."""
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
        for tensor in model.buffers():
            return tensor.device
    return torch.device("cpu")


def _map_cond(cond: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor in a (nested) dict / list / tuple / dataclass ``cond``.

    Other leaves (None, strings, numbers) are returned unchanged.
    """
    if isinstance(cond, Tensor):
        return fn(cond)
    if isinstance(cond, Mapping):
        return type(cond)({key: _map_cond(value, fn) for key, value in cond.items()})
    if isinstance(cond, tuple) and hasattr(cond, "_fields"):  # namedtuple
        return type(cond)(*(_map_cond(value, fn) for value in cond))
    if isinstance(cond, (list, tuple)):
        return type(cond)(_map_cond(value, fn) for value in cond)
    if dataclasses.is_dataclass(cond) and not isinstance(cond, type):
        return dataclasses.replace(cond, **{
            f.name: _map_cond(getattr(cond, f.name), fn) for f in dataclasses.fields(cond) if f.init
        })
    return cond


def _check_cond_batch(cond: Any, batch: int) -> None:
    def check(tensor: Tensor) -> Tensor:
        if tensor.ndim == 0 or tensor.shape[0] != batch:
            raise ValueError(
                f"every tensor in cond must have the batch ({batch}) as its first axis, "
                f"got a tensor of shape {tuple(tensor.shape)}"
            )
        return tensor

    _map_cond(cond, check)


def _check_drop_cond(drop_cond: Tensor | None, batch: int) -> None:
    if drop_cond is None:
        return
    if not isinstance(drop_cond, Tensor) or drop_cond.dtype != torch.bool or tuple(drop_cond.shape) != (batch,):
        found = (f"{drop_cond.dtype} tensor of shape {tuple(drop_cond.shape)}"
                 if isinstance(drop_cond, Tensor) else type(drop_cond).__name__)
        raise ValueError(f"drop_cond must be None or a torch.bool tensor of shape ({batch},), got {found}")


def _check_guidance_scale(guidance_scale: float) -> None:
    if not guidance_scale >= 0:  # also rejects NaN
        raise ValueError(f"guidance_scale must be >= 0 (1 = conditional model alone, 0 = unconditional), "
                         f"got {guidance_scale}")


def _check_clip_x0(clip_x0: float | None) -> None:
    if clip_x0 is not None and not clip_x0 > 0:
        raise ValueError(f"clip_x0 must be None or > 0, got {clip_x0}")


# --------------------------------------------------------------------------- diffusion


class GaussianDiffusion:
    """The DDPM forward process, its training loss, and DDPM / DDIM sampling.

    A plain object, not an ``nn.Module``: it holds no trainable state, so it never appears
    in a checkpoint or in ``model.parameters()``; its constants are cast to the device and
    dtype of the inputs the first time they are needed there.

    Parameters
    ----------
    schedule : NoiseSchedule
        The variance schedule; ``schedule.n_steps`` is the number of training steps ``T``.
    prediction : {'eps', 'v'}
        What the network predicts: the noise ε (Ho et al. 2020) or
        ``v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x_0`` (Salimans & Ho 2022). v stays well conditioned
        at both ends of the schedule, where recovering ``x_0`` from ε divides by
        ``sqrt(ᾱ) ≈ 0``.
    t_power : float
        Training steps are drawn as ``t = ⌊T · u^t_power⌋``, ``u ~ U(0, 1)``: 1 is the
        uniform draw of DDPM; below 1 favours the noisy steps, where the prediction depends
        most on the condition (see :meth:`sample_timesteps`).
    weighting : {'uniform', 'min_snr'}
        How the per-sample losses are weighted over steps; ``'min_snr'`` multiplies each by
        :meth:`min_snr_weight`, so the nearly clean steps (which dominate the gradient but
        say little about the condition) stop drowning out the noisy ones.
    min_snr_gamma : float
        γ of the min-SNR weighting (Hang et al. 2023 recommend 5).
    """

    def __init__(self, schedule: NoiseSchedule, prediction: str = "eps", *, t_power: float = 1.0,
                 weighting: str = "uniform", min_snr_gamma: float = 5.0) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule (see cosine_schedule), "
                             f"got {type(schedule).__name__}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be 'uniform' or 'min_snr', got {weighting!r}")
        if not t_power > 0:
            raise ValueError(f"t_power must be > 0 (1 = uniform steps), got {t_power}")
        if not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be positive, got {min_snr_gamma}")
        self.schedule = schedule
        self.prediction = prediction
        self.t_power, self.weighting = float(t_power), weighting
        self.min_snr_gamma = float(min_snr_gamma)
        self.n_steps = schedule.n_steps
        s = schedule
        # Posterior q(x_{t-1} | x_t, x_0) = N(coef_x0 x_0 + coef_xt x_t, β̃_t) (DDPM eq. 6-7).
        self._constants: dict[str, Tensor] = {
            "sqrt_alphas_cumprod": s.sqrt_alphas_cumprod,
            "sqrt_one_minus_alphas_cumprod": s.sqrt_one_minus_alphas_cumprod,
            "posterior_variance": s.betas * (1 - s.alphas_cumprod_prev) / (1 - s.alphas_cumprod),
            "posterior_coef_x0": s.betas * s.alphas_cumprod_prev.sqrt() / (1 - s.alphas_cumprod),
            "posterior_coef_xt": (1 - s.alphas_cumprod_prev) * s.alphas.sqrt() / (1 - s.alphas_cumprod),
        }
        self._cast_cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    def __repr__(self) -> str:
        return (f"GaussianDiffusion(n_steps={self.n_steps}, prediction={self.prediction!r}, "
                f"t_power={self.t_power}, weighting={self.weighting!r})")

    # ------------------------------------------------------------------ constants

    def _coef(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        """``constant[t]`` on ``like``'s device/dtype, shaped ``[B, 1, ...]`` to broadcast."""
        key = (name, like.device, like.dtype)
        if key not in self._cast_cache:
            self._cast_cache[key] = self._constants[name].to(device=like.device, dtype=like.dtype)
        values = self._cast_cache[key][t.to(like.device)]
        return values.reshape(-1, *([1] * (like.ndim - 1)))

    def _check_t(self, t: Tensor | int, x: Tensor, name: str = "x_t") -> Tensor:
        """Return ``t`` as a long tensor ``[B]`` (an int is broadcast over the batch)."""
        if isinstance(t, int) and not isinstance(t, bool):
            if not 0 <= t < self.n_steps:
                raise ValueError(f"t must lie in 0..{self.n_steps - 1}, got {t}")
            return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        if (not isinstance(t, Tensor) or t.dtype not in (torch.int64, torch.int32)
                or tuple(t.shape) != (x.shape[0],)):
            found = (f"{t.dtype} tensor of shape {tuple(t.shape)}" if isinstance(t, Tensor)
                     else type(t).__name__)
            raise ValueError(
                f"t must be an integer tensor of shape ({x.shape[0]},) matching the batch of {name}, "
                f"got {found}"
            )
        return t.long()

    @staticmethod
    def _check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
        if a.shape != b.shape:
            raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, "
                             f"got {tuple(b.shape)}")

    # ------------------------------------------------------------------ forward process

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """Draw ``x_t ~ q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I)`` (DDPM eq. 4).

        Parameters
        ----------
        x0 : Tensor, shape (B, C, T)
            Clean signals.
        t : LongTensor, shape (B,), or int
            Step indices in ``0 .. n_steps - 1``.
        noise : Tensor, shape (B, C, T)
            Standard normal noise ε.

        Returns
        -------
        x_t : Tensor, shape (B, C, T)
        """
        self._check_same_shape(x0, noise, "x0", "noise")
        t = self._check_t(t, x0, "x0")
        return (self._coef("sqrt_alphas_cumprod", t, x0) * x0
                + self._coef("sqrt_one_minus_alphas_cumprod", t, x0) * noise)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """What the network should output for ``x_t = q_sample(x0, t, noise)``.

        Returns ``noise`` for ``prediction='eps'`` and
        ``v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0`` for ``prediction='v'``; shape (B, C, T).
        """
        self._check_same_shape(x0, noise, "x0", "noise")
        t = self._check_t(t, x0, "x0")
        if self.prediction == "eps":
            return noise
        return (self._coef("sqrt_alphas_cumprod", t, x0) * noise
                - self._coef("sqrt_one_minus_alphas_cumprod", t, x0) * x0)

    def predict_x0_and_eps(self, model_out: Tensor, x_t: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """Invert the parameterisation: the ``x_0`` and ε implied by a network output.

        With ``a = sqrt(ᾱ_t)``, ``b = sqrt(1 - ᾱ_t)`` and ``x_t = a x_0 + b ε``:
        ε-prediction gives ``x_0 = (x_t - b ε) / a``; v-prediction gives
        ``x_0 = a x_t - b v`` and ``ε = b x_t + a v`` (since ``a² + b² = 1``).

        Parameters
        ----------
        model_out : Tensor, shape (B, C, T)
        x_t : Tensor, shape (B, C, T)
        t : LongTensor, shape (B,), or int

        Returns
        -------
        x0, eps : Tensor, shape (B, C, T)
        """
        self._check_same_shape(x_t, model_out, "x_t", "model_out")
        t = self._check_t(t, x_t)
        a = self._coef("sqrt_alphas_cumprod", t, x_t)
        b = self._coef("sqrt_one_minus_alphas_cumprod", t, x_t)
        if self.prediction == "eps":
            return (x_t - b * model_out) / a, model_out
        return a * x_t - b * model_out, b * x_t + a * model_out

    # ------------------------------------------------------------------ training

    def loss(
        self,
        model: Callable[..., Tensor],
        x0: Tensor,
        cond: Any = None,
        drop_cond: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        cond_drop_prob: float = 0.0,
        t: Tensor | None = None,
        reduction: str = "mean",
    ) -> Tensor:
        """The denoising loss: MSE between the network output and :meth:`target`.

        ``t`` is drawn per sample by :meth:`sample_timesteps` (uniform with ``t_power = 1``:
        the "simple" loss of DDPM, sec. 3.4), then ``x_t = q_sample(x0, t, ε)`` with fresh
        ε; each sample's loss is weighted as ``weighting`` says.

        Parameters
        ----------
        model : callable
            The network, ``model(x_t, t, cond=..., drop_cond=...)``.
        x0 : Tensor, shape (B, C, T)
            Clean training signals.
        cond : Any
            The condition for ``model``, passed through unchanged.
        drop_cond : BoolTensor, shape (B,), optional
            Samples whose condition the model should ignore.
        generator : torch.Generator, optional
            Source of ``t``, ε and the dropout mask (in that order), for reproducibility.
        cond_drop_prob : float
            Probability of dropping each sample's condition (OR-ed with ``drop_cond``), which
            trains the unconditional branch that classifier-free guidance needs (Ho &
            Salimans 2022 use 0.1–0.2). Ignored when ``cond`` is None.
        t : LongTensor, shape (B,), optional
            Fixed steps instead of random ones (e.g. to trace the loss against ``t``).
        reduction : {'mean', 'none'}
            ``'mean'``: a scalar; ``'none'``: the per-sample (weighted) loss, shape (B,),
            averaged over every other axis.

        Returns
        -------
        Tensor
            Scalar, or shape (B,) with ``reduction='none'``.
        """
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        if not 0 <= cond_drop_prob <= 1:
            raise ValueError(f"cond_drop_prob must lie in [0, 1], got {cond_drop_prob}")
        batch = x0.shape[0]
        _check_drop_cond(drop_cond, batch)
        draw_device = x0.device if generator is None else generator.device
        if t is None:
            t = self.sample_timesteps(batch, generator, device=draw_device)
        t = self._check_t(t, x0, "x0").to(x0.device)
        noise = _randn(x0.shape, generator, x0.device, x0.dtype)
        if cond is not None and cond_drop_prob > 0:
            dropped = (torch.rand((batch,), generator=generator, device=draw_device) < cond_drop_prob)
            dropped = dropped.to(x0.device)
            drop_cond = dropped if drop_cond is None else drop_cond | dropped
        x_t = self.q_sample(x0, t, noise)
        out = model(x_t, t, cond=cond, drop_cond=drop_cond)
        self._check_same_shape(x_t, out, "x_t", "the model output")
        per_sample = (out - self.target(x0, noise, t)).square().flatten(1).mean(dim=1)
        if self.weighting == "min_snr":
            per_sample = per_sample * self.min_snr_weight(t, self.min_snr_gamma).to(per_sample.dtype)
        return per_sample.mean() if reduction == "mean" else per_sample

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         device: str | torch.device | None = None) -> Tensor:
        """Training steps ``t = ⌊T · u^t_power⌋`` with ``u ~ U(0, 1)``, long ``[batch]``.

        ``t_power = 1`` is uniform on ``0 .. T - 1``; ``t_power = p < 1`` puts probability
        ``1 - (s / T)^(1/p)`` on the steps at or above ``s`` (more weight on the noisy end).
        Drawn with ``generator`` on its device (default ``device``, else CPU).
        """
        device = generator.device if generator is not None else (device or "cpu")
        u = torch.rand((batch,), generator=generator, device=device, dtype=torch.float64)
        t = (self.n_steps * u ** self.t_power).long()
        return t.clamp_(max=self.n_steps - 1)

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``ᾱ_t / (1 - ᾱ_t)`` of ``x_t`` at steps ``t``, shape (B,)."""
        abar = self.schedule.alphas_cumprod.to(t.device)[t]
        return abar / (1.0 - abar)

    def min_snr_weight(self, t: Tensor, gamma: float | None = None) -> Tensor:
        """Min-SNR-γ loss weight per step (Hang et al. 2023, "Efficient Diffusion Training
        via Min-SNR Weighting Strategy"), shape (B,).

        In x_0 terms the weighted loss is ``min(SNR, γ) · ||x̂_0 − x_0||²`` whatever the
        parameterisation: ``min(SNR, γ) / SNR`` for ε-prediction and
        ``min(SNR, γ) / (SNR + 1)`` for v-prediction.
        """
        gamma = self.min_snr_gamma if gamma is None else gamma
        if gamma <= 0:
            raise ValueError(f"min_snr_gamma must be positive, got {gamma}")
        snr = self.snr(t)
        clipped = snr.clamp(max=gamma)
        return clipped / snr if self.prediction == "eps" else clipped / (snr + 1.0)

    # ------------------------------------------------------------------ guidance

    def guided_output(
        self,
        model: Callable[..., Tensor],
        x_t: Tensor,
        t: Tensor | int,
        cond: Any,
        guidance_scale: float,
        drop_cond: Tensor | None = None,
    ) -> Tensor:
        """The network output with classifier-free guidance (Ho & Salimans 2022).

        ``out = out_u + w (out_c - out_u)``, where ``out_c`` is the conditional output
        (with ``drop_cond`` applied) and ``out_u`` the output with every condition dropped.
        Linear in the output, so it applies to ε and v alike.

        * ``w = 1`` (or ``cond is None``): one conditional pass, no extra cost;
        * ``w = 0``: one unconditional pass;
        * otherwise both branches run as a single forward call on a doubled batch (inputs and
          every tensor in ``cond`` concatenated along the batch axis), which is faster than
          two calls on accelerators.

        Parameters
        ----------
        model : callable
            ``model(x_t, t, cond=..., drop_cond=...)``.
        x_t : Tensor, shape (B, C, T)
        t : LongTensor, shape (B,), or int
        cond : Any
            The condition (every tensor in it has the batch as first axis), or None.
        guidance_scale : float
            ``w ≥ 0``; ``w > 1`` strengthens the condition.
        drop_cond : BoolTensor, shape (B,), optional
            Samples that are unconditional even in the conditional branch (guidance then
            has no effect on them).

        Returns
        -------
        Tensor, shape (B, C, T)
        """
        _check_guidance_scale(guidance_scale)
        batch = x_t.shape[0]
        t = self._check_t(t, x_t)
        _check_drop_cond(drop_cond, batch)
        if cond is None or guidance_scale == 1:
            out = model(x_t, t, cond=cond, drop_cond=drop_cond)
        else:
            _check_cond_batch(cond, batch)
            all_dropped = torch.ones(batch, dtype=torch.bool, device=x_t.device)
            if guidance_scale == 0:
                out = model(x_t, t, cond=cond, drop_cond=all_dropped)
            else:
                drop_c = torch.zeros_like(all_dropped) if drop_cond is None else drop_cond.to(x_t.device)
                out = model(
                    torch.cat([x_t, x_t]),
                    torch.cat([t, t]),
                    cond=_map_cond(cond, lambda c: torch.cat([c, c])),
                    drop_cond=torch.cat([drop_c, all_dropped]),
                )
                self._check_same_shape(torch.cat([x_t, x_t]), out, "the doubled x_t", "the model output")
                out_c, out_u = out.chunk(2)
                return out_u + guidance_scale * (out_c - out_u)
        self._check_same_shape(x_t, out, "x_t", "the model output")
        return out

    # ------------------------------------------------------------------ sampling

    def _prepare_sampling(self, model: Any, shape: Sequence[int], cond: Any, guidance_scale: float,
                          clip_x0: float | None, x_T: Tensor | None, device: Any,
                          generator: torch.Generator | None) -> Tensor:
        """Validate the common sampler arguments and return the start noise ``x_T``."""
        try:
            shape = tuple(operator.index(n) for n in shape)
        except TypeError:
            raise ValueError(f"shape must be a sequence of positive integers, got {shape!r}") from None
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"shape must be (batch, n_channels, n_times) of positive integers, got {shape}")
        _check_guidance_scale(guidance_scale)
        _check_clip_x0(clip_x0)
        if cond is not None:
            _check_cond_batch(cond, shape[0])
        if x_T is not None:
            if tuple(x_T.shape) != shape:
                raise ValueError(f"x_T must have the requested shape {shape}, got {tuple(x_T.shape)}")
            return x_T if device is None else x_T.to(device)
        device = _model_device(model) if device is None else torch.device(device)
        return _randn(shape, generator, device, torch.float32)

    def _x0_eps(self, model: Any, x: Tensor, step: int, cond: Any, guidance_scale: float,
                clip_x0: float | None) -> tuple[Tensor, Tensor]:
        t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        x0, eps = self.predict_x0_and_eps(self.guided_output(model, x, t, cond, guidance_scale), x, t)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
            # Keep ε consistent with the clipped x_0 so DDIM's direction term matches it
            # (as guided-diffusion does); DDPM's posterior mean only uses x_0 and x_t.
            eps = (x - self.schedule.sqrt_alphas_cumprod[step].item() * x0) / \
                self.schedule.sqrt_one_minus_alphas_cumprod[step].item()
        return x0, eps

    @torch.no_grad()
    def sample(
        self,
        model: Callable[..., Tensor],
        shape: Sequence[int],
        sampler: "Sampler",
        cond: Any = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        progress: bool = False,
        clip_x0: float | None = None,
        x_T: Tensor | None = None,
    ) -> Tensor:
        """Generate signals: the one sampling loop, with the update rule of ``sampler``.

        At each of ``sampler.timesteps(self)`` the (guided) network output gives ``x̂_0`` and
        ``ε̂``; ``sampler.step`` turns them into the state at the next visited step. Samplers
        (:class:`DDPMSampler`, :class:`DDIMSampler`) are swapped without touching the
        network, which is trained once for all of them. Put the network in ``eval()`` mode.

        Parameters
        ----------
        model : callable
            ``model(x_t, t, cond=..., drop_cond=...)``.
        shape : tuple of int
            ``(batch, n_channels, n_times)`` of the samples.
        sampler : Sampler
            The update rule and the steps it visits (see :data:`SAMPLERS`).
        cond : Any
            Condition for the batch (tensors with the batch as first axis), or None.
        guidance_scale : float
            Classifier-free guidance weight ``w ≥ 0`` (see :meth:`guided_output`).
        generator : torch.Generator, optional
            Source of all noise (``x_T`` and every stochastic step), drawn on its own device.
        device : str | torch.device, optional
            Where to sample; default: ``x_T``'s device, else the model's, else CPU.
        progress : bool
            Show a tqdm progress bar.
        clip_x0 : float, optional
            Clamp each ``x̂_0`` to ``[-clip_x0, clip_x0]`` (for data with known bounds).
        x_T : Tensor, shape ``shape``, optional
            The start noise; its dtype sets the sampling dtype (default float32 noise).

        Returns
        -------
        Tensor, shape ``shape``
            The generated signals ``x_0``.
        """
        timesteps = sampler.timesteps(self)
        x = self._prepare_sampling(model, shape, cond, guidance_scale, clip_x0, x_T, device, generator)
        previous = timesteps[1:] + [-1]
        state: dict = {}  # what a multistep sampler keeps between steps of this one run
        for step, prev in tqdm(list(zip(timesteps, previous)), desc=f"{sampler.name} sampling",
                               disable=not progress):
            x0, eps = self._x0_eps(model, x, step, cond, guidance_scale, clip_x0)
            x = sampler.step(self, x, x0, eps, step, prev, generator, state)
        return x

    def alpha_cumprod_at(self, step: int) -> float:
        """``ᾱ_step`` as a float, with ``ᾱ_{-1} = 1`` (the clean signal after the last step)."""
        return self.schedule.alphas_cumprod[step].item() if step >= 0 else 1.0


# --------------------------------------------------------------------------- samplers


class Sampler:
    """An update rule of the reverse process and the steps it visits.

    Subclasses define :meth:`timesteps` (step indices from ``n_steps - 1`` down to 0) and
    :meth:`step`; :meth:`GaussianDiffusion.sample` runs the loop. A sampler holds no
    network, no schedule and no state of a run (a multistep sampler keeps its history in
    the ``state`` dict the loop passes), so one object serves any trained model and any
    number of runs.
    """

    name = "sampler"

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        raise NotImplementedError

    def step(self, diffusion: GaussianDiffusion, x: Tensor, x0: Tensor, eps: Tensor, t: int,
             prev: int, generator: torch.Generator | None, state: dict) -> Tensor:
        """The state at step ``prev`` (``-1``: the clean signal) from ``x`` at step ``t``,
        given the network's ``x̂_0`` and ``ε̂`` there; all of shape (B, C, T). ``state``
        starts empty in each sampling run and is the sampler's to keep history in."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)


def _evenly_spaced_steps(n_steps: int, steps: int) -> list[int]:
    """``steps`` step indices from ``n_steps - 1`` down to 0, evenly spaced.

    Always starting at ``n_steps - 1`` means sampling starts from (almost) pure noise, the
    state the network was trained on (the "trailing"/linspace choice of Lin et al. 2024);
    ``steps = n_steps`` visits every step, ``steps = 1`` only ``n_steps - 1``.
    """
    if steps > n_steps:
        raise ValueError(f"steps must be an integer in 1..{n_steps} (n_steps), got {steps}")
    # Spacing (n_steps - 1) / (steps - 1) >= 1, so the rounded values are distinct.
    return torch.linspace(n_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()


class DDPMSampler(Sampler):
    """Ancestral sampling over all ``n_steps`` steps (Ho et al. 2020, Algorithm 2).

    Each step draws ``x_{t-1} ~ q(x_{t-1} | x_t, x̂_0)``, the Gaussian posterior with
    variance ``β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)``. The last step (``t = 0``) returns
    the posterior mean, i.e. ``x̂_0``: adding noise to ``x_0`` would only blur it.
    """

    name = "DDPM"

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        return list(range(diffusion.n_steps - 1, -1, -1))

    def step(self, diffusion, x, x0, eps, t, prev, generator, state):
        c = diffusion._constants
        mean = c["posterior_coef_x0"][t].item() * x0 + c["posterior_coef_xt"][t].item() * x
        if t == 0:
            return mean
        sigma = c["posterior_variance"][t].sqrt().item()
        return mean + sigma * _randn(x.shape, generator, x.device, x.dtype)


class DDIMSampler(Sampler):
    """DDIM on ``steps`` of the ``n_steps`` steps (Song et al. 2021, eq. 12).

    From step ``t`` to the previous visited step ``s``:
    ``x_s = sqrt(ᾱ_s) x̂_0 + sqrt(1 - ᾱ_s - σ²) ε̂ + σ z`` with
    ``σ = η sqrt((1 - ᾱ_s) / (1 - ᾱ_t)) sqrt(1 - ᾱ_t / ᾱ_s)``. ``η = 0`` is deterministic
    given ``x_T``; ``η = 1`` with ``steps = n_steps`` is DDPM sampling.

    Parameters
    ----------
    steps : int
        Network evaluations (times two for guided batches), ``1 .. n_steps``, evenly
        spaced from ``n_steps - 1`` down to 0 (see :func:`_evenly_spaced_steps`).
    eta : float
        Stochasticity ``η`` in ``[0, 1]``.
    """

    name = "DDIM"

    def __init__(self, steps: int = 50, eta: float = 0.0) -> None:
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
        self.steps, self.eta = _positive_int(steps, "steps"), float(eta)

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        return _evenly_spaced_steps(diffusion.n_steps, self.steps)

    def step(self, diffusion, x, x0, eps, t, prev, generator, state):
        a_t, a_prev = diffusion.alpha_cumprod_at(t), diffusion.alpha_cumprod_at(prev)
        sigma = self.eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        # max(…, 0) guards against round-off; the term is >= 0 in exact arithmetic for η ≤ 1.
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _randn(x.shape, generator, x.device, x.dtype)
        return x


class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M) on ``steps`` of the ``n_steps`` steps (Lu et al. 2022, Algorithm 2).

    A second-order multistep solver of the same probability-flow ODE that deterministic
    DDIM solves to first order, so it reaches the ODE's samples in fewer network
    evaluations. With ``α = sqrt(ᾱ)``, ``σ = sqrt(1 - ᾱ)``, ``λ = log(α / σ)`` and
    ``h = λ_s - λ_t`` from step ``t`` to the next visited step ``s``:
    ``x_s = (σ_s / σ_t) x_t - α_s (e^{-h} - 1) D`` with ``D = x̂_0`` on the first step and
    ``D = (1 + 1/(2r)) x̂_0 - 1/(2r) x̂_0'`` after it (``x̂_0'`` of the previous step,
    ``r = h' / h``). The first step is DDIM's; the last returns ``x̂_0``, as DDIM's does.

    Parameters
    ----------
    steps : int
        Network evaluations (times two for guided batches), ``1 .. n_steps``, on the
        steps :class:`DDIMSampler` visits.
    """

    name = "DPM-Solver++(2M)"

    def __init__(self, steps: int = 20) -> None:
        self.steps = _positive_int(steps, "steps")

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        return _evenly_spaced_steps(diffusion.n_steps, self.steps)

    def step(self, diffusion, x, x0, eps, t, prev, generator, state):
        if prev < 0:  # to the clean signal: σ_s = 0, λ_s = ∞, the update is x̂_0 itself
            return x0
        a_t, a_s = diffusion.alpha_cumprod_at(t), diffusion.alpha_cumprod_at(prev)
        lam_t = 0.5 * (math.log(a_t) - math.log1p(-a_t))
        lam_s = 0.5 * (math.log(a_s) - math.log1p(-a_s))
        h = lam_s - lam_t
        d = x0
        if "x0" in state:  # second order from the previous step's x̂_0
            r = state["h"] / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * state["x0"]
        state["x0"], state["h"] = x0, h
        return math.sqrt((1 - a_s) / (1 - a_t)) * x - math.sqrt(a_s) * math.expm1(-h) * d


#: Samplers by the name a :class:`~analysis.config.SamplingConfig` uses (the names:
#: :data:`analysis.config.SAMPLING_METHODS`).
SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "dpmpp": DPMSolverSampler,
                                      "ddpm": DDPMSampler}


def make_sampler(method: str, steps: int = 50, eta: float = 0.0) -> Sampler:
    """The sampler ``method``: ``'ddim'`` with ``steps`` steps and stochasticity ``eta``;
    ``'dpmpp'`` (DPM-Solver++(2M)) with ``steps`` steps (deterministic: ``eta`` must be 0);
    ``'ddpm'`` visits all steps (``steps`` and ``eta`` do not apply)."""
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLING_METHODS}, got '{method}'")
    if method == "dpmpp":
        if eta != 0:
            raise ValueError(f"the 'dpmpp' sampler is deterministic: eta must be 0, got {eta}")
        return DPMSolverSampler(steps)
    return DDIMSampler(steps, eta) if method == "ddim" else DDPMSampler()
