"""Reference mode vs the published audio style transfer method, on one clip, in one run.

Times genreshift's reference mode with its default settings end to end (load -> mel ->
optimise -> Griffin-Lim -> write) and the published method of Ulyanov & Lebedev (linear STFT
log-magnitudes, one random layer of 4096 filters of width 11, 300 Adam steps from noise,
Griffin-Lim; also load -> write), and reports the style (Gram) loss each reaches: in its own
feature space (what it optimised), and measured on the written audio in common feature
spaces, so the two are comparable: genreshift's features (the seed it optimised, and a
held-out seed it never saw) and the baseline's features. The style loss is everywhere the
relative squared Gram distance ||G - A||^2 / ||A||^2 to the reference (0 = same statistics);
the song before conversion is listed as the starting point. What is left of the song is
measured too: frame-by-frame chroma similarity to it (harmony kept) and log-mel distance.
Prints a markdown table.

    python benchmarks/reference_speed.py                              # generated clips
    python benchmarks/reference_speed.py --song SONG.wav --ref REF.wav

Without --song/--ref it generates a music-like song (chords with plucked envelopes and
noise-burst snares, 44.1 kHz stereo) and a reference of another texture (detuned saw pads,
hi-hats, kick), and says so: real renderings give the numbers that count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from genreshift import audio as gaudio
from genreshift import spectral
from genreshift.inference import metrics
from genreshift.inference import reference as ref_mode
from genreshift.models import gram
from genreshift.models.gram import FeatureConfig
from genreshift.spectral import MelConfig

SR = 22_050
MEASURE_LUFS = -23.0


def generated_song(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """[2, samples]: plucked chords that change every beat, snare bursts on the off-beats, the
    right channel a quieter, slightly delayed mix (a stereo image to keep)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k, start in enumerate(np.arange(0.0, seconds, 0.5)):
        i0 = int(start * sr)
        seg = t[i0:] - start
        env = np.exp(-seg * 4.0)
        root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1.0, 1.25, 1.5):
            for h in range(1, 8):
                out[i0:] += env * 0.08 / h * np.sin(2 * np.pi * root * ratio * h * seg)
        if k % 2 == 1:
            m = min(n - i0, int(0.08 * sr))
            out[i0:i0 + m] += rng.standard_normal(m) * 0.2 * np.exp(-np.arange(m) / (0.02 * sr))
    d = int(0.0004 * sr)
    right = 0.7 * np.concatenate([np.zeros(d), out[:n - d]])
    x = np.stack([out, right])
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


def generated_reference(seconds: float, sr: int, seed: int = 1) -> np.ndarray:
    """[2, samples]: detuned saw pads changing every 2 s, 16th-note hi-hats, a kick."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    for start in np.arange(0.0, seconds, 2.0):
        i0, i1 = int(start * sr), min(n, int((start + 2.0) * sr))
        seg = t[i0:i1] - start
        root = 55.0 * 2 ** (rng.integers(0, 12) / 12)
        for det in (0.997, 1.0, 1.003):
            out[i0:i1] += 0.15 * (2 * ((seg * root * det) % 1.0) - 1) * np.minimum(1, seg * 8)
    for start in np.arange(0.0, seconds, 0.125):
        i0 = int(start * sr)
        m = min(n - i0, int(0.03 * sr))
        out[i0:i0 + m] += rng.standard_normal(m) * 0.05 * np.exp(-np.arange(m) / (0.005 * sr))
    for start in np.arange(0.0, seconds, 0.375):
        i0 = int(start * sr)
        m = min(n - i0, int(0.15 * sr))
        s = np.arange(m) / sr
        out[i0:i0 + m] += (0.5 * np.sin(2 * np.pi * (50 + 80 * np.exp(-s * 30)) * s)
                           * np.exp(-s * 20))
    x = np.stack([out, out])
    return (x / np.abs(x).max() * 0.5).astype(np.float32)


def crop_to(path: Path, seconds: float, out: Path) -> Path:
    data, sr = sf.read(path, always_2d=True, dtype="float32")
    if data.shape[0] <= int(seconds * sr):
        return path
    sf.write(out, data[:int(seconds * sr)], sr, subtype="FLOAT")
    return out


def mono_at(path: Path, sr: int = SR, lufs: float | None = None) -> torch.Tensor:
    audio, _ = gaudio.load_audio(path, sr=sr, mono=True)
    if lufs is not None:
        audio = gaudio.normalize_loudness(audio, sr, lufs)
    return torch.from_numpy(np.ascontiguousarray(audio[0]))


def gram_distance(wav: torch.Tensor, ref: torch.Tensor, space: str) -> float:
    """Relative squared Gram distance of ``wav`` to ``ref`` (mono, SR) in a feature space."""
    if space == "baseline":
        cfg = ref_mode.baseline_mel_config(SR)
        fcfg = ref_mode.baseline_feature_config(seed=0)
        x, r = (ref_mode.baseline_spectrogram(w, cfg)[None] for w in (wav, ref))
    else:
        seed = {"genreshift": 0, "held-out": 1}[space]
        fcfg = FeatureConfig(seed=seed)
        x, r = (gram.centre_level(spectral.wav_to_mel(w, MelConfig())[None]) for w in (wav, ref))
    filters = gram.random_filters(fcfg)
    with torch.no_grad():
        return float(gram.style_loss(gram.gram_matrices_chunked(x, filters, chunk_frames=4096),
                                     gram.gram_matrices_chunked(r, filters, chunk_frames=4096)))


def chroma_similarity(wav: torch.Tensor, song: torch.Tensor) -> float:
    """Mean frame-by-frame chroma cosine similarity to the song (1 = the same harmony, frame
    for frame): how much of the song's content survived (genreshift.inference.metrics)."""
    return metrics.chroma_similarity(wav.numpy(), song.numpy(), SR)


def mel_distance(wav: torch.Tensor, song: torch.Tensor) -> float:
    """Log-mel distance (dB, LSD) to the song: how much of it was changed."""
    cfg = MelConfig()
    return metrics.mel_lsd(spectral.wav_to_mel(song, cfg), spectral.wav_to_mel(wav, cfg), cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--song", type=Path, help="song to convert (default: generated)")
    ap.add_argument("--ref", type=Path, help="reference recording (default: generated)")
    ap.add_argument("--seconds", type=float, default=30.0, help="crop both clips to this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-steps", type=int, default=ref_mode.BASELINE_STEPS)
    ap.add_argument("--baseline-optimizer", default="adam", choices=("adam", "lbfgs"))
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--out", type=Path, help="keep the outputs in this folder")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    out_dir = args.out or work
    out_dir.mkdir(parents=True, exist_ok=True)
    if (args.song is None) != (args.ref is None):
        sys.exit("give both --song and --ref, or neither")
    if args.song is None:
        source = ("generated music-like signals (not real music; rerun with --song/--ref on "
                  "real renderings)")
        song_path, ref_path = work / "song.wav", work / "ref.wav"
        sf.write(song_path, generated_song(args.seconds, 44_100).T, 44_100, subtype="PCM_16")
        sf.write(ref_path, generated_reference(args.seconds, 44_100).T, 44_100, subtype="PCM_16")
    else:
        source = f"{args.song} styled like {args.ref}"
        song_path = crop_to(args.song, args.seconds, work / "song.wav")
        ref_path = crop_to(args.ref, args.seconds, work / "ref.wav")
    info = sf.info(song_path)

    # genreshift reference mode, defaults, end to end.
    gs_out = out_dir / "genreshift_reference.wav"
    t, c = time.perf_counter(), time.process_time()
    summary = ref_mode.convert_reference_file(song_path, ref_path, gs_out, device="cpu",
                                              force=True)
    gs_wall, gs_cpu = time.perf_counter() - t, time.process_time() - c
    print(f"genreshift: {gs_wall:.1f} s", file=sys.stderr)

    bl_wall = bl_cpu = None
    bl_stats: dict = {}
    bl_out = out_dir / "baseline_ulyanov.wav"
    if not args.skip_baseline:
        t, c = time.perf_counter(), time.process_time()
        content = mono_at(song_path)
        style = mono_at(ref_path)
        wav, bl_stats = ref_mode.baseline_gram_transfer(
            content, style, steps=args.baseline_steps, optimizer=args.baseline_optimizer,
            device="cpu", progress=sys.stderr.isatty())
        gaudio.save_audio(bl_out, wav.numpy()[None], SR, force=True)
        bl_wall, bl_cpu = time.perf_counter() - t, time.process_time() - c
        print(f"baseline: {bl_wall:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()

    # Measured on the written audio, in common feature spaces, every clip at one loudness: the
    # features see absolute levels, and a style does not depend on playback volume.
    song = mono_at(song_path, lufs=MEASURE_LUFS)
    ref = mono_at(ref_path, lufs=MEASURE_LUFS)
    rows = [("song before conversion", song)]
    rows.append(("genreshift reference mode", mono_at(gs_out, lufs=MEASURE_LUFS)))
    if bl_wall is not None:
        rows.append(("published baseline", mono_at(bl_out, lufs=MEASURE_LUFS)))
    spaces = ("genreshift", "held-out", "baseline")
    measured = {name: {s: gram_distance(w, ref, s) for s in spaces}
                | {"mel_lsd_db": mel_distance(w, song), "chroma": chroma_similarity(w, song)}
                for name, w in rows}
    ref_chroma = chroma_similarity(ref, song)

    wait = os.environ.get("OMP_WAIT_POLICY")
    cmd = ("" if wait is None else f"OMP_WAIT_POLICY={wait} ") + "python " + " ".join(
        [os.path.relpath(sys.argv[0], Path(__file__).resolve().parents[1]), *sys.argv[1:]])
    print(f"\nCommand: `{cmd}`  ")
    print(f"Clip: {source}; song {info.duration:.1f} s, {info.samplerate} Hz, "
          f"{info.channels} ch  ")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"load average (1/5/15 min) before "
          f"{'/'.join(f'{x:.1f}' for x in load_before)}, after "
          f"{'/'.join(f'{x:.1f}' for x in load_after)}  ")
    print("Style loss: relative squared Gram distance ||G - A||² / ||A||² to the reference "
          f"(0 = same statistics); common spaces measured on the written audio, mono, every clip "
          f"at {MEASURE_LUFS:g} LUFS. CPU time: process CPU seconds over all threads (the work); "
          "wall time also counts waiting for a loaded CPU.\n")
    print("| method | settings | wall time, load → write (s) | CPU time (s) | "
          "style loss, own space "
          "(start → end) | style loss, genreshift features | held-out features (seed 1) | "
          "baseline features | mel distance to song (dB) | chroma similarity to song |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    m = measured["song before conversion"]
    print(f"| song before conversion | — | — | — | — | {m['genreshift']:.4g} | "
          f"{m['held-out']:.4g} | "
          f"{m['baseline']:.4g} | 0 | 1 |")
    st = summary["settings"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["timings_s"].items())
    m = measured["genreshift reference mode"]
    print(f"| genreshift reference mode | {st['optimizer']}, {st['steps']} steps, style "
          f"{st['style_weight']:g}, content {st['content_weight']:g}, chroma "
          f"{st['chroma_weight']:g}; style space {st['style_space']} (random filters "
          f"{'/'.join(map(str, FeatureConfig().widths))} x {FeatureConfig().filters}"
          f"{'' if st['style_space'] == 'random' else ' + classifier'}) | "
          f"**{gs_wall:.1f}** ({stages}) | {gs_cpu:.1f} | {summary['style_loss_initial']:.4g} → "
          f"{summary['style_loss_final']:.4g} | {m['genreshift']:.4g} | {m['held-out']:.4g} | "
          f"{m['baseline']:.4g} | {m['mel_lsd_db']:.1f} | {m['chroma']:.3f} |")
    if bl_wall is not None:
        m = measured["published baseline"]
        t_ = bl_stats["timings_s"]
        lr = f", lr {bl_stats['lr']:g}" if bl_stats.get("lr") else ""
        print(f"| published baseline | {bl_stats['optimizer']}, {bl_stats['steps']} steps{lr}; "
              f"log(1+|STFT|), 4096 filters x 11, {ref_mode.BASELINE_GL_ITERS} Griffin-Lim "
              f"iterations | **{bl_wall:.1f}** (features {t_['features']:.1f}, optimise "
              f"{t_['optimise']:.1f}, reconstruction {t_['reconstruction']:.1f}) | {bl_cpu:.1f} | "
              f"{bl_stats['style_loss_content']:.4g} (song) → {bl_stats['style_loss_final']:.4g} | "
              f"{m['genreshift']:.4g} | {m['held-out']:.4g} | {m['baseline']:.4g} | "
              f"{m['mel_lsd_db']:.1f} | {m['chroma']:.3f} |")
    print(f"\nFor scale: the reference itself has chroma similarity {ref_chroma:.3f} to the song.")
    if args.json:
        args.json.write_text(json.dumps({
            "command": cmd, "source": source, "load_before": load_before,
            "load_after": load_after,
            "genreshift": {"wall_s": gs_wall, "cpu_s": gs_cpu, **summary},
            "baseline": {"wall_s": bl_wall, "cpu_s": bl_cpu, **bl_stats}, "measured": measured,
            "reference_chroma_similarity": ref_chroma,
        }, indent=2, default=str))


if __name__ == "__main__":
    main()
