"""`genreshift data real`: licence-checked excerpts of real recordings, on generated packages."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from genreshift import cli
from genreshift.audio import integrated_loudness, load_audio, save_audio
from genreshift.data import real
from genreshift.data.tensors import folder_clipset
from genreshift.errors import GenreshiftError

SR = 22_050
PKG = "fakegame-data"
COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fakegame

Files: music/*.ogg
       music/*.wav
Copyright: 2020 A. Composer
License: CC-BY-SA-3.0

Files: music/nc-*
Copyright: 2020 B. Composer
License: CC-BY-NC-SA-3.0
 Non-commercial only.

Files: sounds/*
License: GPL-2+

License: CC-BY-SA-3.0
 The licence text.
"""
OPTS = {"seconds": 6.0, "per_track": 2, "seed": 3, "loudness": -14.0}


def _tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.05
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)[None]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("debian")
    pkg = src / PKG
    doc = pkg / "usr/share/doc" / PKG
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    music = pkg / "usr/share/games/fakegame/music"
    music.mkdir(parents=True)
    save_audio(music / "theme.ogg", _tone(21.0, 220.0, 1), SR)
    save_audio(music / "battle.wav", _tone(22.0, 330.0, 2), SR)
    save_audio(music / "nc-credits.ogg", _tone(21.0, 440.0, 3), SR)  # CC-BY-NC: refused
    save_audio(music / "orphan.flac", _tone(21.0, 550.0, 4), SR)  # matches no stanza
    save_audio(music / "jingle.wav", _tone(3.0, 660.0, 5), SR)  # too short for music
    (music / "broken.ogg").write_text("this is not audio\n")
    sounds = pkg / "usr/share/games/fakegame/sounds"
    sounds.mkdir()
    save_audio(sounds / "boom.wav", _tone(1.0, 100.0, 6), SR)  # a sound effect
    # a test-set package: never read, whatever it holds
    held_out = src / "0ad-data" / "usr/share/games/0ad/music"
    held_out.mkdir(parents=True)
    save_audio(held_out / "track.ogg", _tone(21.0, 110.0, 7), SR)
    return src


@pytest.fixture(scope="module")
def imported(source, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("imp") / "real"
    summary = real.import_real(source, out, log=lambda *a: None, **OPTS)
    return out, summary


def _rows(out: Path) -> list[dict]:
    with open(out / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def _refusal(summary: dict, file_end: str) -> dict:
    found = [r for r in summary["refused"] if r["file"].endswith(file_end)]
    assert len(found) == 1, summary["refused"]
    return found[0]


def test_free_track_gives_excerpts_and_manifest_rows(imported):
    out, summary = imported
    rows = _rows(out)
    assert tuple(rows[0]) == real.METADATA_COLUMNS
    files = {r["file"] for r in rows}
    assert files == {"usr/share/games/fakegame/music/theme.ogg",
                     "usr/share/games/fakegame/music/battle.wav"}
    theme = [r for r in rows if r["file"].endswith("theme.ogg")]
    assert len(theme) == 2  # 21 s / 6 s allows more, --per-track caps it
    for r in rows:
        assert r["genre"] == "real" and r["package"] == PKG
        assert r["licence"] == "CC-BY-SA-3.0"
        assert r["file_name"].startswith(f"real/{PKG}__")
        assert float(r["duration"]) == pytest.approx(6.0, abs=1e-3)
        assert 0.0 <= float(r["offset_s"]) <= 22.0 - 6.0
        audio, sr = load_audio(out / r["file_name"])
        assert sr == SR and audio.shape[0] == 1
        assert np.max(np.abs(audio)) <= 10 ** (-1.0 / 20) + 1e-4  # peak-limited, no clipping
        assert integrated_loudness(audio, sr) == pytest.approx(-14.0, abs=1.0)
        assert float(r["loudness_lufs"]) == pytest.approx(integrated_loudness(audio, sr),
                                                          abs=0.05)
    # all excerpts of a track share its split and tune
    for f in files:
        assert len({(r["split"], r["tune"]) for r in rows if r["file"] == f}) == 1
    assert summary["packages"][PKG]["tracks"] == 2
    assert summary["packages"][PKG]["not_music"] == 1  # sounds/boom.wav
    licences = (out / "LICENSES.md").read_text()
    assert PKG in licences and "CC-BY-SA-3.0" in licences


def test_file_without_licence_entry_is_refused(imported):
    r = _refusal(imported[1], "orphan.flac")
    assert r["kind"] == "licence" and "no Files: stanza" in r["reason"]


def test_non_free_licence_is_refused(imported):
    r = _refusal(imported[1], "nc-credits.ogg")
    assert r["kind"] == "licence" and "CC-BY-NC-SA-3.0" in r["reason"]


def test_non_audio_file_is_refused_with_a_clear_message(imported):
    r = _refusal(imported[1], "broken.ogg")
    assert r["kind"] == "not-audio"
    assert "broken.ogg" in r["reason"] and "not a readable audio file" in r["reason"]
    assert _refusal(imported[1], "jingle.wav")["kind"] == "too-short"
    refused_csv = (imported[0] / "refused.csv").read_text()
    assert "broken.ogg" in refused_csv


def test_test_set_package_is_refused_by_name(imported):
    out, summary = imported
    r = [x for x in summary["refused"] if x["package"] == "0ad-data"]
    assert len(r) == 1 and r[0]["kind"] == "test-set"
    assert not any(row["package"] == "0ad-data" for row in _rows(out))


def test_same_seed_same_bytes_and_rerun_reuses(source, imported, tmp_path):
    out, _ = imported
    again = tmp_path / "again"
    real.import_real(source, again, log=lambda *a: None, **OPTS)
    for name in ["metadata.csv", "LICENSES.md"] + [r["file_name"] for r in _rows(out)]:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    rerun = real.import_real(source, again, log=lambda *a: None, **OPTS)
    assert rerun["reused_tracks"] == 2
    assert (again / "metadata.csv").read_bytes() == (out / "metadata.csv").read_bytes()
    with pytest.raises(GenreshiftError, match="other options"):
        real.import_real(source, again, log=lambda *a: None, **{**OPTS, "seed": 4})
    other = real.import_real(source, again, log=lambda *a: None, force=True,
                             **{**OPTS, "seed": 4})
    assert other["reused_tracks"] == 0
    names = {r["file_name"] for r in _rows(again)}
    assert sorted(p.name for p in (again / "real").iterdir()) == sorted(
        Path(n).name for n in names)  # nothing stale left behind


def test_output_is_a_folder_dataset_for_tensors(imported):
    clips = folder_clipset(imported[0])
    assert clips.kind == "synth" and len(clips.clips) == 4
    assert {c.genre for c in clips.clips} == {"real"}
    assert {c.split for c in clips.clips} == {"train", "valid"}


def test_licence_rules():
    assert real.pattern_matches("music/*.ogg", "usr/share/games/x/music/a/b.ogg")
    assert not real.pattern_matches("music/*.ogg", "usr/share/games/x/sounds/b.ogg")
    assert real.pattern_matches("*", "anything/at/all.wav")
    for name in ("GPL-2+", "LGPL-2.1+", "CC-BY-SA-4.0", "CC-BY-3.0", "CC0-1.0", "public-domain",
                 "Expat", "BSD-3-clause", "zlib", "Artistic-2.0", "GPL-2+ or CC-BY-NC-3.0"):
        assert real.licence_is_free(name)[0], name
    for name in ("CC-BY-NC-SA-3.0", "CC-BY-ND-4.0", "non-free", "proprietary", "other",
                 "unknown", "Some-Custom-License", "GPL-2+ and CC-BY-NC-3.0"):
        assert not real.licence_is_free(name)[0], name
    assert real.parse_dep5("This package was debianized by someone.\n") is None


def test_free_form_copyright_is_refused_unless_read(tmp_path):
    pkg = tmp_path / "mystery-data"
    doc = pkg / "usr/share/doc/mystery-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("This package was debianized by someone.\nIt is free.\n")
    lic = real.package_licences(pkg, "mystery-data")
    assert lic.licence_of("usr/share/games/m/music/a.ogg")[0] is None
    assert "not in the DEP-5 format" in lic.problem


def test_cli_bad_source_is_one_line_and_exit_1(tmp_path, capsys):
    rc = cli.main(["data", "real", "--source", str(tmp_path / "nope"), "--out",
                   str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "nope" in err and "make real-data" in err
