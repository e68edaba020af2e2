"""The content-keeping objective: the residual generator, the content loss, paired batches of
the same tune in two genres, and real recordings joining domain a in training."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import music_like

from genreshift.data.windows import MelWindows
from genreshift.models.config import DiscriminatorConfig, GeneratorConfig
from genreshift.models.content import chroma, content_loss, onset_envelope
from genreshift.models.generator import Generator
from genreshift.spectral import MelConfig, wav_to_mel
from genreshift.train import runtime as rtm
from genreshift.train.config import TrainConfig
from genreshift.train.cyclegan import train_cyclegan

SR = 22_050
N_MELS = 32


def _tone(freq: float, seconds: float = 2.0) -> torch.Tensor:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 2 * t) > 0).astype(float)  # notes on and off twice a second
    return torch.from_numpy((0.2 * x * gate).astype(np.float32))


def test_residual_generator_returns_its_input_at_initialisation() -> None:
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(n_mels=N_MELS, channels=4, n_res=1, core_channels=16))
    x = torch.rand(2, N_MELS, 37) * 2 - 1
    assert torch.equal(g(x), x)
    # ...and a direct-output one (the models of before) does not.
    torch.manual_seed(0)
    direct = Generator(GeneratorConfig(n_mels=N_MELS, channels=4, n_res=1, core_channels=16,
                                       residual=False))
    assert not torch.allclose(direct(x), x, atol=1e-2)


def test_residual_change_is_bounded() -> None:
    torch.manual_seed(0)
    cfg = GeneratorConfig(n_mels=N_MELS, channels=4, n_res=1, core_channels=16, max_change=0.25)
    g = Generator(cfg)
    with torch.no_grad():
        g.head.weight.normal_(0, 10.0)  # a wildly trained head
    x = torch.zeros(1, N_MELS, 40)
    with torch.no_grad():
        assert float((g(x) - x).abs().max()) <= 0.25 + 1e-6


def test_legacy_generator_configs_load_as_direct_output() -> None:
    old = GeneratorConfig(residual=False).to_dict()
    old.pop("residual")
    old.pop("max_change")
    assert GeneratorConfig.stored(old).residual is False
    assert GeneratorConfig.from_dict({}).residual is True  # new runs default to residual


def test_content_loss_is_zero_for_identity_and_grows_under_transposition() -> None:
    cfg = MelConfig()
    a = wav_to_mel(_tone(440.0), cfg)[None]
    up1 = wav_to_mel(_tone(440.0 * 2 ** (1 / 12)), cfg)[None]
    up2 = wav_to_mel(_tone(440.0 * 2 ** (2 / 12)), cfg)[None]
    same = content_loss(a, a, cfg)
    assert float(same["total"]) == 0.0
    l1, l2 = content_loss(up1, a, cfg), content_loss(up2, a, cfg)
    assert 0.05 < float(l1["chroma"]) < float(l2["chroma"])
    # The pitch class of A4 is where the chroma peaks.
    c = chroma(a, cfg)[0].mean(dim=1)
    assert int(c.argmax()) == 9


def test_onset_envelope_moves_when_notes_move() -> None:
    cfg = MelConfig()
    a = wav_to_mel(_tone(440.0), cfg)[None]
    shifted = torch.roll(a, 10, dims=-1)  # the notes a quarter of a second later
    assert float(content_loss(shifted, a, cfg, chroma_weight=0.0)["total"]) > 0.5
    assert onset_envelope(a).shape == (1, a.shape[-1])


def test_content_loss_gradient_reaches_the_output() -> None:
    cfg = MelConfig(n_mels=N_MELS)
    ref = torch.rand(1, N_MELS, 20) * 2 - 1
    out = (ref + 0.1 * torch.randn_like(ref)).clamp(-1, 1).requires_grad_(True)
    content_loss(out, ref, cfg)["total"].backward()
    assert out.grad is not None and float(out.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- paired batches


@pytest.fixture(scope="module")
def paired_meldir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus of 6 tunes in two 'genres'. A tune's 'jazz' rendering is its 'rock' rendering
    low-passed and 9 dB quieter, so aligned pairs are near-identical after level matching,
    while windows of two different tunes (or two offsets) are not."""
    from genreshift.data.tensors import build_tensors

    root = tmp_path_factory.mktemp("paired")
    src = root / "src"
    rows = []
    for t in range(6):
        x = music_like(3.0, SR, seed=100 + t)
        split = "train" if t < 4 else "valid"
        for genre, y in (("rock", x), ("jazz", np.convolve(x, np.ones(3) / 3, "same") * 0.35)):
            (src / genre).mkdir(parents=True, exist_ok=True)
            sf.write(src / genre / f"t{t}.wav", np.clip(y, -1, 1).astype(np.float32), SR)
            rows.append({"file_name": f"{genre}/t{t}.wav", "tune": f"t{t}", "genre": genre,
                         "split": split})
    with open(src / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file_name", "tune", "genre", "split"])
        w.writeheader()
        w.writerows(rows)
    build_tensors(src, root / "mels", mel_config=MelConfig(n_mels=N_MELS), workers=1,
                  progress=False)
    return root / "mels"


def test_paired_batches_align_tune_and_time(paired_meldir: Path) -> None:
    a = MelWindows(paired_meldir, split="train", genres=["rock"], frames=32, augment=True, seed=1)
    b = MelWindows(paired_meldir, split="train", genres=["jazz"], frames=32, augment=True, seed=2)
    sampler = rtm.PairedSampler(a, b, seed=3)
    xa, xb, paired = sampler.batch(8, step=0)
    assert xa.shape == xb.shape == (8, N_MELS, 32) and bool(paired.all())
    # Same tune, same frames, same level and augmentation: only the filtering differs.
    aligned = float((xa - xb).abs().mean())
    # Against the same b windows shifted by a few frames, or paired with another row's tune:
    shifted = float((xa[..., 4:] - xb[..., :-4]).abs().mean())
    crossed = float((xa - xb.roll(1, dims=0)).abs().mean())
    assert aligned < 0.5 * shifted and aligned < 0.5 * crossed
    # Deterministic: the same seed and step give the same batch.
    again = rtm.PairedSampler(a, b, seed=3).batch(8, step=0)
    assert torch.equal(again[0], xa) and torch.equal(again[1], xb)


def test_training_with_paired_and_real_windows(paired_meldir: Path, tmp_path: Path) -> None:
    """A short run with every term on: paired rows, real windows in domain a, content loss;
    it writes a converter whose resume file remembers the real data."""
    from genreshift.checkpoint import read_checkpoint

    config = TrainConfig(steps=2, batch_size=2, frames=32, checkpoint_every=2, val_every=2,
                         log_every=1, sample_every=2, val_frames=32, val_windows=2,
                         pool_size=2, threads=1, device="cpu", real_windows=1)
    state = train_cyclegan(paired_meldir, tmp_path / "run", a="rock", b="jazz",
                           config=config, real=paired_meldir,
                           generator=GeneratorConfig(channels=4, n_res=1, core_channels=16),
                           discriminator=DiscriminatorConfig(channels=4, n_layers=2),
                           progress=False)
    assert state.step == 2
    ck = read_checkpoint(tmp_path / "run" / "resume.pt", kind="converter", role="resume")
    assert ck["resume"]["real_data"] == str(paired_meldir)
    with pytest.raises(Exception, match="--real"):
        train_cyclegan(paired_meldir, tmp_path / "run", a="rock", b="jazz", config=config,
                       resume=True, progress=False,
                       generator=GeneratorConfig(channels=4, n_res=1, core_channels=16),
                       discriminator=DiscriminatorConfig(channels=4, n_layers=2))


def test_warm_start_takes_the_weights_and_refuses_other_domains(paired_meldir: Path,
                                                                tmp_path: Path) -> None:
    """--init-from: a new run starts from another run's weights (not from its seed), records
    where they came from, and refuses a file of other domains or a changed init on resume."""
    from genreshift.checkpoint import read_checkpoint
    from genreshift.errors import GenreshiftError

    small = dict(generator=GeneratorConfig(channels=4, n_res=1, core_channels=16),
                 discriminator=DiscriminatorConfig(channels=4, n_layers=2), progress=False)
    config = TrainConfig(steps=2, batch_size=2, frames=32, checkpoint_every=2, val_every=2,
                         log_every=1, sample_every=2, val_frames=32, val_windows=2,
                         pool_size=2, threads=1, device="cpu", paired=0.0)
    first = train_cyclegan(paired_meldir, tmp_path / "first", a="rock", b="jazz",
                           config=config, **small)
    # Another seed with no steps at all: the weights can only come from the first run.
    fresh = replace(config, seed=7, steps=1, lr_g=0.0, lr_d=0.0)
    warm = train_cyclegan(paired_meldir, tmp_path / "warm", a="rock", b="jazz", config=fresh,
                          init_from=tmp_path / "first" / "resume.pt", **small)
    for name in ("g_ab", "g_ba", "d_a", "d_b"):
        ours, theirs = getattr(warm, name).state_dict(), getattr(first, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    ck = read_checkpoint(tmp_path / "warm" / "converter.pt", kind="converter")
    assert ck["provenance"]["init_from"]["step"] == 2
    with pytest.raises(GenreshiftError, match="domain"):
        train_cyclegan(paired_meldir, tmp_path / "other", a="jazz", b="rock", config=config,
                       init_from=tmp_path / "first" / "resume.pt", **small)
    with pytest.raises(GenreshiftError, match="init-from"):
        train_cyclegan(paired_meldir, tmp_path / "warm", a="rock", b="jazz", config=fresh,
                       resume=True, init_from=tmp_path / "first" / "converter.pt", **small)
