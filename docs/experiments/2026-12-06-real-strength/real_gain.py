"""Scratch experiment (not shipped): on the real *validation* excerpts of data/real (training
packages, never trained on, never the test clips), how do content (chroma, onset F) and our own
judges' target probability move with the trained converters' strength? rhythm keep."""
import csv, json, sys, time
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from genreshift.audio import load_audio
from genreshift.inference.convert import TrainedSettings, Target, convert_trained_file, scan_models, ModelCache
from genreshift.inference.evaluate import onset_f_measure, Corpus, fit_feature_judge, clip_features
from genreshift.inference.metrics import chroma_similarity
from genreshift.checkpoint import load_classifier
from genreshift import spectral
from genreshift.audio import resample

real = Path("data/real"); synth = Path(sys.argv[1]); out = Path(sys.argv[2])
rows = [r for r in csv.DictReader(open(real / "metadata.csv")) if r["split"] == "valid"]
seen, clips = set(), []
for r in rows:
    if r["tune"] not in seen:
        seen.add(r["tune"]); clips.append(r)
print(len(rows), "valid excerpts,", len(clips), "tracks", flush=True)
t0 = time.time()
judge = fit_feature_judge(Corpus.open(synth), "train", seconds=10.0)
print("feature judge fitted", round(time.time() - t0), "s", flush=True)
models = scan_models(); cache = ModelCache("cpu", threads=1)
clf = cache.classifier(models.classifier)
cfg = clf.mel_config
def judges(wav, sr):
    at = resample(wav[None], sr, cfg.sample_rate)[0]
    p = clf.classify_clip(spectral.wav_to_mel(np.ascontiguousarray(at), cfg))
    cnn = dict(zip(clf.genres, map(float, p)))
    return cnn, judge.probabilities(clip_features(wav, sr))[0]
def rank(d, g):
    return sorted(d, key=d.get, reverse=True).index(g) + 1 if g in d else 99
TARGETS = ["classical", "jazz", "rock", "electronic", "hiphop", "lofi"]
STRENGTHS = [0.5, 0.75, 1.0]
res = []
tmp = Path("/tmp/exp/out.wav")
for i, r in enumerate(clips):
    x, sr = load_audio(real / r["file_name"], mono=True)
    x = x[0]
    cnn0, feat0 = judges(x, sr)
    for tg in TARGETS:
        for s in STRENGTHS:
            st = TrainedSettings(targets=(Target(tg, 1.0),), strength=s, rhythm="keep")
            summ = convert_trained_file(real / r["file_name"], tmp, st, models=models, cache=cache,
                                        force=True, mono=True)
            y, sr2 = load_audio(tmp, mono=True); y = y[0]
            n = min(len(x), len(y))
            cnn, feat = judges(y, sr2)
            res.append(dict(clip=r["file_name"], target=tg, strength=s,
                            chroma=chroma_similarity(x[:n], y[:n], sr),
                            onset_f=onset_f_measure(x[:n], y[:n], sr),
                            cnn_p0=cnn0.get(tg, 0), cnn_p=cnn.get(tg, 0), cnn_rank=rank(cnn, tg),
                            feat_p0=feat0.get(tg, 0), feat_p=feat.get(tg, 0), feat_rank=rank(feat, tg),
                            source=summ.get("source_genre") if isinstance(summ, dict) else None))
    print(f"[{time.strftime('%H:%M:%S')}] {i+1}/{len(clips)} {r['file_name']}", flush=True)
    out.write_text(json.dumps(res))
