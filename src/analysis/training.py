"""Train or load a diffusion generator: one loop for CPU, one GPU and ``torchrun`` DDP.

What a run guarantees
---------------------
- **Train-or-load.** A checkpoint lives in a folder named by a hash of (dataset, encoder,
  model config, training config). A finished ``checkpoint.pt`` there is loaded, never
  retrained; a ``partial.pt`` is resumed.
- **Nothing is lost.** Every write goes to a temporary file that is renamed into place, so
  an interrupted run leaves the last complete epoch, and a finished checkpoint is never
  replaced by a partial one.
- **Same trajectory after resuming.** Batch order and diffusion noise are drawn from
  generators seeded by (seed, epoch), so a run resumed at an epoch boundary continues
  exactly as the uninterrupted run would have (on the same device).
- **Recorded.** ``losses.csv`` (per epoch) for the notebooks, ``config.json`` with seeds,
  versions, device and timings, and ``recording-info.fif`` (the training data's
  ``mne.Info``: channel names, types, sensor positions, sampling rate) so that signals
  generated later are written as the recording was (:mod:`analysis.generator`).

Multi-GPU: launch ``torchrun --nproc_per_node=N -m analysis train …``; each rank trains on
its shard of every epoch's permutation, gradients are averaged by DDP, rank 0 writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import mne
import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .files import atomic_save, atomic_write, atomic_write_text, exclusive_lock
from .model_card import write_model_card
from .provenance import package_versions
from .data.contract import EpochedDataset
from .devices import select_device
from .encoders import ImageFeatures
from .models.conditioning import Condition, FeatureScaler, inputs_for, n_feature_dims
from .ema import EMA
from .evaluation.stats import blockwise_mean_and_variance
from .models.diffusion import GaussianDiffusion, make_sampler, make_schedule
from .models.unet1d import UNet1D, UNetConfig

logger = logging.getLogger(__name__)

FINAL, PARTIAL = "checkpoint.pt", "partial.pt"
#: The training data's measurement info, beside every checkpoint (``mne.io.write_info``).
RECORDING_INFO = "recording-info.fif"
#: Bumped whenever training changes in a way the configs do not capture (e.g. how the
#: data are normalised), so cached checkpoints of the old recipe are not reused.
RECIPE_VERSION = 3
#: Learning-rate schedules after the warm-up (see lr_factor).
LR_DECAYS = ("constant", "cosine")
#: TrainConfig.precision: 'auto' runs the forward pass in bfloat16 autocast on CUDA and in
#: float32 elsewhere (what every checkpoint before the field was trained with);
#: 'bfloat16' autocasts on every device (the parameters and optimiser stay float32).
PRECISIONS = ("auto", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and diffusion settings (hashed into the checkpoint key).

    ``targets='trials'`` trains on single trials (the generator learns the trial
    distribution); ``'average'`` on repetition-averaged training responses. With
    ``targets='average'`` and ``trial_epochs = k > 0`` the last ``k`` of the ``epochs`` train
    on single trials: averages teach the conditional mean (E[average | c] = E[trial | c])
    at 1 / n_reps of the cost per epoch, the trial epochs then teach the trial
    distribution around it; the data are normalised as single trials throughout.
    ``examples_per_epoch = n`` makes each epoch a fresh random subset of at most ``n``
    examples: a budget for data too big to sweep on the machine at hand (THINGS-EEG2's
    66 160 single trials on a CPU).
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    # After the warm-up: 'constant', or 'cosine' decay to zero at the last step.
    lr_decay: str = "constant"
    grad_clip: float = 1.0
    prediction: str = "v"
    schedule: str = "cosine"
    n_diffusion_steps: int = 1000
    cond_drop_prob: float = 0.1
    # Timesteps are drawn as t = T·u**t_power: 1 is uniform (DDPM); below 1 favours the
    # noisy steps, where the prediction depends most on the condition.
    t_power: float = 1.0
    # The trial epochs' own t_power (None: ``t_power``): the averages teach the conditional
    # mean, decided at the noisy end, and t_power = 0.3 draws the low-noise steps, where
    # a trial's fine structure is decided, rarely (t < T/2 with probability 0.1). Uniform
    # steps in the default recipe's trial epochs did not help: on validation concepts the
    # samples were told from recorded trials more easily (classifier AUC 0.97 vs 0.86 on
    # subject 1, 0.98 vs 0.90 on subject 3) and the conditional mean scored lower
    # (benchmarks/results/training-recipe.json, trialt1-*).
    trial_t_power: float | None = None
    # 'min_snr' (Hang et al. 2023) re-weights the loss over timesteps; see
    # GaussianDiffusion.min_snr_weight.
    loss_weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.995
    targets: str = "trials"
    trial_epochs: int = 0
    examples_per_epoch: int | None = None
    # 'bfloat16': the forward pass in bfloat16 autocast on the CPU too (see PRECISIONS);
    # with AVX-512 BF16 a default-profile step takes ~20-25 % less time.
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self):
        # Checked here, not at the first decayed step: a typo should fail before training.
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got '{self.lr_decay}'")
        if not 0 <= self.trial_epochs <= self.epochs:
            raise ValueError(f"trial_epochs must lie in 0..epochs ({self.epochs}), "
                             f"got {self.trial_epochs}")
        if self.examples_per_epoch is not None and not (
                isinstance(self.examples_per_epoch, int) and self.examples_per_epoch > 0):
            raise ValueError("examples_per_epoch must be a positive integer or None, got "
                             f"{self.examples_per_epoch!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")
        if self.trial_t_power is not None and not self.trial_t_power > 0:
            raise ValueError(f"trial_t_power must be > 0 (1 = uniform steps) or None, "
                             f"got {self.trial_t_power}")
        if self.trial_epochs and self.targets != "average":
            raise ValueError("trial_epochs: the last epochs switch from averages to single "
                             f"trials, so targets must be 'average', got '{self.targets}'")

    def targets_at(self, epoch: int) -> str:
        """What epoch ``epoch`` (0-based) trains on: ``'trials'`` or ``'average'``."""
        return "trials" if epoch >= self.epochs - self.trial_epochs else self.targets

    @property
    def final_targets(self) -> str:
        """What the finished model generates: single trials or averages."""
        return self.targets_at(self.epochs - 1) if self.epochs else self.targets

    def t_power_at(self, epoch: int) -> float:
        """The timestep distribution's power in epoch ``epoch`` (0-based):
        :attr:`trial_t_power` in the trial epochs where it is set, else :attr:`t_power`."""
        if self.trial_t_power is not None and self.targets_at(epoch) == "trials":
            return self.trial_t_power
        return self.t_power

    def as_dict(self) -> dict:
        config = asdict(self)
        # Fields at their "changes nothing" value are left out, so the checkpoint keys of
        # the configs from before the fields existed stay what they were.
        if config["trial_t_power"] is None:
            del config["trial_t_power"]
        if config["precision"] == "auto":
            del config["precision"]
        return config

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The forward pass's autocast context on ``device`` (see :data:`PRECISIONS`)."""
        if device.type == "cuda" or self.precision == "bfloat16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass
class Normalizer:
    """Subtract the training grand-average response, divide by one global scale.

    The network then models only what differs between images (and trials), not the ERP
    shared by all of them. The scale makes the *training targets* (trials or averages)
    unit-variance, the data scale the noise schedule assumes: fitted on single trials,
    repetition averages would sit at ~1/n_reps of it, and the diffusion would drown the
    image-specific part in noise at most steps. One scale for all channels keeps the
    relative channel amplitudes (the topography).
    """

    offset: torch.Tensor  # (n_channels, n_times): the training grand average
    scale: float

    @classmethod
    def fit(cls, examples: np.ndarray | torch.Tensor, *, chunk: int = 2**24) -> "Normalizer":
        """``examples``: the training targets, shape (n_examples, n_channels, n_times).

        Mean and standard deviation are accumulated in float64 over blocks of about
        ``chunk`` values: a float64 copy of THINGS-EEG2's 66 176 single trials at 63 × 250
        alone would be 8.4 GB.
        """
        examples = np.asarray(examples)
        if examples.ndim != 3:
            raise ValueError("Normalizer.fit: expected training examples of shape "
                             f"(n_examples, n_channels, n_times), found {examples.shape}")
        offset, variance = blockwise_mean_and_variance([examples], chunk)
        scale = float(np.sqrt(variance))
        return cls(torch.as_tensor(offset, dtype=torch.float32), scale or 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One new tensor, divided in place: no second copy of the training set.
        return torch.sub(x, self.offset.to(x)).div_(self.scale)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale + self.offset.to(z)

    def state(self) -> dict:
        return {"offset": self.offset, "scale": self.scale}


# --------------------------------------------------------------------------- data


def match_features(features: ImageFeatures, image_ids: list[str]) -> Condition:
    """Rows of ``features`` for ``image_ids`` (in that order) as a :class:`Condition`.

    Raises
    ------
    KeyError
        Naming the first few ids that have no features.
    """
    row = {image_id: i for i, image_id in enumerate(features.image_ids)}
    missing = [i for i in image_ids if i not in row]
    if missing:
        raise KeyError(f"{len(missing)} images have no features (e.g. {missing[:3]}); "
                       "extract features for this dataset's image set first")
    index = np.array([row[i] for i in image_ids])
    return Condition(torch.as_tensor(features.pooled[index], dtype=torch.float32),
                     torch.as_tensor(features.tokens[index].astype(np.float32)))


def dataset_fingerprint(dataset: EpochedDataset) -> dict:
    """What identifies the training data: names, shapes and a digest of the signals."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.train.signals).view(np.uint8))
    digest.update("\n".join(dataset.train.image_ids).encode())
    return {"dataset": dataset.meta["dataset"], "subject": str(dataset.meta["subject"]),
            "shape": list(dataset.train.signals.shape), "sha256": digest.hexdigest()}


def checkpoint_key(dataset: EpochedDataset, features: ImageFeatures, model: UNetConfig,
                   train: TrainConfig) -> str:
    """Hash of everything that determines the trained weights."""
    content = {"recipe": RECIPE_VERSION, "data": dataset_fingerprint(dataset),
               "encoder": {k: features.meta.get(k) for k in ("model", "weights_digest",
                                                               "cache_key")},
               "model": model.as_dict(), "train": train.as_dict()}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def model_config_for(dataset: EpochedDataset, features: ImageFeatures, conditioning: str,
                     **overrides) -> UNetConfig:
    """A U-Net config whose input and context sizes fit this dataset and encoder."""
    components = overrides.get("feature_components")
    return UNetConfig(n_channels=len(dataset.ch_names), conditioning=conditioning,
                      embed_dim=n_feature_dims(features.pooled.shape[1], components),
                      token_dim=n_feature_dims(features.tokens.shape[2], components),
                      n_tokens=features.tokens.shape[1], **overrides)


def make_diffusion(config: TrainConfig, t_power: float | None = None) -> GaussianDiffusion:
    """The diffusion process of a training config: schedule, parameterisation, timestep
    distribution and loss weighting (training and ``bench`` use the same loss).
    ``t_power`` replaces the config's (an epoch's own, :meth:`TrainConfig.t_power_at`)."""
    return GaussianDiffusion(make_schedule(config.schedule, config.n_diffusion_steps),
                             prediction=config.prediction,
                             t_power=config.t_power if t_power is None else t_power,
                             weighting=config.loss_weighting, min_snr_gamma=config.min_snr_gamma)


# --------------------------------------------------------------------------- files


def atomic_torch_save(obj: dict, path: Path) -> None:
    """``torch.save`` through a temporary file in the same folder, then rename."""
    atomic_write(path, lambda fh: torch.save(obj, fh), overwrite=True)


def _load(path: Path) -> dict:
    # weights_only: a checkpoint is data, never code to run.
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- the model


@dataclass
class TrainedModel:
    """A trained generator ready to sample, plus where it came from."""

    model: UNet1D
    diffusion: GaussianDiffusion
    normalizer: Normalizer
    feature_scaler: FeatureScaler  # applied to the features passed to generate()
    model_config: UNetConfig
    train_config: TrainConfig
    path: Path
    losses: list[float]
    loaded: bool  # True when an existing finished checkpoint was loaded, not trained
    info: dict = field(default_factory=dict)

    @property
    def conditioning(self) -> str:
        return self.model_config.conditioning

    def generate(self, cond: Condition, *, n_samples: int = 1, method: str = "ddim",
                 steps: int = 50, eta: float = 0.0, guidance_scale: float = 1.0, seed: int = 0,
                 batch_size: int = 256, device: str | None = None,
                 progress: bool = False) -> np.ndarray:
        """Generated signals in data units, shape (n_images, n_samples, n_channels, n_times).

        ``cond`` holds raw encoder features (as :func:`match_features` returns them); the
        training-image standardisation is applied here. ``method`` is ``'ddim'`` (``steps``
        steps, stochasticity ``eta``: 0 deterministic, 1 ancestral), ``'dpmpp'``
        (DPM-Solver++(2M), ``steps`` steps, deterministic) or ``'ddpm'`` (all diffusion
        steps, ancestral). Sampling is seeded; the same call gives the same signals
        on the same device. The network runs in the precision it was trained in
        (:meth:`TrainConfig.autocast`; the sampler's own arithmetic stays float32).
        """
        sampler = make_sampler(method, steps, eta)
        device = select_device(device)
        model = self.model.to(device).eval()
        n_images = len(cond)
        n_channels, n_times = self.model_config.n_channels, self.info["n_times"]
        generator = torch.Generator(device).manual_seed(seed)
        use_cond = (None if self.conditioning == "none" else
                    self.feature_scaler(inputs_for(cond, self.conditioning)).repeat(n_samples))
        total = n_images * n_samples
        out = []
        for start in tqdm(range(0, total, batch_size), disable=not progress, desc="generating"):
            stop = min(start + batch_size, total)
            batch_cond = None if use_cond is None else use_cond.index(slice(start, stop)).to(device)
            shape = (stop - start, n_channels, n_times)
            with self.train_config.autocast(device):  # the precision it was trained in
                z = self.diffusion.sample(model, shape, sampler, cond=batch_cond,
                                          guidance_scale=guidance_scale, generator=generator,
                                          device=device)
            out.append(self.normalizer.inverse(z.float()).cpu())
        signals = torch.cat(out).numpy().reshape(n_images, n_samples, n_channels, n_times)
        return signals.astype(np.float32)


    @torch.no_grad()
    def conditional_mean(self, cond: Condition, *, n_draws: int = 8, guidance_scale: float = 1.0,
                         seed: int = 0, batch_size: int = 256,
                         device: str | None = None) -> np.ndarray:
        """The model's own mean response per image, E[x | c], in data units, shape
        (n_images, n_channels, n_times).

        At the last diffusion step ``x_T`` holds (almost) nothing of ``x_0``
        (``ᾱ_{T-1} ≈ 0``), so the MSE-trained denoiser's ``x̂_0`` there is its estimate of
        ``E[x_0 | c]``: the prediction an encoding model makes, without the trial noise a
        finite mean of samples keeps (16 single-trial samples at a trial SNR of 0.05 are
        still mostly noise). Averaged over ``n_draws`` start noises; ``guidance_scale`` as in
        :meth:`generate` (1: the model's own conditional). Always in float32: it costs
        ``n_draws`` network passes per image, and bfloat16's rounding (~0.4 % of the output)
        would add noise to the small differences between images it exists to measure.
        """
        device = select_device(device)
        model = self.model.to(device).eval()
        diffusion, last = self.diffusion, self.diffusion.n_steps - 1
        n_channels, n_times = self.model_config.n_channels, self.info["n_times"]
        use_cond = (None if self.conditioning == "none" else
                    self.feature_scaler(inputs_for(cond, self.conditioning)))
        generator = torch.Generator(device).manual_seed(seed)
        out = []
        for start in range(0, len(cond), batch_size):
            stop = min(start + batch_size, len(cond))
            batch_cond = None if use_cond is None else use_cond.index(slice(start, stop)).to(device)
            total = torch.zeros(stop - start, n_channels, n_times, device=device)
            for _ in range(n_draws):
                x_t = torch.randn(total.shape, generator=generator, device=device)
                output = diffusion.guided_output(model, x_t, last, batch_cond, guidance_scale)
                total += diffusion.predict_x0_and_eps(output, x_t, last)[0] / n_draws
            out.append(self.normalizer.inverse(total).cpu())
        return torch.cat(out).numpy().astype(np.float32)


def _build(model_config: UNetConfig, train_config: TrainConfig) -> tuple[UNet1D, GaussianDiffusion]:
    torch.manual_seed(train_config.seed)  # same initial weights for the same config
    return UNet1D(model_config), make_diffusion(train_config)


def load_trained(path: str | Path) -> TrainedModel:
    """The finished checkpoint file ``path`` as a :class:`TrainedModel` (EMA weights)."""
    path = Path(path)
    return _from_checkpoint(_load(path), path, loaded=True)


def _from_checkpoint(state: dict, path: Path, loaded: bool) -> TrainedModel:
    model_config = UNetConfig(**{**state["model_config"],
                                 "channel_mults": tuple(state["model_config"]["channel_mults"])})
    train_config = TrainConfig(**state["train_config"])
    model, diffusion = _build(model_config, train_config)
    model.load_state_dict(state["ema"])  # sample from the EMA weights
    normalizer = Normalizer(state["normalizer"]["offset"], float(state["normalizer"]["scale"]))
    feature_scaler = FeatureScaler(**state["feature_scaler"])
    return TrainedModel(model, diffusion, normalizer, feature_scaler, model_config, train_config, path,
                        list(state["losses"]), loaded, dict(state["info"]))


# --------------------------------------------------------------------------- training


def init_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group (NCCL on CUDA, else gloo)
    when started by torchrun, and is (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _training_examples(dataset: EpochedDataset, targets: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(signals (n_examples, n_channels, n_times) in data units, image index of each)."""
    with warnings.catch_warnings():
        # A large validation split is a read-only memory map (analysis.validation): shared,
        # never written (batches are copies), so torch's warning would only alarm.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        signals = torch.as_tensor(dataset.train.signals)
    n_images, n_reps = signals.shape[:2]
    if targets == "trials":
        x = signals.reshape(n_images * n_reps, *signals.shape[2:])
        image = torch.arange(n_images).repeat_interleave(n_reps)
    elif targets == "average":
        x, image = signals.mean(dim=1), torch.arange(n_images)
    else:
        raise ValueError(f"targets must be 'trials' or 'average', got '{targets}'")
    return x, image


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """The training loop's optimiser: AdamW with the config's learning rate and weight decay.

    The fused kernel (CPU and CUDA) makes the same update in one pass over all parameters:
    0.9 instead of 5.3 ms a step for the default generator's 180 tensors on one thread.
    """
    return torch.optim.AdamW(model.parameters(), lr=config.lr,
                             weight_decay=config.weight_decay, fused=True)


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning-rate multiplier for optimiser step ``step`` (0-based) of ``total_steps``:
    linear warm-up over ``config.warmup_steps``, then constant or cosine decay to zero."""
    warmup = max(1, config.warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup + 1) / max(1, total_steps - warmup))  # cosine
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_or_load(dataset: EpochedDataset, features: ImageFeatures, model_config: UNetConfig,
                  train_config: TrainConfig, checkpoint_root: str | Path, *,
                  device: str | None = None, progress: bool = True,
                  on_step: Callable[[int, int], None] | None = None,
                  monitor: Callable[[TrainedModel], dict] | None = None,
                  monitor_every: int = 1) -> TrainedModel:
    """Load the finished checkpoint for this exact configuration, or train (resuming) it.

    Parameters
    ----------
    dataset, features
        The subject's data and the image features of its image set.
    model_config, train_config
        What to build and how to train it; with the data and encoder they form the key.
    checkpoint_root : path
        Checkpoints go to ``<root>/<dataset>/sub-<subject>/<conditioning>-<key[:12]>/``.
    device : str, optional
        ``None``/``'auto'`` (CUDA if available), ``'cpu'``, ``'cuda:N'``. Under torchrun
        each rank uses ``cuda:LOCAL_RANK``.
    on_step : callable(epoch, step), optional
        Called after every optimiser step (tests use it to simulate an interruption).
    monitor : callable(TrainedModel) -> dict of float, optional
        Scores the EMA weights every ``monitor_every`` epochs and after the last one (e.g. on
        validation concepts: the learning curve). Rows ``{'epoch', 'step', **scores}`` go
        to ``validation.csv`` and ``info['curve']``; the weights are not affected, so the
        checkpoint key ignores it. A finished checkpoint keeps the curve it was trained with.
    """
    key = checkpoint_key(dataset, features, model_config, train_config)
    folder = (Path(checkpoint_root) / str(dataset.meta["dataset"])
              / f"sub-{dataset.meta['subject']}" / f"{model_config.conditioning}-{key[:12]}")
    final = folder / FINAL
    if final.is_file():
        logger.info("loading finished checkpoint %s (no training)", final)
        return load_trained(final)
    _, world, _ = init_distributed()
    # Another process asking for the same model at the same time (two book pages) waits
    # here, then loads it, rather than training it a second time beside this one. The
    # ranks of one torchrun train it together: none may wait for another.
    lock = (contextlib.nullcontext() if world > 1
            else exclusive_lock(folder.parent / f".{folder.name}.lock"))
    with lock:
        if final.is_file():
            logger.info("loading checkpoint %s, which another process trained", final)
            return load_trained(final)
        return _train(folder, key, dataset, features, model_config, train_config, device=device,
                      progress=progress, on_step=on_step, monitor=monitor,
                      monitor_every=monitor_every)


def _train(folder: Path, key: str, dataset: EpochedDataset, features: ImageFeatures,
           model_config: UNetConfig, train_config: TrainConfig, *, device: str | None,
           progress: bool, on_step: Callable[[int, int], None] | None,
           monitor: Callable[[TrainedModel], dict] | None, monitor_every: int) -> TrainedModel:
    """Train (resuming a partial checkpoint) into ``folder``, the checkpoint of ``key``:
    :func:`train_or_load`'s work."""
    final = folder / FINAL
    rank, world, local_rank = init_distributed()
    if world > 1 and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    device = select_device(device)
    model, diffusion = _build(model_config, train_config)
    model.to(device)
    # Normalised as what the finished model generates (see TrainConfig.trial_epochs).
    normalizer = Normalizer.fit(_training_examples(dataset, train_config.final_targets)[0])
    # Raw (single trials: a view of the data), normalised a batch at a time: a normalised
    # copy of THINGS-MEG's training trials would be another 6.9 GB beside the data.
    examples = {kind: _training_examples(dataset, kind)
                for kind in {train_config.targets_at(e) for e in range(train_config.epochs)}}
    cond_all = inputs_for(match_features(features, dataset.train.image_ids),
                          model_config.conditioning)
    feature_scaler = FeatureScaler.fit(cond_all, n_components=model_config.feature_components)
    cond_all = feature_scaler(cond_all)
    preprocessing = {"normalizer": normalizer.state(), "feature_scaler": feature_scaler.state()}

    optimizer = make_optimizer(model, train_config)
    ema = EMA(model, decay=train_config.ema_decay)
    start_epoch, losses, seconds, curve = 0, [], 0.0, []
    partial = folder / PARTIAL
    if partial.is_file():
        state = _load(partial)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema_state"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, losses, seconds = state["epoch"], list(state["losses"]), state["seconds"]
        curve = list(state["info"].get("curve", []))
        logger.info("resuming %s at epoch %d of %d", partial, start_epoch, train_config.epochs)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = train_config.autocast(device)
    # Every rank trains on the same number of examples, hence takes the same number of
    # optimiser steps: DDP's gradient all-reduce would otherwise wait forever for the rank
    # with one step fewer. The few examples left over differ from epoch to epoch.
    smallest = min(len(x) for x, _ in examples.values())
    if smallest // world < 1:
        raise ValueError(f"{smallest} training examples cannot be shared by {world} processes")

    def per_rank_in(epoch: int) -> int:
        """Examples each rank trains on in ``epoch``."""
        n = len(examples[train_config.targets_at(epoch)][0])
        return min(n, train_config.examples_per_epoch or n) // world

    def steps_in(epoch: int) -> int:
        return -(-per_rank_in(epoch) // train_config.batch_size)

    steps_before = np.cumsum([0] + [steps_in(e) for e in range(train_config.epochs)])
    total_steps = int(steps_before[-1])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, train_config),
        last_epoch=int(steps_before[start_epoch]) - 1)
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "config.json", json.dumps(_run_info(
            key, dataset, features, model_config, train_config, device, model, world), indent=2))
        atomic_save(folder / RECORDING_INFO, lambda path: mne.io.write_info(path, dataset.info),
                    overwrite=True)

    # One diffusion per timestep distribution the epochs use (TrainConfig.t_power_at).
    diffusions = {power: diffusion if power == diffusion.t_power
                  else make_diffusion(train_config, power)
                  for power in {train_config.t_power_at(e) for e in range(train_config.epochs)}}
    bar = tqdm(range(start_epoch, train_config.epochs), initial=start_epoch,
               total=train_config.epochs, disable=not progress or rank != 0,
               desc=f"training {model_config.conditioning}")
    for epoch in bar:
        started = time.perf_counter()
        g = torch.Generator().manual_seed(train_config.seed * 100_003 + epoch)
        x_all, image_of = examples[train_config.targets_at(epoch)]
        order = torch.randperm(len(x_all), generator=g)[:per_rank_in(epoch) * world][rank::world]
        # Timesteps, noise and condition dropout: the diffusion draws them from this stream.
        noise_g = torch.Generator(device).manual_seed(train_config.seed * 100_003 + epoch + rank)
        epoch_diffusion = diffusions[train_config.t_power_at(epoch)]
        net.train()
        total, count = torch.zeros((), device=device), 0
        for step, begin in enumerate(range(0, len(order), train_config.batch_size)):
            idx = order[begin:begin + train_config.batch_size]
            x0 = normalizer.forward(x_all[idx].to(device))
            cond = cond_all.index(image_of[idx]).to(device)
            with amp:
                loss = epoch_diffusion.loss(net, x0, cond=cond, generator=noise_g,
                                      cond_drop_prob=train_config.cond_drop_prob)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            optimizer.step()
            schedule.step()
            ema.update(model)
            total += loss.detach() * len(idx)
            count += len(idx)
            if on_step is not None:
                on_step(epoch, step)
        stats = torch.stack([total, torch.tensor(float(count), device=device)])
        if world > 1:
            dist.all_reduce(stats)
        losses.append(float(stats[0] / stats[1]))
        seconds += time.perf_counter() - started
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if rank == 0 and monitor is not None and ((epoch + 1) % monitor_every == 0
                                                 or epoch + 1 == train_config.epochs):
            # A copy of the EMA weights is scored; the global RNG is restored afterwards so
            # that monitoring cannot change the training trajectory.
            with torch.random.fork_rng(devices=[]):
                view = _from_checkpoint(_checkpoint_state(
                    model, ema, optimizer, preprocessing, model_config, train_config, epoch + 1,
                    losses, seconds, dataset) | {"ema": ema.shadow}, folder / PARTIAL, loaded=False)
                scores = monitor(view)
            curve.append({"epoch": epoch + 1, "step": int(steps_before[epoch + 1]),
                          **{k: float(v) for k, v in scores.items()}})
        if rank == 0:
            _save_progress(folder, model, ema, optimizer, preprocessing, model_config,
                           train_config, epoch + 1, losses, seconds, dataset, curve)
    if world > 1:
        dist.barrier()

    ema_model = UNet1D(model_config)
    ema.copy_to(ema_model)
    state = _checkpoint_state(model, ema, optimizer, preprocessing, model_config, train_config,
                              train_config.epochs, losses, seconds, dataset, curve)
    state["ema"] = ema_model.state_dict()
    state["info"]["optimiser_steps"] = total_steps
    trained = _from_checkpoint(state, final, loaded=False)
    if rank == 0:
        atomic_torch_save(state, final)
        partial.unlink(missing_ok=True)
        write_model_card(trained, dataset)
    return trained


def _checkpoint_state(model, ema, optimizer, preprocessing, model_config, train_config, epoch,
                      losses, seconds, dataset, curve=()) -> dict:
    """``preprocessing``: the fitted signal normaliser and feature scaler, as state dicts."""
    return {"model": model.state_dict(), "ema_state": ema.state_dict(),
            "optimizer": optimizer.state_dict(), **preprocessing,
            "model_config": model_config.as_dict(), "train_config": train_config.as_dict(),
            "epoch": epoch, "losses": losses, "seconds": seconds,
            "info": {"n_times": int(dataset.train.signals.shape[-1]),
                     "ch_names": list(dataset.ch_names), "sfreq": dataset.sfreq,
                     "tmin": float(dataset.times[0]), "units": str(dataset.meta["units"]),
                     "recipe_version": RECIPE_VERSION,
                     "train_seconds": seconds, "curve": list(curve)}}


def _save_progress(folder: Path, model, ema, optimizer, preprocessing, model_config, train_config,
                   epoch, losses, seconds, dataset, curve) -> None:
    """Checkpoint the finished epoch (resumable); rewrite ``losses.csv`` and the monitor's
    ``validation.csv``."""
    atomic_torch_save(_checkpoint_state(model, ema, optimizer, preprocessing, model_config,
                                        train_config, epoch, losses, seconds, dataset, curve),
                      folder / PARTIAL)
    rows = "epoch,loss\n" + "".join(f"{i + 1},{loss:.6f}\n" for i, loss in enumerate(losses))
    atomic_write_text(folder / "losses.csv", rows)
    if curve:
        columns = list(curve[0])
        text = ",".join(columns) + "\n" + "".join(
            ",".join(f"{row[c]:.6g}" for c in columns) + "\n" for row in curve)
        atomic_write_text(folder / "validation.csv", text)


def _run_info(key, dataset, features, model_config, train_config, device, model, world) -> dict:
    return {
        "key": key, "dataset": dataset_fingerprint(dataset),
        "encoder": {k: features.meta.get(k) for k in ("family", "model", "pretrained", "label",
                                                        "weights_digest", "random_init",
                                                        "stages", "grid")},
        "model": model_config.as_dict(), "train": train_config.as_dict(),
        "n_parameters": model.n_parameters(), "device": str(device), "world_size": world,
        "versions": package_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
