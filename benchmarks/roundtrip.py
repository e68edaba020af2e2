"""What reconstruction alone costs: wav -> log-mel -> wav on music, for each setting.

For every clip (mono, analysis rate, first 30 s) and each hop length, Griffin-Lim method
(mel-projected or classic linear), phase init (the input's own STFT phase, or random) and
iteration count, measures the log-spectral distance (dB) and spectral convergence of the
reconstruction against the input, the mel LSD between the reconstruction's log-mel and the
log-mel it was made from, and the wall time of analysis + reconstruction scaled to 30 s of
audio. Prints a markdown table.

    python benchmarks/roundtrip.py CLIP_OR_DIR [...]          # your own music
    python benchmarks/roundtrip.py --synth-tunes 2            # render a few synthetic clips

With ``--paired SYNTHDIR`` it also measures an oracle conversion on the paired synthetic
corpus: the true log-mel of tune t in genre B is reconstructed starting from the phase of the
same tune in genre A (what trained mode does, with a perfect converter), and compared with the
real rendering in genre B. This says whether the input's phase helps once the content changes.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genreshift import audio as gaudio
from genreshift import spectral
from genreshift.inference import metrics
from genreshift.spectral import MelConfig

AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3"}


def find_clips(paths: list[str]) -> list[Path]:
    clips: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            clips += sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXT)
        else:
            clips.append(p)
    return clips


def render_synth(tunes: int, seconds: float, out: Path) -> list[Path]:
    from genreshift.data.synth import build_synth_corpus

    build_synth_corpus(out, genres=None, tunes=tunes, seconds=seconds, soundfonts=None,
                       seed=1234, progress=False)
    return sorted(out.rglob("*.wav"))


def measure(clips: list[np.ndarray], cfg: MelConfig, method: str, init: str, n_iter: int
            ) -> tuple[float, float, float, float]:
    lsds, scs, mel_lsds, secs, total_s = [], [], [], 0.0, 0.0
    for x in clips:
        wav = torch.from_numpy(x)
        t = time.perf_counter()
        spec = spectral.stft(wav, cfg)
        mel = spectral.magnitude_to_mel(spec.abs(), cfg)
        y = spectral.mel_to_wav(mel, cfg, method=method, n_iter=n_iter,
                                phase=spec if init == "phase" else None,
                                length=wav.shape[-1], seed=0)
        secs += time.perf_counter() - t
        total_s += wav.shape[-1] / cfg.sample_rate
        ref_cfg = MelConfig()  # metrics always on the same STFT grid, whatever hop is tested
        lsds.append(metrics.waveform_lsd(wav, y, ref_cfg))
        scs.append(metrics.waveform_sc(wav, y, ref_cfg))
        # how well the audio carries the mel it was made from (what a converter produced)
        mel_lsds.append(metrics.mel_lsd(mel, spectral.wav_to_mel(y, cfg), cfg))
    return (statistics.mean(lsds), statistics.mean(scs), statistics.mean(mel_lsds),
            secs / total_s * 30.0)


def paired_clips(synthdir: Path, n_tunes: int, seconds: float
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(genre A rendering, genre B rendering) of the same tunes, for neighbouring genre pairs."""
    import csv

    rows = list(csv.DictReader(open(synthdir / "metadata.csv")))
    by_tune: dict[str, dict[str, str]] = {}
    for r in rows:
        by_tune.setdefault(r["tune"], {})[r["genre"]] = r["file_name"]
    pairs = []
    for tune in sorted(by_tune)[:n_tunes]:
        genres = sorted(by_tune[tune])
        for a, b in zip(genres, genres[1:] + genres[:1]):
            xa, _ = gaudio.load_audio(synthdir / by_tune[tune][a], sr=22_050, mono=True)
            xb, _ = gaudio.load_audio(synthdir / by_tune[tune][b], sr=22_050, mono=True)
            n = min(xa.shape[1], xb.shape[1], int(seconds * 22_050))
            pairs.append((np.ascontiguousarray(xa[0, :n]), np.ascontiguousarray(xb[0, :n])))
    return pairs


def measure_paired(pairs: list[tuple[np.ndarray, np.ndarray]], cfg: MelConfig, method: str,
                   init: str, n_iter: int) -> tuple[float, float, float]:
    lsds, scs, mel_lsds = [], [], []
    for xa, xb in pairs:
        a, b = torch.from_numpy(xa), torch.from_numpy(xb)
        target = spectral.wav_to_mel(b, cfg)
        phase = spectral.stft(a, cfg) if init == "input phase" else None
        y = spectral.mel_to_wav(target, cfg, method=method, n_iter=n_iter, phase=phase,
                                length=b.shape[-1], seed=0)
        lsds.append(metrics.waveform_lsd(b, y, MelConfig()))
        scs.append(metrics.waveform_sc(b, y, MelConfig()))
        mel_lsds.append(metrics.mel_lsd(target, spectral.wav_to_mel(y, cfg), cfg))
    return statistics.mean(lsds), statistics.mean(scs), statistics.mean(mel_lsds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", help="audio files or folders")
    ap.add_argument("--synth-tunes", type=int, default=0,
                    help="render this many tunes of the synthetic corpus (every genre)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--hops", default="256,512")
    ap.add_argument("--iters", default="0,16,32,64")
    ap.add_argument("--methods", default="mel,linear")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paired", type=Path, help="synthetic corpus folder: oracle-conversion table")
    ap.add_argument("--paired-tunes", type=int, default=3)
    ap.add_argument("--skip-roundtrip", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        paths = find_clips(args.clips)
        if args.synth_tunes:
            paths += render_synth(args.synth_tunes, args.seconds, Path(tmp))
        if not paths and not args.paired:
            sys.exit("give audio files/folders, --synth-tunes N or --paired SYNTHDIR")
        clips = []
        for p in paths:
            x, _ = gaudio.load_audio(p, sr=22_050, mono=True)
            clips.append(np.ascontiguousarray(x[0, : int(args.seconds * 22_050)]))

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "uncommitted"
    # the round-trip table's clips; an oracle-only run (--skip-roundtrip) reads none
    clip_note = ("" if args.skip_roundtrip else
                 f"{len(clips)} clips, {sum(len(c) for c in clips) / 22_050:.0f} s of audio; ")
    print(f"{clip_note}torch {torch.__version__}, {args.threads} threads, "
          f"{platform.processor() or 'cpu'}, commit {commit}\n")
    if args.paired:
        pairs = paired_clips(args.paired, args.paired_tunes, args.seconds)
        print(f"Oracle conversion: {len(pairs)} (genre A -> genre B) pairs of the same tune; "
              "target = true log-mel of B; metrics against the real B rendering\n")
        print("| method | init | GL iters | LSD vs B (dB) | spectral conv. vs B | mel LSD (dB) |")
        print("|---|---|---:|---:|---:|---:|")
        for method in args.methods.split(","):
            for init in ("input phase", "random"):
                for n_iter in map(int, args.iters.split(",")):
                    lsd, sc, mlsd = measure_paired(pairs, MelConfig(), method, init, n_iter)
                    print(f"| {method} | {init} | {n_iter} | {lsd:.2f} | {sc:.3f} | {mlsd:.2f} |",
                          flush=True)
        print()
    if args.skip_roundtrip:
        return
    print("| hop | method | init | GL iters | LSD (dB) | spectral conv. | mel LSD (dB) "
          "| time per 30 s (s) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for hop in map(int, args.hops.split(",")):
        cfg = MelConfig(hop_length=hop)
        for method in args.methods.split(","):
            for init in ("phase", "random"):
                for n_iter in map(int, args.iters.split(",")):
                    lsd, sc, mlsd, t30 = measure(clips, cfg, method, init, n_iter)
                    print(f"| {hop} | {method} | {init} | {n_iter} | {lsd:.2f} | {sc:.3f} | "
                          f"{mlsd:.2f} | {t30:.2f} |", flush=True)


if __name__ == "__main__":
    main()
