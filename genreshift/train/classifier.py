"""Training of the genre classifier (genreshift.models.classifier) on log-mel windows.

A run directory holds ``classifier.pt`` (inference: weights + configs + genre names +
provenance), ``resume.pt`` (+ optimiser, scheduler, step, per-rank random states, training
config) and ``tb/`` (loss, accuracy, learning rate, step time, validation accuracy overall and
per genre). Batches are balanced over genres (a genre uniformly, then one of its windows), so a
genre with more hours does not dominate. Resumable and distributed exactly like the converter
runs (genreshift.train.cyclegan).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from genreshift.errors import GenreshiftError
from genreshift.models.classifier import GenreClassifier
from genreshift.models.config import ClassifierConfig
from genreshift.spectral import MelConfig
from genreshift.train import runtime as rtm
from genreshift.checkpoint import (
    check_same_config,
    classifier_payload,
    provenance,
    read_checkpoint,
    unwrap,
    write_checkpoint,
)
from genreshift.train.config import ClassifierTrainConfig, refuse_changed

INFERENCE_FILE = "classifier.pt"
RESUME_FILE = "resume.pt"
TB_DIR = "tb"
_STREAM_WINDOWS = 5


@dataclass
class ClassifierState:
    """Everything train_step reads and changes. The model may be DDP-wrapped."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    config: ClassifierTrainConfig
    device: torch.device
    precision: rtm.Precision
    scaler: torch.amp.GradScaler | None = None
    step: int = 0


def train_step(state: ClassifierState, batch: tuple[torch.Tensor, torch.Tensor]
               ) -> dict[str, float]:
    """One update on windows [B, n_mels, T] with genre labels [B]; returns loss and accuracy."""
    x, y = batch
    state.model.train()
    with state.precision.autocast(state.device):
        logits = state.model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=state.config.label_smoothing)
    state.opt.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.step(state.opt)
        state.scaler.update()
    else:
        loss.backward()
        state.opt.step()
    state.sched.step()
    state.step += 1
    acc = (logits.detach().argmax(1) == y).float().mean()
    loss_v, acc_v = torch.stack([loss.detach(), acc]).tolist()
    if state.scaler is None and not math.isfinite(loss_v):
        raise GenreshiftError(f"training diverged at step {state.step} (loss {loss_v}); start a "
                              "new run with a lower --lr")
    return {"loss": loss_v, "accuracy": acc_v}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, genres: Sequence[str], *,
             device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Window accuracy and loss on held-out windows [N, n_mels, T], overall and per genre."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        logits = torch.cat([model(chunk.to(device)).float().cpu()
                            for chunk in x.split(batch_size)])
    finally:
        model.train(was_training)
    pred = logits.argmax(1)
    out = {"accuracy": float((pred == y).float().mean()),
           "loss": float(F.cross_entropy(logits, y))}
    for i, g in enumerate(genres):
        mask = y == i
        if mask.any():
            out[f"accuracy/{g}"] = float((pred[mask] == i).float().mean())
    return out


def train_classifier(
    data: str | Path,
    out: str | Path,
    *,
    genres: Sequence[str] | None = None,
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    model: ClassifierConfig = ClassifierConfig(),
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
) -> ClassifierState:
    """Train (or continue, with ``resume``) a genre classifier on the mel directory ``data``.

    ``genres`` restricts the classes (default: every genre of the data, in the data's order).
    Checkpoint, resume and stop semantics as in :func:`genreshift.train.cyclegan.train_cyclegan`.
    """
    rt = rtm.init_runtime(config.device)
    try:
        return _run(rt, Path(data), Path(out), genres=genres, config=config, model_cfg=model,
                    resume=resume, stop_at=stop_at, progress=progress)
    finally:
        rtm.shutdown_runtime(rt)


def stored_configs(out: str | Path) -> dict[str, Any] | None:
    """The configs and genres of the run in ``out`` (for filling in a resume), or None."""
    path = Path(out) / RESUME_FILE
    if not path.is_file():
        return None
    ck = read_checkpoint(path, kind="classifier", role="resume")
    return {"train": ck["resume"]["train_config"], "model": ck["model_config"],
            "genres": ck["genres"]}


def _run(rt: rtm.Runtime, data: Path, out: Path, *, genres: Sequence[str] | None,
         config: ClassifierTrainConfig, model_cfg: ClassifierConfig, resume: bool,
         stop_at: int | None, progress: bool) -> ClassifierState:
    from genreshift.data.windows import MelWindows, load_manifest

    device = rt.device
    manifest = load_manifest(data)
    mel = MelConfig.from_dict(manifest["mel_config"])
    resume_path = out / RESUME_FILE
    ck = None
    if resume_path.exists():
        if not resume:
            raise GenreshiftError(f"{out} already holds a run ({RESUME_FILE}); pass --resume to "
                                  "continue it, or choose another --out")
        ck = read_checkpoint(resume_path, kind="classifier", role="resume")
    if ck is not None and genres is None:
        genres = ck["genres"]
    genres = list(manifest["genres"] if genres is None else genres)
    if len(genres) < 2:
        raise GenreshiftError(f"a classifier needs at least two genres, got {genres}")
    cfg = replace(model_cfg, n_mels=mel.n_mels, n_classes=len(genres))
    if ck is not None:
        check_same_config(resume_path, "the data's mel config", ck["mel_config"], mel.to_dict(),
                          "resume with the mel directory the run was started on")
        if list(ck["genres"]) != genres:
            raise GenreshiftError(f"{resume_path}: the run classifies {', '.join(ck['genres'])}"
                                  f", not {', '.join(genres)}; resume with the same genres")
        refuse_changed(resume_path, ck["resume"]["train_config"], config)
        check_same_config(resume_path, "classifier config", ck["model_config"], cfg.to_dict(),
                          "resume without architecture options, or start a new run")

    rtm.setup_determinism(config.deterministic, device)
    rtm.setup_threads(config.threads)
    precision = rtm.resolve_precision(config.amp, device)
    torch.manual_seed(config.seed)
    net = GenreClassifier(cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, rtm.LinearDecay(config.steps,
                                                                   config.decay_start))
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
    windows = MelWindows(data, split="train", genres=genres, frames=cfg.frames,
                         augment=config.augment, seed=config.seed)
    sampler = rtm.WindowSampler(windows, seed=rtm.derive_seed(config.seed, rt.rank,
                                                              _STREAM_WINDOWS))
    state = ClassifierState(model=net, opt=opt, sched=sched, config=config, device=device,
                            precision=precision, scaler=scaler)
    seconds_before = 0.0
    if ck is not None:
        stored = ck["resume"]
        net.load_state_dict(ck["state_dict"]["classifier"])
        opt.load_state_dict(stored["opt"])
        sched.load_state_dict(stored["sched"])
        if scaler is not None and stored.get("scaler"):
            scaler.load_state_dict(stored["scaler"])
        state.step = int(stored["step"])
        seconds_before = float(ck["provenance"].get("train_seconds", 0.0))
        if len(stored["ranks"]) == rt.world_size:
            mine = stored["ranks"][rt.rank]
            rtm.set_rng_state(mine["rng"], device)
            sampler.load_state_dict(mine["sampler"])
        else:
            rtm.log.warning("resuming %d process(es) from a run of %d: the window random "
                            "stream restarts", rt.world_size, len(stored["ranks"]))
            sampler.generator.manual_seed(rtm.derive_seed(config.seed, rt.rank, _STREAM_WINDOWS,
                                                          state.step))
    if rt.distributed:
        # Batch-norm statistics: DDP broadcasts rank 0's running buffers at every forward.
        state.model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)

    writer: Any = None
    val: tuple[torch.Tensor, torch.Tensor] | None = None
    if rt.is_main:
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(out / TB_DIR))
        held_out, why = rtm.open_validation(data, genres, [cfg.frames], config.seed)
        if held_out is None:
            rtm.log.warning("no validation during this run: %s", why)
        else:
            val = rtm.fixed_windows(held_out, config.val_windows)

    def checkpoint(bar: Any) -> None:
        mine = {"rng": rtm.rng_state(device), "sampler": sampler.state_dict()}
        ranks = rtm.gather_to_main(rt, mine)
        if not rt.is_main:
            return
        ds = manifest.get("dataset", {})
        prov = provenance(dataset=str(data), steps=state.step,
                          train_seconds=seconds_before + time.perf_counter() - started,
                          data_kind=ds.get("kind"), data_source=ds.get("source"),
                          data_created=manifest.get("created"), processes=rt.world_size,
                          device=device.type, precision=precision.name)
        payload = classifier_payload(model=state.model, config=cfg, mel_config=mel,
                                     genres=genres, provenance=prov)
        write_checkpoint(out / INFERENCE_FILE, payload)
        resume_part = {
            "step": state.step, "train_config": config.to_dict(),
            "opt": rtm.to_cpu(state.opt.state_dict()), "sched": state.sched.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "ranks": ranks,
        }
        write_checkpoint(out / RESUME_FILE, {**payload, "role": "resume", "resume": resume_part})
        rtm.say(bar, f"step {state.step}: wrote {out / INFERENCE_FILE} and {out / RESUME_FILE}")

    def validate(bar: Any) -> None:
        if val is None:
            return
        metrics = evaluate(state.model, *val, genres, device=device)
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, state.step)
        writer.flush()
        per = " ".join(f"{g} {metrics[f'accuracy/{g}']:.2f}" for g in genres
                       if f"accuracy/{g}" in metrics)
        rtm.say(bar, f"step {state.step}: val accuracy {metrics['accuracy']:.3f} "
                     f"loss {metrics['loss']:.3f} ({per})")

    started = time.perf_counter()
    end = config.steps if stop_at is None else min(config.steps, stop_at)
    sums, count, busy = torch.zeros(2, dtype=torch.float64), 0, 0.0
    try:
        with rtm.progress_bar(config.steps, state.step, progress and rt.is_main,
                              "classifier") as bar:
            if state.step >= end:
                if rt.is_main:
                    rtm.say(bar, f"nothing to do: the run in {out} is at step {state.step}")
                return state
            while state.step < end:
                t0 = time.perf_counter()
                x, y = sampler.batch(config.batch_size, state.step)
                res = train_step(state, (x.to(device, non_blocking=True), y.to(device)))
                busy += time.perf_counter() - t0  # data + step; not logging or checkpoints
                sums += torch.tensor([res["loss"], res["accuracy"]], dtype=torch.float64)
                count += 1
                bar.update(1)
                step, last = state.step, state.step == end
                if step % config.log_every == 0 or last:
                    loss, acc = rtm.all_mean(rt, sums / count).tolist()
                    step_s = busy / count
                    if rt.is_main:
                        writer.add_scalar("loss/train", loss, step)
                        writer.add_scalar("accuracy/train", acc, step)
                        writer.add_scalar("lr", state.sched.get_last_lr()[0], step)
                        writer.add_scalar("time/step_s", step_s, step)
                        writer.add_scalar("time/windows_per_s",
                                          config.batch_size * rt.world_size / max(step_s, 1e-9),
                                          step)
                        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}")
                    sums.zero_()
                    count, busy = 0, 0.0
                if step % config.checkpoint_every == 0 or last:
                    checkpoint(bar)
                if rt.is_main and (step % config.val_every == 0 or step == config.steps):
                    validate(bar)
        rtm.barrier(rt)
    finally:
        if writer is not None:
            writer.close()
    return state
