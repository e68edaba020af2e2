"""The rhythm section (genreshift.inference.rhythm), measured; prints Markdown.

Generated songs: a random melody over a four-chord loop arranged by the synthetic corpus's own
genre arrangements (genreshift.data.arrangements) at several tempi and rendered with
TinySoundFont (FluidR3_GM), so the true beats and the true drum stem are known; stereo at
``--sr`` (drums centred, the band a little wider). Then, if present, a few excerpts of the
real-recording training material (data/real/real/*.wav, Debian game music; no ground truth).

Tables:

1. HPSS settings: on the generated songs, the kit left in the harmonic layer, the music lost
   to the percussive layer (both relative to their own energy) and the percussive layer's SDR
   against the true kit, per median-filter kernel and margin, with the CPU time.
2. Analysis against the truth (generated songs): tempo (octave errors named), beat F-measure
   (mir_eval, 70 ms), downbeats and meter, the confidences; and the same beats by
   ``librosa.beat.beat_track`` on the same onset envelope (``--no-librosa`` skips it: importing
   librosa.beat costs seconds).
3. Confidence by kind of material: beat_confidence of drummed songs, drones, noise and
   generated rubato, against CLEAR_BEAT_THRESHOLD.
4. replace / add: beat alignment (mean absolute offset of the rendered kick and snare onsets,
   detected by librosa on the groove's kick and snare alone, against the input's tracked
   beats, over beats with such an onset within 70 ms; and the share of beats that have one),
   mir_eval F-measure of the beats tracked on the output against the input's (goal >= 0.8),
   the tempo kept, the extra CPU seconds per 30 s of audio.

    .venv/bin/python benchmarks/rhythm.py
    .venv/bin/python benchmarks/rhythm.py --seconds 12 --tempi 90,120 --real 0 --no-librosa
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = ROOT / "data" / "real" / "real"
KICK_AND_SNARE = (35, 36, 37, 38, 39, 40)  # GM: kicks, rim, snares, clap


def generated_song(genre: str, bpm: float, seconds: float, sr: int, seed: int,
                   beats_per_bar: int = 4):
    """(stereo mix, stereo drums, true beat times) of a random tune in ``genre``."""
    from genreshift.data.arrangements import arrange
    from genreshift.data.melodies import ChordSpan, LeadSheet, Note, Tune, TuneRef, meter_for
    from genreshift.data.synth import render_stems, stem_loudness

    meter = meter_for(beats_per_bar, 4)
    rng = np.random.default_rng(seed)
    total = seconds * bpm / 60.0
    bars = int(np.ceil(total / meter.bar_ql))
    t, melody = 0.0, []
    while t < total:
        d = float(rng.choice([0.5, 1.0, 1.5, 2.0]))
        melody.append(Note(t, d, int(rng.integers(62, 79))))
        t += d
    loop = [(0, "maj"), (9, "min"), (5, "maj"), (7, "7")]
    chords = tuple(ChordSpan(b * meter.bar_ql, meter.bar_ql, *loop[b % 4]) for b in range(bars))
    tune = Tune(TuneRef("bench"), "bench", meter, bars * meter.bar_ql, tuple(melody), chords, 0,
                "major", "derived")
    sheet = LeadSheet(tune, 0, 0, "major", float(bpm), total, tuple(melody), chords)
    arr = arrange(sheet, genre, np.random.default_rng(seed + 1))
    stems = render_stems(arr, "/usr/share/sounds/sf2/FluidR3_GM.sf2", sr)
    gains = {tr.channel: tr.level_db - stem_loudness(stems.stems[tr.channel], sr)
             for tr in arr.tracks}
    top = max(gains.values())
    n = round(arr.duration * sr)
    drums, left, right = (np.zeros(n, np.float32) for _ in range(3))
    for i, tr in enumerate(arr.tracks):
        x = stems.stems[tr.channel] * np.float32(10 ** ((gains[tr.channel] - top) / 20))
        if tr.is_drums:
            drums += x
        else:
            pan = 0.5 + 0.15 * ((i % 3) - 1)
            left += x * np.float32(1 - pan)
            right += x * np.float32(pan)
    mix = np.stack([left + 0.5 * drums, right + 0.5 * drums])
    scale = np.float32(0.8 / np.abs(mix).max())
    return mix * scale, np.stack([0.5 * drums, 0.5 * drums]) * scale, \
        np.arange(0.0, arr.duration - 1e-9, 60.0 / bpm)


def drone(seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f * t + 2 * np.sin(2 * np.pi * 0.1 * t))
            * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.03, 0.1) * t + rng.uniform(0, 6)))
            for f in (110, 165, 220, 277.2, 330))
    return (0.1 * y + 0.002 * rng.standard_normal(len(t))).astype(np.float32)[None]


def rubato(seconds: float, sr: int, seed: int, depth: float = 0.35) -> np.ndarray:
    """A classical arrangement (no drums) on a timeline whose tempo jumps by up to +-depth
    every 0.75 s."""
    from genreshift.data.arrangements import arrange
    from genreshift.data.melodies import ChordSpan, LeadSheet, Note, Tune, TuneRef, meter_for
    from genreshift.data.synth import render_arrangement

    rng = np.random.default_rng(seed)
    meter = meter_for(4, 4)
    total = seconds * 1.4 * 80 / 60.0
    bars = int(np.ceil(total / 4))
    t, melody = 0.0, []
    while t < total:
        d = float(rng.choice([0.5, 1.0, 1.5, 2.0]))
        melody.append(Note(t, d, int(rng.integers(62, 79))))
        t += d
    loop = [(0, "maj"), (9, "min"), (5, "maj"), (7, "7")]
    chords = tuple(ChordSpan(b * 4.0, 4.0, *loop[b % 4]) for b in range(bars))
    tune = Tune(TuneRef("b"), "b", meter, bars * 4.0, tuple(melody), chords, 0, "major", "x")
    sheet = LeadSheet(tune, 0, 0, "major", 80.0, total, tuple(melody), chords)
    arr = arrange(sheet, "classical", np.random.default_rng(seed + 1))
    seg = 0.75
    n = int(arr.duration / seg) + 2
    rate = np.exp(rng.uniform(np.log(1 - depth), np.log(1 + depth), n))
    knots = np.concatenate([[0.0], np.cumsum(seg / rate)])
    warp = lambda x: float(np.interp(x, np.arange(n + 1) * seg, knots))
    notes = tuple(dataclasses.replace(x, start=warp(x.start), end=warp(x.end))
                  for x in arr.notes)
    arr = dataclasses.replace(arr, notes=notes, duration=seconds)
    y = render_arrangement(arr, "/usr/share/sounds/sf2/FluidR3_GM.sf2", sr).audio
    return (0.5 * y / np.abs(y).max()).astype(np.float32)[None]


def f_measure(reference: np.ndarray, estimate: np.ndarray) -> float:
    import mir_eval

    ref, est = mir_eval.beat.trim_beats(reference), mir_eval.beat.trim_beats(estimate)
    if len(ref) == 0 or len(est) == 0:
        return 0.0
    return float(mir_eval.beat.f_measure(ref, est))


def kick_snare_onsets(analysis, genre: str, sr: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Detected audio onsets of the groove's kick and snare rendered alone (librosa), and
    the MIDI times of those notes."""
    import librosa

    from genreshift.data.synth import render_stems
    from genreshift.inference import rhythm

    arr = rhythm.groove_arrangement(analysis, genre, seed=seed)
    if arr is None:
        return np.zeros(0), np.zeros(0)
    hits = tuple(n for n in arr.notes if n.pitch in KICK_AND_SNARE)
    if not hits:
        return np.zeros(0), np.zeros(0)
    stem = render_stems(dataclasses.replace(arr, notes=hits), rhythm.groove_soundfont(),
                        sr).stems[arr.tracks[0].channel]
    onsets = librosa.onset.onset_detect(y=stem, sr=sr, hop_length=128, units="time")
    return onsets, np.array([n.start for n in hits])


def alignment(beats: np.ndarray, onsets: np.ndarray, window: float = 0.07
              ) -> tuple[float, float]:
    """Mean |offset| (ms) of the nearest onset to each beat that has one within ``window``,
    and the share of beats that have one."""
    if len(beats) == 0 or len(onsets) == 0:
        return float("nan"), 0.0
    d = np.array([onsets[np.argmin(np.abs(onsets - b))] - b for b in beats])
    near = np.abs(d) <= window
    return (float(np.mean(np.abs(d[near])) * 1000) if near.any() else float("nan"),
            float(near.mean()))


def octave(measured: float, truth: float) -> str:
    for factor, name in ((1.0, "ok"), (2.0, "x2"), (0.5, "/2"), (1.5, "x3/2"), (2 / 3, "x2/3")):
        if abs(measured / (truth * factor) - 1) < 0.04:
            return name
    return "wrong"


# --------------------------------------------------------------------------- sections


def hpss_table(songs, sr: int) -> None:
    from genreshift.inference import rhythm

    def db(x: float) -> float:
        return 10 * np.log10(max(x, 1e-20))

    def energy(x: np.ndarray) -> float:
        return float(np.sum(np.square(x, dtype=np.float64)))

    print("## 1. HPSS settings\n")
    print(f"{len(songs)} generated songs ({', '.join(sorted({s['genre'] for s in songs}))}), "
          f"{sr} Hz stereo; masks on the mono mix at {rhythm.ANALYSIS_SR} Hz "
          f"(n_fft {rhythm.HPSS_FFT}, hop {rhythm.HPSS_HOP}), applied at {sr} Hz. "
          "Kit left: energy of the true kit still in the harmonic layer; music lost: energy of "
          "the rest in the percussive layer (both dB re their own energy, lower is better); "
          "SDR: the percussive layer against the true kit. Chosen: kernel "
          f"({rhythm.HPSS_KERNEL_FRAMES}, {rhythm.HPSS_KERNEL_BINS}), margin "
          f"{rhythm.HPSS_MARGIN:g}.\n")
    print("| kernel (frames, bins) | margin | kit left (dB) | music lost (dB) | SDR (dB) | "
          "CPU per 30 s stereo (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    chosen = (rhythm.HPSS_KERNEL_FRAMES, rhythm.HPSS_KERNEL_BINS)
    grid = [(chosen, m) for m in (1, 1.5, 2, 3, 4, 8)]
    grid += [((17, 9), 1.5), ((17, 9), 2), ((17, 5), 2), ((11, 9), 2), ((23, 5), 2)]
    grid += [((31, 17), 1), ((31, 17), 2), ((31, 31), 1)]  # 31 x 31: librosa's default
    for kernel, margin in grid:
        rows, cpu, dur = [], 0.0, 0.0
        for s in songs:
            mix, drums = s["mix"], s["drums"]
            t = time.process_time()
            mono = rhythm._mono_at_analysis_rate(mix, sr)
            mag = np.abs(rhythm.spectral.stft(mono, rhythm._hpss_grid()))
            mask = rhythm.hpss_masks(mag, margin=margin, kernel=kernel)[1]  # as separate()
            perc = rhythm._apply_percussive_mask(mix, sr, mask)
            cpu += time.process_time() - t
            dur += mix.shape[1] / sr
            p_drums = rhythm._apply_percussive_mask(drums, sr, mask)
            rest = mix - drums
            p_rest = perc - p_drums
            rows.append((db(energy(drums - p_drums) / energy(drums)),
                         db(energy(p_rest) / energy(rest)),
                         db(energy(drums) / energy(perc - drums))))
        left, lost, sdr = np.mean(rows, axis=0)
        mark = " **(chosen)**" if (kernel == (rhythm.HPSS_KERNEL_FRAMES, rhythm.HPSS_KERNEL_BINS)
                                   and margin == rhythm.HPSS_MARGIN) else ""
        print(f"| {kernel}{mark} | {margin:g} | {left:+.1f} | {lost:+.1f} | {sdr:+.2f} | "
              f"{cpu / dur * 30:.2f} |")
    print()


def analysis_table(songs, sr: int, with_librosa: bool) -> None:
    from genreshift.inference import rhythm

    print("## 2. Analysis against the truth (generated songs)\n")
    print("Tempo: tracked (true), `ok` or the metrical error; F: mir_eval beat F-measure "
          "against the true beats; downbeat: the tracked first downbeat is a true one; conf: "
          "tempo / beat / downbeat / meter confidence; offset: median of tracked minus true "
          "beat (within 70 ms; the true beat is the MIDI note time, humanised +-10 ms)."
          + (" librosa F: `librosa.beat.beat_track` on our onset envelope, against the truth."
             if with_librosa else "") + "\n")
    head = "| song | tempo | F | offset (ms) | meter | downbeat | conf t/b/d/m | clear |"
    if with_librosa:
        head += " librosa tempo | librosa F |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    fs, lib_fs, meters, downs, offsets = [], [], [], [], []
    for s in songs:
        a = s["analysis"]
        truth = s["beats"]
        f = f_measure(truth, a.beats)
        fs.append(f)
        meter_ok = a.beats_per_bar == s["beats_per_bar"]
        meters.append(meter_ok)
        if len(a.beats):
            d0 = a.downbeats[0]
            k = int(np.argmin(np.abs(truth - d0)))
            down_ok = meter_ok and k % s["beats_per_bar"] == 0 and abs(truth[k] - d0) < 0.07
        else:
            down_ok = False
        downs.append(down_ok)
        near = [b - truth[np.argmin(np.abs(truth - b))] for b in a.beats]
        near = [d for d in near if abs(d) < 0.07]
        offsets.extend(near)
        row = (f"| {s['genre']} {s['beats_per_bar']}/4 {s['bpm']:g} | {a.tempo:.1f} "
               f"({octave(a.tempo, s['bpm'])}) | {f:.2f} | "
               f"{1000 * np.median(near) if near else float('nan'):+.1f} | {a.beats_per_bar}"
               f"{'' if meter_ok else ' ✗'} | {'yes' if down_ok else 'no'} | "
               f"{a.tempo_confidence:.2f} / {a.beat_confidence:.2f} / "
               f"{a.downbeat_confidence:.2f} / {a.meter_confidence:.2f} | "
               f"{'yes' if a.has_clear_beat else 'no'} |")
        if with_librosa:
            import librosa.beat

            mono22 = rhythm._mono_at_analysis_rate(s["mix"], sr)
            env = rhythm.onset_bands(mono22).sum(axis=0)
            tempo, frames = librosa.beat.beat_track(onset_envelope=env, sr=rhythm.ANALYSIS_SR,
                                                    hop_length=rhythm.ONSET_HOP)
            lib = frames * rhythm.ONSET_HOP / rhythm.ANALYSIS_SR + rhythm.ONSET_LAG_S
            lf = f_measure(truth, lib)
            lib_fs.append(lf)
            tempo = float(np.atleast_1d(tempo)[0])
            row += f" {tempo:.1f} ({octave(tempo, s['bpm'])}) | {lf:.2f} |"
        print(row)
    line = (f"| **all {len(songs)}** | | **{np.mean(fs):.2f}** | "
            f"{1000 * np.median(offsets):+.1f} | {np.mean(meters):.0%} right | "
            f"{np.mean(downs):.0%} right | | |")
    if with_librosa:
        line += f" | **{np.mean(lib_fs):.2f}** |"
    print(line + "\n")


def confidence_table(songs, sr: int, seconds: float) -> None:
    from genreshift.inference import rhythm

    print("## 3. Beat confidence by kind of material\n")
    print(f"has_clear_beat needs beat_confidence >= {rhythm.CLEAR_BEAT_THRESHOLD:g} (and "
          f">= {rhythm.MIN_BEATS} beats). Generated only; {seconds:g} s each.\n")
    kinds: dict[str, list[float]] = {"drummed songs (table 2)": [s["analysis"].beat_confidence
                                                                 for s in songs]}
    rng = np.random.default_rng(0)
    others = {
        "drones": [drone(seconds, sr, k) for k in range(3)],
        "white noise": [0.1 * rng.standard_normal((1, int(seconds * sr))).astype(np.float32)
                        for _ in range(2)],
        "rubato, tempo jumps up to 35 % every 0.75 s": [rubato(seconds, sr, k) for k in range(3)],
        "rubato, up to 20 %": [rubato(seconds, sr, 10 + k, depth=0.2) for k in range(3)],
    }
    for name, signals in others.items():
        kinds[name] = [rhythm.analyse_rhythm(x, sr).beat_confidence for x in signals]
    print("| material | n | beat confidence min / median / max | called clear |")
    print("|---|---:|---|---:|")
    for name, values in kinds.items():
        v = np.array(values)
        print(f"| {name} | {len(v)} | {v.min():.2f} / {np.median(v):.2f} / {v.max():.2f} | "
              f"{np.mean(v >= rhythm.CLEAR_BEAT_THRESHOLD):.0%} |")
    print()


def mix_table(items, sr: int) -> None:
    """items: dicts with label, audio, analysis, targets for replace and add."""
    from genreshift.inference import rhythm

    print("| song | mode -> groove | kit/snare offset, audio (ms) | MIDI (ms) | beats with one "
          "| F out vs in | tempo kept | extra CPU per 30 s (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    stats: dict[str, list] = {"replace": [], "add": []}
    for it in items:
        a0 = it["analysis"]
        x = it["audio"]
        dur = x.shape[1] / sr
        for mode, genre in (("replace", it["replace"]), ("add", it["add"])):
            t = time.process_time()
            a = rhythm.analyse_rhythm(x, sr)
            out, info = rhythm.apply_rhythm(x, sr, mode, [(genre, 1.0)], analysis=a, seed=1)
            cpu = time.process_time() - t
            if info["rhythm"] != mode:
                print(f"| {it['label']} | {mode} -> kept | — | — | — | — | — | "
                      f"{cpu / dur * 30:.2f} | ({info.get('reason', '')})")
                continue
            onsets, midi = kick_snare_onsets(a0, genre, sr, seed=1)
            off, share = alignment(a0.beats, onsets)
            off_midi, _ = alignment(a0.beats, midi)
            after = rhythm.analyse_rhythm(out, sr)
            f = f_measure(a0.beats, after.beats)
            kept = after.tempo / a0.tempo if a0.tempo else float("nan")
            stats[mode].append((off, off_midi, share, f, kept, cpu / dur * 30))
            print(f"| {it['label']} | {mode} -> {genre} | {off:.1f} | {off_midi:.1f} | "
                  f"{share:.0%} | {f:.2f} | {kept:.3f} | {cpu / dur * 30:.2f} |")
    for mode, rows in stats.items():
        if rows:
            r = np.array(rows, dtype=np.float64)
            print(f"| **mean, {len(rows)} songs** | **{mode}** | **{np.nanmean(r[:, 0]):.1f}** | "
                  f"{np.nanmean(r[:, 1]):.1f} | {np.mean(r[:, 2]):.0%} | "
                  f"**{np.mean(r[:, 3]):.2f}** (min {np.min(r[:, 3]):.2f}) | "
                  f"{np.mean(r[:, 4]):.3f} | **{np.median(r[:, 5]):.2f}** (median) |")
    print()


def real_items(n: int, seconds: float):
    import soundfile as sf

    from genreshift.audio import load_audio

    files = sorted(REAL_DIR.glob("*.wav")) if REAL_DIR.is_dir() else []
    if not files or n <= 0:
        return []
    step = max(1, len(files) // n)
    chosen = files[::step][:n]
    out = []
    for path in chosen:
        audio, sr = load_audio(path)
        frames = int(min(seconds, sf.info(str(path)).duration) * sr)
        out.append((path.name, audio[:, :frames], sr))
    return out


def speed_table(sr: int) -> None:
    """Costs on one 30 s song, stage by stage."""
    from genreshift.inference import rhythm

    mix, _, _ = generated_song("rock", 110, 30.0, sr, seed=99)
    a = rhythm.analyse_rhythm(mix, sr)  # warm: SoundFont loaded below too
    rhythm.render_groove(a, "jazz", sr)
    rows = []
    for _ in range(3):
        t0 = time.process_time()
        a = rhythm.analyse_rhythm(mix, sr)
        t1 = time.process_time()
        groove = rhythm.render_groove(a, "jazz", sr)
        t2 = time.process_time()
        rhythm.apply_rhythm(mix, sr, "replace", [("jazz", 1.0)], analysis=a)
        t3 = time.process_time()
        rows.append((t1 - t0, t2 - t1, t3 - t2))
    an, rend, app = np.median(rows, axis=0)
    assert groove.shape == mix.shape
    t = time.process_time()
    rhythm.separate(mix, sr)
    sep = time.process_time() - t
    print(f"## 5. Speed, one 30 s stereo song at {sr} Hz (CPU seconds, median of 3)\n")
    print("| analyse_rhythm (HPSS + beats + meter) | of which separate() alone | render_groove "
          "| apply_rhythm replace given the analysis (render + levels + mix) |")
    print("|---:|---:|---:|---:|")
    print(f"| {an:.2f} | {sep:.2f} | {rend:.2f} | {app:.2f} |\n")
    t = time.process_time()
    from genreshift.data.synth import _load_soundfont

    _load_soundfont.cache_clear()
    rhythm.render_groove(a, "jazz", sr)
    print(f"First groove in a process (loading {rhythm.groove_soundfont().name} once): "
          f"{time.process_time() - t:.2f} s CPU.\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tempi", default="72,90,110,140")
    ap.add_argument("--genres", default="rock,jazz,electronic,hiphop")
    ap.add_argument("--sr", type=int, default=44_100)
    ap.add_argument("--real", type=int, default=6, help="real excerpts (0: none)")
    ap.add_argument("--no-librosa", action="store_true")
    args = ap.parse_args(argv)

    from genreshift.inference import rhythm

    print(f"Command: `python benchmarks/rhythm.py {shlex.join(argv or sys.argv[1:])}`  ")
    print(f"Machine: {platform.machine()} {os.cpu_count()}-core CPU (shared), Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f} before  ")
    print(f"Kit SoundFont: {rhythm.groove_soundfont().name}\n")
    tempi = [float(t) for t in args.tempi.split(",")]
    genres = args.genres.split(",")
    songs = []
    for i, genre in enumerate(genres):
        for j, bpm in enumerate(tempi):
            bpb = 3 if (i + j) % 4 == 3 else 4
            mix, drums, beats = generated_song(genre, bpm, args.seconds, args.sr, seed=10 * i + j,
                                               beats_per_bar=bpb)
            songs.append({"genre": genre, "bpm": bpm, "beats_per_bar": bpb, "mix": mix,
                          "drums": drums, "beats": beats,
                          "analysis": rhythm.analyse_rhythm(mix, args.sr)})
    hpss_table(songs, args.sr)
    analysis_table(songs, args.sr, not args.no_librosa)
    confidence_table(songs, args.sr, args.seconds)
    print("## 4. replace and add\n")
    print("Alignment: librosa onsets of the groove's kick and snare rendered alone, against "
          "the input's tracked beats (beats with such an onset within 70 ms; syncopated kicks "
          "fall outside); MIDI: the same for the notes' own times (placement and "
          "humanisation only). F: beats tracked on the output against the input's. Tempo "
          "kept: output / input tempo. CPU: analyse + render + mix, per 30 s of audio.\n")
    print("### Generated songs\n")
    targets = ["jazz", "rock", "hiphop", "electronic", "lofi"]
    items = []
    for k, s in enumerate(songs):
        replace = next(g for g in targets[k % len(targets):] + targets if g != s["genre"])
        add = next(g for g in targets[(k + 2) % len(targets):] + targets
                   if g not in (s["genre"], replace))
        items.append({"label": f"{s['genre']} {s['beats_per_bar']}/4 {s['bpm']:g}",
                      "audio": s["mix"], "analysis": s["analysis"], "replace": replace,
                      "add": add})
    mix_table(items, args.sr)
    real = real_items(args.real, args.seconds)
    if real:
        print(f"### Real excerpts (data/real/real, first {args.seconds:g} s)\n")
        print("| excerpt | tempo | conf t/b/d/m | meter | clear |")
        print("|---|---:|---|---:|---|")
        ritems = []
        for name, audio, sr in real:
            a = rhythm.analyse_rhythm(audio, sr)
            print(f"| {name} | {a.tempo:.1f} | {a.tempo_confidence:.2f} / "
                  f"{a.beat_confidence:.2f} / {a.downbeat_confidence:.2f} / "
                  f"{a.meter_confidence:.2f} | {a.beats_per_bar} | "
                  f"{'yes' if a.has_clear_beat else 'no'} |")
            ritems.append({"label": name, "audio": audio, "analysis": a, "replace": "jazz",
                           "add": "electronic", "sr": sr})
        print()
        by_rate: dict[int, list] = {}
        for it in ritems:
            by_rate.setdefault(it["sr"], []).append(it)
        for sr, group in by_rate.items():
            mix_table(group, sr)
    speed_table(args.sr)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
