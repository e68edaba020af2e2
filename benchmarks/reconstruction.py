"""Reconstruction: full band, fidelity and time of each method, on real recordings.

For each clip (its first ``--seconds``, at its own rate and channel count) and each
reconstruction method of the pipeline (pipeline.reconstruct):

- **round trip** (no change): the share of energy above 11 kHz in the output against the
  input's (dB, full band), and LSD / spectral convergence of the output against the input over
  the full band (an STFT at the clip's own rate, n_fft 4096, hop 1024 at 44.1 kHz);
- **conversion** (the shipped ``--to`` converter on the mid, strength 1): the energy share above
  11 kHz, and how faithfully the output realises the change the converter asked for: mel LSD
  and mel spectral convergence between the converted mid log-mel and the log-mel of the
  output's mid (analysis settings), the quantity Griffin-Lim and the gain both aim at;
- the time of the reconstruction stage alone (median of the clips), loudness match included.

Run: ``.venv/bin/python benchmarks/reconstruction.py CLIP... [--seconds 20] [--to jazz]``.
Clips: any audio files; run_all passes full-band tracks of the Debian packages of
``make real-data`` (data/debian, never the test set) and says where none are found.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from genreshift import audio as gaudio
from genreshift import spectral
from genreshift.inference import convert as tconv
from genreshift.inference.pipeline import (
    Change,
    ReconstructionConfig,
    Song,
    band_energy_share,
    reconstruct,
)

ROOT = Path(__file__).resolve().parents[1]
METHODS = (("gain", 0), ("gain", 8), ("mel", 32), ("linear", 32))


def full_band_lsd_sc(ref: np.ndarray, est: np.ndarray, sr: int) -> tuple[float, float]:
    """LSD (dB) and spectral convergence between two [channels, samples] signals, STFT at
    their own rate over the full band."""
    cfg = spectral.native_stft(spectral.MelConfig(), sr)
    a = np.abs(spectral.stft(ref.astype(np.float32), cfg)).astype(np.float64)
    b = np.abs(spectral.stft(est.astype(np.float32), cfg)).astype(np.float64)
    floor = 1e-10
    lsd = np.sqrt(np.mean((10 * np.log10(np.maximum(a ** 2, floor))
                           - 10 * np.log10(np.maximum(b ** 2, floor))) ** 2, axis=-2))
    sc = np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12)
    return float(lsd.mean()), float(sc)


def mel_fidelity(target: np.ndarray, out: np.ndarray, sr: int, cfg: spectral.MelConfig
                 ) -> tuple[float, float]:
    """Mel LSD (dB) and mel-power spectral convergence of the output's mid against the
    converted mid log-mel ``target``."""
    got = Song(Path(), out, sr).mid(cfg)
    n = min(got.shape[-1], target.shape[-1])
    t_db = spectral.normalized_to_db(target[..., :n], cfg).astype(np.float64)
    g_db = spectral.normalized_to_db(got[..., :n], cfg).astype(np.float64)
    lsd = float(np.sqrt(((t_db - g_db) ** 2).mean(axis=0)).mean())
    tp, gp = 10 ** (t_db / 20), 10 ** (g_db / 20)
    return lsd, float(np.linalg.norm(tp - gp) / max(np.linalg.norm(tp), 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--models", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--to", default="jazz")
    args = ap.parse_args()
    models = tconv.scan_models(args.models)
    cache = tconv.ModelCache("cpu")
    info, direction = tconv.choose_converter(models, args.to, None)
    gen, cfg = cache.generator(info, direction), info.mel_config
    rows: dict[tuple[str, int], dict[str, list[float]]] = {m: {} for m in METHODS}
    described = []
    for clip in args.clips:
        audio, sr = gaudio.load_audio(clip)
        audio = audio[:, : int(args.seconds * sr)]
        described.append(f"{clip.name} ({sr} Hz, {audio.shape[0]} ch)")
        song = Song(clip, audio, sr)
        mid = song.mid(cfg)
        converted = tconv.convert_mel(mid[None], [(gen, info.gain(direction))],
                                      stride=info.stride)[0]  # as convert does
        share_in = band_energy_share(audio, sr)
        for method, iters in METHODS:
            recon = ReconstructionConfig(method=method, n_iter=iters)
            t = time.perf_counter()
            rt = reconstruct(song, Change(cfg, mid, mid), recon)
            spent = time.perf_counter() - t
            conv = reconstruct(song, Change(cfg, mid, converted), recon)
            lsd, sc = full_band_lsd_sc(audio, rt, sr)
            mlsd, msc = mel_fidelity(converted, conv, sr, cfg)
            r = rows[(method, iters)]
            for k, v in (("rt_share", band_energy_share(rt, sr) - share_in), ("rt_lsd", lsd),
                         ("rt_sc", sc), ("cv_share", band_energy_share(conv, sr) - share_in),
                         ("cv_mlsd", mlsd), ("cv_msc", msc), ("seconds", spent)):
                r.setdefault(k, []).append(v)
    full = sum(1 for c in described if int(c.split("(")[-1].split()[0]) > 22_050)
    print(f"{len(args.clips)} clips, first {args.seconds:g} s each: {', '.join(described)}; "
          f"{full} of them have a band above 11 kHz (the energy columns are theirs). "
          f"Conversion: {info.path.name} ({direction}) on the mid. Energy above 11 kHz: the "
          "output's share minus the input's, in dB (0 = kept). Medians over the clips; time: "
          f"the reconstruction stage of one round trip ({os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}).\n")
    print("| method | iterations | round trip: >11 kHz vs input (dB) | round trip: LSD (dB) | "
          "round trip: SC | conversion: >11 kHz vs input (dB) | conversion: mel LSD to the "
          "converted log-mel (dB) | conversion: mel SC | reconstruction time (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (method, iters), r in rows.items():
        # clips at or below 22.05 kHz have no band above 11 kHz: their share is nan, left out
        med = {k: float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
               for k, v in r.items()}
        print(f"| {method} | {iters} | {med['rt_share']:+.1f} | {med['rt_lsd']:.2f} | "
              f"{med['rt_sc']:.3f} | {med['cv_share']:+.1f} | {med['cv_mlsd']:.2f} | "
              f"{med['cv_msc']:.3f} | {med['seconds']:.2f} |")


if __name__ == "__main__":
    main()
