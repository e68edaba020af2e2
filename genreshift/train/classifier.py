"""Training of the genre classifier (genreshift.models.classifier) on log-mel windows.

A run directory holds ``classifier.pt`` (inference: weights + configs + genre names +
provenance), ``resume.pt`` (+ optimiser, scheduler, step, per-rank random states, training
config) and ``tb/`` (loss, accuracy, learning rate, step time, validation accuracy overall and
per genre). Batches are balanced over genres (a genre uniformly, then one of its windows), so a
genre with more hours does not dominate. Resumable and distributed exactly like the converter
runs (genreshift.train.cyclegan): both run the loop of genreshift.train.loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genreshift.checkpoint import classifier_payload, unwrap
from genreshift.errors import GenreshiftError
from genreshift.models.classifier import GenreClassifier
from genreshift.models.config import ClassifierConfig
from genreshift.spectral import MelConfig
from genreshift.train import loop
from genreshift.train import runtime as rtm
from genreshift.train.config import ClassifierTrainConfig
from genreshift.train.loop import RESUME_FILE, TB_DIR  # noqa: F401  (re-exported)

INFERENCE_FILE = "classifier.pt"
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
    with rtm.runtime(config.device) as rt:
        return _run(rt, Path(data), Path(out), genres=genres, config=config, model_cfg=model,
                    resume=resume, stop_at=stop_at, progress=progress)


def stored_configs(out: str | Path) -> dict[str, Any] | None:
    """The configs and genres of the run in ``out`` (for filling in a resume), or None."""
    ck = loop.stored_run(out, "classifier")
    if ck is None:
        return None
    return {"train": ck["resume"]["train_config"], "model": ck["model_config"],
            "genres": ck["genres"]}


def _run(rt: rtm.Runtime, data: Path, out: Path, *, genres: Sequence[str] | None,
         config: ClassifierTrainConfig, model_cfg: ClassifierConfig, resume: bool,
         stop_at: int | None, progress: bool) -> ClassifierState:
    from genreshift.data.windows import MelWindows, load_manifest

    device = rt.device
    manifest = load_manifest(data)
    mel = MelConfig.from_dict(manifest["mel_config"])
    ck = loop.open_run(out, kind="classifier", resume=resume, mel=mel)
    if ck is not None and genres is None:
        genres = ck["genres"]
    genres = list(manifest["genres"] if genres is None else genres)
    if len(genres) < 2:
        raise GenreshiftError(f"a classifier needs at least two genres, got {genres}")
    cfg = replace(model_cfg, n_mels=mel.n_mels, n_classes=len(genres))
    if ck is not None:
        resume_path = out / RESUME_FILE
        if list(ck["genres"]) != genres:
            raise GenreshiftError(f"{resume_path}: the run classifies {', '.join(ck['genres'])}"
                                  f", not {', '.join(genres)}; resume with the same genres")
        loop.refuse_other_settings(resume_path, ck, config,
                                   [("classifier config", ck["model_config"], cfg.to_dict())])

    precision = rtm.setup_run(config, device)
    net = GenreClassifier(cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, rtm.LinearDecay(config.steps,
                                                                   config.decay_start))
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
    windows = MelWindows(data, split="train", genres=genres, frames=cfg.frames,
                         augment=config.augment, seed=config.seed)
    sampler = rtm.WindowSampler(windows, seed=rtm.derive_seed(config.seed, rt.rank,
                                                              _STREAM_WINDOWS))
    streams = {"sampler": (sampler, _STREAM_WINDOWS)}
    state = ClassifierState(model=net, opt=opt, sched=sched, config=config, device=device,
                            precision=precision, scaler=scaler)
    seconds_before = 0.0
    if ck is not None:
        net.load_state_dict(ck["state_dict"]["classifier"])
        state.step, seconds_before = loop.restore(
            ck, rt, parts={"opt": opt, "sched": sched}, scaler=scaler, streams=streams,
            seed=config.seed)
    if rt.distributed:
        # Batch-norm statistics: DDP broadcasts rank 0's running buffers at every forward.
        state.model = rtm.wrap_ddp(rt, net)

    _Session(rt=rt, state=state, out=out, data=data, manifest=manifest, streams=streams,
             seconds_before=seconds_before, mel=mel, model_cfg=cfg, genres=genres,
             sampler=sampler).run(stop_at, progress)
    return state


class _Session(loop.Session):
    """A classifier run's loop: balanced batches, loss and accuracy, held-out accuracy."""

    inference_file = INFERENCE_FILE
    terms = ("loss", "accuracy")
    desc = "classifier"

    def __init__(self, *, mel: MelConfig, model_cfg: ClassifierConfig, genres: list[str],
                 sampler: rtm.WindowSampler, **common: Any) -> None:
        super().__init__(**common)
        self.mel, self.model_cfg, self.genres, self.sampler = mel, model_cfg, genres, sampler
        self.windows_per_step = self.state.config.batch_size
        self.val: tuple[torch.Tensor, torch.Tensor] | None = None

    def step(self) -> dict[str, float]:
        state = self.state
        x, y = self.sampler.batch(state.config.batch_size, state.step)
        return train_step(state, (x.to(state.device, non_blocking=True), y.to(state.device)))

    def log(self, means: dict[str, float], step: int) -> dict[str, str]:
        w = self.writer
        w.add_scalar("loss/train", means["loss"], step)
        w.add_scalar("accuracy/train", means["accuracy"], step)
        w.add_scalar("lr", self.state.sched.get_last_lr()[0], step)
        return {"loss": f"{means['loss']:.3f}", "acc": f"{means['accuracy']:.2f}"}

    def payload(self, prov: dict) -> dict:
        return classifier_payload(model=self.state.model, config=self.model_cfg,
                                  mel_config=self.mel, genres=self.genres, provenance=prov)

    def resume_state(self) -> dict:
        state = self.state
        return {"opt": rtm.to_cpu(state.opt.state_dict()), "sched": state.sched.state_dict(),
                "scaler": state.scaler.state_dict() if state.scaler is not None else None}

    def open_validation(self) -> None:
        cfg = self.state.config
        held_out, why = rtm.open_validation(self.data, self.genres, [self.model_cfg.frames],
                                            cfg.seed)
        if held_out is None:
            rtm.log.warning("no validation during this run: %s", why)
        else:
            self.val = rtm.fixed_windows(held_out, cfg.val_windows)

    def validate(self, bar: Any) -> None:
        if self.val is None:
            return
        state, genres = self.state, self.genres
        metrics = evaluate(state.model, *self.val, genres, device=state.device)
        for k, v in metrics.items():
            self.writer.add_scalar(f"val/{k}", v, state.step)
        self.writer.flush()
        per = " ".join(f"{g} {metrics[f'accuracy/{g}']:.2f}" for g in genres
                       if f"accuracy/{g}" in metrics)
        rtm.say(bar, f"step {state.step}: val accuracy {metrics['accuracy']:.3f} "
                     f"loss {metrics['loss']:.3f} ({per})")
