"""The built-in simulated dataset: THINGS-shaped EEG/MEG with a known ground truth.

How one subject's data arise
----------------------------
1. **Sources.** Nine equivalent current dipoles in regions of the visual hierarchy:
   early visual (left/right), colour-selective ventral occipital (L/R), lateral occipital
   (L/R), ventral temporal (L/R) and medial parietal. Each carries ERP-like components
   whose amplitude and latency are functions of the image attributes
   (:mod:`analysis.data.images`), see :func:`source_waveforms`.
2. **Head.** An MNE spherical head model fitted to the ``colin27_1005`` positions of the
   recorded channels (or a CTF-275-like helmet of point magnetometers for MEG) turns
   dipole moments into sensor signals with :func:`mne.make_forward_dipole`.
3. **Subjects** differ by dipole position / orientation, per-region latency and gain, and
   noise level, all scaled by one ``subject_variability`` factor (0 = identical subjects).
4. **Single trials** are not the mean plus noise: each trial's components arrive with a
   latency jitter (larger for low-contrast and cluttered images, and larger for the late
   P300-like component) and a trial gain (see :class:`ResponseEffects`), so averages are
   smeared and single trials are non-Gaussian, as in real ERP data. The saved "noiseless"
   means are the exact expectation over that variability (:func:`source_waveforms`).
5. **Trial noise** that looks like EEG: background brain activity (many random dipoles
   with 1/f spectra, spatially correlated through the same forward model), occipital
   alpha bursts with random phase, and white sensor noise, scaled to a target
   single-trial signal-to-noise ratio of the image-specific response.
6. **Files.** Everything is written in the THINGS-EEG2 (or THINGS-MEG) file format and
   read back by the real loaders, plus the noiseless mean responses so the true ceiling
   on any fidelity metric is known exactly, and every trial's jitter and gain
   (``simulation/sub-XX/trial_truth_*.npz``).

Everything is deterministic given the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import mne
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..config import SimulationSize, get_profile
from ..evaluation.stats import blockwise_mean_and_variance
from ..files import atomic_write, atomic_write_text
from ..provenance import package_versions
from . import images as stimuli
from .contract import EpochedDataset, format_error
from .things_eeg2 import CHANNELS, SFREQ, load_things_eeg2, write_image_metadata, write_things_eeg2
from .things_meg import CATCH_CODE, load_things_meg, write_things_meg

logger = logging.getLogger(__name__)

# Stream ids for independent random streams derived from one seed (see _rng).
(_STIMULI, _CODES, _GEOMETRY, _NOISE_SOURCES, _TRAIN_NOISE, _TEST_NOISE, _ORACLE_NOISE,
 _TRAIN_JITTER, _TEST_JITTER) = range(9)


@dataclass(frozen=True)
class Region:
    """A dipolar source: where it sits and which response components it carries."""

    name: str
    hemisphere: str  # "left", "right" or "midline"
    position: tuple[float, float, float]  # offset from the sphere centre, in inner-skull radii


#: Positions are in the head frame (x right, y anterior, z up) relative to the centre of
#: the fitted sphere, as fractions of the inner-skull radius (so any head size works).
REGIONS = (
    Region("early_visual", "left", (-0.12, -0.78, 0.05)),
    Region("early_visual", "right", (0.12, -0.78, 0.05)),
    Region("ventral_occipital", "left", (-0.30, -0.68, -0.22)),
    Region("ventral_occipital", "right", (0.30, -0.68, -0.22)),
    Region("lateral_occipital", "left", (-0.58, -0.52, 0.0)),
    Region("lateral_occipital", "right", (0.58, -0.52, 0.0)),
    Region("ventral_temporal", "left", (-0.50, -0.30, -0.38)),
    Region("ventral_temporal", "right", (0.50, -0.30, -0.38)),
    Region("parietal", "midline", (0.0, -0.45, 0.55)),
)


@dataclass(frozen=True)
class ResponseEffects:
    """Trial-level variability and non-additive tuning of the simulated responses.

    For image *i* and trial *r*, with ``s_i = 1 + contrast_jitter · (1 − contrast_i)
    + clutter_jitter · clutter_i`` (the image's jitter scale):

    - every early component (≤ 200 ms) is shifted by ``δ_early ~ N(0, (latency_sd_s · s_i)²)``,
      the late P300-like component by ``δ_late ~ N(0, (late_latency_sd_s · s_i)²)``;
    - all components of the trial are scaled by ``g = exp(gain_sd · z − gain_sd² / 2)``,
      ``z ~ N(0, 1)`` (so ``E[g] = 1``);
    - the lateral-occipital shape code depends on the hemifield: ``c_shape(s) + position_tuning
      · tanh(x / 0.05) · c_field(s)``, so a left- and a right-field image of one shape evoke
      different codes (where an object is matters beyond a pooled summary);
    - the ventral-occipital colour component is ``c_hue(h) · (1 + shape_hue · c_shape(s))``, a
      shape × hue interaction no sum of shape and hue terms can express.

    :meth:`none` switches everything off (the simulator of earlier versions: trials = mean +
    noise, additive codes).
    """

    latency_sd_s: float = 0.012
    late_latency_sd_s: float = 0.045
    gain_sd: float = 0.35
    contrast_jitter: float = 1.5
    clutter_jitter: float = 1.0
    position_tuning: float = 0.6
    shape_hue: float = 1.0

    @classmethod
    def none(cls) -> "ResponseEffects":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def jitter_scale(self, attributes: pd.DataFrame) -> np.ndarray:
        """``s_i`` per image, shape (n_images,)."""
        return (1.0 + self.contrast_jitter * (1.0 - attributes["contrast"].to_numpy())
                + self.clutter_jitter * attributes["clutter"].to_numpy())

    def latency_sd(self, attributes: pd.DataFrame) -> np.ndarray:
        """Jitter standard deviation (s) of the early and late components, shape (n_images, 2)."""
        scale = self.jitter_scale(attributes)[:, None]
        return scale * np.array([self.latency_sd_s, self.late_latency_sd_s])


@dataclass(frozen=True)
class TrialDraws:
    """The trial-level truth of ``n`` trials (one row of the attribute table each).

    Attributes
    ----------
    latency_s : ndarray, shape (n, 2)
        Latency shifts (s) of the early and the late components.
    gain : ndarray, shape (n,)
        Trial gain (mean 1 over trials).
    """

    latency_s: np.ndarray
    gain: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, attributes: pd.DataFrame,
             effects: "ResponseEffects") -> "TrialDraws":
        sd = effects.latency_sd(attributes)
        z = rng.standard_normal(len(attributes))
        return cls(latency_s=sd * rng.standard_normal(sd.shape),
                   gain=np.exp(effects.gain_sd * z - effects.gain_sd ** 2 / 2))


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines the dataset's content (hashed into its identity).

    ``trial_snr`` is the single-trial ratio of image-specific signal variance (the
    noiseless responses minus their mean over images) to noise variance, averaged over
    channels and times. THINGS-EEG2-like reliabilities arise around 0.02–0.1.
    """

    size: SimulationSize
    seed: int = 0
    modality: str = "eeg"  # "eeg" (THINGS-EEG2 format) or "meg" (THINGS-MEG format)
    # EEG only: "official" (17 channels, 100 Hz) or "nice" (63 channels, 250 Hz, the
    # NICE/ATM files' layout); see things_eeg2.CHANNELS.
    eeg_variant: str = "official"
    subject_variability: float = 1.0
    trial_snr: float = 0.05
    dipole_moment_nAm: float = 20.0
    effects: ResponseEffects = ResponseEffects()

    def identity(self) -> str:
        """Hash of the content-defining settings, excluding the number of subjects.

        Subjects can be added to an existing dataset later; everything else must match.
        """
        content = asdict(self)
        content["size"].pop("n_subjects")
        if content["eeg_variant"] == "official":  # datasets from before the field keep their id
            content.pop("eeg_variant")
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def sfreq(self) -> float:
        return SFREQ[self.eeg_variant] if self.modality == "eeg" else 200.0

    @property
    def times(self) -> np.ndarray:
        """-0.2…0.8 s (EEG: 100 samples at 100 Hz, or 250 at 250 Hz for the ``nice``
        variant) or -0.1…1.3 s at 200 Hz (THINGS-MEG)."""
        if self.modality == "eeg":
            return np.round(np.arange(-0.2 * self.sfreq, 0.8 * self.sfreq) / self.sfreq, 6)
        return np.round(np.arange(-20, 261) / 200.0, 6)

    @property
    def ch_names(self) -> list[str] | None:
        """EEG channel names (None for MEG: the helmet's names come from its layout)."""
        return list(CHANNELS[self.eeg_variant]) if self.modality == "eeg" else None


@dataclass
class SubjectModel:
    """One simulated subject's head: sources, per-region timing and gain, noise level.

    Attributes
    ----------
    positions, orientations : ndarray, shape (n_regions, 3)
        Dipole positions (m, head frame) and unit orientations.
    latency_shift_s, gain : ndarray, shape (n_regions,)
        Added to every component latency (seconds); multiplies every component amplitude.
    noise_scale : float
        Multiplies the trial noise after the SNR calibration.
    lead_field : ndarray, shape (n_channels, n_regions)
        Sensor signal per unit dipole moment (V/(A·m) for EEG, T/(A·m) for MEG).
    noise_lead_field : ndarray, shape (n_channels, n_noise_sources)
        The same for the background-noise dipoles.
    alpha_sources : ndarray of int
        Indices of the noise dipoles that carry alpha oscillations (the occipital ones).
    """

    subject: int
    positions: np.ndarray
    orientations: np.ndarray
    latency_shift_s: np.ndarray
    gain: np.ndarray
    noise_scale: float
    lead_field: np.ndarray
    noise_lead_field: np.ndarray
    alpha_sources: np.ndarray = field(default_factory=lambda: np.zeros(0, int))


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream for (seed, stream...), stable across versions."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


# --------------------------------------------------------------------------- sensors


def make_info(modality: str, sfreq: float, ch_names: Sequence[str] | None = None) -> mne.Info:
    """Sensor description: THINGS-EEG2 channels on colin27_1005, or a CTF-275-like helmet.

    ``ch_names`` (EEG only) defaults to the official preprocessing's 17 channels.

    The MEG helmet places one radial point magnetometer per channel of MNE's 2-D
    ``CTF-275`` layout on a 12 cm sphere above the head (the layout is an azimuthal
    projection, so its radius maps to the angle from the vertex).
    """
    if modality == "eeg":
        info = mne.create_info(list(ch_names or CHANNELS["official"]), sfreq, "eeg")
        info.set_montage(mne.channels.make_standard_montage("colin27_1005"))
        return info
    if modality != "meg":
        raise ValueError(f"modality must be 'eeg' or 'meg', got '{modality}'")
    layout = mne.channels.read_layout("CTF-275")
    names = [n.split("-")[0] for n in layout.names]
    xy = layout.pos[:, :2] + layout.pos[:, 2:4] / 2  # box centres
    xy = xy - xy.mean(axis=0)
    rho = np.hypot(xy[:, 0], xy[:, 1])
    elevation = rho / rho.max() * np.deg2rad(115)  # angle from the vertex
    azimuth = np.arctan2(xy[:, 1], xy[:, 0])
    normals = np.column_stack([np.sin(elevation) * np.cos(azimuth),
                               np.sin(elevation) * np.sin(azimuth), np.cos(elevation)])
    centre = np.array([0.0, 0.0, 0.04])
    info = mne.create_info(names, sfreq, "mag")
    with info._unlock():
        for ch, normal in zip(info["chs"], normals):
            ex = np.cross([0.0, 0.0, 1.0], normal)
            ex = ex / np.linalg.norm(ex) if np.linalg.norm(ex) > 1e-6 else np.array([1.0, 0, 0])
            ey = np.cross(normal, ex)
            ch["loc"][:12] = np.concatenate([centre + 0.12 * normal, ex, ey, normal])
            ch["coil_type"] = mne.io.constants.FIFF.FIFFV_COIL_POINT_MAGNETOMETER
        # Sensor positions are given in head coordinates already: identity device→head.
        info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
    return info


def _sphere(info: mne.Info, modality: str) -> mne.bem.ConductorModel:
    if modality == "eeg":
        return mne.make_sphere_model(r0="auto", head_radius="auto", info=info, verbose=False)
    return mne.make_sphere_model(r0=(0.0, 0.0, 0.04), head_radius=0.09, verbose=False)


def _lead_field(positions: np.ndarray, orientations: np.ndarray, sphere, info: mne.Info) -> np.ndarray:
    """Sensor gain of fixed-orientation dipoles, shape (n_channels, n_dipoles)."""
    n = len(positions)
    dipoles = mne.Dipole(np.arange(n, dtype=float), positions, np.ones(n), orientations,
                         np.ones(n))
    fwd, _ = mne.make_forward_dipole(dipoles, sphere, info, verbose=False)
    return fwd["sol"]["data"].astype(np.float64)


def _random_rotation(vectors: np.ndarray, sd_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Tilt each unit vector by a normally distributed angle about a random perpendicular axis."""
    out = []
    for v in vectors:
        axis = np.cross(v, rng.standard_normal(3))
        axis /= np.linalg.norm(axis)
        angle = np.deg2rad(rng.normal(0.0, sd_deg))
        # Rodrigues' rotation formula (axis ⟂ v, so the v·axis term vanishes).
        out.append(v * np.cos(angle) + np.cross(axis, v) * np.sin(angle))
    return np.array(out)


#: Spread of the per-subject variation at subject_variability = 1.
VARIATION = {"position_m": 0.005, "orientation_deg": 15.0, "latency_s": 0.008,
             "log_gain": 0.15, "log_noise": 0.15}
N_NOISE_SOURCES = 40


def make_subject(config: SimulationConfig, subject: int, info: mne.Info) -> SubjectModel:
    """Draw one subject's head and sources (deterministic in seed and subject)."""
    sphere = _sphere(info, config.modality)
    r0 = np.asarray(sphere["r0"])
    inner = sphere["layers"][0]["rad"] if sphere["layers"] else 0.08
    # Canonical (group) geometry: shared by all subjects, drawn from the dataset seed.
    canonical = _rng(config.seed, _GEOMETRY)
    base_pos = r0 + inner * np.array([r.position for r in REGIONS])
    radial = (base_pos - r0) / np.linalg.norm(base_pos - r0, axis=1, keepdims=True)
    # Mix radial and tangential so that both EEG and MEG (blind to radial dipoles) see them.
    tangential = np.cross(radial, canonical.standard_normal((len(REGIONS), 3)))
    tangential /= np.linalg.norm(tangential, axis=1, keepdims=True)
    base_ori = 0.6 * radial + 0.8 * tangential

    k = config.subject_variability
    rng = _rng(config.seed, _GEOMETRY, subject)
    positions = base_pos + rng.normal(0, VARIATION["position_m"] * k, base_pos.shape)
    # Large variability must not push a dipole out of the brain (MNE refuses those).
    offset = positions - r0
    norm = np.linalg.norm(offset, axis=1, keepdims=True)
    positions = r0 + offset * np.minimum(1.0, 0.85 * inner / norm)
    orientations = _random_rotation(base_ori, VARIATION["orientation_deg"] * k, rng)
    latency = rng.normal(0, VARIATION["latency_s"] * k, len(REGIONS))
    gain = np.exp(rng.normal(0, VARIATION["log_gain"] * k, len(REGIONS)))
    noise_scale = float(np.exp(rng.normal(0, VARIATION["log_noise"] * k)))

    # Background noise dipoles: uniform in a ball of 0.8 inner radii, random orientation.
    noise_rng = _rng(config.seed, _NOISE_SOURCES, subject)
    direction = noise_rng.standard_normal((N_NOISE_SOURCES, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = 0.8 * inner * noise_rng.uniform(0, 1, (N_NOISE_SOURCES, 1)) ** (1 / 3)
    noise_pos = r0 + direction * radius
    noise_ori = noise_rng.standard_normal((N_NOISE_SOURCES, 3))
    noise_ori /= np.linalg.norm(noise_ori, axis=1, keepdims=True)
    alpha = np.flatnonzero(noise_pos[:, 1] - r0[1] < -0.3 * inner)  # occipital ones

    return SubjectModel(
        subject=subject, positions=positions, orientations=orientations,
        latency_shift_s=latency, gain=gain, noise_scale=noise_scale,
        lead_field=_lead_field(positions, orientations, sphere, info),
        noise_lead_field=_lead_field(noise_pos, noise_ori, sphere, info),
        alpha_sources=alpha,
    )


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class AttributeCodes:
    """Fixed (per dataset seed) response signatures of the categorical attributes.

    Each maps a category to a weight per hemisphere ``(left, right)``: how strongly that
    shape / hue / texture drives the region carrying the code. They play the role of the
    unknown, category-specific tuning of real visual cortex.
    """

    shape: dict[str, np.ndarray]
    hue: dict[str, np.ndarray]
    texture: dict[str, np.ndarray]
    #: The hemifield-dependent part of the lateral-occipital shape code (ResponseEffects).
    shape_field: dict[str, np.ndarray]

    @classmethod
    def draw(cls, seed: int) -> "AttributeCodes":
        rng = _rng(seed, _CODES)
        # Drawn in this order so that codes of earlier versions stay the same.
        shape = {s: rng.normal(0, 0.6, 2) for s in stimuli.SHAPES}
        hue = {h: rng.normal(0, 0.6, 2) for h in stimuli.HUES}
        texture = {t: rng.normal(0, 0.5, 2) for t in stimuli.TEXTURES}
        return cls(shape=shape, hue=hue, texture=texture,
                   shape_field={s: rng.normal(0, 0.6, 2) for s in stimuli.SHAPES})


def _bump(times: np.ndarray, latency: np.ndarray, width: float,
          jitter_sd: np.ndarray | float = 0.0) -> np.ndarray:
    """Gaussian component peaking at ``latency`` (per row), shape (n_rows, n_times).

    With ``jitter_sd`` > 0 it is the expectation over a latency jitter ``δ ~ N(0, jitter_sd²)``:
    a Gaussian convolved with a Gaussian, ``w / √(w² + σ²) · exp(−(t − L)² / 2(w² + σ²))``.
    """
    spread = np.sqrt(width ** 2 + np.broadcast_to(jitter_sd, np.shape(latency)) ** 2)[:, None]
    return width / spread * np.exp(-0.5 * ((times[None, :] - latency[:, None]) / spread) ** 2)


def source_waveforms(attributes: pd.DataFrame, times: np.ndarray, codes: AttributeCodes,
                     latency_shift_s: np.ndarray | None = None,
                     gain: np.ndarray | None = None, effects: ResponseEffects | None = None,
                     trials: TrialDraws | None = None) -> np.ndarray:
    """Dipole moments of every region, in units of the nominal moment.

    With ``trials=None`` the expected (noiseless mean) response of every image over the
    trial variability of ``effects``; with ``trials`` the single trials they describe (one
    row of ``attributes`` per trial). ``effects=None`` means :meth:`ResponseEffects.none`.

    Which attribute drives which region (the simulation's ground truth):

    - early visual: P1 at ~100 ms (and a following N1 at ~150 ms) scaled by contrast and
      size; the hemisphere opposite the stimulus responds more (contralateral field);
      the upper field flips the first component's polarity (like the C1); latency grows
      with lower contrast and higher spatial frequency;
    - ventral occipital: colour- and texture-specific components at ~140 / 130 ms;
    - lateral occipital: shape-specific N1 at ~170 ms, weakened and delayed by clutter;
    - ventral temporal: N170-like component larger for curved shapes, plus shape code;
    - parietal: P300-like component at ~350 ms, larger for curved shapes and larger
      stimuli, smaller with clutter.

    ``effects`` adds the hemifield-dependent shape code (lateral occipital), the shape × hue
    interaction (ventral occipital) and the trial jitter / gain (every region), see
    :class:`ResponseEffects`.

    Returns
    -------
    ndarray, shape (n_images, n_regions, n_times)
    """
    n_img, n_t = len(attributes), len(times)
    shift = np.zeros(len(REGIONS)) if latency_shift_s is None else latency_shift_s
    gain = np.ones(len(REGIONS)) if gain is None else gain
    effects = ResponseEffects.none() if effects is None else effects
    a = {c: attributes[c].to_numpy() for c in attributes.columns}
    curved = a["curved"].astype(float)
    if trials is None:  # the expectation: no shift, the jitter widens every component
        delta, sd = np.zeros((n_img, 2)), effects.latency_sd(attributes)
        trial_gain = np.ones(n_img)
    else:
        if trials.latency_s.shape != (n_img, 2) or trials.gain.shape != (n_img,):
            raise ValueError(f"trials: expected latency_s ({n_img}, 2) and gain ({n_img},), "
                             f"found {trials.latency_s.shape} and {trials.gain.shape}")
        delta, sd, trial_gain = trials.latency_s, np.zeros((n_img, 2)), trials.gain
    early, late = (delta[:, 0], sd[:, 0]), (delta[:, 1], sd[:, 1])

    def bump(latency, width, component=early):
        jitter, jitter_sd = component
        return _bump(times, np.broadcast_to(latency, (n_img,)) + jitter, width, jitter_sd)

    out = np.zeros((n_img, len(REGIONS), n_t))
    for i, region in enumerate(REGIONS):
        side = {"left": 0, "right": 1}.get(region.hemisphere, 0)
        lat = shift[i]
        if region.name == "early_visual":
            contralateral = 1.0 + (2.5 if side == 0 else -2.5) * a["x"]  # right field → left V1
            amp = a["contrast"] * (0.5 + 2.0 * a["size"]) * contralateral
            latency = 0.095 + 0.03 * (1 - a["contrast"]) + 0.002 * (a["spatial_frequency"] - 7)
            c1_sign = 1.0 - 4.0 * a["y"]  # upper field (y > 0) weakens / flips the first peak
            out[:, i] = (amp * c1_sign)[:, None] * bump(latency + lat, 0.018)
            out[:, i] -= (0.7 * amp)[:, None] * bump(latency + 0.055 + lat, 0.025)
        elif region.name == "ventral_occipital":
            hue = np.array([codes.hue[h][side] for h in a["hue"]])
            tex = np.array([codes.texture[t][side] for t in a["texture"]])
            shape = np.array([codes.shape[s][side] for s in a["shape"]])
            colour = hue * (1.0 + effects.shape_hue * shape)  # the shape × hue interaction
            out[:, i] = (colour * a["contrast"])[:, None] * bump(0.14 + lat, 0.025)
            out[:, i] += tex[:, None] * bump(0.13 + lat, 0.02)
        elif region.name == "lateral_occipital":
            shape = np.array([codes.shape[s][side] for s in a["shape"]])
            field = np.array([codes.shape_field[s][side] for s in a["shape"]])
            shape = shape + effects.position_tuning * np.tanh(a["x"] / 0.05) * field
            amp = -(0.8 + shape) * (1 - 0.5 * a["clutter"])
            out[:, i] = amp[:, None] * bump(0.17 + 0.02 * a["clutter"] + lat, 0.03)
        elif region.name == "ventral_temporal":
            shape = np.array([codes.shape[s][1 - side] for s in a["shape"]])
            amp = -(0.5 + 0.8 * curved + 0.5 * shape)
            out[:, i] = amp[:, None] * bump(0.18 + lat, 0.03)
        elif region.name == "parietal":
            amp = 0.6 + 0.8 * curved + 1.5 * (a["size"] - 0.28) - 0.6 * a["clutter"]
            out[:, i] = amp[:, None] * bump(0.35 + lat, 0.08, late)
        out[:, i] *= gain[i] * trial_gain[:, None]
    return out


#: Arrays of more values than this are computed a block at a time (THINGS-MEG's 22 184
#: training images at 275 × 281 are 1.7e9 values: 13.7 GB in float64); smaller ones in one
#: piece, as the built-in datasets always were, so their values do not change.
_LARGE = 2 ** 28
#: Values per block then (0.5 GB in float64).
_BLOCK = 2 ** 26


def noiseless_responses(attributes: pd.DataFrame, subject: SubjectModel, config: SimulationConfig,
                        codes: AttributeCodes, trials: TrialDraws | None = None) -> np.ndarray:
    """Sensor-level responses, shape (n_rows, n_channels, n_times), in µV or fT.

    ``trials=None``: each image's mean response (the expectation over trial jitter and
    gain); else the noise-free single trials of ``trials`` (one attribute row per trial).
    """
    per_row = subject.lead_field.shape[0] * len(config.times)
    if trials is not None or len(attributes) * per_row <= _LARGE:
        return _sensor_responses(attributes, subject, config, codes, trials)
    step = max(1, _BLOCK // per_row)
    out = np.empty((len(attributes), subject.lead_field.shape[0], len(config.times)), np.float32)
    for start in range(0, len(attributes), step):
        out[start:start + step] = _sensor_responses(attributes.iloc[start:start + step], subject,
                                                    config, codes)
    return out


def _sensor_responses(attributes: pd.DataFrame, subject: SubjectModel, config: SimulationConfig,
                      codes: AttributeCodes, trials: TrialDraws | None = None) -> np.ndarray:
    """:func:`noiseless_responses` of ``attributes`` in one piece."""
    moments = source_waveforms(attributes, config.times, codes, subject.latency_shift_s,
                               subject.gain, config.effects, trials)
    moments = moments * config.dipole_moment_nAm * 1e-9  # A·m
    sensors = np.einsum("cr,irt->ict", subject.lead_field, moments)
    return (sensors * _unit_scale(config.modality)).astype(np.float32)


def draw_trials(attributes: pd.DataFrame, n_reps: int, subject: SubjectModel,
                config: SimulationConfig, codes: AttributeCodes, noise_std: float,
                noise_rng: np.random.Generator, jitter_rng: np.random.Generator,
                progress: bool = False, desc: str = "trials") -> tuple[np.ndarray, dict]:
    """``n_reps`` single trials of every image from the simulator's trial process.

    Each trial: its own latency jitter and gain (:class:`ResponseEffects`) through the
    subject's forward model, plus EEG-like noise (:func:`trial_noise`) times ``noise_std``.

    Returns
    -------
    trials : ndarray, float32, shape (n_images, n_reps, n_channels, n_times)
    truth : dict
        ``latency_s`` (n_images, n_reps, 2) early / late shifts in s, ``gain`` (n_images,
        n_reps), ``latency_sd_s`` (n_images, 2) the jitter sd each image was drawn with.
    """
    n_img = len(attributes)
    n_ch, n_t = subject.lead_field.shape[0], len(config.times)
    trials = np.empty((n_img, n_reps, n_ch, n_t), np.float32)
    latency = np.zeros((n_img, n_reps, 2))
    gain = np.ones((n_img, n_reps))
    jittered = config.effects != ResponseEffects.none()
    mean = None if jittered else noiseless_responses(attributes, subject, config, codes)
    # Trials per block: 4096 (the built-in datasets' draws), fewer where that many would
    # exceed _BLOCK values (THINGS-MEG's 275 × 281).
    chunk = max(1, min(4096, _BLOCK // (n_ch * n_t)) // n_reps)
    for start in tqdm(range(0, n_img, chunk), disable=not progress, leave=False, desc=desc):
        stop = min(start + chunk, n_img)
        noise = trial_noise(noise_rng, (stop - start) * n_reps, subject, config.sfreq,
                            config.times)
        noise = noise.reshape(stop - start, n_reps, n_ch, n_t) * noise_std
        if jittered:
            rows = attributes.iloc[np.repeat(np.arange(start, stop), n_reps)]
            draws = TrialDraws.draw(jitter_rng, rows, config.effects)
            signal = noiseless_responses(rows, subject, config, codes, draws)
            signal = signal.reshape(stop - start, n_reps, n_ch, n_t)
            latency[start:stop] = draws.latency_s.reshape(stop - start, n_reps, 2)
            gain[start:stop] = draws.gain.reshape(stop - start, n_reps)
        else:  # the same draws as versions without trial effects
            signal = mean[start:stop, None]
        trials[start:stop] = signal + noise
    truth = {"latency_s": latency, "gain": gain,
             "latency_sd_s": config.effects.latency_sd(attributes)}
    return trials, truth


def _unit_scale(modality: str) -> float:
    """Volts → µV for EEG; tesla → fT for MEG (numbers of order one either way)."""
    return 1e6 if modality == "eeg" else 1e15


def _pink_noise(rng: np.random.Generator, shape: tuple[int, ...], sfreq: float) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum along the last axis, unit variance."""
    n = shape[-1]
    spectrum = rng.standard_normal(shape[:-1] + (n // 2 + 1,)) + 1j * rng.standard_normal(
        shape[:-1] + (n // 2 + 1,))
    freqs = np.fft.rfftfreq(n, 1 / sfreq)
    freqs[0] = freqs[1]
    signal = np.fft.irfft(spectrum / np.sqrt(freqs), n=n, axis=-1)
    return signal / signal.std(axis=-1, keepdims=True)


def trial_noise(rng: np.random.Generator, n_trials: int, subject: SubjectModel,
                sfreq: float, times: np.ndarray) -> np.ndarray:
    """Unscaled EEG-like noise for ``n_trials`` epochs, shape (n_trials, n_channels, n_times).

    Background (1/f) dipoles + occipital alpha (8–12 Hz, random phase and amplitude) are
    projected through the subject's forward model, so noise is spatially correlated like
    real EEG; white sensor noise is added on top.
    """
    n_src = subject.noise_lead_field.shape[1]
    sources = _pink_noise(rng, (n_trials, n_src, len(times)), sfreq)
    if len(subject.alpha_sources):
        freq = rng.uniform(8, 12, (n_trials, len(subject.alpha_sources), 1))
        phase = rng.uniform(0, 2 * np.pi, freq.shape)
        amplitude = rng.gamma(2.0, 1.0, freq.shape)
        sources[:, subject.alpha_sources] += amplitude * np.sin(2 * np.pi * freq * times + phase)
    brain = np.einsum("cs,nst->nct", subject.noise_lead_field, sources)
    brain /= brain.std()
    sensor = 0.3 * rng.standard_normal(brain.shape)
    return brain + sensor


def noise_std_for_snr(noiseless: np.ndarray | Sequence[np.ndarray], trial_snr: float) -> float:
    """Noise standard deviation giving the requested image-specific single-trial SNR.

    Parameters
    ----------
    noiseless : ndarray, shape (n_images, n_channels, n_times), or a sequence of them
        (their images together, e.g. the training and the test images).
    trial_snr : float
        Variance of ``noiseless - noiseless.mean(axis=0)`` over noise variance.
    """
    parts = [noiseless] if isinstance(noiseless, np.ndarray) else list(noiseless)
    n_images = sum(len(p) for p in parts)
    per_image = int(np.prod(parts[0].shape[1:]))
    if n_images * per_image <= _LARGE:
        noiseless = np.concatenate(parts) if len(parts) > 1 else parts[0]
        specific = noiseless - noiseless.mean(axis=0, keepdims=True)
        return float(np.sqrt(specific.var() / trial_snr))
    # In float64 blocks of images: no copy of the whole set.
    _, variance = blockwise_mean_and_variance(parts, _BLOCK)
    return float(np.sqrt(variance / trial_snr))


# --------------------------------------------------------------------------- the dataset


def simulate_subject(config: SimulationConfig, subject: int, train_attrs: pd.DataFrame,
                     test_attrs: pd.DataFrame, info: mne.Info, codes: AttributeCodes,
                     progress: bool = False) -> dict[str, np.ndarray]:
    """Trials and noiseless means for one subject.

    Returns
    -------
    dict with ``train``/``test`` float32 (n_images, n_reps, n_channels, n_times),
    ``train_noiseless``/``test_noiseless`` (n_images, n_channels, n_times) and
    ``train_truth``/``test_truth`` (every trial's jitter and gain, see :func:`draw_trials`).
    """
    model = make_subject(config, subject, info)
    size = config.size
    out: dict[str, np.ndarray] = {}
    noiseless = {name: noiseless_responses(attrs, model, config, codes)
                 for name, attrs in (("train", train_attrs), ("test", test_attrs))}
    # One noise level per subject, calibrated on all its images, then jittered per subject.
    noise_std = noise_std_for_snr(list(noiseless.values()), config.trial_snr)
    noise_std *= model.noise_scale
    reps = {"train": size.n_train_reps if config.modality == "eeg" else 1,
            "test": size.n_test_reps}
    streams = {"train": (_TRAIN_NOISE, _TRAIN_JITTER), "test": (_TEST_NOISE, _TEST_JITTER)}
    for name, attrs in (("train", train_attrs), ("test", test_attrs)):
        noise_stream, jitter_stream = streams[name]
        out[name], out[f"{name}_truth"] = draw_trials(
            attrs, reps[name], model, config, codes, noise_std,
            _rng(config.seed, noise_stream, subject), _rng(config.seed, jitter_stream, subject),
            progress, desc=f"sub-{subject:02d} {name} trials")
        out[f"{name}_noiseless"] = noiseless[name]
    return out


def _save_npy(path: Path, array: np.ndarray, *, overwrite: bool = False) -> None:
    atomic_write(path, lambda fh: np.save(fh, array), overwrite=overwrite)


def _write_images(attrs: pd.DataFrame, folder: Path, image_size: int, progress: bool) -> None:
    """Render every stimulus into ``folder/<concept>/<file>`` (skips files already there)."""
    for _, row in tqdm(attrs.iterrows(), total=len(attrs), disable=not progress,
                       desc=f"rendering {folder.name}", leave=False):
        path = folder / row["concept"] / row["file"]
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray(stimuli.render_image(row, image_size))
        atomic_write(path, lambda fh: pixels.save(fh, format="JPEG", quality=92))


def draw_stimuli(config: SimulationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and test image attributes (shared by all subjects, as in THINGS)."""
    rng = _rng(config.seed, _STIMULI)
    size = config.size
    train_c, test_c = stimuli.split_concepts(size.n_train_concepts, size.n_test_concepts, rng)
    train = stimuli.sample_attributes(train_c, size.n_train_images_per_concept, rng, "s")
    test = stimuli.sample_attributes(test_c, 1, rng, "s")
    return train, test


def simulate_dataset(root: str | Path, config: SimulationConfig, subjects: list[int] | None = None,
                     progress: bool = True) -> Path:
    """Write the simulated dataset under ``root`` in the THINGS-EEG2 (or THINGS-MEG) format.

    Layout (EEG): ``image_set/{image_metadata.npy, image_attributes.csv, training_images/,
    test_images/}``, ``preprocessed_data/sub-XX/preprocessed_eeg_{training,test}.npy``,
    ``simulation/sub-XX/noiseless_{training,test}.npy`` and ``simulation.json``.
    MEG: ``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` instead of
    ``preprocessed_data``.

    Finished subjects are never rewritten: rerunning resumes, and adding subjects to an
    existing root works as long as every other setting is the same.

    Raises
    ------
    FileExistsError
        If ``root`` holds a dataset simulated with different settings.
    """
    root = Path(root)
    subjects = subjects or list(range(1, config.size.n_subjects + 1))
    manifest_path = root / "simulation.json"
    manifest = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("identity") != config.identity():
            raise FileExistsError(
                f"{root} already holds a simulated dataset with other settings "
                f"(identity {manifest.get('identity')} vs {config.identity()}); "
                "choose another output folder or delete that one"
            )
    root.mkdir(parents=True, exist_ok=True)
    image_root = root / "image_set"
    train_attrs, test_attrs = draw_stimuli(config)
    _write_images(train_attrs, image_root / "training_images", config.size.image_size, progress)
    _write_images(test_attrs, image_root / "test_images", config.size.image_size, progress)
    attrs_path = image_root / "image_attributes.csv"
    if not attrs_path.is_file():
        table = pd.concat([train_attrs.assign(split="train"), test_attrs.assign(split="test")])
        atomic_write_text(attrs_path, table.to_csv(index=False))
    if not (image_root / "image_metadata.npy").is_file():
        write_image_metadata(image_root, list(train_attrs["concept"]), list(train_attrs["file"]),
                             list(test_attrs["concept"]), list(test_attrs["file"]))

    info = make_info(config.modality, config.sfreq, config.ch_names)
    codes = AttributeCodes.draw(config.seed)
    done = set(manifest.get("subjects", []))
    for subject in tqdm(subjects, desc="simulating subjects", disable=not progress):
        noiseless_dir = root / "simulation" / f"sub-{subject:02d}"
        if subject in done and noiseless_dir.is_dir():
            continue
        data = simulate_subject(config, subject, train_attrs, test_attrs, info, codes, progress)
        noiseless_dir.mkdir(parents=True, exist_ok=True)
        # A subject missing from the manifest was interrupted: its partial files are redone.
        # Each array is dropped once saved: at THINGS-MEG's size the noiseless training
        # responses alone are 6.8 GB.
        _save_npy(noiseless_dir / "noiseless_training.npy", data.pop("train_noiseless"),
                  overwrite=True)
        _save_npy(noiseless_dir / "noiseless_test.npy", data.pop("test_noiseless"), overwrite=True)
        for name, file in (("train", "trial_truth_training.npz"), ("test", "trial_truth_test.npz")):
            truth = data[f"{name}_truth"]
            atomic_write(noiseless_dir / file, lambda fh: np.savez(fh, **truth), overwrite=True)
        if config.modality == "eeg":
            write_things_eeg2(root, subject, train_signals=data["train"],
                              test_signals=data["test"], ch_names=info["ch_names"],
                              times=config.times, variant=config.eeg_variant, overwrite=True)
        else:
            scratch = noiseless_dir / ".meg-epochs-float64.npy"
            try:
                write_things_meg(root, subject,
                                 _meg_epochs(data, info, config, train_attrs, test_attrs, scratch),
                                 overwrite=True)
            finally:
                scratch.unlink(missing_ok=True)
        del data
        done.add(subject)
        # The manifest is updated after each finished subject, so an interrupted run resumes.
        manifest = {
            "identity": config.identity(),
            "config": asdict(config),
            "subjects": sorted(done),
            "units": "µV" if config.modality == "eeg" else "fT",
            "image_set_folder": "image_set",
            "versions": package_versions(),
        }
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return root


def _meg_epochs(data: dict, info: mne.Info, config: SimulationConfig, train_attrs: pd.DataFrame,
                test_attrs: pd.DataFrame, scratch: Path) -> mne.EpochsArray:
    """Arrange simulated trials as THINGS-MEG epochs: one event code per image.

    Training images appear once, test images ``n_test_reps`` times, interleaved in random
    order; a few catch trials (event 999999, zero signals) are added, as in the real
    recordings. MNE holds epochs in float64: they are assembled in a memory-mapped
    ``scratch`` file (15 GB at THINGS-MEG's size, twice the float32 trials), which the
    caller deletes once the epochs are saved.
    """
    rng = _rng(config.seed, _TEST_NOISE, 999)
    sources, codes, paths, concepts = [], [], [], []  # sources: (split, image, repetition)
    for offset, (name, attrs, folder) in enumerate(
            (("train", train_attrs, "training_images"), ("test", test_attrs, "test_images"))):
        for i, row in enumerate(attrs.itertuples()):
            for r in range(data[name].shape[1]):
                sources.append((name, i, r))
                codes.append(offset * 100000 + i + 1)
                paths.append(f"image_set/{folder}/{row.concept}/{row.file}")
                concepts.append(row.concept)
    n_catch = max(2, len(sources) // 50)
    sources += [None] * n_catch
    codes += [CATCH_CODE] * n_catch
    paths += [""] * n_catch
    concepts += ["catch"] * n_catch
    order = rng.permutation(len(sources))
    x = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float64,
                                  shape=(len(order),) + data["train"].shape[2:])
    scale = 1.0 / _unit_scale("meg")  # back to tesla, as MNE stores it
    for row, k in enumerate(order):
        if sources[k] is not None:  # catch trials stay zero
            name, i, r = sources[k]
            x[row] = data[name][i, r] * scale
        if row % 2048 == 2047:
            x.flush()  # bound the dirty pages waiting to be written
    x.flush()
    events = np.column_stack([np.arange(len(order)) * 300, np.zeros(len(order), int),
                              np.asarray(codes)[order]])
    metadata = pd.DataFrame({"image_path": np.asarray(paths)[order],
                             "concept": np.asarray(concepts)[order]})
    event_id = {str(c): int(c) for c in np.unique(events[:, 2])}
    return mne.EpochsArray(x, info, events=events, tmin=config.times[0], event_id=event_id,
                           metadata=metadata, verbose=False)


def load_simulated(root: str | Path, subject: int) -> EpochedDataset:
    """Load one subject of the built-in dataset through the real THINGS loader.

    Adds what only a simulation can know: the noiseless mean responses, the image
    attributes table and the simulation settings (``meta['simulation']``).
    """
    root = Path(root)
    manifest_path = root / "simulation.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path} not found: {root} is not a simulated dataset "
            "(create one with `python -m analysis simulate`)"
        )
    manifest = json.loads(manifest_path.read_text())
    if subject not in manifest["subjects"]:
        raise format_error(manifest_path, "subjects", f"subject {subject} to be simulated",
                           f"subjects {manifest['subjects']}")
    if manifest["config"]["modality"] == "eeg":
        dataset = load_things_eeg2(root, subject)
    else:
        dataset = load_things_meg(root, subject, n_test_reps=manifest["config"]["size"]["n_test_reps"],
                                  images_root=root)
    noiseless_dir = root / "simulation" / f"sub-{subject:02d}"
    attributes = pd.read_csv(root / "image_set" / "image_attributes.csv")
    noiseless = {}
    for name, split, file in (("train", dataset.train, "noiseless_training.npy"),
                              ("test", dataset.test, "noiseless_test.npy")):
        # Saved in attribute-table order; align to the order the loader returned.
        table = attributes[attributes["split"] == name].reset_index(drop=True)
        row_of = {image_id: i for i, image_id in enumerate(table["image_id"])}
        missing = [i for i in split.image_ids if i not in row_of]
        if missing:
            raise format_error(noiseless_dir / file, "image_id",
                               "every loaded image in image_attributes.csv",
                               f"{len(missing)} unknown ids, e.g. {missing[:3]}")
        noiseless[name] = np.load(noiseless_dir / file)[[row_of[i] for i in split.image_ids]]
    units = manifest["units"]
    scale = 1.0 if manifest["config"]["modality"] == "eeg" else _unit_scale("meg")
    dataset.train.signals = dataset.train.signals * np.float32(scale)
    dataset.test.signals = dataset.test.signals * np.float32(scale)
    meta = dict(dataset.meta)
    meta.update(dataset="simulated", subject=subject, units=units,
                preprocessing=("simulated with an MNE spherical forward model; not whitened; "
                               f"single-trial SNR {manifest['config']['trial_snr']}"),
                simulation=manifest["config"], identity=manifest["identity"],
                image_attributes=str(root / "image_set" / "image_attributes.csv"),
                noiseless_source=str(noiseless_dir))
    return EpochedDataset(train=dataset.train, test=dataset.test, info=dataset.info,
                          times=dataset.times, meta=meta, noiseless=noiseless)


def config_for_profile(profile: str, **overrides) -> SimulationConfig:
    """The simulation settings of a run profile, with optional overrides (seed, modality, …)."""
    size = get_profile(profile).simulation_size(overrides.get("modality", "eeg"))
    return SimulationConfig(size=size, **overrides)


def config_from_meta(meta: dict) -> SimulationConfig:
    """The :class:`SimulationConfig` a loaded simulated subject was made with.

    Raises
    ------
    ValueError
        ``meta`` has no ``'simulation'`` entry (the data are not simulated).
    """
    if "simulation" not in meta:
        raise ValueError(f"meta: expected a 'simulation' entry (simulated data), found keys "
                         f"{sorted(meta)}")
    settings = dict(meta["simulation"])
    # Datasets simulated before trial effects existed had none.
    effects = settings.pop("effects", None)
    effects = ResponseEffects(**effects) if effects is not None else ResponseEffects.none()
    return SimulationConfig(size=SimulationSize(**settings.pop("size")), effects=effects,
                            **settings)


def image_attributes(dataset: EpochedDataset, split: str = "test") -> pd.DataFrame:
    """The attribute rows of a loaded simulated subject's images, in the loader's order."""
    if "image_attributes" not in dataset.meta:
        raise ValueError(f"dataset: expected simulated data with an 'image_attributes' table, "
                         f"found '{dataset.meta.get('dataset')}'")
    table = pd.read_csv(dataset.meta["image_attributes"])
    table = table[table["split"] == split].set_index("image_id")
    ids = getattr(dataset, split).image_ids
    return table.loc[ids].reset_index()


def oracle_trials(dataset: EpochedDataset, n: int, seed: int = 0, split: str = "test",
                  attributes: pd.DataFrame | None = None) -> np.ndarray:
    """New trials of every image, drawn from the simulator's own process: the perfect generator.

    Every trial gets its own latency jitter and gain and new trial noise, made exactly as
    :func:`simulate_subject` makes them (the subject's forward model, 1/f background and
    alpha, sensor noise, the subject's noise level), from random streams of their own so the
    draws are new trials, not the recorded ones.

    Parameters
    ----------
    dataset : EpochedDataset
        A subject loaded by :func:`load_simulated` (noiseless means and settings in meta).
    n : int
        Trials per image.
    seed : int
        Seeds the new jitter and noise.
    split : str
        ``'test'`` or ``'train'``: whose images (ignored when ``attributes`` is given).
    attributes : DataFrame, optional
        Any simulated images' attribute rows (columns of
        :func:`analysis.data.images.sample_attributes`), e.g. new exemplars.

    Returns
    -------
    ndarray, float32, shape (n_images, n, n_channels, n_times), in the data's units.
    """
    if dataset.noiseless is None:
        raise ValueError(f"dataset: the oracle needs simulated data with noiseless means; "
                         f"'{dataset.meta.get('dataset')}' has none")
    config = config_from_meta(dataset.meta)
    subject_id = int(dataset.meta["subject"])
    subject = make_subject(config, subject_id, make_info(config.modality, config.sfreq, config.ch_names))
    noiseless = dataset.noiseless
    # The subject's noise level, calibrated as simulate_subject did on all its images.
    noise_std = noise_std_for_snr([noiseless["train"], noiseless["test"]],
                                  config.trial_snr) * subject.noise_scale
    if attributes is None:
        attributes = image_attributes(dataset, split)
    trials, _ = draw_trials(attributes, n, subject, config, AttributeCodes.draw(config.seed),
                            noise_std, _rng(config.seed, _ORACLE_NOISE, subject_id, seed),
                            _rng(config.seed, _ORACLE_NOISE, subject_id, seed, 1))
    return trials


def load_trial_truth(root: str | Path, subject: int, split: str = "test") -> dict[str, np.ndarray]:
    """Every simulated trial's latency jitter and gain (see :func:`draw_trials`).

    Rows are in ``image_attributes.csv`` order and repetitions in simulation order (the
    THINGS-EEG2 loader keeps both; THINGS-MEG epochs are shuffled on writing).
    """
    file = Path(root) / "simulation" / f"sub-{subject:02d}" / (
        "trial_truth_training.npz" if split == "train" else "trial_truth_test.npz")
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: simulated before trial effects existed, "
                                "or not a simulated dataset")
    with np.load(file) as data:
        return {k: data[k] for k in data.files}
