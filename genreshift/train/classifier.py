"""Training of the genre classifier (genreshift.models.classifier) on log-mel windows.

A run directory holds ``classifier.pt`` (inference: weights + configs + genre names +
provenance), ``resume.pt`` (+ optimiser, scheduler, step, per-rank random states, training
config) and ``tb/`` (loss, accuracy, learning rate, step time, validation accuracy overall and
per genre). Batches are balanced over genres (a genre uniformly, then one of its windows), so a
genre with more hours does not dominate. Resumable and distributed exactly like the converter
runs (genreshift.train.cyclegan): both run the loop of genreshift.train.loop.

With ``--real MELDIR`` (excerpts of real recordings, `data real` then `data tensors`) and
``real_windows`` > 0, each step also draws that many real excerpts, each at two random positions
(two views), and adds a contrastive term (InfoNCE, as in SimCLR) of weight ``contrastive``: the
projected pooled features of one view must pick out the other view of the same excerpt among
the batch's views. Real recordings carry no genre label, so this is how they shape the
convolutional features: the network learns what tells one real recording from another
(instruments, texture, production) as well as what tells the synthetic genres apart. Reference
mode reads its style statistics off these features (genreshift.models.style). The projection
head is training-only: it lives in the resume file, never in the inference file.
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

from genreshift.checkpoint import (check_same_config, classifier_payload, cpu_state_dict,
                                   unwrap)
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
_STREAM_REAL = 6
PROJECTION_DIM = 64  # the contrastive head's output


class ContrastiveNet(nn.Module):
    """The classifier with a training-only projection head (pooled features -> unit vectors).

    One forward for labelled windows and real views together, so batch norm sees them in one
    batch and DDP syncs every weight: ``(logits of the first n_labelled rows, unit projections
    of the rest)``.
    """

    def __init__(self, classifier: GenreClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        width = classifier.fc.in_features
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, PROJECTION_DIM))

    def forward(self, x: torch.Tensor, n_labelled: int) -> tuple[torch.Tensor, torch.Tensor]:
        clf = self.classifier
        clf.check_input(x)
        pooled = clf.embed(x)
        logits = clf.fc(clf.dropout(pooled[:n_labelled]))
        return logits, F.normalize(self.head(pooled[n_labelled:]).float(), dim=-1)


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over two views [N, D] (unit rows): each of the 2N views must find its partner
    among the other 2N - 1 by cosine similarity / temperature. log(2N - 1) for features that
    know nothing, 0 for views that only match their partner."""
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


class TwoViewSampler(rtm.WindowSampler):
    """Real excerpts, each drawn at two random positions: ([size, n_mels, T], the same
    excerpts' second views). An excerpt is chosen as WindowSampler chooses a window (a group
    uniformly, then one of its windows); the two views come from two epochs of MelWindows, so
    they are independent positions (and augmentations) in the same excerpt."""

    def views(self, size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        picks = self.pick(size)
        out = []
        for epoch in (2 * step, 2 * step + 1):
            self.windows.set_epoch(epoch)
            out.append(torch.stack([self.windows[i][0] for i in picks]))
        return out[0], out[1]


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


def train_step(state: ClassifierState, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """One update on windows [B, n_mels, T] with genre labels [B] and, for a ContrastiveNet
    model, two views [N, n_mels, T] of N real excerpts; returns the loss (cross-entropy plus
    the weighted contrastive term), the accuracy and the contrastive term (0 without views)."""
    x, y = batch[0], batch[1]
    views = batch[2:] if len(batch) > 2 else None
    state.model.train()
    cfg = state.config
    with state.precision.autocast(state.device):
        if views is not None:
            logits, z = state.model(torch.cat([x, *views]), len(x))
        else:
            logits = state.model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    nce = torch.zeros((), device=loss.device)
    if views is not None:
        z1, z2 = z.chunk(2)
        nce = info_nce(z1, z2, cfg.temperature)
        loss = loss + cfg.contrastive * nce
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
    loss_v, acc_v, nce_v = torch.stack([loss.detach(), acc, nce.detach()]).tolist()
    if state.scaler is None and not math.isfinite(loss_v):
        raise GenreshiftError(f"training diverged at step {state.step} (loss {loss_v}); start a "
                              "new run with a lower --lr")
    return {"loss": loss_v, "accuracy": acc_v, "contrastive": nce_v}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, genres: Sequence[str], *,
             device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Window accuracy and loss on held-out windows [N, n_mels, T], overall and per genre."""
    model = unwrap(model)
    if isinstance(model, ContrastiveNet):
        model = model.classifier
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
    real: str | Path | None = None,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
) -> ClassifierState:
    """Train (or continue, with ``resume``) a genre classifier on the mel directory ``data``.

    ``genres`` restricts the classes (default: every genre of the data, in the data's order).
    ``real``: a mel directory of real recordings for the contrastive term (with
    ``config.real_windows`` > 0; see the module docstring). Checkpoint, resume and stop
    semantics as in :func:`genreshift.train.cyclegan.train_cyclegan`.
    """
    with rtm.runtime(config.device) as rt:
        return _run(rt, Path(data), Path(out), genres=genres, config=config, model_cfg=model,
                    real=Path(real) if real is not None else None, resume=resume,
                    stop_at=stop_at, progress=progress)


def stored_configs(out: str | Path) -> dict[str, Any] | None:
    """The configs and genres of the run in ``out`` (for filling in a resume), or None."""
    ck = loop.stored_run(out, "classifier")
    if ck is None:
        return None
    return {"train": ck["resume"]["train_config"], "model": ck["model_config"],
            "genres": ck["genres"]}


def _run(rt: rtm.Runtime, data: Path, out: Path, *, genres: Sequence[str] | None,
         config: ClassifierTrainConfig, model_cfg: ClassifierConfig, real: Path | None,
         resume: bool, stop_at: int | None, progress: bool) -> ClassifierState:
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
        stored_real = ck["resume"].get("real_data")
        if (stored_real is None) != (real is None):
            raise GenreshiftError(
                f"{resume_path}: the run was started "
                + (f"with --real {stored_real}" if stored_real else "without --real")
                + "; resume it the same way")
    if real is not None and config.real_windows == 0:
        raise GenreshiftError(f"--real {real} is given but --real-windows is 0: give "
                              "--real-windows N (N >= 2) to train on the real recordings")

    precision = rtm.setup_run(config, device)
    net = GenreClassifier(cfg).to(device)
    trained: nn.Module = net if real is None else ContrastiveNet(net).to(device)
    opt = torch.optim.AdamW(trained.parameters(), lr=config.lr,
                            weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, rtm.LinearDecay(config.steps,
                                                                   config.decay_start))
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None
    windows = MelWindows(data, split="train", genres=genres, frames=cfg.frames,
                         augment=config.augment, seed=config.seed)
    sampler = rtm.WindowSampler(windows, seed=rtm.derive_seed(config.seed, rt.rank,
                                                              _STREAM_WINDOWS))
    streams: dict[str, tuple[Any, int]] = {"sampler": (sampler, _STREAM_WINDOWS)}
    real_sampler = None
    if real is not None:
        real_manifest = load_manifest(real)
        check_same_config(real, "mel config of the real recordings",
                          real_manifest["mel_config"], mel.to_dict(),
                          "build both mel directories with the same analysis settings")
        real_windows = MelWindows(real, split="train", frames=cfg.frames, augment=config.augment,
                                  seed=config.seed + 2)
        real_sampler = TwoViewSampler(real_windows, seed=rtm.derive_seed(config.seed, rt.rank,
                                                                         _STREAM_REAL))
        streams["real_sampler"] = (real_sampler, _STREAM_REAL)
    state = ClassifierState(model=trained, opt=opt, sched=sched, config=config, device=device,
                            precision=precision, scaler=scaler)
    seconds_before = 0.0
    if ck is not None:
        net.load_state_dict(ck["state_dict"]["classifier"])
        if isinstance(trained, ContrastiveNet):
            trained.head.load_state_dict(ck["resume"]["head"])
        state.step, seconds_before = loop.restore(
            ck, rt, parts={"opt": opt, "sched": sched}, scaler=scaler, streams=streams,
            seed=config.seed)
    if rt.distributed:
        # Batch-norm statistics: DDP broadcasts rank 0's running buffers at every forward.
        state.model = rtm.wrap_ddp(rt, trained)

    _Session(rt=rt, state=state, out=out, data=data, manifest=manifest, streams=streams,
             seconds_before=seconds_before, mel=mel, model_cfg=cfg, genres=genres,
             sampler=sampler, real=real, real_sampler=real_sampler).run(stop_at, progress)
    return state


class _Session(loop.Session):
    """A classifier run's loop: balanced batches, loss and accuracy, held-out accuracy."""

    inference_file = INFERENCE_FILE
    terms = ("loss", "accuracy", "contrastive")
    desc = "classifier"

    def __init__(self, *, mel: MelConfig, model_cfg: ClassifierConfig, genres: list[str],
                 sampler: rtm.WindowSampler, real: Path | None,
                 real_sampler: TwoViewSampler | None, **common: Any) -> None:
        super().__init__(**common)
        self.mel, self.model_cfg, self.genres, self.sampler = mel, model_cfg, genres, sampler
        self.real, self.real_sampler = real, real_sampler
        cfg = self.state.config
        self.windows_per_step = cfg.batch_size + (2 * cfg.real_windows if real_sampler else 0)
        self.val: tuple[torch.Tensor, torch.Tensor] | None = None

    def classifier(self) -> GenreClassifier:
        model = unwrap(self.state.model)
        return model.classifier if isinstance(model, ContrastiveNet) else model

    def step(self) -> dict[str, float]:
        state = self.state
        dev = state.device
        x, y = self.sampler.batch(state.config.batch_size, state.step)
        batch: tuple[torch.Tensor, ...] = (x.to(dev, non_blocking=True), y.to(dev))
        if self.real_sampler is not None:
            v1, v2 = self.real_sampler.views(state.config.real_windows, state.step)
            batch += (v1.to(dev, non_blocking=True), v2.to(dev, non_blocking=True))
        return train_step(state, batch)

    def log(self, means: dict[str, float], step: int) -> dict[str, str]:
        w = self.writer
        w.add_scalar("loss/train", means["loss"], step)
        w.add_scalar("accuracy/train", means["accuracy"], step)
        w.add_scalar("lr", self.state.sched.get_last_lr()[0], step)
        postfix = {"loss": f"{means['loss']:.3f}", "acc": f"{means['accuracy']:.2f}"}
        if self.real_sampler is not None:
            w.add_scalar("contrastive/train", means["contrastive"], step)
            postfix["nce"] = f"{means['contrastive']:.2f}"
        return postfix

    def payload(self, prov: dict) -> dict:
        if self.real is not None:
            prov = {**prov, "real_data": str(self.real)}
        return classifier_payload(model=self.classifier(), config=self.model_cfg,
                                  mel_config=self.mel, genres=self.genres, provenance=prov)

    def resume_state(self) -> dict:
        state = self.state
        model = unwrap(state.model)
        return {"opt": rtm.to_cpu(state.opt.state_dict()), "sched": state.sched.state_dict(),
                "scaler": state.scaler.state_dict() if state.scaler is not None else None,
                "real_data": None if self.real is None else str(self.real),
                **({"head": cpu_state_dict(model.head)} if isinstance(model, ContrastiveNet)
                   else {})}

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
