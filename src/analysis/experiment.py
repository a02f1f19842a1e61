"""One subject's analysis, computed once and cached: what every notebook calls.

A notebook builds a :class:`SubjectRun` from its parameters and asks it for the dataset,
features, trained generators, generated test signals and baseline predictions. Each is
computed on first use and cached on disk (features cache, keyed checkpoints, saved
generated signals), so the five per-subject notebooks share work instead of repeating it,
and a rerun is fast. Tables a group page needs are saved with :meth:`SubjectRun.save_result`
and gathered with :func:`load_results`.

Work folder layout (``workdir``)::

    cache/features/            image features (keyed by encoder, weights and images)
    cache/baselines/           ridge and train-mean test predictions (keyed by features + data)
    checkpoints/<dataset>/sub-<n>/<conditioning>-<key>/   generators + generated signals
    results/<dataset>/sub-<n>/<name>.csv                  tables for the group pages
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import pipeline
from .config import EncoderConfig, Profile, SamplingConfig, get_profile
from .files import atomic_write, atomic_write_text
from .models.baselines import MeanResponse, RidgeEncoder
from .names import BASELINES, CONDITIONINGS, REFERENCES, SHUFFLED_SOURCE
from .provenance import package_versions
from .training import TrainedModel, dataset_fingerprint, match_features

logger = logging.getLogger(__name__)


def results_dir(workdir: str | Path, dataset: str, subject: int | str) -> Path:
    return Path(workdir) / "results" / dataset / f"sub-{subject}"


class SubjectRun:
    """Lazily computed, disk-cached analysis of one subject.

    Parameters
    ----------
    dataset : str
        ``'simulated'``, ``'things-eeg2'`` or ``'things-meg'``.
    root : path
        The dataset folder.
    subject : int
    profile : str or Profile
        Run size: model, training and sampling settings.
    workdir : path
        Where caches, checkpoints and result tables go.
    device : str, optional
        ``None``/``'auto'``, ``'cpu'``, ``'cuda'``.
    encoder : EncoderConfig or dict, optional
        Replaces the profile's image encoder (a dict holds :class:`EncoderConfig` fields, as
        a notebook parameter does); ``None`` keeps the profile's.
    ablation : bool
        This subject trains the ablation's conditionings too (the run's first subject).
        False: only the paper's generator, unless the profile ablates every subject
        (:meth:`Profile.conditionings`); :attr:`conditionings` says which.
    """

    def __init__(self, dataset: str, root: str | Path, subject: int, profile: str | Profile = "ci",
                 workdir: str | Path = ".", device: str | None = None, progress: bool = True,
                 encoder: EncoderConfig | dict | None = None, ablation: bool = True):
        self.dataset_name = dataset
        self.root = Path(root)
        self.subject = int(subject)
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        if encoder is not None:
            encoder = encoder if isinstance(encoder, EncoderConfig) else EncoderConfig(**encoder)
            self.profile = replace(self.profile, encoder=encoder)
        self.workdir = Path(workdir)
        self.device = device
        self.progress = progress
        #: The generators this subject trains and its pages show.
        self.conditionings = self.profile.conditionings(ablation)
        self._models: dict[str, TrainedModel] = {}
        #: Which images :attr:`dataset`'s ``test`` holds: ``''`` the test set, else a name
        #: (``'validation'``, ``'validation-400of2218'``) that keeps what is saved beside a
        #: checkpoint for them apart from the test set's.
        self.images = ""
        self._references: dict[tuple, np.ndarray] = {}
        self._timings: dict[str, float] = {}

    # ------------------------------------------------------------------ inputs

    @cached_property
    def _split(self):
        """``(fitting, validation)`` datasets (:func:`analysis.validation.split_validation`)
        of the recording, and the paths and ids of all its images
        (:func:`~analysis.pipeline.dataset_images`). The recording is not kept: at
        THINGS-MEG's size it is 7 GB, and the fitting part beyond 1 GiB is a memory map in
        the work folder's cache."""
        from .validation import split_validation

        recording = pipeline.load_dataset(self.dataset_name, self.root, self.subject)
        return (*split_validation(recording, self.workdir / "cache" / "validation"),
                pipeline.dataset_images(recording))

    @cached_property
    def dataset(self):
        """The subject's data as every model sees it: ``train`` the *fitting* concepts'
        images (the validation concepts' are held out, :attr:`validation`), ``test`` the
        test set. Generators, ridge and the train mean are all fit on ``train``."""
        return self._split[0]

    @cached_property
    def features(self):
        start = time.perf_counter()
        features = pipeline.image_features(*self._split[2], self.profile.encoder,
                                           self.workdir / "cache" / "features",
                                           device=self.device, progress=self.progress)
        self._timings["features_s"] = time.perf_counter() - start
        return features

    @cached_property
    def readout_features(self) -> list:
        """Features of the profile's ``readout_encoders`` (other than its own encoder), for
        the read-outs of what features carry; cached on disk like :attr:`features`."""
        from .encoders import RandomInitWarning

        with warnings.catch_warnings():
            # These read-outs are named "(random init)" where they are; one warning per page
            # about an ablation would read as if the page's own encoder were random.
            warnings.simplefilter("ignore", RandomInitWarning)
            return [pipeline.image_features(*self._split[2], config,
                                            self.workdir / "cache" / "features",
                                            device=self.device, progress=self.progress)
                    for config in self.profile.readout_encoders if config != self.profile.encoder]

    @property
    def encoder_label(self) -> str:
        """What the book must print next to every encoder-dependent number."""
        return self.features.label

    # ------------------------------------------------------------------ models

    def model(self, conditioning: str = "cross_attention", **train_overrides) -> TrainedModel:
        """Train or load the generator with this conditioning (cached per overrides).

        Raises
        ------
        ValueError
            A conditioning this subject does not train (:attr:`conditionings`): the
            ablation's models belong to the run's first subject.
        """
        if conditioning not in self.conditionings:
            raise ValueError(
                f"subject {self.subject}: conditioning '{conditioning}' is not trained here "
                f"(profile '{self.profile.name}' trains {list(self.conditionings)} on this "
                "subject; the ablation's models are the first subject's: "
                "SubjectRun(..., ablation=True))")
        key = conditioning + json.dumps(train_overrides, sort_keys=True)
        if key not in self._models:
            start = time.perf_counter()
            self._models[key] = pipeline.train_generator(
                self.dataset, self.features, conditioning, self.profile,
                self.workdir / "checkpoints", device=self.device, progress=self.progress,
                monitor=self.curve_monitor, **train_overrides)
            self._timings[f"train_{conditioning}_s"] = time.perf_counter() - start
        return self._models[key]

    def sampling(self, **changes) -> SamplingConfig:
        return replace(self.profile.sampling, **changes)

    def generated(self, conditioning: str = "cross_attention", *, train_overrides: dict | None = None,
                  **sampling_changes) -> np.ndarray:
        """Generated test signals, shape (n_test_images, n_samples, n_channels, n_times).

        Loaded from next to the checkpoint when this exact sampling was run before.
        """
        trained = self.model(conditioning, **(train_overrides or {}))
        sampling = self.sampling(**sampling_changes)
        path = trained.path.parent / f"{pipeline.generated_name(sampling, self.images)}.npz"
        if path.is_file():
            with np.load(path) as saved:
                if list(saved["image_ids"]) == self.dataset.test.image_ids:
                    return saved["signals"]
        start = time.perf_counter()
        signals = pipeline.generate_test_set(trained, self.dataset, self.features, sampling,
                                             device=self.device, progress=self.progress,
                                             images=self.images)
        self._timings[f"generate_{conditioning}_s"] = time.perf_counter() - start
        return signals

    @cached_property
    def _baselines(self) -> dict[str, np.ndarray]:
        """Baseline test predictions, saved under ``cache/baselines`` keyed by the features,
        the training data and the test images: every page of a subject needs ridge, and one
        fit on a CNN's features takes seconds."""
        content = {"version": 1, "features": self.features.meta.get("cache_key"),
                   "data": dataset_fingerprint(self.dataset), "test": self.dataset.test.image_ids,
                   "alphas": RidgeEncoder().alphas.tolist()}
        key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        path = (self.workdir / "cache" / "baselines"
                / f"{self.dataset_name}-sub-{self.subject}-{key}.npz")
        if path.is_file() and content["features"] is not None:
            with np.load(path) as saved:
                return {name: saved[name] for name in BASELINES}
        train = match_features(self.features, self.dataset.train.image_ids).pooled.numpy()
        test = match_features(self.features, self.dataset.test.image_ids).pooled.numpy()
        target = self.dataset.train.average()
        predictions = {"ridge": RidgeEncoder().fit(train, target).predict(test),
                       "train_mean": MeanResponse().fit(train, target).predict(test)}
        if content["features"] is not None:  # in-memory features have no cache key
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda fh: np.savez(fh, **predictions), overwrite=True)
        return predictions

    def conditional_mean(self, conditioning: str = "cross_attention", *,
                         train_overrides: dict | None = None) -> np.ndarray:
        """The generator's own mean response per test image, E[x | c] (see
        :meth:`~analysis.training.TrainedModel.conditional_mean`), shape
        (n_test_images, n_channels, n_times); saved next to the checkpoint."""
        trained = self.model(conditioning, **(train_overrides or {}))
        path = trained.path.parent / f"conditional_mean{pipeline.image_set_suffix(self.images)}.npz"
        if path.is_file():
            with np.load(path) as saved:
                if list(saved["image_ids"]) == self.dataset.test.image_ids:
                    return saved["signals"]
        cond = match_features(self.features, self.dataset.test.image_ids)
        mean = trained.conditional_mean(cond, device=self.device)
        atomic_write(path, lambda fh: np.savez(fh, signals=mean,
                                               image_ids=np.array(self.dataset.test.image_ids)),
                     overwrite=True)
        return mean

    def prediction(self, name: str, *, train_overrides: dict | None = None) -> np.ndarray:
        """Predicted test responses ``(n_test_images, n_channels, n_times)`` of a model.

        ``name`` is a conditioning (the generator's own conditional mean,
        :meth:`conditional_mean`: what an encoding model predicts, free of the trial noise
        a finite mean of its samples keeps), a baseline (``'ridge'``, ``'train_mean'``) or
        a reference (the mean of its :attr:`n_signals` signals per image).
        """
        if name in CONDITIONINGS:
            return self.conditional_mean(name, train_overrides=train_overrides)
        if name in BASELINES:
            return self._baselines[name]
        if name in REFERENCES:
            return self.signals(name).mean(axis=1)
        raise ValueError(f"unknown model '{name}'; expected one of "
                         f"{CONDITIONINGS + BASELINES + REFERENCES}")

    def model_card(self, conditioning: str = "cross_attention", *, validate: bool = False,
                   n_boot: int = 500, **train_overrides) -> dict:
        """The model card of this run's ``conditioning`` generator (:mod:`analysis.model_card`).

        With ``validate``, its validation score goes into it: the generator's conditional
        mean on the validation concepts, which it never saw (:attr:`validation`), encoding
        score with a bootstrap CI over the validation images, beside ridge's there. Without,
        a score written before is kept.
        """
        from .model_card import read_model_card, write_model_card

        trained = self.model(conditioning, **train_overrides)
        if not validate:
            try:
                validation = read_model_card(trained.path.parent)["validation"]
            except FileNotFoundError:
                validation = None
        else:
            validation = {
                "metric": "encoding score (mean r over channels × times)",
                **self.validation_encoding_score(conditioning, n_boot=n_boot, **train_overrides),
                "baseline": "ridge", "n_images": int(self.validation.dataset.test.n_images),
                "note": ("This generator's conditional mean (x̂0 at t = T) on the validation "
                         "concepts, held out from its training."),
            }
        return write_model_card(trained, self.dataset, validation=validation)

    def validation_encoding_score(self, conditioning: str, *, n_boot: int = 500,
                                  **train_overrides) -> dict:
        """Encoding score of the ``conditioning`` generator's conditional mean on the
        validation concepts (:attr:`validation`), beside ridge's there.

        Returns
        -------
        dict
            ``value``, ``ci_low`` / ``ci_high`` (bootstrap over validation images),
            ``pct_of_ceiling`` and ``ceiling`` (``'exact'`` on simulated data, else
            ``'split-half'``), and ``baseline_value`` (ridge's encoding score).
        """
        from .evaluation.metrics import fidelity_summary, mean_encoding_score

        val = self.validation
        mean = val.prediction(conditioning, train_overrides=train_overrides or None)
        noiseless = None if val.dataset.noiseless is None else val.dataset.noiseless["test"]
        method = "exact" if noiseless is not None else "split-half"
        table = fidelity_summary(mean, val.target, noiseless, n_boot=n_boot)
        row = table.query("metric == 'encoding_score' and ceiling_method == @method").iloc[0]
        return {"value": float(row["value"]), "ci_low": float(row["ci_low"]),
                "ci_high": float(row["ci_high"]), "pct_of_ceiling": float(row["pct_of_ceiling"]),
                "ceiling": method,
                "baseline_value": mean_encoding_score(val.prediction("ridge"), val.target_average)}

    @cached_property
    def validation(self) -> "SubjectRun":
        """This subject with its validation concepts as the test set: what choices are
        scored on (:func:`analysis.validation.split_validation`).

        It shares this run's features, work folder, training data and so its generators
        (:attr:`dataset` holds the fitting concepts only), which train with a learning curve
        on the validation concepts (:meth:`learning_curve_monitor`). It scores against every
        repetition of the validation images (no ``real_half``: its references other than
        ``ridge_noise`` / ``mean_noise`` are unavailable). The real test images play no
        part in it.
        """
        if self.images:
            return self  # already a validation run (or a subset of one)
        other = SubjectRun(self.dataset_name, self.root, self.subject, self.profile,
                           self.workdir, self.device, self.progress)
        other.conditionings = self.conditionings
        other.images = "validation"
        other.__dict__["dataset"] = self._split[1]
        other.__dict__["features"] = self.features
        signals = other.dataset.test.signals
        other.__dict__["test_halves"] = (signals[:, :0], signals)
        other.__dict__["curve_monitor"] = other.learning_curve_monitor()
        other._models = self._models  # the same training data: the same generators
        return other

    def with_test_subset(self, max_images: int) -> "SubjectRun":
        """This run scored on at most ``max_images`` of its test images: all of them where
        there are no more, else ``max_images`` evenly spaced ones (the same ones on every
        call; images are stored concept by concept, so the subset spans the concepts).

        For sweeps whose cost grows with the images scored: THINGS-MEG's validation split
        has 2218 images, 11 × its test set. The subset shares this run's training data,
        features and trained models (the same checkpoints); its test repetitions keep their
        split into :attr:`test_halves`.
        """
        n = self.dataset.test.n_images
        if max_images < 1:
            raise ValueError(f"max_images: expected at least 1, found {max_images}")
        if n <= max_images:
            return self
        rows = np.unique(np.linspace(0, n - 1, max_images).round().astype(int))
        other = SubjectRun(self.dataset_name, self.root, self.subject, self.profile,
                           self.workdir, self.device, self.progress)
        other.conditionings = self.conditionings
        dataset = self.dataset
        noiseless = None if dataset.noiseless is None else dict(
            dataset.noiseless, test=dataset.noiseless["test"][rows])
        other.__dict__["dataset"] = replace(dataset, test=dataset.test.take(rows),
                                            noiseless=noiseless)
        other.__dict__["features"] = self.features
        other.__dict__["test_halves"] = tuple(half[rows] for half in self.test_halves)
        other.images = f"{self.images or 'test'}-{len(rows)}of{n}"
        other._models = self._models  # the same training data: the same generators
        other.__dict__["validation"] = self.validation
        return other

    @cached_property
    def curve_monitor(self):
        """The training monitor every generator of this subject trains with: the
        validation run's :meth:`learning_curve_monitor`."""
        return self.validation.curve_monitor

    def learning_curve_monitor(self):
        """A training monitor: the encoding score (mean r over channel × time points, no
        ceiling) of a model's conditional mean against :attr:`target_average`. On the
        validation run (:attr:`validation`) it is every generator's learning curve, recorded
        in its checkpoint."""
        from .evaluation.metrics import mean_encoding_score

        cond = match_features(self.features, self.dataset.test.image_ids)

        def monitor(trained: TrainedModel) -> dict:
            mean = trained.conditional_mean(cond, n_draws=4, device=self.device)
            return {"encoding_r": mean_encoding_score(mean, self.target_average)}

        return monitor

    # ------------------------------------------------------------------ references

    @cached_property
    def test_halves(self) -> tuple[np.ndarray, np.ndarray]:
        """The test repetitions split in two, the same split per image (seed 0):
        ``(held_out, target)`` of shapes (n_images, n_reps // 2, ...) and
        (n_images, n_reps - n_reps // 2, ...). ``real_half`` draws from ``held_out``; checks
        that compare it with the models score every signal against ``target``."""
        from .references import split_repetitions

        return split_repetitions(self.dataset.test.signals, seed=0)

    @property
    def target(self) -> np.ndarray:
        """The test repetitions every check scores against, (n_images, n_target_reps,
        n_channels, n_times): the second of :attr:`test_halves`, so that ``real_half`` (drawn
        from the first) is scored like any generator."""
        return self.test_halves[1]

    @cached_property
    def target_average(self) -> np.ndarray:
        """:attr:`target` averaged over repetitions, (n_images, n_channels, n_times)."""
        return self.target.mean(axis=1)

    @property
    def noise_trials(self) -> tuple[np.ndarray, str]:
        """Repeated trials the references' trial noise is estimated from, and where they come
        from: the training trials, or, where each training image was shown once (THINGS-MEG),
        the held-out half of the test repetitions (``real_half``'s, never the target half
        that every signal is scored against)."""
        if self.dataset.train.n_reps >= 2:
            return self.dataset.train.signals, "training trials"
        return self.test_halves[0], "held-out test repetitions (training images shown once)"

    @cached_property
    def residual_noise(self):
        """:class:`~analysis.references.ResidualNoise` fit on :attr:`noise_trials`."""
        from .references import ResidualNoise

        return ResidualNoise().fit(self.noise_trials[0])

    def signals(self, name: str, n: int | None = None, seed: int = 0) -> np.ndarray:
        """``n`` test signals per image of a generator, baseline or reference (see
        :mod:`analysis.names`), shape (n_test_images, n, n_channels, n_times).

        Generators give their first ``n`` samples; a baseline its prediction ``n`` times
        (it has no spread); references are drawn as :mod:`analysis.references` describes,
        ``seed`` seeding their noise (each drawn once per session). ``n`` defaults to
        :attr:`n_signals`. ``oracle`` needs simulated data.
        """
        n = self.n_signals if n is None else int(n)
        if name in REFERENCES:
            key = (name, n, seed)
            if key not in self._references:
                self._references[key] = self._reference(name, n, seed)
            return self._references[key]
        if name in CONDITIONINGS:
            samples = self.generated(name)
            if samples.shape[1] < n:
                raise ValueError(f"n: '{name}' has {samples.shape[1]} samples per image, "
                                 f"found a request for {n}")
            return samples[:, :n]
        if name in BASELINES:
            return np.repeat(self.prediction(name)[:, None], n, axis=1)
        raise ValueError(f"unknown model or reference '{name}'; expected one of "
                         f"{CONDITIONINGS + BASELINES + REFERENCES}")

    @property
    def n_signals(self) -> int:
        """Signals per image that every generator and reference can give alike: the
        profile's samples per image, at most the held-out repetitions ``real_half`` has."""
        return min(self.profile.sampling.n_samples, self.test_halves[0].shape[1])

    def _reference(self, name: str, n: int, seed: int) -> np.ndarray:
        from . import references
        from .data.simulated import oracle_trials

        if name == "oracle":
            return oracle_trials(self.dataset, n, seed=seed)
        if name == "real_half":
            if n > self.test_halves[0].shape[1]:  # cycling would repeat repetitions
                raise ValueError(f"n: real_half holds {self.test_halves[0].shape[1]} "
                                 f"repetitions per image, found a request for {n}")
            return references.real_half(self.test_halves[0], n)
        if name == "ridge_noise":
            return references.mean_plus_noise(self.prediction("ridge"), self.residual_noise, n,
                                              seed=seed + 1)
        if name == "mean_noise":
            return references.mean_plus_noise(self.prediction("train_mean"),
                                              self.residual_noise, n, seed=seed + 2)
        return references.shuffled(self.signals(SHUFFLED_SOURCE, n), seed=seed)

    # ------------------------------------------------------------------ results

    @property
    def results_dir(self) -> Path:
        return results_dir(self.workdir, self.dataset_name, self.subject)

    def save_result(self, name: str, frame: pd.DataFrame) -> Path:
        """Write a result table (atomically) for the group pages; adds subject columns."""
        folder = self.results_dir
        folder.mkdir(parents=True, exist_ok=True)
        frame = frame.assign(dataset=self.dataset_name, subject=self.subject)
        return atomic_write_text(folder / f"{name}.csv", frame.to_csv(index=False))

    def provenance(self) -> dict:
        """Seeds, versions, device, encoder weights and timings of this run."""
        import torch

        info = {"dataset": self.dataset_name, "subject": self.subject, "root": str(self.root),
                "profile": self.profile.name, "encoder": self.encoder_label,
                "encoder_digest": self.features.meta.get("weights_digest"),
                "sampling": asdict(self.profile.sampling), "train": dict(self.profile.train),
                "device": self.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                "versions": package_versions(),
                "timings_s": {k: round(v, 2) for k, v in self._timings.items()}}
        info["checkpoints"] = {k: str(m.path) for k, m in self._models.items()}
        return info


def subject_runs(dataset: str, root: str | Path, subjects, profile: str | Profile = "ci",
                 workdir: str | Path = ".", device: str | None = None, *,
                 encoder: EncoderConfig | dict | None = None, progress: bool = False
                 ) -> dict[int, SubjectRun]:
    """A group page's runs, by subject, in the given order: the first subject is the one
    with the ablation's conditionings (as the runner executes its pages)."""
    subjects = [int(s) for s in subjects]
    return {s: SubjectRun(dataset, root, s, profile, workdir, device, progress=progress,
                          encoder=encoder, ablation=s == subjects[0])
            for s in subjects}


def ensure_dataset(dataset: str, root: str | Path | None, profile: str | Profile = "ci",
                   workdir: str | Path = ".", subjects: list[int] | None = None) -> Path:
    """The data folder of a notebook's parameters, simulating the built-in dataset if needed.

    Parameters
    ----------
    dataset : str
        ``'simulated'``, ``'things-eeg2'`` or ``'things-meg'``.
    root : path or None
        The dataset folder. ``None`` is allowed for ``'simulated'`` only and means
        ``<workdir>/data/simulated/<profile name>``.
    profile : str or Profile
        Its ``simulation`` size is what gets simulated.
    workdir : path
        Work folder of the run (see the module docstring).
    subjects : list of int, optional
        Subjects that must exist (simulated data only); default all subjects of the
        profile. Subjects already simulated are never rewritten.

    Returns
    -------
    Path
        The folder to pass as ``root`` to :class:`SubjectRun`.

    Raises
    ------
    ValueError
        ``root`` is None for a real dataset.
    FileExistsError
        ``root`` holds a simulated dataset made with other settings.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if dataset != "simulated":
        if root is None:
            raise ValueError(f"root: expected the folder of the '{dataset}' data, found None "
                             "(only dataset='simulated' can be created on the fly)")
        return Path(root)
    from .data.simulated import SimulationConfig, simulate_dataset

    # Same folder as `python -m analysis simulate --profile NAME` writes to.
    root = Path(workdir) / "data" / "simulated" / profile.name if root is None else Path(root)
    wanted = list(subjects or range(1, profile.simulation.n_subjects + 1))
    manifest = root / "simulation.json"
    config = SimulationConfig(size=profile.simulation)
    saved = json.loads(manifest.read_text()) if manifest.is_file() else {}
    done = set(saved.get("subjects", []))
    # A folder simulated by another version (e.g. before trial effects) is refused by
    # simulate_dataset with a message naming it, rather than silently reused.
    if not set(wanted) <= done or saved.get("identity", config.identity()) != config.identity():
        logger.info("simulating subjects %s of the built-in dataset into %s", wanted, root)
        simulate_dataset(root, config, subjects=wanted, progress=False)
    return root


def load_results(workdir: str | Path, dataset: str, name: str) -> pd.DataFrame:
    """Concatenate one result table over every subject that has it.

    Raises
    ------
    FileNotFoundError
        If no subject has saved this table yet (run the per-subject notebooks first).
    """
    files = sorted((Path(workdir) / "results" / dataset).glob(f"sub-*/{name}.csv"))
    if not files:
        raise FileNotFoundError(f"no subject of '{dataset}' has a '{name}' table under "
                                f"{Path(workdir) / 'results'}; run the per-subject notebooks first")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
