"""Procedural stimuli with known attributes, for the built-in simulated dataset.

A *concept* is a fixed combination of three categorical attributes (shape, hue, texture),
e.g. ``red_striped_star``; its images (exemplars) vary in continuous attributes (size,
position, spatial frequency, contrast, background clutter, rotation). Because every pixel
comes from a known attribute vector, the simulated brain responses can depend on exactly
these attributes and the analyses can be checked against a ground truth.

With 8 shapes × 12 hues × 6 textures there are 576 concepts; as in THINGS-EEG2 the test
concepts are disjoint from the training concepts.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import pandas as pd

SHAPES = ("circle", "ring", "star", "hexagon", "square", "triangle", "diamond", "cross")
#: Shapes whose outline is curved: the superordinate category the simulated parietal
#: (P300-like) and ventral-temporal responses prefer, standing in for animacy in THINGS.
CURVED_SHAPES = frozenset({"circle", "ring", "star", "hexagon"})
HUES = ("red", "orange", "yellow", "lime", "green", "teal",
        "cyan", "azure", "blue", "violet", "magenta", "pink")
TEXTURES = ("solid", "striped", "grating", "checkered", "dotted", "noisy")

#: Continuous exemplar attributes and their sampling ranges (uniform).
CONTINUOUS_RANGES = {
    "size": (0.18, 0.38),           # shape radius as a fraction of the image width
    "x": (-0.2, 0.2),               # horizontal centre offset, fraction of width (+ = right)
    "y": (-0.2, 0.2),               # vertical centre offset, fraction of height (+ = up)
    "spatial_frequency": (3.0, 12.0),  # texture cycles per shape diameter
    "contrast": (0.25, 1.0),        # figure–background contrast
    "clutter": (0.0, 1.0),          # density of background distractor blobs
    "rotation": (0.0, 2 * np.pi),   # shape orientation, radians
}


@dataclass(frozen=True)
class Concept:
    shape: str
    hue: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.hue}_{self.texture}_{self.shape}"


def all_concepts() -> list[Concept]:
    """Every concept of the family, in a fixed order."""
    return [Concept(s, h, t) for s in SHAPES for h in HUES for t in TEXTURES]


def split_concepts(n_train: int, n_test: int, rng: np.random.Generator) -> tuple[list[Concept], list[Concept]]:
    """Draw disjoint training and test concepts.

    Raises
    ------
    ValueError
        If more concepts are asked for than the family holds.
    """
    concepts = all_concepts()
    if n_train + n_test > len(concepts):
        raise ValueError(
            f"asked for {n_train} training + {n_test} test concepts but the procedural "
            f"family has only {len(concepts)}"
        )
    order = rng.permutation(len(concepts))
    test = [concepts[i] for i in order[:n_test]]
    train = [concepts[i] for i in order[n_test:n_test + n_train]]
    return train, test


def sample_attributes(concepts: list[Concept], n_per_concept: int, rng: np.random.Generator,
                      prefix: str) -> pd.DataFrame:
    """One row per image: its concept, categorical and continuous attributes, file name.

    Returns
    -------
    DataFrame with columns ``image_id, file, concept, shape, hue, texture, curved`` and
    one column per entry of :data:`CONTINUOUS_RANGES`, plus ``seed`` (per-image texture /
    clutter seed) so the pixels can be re-rendered exactly.
    """
    rows = []
    for concept in concepts:
        for k in range(n_per_concept):
            image_id = f"{concept.name}_{prefix}{k + 1:02d}"
            row = {"image_id": image_id, "file": f"{image_id}.jpg", "concept": concept.name,
                   "shape": concept.shape, "hue": concept.hue, "texture": concept.texture,
                   "curved": concept.shape in CURVED_SHAPES}
            for name, (lo, hi) in CONTINUOUS_RANGES.items():
                row[name] = float(rng.uniform(lo, hi))
            row["seed"] = int(rng.integers(2**31 - 1))
            rows.append(row)
    return pd.DataFrame(rows)


def _radius_profile(shape: str, theta: np.ndarray) -> np.ndarray:
    """Outline radius (relative to the nominal size) as a function of polar angle."""
    def polygon(n: int) -> np.ndarray:
        sector = np.mod(theta, 2 * np.pi / n) - np.pi / n
        return np.cos(np.pi / n) / np.cos(sector)

    if shape in ("circle", "ring", "cross", "diamond"):
        return np.ones_like(theta)
    if shape == "square":
        return polygon(4) * np.cos(np.pi / 4) * 1.25
    if shape == "triangle":
        return polygon(3) * 1.2
    if shape == "hexagon":
        return polygon(6)
    if shape == "star":
        return 0.7 + 0.3 * np.cos(5 * theta)
    raise ValueError(f"unknown shape '{shape}'; expected one of {SHAPES}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, cycles: float,
             rng: np.random.Generator) -> np.ndarray:
    """Texture modulation in [-1, 1] over shape-centred coordinates (u, v in radii)."""
    phase = 2 * np.pi * cycles * u / 2  # `cycles` per diameter (2 radii)
    if texture == "solid":
        return np.zeros_like(u)
    if texture == "striped":
        return np.sign(np.sin(phase))
    if texture == "grating":
        return np.sin(phase)
    if texture == "checkered":
        return np.sign(np.sin(phase)) * np.sign(np.sin(2 * np.pi * cycles * v / 2))
    if texture == "dotted":
        dots = np.sin(phase) * np.sin(2 * np.pi * cycles * v / 2)
        return np.where(dots > 0.5, 1.0, -0.3)
    if texture == "noisy":
        coarse = rng.standard_normal((8, 8))
        iy = np.clip(((v + 1) / 2 * 7).astype(int), 0, 7)
        ix = np.clip(((u + 1) / 2 * 7).astype(int), 0, 7)
        return np.tanh(coarse[iy, ix])
    raise ValueError(f"unknown texture '{texture}'; expected one of {TEXTURES}")


def render_image(attributes: pd.Series | dict, size: int = 224) -> np.ndarray:
    """Render one stimulus from its attribute row.

    Returns
    -------
    ndarray, uint8, shape (size, size, 3)
        RGB image on a mid-grey background.
    """
    a = dict(attributes)
    rng = np.random.default_rng(a["seed"])
    coords = (np.arange(size) + 0.5) / size - 0.5
    xx, yy = np.meshgrid(coords, -coords)  # +y is up, as for the visual field

    background = np.full((size, size, 3), 0.5)
    # Clutter: low-contrast grey blobs in the background; the number grows with `clutter`.
    for _ in range(int(round(a["clutter"] * 12))):
        cx, cy = rng.uniform(-0.5, 0.5, 2)
        radius = rng.uniform(0.02, 0.07)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2))
        background += (rng.uniform(-0.25, 0.25) * blob)[..., None]

    radius = a["size"]
    dx, dy = xx - a["x"], yy - a["y"]
    cos_r, sin_r = np.cos(a["rotation"]), np.sin(a["rotation"])
    u = (cos_r * dx + sin_r * dy) / radius  # shape-centred, rotated, in units of radius
    v = (-sin_r * dx + cos_r * dy) / radius
    r, theta = np.hypot(u, v), np.arctan2(v, u)
    if a["shape"] == "cross":
        mask = ((np.abs(u) < 0.3) & (np.abs(v) < 1)) | ((np.abs(v) < 0.3) & (np.abs(u) < 1))
    elif a["shape"] == "diamond":  # an elongated rhombus, so rotation cannot make it a square
        mask = np.abs(u) + np.abs(v) / 0.6 <= 1.1
    elif a["shape"] == "ring":
        mask = (r <= 1) & (r >= 0.55)
    else:
        mask = r <= _radius_profile(a["shape"], theta)

    hue_index = HUES.index(a["hue"])
    colour = np.array(colorsys.hsv_to_rgb(hue_index / len(HUES), 0.85, 0.9))
    texture = _texture(a["texture"], u, v, a["spatial_frequency"], rng)
    figure = 0.5 + a["contrast"] * ((colour - 0.5)[None, None, :] + 0.25 * texture[..., None])
    image = np.where(mask[..., None], figure, background)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
