"""GTZAN from a local folder (every common layout) and from `datasets` sources, built in the test.

The fake GTZAN is in the real format (22 050 Hz mono 16-bit WAV) with real file names taken from
torchaudio's fault-filtered lists, GTZAN's corrupt jazz.00054.wav, a macOS AppleDouble file, a
hidden file and a clip that is in none of the lists.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, music_like, run_cli
from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

from genreshift.data import gtzan
from genreshift.data.clips import ClipRef, ClipSet
from genreshift.data.tensors import build_tensors
from genreshift.errors import GenreshiftError

SR = 22_050
GENRES = ("blues", "jazz")


def _pick(names: list[str], genre: str, k: int) -> list[str]:
    return [n for n in names if n.startswith(genre + ".") and n != "jazz.00054"][:k]


# Two clips of each split per genre, named as in the filtered lists, plus one clip in no list.
LISTED = {g: _pick(filtered_train, g, 2) + _pick(filtered_valid, g, 1) + _pick(filtered_test, g, 1)
          for g in GENRES}
UNLISTED = next(f"jazz.{i:05d}" for i in range(100)
                if f"jazz.{i:05d}" not in gtzan.filtered_split())
CORRUPT = "jazz.00054"  # unreadable in the common GTZAN distribution; listed in filtered_train


def _wav_bytes(seed: int, seconds: float = 0.75) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, music_like(seconds, SR, seed=seed), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _clip_bytes() -> dict[str, bytes]:
    """GTZAN id -> file bytes (the corrupt one truncated after its header, as in the wild)."""
    out, seed = {}, 0
    for g in GENRES:
        for name in LISTED[g]:
            out[name] = _wav_bytes(seed)
            seed += 1
    out[UNLISTED] = _wav_bytes(seed)
    out[CORRUPT] = _wav_bytes(99)[:30]
    return out


def write_tree(genres_dir: Path, ext: str = ".wav") -> Path:
    for cid, data in _clip_bytes().items():
        genre = cid.split(".")[0]
        (genres_dir / genre).mkdir(parents=True, exist_ok=True)
        path = genres_dir / genre / f"{cid}{ext}"
        if ext == ".au" and data[:4] == b"RIFF" and len(data) > 100:
            audio, sr = sf.read(io.BytesIO(data), dtype="float32")
            sf.write(path, audio, sr, format="AU", subtype="PCM_16")
        else:
            path.write_bytes(data)
    (genres_dir / "blues" / "._blues.00000.wav").write_bytes(b"\x00\x05\x16\x07Mac OS X junk")
    (genres_dir / "jazz" / ".hidden.wav").write_bytes(b"not audio")
    (genres_dir / "blues" / "notes.txt").write_text("not a clip")
    return genres_dir


LAYOUTS = {
    "direct": lambda root: root,
    "genres": lambda root: root / "genres",
    "kaggle": lambda root: root / "Data" / "genres_original",
    "tarball-one-level-down": lambda root: root / "gtzan-download" / "genres",
}


@pytest.fixture(scope="module")
def gtzan_dir(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("gtzan") / "genres")


def expected_names() -> set[str]:
    return {f"{n.split('.')[0]}/{n}.wav" for g in GENRES for n in LISTED[g]} | {
        f"jazz/{CORRUPT}.wav"}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_folder_layout_finds_the_same_clips_and_split(tmp_path, layout):
    genres_dir = LAYOUTS[layout](tmp_path)
    write_tree(genres_dir)
    if layout == "kaggle":  # Kaggle's copy ships images and CSVs beside the audio
        (tmp_path / "Data" / "images_original" / "blues").mkdir(parents=True)
        (tmp_path / "Data" / "features_30_sec.csv").write_text("filename,label\n")
    clipset = gtzan.gtzan_clips(tmp_path)
    assert Path(clipset.source) == genres_dir.resolve()
    names = {c.name for c in clipset.clips}
    assert names == expected_names()  # AppleDouble, hidden, .txt and unlisted clips are not in
    for c in clipset.clips:
        assert c.split == gtzan.filtered_split()[gtzan.clip_id(c.name)]
        assert c.genre == c.name.split("/")[0]
    assert clipset.excluded == [f"jazz/{UNLISTED}.wav"]
    assert clipset.split_method == "filtered"


def test_original_au_files_are_read(tmp_path):
    write_tree(tmp_path / "genres", ext=".au")
    clipset = gtzan.gtzan_clips(tmp_path)
    summary = build_tensors(clipset, tmp_path / "mel", workers=1, progress=False)
    assert summary["clips"] == 2 * 4 and len(summary["skipped"]) == 1


def test_build_skips_the_corrupt_clip_with_a_warning(gtzan_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = build_tensors(gtzan.gtzan_clips(gtzan_dir), tmp_path / "mel", workers=2,
                                progress=False)
    assert [s["name"] for s in summary["skipped"]] == [f"jazz/{CORRUPT}.wav"]
    assert any(f"{CORRUPT}.wav" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)
    assert summary["excluded"] == 1
    assert summary["clips"] == 8
    assert {s: v["clips"] for s, v in summary["splits"].items()} == {
        "train": 4, "valid": 2, "test": 2}


def test_an_unreadable_file_stops_the_build(tmp_path):
    clipset = ClipSet(kind="gtzan-folder", source=str(tmp_path), split_method="filtered",
                      clips=[ClipRef("blues/blues.00029.wav", "blues", "train",
                                     path=tmp_path / "blues.00029.wav")])
    with pytest.raises(GenreshiftError, match="blues.00029.wav: disappeared"):
        build_tensors(clipset, tmp_path / "mel", workers=1, progress=False)


def test_random_split_is_stratified_seeded_and_keeps_unlisted_clips(gtzan_dir):
    a = gtzan.gtzan_clips(gtzan_dir, split="random", seed=1)
    b = gtzan.gtzan_clips(gtzan_dir, split="random", seed=1)
    assert [(c.name, c.split) for c in a.clips] == [(c.name, c.split) for c in b.clips]
    assert f"jazz/{UNLISTED}.wav" in {c.name for c in a.clips} and not a.excluded
    for g in GENRES:  # blues: 4 clips (2 train, 1 valid, 1 test); jazz 6 (4/1/1)
        splits = sorted(c.split for c in a.clips if c.genre == g)
        n = len(splits)
        assert splits == ["test"] + ["train"] * (n - 2) + ["valid"]
    others = [gtzan.gtzan_clips(gtzan_dir, split="random", seed=s) for s in range(2, 6)]
    assert any([c.split for c in o.clips] != [c.split for c in a.clips] for o in others)


def _not_gtzan(p: Path) -> Path:
    (p / "blues").mkdir()
    (p / "blues" / "song.wav").write_bytes(_wav_bytes(0))  # audio, but not GTZAN's names
    return p


def _a_file(p: Path) -> Path:
    (p / "x.flac").write_bytes(b"x")
    return p / "x.flac"


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", "no such file or folder"),
    (lambda p: p, "folder is empty"),
    (_not_gtzan, "no GTZAN clips found"),
    (_a_file, "is a file"),
])
def test_bad_sources(tmp_path, make, message):
    with pytest.raises(GenreshiftError, match=message):
        gtzan.gtzan_clips(make(tmp_path))


def test_unknown_split_method(gtzan_dir):
    with pytest.raises(GenreshiftError, match="unknown split method"):
        gtzan.gtzan_clips(gtzan_dir, split="artist")


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets sources


def _hf_dataset(with_paths: bool = True):
    """A GTZAN-like `datasets.Dataset` as the hub's copy looks: file, audio{bytes,path}, genre."""
    import datasets

    rows = sorted(_clip_bytes().items())
    names = [f"/cache/genres/{cid.split('.')[0]}/{cid}.wav" for cid, _ in rows]
    ds = datasets.Dataset.from_dict({
        "file": names if with_paths else [None] * len(rows),
        "audio": [{"bytes": data, "path": name if with_paths else None}
                  for (_, data), name in zip(rows, names)],
        "genre": [list(gtzan.GTZAN_GENRES).index(cid.split(".")[0]) for cid, _ in rows],
    })
    # The hub copy has these features; casting needs no torchcodec (only encoding does).
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    return ds.cast_column("genre", datasets.ClassLabel(names=list(gtzan.GTZAN_GENRES)))


@pytest.fixture(scope="module")
def hf_sources(tmp_path_factory):
    import datasets

    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("hf")
    ds = _hf_dataset()
    ds.save_to_disk(str(root / "saved"))
    datasets.DatasetDict({"train": ds.select(range(5)), "test": ds.select(range(5, len(ds)))}
                         ).save_to_disk(str(root / "saved_dict"))
    (root / "pq" / "data").mkdir(parents=True)
    ds.select(range(5)).to_parquet(str(root / "pq" / "data" / "train-00000-of-00002.parquet"))
    ds.select(range(5, len(ds))).to_parquet(
        str(root / "pq" / "data" / "train-00001-of-00002.parquet"))
    ds.to_parquet(str(root / "one.parquet"))
    return root


@pytest.mark.parametrize("source", [
    "saved", "saved_dict", "one.parquet", "pq", "pq/data/*.parquet",
])
def test_datasets_sources_give_the_folder_clips(hf_sources, source):
    clipset = gtzan.gtzan_clips(str(hf_sources / source))
    assert clipset.kind == "gtzan-datasets"
    assert {c.name for c in clipset.clips} == expected_names()
    for c in clipset.clips:
        assert c.split == gtzan.filtered_split()[gtzan.clip_id(c.name)]
        assert c.path is None and c.fetch is not None
    assert clipset.excluded == [f"jazz/{UNLISTED}.wav"]


def test_datasets_and_folder_give_identical_tensors(hf_sources, gtzan_dir, tmp_path):
    a = build_tensors(gtzan.gtzan_clips(gtzan_dir), tmp_path / "a", workers=1, progress=False)
    b = build_tensors(gtzan.gtzan_clips(str(hf_sources / "saved")), tmp_path / "b", workers=2,
                      progress=False)
    assert a["clips"] == b["clips"] == 8 and len(b["skipped"]) == 1
    shards_a = sorted((tmp_path / "a" / "shards").rglob("*.npy"))
    shards_b = sorted((tmp_path / "b" / "shards").rglob("*.npy"))
    assert [p.name for p in shards_a] == [p.name for p in shards_b]
    for pa, pb in zip(shards_a, shards_b):
        assert np.array_equal(np.load(pa), np.load(pb))


def test_hub_id_goes_through_load_dataset(hf_sources, monkeypatch):
    """The code path a reachable hub takes, with load_dataset answering from a local copy."""
    import datasets

    calls = []

    def fake_load_dataset(name, *a, **kw):
        calls.append(name)
        return datasets.load_from_disk(str(hf_sources / "saved_dict"))

    monkeypatch.setattr(gtzan, "_hub_reachable", lambda endpoint, timeout=0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    clipset = gtzan.gtzan_clips("marsyas/gtzan")
    assert calls == ["marsyas/gtzan"] and clipset.kind == "gtzan-hub"
    assert {c.name for c in clipset.clips} == expected_names()


def test_offline_hub_id_says_how_to_use_a_local_copy(monkeypatch):
    import datasets

    monkeypatch.setattr(gtzan, "_hub_reachable", lambda endpoint, timeout=0: False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(GenreshiftError) as err:
        gtzan.gtzan_clips("marsyas/gtzan")
    msg = str(err.value)
    assert "cannot be reached" in msg and "save_to_disk" in msg and "parquet" in msg
    assert "GTZAN folder" in msg


def test_rows_without_file_names_need_a_random_split(tmp_path):
    ds = _hf_dataset(with_paths=False)
    ds.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(GenreshiftError, match="--split random"):
        gtzan.gtzan_clips(tmp_path / "saved")
    clipset = gtzan.gtzan_clips(tmp_path / "saved", split="random")
    assert len(clipset.clips) == 10 and {c.genre for c in clipset.clips} == set(GENRES)


def test_dataset_without_audio_column(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"x": [1, 2]}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(GenreshiftError, match="no audio column"):
        gtzan.gtzan_clips(tmp_path / "saved")


def test_cli_data_gtzan(gtzan_dir, tmp_path):
    out = tmp_path / "mel"
    proc = run_cli("data", "gtzan", "--source", gtzan_dir.parent, "--out", out, "--workers", "1",
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.json").is_file()
    assert f"{CORRUPT}.wav" in proc.stderr  # the warning names the skipped clip
    # offline hub: a one-line error, no traceback (HF_HUB_OFFLINE makes `datasets` fail fast)
    shutil.rmtree(out)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "genreshift", "data", "gtzan", "--source",
                           "marsyas/gtzan", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("genreshift: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "save_to_disk" in proc.stderr
