"""The rhythm section: analyse a song's beat, take its kit out, lay a genre's groove on its grid.

Three steps, each a pure function over float32 audio of shape [channels, samples]:

- :func:`analyse_rhythm` separates the song into a harmonic and a percussive layer
  (:func:`separate`: median-filter HPSS, Fitzgerald 2010 with Driedger's margin, computed as
  ``librosa.decompose.hpss`` does) and tracks its tempo, beats, meter and downbeats, each with
  a confidence in [0, 1]. The beat tracker is librosa's algorithm (Ellis 2007: an onset
  envelope, a global tempo from its autocorrelation under a log-normal prior at 120 BPM, then
  dynamic programming that trades onset strength against steady spacing), written here in
  numpy because importing ``librosa.beat`` costs about 5 CPU seconds in every process (numba
  compiles its local-score kernel at import, uncached): more than a whole conversion.
  benchmarks/rhythm.py checks it against ``librosa.beat.beat_track``. librosa has no downbeat
  tracker: the meter and downbeats come from beat-synchronous accents (the low band's onset:
  the kick; less the mid band's: the backbeat's snare; plus how much the bass's pitch classes
  change: chords change on the bar), grouped in bars of 3 and of 4 beats.
- :func:`render_groove` plays a genre's drum part from the synthetic corpus's arrangements
  (``genreshift.data.arrangements.DRUM_PARTS``, humanised by the genre's ``Feel``, with its
  fills and crashes on phrase boundaries counted from the first downbeat) on the song's own
  beat grid, each event at its fractional position between the tracked beats around it, and
  renders it with a General MIDI SoundFont kit through TinySoundFont.
- :func:`apply_rhythm` mixes: ``keep`` returns the audio, ``replace`` swaps the percussive
  layer for the groove at the percussion's loudness, ``add`` lays the groove
  ``ADD_LEVEL_DB`` under the song's own percussion. Without a clear beat nothing changes and
  the info dict says why.

Nothing here imports torch or librosa.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.ndimage

from genreshift import audio as gaudio
from genreshift import spectral
from genreshift.errors import GenreshiftError

if TYPE_CHECKING:
    from genreshift.data.arrangements import Arrangement

# --------------------------------------------------------------------------- constants

ANALYSIS_SR = 22_050  # beat tracking, HPSS masks and chroma work on a mono mix at this rate
ONSET_FFT, ONSET_HOP = 1024, 256  # onset envelope and beat grid: 46 ms windows, 11.6 ms hop
HPSS_FFT, HPSS_HOP = 1024, 512  # the grid the HPSS masks are computed on (23 ms hop)
# Median filter lengths: along time for the harmonic part (11 frames, 0.26 s), along frequency
# for the percussive part (5 bins, 108 Hz); and Driedger's margin: a bin is percussive only
# where the percussive median beats the harmonic one by this factor (1: plain soft masks).
# Chosen on generated songs with known kits (benchmarks/rhythm.py, table 1): the percussive
# layer's SDR against the true kit there is the best (tied with 17 x 5) of 14 settings, at a
# third of the CPU of librosa's default 31 x 31.
HPSS_KERNEL_FRAMES, HPSS_KERNEL_BINS = 11, 5
HPSS_MARGIN = 2.0
ONSET_MELS = 64
ONSET_BANDS_HZ = (200.0, 2000.0)  # low (kick, bass) / mid (snare, body) / high (hats) bands
# The flux of a centred 46 ms window peaks before the attack: without this, tracked beats fall
# 13 ms before clicks and 2-6 ms before the notes of generated kits; added to every beat.
ONSET_LAG_S = 0.005
TEMPO_PRIOR_BPM = 120.0  # librosa's prior: log-normal around 120 BPM, one octave wide
TEMPO_PRIOR_OCTAVES = 1.0
TEMPO_RANGE_BPM = (40.0, 240.0)
TIGHTNESS = 100.0  # librosa's default: how strongly the tracker keeps an even spacing
EDGE_BEAT_TOLERANCE = 0.15  # first / last beats whose interval is off the median by more go
AC_WINDOW_S, AC_HOP_S = 8.0, 2.0  # autocorrelation windows (librosa's ac_size is 8 s)
LOCAL_TEMPO_RANGE = 1.25  # a window's own tempo may drift this far from the global one
HIGHPASS_S = 3.0  # the envelope minus its moving average: no drone or swell reads as a pulse
ENVELOPE_SMOOTH_S = 0.023  # Gaussian sd over the envelope before its autocorrelation
# has_clear_beat: beat_confidence at least this, and MIN_BEATS tracked beats. Measured on
# generated material only (8 and 20 s): the corpus's nine drummed genres at 66-140 BPM and
# generated kits >= 0.55 (hip-hop and lo-fi lowest); drones, noise and strong generated rubato
# (the tempo jumping by up to 35 % every 0.75 s) <= 0.45; milder rubato (20 %) 0.20-0.59.
CLEAR_BEAT_THRESHOLD = 0.5
MIN_BEATS = 8
BASS_FFT, BASS_HOP = 8192, 1024  # bass chroma for the downbeats: 2.7 Hz bins
BASS_RANGE_HZ = (40.0, 250.0)
METERS = (4, 3)  # beats per bar considered; 4 unless 3 measures clearly better
METER_MARGIN = 0.1  # 3/4 needs a downbeat contrast this much (z units) above 4/4's
PHRASE_BARS = 8
PICKUP_GUARD_BEATS = 0.1  # pickup notes are chosen by beat, +- this much humanisation
# Genres whose corpus drum part marks no phrase: a crash on each phrase's first bar here
# (velocity), so that every groove phrases from the downbeats.
PHRASE_CRASH_VELOCITY = {"hiphop": 92, "reggae": 84, "lofi": 62}
GROOVE_SOUNDFONTS = ("FluidR3_GM.sf2", "TimGM6mb.sf2")  # the kits, first one found
ADD_LEVEL_DB = -6.0  # add: the groove this far under the song's percussion (the sum is +1 dB)
MODES = ("keep", "replace", "add")


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True, eq=False)
class RhythmAnalysis:
    """What :func:`analyse_rhythm` measured on a song of ``duration`` seconds at ``sr``.

    ``harmonic + percussive`` is the input (the percussive layer is the masked STFT; the
    harmonic layer is the rest, so any residual stays in it). ``beats`` are the tracked beat
    times in seconds; ``beats[first_downbeat]`` is the first downbeat, then every
    ``beats_per_bar``-th beat. ``tempo`` is 60 / the mean beat interval.
    """

    sr: int
    duration: float
    harmonic: np.ndarray  # float32 [channels, samples]
    percussive: np.ndarray  # float32 [channels, samples]
    tempo: float
    beats: np.ndarray  # float64 [n_beats] seconds
    beats_per_bar: int
    first_downbeat: int
    tempo_confidence: float  # share of 8 s windows whose own best period is the beats' one
    beat_confidence: float  # pulse clarity: the envelope's autocorrelation one beat later
    downbeat_confidence: float  # the chosen downbeat phase's lead over the next best one
    meter_confidence: float  # how much better bars of beats_per_bar fit than the other meter

    @property
    def downbeats(self) -> np.ndarray:
        return self.beats[self.first_downbeat::self.beats_per_bar]

    @property
    def n_bars(self) -> int:
        """Bars from the first downbeat to the last beat (a last partial bar counts)."""
        n = len(self.beats) - self.first_downbeat
        return max(0, math.ceil(n / self.beats_per_bar)) if len(self.beats) else 0

    @property
    def has_clear_beat(self) -> bool:
        return self.beat_confidence >= CLEAR_BEAT_THRESHOLD and len(self.beats) >= MIN_BEATS

    def summary(self) -> dict:
        """The numbers, JSON-ready (no arrays but the first downbeat's time)."""
        return {
            "tempo_bpm": round(self.tempo, 2),
            "beats_per_bar": self.beats_per_bar,
            "beats": len(self.beats),
            "bars": self.n_bars,
            "first_downbeat_s": (round(float(self.beats[self.first_downbeat]), 3)
                                 if len(self.beats) else None),
            "tempo_confidence": round(self.tempo_confidence, 3),
            "beat_confidence": round(self.beat_confidence, 3),
            "downbeat_confidence": round(self.downbeat_confidence, 3),
            "meter_confidence": round(self.meter_confidence, 3),
            "has_clear_beat": self.has_clear_beat,
        }


def _as_2d(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"audio must be [channels, samples], got shape {audio.shape}")
    return audio


def _mono_at_analysis_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    return gaudio.resample(audio.mean(axis=0), sr, ANALYSIS_SR).astype(np.float32)


def _softmask(x: np.ndarray, ref: np.ndarray, split_zeros: bool, power: float = 2.0
              ) -> np.ndarray:
    """librosa.util.softmask: x^p / (x^p + ref^p); where both are (numerically) zero, 1/2
    with ``split_zeros``, else 0."""
    z = np.maximum(x, ref)
    zero = z < np.finfo(np.float32).tiny
    safe = np.where(zero, 1.0, z)
    xp, rp = (x / safe) ** power, (ref / safe) ** power
    out = xp / np.where(zero, 1.0, xp + rp)
    return np.where(zero, 0.5 if split_zeros else 0.0, out).astype(np.float32)


def hpss_masks(mag: np.ndarray, *, margin: float = HPSS_MARGIN,
               kernel: tuple[int, int] = (HPSS_KERNEL_FRAMES, HPSS_KERNEL_BINS)
               ) -> tuple[np.ndarray, np.ndarray]:
    """Soft harmonic and percussive masks of a magnitude spectrogram [n_freq, frames], as
    ``librosa.decompose.hpss(mag, kernel_size=(kernel[0], kernel[1]), mask=True,
    margin=margin)``: median filters along time (harmonic, ``kernel[0]`` frames) and along
    frequency (percussive, ``kernel[1]`` bins), then Wiener-like soft masks; with margin > 1
    the two masks sum to less than 1 (the rest is neither)."""
    mag = np.asarray(mag, dtype=np.float32)
    harm = scipy.ndimage.median_filter(mag, size=(1, kernel[0]), mode="reflect")
    perc = scipy.ndimage.median_filter(mag, size=(kernel[1], 1), mode="reflect")
    split = margin == 1.0
    return (_softmask(harm, perc * margin, split), _softmask(perc, harm * margin, split))


def _interp_matrix(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """Indices and weights for linear interpolation from the sorted grid ``src`` to ``dst``
    (clamped at both ends)."""
    pos = np.interp(dst, src, np.arange(len(src), dtype=np.float64))
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(src) - 1)
    i1 = np.minimum(i0 + 1, len(src) - 1)
    w = (pos - i0).astype(np.float32)
    return i0, i1, w


def _mask_on_grid(mask: np.ndarray, src_cfg: spectral.StftConfig,
                  dst_cfg: spectral.StftConfig, dst_frames: int
                  ) -> Callable[[int, int], np.ndarray]:
    """A mask [n_freq, frames] on one STFT grid, linearly interpolated onto another (by bin
    frequency and frame time), as a function (start, stop) -> the mask of frames [start, stop)
    on the destination grid, so the whole interpolated mask (63 MB for 3 minutes at 44.1 kHz)
    is never held; bins above the source's Nyquist take its top bin's value."""
    f_src = np.arange(src_cfg.n_freq) * src_cfg.sample_rate / src_cfg.n_fft
    f_dst = np.arange(dst_cfg.n_freq) * dst_cfg.sample_rate / dst_cfg.n_fft
    i0, i1, w = _interp_matrix(f_src, f_dst)
    t_src = np.arange(mask.shape[1]) * src_cfg.hop_length / src_cfg.sample_rate
    t_dst = np.arange(dst_frames) * dst_cfg.hop_length / dst_cfg.sample_rate
    j0, j1, v = _interp_matrix(t_src, t_dst)
    wf = w[:, None]

    def gains(a: int, b: int) -> np.ndarray:
        m = mask[:, j0[a:b]] * (1.0 - v[a:b]) + mask[:, j1[a:b]] * v[a:b]
        return (m[i0] * (1.0 - wf) + m[i1] * wf).astype(np.float32)

    return gains


def _hpss_grid() -> spectral.StftConfig:
    return spectral.StftConfig(ANALYSIS_SR, HPSS_FFT, HPSS_HOP)


def _native_grid(sr: int) -> spectral.StftConfig:
    """The HPSS grid's framing at the song's own rate (same window and hop in seconds)."""
    cfg = spectral.MelConfig(sample_rate=ANALYSIS_SR, n_fft=HPSS_FFT, hop_length=HPSS_HOP,
                             n_mels=64)
    return spectral.native_stft(cfg, sr)


def _percussive_mask(mono22: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The STFT of the analysis-rate mono mix on the HPSS grid and its percussive mask."""
    spec = spectral.stft(mono22, _hpss_grid())
    return spec, hpss_masks(np.abs(spec), margin=margin)[1]


def _apply_percussive_mask(audio: np.ndarray, sr: int, mask_p: np.ndarray
                           ) -> np.ndarray:
    native = _native_grid(sr)
    mask = _mask_on_grid(mask_p, _hpss_grid(), native, native.frames(audio.shape[1]))
    out = np.empty(audio.shape, dtype=np.float32)
    for c in range(audio.shape[0]):  # one channel's STFT in memory at a time
        out[c] = spectral.istft(spectral.stft(audio[c], native), native,
                                length=audio.shape[1], gains=mask)
    return out


def separate(audio: np.ndarray, sr: int, *, margin: float = HPSS_MARGIN
             ) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive layers of ``audio`` [channels, samples] at ``sr``, both
    [channels, samples] and summing to the input exactly (the harmonic layer is the input
    minus the percussive one, so what HPSS leaves unassigned with margin > 1 stays harmonic).

    The masks are computed once, on the mono mix at ANALYSIS_SR (HPSS_FFT / HPSS_HOP), and
    applied to every channel's STFT at the song's own rate (same window and hop in seconds):
    one mask keeps the stereo image, and the median filters (the cost of HPSS) run on a
    quarter of the bins of a 44.1 kHz stereo song. Above 11 kHz each frame keeps its 11 kHz
    decision."""
    audio = _as_2d(audio)
    _, mask_p = _percussive_mask(_mono_at_analysis_rate(audio, sr), margin)
    perc = _apply_percussive_mask(audio, sr, mask_p)
    return audio - perc, perc


@lru_cache(maxsize=4)
def _onset_bands(n_fft: int) -> np.ndarray:
    """[3, n_mels] 0/1 rows choosing the mel bands of each onset band."""
    cfg = spectral.MelConfig(sample_rate=ANALYSIS_SR, n_fft=n_fft, hop_length=ONSET_HOP,
                             n_mels=ONSET_MELS, f_max=ANALYSIS_SR / 2)
    fb = spectral.mel_basis(cfg, np.float64)
    centres = (np.arange(fb.shape[1]) * ANALYSIS_SR / n_fft) @ fb.T / np.maximum(
        fb.sum(axis=1), 1e-12)
    lo, hi = ONSET_BANDS_HZ
    rows = np.stack([centres < lo, (centres >= lo) & (centres < hi), centres >= hi])
    return rows.astype(np.float64)


def onset_bands(mono22: np.ndarray) -> np.ndarray:
    """Onset strength [3, frames] (low < 200 Hz, mid, high > 2 kHz) of a mono signal at
    ANALYSIS_SR, one frame per ONSET_HOP: the positive log-mel flux (librosa's
    onset_strength: 64 mel bands, dB with an 80 dB floor under the peak, lag 1) averaged over
    each band's mel bands, each band scaled by its 99th percentile so that the kick and the
    snare count as much as the hats."""
    cfg = spectral.MelConfig(sample_rate=ANALYSIS_SR, n_fft=ONSET_FFT, hop_length=ONSET_HOP,
                             n_mels=ONSET_MELS, f_max=ANALYSIS_SR / 2)
    power = np.abs(spectral.stft(mono22, cfg)) ** 2
    mel = spectral.mel_basis(cfg) @ power
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    flux = np.maximum(0.0, np.diff(db, axis=1, prepend=db[:, :1]))
    rows = _onset_bands(ONSET_FFT)
    bands = (rows @ flux) / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
    scale = np.percentile(bands, 99, axis=1, keepdims=True)
    return bands / np.maximum(scale, 1e-6)


def _highpass(env: np.ndarray, fps: float) -> np.ndarray:
    size = max(3, int(HIGHPASS_S * fps) | 1)
    return env - scipy.ndimage.uniform_filter1d(env, size=size, mode="nearest")


def _windowed_autocorrelation(env: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelations [windows, lags] of Hann-windowed AC_WINDOW_S stretches of ``env``
    every AC_HOP_S (one window for shorter signals), each divided by its lag-0 value; and the
    windows' centre frames."""
    n = len(env)
    win = min(n, round(AC_WINDOW_S * fps))
    hop = max(1, round(AC_HOP_S * fps))
    starts = list(range(0, max(1, n - win + 1), hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    taper = np.hanning(win + 2)[1:-1]
    segs = np.stack([env[s:s + win] * taper for s in starts])
    spec = np.fft.rfft(segs, n=2 * win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :win]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    return ac, np.array(starts) + win / 2


def _tempo_prior(lags: np.ndarray, fps: float) -> np.ndarray:
    bpm = 60.0 * fps / np.maximum(lags, 1e-9)
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    lo, hi = TEMPO_RANGE_BPM
    return np.where((bpm >= lo) & (bpm <= hi), prior, 0.0)


def _peak_lag(curve: np.ndarray, lo: int, hi: int) -> float:
    """The lag of the maximum of curve[lo:hi], refined by a parabola through its neighbours."""
    hi = min(hi, len(curve) - 1)
    if hi <= lo:
        return float(lo)
    k = lo + int(np.argmax(curve[lo:hi]))
    if 0 < k < len(curve) - 1:
        a, b, c = curve[k - 1], curve[k], curve[k + 1]
        denom = a - 2 * b + c
        if denom < 0:
            return k + 0.5 * (a - c) / denom
    return float(k)


def track_beats(env: np.ndarray, fps: float, period: np.ndarray, *,
                tightness: float = TIGHTNESS) -> np.ndarray:
    """librosa's dynamic-programming beat tracker (Ellis 2007) on an onset envelope
    [frames]: beat positions in frames (float: refined to a fraction of a frame) with
    ``period`` [frames] the expected beat period in frames at each frame (a steady or drifting
    tempo). Every frame's cumulative score is its local score (the envelope, normalised by its
    sd, smoothed by a Gaussian of a 32nd of a beat) plus
    the best cumulative score one-half to two periods earlier, less tightness * log(gap /
    period)^2; the last beat is the last local maximum of the cumulative score above half
    their median; beats before the first and after the last frame whose local score passes
    half the beats' RMS local score are dropped, and so are beats at either end whose interval
    is off the median by more than EDGE_BEAT_TOLERANCE. (librosa's trim takes the RMS after a
    5-point Hann smoothing that doubles it: that dropped the first bar of generated songs
    whose first bar is quieter.)"""
    n = len(env)
    p0 = float(np.median(period)) if len(period) else float("nan")
    if n < 2 or not np.isfinite(p0) or p0 < 1.0:  # no envelope or no period: no beats
        return np.zeros(0)
    onset = env / (np.std(env, ddof=1) + 1e-12)
    half = round(p0)
    x = np.arange(-half, half + 1)
    window = np.exp(-0.5 * (x * 32.0 / p0) ** 2)
    local = np.convolve(onset, window, mode="same")
    cum = np.zeros(n)
    back = np.full(n, -1, dtype=np.int64)
    thresh = 0.01 * local.max() if n else 0.0
    first = True
    for i in range(n):
        p = float(period[i])
        hi = i - round(p / 2.0)
        lo = max(0, i - round(2.0 * p))
        best, arg = 0.0, -1
        if hi >= lo and hi >= 0:
            gaps = i - np.arange(lo, hi + 1)
            cand = cum[lo:hi + 1] - tightness * np.log(gaps / p) ** 2
            k = int(np.argmax(cand))
            best, arg = float(cand[k]), lo + k
        cum[i] = local[i] + (best if arg >= 0 else 0.0)
        if first and local[i] < thresh:
            back[i] = -1
        else:
            back[i] = arg
            first = False
    if n < 3:
        return np.zeros(0)
    maxima = np.flatnonzero((cum[1:-1] > cum[:-2]) & (cum[1:-1] >= cum[2:])) + 1
    if len(maxima) == 0:
        return np.zeros(0)
    med = np.median(cum[maxima])
    last = int(maxima[cum[maxima] * 2 > med].max()) if np.any(cum[maxima] * 2 > med) else \
        int(maxima[-1])
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    beats = np.array(beats[::-1], dtype=np.int64)
    # trim: drop leading and trailing beats weaker than half the RMS of the smoothed
    # beat-onset strengths (librosa's __trim_beats)
    threshold = 0.5 * math.sqrt(float(np.mean(local[beats] ** 2)))
    strong = np.flatnonzero(local > threshold)
    if len(strong) == 0:
        return np.zeros(0)
    beats = beats[(beats >= strong[0]) & (beats <= strong[-1])]
    # an end squeezed or stretched into the song's first or last onset is no beat
    if len(beats) > 3:
        ibi = np.diff(beats)
        usual = float(np.median(ibi))
        odd = np.abs(ibi / usual - 1.0) > EDGE_BEAT_TOLERANCE
        lo, hi = 0, len(beats)
        while lo < hi - 2 and odd[lo]:
            lo += 1
        while hi - 2 > lo and odd[hi - 2]:
            hi -= 1
        beats = beats[lo:hi]
    # to a fraction of a frame: the vertex of the parabola through the local score around
    inner = beats[(beats > 0) & (beats < n - 1)]
    a, b, c = local[inner - 1], local[inner], local[inner + 1]
    denom = a - 2.0 * b + c
    shift = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    out = beats.astype(np.float64)
    out[(beats > 0) & (beats < n - 1)] += np.clip(shift, -0.5, 0.5)
    return out


@dataclass(frozen=True)
class _Beats:
    times: np.ndarray
    tempo: float
    tempo_confidence: float
    beat_confidence: float


def _beats_of(env: np.ndarray, fps: float) -> _Beats:
    """Tempo, beats and their confidences from the onset envelope."""
    # the periodicity is measured on the envelope smoothed over ~50 ms (drones and noise
    # flicker faster than any beat) less its slow swell (HIGHPASS_S); the beats are tracked
    # on the envelope itself
    hp = _highpass(scipy.ndimage.gaussian_filter1d(env, ENVELOPE_SMOOTH_S * fps), fps)
    ac, centres = _windowed_autocorrelation(hp, fps)
    lags = np.arange(ac.shape[1], dtype=np.float64)
    prior = _tempo_prior(lags, fps)
    lo_lag = max(1, int(60.0 * fps / TEMPO_RANGE_BPM[1]))
    hi_lag = int(60.0 * fps / TEMPO_RANGE_BPM[0]) + 1
    mean_ac = np.maximum(ac.mean(axis=0), 0.0)
    lag = _peak_lag(mean_ac * prior, lo_lag, hi_lag)
    if lag < lo_lag or not np.isfinite(lag) or mean_ac.max() <= 0:
        return _Beats(np.zeros(0), 0.0, 0.0, 0.0)
    # each window's own period near the global one: the tracker follows a drifting tempo
    local_lags = []
    a = max(lo_lag, math.floor(lag / LOCAL_TEMPO_RANGE))
    b = min(hi_lag, math.ceil(lag * LOCAL_TEMPO_RANGE) + 1)
    for row in ac:
        local_lags.append(_peak_lag(np.maximum(row, 0.0), a, b))
    period = np.interp(np.arange(len(env)), centres, np.array(local_lags)) \
        if len(centres) > 1 else np.full(len(env), local_lags[0])
    frames = track_beats(env, fps, period)
    if len(frames) < 2:
        return _Beats(frames / fps, 0.0, 0.0, 0.0)
    times = frames / fps + ONSET_LAG_S
    ibi = np.diff(frames)
    tempo = 60.0 * fps * (len(frames) - 1) / float(frames[-1] - frames[0])
    # confidences, window by window, at the period the beats themselves keep there
    agree, clarity = [], []
    half_win = min(len(env), round(AC_WINDOW_S * fps)) / 2
    for row, c in zip(ac, centres):
        inside = frames[(frames >= c - half_win) & (frames < c + half_win)]
        p = float(np.median(np.diff(inside))) if len(inside) > 2 else float(np.median(ibi))
        a, b = math.floor(p * 0.96), math.ceil(p * 1.04) + 1
        if b >= len(row) or a < 1:
            clarity.append(0.0)
            agree.append(False)
            continue
        # how far the autocorrelation climbs back towards its lag-0 value of 1 at one beat,
        # from its dip within the beat: a pulse comes back, a slow swell only decays
        dip = float(row[1:b].min())
        clarity.append(float(np.clip((row[a:b].max() - dip) / (1.0 - dip), 0.0, 1.0)))
        own = _peak_lag(np.maximum(row, 0.0) * prior[:len(row)], lo_lag, hi_lag)
        agree.append(abs(own / p - 1.0) <= 0.06)
    return _Beats(times, tempo, float(np.mean(agree)), float(np.mean(clarity)))


@lru_cache(maxsize=2)
def _bass_chroma_matrix(n_fft: int) -> np.ndarray:
    """[12, n_freq] 0/1: which bins of a BASS_FFT STFT at ANALYSIS_SR (2.7 Hz apart: a
    semitone at 40 Hz is 2.4 Hz) feed each pitch class, over BASS_RANGE_HZ."""
    freqs = np.arange(n_fft // 2 + 1) * ANALYSIS_SR / n_fft
    lo, hi = BASS_RANGE_HZ
    ok = (freqs >= lo) & (freqs <= hi)
    pcs = np.round(69 + 12 * np.log2(np.where(ok, freqs, 440.0) / 440.0)).astype(int) % 12
    out = np.zeros((12, len(freqs)))
    out[pcs[ok], np.flatnonzero(ok)] = 1.0
    return out


def _bass_change(harmonic22: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """[n_beats]: how much the bass's pitch classes change at each beat, 1 - cosine between
    the chroma (BASS_RANGE_HZ of the harmonic layer) of the beat's span and the previous
    one's; 0 for the first beat. Chords and bass roots change on the bar."""
    cfg = spectral.StftConfig(ANALYSIS_SR, BASS_FFT, BASS_HOP)
    pcs = _bass_chroma_matrix(BASS_FFT)
    used = np.flatnonzero(pcs.any(axis=0))
    mag = np.abs(spectral.stft(harmonic22, cfg)[used[0]:used[-1] + 1]).astype(np.float64)
    chroma = pcs[:, used[0]:used[-1] + 1] @ mag
    fps = ANALYSIS_SR / BASS_HOP
    ends = np.append(beats, beats[-1] + np.median(np.diff(beats)))
    edges = np.clip(np.round(ends * fps).astype(int), 0, chroma.shape[1] - 1)
    spans = np.stack([chroma[:, a:max(b, a + 1)].mean(axis=1)
                      for a, b in itertools.pairwise(edges)])
    unit = spans / (np.linalg.norm(spans, axis=1, keepdims=True) + 1e-9)
    return np.concatenate([[0.0], 1.0 - np.sum(unit[1:] * unit[:-1], axis=1)])


def _phase_contrast(accent: np.ndarray, m: int) -> tuple[np.ndarray, int]:
    """For bars of ``m`` beats: each phase's contrast (mean accent of the beats at that
    phase minus that of the others), and the best phase."""
    contrast = np.array([accent[p::m].mean() - np.delete(accent, np.s_[p::m]).mean()
                         for p in range(m)])
    return contrast, int(np.argmax(contrast))


def _squash(d: float) -> float:
    """A difference in z units as a confidence in [0, 1): d / (1 + d), 0 for d <= 0."""
    return max(0.0, d) / (1.0 + max(0.0, d))


def _meter_of(beats: np.ndarray, bands: np.ndarray, fps: float, harmonic22: np.ndarray
              ) -> tuple[int, int, float, float]:
    """Beats per bar, the first downbeat's index, the downbeat and meter confidences.

    Each beat's accent is z(low-band onset: the kick) - z(mid-band onset: the backbeat's
    snare) + z(bass pitch change), z-scored over the beats. For bars of 3 and of 4 beats each
    phase's contrast is the mean accent at that phase minus that elsewhere; 3/4 wins only
    by METER_MARGIN. Confidences: the best phase's lead over the runner-up, and the chosen
    meter's lead over the other, squashed by d / (1 + d) (ordinal, not a probability)."""
    if len(beats) < 2 * max(METERS):
        return 4, 0, 0.0, 0.0
    frames = np.clip(np.round((beats - ONSET_LAG_S) * fps).astype(int), 0, bands.shape[1] - 1)
    peaks = scipy.ndimage.maximum_filter1d(bands, size=5, axis=1)[:, frames]

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + 1e-9)

    accent = z(peaks[0]) - z(peaks[1]) + z(_bass_change(harmonic22, beats))
    found = {m: _phase_contrast(accent, m) for m in METERS}
    best = {m: float(c[p]) for m, (c, p) in found.items()}
    meter = 3 if best[3] > best[4] + METER_MARGIN else 4
    contrast, phase = found[meter]
    runner_up = float(np.sort(contrast)[-2])
    other = best[4 if meter == 3 else 3]
    return meter, phase, _squash(best[meter] - runner_up), _squash(best[meter] - other)


def analyse_rhythm(audio: np.ndarray, sr: int, *, margin: float = HPSS_MARGIN
                   ) -> RhythmAnalysis:
    """Separate ``audio`` [channels, samples] at ``sr`` into harmonic and percussive layers
    and track its tempo, beats, meter and downbeats (module docstring)."""
    audio = _as_2d(audio)
    mono22 = _mono_at_analysis_rate(audio, sr)
    spec22, mask_p = _percussive_mask(mono22, margin)
    percussive = _apply_percussive_mask(audio, sr, mask_p)
    harmonic = audio - percussive
    fps = ANALYSIS_SR / ONSET_HOP
    bands = onset_bands(mono22)
    found = _beats_of(bands.sum(axis=0), fps)
    duration = audio.shape[1] / sr
    beats = found.times[(found.times >= 0.0) & (found.times < duration)]
    harmonic22 = mono22 - spectral.istft(spec22, _hpss_grid(), length=len(mono22),
                                         gains=mask_p)
    bpb, first, db_conf, meter_conf = _meter_of(beats, bands, fps, harmonic22)
    return RhythmAnalysis(
        sr=sr, duration=duration, harmonic=harmonic, percussive=percussive,
        tempo=found.tempo, beats=beats, beats_per_bar=bpb, first_downbeat=first,
        tempo_confidence=found.tempo_confidence, beat_confidence=found.beat_confidence,
        downbeat_confidence=db_conf, meter_confidence=meter_conf)


# --------------------------------------------------------------------------- groove


def groove_soundfont(soundfont: str | Path | None = None) -> Path:
    """The SoundFont whose bank-128 kits play the grooves: ``soundfont``, or the first of
    GROOVE_SOUNDFONTS installed in the Debian folder."""
    from genreshift.data.synth import DEFAULT_SOUNDFONT_DIR

    if soundfont is not None:
        path = Path(soundfont)
        if not path.is_file():
            raise GenreshiftError(f"{path}: SoundFont not found", kind="not_found")
        return path
    for name in GROOVE_SOUNDFONTS:
        path = DEFAULT_SOUNDFONT_DIR / name
        if path.is_file():
            return path
    raise GenreshiftError(
        f"no drum-kit SoundFont found in {DEFAULT_SOUNDFONT_DIR} (looked for "
        f"{', '.join(GROOVE_SOUNDFONTS)}); install one with `sudo apt install "
        "fluid-soundfont-gm` (make install does it)", kind="unavailable")


def _check_genre(genre: str) -> None:
    from genreshift.data.arrangements import GENRES

    if genre not in GENRES:
        raise GenreshiftError(f"no groove for this genre; known: {', '.join(GENRES)}",
                              kind="bad_option", option="to", value=genre)


def _beat_grid(beats: np.ndarray, duration: float) -> tuple[np.ndarray, int]:
    """The tracked beats with one beat extrapolated at each end where it fits inside the
    song, and how many were added in front (0 or 1)."""
    if len(beats) < 2:
        return beats, 0
    front = beats[0] - (beats[1] - beats[0])
    back = beats[-1] + (beats[-1] - beats[-2])
    grid = beats
    added = 0
    if front >= 0.0:
        grid = np.concatenate([[front], grid])
        added = 1
    if back < duration:
        grid = np.concatenate([grid, [back]])
    return grid, added


def _grid_time(grid: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Times of fractional beat indices on the grid: linear between the beats around each,
    extrapolated with the first / last interval outside it."""
    i0 = np.clip(np.floor(index).astype(np.int64), 0, len(grid) - 2)
    frac = index - i0
    return grid[i0] + frac * (grid[i0 + 1] - grid[i0])


def groove_arrangement(analysis: RhythmAnalysis, genre: str, *, seed: int = 0
                       ) -> Arrangement | None:
    """The drum part of ``genre`` on ``analysis``'s beat grid, as an ``arrangements.Arrangement``
    of one track (the genre's kit, drawn from the seed) whose notes are in seconds on the
    song's timeline and whose duration is the song's; None for a genre without drums
    (classical) or a song with fewer than two beats.

    The pattern is the corpus's own (``DRUM_PARTS[genre]`` played into a ``genre_band`` on a
    lead sheet of the song's meter and tempo: the genre's swing and humanisation, its fills
    and crashes; PHRASE_CRASH_VELOCITY adds a crash on each phrase where the corpus part marks
    none), bar 0 on the first downbeat. Each event's position in beats becomes a time between
    the two grid beats around it, so the groove follows the song's tempo drift. Beats before
    the first downbeat (a pickup) get the end of the first phrase's last bar, fill included.
    """
    from genreshift.data.arrangements import (
        DRUM_PARTS,
        DRUMS,
        NoteEvent,
        crash_on_phrases,
        genre_band,
    )
    from genreshift.data.melodies import ChordSpan, LeadSheet, Tune, TuneRef, meter_for

    _check_genre(genre)
    if genre not in DRUM_PARTS or len(analysis.beats) < 2:
        return None
    grid, added = _beat_grid(analysis.beats, analysis.duration)
    bpb = analysis.beats_per_bar
    first = analysis.first_downbeat + added
    n_bars = max(PHRASE_BARS, math.ceil((len(grid) - first) / bpb))
    meter = meter_for(bpb, 4)  # simple meters: one beat is one quarter length
    total = float(n_bars * meter.bar_ql)
    chords = (ChordSpan(0.0, total, 0, "maj"),)
    tune = Tune(TuneRef("groove"), "groove", meter, total, (), chords, 0, "major", "none")
    sheet = LeadSheet(tune, 0, 0, "major", float(analysis.tempo), total, (), chords)
    band = genre_band(sheet, np.random.default_rng([seed, zlib.crc32(genre.encode())]), genre)
    DRUM_PARTS[genre](band)
    if genre in PHRASE_CRASH_VELOCITY:
        crash_on_phrases(band, every=PHRASE_BARS, velocity=PHRASE_CRASH_VELOCITY[genre])
    pattern = band.finish(genre)
    track = next(t for t in pattern.tracks if t.channel == DRUMS)
    beats_per_s = sheet.qpm / 60.0
    starts = np.array([n.start for n in pattern.notes]) * beats_per_s
    ends = np.array([n.end for n in pattern.notes]) * beats_per_s
    phrase_end = PHRASE_BARS * bpb  # the pickup plays the beats just before this, shifted
    placed = [(starts, ends, np.ones(len(starts), dtype=bool))]
    if first > 0:
        # by their beat, give or take humanisation: a note humanised early onto the next
        # bar's downbeat is that bar's
        edge = PICKUP_GUARD_BEATS
        placed.append((starts - phrase_end, ends - phrase_end,
                       (starts >= phrase_end - first - edge) & (starts < phrase_end - edge)))
    notes = []
    for s_beats, e_beats, use in placed:
        index = first + s_beats
        # through the last grid beat's span; the pattern's first notes may be humanised early
        use = use & (index >= -0.05) & (index < len(grid))
        t0 = _grid_time(grid, index)
        t1 = _grid_time(grid, first + e_beats)
        use &= (t0 >= 0.0) & (t0 < analysis.duration)
        for k in np.flatnonzero(use):
            n = pattern.notes[k]
            notes.append(NoteEvent(float(t0[k]), float(max(t1[k], t0[k] + 0.005)), DRUMS,
                                   n.pitch, n.velocity))
    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return dataclasses.replace(pattern, tracks=(track,), notes=tuple(notes),
                               duration=analysis.duration)


def render_groove(analysis: RhythmAnalysis, genre: str, sr: int, *, seed: int = 0,
                  channels: int | None = None, soundfont: str | Path | None = None
                  ) -> np.ndarray:
    """``genre``'s groove on ``analysis``'s beat grid (:func:`groove_arrangement`), rendered
    with the genre's GM kit from ``soundfont`` (default :func:`groove_soundfont`) at ``sr``:
    float32 [channels, samples] for the analysed song's length, the kit at the SoundFont's
    own level (``apply_rhythm`` sets the mix level), the same mono kit in every channel
    (default: the song's channel count). Silence for a genre without drums (classical)."""
    arr = groove_arrangement(analysis, genre, seed=seed)
    return _render(arr, analysis, sr, channels, soundfont)


def _render(arr: Arrangement | None, analysis: RhythmAnalysis, sr: int,
            channels: int | None, soundfont: str | Path | None) -> np.ndarray:
    from genreshift.data.synth import render_stems

    n = round(analysis.duration * sr)
    channels = analysis.harmonic.shape[0] if channels is None else channels
    if arr is None or not arr.notes:
        return np.zeros((channels, n), dtype=np.float32)
    stem = render_stems(arr, groove_soundfont(soundfont), sr,
                        used_presets_only=True).stems[arr.tracks[0].channel]
    stem = np.pad(stem, (0, max(0, n - len(stem))))[:n]
    return np.repeat(stem[None].astype(np.float32), channels, axis=0)


# --------------------------------------------------------------------------- mixing


def groove_genre(targets: list[tuple[str, float]]) -> str:
    """The genre whose groove a blend plays: the heaviest weight (the first on a tie). Two
    kits at once would be two drummers out of step with each other."""
    if not targets:
        raise GenreshiftError("no target genre given", kind="bad_option", option="to")
    best = max(range(len(targets)), key=lambda i: (targets[i][1], -i))
    return targets[best][0]


def _level(x: np.ndarray, sr: int) -> tuple[float, str]:
    """BS.1770 integrated loudness (LUFS), or the RMS in dBFS where BS.1770 cannot measure
    (every block under its -70 LUFS gate, or shorter than one 400 ms block)."""
    lufs = gaudio.integrated_loudness(x, sr)
    if np.isfinite(lufs):
        return float(lufs), "BS.1770"
    return _rms_db(x), "RMS"


def _gain_to(groove: np.ndarray, reference: np.ndarray, sr: int, offset_db: float
             ) -> tuple[float, dict]:
    """The gain that puts ``groove`` ``offset_db`` from ``reference``'s level, both measured
    the same way (BS.1770 where both can be, else RMS)."""
    ref, how_ref = _level(reference, sr)
    got, how_got = _level(groove, sr)
    method = "BS.1770"
    if how_ref != how_got or how_ref == "RMS":
        method = "RMS"
        ref = _rms_db(reference)
        got = _rms_db(groove)
    info = {"level_method": method, "percussion_level_db": _rounded(ref),
            "groove_level_db": _rounded(got)}
    if not (np.isfinite(ref) and np.isfinite(got)):
        info["groove_gain_db"] = None
        return 0.0, info
    gain_db = ref + offset_db - got
    info["groove_gain_db"] = round(gain_db, 2)
    return 10.0 ** (gain_db / 20.0), info


def _rms_db(x: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else float("-inf")


def _rounded(x: float) -> float | None:
    return round(x, 2) if np.isfinite(x) else None


def apply_rhythm(audio: np.ndarray, sr: int, mode: str, targets: list[tuple[str, float]], *,
                 seed: int = 0, analysis: RhythmAnalysis | None = None,
                 layers: tuple[np.ndarray, np.ndarray] | None = None,
                 strength: float = 1.0, soundfont: str | Path | None = None,
                 limit: bool = True, groove: np.ndarray | None = None
                 ) -> tuple[np.ndarray, dict]:
    """The rhythm stage: ``audio`` [channels, samples] at ``sr`` with its percussion kept,
    replaced by or topped with the groove of ``targets`` (genre, weight) pairs (a blend plays
    its heaviest genre's groove: :func:`groove_genre`); returns (audio, info).

    - ``keep``: ``audio`` unchanged (or ``layers`` summed).
    - ``replace``: the harmonic layer plus the groove, the groove at the integrated loudness
      of the percussive layer it replaces (BS.1770; RMS where that cannot be measured). A
      genre without drums (classical) leaves the harmonic layer alone: the kit is taken out.
    - ``add``: ``audio`` plus the groove ADD_LEVEL_DB under the song's percussive layer.

    ``groove``: the groove already rendered by :func:`render_groove` for this analysis,
    genre and seed (the pipeline renders it before converting, while memory is low).

    ``limit``: peak-limit the mix (gaudio.limit_peaks); the conversion pipeline passes False
    because its loudness match limits the final level once.

    ``strength`` in [0, 1] crossfades: replace keeps (1 - strength) of the old percussion and
    strength of the groove; add adds strength of it. ``analysis``: :func:`analyse_rhythm` of
    ``audio`` (computed when not given; its beat grid is used either way). ``layers``:
    (harmonic, percussive) to mix instead of the analysis's own, e.g. the converter's output
    for ``analysis.harmonic`` with ``analysis.percussive``, or :func:`separate` of a converted
    song whose grid was analysed before conversion. A song without a clear beat
    (``analysis.has_clear_beat``) is left as ``keep`` leaves it, and info["reason"] says why.

    info: "rhythm" (the mode applied), "asked", the analysis summary (tempo, meter, bars,
    confidences), "groove" (genre or None), "groove_kit", the levels used
    ("level_method", "percussion_level_db", "groove_level_db", "groove_gain_db"), "reason"
    where the mode applied differs from the one asked or the groove is silent.
    """
    if mode not in MODES:
        raise GenreshiftError(f"unknown rhythm mode; choose {', '.join(MODES)}",
                              kind="bad_option", option="rhythm", value=mode)
    if not 0.0 <= strength <= 1.0:
        raise GenreshiftError("must be between 0 and 1", kind="bad_option", option="strength",
                              value=strength)
    audio = _as_2d(audio)
    genre = groove_genre(targets)
    _check_genre(genre)
    info: dict = {"rhythm": mode, "asked": mode}
    if layers is not None:
        harmonic, percussive = (_as_2d(x) for x in layers)
        if harmonic.shape != percussive.shape:
            raise ValueError(f"layers differ in shape: {harmonic.shape} vs {percussive.shape}")
    if mode == "keep":
        if analysis is not None:
            info.update(analysis.summary())
        return (audio if layers is None else harmonic + percussive), info
    if analysis is None:
        analysis = analyse_rhythm(audio, sr)
    if layers is None:
        harmonic, percussive = analysis.harmonic, analysis.percussive
    whole = audio if layers is None else harmonic + percussive
    info.update(analysis.summary())
    if not analysis.has_clear_beat:
        info["rhythm"] = "keep"
        if len(analysis.beats) < MIN_BEATS:
            why = f"{len(analysis.beats)} beats tracked < {MIN_BEATS}"
        else:
            why = f"confidence {analysis.beat_confidence:.2f} < {CLEAR_BEAT_THRESHOLD:g}"
        info["reason"] = f"no clear beat ({why})"
        return whole, info
    arr = groove_arrangement(analysis, genre, seed=seed)
    if groove is None:
        groove = _render(arr, analysis, sr, harmonic.shape[0], soundfont)
    groove = _fit_length(groove, harmonic.shape[1])
    info["groove"] = genre if arr is not None else None
    info["groove_kit"] = arr.tracks[0].program if arr is not None else None
    if len(targets) > 1:
        info["groove_from"] = "the heaviest genre of the blend"
    silent = not np.any(groove)
    if mode == "replace":
        if silent:
            info["reason"] = f"{genre} has no drums: the kit is taken out"
            gain, levels = 0.0, {"level_method": None, "groove_gain_db": None}
        else:
            gain, levels = _gain_to(groove, percussive, sr, 0.0)
        info.update(levels)
        out = harmonic + np.float32(1.0 - strength) * percussive \
            + np.float32(strength * gain) * groove
    else:
        if silent:
            info["reason"] = f"{genre} has no drums: nothing to add"
            info["rhythm"] = "keep"
            return whole, info
        gain, levels = _gain_to(groove, percussive, sr, ADD_LEVEL_DB)
        info.update(levels)
        out = whole + np.float32(strength * gain) * groove
    out = out.astype(np.float32)
    return (gaudio.limit_peaks(out, sr) if limit else out), info


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[1] >= n:
        return x[:, :n]
    return np.pad(x, ((0, 0), (0, n - x.shape[1])))


__all__ = [
    "MODES", "RhythmAnalysis", "analyse_rhythm", "apply_rhythm", "groove_arrangement",
    "groove_genre", "groove_soundfont", "hpss_masks", "onset_bands", "render_groove",
    "separate", "track_beats",
]

