"""The run loop both trainers share (genreshift.train.cyclegan, genreshift.train.classifier).

A trainer builds its networks, optimisers and state, then subclasses :class:`Session` with
what differs: how one step draws its batch and calls the trainer's ``train_step``, what it logs,
validates and writes. Everything else is done here, the same way for both:

- the run's resume file: opened, or refused when ``--resume`` is missing or when a setting that
  shapes the run differs (:func:`open_run`, :func:`refuse_other_settings`);
- the per-rank random streams: restored on resume, restarted from (seed, rank, stream, step)
  when the process count changed, gathered to rank 0 for every checkpoint (:func:`restore`);
- the files: the inference file and ``resume.pt`` (the same dict plus ``resume``), with
  provenance, rewritten atomically by rank 0;
- the cadence: scalars every ``log_every`` steps (averaged over the ranks), files every
  ``checkpoint_every``, validation every ``val_every`` and samples every ``sample_every`` steps
  (and at the end), under a progress bar and TensorBoard (``tb/``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genreshift.checkpoint import check_same_config, provenance, read_checkpoint, write_checkpoint
from genreshift.errors import GenreshiftError
from genreshift.train import runtime as rtm
from genreshift.train.config import refuse_changed

if TYPE_CHECKING:
    from genreshift.spectral import MelConfig

RESUME_FILE = "resume.pt"
TB_DIR = "tb"

# A run's per-rank random streams besides the global generators: name in the resume file ->
# (an object with state_dict / load_state_dict and a torch.Generator ``generator``, its stream
# number for runtime.derive_seed).
Streams = Mapping[str, tuple[Any, int]]


# --------------------------------------------------------------------------- resume


def stored_run(out: str | Path, kind: str) -> dict | None:
    """The resume file of the run in ``out``, or None when there is none."""
    path = Path(out) / RESUME_FILE
    if not path.is_file():
        return None
    return read_checkpoint(path, kind=kind, role="resume")


def open_run(out: Path, *, kind: str, resume: bool, mel: MelConfig) -> dict | None:
    """The resume file of the run in ``out``, or None for a new run.

    Without ``resume`` a directory that already holds a run is refused (a run is never
    overwritten by accident); with it, the run must have been trained on data of the same
    analysis (``mel``).
    """
    path = out / RESUME_FILE
    if not path.exists():
        return None
    if not resume:
        raise GenreshiftError(f"{out} already holds a run ({RESUME_FILE}); pass --resume to "
                              "continue it, or choose another --out")
    ck = read_checkpoint(path, kind=kind, role="resume")
    check_same_config(path, "the data's mel config", ck["mel_config"], mel.to_dict(),
                      "resume with the mel directory the run was started on")
    return ck


def refuse_other_settings(path: Path, ck: dict, config: Any,
                          models: Sequence[tuple[str, Mapping, Mapping]]) -> None:
    """Refuse to resume ``ck`` with other training settings (logistics aside) or another
    architecture. ``models``: (what, the run's config dict, the requested one) per network."""
    refuse_changed(path, ck["resume"]["train_config"], config)
    for what, stored, requested in models:
        check_same_config(path, what, stored, requested,
                          "resume without architecture options, or start a new run")


def restore(ck: dict, rt: rtm.Runtime, *, parts: Mapping[str, Any],
            scaler: torch.amp.GradScaler | None, streams: Streams, seed: int
            ) -> tuple[int, float]:
    """Continue a run from its resume file (the trainer loads its own weights).

    ``parts`` maps keys of the file's ``resume`` dict to the objects that load them (optimisers,
    schedulers). This rank's random streams, the global ones and ``streams``, continue where
    they stopped; under another process count they cannot, and restart from (seed, rank,
    stream, step), so the run stays reproducible for that count. Returns (step, training
    seconds so far).
    """
    stored = ck["resume"]
    for key, part in parts.items():
        part.load_state_dict(stored[key])
    if scaler is not None and stored.get("scaler"):
        scaler.load_state_dict(stored["scaler"])
    step = int(stored["step"])
    ranks = stored["ranks"]
    if len(ranks) == rt.world_size:
        mine = ranks[rt.rank]
        rtm.set_rng_state(mine["rng"], rt.device)
        for name, (holder, _) in streams.items():
            holder.load_state_dict(mine[name])
    else:
        rtm.log.warning("resuming %d process(es) from a run of %d: the random streams (%s) "
                        "restart", rt.world_size, len(ranks), ", ".join(streams))
        for holder, stream in streams.values():
            holder.generator.manual_seed(rtm.derive_seed(seed, rt.rank, stream, step))
    return step, float(ck["provenance"].get("train_seconds", 0.0))


# --------------------------------------------------------------------------- the session


class Session:
    """One process's share of a run: the loop, the logs and the checkpoints.

    ``state`` is the trainer's state dataclass (it has ``config``, ``device``, ``precision``
    and ``step``). A subclass sets ``inference_file``, ``terms`` (the keys of its train_step's
    dict), ``desc`` (the progress bar's label) and ``windows_per_step`` (per process), and
    implements :meth:`step`, :meth:`log`, :meth:`payload` and :meth:`resume_state`; it may
    implement :meth:`open_validation`, :meth:`validate` and :meth:`samples`.
    """

    inference_file: str
    terms: Sequence[str]
    desc: str
    windows_per_step: int

    def __init__(self, *, rt: rtm.Runtime, state: Any, out: Path, data: Path, manifest: dict,
                 streams: Streams, seconds_before: float,
                 provenance_extra: Mapping[str, Any] | None = None) -> None:
        self.rt, self.state, self.out, self.data, self.manifest = rt, state, out, data, manifest
        self.streams = streams
        self.seconds_before = seconds_before
        self.provenance_extra = dict(provenance_extra or {})
        self.started = time.perf_counter()
        self.writer: Any = None

    # ---- what a trainer supplies

    def step(self) -> dict[str, float]:
        """Draw the batch of step ``state.step`` and run the trainer's train_step on it."""
        raise NotImplementedError

    def log(self, means: dict[str, float], step: int) -> dict[str, str]:
        """Write the trainer's scalars (``means``: train_step's terms averaged since the last
        log, over the ranks); return the progress bar's postfix."""
        raise NotImplementedError

    def payload(self, prov: dict) -> dict:
        """The inference file's dict, with provenance ``prov``."""
        raise NotImplementedError

    def resume_state(self) -> dict:
        """What the resume file holds besides the inference dict, the step, the training config
        and the ranks' random streams (discriminators, optimisers, schedulers, scaler...)."""
        raise NotImplementedError

    def open_validation(self) -> None:
        """Read the held-out data (rank 0, once, before the loop)."""

    def validate(self, bar: Any) -> None:
        """Validate on the held-out data and log it (rank 0)."""

    def samples(self) -> None:
        """TensorBoard images and audio (rank 0; trainers whose config has sample_every)."""

    # ---- the loop

    def run(self, stop_at: int | None, progress: bool) -> None:
        """Train to ``config.steps``, or to ``stop_at`` (with a checkpoint there)."""
        cfg = self.state.config
        end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
        try:
            if self.rt.is_main:
                self.open_logs()
            self.loop(end, progress)
        finally:
            if self.writer is not None:
                self.writer.close()

    def open_logs(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.out.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.out / TB_DIR))
        self.open_validation()

    def loop(self, end: int, progress: bool) -> None:
        state, rt, cfg = self.state, self.rt, self.state.config
        sample_every = getattr(cfg, "sample_every", 0)  # the classifier has no samples
        sums = torch.zeros(len(self.terms), dtype=torch.float64)
        count, busy = 0, 0.0
        with rtm.progress_bar(cfg.steps, state.step, progress and rt.is_main, self.desc) as bar:
            if state.step >= end:
                if rt.is_main:
                    rtm.say(bar, f"nothing to do: the run in {self.out} is at step {state.step}")
                return
            while state.step < end:
                t0 = time.perf_counter()
                losses = self.step()
                busy += time.perf_counter() - t0  # data + step; not logging or checkpoints
                sums += torch.tensor([losses[k] for k in self.terms], dtype=torch.float64)
                count += 1
                bar.update(1)
                step = state.step
                last = step == end
                # Every branch below depends on the step only, so all ranks take it together.
                if step % cfg.log_every == 0 or last:
                    means = rtm.all_mean(rt, sums / count)
                    if rt.is_main:
                        self.log_scalars(dict(zip(self.terms, means.tolist())), busy / count,
                                         bar)
                    sums.zero_()
                    count, busy = 0, 0.0
                if step % cfg.checkpoint_every == 0 or last:
                    self.checkpoint(bar)
                if rt.is_main and (step % cfg.val_every == 0 or step == cfg.steps):
                    self.validate(bar)
                if rt.is_main and sample_every and (step % sample_every == 0
                                                    or step == cfg.steps):
                    self.samples()
        rtm.barrier(rt)  # every rank returns once the last files are written

    def log_scalars(self, means: dict[str, float], step_s: float, bar: Any) -> None:
        step, w = self.state.step, self.writer
        postfix = self.log(means, step)
        w.add_scalar("time/step_s", step_s, step)
        w.add_scalar("time/windows_per_s",
                     self.windows_per_step * self.rt.world_size / max(step_s, 1e-9), step)
        bar.set_postfix(**postfix)

    # ---- checkpoints

    def checkpoint(self, bar: Any) -> None:
        """Gather every rank's random streams; rank 0 writes the inference and resume files."""
        state, rt = self.state, self.rt
        mine = {"rng": rtm.rng_state(state.device),
                **{name: holder.state_dict() for name, (holder, _) in self.streams.items()}}
        ranks = rtm.gather_to_main(rt, mine)
        if not rt.is_main:
            return
        dataset = self.manifest.get("dataset", {})
        prov = provenance(
            dataset=str(self.data), steps=state.step,
            train_seconds=self.seconds_before + time.perf_counter() - self.started,
            data_kind=dataset.get("kind"), data_source=dataset.get("source"),
            data_created=self.manifest.get("created"), processes=rt.world_size,
            device=state.device.type, precision=state.precision.name, **self.provenance_extra)
        payload = self.payload(prov)
        write_checkpoint(self.out / self.inference_file, payload)
        resume = {"step": state.step, "train_config": state.config.to_dict(),
                  **self.resume_state(), "ranks": ranks}
        write_checkpoint(self.out / RESUME_FILE, {**payload, "role": "resume", "resume": resume})
        rtm.say(bar, f"step {state.step}: wrote {self.out / self.inference_file} and "
                     f"{self.out / RESUME_FILE}")
