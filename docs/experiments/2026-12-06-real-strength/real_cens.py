"""Scratch: on the real validation excerpts, our cosine chroma vs a stricter CENS correlation
(Pearson over the whole CENS chromagram) as the trained converters' strength grows."""
import csv, json, sys, time
from pathlib import Path
import numpy as np, torch, librosa
torch.set_num_threads(1)
from genreshift.audio import load_audio
from genreshift.inference.convert import TrainedSettings, Target, convert_trained_file, scan_models, ModelCache
from genreshift.inference.metrics import chroma_similarity
real = Path("data/real"); out = Path(sys.argv[1])
rows = [r for r in csv.DictReader(open(real / "metadata.csv")) if r["split"] == "valid"]
seen, clips = set(), []
for r in rows:
    if r["tune"] not in seen:
        seen.add(r["tune"]); clips.append(r)
models = scan_models(); cache = ModelCache("cpu", threads=1)
def cens_corr(a, b, sr):
    A = librosa.feature.chroma_cens(y=a, sr=sr, hop_length=512)
    B = librosa.feature.chroma_cens(y=b, sr=sr, hop_length=512)
    T = min(A.shape[1], B.shape[1]); A, B = A[:, :T] - A[:, :T].mean(), B[:, :T] - B[:, :T].mean()
    return float((A * B).sum() / np.sqrt((A * A).sum() * (B * B).sum()))
TARGETS = ["classical", "jazz", "rock", "electronic", "hiphop", "lofi"]
CASES = [("keep", 0.5), ("keep", 0.75), ("keep", 1.0), ("replace", 1.0)]
res = []; tmp = Path("/tmp/exp/out2.wav")
for i, r in enumerate(clips):
    x, sr = load_audio(real / r["file_name"], mono=True); x = x[0]
    for tg in TARGETS:
        for rh, s in CASES:
            st = TrainedSettings(targets=(Target(tg, 1.0),), strength=s, rhythm=rh)
            convert_trained_file(real / r["file_name"], tmp, st, models=models, cache=cache, force=True, mono=True)
            y, _ = load_audio(tmp, mono=True, sr=sr); y = y[0]; n = min(len(x), len(y))
            res.append(dict(clip=r["file_name"], target=tg, rhythm=rh, strength=s,
                            chroma=chroma_similarity(x[:n], y[:n], sr), cens=cens_corr(x[:n], y[:n], sr)))
    print(f"[{time.strftime('%H:%M:%S')}] {i+1}/{len(clips)}", flush=True)
    out.write_text(json.dumps(res))
