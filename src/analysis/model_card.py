"""A model card beside every checkpoint: what a trained generator is and how far to trust it.

``model-card.json`` (for programs) and ``model-card.md`` (for people) in the checkpoint
folder: the dataset, subject, channels, sampling rate, epoch window, units and
preprocessing of the training data; the image encoder and the digest of its weights; the
architecture, training configuration, optimiser steps and seconds; the validation score
with its CI where one was measured (on the validation concepts, held out from its training;
see :meth:`analysis.experiment.SubjectRun.model_card`); package versions and the
date. :func:`analysis.training.train_or_load` writes the card when training finishes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .data.contract import EpochedDataset
from .files import atomic_write_text
from .provenance import package_versions

JSON_NAME, MARKDOWN_NAME = "model-card.json", "model-card.md"


def build_card(trained, dataset: EpochedDataset, *, validation: dict | None = None) -> dict:
    """The card of ``trained`` (a :class:`~analysis.training.TrainedModel`) as a dict.

    ``validation``: ``{'metric', 'value', 'ci_low', 'ci_high', 'pct_of_ceiling',
    'baseline', 'baseline_value', 'n_images', 'note'}`` or None (not measured).
    """
    folder = trained.path.parent
    config = json.loads((folder / "config.json").read_text())
    info = trained.info
    curve = info.get("curve") or []
    return {
        "model": f"image2brain {trained.conditioning} generator",
        "checkpoint": folder.name,
        "data": {
            "dataset": dataset.meta["dataset"], "subject": str(dataset.meta["subject"]),
            "n_channels": len(dataset.ch_names), "channels": dataset.ch_names,
            "channel_types": sorted(set(dataset.info.get_channel_types())),
            "sfreq_hz": dataset.sfreq,
            "epoch_s": [round(float(dataset.times[0]), 4), round(float(dataset.times[-1]), 4)],
            "units": dataset.meta["units"], "preprocessing": dataset.meta["preprocessing"],
            "train_images": dataset.train.n_images, "train_repetitions": dataset.train.n_reps,
            "train_signals_sha256": config["dataset"]["sha256"],
        },
        "encoder": config["encoder"],
        "architecture": {"conditioning": trained.conditioning,
                         "n_parameters": config["n_parameters"], **config["model"]},
        "training": {**config["train"], "epochs_done": len(trained.losses),
                     "optimiser_steps": _steps(trained), "final_loss": trained.losses[-1],
                     "seconds": round(float(info.get("train_seconds", 0.0)), 1),
                     "device": config["device"], "world_size": config["world_size"],
                     "started": config["started"]},
        "validation": validation,
        "learning_curve": curve,
        "versions": package_versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _steps(trained) -> int:
    """Optimiser steps taken (-1 for checkpoints written before they were recorded)."""
    return int(trained.info.get("optimiser_steps", -1))


def card_markdown(card: dict) -> str:
    """The card as a short Markdown page."""
    data, enc, arch, train = card["data"], card["encoder"], card["architecture"], card["training"]
    val = card["validation"]
    if val is None:
        validation = ("not measured for this checkpoint (`SubjectRun.model_card(validate=True)` "
                      "measures it).")
    else:
        validation = (f"{val['metric']} {val['value']:.3f} [95 % CI {val['ci_low']:.3f}, "
                      f"{val['ci_high']:.3f}] on {val['n_images']} validation images"
                      + (f" ({val['pct_of_ceiling']:.1f} % of the ceiling)"
                         if val.get("pct_of_ceiling") is not None else "")
                      + (f"; {val['baseline']} {val['baseline_value']:.3f} on the same images"
                         if val.get("baseline") else "") + f". {val.get('note', '')}")
    steps = "" if train["optimiser_steps"] < 0 else f", {train['optimiser_steps']} optimiser steps"
    lines = [
        f"# Model card: {card['model']} ({card['checkpoint']})", "",
        f"- **Data**: {data['dataset']} sub-{data['subject']}, {data['n_channels']} "
        f"{'/'.join(data['channel_types'])} channels, {data['sfreq_hz']:g} Hz, epochs "
        f"{data['epoch_s'][0]:+.3f} … {data['epoch_s'][1]:+.3f} s, units {data['units']}; "
        f"{data['train_images']} training images × {data['train_repetitions']} repetitions.",
        f"- **Preprocessing**: {data['preprocessing']}",
        f"- **Image encoder**: {enc['label']} (weights digest {enc['weights_digest'][:12]}…).",
        f"- **Architecture**: 1-D U-Net, {arch['conditioning']} conditioning, "
        f"{arch['n_parameters']:,} parameters (base {arch['base_channels']}, levels "
        f"{arch['channel_mults']}).",
        f"- **Training**: {_epochs_text(train)}{steps}, batch "
        f"{train['batch_size']}, lr {train['lr']:g}, {train['prediction']}-prediction, "
        f"{train['schedule']} schedule, seed {train['seed']}; final loss "
        f"{train['final_loss']:.4f}; {train['seconds']:.0f} s on {train['device']}"
        f" × {train['world_size']}.",
        f"- **Validation**: {validation}",
        "- **Software**: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + ".",
        f"- **Written**: {card['written']} (training started {train['started']}).", "",
    ]
    return "\n".join(lines)


def _epochs_text(train: dict) -> str:
    epochs, trial = train["epochs_done"], train.get("trial_epochs") or 0
    if train["targets"] == "average" and trial:
        return (f"{epochs} epochs ({epochs - trial} on repetition averages, then {trial} on "
                "single trials)")
    return f"{epochs} epochs on {'repetition averages' if train['targets'] == 'average' else 'single trials'}"


def write_model_card(trained, dataset: EpochedDataset, *, validation: dict | None = None) -> dict:
    """Write ``model-card.json`` and ``model-card.md`` beside ``trained``'s checkpoint
    (atomically; an existing card is replaced) and return the card."""
    card = build_card(trained, dataset, validation=validation)
    folder = trained.path.parent
    atomic_write_text(folder / JSON_NAME, json.dumps(card, indent=1) + "\n")
    atomic_write_text(folder / MARKDOWN_NAME, card_markdown(card))
    return card


def read_model_card(folder: str | Path) -> dict:
    """The card in a checkpoint folder.

    Raises
    ------
    FileNotFoundError
        The folder has no ``model-card.json``.
    """
    path = Path(folder) / JSON_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model card (written when training finishes)")
    return json.loads(path.read_text())
