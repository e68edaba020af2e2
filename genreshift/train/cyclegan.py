"""CycleGAN training of a genre converter: two generators (a->b, b->a), two discriminators.

Losses (weights named in TrainConfig): LSGAN adversarial, L1 cycle consistency (a->b->a must
give a back: the tune survives), L1 identity (a b-window through a->b stays as it is: the
generator changes only what is not yet b). Adam with a linear decay to zero, a pool of past
fakes for the discriminators, random windows with light augmentation.

A run directory holds::

    converter.pt   inference file: both generators + configs + genres + provenance
    resume.pt      resume file: the above + discriminators, optimisers, schedulers, step,
                   per-rank random states and image pools, training config
    tb/            TensorBoard: every loss term, learning rates, step time, validation metrics,
                   input / converted / cycled mel images, audio samples

Both files are rewritten atomically every ``checkpoint_every`` steps; ``resume=True`` continues
from resume.pt and reaches the same weights as an uninterrupted run (on CPU, bit for bit).
Under ``torchrun`` the generators and discriminators are wrapped in DistributedDataParallel,
each rank draws its own windows, and rank 0 writes files and logs. The loop, the resume checks
and the cadence are the classifier's too (genreshift.train.loop); this module supplies the
step, the validation, the samples and what the files hold.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genreshift.checkpoint import (
    Classifier,
    Domain,
    check_same_config,
    converter_payload,
    cpu_state_dict,
    load_classifier,
    read_checkpoint,
    unwrap,
)
from genreshift.errors import GenreshiftError
from genreshift.models.config import DiscriminatorConfig, GeneratorConfig
from genreshift.models.content import content_loss
from genreshift.models.discriminator import Discriminator
from genreshift.models.generator import Generator
from genreshift.spectral import MelConfig, mel_to_wav
from genreshift.train import loop
from genreshift.train import runtime as rtm
from genreshift.train.config import LEGACY_TRAIN_VALUES, TrainConfig
from genreshift.train.loop import RESUME_FILE, TB_DIR  # noqa: F401  (re-exported)

INFERENCE_FILE = "converter.pt"

# Random streams, one generator each per rank (see runtime.derive_seed).
_STREAM_POOL_A, _STREAM_POOL_B, _STREAM_WINDOWS_A, _STREAM_WINDOWS_B = 1, 2, 3, 4

_STREAM_REAL = 5

LOSS_TERMS = ("d_a", "d_b", "g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b", "identity_a",
              "identity_b", "content_chroma", "content_onset", "paired", "g_total", "d_total")


# --------------------------------------------------------------------------- losses


def lsgan_d_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares discriminator loss over the scales: real patches -> 1, fakes -> 0."""
    per_scale = [0.5 * ((r.float() - 1) ** 2).mean() + 0.5 * (f.float() ** 2).mean()
                 for r, f in zip(real, fake)]
    return torch.stack(per_scale).mean()


def lsgan_g_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares generator loss over the scales: fakes should score 1."""
    return torch.stack([((f.float() - 1) ** 2).mean() for f in fake]).mean()


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(x.float(), y.float())


# --------------------------------------------------------------------------- image pool


class ImagePool:
    """The CycleGAN history buffer (Shrivastava et al. 2017): the discriminators see a mix of
    the newest fakes and fakes from earlier steps, which damps the G/D oscillation.

    Until ``size`` fakes are stored every new fake is kept and passed through; afterwards each
    new fake, with probability 1/2, is swapped for a random stored one. Stored on the training
    device as float32 (``device``: where load_state_dict puts them back); its own random
    generator makes it resumable.
    """

    def __init__(self, size: int, seed: int, device: torch.device | None = None) -> None:
        self.size = size
        self.device = device
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] new fakes -> [B, n_mels, T] fakes for the discriminator."""
        if self.size == 0:
            return fakes.detach()
        out = []
        for img in fakes.detach().float():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand((), generator=self.generator)) < 0.5:
                j = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict:
        images = torch.stack(self.images).cpu() if self.images else torch.zeros(0)
        return {"images": images, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | None = None) -> None:
        device = self.device if device is None else device
        self.images = [img if device is None else img.to(device) for img in state["images"]]
        self.generator.set_state(state["generator"])


# --------------------------------------------------------------------------- the step


@dataclass
class State:
    """Everything train_step reads and changes. Modules may be DDP-wrapped."""

    g_ab: nn.Module  # a -> b
    g_ba: nn.Module  # b -> a
    d_a: nn.Module  # real a vs g_ba's fakes
    d_b: nn.Module  # real b vs g_ab's fakes
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler
    pool_a: ImagePool  # past fakes of domain a (outputs of g_ba)
    pool_b: ImagePool  # past fakes of domain b (outputs of g_ab)
    config: TrainConfig
    device: torch.device
    precision: rtm.Precision
    mel: MelConfig | None = None  # the data's analysis settings (for the content loss)
    scaler: torch.amp.GradScaler | None = None
    step: int = 0


def _requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def _backward_step(state: State, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.step(opt)
    else:
        loss.backward()
        opt.step()


def train_step(state: State, batch: Sequence[torch.Tensor]) -> dict[str, float]:
    """One CycleGAN update on real windows on the device: ``(a, b)`` or ``(a, b, paired)``.

    ``a`` is [Ba, n_mels, T] and ``b`` [Bb, n_mels, T] (Ba >= Bb: extra a rows are unpaired,
    e.g. windows of real recordings); ``paired`` is a [Bb] bool mask of the rows where b[i] is
    a[i]'s tune rendered in domain b. Order: the generators translate both batches; the
    discriminators learn on the real windows against pooled, detached fakes; then the
    generators learn against the updated discriminators (adversarial + cycle + identity +
    content of each translation against its own input + paired L1 of a->b against the
    paired b rows). Returns every loss term as a float.
    """
    cfg = state.config
    real_a, real_b = batch[0], batch[1]
    paired = batch[2] if len(batch) > 2 else None
    use_identity = cfg.identity > 0 and (cfg.identity_until == 0
                                         or state.step < cfg.identity_until)
    autocast = state.precision.autocast(state.device)

    with autocast:
        fake_b = state.g_ab(real_a)
        fake_a = state.g_ba(real_b)

    # Discriminators, on fakes detached from the generators' graph.
    _requires_grad([state.d_a, state.d_b], True)
    with autocast:
        loss_d_a = lsgan_d_loss(state.d_a(real_a), state.d_a(state.pool_a.query(fake_a)))
        loss_d_b = lsgan_d_loss(state.d_b(real_b), state.d_b(state.pool_b.query(fake_b)))
        loss_d = loss_d_a + loss_d_b
    _backward_step(state, loss_d, state.opt_d)

    # Generators. The discriminators are frozen and called unwrapped: their weights are the
    # same on every rank, and going through DDP would make it wait for gradients that this
    # backward pass never produces for them.
    d_a, d_b = unwrap(state.d_a), unwrap(state.d_b)
    _requires_grad([d_a, d_b], False)
    zero = torch.zeros((), device=state.device)
    with autocast:
        adv_ab = lsgan_g_loss(d_b(fake_b))
        adv_ba = lsgan_g_loss(d_a(fake_a))
        cycle_a = l1(state.g_ba(fake_b), real_a)
        cycle_b = l1(state.g_ab(fake_a), real_b)
        if use_identity:
            identity_a = l1(state.g_ba(real_a), real_a)
            identity_b = l1(state.g_ab(real_b), real_b)
        else:
            identity_a = identity_b = zero
        content_chroma = content_onset = zero
        if cfg.content_chroma > 0 or cfg.content_onset > 0:
            # Without the data's settings: the default analysis with the batch's band count.
            mel = state.mel if state.mel is not None else MelConfig(n_mels=real_a.shape[1])
            parts = [content_loss(fake, real, mel) for fake, real in
                     ((fake_b, real_a), (fake_a, real_b))]
            content_chroma = parts[0]["chroma"] + parts[1]["chroma"]
            content_onset = parts[0]["onset"] + parts[1]["onset"]
        paired_l1 = zero
        if cfg.paired > 0 and paired is not None and bool(paired.any()):
            rows = paired.nonzero().flatten()
            paired_l1 = l1(fake_b[rows], real_b[rows])
        loss_g = (cfg.adversarial * (adv_ab + adv_ba) + cfg.cycle * (cycle_a + cycle_b)
                  + cfg.identity * (identity_a + identity_b)
                  + cfg.content_chroma * content_chroma + cfg.content_onset * content_onset
                  + cfg.paired * paired_l1)
    _backward_step(state, loss_g, state.opt_g)
    _requires_grad([d_a, d_b], True)
    if state.scaler is not None:
        state.scaler.update()
    state.sched_g.step()
    state.sched_d.step()
    state.step += 1

    terms = (loss_d_a, loss_d_b, adv_ab, adv_ba, cycle_a, cycle_b, identity_a, identity_b,
             content_chroma, content_onset, paired_l1, loss_g, loss_d)
    values = torch.stack([t.detach().float() for t in terms]).tolist()  # one device sync
    if state.scaler is None and not all(math.isfinite(v) for v in values):
        raise GenreshiftError(
            f"training diverged at step {state.step} (a loss is not finite: "
            f"{dict(zip(LOSS_TERMS, values))}); start a new run with lower learning rates "
            "(--lr-g, --lr-d)")
    return dict(zip(LOSS_TERMS, values))


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(g_ab: nn.Module, g_ba: nn.Module, real_a: torch.Tensor, real_b: torch.Tensor, *,
             classifier: Classifier | None, a: Domain, b: Domain, device: torch.device,
             batch_size: int = 8, mel: MelConfig | None = None,
             real: torch.Tensor | None = None) -> dict[str, float]:
    """Held-out metrics for both directions (in float32, eval mode).

    ``cycle_x``: L1 between x and its round trip; ``identity_x``: L1 between x and x passed
    through the generator *into* x's own domain; ``change_xy``: L1 between x and its conversion
    (near 0 means the converter does nothing). With a classifier: ``p_target_xy``, the mean
    probability that converted windows belong to the target domain (summed over its genres),
    ``acc_xy`` the share whose top genre is in the target domain, and both for the unconverted
    input (``..._input``) as the baseline. With ``real`` (held-out windows of real recordings)
    and ``mel``: ``real_change``, ``real_chroma`` and ``real_onset``, how far a->b moves them
    (L1, and the content loss's two terms).
    """
    g_ab, g_ba = unwrap(g_ab), unwrap(g_ba)
    modes = g_ab.training, g_ba.training
    g_ab.eval()
    g_ba.eval()
    out: dict[str, float] = {}
    try:
        for src, dst, there, back, windows in (("a", "b", g_ab, g_ba, real_a),
                                               ("b", "a", g_ba, g_ab, real_b)):
            target = b if dst == "b" else a
            fakes, sums = [], {"cycle": 0.0, "identity": 0.0, "change": 0.0}
            for chunk in windows.split(batch_size):
                chunk = chunk.to(device).float()
                fake = there(chunk)
                sums["cycle"] += float((back(fake) - chunk).abs().mean()) * len(chunk)
                sums["identity"] += float((back(chunk) - chunk).abs().mean()) * len(chunk)
                sums["change"] += float((fake - chunk).abs().mean()) * len(chunk)
                fakes.append(fake.cpu())
            n = len(windows)
            out[f"cycle_{src}"] = sums["cycle"] / n
            out[f"identity_{src}"] = sums["identity"] / n
            out[f"change_{src}{dst}"] = sums["change"] / n
            if classifier is not None:
                from genreshift.models.classifier import window_probabilities

                idx = torch.tensor([classifier.genres.index(g) for g in target.genres])
                for suffix, mels in (("", torch.cat(fakes)), ("_input", windows)):
                    probs = window_probabilities(classifier.model, mels.float())
                    out[f"p_target_{src}{dst}{suffix}"] = float(probs[:, idx].sum(1).mean())
                    top = probs.argmax(1)
                    out[f"acc_{src}{dst}{suffix}"] = float(torch.isin(top, idx).float().mean())
        if real is not None and mel is not None:
            sums = {"change": 0.0, "chroma": 0.0, "onset": 0.0}
            for chunk in real.split(batch_size):
                chunk = chunk.to(device).float()
                fake = g_ab(chunk)
                c = content_loss(fake, chunk, mel)
                sums["change"] += float((fake - chunk).abs().mean()) * len(chunk)
                sums["chroma"] += float(c["chroma"]) * len(chunk)
                sums["onset"] += float(c["onset"]) * len(chunk)
            for k, v in sums.items():
                out[f"real_{k}"] = v / len(real)
    finally:
        g_ab.train(modes[0])
        g_ba.train(modes[1])
    return out


# --------------------------------------------------------------------------- the run


def stored_configs(out: str | Path) -> dict[str, dict] | None:
    """The configs and domains of the run in ``out`` (for filling in a resume), or None."""
    ck = loop.stored_run(out, "converter")
    if ck is None:
        return None
    legacy = {k: v for k, v in LEGACY_TRAIN_VALUES.items()
              if k in {f.name for f in fields(TrainConfig)}}
    return {"train": {**legacy, **ck["resume"]["train_config"]},
            "generator": GeneratorConfig.stored(ck["model_config"]).to_dict(),
            "discriminator": ck["resume"]["discriminator_config"], "domains": ck["domains"]}


def train_cyclegan(
    data: str | Path,
    out: str | Path,
    *,
    a: str | None = None,
    b: str | None = None,
    config: TrainConfig = TrainConfig(),
    generator: GeneratorConfig = GeneratorConfig(),
    discriminator: DiscriminatorConfig = DiscriminatorConfig(),
    resume: bool = False,
    classifier: str | Path | None = None,
    real: str | Path | None = None,
    init_from: str | Path | None = None,
    stop_at: int | None = None,
    progress: bool = True,
) -> State:
    """Train (or, with ``resume``, continue) a converter between domains ``a`` and ``b``.

    ``data`` is a mel directory (genreshift data tensors). A domain is a genre, a comma list
    of genres, or "rest". ``out`` receives converter.pt, resume.pt and tb/. Without ``resume``
    a directory that already holds a run is refused; with it, a missing resume file starts a
    new run, and an existing one must match the data, domains and every non-logistics setting
    (see genreshift.train.config). ``classifier`` adds the target-genre probability to
    validation. ``real`` is a mel directory of unlabelled real recordings (genreshift data
    real, then data tensors): ``config.real_windows`` of its windows join domain a's batch
    every step, with every loss but the paired one. ``init_from`` warm-starts a new run from
    another run's resume.pt (generators and discriminators) or a converter.pt (generators):
    same data analysis, architecture and domains, fresh optimisers and schedule; a resumed run
    must name the same file or none. ``stop_at`` ends this session after that step, with a
    checkpoint. Returns the final State (on every rank).
    """
    with rtm.runtime(config.device) as rt:
        return _run(rt, Path(data), Path(out), a=a, b=b, config=config, generator=generator,
                    discriminator=discriminator, resume=resume, classifier=classifier,
                    real=None if real is None else Path(real),
                    init_from=None if init_from is None else Path(init_from), stop_at=stop_at,
                    progress=progress)


def _run(rt: rtm.Runtime, data: Path, out: Path, *, a: str | None, b: str | None,
         config: TrainConfig, generator: GeneratorConfig, discriminator: DiscriminatorConfig,
         resume: bool, classifier: str | Path | None, real: Path | None,
         init_from: Path | None, stop_at: int | None, progress: bool) -> State:
    from genreshift.data.windows import MelWindows, load_manifest

    device = rt.device
    manifest = load_manifest(data)
    mel = MelConfig.from_dict(manifest["mel_config"])
    gcfg = replace(generator, n_mels=mel.n_mels)
    dcfg = replace(discriminator, n_mels=mel.n_mels)
    if config.frames < dcfg.min_frames:
        raise GenreshiftError(f"--frames {config.frames} is shorter than the discriminator "
                              f"accepts ({dcfg.min_frames}); use longer windows or fewer "
                              "discriminator layers/scales")

    resume_path = out / RESUME_FILE
    ck = loop.open_run(out, kind="converter", resume=resume, mel=mel)
    if ck is not None:
        stored = ck["resume"]
        loop.refuse_other_settings(resume_path, ck, config, [
            ("generator config", GeneratorConfig.stored(ck["model_config"]).to_dict(),
             gcfg.to_dict()),
            ("discriminator config", stored["discriminator_config"], dcfg.to_dict())])
        stored_real = stored.get("real_data")
        if (stored_real is None) != (real is None):
            raise GenreshiftError(
                f"{resume_path}: the run was started "
                + (f"with --real {stored_real}" if stored_real else "without --real")
                + "; resume it the same way")
        stored_init = stored.get("init_from")
        if init_from is not None and (stored_init is None
                                      or Path(stored_init["path"]) != init_from):
            raise GenreshiftError(
                f"{resume_path}: the run was started "
                + (f"from --init-from {stored_init['path']}" if stored_init
                   else "without --init-from")
                + f", not from {init_from}; resume it without --init-from")
        a = ck["domains"]["a"]["name"] if a is None else a
        b = ck["domains"]["b"]["name"] if b is None else b
    if a is None or b is None:
        raise GenreshiftError("name both domains (--a and --b): a genre, a comma list, or rest")
    dom_a, dom_b = rtm.resolve_domains(manifest["genres"], a, b)
    if ck is not None:
        for key, dom in (("a", dom_a), ("b", dom_b)):
            if list(ck["domains"][key]["genres"]) != list(dom.genres):
                raise GenreshiftError(
                    f"{resume_path}: domain {key} was {', '.join(ck['domains'][key]['genres'])}"
                    f" in the run but is {', '.join(dom.genres)} now; resume with the same "
                    "--a/--b and data")
    warm = None
    if ck is None and init_from is not None:
        warm = _read_warm_start(init_from, mel=mel, gcfg=gcfg, dcfg=dcfg, dom_a=dom_a,
                                dom_b=dom_b)

    clf = None
    if classifier is not None:
        clf = load_classifier(classifier, device=device)
        check_same_config(classifier, "mel config of the classifier", clf.mel_config.to_dict(),
                          mel.to_dict(), "train the classifier on the same mel directory")
        missing = [g for g in dom_a.genres + dom_b.genres if g not in clf.genres]
        if missing:
            raise GenreshiftError(f"{classifier}: the classifier does not know "
                                  f"{', '.join(missing)} (it knows {', '.join(clf.genres)})")

    precision = rtm.setup_run(config, device)
    g_ab, g_ba = Generator(gcfg).to(device), Generator(gcfg).to(device)
    d_a, d_b = Discriminator(dcfg).to(device), Discriminator(dcfg).to(device)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(itertools.chain(g_ab.parameters(), g_ba.parameters()),
                             lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()),
                             lr=config.lr_d, betas=betas)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, rtm.LinearDecay(config.steps,
                                                                       config.decay_start))
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, rtm.LinearDecay(config.steps,
                                                                       config.decay_start))
    scaler = torch.amp.GradScaler(device.type) if precision.scaler else None

    def seeded(stream: int) -> int:
        return rtm.derive_seed(config.seed, rt.rank, stream)

    pool_a = ImagePool(config.pool_size, seeded(_STREAM_POOL_A), device)
    pool_b = ImagePool(config.pool_size, seeded(_STREAM_POOL_B), device)
    train_a = MelWindows(data, split="train", genres=list(dom_a.genres), frames=config.frames,
                         augment=config.augment, seed=config.seed)
    train_b = MelWindows(data, split="train", genres=list(dom_b.genres), frames=config.frames,
                         augment=config.augment, seed=config.seed + 1)
    sampler_a: rtm.WindowSampler | rtm.PairedSampler
    if config.paired > 0:
        sampler_a = rtm.PairedSampler(train_a, train_b, seed=seeded(_STREAM_WINDOWS_A))
    else:
        sampler_a = rtm.WindowSampler(train_a, seed=seeded(_STREAM_WINDOWS_A))
    sampler_b = rtm.WindowSampler(train_b, seed=seeded(_STREAM_WINDOWS_B))
    sampler_real = None
    if real is not None and config.real_windows > 0:
        real_manifest = load_manifest(real)
        check_same_config(real, "mel config of the real recordings",
                          real_manifest["mel_config"], mel.to_dict(),
                          "build both mel directories with the same analysis settings")
        real_train = MelWindows(real, split="train", frames=config.frames,
                                augment=config.augment, seed=config.seed + 2)
        sampler_real = rtm.WindowSampler(real_train, seed=seeded(_STREAM_REAL))
    # The per-rank random streams, in the order the resume file lists them.
    streams: dict[str, tuple[Any, int]] = {
        "sampler_a": (sampler_a, _STREAM_WINDOWS_A), "sampler_b": (sampler_b, _STREAM_WINDOWS_B),
        "pool_a": (pool_a, _STREAM_POOL_A), "pool_b": (pool_b, _STREAM_POOL_B)}
    if sampler_real is not None:
        streams["sampler_real"] = (sampler_real, _STREAM_REAL)

    state = State(g_ab=g_ab, g_ba=g_ba, d_a=d_a, d_b=d_b, opt_g=opt_g, opt_d=opt_d,
                  sched_g=sched_g, sched_d=sched_d, pool_a=pool_a, pool_b=pool_b, config=config,
                  device=device, precision=precision, scaler=scaler, mel=mel)
    seconds_before = 0.0
    init_record = ck["resume"].get("init_from") if ck is not None else None
    if warm is not None:
        g_ab.load_state_dict(warm["g_ab"])
        g_ba.load_state_dict(warm["g_ba"])
        if "d_a" in warm:
            d_a.load_state_dict(warm["d_a"])
            d_b.load_state_dict(warm["d_b"])
        init_record = {"path": str(init_from), "step": warm["step"],
                       "discriminators": "d_a" in warm}
        rtm.log.info("warm start from %s (step %d)", init_from, warm["step"])
    if ck is not None:
        stored = ck["resume"]
        for module, weights in ((g_ab, ck["state_dict"]["g_ab"]), (g_ba, ck["state_dict"]["g_ba"]),
                                (d_a, stored["d_a"]), (d_b, stored["d_b"])):
            module.load_state_dict(weights)
        state.step, seconds_before = loop.restore(
            ck, rt, parts={"opt_g": opt_g, "opt_d": opt_d, "sched_g": sched_g,
                           "sched_d": sched_d},
            scaler=scaler, streams=streams, seed=config.seed)

    if rt.distributed:
        state.g_ab, state.g_ba = rtm.wrap_ddp(rt, g_ab), rtm.wrap_ddp(rt, g_ba)
        state.d_a, state.d_b = rtm.wrap_ddp(rt, d_a), rtm.wrap_ddp(rt, d_b)

    _Session(rt=rt, state=state, out=out, data=data, manifest=manifest, streams=streams,
             seconds_before=seconds_before, mel=mel, gcfg=gcfg, dcfg=dcfg, dom_a=dom_a,
             dom_b=dom_b, clf=clf, samplers=(sampler_a, sampler_b), sampler_real=sampler_real,
             real=real, init_from=init_record).run(stop_at, progress)
    return state


def _read_warm_start(path: Path, *, mel: MelConfig, gcfg: GeneratorConfig,
                     dcfg: DiscriminatorConfig, dom_a: Domain, dom_b: Domain) -> dict:
    """The weights a new run starts from (--init-from): a converter run's resume.pt gives the
    generators and discriminators, a converter.pt the generators only. The file must match
    the new run's analysis, architecture and domains; anything else would not be a warm start.
    """
    ck = read_checkpoint(path, kind="converter")
    hint = "warm-start only from a run with the same data analysis, architecture and domains"
    check_same_config(path, "mel config", ck["mel_config"], mel.to_dict(), hint)
    check_same_config(path, "generator config",
                      GeneratorConfig.stored(ck["model_config"]).to_dict(), gcfg.to_dict(), hint)
    for key, dom in (("a", dom_a), ("b", dom_b)):
        if list(ck["domains"][key]["genres"]) != list(dom.genres):
            raise GenreshiftError(
                f"{path}: domain {key} is {', '.join(ck['domains'][key]['genres'])} there but "
                f"{', '.join(dom.genres)} in this run; {hint}")
    weights = {"g_ab": ck["state_dict"]["g_ab"], "g_ba": ck["state_dict"]["g_ba"],
               "step": int(ck.get("provenance", {}).get("steps", 0))}
    if ck.get("role") == "resume":
        check_same_config(path, "discriminator config", ck["resume"]["discriminator_config"],
                          dcfg.to_dict(), hint)
        weights.update(d_a=ck["resume"]["d_a"], d_b=ck["resume"]["d_b"],
                       step=int(ck["resume"]["step"]))
    return weights


class _Session(loop.Session):
    """A converter run's loop: its batches, losses, validation, samples and files."""

    inference_file = INFERENCE_FILE
    terms = LOSS_TERMS

    def __init__(self, *, mel: MelConfig, gcfg: GeneratorConfig, dcfg: DiscriminatorConfig,
                 dom_a: Domain, dom_b: Domain, clf: Classifier | None,
                 samplers: tuple[Any, rtm.WindowSampler],
                 sampler_real: rtm.WindowSampler | None = None, real: Path | None = None,
                 init_from: dict | None = None, **common: Any) -> None:
        super().__init__(**common, provenance_extra={"init_from": init_from} if init_from else None)
        self.init_from = init_from
        self.mel, self.gcfg, self.dcfg = mel, gcfg, dcfg
        self.dom_a, self.dom_b, self.clf, self.samplers = dom_a, dom_b, clf, samplers
        self.sampler_real, self.real = sampler_real, real
        self.desc = f"{dom_a.label}<->{dom_b.label}"
        self.windows_per_step = 2 * self.state.config.batch_size
        self.val: tuple[torch.Tensor, torch.Tensor] | None = None
        self.val_real: torch.Tensor | None = None

    # ---- one step

    def step(self) -> dict[str, float]:
        state, cfg = self.state, self.state.config
        sampler_a, sampler_b = self.samplers
        if isinstance(sampler_a, rtm.PairedSampler):
            xa, xb, pairs = sampler_a.batch(cfg.batch_size, state.step)
        else:
            xa, _ = sampler_a.batch(cfg.batch_size, state.step)
            xb, _ = sampler_b.batch(cfg.batch_size, state.step)
            pairs = torch.zeros(len(xb), dtype=torch.bool)
        if self.sampler_real is not None:
            xr, _ = self.sampler_real.batch(cfg.real_windows, state.step)
            xa = torch.cat([xa, xr])
        dev = state.device
        return train_step(state, (xa.to(dev, non_blocking=True), xb.to(dev, non_blocking=True),
                                  pairs.to(dev)))

    def log(self, means: dict[str, float], step: int) -> dict[str, str]:
        state, w = self.state, self.writer
        for k, v in means.items():
            w.add_scalar(f"loss/{k}", v, step)
        w.add_scalar("lr/g", state.sched_g.get_last_lr()[0], step)
        w.add_scalar("lr/d", state.sched_d.get_last_lr()[0], step)
        return {"g": f"{means['g_total']:.3f}", "d": f"{means['d_total']:.3f}",
                "cyc": f"{(means['cycle_a'] + means['cycle_b']) / 2:.3f}"}

    # ---- held-out data, validation and samples (rank 0)

    def open_validation(self) -> None:
        cfg = self.state.config
        vals, why = [], None
        for dom in (self.dom_a, self.dom_b):
            windows, why = rtm.open_validation(self.data, dom.genres,
                                               [cfg.val_frames, cfg.frames], cfg.seed)
            if windows is None:
                break
            per_genre = max(1, math.ceil(cfg.val_windows / len(dom.genres)))
            vals.append(rtm.fixed_windows(windows, per_genre)[0])
        if len(vals) == 2:
            self.val = (vals[0], vals[1])
        else:
            rtm.log.warning("no validation during this run: %s", why)
        if self.real is not None:
            from genreshift.data.windows import load_manifest

            real_genres = load_manifest(self.real)["genres"]
            windows, why = rtm.open_validation(self.real, real_genres,
                                               [cfg.val_frames, cfg.frames], cfg.seed)
            if windows is not None:
                self.val_real = rtm.fixed_windows(windows, cfg.val_windows)[0]
            else:
                rtm.log.warning("no validation on real recordings: %s", why)

    def validate(self, bar: Any) -> None:
        if self.val is None:
            return
        state = self.state
        metrics = validate(state.g_ab, state.g_ba, *self.val, classifier=self.clf,
                           a=self.dom_a, b=self.dom_b, device=state.device, mel=self.mel,
                           real=self.val_real)
        for k, v in metrics.items():
            self.writer.add_scalar(f"val/{k}", v, state.step)
        self.writer.flush()
        text = (f"step {state.step}: val cycle {metrics['cycle_a']:.4f}/{metrics['cycle_b']:.4f}"
                f" identity {metrics['identity_a']:.4f}/{metrics['identity_b']:.4f}"
                f" change {metrics['change_ab']:.4f}/{metrics['change_ba']:.4f}")
        if "real_chroma" in metrics:
            text += (f" real: change {metrics['real_change']:.4f} chroma "
                     f"{metrics['real_chroma']:.4f} onset {metrics['real_onset']:.4f}")
        if self.clf is not None:
            text += (f" p(target) {metrics['p_target_ab']:.2f}/{metrics['p_target_ba']:.2f}"
                     f" (unconverted {metrics['p_target_ab_input']:.2f}/"
                     f"{metrics['p_target_ba_input']:.2f})")
        rtm.say(bar, text + "  (a/b: a->b / b->a)")

    @torch.no_grad()
    def samples(self) -> None:
        """Images of input / converted / cycled mels and audio of input / converted."""
        state, w, step = self.state, self.writer, self.state.step
        g_ab, g_ba = unwrap(state.g_ab), unwrap(state.g_ba)
        if self.val is not None:
            firsts = (self.val[0][:1], self.val[1][:1])
        else:  # no held-out data: show a training window
            firsts = (self.samplers[0].windows[0][0][None], self.samplers[1].windows[0][0][None])
        modes = g_ab.training, g_ba.training
        g_ab.eval()
        g_ba.eval()
        try:
            for name, x, there, back in (("a2b", firsts[0], g_ab, g_ba),
                                         ("b2a", firsts[1], g_ba, g_ab)):
                x = x.to(state.device).float()
                fake = there(x)
                rec = back(fake)
                for tag, m in (("input", x), ("converted", fake), ("cycled", rec)):
                    w.add_image(f"{name}/{tag}", rtm.mel_image(m[0]), step)
                for tag, m in (("input", x), ("converted", fake)):
                    wav = mel_to_wav(m[0].cpu(), self.mel)
                    w.add_audio(f"{name}/{tag}", rtm.peak_normalise(wav)[None], step,
                                sample_rate=self.mel.sample_rate)
        finally:
            g_ab.train(modes[0])
            g_ba.train(modes[1])
        w.flush()

    # ---- what the files hold besides the loop's common part

    def payload(self, prov: dict) -> dict:
        state = self.state
        return converter_payload(g_ab=state.g_ab, g_ba=state.g_ba, config=self.gcfg,
                                 mel_config=self.mel, a=self.dom_a, b=self.dom_b,
                                 provenance=prov)

    def resume_state(self) -> dict:
        state = self.state
        return {
            "discriminator_config": self.dcfg.to_dict(),
            "d_a": cpu_state_dict(state.d_a),
            "d_b": cpu_state_dict(state.d_b),
            "opt_g": rtm.to_cpu(state.opt_g.state_dict()),
            "opt_d": rtm.to_cpu(state.opt_d.state_dict()),
            "sched_g": state.sched_g.state_dict(),
            "sched_d": state.sched_d.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "real_data": None if self.real is None else str(self.real),
            "init_from": self.init_from,
        }
