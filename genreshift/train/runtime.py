"""What every training loop shares: device and process group, mixed precision, random streams,
balanced window sampling, domains, the learning-rate schedule, and logging helpers. The run
loop itself (resume files, checkpoints, the log / validate cadence) is genreshift.train.loop.

Distributed runs are detected from the variables ``torchrun`` sets (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL between GPUs, gloo between CPU processes.
Every rank draws its own windows (per-rank seeds), DistributedDataParallel averages the
gradients, and rank 0 alone writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from genreshift.checkpoint import Domain
from genreshift.errors import GenreshiftError

log = logging.getLogger("genreshift.train")

# --------------------------------------------------------------------------- process / device


@dataclass(frozen=True)
class Runtime:
    """Where this process runs and which part of a (possibly distributed) run it is."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise GenreshiftError(f"environment variable {name}={value!r} is not an integer; "
                              "launch distributed runs with torchrun") from None


def init_runtime(device: str = "auto") -> Runtime:
    """Pick the device and, under torchrun, join the process group.

    ``device`` is "auto" (CUDA when present), "cpu" or "cuda". Under torchrun each process
    takes GPU ``LOCAL_RANK``.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device == "cuda" and not torch.cuda.is_available():
        raise GenreshiftError("--device cuda was asked for but no CUDA device is available; "
                              "use --device cpu (or auto)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise GenreshiftError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s); "
                "start at most one process per GPU (torchrun --nproc_per_node)")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        # Validation and checkpoint writing run on rank 0 while the others wait at a barrier;
        # 30 minutes leaves room for a slow disk.
        dist.init_process_group(backend, timeout=timedelta(minutes=30),
                                device_id=dev if use_cuda else None)
    return Runtime(device=dev, rank=rank, world_size=world, local_rank=local_rank)


def shutdown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def runtime(device: str = "auto") -> Iterator[Runtime]:
    """init_runtime for the length of a run, leaving the process group at its end."""
    rt = init_runtime(device)
    try:
        yield rt
    finally:
        shutdown_runtime(rt)


def wrap_ddp(rt: Runtime, module: torch.nn.Module) -> torch.nn.Module:
    """``module`` in DistributedDataParallel (on this rank's GPU, or the CPU under gloo)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        if rt.device.type == "cuda":
            dist.barrier(device_ids=[rt.device.index])
        else:
            dist.barrier()


def all_mean(rt: Runtime, values: torch.Tensor) -> torch.Tensor:
    """Average a float tensor over the ranks (identity in a single process)."""
    if not rt.distributed:
        return values
    values = values.to(rt.device, torch.float64)
    dist.all_reduce(values)
    return (values / rt.world_size).cpu()


def gather_to_main(rt: Runtime, obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable, small) as a list on rank 0; None elsewhere."""
    if not rt.distributed:
        return [obj]
    out: list[Any] | None = [None] * rt.world_size if rt.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def setup_threads(threads: int) -> None:
    """0 keeps torch's default (torchrun sets OMP_NUM_THREADS=1 per process already)."""
    if threads > 0:
        torch.set_num_threads(threads)


def setup_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed window sizes: autotuning pays off


def setup_run(config: Any, device: torch.device) -> Precision:
    """Kernels, threads, precision and initial seed from a training config (``deterministic``,
    ``threads``, ``amp``, ``seed``). The same seed on every rank gives the same initial
    weights; DDP also broadcasts rank 0's."""
    setup_determinism(config.deterministic, device)
    setup_threads(config.threads)
    precision = resolve_precision(config.amp, device)
    torch.manual_seed(config.seed)
    return precision


def to_cpu(obj: Any) -> Any:
    """Tensors anywhere in nested dicts/lists/tuples moved to the CPU (for saving)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


# --------------------------------------------------------------------------- mixed precision


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: full float32) and whether a GradScaler is needed (fp16)."""

    dtype: torch.dtype | None
    scaler: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """"auto": bf16 on GPUs that have it (no loss scaling needed), else fp16 with a scaler;
    full precision on CPU, where autocast is slower than float32 on most processors."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return Precision(None, False)
    if device.type != "cuda" and amp == "fp16":
        raise GenreshiftError("--amp fp16 needs a CUDA device; use --amp off (or bf16) on CPU")
    if amp == "auto":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "bf16":
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


# --------------------------------------------------------------------------- random streams


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple such as (seed, rank, stream): independent streams per rank."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(
        1, dtype=np.uint64)[0] >> 1)


def rng_state(device: torch.device) -> dict:
    """This process's global random states (torch, CUDA, Python, NumPy) as plain data."""
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --------------------------------------------------------------------------- domains & windows


REST = "rest"


def resolve_domains(available: Sequence[str], a: str, b: str) -> tuple[Domain, Domain]:
    """Turn the --a / --b arguments into two disjoint lists of genres.

    A domain is a genre, a comma-separated list of genres, or ``rest``: every genre of the
    data that the other domain does not name.
    """
    def parse(spec: str, flag: str) -> list[str] | None:
        spec = spec.strip()
        if spec == REST:
            return None
        names = [g.strip() for g in spec.split(",") if g.strip()]
        if not names:
            raise GenreshiftError(f"{flag} is empty; give a genre, a comma list or '{REST}'")
        unknown = [g for g in names if g not in available]
        if unknown:
            raise GenreshiftError(f"{flag} {spec}: unknown genre(s) {', '.join(unknown)}; the "
                                  f"data has {', '.join(available)}")
        if len(set(names)) != len(names):
            raise GenreshiftError(f"{flag} {spec}: a genre is named twice")
        return names

    ga, gb = parse(a, "--a"), parse(b, "--b")
    if ga is None and gb is None:
        raise GenreshiftError(f"--a and --b cannot both be '{REST}'; name the genres of one side")
    if ga is None:
        ga = [g for g in available if g not in gb]  # type: ignore[operator]
    if gb is None:
        gb = [g for g in available if g not in ga]
    if not ga or not gb:
        raise GenreshiftError(f"'{REST}' leaves no genre (the data has only "
                              f"{', '.join(available)}); name two different genres")
    both = sorted(set(ga) & set(gb))
    if both:
        raise GenreshiftError(f"--a and --b share {', '.join(both)}; the domains must be "
                              "disjoint")
    return Domain(a.strip(), tuple(ga)), Domain(b.strip(), tuple(gb))


class WindowSampler:
    """Training batches from a MelWindows: a genre uniformly, then one of its windows.

    Choosing the genre first keeps a multi-genre domain (``rest``) and the classifier balanced
    however unequal the genres' durations. ``set_epoch(step)`` before each batch makes MelWindows
    draw fresh positions and augmentations from (seed, step, index), so a batch depends only on
    this sampler's generator state and the step: a resumed run draws exactly what an
    uninterrupted one would have.
    """

    def __init__(self, windows: Any, *, seed: int) -> None:
        self.windows = windows
        labels = torch.from_numpy(np.asarray(windows.labels))
        self.by_genre = [torch.nonzero(labels == g).flatten() for g in range(len(windows.genres))]
        self.by_genre = [ix for ix in self.by_genre if len(ix)]
        self.generator = torch.Generator().manual_seed(seed)

    def pick(self, size: int) -> list[int]:
        """``size`` window indices: a genre uniformly, then one of its windows, each."""
        genres = torch.randint(len(self.by_genre), (size,), generator=self.generator)
        picks = []
        for g in genres.tolist():
            pool = self.by_genre[g]
            picks.append(int(pool[int(torch.randint(len(pool), (), generator=self.generator))]))
        return picks

    def batch(self, size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([size, n_mels, frames] float32, [size] genre index) for ``step``."""
        self.windows.set_epoch(step)
        items = [self.windows[i] for i in self.pick(size)]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def match_level(x: torch.Tensor, ref: torch.Tensor, db_min: float, db_max: float
                ) -> torch.Tensor:
    """``x`` (normalised log-mel [n_mels, T]) with a gain that gives it ``ref``'s mean power.

    The renderings of one tune in two genres are mastered to different loudnesses, and a
    conversion is loudness-matched to its input anyway: a paired target is compared at the
    input's level, so the generator is not asked to guess a random mastering gain.
    """
    span = db_max - db_min

    def level_db(m: torch.Tensor) -> float:
        db = (m.double() + 1.0) * 0.5 * span + db_min
        return float(10.0 * torch.log10(torch.pow(10.0, db / 10.0).mean().clamp_min(1e-30)))

    offset = (level_db(ref) - level_db(x)) * 2.0 / span
    return torch.where(x <= -1.0, x, (x + offset).clamp(-1.0, 1.0))


class PairedSampler:
    """Batches of domain-a windows, each with the same tune's window in domain b when the data
    has one (the synthetic corpus renders every tune in every genre, time-aligned).

    The a side is drawn exactly as by WindowSampler (a genre uniformly, then a window). The b
    window of a paired row starts at the same frame of the same tune's b rendering, is level-
    matched to the a window (see match_level), and both get the same augmentation draw (gain
    and time mask), so the pair differs only by genre. A row whose tune has no b rendering
    gets a random b window and is marked unpaired. ``batch`` returns ([B, n_mels, T] a,
    [B, n_mels, T] b, [B] bool paired).
    """

    def __init__(self, windows_a: Any, windows_b: Any, *, seed: int) -> None:
        self.a, self.b = windows_a, windows_b
        self.inner = WindowSampler(windows_a, seed=seed)
        self.generator = self.inner.generator
        self.windows = windows_a
        by_group: dict[str, list[int]] = {}
        for i in range(len(windows_b.clips)):
            g = windows_b.group(i)
            if g is not None:
                by_group.setdefault(g, []).append(i)
        self.b_of_group = by_group
        self.b_all = torch.arange(len(windows_b))
        cfg = windows_a.mel_config
        self.db_range = (cfg.db_min, cfg.db_max)

    def batch(self, size: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.a.set_epoch(step)
        self.b.set_epoch(step)
        gen = self.generator
        genres = torch.randint(len(self.inner.by_genre), (size,), generator=gen)
        xa, xb, paired = [], [], []
        for g in genres.tolist():
            pool = self.inner.by_genre[g]
            index = int(pool[int(torch.randint(len(pool), (), generator=gen))])
            clip, start, rng = self.a.locate(index)
            a = self.a.read(clip, start)
            group = self.a.group(clip)
            matches = self.b_of_group.get(group, []) if group is not None else []
            if matches:
                bclip = matches[int(torch.randint(len(matches), (), generator=gen))]
                b = match_level(self.b.read(bclip, start), a, *self.db_range)
                if self.a.augment:
                    twin = copy.deepcopy(rng)  # the same draws for both windows
                    a = self.a.augment_window(a, rng)
                    b = self.a.augment_window(b, twin)
                paired.append(True)
            else:
                if self.a.augment:
                    a = self.a.augment_window(a, rng)
                b, _ = self.b[int(self.b_all[int(torch.randint(len(self.b_all), (),
                                                               generator=gen))])]
                paired.append(False)
            xa.append(a)
            xb.append(b)
        return torch.stack(xa), torch.stack(xb), torch.tensor(paired)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def fixed_windows(windows: Any, per_genre: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic held-out windows: up to ``per_genre`` evenly spaced items of each genre.

    Returns ([N, n_mels, frames], [N] genre index). Positions are those of epoch 0, so every
    validation in a run (and in its resumed sessions) sees the same windows.
    """
    windows.set_epoch(0)
    labels = np.asarray(windows.labels)
    xs, ys = [], []
    for g in range(len(windows.genres)):
        idx = np.flatnonzero(labels == g)
        if not len(idx):
            continue
        take = idx[np.unique(np.linspace(0, len(idx) - 1, min(per_genre, len(idx))).round()
                             .astype(int))]
        for i in take:
            x, y = windows[int(i)]
            xs.append(x)
            ys.append(y)
    return torch.stack(xs), torch.tensor(ys)


def open_validation(meldir: Any, genres: Sequence[str], frames: Sequence[int], seed: int
                    ) -> tuple[Any, str | None]:
    """MelWindows of the ``valid`` split, trying the window lengths in ``frames`` in turn.

    Returns (windows or None, why not). A run without held-out data still trains; it says
    so instead of failing.
    """
    from genreshift.data.windows import MelWindows

    why = None
    for f in frames:
        try:
            return MelWindows(meldir, split="valid", genres=list(genres), frames=int(f),
                              augment=False, seed=seed), None
        except GenreshiftError as e:
            why = str(e)
    return None, why


# --------------------------------------------------------------------------- schedule


class LinearDecay:
    """Learning-rate factor: 1 until ``decay_start * steps``, then linear to 0 at ``steps``.

    A class rather than a lambda so that LambdaLR's state_dict records it (a plain dict).
    """

    def __init__(self, steps: int, decay_start: float) -> None:
        self.steps = int(steps)
        self.start = round(decay_start * steps)

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 1.0
        return max(0.0, (self.steps - step) / max(1, self.steps - self.start))


# --------------------------------------------------------------------------- logging helpers


def mel_image(mel: torch.Tensor) -> torch.Tensor:
    """Log-mel [n_mels, T] in [-1, 1] -> grayscale image [1, n_mels, T] in [0, 1], low
    frequencies at the bottom (TensorBoard draws row 0 at the top)."""
    return ((mel.detach().float().cpu().clamp(-1, 1) + 1) / 2).flip(0).unsqueeze(0)


def peak_normalise(wav: torch.Tensor, peak: float = 0.9) -> torch.Tensor:
    return wav / wav.abs().max().clamp_min(1e-6) * peak


@contextlib.contextmanager
def progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step",
               dynamic_ncols=True, file=sys.stderr, smoothing=0.05)
    try:
        yield bar
    finally:
        bar.close()


def say(bar: Any, text: str) -> None:
    """A console line that does not break the progress bar."""
    bar.write(text, file=sys.stderr)
