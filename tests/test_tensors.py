"""Mel shards + manifest (build_tensors) and training windows (MelWindows), on datasets built here.

A few-tune corpus in the synthetic corpus's layout (<genre>/<tune>.wav + metadata.csv with a split
per tune) and a plain <genre>/*.wav folder, both of short generated clips.
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import music_like, run_cli

from genreshift.audio import load_audio
from genreshift.data import tensors
from genreshift.data.tensors import build_tensors, load_manifest
from genreshift.data.windows import MelWindows
from genreshift.errors import GenreshiftError
from genreshift.spectral import MelConfig, wav_to_mel

SR = 22_050
GENRES = ("classical", "jazz", "rock")
TUNE_SPLITS = {"tune_0000": "train", "tune_0001": "train", "tune_0002": "train",
               "tune_0003": "valid", "tune_0004": "test"}
CFG = MelConfig(hop_length=512, n_mels=64)  # smaller than the default: fast tests


def make_corpus(root: Path, tunes: dict[str, str] = TUNE_SPLITS, seconds: float = 1.5) -> Path:
    """The synthetic corpus's layout: every tune rendered in every genre, split per tune."""
    rows = []
    for g_idx, genre in enumerate(GENRES):
        (root / genre).mkdir(parents=True, exist_ok=True)
        for t_idx, (tune, split) in enumerate(sorted(tunes.items())):
            # lengths differ per clip so that offsets and window counts are not all alike
            audio = music_like(seconds + 0.25 * t_idx, SR, seed=10 * g_idx + t_idx)
            sf.write(root / genre / f"{tune}.wav", audio, SR, subtype="PCM_16")
            rows.append({"file_name": f"{genre}/{tune}.wav", "tune": tune, "genre": genre,
                         "split": split, "key": "C", "tempo": "100"})
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("synth") / "corpus")


@pytest.fixture(scope="module")
def meldir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mel") / "mel"
    build_tensors(corpus, out, mel_config=CFG, workers=2, progress=False)
    return out


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted((out / "shards").rglob("*.npy"))}


# ---------------------------------------------------------------------------------------------
# build_tensors


def test_shapes_and_values(meldir, corpus):
    manifest = load_manifest(meldir)
    assert len(manifest["clips"]) == len(GENRES) * len(TUNE_SPLITS)
    assert len(manifest["shards"]) == len(GENRES) * 3  # one per (genre, split)
    for rel, info in manifest["shards"].items():
        arr = np.load(meldir / rel, mmap_mode="r")
        assert arr.dtype == np.float16 and list(arr.shape) == info["shape"]
        members = [c for c in manifest["clips"] if c["shard"] == rel]
        assert arr.shape == (CFG.n_mels, sum(c["frames"] for c in members))
        assert sorted(c["offset"] for c in members) == list(
            np.cumsum([0] + [c["frames"] for c in members])[:-1])
    clip = manifest["clips"][4]
    audio, _ = load_audio(corpus / clip["source"], sr=CFG.sample_rate, mono=True)
    expected = wav_to_mel(torch.from_numpy(audio[0]), CFG).numpy()
    assert clip["frames"] == CFG.frames(audio.shape[1]) == expected.shape[1]
    stored = np.load(meldir / clip["shard"])[:, clip["offset"]:clip["offset"] + clip["frames"]]
    assert np.abs(stored.astype(np.float32) - expected).max() < 1e-3  # float16 rounding only


def test_manifest_contents(meldir, corpus):
    manifest = load_manifest(meldir)
    assert manifest["format_version"] == tensors.FORMAT_VERSION
    assert MelConfig.from_dict(manifest["mel_config"]) == CFG
    assert manifest["sample_rate"] == CFG.sample_rate
    assert manifest["genres"] == list(GENRES)
    assert manifest["dataset"]["kind"] == "synth"
    assert manifest["dataset"]["split_method"] == "metadata"
    for c in manifest["clips"]:
        data = (corpus / c["source"]).read_bytes()
        assert c["checksum"] == "sha1:" + hashlib.sha1(data).hexdigest()
        info = sf.info(corpus / c["source"])
        assert c["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert c["genre"] == c["source"].split("/")[0]
        assert c["split"] == TUNE_SPLITS[c["group"]]
    stats = manifest["stats"]
    assert stats["split"] == "train" and len(stats["mean"]) == len(stats["std"]) == CFG.n_mels
    train = np.concatenate([np.load(meldir / r).astype(np.float64)
                            for r, i in manifest["shards"].items() if i["split"] == "train"],
                           axis=1)
    assert stats["frames"] == train.shape[1]
    np.testing.assert_allclose(stats["mean"], train.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(stats["std"], train.std(axis=1), atol=1e-5)
    assert not (meldir / tensors.WORK_DIR).exists()  # the work dir goes once the build is done


def test_no_clip_or_tune_in_two_splits(meldir):
    manifest = load_manifest(meldir)
    split_of: dict[str, str] = {}
    for c in manifest["clips"]:
        for key in (c["source"], c["checksum"], "tune:" + c["group"]):
            assert split_of.setdefault(key, c["split"]) == c["split"], key
        assert manifest["shards"][c["shard"]]["split"] == c["split"]


def test_plain_folder_gets_a_stratified_random_split(tmp_path):
    for genre in GENRES:
        (tmp_path / "src" / genre).mkdir(parents=True)
        for k in range(7):
            sf.write(tmp_path / "src" / genre / f"{k}.flac", music_like(0.5, SR, seed=k), SR)
    summary = build_tensors(tmp_path / "src", tmp_path / "mel", mel_config=CFG, workers=1,
                            progress=False, seed=3)
    manifest = load_manifest(tmp_path / "mel")
    assert manifest["dataset"]["split_method"] == "random"
    for genre in GENRES:
        splits = sorted(c["split"] for c in manifest["clips"] if c["genre"] == genre)
        assert splits == ["test"] + ["train"] * 5 + ["valid"]
    assert summary["clips"] == 21 and len({c["source"] for c in manifest["clips"]}) == 21


def test_metadata_with_a_tune_in_two_splits_is_refused(tmp_path):
    root = make_corpus(tmp_path / "c", {"tune_0000": "train", "tune_0001": "test"}, seconds=0.3)
    text = (root / "metadata.csv").read_text().splitlines()
    text[1] = text[1].replace(",train,", ",test,")  # first rendering of tune_0000 -> test
    (root / "metadata.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(GenreshiftError, match="tune 'tune_0000' is in both"):
        build_tensors(root, tmp_path / "mel", mel_config=CFG, progress=False)


def test_rerun_skips_finished_clips_and_keeps_the_shards(meldir, corpus):
    before = shard_bytes(meldir)
    inodes = {p: (meldir / p).stat().st_ino for p in before}
    summary = build_tensors(corpus, meldir, mel_config=CFG, workers=1, progress=False)
    assert summary["decoded"] == 0 and summary["reused"] == len(GENRES) * len(TUNE_SPLITS)
    assert shard_bytes(meldir) == before
    assert {p: (meldir / p).stat().st_ino for p in before} == inodes  # not even rewritten


def test_interrupted_build_resumes(corpus, tmp_path, monkeypatch):
    out = tmp_path / "mel"
    original = tensors._ClipWorker.__call__
    done = []

    def interrupt_after_four(self, task):
        if len(done) == 4:
            raise KeyboardInterrupt
        done.append(task.name)
        return original(self, task)

    monkeypatch.setattr(tensors._ClipWorker, "__call__", interrupt_after_four)
    with pytest.raises(KeyboardInterrupt):
        build_tensors(corpus, out, mel_config=CFG, workers=1, progress=False)
    assert not (out / "manifest.json").exists()  # nothing half-committed
    assert not list((out / "shards").rglob("*.npy")) if (out / "shards").exists() else True
    assert len(list((out / tensors.WORK_DIR).rglob("*.npy"))) == 4
    with pytest.raises(GenreshiftError, match="interrupted"):
        load_manifest(out)

    monkeypatch.setattr(tensors._ClipWorker, "__call__", original)
    summary = build_tensors(corpus, out, mel_config=CFG, workers=2, progress=False)
    assert summary["reused"] == 4 and summary["decoded"] == len(GENRES) * len(TUNE_SPLITS) - 4
    clean = tmp_path / "clean"
    build_tensors(corpus, clean, mel_config=CFG, workers=1, progress=False)
    assert shard_bytes(out) == shard_bytes(clean)


def test_new_clip_is_added_and_unchanged_shards_are_kept(tmp_path):
    root = make_corpus(tmp_path / "c", TUNE_SPLITS, seconds=0.5)
    out = tmp_path / "mel"
    build_tensors(root, out, mel_config=CFG, workers=1, progress=False)
    before = shard_bytes(out)
    # one more test tune, rendered in every genre
    more = make_corpus(tmp_path / "c2", {**TUNE_SPLITS, "tune_0005": "test"}, seconds=0.5)
    for genre in GENRES:
        (root / genre / "tune_0005.wav").write_bytes((more / genre / "tune_0005.wav").read_bytes())
    (root / "metadata.csv").write_text((more / "metadata.csv").read_text())
    summary = build_tensors(root, out, mel_config=CFG, workers=1, progress=False)
    assert summary["decoded"] == len(GENRES) and summary["clips"] == len(GENRES) * 6
    after = shard_bytes(out)
    unchanged = {k for k in before if "/test/" not in k}
    assert unchanged <= set(after) and all(after[k] == before[k] for k in unchanged)
    assert not set(before) - unchanged & set(after)  # the old test shards were replaced


def test_builds_are_deterministic(corpus, meldir, tmp_path):
    other = tmp_path / "again"
    build_tensors(corpus, other, mel_config=CFG, workers=1, progress=False)
    assert shard_bytes(other) == shard_bytes(meldir)
    a, b = load_manifest(meldir), load_manifest(other)
    for key in ("clips", "shards", "stats", "splits", "genres", "mel_config"):
        assert a[key] == b[key]


def test_other_settings_into_the_same_folder_are_refused(corpus, meldir):
    with pytest.raises(GenreshiftError, match="hop_length 512 there, 256 asked"):
        build_tensors(corpus, meldir, mel_config=MelConfig(hop_length=256, n_mels=64),
                      progress=False)


def _empty(p: Path) -> Path:
    p.mkdir()
    return p


def _no_audio(p: Path) -> Path:
    (p / "jazz").mkdir(parents=True)
    (p / "jazz" / "notes.txt").write_text("x")
    return p


def _loose_audio(p: Path) -> Path:
    p.mkdir()
    sf.write(p / "a.wav", music_like(0.2, SR), SR)
    return p


def _metadata_missing_file(p: Path) -> Path:
    make_corpus(p, {"tune_0000": "train"}, seconds=0.2)
    (p / "jazz" / "tune_0000.wav").unlink()
    return p


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such folder"),
    (_empty, "folder is empty"),
    (_no_audio, "no audio files"),
    (_loose_audio, "move them into one folder per genre"),
    (_metadata_missing_file, "lists jazz/tune_0000.wav, which does not exist"),
])
def test_bad_input(tmp_path, make, message):
    with pytest.raises(GenreshiftError, match=message):
        build_tensors(make(tmp_path / "src"), tmp_path / "mel", mel_config=CFG, progress=False)


# ---------------------------------------------------------------------------------------------
# MelWindows


def test_windows_shapes_labels_and_length(meldir):
    ds = MelWindows(meldir, split="train", frames=16)
    manifest = load_manifest(meldir)
    train = [c for c in manifest["clips"] if c["split"] == "train"]
    assert len(ds) == sum(max(1, c["frames"] // 16) for c in train)
    assert ds.genres == list(GENRES) and ds.mel_config == CFG
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (CFG.n_mels, 16)
    assert isinstance(y, int)
    assert np.bincount(ds.labels).tolist() == [
        sum(max(1, c["frames"] // 16) for c in train if c["genre"] == g) for g in GENRES]
    sub = MelWindows(meldir, split="valid", genres=["rock", "classical"], frames=16)
    assert sub.genres == ["rock", "classical"]
    assert {sub[i][1] for i in range(len(sub))} == {0, 1}
    assert all(c["genre"] == sub.genres[label] for c, label in zip(sub.clips, sub._label))
    assert ds.mean.shape == ds.std.shape == (CFG.n_mels,)


def test_windows_stay_inside_their_clip(meldir):
    ds = MelWindows(meldir, split="train", frames=16, seed=5)
    for i in range(len(ds)):
        x, _ = ds[i]
        clip = ds.clips[int(np.searchsorted(ds._ends, i, side="right"))]
        mel = np.load(meldir / clip["shard"], mmap_mode="r")
        mel = np.asarray(mel[:, clip["offset"]:clip["offset"] + clip["frames"]], np.float32)
        starts = [s for s in range(clip["frames"] - 16 + 1)
                  if np.array_equal(mel[:, s:s + 16], x.numpy())]
        assert starts, f"window {i} is not a slice of its clip {clip['source']}"


def test_windows_are_deterministic_and_vary_with_seed_and_epoch(meldir):
    a = MelWindows(meldir, split="train", frames=16, seed=1, augment=True)
    b = MelWindows(meldir, split="train", frames=16, seed=1, augment=True)
    c = MelWindows(meldir, split="train", frames=16, seed=2, augment=True)
    idx = list(range(0, len(a), 3))

    def stack(ds: MelWindows) -> torch.Tensor:
        return torch.stack([ds[i][0] for i in idx])

    assert torch.equal(stack(a), stack(b))
    assert not torch.equal(stack(a), stack(c))
    b.set_epoch(1)
    assert not torch.equal(stack(a), stack(b))
    a.set_epoch(1)
    assert torch.equal(stack(a), stack(b))


def test_windows_same_through_dataloader_workers_and_pickle(meldir):
    ds = MelWindows(meldir, split="train", frames=16, seed=3, augment=True)
    ds[0]  # opens a map, which must not be pickled along
    assert ds._maps
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._maps == {} and torch.equal(clone[7][0], ds[7][0])
    serial = list(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=0))
    parallel = list(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2))
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_augmentation_is_light_and_keeps_silence(meldir):
    plain = MelWindows(meldir, split="train", frames=32, seed=4)
    aug = MelWindows(meldir, split="train", frames=32, seed=4, augment=True)
    masked = 0
    for i in range(len(plain)):
        x, xa = plain[i][0], aug[i][0]
        assert xa.min() >= -1.0 and xa.max() <= 1.0
        assert torch.all(xa[x <= -1.0] == -1.0)  # silence stays silent under a gain
        silent_cols = (xa == -1.0).all(dim=0) & ~(x == -1.0).all(dim=0)
        masked += bool(silent_cols.any())
        cfg = plain.mel_config
        assert (xa - x)[~silent_cols.expand_as(x) & (x > -1.0) & (xa < 1.0) & (xa > -1.0)] \
            .abs().max() <= 6.0 * 2 / (cfg.db_max - cfg.db_min) + 1e-6
    assert 0 < masked < len(plain)


def test_windows_bad_input(meldir, tmp_path):
    with pytest.raises(GenreshiftError, match=r"unknown genre\(s\) 'polka'.*classical, jazz, rock"):
        MelWindows(meldir, split="train", genres=["jazz", "polka"])
    with pytest.raises(GenreshiftError, match="longer than every clip"):
        MelWindows(meldir, split="train", frames=10_000)
    with pytest.raises(GenreshiftError, match="unknown split"):
        MelWindows(meldir, split="validation")
    with pytest.raises(GenreshiftError, match="no such folder"):
        MelWindows(tmp_path / "nope", split="train")
    with pytest.raises(GenreshiftError, match="no manifest.json"):
        MelWindows(tmp_path, split="train")


def test_split_with_no_clips(tmp_path):
    root = make_corpus(tmp_path / "c", {"tune_0000": "train", "tune_0001": "valid"}, seconds=0.3)
    build_tensors(root, tmp_path / "mel", mel_config=CFG, workers=1, progress=False)
    with pytest.raises(GenreshiftError, match="split 'test' has no clips"):
        MelWindows(tmp_path / "mel", split="test")
    # a genre with a single clip has it in train only
    (tmp_path / "solo" / "solo").mkdir(parents=True)
    sf.write(tmp_path / "solo" / "solo" / "one.wav", music_like(0.5, SR), SR)
    for k in range(3):
        (tmp_path / "solo" / "band").mkdir(exist_ok=True)
        sf.write(tmp_path / "solo" / "band" / f"{k}.wav", music_like(0.5, SR, seed=k), SR)
    build_tensors(tmp_path / "solo", tmp_path / "mel2", mel_config=CFG, workers=1, progress=False)
    with pytest.raises(GenreshiftError, match="split 'valid' has no clips of solo"):
        MelWindows(tmp_path / "mel2", split="valid", genres=["band", "solo"], frames=4)
    ds = MelWindows(tmp_path / "mel2", split="valid", frames=4)  # all genres: labels kept
    assert ds.genres == ["band", "solo"] and set(ds.labels.tolist()) == {0}


def test_damaged_manifests_and_shards(meldir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in (meldir / "shards").rglob("*.npy"):
        (bad / p.relative_to(meldir)).parent.mkdir(parents=True, exist_ok=True)
        (bad / p.relative_to(meldir)).write_bytes(p.read_bytes())
    manifest = json.loads((meldir / "manifest.json").read_text())
    (bad / "manifest.json").write_text('{"format_version": 1, "kind": "genresh')
    with pytest.raises(GenreshiftError, match="corrupt"):
        load_manifest(bad)
    (bad / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(GenreshiftError, match="newer genreshift"):
        load_manifest(bad)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    assert load_manifest(bad)["clips"] == manifest["clips"]
    victim = next(iter(manifest["shards"]))
    (bad / victim).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(GenreshiftError, match="shard missing or damaged"):
        MelWindows(bad, split="train")


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_data_tensors(corpus, tmp_path):
    out = tmp_path / "mel"
    proc = run_cli("data", "tensors", "--source", corpus, "--out", out, "--hop", "512",
                   "--n-mels", "64", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "15 clips" in proc.stdout and "train 9" in proc.stdout
    assert load_manifest(out)["mel_config"]["hop_length"] == 512


@pytest.mark.parametrize("args, message", [
    (["--source", "{tmp}/missing"], "no such folder"),
    (["--source", "{tmp}"], "folder is empty"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    args = [a.format(tmp=tmp_path / "src") for a in args]
    (tmp_path / "src").mkdir()
    proc = run_cli("data", "tensors", *args, "--out", tmp_path / "mel")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genreshift: error:") and message in lines[0]
