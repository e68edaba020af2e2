"""A SoundFont 2 cut down to some of its presets, built in memory.

Rendering a drum groove needs only a General MIDI font's bank-128 kits, but TinySoundFont
loads a whole file: FluidR3_GM is 148 MB on disk and ~435 MB once its samples are floats,
about 0.6 s of CPU before the first note (benchmarks/rhythm.py, table 5). ``subset`` reads
the preset tables (a few hundred kB), keeps the chosen presets with the instruments, samples
and sample data they reach, and writes a complete SF2 into a bytes object, which
TinySoundFont loads from memory. The sample data is read with seeks, never the whole file.

Written by hand because no maintained Python library writes SoundFonts (sf2utils and the
others only read them). The layout follows the SoundFont 2.04 specification: a RIFF 'sfbk'
form with an INFO list (copied as it is), an sdta list (the 16-bit 'smpl' chunk and the
optional 24-bit 'sm24' low bytes) and a pdta list of nine record tables that index each
other: preset headers -> preset zones (bags) -> generators/modulators -> instruments ->
instrument zones -> generators/modulators -> sample headers -> sample data. Each table ends
with a terminal record. Sample points keep their positions relative to each other within
every stretch of data that is copied, so loop points and zone address offsets stay valid.

SF3 files (Ogg-compressed samples) and anything unexpected are not cut: ``subset`` returns
None and the caller loads the whole font.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import numpy as np

PHDR = np.dtype([("name", "S20"), ("preset", "<u2"), ("bank", "<u2"), ("bag", "<u2"),
                 ("library", "<u4"), ("genre", "<u4"), ("morphology", "<u4")])
BAG = np.dtype([("gen", "<u2"), ("mod", "<u2")])
MOD = np.dtype("V10")
GEN = np.dtype([("oper", "<u2"), ("amount", "<u2")])
INST = np.dtype([("name", "S20"), ("bag", "<u2")])
SHDR = np.dtype([("name", "S20"), ("start", "<u4"), ("end", "<u4"), ("loop_start", "<u4"),
                 ("loop_end", "<u4"), ("rate", "<u4"), ("pitch", "u1"), ("correction", "i1"),
                 ("link", "<u2"), ("type", "<u2")])
TABLES = {"phdr": PHDR, "pbag": BAG, "pmod": MOD, "pgen": GEN, "inst": INST, "ibag": BAG,
          "imod": MOD, "igen": GEN, "shdr": SHDR}

GEN_INSTRUMENT = 41
GEN_SAMPLE = 53
# Zone generators that move a sample's start, end or loop points, in sample points: fine
# offsets count 1, coarse ones 32 768.
ADDRESS_OFFSETS = {0: 1, 1: 1, 2: 1, 3: 1, 4: 32768, 12: 32768, 45: 32768, 50: 32768}
GUARD = 46  # zero sample points the specification puts after every sample
LINKED_TYPES = (2, 4, 8)  # right, left, linked: sampleLink names the partner
COMPRESSED = 0x10  # SF3: Ogg Vorbis sample data


class Sf2Error(ValueError):
    """The file is not a SoundFont this module can read."""


def _chunks(f, end: int):
    """(id, size, data offset) of the chunks from the file's position to ``end``; Sf2Error
    where a chunk runs past ``end`` or the file (a truncated download)."""
    while f.tell() + 8 <= end:
        head = f.read(8)
        if len(head) < 8:
            raise Sf2Error("the file ends inside a chunk header: is it truncated?")
        cid, size = head[:4].decode("latin-1"), struct.unpack("<I", head[4:])[0]
        start = f.tell()
        if start + size > end:
            raise Sf2Error(f"chunk '{cid}' runs past the end of the file: is it truncated?")
        yield cid, size, start
        f.seek(start + size + (size & 1))


def _riff_end(f) -> int:
    """Where the RIFF 'sfbk' form of the open file ``f`` ends (at most the file's size), with
    ``f`` just past its header; Sf2Error if there is no such header."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise Sf2Error("no RIFF 'sfbk' header")
    return min(8 + struct.unpack("<I", head[4:8])[0], os.fstat(f.fileno()).st_size)


def presets(path: str | os.PathLike) -> set[tuple[int, int]]:
    """(bank, program) of every preset of an SF2/SF3 file, from its 'pdta/phdr' table alone
    (no sample data is read). Sf2Error (a ValueError) if the file is not a SoundFont."""
    with open(path, "rb") as f:
        for cid, size, start in _chunks(f, _riff_end(f)):
            if cid == "LIST" and f.read(4) == b"pdta":
                for sub, sub_size, sub_start in _chunks(f, start + size):
                    if sub == "phdr":
                        f.seek(sub_start)
                        records = np.frombuffer(f.read(sub_size - sub_size % PHDR.itemsize),
                                                dtype=PHDR)
                        # the last record is the terminal "EOP" entry, not a preset
                        return {(int(r["bank"]), int(r["preset"])) for r in records[:-1]}
                break
    raise Sf2Error("no preset table (pdta/phdr chunk)")


def _read(path: str | os.PathLike) -> dict:
    """The parts of an SF2 that ``subset`` needs: INFO bytes, smpl/sm24 offsets, the tables."""
    out: dict = {"tables": {}}
    with open(path, "rb") as f:
        try:
            end = _riff_end(f)
            _read_lists(f, end, out)
        except Sf2Error as e:
            raise Sf2Error(f"{path}: {e}") from None
    missing = [t for t in TABLES if t not in out["tables"]]
    if "info" not in out or "smpl" not in out or missing:
        raise Sf2Error(f"{path}: not a complete SoundFont (missing "
                       f"{', '.join(missing) or 'INFO or smpl'})")
    if any(len(out["tables"][t]) < 1 for t in TABLES):
        raise Sf2Error(f"{path}: a preset table has no terminal record")
    return out


def _read_lists(f, end: int, out: dict) -> None:
    """Fill ``out`` from the LIST chunks up to ``end``: INFO, sdta offsets, pdta tables."""
    for cid, size, start in _chunks(f, end):
        if cid != "LIST":
            continue
        kind = f.read(4)
        if kind == b"INFO":
            f.seek(start - 8)
            out["info"] = f.read(8 + size)
            f.seek(start + 4)
            for sub, sub_size, sub_start in _chunks(f, start + size):
                if sub == "ifil" and sub_size >= 4:
                    f.seek(sub_start)
                    out["version"] = struct.unpack("<HH", f.read(4))
        elif kind == b"sdta":
            for sub, sub_size, sub_start in _chunks(f, start + size):
                if sub in ("smpl", "sm24"):
                    out[sub] = (sub_start, sub_size)
        elif kind == b"pdta":
            for sub, sub_size, sub_start in _chunks(f, start + size):
                if sub in TABLES:
                    f.seek(sub_start)
                    dtype = TABLES[sub]
                    data = f.read(sub_size - sub_size % dtype.itemsize)
                    out["tables"][sub] = np.frombuffer(data, dtype=dtype).copy()


def _ranges(index: np.ndarray, i: int, field: str) -> range:
    return range(int(index[field][i]), int(index[field][i + 1]))


def _copy_zones(owners: list[int], head: np.ndarray, bags: np.ndarray, gens: np.ndarray,
                mods: np.ndarray, link: int, remap: dict[int, int]
                ) -> tuple[list, list, list, list]:
    """The zones of the kept ``owners`` (preset or instrument headers), renumbered: (headers,
    bags, generators, modulators) without their terminal records; generator ``link``
    (instrument or sample) rewritten through ``remap``."""
    new_head, new_bags, new_gens, new_mods = [], [], [], []
    for i in owners:
        record = head[i].copy()
        record["bag"] = len(new_bags)
        new_head.append(record)
        for b in _ranges(head, i, "bag"):
            new_bags.append((len(new_gens), len(new_mods)))
            for g in _ranges(bags, b, "gen"):
                gen = gens[g].copy()
                if gen["oper"] == link:
                    gen["amount"] = remap[int(gen["amount"])]
                new_gens.append(gen)
            new_mods.extend(mods[m] for m in _ranges(bags, b, "mod"))
    return new_head, new_bags, new_gens, new_mods


def _referenced(owners: list[int], head: np.ndarray, bags: np.ndarray, gens: np.ndarray,
                link: int, count: int) -> list[int]:
    found = set()
    for i in owners:
        for b in _ranges(head, i, "bag"):
            for g in _ranges(bags, b, "gen"):
                if gens["oper"][g] == link:
                    target = int(gens["amount"][g])
                    if target >= count:
                        raise Sf2Error(f"a zone names record {target} of {count}")
                    found.add(target)
    return sorted(found)


def _address_reach(inst: list[int], t: dict) -> dict[int, int]:
    """Sample -> how far (sample points) the zones that play it may move its addresses: an
    upper bound, the sum of every address offset in its instrument."""
    reach: dict[int, int] = {}
    head, bags, gens = t["inst"], t["ibag"], t["igen"]
    for i in inst:
        total, samples = 0, []
        for b in _ranges(head, i, "bag"):
            for g in _ranges(bags, b, "gen"):
                oper = int(gens["oper"][g])
                if oper in ADDRESS_OFFSETS:
                    amount = int(gens["amount"][g])
                    total += abs(amount - 65536 if amount >= 32768 else amount) \
                        * ADDRESS_OFFSETS[oper]
                elif oper == GEN_SAMPLE:
                    samples.append(int(gens["amount"][g]))
        for s in samples:
            reach[s] = max(reach.get(s, 0), total)
    return reach


def _chunk(cid: bytes, *parts: bytes | list) -> list:
    """A RIFF chunk as a list of byte strings (joined once at the end: the sample data is
    megabytes, and every concatenation would copy it)."""
    flat: list[bytes] = []
    for part in parts:
        flat.extend(part if isinstance(part, list) else [part])
    size = sum(len(x) for x in flat)
    return [cid, struct.pack("<I", size), *flat, b"\0" if size & 1 else b""]


def _table(records: list, dtype: np.dtype) -> bytes:
    return np.array(records, dtype=dtype).tobytes() if records else b""


def subset(path: str | os.PathLike, keep: Callable[[int, int], bool]) -> bytes | None:
    """An SF2 file, as bytes, holding only the presets of ``path`` for which
    ``keep(bank, program)`` is true, with what they play. None where the file cannot be cut
    (SF3, compressed samples) or no preset is kept: load the whole file then.
    Raises Sf2Error if ``path`` is not a readable SoundFont."""
    sf = _read(path)
    t = sf["tables"]
    if sf.get("version", (2, 0))[0] != 2 or np.any(t["shdr"]["type"][:-1] & COMPRESSED):
        return None
    phdr, shdr = t["phdr"], t["shdr"]
    presets = [i for i in range(len(phdr) - 1)
               if keep(int(phdr["bank"][i]), int(phdr["preset"][i]))]
    if not presets:
        return None
    inst = _referenced(presets, phdr, t["pbag"], t["pgen"], GEN_INSTRUMENT, len(t["inst"]) - 1)
    samples = set(_referenced(inst, t["inst"], t["ibag"], t["igen"], GEN_SAMPLE,
                              len(shdr) - 1))
    for s in list(samples):  # a stereo sample's partner plays with it
        if shdr["type"][s] & 0x7FFF in LINKED_TYPES and shdr["link"][s] < len(shdr) - 1:
            samples.add(int(shdr["link"][s]))
    samples_kept = sorted(samples)
    inst_map = {old: new for new, old in enumerate(inst)}
    sample_map = {old: new for new, old in enumerate(samples_kept)}

    p_head, p_bags, p_gens, p_mods = _copy_zones(presets, phdr, t["pbag"], t["pgen"],
                                                 t["pmod"], GEN_INSTRUMENT, inst_map)
    i_head, i_bags, i_gens, i_mods = _copy_zones(inst, t["inst"], t["ibag"], t["igen"],
                                                 t["imod"], GEN_SAMPLE, sample_map)

    # The sample data: each kept sample's points, its loop and how far zones may move them,
    # plus the guard points; overlapping stretches merged and copied once, in file order.
    points = sf["smpl"][1] // 2
    reach = _address_reach(inst, t)
    spans = []
    for s in samples_kept:
        h = shdr[s]
        lo = min(int(h["start"]), int(h["loop_start"])) - reach.get(s, 0)
        hi = max(int(h["end"]), int(h["loop_end"])) + GUARD + reach.get(s, 0)
        spans.append((max(0, lo), min(points, hi)))
    merged: list[list[int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    shift, smpl, sm24 = [], [], []
    with open(path, "rb") as f:
        at = 0
        for lo, hi in merged:
            shift.append((lo, hi, at - lo))
            f.seek(sf["smpl"][0] + 2 * lo)
            smpl.append(f.read(2 * (hi - lo)))
            if "sm24" in sf:
                f.seek(sf["sm24"][0] + lo)
                sm24.append(f.read(hi - lo))
            at += hi - lo
    smpl.append(b"\0" * 2 * GUARD)
    sm24.append(b"\0" * GUARD)

    new_shdr = []
    for s in samples_kept:
        h = shdr[s].copy()
        start = int(h["start"])
        delta = next(d for lo, hi, d in shift if lo <= start < hi)
        for field in ("start", "end", "loop_start", "loop_end"):
            h[field] = max(0, int(h[field]) + delta)
        if h["type"] & 0x7FFF in LINKED_TYPES:
            h["link"] = sample_map.get(int(h["link"]), 0)
        new_shdr.append(h)

    terminal = phdr[-1].copy()
    terminal["bag"] = len(p_bags)
    p_head.append(terminal)
    p_bags.append((len(p_gens), len(p_mods)))
    p_gens.append((0, 0))
    p_mods.append(np.zeros((), MOD))
    i_terminal = t["inst"][-1].copy()
    i_terminal["bag"] = len(i_bags)
    i_head.append(i_terminal)
    i_bags.append((len(i_gens), len(i_mods)))
    i_gens.append((0, 0))
    i_mods.append(np.zeros((), MOD))
    new_shdr.append(shdr[-1])

    pdta = [b"pdta"]
    for name, records in (("phdr", p_head), ("pbag", p_bags), ("pmod", p_mods),
                          ("pgen", p_gens), ("inst", i_head), ("ibag", i_bags),
                          ("imod", i_mods), ("igen", i_gens), ("shdr", new_shdr)):
        pdta += _chunk(name.encode(), _table(records, TABLES[name]))
    sdta = [b"sdta", *_chunk(b"smpl", smpl)]
    if "sm24" in sf:
        sdta += _chunk(b"sm24", sm24)
    return b"".join(_chunk(b"RIFF", b"sfbk", sf["info"], _chunk(b"LIST", sdta),
                           _chunk(b"LIST", pdta)))


__all__ = ["Sf2Error", "presets", "subset"]
