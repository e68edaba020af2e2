"""Public-domain melodies from the music21 corpus, with a harmony, placed in key and time.

A *tune* is one melody from the corpus that ships inside ``music21`` (Ryan's Mammoth
Collection 1883, O'Neill's Music of Ireland 1850 tunes, Aird's Airs 1778-1803, the Essen folk
song collection, Bach's chorales, two lead sheets, ...), reduced to what every genre
arrangement needs:

- the melody as monophonic notes, in quarter lengths ("ql"), shifted so that bar lines fall on
  multiples of the groove bar (a pickup starts late in bar 0);
- a harmony as chord spans covering one pass of the tune: the score's own chord symbols where
  it has them, the lower three voices of a chorale chordified beat by beat, and otherwise a
  diatonic harmonisation per bar or half bar found by a Viterbi search that covers the melody;
- the meter, the key (tonic and mode) and the length of one pass (``period``).

``place_tune`` then transposes a tune to a random, comfortable key, picks a tempo from a range
shared by every genre and loops the tune to fill the requested seconds. Every genre arrangement
of one tune starts from the same ``LeadSheet``, so its renderings share note onsets in seconds
(swing and humanisation aside).

Nothing here touches the network or writes files: the corpus is read from the installed
``music21`` package, with music21's pickle cache turned off for these parses.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import warnings
import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

# Tempo in beats per minute, shared by every genre so that the renderings of one tune line up.
# The beat is a quarter note in simple meters and a dotted quarter in compound ones.
TEMPO_RANGE_BPM = (84.0, 116.0)
# The duration-weighted mean pitch of a placed melody lands in this range (MIDI E4..D5) ...
MELODY_CENTRE_RANGE = (64.0, 74.0)
# ... and, where an octave choice allows, no melody note leaves this one (E3..A6).
MELODY_LIMITS = (52, 93)
MIN_BARS = 4
MIN_NOTES = 12
MAX_RANGE_SEMITONES = 31  # wider than this is a parse artefact, not a singable tune
IRREGULAR_MEASURE_FRACTION = 0.15  # more odd-length measures than this: meter is unreliable

# Collections of the music21 core corpus that hold public-domain melodies. Palestrina,
# Monteverdi and the other polyphony have no single melody line to take.
CORPUS_COLLECTIONS: tuple[str, ...] = (
    "airdsAirs",
    "bach",
    "essenFolksong",
    "leadSheet",
    "miscFolk",
    "nottingham-dataset",
    "oneills1850",
    "ryansMammoth",
)
_SCORE_SUFFIXES = (".abc", ".mxl", ".xml", ".musicxml", ".krn")
# Essen's test*/variant* files repeat tunes of the main files; a repeat could land in two splits.
_SKIP_FILE = re.compile(r"^(test|variant)", re.IGNORECASE)

CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "sus4": (0, 5, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
}
# music21 ChordSymbol.chordKind -> quality; kinds not listed are matched by their pitches.
_CHORD_KINDS = {
    "major": "maj",
    "minor": "min",
    "diminished": "dim",
    "augmented": "aug",
    "suspended-fourth": "sus4",
    "dominant-seventh": "7",
    "dominant": "7",
    "major-seventh": "maj7",
    "minor-seventh": "m7",
    "half-diminished-seventh": "m7b5",
    "half-diminished": "m7b5",
    "diminished-seventh": "dim7",
    "major-sixth": "6",
    "minor-sixth": "m6",
}
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


class TuneSkipped(Exception):
    """A corpus entry that cannot become a tune (parse failure, odd meter, too short, ...)."""


@dataclass(frozen=True, order=True)
class TuneRef:
    """Where a tune lives: a path inside the music21 corpus, plus its X: number in an ABC
    file that holds many tunes (None for a one-tune file)."""

    source: str
    number: int | None = None

    @property
    def label(self) -> str:
        return f"{self.source}#{self.number}" if self.number is not None else self.source

    def sort_key(self) -> tuple[str, int]:
        return (self.source, -1 if self.number is None else self.number)


@dataclass(frozen=True)
class Meter:
    """The groove implied by a time signature.

    A notated measure holds ``bars_per_measure`` groove bars (4/2 is two bars of 4/4); a groove
    bar holds ``beats_per_bar`` beats of ``beat_ql`` quarter lengths, each split into
    ``subdivision`` equal parts (2 in simple meters, 3 in compound ones).
    """

    numerator: int
    denominator: int
    beats_per_bar: int
    beat_ql: float
    subdivision: int
    bars_per_measure: int = 1

    @property
    def bar_ql(self) -> float:
        return self.beats_per_bar * self.beat_ql

    @property
    def measure_ql(self) -> float:
        return self.bar_ql * self.bars_per_measure

    @property
    def compound(self) -> bool:
        return self.subdivision == 3

    @property
    def label(self) -> str:
        return f"{self.numerator}/{self.denominator}"


# (numerator, denominator) -> (beats per groove bar, beat in ql, subdivision, bars per measure).
# 2/2 is played as four quarter beats: folk reels in cut time move in eighths, as in 4/4.
_METERS: dict[tuple[int, int], tuple[int, float, int, int]] = {
    (2, 4): (2, 1.0, 2, 1),
    (3, 4): (3, 1.0, 2, 1),
    (4, 4): (4, 1.0, 2, 1),
    (2, 2): (4, 1.0, 2, 1),
    (4, 2): (4, 1.0, 2, 2),
    (6, 8): (2, 1.5, 3, 1),
    (9, 8): (3, 1.5, 3, 1),
    (12, 8): (4, 1.5, 3, 1),
}


def meter_for(numerator: int, denominator: int) -> Meter | None:
    """The groove for a time signature, or None where no genre groove fits it (5/4, 3/8...)."""
    spec = _METERS.get((numerator, denominator))
    if spec is None:
        return None
    beats, beat_ql, subdivision, per_measure = spec
    return Meter(numerator, denominator, beats, beat_ql, subdivision, per_measure)


@dataclass(frozen=True)
class Note:
    """One melody note: onset and duration in quarter lengths, MIDI pitch."""

    start: float
    dur: float
    pitch: int

    @property
    def end(self) -> float:
        return self.start + self.dur


@dataclass(frozen=True)
class ChordSpan:
    """A chord held from ``start`` for ``dur`` quarter lengths: root pitch class + quality."""

    start: float
    dur: float
    root: int
    quality: str

    @property
    def end(self) -> float:
        return self.start + self.dur

    @property
    def intervals(self) -> tuple[int, ...]:
        return CHORD_QUALITIES[self.quality]

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)

    @property
    def name(self) -> str:
        suffix = {"maj": "", "min": "m"}.get(self.quality, self.quality)
        return PITCH_NAMES[self.root] + suffix


@dataclass(frozen=True)
class Tune:
    """One melody with its harmony, bar-aligned, in its original key.

    ``melody`` onsets are ql from the start of groove bar 0 (a pickup starts inside bar 0);
    the notes of one pass may run past ``period`` (the bar that completes a pickup), and the
    next pass starts at ``period``. ``chords`` cover [0, period) without gaps.
    """

    ref: TuneRef
    title: str
    meter: Meter
    period: float
    melody: tuple[Note, ...]
    chords: tuple[ChordSpan, ...]
    tonic: int
    mode: str  # "major" or "minor"
    harmony: str  # "chord symbols", "chorale" or "derived"

    def fingerprint(self) -> int:
        """Transposition-invariant hash of the opening, to drop duplicate tunes across files."""
        head = self.melody[:32]
        steps = tuple(b.pitch - a.pitch for a, b in itertools.pairwise(head))
        lengths = tuple(round(n.dur * 12) for n in head)
        return zlib.crc32(repr((steps, lengths)).encode())


@dataclass(frozen=True)
class LeadSheet:
    """A tune placed in a key and a tempo and looped to fill ``total_ql`` quarter lengths.

    This is the shared content of every genre rendering of one tune: arrangements read the
    melody, chords and meter from here and convert ql to seconds with ``seconds``.
    """

    tune: Tune
    transpose: int  # semitones applied to the original tune
    tonic: int  # pitch class after transposition
    mode: str
    bpm: float  # beats (see Meter.beat_ql) per minute
    total_ql: float
    melody: tuple[Note, ...]
    chords: tuple[ChordSpan, ...]

    @property
    def meter(self) -> Meter:
        return self.tune.meter

    @property
    def qpm(self) -> float:
        """Quarter notes per minute (the MIDI tempo)."""
        return self.bpm * self.meter.beat_ql

    @property
    def key_name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def n_bars(self) -> int:
        return math.ceil(self.total_ql / self.meter.bar_ql - 1e-9)

    def seconds(self, ql: float) -> float:
        return ql * 60.0 / self.qpm

    def chord_at(self, ql: float) -> ChordSpan:
        """The chord sounding at ``ql`` (the first one before the first chord starts)."""
        i = bisect.bisect_right(self._chord_starts, ql + 1e-9) - 1
        return self.chords[max(i, 0)]

    @cached_property
    def _chord_starts(self) -> list[float]:
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows
        return [c.start for c in self.chords]


# --------------------------------------------------------------------------- corpus listing


@lru_cache(maxsize=1)
def corpus_root() -> Path:
    """The folder of music21's bundled core corpus."""
    from music21 import common

    return Path(common.getCorpusFilePath())


def _abc_numbers(path: Path) -> list[int]:
    """X: reference numbers of the tunes in an ABC file, unique, in file order."""
    seen: dict[int, None] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^X:\s*(\d+)", line)
            if m:
                seen.setdefault(int(m.group(1)), None)
    return list(seen)


@lru_cache(maxsize=4)
def candidate_tunes(collections: tuple[str, ...] = CORPUS_COLLECTIONS) -> tuple[TuneRef, ...]:
    """Every tune the corpus might give, sorted by (source path, number): no parsing here.

    ABC files with several tunes are listed once per X: number, which is cheap (a regex over
    the file) and lets a worker parse one tune of a big file on its own.
    """
    root = corpus_root()
    refs: list[TuneRef] = []
    for name in collections:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in _SCORE_SUFFIXES:
                continue
            if _SKIP_FILE.match(path.name):
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() == ".abc":
                numbers = _abc_numbers(path)
                if len(numbers) > 1:
                    refs.extend(TuneRef(rel, n) for n in numbers)
                    continue
            refs.append(TuneRef(rel, None))
    refs.sort(key=TuneRef.sort_key)
    return tuple(refs)


# --------------------------------------------------------------------------- chords


def identify_chord(pitch_classes: set[int] | frozenset[int], bass: int | None = None
                   ) -> tuple[int, str] | None:
    """Best (root, quality) for a set of pitch classes, or None for an empty set.

    Template matching: each present chord tone scores, a missing one costs (a missing fifth
    costs little, as in many chorale voicings), a tone outside the chord costs more; a root
    equal to the bass wins ties, and triads win over sevenths that explain nothing more.
    """
    pcs = set(pitch_classes)
    if not pcs:
        return None
    best: tuple[float, int, str] | None = None
    for root in sorted(pcs | ({bass} if bass is not None else set())):
        for quality, intervals in CHORD_QUALITIES.items():
            tones = {(root + i) % 12 for i in intervals}
            hit = len(pcs & tones)
            missing = tones - pcs
            miss_cost = sum(0.5 if (t - root) % 12 == 7 else 1.0 for t in missing)
            score = 2.0 * hit - miss_cost - 2.0 * len(pcs - tones)
            # prefer the triad on a tie: A-C-E over C bass is Am/C, not C6 without its fifth
            score -= 0.3 * (len(intervals) - 3)
            if bass is not None and root == bass:
                score += 0.5
            if best is None or score > best[0] + 1e-9:
                best = (score, root, quality)
    assert best is not None
    return best[1], best[2]


def _spans_from_grid(labels: list[tuple[int, str]], step: float) -> list[ChordSpan]:
    """Merge a grid of per-step chord labels into spans."""
    spans: list[ChordSpan] = []
    for i, (root, quality) in enumerate(labels):
        if spans and spans[-1].root == root and spans[-1].quality == quality:
            last = spans[-1]
            spans[-1] = ChordSpan(last.start, last.dur + step, root, quality)
        else:
            spans.append(ChordSpan(i * step, step, root, quality))
    return spans


def _harmony_vocabulary(melody: tuple[Note, ...], tonic: int, mode: str
                        ) -> list[tuple[int, str]]:
    """Triads a harmonisation may use: those built on the key's scale, widened by the pitch
    classes the melody actually leans on (modal folk tunes: dorian sixths, mixolydian
    sevenths), plus the major dominant that minor-key cadences want."""
    scale = MAJOR_SCALE if mode == "major" else NATURAL_MINOR_SCALE
    allowed = {(tonic + s) % 12 for s in scale}
    weight = np.zeros(12)
    for n in melody:
        weight[n.pitch % 12] += n.dur
    if weight.sum() > 0:
        allowed |= {pc for pc in range(12) if weight[pc] / weight.sum() >= 0.04}
    vocab: list[tuple[int, str]] = []
    for root in sorted(allowed):
        for quality in ("maj", "min"):
            if all((root + i) % 12 in allowed for i in CHORD_QUALITIES[quality]):
                vocab.append((root, quality))
    for must in ((tonic, "maj" if mode == "major" else "min"), ((tonic + 7) % 12, "maj")):
        if must not in vocab:
            vocab.append(must)
    return vocab


# Prior preference for a chord by (interval of its root above the tonic, quality).
_PRIOR = {
    "major": {(0, "maj"): 0.40, (7, "maj"): 0.30, (5, "maj"): 0.30, (9, "min"): 0.10,
              (2, "min"): 0.10, (2, "maj"): 0.05, (4, "min"): 0.0, (10, "maj"): 0.0},
    "minor": {(0, "min"): 0.40, (7, "maj"): 0.30, (5, "min"): 0.25, (8, "maj"): 0.15,
              (3, "maj"): 0.15, (10, "maj"): 0.15, (7, "min"): 0.05, (5, "maj"): 0.05},
}
_CHANGE_COST = 0.25  # a chord change must buy this much melody coverage
_NON_CHORD_TONE = -0.6  # passing tones are normal in folk melodies: penalise them mildly


def derive_harmony(melody: tuple[Note, ...], meter: Meter, period: float, tonic: int,
                   mode: str) -> list[ChordSpan]:
    """Diatonic harmonisation of one pass of a melody: one chord per half bar (bars of four
    beats) or per bar, chosen by a Viterbi search over the key's triads.

    Each segment scores how much melody (by duration, with notes on beats and on the segment's
    downbeat counting more) lies in the chord, plus a prior for the usual functions (I, V,
    IV...); changing chord costs a little, V -> I earns a little, and the segment with the
    tune's last note (its final cadence) strongly prefers the tonic. Returns spans covering
    [0, period).
    """
    seg = meter.bar_ql / 2 if meter.beats_per_bar == 4 else meter.bar_ql
    n_seg = max(1, round(period / seg))
    fit = np.zeros((n_seg, 12))
    for note in melody:
        first = True
        a, b = note.start, note.end
        i = math.floor(a / seg + 1e-9)
        while i * seg < b - 1e-9:
            overlap = min(b, (i + 1) * seg) - max(a, i * seg)
            w = overlap
            if first:
                if abs(a / meter.beat_ql - round(a / meter.beat_ql)) < 1e-6:
                    w *= 1.5
                if abs(a - i * seg) < 1e-6:
                    w *= 1.3
                first = False
            fit[i % n_seg, note.pitch % 12] += w
            i += 1
    fit /= seg
    vocab = _harmony_vocabulary(melody, tonic, mode)
    prior = _PRIOR[mode]
    k = len(vocab)
    emit = np.zeros((n_seg, k))
    for j, (root, quality) in enumerate(vocab):
        member = np.full(12, _NON_CHORD_TONE)
        for i in CHORD_QUALITIES[quality]:
            member[(root + i) % 12] = 1.0
        emit[:, j] = fit @ member + prior.get(((root - tonic) % 12, quality), -0.1)
    home = vocab.index((tonic, "maj" if mode == "major" else "min"))
    dominant = vocab.index(((tonic + 7) % 12, "maj"))
    if melody:
        last = max(melody, key=lambda n: n.start)
        emit[math.floor((last.start % period) / seg + 1e-9) % n_seg, home] += 0.8
    trans = np.full((k, k), -_CHANGE_COST)
    np.fill_diagonal(trans, 0.0)
    trans[dominant, home] += 0.15
    # Viterbi: score[i, j] = best total for segments 0..i ending in chord j
    score = emit[0].copy()
    back = np.zeros((n_seg, k), dtype=np.int64)
    for i in range(1, n_seg):
        cand = score[:, None] + trans  # [from, to]
        back[i] = np.argmax(cand, axis=0)
        score = cand[back[i], np.arange(k)] + emit[i]
    path = [int(np.argmax(score))]
    for i in range(n_seg - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    path.reverse()
    return _spans_from_grid([vocab[j] for j in path], seg)


def _grid_chords(events: list[tuple[float, int, str]], period: float, step: float,
                 default: tuple[int, str]) -> list[ChordSpan]:
    """Chords from timed labels (position in [0, period), root, quality) sampled on a grid:
    each grid step takes the latest label at or before it, wrapping round the period (the
    bars before the first label hold the last one, as when the tune repeats)."""
    if not events:
        return [ChordSpan(0.0, period, *default)]
    events = sorted(events)
    times = [e[0] for e in events]
    labels: list[tuple[int, str]] = []
    for i in range(round(period / step)):
        j = bisect.bisect_right(times, i * step + 1e-6) - 1
        labels.append((events[j][1], events[j][2]))
    return _spans_from_grid(labels, step)


# --------------------------------------------------------------------------- parsing


def _parse(ref: TuneRef):
    from music21 import converter

    path = corpus_root() / ref.source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # forceSource + no pickle: read the shipped file itself and leave no cache behind
        if ref.number is not None:
            return converter.parse(path, number=ref.number, forceSource=True, storePickle=False)
        return converter.parse(path, forceSource=True, storePickle=False)


def _part_notes(part, shift: float, top_only: bool) -> list[Note]:
    """Notes of a part (ties merged, grace notes and chord symbols dropped), shifted by
    ``shift`` ql. Chords give their top note when ``top_only``, every note otherwise."""
    from music21 import chord, harmony

    out: list[Note] = []
    for el in part.stripTies().flatten().notes:
        if isinstance(el, harmony.ChordSymbol):
            continue
        ql = float(el.duration.quarterLength)
        if el.duration.isGrace or ql <= 0:
            continue
        start = float(el.offset) + shift
        if isinstance(el, chord.Chord):
            pitches = [p.midi for p in el.pitches]
            if top_only:
                pitches = [max(pitches)]
        else:
            pitches = [el.pitch.midi]
        out.extend(Note(start, ql, int(p)) for p in pitches)
    return out


def _monophonic(notes: list[Note]) -> tuple[Note, ...]:
    """One note at a time: the highest of simultaneous onsets, each cut at the next onset."""
    notes = sorted(notes, key=lambda n: (n.start, -n.pitch))
    mono: list[Note] = []
    for n in notes:
        if mono and abs(mono[-1].start - n.start) < 1e-6:
            continue
        if mono and mono[-1].end > n.start:
            last = mono[-1]
            mono[-1] = Note(last.start, n.start - last.start, last.pitch)
        mono.append(n)
    return tuple(n for n in mono if n.dur > 1e-6)


def _bar_shift(measures: list, meter: Meter) -> float | None:
    """How far to delay the music so that bar lines fall on multiples of the measure (the
    rest of bar 0 before a pickup), or None when the measures do not keep to a bar grid.

    Folk ABC often splits a bar round a repeat (a short bar, then a pickup into the next
    section): harmless as long as the full-length measures stay on the grid.
    """
    first_ql = float(measures[0].duration.quarterLength)
    shift = meter.measure_ql - first_ql if first_ql < meter.measure_ql - 1e-6 else 0.0
    full = [m for m in measures[1:]
            if abs(float(m.duration.quarterLength) - meter.measure_ql) < 1e-6]
    off_grid = sum(
        abs(math.remainder(float(m.offset) + shift, meter.measure_ql)) > 1e-6 for m in full
    )
    if not full or off_grid / len(full) > IRREGULAR_MEASURE_FRACTION:
        return None
    return shift


def load_tune(ref: TuneRef) -> Tune:
    """Parse one corpus entry into a Tune; raises TuneSkipped with the reason if it cannot be
    used (unparseable, no usable meter or meter changes, irregular bars, too short or too
    wide, a Bach file that is not a four-voice chorale)."""
    from music21 import harmony, stream
    from music21 import meter as m21meter

    try:
        score = _parse(ref)
    except Exception as e:  # noqa: BLE001 - music21 raises many types on malformed input
        raise TuneSkipped(f"does not parse ({type(e).__name__})") from None
    if isinstance(score, stream.Opus):
        if not score.scores:
            raise TuneSkipped("empty opus")
        score = score.scores[0]
    # Repeats are played out where music21 can expand them; its expansion of some first/second
    # endings lands off the bar grid, and then the tune is played as written instead.
    try:
        versions = [score.expandRepeats(), score]
    except Exception:  # noqa: BLE001 - malformed repeat marks raise assorted types
        versions = [score]
    is_chorale = ref.source.startswith("bach/")
    reason = "irregular bar lengths"
    for version in versions:
        parts = list(version.parts) if getattr(version, "parts", None) else [version]
        if is_chorale and len(parts) < 4:
            raise TuneSkipped("not a four-voice chorale")
        melody_part = parts[0]
        signatures = list(melody_part.recurse().getElementsByClass(m21meter.TimeSignature))
        if not signatures:
            raise TuneSkipped("no time signature")
        if len({ts.ratioString for ts in signatures}) > 1:
            raise TuneSkipped("meter changes")
        meter = meter_for(signatures[0].numerator, signatures[0].denominator)
        if meter is None:
            raise TuneSkipped(f"meter {signatures[0].ratioString} has no groove")
        measures = list(melody_part.getElementsByClass(stream.Measure))
        if len(measures) < MIN_BARS:
            raise TuneSkipped("too short")
        shift = _bar_shift(measures, meter)
        if shift is not None:
            score = version
            break
    else:
        raise TuneSkipped(reason)

    melody = _monophonic(_part_notes(melody_part, shift, top_only=True))
    if len(melody) < MIN_NOTES:
        raise TuneSkipped("too few notes")
    pitches = [n.pitch for n in melody]
    if max(pitches) - min(pitches) > MAX_RANGE_SEMITONES:
        raise TuneSkipped("melody range too wide")
    part_ql = float(melody_part.highestTime)
    period = math.ceil(part_ql / meter.bar_ql - 1e-6) * meter.bar_ql
    if period / meter.bar_ql < MIN_BARS:
        raise TuneSkipped("too short")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = (score if is_chorale else melody_part).analyze("key")
    tonic, mode = int(key.tonic.pitchClass), str(key.mode)
    if mode not in ("major", "minor"):
        mode = "minor" if mode in ("dorian", "phrygian", "aeolian", "locrian") else "major"
    home = (tonic, "maj" if mode == "major" else "min")

    symbols = [el for el in melody_part.flatten().getElementsByClass(harmony.ChordSymbol)
               if not isinstance(el, harmony.NoChord)]
    if symbols:
        events = []
        for cs in symbols:
            kind = _CHORD_KINDS.get(cs.chordKind)
            root = int(cs.root().pitchClass)
            if kind is None:
                found = identify_chord({p.pitchClass for p in cs.pitches},
                                       cs.bass().pitchClass if cs.bass() else None)
                if found is None:
                    continue
                root, kind = found
            events.append(((float(cs.offset) + shift) % period, root, kind))
        chords = _grid_chords(events, period, meter.beat_ql, home)
        origin = "chord symbols"
    elif is_chorale:
        lower = [n for p in parts[1:] for n in _part_notes(p, shift, top_only=False)]
        events = []
        for i in range(round(period / meter.beat_ql)):
            t = i * meter.beat_ql
            sounding = [n for n in lower if n.start <= t + 1e-6 < n.end]
            if not sounding:
                continue
            found = identify_chord({n.pitch % 12 for n in sounding},
                                   min(sounding, key=lambda n: n.pitch).pitch % 12)
            if found is not None:
                events.append((t, *found))
        chords = _grid_chords(events, period, meter.beat_ql, home)
        origin = "chorale"
    else:
        chords = derive_harmony(melody, meter, period, tonic, mode)
        origin = "derived"

    title = ""
    if score.metadata is not None and score.metadata.bestTitle:
        title = str(score.metadata.bestTitle).strip()
    return Tune(ref=ref, title=title or ref.label, meter=meter, period=period,
                melody=melody, chords=tuple(chords), tonic=tonic, mode=mode, harmony=origin)


# --------------------------------------------------------------------------- placing


def place_tune(tune: Tune, seconds: float, rng: np.random.Generator) -> LeadSheet:
    """Transpose ``tune`` to a random key with its melody in a comfortable register, pick a
    tempo from TEMPO_RANGE_BPM and loop the tune to fill ``seconds``.

    Draws exactly three numbers from ``rng`` (tempo, key, register), so a LeadSheet depends
    only on the tune, the seconds and the generator's seed.
    """
    bpm = float(round(rng.uniform(*TEMPO_RANGE_BPM)))
    target_tonic = int(rng.integers(12))
    centre = float(rng.uniform(*MELODY_CENTRE_RANGE))
    qpm = bpm * tune.meter.beat_ql
    total_ql = seconds * qpm / 60.0

    durs = np.array([n.dur for n in tune.melody])
    pitch = np.array([n.pitch for n in tune.melody], dtype=float)
    mean = float((durs * pitch).sum() / durs.sum())
    lo, hi = int(pitch.min()), int(pitch.max())
    base = (target_tonic - tune.tonic) % 12
    options = [base + 12 * k for k in range(-6, 6)]

    def cost(t: int) -> float:
        outside = max(0, MELODY_LIMITS[0] - (lo + t)) + max(0, (hi + t) - MELODY_LIMITS[1])
        return abs(mean + t - centre) + 12.0 * outside

    transpose = min(options, key=cost)

    melody: list[Note] = []
    chords: list[ChordSpan] = []
    reps = math.ceil(total_ql / tune.period) + 1
    for r in range(reps):
        offset = r * tune.period
        for n in tune.melody:
            start = n.start + offset
            if start < total_ql - 1e-9:
                melody.append(Note(start, min(n.dur, total_ql - start), n.pitch + transpose))
        for c in tune.chords:
            start = c.start + offset
            if start < total_ql - 1e-9:
                chords.append(ChordSpan(start, min(c.dur, total_ql - start),
                                        (c.root + transpose) % 12, c.quality))
    # merge a chord that continues across the loop point, so no comping re-attacks there
    merged: list[ChordSpan] = []
    for c in chords:
        if merged and (merged[-1].root, merged[-1].quality) == (c.root, c.quality) and \
                abs(merged[-1].end - c.start) < 1e-9:
            merged[-1] = ChordSpan(merged[-1].start, merged[-1].dur + c.dur, c.root, c.quality)
        else:
            merged.append(c)
    return LeadSheet(tune=tune, transpose=transpose, tonic=(tune.tonic + transpose) % 12,
                     mode=tune.mode, bpm=bpm, total_ql=total_ql,
                     melody=_monophonic(melody), chords=tuple(merged))
