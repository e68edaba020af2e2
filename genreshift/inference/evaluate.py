"""Evaluation building blocks: content metrics, an independent genre judge, the EQ baseline.

- :func:`onset_f_measure`: do the output's note onsets fall where the input's did (mir_eval's
  onset F-measure, 50 ms window, onsets detected by librosa)?
- :class:`FeatureJudge`: a second genre judge that shares nothing with the CNN classifier the
  converters were validated against: a scikit-learn logistic regression on clip statistics of
  hand-made features (MFCC and spectral contrast, with deltas), fitted on the training split.
- :func:`genre_mean_spectra` / :func:`eq_mel`: the spectral-envelope baseline. The input's
  time-averaged log-mel is moved onto the target genre's (from the training split) by a fixed
  per-band gain, i.e. the best a static equaliser can do.

Chroma similarity and LSD live in genreshift.inference.metrics.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from genreshift import spectral
from genreshift.inference import EVALUATE_METHODS
from genreshift.errors import GenreshiftError
from genreshift.inference.metrics import cens, chroma_correlation, chroma_similarity, mel_lsd
from genreshift.spectral import MelConfig

if TYPE_CHECKING:
    from genreshift.inference.convert import ModelSet

ONSET_WINDOW_S = 0.05  # mir_eval's default tolerance


def onsets(wav: np.ndarray, sr: int) -> np.ndarray:
    """Onset times in seconds of a mono waveform [samples] (librosa's spectral-flux picker,
    backtracked to the energy minimum before each peak)."""
    import librosa

    return librosa.onset.onset_detect(y=np.asarray(wav, dtype=np.float32), sr=sr,
                                      units="time", backtrack=False)


def onset_f_measure(reference: np.ndarray, estimate: np.ndarray, sr: int,
                    window: float = ONSET_WINDOW_S) -> float:
    """F-measure of the estimate's onsets against the reference's (1: every onset kept and
    none added, within ``window`` seconds). Two clips without onsets score 1."""
    import mir_eval

    ref, est = onsets(reference, sr), onsets(estimate, sr)
    if len(ref) == 0 and len(est) == 0:
        return 1.0
    if len(ref) == 0 or len(est) == 0:
        return 0.0
    f, _, _ = mir_eval.onset.f_measure(ref, est, window=window)
    return float(f)


def clip_features(wav: np.ndarray, sr: int) -> np.ndarray:
    """Clip statistics for the feature judge: mean and standard deviation over time of 20
    MFCCs, their deltas and 7 spectral-contrast bands (94 numbers)."""
    import librosa

    y = np.asarray(wav, dtype=np.float32)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=2048, hop_length=512)
    delta = librosa.feature.delta(mfcc)
    contrast = librosa.feature.spectral_contrast(y=y, sr=sr, n_fft=2048, hop_length=512)
    parts = [mfcc, delta, contrast]
    return np.concatenate([np.concatenate([p.mean(1), p.std(1)]) for p in parts])


class FeatureJudge:
    """Genre judge #2: standardised clip features -> multinomial logistic regression."""

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(),
                                   LogisticRegression(C=c, max_iter=2000, random_state=seed))
        self.genres: list[str] = []

    def fit(self, features: np.ndarray, genres: Sequence[str]) -> FeatureJudge:
        self.model.fit(np.asarray(features), list(genres))
        self.genres = [str(g) for g in self.model.classes_]
        return self

    def probabilities(self, features: np.ndarray) -> list[dict[str, float]]:
        """Per clip: genre -> probability."""
        probs = self.model.predict_proba(np.atleast_2d(features))
        return [dict(zip(self.genres, map(float, p))) for p in probs]


def genre_mean_spectra(mels: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per genre, the time-averaged normalised log-mel [n_mels] over its clips (each clip
    [n_mels, frames] weighs the same)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for genre, mel in mels:
        m = mel.reshape(-1, mel.shape[-2], mel.shape[-1]).mean(dim=(0, 2))
        sums[genre] = sums.get(genre, torch.zeros_like(m)) + m
        counts[genre] = counts.get(genre, 0) + 1
    return {g: sums[g] / counts[g] for g in sums}


def eq_mel(mel: torch.Tensor, target_mean: torch.Tensor) -> torch.Tensor:
    """The EQ baseline: a fixed per-band gain that gives ``mel`` [..., n_mels, frames] the
    target's time-averaged log-mel [n_mels] (clamped to the normalised range)."""
    own = mel.mean(dim=-1, keepdim=True)
    return (mel + (target_mean[:, None].to(mel) - own)).clamp(-1.0, 1.0)


def mean_db_distance(a: torch.Tensor, b: torch.Tensor, cfg: MelConfig) -> float:
    """RMS over bands of the dB difference between two mean spectra [n_mels]."""
    scale = (cfg.db_max - cfg.db_min) / 2.0
    return float(((a - b) * scale).pow(2).mean().sqrt())


# ---------------------------------------------------------------------------------------------
# The evaluation run: methods x (source, target) pairs on a paired corpus

METHODS = EVALUATE_METHODS


@dataclass
class Corpus:
    """A paired corpus (``genreshift data synth``): tune -> genre -> rendering, per split."""

    root: Path
    rows: list[dict[str, str]]

    @classmethod
    def open(cls, root: str | Path) -> Corpus:
        from genreshift.data.synth import read_metadata

        try:
            rows = read_metadata(root)
        except GenreshiftError as e:
            raise GenreshiftError(f"--data {root}: {e}") from None
        return cls(Path(root), rows)

    def tunes(self, split: str) -> dict[str, dict[str, Path]]:
        out: dict[str, dict[str, Path]] = {}
        for r in self.rows:
            if r["split"] == split:
                out.setdefault(r["tune"], {})[r["genre"]] = self.root / r["file_name"]
        if not out:
            splits = sorted({r["split"] for r in self.rows})
            raise GenreshiftError(f"{self.root}: no tunes in split '{split}'; it has "
                                  f"{', '.join(splits)}")
        return out

    def genres(self) -> list[str]:
        return sorted({r["genre"] for r in self.rows})

    def tunes_by_name(self) -> dict[str, dict[str, Path]]:
        """tune -> genre -> rendering, every split."""
        out: dict[str, dict[str, Path]] = {}
        for r in self.rows:
            out.setdefault(r["tune"], {})[r["genre"]] = self.root / r["file_name"]
        return out


def parse_pairs(text: str | None, genres: Sequence[str]) -> list[tuple[str, str]]:
    """``rock:jazz,classical:jazz`` -> [(source, target)]; None: every ordered pair."""
    if text is None:
        return [(s, t) for s in genres for t in genres if s != t]
    pairs = []
    for part in text.split(","):
        src, sep, dst = part.strip().partition(":")
        if not sep or not src or not dst:
            raise GenreshiftError(f"--pairs '{text}': write source:target pairs, e.g. "
                                  "rock:jazz,classical:jazz")
        for g in (src, dst):
            if g not in genres:
                raise GenreshiftError(f"--pairs: unknown genre '{g}'; the corpus has "
                                      f"{', '.join(genres)}")
        if src == dst:
            raise GenreshiftError(f"--pairs: {src}:{dst} converts a genre to itself")
        pairs.append((src, dst))
    return pairs


def _cut(audio: np.ndarray, sr: int, seconds: float | None) -> np.ndarray:
    return audio if seconds is None else audio[..., : round(seconds * sr)]


@dataclass
class Judges:
    """The two genre judges: the shipped CNN classifier and the feature judge."""

    classifier: object  # train.checkpoint.Classifier
    features: FeatureJudge

    def judge(self, wav: np.ndarray, sr: int, cfg: MelConfig) -> tuple[dict, dict]:
        from genreshift.audio import resample

        at = resample(wav[None], sr, cfg.sample_rate)[0]
        probs = self.classifier.classify_clip(spectral.wav_to_mel(np.ascontiguousarray(at), cfg))
        cnn = dict(zip(self.classifier.genres, map(float, probs)))
        return cnn, self.features.probabilities(clip_features(wav, sr))[0]


def fit_feature_judge(corpus: Corpus, split: str = "train", seconds: float | None = None,
                      progress: bool = False) -> FeatureJudge:
    """The feature judge fitted on every rendering of ``split``."""
    from genreshift.audio import load_audio

    feats, labels = [], []
    rows = [r for r in corpus.rows if r["split"] == split]
    if not rows:
        raise GenreshiftError(f"{corpus.root}: no '{split}' split to fit the feature judge on")
    for r in tqdm(rows, desc="feature judge", disable=not progress, leave=False):
        audio, sr = load_audio(corpus.root / r["file_name"], mono=True)
        feats.append(clip_features(_cut(audio, sr, seconds)[0], sr))
        labels.append(r["genre"])
    return FeatureJudge().fit(np.stack(feats), labels)


def _summarise(rows: list[dict]) -> dict:
    if not rows:
        return {}
    out = {"clips": len(rows)}
    for key in ("cnn_hit", "cnn_p", "judge_hit", "judge_p", "lsd_db", "chroma", "chroma_corr",
                "onset_f"):
        out[key] = float(np.mean([r[key] for r in rows]))
    out["rtf"] = float(np.sum([r["seconds_spent"] for r in rows])
                       / max(1e-9, np.sum([r["seconds"] for r in rows])))
    return out


@dataclass
class _Plan:
    """Everything a worker needs to evaluate some tunes (picklable)."""

    corpus: Corpus
    method: str
    pairs: list[tuple[str, str]]
    models: ModelSet  # scanned once by evaluate()
    seconds: float | None
    steps: int | None
    seed: int
    judge: FeatureJudge
    means: dict[str, torch.Tensor] | None
    threads: int | None = None
    gain: float | None = None  # trained: every converter's residual gain (None: its own)


def _mel(audio: np.ndarray, sr: int, cfg: MelConfig) -> torch.Tensor:
    """The mid log-mel [1, n_mels, frames] of a clip [channels, samples], as the pipeline
    analyses it."""
    from genreshift.inference.pipeline import Song

    return torch.from_numpy(Song(Path(), audio, sr).mid(cfg))[None]


def _tune_rng(seed: int, tune: str) -> random.Random:
    """The reference draw of one tune: the same whichever process or order evaluates it."""
    return random.Random(f"{seed}:{tune}")


def _evaluate_tune(plan: _Plan, tune: str) -> tuple[list[dict], list[dict]]:
    """The method's rows and the floor's rows for every pair of one tune."""
    from genreshift.inference import convert as tconv
    from genreshift.inference import reference as ref_mode
    from genreshift.inference.pipeline import Change, ReconstructionConfig, Song, reconstruct

    if plan.threads:
        torch.set_num_threads(plan.threads)
    corpus, method, seconds, steps, seed = (plan.corpus, plan.method, plan.seconds, plan.steps,
                                            plan.seed)
    models = plan.models
    cache = _cache()
    clf = cache.classifier(models.classifier)
    cfg = clf.mel_config
    judges = Judges(clf, plan.judge)
    recon = ReconstructionConfig()
    renderings = corpus.tunes_by_name()[tune]
    rng = _tune_rng(seed, tune)

    def features(wav, audio, sr, audio_cens) -> dict:
        """What the judges and content metrics see of one output (target-independent)."""
        cnn, feat = judges.judge(wav[0], sr, cfg)
        return {"cnn": cnn, "feat": feat, "mel": _mel(wav, sr, cfg)[0],
                "chroma": chroma_similarity(audio[0], wav[0], sr),
                "chroma_corr": chroma_correlation(audio[0], wav[0], sr, a_cens=audio_cens),
                "onset_f": onset_f_measure(audio[0], wav[0], sr),
                "seconds": audio.shape[-1] / sr}

    def row(f: dict, source: str, target: str, truth, spent: float) -> dict:
        cnn, feat = f["cnn"], f["feat"]
        return {"tune": tune, "source": source, "target": target,
                "cnn_hit": max(cnn, key=cnn.get) == target, "cnn_p": cnn.get(target, 0.0),
                "cnn_label": max(cnn, key=cnn.get),
                "judge_hit": max(feat, key=feat.get) == target,
                "judge_p": feat.get(target, 0.0), "judge_label": max(feat, key=feat.get),
                "lsd_db": mel_lsd(truth, f["mel"], cfg), "chroma": f["chroma"],
                "chroma_corr": f["chroma_corr"], "onset_f": f["onset_f"],
                "seconds": f["seconds"], "seconds_spent": spent}

    rows, floor = [], []
    todo = [(s, d) for s, d in plan.pairs if s in renderings and d in renderings]
    for source in sorted({s for s, _ in todo}):
        audio, sr = _load(renderings[source], seconds)
        audio_cens = cens(audio[0], sr)  # the input's, once for all its outputs
        t0 = time.perf_counter()
        song = Song(renderings[source], audio, sr)
        mid = song.mid(cfg)
        ident = reconstruct(song, Change(cfg, mid, mid), recon)
        ident_s = time.perf_counter() - t0
        ident_f = features(ident, audio, sr, audio_cens)
        for _, target in [p for p in todo if p[0] == source]:
            truth = _mel(*_load(renderings[target], seconds), cfg)[0]
            t0 = time.perf_counter()
            mel = None
            if method == "identity":
                wav, spent = ident, ident_s
            else:
                if method == "eq":
                    mel = eq_mel(torch.from_numpy(mid), plan.means[target]).numpy()
                elif method == "trained":
                    info, direction = tconv.choose_converter(models, target, source)
                    gain = info.gain(direction) if plan.gain is None else plan.gain
                    mel = tconv.convert_mel(mid[None],
                                            [(cache.generator(info, direction), gain)],
                                            stride=info.stride)[0]
                else:
                    # a random other tune in the target genre, from any split (never the
                    # ground truth: the same tune)
                    others = sorted(corpus.root / r["file_name"] for r in corpus.rows
                                    if r["genre"] == target and r["tune"] != tune)
                    if not others:
                        raise GenreshiftError(f"{corpus.root}: no other tune in {target} to "
                                              "use as the reference")
                    ref_audio, ref_sr = _load(rng.choice(others), seconds)
                    kw = {"steps": steps} if steps is not None else {}
                    if method == "reference":
                        style = _mel(ref_audio, ref_sr, cfg)[0]
                        mid_out, _ = ref_mode.reference_transfer(torch.from_numpy(mid), style,
                                                                 seed=seed, mel_config=cfg, **kw)
                        mel = mid_out.numpy()
                    else:  # gram-baseline: its own spectrogram, optimiser and inversion
                        out, _ = ref_mode.baseline_gram_transfer(
                            torch.from_numpy(audio[0]), torch.from_numpy(ref_audio[0]),
                            sample_rate=sr, seed=seed, **kw)
                        wav = out.numpy()[None].astype(np.float32)
                if mel is not None:
                    wav = reconstruct(song, Change(cfg, mid, np.asarray(mel, np.float32)),
                                      recon)
                spent = time.perf_counter() - t0
            out_f = ident_f if method == "identity" else features(wav, audio, sr, audio_cens)
            rows.append(row(out_f, source, target, truth, spent))
            floor.append(row(ident_f, source, target, truth, ident_s))
    return rows, floor


_CACHE = None


def _cache():
    """One model cache per process (workers evaluate several tunes)."""
    global _CACHE
    from genreshift.inference import convert as tconv

    if _CACHE is None:
        _CACHE = tconv.ModelCache("cpu")
    return _CACHE


def evaluate(
    corpus: Corpus,
    method: str,
    *,
    split: str = "test",
    pairs: Sequence[tuple[str, str]] | None = None,
    models_dir: str | Path | None = None,
    tunes: int | None = None,
    seconds: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    judge: FeatureJudge | None = None,
    jobs: int = 1,
    progress: bool = False,
    gain: float | None = None,
) -> dict:
    """Run ``method`` on every (source, target) pair of ``split`` and measure it next to the
    reconstruction floor (the input analysed and reconstructed unchanged). Returns the report:
    per pair and overall summaries, every row, the confusion counts of both judges.

    ``gain`` (trained only) applies every converter's change with this residual gain instead
    of the one stored in its file (`train calibrate` measures candidates this way).

    ``jobs`` > 1 evaluates tunes in that many worker processes of one torch thread each (the
    results do not depend on it: each tune draws its references from its own seeded RNG)."""
    from genreshift.inference import convert as tconv

    if method not in METHODS:
        raise GenreshiftError(f"unknown method '{method}'; choose {', '.join(METHODS)}")
    if jobs < 1:
        raise GenreshiftError(f"--jobs {jobs}: use 1 or more processes")
    if gain is not None:
        from genreshift.checkpoint import check_gain

        if method != "trained":
            raise GenreshiftError(f"--gain applies to the trained method, not {method}")
        gain = check_gain(gain, "--gain")
    genres = corpus.genres()
    pairs = list(pairs) if pairs is not None else parse_pairs(None, genres)
    models = tconv.scan_models(models_dir)
    if models.classifier is None:
        raise GenreshiftError("evaluation needs the genre classifier (classifier.pt in the "
                              "model folder; see --models)")
    if method == "trained":
        missing = sorted({t for _, t in pairs} - set(models.targets()))
        if missing:
            raise GenreshiftError(f"no converter to {', '.join(missing)}; available: "
                                  f"{', '.join(models.targets())}")
    clf = _cache().classifier(models.classifier)
    cfg = clf.mel_config
    by_tune = corpus.tunes(split)
    names = sorted(by_tune)[:tunes] if tunes else sorted(by_tune)
    clips = {t: sum(1 for s, d in pairs if s in by_tune[t] and d in by_tune[t]) for t in names}
    work = [t for t in names if clips[t]]
    if not work:
        raise GenreshiftError(f"no (tune, source, target) renderings for {pairs} in split "
                              f"'{split}'")
    means = None
    if method == "eq":
        means = genre_mean_spectra(
            (r["genre"], _mel(*_load(corpus.root / r["file_name"], seconds), cfg))
            for r in corpus.rows if r["split"] == "train")
        missing = sorted({t for _, t in pairs} - set(means))
        if missing:
            raise GenreshiftError(f"{corpus.root}: no '{', '.join(missing)}' renderings in the "
                                  "train split to take the EQ target from")
    plan = _Plan(corpus, method, pairs, models, seconds, steps, seed,
                 judge or fit_feature_judge(corpus, seconds=seconds, progress=progress), means,
                 threads=1 if jobs > 1 else None, gain=gain)
    bar = tqdm(total=sum(clips.values()), desc=method, unit="clip", disable=not progress)
    results: dict[str, tuple[list, list]] = {}
    if jobs == 1:
        for tune in work:
            results[tune] = _evaluate_tune(plan, tune)
            bar.update(len(results[tune][0]))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(jobs, len(work)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_evaluate_tune, plan, t): t for t in work}
            for f in as_completed(futures):
                results[futures[f]] = f.result()
                bar.update(len(results[futures[f]][0]))
    bar.close()
    rows = [r for t in work for r in results[t][0]]
    floor = [r for t in work for r in results[t][1]]
    per_pair = {}
    for s, d in pairs:
        sel = [r for r in rows if r["source"] == s and r["target"] == d]
        if sel:
            per_pair[f"{s}:{d}"] = {
                "method": _summarise(sel),
                "floor": _summarise([f for f in floor if f["source"] == s
                                     and f["target"] == d])}
    labels = sorted(set(genres) | set(clf.genres))
    confusion = {k: {t: {lab: sum(1 for r in rows if r["target"] == t and r[f"{k}_label"] == lab)
                         for lab in labels} for t in sorted({r["target"] for r in rows})}
                 for k in ("cnn", "judge")}
    return {"method": method, "split": split, "tunes": len(work), "seconds": seconds,
            "steps": steps, "seed": seed, "gain": gain,
            "overall": {"method": _summarise(rows), "floor": _summarise(floor)},
            "per_pair": per_pair, "confusion": confusion, "rows": rows}


def _load(path: Path, seconds: float | None) -> tuple[np.ndarray, int]:
    from genreshift.inference.pipeline import load_song

    audio, sr = load_song(path, mono=True)
    return _cut(audio, sr, seconds), sr

