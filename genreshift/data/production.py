"""Production of the synthetic corpus: what turns a SoundFont mix into a record.

Every rendering of the corpus goes through the same four stages, all of them `pedalboard`
(JUCE) processors, none of them hand-written DSP:

1. per track, an effect that belongs to the genre (``track_board``): drive on rock and metal
   guitars, chorus on electric pianos, a compressor on the drums, a light compressor or
   nothing on the rest;
2. a stereo mix (``pan_position``: lead near the centre, bass and drums in it, the other
   parts spread), where each track sits at its ``level_db`` below the lead;
3. a randomised mix bus (``bus_settings``): reverb from a room / hall / plate preset with a
   random size and wet level, an EQ tilt (low shelf and high shelf with opposite gains) and a
   bus compressor;
4. mastering (``master``): a limiter driven until the clip's integrated loudness lands on a
   target drawn uniformly from LUFS_RANGE, with the sample peak at PEAK_CEILING_DB.

Lo-fi's own treatment (``apply_effects``: low-pass and vinyl crackle) runs on the stereo mix
before the bus. No processor here adds latency (pedalboard's built-ins report none and are
checked by a click test in tests/test_production.py), so the renderings of one tune in two
genres stay aligned sample for sample.

The functions are pure: every random draw comes from a generator that the caller seeds with
(seed, tune index, genre) and that ``_rng`` extends with a purpose tag and the track's
channel, so one seed gives byte-identical audio in any process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from genreshift.data.arrangements import Arrangement, Track

LUFS_RANGE = (-16.0, -8.0)  # the mastered loudness is drawn uniformly from this range
LUFS_TOLERANCE = 0.25  # the limiter loop stops this close to the target (the brief: 0.5)
PEAK_CEILING_DB = -0.3  # sample peak of the master (must stay <= -0.1 dBFS)
REFERENCE_LUFS = -20.0  # stems and the bus input are set here before their processors
MAX_MASTER_PASSES = 8
LIMITER_THRESHOLD_DB = -6.0  # JUCE's limiter then adds its make-up gain: peaks near -2 dBFS
LIMITER_MAKEUP_DB = 3.75  # juce::dsp::Limiter: min(10 (1 - 1/4) / 4, -threshold) dB
FADE_OUT_S = 0.03

# Reverb presets: ranges of pedalboard.Reverb's room_size, damping, width and wet level.
REVERB_PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "room": {"room_size": (0.15, 0.4), "damping": (0.5, 0.8), "width": (0.5, 0.8),
             "wet": (0.06, 0.18)},
    "hall": {"room_size": (0.65, 0.92), "damping": (0.2, 0.5), "width": (0.85, 1.0),
             "wet": (0.14, 0.3)},
    "plate": {"room_size": (0.45, 0.65), "damping": (0.0, 0.25), "width": (0.9, 1.0),
              "wet": (0.1, 0.24)},
}
# Which presets each genre draws from (a preset listed twice is drawn twice as often).
GENRE_REVERBS: dict[str, tuple[str, ...]] = {
    "classical": ("hall", "hall", "plate"),
    "jazz": ("room", "plate"),
    "rock": ("room", "room", "plate"),
    "electronic": ("plate", "hall"),
    "hiphop": ("room", "plate"),
    "blues": ("room", "plate"),
    "country": ("room", "plate"),
    "reggae": ("plate", "room", "hall"),
    "metal": ("room",),
    "lofi": ("room", "plate"),
}
DRIVEN_GUITARS = frozenset({29, 30})  # GM overdriven, distortion guitar
ELECTRIC_GUITARS = frozenset({26, 27, 28})  # jazz, clean, muted electric guitar
ELECTRIC_PIANOS = frozenset({4, 5})  # GM Rhodes-type electric pianos 1 and 2
DRIVE_DB = {"rock": (8.0, 18.0), "metal": (16.0, 30.0)}  # pedalboard.Distortion drive
CRUNCH_DB = (4.0, 9.0)  # clean electric guitars in rock, blues and metal: a light crunch

# Tags of the random streams (arbitrary constants, as in synth.py).
_TAG_BUS, _TAG_TRACK, _TAG_PAN = 31, 32, 33


def _rng(key: Sequence[int], *tags: int) -> np.random.Generator:
    return np.random.default_rng([*key, *tags])


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


# --------------------------------------------------------------------------- loudness


@lru_cache(maxsize=4)
def _k_weighting(sample_rate: int) -> np.ndarray:
    """pyloudnorm's K-weighting (its two biquads and their passband gains) as float32
    second-order sections for ``sample_rate``."""
    import pyloudnorm
    from scipy.signal import tf2sos

    meter = pyloudnorm.Meter(sample_rate)
    sections = []
    for f in meter._filters.values():
        sos = tf2sos(np.asarray(f.b) * f.passband_gain, np.asarray(f.a))
        sections.append(sos)
    return np.concatenate(sections).astype(np.float32)


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness (LUFS) of [channels, samples] or [samples].

    pyloudnorm's filters and gates (and so ``genreshift.audio.integrated_loudness``'s
    value, within 0.02 LU: checked in tests/test_production.py), computed for speed: float32
    filtering, 400 ms blocks every 100 ms as sums of four 100 ms sub-blocks. The limiter loop
    measures every pass, so this cost is paid several times per clip. Silence gives -inf;
    audio shorter than one block gives nan.
    """
    from scipy.signal import sosfilt

    x = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    hop = round(0.1 * sample_rate)
    n_sub = x.shape[1] // hop
    if n_sub < 4:
        return float("nan")
    y = sosfilt(_k_weighting(sample_rate), x[:, : n_sub * hop], axis=1).astype(np.float64)
    sub = (y * y).reshape(x.shape[0], n_sub, hop).sum(axis=2)  # [channels, sub-blocks]
    weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: x.shape[0], None]
    sub = (weights * sub).sum(axis=0)
    power = (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / (4 * hop)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    kept = block_lufs >= -70.0
    if not kept.any():
        return float("-inf")
    relative = -0.691 + 10.0 * np.log10(power[kept].mean()) - 10.0
    kept = (block_lufs > relative) & (block_lufs > -70.0)
    if not kept.any():
        return float("-inf")
    return float(-0.691 + 10.0 * np.log10(power[kept].mean()))


def _to_reference(audio: np.ndarray) -> np.ndarray:
    """Scale to an RMS of REFERENCE_LUFS dBFS, so that thresholds and drives act alike on
    every stem (a cheap stand-in for loudness: only the processors' operating point
    depends on it, the mix balance is measured after them)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if rms <= 1e-9:
        return audio
    return (audio * np.float32(10.0 ** (REFERENCE_LUFS / 20.0) / rms)).astype(np.float32)


# --------------------------------------------------------------------------- per track


def track_board(genre: str, track: Track, rng: np.random.Generator):
    """The genre's effect for one track, as (pedalboard.Pedalboard or None, label).

    Drums: a compressor. Rock and metal overdriven / distortion guitars (and electric
    guitars in rock, blues and metal): pedalboard.Distortion, framed by a high-pass and a
    cabinet-like low-pass. Electric pianos: a chorus. Bass: a compressor. Lead and comping
    parts: a light compressor half of the time. Pads and the rest: nothing.
    """
    import pedalboard as pb

    program, role = track.program, track.role
    if track.is_drums:
        thr, ratio = _u(rng, (-26.0, -16.0)), _u(rng, (2.5, 6.0))
        attack, release = _u(rng, (3.0, 15.0)), _u(rng, (60.0, 200.0))
        return (pb.Pedalboard([pb.Compressor(thr, ratio, attack, release)]),
                f"comp:{thr:.0f}/{ratio:.1f}")
    if program in DRIVEN_GUITARS and genre in DRIVE_DB or \
            program in ELECTRIC_GUITARS and genre in ("rock", "blues", "metal"):
        drive = _u(rng, DRIVE_DB.get(genre, CRUNCH_DB) if program in DRIVEN_GUITARS
                   else CRUNCH_DB)
        cab = _u(rng, (4500.0, 7500.0))
        return (pb.Pedalboard([pb.HighpassFilter(80.0), pb.Distortion(drive),
                               pb.LowpassFilter(cab)]),
                f"drive:{drive:.0f}")
    if program in ELECTRIC_PIANOS:
        rate, depth = _u(rng, (0.4, 1.8)), _u(rng, (0.15, 0.45))
        mix = _u(rng, (0.25, 0.5))
        return (pb.Pedalboard([pb.Chorus(rate, depth, _u(rng, (2.0, 6.0)), 0.0, mix)]),
                f"chorus:{rate:.1f}/{mix:.2f}")
    if role == "bass":
        thr, ratio = _u(rng, (-24.0, -16.0)), _u(rng, (2.0, 4.0))
        return (pb.Pedalboard([pb.Compressor(thr, ratio, _u(rng, (10.0, 30.0)),
                                             _u(rng, (100.0, 250.0)))]),
                f"comp:{thr:.0f}/{ratio:.1f}")
    if role in ("lead", "comp") and rng.random() < 0.5:
        thr, ratio = _u(rng, (-22.0, -14.0)), _u(rng, (1.5, 2.5))
        return (pb.Pedalboard([pb.Compressor(thr, ratio, _u(rng, (5.0, 25.0)),
                                             _u(rng, (80.0, 250.0)))]),
                f"comp:{thr:.0f}/{ratio:.1f}")
    return None, ""


def pan_position(track: Track, rng: np.random.Generator) -> float:
    """Pan in [-1, 1]: drums and bass centred (the kick lives there), the lead within 0.1
    of the centre, other parts 0.2 to 0.7 to a random side."""
    if track.is_drums or track.role == "bass":
        return 0.0
    if track.role == "lead":
        return round(float(rng.uniform(-0.1, 0.1)), 3)
    side = 1.0 if rng.random() < 0.5 else -1.0
    return round(side * float(rng.uniform(0.2, 0.7)), 3)


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan law: (left, right) gains, equal at the centre (-3 dB each)."""
    angle = (pan + 1.0) * math.pi / 4.0
    return math.cos(angle), math.sin(angle)


# --------------------------------------------------------------------------- bus


@dataclass(frozen=True)
class BusSettings:
    reverb: str  # room / hall / plate
    room_size: float
    damping: float
    width: float
    wet: float
    tilt_db: float  # high-shelf gain; the low shelf gets the opposite
    tilt_low_hz: float
    tilt_high_hz: float
    comp_threshold_db: float
    comp_ratio: float
    comp_attack_ms: float
    comp_release_ms: float
    limiter_release_ms: float
    target_lufs: float

    def label(self) -> str:
        return (f"reverb={self.reverb}:{self.room_size:.2f}:{self.wet:.2f} "
                f"tilt={self.tilt_db:+.1f} buscomp={self.comp_threshold_db:.0f}/"
                f"{self.comp_ratio:.1f} lufs={self.target_lufs:.1f}")


def bus_settings(genre: str, rng: np.random.Generator) -> BusSettings:
    """Draw the mix bus and the master: reverb preset from the genre's list, tilt within
    +-3 dB, a gentle bus compressor and a target loudness uniform in LUFS_RANGE."""
    presets = GENRE_REVERBS.get(genre, ("room", "plate", "hall"))
    name = presets[int(rng.integers(len(presets)))]
    p = REVERB_PRESETS[name]
    return BusSettings(
        reverb=name, room_size=round(_u(rng, p["room_size"]), 3),
        damping=round(_u(rng, p["damping"]), 3), width=round(_u(rng, p["width"]), 3),
        wet=round(_u(rng, p["wet"]), 3), tilt_db=round(_u(rng, (-3.0, 3.0)), 2),
        tilt_low_hz=round(_u(rng, (150.0, 400.0))), tilt_high_hz=round(_u(rng, (2500.0, 6000.0))),
        comp_threshold_db=round(_u(rng, (-14.0, -6.0)), 1),
        comp_ratio=round(_u(rng, (1.5, 3.0)), 2), comp_attack_ms=round(_u(rng, (10.0, 40.0)), 1),
        comp_release_ms=round(_u(rng, (100.0, 300.0))),
        limiter_release_ms=round(_u(rng, (40.0, 200.0))),
        target_lufs=round(_u(rng, LUFS_RANGE), 2),
    )


def bus_board(s: BusSettings):
    """The mix bus as a pedalboard.Pedalboard: reverb, EQ tilt, bus compressor."""
    import pedalboard as pb

    return pb.Pedalboard([
        pb.Reverb(room_size=s.room_size, damping=s.damping, wet_level=s.wet,
                  dry_level=1.0 - 0.5 * s.wet, width=s.width),
        pb.LowShelfFilter(s.tilt_low_hz, -s.tilt_db, 0.707),
        pb.HighShelfFilter(s.tilt_high_hz, s.tilt_db, 0.707),
        pb.Compressor(s.comp_threshold_db, s.comp_ratio, s.comp_attack_ms, s.comp_release_ms),
    ])


def _fade(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    n = audio.shape[-1]
    k = min(n, int(FADE_OUT_S * sample_rate))
    if k:
        audio[..., n - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    return audio


def master(audio: np.ndarray, sample_rate: int, target_lufs: float,
           release_ms: float = 100.0) -> tuple[np.ndarray, float]:
    """Limit [channels, samples] to ``target_lufs`` with the sample peak <= PEAK_CEILING_DB.

    pedalboard.Limiter is driven by an input gain; its output is then scaled by the gain
    that reaches the target, or by less where that would put a peak above the ceiling. When
    the peak binds, the drive goes up by the loudness still missing (a secant step on the
    drive in dB) and the pass is repeated, at most MAX_MASTER_PASSES times. Returns the
    master (float32, faded out over the last 30 ms) and its measured loudness.
    """
    import pedalboard as pb

    limiter = pb.Limiter(threshold_db=LIMITER_THRESHOLD_DB, release_ms=release_ms)
    ceiling = 10.0 ** (PEAK_CEILING_DB / 20.0)
    lufs0 = loudness(audio, sample_rate)
    if not math.isfinite(lufs0):  # silence: nothing to master
        return np.zeros_like(audio, dtype=np.float32), float("-inf")
    # JUCE's limiter adds LIMITER_MAKEUP_DB: start where the master needs no more gain
    drive_db = target_lufs - lufs0 - LIMITER_MAKEUP_DB
    best: tuple[float, np.ndarray, float] | None = None
    history: list[tuple[float, float]] = []
    for _ in range(MAX_MASTER_PASSES):
        x = (audio * np.float32(10.0 ** (drive_db / 20.0))).astype(np.float32)
        y = _fade(limiter(x, sample_rate), sample_rate)
        lufs_y = loudness(y, sample_rate)
        peak = float(np.abs(y).max())
        gain = min(10.0 ** ((target_lufs - lufs_y) / 20.0), ceiling / max(peak, 1e-9))
        out = (y * np.float32(gain)).astype(np.float32)
        lufs = lufs_y + 20.0 * math.log10(gain)  # loudness scales with a plain gain
        error = abs(lufs - target_lufs)
        if best is None or error < best[0]:
            best = (error, out, lufs)
        if error <= LUFS_TOLERANCE:
            break
        history.append((drive_db, lufs))
        if len(history) >= 2 and abs(history[-1][1] - history[-2][1]) > 1e-3:
            (d0, l0), (d1, l1) = history[-2], history[-1]
            slope = max((l1 - l0) / (d1 - d0), 0.05)  # limiting: < 1 dB out per dB in
            drive_db = d1 + (target_lufs - l1) / slope
        else:
            drive_db += (target_lufs - lufs) * 1.5
        drive_db = min(drive_db, 60.0)
    assert best is not None
    return best[1], best[2]


# --------------------------------------------------------------------------- lo-fi


def apply_effects(audio: np.ndarray, sample_rate: int,
                  effects: Sequence[tuple[str, float]]) -> np.ndarray:
    """An arrangement's treatment of the mixed audio [samples] or [channels, samples]:
    ("lowpass", Hz) is a 2nd-order Butterworth low-pass; ("vinyl", seed) adds seeded
    crackle (sparse clicks) and a faint hiss about 40 dB under the music."""
    from scipy.signal import butter, sosfilt

    for name, value in effects:
        if name == "lowpass":
            sos = butter(2, min(value, 0.45 * sample_rate), "lowpass", fs=sample_rate,
                         output="sos")
            audio = sosfilt(sos, audio, axis=-1).astype(np.float32)
        elif name == "vinyl":
            rng = np.random.default_rng(int(value))
            rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) or 1e-3
            noise = rng.normal(0.0, 0.01 * rms, audio.shape)
            clicks = np.zeros(audio.shape)
            where = rng.random(audio.shape) < 8.0 / sample_rate  # ~8 clicks a second
            clicks[where] = rng.normal(0.0, 0.6 * rms, int(where.sum()))
            hiss = sosfilt(butter(1, 2000.0, "highpass", fs=sample_rate, output="sos"),
                           noise + clicks, axis=-1)
            audio = (audio + hiss).astype(np.float32)
        else:
            raise ValueError(f"unknown effect {name!r}")
    return audio


# --------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Production:
    """A produced rendering: the stereo master and how it was made."""

    audio: np.ndarray  # float32 [2, samples]
    loudness_lufs: float  # measured on the master
    volumes: dict[int, int]  # channel -> CC7 reproducing each track's gain (for the .mid)
    label: str  # the settings, for metadata.csv


def produce(arr: Arrangement, stems: Mapping[int, np.ndarray], sample_rate: int,
            key: Sequence[int]) -> Production:
    """Produce an arrangement from its dry mono stems (channel -> float32 [samples]).

    ``key`` seeds everything (the caller passes (seed, tag, tune index, genre code)): track
    effects and pans per channel, then bus settings and the loudness target. Each stem is set
    to REFERENCE_LUFS, goes through its ``track_board``, is measured again and mixed at its
    ``level_db`` relative to the loudest-gain track, panned; the stereo mix gets the lo-fi
    effects (if any), is set to REFERENCE_LUFS, goes through ``bus_board`` and ``master``.
    """
    tracks = {t.channel: t for t in arr.tracks}
    n = next(iter(stems.values())).shape[0] if stems else round(arr.duration * sample_rate)
    processed: dict[int, np.ndarray] = {}
    gains_db: dict[int, float] = {}
    labels: list[str] = []
    pans: dict[int, float] = {}
    for channel, stem in stems.items():
        track = tracks[channel]
        board, fx = track_board(arr.genre, track, _rng(key, _TAG_TRACK, channel))
        x = _to_reference(stem[None].astype(np.float32))
        if board is not None:
            x = board(x, sample_rate)
        processed[channel] = x[0]
        lufs = loudness(x, sample_rate)
        gains_db[channel] = track.level_db - (lufs if math.isfinite(lufs) else REFERENCE_LUFS)
        pans[channel] = pan_position(track, _rng(key, _TAG_PAN, channel))
        labels.append(f"{track.role}[{fx + ' ' if fx else ''}pan:{pans[channel]:+.2f}]")
    top = max(gains_db.values()) if gains_db else 0.0
    mix = np.zeros((2, n), dtype=np.float32)
    volumes: dict[int, int] = {}
    for channel, x in processed.items():
        gain = 10.0 ** ((gains_db[channel] - top) / 20.0)
        left, right = pan_gains(pans[channel])
        mix[0] += x * np.float32(gain * left)
        mix[1] += x * np.float32(gain * right)
        volumes[channel] = int(np.clip(round(127.0 * gain ** (1.0 / 3.0)), 1, 127))
    mix = apply_effects(mix, sample_rate, arr.effects)
    settings = bus_settings(arr.genre, _rng(key, _TAG_BUS))
    bussed = bus_board(settings)(_to_reference(mix), sample_rate)
    audio, lufs = master(bussed, sample_rate, settings.target_lufs, settings.limiter_release_ms)
    if not np.isfinite(audio).all():
        raise ValueError("production produced non-finite samples")
    return Production(audio, lufs, volumes, settings.label() + " " + " ".join(labels))
