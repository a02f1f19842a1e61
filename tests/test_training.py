"""Training: train-or-load, atomic checkpoints, resume-after-interrupt, generation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from analysis.config import SimulationSize
from analysis.data import simulated as sim
from analysis.encoders import ImageFeatures
from analysis.models.conditioning import Condition, FeatureScaler
from analysis.training import (FINAL, PARTIAL, Normalizer, TrainConfig, checkpoint_key,
                               match_features, model_config_for, train_or_load)

SIZE = SimulationSize(n_subjects=1, n_train_concepts=12, n_train_images_per_concept=2,
                      n_test_concepts=6, n_train_reps=2, n_test_reps=4, image_size=32)
UNET = dict(base_channels=8, channel_mults=(1, 2), context_dim=8, concat_maps=4, heads=2)
TRAIN = TrainConfig(epochs=3, batch_size=16, warmup_steps=2, n_diffusion_steps=100)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    sim.simulate_dataset(root, sim.SimulationConfig(size=SIZE), progress=False)
    return sim.load_simulated(root, 1)


@pytest.fixture(scope="module")
def features(dataset):
    """Features that carry the image attributes linearly (stand-in for an encoder)."""
    ids = dataset.train.image_ids + dataset.test.image_ids
    rng = np.random.default_rng(0)
    pooled = rng.standard_normal((len(ids), 6)).astype(np.float32)
    tokens = rng.standard_normal((len(ids), 3, 5)).astype(np.float16)
    return ImageFeatures(ids, pooled, tokens, {"model": "test", "weights_digest": "d0",
                                               "cache_key": "k0", "random_init": True})


def train(dataset, features, root, conditioning="cross_attention", config=TRAIN, **kw):
    model_config = model_config_for(dataset, features, conditioning, **UNET)
    return train_or_load(dataset, features, model_config, config, root, device="cpu",
                         progress=False, **kw)


def test_training_writes_a_finished_checkpoint_and_loss_log(dataset, features, tmp_path):
    trained = train(dataset, features, tmp_path)
    assert trained.path.name == FINAL and trained.path.is_file()
    assert not (trained.path.parent / PARTIAL).exists()
    assert not trained.loaded and len(trained.losses) == 3
    assert all(np.isfinite(trained.losses))
    log = (trained.path.parent / "losses.csv").read_text().splitlines()
    assert log[0] == "epoch,loss" and len(log) == 4
    assert not list(trained.path.parent.glob(".*tmp"))  # no temporary files left
    assert f"sub-{dataset.meta['subject']}" in str(trained.path)


def test_second_call_loads_and_does_not_retrain(dataset, features, tmp_path, monkeypatch):
    first = train(dataset, features, tmp_path)
    monkeypatch.setattr("analysis.training.UNet1D.forward",
                        lambda *a, **k: pytest.fail("a finished checkpoint was retrained"))
    second = train(dataset, features, tmp_path)
    assert second.loaded and second.losses == first.losses


def test_a_different_config_gets_a_different_checkpoint(dataset, features):
    model_config = model_config_for(dataset, features, "cross_attention", **UNET)
    base = checkpoint_key(dataset, features, model_config, TRAIN)
    assert base != checkpoint_key(dataset, features, model_config,
                                  dataclasses.replace(TRAIN, seed=1))
    assert base != checkpoint_key(dataset, features,
                                  dataclasses.replace(model_config, conditioning="concat"), TRAIN)
    other_weights = dataclasses.replace(features, meta={**features.meta, "weights_digest": "d1"})
    assert base != checkpoint_key(dataset, other_weights, model_config, TRAIN)


class Interrupted(Exception):
    pass


def test_interrupted_training_resumes_and_matches_an_uninterrupted_run(dataset, features, tmp_path):
    reference = train(dataset, features, tmp_path / "whole")

    def crash(epoch, step):
        if epoch == 1 and step == 1:  # mid-way through the second epoch
            raise Interrupted

    with pytest.raises(Interrupted):
        train(dataset, features, tmp_path / "split", on_step=crash)
    folder = next((tmp_path / "split").rglob(PARTIAL)).parent
    assert not (folder / FINAL).exists()  # a partial run never looks finished
    state = torch.load(folder / PARTIAL, weights_only=True)
    assert state["epoch"] == 1 and len(state["losses"]) == 1

    resumed = train(dataset, features, tmp_path / "split")
    assert not resumed.loaded
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-5)
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)


def test_loss_decreases_and_generation_has_the_data_shape(dataset, features, tmp_path):
    config = dataclasses.replace(TRAIN, epochs=8, lr=3e-3)
    trained = train(dataset, features, tmp_path, config=config)
    # An untrained v-predictor outputs 0: loss = E[v²] = 1 on unit-variance data.
    assert trained.losses[0] > 0.9 and np.mean(trained.losses[-2:]) < 0.9 * trained.losses[0]
    cond = match_features(features, dataset.test.image_ids)
    signals = trained.generate(cond, n_samples=3, steps=5, seed=1, device="cpu")
    assert signals.shape == (6, 3, 17, 100) and signals.dtype == np.float32
    assert np.isfinite(signals).all()
    np.testing.assert_array_equal(signals, trained.generate(cond, n_samples=3, steps=5, seed=1,
                                                            device="cpu"))
    # Generated signals live in data units, not the normalised diffusion space.
    assert 0.2 < signals.std() / dataset.test.signals.std() < 5


@pytest.mark.parametrize("conditioning", ["concat", "film", "none"])
def test_every_conditioning_trains_and_samples(dataset, features, tmp_path, conditioning):
    trained = train(dataset, features, tmp_path, conditioning=conditioning,
                    config=dataclasses.replace(TRAIN, epochs=1))
    # Only cross-attention reads the tokens; the others never gather or scale them.
    assert trained.feature_scaler.tokens_mean.shape[0] == 0
    cond = match_features(features, dataset.test.image_ids[:2])
    signals = trained.generate(cond, method="ddpm", guidance_scale=2.0, device="cpu")
    assert signals.shape == (2, 1, 17, 100) and np.isfinite(signals).all()


@pytest.mark.parametrize("conditioning", ["cross_attention", "film"])
def test_a_network_that_reads_leading_feature_components_trains_loads_and_samples(
        dataset, features, tmp_path, conditioning):
    model_config = model_config_for(dataset, features, conditioning, **UNET, feature_components=2)
    assert (model_config.embed_dim, model_config.token_dim) == (2, 2)  # of 6 and 5
    trained = train_or_load(dataset, features, model_config, dataclasses.replace(TRAIN, epochs=1),
                            tmp_path, device="cpu", progress=False)
    assert trained.feature_scaler.pooled_basis.shape == (6, 2)
    assert (trained.feature_scaler.tokens_basis is None) == (conditioning != "cross_attention")
    again = train_or_load(dataset, features, model_config, dataclasses.replace(TRAIN, epochs=1),
                          tmp_path, device="cpu", progress=False)
    assert again.loaded  # the bases came back from the checkpoint
    torch.testing.assert_close(again.feature_scaler.pooled_basis, trained.feature_scaler.pooled_basis)
    cond = match_features(features, dataset.test.image_ids[:2])
    signals = again.generate(cond, method="ddim", steps=3, device="cpu")
    assert signals.shape == (2, 1, 17, 100) and np.isfinite(signals).all()
    # Keeping every component is another network, with another checkpoint.
    full = model_config_for(dataset, features, conditioning, **UNET)
    assert checkpoint_key(dataset, features, full, TRAIN) != checkpoint_key(
        dataset, features, model_config, TRAIN)


def test_normalizer_removes_the_grand_average_and_keeps_the_topography():
    rng = np.random.default_rng(0)
    erp = np.sin(np.linspace(0, 3, 10))  # shared by all images
    examples = (rng.standard_normal((80, 3, 10)) * [[[1.0], [5.0], [2.0]]] + 7 + erp)
    examples = examples.astype(np.float32)
    normalizer = Normalizer.fit(examples)
    torch.testing.assert_close(normalizer.offset, torch.as_tensor(examples.mean(axis=0)))
    z = normalizer.forward(torch.as_tensor(examples))
    assert z.std(correction=0).item() == pytest.approx(1.0, rel=1e-4)  # unit-variance targets
    assert z.mean(dim=0).abs().max() < 1e-5  # the grand-average response is removed
    torch.testing.assert_close(normalizer.inverse(z), torch.as_tensor(examples))
    per_channel = z.std(dim=(0, 2))
    assert per_channel[1] / per_channel[0] == pytest.approx(5.0, rel=0.3)  # not whitened away
    # Accumulated over blocks (7 examples of 30 values each here): the same statistics.
    blocked = Normalizer.fit(torch.as_tensor(examples), chunk=7 * 30 + 5)
    torch.testing.assert_close(blocked.offset, normalizer.offset)
    wide = examples.astype(np.float64)
    assert blocked.scale == pytest.approx(float((wide - wide.mean(axis=0)).std()), rel=1e-9)
    assert blocked.scale == pytest.approx(normalizer.scale, rel=1e-9)
    with pytest.raises(ValueError, match=r"\(n_examples, n_channels, n_times\), found \(80, 30\)"):
        Normalizer.fit(examples.reshape(80, 30))


def test_feature_scaler_uses_training_statistics_and_checks_shapes():
    rng = np.random.default_rng(0)
    pooled = torch.as_tensor(rng.normal(20.0, 3.0, (50, 4)), dtype=torch.float32)
    tokens = torch.as_tensor(rng.normal(-5.0, 0.5, (50, 3, 2)), dtype=torch.float32)
    scaler = FeatureScaler.fit(Condition(pooled, tokens))
    z = scaler(Condition(pooled, tokens))
    assert z.pooled.mean(0).abs().max() < 1e-4 and z.tokens.mean(0).abs().max() < 1e-4
    torch.testing.assert_close(z.pooled.std(0), torch.ones(4), rtol=1e-4, atol=1e-4)
    # New images are scaled with the training statistics, not their own.
    shifted = scaler(Condition(pooled[:2] + 3.0, tokens[:2]))
    torch.testing.assert_close(shifted.pooled - z.pooled[:2], 3.0 / scaler.pooled_std.expand(2, 4))
    with pytest.raises(ValueError, match=r"pooled \(5,\).*expected \(4,\)"):
        scaler(Condition(torch.zeros(2, 5), tokens[:2]))
    with pytest.raises(ValueError, match="at least 2 images"):
        FeatureScaler.fit(Condition(pooled[:1], tokens[:1]))


def test_missing_features_are_named(dataset, features):
    with pytest.raises(KeyError, match="2 images have no features"):
        match_features(features, ["nope-1", "nope-2"])


def test_bad_generation_method_is_refused(dataset, features, tmp_path):
    trained = train(dataset, features, tmp_path, config=dataclasses.replace(TRAIN, epochs=1))
    with pytest.raises(ValueError, match=r"method must be one of \('ddim', 'dpmpp', 'ddpm'\)"):
        trained.generate(match_features(features, dataset.test.image_ids[:1]), method="euler")


def test_lr_factor_warms_up_then_decays():
    from analysis.training import lr_factor

    constant = TrainConfig(warmup_steps=4)
    assert [lr_factor(k, 20, constant) for k in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(19, 20, constant) == 1.0
    cosine = TrainConfig(warmup_steps=4, lr_decay="cosine")
    assert lr_factor(3, 20, cosine) == 1.0           # end of the warm-up
    assert lr_factor(11, 20, cosine) == pytest.approx(0.5)  # half-way through the decay
    assert lr_factor(19, 20, cosine) == pytest.approx(0.0)  # the last step
    with pytest.raises(ValueError, match="lr_decay"):  # refused before any training
        TrainConfig(warmup_steps=4, lr_decay="step")


DDP_WORKER = '''
import hashlib, json, pickle, sys
import torch
from analysis.training import train_or_load

with open(sys.argv[1], "rb") as fh:
    job = pickle.load(fh)
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else None
steps = []
trained = train_or_load(job["dataset"], job["features"], job["model"], job["train"], job["root"],
                        device="cpu", progress=False, on_step=lambda epoch, step: steps.append(epoch))
rank = torch.distributed.get_rank()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in trained.model.parameters()))
with open(f"{job['out']}/rank{rank}.json", "w") as fh:
    json.dump({"steps": steps, "losses": trained.losses, "weights": digest.hexdigest(),
               "world": torch.distributed.get_world_size()}, fh)
'''


def test_ddp_two_gloo_processes_take_equal_steps_and_finish(dataset, features, tmp_path):
    """Two CPU processes under torchrun (gloo) train to completion on 17 examples with
    batch 4: sharding ``order[rank::2]`` alone would give rank 0 three steps an epoch and
    rank 1 two, and DDP's all-reduce would wait forever for the missing step."""
    import pickle
    import subprocess
    import sys

    n = 17  # = 2 · 4 · 2 + 1: not a multiple of world × batch
    train_split = dataclasses.replace(
        dataset.train, signals=dataset.train.signals[:n], image_ids=dataset.train.image_ids[:n],
        concepts=dataset.train.concepts[:n], image_paths=dataset.train.image_paths[:n])
    small = dataclasses.replace(dataset, train=train_split, noiseless=None)
    config = dataclasses.replace(TRAIN, epochs=2, batch_size=4, targets="average")
    job = {"dataset": small, "features": features, "train": config,
           "model": model_config_for(small, features, "cross_attention", **UNET),
           "root": str(tmp_path / "checkpoints"), "out": str(tmp_path)}
    (tmp_path / "job.pkl").write_bytes(pickle.dumps(job))
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "worker.py"), str(tmp_path / "job.pkl")],
        capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    # 17 // 2 = 8 examples per rank, 2 batches of 4, in each of the 2 epochs.
    assert ranks[0]["steps"] == ranks[1]["steps"] == [0, 0, 1, 1]
    assert ranks[0]["losses"] == ranks[1]["losses"] and len(ranks[0]["losses"]) == 2
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged
    finished = list((tmp_path / "checkpoints").rglob(FINAL))
    assert len(finished) == 1 and not list((tmp_path / "checkpoints").rglob(PARTIAL))


def test_monitor_records_a_learning_curve_without_changing_the_weights(dataset, features, tmp_path):
    plain = train(dataset, features, tmp_path / "plain")
    cond = match_features(features, dataset.test.image_ids)
    seen = []

    def monitor(view):
        seen.append(view.model.training)
        mean = view.conditional_mean(cond, n_draws=2, device="cpu")
        return {"mean_sd": float(mean.std(axis=0).mean())}

    watched = train(dataset, features, tmp_path / "watched", monitor=monitor, monitor_every=2)
    assert [row["epoch"] for row in watched.info["curve"]] == [2, 3]  # every 2nd and the last
    assert all(row["step"] == row["epoch"] * 3 for row in watched.info["curve"])  # 48 / 16
    log = (watched.path.parent / "validation.csv").read_text().splitlines()
    assert log[0] == "epoch,step,mean_sd" and len(log) == 3
    assert watched.losses == plain.losses
    for name, value in plain.model.state_dict().items():
        torch.testing.assert_close(watched.model.state_dict()[name], value)
    # Loading the finished checkpoint keeps its curve.
    assert train(dataset, features, tmp_path / "watched").info["curve"] == watched.info["curve"]


def test_conditional_mean_is_the_denoiser_output_at_the_last_step(dataset, features, tmp_path):
    trained = train(dataset, features, tmp_path)
    cond = match_features(features, dataset.test.image_ids)
    mean = trained.conditional_mean(cond, n_draws=3, device="cpu")
    assert mean.shape == (6, 17, 100) and mean.dtype == np.float32
    # By hand: x̂0 = sqrt(ᾱ) x_T - sqrt(1 - ᾱ) v at the last step, averaged over draws.
    d, last = trained.diffusion, trained.diffusion.n_steps - 1
    g = torch.Generator().manual_seed(0)
    scaled = trained.feature_scaler(cond)
    total = 0
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(6, 17, 100, generator=g)
            v = trained.model(x, torch.full((6,), last), scaled)
            a = d.schedule.sqrt_alphas_cumprod[last].item()
            b = d.schedule.sqrt_one_minus_alphas_cumprod[last].item()
            total = total + (a * x - b * v) / 3
    np.testing.assert_allclose(mean, trained.normalizer.inverse(total).numpy(), rtol=1e-4, atol=1e-4)


def test_oracle_conditioning_learns_beyond_the_unconditional_model(tmp_path):
    """Trained on the simulator's true attributes (ci-like size, ~300 steps), the
    generator's conditional mean must track the test images' true means, at least half as
    well as ridge on the same attributes; the unconditional model's cannot (its mean is the
    same response for every image, up to start noise)."""
    from analysis.evaluation.metrics import encoding_score
    from analysis.evaluation.stats import mean_ignoring_nan
    from analysis.models.baselines import RidgeEncoder
    from analysis.readouts import oracle_image_features

    size = SimulationSize(n_subjects=1, n_train_concepts=60, n_train_images_per_concept=2,
                          n_test_concepts=20, n_train_reps=4, n_test_reps=4, image_size=32)
    sim.simulate_dataset(tmp_path / "sim", sim.SimulationConfig(size=size), progress=False)
    data = sim.load_simulated(tmp_path / "sim", 1)
    oracle = oracle_image_features(data)
    assert oracle.pooled.shape[0] == 60 * 2 + 20 and oracle.tokens.shape[1] == 1
    config = dataclasses.replace(TRAIN, epochs=40, batch_size=16, lr=3e-3, targets="average",
                                 t_power=0.3, warmup_steps=10)
    cond = match_features(oracle, data.test.image_ids)
    truth = data.noiseless["test"]
    train_x = match_features(oracle, data.train.image_ids).pooled.numpy()
    ridge = RidgeEncoder().fit(train_x, data.train.average()).predict(cond.pooled.numpy())
    scores = {"ridge": mean_ignoring_nan(encoding_score(ridge, truth))}
    for conditioning in ("cross_attention", "none"):
        # base_channels 8 (the module's UNET) is too narrow to learn the mapping at all.
        model_config = model_config_for(data, oracle, conditioning,
                                        **{**UNET, "base_channels": 16, "context_dim": 16})
        trained = train_or_load(data, oracle, model_config, config, tmp_path / "checkpoints",
                                device="cpu", progress=False)
        mean = trained.conditional_mean(cond, device="cpu")
        scores[conditioning] = mean_ignoring_nan(encoding_score(mean, truth))
    assert scores["cross_attention"] > 0.5 * scores["ridge"], scores
    assert scores["cross_attention"] > scores["none"] + 0.1, scores


def test_oracle_features_need_simulated_attributes(dataset):
    from analysis.readouts import oracle_image_features

    features = oracle_image_features(dataset)
    assert features.image_ids == dataset.train.image_ids + dataset.test.image_ids
    np.testing.assert_array_equal(features.tokens[:, 0].astype(np.float32),
                                  features.pooled.astype(np.float16).astype(np.float32))
    real = dataclasses.replace(dataset, meta={k: v for k, v in dataset.meta.items()
                                              if k != "image_attributes"})
    with pytest.raises(ValueError, match="image_attributes.csv"):
        oracle_image_features(real)


def test_trial_epochs_switch_from_averages_to_single_trials(dataset, features, tmp_path):
    config = dataclasses.replace(TRAIN, targets="average", trial_epochs=1)
    assert [config.targets_at(e) for e in range(3)] == ["average", "average", "trials"]
    assert config.final_targets == "trials"
    steps = []
    trained = train(dataset, features, tmp_path, config=config,
                    on_step=lambda epoch, step: steps.append(epoch),
                    monitor=lambda view: {"one": 1.0})
    # 24 averages / 16 = 2 steps in each of epochs 0 and 1, then 48 trials / 16 = 3 steps.
    assert steps == [0, 0, 1, 1, 2, 2, 2]
    assert [row["step"] for row in trained.info["curve"]] == [2, 4, 7]
    # Normalised as single trials, what the finished model generates.
    trials = dataset.train.signals.reshape(-1, *dataset.train.signals.shape[2:])
    assert trained.normalizer.scale == pytest.approx(Normalizer.fit(trials).scale)
    with pytest.raises(ValueError, match="targets must be 'average'"):
        TrainConfig(targets="trials", trial_epochs=1)
    with pytest.raises(ValueError, match=r"trial_epochs must lie in 0\.\.epochs"):
        TrainConfig(epochs=2, targets="average", trial_epochs=3)


def test_trial_epochs_draw_timesteps_with_their_own_power(dataset, features, tmp_path,
                                                          monkeypatch):
    """With ``trial_t_power`` the trial epochs draw t with it, the averages with
    ``t_power``; unset, the checkpoint key is the one of a config without the field."""
    from analysis.models.diffusion import GaussianDiffusion

    config = dataclasses.replace(TRAIN, targets="average", trial_epochs=1, t_power=0.3,
                                 trial_t_power=1.0)
    assert [config.t_power_at(e) for e in range(3)] == [0.3, 0.3, 1.0]
    assert dataclasses.replace(config, trial_t_power=None).t_power_at(2) == 0.3
    drawn = []
    original = GaussianDiffusion.sample_timesteps

    def recording(self, batch, generator=None, device=None):
        drawn.append(self.t_power)
        return original(self, batch, generator, device)

    monkeypatch.setattr(GaussianDiffusion, "sample_timesteps", recording)
    steps = []
    train(dataset, features, tmp_path, config=config,
          on_step=lambda epoch, step: steps.append(epoch))
    # 2 + 2 steps on averages, then 3 on trials (as in the test above).
    assert drawn == [0.3] * 4 + [1.0] * 3 and steps == [0, 0, 1, 1, 2, 2, 2]
    assert "trial_t_power" not in TRAIN.as_dict()
    assert config.as_dict()["trial_t_power"] == 1.0
    with pytest.raises(ValueError, match="trial_t_power must be > 0"):
        dataclasses.replace(config, trial_t_power=0.0)


def test_examples_per_epoch_caps_the_steps_of_each_epoch(dataset, features, tmp_path):
    config = dataclasses.replace(TRAIN, examples_per_epoch=20)
    steps = []
    trained = train(dataset, features, tmp_path, config=config,
                    on_step=lambda epoch, step: steps.append(epoch))
    # 48 single trials, at most 20 per epoch: ceil(20 / 16) = 2 steps in each of 3 epochs.
    assert steps == [0, 0, 1, 1, 2, 2] and trained.info["optimiser_steps"] == 6
    # A cap above the data is no cap: the full 48 / 16 = 3 steps per epoch.
    steps.clear()
    train(dataset, features, tmp_path, config=dataclasses.replace(TRAIN, examples_per_epoch=1000),
          on_step=lambda epoch, step: steps.append(epoch))
    assert steps == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="examples_per_epoch must be a positive integer"):
            TrainConfig(examples_per_epoch=bad)


def test_asking_for_a_model_another_process_is_training_waits_and_loads_it(dataset, features,
                                                                           tmp_path):
    import threading

    from analysis import training
    from analysis.files import exclusive_lock

    model_config = model_config_for(dataset, features, "film", **UNET)
    config = dataclasses.replace(TRAIN, epochs=1)
    key = checkpoint_key(dataset, features, model_config, config)
    folder = tmp_path / "simulated" / f"sub-{dataset.meta['subject']}" / f"film-{key[:12]}"
    asked = {}

    def ask():
        asked["model"] = train_or_load(dataset, features, model_config, config, tmp_path,
                                       device="cpu", progress=False)

    # The other process: it holds the model's lock while it trains.
    with exclusive_lock(folder.parent / f".{folder.name}.lock"):
        waiting = threading.Thread(target=ask)
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive() and not (folder / FINAL).exists()  # waits, trains nothing
        trained = training._train(folder, key, dataset, features, model_config, config,
                                  device="cpu", progress=False, on_step=None, monitor=None,
                                  monitor_every=1)
    waiting.join(60)
    assert asked["model"].loaded and asked["model"].path == trained.path
    for name, value in trained.model.state_dict().items():
        torch.testing.assert_close(asked["model"].model.state_dict()[name], value)


def test_bfloat16_precision_autocasts_the_forward_pass_on_the_cpu(dataset, features, tmp_path,
                                                                  monkeypatch):
    """``precision='bfloat16'`` runs the network under bfloat16 autocast on the CPU (the
    parameters stay float32); ``'auto'`` leaves the CPU in float32 and the checkpoint key
    of a config without the field."""
    from analysis.models.unet1d import UNet1D

    seen = []
    original = UNet1D.forward

    def recording(self, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UNet1D, "forward", recording)
    trained = train(dataset, features, tmp_path / "bf16",
                    config=dataclasses.replace(TRAIN, precision="bfloat16"))
    assert seen and set(seen) == {torch.bfloat16}
    assert all(np.isfinite(trained.losses))
    assert all(p.dtype == torch.float32 for p in trained.model.parameters())
    seen.clear()  # sampling runs the network as it was trained; the signals are float32
    signals = trained.generate(match_features(features, dataset.test.image_ids[:2]), steps=3,
                               device="cpu")
    assert set(seen) == {torch.bfloat16}
    assert signals.dtype == np.float32 and np.isfinite(signals).all()
    seen.clear()
    train(dataset, features, tmp_path / "auto")
    assert seen and set(seen) == {False}
    assert "precision" not in TRAIN.as_dict()
    assert dataclasses.replace(TRAIN, precision="bfloat16").as_dict()["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        dataclasses.replace(TRAIN, precision="float16")
