"""Training: one-step smoke tests on generated audio, the CLI end to end, exact resume after a
crash, refusals, and DistributedDataParallel over two CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import ROOT, music_like

from genreshift import checkpoint as ckpt
from genreshift import cli
from genreshift.errors import GenreshiftError
from genreshift.models.config import ClassifierConfig, DiscriminatorConfig, GeneratorConfig
from genreshift.models.discriminator import Discriminator
from genreshift.models.generator import Generator
from genreshift.train import cyclegan, loop
from genreshift.train import runtime as rtm
from genreshift.models.classifier import GenreClassifier
from genreshift.train.classifier import ContrastiveNet, info_nce, train_classifier
from genreshift.train.config import ClassifierTrainConfig, TrainConfig
from genreshift.train.cyclegan import ImagePool, State, train_cyclegan, train_step

GENRES = ("bright", "dark", "noisy")
N_MELS = 32

# Tiny networks and runs: the point is the machinery, not the music.
GEN = GeneratorConfig(channels=4, n_res=1, core_channels=16)
DISC = DiscriminatorConfig(channels=4, n_layers=2)
TRAIN = TrainConfig(steps=6, batch_size=2, frames=32, checkpoint_every=2, val_every=2,
                    log_every=1, sample_every=6, val_frames=64, val_windows=2, pool_size=3,
                    threads=1, device="cpu")


@pytest.fixture(scope="module")
def meldir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mel directory of three audibly different 'genres', 4 clips of 1.5 s each (so the
    random split gives every genre train, valid and test clips)."""
    from genreshift.data.tensors import build_tensors
    from genreshift.spectral import MelConfig

    root = tmp_path_factory.mktemp("corpus")
    sr = 22_050
    for gi, genre in enumerate(GENRES):
        (root / "src" / genre).mkdir(parents=True)
        for k in range(4):
            x = music_like(1.5, sr, seed=10 * gi + k)
            if genre == "bright":
                x = np.diff(x, prepend=0) * 3
            elif genre == "dark":
                x = np.convolve(x, np.ones(16) / 16, mode="same")
            else:
                x = x + 0.05 * np.random.default_rng(k).standard_normal(len(x))
            sf.write(root / "src" / genre / f"{k}.wav", np.clip(x, -1, 1).astype(np.float32), sr)
    build_tensors(root / "src", root / "mels", mel_config=MelConfig(n_mels=N_MELS), workers=1,
                  progress=False)
    return root / "mels"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run(meldir: Path, out: Path, **kw) -> State:
    args = {"a": "bright", "b": "rest", "config": TRAIN, "generator": GEN,
            "discriminator": DISC, "progress": False, **kw}
    return train_cyclegan(meldir, out, **args)


def weights(state: State) -> dict[str, dict[str, torch.Tensor]]:
    return {n: {k: v.clone() for k, v in ckpt.unwrap(getattr(state, n)).state_dict().items()}
            for n in ("g_ab", "g_ba", "d_a", "d_b")}


def assert_same_weights(x: dict, y: dict) -> None:
    for net, tensors in x.items():
        for key, value in tensors.items():
            assert torch.equal(value, y[net][key]), f"{net}.{key} differs"


# --------------------------------------------------------------------------- the step


def manual_state(config: TrainConfig, gen: GeneratorConfig = GEN) -> State:
    torch.manual_seed(0)
    g = replace(gen, n_mels=N_MELS)
    d = replace(DISC, n_mels=N_MELS)
    g_ab, g_ba, d_a, d_b = Generator(g), Generator(g), Discriminator(d), Discriminator(d)
    opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=1e-3)
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=1e-3)
    lin = rtm.LinearDecay(config.steps, config.decay_start)
    return State(g_ab=g_ab, g_ba=g_ba, d_a=d_a, d_b=d_b, opt_g=opt_g, opt_d=opt_d,
                 sched_g=torch.optim.lr_scheduler.LambdaLR(opt_g, lin),
                 sched_d=torch.optim.lr_scheduler.LambdaLR(opt_d, lin),
                 pool_a=ImagePool(config.pool_size, 1), pool_b=ImagePool(config.pool_size, 2),
                 config=config, device=torch.device("cpu"),
                 precision=rtm.resolve_precision("off", torch.device("cpu")))


def test_train_step_updates_every_network() -> None:
    config = replace(TRAIN, identity_until=1)
    # A direct-output generator: a residual one is the identity at step 0 (no cycle loss yet).
    state = manual_state(config, replace(GEN, residual=False))
    before = weights(state)
    batch = (torch.rand(2, N_MELS, 32) * 2 - 1, torch.rand(2, N_MELS, 32) * 2 - 1)
    losses = train_step(state, batch)
    assert set(losses) == set(cyclegan.LOSS_TERMS)
    assert all(np.isfinite(v) for v in losses.values())
    assert losses["identity_a"] > 0 and losses["cycle_a"] > 0
    assert state.step == 1 and len(state.pool_a.images) == 2
    after = weights(state)
    for net in after:
        assert any(not torch.equal(before[net][k], after[net][k]) for k in after[net]), net
    # The discriminators stay trainable after the generator step froze them.
    assert all(p.requires_grad for p in state.d_a.parameters())
    # identity_until=1: from the second step on the identity loss is off.
    assert train_step(state, batch)["identity_a"] == 0.0


def test_image_pool_mixes_history_and_resumes() -> None:
    pool = ImagePool(3, seed=5)
    for i in range(3):
        pool.query(torch.full((1, 2, 2), float(i)))
    saved = pool.state_dict()
    outs = [pool.query(torch.full((4, 2, 2), 9.0)) for _ in range(5)]
    values = {float(o[j, 0, 0]) for o in outs for j in range(4)}
    assert 9.0 in values and values & {0.0, 1.0, 2.0}  # new fakes and old ones
    again = ImagePool(3, seed=99)
    again.load_state_dict(saved, torch.device("cpu"))
    for o in outs:
        assert torch.equal(again.query(torch.full((4, 2, 2), 9.0)), o)


def test_restore_continues_or_restarts_the_random_streams() -> None:
    """Resumed by as many processes, a rank's streams continue exactly; by another number they
    cannot, and each restarts from (seed, rank, stream, step): reproducible for that count."""
    cpu = torch.device("cpu")
    pool = ImagePool(3, seed=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    ck = {"resume": {"step": 7, "opt": opt.state_dict(),
                     "ranks": [{"rng": rtm.rng_state(cpu), "pool": pool.state_dict()}]},
          "provenance": {"train_seconds": 12.5}}
    same = ImagePool(3, seed=99)
    assert loop.restore(ck, rtm.Runtime(cpu), parts={"opt": opt}, scaler=None,
                        streams={"pool": (same, 2)}, seed=0) == (7, 12.5)
    assert torch.equal(same.generator.get_state(), pool.generator.get_state())
    other = ImagePool(3, seed=99)
    loop.restore(ck, rtm.Runtime(cpu, rank=1, world_size=2), parts={}, scaler=None,
                 streams={"pool": (other, 2)}, seed=0)
    expected = torch.Generator().manual_seed(rtm.derive_seed(0, 1, 2, 7))
    assert torch.equal(other.generator.get_state(), expected.get_state())


def test_resolve_domains() -> None:
    genres = ["blues", "jazz", "rock", "pop"]
    a, b = rtm.resolve_domains(genres, "rest", "jazz")
    assert a.genres == ("blues", "rock", "pop") and b.genres == ("jazz",) and a.name == "rest"
    a, b = rtm.resolve_domains(genres, "rock,blues", "rest")
    assert a.genres == ("rock", "blues") and b.genres == ("jazz", "pop")
    for bad, msg in ((("rest", "rest"), "both be 'rest'"), (("rock", "rock,jazz"), "share rock"),
                     (("metal", "jazz"), "unknown genre.*metal"), ((",", "jazz"), "empty")):
        with pytest.raises(GenreshiftError, match=msg):
            rtm.resolve_domains(genres, *bad)
    with pytest.raises(GenreshiftError, match="leaves no genre"):
        rtm.resolve_domains(["rock", "jazz"], "rock,jazz", "rest")


# --------------------------------------------------------------------------- runs


def test_cli_trains_converter_and_classifier(meldir: Path, tmp_path: Path) -> None:
    """The CLI end to end: a classifier, then a converter validated with it; the files load and
    TensorBoard holds the losses, validation metrics, images and audio."""
    clf_dir, conv_dir = tmp_path / "clf", tmp_path / "conv"
    code = cli.main(["train", "classifier", "--data", str(meldir), "--out", str(clf_dir),
                     "--steps", "3", "--batch-size", "6", "--frames", "32", "--channels", "4",
                     "--n-blocks", "2", "--checkpoint-every", "3", "--val-windows", "2",
                     "--threads", "1", "--device", "cpu", "-q"])
    assert code == 0
    clf = ckpt.load_classifier(clf_dir / "classifier.pt")
    assert clf.genres == list(GENRES) and clf.provenance["steps"] == 3

    code = cli.main(["train", "cyclegan", "--data", str(meldir), "--a", "dark", "--b", "rest",
                     "--out", str(conv_dir), "--steps", "2", "--batch-size", "2",
                     "--frames", "32", "--val-frames", "64", "--val-windows", "2",
                     "--g-channels", "4", "--g-n-res", "1", "--g-core-channels", "16",
                     "--d-channels", "4", "--d-n-layers", "2", "--threads", "1",
                     "--device", "cpu", "--classifier", str(clf_dir / "classifier.pt"), "-q"])
    assert code == 0
    conv = ckpt.load_converter(conv_dir / "converter.pt")
    assert conv.a.genres == ("dark",) and conv.b.genres == ("bright", "noisy")
    assert conv.provenance["steps"] == 2 and conv.provenance["dataset"] == str(meldir)
    with torch.no_grad():
        assert conv.generator_to("noisy")(torch.zeros(1, N_MELS, 50)).shape == (1, N_MELS, 50)
    resume = ckpt.read_checkpoint(conv_dir / "resume.pt", kind="converter", role="resume")
    assert {"d_a", "d_b", "opt_g", "opt_d", "sched_g", "sched_d", "step", "ranks"} <= set(
        resume["resume"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(conv_dir / "tb"), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/g_total", "loss/cycle_a", "loss/identity_b", "loss/d_a", "lr/g",
            "time/step_s", "val/cycle_a", "val/p_target_ab", "val/acc_ab_input"} <= set(
        tags["scalars"])
    assert {"a2b/input", "a2b/converted", "a2b/cycled"} <= set(tags["images"])
    assert {"a2b/converted", "b2a/input"} <= set(tags["audio"])

    # Domains and settings come back from the run; a run is not overwritten by accident.
    assert cli.main(["train", "cyclegan", "--data", str(meldir), "--out", str(conv_dir),
                     "--a", "dark", "--b", "rest", "-q"]) == 1
    assert cli.main(["train", "cyclegan", "--data", str(meldir), "--out", str(conv_dir),
                     "--resume", "--lr-g", "0.1", "-q"]) == 1
    assert cli.main(["train", "cyclegan", "--data", str(meldir), "--out", str(conv_dir),
                     "--resume", "-q"]) == 0  # already at its last step: nothing to do


def test_resume_after_a_crash_matches_an_uninterrupted_run(meldir: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    """A run that dies at step 5 (last checkpoint at 4) and is resumed ends with exactly the
    weights of a run that was never interrupted: data, augmentation, image pool, optimiser and
    schedule all continue where they were (deterministic on CPU, same thread count)."""
    whole = weights(run(meldir, tmp_path / "whole"))

    real_step = cyclegan.train_step

    def dies_at_step_5(state, batch):
        if state.step == 4:
            raise KeyboardInterrupt  # as if the process were killed mid-way through step 5
        return real_step(state, batch)

    monkeypatch.setattr(cyclegan, "train_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run(meldir, tmp_path / "split")
    monkeypatch.setattr(cyclegan, "train_step", real_step)
    stored = ckpt.read_checkpoint(tmp_path / "split" / "resume.pt", role="resume")
    assert stored["resume"]["step"] == 4
    resumed = run(meldir, tmp_path / "split", resume=True)
    assert resumed.step == TRAIN.steps
    assert_same_weights(whole, weights(resumed))
    a = torch.load(tmp_path / "whole" / "resume.pt", weights_only=True)["resume"]["opt_g"]
    b = torch.load(tmp_path / "split" / "resume.pt", weights_only=True)["resume"]["opt_g"]
    for k in a["state"]:
        assert torch.equal(a["state"][k]["exp_avg_sq"], b["state"][k]["exp_avg_sq"])
    # The layout that runs in progress were written with, so that they can be resumed.
    stored = ckpt.read_checkpoint(tmp_path / "split" / "resume.pt", role="resume")["resume"]
    assert set(stored) == {"step", "train_config", "discriminator_config", "d_a", "d_b", "opt_g",
                           "opt_d", "sched_g", "sched_d", "scaler", "real_data", "init_from",
                           "ranks"}
    assert set(stored["ranks"][0]) == {"rng", "sampler_a", "sampler_b", "pool_a", "pool_b"}


def test_classifier_stop_and_resume_matches(meldir: Path, tmp_path: Path) -> None:
    cfg = ClassifierTrainConfig(steps=4, batch_size=6, checkpoint_every=10, val_every=10,
                                val_windows=2, threads=1, device="cpu")
    model = ClassifierConfig(channels=4, n_blocks=2, frames=32)
    whole = train_classifier(meldir, tmp_path / "whole", config=cfg, model=model,
                             progress=False)
    train_classifier(meldir, tmp_path / "split", config=cfg, model=model, stop_at=2,
                     progress=False)
    resumed = train_classifier(meldir, tmp_path / "split", config=cfg, model=model,
                               resume=True, progress=False)
    assert resumed.step == 4
    for k, v in ckpt.unwrap(whole.model).state_dict().items():
        assert torch.equal(v, ckpt.unwrap(resumed.model).state_dict()[k]), k
    loaded = ckpt.load_classifier(tmp_path / "split" / "classifier.pt")
    assert loaded.genres == list(GENRES)
    stored = ckpt.read_checkpoint(tmp_path / "split" / "resume.pt", kind="classifier",
                                  role="resume")["resume"]
    assert set(stored) == {"step", "train_config", "opt", "sched", "scaler", "real_data",
                           "ranks"}
    assert set(stored["ranks"][0]) == {"rng", "sampler"}
    # The refusals of the converter runs hold for the classifier too.
    again = {"config": cfg, "model": model, "progress": False}
    with pytest.raises(GenreshiftError, match="already holds a run"):
        train_classifier(meldir, tmp_path / "split", **again)
    with pytest.raises(GenreshiftError, match="lr: 0.001 in the run vs 0.01 now"):
        train_classifier(meldir, tmp_path / "split", resume=True,
                         **{**again, "config": replace(cfg, lr=1e-2)})
    with pytest.raises(GenreshiftError, match="classifier config does not match.*channels"):
        train_classifier(meldir, tmp_path / "split", resume=True,
                         **{**again, "model": replace(model, channels=8)})
    with pytest.raises(GenreshiftError, match="the run classifies bright, dark, noisy"):
        train_classifier(meldir, tmp_path / "split", genres=["bright", "dark"], resume=True,
                         **again)


def test_info_nce_rewards_matching_views() -> None:
    """log(2N - 1) when every view looks the same, near 0 when each view matches only its
    partner, and larger for unrelated views than for matching ones."""
    n = 8
    same = F.normalize(torch.ones(n, 4), dim=-1)
    assert info_nce(same, same, 0.1).item() == pytest.approx(np.log(2 * n - 1), rel=1e-5)
    distinct = torch.eye(n)
    assert info_nce(distinct, distinct, 0.05).item() < 1e-3
    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    z2 = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    noisy = F.normalize(z1 + 0.1 * torch.randn(n, 16, generator=g), dim=-1)
    assert info_nce(z1, noisy, 0.1) < info_nce(z1, z2, 0.1)


def test_classifier_with_real_recordings_resumes_exactly(meldir: Path, tmp_path: Path) -> None:
    """--real: the contrastive term trains the features on real excerpts (here the same mel
    directory stands in for them). The head lives in the resume file only, the inference file
    is a plain classifier, a stopped run resumes to the same weights, and resuming without
    --real is refused."""
    cfg = ClassifierTrainConfig(steps=4, batch_size=4, real_windows=3, checkpoint_every=10,
                                val_every=10, val_windows=2, threads=1, device="cpu")
    model = ClassifierConfig(channels=4, n_blocks=2, frames=32)
    common = {"config": cfg, "model": model, "real": meldir, "progress": False}
    whole = train_classifier(meldir, tmp_path / "whole", **common)
    train_classifier(meldir, tmp_path / "split", stop_at=2, **common)
    resumed = train_classifier(meldir, tmp_path / "split", resume=True, **common)
    a, b = ckpt.unwrap(whole.model).state_dict(), ckpt.unwrap(resumed.model).state_dict()
    assert any(k.startswith("head.") for k in a)
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
    # The term really trained the network: the head moved from its initialisation.
    fresh = ContrastiveNet(GenreClassifier(replace(model, n_mels=N_MELS, n_classes=3)))
    assert not torch.equal(fresh.head[0].weight, ckpt.unwrap(whole.model).head[0].weight)
    stored = ckpt.read_checkpoint(tmp_path / "split" / "resume.pt", kind="classifier",
                                  role="resume")
    assert stored["resume"]["real_data"] == str(meldir)
    assert set(stored["resume"]["ranks"][0]) == {"rng", "sampler", "real_sampler"}
    assert not any(k.startswith("head.") for k in stored["state_dict"]["classifier"])
    loaded = ckpt.load_classifier(tmp_path / "split" / "classifier.pt")
    assert loaded.provenance["real_data"] == str(meldir)
    assert isinstance(loaded.model, GenreClassifier)
    with pytest.raises(GenreshiftError, match="started with --real"):
        train_classifier(meldir, tmp_path / "split", resume=True,
                         **{**common, "real": None})
    with pytest.raises(GenreshiftError, match="--real-windows is 0"):
        train_classifier(meldir, tmp_path / "other", **{**common,
                                                        "config": replace(cfg, real_windows=0)})


def test_resume_refuses_other_data_settings(meldir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    run(meldir, out, stop_at=2)
    with pytest.raises(GenreshiftError, match="domain a was bright"):
        run(meldir, out, a="dark", resume=True)
    with pytest.raises(GenreshiftError, match="batch_size: 2 in the run vs 3 now"):
        run(meldir, out, config=replace(TRAIN, batch_size=3), resume=True)
    with pytest.raises(GenreshiftError, match="generator config does not match.*channels"):
        run(meldir, out, generator=replace(GEN, channels=8), resume=True)
    # Logistics may change between sessions.
    state = run(meldir, out, config=replace(TRAIN, log_every=3, checkpoint_every=3),
                resume=True)
    assert state.step == TRAIN.steps


# --------------------------------------------------------------------------- distributed


DDP_WORKER = """
import os, sys, torch
sys.path.insert(0, {tests!r})
from test_train import run, weights
state = run(__import__("pathlib").Path({meldir!r}), __import__("pathlib").Path({out!r}))
torch.save(weights(state), os.path.join({out!r}, "rank" + os.environ["RANK"] + ".pt"))
"""


def test_ddp_two_cpu_processes_end_identical(meldir: Path, tmp_path: Path) -> None:
    """torchrun, 2 processes, gloo: each rank draws different windows, DDP averages the
    gradients, so both end with identical weights (and rank 0 wrote them)."""
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(DDP_WORKER.format(
        tests=str(ROOT / "tests"), meldir=str(meldir), out=str(out))))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
        check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert_same_weights(rank0, rank1)
    saved = ckpt.read_checkpoint(out / "converter.pt")
    for k, v in saved["state_dict"]["g_ab"].items():
        assert torch.equal(v, rank0["g_ab"][k])
    assert saved["provenance"]["processes"] == 2
    # The two ranks really drew different data (else identical weights would prove nothing).
    stored = ckpt.read_checkpoint(out / "resume.pt")["resume"]["ranks"]
    assert len(stored) == 2
    assert not torch.equal(stored[0]["sampler_a"]["generator"],
                           stored[1]["sampler_a"]["generator"])


# --------------------------------------------------------------------------- GPU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_cuda_training_with_mixed_precision(meldir: Path, tmp_path: Path, amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    state = run(meldir, tmp_path / amp, config=replace(TRAIN, steps=3, device="cuda", amp=amp))
    assert state.device.type == "cuda" and state.step == 3
    assert (state.scaler is not None) == (amp == "fp16")
    conv = ckpt.load_converter(tmp_path / amp / "converter.pt", device="cuda")
    with torch.no_grad():
        y = conv.g_ab(torch.zeros(1, N_MELS, 40, device="cuda"))
    assert y.device.type == "cuda" and torch.isfinite(y).all()
    resumed = run(meldir, tmp_path / amp, resume=True,
                  config=replace(TRAIN, steps=3, device="cuda", amp=amp))
    assert resumed.step == 3
