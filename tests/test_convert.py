"""Trained mode (`genreshift convert --to`), blending, batches, plots and `genreshift genres`.

Mechanics run on a folder of tiny untrained converters written here (they change the mel, which
is all these tests need); the shipped default models are exercised in test_default_models.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import music_like, run_cli

from genreshift.errors import GenreshiftError
from genreshift.inference import chunking
from genreshift.inference import convert as tconv
from genreshift.models.classifier import GenreClassifier
from genreshift.models.config import ClassifierConfig, GeneratorConfig
from genreshift.models.generator import Generator
from genreshift.spectral import MelConfig
from genreshift import checkpoint as ckpt
from genreshift.checkpoint import Domain

GENRES = ("classical", "jazz", "rock")


def _save_converter(path: Path, target: str, seed: int) -> None:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(channels=4, n_res=1, core_channels=16, residual=False)
    rest = tuple(g for g in GENRES if g != target)
    ckpt.save_converter(path, g_ab=Generator(cfg), g_ba=Generator(cfg), config=cfg,
                        mel_config=MelConfig(), a=Domain("rest", rest),
                        b=Domain(target, (target,)),
                        provenance=ckpt.provenance("test", steps=7))


def write_tiny_models(d: Path) -> Path:
    """Untrained rest->jazz and rest->rock converters and a classifier of GENRES in ``d``."""
    _save_converter(d / "rest-to-jazz.pt", "jazz", 1)
    _save_converter(d / "rest-to-rock.pt", "rock", 2)
    torch.manual_seed(3)
    cfg = ClassifierConfig(n_classes=len(GENRES), channels=4, n_blocks=2, frames=32)
    ckpt.save_classifier(d / "classifier.pt", model=GenreClassifier(cfg).eval(), config=cfg,
                         mel_config=MelConfig(), genres=list(GENRES),
                         provenance=ckpt.provenance("test", steps=1))
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = write_tiny_models(tmp_path_factory.mktemp("models"))
    (d / "notes.pt").write_text("not a checkpoint")  # a stray file is skipped, not fatal
    return d


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("songs")
    stereo = np.stack([music_like(4.0, 44_100, seed=1), music_like(4.0, 44_100, seed=2)], 1)
    sf.write(d / "stereo.wav", stereo, 44_100, subtype="PCM_24")
    sf.write(d / "mono.flac", music_like(3.0, 22_050, seed=3), 22_050)
    return d


# --------------------------------------------------------------------------- library


def test_parse_targets() -> None:
    assert tconv.parse_targets("jazz") == [tconv.Target("jazz", 1.0)]
    blend = tconv.parse_targets("Jazz:3, rock:1")
    assert [(t.genre, t.weight) for t in blend] == [("jazz", 0.75), ("rock", 0.25)]
    for bad, phrase in (("jazz:x", "not a number"), ("jazz:0", "positive"),
                        ("jazz,jazz", "twice"), ("jazz,", "empty"), ("jazz:-1", "positive")):
        with pytest.raises(GenreshiftError, match=phrase):
            tconv.parse_targets(bad)


def test_choose_converter_prefers_the_specific_model(tmp_path: Path) -> None:
    rest = tconv.ModelInfo(Path("rest-to-jazz.pt"), "rest", ("rock", "pop"), "jazz",
                           ("jazz",), 1)
    rock = tconv.ModelInfo(Path("rock-jazz.pt"), "rock", ("rock",), "jazz", ("jazz",), 1)
    models = tconv.ModelSet([rest, rock], None, (), [])
    assert tconv.choose_converter(models, "jazz", "rock") == (rock, "ab")
    assert tconv.choose_converter(models, "jazz", "pop") == (rest, "ab")
    assert tconv.choose_converter(models, "rock", "jazz") == (rock, "ba")  # the other way
    assert sorted(models.targets()) == ["jazz", "rock"]  # 'rest' is never a target
    with pytest.raises(GenreshiftError, match="available target genres: jazz, rock"):
        tconv.choose_converter(models, "blues", "rock")


def test_blend_endpoints_and_mixture() -> None:
    torch.manual_seed(0)
    cfg = GeneratorConfig(channels=4, n_res=1, core_channels=16, residual=False)
    g1, g2 = (tconv._TorchGenerator(Generator(cfg).eval(), "cpu") for _ in range(2))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 700)).astype(np.float32)
    kw = dict(stride=cfg.stride, window=256, overlap=64)
    full = tconv.convert_mel(x, [(g1, 1.0)], **kw)
    ref = chunking.apply_windowed(g1, x, window=256, overlap=64,
                                  margin=tconv.DEFAULT_MARGIN, pad_multiple=cfg.stride)
    np.testing.assert_allclose(full, np.clip(ref, -1, 1), atol=1e-6, rtol=0)
    assert np.array_equal(tconv.convert_mel(x, [(g1, 1.0)], strength=0.0, **kw), x)
    half = tconv.convert_mel(x, [(g1, 1.0)], strength=0.5, **kw)
    np.testing.assert_allclose(half, (x + full) / 2, atol=1e-5, rtol=0)
    other = tconv.convert_mel(x, [(g2, 1.0)], **kw)
    mix = tconv.convert_mel(x, [(g1, 0.5), (g2, 0.5)], **kw)
    # the blend of changes; clamping can only differ where a full conversion saturated
    np.testing.assert_allclose(mix, np.clip((full + other) / 2, -1, 1), atol=1e-5, rtol=0)
    assert np.abs(mix - full).mean() > 1e-3


# --------------------------------------------------------------------------- CLI


def _json(r) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_convert_to_stereo_with_plot_and_summary(models: Path, songs: Path,
                                                 tmp_path: Path) -> None:
    out, plot = tmp_path / "out.wav", tmp_path / "cmp.png"
    s = _json(run_cli("convert", songs / "stereo.wav", "--to", "jazz", "--models", models,
                      "-o", out, "--plot", plot, "--json"))
    assert s["mode"] == "trained" and s["source_guess"] in GENRES
    assert abs(sum(s["source_probabilities"].values()) - 1) < 1e-3
    assert s["targets"][0]["model"].endswith("rest-to-jazz.pt")
    assert set(s["timings_s"]) == {"load", "models", "mel", "classify", "rhythm", "generator",
                                   "reconstruction", "write"}  # --rhythm replace by default
    data, sr = sf.read(out)
    assert sr == 44_100 and data.shape == (4 * 44_100, 2)  # stereo in, stereo out
    assert not np.allclose(data[:, 0], data[:, 1])  # the channels stay distinct
    import matplotlib.image

    img = matplotlib.image.imread(plot)
    assert img.shape[0] > 300 and img.shape[1] > 500


def test_strength_zero_is_the_roundtrip(models: Path, songs: Path, tmp_path: Path) -> None:
    r = run_cli("convert", songs / "mono.flac", "--to", "rock", "--from", "jazz", "--models",
                models, "--strength", "0", "-o", tmp_path / "zero.wav", "--quiet")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    r = run_cli("roundtrip", songs / "mono.flac", "-o", tmp_path / "rt.wav", "--quiet")
    assert r.returncode == 0, r.stderr
    zero, rt = sf.read(tmp_path / "zero.wav")[0], sf.read(tmp_path / "rt.wav")[0]
    np.testing.assert_array_equal(zero, rt)
    r = run_cli("convert", songs / "mono.flac", "--to", "rock", "--from", "jazz", "--models",
                models, "-o", tmp_path / "full.wav", "--quiet")
    assert np.abs(sf.read(tmp_path / "full.wav")[0] - rt).mean() > 1e-3


def test_a_calibrated_gain_scales_the_converters_change(models: Path, songs: Path,
                                                        tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "models"
    shutil.copytree(models, d)
    ckpt.export_onnx(d / "rest-to-jazz.pt")  # both runs below on onnxruntime
    args = ["convert", songs / "mono.flac", "--to", "jazz", "--from", "rock", "--models", d,
            "--rhythm", "keep", "--json", "--force"]
    r = run_cli(*args, "--strength", "0.5", "-o", tmp_path / "half.wav")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["targets"][0]["gain"] == 1.0
    written = ckpt.set_converter_gain(d / "rest-to-jazz.pt", {"ab": 2.0},
                                      {"why": "a test"})
    assert {p.name for p in written} == {"rest-to-jazz.pt", "rest-to-jazz.ab.onnx"}
    assert ckpt.read_onnx_header(d / "rest-to-jazz.ab.onnx")["gain"] == {"ab": 2.0, "ba": 1.0}
    assert ckpt.read_checkpoint(d / "rest-to-jazz.pt")["provenance"]["calibration"] == {
        "why": "a test"}
    # strength 0.25 of a change applied twice is strength 0.5 of the change applied once
    r = run_cli(*args, "--strength", "0.25", "-o", tmp_path / "quarter.wav")
    assert r.returncode == 0, r.stderr
    target = json.loads(r.stdout)["targets"][0]
    assert target["gain"] == 2.0 and target["runtime"] == "onnxruntime"
    half, quarter = sf.read(tmp_path / "half.wav")[0], sf.read(tmp_path / "quarter.wav")[0]
    np.testing.assert_allclose(quarter, half, atol=1e-6)
    r = run_cli("genres", "--models", d, "--json")
    gains = {t["genre"]: t["gain"] for t in json.loads(r.stdout)["targets"]}
    assert gains == {"jazz": 2.0, "rock": 1.0}
    for bad in (-1.0, float("nan"), 100.0):
        with pytest.raises(GenreshiftError, match="residual gain"):
            ckpt.set_converter_gain(d / "rest-to-jazz.pt", {"ab": bad})
    with pytest.raises(GenreshiftError, match="no generator direction"):
        ckpt.set_converter_gain(d / "rest-to-jazz.pt", {"up": 2.0})


def test_the_calibration_rule() -> None:
    from genreshift.train.calibrate import Candidate, choose_gain

    def cand(gain: float, judge: float, chroma: float = 0.95) -> Candidate:
        return Candidate(gain, 18, judge, 0.5, 11.0, chroma, 0.95)

    # the smallest gain within 5 points of the best transfer
    chosen, why = choose_gain([cand(1, 0.3), cand(2, 0.78), cand(2.5, 0.8), cand(3, 0.81)])
    assert chosen.gain == 2 and "smallest gain" in why
    # a gain that loses the song is never chosen, however far it moves the judge
    chosen, why = choose_gain([cand(1, 0.3), cand(2, 0.6), cand(3, 0.95, chroma=0.8)])
    assert chosen.gain == 2 and "3 lost too much" in why
    # nothing but the trained converter keeps the song: gain 1
    chosen, _ = choose_gain([cand(1, 0.3, chroma=0.85), cand(2, 0.9, chroma=0.7)])
    assert chosen.gain == 1


def test_every_output_format_reads_back(models: Path, songs: Path, tmp_path: Path) -> None:
    # one batch run: two inputs, four formats would be four runs; use --format per run of two
    for fmt, depth in (("flac", "24"), ("ogg", None), ("mp3", None), ("wav", "float")):
        args = ["convert", songs / "mono.flac", "--to", "jazz:0.5,rock:0.5", "--models", models,
                "--format", fmt, "-o", tmp_path / f"o.{fmt}", "--quiet"]
        if depth:
            args += ["--bit-depth", depth]
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        info = sf.info(tmp_path / f"o.{fmt}")
        assert info.samplerate == 22_050 and info.channels == 1
        assert abs(info.duration - 3.0) < 0.1, (fmt, info.duration)
    assert sf.info(tmp_path / "o.flac").subtype == "PCM_24"
    assert sf.info(tmp_path / "o.wav").subtype == "FLOAT"


def test_batch_reports_and_skips_a_bad_file(models: Path, songs: Path, tmp_path: Path) -> None:
    batch = tmp_path / "in"
    (batch / "sub").mkdir(parents=True)
    sf.write(batch / "a.wav", music_like(2.0, seed=4), 22_050)
    sf.write(batch / "sub" / "a.wav", music_like(2.0, seed=5), 22_050)  # same stem
    (batch / "broken.wav").write_bytes(b"RIFF not really a wave file")
    outdir = tmp_path / "out"
    r = run_cli("convert", batch, songs / "mono.flac", "--to", "jazz", "--models", models,
                "-o", outdir, "--plot", "--json")
    assert r.returncode == 1  # some failed
    s = json.loads(r.stdout)
    assert [Path(f["input"]).name for f in s["failed"]] == ["broken.wav"]
    assert "broken.wav" in r.stderr and "Traceback" not in r.stderr
    written = sorted(p.name for p in outdir.iterdir())
    assert written == ["a.jazz-2.png", "a.jazz-2.wav", "a.jazz.png", "a.jazz.wav",
                       "mono.jazz.png", "mono.jazz.wav"]


def test_bad_arguments_leave_nothing_behind(models: Path, songs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    m = ["--models", models]
    cases = [
        (["--to", "polka", *m], "available: jazz, rock"),
        (["--to", "jazz", "--from", "polka", *m], "--from 'polka'"),
        (["--to", "jazz:x", *m], "not a number"),
        (["--like", tmp_path / "missing.wav"], "missing.wav"),
        (["--to", "jazz", "--plot", tmp_path / "p.jpg", *m], ".png"),
        (["--to", "jazz", "--models", tmp_path / "nope"], "no such folder"),
        (["--to", "jazz", "--model", songs / "mono.flac"], "mono.flac"),
    ]
    for extra, phrase in cases:
        r = run_cli("convert", songs / "mono.flac", *extra, "-o", out)
        assert r.returncode == 1, (extra, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and phrase in lines[0], (extra, r.stderr)
        assert not out.exists()
    r = run_cli("convert", songs / "mono.flac", "--to", "jazz", "--strength", "1.5", "-o", out)
    assert r.returncode == 2 and "--strength" in r.stderr and "0 (the input" in r.stderr
    assert not list(tmp_path.iterdir())


def test_genres_lists_targets_and_skips_strays(models: Path) -> None:
    r = run_cli("genres", "--models", models)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("jazz") and "rest-to-jazz.pt" in lines[0] and "7 steps" in lines[0]
    assert lines[1].startswith("rock")
    assert "classifier.pt (classical, jazz, rock)" in r.stdout
    assert "skipped:" in r.stdout and "notes.pt" in r.stdout
    s = _json(run_cli("genres", "--models", models, "--json"))
    assert [t["genre"] for t in s["targets"]] == ["jazz", "rock"]
    assert s["classifier_genres"] == list(GENRES)


def test_detected_source_picks_the_specific_converter_and_its_analysis(
        songs: Path, tmp_path: Path) -> None:
    """The converter (and so the mel settings) follows the *detected* source genre: a rock
    song goes through rock-jazz.pt (hop 256) even though rest-to-jazz.pt (hop 512) exists."""
    d = tmp_path / "models"
    d.mkdir()
    _save_converter(d / "rest-to-jazz.pt", "jazz", 1)
    torch.manual_seed(5)
    cfg = GeneratorConfig(channels=4, n_res=1, core_channels=16, residual=False)
    ckpt.save_converter(d / "rock-jazz.pt", g_ab=Generator(cfg), g_ba=Generator(cfg),
                        config=cfg, mel_config=MelConfig(hop_length=256),
                        a=Domain("rock", ("rock",)), b=Domain("jazz", ("jazz",)),
                        provenance=ckpt.provenance("test", steps=7))
    ccfg = ClassifierConfig(n_classes=len(GENRES), channels=4, n_blocks=2, frames=32)
    clf = GenreClassifier(ccfg).eval()
    with torch.no_grad():  # a classifier that hears rock in everything
        clf.fc.weight.zero_()
        clf.fc.bias.copy_(torch.tensor([0.0, 0.0, 10.0]))
    ckpt.save_classifier(d / "classifier.pt", model=clf, config=ccfg, mel_config=MelConfig(),
                         genres=list(GENRES), provenance=ckpt.provenance("test", steps=1))
    settings = tconv.TrainedSettings(targets=(tconv.Target("jazz", 1.0),))
    s = tconv.convert_trained_file(songs / "mono.flac", tmp_path / "out.wav", settings,
                                   models=tconv.scan_models(d), device="cpu")
    assert s["source_genre"] == "rock"
    assert [Path(t["model"]).name for t in s["targets"]] == ["rock-jazz.pt"]
    out, sr = sf.read(tmp_path / "out.wav")
    assert sr == 22_050 and np.isfinite(out).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trained_mode_on_cuda_matches_cpu(models: Path, songs: Path, tmp_path: Path) -> None:
    settings = tconv.TrainedSettings(targets=(tconv.Target("jazz", 1.0),), source="rock")
    outs = []
    for device in ("cpu", "cuda"):
        s = tconv.convert_trained_file(songs / "mono.flac", tmp_path / f"{device}.wav", settings,
                                       models=tconv.scan_models(models), device=device)
        assert s["device"].startswith(device)
        outs.append(sf.read(tmp_path / f"{device}.wav")[0])
    assert np.abs(outs[0] - outs[1]).mean() < 1e-3


def test_low_confidence_source_is_reported_as_uncertain(songs: Path, tmp_path: Path) -> None:
    """A classifier torn between genres does not get to name the source or pick a converter:
    the summary says uncertain, keeps the best guess, and the rest -> target converter runs
    even though a converter from the guessed genre exists."""
    d = tmp_path / "models"
    d.mkdir()
    _save_converter(d / "rest-to-jazz.pt", "jazz", 1)
    cfg = GeneratorConfig(channels=4, n_res=1, core_channels=16, residual=False)
    ckpt.save_converter(d / "rock-jazz.pt", g_ab=Generator(cfg), g_ba=Generator(cfg),
                        config=cfg, mel_config=MelConfig(), a=Domain("rock", ("rock",)),
                        b=Domain("jazz", ("jazz",)), provenance=ckpt.provenance("test", steps=7))
    ccfg = ClassifierConfig(n_classes=len(GENRES), channels=4, n_blocks=2, frames=32)
    clf = GenreClassifier(ccfg).eval()
    with torch.no_grad():  # rock by a hair: p = 0.36, 0.28, 0.36 -> never above 0.5
        clf.fc.weight.zero_()
        clf.fc.bias.copy_(torch.tensor([0.25, 0.0, 0.25 + 1e-3]))
    ckpt.save_classifier(d / "classifier.pt", model=clf, config=ccfg, mel_config=MelConfig(),
                         genres=list(GENRES), provenance=ckpt.provenance("test", steps=1))
    settings = tconv.TrainedSettings(targets=(tconv.Target("jazz", 1.0),))
    s = tconv.convert_trained_file(songs / "mono.flac", tmp_path / "out.wav", settings,
                                   models=tconv.scan_models(d), device="cpu")
    assert s["source_status"] == "uncertain" and s["source_genre"] is None
    assert s["source_guess"] == "rock" and s["source_confidence"] < tconv.UNCERTAIN_BELOW
    assert [Path(t["model"]).name for t in s["targets"]] == ["rest-to-jazz.pt"]
