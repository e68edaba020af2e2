"""The paired synthetic genre corpus: every tune rendered in every genre.

``build_synth_corpus`` picks public-domain tunes from the music21 corpus
(``genreshift.data.melodies``), arranges each one in every requested genre
(``genreshift.data.arrangements``) and renders the arrangements with a General MIDI SoundFont
through TinySoundFont, then produces them (``genreshift.data.production``: per-track effects,
stereo panning, reverb / EQ / bus compression, a limiter to a random loudness in -16..-8
LUFS) into 22 050 Hz stereo; ``production=False`` (``--dry``) gives the plain corpus, mono
and loudness-normalised to -20 LUFS. Layout::

    <out>/metadata.csv              one row per rendering (see METADATA_COLUMNS)
    <out>/<genre>/<tune>.wav        16-bit PCM, what Hugging Face `audiofolder` loads
    <out>/<genre>/<tune>.mid        the performance that was rendered

All renderings of one tune share key, tempo, SoundFont, drum kit and split, and their melodies
share note onsets in seconds (swing and +-10 ms humanisation aside; no effect adds latency), so
a clip converted from one genre has a ground-truth target in another. Everything random is drawn
from generators seeded by (seed, tune index, purpose[, genre]), never from process state: the
same seed gives bit-identical files whatever the number of workers or the order they finish in.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import multiprocessing
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from genreshift.audio import (
    integrated_loudness,
    k_weighting_sections,
    normalize_loudness,
    save_audio,
)
from genreshift.data.arrangements import (
    DEFAULT_GENRES,
    DRUM_BANK,
    DRUMS,
    GENRES,
    Arrangement,
    arrange,
    enrich,
    to_midi,
)
from genreshift.data.melodies import (
    TEMPO_RANGE_BPM,
    LeadSheet,
    Tune,
    TuneRef,
    TuneSkipped,
    candidate_tunes,
    load_tune,
    place_tune,
)
from genreshift.data.production import apply_effects, produce
from genreshift.errors import GenreshiftError
from genreshift.fsutil import atomic_write_bytes

SAMPLE_RATE = 22_050
TARGET_LUFS = -20.0
MIN_SECONDS, MAX_SECONDS = 2.0, 600.0
FADE_OUT_S = 0.03  # notes are cut at the end of the clip: fade instead of clicking
MAX_VOICES = 256
SMALL_CORPUS_AUDIO_S = 600.0  # below this much audio, workers=None renders in-process
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
DEFAULT_SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
# The General MIDI fonts a corpus may use (Debian packages fluid-soundfont-gm,
# timgm6mb-soundfont, csound-soundfont, opl3-soundfont) and the acoustic drum kits
# (avldrums.lv2-soundfont: drums only, one kit preset at bank 0 / program 0).
DEFAULT_SOUNDFONT_NAMES = ("FluidR3_GM.sf2", "TimGM6mb.sf2", "sf_GMbank.sf2",
                           "OPL-3_FM_128M.sf2")
DEFAULT_DRUMKIT_NAMES = ("Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2")
SOUNDFONT_PACKAGES = ("fluid-soundfont-gm timgm6mb-soundfont csound-soundfont "
                      "opl3-soundfont avldrums.lv2-soundfont")
# avldrums kits follow GM from 36 to 57 except where a 4-piece kit has no such drum: GM
# 35 (acoustic bass drum) -> 36 kick, 48 / 50 (hi-mid / high tom; the kit's 48 and 50 are a
# hi-hat swish and a crash choke) -> 45 / 47 (12" tom, centre / edge), 52 (china; the kit's
# is a ride choke) -> 55 splash.
KIT_ONLY_KEY_MAP = {35: 36, 48: 45, 50: 47, 52: 55}
SECOND_FONT_PROBABILITY = 0.15  # per tune and role: that part plays from another GM font
VARIED_TEMPO_BPM = (66.0, 152.0)  # with variety: the tune's tempo (shared by its genres)
METADATA_COLUMNS = (
    "file_name",  # audiofolder's column: path of the WAV relative to the corpus root
    "tune",  # tune id, shared by the renderings of one tune in every genre
    "genre",
    "split",  # train / valid / test, by tune
    "source",  # music21 corpus path of the score
    "number",  # X: number of the tune inside a multi-tune ABC file, or empty
    "title",
    "harmony",  # chord symbols / chorale / derived
    "key",
    "meter",
    "tempo",  # quarter notes per minute
    "transpose",  # semitones from the score's key
    "programs",  # role:program of each track, drums as kit number
    "effects",  # audio treatment after the mix (lo-fi: lowpass:<Hz> vinyl), usually empty
    "soundfont",  # the tune's melodic GM font
    "drumkit",  # font of the drum kit: an avldrums kit or a GM font's bank 128 (or empty)
    "production",  # reverb / tilt / bus compressor / target loudness, per-track fx and pans
    "seed",
    "duration",  # seconds
    "sample_rate",
    "loudness_lufs",  # measured after normalisation
    "midi_file",
)
# Tags that keep the random streams of different purposes apart (arbitrary constants).
_TAG_SELECT, _TAG_SPLIT, _TAG_PLACE, _TAG_SOUNDFONT, _TAG_ARRANGE = 11, 12, 13, 14, 15
_TAG_DRUMKIT, _TAG_TRACKFONT, _TAG_TEMPO, _TAG_VARIETY, _TAG_PRODUCTION = 16, 17, 18, 19, 20


class SynthError(GenreshiftError):
    """Bad input to the synthetic-corpus builder, or a corpus that cannot be written."""


# --------------------------------------------------------------------------- validation


def default_soundfonts() -> list[Path]:
    """The installed General MIDI SoundFonts of DEFAULT_SOUNDFONT_NAMES (FluidR3_GM,
    TimGM6mb, sf_GMbank, OPL-3_FM_128M), in that order."""
    found = [DEFAULT_SOUNDFONT_DIR / n for n in DEFAULT_SOUNDFONT_NAMES
             if (DEFAULT_SOUNDFONT_DIR / n).is_file()]
    if not found:
        raise SynthError(
            f"no General MIDI SoundFont found in {DEFAULT_SOUNDFONT_DIR} "
            f"(looked for {', '.join(DEFAULT_SOUNDFONT_NAMES)}); install them with "
            f"`sudo apt install {SOUNDFONT_PACKAGES}` or pass --soundfont PATH.sf2"
        )
    return found


def default_drumkits() -> list[Path]:
    """The installed acoustic drum-kit SoundFonts (avldrums: Black Pearl, Red Zeppelin)."""
    return [DEFAULT_SOUNDFONT_DIR / n for n in DEFAULT_DRUMKIT_NAMES
            if (DEFAULT_SOUNDFONT_DIR / n).is_file()]


def exclude_soundfonts(fonts: Sequence[Path], names: Sequence[str] | None) -> list[Path]:
    """``fonts`` without those whose file name is in ``names`` (case-insensitive)."""
    drop = {n.strip().lower() for n in names or () if n.strip()}
    return [f for f in fonts if f.name.lower() not in drop]


def check_soundfont(path: str | os.PathLike) -> Path:
    """A readable SF2/SF3 file (RIFF form type 'sfbk') that holds General MIDI presets."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SynthError(f"{p}: SoundFont not found; check the path (Debian/Ubuntu: "
                         f"`sudo apt install {SOUNDFONT_PACKAGES}` installs two under "
                         f"{DEFAULT_SOUNDFONT_DIR})")
    if p.is_dir():
        raise SynthError(f"{p}: is a directory; give the .sf2 file inside it")
    if not os.access(p, os.R_OK):
        raise SynthError(f"{p}: permission denied; make the SoundFont readable")
    try:
        presets = soundfont_presets(p)
    except ValueError as e:
        raise SynthError(f"{p}: not a SoundFont ({e}); give an .sf2 or .sf3 General MIDI "
                         "SoundFont") from None
    except OSError as e:
        raise SynthError(f"{p}: cannot read it ({e.strerror})") from None
    melodic = sum(1 for bank, _ in presets if bank == 0)
    if (0, 0) not in presets or melodic < 64:
        raise SynthError(f"{p}: holds {melodic} presets in bank 0 and "
                         f"{'a' if (0, 0) in presets else 'no'} piano at program 0: not a "
                         "General MIDI SoundFont; give one (e.g. FluidR3_GM.sf2)")
    return p


def soundfont_presets(path: str | os.PathLike) -> set[tuple[int, int]]:
    """(bank, program) of every preset in an SF2/SF3 file, read from its RIFF 'pdta/phdr'
    chunk without loading the samples. Raises ValueError if the file is not a SoundFont."""
    from genreshift.data import sf2

    return sf2.presets(path)


def check_genres(genres: str | Sequence[str]) -> list[str]:
    """Genre names from a comma-separated string or a list: known, lower case, no repeats."""
    items = genres.split(",") if isinstance(genres, str) else list(genres)
    names = [g.strip().lower() for g in items if g.strip()]
    if not names:
        raise SynthError(f"no genre given; choose from {', '.join(GENRES)}")
    unknown = [g for g in names if g not in GENRES]
    if unknown:
        raise SynthError(f"unknown genre {', '.join(repr(g) for g in unknown)}; "
                         f"known genres: {', '.join(GENRES)}")
    return list(dict.fromkeys(names))


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out}: exists and is not a folder; choose a folder for the corpus")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SynthError(f"{out}: cannot write there ({probe} is not writable); choose "
                         "another --out folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise SynthError(f"{out}: folder is not empty; choose an empty or new folder, or pass "
                         "--force to replace the synthetic corpus in it")


# --------------------------------------------------------------------------- rendering


@lru_cache(maxsize=8)
def _load_soundfont(path: str, presets: frozenset[tuple[int, int]] | None = None):
    """A loaded SoundFont, once per process; renders work on clones of it. ``presets``:
    load only these (bank, program) and what they play (``sf2.subset``: FluidR3_GM's kit is
    a few MB of its 148), or the whole file where None or where the file cannot be cut."""
    # TinySoundFont's low-level SoundFont is used rather than tinysoundfont.Synth because
    # only it exposes tsf_copy (a clone that shares the sample data but starts from a clean
    # channel and voice state) and rendering into a caller's buffer: a fresh state per
    # rendering is what makes the output independent of what the process rendered before.
    from tinysoundfont import _tinysoundfont

    from genreshift.data import sf2

    try:
        data = None if presets is None else sf2.subset(path, lambda b, p: (b, p) in presets)
        return _tinysoundfont.SoundFont(path if data is None else data)
    except Exception as e:  # noqa: BLE001 - the binding raises RuntimeError/ValueError/...
        raise SynthError(f"{path}: TinySoundFont cannot load it ({e}); is it a complete "
                         ".sf2/.sf3 file?") from None


@dataclass(frozen=True)
class Rendering:
    """What ``render_arrangement`` made: the mix and how it was mixed."""

    audio: np.ndarray  # float32 [samples], mono, before loudness normalisation
    volumes: dict[int, int]  # channel -> CC7 that reproduces each track's gain in the mix
    substitutions: tuple[str, ...]  # "role:program->0" for presets the SoundFont lacks


def _render_events(font, notes: Iterable, n: int, sample_rate: int) -> np.ndarray:
    """Play note events (seconds) through a prepared TinySoundFont clone into n samples."""
    out = np.zeros(n, dtype=np.float32)
    raw = out.view(np.uint8)  # TinySoundFont renders into a byte buffer
    events: list[tuple[int, int, int, int, int]] = []
    for note in notes:
        on = round(note.start * sample_rate)
        if on >= n:
            continue
        events.append((on, 1, note.channel, note.pitch, note.velocity))
        events.append((round(note.end * sample_rate), 0, note.channel, note.pitch, 0))
    events.sort()  # at one sample: note-offs (0) before note-ons (1)
    pos = 0
    for at, is_on, channel, pitch, velocity in events:
        if at >= n:
            break
        if at > pos:
            font.render(raw[pos * 4:at * 4])
            pos = at
        if is_on:
            font.channel_note_on(channel, pitch, velocity / 127.0)
        else:
            font.channel_note_off(channel, pitch)
    if pos < n:
        font.render(raw[pos * 4:])
    return out


def stem_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Gated K-weighted loudness of a mono [samples] signal, in LUFS.

    BS.1770 with non-overlapping 400 ms blocks instead of 75 % overlap: within a fraction
    of a dB of ``integrated_loudness`` on these stems and about four times cheaper, which
    matters at five stems per clip. Silence gives -70 (the absolute gate).
    """
    from scipy.signal import sosfilt

    weighted = sosfilt(k_weighting_sections(sample_rate), audio)
    block = int(0.4 * sample_rate)
    n_blocks = len(weighted) // block
    if n_blocks == 0:
        return -70.0
    power = (weighted[: n_blocks * block].reshape(n_blocks, block) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    kept = power[block_lufs > -70.0]
    if kept.size == 0:
        return -70.0
    relative_gate = -0.691 + 10.0 * np.log10(kept.mean()) - 10.0
    kept = power[block_lufs > max(-70.0, relative_gate)]
    return float(-0.691 + 10.0 * np.log10(kept.mean()))


def _is_kit_only(presets: set[tuple[int, int]]) -> bool:
    """A drum-kit SoundFont (avldrums): no bank-128 kits and too few presets to be GM."""
    return not any(bank == DRUM_BANK for bank, _ in presets) and len(presets) < 16


@lru_cache(maxsize=16)
def _presets(path: str) -> frozenset[tuple[int, int]]:
    return frozenset(soundfont_presets(path))


def release_soundfonts() -> None:
    """Drop the loaded SoundFonts (FluidR3_GM holds ~435 MB once loaded)."""
    _load_soundfont.cache_clear()


@dataclass(frozen=True)
class Stems:
    """Dry mono stems of an arrangement, one per track, before any mixing."""

    stems: dict[int, np.ndarray]  # channel -> float32 [samples]
    substitutions: tuple[str, ...]  # "role:program->0" for presets the SoundFont lacks


def render_stems(arr: Arrangement, soundfont: str | os.PathLike,
                 sample_rate: int = SAMPLE_RATE, *, drumkit: str | os.PathLike | None = None,
                 track_fonts: dict[int, str | os.PathLike] | None = None,
                 used_presets_only: bool = False) -> Stems:
    """Render each track of ``arr`` on its own (a clean clone of its SoundFont per track):
    melodic tracks from ``soundfont`` (or ``track_fonts[channel]``), the drums from
    ``drumkit`` (default: ``soundfont``'s bank 128). A kit-only font (avldrums) plays its one
    kit with GM keys mapped by KIT_ONLY_KEY_MAP. Each stem: float32 [round(duration * sr)].

    ``used_presets_only``: load only the presets the tracks play, and each bank's program 0
    (what a missing preset falls back to), instead of the whole font: for one short
    rendering in a fresh process, such as a groove. The output is the same to float
    rounding (TinySoundFont's sample positions are absolute, and the cut font's are
    smaller: tests/test_sf2.py)."""
    from tinysoundfont import _tinysoundfont

    n = round(arr.duration * sample_rate)
    substitutions = []
    stems: dict[int, np.ndarray] = {}
    paths = {track.channel: str(Path(drumkit if track.is_drums and drumkit else
                                     (track_fonts or {}).get(track.channel, soundfont)
                                     ).resolve()) for track in arr.tracks}
    wanted: dict[str, set[tuple[int, int]] | None] = {}
    for track in arr.tracks:
        path = paths[track.channel]
        if not used_presets_only or (track.is_drums and _is_kit_only(_presets(path))):
            wanted[path] = None
        elif wanted.get(path, set()) is not None:
            bank = DRUM_BANK if track.is_drums else 0
            wanted.setdefault(path, set()).update({(bank, track.program), (bank, 0)})
    for track in arr.tracks:
        path = paths[track.channel]
        presets = wanted[path]
        font = _tinysoundfont.SoundFont(
            _load_soundfont(path, None if presets is None else frozenset(presets)))
        font.set_output(_tinysoundfont.OutputMode.Mono, sample_rate, 0.0)
        font.set_max_voices(MAX_VOICES)
        bank = DRUM_BANK if track.is_drums else 0
        program = track.program
        notes: Iterable = (x for x in arr.notes if x.channel == track.channel)
        if track.is_drums and _is_kit_only(_presets(path)):
            bank, program = min(_presets(path))
            notes = (dataclasses.replace(x, pitch=KIT_ONLY_KEY_MAP.get(x.pitch, x.pitch))
                     for x in notes)
        elif font.get_preset_index(bank, program) < 0:
            substitutions.append(f"{track.role}:{program}->0")
            program = 0
        font.channel_set_bank(track.channel, bank)
        font.channel_set_preset_number(track.channel, program, track.is_drums)
        stems[track.channel] = _render_events(font, notes, n, sample_rate)
    return Stems(stems, tuple(substitutions))


def render_arrangement(arr: Arrangement, soundfont: str | os.PathLike,
                       sample_rate: int = SAMPLE_RATE) -> Rendering:
    """Render an arrangement with a SoundFont and mix it, dry and mono (``--dry``).

    Each track is rendered on its own (``render_stems``), its gated K-weighted loudness
    measured, and the tracks summed with the gains that put each one at its ``level_db``
    relative to the lead: preset levels vary too much between programs and SoundFonts for
    fixed channel volumes to give a balanced mix. The audio is float32 mono of shape
    [round(arr.duration * sample_rate)], unnormalised, faded out over the last 30 ms.
    ``volumes`` expresses the gains as CC7 values for the MIDI file (TinySoundFont's volume
    curve is close to cubic: gain ~ (cc/127)^3), so the .mid replays the same balance.
    """
    rendered = render_stems(arr, soundfont, sample_rate)
    n = round(arr.duration * sample_rate)
    gains_db = {channel: track.level_db - stem_loudness(rendered.stems[channel], sample_rate)
                for track in arr.tracks for channel in (track.channel,)}
    top = max(gains_db.values()) if gains_db else 0.0
    audio = np.zeros(n, dtype=np.float32)
    volumes: dict[int, int] = {}
    for channel, stem in rendered.stems.items():
        gain = 10.0 ** ((gains_db[channel] - top) / 20.0)  # <= 1: the loudest gain is 1
        audio += stem * np.float32(gain)
        volumes[channel] = int(np.clip(round(127.0 * gain ** (1.0 / 3.0)), 1, 127))
    audio = apply_effects(audio, sample_rate, arr.effects)
    fade = min(n, int(FADE_OUT_S * sample_rate))
    if fade:
        audio[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return Rendering(audio, volumes, rendered.substitutions)


# --------------------------------------------------------------------------- seeding


def _genre_code(genre: str) -> int:
    return zlib.crc32(genre.encode())  # stable across processes, unlike hash()


def placement_rng(seed: int, tune_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TAG_PLACE, tune_index])


def arrangement_rng(seed: int, tune_index: int, genre: str) -> np.random.Generator:
    # keyed by the genre's name: a genre's rendering does not depend on the other genres asked
    return np.random.default_rng([seed, _TAG_ARRANGE, tune_index, _genre_code(genre)])


def choose_soundfont(seed: int, tune_index: int, soundfonts: Sequence[Path]) -> Path:
    """One SoundFont per tune (all its genres), drawn from the seed."""
    rng = np.random.default_rng([seed, _TAG_SOUNDFONT, tune_index])
    return soundfonts[int(rng.integers(len(soundfonts)))]


def choose_drumkit(seed: int, tune_index: int, drumkits: Sequence[Path]) -> Path | None:
    """One drum kit per tune (all its genres): an avldrums kit or a GM font's bank 128."""
    if not drumkits:
        return None
    rng = np.random.default_rng([seed, _TAG_DRUMKIT, tune_index])
    return drumkits[int(rng.integers(len(drumkits)))]


def track_font(seed: int, tune_index: int, role: str, main: str,
               soundfonts: Sequence[str]) -> str:
    """The melodic font of one part: the tune's ``main`` font, or with probability
    SECOND_FONT_PROBABILITY another one of ``soundfonts``; seeded by tune and role (not by
    genre), so a tune's lead sounds alike in every genre."""
    others = [f for f in soundfonts if f != main]
    rng = np.random.default_rng([seed, _TAG_TRACKFONT, tune_index, _genre_code(role)])
    if not others or rng.random() >= SECOND_FONT_PROBABILITY:
        return main
    return others[int(rng.integers(len(others)))]


def production_key(seed: int, tune_index: int, genre: str) -> tuple[int, ...]:
    """The seed prefix of every production draw of one rendering."""
    return (seed, _TAG_PRODUCTION, tune_index, _genre_code(genre))


def assign_splits(n_tunes: int, seed: int) -> list[str]:
    """train/valid/test per tune index: 80/10/10 by a seeded permutation (valid and test get
    at least one tune each from three tunes on), so every rendering of a tune shares a split."""
    n_valid = round(n_tunes * SPLIT_FRACTIONS["valid"])
    n_test = round(n_tunes * SPLIT_FRACTIONS["test"])
    if n_tunes >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    order = np.random.default_rng([seed, _TAG_SPLIT]).permutation(n_tunes)
    splits = ["train"] * n_tunes
    for rank, i in enumerate(order):
        if rank < n_test:
            splits[i] = "test"
        elif rank < n_test + n_valid:
            splits[i] = "valid"
    return splits


def tune_id(index: int, n_tunes: int) -> str:
    return f"tune_{index:0{max(4, len(str(n_tunes - 1)))}d}"


# --------------------------------------------------------------------------- one rendering


@dataclass(frozen=True)
class RenderJob:
    """Everything one worker needs to render one tune in one genre."""

    tune: Tune
    index: int
    name: str  # tune id, e.g. tune_0003
    genre: str
    split: str
    seconds: float
    seed: int
    soundfont: str
    out: str
    force: bool
    drumkit: str | None = None  # None: the drums come from ``soundfont``'s bank 128
    soundfonts: tuple[str, ...] = ()  # melodic fonts a part may borrow (second font)
    production: bool = True
    variety: bool = True


def place(tune: Tune, index: int, seconds: float, seed: int, variety: bool = False
          ) -> LeadSheet:
    """Tune ``index`` placed in its key and tempo. With ``variety`` the tempo is drawn from
    VARIED_TEMPO_BPM instead of place_tune's narrower TEMPO_RANGE_BPM (still one tempo per
    tune: the paired renderings must stay aligned): place_tune's first draw is its tempo, so
    the tune is placed over the seconds that fill the same length at the new tempo."""
    if not variety:
        return place_tune(tune, seconds, placement_rng(seed, index))
    base = float(round(placement_rng(seed, index).uniform(*TEMPO_RANGE_BPM)))
    bpm = float(round(np.random.default_rng([seed, _TAG_TEMPO, index]).uniform(
        *VARIED_TEMPO_BPM)))
    sheet = place_tune(tune, seconds * bpm / base, placement_rng(seed, index))
    return dataclasses.replace(sheet, bpm=bpm)


def perform(tune: Tune, index: int, genre: str, seconds: float, seed: int,
            variety: bool = False) -> Arrangement:
    """The arrangement of tune number ``index`` in ``genre``, as the corpus renders it;
    ``variety`` adds the wider tempo range, humanised dynamics and extra parts (``enrich``)."""
    sheet = place(tune, index, seconds, seed, variety)
    arr = arrange(sheet, genre, arrangement_rng(seed, index, genre))
    if variety:
        arr = enrich(arr, np.random.default_rng([seed, _TAG_VARIETY, index,
                                                 _genre_code(genre)]))
    return arr


def render_job(job: RenderJob) -> dict[str, str]:
    """Render one (tune, genre) pair to WAV + MIDI; returns its metadata row."""
    cpu0 = time.process_time()
    arr = perform(job.tune, job.index, job.genre, job.seconds, job.seed, job.variety)
    drumkit = ""
    if job.production:
        fonts = {t.channel: track_font(job.seed, job.index, t.role, job.soundfont,
                                       job.soundfonts or (job.soundfont,))
                 for t in arr.tracks if not t.is_drums}
        stems = render_stems(arr, job.soundfont, drumkit=job.drumkit, track_fonts=fonts)
        produced = produce(arr, stems.stems, SAMPLE_RATE,
                           production_key(job.seed, job.index, job.genre))
        audio, volumes, lufs = produced.audio, produced.volumes, produced.loudness_lufs
        borrowed = " ".join(f"font:{t.role}={Path(fonts[t.channel]).name}" for t in arr.tracks
                            if not t.is_drums and fonts[t.channel] != job.soundfont)
        production = produced.label + (" " + borrowed if borrowed else "")
        substitutions = stems.substitutions
        if any(t.is_drums for t in arr.tracks):
            drumkit = Path(job.drumkit or job.soundfont).name
    else:
        rendering = render_arrangement(arr, job.soundfont)
        audio = normalize_loudness(rendering.audio[None], SAMPLE_RATE, TARGET_LUFS)
        volumes, substitutions, production = rendering.volumes, rendering.substitutions, "dry"
        lufs = integrated_loudness(audio, SAMPLE_RATE)
        if any(t.channel == DRUMS for t in arr.tracks):
            drumkit = Path(job.soundfont).name
    folder = Path(job.out) / job.genre
    wav = folder / f"{job.name}.wav"
    mid = folder / f"{job.name}.mid"
    save_audio(wav, audio, SAMPLE_RATE, fmt="wav", bit_depth="16", force=job.force)
    _save_midi(arr, volumes, mid)
    sheet = arr.sheet
    programs = arr.programs_label() + "".join(f" [{s}]" for s in substitutions)
    return {
        "file_name": f"{job.genre}/{wav.name}",
        "tune": job.name,
        "genre": job.genre,
        "split": job.split,
        "source": job.tune.ref.source,
        "number": "" if job.tune.ref.number is None else str(job.tune.ref.number),
        "title": job.tune.title,
        "harmony": job.tune.harmony,
        "key": sheet.key_name,
        "meter": sheet.meter.label,
        "tempo": f"{sheet.qpm:.2f}",
        "transpose": str(sheet.transpose),
        "programs": programs,
        "effects": " ".join(name if name == "vinyl" else f"{name}:{value:g}"
                            for name, value in arr.effects),
        "soundfont": Path(job.soundfont).name,
        "drumkit": drumkit,
        "production": production,
        "seed": str(job.seed),
        "duration": f"{audio.shape[1] / SAMPLE_RATE:.3f}",
        "sample_rate": str(SAMPLE_RATE),
        "loudness_lufs": f"{lufs:.2f}",
        "midi_file": f"{job.genre}/{mid.name}",
        "_cpu_s": f"{time.process_time() - cpu0:.4f}",  # popped before metadata is written
    }


def _save_midi(arr: Arrangement, volumes: dict[int, int], path: Path) -> None:
    """Write the MIDI file atomically (temporary file in the same folder, then rename)."""
    buf = io.BytesIO()
    to_midi(arr, volumes).save(file=buf)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- tune selection


def _load_or_none(ref: TuneRef) -> Tune | str:
    try:
        return load_tune(ref)
    except TuneSkipped as e:
        return str(e)


def select_tunes(n: int, seed: int, pool: ProcessPoolExecutor | None = None,
                 progress: bool = True) -> tuple[list[Tune], int]:
    """The first ``n`` usable, distinct tunes of the candidate list in a seeded order.

    Candidates are parsed in batches (in parallel when ``pool`` is given) and kept in
    candidate order, so the choice does not depend on the number of workers. Returns the
    tunes and the number of candidates skipped (unusable or duplicates of a chosen tune).
    """
    refs = candidate_tunes()
    order = np.random.default_rng([seed, _TAG_SELECT]).permutation(len(refs))
    chosen: list[Tune] = []
    seen: set[int] = set()
    skipped = 0
    pos = 0
    bar = _progress(total=n, desc="choosing tunes", unit="tune", enabled=progress)
    while len(chosen) < n and pos < len(order):
        # ask for a third more than needed: about a fifth of the candidates are unusable
        batch = [refs[i] for i in order[pos:pos + max(4, int((n - len(chosen)) * 1.35) + 2)]]
        pos += len(batch)
        results = pool.map(_load_or_none, batch, chunksize=4) if pool else map(
            _load_or_none, batch)
        for result in results:
            if len(chosen) >= n:
                break
            if isinstance(result, str):
                skipped += 1
                continue
            fp = result.fingerprint()
            if fp in seen:
                skipped += 1
                continue
            seen.add(fp)
            chosen.append(result)
            bar.update(1)
    bar.close()
    if len(chosen) < n:
        raise SynthError(f"the music21 corpus gave only {len(chosen)} usable tunes of the "
                         f"{n} asked for; ask for --tunes {len(chosen)} or fewer")
    return chosen, skipped


# --------------------------------------------------------------------------- the corpus


def _progress(total: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)


def _remove_previous(out: Path) -> None:
    """With --force: delete what a previous synth corpus wrote (the files its metadata.csv
    lists, and tune_*.wav / tune_*.mid in genre folders, left by a run that was interrupted
    before writing its metadata), and nothing else, so no stale clip outlives the new
    metadata."""
    root = out.resolve()
    meta = out / "metadata.csv"
    if meta.is_file():
        with open(meta, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                for col in ("file_name", "midi_file"):
                    rel = row.get(col) or ""
                    target = (out / rel).resolve()
                    if rel and root in target.parents and target.is_file():
                        target.unlink()
        meta.unlink()
    for genre in GENRES:
        folder = out / genre
        if folder.is_dir():
            for p in folder.iterdir():
                if re.fullmatch(r"\.?tune_\d+\.(wav|mid)(\..*\.tmp)?", p.name) and p.is_file():
                    p.unlink()


def build_synth_corpus(
    out: str | os.PathLike,
    genres: str | Sequence[str] = DEFAULT_GENRES,
    tunes: int = 100,
    seconds: float = 30.0,
    soundfonts: Sequence[str | os.PathLike] | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    exclude: Sequence[str] | None = None,
    production: bool = True,
    variety: bool = True,
    drumkits: Sequence[str | os.PathLike] | None = None,
    only_split: str | None = None,
) -> dict:
    """Render ``tunes`` public-domain tunes in every genre of ``genres`` into ``out``.

    Each rendering is ``seconds`` long, 22 050 Hz 16-bit WAV, with its MIDI file next to it;
    ``metadata.csv`` lists them all (columns: METADATA_COLUMNS). With ``production`` (the
    default) it is stereo, produced and mastered to a random loudness in -16..-8 LUFS
    (``genreshift.data.production``); without, mono at -20 LUFS. ``variety`` (default on)
    widens the tempo range and adds humanised dynamics and extra parts; ``production=False,
    variety=False`` is the plain corpus of ``--dry``. One melodic SoundFont of
    ``soundfonts`` (default: the installed GM fonts of DEFAULT_SOUNDFONT_NAMES) is drawn per
    tune, less those named in ``exclude`` (file names: a held-out test font); with
    production, a drum kit per tune from ``drumkits`` (default: the avldrums kits) and the
    melodic fonts' own kits, and now and then a part from a second melodic font.
    ``workers`` processes render in parallel (default: every core, or this process alone
    for less than SMALL_CORPUS_AUDIO_S of audio; 1 renders in this process). Same
    arguments (SoundFonts in the same order), same seed: byte-identical WAV and MIDI files,
    whatever the number of workers. ``only_split`` renders only the tunes of that split (the
    same tunes a full corpus of these arguments puts there), e.g. the test tunes again with a
    held-out SoundFont.

    Returns a summary dict: out, tunes, genres, renderings, audio_seconds, wall_seconds,
    cpu_seconds (process CPU time of the renderings: arrange, render, mix, normalise,
    write), realtime_factor (audio seconds per wall second), workers, splits (tunes per
    split), skipped_candidates, soundfonts (melodic), drumkits, production.
    """
    t_start = time.perf_counter()
    genre_list = check_genres(genres)
    if isinstance(tunes, bool) or not isinstance(tunes, (int, np.integer)) or tunes < 1:
        raise SynthError(f"--tunes must be a whole number >= 1, got {tunes!r}")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or \
            not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise SynthError(f"--seconds must be between {MIN_SECONDS:g} and {MAX_SECONDS:g}, "
                         f"got {seconds!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SynthError(f"--seed must be a whole number >= 0, got {seed!r}")
    if only_split is not None and only_split not in SPLIT_FRACTIONS:
        raise SynthError(f"--only-split must be one of {', '.join(SPLIT_FRACTIONS)}, got "
                         f"{only_split!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise SynthError(f"--workers must be >= 1, got {workers!r}")
    fonts = [check_soundfont(p) for p in soundfonts] if soundfonts else default_soundfonts()
    fonts = exclude_soundfonts(list(dict.fromkeys(fonts)), exclude)
    if not fonts:
        raise SynthError(f"--exclude-soundfont {', '.join(exclude or ())} leaves no melodic "
                         "SoundFont; give another with --soundfont PATH.sf2")
    kits: list[Path] = []
    if production:
        kits = [Path(p).expanduser() for p in drumkits] if drumkits is not None else \
            default_drumkits()
        for k in kits:
            if not k.is_file():
                raise SynthError(f"{k}: drum-kit SoundFont not found")
        kits = exclude_soundfonts(list(dict.fromkeys(kits)), exclude) + fonts
    out = Path(out).expanduser()
    _check_out(out, force)
    n_jobs = int(tunes) * len(genre_list)
    if workers is None:
        # Starting a worker (a fresh interpreter importing music21 and loading the SoundFont)
        # costs a few seconds: worth it only when there is more than that to render.
        workers = 1 if n_jobs * float(seconds) < SMALL_CORPUS_AUDIO_S else (os.cpu_count() or 1)
    n_workers = workers
    try:
        out.mkdir(parents=True, exist_ok=True)
        if force:
            _remove_previous(out)
        for g in genre_list:
            (out / g).mkdir(exist_ok=True)
    except OSError as e:
        raise SynthError(f"{out}: cannot create the corpus folders ({e.strerror}); choose "
                         "another --out folder") from None

    pool = None
    if n_workers > 1:
        # spawn, not fork: the caller may hold threads (tqdm, torch) that fork would copy
        pool = ProcessPoolExecutor(max_workers=n_workers,
                                   mp_context=multiprocessing.get_context("spawn"))
    try:
        chosen, skipped = select_tunes(int(tunes), int(seed), pool, progress)
        splits = assign_splits(len(chosen), int(seed))
        jobs = [
            RenderJob(tune=t, index=i, name=tune_id(i, len(chosen)), genre=g,
                      split=splits[i], seconds=float(seconds), seed=int(seed),
                      soundfont=str(choose_soundfont(int(seed), i, fonts)), out=str(out),
                      force=force, production=bool(production), variety=bool(variety),
                      drumkit=(str(k) if (k := choose_drumkit(int(seed), i, kits)) else None),
                      soundfonts=tuple(str(f) for f in fonts))
            for i, t in enumerate(chosen) for g in genre_list
            if only_split is None or splits[i] == only_split
        ]
        rows: list[dict[str, str]] = []
        bar = _progress(total=len(jobs), desc="rendering", unit="clip", enabled=progress)
        results: Iterable[dict[str, str]]
        results = pool.map(render_job, jobs, chunksize=2) if pool else map(render_job, jobs)
        for row in results:
            rows.append(row)
            bar.update(1)
        bar.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    cpu_s = sum(float(r.pop("_cpu_s")) for r in rows)
    genre_rank = {g: i for i, g in enumerate(genre_list)}
    rows.sort(key=lambda r: (genre_rank[r["genre"]], r["tune"]))
    _write_metadata(out / "metadata.csv", rows)
    wall = time.perf_counter() - t_start
    audio_s = len(rows) * float(seconds)
    return {
        "out": str(out),
        "tunes": len({r["tune"] for r in rows}),
        "genres": genre_list,
        "renderings": len(rows),
        "audio_seconds": audio_s,
        "wall_seconds": wall,
        "cpu_seconds": cpu_s,
        "realtime_factor": audio_s / wall if wall > 0 else float("inf"),
        "workers": n_workers,
        "splits": {s: splits.count(s) for s in SPLIT_FRACTIONS},
        "skipped_candidates": skipped,
        "soundfonts": [str(f) for f in fonts],
        "drumkits": [str(k) for k in kits],
        "production": bool(production),
    }


def _write_metadata(path: Path, rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METADATA_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def read_metadata(corpus: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of ``<corpus>/metadata.csv`` as dicts (all values are strings)."""
    path = Path(corpus) / "metadata.csv"
    if not path.is_file():
        raise SynthError(f"{path}: not found; is {corpus} a corpus made by "
                         "`genreshift data synth`?")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def format_synth_summary(summary: dict) -> str:
    """A few human-readable lines about a ``build_synth_corpus`` summary."""
    splits = ", ".join(f"{n} {s}" for s, n in summary["splits"].items())
    fonts = ", ".join(Path(f).name for f in summary["soundfonts"])
    return (
        f"wrote {summary['renderings']} clips ({summary['tunes']} tunes x "
        f"{len(summary['genres'])} genres: {', '.join(summary['genres'])}) to "
        f"{summary['out']}\n"
        f"tunes per split: {splits}; SoundFonts: {fonts}\n"
        f"{summary['audio_seconds'] / 60:.1f} min of audio in {summary['wall_seconds']:.1f} s "
        f"on {summary['workers']} worker(s): {summary['realtime_factor']:.0f}x real time"
    )
