"""Genre arrangements: a LeadSheet (melody + chords + meter + tempo) becomes a multi-track
General MIDI performance in one genre.

Every genre keeps the tune's melody (same pitches, same onsets in quarter lengths) and its
chord progression, and changes what makes a genre recognisable: the instruments of each role
(drawn per tune from pools of General MIDI programs, so that no genre is a single timbre), the
comping pattern and voicing, the bass line, the drum groove (channel 10), dynamics and feel
(swing, humanised timing and velocity).

An arrangement is an ``Arrangement``: tracks (role, channel, program, level in the mix), note
events in seconds and, for lo-fi, effects on the mixed audio. ``to_midi`` turns it into a
``mido.MidiFile``; ``genreshift.data.synth`` renders and mixes it.
Everything random comes from the ``numpy.random.Generator`` passed in, so one seed gives one
performance.

Channels: 0 lead, 1 comping, 2 bass, 3 pad, 4 second comping part, 5 counter-line (added by
``enrich``), 9 drums (GM percussion).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from genreshift.data import DEFAULT_SYNTH_GENRES, SYNTH_GENRES
from genreshift.data.melodies import CHORD_QUALITIES, ChordSpan, LeadSheet

LEAD, COMP, BASS, PAD, COMP2, COUNTER, DRUMS = 0, 1, 2, 3, 4, 5, 9
DRUM_BANK = 128  # SoundFont bank of percussion kits; the kit is the "program" on channel 10
MIDI_TICKS_PER_BEAT = 480

# General MIDI percussion keys (channel 10).
KICK, RIM, SNARE, CLAP, SNARE2 = 36, 37, 38, 39, 40
HAT_CLOSED, HAT_PEDAL, HAT_OPEN = 42, 44, 46
CRASH, RIDE, RIDE_BELL, CRASH2 = 49, 51, 53, 57
TOMS_HIGH_TO_LOW = (50, 48, 47, 45, 43, 41)


@dataclass(frozen=True)
class Track:
    """One instrument: its role in the band, MIDI channel, GM program (on the drum channel:
    the kit number in bank 128) and its place in the mix: loudness relative to the lead, in
    dB. SoundFont presets differ in level by 20 dB and more, so the renderer measures each
    track and sets its gain to reach ``level_db``, rather than trusting fixed volumes."""

    role: str
    channel: int
    program: int
    level_db: float

    @property
    def is_drums(self) -> bool:
        return self.channel == DRUMS


@dataclass(frozen=True)
class NoteEvent:
    """A note in seconds: [start, end), channel, MIDI key, velocity 1..127."""

    start: float
    end: float
    channel: int
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Arrangement:
    """A performance of one LeadSheet in one genre."""

    genre: str
    sheet: LeadSheet
    tracks: tuple[Track, ...]
    notes: tuple[NoteEvent, ...]  # sorted by (start, channel, pitch)
    duration: float  # seconds: the rendering is cut here
    swing: float  # fraction of the swung pair taken by its first note; 0.5 is straight
    # Audio treatment after the mix, as (name, value) pairs the renderer applies in order:
    # ("lowpass", cutoff Hz), ("vinyl", noise seed). MIDI cannot carry these.
    effects: tuple[tuple[str, float], ...] = ()

    def programs_label(self) -> str:
        """Compact ``role:program`` list for metadata, e.g. ``lead:66 comp:0 drums:kit32``."""
        return " ".join(
            f"{t.role}:{'kit' if t.is_drums else ''}{t.program}" for t in self.tracks
        )


# --------------------------------------------------------------------------- building blocks


def swing_time(ql: float, unit: float, ratio: float) -> float:
    """Warp a time in quarter lengths so that each pair of ``unit``-long notes is swung: the
    second note of the pair starts at ``ratio`` of the pair instead of half way."""
    if ratio == 0.5:
        return ql
    cell = 2.0 * unit
    k = math.floor(ql / cell + 1e-9)
    x = ql - k * cell
    if x <= unit:
        x = x * 2.0 * ratio
    else:
        x = 2.0 * unit * ratio + (x - unit) * 2.0 * (1.0 - ratio)
    return k * cell + x


def pitch_near(pc: int, target: float, low: int, high: int) -> int:
    """The pitch of class ``pc`` nearest ``target`` inside [low, high] (range >= an octave)."""
    best = None
    for p in range(low, high + 1):
        if p % 12 == pc % 12 and (best is None or abs(p - target) < abs(best - target)):
            best = p
    if best is None:  # range narrower than an octave: fold the nearest octave in
        best = round((target - pc) / 12.0) * 12 + pc % 12
    return best


def voicing(pcs: Sequence[int], low: int, high: int, centre: float) -> list[int]:
    """A close-position voicing of pitch classes ``pcs`` inside [low, high] whose mean is
    nearest ``centre``: every inversion is tried, stacked upwards from its lowest tone."""
    pcs = list(dict.fromkeys(p % 12 for p in pcs))
    best: list[int] | None = None
    for inv in range(len(pcs)):
        order = pcs[inv:] + pcs[:inv]
        for base in range(low, low + 12):
            if base % 12 != order[0]:
                continue
            notes = [base]
            for pc in order[1:]:
                p = notes[-1] + 1
                while p % 12 != pc:
                    p += 1
                notes.append(p)
            if notes[-1] > high:
                continue
            # shift up by octaves while that brings the mean closer to the centre
            while notes[-1] + 12 <= high and abs(np.mean(notes) + 12 - centre) < abs(
                    np.mean(notes) - centre):
                notes = [n + 12 for n in notes]
            if best is None or abs(np.mean(notes) - centre) < abs(np.mean(best) - centre):
                best = notes
    if best is None:  # range too narrow for the chord: root and fifth only
        root = pitch_near(pcs[0], (low + high) / 2, low, high)
        best = [root] if len(pcs) < 3 else [root, root + 7]
    return best


def seventh_chord(chord: ChordSpan, tonic: int) -> tuple[int, ...]:
    """The chord's pitch classes with a jazz seventh added: a major chord on the dominant
    (or already a 7) gets a minor seventh, other major chords a major seventh, minor chords a
    minor seventh, diminished ones a half-diminished seventh."""
    q = chord.quality
    if q in ("7", "maj7", "m7", "m7b5", "dim7", "6", "m6"):
        return chord.pitch_classes
    degree = (chord.root - tonic) % 12
    if q == "maj":
        q = "7" if degree in (7, 2) else "maj7"
    elif q == "min":
        q = "m7"
    elif q == "dim":
        q = "m7b5"
    elif q == "sus4":
        return tuple((chord.root + i) % 12 for i in (0, 5, 7, 10))
    return tuple((chord.root + i) % 12 for i in CHORD_QUALITIES[q])


def third_and_seventh(chord: ChordSpan, tonic: int) -> tuple[int, int]:
    """The guide tones of the chord's seventh form: the jazz pianist's shell."""
    pcs = seventh_chord(chord, tonic)
    third = next((p for p in pcs if (p - chord.root) % 12 in (3, 4, 5)), pcs[1])
    seventh = next((p for p in pcs if (p - chord.root) % 12 in (9, 10, 11)), pcs[-1])
    return third, seventh


def power_chord(root_pc: int, low: int = 40, high: int = 52) -> list[int]:
    """Root, fifth and octave, the root inside [low, high]."""
    root = pitch_near(root_pc, (low + high) / 2, low, high)
    return [root, root + 7, root + 12]


class Band:
    """Collects the notes of one arrangement, turning quarter lengths into seconds.

    ``swing`` warps every onset and offset (pairs of ``swing_unit`` ql). Each note's timing is
    humanised by a normal offset clipped to +-``jitter_ms`` (the same offset for start and end,
    so durations survive) and its velocity by a normal with sd ``velocity_sd``.
    """

    def __init__(self, sheet: LeadSheet, rng: np.random.Generator, *, swing: float = 0.5,
                 swing_unit: float = 0.5, jitter_ms: float = 10.0, velocity_sd: float = 5.0):
        self.sheet = sheet
        self.rng = rng
        self.swing = swing
        self.swing_unit = swing_unit
        self.jitter_s = jitter_ms / 1000.0
        self.velocity_sd = velocity_sd
        self.tracks: dict[int, Track] = {}
        self.notes: list[NoteEvent] = []
        self.duration = sheet.seconds(sheet.total_ql)

    def track(self, role: str, channel: int, pool: Sequence[int], level_db: float) -> int:
        """Add an instrument drawn from ``pool``, mixed ``level_db`` dB relative to the lead
        (give or take 1 dB, so that the mix varies too); returns its program."""
        program = int(pool[int(self.rng.integers(len(pool)))])
        level = level_db + float(np.clip(self.rng.normal(0.0, 1.0), -2.0, 2.0))
        self.tracks[channel] = Track(role, channel, program, round(level, 2))
        return program

    def seconds(self, ql: float) -> float:
        return self.sheet.seconds(swing_time(ql, self.swing_unit, self.swing))

    def note(self, channel: int, start: float, dur: float, pitch: int, velocity: float,
             *, humanise: bool = True) -> None:
        """Add a note: ``start`` and ``dur`` in quarter lengths."""
        if start >= self.sheet.total_ql - 1e-9 or dur <= 0 or not 0 <= pitch <= 127:
            return
        t0, t1 = self.seconds(start), self.seconds(start + dur)
        if humanise:
            # min/max rather than np.clip: this runs per note, and np.clip on a scalar is slow
            shift = min(max(float(self.rng.normal(0.0, self.jitter_s / 2.5)), -self.jitter_s),
                        self.jitter_s)
            t0, t1 = t0 + shift, t1 + shift
            velocity = velocity + self.rng.normal(0.0, self.velocity_sd)
        t0 = max(0.0, t0)
        t1 = max(t0 + 0.02, t1)
        vel = min(max(round(float(velocity)), 1), 127)
        self.notes.append(NoteEvent(t0, t1, channel, int(pitch), vel))

    def drum(self, start: float, key: int, velocity: float, dur: float = 0.25) -> None:
        self.note(DRUMS, start, dur, key, velocity)

    def chord(self, channel: int, start: float, dur: float, pitches: Sequence[int],
              velocity: float, strum_ms: float = 0.0) -> None:
        """Several notes at once; ``strum_ms`` spreads them upwards like a strummed guitar."""
        for i, p in enumerate(pitches):
            offset = i * strum_ms / 1000.0 * self.sheet.qpm / 60.0
            self.note(channel, start + offset, dur - offset, p, velocity)

    def finish(self, genre: str, effects: tuple[tuple[str, float], ...] = ()) -> Arrangement:
        """Sort the notes and end each one before the next onset of the same key on the same
        channel: a synthesizer would otherwise cut or stack the two."""
        notes = sorted(self.notes, key=lambda n: (n.channel, n.pitch, n.start))
        fixed: list[NoteEvent] = []
        for i, n in enumerate(notes):
            nxt = notes[i + 1] if i + 1 < len(notes) else None
            if nxt is not None and (nxt.channel, nxt.pitch) == (n.channel, n.pitch) \
                    and nxt.start < n.end:
                end = max(n.start + 0.005, nxt.start - 0.002)
                n = NoteEvent(n.start, end, n.channel, n.pitch, n.velocity)
            fixed.append(n)
        fixed.sort(key=lambda n: (n.start, n.channel, n.pitch))
        tracks = tuple(self.tracks[c] for c in sorted(self.tracks))
        return Arrangement(genre, self.sheet, tracks, tuple(fixed), self.duration, self.swing,
                           effects)


# --------------------------------------------------------------------------- shared parts


def bar_starts(sheet: LeadSheet) -> list[float]:
    return [b * sheet.meter.bar_ql for b in range(sheet.n_bars)]


def chord_changes_in(sheet: LeadSheet, start: float, end: float) -> list[float]:
    """Onsets of the chords that start inside [start, end)."""
    return [c.start for c in sheet.chords if start - 1e-9 <= c.start < end - 1e-9]


def play_melody(band: Band, *, gate: float, velocity: Callable[[float], float],
                accent_beats: float = 6.0, octave: int = 0) -> None:
    """The tune itself on the lead channel: ``gate`` scales note lengths (legato ~1, staccato
    ~0.5), ``velocity(ql)`` is the genre's dynamic curve, notes on beats get ``accent_beats``
    more."""
    beat = band.sheet.meter.beat_ql
    for n in band.sheet.melody:
        on_beat = abs(n.start / beat - round(n.start / beat)) < 1e-6
        vel = velocity(n.start) + (accent_beats if on_beat else 0.0)
        band.note(LEAD, n.start, n.dur * gate, n.pitch + 12 * octave, vel)


def phrase_swell(sheet: LeadSheet, low: float, high: float, bars: int = 4
                 ) -> Callable[[float], float]:
    """Velocity that rises and falls over each phrase of ``bars`` bars (classical shaping)."""
    span = bars * sheet.meter.bar_ql

    def vel(ql: float) -> float:
        phase = (ql % span) / span
        return low + (high - low) * math.sin(math.pi * phase) ** 1.5

    return vel


def root_bass(band: Band, *, low: int, high: int, rhythm: Sequence[float], gate: float,
              velocity: float, fifth_every: int = 0, accent: float = 8.0) -> None:
    """Root notes on the positions ``rhythm`` (in beats from each bar start) of every bar;
    with ``fifth_every`` = n, every n-th note plays the fifth instead (country, reggae)."""
    sheet = band.sheet
    beat = sheet.meter.beat_ql
    count = 0
    prev = (low + high) / 2
    for bar in bar_starts(sheet):
        positions = sorted({bar + r * beat for r in rhythm} | set(chord_changes_in(
            sheet, bar, bar + sheet.meter.bar_ql)))
        for i, t in enumerate(positions):
            nxt = positions[i + 1] if i + 1 < len(positions) else bar + sheet.meter.bar_ql
            chord = sheet.chord_at(t)
            pc = chord.root
            if fifth_every and count % fifth_every == fifth_every - 1:
                pc = (chord.root + 7) % 12
            p = pitch_near(pc, prev, low, high)
            prev = 0.7 * prev + 0.3 * p
            on_beat = abs((t - bar) / beat - round((t - bar) / beat)) < 1e-6
            band.note(BASS, t, (nxt - t) * gate, p, velocity + (accent if on_beat else 0))
            count += 1


def pad_chords(band: Band, channel: int, *, low: int, high: int, velocity: float,
               sevenths: bool = False, per_bar: bool = False) -> None:
    """Sustained chords, one per chord span (re-struck each bar with ``per_bar``), voiced
    near the previous voicing for smooth voice leading."""
    sheet = band.sheet
    centre = (low + high) / 2
    for c in sheet.chords:
        pcs = seventh_chord(c, sheet.tonic) if sevenths else c.pitch_classes
        notes = voicing(pcs, low, high, centre)
        centre = 0.5 * centre + 0.5 * float(np.mean(notes))
        starts = [c.start]
        if per_bar:
            bar = sheet.meter.bar_ql
            starts += [b for b in np.arange(math.ceil(c.start / bar) * bar, c.end, bar)
                       if b > c.start + 1e-9]
        ends = starts[1:] + [c.end]
        for s, e in zip(starts, ends):
            band.chord(channel, s, (e - s) * 0.98, notes, velocity)


def crash_on_phrases(band: Band, every: int = 8, velocity: float = 100) -> None:
    for i, bar in enumerate(bar_starts(band.sheet)):
        if i % every == 0:
            band.drum(bar, CRASH if (i // every) % 2 == 0 else CRASH2, velocity, dur=1.0)


def tom_fill(band: Band, bar: float, beats: int, velocity: float) -> None:
    """A descending tom fill in the last ``beats`` beats of the bar at ``bar``."""
    meter = band.sheet.meter
    step = meter.beat_ql / (3 if meter.compound else 4)  # triplet eighths / sixteenths
    start = bar + meter.bar_ql - beats * meter.beat_ql
    n = round(beats * meter.beat_ql / step)
    for i in range(n):
        tom = TOMS_HIGH_TO_LOW[min(len(TOMS_HIGH_TO_LOW) - 1, i * len(TOMS_HIGH_TO_LOW) // n)]
        band.drum(start + i * step, tom, velocity + 10 * i / n)


def backbeats(beats_per_bar: int) -> tuple[int, ...]:
    """Beats (0-based) that carry the snare: 2 and 4 in four, 2 in two, 2 and 3 in three."""
    return {2: (1,), 3: (1, 2), 4: (1, 3)}[beats_per_bar]


@dataclass(frozen=True)
class Feel:
    """How a genre's band plays time: the range its swing ratio is drawn from (None: straight;
    compound meters are never swung), the swung unit as a fraction of the beat, and the
    humanisation of ``Band`` (timing jitter in ms, velocity sd)."""

    swing: tuple[float, float] | None
    swing_unit: float
    jitter_ms: float
    velocity_sd: float


FEELS: dict[str, Feel] = {
    "classical": Feel(None, 0.5, 10.0, 4.0),
    "jazz": Feel((0.6, 0.68), 0.5, 10.0, 7.0),  # swung eighths
    "rock": Feel(None, 0.5, 8.0, 4.0),
    "electronic": Feel(None, 0.5, 2.0, 1.5),  # quantised
    "hiphop": Feel((0.56, 0.62), 0.25, 10.0, 6.0),  # lazily swung sixteenths
    "blues": Feel((0.64, 0.69), 0.5, 10.0, 6.0),  # the shuffle: near-triplet eighths
    "country": Feel(None, 0.5, 10.0, 5.0),
    "reggae": Feel((0.52, 0.58), 0.5, 10.0, 5.0),
    "metal": Feel(None, 0.5, 6.0, 3.0),
    "lofi": Feel((0.62, 0.68), 0.25, 10.0, 5.0),  # heavily swung sixteenths
}


def genre_band(sheet: LeadSheet, rng: np.random.Generator, genre: str) -> Band:
    """A Band with ``genre``'s feel (FEELS): its swing ratio is the first draw from ``rng``
    in a swung genre and simple meter, none otherwise."""
    feel = FEELS[genre]
    beat = sheet.meter.beat_ql
    ratio = 0.5
    if feel.swing is not None and not sheet.meter.compound:
        ratio = float(rng.uniform(*feel.swing))
    return Band(sheet, rng, swing=ratio, swing_unit=beat * feel.swing_unit,
                jitter_ms=feel.jitter_ms, velocity_sd=feel.velocity_sd)


# --------------------------------------------------------------------------- genres

# Pools of General MIDI programs (0-based) per role; the drum "program" is a kit in bank 128
# (0 Standard, 8 Room, 16 Power, 24 Electronic, 25 TR-808, 32 Jazz, 40 Brush).
POOLS: dict[str, dict[str, tuple[int, ...]]] = {
    "classical": {
        "lead": (40, 40, 73, 68, 71, 41, 0),  # violin, flute, oboe, clarinet, viola, piano
        "arp": (0, 46, 45, 0),  # piano, harp, pizzicato strings
        "block": (48, 49, 48),  # string ensembles
        "bass": (42, 43, 70),  # cello, contrabass, bassoon
        "pad": (48, 49, 60, 52),  # strings, French horn, choir
    },
    "jazz": {
        "lead": (66, 65, 56, 59, 11, 71, 57),  # tenor/alto sax, trumpet, muted tp, vibes, ...
        "comp": (0, 0, 26, 1),  # piano, jazz guitar, bright piano
        "bass": (32, 32, 35),  # acoustic bass, fretless
        "kit": (32, 40, 0, 8),  # jazz, brush, standard, room
    },
    "rock": {
        "lead": (29, 30, 29, 27, 18),  # overdriven, distortion, clean guitar, rock organ
        "comp": (30, 29, 30),  # distortion / overdriven rhythm guitar
        "bass": (34, 33, 34),  # picked, finger bass
        "pad": (16, 18, 17),  # organs
        "kit": (0, 16, 8),  # standard, power, room
    },
    "electronic": {
        "lead": (81, 81, 80, 87, 84),  # saw, square, bass+lead, charang
        "stab": (90, 81, 62, 63),  # polysynth, saw, synth brass
        "arp": (81, 80, 98, 88),  # saw, square, crystal, new age
        "bass": (38, 39, 38),  # synth bass 1/2
        "pad": (89, 90, 91, 94, 95),  # warm, polysynth, choir, halo, sweep
        "kit": (24, 25),  # electronic, TR-808
    },
    "hiphop": {
        "lead": (11, 73, 59, 8, 4, 66),  # vibes, flute, muted trumpet, celesta, Rhodes, sax
        "comp": (4, 5, 4),  # Rhodes, electric piano 2
        "bass": (38, 38, 33),  # synth bass 1 an octave down (the sub), finger bass
        "pad": (48, 89, 52),  # strings, warm pad, choir
        "kit": (0, 8),  # standard, room: sampled acoustic drums, not the club 808
    },
    "blues": {
        "lead": (22, 22, 27, 26, 66),  # harmonica, clean/jazz guitar, tenor sax
        "comp": (27, 25, 29),  # shuffle rhythm guitar
        "organ": (16, 17),  # drawbar / percussive organ
        "bass": (33, 32, 34),
        "kit": (0, 8, 40),  # standard, room, brush
    },
    "country": {
        "lead": (110, 110, 105, 25, 27),  # fiddle, banjo, steel-string / clean guitar
        "comp": (25, 25, 24),  # steel-string and nylon acoustic guitar
        "banjo": (105,),
        "bass": (32, 33),
        "kit": (40, 0),  # brush, standard
    },
    "reggae": {
        "lead": (56, 57, 22, 17, 65),  # trumpet, trombone, harmonica (melodica), organ, alto
        "comp": (28, 27),  # muted / clean guitar skank
        "organ": (16, 17, 18),  # the organ "bubble"
        "bass": (33, 34, 38),
        "kit": (0, 8),
    },
    "metal": {
        "lead": (30, 30, 29),  # distortion / overdriven guitar
        "comp": (30,),
        "bass": (34, 33),
        "kit": (16, 0),  # power, standard
    },
    "lofi": {
        "lead": (0, 11, 73, 24, 4),  # soft piano, vibes, flute, nylon guitar, Rhodes
        "comp": (4, 0, 5),  # Rhodes, piano
        "bass": (32, 33, 35),  # upright, finger, fretless
        "pad": (89, 92, 48),  # warm pad, bowed pad, strings
        "kit": (8, 40, 0),  # room, brush, standard
    },
}


def classical(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Strings and woodwinds: legato lead with phrase swells, broken-chord (Alberti or
    arpeggio) accompaniment or sustained string chords, a bowed or bassoon bass line on the
    chord roots, an optional sustained choir/horn/string pad; no drums, wide dynamics."""
    pools = POOLS["classical"]
    band = genre_band(sheet, rng, "classical")
    meter = sheet.meter
    beat = meter.beat_ql
    band.track("lead", LEAD, pools["lead"], 0)
    swell = phrase_swell(sheet, 52, 96)
    play_melody(band, gate=0.98, velocity=swell, accent_beats=4)

    style = ("alberti", "arpeggio", "block")[int(rng.integers(3))]
    if meter.compound and style == "alberti":
        style = "arpeggio"  # Alberti figures are a duple-subdivision idea
    if style == "block":
        band.track("comp", COMP, pools["block"], -8)
        pad_chords(band, COMP, low=55, high=74, velocity=58, per_bar=True)
    else:
        band.track("comp", COMP, pools["arp"], -6)
        step = beat / meter.subdivision
        centre = 60.0
        for c in sheet.chords:
            pcs = c.pitch_classes
            notes = voicing(pcs, 48, 67, centre)
            centre = float(np.mean(notes))
            if style == "alberti":
                low_, mid, high_ = notes[0], notes[len(notes) // 2], notes[-1]
                figure = [low_, high_, mid, high_]
            else:
                figure = notes + [notes[0] + 12] + notes[-2:0:-1]
            t = math.ceil(c.start / step - 1e-9) * step
            i = 0
            while t < c.end - 1e-9:
                p = figure[i % len(figure)]
                band.note(COMP, t, step * 1.6, p, swell(t) * 0.72)
                t += step
                i += 1
    band.track("bass", BASS, pools["bass"], -7)
    half = meter.bar_ql / 2 if meter.beats_per_bar in (2, 4) else meter.bar_ql
    rhythm = [0.0, half / beat] if half < meter.bar_ql else [0.0]
    root_bass(band, low=36, high=55, rhythm=rhythm, gate=0.96, velocity=70, accent=0)
    if rng.random() < 0.6:
        band.track("pad", PAD, pools["pad"], -11)
        pad_chords(band, PAD, low=55, high=72, velocity=46)
    return band.finish("classical")


def jazz(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Small-group swing: a horn or vibes lead with swung eighths, shell voicings (third and
    seventh) comped on 2 and 4 with Charleston and anticipation variants, a walking bass in
    quarter notes with chromatic approach notes, and ride-cymbal time with the hi-hat on 2
    and 4, feathered kick and ghosted snare."""
    pools = POOLS["jazz"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "jazz")
    band.track("lead", LEAD, pools["lead"], 0)
    off = 1.0 / meter.subdivision * (2 if meter.compound else 1)  # the swung "and" in beats

    def lead_vel(ql: float) -> float:
        return 84.0 + (8.0 if abs((ql / beat) % 1 - 0.5) < 1e-6 else 0.0)  # push offbeats

    play_melody(band, gate=0.88, velocity=lead_vel, accent_beats=0)

    band.track("comp", COMP, pools["comp"], -6)
    for bar in bar_starts(sheet):
        bpb = meter.beats_per_bar
        r = rng.random()
        if bpb == 4 and r < 0.25:
            hits = [0.0, 1.0 + off]  # Charleston
        elif bpb == 4 and r < 0.4:
            hits = [1.0, 3.0 + off]  # 2, then anticipate the next bar
        else:
            hits = list(backbeats(bpb)) if bpb != 2 else [1.0]
            if bpb == 2 and rng.random() < 0.4:
                hits = [0.0 + off, 1.0 + off]
        for h in hits:
            t = bar + h * beat
            target = sheet.chord_at(t + 0.5 * beat if h % 1 else t)
            third, seventh = third_and_seventh(target, sheet.tonic)
            pcs = [third, seventh]
            if rng.random() < 0.5:
                pcs.append((target.root + 2) % 12)  # ninth: rootless colour
            notes = voicing(pcs, 52, 70, 61)
            band.chord(COMP, t, beat * float(rng.uniform(0.35, 0.7)), notes,
                       float(rng.uniform(58, 76)))

    band.track("bass", BASS, pools["bass"], -4)
    _walking_bass(band, low=28, high=52)

    jazz_drums(band)
    return band.finish("jazz")


def jazz_drums(band: Band) -> None:
    """Ride-cymbal time ("ding ding-a", the skip note swung), the hi-hat pedal on 2 and 4,
    feathered kick on every beat, ghosted snare, a soft crash every 8 bars."""
    sheet, rng, meter = band.sheet, band.rng, band.sheet.meter
    beat = meter.beat_ql
    off = 1.0 / meter.subdivision * (2 if meter.compound else 1)  # the swung "and" in beats
    band.track("drums", DRUMS, POOLS["jazz"]["kit"], -5)
    for bar in bar_starts(sheet):
        bpb = meter.beats_per_bar
        for i in range(bpb):
            t = bar + i * beat
            band.drum(t, RIDE, 78 if i in backbeats(bpb) else 66)
            if i in backbeats(bpb):
                band.drum(t + off * beat, RIDE, 58)  # the skip note of "ding ding-a"
                band.drum(t, HAT_PEDAL, 62)
            band.drum(t, KICK, 34)  # feathered
            if rng.random() < 0.3:
                band.drum(t + off * beat, SNARE, float(rng.uniform(28, 48)))  # ghost note
    crash_on_phrases(band, every=8, velocity=70)


def _walking_bass(band: Band, *, low: int, high: int) -> None:
    """Quarter-note walking bass: the root on the downbeat and on each chord change, chord
    and scale tones in between, and a chromatic or scale-step approach into the next chord."""
    sheet = band.sheet
    rng = band.rng
    beat = sheet.meter.beat_ql
    prev = pitch_near(sheet.chords[0].root, (low + high) / 2 - 4, low, high)
    direction = 1
    n_beats = math.ceil(sheet.total_ql / beat - 1e-9)
    for i in range(n_beats):
        t = i * beat
        chord = sheet.chord_at(t)
        nxt = sheet.chord_at(t + beat)
        change_now = abs(chord.start - t) < 1e-6
        if change_now or i % sheet.meter.beats_per_bar == 0:
            p = pitch_near(chord.root, prev, low, high)
        elif (nxt.start > t + 1e-6 and abs(nxt.start - (t + beat)) < 1e-6) or \
                (i + 1) % sheet.meter.beats_per_bar == 0:
            target = pitch_near(nxt.root, prev, low, high)
            p = target + (1 if rng.random() < 0.5 else -1) * (1 if rng.random() < 0.7 else 2)
        else:
            tones = seventh_chord(chord, sheet.tonic)
            options = sorted({pitch_near(pc, prev + direction * 4, low, high) for pc in tones})
            options = [o for o in options if o != prev] or options
            p = min(options, key=lambda o: abs(o - (prev + direction * 3)))
        if p >= high - 2:
            direction = -1
        elif p <= low + 2:
            direction = 1
        elif rng.random() < 0.15:
            direction = -direction
        p = int(np.clip(p, low, high))
        band.note(BASS, t, beat * 0.92, p, 92 if i % 2 == 0 else 84)
        prev = p


def rock(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Guitar band: an overdriven or distorted lead, power chords in driving palm-muted
    eighths, a picked bass pumping eighth-note roots, an optional organ pad, and a backbeat
    kit (kick on 1 and 3, snare on 2 and 4, eighth-note hats or ride) with crashes and tom
    fills at phrase ends; loud, even dynamics."""
    pools = POOLS["rock"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "rock")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.9, velocity=lambda q: 100.0, accent_beats=6)

    band.track("comp", COMP, pools["comp"], -2)
    step = beat / meter.subdivision
    sustain_downbeat = rng.random() < 0.35
    for bar in bar_starts(sheet):
        n = round(meter.bar_ql / step)
        for k in range(n):
            t = bar + k * step
            chord = sheet.chord_at(t)
            on_beat = k % meter.subdivision == 0
            if sustain_downbeat and k == 0:
                band.chord(COMP, t, meter.bar_ql / 2, power_chord(chord.root), 108)
                continue
            if sustain_downbeat and t < bar + meter.bar_ql / 2 - 1e-9:
                continue
            band.chord(COMP, t, step * 0.55, power_chord(chord.root), 104 if on_beat else 90)

    band.track("bass", BASS, pools["bass"], -5)
    rhythm = [k / meter.subdivision for k in range(meter.beats_per_bar * meter.subdivision)]
    root_bass(band, low=28, high=45, rhythm=rhythm, gate=0.7, velocity=92, accent=10)

    if rng.random() < 0.4:
        band.track("pad", PAD, pools["pad"], -12)
        pad_chords(band, PAD, low=52, high=70, velocity=70)

    rock_drums(band)
    return band.finish("rock")


def rock_drums(band: Band) -> None:
    """The backbeat kit: kick on 1 and 3 (and now and then the "and" of 3), snare on 2 and
    4, hats (or, from a bar of the phrase on, the ride) on every subdivision, a tom fill
    closing each 8 bars and a crash every 4."""
    sheet, rng, meter = band.sheet, band.rng, band.sheet.meter
    beat = meter.beat_ql
    step = beat / meter.subdivision
    band.track("drums", DRUMS, POOLS["rock"]["kit"], -1)
    ride_from = int(rng.integers(2, 5)) if rng.random() < 0.5 else 99
    bpb = meter.beats_per_bar
    for b, bar in enumerate(bar_starts(sheet)):
        cymbal = RIDE if (b % 8) >= ride_from else HAT_CLOSED
        for i in range(bpb):
            t = bar + i * beat
            if i in backbeats(bpb):
                band.drum(t, SNARE, 112)
            else:
                band.drum(t, KICK, 112)
            if i == bpb - 2 and bpb == 4 and rng.random() < 0.5:
                band.drum(t + 0.5 * beat if not meter.compound else t + beat * 2 / 3, KICK, 96)
            for s in range(meter.subdivision):
                band.drum(t + s * step, cymbal, 92 if s == 0 else 74)
        if b % 8 == 7:
            tom_fill(band, bar, 1, 100)
    crash_on_phrases(band, every=4, velocity=108)


def electronic(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Club track: a saw/square lead on a tight grid, off-beat chord stabs or a sixteenth
    arpeggiator, a synth pad, a synth bass on the off-beats or rolling sixteenths, and a
    drum machine with four-on-the-floor kick, clap on 2 and 4, off-beat open hats and
    sixteenth closed hats; quantised timing, flat velocities."""
    pools = POOLS["electronic"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "electronic")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.8, velocity=lambda q: 100.0, accent_beats=0)

    fine = beat / (meter.subdivision * (1 if meter.compound else 2))  # 16ths / 8th triplets
    off = beat / 2 if not meter.compound else beat * 2 / 3
    n_beats = math.ceil(sheet.total_ql / beat - 1e-9)
    if rng.random() < 0.5:
        band.track("comp", COMP, pools["stab"], -6)
        for i in range(n_beats):
            t = i * beat + off
            band.chord(COMP, t, fine * 1.5, voicing(sheet.chord_at(t).pitch_classes, 60, 76,
                                                    67), 92)
    else:
        band.track("comp", COMP, pools["arp"], -6)
        pattern = ("up", "updown")[int(rng.integers(2))]
        k = 0
        t = 0.0
        while t < sheet.total_ql - 1e-9:
            notes = voicing(sheet.chord_at(t).pitch_classes, 60, 72, 66)
            notes = notes + [n + 12 for n in notes]
            seq = notes if pattern == "up" else notes + notes[-2:0:-1]
            band.note(COMP, t, fine * 0.6, seq[k % len(seq)], 88 if k % 4 == 0 else 74)
            t += fine
            k += 1
    band.track("pad", PAD, pools["pad"], -8)
    pad_chords(band, PAD, low=55, high=72, velocity=64)

    band.track("bass", BASS, pools["bass"], -3)
    if rng.random() < 0.5:
        rhythm = [i + off / beat for i in range(meter.beats_per_bar)]
        root_bass(band, low=31, high=45, rhythm=rhythm, gate=0.6, velocity=104, accent=0)
    else:
        rhythm = [k * fine / beat for k in range(round(meter.bar_ql / fine))]
        root_bass(band, low=31, high=45, rhythm=rhythm, gate=0.5, velocity=98, accent=8)

    electronic_drums(band)
    return band.finish("electronic")


def electronic_drums(band: Band) -> None:
    """The drum machine: four-on-the-floor kick, clap (layered with a snare) on 2 and 4,
    off-beat open hats, sixteenth closed hats, a snare roll into each 8-bar phrase and a
    crash on it."""
    sheet, meter = band.sheet, band.sheet.meter
    beat = meter.beat_ql
    fine = beat / (meter.subdivision * (1 if meter.compound else 2))  # 16ths / 8th triplets
    off = beat / 2 if not meter.compound else beat * 2 / 3
    band.track("drums", DRUMS, POOLS["electronic"]["kit"], 1)
    bpb = meter.beats_per_bar
    for b, bar in enumerate(bar_starts(sheet)):
        for i in range(bpb):
            t = bar + i * beat
            band.drum(t, KICK, 118)
            if i in backbeats(bpb) and not (bpb == 3 and i == 2):
                band.drum(t, CLAP, 104)
                band.drum(t, SNARE2, 84)
            band.drum(t + off, HAT_OPEN, 86, dur=off * 0.8)
            k = 0
            while k * fine < beat - 1e-9:
                if abs(k * fine - off) > 1e-6:
                    band.drum(t + k * fine, HAT_CLOSED, 78 if k % 2 == 0 else 60)
                k += 1
        if b % 8 == 7:
            for k in range(round(beat / fine) * 2):  # snare roll into the next phrase
                band.drum(bar + meter.bar_ql - 2 * beat + k * fine, SNARE2, 60 + 6 * k)
    crash_on_phrases(band, every=8, velocity=96)


def hiphop(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Boom bap: a lazily swung sixteenth feel, Rhodes seventh chords re-struck with
    syncopations, a sub bass that follows the kick, an optional string/choir pad, and a
    sampled-sounding kit: kick on 1 and the "a" of 2 / "and" of 3, hard snare on 2 and 4,
    eighth hats with uneven velocities, an open hat now and then."""
    pools = POOLS["hiphop"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "hiphop")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.85, velocity=lambda q: 80.0, accent_beats=6)

    band.track("comp", COMP, pools["comp"], -4)
    bpb = meter.beats_per_bar
    sync = (1.5, 2.75) if bpb == 4 else (1.5,) if bpb >= 2 else ()
    centre = 62.0
    for bar in bar_starts(sheet):
        hits = [0.0] + [s for s in sync if rng.random() < 0.5 and s < bpb]
        hits = sorted(set(hits) | {(c - bar) / beat for c in
                                   chord_changes_in(sheet, bar, bar + meter.bar_ql)})
        for j, h in enumerate(hits):
            t = bar + h * beat
            end = bar + (hits[j + 1] * beat if j + 1 < len(hits) else meter.bar_ql)
            notes = voicing(seventh_chord(sheet.chord_at(t), sheet.tonic), 52, 70, centre)
            centre = 0.5 * centre + 0.5 * float(np.mean(notes))
            band.chord(COMP, t, (end - t) * 0.95, notes, 66 if h == 0 else 58)

    if rng.random() < 0.5:
        band.track("pad", PAD, pools["pad"], -10)
        pad_chords(band, PAD, low=60, high=76, velocity=50)

    kicks_by_bar = hiphop_drums(band)

    band.track("bass", BASS, pools["bass"], -3)
    for bar, kicks in kicks_by_bar:
        times = sorted({bar + k * beat for k in kicks} | set(
            chord_changes_in(sheet, bar, bar + meter.bar_ql)))
        for j, t in enumerate(times):
            end = times[j + 1] if j + 1 < len(times) else bar + meter.bar_ql
            p = pitch_near(sheet.chord_at(t).root, 33, 24, 40)
            band.note(BASS, t, (end - t) * 0.9, p, 104)
    return band.finish("hiphop")


def hiphop_drums(band: Band) -> list[tuple[float, tuple[float, ...]]]:
    """The boom-bap kit: kick on 1 and one of the syncopations (the "a" of 2, the "and" of
    3...), drawn per bar, hard snare on 2 and 4, eighth hats with uneven velocities, an open
    hat now and then. Returns (bar start, kick positions in beats) per bar: the bass follows
    the kick."""
    sheet, rng, meter = band.sheet, band.rng, band.sheet.meter
    beat = meter.beat_ql
    bpb = meter.beats_per_bar
    band.track("drums", DRUMS, POOLS["hiphop"]["kit"], 0)
    patterns = {4: ((0.0, 1.75, 2.5), (0.0, 0.75, 2.5), (0.0, 2.5, 2.75), (0.0, 1.75, 2.25)),
                3: ((0.0, 1.75), (0.0, 2.5)), 2: ((0.0, 0.75), (0.0, 1.75))}
    kicks_by_bar = []
    for b, bar in enumerate(bar_starts(sheet)):
        if meter.compound:
            kicks = (0.0, bpb - 1 + 2 / 3) if bpb > 1 else (0.0,)
        else:
            options = patterns[bpb]
            kicks = options[int(rng.integers(len(options)))]
        kicks_by_bar.append((bar, kicks))
        for k in kicks:
            band.drum(bar + k * beat, KICK, 112 if k == 0 else 100)
        for i in backbeats(bpb):
            if bpb == 3 and i == 2:
                continue
            band.drum(bar + i * beat, SNARE, 120)
        step = beat / meter.subdivision
        for s in range(round(meter.bar_ql / step)):
            t = bar + s * step
            if s == round(meter.bar_ql / step) - 1 and rng.random() < 0.3:
                band.drum(t, HAT_OPEN, 70, dur=step)
            else:
                band.drum(t, HAT_CLOSED, float(rng.uniform(70, 92)) if s % 2 == 0 else
                          float(rng.uniform(40, 62)))
    return kicks_by_bar


def blues(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Shuffle blues: triplet-swung eighths, every major chord a dominant seventh, a
    harmonica or guitar lead, the root-fifth / root-sixth boogie figure on rhythm guitar,
    an optional organ holding the sevenths, a walking boogie bass (root, third, fifth,
    sixth, flat seventh) and a shuffle kit with the hats on the triplet grid."""
    pools = POOLS["blues"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "blues")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.85, velocity=lambda q: 88.0, accent_beats=6)

    def dominant(chord: ChordSpan) -> tuple[int, ...]:
        if chord.quality in ("maj", "7", "6", "maj7", "sus4"):
            return tuple((chord.root + i) % 12 for i in (0, 4, 7, 10))
        return seventh_chord(chord, sheet.tonic)

    band.track("comp", COMP, pools["comp"], -4)
    step = beat / (3 if meter.compound else 2)
    for bar in bar_starts(sheet):
        for k in range(round(meter.bar_ql / step)):
            t = bar + k * step
            root = pitch_near(sheet.chord_at(t).root, 45, 40, 52)
            upper = root + (7 if (k // (meter.subdivision if meter.compound else 2)) % 2 == 0
                            else 9)
            band.chord(COMP, t, step * 0.8, [root, upper], 90 if k % 2 == 0 else 76)
    if rng.random() < 0.6:
        band.track("organ", COMP2, pools["organ"], -9)
        for c in sheet.chords:
            band.chord(COMP2, c.start, c.dur * 0.98, voicing(dominant(c), 55, 72, 63), 70)

    band.track("bass", BASS, pools["bass"], -3)
    boogie = (0, 4, 7, 9, 10, 9, 7, 4)
    n_beats = math.ceil(sheet.total_ql / beat - 1e-9)
    for i in range(n_beats):
        t = i * beat
        chord = sheet.chord_at(t)
        third = 4 if chord.quality in ("maj", "7", "6", "maj7", "aug") else 3
        step_ = boogie[i % meter.beats_per_bar + (4 if (i // meter.beats_per_bar) % 2 else 0)]
        interval = third if step_ in (3, 4) else step_
        p = pitch_near(chord.root, 36, 28, 40) + interval
        band.note(BASS, t, beat * 0.85, p, 94 if i % meter.beats_per_bar == 0 else 84)

    blues_drums(band)
    return band.finish("blues")


def blues_drums(band: Band) -> None:
    """The shuffle kit: kick on 1 and 3, snare on 2 and 4, hats on the (swung) eighths, a
    tom fill and a crash on each 8-bar phrase."""
    sheet, meter = band.sheet, band.sheet.meter
    beat = meter.beat_ql
    band.track("drums", DRUMS, POOLS["blues"]["kit"], -2)
    bpb = meter.beats_per_bar
    for b, bar in enumerate(bar_starts(sheet)):
        for i in range(bpb):
            t = bar + i * beat
            band.drum(t, SNARE if i in backbeats(bpb) else KICK, 104 if i in backbeats(bpb)
                      else 96)
            band.drum(t, HAT_CLOSED, 84)
            band.drum(t + (beat * 2 / 3 if meter.compound else beat / 2), HAT_CLOSED, 64)
        if b % 8 == 7:
            tom_fill(band, bar, 1, 90)
    crash_on_phrases(band, every=8, velocity=92)


def country(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Country two-step: a fiddle, banjo or twangy guitar lead, acoustic guitar strumming
    "boom-chick" (chords on the off beats), an optional banjo rolling eighth-note
    arpeggios, a bass alternating root and fifth on the strong beats, and a train beat on
    brushes (snare eighths accented on 2 and 4)."""
    pools = POOLS["country"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "country")
    lead = band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.9, velocity=lambda q: 90.0, accent_beats=6)

    band.track("comp", COMP, pools["comp"], -4)
    bpb = meter.beats_per_bar
    for bar in bar_starts(sheet):
        for i in range(bpb):
            if i == 0 or (bpb == 4 and i == 2):
                continue  # the bass takes the "boom"
            t = bar + i * beat
            notes = voicing(sheet.chord_at(t).pitch_classes, 52, 71, 60)
            band.chord(COMP, t, beat * 0.7, notes, 84, strum_ms=9)
            if bpb == 2 or rng.random() < 0.4:
                band.chord(COMP, t + beat / 2 if not meter.compound else t + beat * 2 / 3,
                           beat * 0.3, notes[1:], 64, strum_ms=6)
    if lead != 105 and rng.random() < 0.5:
        band.track("banjo", COMP2, pools["banjo"], -8)
        step = beat / meter.subdivision
        roll = (0, 2, 1, 2, 0, 1, 2, 1)
        k = 0
        t = 0.0
        while t < sheet.total_ql - 1e-9:
            notes = voicing(sheet.chord_at(t).pitch_classes, 62, 79, 70)
            band.note(COMP2, t, step * 1.5, notes[roll[k % 8] % len(notes)], 70)
            t += step
            k += 1

    band.track("bass", BASS, pools["bass"], -4)
    strong = [0.0, bpb / 2] if bpb in (2, 4) else [0.0]
    root_bass(band, low=28, high=47, rhythm=strong if bpb != 2 else [0.0, 1.0], gate=0.8,
              velocity=92, fifth_every=2, accent=0)

    country_drums(band)
    return band.finish("country")


def country_drums(band: Band) -> None:
    """The train beat on brushes: kick on the strong beats, snare on every subdivision
    accented on 2 and 4, a crash every 8 bars."""
    sheet, meter = band.sheet, band.sheet.meter
    beat = meter.beat_ql
    bpb = meter.beats_per_bar
    band.track("drums", DRUMS, POOLS["country"]["kit"], -4)
    step = beat / meter.subdivision
    for b, bar in enumerate(bar_starts(sheet)):
        for i in range(bpb):
            t = bar + i * beat
            if i not in backbeats(bpb) or bpb == 3 and i == 2:
                band.drum(t, KICK, 88)
            for s_ in range(meter.subdivision):
                accent = s_ == 0 and i in backbeats(bpb)
                band.drum(t + s_ * step, SNARE, 96 if accent else 52)
    crash_on_phrases(band, every=8, velocity=80)


def reggae(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """One drop: a horn or melodica-like lead, a staccato guitar skank on the backbeats, an
    organ "bubble" on the off-beat eighths, a deep melodic bass that leaves the third beat
    empty, and the one-drop kit (kick and rim shot together on beat three, nothing on one),
    with lightly swung hats."""
    pools = POOLS["reggae"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "reggae")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.85, velocity=lambda q: 86.0, accent_beats=4)

    bpb = meter.beats_per_bar
    off = beat / 2 if not meter.compound else beat * 2 / 3
    band.track("comp", COMP, pools["comp"], -5)
    for bar in bar_starts(sheet):
        for i in (backbeats(bpb) if bpb != 3 else (1, 2)):
            t = bar + i * beat
            notes = voicing(sheet.chord_at(t).pitch_classes, 60, 76, 67)
            band.chord(COMP, t, beat * 0.22, notes, 92, strum_ms=4)
    band.track("organ", COMP2, pools["organ"], -9)
    n_beats = math.ceil(sheet.total_ql / beat - 1e-9)
    for i in range(n_beats):
        t = i * beat + off
        notes = voicing(sheet.chord_at(t).pitch_classes, 55, 70, 62)
        band.chord(COMP2, t, beat * 0.25, notes, 74)

    band.track("bass", BASS, pools["bass"], -1)
    drop = bpb - 2 if bpb >= 3 else 1  # the beat the kick and rim land on
    for bar in bar_starts(sheet):
        chord = sheet.chord_at(bar)
        root = pitch_near(chord.root, 36, 28, 43)
        figure = [(0.0, 1.4, root), (1.5, 0.4, root + 7), (bpb - 1 + 0.5, 0.4, root + 12)]
        for pos, dur, p in figure:
            if pos < bpb and not (drop <= pos < drop + 1):
                t = bar + pos * beat
                p = pitch_near(sheet.chord_at(t).root, p, 28, 52) if pos == 0 else p
                band.note(BASS, t, dur * beat, p, 100)

    reggae_drums(band)
    return band.finish("reggae")


def reggae_drums(band: Band) -> None:
    """The one drop: kick and rim shot together on beat three (the last but one beat),
    nothing on one, hats on the beats and the (lightly swung) off-beats."""
    sheet, meter = band.sheet, band.sheet.meter
    beat = meter.beat_ql
    bpb = meter.beats_per_bar
    off = beat / 2 if not meter.compound else beat * 2 / 3
    drop = bpb - 2 if bpb >= 3 else 1  # the beat the kick and rim land on
    band.track("drums", DRUMS, POOLS["reggae"]["kit"], -3)
    for bar in bar_starts(sheet):
        band.drum(bar + drop * beat, KICK, 108)
        band.drum(bar + drop * beat, RIM, 100)
        for i in range(bpb):
            band.drum(bar + i * beat, HAT_CLOSED, 70)
            band.drum(bar + i * beat + off, HAT_CLOSED, 56)


def metal(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Metal: a distorted lead, palm-muted sixteenth-note chugs on a low power chord with
    accents on the beats, a picked bass doubling the chug, and a power kit with double-bass
    sixteenths, snare on the backbeats and a crash on every downbeat; everything loud."""
    pools = POOLS["metal"]
    meter = sheet.meter
    beat = meter.beat_ql
    band = genre_band(sheet, rng, "metal")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.95, velocity=lambda q: 108.0, accent_beats=4)

    fine = beat / (3 if meter.compound else 4)  # triplet eighths / sixteenths
    n_fine = round(sheet.total_ql / fine)
    band.track("comp", COMP, pools["comp"], 0)
    band.track("bass", BASS, pools["bass"], -5)
    for k in range(n_fine):
        t = k * fine
        chord = sheet.chord_at(t)
        on_beat = abs(t / beat - round(t / beat)) < 1e-6
        low = power_chord(chord.root, 35, 46)
        notes = low if on_beat else low[:1]
        band.chord(COMP, t, fine * (0.9 if on_beat else 0.45), notes, 118 if on_beat else 100)
        band.note(BASS, t, fine * 0.6, low[0] - 12 if low[0] - 12 >= 28 else low[0], 108)

    metal_drums(band)
    return band.finish("metal")


def metal_drums(band: Band) -> None:
    """The power kit: double-bass sixteenths (triplet eighths in compound meters), snare on
    the backbeats, a crash on every downbeat and the ride bell on the other beats, a tom fill
    closing each 4 bars."""
    sheet, meter = band.sheet, band.sheet.meter
    beat = meter.beat_ql
    fine = beat / (3 if meter.compound else 4)  # triplet eighths / sixteenths
    band.track("drums", DRUMS, POOLS["metal"]["kit"], 0)
    bpb = meter.beats_per_bar
    for b, bar in enumerate(bar_starts(sheet)):
        for k in range(round(meter.bar_ql / fine)):
            band.drum(bar + k * fine, KICK, 112 if k % 2 == 0 else 100)
        for i in range(bpb):
            t = bar + i * beat
            if i in backbeats(bpb):
                band.drum(t, SNARE, 124)
            band.drum(t, CRASH if i == 0 else RIDE_BELL, 110 if i == 0 else 96, dur=1.0)
        if b % 4 == 3:
            tom_fill(band, bar, 1, 110)


def lofi(sheet: LeadSheet, rng: np.random.Generator) -> Arrangement:
    """Lo-fi hip-hop: a heavily swung, laid-back sixteenth feel at low velocities, soft
    piano or Rhodes ninth chords held through the bar, an upright or fretless bass on the
    roots, a warm pad, and a quiet room or brush kit (kick on 1 and the "and" of 3, soft
    snare on 2 and 4, sparse hats); then the low fidelity itself: a dull low-pass and vinyl
    crackle over the mix."""
    pools = POOLS["lofi"]
    meter = sheet.meter
    band = genre_band(sheet, rng, "lofi")
    band.track("lead", LEAD, pools["lead"], 0)
    play_melody(band, gate=0.9, velocity=lambda q: 62.0, accent_beats=4)

    band.track("comp", COMP, pools["comp"], -3)
    centre = 60.0
    for bar in bar_starts(sheet):
        changes = [bar] + [c for c in chord_changes_in(sheet, bar, bar + meter.bar_ql)
                           if c > bar + 1e-9]
        for j, t in enumerate(changes):
            end = changes[j + 1] if j + 1 < len(changes) else bar + meter.bar_ql
            chord = sheet.chord_at(t)
            pcs = list(seventh_chord(chord, sheet.tonic)) + [(chord.root + 2) % 12]
            notes = voicing(pcs, 50, 72, centre)
            centre = 0.5 * centre + 0.5 * float(np.mean(notes))
            band.chord(COMP, t, (end - t) * 0.97, notes, 54, strum_ms=15)
    band.track("pad", PAD, pools["pad"], -12)
    pad_chords(band, PAD, low=60, high=76, velocity=44, sevenths=True)
    band.track("bass", BASS, pools["bass"], -4)
    bpb = meter.beats_per_bar
    rhythm = [0.0, bpb / 2 + 0.5] if bpb == 4 else [0.0]
    root_bass(band, low=28, high=45, rhythm=rhythm, gate=0.9, velocity=70, accent=0)

    lofi_drums(band)
    effects = (("lowpass", round(float(rng.uniform(3000.0, 5000.0)))),
               ("vinyl", float(rng.integers(2**31))))
    return band.finish("lofi", effects)


def lofi_drums(band: Band) -> None:
    """A quiet room or brush kit: kick on 1 and the "and" of 3, a soft snare or rim on 2
    and 4, sparse hats on the subdivisions."""
    sheet, rng, meter = band.sheet, band.rng, band.sheet.meter
    beat = meter.beat_ql
    bpb = meter.beats_per_bar
    band.track("drums", DRUMS, POOLS["lofi"]["kit"], -2)
    step = beat / meter.subdivision
    for bar in bar_starts(sheet):
        band.drum(bar, KICK, 76)
        if bpb == 4:
            band.drum(bar + 2.5 * beat, KICK, 66)
        for i in backbeats(bpb):
            if not (bpb == 3 and i == 2):
                band.drum(bar + i * beat, SNARE if rng.random() < 0.6 else RIM, 68)
        for s_ in range(round(meter.bar_ql / step)):
            if rng.random() < 0.8:
                band.drum(bar + s_ * step, HAT_CLOSED, 48 if s_ % 2 == 0 else 34)


ArrangeFn = Callable[[LeadSheet, np.random.Generator], Arrangement]

# The genre registry: name -> arrangement function. Order is the default genre order.
GENRES: dict[str, ArrangeFn] = {
    "classical": classical,
    "jazz": jazz,
    "rock": rock,
    "electronic": electronic,
    "hiphop": hiphop,
    "blues": blues,
    "country": country,
    "reggae": reggae,
    "metal": metal,
    "lofi": lofi,
}
if tuple(GENRES) != SYNTH_GENRES:  # the parser lists SYNTH_GENRES without importing this
    raise RuntimeError("genreshift.data.SYNTH_GENRES and arrangements.GENRES disagree")
# The drum part of each genre that has one (classical has none), played into a ``genre_band``
# after the other parts: the arrangements call them, and genreshift.inference.rhythm plays them
# on a song's beat grid. Hip-hop's returns its kick positions (its bass follows them).
DRUM_PARTS: dict[str, Callable[[Band], object]] = {
    "jazz": jazz_drums,
    "rock": rock_drums,
    "electronic": electronic_drums,
    "hiphop": hiphop_drums,
    "blues": blues_drums,
    "country": country_drums,
    "reggae": reggae_drums,
    "metal": metal_drums,
    "lofi": lofi_drums,
}
# What `genreshift data synth` renders unless told otherwise: the five genres.
DEFAULT_GENRES: tuple[str, ...] = DEFAULT_SYNTH_GENRES


def arrange(sheet: LeadSheet, genre: str, rng: np.random.Generator) -> Arrangement:
    """Arrange ``sheet`` in ``genre`` (a key of GENRES)."""
    try:
        fn = GENRES[genre]
    except KeyError:
        raise ValueError(f"unknown genre {genre!r}; known: {', '.join(GENRES)}") from None
    return fn(sheet, rng)



# --------------------------------------------------------------------------- variety

# Parts ``enrich`` may add, per genre (none for metal: the wall of guitars is the genre), and
# their General MIDI programs.
EXTRA_PARTS: dict[str, dict[str, tuple[int, ...]]] = {
    "classical": {"counter": (42, 60, 71, 70), "pad": (48, 49, 52)},  # cello, horn, ...
    "jazz": {"counter": (57, 11, 65)},  # trombone, vibes, alto sax
    "rock": {"pad": (16, 18, 48)},  # organs, strings
    "electronic": {"counter": (80, 98, 88)},  # square, crystal, new age
    "hiphop": {"pad": (48, 89, 52), "counter": (11, 73)},  # strings/pad/choir; vibes, flute
    "blues": {"pad": (16, 17, 19)},  # organs
    "country": {"counter": (110, 25, 22)},  # fiddle, steel guitar, harmonica
    "reggae": {"pad": (16, 17)},
    "metal": {},
    "lofi": {"counter": (11, 24, 73)},  # vibes, nylon guitar, flute
}
EXTRA_PART_PROBABILITY = 0.5
EXTRA_LEVEL_DB = {"counter": -9.0, "pad": -12.0}
# Humanised dynamics: per-note velocity sd and the depth of phrase swells (fraction of the
# velocity), per genre; quantised genres stay flatter.
DYNAMICS: dict[str, tuple[float, tuple[float, float]]] = {
    "classical": (4.0, (0.12, 0.25)), "jazz": (5.0, (0.08, 0.18)), "rock": (3.0, (0.04, 0.1)),
    "electronic": (1.5, (0.0, 0.06)), "hiphop": (4.0, (0.05, 0.12)),
    "blues": (5.0, (0.08, 0.16)), "country": (4.0, (0.06, 0.14)),
    "reggae": (4.0, (0.05, 0.12)), "metal": (2.0, (0.02, 0.06)), "lofi": (4.0, (0.06, 0.14)),
}


def counter_line(band: Band, *, low: int = 52, high: int = 67, velocity: float = 64) -> None:
    """A slow counter-melody under the lead: a chord tone (third or fifth first, moving by
    the smallest step) on every chord change and half bar, held to the next one."""
    sheet = band.sheet
    bar_ql = sheet.meter.bar_ql
    half = bar_ql / 2 if sheet.meter.beats_per_bar in (2, 4) else bar_ql
    starts = sorted({round(k * half, 6) for k in range(math.ceil(sheet.total_ql / half))}
                    | {c.start for c in sheet.chords})
    prev = (low + high) / 2
    for i, t in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else sheet.total_ql
        chord = sheet.chord_at(t)
        pcs = list(chord.pitch_classes)
        colour = pcs[1:] + pcs[:1]  # third and fifth before the root
        options = [pitch_near(pc, prev, low, high) for pc in colour]
        p = min(options, key=lambda o: (abs(o - prev) if o != prev else 0.5, options.index(o)))
        band.note(COUNTER, t, (end - t) * 0.95, p, velocity)
        prev = 0.6 * prev + 0.4 * p


def enrich(arr: Arrangement, rng: np.random.Generator) -> Arrangement:
    """Variety on top of a genre's arrangement, drawn from ``rng`` alone:

    - at random (EXTRA_PART_PROBABILITY) one extra part the genre allows (EXTRA_PARTS): a
      sustained pad (if there is none yet) or a counter-line under the melody;
    - humanised dynamics on every note: a per-note velocity variation and phrase-level swells
      (a slow sine over 2, 4 or 8 bars with a random phase and a depth from DYNAMICS).

    Note timings are untouched, so the alignment between genres survives.
    """
    sheet = arr.sheet
    tracks = {t.channel: t for t in arr.tracks}
    notes = list(arr.notes)
    parts = EXTRA_PARTS.get(arr.genre, {})
    options = [p for p in parts if not (p == "pad" and PAD in tracks)]
    if options and rng.random() < EXTRA_PART_PROBABILITY:
        part = options[int(rng.integers(len(options)))]
        band = Band(sheet, rng, swing=arr.swing, swing_unit=sheet.meter.beat_ql / 2)
        channel = PAD if part == "pad" else COUNTER
        band.track(part, channel, parts[part], EXTRA_LEVEL_DB[part])
        if part == "pad":
            pad_chords(band, PAD, low=55, high=74, velocity=52)
        else:
            counter_line(band, velocity=float(rng.uniform(56, 72)))
        extra = band.finish(arr.genre)
        tracks.update({t.channel: t for t in extra.tracks})
        notes += extra.notes
    sd, depth_range = DYNAMICS.get(arr.genre, (4.0, (0.05, 0.12)))
    depth = float(rng.uniform(*depth_range))
    phrase_s = sheet.seconds(sheet.meter.bar_ql * int(rng.choice([2, 4, 8])))
    phase = float(rng.uniform(0.0, 2.0 * math.pi))
    jitter = rng.normal(0.0, sd, len(notes))
    varied = []
    for n, j in zip(notes, jitter):
        swell = 1.0 + depth * math.sin(2.0 * math.pi * n.start / phrase_s + phase)
        vel = min(max(round(float(n.velocity * swell + j)), 1), 127)
        varied.append(NoteEvent(n.start, n.end, n.channel, n.pitch, vel))
    varied.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return Arrangement(arr.genre, sheet, tuple(tracks[c] for c in sorted(tracks)),
                       tuple(varied), arr.duration, arr.swing, arr.effects)

# --------------------------------------------------------------------------- MIDI


def to_midi(arr: Arrangement, volumes: dict[int, int] | None = None):
    """The arrangement as a type-1 ``mido.MidiFile``: a tempo/meter track, then one track per
    instrument with its program (drums: kit number on channel 10), channel volume (CC7 from
    ``volumes`` by channel, as the renderer's mix set them; 100 where not given) and notes,
    at 480 ticks per quarter note (about 1 ms at these tempos)."""
    import mido

    sheet = arr.sheet
    tempo = mido.bpm2tempo(sheet.qpm)
    ticks_per_s = MIDI_TICKS_PER_BEAT * sheet.qpm / 60.0
    mid = mido.MidiFile(type=1, ticks_per_beat=MIDI_TICKS_PER_BEAT)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("track_name", name=f"{sheet.tune.title} ({arr.genre})",
                                 time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=sheet.meter.numerator,
                                 denominator=sheet.meter.denominator, time=0))
    meta.append(mido.MetaMessage("end_of_track", time=round(arr.duration * ticks_per_s)))
    mid.tracks.append(meta)
    for track in arr.tracks:
        mt = mido.MidiTrack()
        mt.append(mido.MetaMessage("track_name", name=track.role, time=0))
        ch = track.channel
        # bank select: GM drum kits live in bank 128 (GS: channel 10 implies it)
        mt.append(mido.Message("control_change", channel=ch, control=0, value=0, time=0))
        mt.append(mido.Message("program_change", channel=ch, program=track.program, time=0))
        volume = (volumes or {}).get(ch, 100)
        mt.append(mido.Message("control_change", channel=ch, control=7, value=volume, time=0))
        events: list[tuple[int, int, int, int]] = []  # (tick, is_on, key, velocity)
        for n in arr.notes:
            if n.channel != ch:
                continue
            on = round(n.start * ticks_per_s)
            events.append((on, 1, n.pitch, n.velocity))
            events.append((max(on + 1, round(n.end * ticks_per_s)), 0, n.pitch, 0))
        events.sort()  # note-offs first at equal ticks
        now = 0
        for tick, is_on, key, velocity in events:
            # from_bytes: the same message as Message("note_on", ...) at a third of the cost
            mt.append(mido.Message.from_bytes(((0x90 if is_on else 0x80) | ch, key, velocity),
                                              time=tick - now))
            now = tick
        mt.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(mt)
    return mid
