"""Reference mode's classifier style space (genreshift.models.style) and its chroma/onset
content term (genreshift.models.content), with a tiny untrained classifier: the tests check
behaviour, not quality (benchmarks/reference_style.py measures that)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import music_like
from test_reference import texture

from genreshift import checkpoint, spectral
from genreshift.errors import GenreshiftError
from genreshift.inference import reference
from genreshift.models import content, style
from genreshift.models.classifier import GenreClassifier
from genreshift.models.config import ClassifierConfig
from genreshift.models.style import StyleConfig
from genreshift.spectral import MelConfig

SR = 22_050
CFG = MelConfig()
FPS = CFG.sample_rate / CFG.hop_length
# Beat and bar scales short enough that 2 s clips have them.
SMALL_STYLE = StyleConfig(blocks=2, scales_s=(0.2, 0.5))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors on a shared 2-core CPU: one thread (see test_reference.py)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_classifier() -> GenreClassifier:
    torch.manual_seed(0)
    return GenreClassifier(ClassifierConfig(n_mels=CFG.n_mels, n_classes=3, channels=8,
                                            n_blocks=3, frames=32)).eval()


def chords(seconds: float, semitones: int = 0) -> np.ndarray:
    """Plucked major triads on a fixed progression, transposed by ``semitones``."""
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for k, start in enumerate(np.arange(0.0, seconds, 0.5)):
        seg = np.clip(t - start, 0.0, None) * (t >= start)
        root = 110.0 * 2 ** (([0, 5, 7, 3][k % 4] + semitones) / 12)
        for ratio in (1.0, 1.26, 1.5):
            for h in range(1, 6):
                out += (t >= start) * np.exp(-seg * 4) * 0.05 / h * np.sin(
                    2 * np.pi * root * ratio * h * seg)
    return (out / np.abs(out).max() * 0.5).astype(np.float32)


def mel_of(wav: np.ndarray) -> torch.Tensor:
    return spectral.wav_to_mel(torch.from_numpy(wav), CFG)


@pytest.fixture(scope="module")
def song() -> torch.Tensor:
    return mel_of(music_like(2.0))  # [128, 87]


@pytest.fixture(scope="module")
def other() -> torch.Tensor:
    return mel_of(texture(1.5))


def stats_of(model: GenreClassifier, mel: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return style.statistics(style.activations(model, mel[None], SMALL_STYLE), SMALL_STYLE,
                                FPS)


# ------------------------------------------------------------------------- style statistics

def test_style_loss_is_zero_on_itself_and_larger_for_another_genre(song, other) -> None:
    model = tiny_classifier()
    own = stats_of(model, song)
    # Every kind of statistic is there: frame Grams, per-band moments, both pooled scales.
    assert {"b0.gram", "b0.mean", "b0.std", "b1.s0.2.cov", "b1.s0.5.std"} <= set(own)
    assert float(style.style_distance(own, own)) == 0.0
    far = float(style.style_distance(own, stats_of(model, other)))
    # The same music later in time is nearer than another texture.
    later = float(style.style_distance(stats_of(model, song[:, 20:]), own))
    assert far > 0.05 and later < 0.5 * far, (later, far)


def test_chunked_statistics_match_and_short_clips_drop_long_scales(song) -> None:
    model = tiny_classifier()
    whole = style.statistics_chunked(model, song[None], SMALL_STYLE, FPS, chunk_frames=4096)
    for k, v in stats_of(model, song).items():
        torch.testing.assert_close(whole[k], v)
    short = stats_of(model, song[:, :24])  # 0.56 s: two bar-scale windows do not fit
    assert "b0.s0.5.cov" not in short and "b0.gram" in short
    assert float(style.style_distance(short, whole)) > 0  # compared on the names both have


def test_groove_counts_not_only_timbre(song) -> None:
    # The same frames in another order (same frame statistics, different rhythm) differ only
    # in the pooled statistics.
    model = tiny_classifier()
    perm = torch.randperm(song.shape[-1], generator=torch.Generator().manual_seed(0))
    a, b = stats_of(model, song), stats_of(model, song[:, perm])
    frame_only = {k: v for k, v in a.items() if ".s" not in k and not k.endswith("gram")}
    pooled = {k: v for k, v in a.items() if ".s" in k}
    d_pooled = float(style.style_distance(pooled, b))
    # Per-band mean and deviation over time ignore order at block 0's input resolution, up to
    # the 2x2 max-pool's pairing of neighbouring frames.
    assert d_pooled > 3 * float(style.style_distance(frame_only, b)), d_pooled


# ------------------------------------------------------------------------- content term

def test_content_term_is_zero_on_itself_and_grows_under_transposition(song) -> None:
    x = song[None]
    same = content.content_loss(x, x, CFG)
    assert float(same["total"]) == 0.0
    rolled = [float(content.content_loss(torch.roll(x, k, dims=-2), x, CFG)["chroma"])
              for k in (2, 5)]
    assert 0.0 < rolled[0] and 0.0 < rolled[1]
    # A real transposition: the same plucked chords two semitones up.
    base, up = (mel_of(chords(2.0, semitones=k))[None] for k in (0, 2))
    renoised = mel_of(chords(2.0) + np.float32(1e-4))[None]  # the same music, re-analysed
    moved = float(content.content_loss(up, base, CFG)["chroma"])
    assert moved > 5 * float(content.content_loss(renoised, base, CFG)["chroma"]) + 0.01, moved


# ------------------------------------------------------------------------- reference_transfer

def transfer(song, ref, **kw):
    kw = {"steps": 6, "style_space": "classifier", "style_model": tiny_classifier(),
          "style_config": SMALL_STYLE, **kw}
    return reference.reference_transfer(song, ref, **kw)


def test_transfer_moves_style_keeps_chroma_and_is_deterministic(song, other) -> None:
    out, stats = transfer(song, other)
    assert out.shape == song.shape and out.abs().max() <= 1.0
    assert stats["style_space"] == "classifier" and stats["evaluations"] >= 5
    assert stats["style_loss_final"] < 0.8 * stats["style_loss_initial"], stats
    again, _ = transfer(song, other)
    assert torch.equal(out, again)
    # A heavy chroma weight holds the harmony closer than none.
    _, s_free = transfer(song, other, chroma_weight=0.0, content_weight=0.0)
    _, s_held = transfer(song, other, chroma_weight=50.0, content_weight=0.0)
    assert s_held["chroma_loss_final"] < s_free["chroma_loss_final"], (s_held, s_free)
    # Against itself there is no style to move toward.
    _, own = transfer(song, song, steps=1)
    assert own["style_loss_initial"] == pytest.approx(0.0, abs=1e-9)


def test_random_space_is_still_there(song, other) -> None:
    a, stats = reference.reference_transfer(song, other, steps=3, style_space="random", seed=2)
    b, _ = reference.reference_transfer(song, other, steps=3, style_space="random", seed=2)
    assert torch.equal(a, b) and stats["features"]["space"] == "random"
    assert stats["chroma_weight"] == 0.0 and stats["content_weight"] == 0.5
    # Both spaces together: each distance counts from its own start.
    _, both = reference.reference_transfer(song, other, steps=3, style_space="both",
                                           style_model=tiny_classifier(),
                                           style_config=SMALL_STYLE)
    assert set(both["features"]) == {"space", "random", "classifier"}
    assert both["style_loss_final"] < both["style_loss_initial"]
    with pytest.raises(GenreshiftError, match="style space"):
        reference.reference_transfer(song, other, style_space="vgg")


def write(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, SR, subtype="PCM_16")
    return path


def test_files_with_a_classifier_checkpoint_and_short_reference(tmp_path: Path) -> None:
    model = tiny_classifier()
    ck = checkpoint.save_classifier(tmp_path / "clf.pt", model=model, config=model.config,
                                    mel_config=CFG, genres=["a", "b", "c"], provenance={})
    song = write(tmp_path / "song.wav", music_like(1.5))
    dst = tmp_path / "out.wav"
    summary = reference.convert_reference_file(song, write(tmp_path / "ref.wav", texture(1.2)),
                                               dst, steps=2, device="cpu", style_model=ck,
                                               style_space="both")
    assert dst.exists() and summary["settings"]["style_space"] == "both"
    assert summary["chroma_loss_final"] >= 0.0
    short = write(tmp_path / "tiny_ref.wav", texture(0.8))
    for space in ("classifier", "random"):
        with pytest.raises(GenreshiftError, match=r"tiny_ref\.wav.*too short.*at least 1 s"):
            reference.convert_reference_file(song, short, tmp_path / "no.wav", steps=1,
                                             device="cpu", style_space=space, style_model=ck)
    assert not (tmp_path / "no.wav").exists()
    with pytest.raises(GenreshiftError, match="style model"):
        reference.convert_reference_file(song, tmp_path / "ref.wav", tmp_path / "no.wav",
                                         steps=1, device="cpu", style_model=ck,
                                         style_space="both",
                                         mel_config=MelConfig(hop_length=256))


def test_style_model_is_the_folders_style_pt_else_its_classifier(tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    """Reference mode's style model: the model folder's style.pt (the classifier trained on
    real recordings too) where there is one, else its classifier.pt; `convert --like --models
    DIR` reads DIR's, not the default folder's."""
    monkeypatch.setenv("GENRESHIFT_MODELS", str(tmp_path))
    assert reference.default_style_model() == tmp_path / "classifier.pt"
    (tmp_path / "style.pt").write_bytes(b"")
    assert reference.default_style_model() == tmp_path / "style.pt"
    other = tmp_path / "other"
    other.mkdir()
    assert reference.default_style_model(other) == other / "classifier.pt"
    from genreshift import cli

    song = write(tmp_path / "song.wav", music_like(1.5))
    ref = write(tmp_path / "ref.wav", texture(1.2))
    code = cli.main(["convert", str(song), "--like", str(ref), "--models", str(other),
                     "-o", str(tmp_path / "out.wav"), "--steps", "1", "--device", "cpu"])
    assert code != 0 and not (tmp_path / "out.wav").exists()  # other/ has no classifier
    assert str(other / "classifier.pt") in capsys.readouterr().err
