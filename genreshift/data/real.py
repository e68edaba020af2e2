"""Real recordings -> licence-checked excerpts for the converters' unlabelled `rest` domain.

Source: Debian packages of free games, unpacked (``dpkg -x``, never installed) into
``<source>/<package>/``. Each package's ``usr/share/doc/<package>/copyright`` says under which
licence every file is; only music under a free licence is kept. Output, a folder that
``genreshift data tensors`` reads as-is (see ``tensors.synth_clipset``)::

    <out>/real/<package>__<track>__<k>.wav   22 050 Hz mono excerpts, fixed loudness
    <out>/metadata.csv                       one row per excerpt: the manifest (METADATA_COLUMNS)
    <out>/LICENSES.md                        package -> licences, copyright file, tracks
    <out>/refused.csv                        every audio file not used, and why
    <out>/import.json                        the options and counts of the import

Licences. Copyright files in the DEP-5 machine-readable format are parsed: a file's licence is
the ``License:`` of the last ``Files:`` stanza whose pattern matches it. DEP-5 patterns are
relative to the *source* tree while the files lie at installed paths
(``usr/share/games/x/music/a.ogg`` for ``music/a.ogg``), so a pattern matches when it matches the
installed path or one of its trailing parts that starts at a folder boundary. Zip archives (Quake
``.pk3``) are read member by member, a member standing at ``<archive folder>/<member>``. Copyright
files that are not DEP-5 are accepted only where listed in FREE_FORM_LICENCES after a reading,
and only while they still contain the sentence that reading relied on; licence names no rule
knows are refused unless listed in REVIEWED_LICENCES. Unknown means refused: nothing is guessed.

Music, not sound effects: audio files under a folder named like ``music`` or named like music
(``is_music_path``) that last at least ``MIN_TRACK_SECONDS``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genreshift.audio import (
    FFMPEG_FORMATS,
    integrated_loudness,
    load_audio,
    load_audio_bytes,
    normalize_loudness,
    save_audio,
)
from genreshift.errors import AudioError, GenreshiftError
from genreshift.fsutil import atomic_write_text

FORMAT_VERSION = 1
SAMPLE_RATE = 22_050  # what the mel shards use (MelConfig.sample_rate)
AUDIO_EXTENSIONS = (".ogg", ".oga", ".opus", ".wav", ".flac", ".mp3")
ARCHIVE_EXTENSIONS = (".pk3", ".zip")
MIN_TRACK_SECONDS = 20.0
FADE_S = 0.020
SILENT_LUFS = -45.0  # an excerpt quieter than this before levelling is a gap, not music
VALID_FRACTION = 0.10
GENRE = "real"
EXCERPT_DIR = "real"
METADATA = "metadata.csv"
METADATA_COLUMNS = ("file_name", "genre", "split", "tune", "package", "file", "licence",
                    "offset_s", "duration", "loudness_lufs")
IMPORT_RECORD = "import.json"

# Which audio is music. Chosen by listing the 16 packages: most keep it in a folder `music/`
# (widelands, hyperrogue, unknown-horizons, scorched3d, warmux, megaglest, etr, ufoai's
# 0music.pk3), `sounds/music/` (redeclipse), `Musics/` (xmoto), `bgm/` (neverball) or `tunes/`
# (btanks); lugaru names its tracks `Sounds/Music*.ogg`; adonthell's are
# `wastesedge/audio/at-demo-N.ogg`. Sound effects and ambiences lie in `sound(s)/`, `wav/`,
# `units/`, `ambient/`. boswars and endless-sky ship no music.
MUSIC_DIR = re.compile(r"(^|/)(music|musics|soundtrack|bgm|tunes)(/|$)", re.IGNORECASE)
MUSIC_FILE = re.compile(r"(^|/)music[^/]*$|(^|/)wastesedge/audio/at-demo-\d+\.ogg$",
                        re.IGNORECASE)


def is_music_path(path: str) -> bool:
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return bool(MUSIC_DIR.search(folder) or MUSIC_FILE.search(path))

# Held out for testing generalisation to unseen recordings: never imported.
TEST_SET_PACKAGES = frozenset((
    "gcompris-qt-data", "flare-game", "freecol", "marsshooter-data", "cube2-data", "naev-data",
    "blobwars-data", "starfighter-data", "zaz-data", "renpy-demo", "enigma-data",
    "trackballs-data", "colobot-common-sounds", "0ad-data", "freedroidrpg-data",
    "freeorion-data", "warzone2100-music",
))

# Packages that install a source folder under another name, so that its DEP-5 patterns
# cannot match the installed paths: package -> (installed prefix, source prefix). lugaru-data
# installs the source's `Data/` (CC-BY-SA-3.0 in its copyright file) as usr/share/games/lugaru/;
# without this the catch-all `Files: *` (GPL-2+) would be recorded for its music.
INSTALLED_AS = {
    "lugaru-data": ("usr/share/games/lugaru/", "Data/"),
}

# Licence names (DEP-5 short names) that no rule below recognises, read by hand.
REVIEWED_LICENCES = {
    # btanks-data, `Files: *`: "distributed in accordance with the terms and conditions of the
    # GNU GPL" plus an exception that only lets the copyright holder (Netive) combine the game
    # with non-free add-ons; everyone else gets GPL-2. Debian ships it in main.
    ("btanks-data", "Battle-Tanks-License"): "GPL-2 with the Battle Tanks exception",
}

# Copyright files that are not DEP-5, read by hand: package -> (licence of its audio, a sentence
# the file must still contain for that reading to hold, whitespace-normalised).
FREE_FORM_LICENCES = {
    # warmux-data: the whole package is GPL-2+; the only other terms listed are for
    # lib/fixedpoint (BSD) and the fonts, none of which is audio.
    "warmux-data": ("GPL-2+", ("This package is free software; you can redistribute it and/or "
                               "modify it under the terms of the GNU General Public License as "
                               "published by the Free Software Foundation; either version 2 of "
                               "the License, or (at your option) any later version.")),
}

_NON_FREE = re.compile(r"(^|[-_ .])(nc|nd|noncommercial|non-commercial|noderivs|noderivatives)"
                       r"([-_ .]|$)|non-?free|proprietary|all rights reserved|unknown|"
                       r"^other$|^unclear", re.IGNORECASE)
_FREE = [re.compile(p, re.IGNORECASE) for p in (
    r"^(a|l)?gpl(-?\d(\.\d)*)?\+?([- ]with[- ].*exception)?$",
    r"^(gfdl|fdl)(-\d(\.\d)*)?\+?$",
    r"^cc-by(-sa)?(-\d(\.\d)*)?\+?$",
    r"^cc0(-1\.0)?$",
    r"^(public[- ]domain|pd)$",
    r"^(mit|expat|isc|zlib|libpng|apache(-\d\.\d)?|artistic(-\d(\.\d)*)?|ofl(-1\.1)?)$",
    r"^bsd(-\d-clause)?$",
    r"^(mit|expat|bsd|zlib)[-\w]*$",  # MIT/BSD variants with a suffix (-with-..., -like)
)]


# ---------------------------------------------------------------------------------------------
# licences


@dataclass(frozen=True)
class Stanza:
    patterns: tuple[str, ...]
    licence: str  # the first line of License:


def parse_dep5(text: str) -> list[Stanza] | None:
    """The ``Files:`` stanzas of a DEP-5 copyright file, in order; None if it is not DEP-5."""
    lines = text.splitlines()
    if not lines or not re.match(r"^format:\s*\S*(copyright-format|dep-?5)", lines[0],
                                 re.IGNORECASE):
        return None
    stanzas = []
    for para in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in para.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t"):
                if key is not None:
                    fields[key].append(line.strip())
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip().lower()
            fields[key] = [value.strip()]
        if "files" in fields and "license" in fields:
            patterns = tuple(p for part in fields["files"] for p in part.split() if p)
            stanzas.append(Stanza(patterns, fields["license"][0]))
    return stanzas


def _pattern_regex(pattern: str) -> re.Pattern:
    """DEP-5 glob: `*` any characters including `/`, `?` one character, `\\` escapes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether a DEP-5 pattern (source-relative) matches an installed path or a trailing part
    of it that starts at a folder boundary."""
    rx = _pattern_regex(pattern.lstrip("./") if pattern.startswith("./") else pattern)
    parts = path.split("/")
    return any(rx.match("/".join(parts[i:])) for i in range(len(parts)))


def licence_of(stanzas: list[Stanza], path: str) -> str | None:
    """The licence of ``path``: the last stanza that matches wins (DEP-5); None if none."""
    found = None
    for stanza in stanzas:
        if any(pattern_matches(p, path) for p in stanza.patterns):
            found = stanza.licence
    return found


def licence_is_free(licence: str, package: str = "") -> tuple[bool, str]:
    """(free, reason). ``A or B`` is free if one side is; ``A and B`` / ``A, B`` if both are."""
    name = licence.strip()
    if not name:
        return False, "empty License field"
    if (package, name) in REVIEWED_LICENCES:
        return True, f"read by hand: {REVIEWED_LICENCES[(package, name)]}"
    if re.search(r"\s+or\s+", name, re.IGNORECASE):
        parts = re.split(r"\s+or\s+", name, flags=re.IGNORECASE)
        verdicts = [licence_is_free(p, package) for p in parts]
        ok = [r for f, r in verdicts if f]
        return (True, ok[0]) if ok else (False, "; ".join(r for _, r in verdicts))
    if re.search(r"\s+and\s+|,", name, re.IGNORECASE):
        parts = [p for p in re.split(r"\s+and\s+|,", name, flags=re.IGNORECASE) if p.strip()]
        verdicts = [licence_is_free(p, package) for p in parts]
        bad = [r for f, r in verdicts if not f]
        return (False, "; ".join(bad)) if bad else (True, "all parts free")
    if _NON_FREE.search(name):
        return False, f"non-free licence '{name}'"
    if any(rx.match(name) for rx in _FREE):
        return True, "free"
    return False, f"unknown licence '{name}' (not on the list of free licences)"


@dataclass(frozen=True)
class PackageLicences:
    package: str
    copyright: Path
    stanzas: list[Stanza] | None  # DEP-5, or
    free_form: str | None  # the licence of every file, from a reviewed free-form file
    problem: str | None  # why no file of the package can be accepted

    def licence_of(self, path: str) -> tuple[str | None, str]:
        """(licence if free else None, reason)."""
        if self.problem:
            return None, self.problem
        if self.free_form is not None:
            return self.free_form, "free-form copyright file, read by hand"
        licence = licence_of(self.stanzas or [], path)
        if licence is None:
            return None, f"no Files: stanza of {self.copyright.name} matches it"
        free, reason = licence_is_free(licence, self.package)
        return (licence, reason) if free else (None, reason)


def package_licences(root: Path, package: str) -> PackageLicences:
    copyright_file = root / "usr" / "share" / "doc" / package / "copyright"
    if not copyright_file.is_file():
        return PackageLicences(package, copyright_file, None, None,
                               f"no copyright file {copyright_file.relative_to(root)}")
    text = copyright_file.read_text(encoding="utf-8", errors="replace")
    stanzas = parse_dep5(text)
    if stanzas is not None:
        return PackageLicences(package, copyright_file, stanzas, None, None)
    if package in FREE_FORM_LICENCES:
        licence, sentence = FREE_FORM_LICENCES[package]
        if " ".join(sentence.split()) in " ".join(text.split()):
            return PackageLicences(package, copyright_file, None, licence, None)
        return PackageLicences(package, copyright_file, None, None,
                               "free-form copyright file changed since it was read; read it "
                               "again and update FREE_FORM_LICENCES")
    return PackageLicences(package, copyright_file, None, None,
                           "copyright file is not in the DEP-5 format and has not been read by "
                           "hand (add it to FREE_FORM_LICENCES after reading it)")


# ---------------------------------------------------------------------------------------------
# finding the music


@dataclass(frozen=True)
class Track:
    package: str
    file: str  # path inside the package; `archive.pk3:member` for a zip member
    licence_path: str  # where the file stands for licence matching
    source: str  # the file on disk (the archive for a member)
    member: str | None = None


@dataclass
class Refusal:
    package: str
    file: str
    reason: str
    kind: str  # licence / not-audio / too-short / test-set / silent / not-music


def _is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS)


def find_tracks(pkg_root: Path, package: str) -> tuple[list[Track], int]:
    """Candidate music files of one unpacked package (sorted), and how many audio files lie
    outside music folders (sound effects, voices)."""
    tracks, not_music = [], 0
    installed, source_prefix = INSTALLED_AS.get(package, ("\0", ""))

    def licence_path(rel: str) -> str:
        return source_prefix + rel[len(installed):] if rel.startswith(installed) else rel

    for path in sorted(p for p in pkg_root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(pkg_root).as_posix()
        if _is_audio(rel):
            if is_music_path(rel):
                tracks.append(Track(package, rel, licence_path(rel), str(path)))
            else:
                not_music += 1
        elif rel.lower().endswith(ARCHIVE_EXTENSIONS):
            try:
                with zipfile.ZipFile(path) as z:
                    members = sorted(n for n in z.namelist() if _is_audio(n))
            except (zipfile.BadZipFile, OSError):
                continue
            folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
            for m in members:
                where = f"{folder}/{m}" if folder else m
                if is_music_path(where):
                    tracks.append(Track(package, f"{rel}:{m}", licence_path(where), str(path),
                                        m))
                else:
                    not_music += 1
    return tracks, not_music


# ---------------------------------------------------------------------------------------------
# cutting excerpts


@dataclass(frozen=True)
class CutOptions:
    seconds: float = 30.0
    per_track: int = 4
    seed: int = 0
    loudness: float = -14.0

    def record(self) -> dict:
        return {"seconds": self.seconds, "per_track": self.per_track, "seed": self.seed,
                "loudness": self.loudness, "sample_rate": SAMPLE_RATE, "fade_s": FADE_S,
                "min_track_seconds": MIN_TRACK_SECONDS, "format_version": FORMAT_VERSION}


def _unit_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()[:8],
                          "big")


def track_id(track: Track, taken: set[str]) -> str:
    stem = Path(track.member or track.file).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "track"
    tid = f"{track.package}__{stem}"
    if tid in taken:
        tid = f"{tid}-{hashlib.sha1(track.file.encode()).hexdigest()[:6]}"
    taken.add(tid)
    return tid


def _decode(track: Track) -> tuple[np.ndarray, int]:
    if track.member is None:
        return load_audio(track.source, sr=SAMPLE_RATE, mono=True)
    name = f"{track.package}/{track.file}"
    try:
        with zipfile.ZipFile(track.source) as z:
            data = z.read(track.member)
    except (zipfile.BadZipFile, OSError, KeyError) as e:
        raise AudioError(f"{name}: cannot be read from its archive ({e})") from None
    suffix = Path(track.member).suffix.lower()
    if suffix not in FFMPEG_FORMATS:
        return load_audio_bytes(data, name, sr=SAMPLE_RATE, mono=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"member{suffix}"
        path.write_bytes(data)
        return load_audio(path, sr=SAMPLE_RATE, mono=True)


def excerpt_offsets(duration: float, opts: CutOptions, key: str) -> list[float]:
    """Seeded offsets (s), one per equal part of the track; a track no longer than one excerpt
    gives one excerpt of all of it."""
    if duration <= opts.seconds:
        return [0.0]
    n = max(1, min(opts.per_track, int(duration // opts.seconds)))
    rng = np.random.default_rng(_unit_hash(opts.seed, key))
    part = duration / n
    return [round(k * part + float(rng.uniform(0.0, part - opts.seconds)), 3) for k in range(n)]


def _fade(x: np.ndarray, sr: int) -> np.ndarray:
    n = min(int(FADE_S * sr), x.shape[-1] // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, dtype=np.float64))).astype(x.dtype)
        x = x.copy()
        x[..., :n] *= ramp
        x[..., -n:] *= ramp[::-1]
    return x


def cut_track(track: Track, tid: str, licence: str, split: str, out_dir: Path,
              opts: CutOptions) -> tuple[list[dict], Refusal | None]:
    """Decode one track and write its excerpts; (metadata rows, refusal or None)."""
    try:
        audio, sr = _decode(track)
    except AudioError as e:
        return [], Refusal(track.package, track.file,
                           f"not a readable audio file: {e}; it is skipped", "not-audio")
    duration = audio.shape[1] / sr
    if duration < MIN_TRACK_SECONDS:
        return [], Refusal(track.package, track.file,
                           f"{duration:.1f} s: shorter than {MIN_TRACK_SECONDS:g} s, not a "
                           "music track", "too-short")
    rows = []
    for offset in excerpt_offsets(duration, opts, f"{track.package}/{track.file}"):
        start = round(offset * sr)
        piece = audio[:, start:start + round(opts.seconds * sr)]
        if not integrated_loudness(piece, sr) > SILENT_LUFS:
            continue
        piece = normalize_loudness(_fade(piece, sr), sr, opts.loudness)
        name = f"{EXCERPT_DIR}/{tid}__{len(rows)}.wav"
        save_audio(out_dir / name, piece, sr, force=True)
        rows.append({"file_name": name, "genre": GENRE, "split": split, "tune": tid,
                     "package": track.package, "file": track.file, "licence": licence,
                     "offset_s": f"{offset:.3f}", "duration": f"{piece.shape[1] / sr:.3f}",
                     "loudness_lufs": f"{integrated_loudness(piece, sr):.2f}"})
    if not rows:
        return [], Refusal(track.package, track.file, "every excerpt is near-silent", "silent")
    return rows, None


def _cut_job(args: tuple) -> tuple[list[dict], Refusal | None]:
    try:
        return cut_track(*args)
    except GenreshiftError as e:  # a write failure: report it with the track
        track = args[0]
        return [], Refusal(track.package, track.file, str(e), "write")


# ---------------------------------------------------------------------------------------------
# the import


def _read_rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _csv_text(rows: Iterable[dict], columns: Iterable[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _prepare_out(out: Path, opts: CutOptions, force: bool) -> list[dict]:
    """Check --out; return the rows of a previous import with the same options (reusable)."""
    if out.exists() and not out.is_dir():
        raise GenreshiftError(f"--out {out}: is a file; give a folder")
    if not out.parent.exists():
        raise GenreshiftError(f"--out {out}: folder {out.parent} does not exist; create it first")
    record = out / IMPORT_RECORD
    if out.is_dir() and any(out.iterdir()) and not record.is_file():
        raise GenreshiftError(f"--out {out}: folder is not empty and holds no real-recordings "
                              "import; choose a new folder")
    if not record.is_file():
        return []
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if force:
        return []
    if previous.get("options") != opts.record():
        raise GenreshiftError(
            f"--out {out}: was built with other options ({previous.get('options')}); pass "
            "--force to rebuild it, or choose a new folder")
    return _read_rows(out / METADATA)


def _split_of(tid: str, seed: int) -> str:
    return "valid" if _unit_hash("split", seed, tid) % 1000 < VALID_FRACTION * 1000 else "train"


def import_real(source: str | os.PathLike, out: str | os.PathLike, *, seconds: float = 30.0,
                per_track: int = 4, seed: int = 0, loudness: float = -14.0,
                force: bool = False, jobs: int = 1, log=print) -> dict:
    """Import the music of the unpacked packages in ``source`` into ``out``; returns a
    summary (see :func:`format_real_summary`). Re-running with the same options reuses the
    tracks already cut; ``force`` cuts everything again."""
    src, out = Path(source).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise GenreshiftError(f"--source {src}: no such folder; unpack the packages first "
                              "(make real-data)")
    if not (seconds >= 5.0):
        raise GenreshiftError(f"--seconds {seconds}: excerpts must last at least 5 s")
    if per_track < 1:
        raise GenreshiftError(f"--per-track {per_track}: must be at least 1")
    if not (-40.0 <= loudness <= -6.0):
        raise GenreshiftError(f"--loudness {loudness}: choose a level between -40 and -6 LUFS")
    opts = CutOptions(seconds=float(seconds), per_track=int(per_track), seed=int(seed),
                      loudness=float(loudness))
    previous = _prepare_out(out, opts, force)
    packages = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not packages:
        raise GenreshiftError(f"--source {src}: holds no package folders; unpack the packages "
                              "into <source>/<package>/ first (make real-data)")

    refused: list[Refusal] = []
    per_package: dict[str, dict] = {}
    todo: list[tuple[Track, str, str]] = []  # track, licence, licence reason
    for pkg_dir in packages:
        package = pkg_dir.name
        info = per_package[package] = {"licences": Counter(), "not_music": 0,
                                       "copyright": "", "note": ""}
        if package in TEST_SET_PACKAGES:
            info["note"] = "test-set package: never imported"
            refused.append(Refusal(package, "*", "test-set package: its recordings are held "
                                   "out for testing and never imported", "test-set"))
            continue
        lic = package_licences(pkg_dir, package)
        info["copyright"] = lic.copyright.relative_to(pkg_dir).as_posix()
        if lic.free_form is not None:
            info["note"] = "free-form copyright file, read by hand"
        tracks, info["not_music"] = find_tracks(pkg_dir, package)
        if lic.problem:
            info["note"] = lic.problem
        for track in tracks:
            licence, reason = lic.licence_of(track.licence_path)
            if licence is None:
                refused.append(Refusal(package, track.file, reason, "licence"))
            else:
                todo.append((track, licence, reason))

    out.mkdir(exist_ok=True)
    (out / EXCERPT_DIR).mkdir(exist_ok=True)
    taken: set[str] = set()
    reuse = defaultdict(list)
    for row in previous:
        reuse[(row.get("package"), row.get("file"))].append(row)
    jobs_args, rows_by_track, reused = [], {}, 0
    for track, licence, _ in todo:
        tid = track_id(track, taken)
        old = reuse.get((track.package, track.file))
        if old and all((out / r["file_name"]).is_file() and r.get("licence") == licence
                       and r.get("tune") == tid for r in old):
            rows_by_track[tid] = old
            reused += 1
            continue
        jobs_args.append((track, tid, licence, _split_of(tid, opts.seed), out, opts))

    if jobs_args:
        log(f"cutting {len(jobs_args)} track(s) into excerpts ({jobs} job(s))...")
    if jobs > 1 and len(jobs_args) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_cut_job, jobs_args, chunksize=1))
    else:
        results = [_cut_job(a) for a in jobs_args]
    for args, (rows, refusal) in zip(jobs_args, results):
        if refusal is not None:
            refused.append(refusal)
        if rows:
            rows_by_track[args[1]] = rows

    # Splits by track, drawn from the track id; at least one valid track: if the draw gave
    # none, the track that hashes lowest moves over. Set on reused rows too: they depend on
    # which tracks made it.
    splits = {tid: _split_of(tid, opts.seed) for tid in rows_by_track}
    if len(splits) > 1 and "valid" not in splits.values():
        splits[min(splits, key=lambda t: _unit_hash("split", opts.seed, t))] = "valid"
    rows_all = []
    for tid in sorted(rows_by_track):
        for r in rows_by_track[tid]:
            r["split"] = splits[tid]
            rows_all.append(r)

    # Excerpts a previous import wrote that this one does not list.
    listed = {r["file_name"] for r in rows_all}
    for row in _read_rows(out / METADATA):
        name = row.get("file_name", "")
        if name.startswith(f"{EXCERPT_DIR}/") and name not in listed:
            (out / name).unlink(missing_ok=True)

    tracks_by_package: dict[str, set[str]] = defaultdict(set)
    for r in rows_all:
        per_package[r["package"]]["licences"][r["licence"]] += 1
        tracks_by_package[r["package"]].add(r["tune"])
    for info in per_package.values():
        info["licences"] = {k: v for k, v in sorted(info["licences"].items())}
    refused.sort(key=lambda r: (r.package, r.file))

    summary = {
        "source": str(src.resolve()), "out": str(out.resolve()), "options": opts.record(),
        "packages": {
            pkg: {"tracks": len(tracks_by_package.get(pkg, ())),
                  "excerpts": sum(1 for r in rows_all if r["package"] == pkg),
                  "refused": dict(sorted(Counter(r.kind for r in refused
                                                 if r.package == pkg).items())),
                  "not_music": info["not_music"], "licences": info["licences"],
                  "copyright": info["copyright"], "note": info["note"]}
            for pkg, info in per_package.items()},
        "tracks": len(rows_by_track), "reused_tracks": reused, "excerpts": len(rows_all),
        "minutes": round(sum(float(r["duration"]) for r in rows_all) / 60.0, 1),
        "splits": dict(sorted(Counter(r["split"] for r in rows_all).items())),
        "refused": [{"package": r.package, "file": r.file, "kind": r.kind, "reason": r.reason}
                    for r in refused],
    }
    if not rows_all:
        raise GenreshiftError(f"--source {src}: no track could be imported "
                              f"({len(refused)} refused); see the reasons above"
                              if refused else f"--source {src}: no music files found")
    atomic_write_text(out / "refused.csv", _csv_text(summary["refused"],
                                                     ("package", "file", "kind", "reason")))
    atomic_write_text(out / "LICENSES.md", _licences_md(summary))
    atomic_write_text(out / IMPORT_RECORD, json.dumps(
        {"options": opts.record(), "packages": summary["packages"]}, indent=2, sort_keys=True)
        + "\n")
    atomic_write_text(out / METADATA, _csv_text(rows_all, METADATA_COLUMNS))  # last: commits
    return summary


def _licences_md(summary: dict) -> str:
    opts = summary["options"]
    lines = ["# Licences of the real-recording excerpts", "",
             (f"Excerpts (up to {opts['seconds']:g} s, {SAMPLE_RATE} Hz mono, "
              f"{opts['loudness']:g} LUFS) of music from Debian packages. Each package's "
              "licence terms are in its copyright file, at the path given, inside the package; "
              "every excerpt's own licence is in metadata.csv."), "",
             "| package | licences (excerpts) | tracks | copyright file |",
             "|---|---|---|---|"]
    for pkg, info in summary["packages"].items():
        if not info["tracks"]:
            continue
        lic = "; ".join(f"{k} ({v})" for k, v in info["licences"].items())
        lines.append(f"| {pkg} | {lic} | {info['tracks']} | {info['copyright']} |")
    return "\n".join(lines) + "\n"


def format_real_summary(summary: dict) -> str:
    lines = [(f"{'package':24} {'tracks':>6} {'excerpts':>8} {'refused':>7} {'sfx':>5}  "
              "licences / refusals")]
    for pkg, info in summary["packages"].items():
        refused = sum(info["refused"].values())
        lic = ", ".join(info["licences"]) or "-"
        why = ", ".join(f"{k} {v}" for k, v in info["refused"].items())
        extra = f"  [refused: {why}]" if why else ""
        note = f"  ({info['note']})" if info["note"] else ""
        lines.append(f"{pkg:24} {info['tracks']:6d} {info['excerpts']:8d} {refused:7d} "
                     f"{info['not_music']:5d}  {lic}{extra}{note}")
    reasons = Counter((r["package"], r["kind"], r["reason"]) for r in summary["refused"])
    if reasons:
        lines.append("refusals:")
        for (pkg, kind, reason), n in sorted(reasons.items()):
            example = next(r["file"] for r in summary["refused"]
                           if (r["package"], r["kind"], r["reason"]) == (pkg, kind, reason))
            lines.append(f"  {pkg}: {n} x {kind}: {reason}" + (f" (e.g. {example})"
                                                               if n > 1 else f" ({example})"))
    lines.append(f"total: {summary['tracks']} tracks ({summary['reused_tracks']} reused), "
                 f"{summary['excerpts']} excerpts, {summary['minutes']} min, splits "
                 f"{summary['splits']}; written to {summary['out']}")
    return "\n".join(lines)


__all__ = ["TEST_SET_PACKAGES", "format_real_summary", "import_real", "licence_is_free",
           "licence_of", "parse_dep5", "pattern_matches"]
