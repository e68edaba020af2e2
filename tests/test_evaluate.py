"""Evaluation metrics on constructed cases (genreshift.inference.evaluate and metrics)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import music_like, run_cli

from genreshift import spectral
from genreshift.audio import resample
from genreshift.inference import evaluate, metrics
from genreshift.spectral import MelConfig

SR = 22_050


def test_identical_inputs_are_perfect() -> None:
    x = music_like(6.0, SR, seed=1)
    cfg = MelConfig()
    mel = spectral.wav_to_mel(torch.from_numpy(x), cfg)
    assert metrics.mel_lsd(mel, mel, cfg) == 0.0
    assert abs(metrics.chroma_similarity(x, x, SR) - 1.0) < 1e-6
    assert evaluate.onset_f_measure(x, x, SR) == 1.0


def test_pitch_shift_lowers_chroma_and_a_delay_lowers_onsets() -> None:
    x = music_like(6.0, SR, seed=1)
    # up a tritone (x 1.414): resampling to a lower rate and playing at SR raises every pitch
    shifted = resample(x[None], SR, int(SR / 2 ** (6 / 12)))[0][: len(x)]
    shifted = np.pad(shifted, (0, len(x) - len(shifted)))
    same = metrics.chroma_similarity(x, x * 0.5, SR)
    moved = metrics.chroma_similarity(x, shifted, SR)
    assert same > 0.99 and moved < same - 0.2, (same, moved)
    delayed = np.concatenate([np.zeros(SR // 4, np.float32), x])[: len(x)]  # 250 ms late
    assert evaluate.onset_f_measure(x, delayed, SR) < 0.5
    assert evaluate.onset_f_measure(x, x * 0.7, SR) == 1.0  # a gain moves no onset


def test_chroma_correlation_is_stricter_than_the_cosine() -> None:
    x = music_like(6.0, SR, seed=1)
    other = music_like(6.0, SR, seed=7)  # another random tune
    assert abs(metrics.chroma_correlation(x, x * 0.5, SR) - 1.0) < 1e-6
    for y in (other, resample(x[None], SR, int(SR / 2 ** (2 / 12)))[0][: len(x)]):
        cos, corr = metrics.chroma_similarity(x, y, SR), metrics.chroma_correlation(x, y, SR)
        assert corr < cos - 0.2, (cos, corr)  # the cosine's chance level is high
        assert metrics.chroma_correlation(x, y, SR, a_cens=metrics.cens(x, SR)) == corr
    assert metrics.chroma_correlation(x, np.zeros_like(x), SR) == 0.0  # silence: no harmony


def test_feature_judge_tells_timbres_apart_and_flags_the_other_genre() -> None:
    rng = np.random.default_rng(0)

    def clip(kind: str, seed: int) -> np.ndarray:
        base = music_like(3.0, SR, seed=seed)
        if kind == "bright":  # strong high-frequency noise bed
            return base + 0.05 * rng.standard_normal(len(base)).astype(np.float32)
        t = np.arange(len(base)) / SR  # "dull": a low drone under the music
        return base * 0.3 + 0.3 * np.sin(2 * np.pi * 55 * t).astype(np.float32)

    train = [(k, clip(k, s)) for s in range(8) for k in ("bright", "dull")]
    judge = evaluate.FeatureJudge().fit(
        np.stack([evaluate.clip_features(w, SR) for _, w in train]), [k for k, _ in train])
    probs = judge.probabilities(np.stack([evaluate.clip_features(clip("bright", 50), SR),
                                          clip_f := evaluate.clip_features(clip("dull", 51), SR)]))
    assert probs[0]["bright"] > 0.5 and probs[1]["dull"] > 0.5
    assert judge.probabilities(clip_f)[0]["bright"] < 0.5  # a clip of the other genre


def test_eq_baseline_moves_the_average_spectrum_to_the_target() -> None:
    cfg = MelConfig()
    torch.manual_seed(0)
    song = spectral.wav_to_mel(torch.from_numpy(music_like(4.0, SR, seed=2)), cfg)
    target_clip = spectral.wav_to_mel(
        torch.from_numpy(music_like(4.0, SR, seed=3) * 0.2), cfg) + torch.linspace(
            -0.2, 0.1, cfg.n_mels)[:, None]
    means = evaluate.genre_mean_spectra([("t", target_clip), ("s", song)])
    before = evaluate.mean_db_distance(song.mean(-1), means["t"], cfg)
    out = evaluate.eq_mel(song, means["t"])
    after = evaluate.mean_db_distance(out.mean(-1), means["t"], cfg)
    assert before > 5.0 and after < 0.2 * before, (before, after)
    # a static gain: every frame moves by the same per-band amount where nothing clipped
    inside = (out > -1) & (out < 1)
    delta = (out - song)[inside.all(dim=-1)]
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-6)


# --------------------------------------------------------------------------- the CLI, end to end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from genreshift.data.synth import build_synth_corpus

    if not all((Path("/usr/share/sounds/sf2") / f).is_file()
               for f in ("FluidR3_GM.sf2", "TimGM6mb.sf2")):
        pytest.skip("GM SoundFonts not installed (the Makefile installs them)")
    out = tmp_path_factory.mktemp("eval") / "corpus"
    build_synth_corpus(out, ["jazz", "rock"], 6, 4.0, seed=3, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_convert import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("models"))


def test_evaluate_identity_eq_and_trained(corpus: Path, tiny_models: Path,
                                          tmp_path: Path) -> None:
    reports = {}
    for method in ("identity", "eq", "trained"):
        out = tmp_path / f"{method}.json"
        r = run_cli("evaluate", "--data", corpus, "--method", method, "--models", tiny_models,
                    "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        reports[method] = json.loads(out.read_text())
    ident = reports["identity"]
    assert set(ident["per_pair"]) == {"jazz:rock", "rock:jazz"}
    assert ident["overall"]["method"]["clips"] == 2  # one test tune, two directions
    # identity *is* the floor: same numbers
    for key in ("lsd_db", "chroma", "chroma_corr", "onset_f", "cnn_p", "judge_p"):
        assert ident["overall"]["method"][key] == pytest.approx(ident["overall"]["floor"][key])
    assert ident["overall"]["floor"]["chroma"] > 0.95
    # the EQ baseline moves toward the target's spectrum: closer to the real rendering
    eq = reports["eq"]["overall"]
    assert eq["method"]["lsd_db"] < eq["floor"]["lsd_db"]
    conf = reports["trained"]["confusion"]
    assert sum(sum(v.values()) for v in conf["judge"].values()) == 2
    import matplotlib.image

    from genreshift.inference.plot import plot_evaluation

    png = plot_evaluation(tmp_path / "all.png", list(reports.values()))
    assert matplotlib.image.imread(png).shape[1] > 1000


def test_evaluate_reference_methods_with_a_plot(corpus: Path, tiny_models: Path,
                                               tmp_path: Path) -> None:
    for method in ("reference", "gram-baseline"):
        out, png = tmp_path / f"{method}.json", tmp_path / f"{method}.png"
        r = run_cli("evaluate", "--data", corpus, "--method", method, "--models", tiny_models,
                    "--pairs", "rock:jazz", "--seconds", "2", "--steps", "2", "--out", out,
                    "--plot", png, "--quiet")
        assert r.returncode == 0, r.stderr
        rep = json.loads(out.read_text())
        row = rep["rows"][0]
        assert rep["overall"]["method"]["clips"] == 1 and row["seconds"] == pytest.approx(2.0)
        assert 0 <= row["chroma"] <= 1 and row["lsd_db"] > 0 and png.is_file()


def test_evaluate_bad_arguments(corpus: Path, tiny_models: Path, tmp_path: Path) -> None:
    for extra, phrase in ((["--pairs", "jazz-rock"], "source:target"),
                          (["--pairs", "jazz:polka"], "unknown genre 'polka'"),
                          (["--split", "nope"], "no tunes in split 'nope'")):
        r = run_cli("evaluate", "--data", corpus, "--method", "identity", "--models",
                    tiny_models, "--out", tmp_path / "r.json", *extra)
        assert r.returncode == 1 and phrase in r.stderr, r.stderr
        assert not (tmp_path / "r.json").exists()
    r = run_cli("evaluate", "--data", tmp_path, "--method", "eq", "--out", tmp_path / "r.json")
    assert r.returncode == 1 and "metadata.csv" in r.stderr


def test_evaluate_jobs_give_the_same_report(corpus: Path, tiny_models: Path,
                                            tmp_path: Path) -> None:
    """Worker processes change nothing but the speed: same rows, same reference draws."""
    reports = []
    for jobs in ("1", "2"):
        out = tmp_path / f"ref{jobs}.json"
        r = run_cli("evaluate", "--data", corpus, "--split", "train", "--method", "reference",
                    "--models", tiny_models, "--pairs", "rock:jazz", "--tunes", "3",
                    "--seconds", "2", "--steps", "2", "--jobs", jobs, "--out", out, "--quiet")
        assert r.returncode == 0, r.stderr
        reports.append(json.loads(out.read_text()))
    one, two = reports
    assert [r["tune"] for r in one["rows"]] == [r["tune"] for r in two["rows"]]
    assert len(one["rows"]) == 3
    for a, b in zip(one["rows"], two["rows"]):
        for key in ("lsd_db", "chroma", "cnn_p", "judge_p"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key


def test_calibrate_stores_the_chosen_gain(corpus: Path, tiny_models: Path,
                                          tmp_path: Path) -> None:
    import shutil

    from genreshift import checkpoint

    d = tmp_path / "models"
    shutil.copytree(tiny_models, d)
    report = tmp_path / "cal.json"
    r = run_cli("train", "calibrate", d, "--data", corpus, "--split", "train", "--tunes", "1",
                "--seconds", "2", "--gains", "1,2", "--report", report)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    assert rep["gains"] == [1.0, 2.0] and len(rep["converters"]) == 2  # to jazz, to rock
    for c in rep["converters"]:
        assert [x["gain"] for x in c["candidates"]] == [1.0, 2.0]
        assert c["candidates"][0]["clips"] == 1  # one tune, from the other genre
        assert all(-1 <= x["chroma_corr"] <= 1 for x in c["candidates"])  # reported too
        stored = checkpoint.read_onnx_header(checkpoint.onnx_path(c["file"], "ab"))
        assert stored["gain"]["ab"] == c["gain"]
        cal = checkpoint.read_checkpoint(c["file"])["provenance"]["calibration"]
        assert cal["gain"] == c["gain"] and cal["split"] == "train"
    assert "(chosen)" in r.stdout and "chroma corr. (CENS)" in r.stdout
    # the test split is what calibrated models are measured on: refused
    r = run_cli("train", "calibrate", d, "--data", corpus, "--split", "test")
    assert r.returncode == 1 and "validation split" in r.stderr
    r = run_cli("train", "calibrate", d, "--data", corpus, "--gains", "1,x")
    assert r.returncode == 1 and "--gains" in r.stderr


def test_ablation_table_without_the_judge(corpus: Path, tiny_models: Path,
                                          tmp_path: Path) -> None:
    """benchmarks/ablation.py judges the variants it finds, names the missing ones, and says
    (in the words real_music.py uses) why the real columns are absent."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    runs = tmp_path / "runs"
    shutil.copytree(tiny_models, runs / "models-full")
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "ablation.py"), "--data",
                        str(corpus), "--runs", str(runs), "--genre", "rock", "--tunes", "1",
                        "--jobs", "1", "--real", "--judge", str(tmp_path / "no-judge")],
                       capture_output=True, text=True, cwd=root,
                       env=dict(os.environ, PYTHONPATH=str(root)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"^\| full \| .* \| 7 \| \d+% \| \d+% \|", r.stdout, re.M), r.stdout
    assert "real: target up" not in r.stdout  # no real columns without the judge
    assert (f"Real recordings not judged: no judge environment at {tmp_path / 'no-judge'}; "
            "build it with `bash ../shared/judge/setup.sh`") in r.stdout
    assert "Not trained here: dry, noreal, noresidual, nopaired" in r.stdout
