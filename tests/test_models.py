"""Networks and checkpoint files: shapes on awkward lengths, exact save -> load round trips, and
the files a loader must refuse (foreign, newer, tampered, truncated, mismatched)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from genreshift.errors import GenreshiftError
from genreshift.models.classifier import (
    ClassifierConfig,
    GenreClassifier,
    classify_clip,
    split_windows,
    window_probabilities,
)
from genreshift.models.discriminator import Discriminator, DiscriminatorConfig
from genreshift.models.generator import VARIANTS, Generator, GeneratorConfig, instance_norm
from genreshift.spectral import MelConfig
from genreshift import checkpoint as ckpt
from genreshift.checkpoint import Domain

N_MELS = 32  # small but divisible by every stride used here


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks: one thread avoids OpenMP hand-off costs on a busy 2-core machine.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_generator(variant: str = "212d", **kw) -> GeneratorConfig:
    return GeneratorConfig(variant=variant, n_mels=N_MELS, channels=4, n_res=1,
                           core_channels=16, **kw)


def mel(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("frames", [1, 7, 33, 130])
def test_generator_keeps_shape_and_range(variant: str, frames: int) -> None:
    torch.manual_seed(0)
    g = Generator(tiny_generator(variant, n_down=2))
    y = g(mel(2, N_MELS, frames))
    assert y.shape == (2, N_MELS, frames)
    assert torch.isfinite(y).all() and y.abs().max() < 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_generator_three_downsamplings_and_gradients(variant: str) -> None:
    g = Generator(tiny_generator(variant, n_down=3))
    x = mel(1, N_MELS, 45).requires_grad_()
    g(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in g.parameters())


def test_generator_rejects_wrong_band_count() -> None:
    g = Generator(tiny_generator())
    with pytest.raises(ValueError, match=f"expects \\[batch, {N_MELS}, frames\\]"):
        g(mel(1, N_MELS + 1, 16))


def test_generator_config_validation() -> None:
    with pytest.raises(GenreshiftError, match="variant must be one of"):
        GeneratorConfig(variant="3d")
    with pytest.raises(GenreshiftError, match="divisible by 2\\*\\*n_down"):
        GeneratorConfig(n_mels=100, n_down=3)


def test_groupnorm_is_instance_norm() -> None:
    """The generator's instance_norm (GroupNorm, one group per channel) matches InstanceNorm2d
    with an affine transform exactly."""
    x = torch.randn(3, 5, 8, 11)
    ref = nn.InstanceNorm2d(5, affine=True)
    nn.init.normal_(ref.weight)
    nn.init.normal_(ref.bias)
    ours = instance_norm(5)
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scales", [1, 2])
def test_discriminator_patch_outputs(scales: int) -> None:
    cfg = DiscriminatorConfig(n_mels=N_MELS, channels=4, n_layers=2, n_scales=scales)
    d = Discriminator(cfg)
    outs = d(mel(2, N_MELS, cfg.min_frames + 5))
    assert len(outs) == scales
    for o in outs:
        assert o.shape[:2] == (2, 1) and o.shape[2] >= 1 and o.shape[3] >= 1
    with pytest.raises(ValueError, match="at least"):
        d(mel(2, N_MELS, cfg.min_frames - 1))


def test_classifier_shapes_and_clip_probabilities() -> None:
    cfg = ClassifierConfig(n_mels=N_MELS, n_classes=3, channels=4, n_blocks=3, frames=24)
    model = GenreClassifier(cfg).eval()
    assert model(mel(5, N_MELS, 24)).shape == (5, 3)
    assert model(mel(2, N_MELS, 37)).shape == (2, 3)  # any length >= 2**n_blocks
    for frames in (3, 24, 101):  # shorter than a window, exactly one, several
        p = classify_clip(model, mel(N_MELS, frames))
        assert p.shape == (3,)
        assert torch.isclose(p.sum(), torch.tensor(1.0))
    assert window_probabilities(model, mel(4, N_MELS, 60)).shape == (4, 3)


def test_split_windows_covers_the_clip() -> None:
    x = torch.arange(50.0).expand(N_MELS, 50)
    w = split_windows(x, 16, hop=8)
    assert w.shape[1:] == (N_MELS, 16)
    assert w[0, 0, 0] == 0 and w[-1, 0, -1] == 49  # first frame and last frame included
    short = split_windows(x[:, :5], 16)
    assert short.shape == (1, N_MELS, 16) and short[0, 0, -1] == 4  # padded by repetition


# --------------------------------------------------------------------------- checkpoints


def save_tiny_converter(path: Path, *, half: bool = False, variant: str = "212d"
                        ) -> tuple[Generator, Generator]:
    torch.manual_seed(1)
    g_ab, g_ba = Generator(tiny_generator(variant)), Generator(tiny_generator(variant))
    ckpt.save_converter(
        path, g_ab=g_ab, g_ba=g_ba, config=g_ab.config, mel_config=MelConfig(n_mels=N_MELS),
        a=Domain("rest", ("blues", "rock")), b=Domain("jazz", ("jazz",)),
        provenance=ckpt.provenance("synthetic test data", steps=3), half=half)
    return g_ab, g_ba


@pytest.mark.parametrize("variant", VARIANTS)
def test_converter_round_trip_is_exact(tmp_path: Path, variant: str) -> None:
    path = tmp_path / "conv.pt"
    g_ab, g_ba = save_tiny_converter(path, variant=variant)
    loaded = ckpt.load_converter(path)
    assert not loaded.g_ab.training and not loaded.g_ba.training
    assert loaded.config == g_ab.config and loaded.mel_config == MelConfig(n_mels=N_MELS)
    assert loaded.a.genres == ("blues", "rock") and loaded.b.name == "jazz"
    assert loaded.provenance["steps"] == 3 and loaded.provenance["dataset"]
    assert loaded.generator_to("jazz") is loaded.g_ab
    assert loaded.generator_to("rock") is loaded.g_ba
    with pytest.raises(GenreshiftError, match="cannot produce 'pop'"):
        loaded.generator_to("pop")
    x = mel(2, N_MELS, 41)
    with torch.no_grad():
        assert torch.equal(loaded.g_ab(x), g_ab.eval()(x))
        assert torch.equal(loaded.g_ba(x), g_ba.eval()(x))


def test_half_precision_file_is_smaller_and_close(tmp_path: Path) -> None:
    g_ab, _ = save_tiny_converter(tmp_path / "full.pt")
    save_tiny_converter(tmp_path / "half.pt", half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.7 * (tmp_path / "full.pt").stat().st_size
    loaded = ckpt.load_converter(tmp_path / "half.pt")
    assert next(loaded.g_ab.parameters()).dtype == torch.float32
    x = mel(1, N_MELS, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded.g_ab(x), g_ab.eval()(x), atol=2e-2, rtol=0)


def test_export_drops_training_state_and_halves(tmp_path: Path) -> None:
    g_ab, _ = save_tiny_converter(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    raw.update(role="resume", resume={"step": 3, "opt_g": {"state": {}}})
    raw["sha256"] = ckpt.content_digest(raw)
    torch.save(raw, tmp_path / "resume.pt")
    out = ckpt.export_inference(tmp_path / "resume.pt", tmp_path / "ship.pt", half=True)
    shipped = ckpt.read_checkpoint(out, kind="converter", role="inference")
    assert "resume" not in shipped and shipped["provenance"] == raw["provenance"]
    assert all(v.dtype == torch.float16 for v in shipped["state_dict"]["g_ab"].values())
    x = mel(1, N_MELS, 40)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.load_converter(out).g_ab(x), g_ab.eval()(x),
                                   atol=2e-2, rtol=0)


def test_classifier_round_trip_is_exact(tmp_path: Path) -> None:
    cfg = ClassifierConfig(n_mels=N_MELS, n_classes=3, channels=4, n_blocks=2, frames=16)
    torch.manual_seed(2)
    model = GenreClassifier(cfg)
    model.train()
    for _ in range(3):  # move the batch-norm running statistics away from their defaults
        model(mel(4, N_MELS, 16))
    model.eval()
    path = ckpt.save_classifier(tmp_path / "clf.pt", model=model, config=cfg,
                                mel_config=MelConfig(n_mels=N_MELS),
                                genres=["blues", "jazz", "rock"],
                                provenance=ckpt.provenance("test", steps=1))
    loaded = ckpt.load_classifier(path)
    assert loaded.genres == ["blues", "jazz", "rock"] and not loaded.model.training
    x = mel(3, N_MELS, 16)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_saving_unwraps_wrappers(tmp_path: Path) -> None:
    g = Generator(tiny_generator())
    compiled = torch.compile(g)  # the wrapper only; nothing is compiled until it is called
    assert ckpt.unwrap(compiled) is g
    assert ckpt.unwrap(nn.DataParallel(g)) is g
    ckpt.save_converter(tmp_path / "c.pt", g_ab=compiled, g_ba=nn.DataParallel(g),
                        config=g.config, mel_config=MelConfig(n_mels=N_MELS),
                        a=Domain("a", ("a",)), b=Domain("b", ("b",)),
                        provenance=ckpt.provenance("t", 0))
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(raw["state_dict"]["g_ab"]) == set(g.state_dict())
    assert set(raw["state_dict"]["g_ba"]) == set(g.state_dict())


# --------------------------------------------------------------------------- refusals


def _rewrite(path: Path, change, *, fix_digest: bool) -> None:
    """Edit a checkpoint dict in place, as a person or another program might."""
    raw = torch.load(path, weights_only=True)
    change(raw)
    if fix_digest:
        raw["sha256"] = ckpt.content_digest(raw)
    torch.save(raw, path)


def test_refuses_missing_and_non_checkpoint_files(tmp_path: Path) -> None:
    with pytest.raises(GenreshiftError, match="does not exist"):
        ckpt.load_converter(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(GenreshiftError, match="not a readable PyTorch checkpoint"):
        ckpt.load_converter(text)


def test_refuses_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": Generator(tiny_generator()).state_dict(), "epoch": 3}, path)
    with pytest.raises(GenreshiftError, match="not a genreshift checkpoint"):
        ckpt.load_converter(path)


@dataclass
class _Payload:  # any class: unpickling it could run code, so weights_only must refuse it
    x: int = 1


def test_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"magic": ckpt.MAGIC, "obj": _Payload()}, path)
    with pytest.raises(GenreshiftError, match="Python objects other than tensors.*_Payload"):
        ckpt.load_converter(path)


def test_refuses_newer_format(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    _rewrite(path, lambda d: d.update(format_version=ckpt.FORMAT_VERSION + 1), fix_digest=True)
    with pytest.raises(GenreshiftError, match="newer genreshift.*upgrade"):
        ckpt.load_converter(path)


def test_refuses_tampered_weights(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)

    def nudge(d: dict) -> None:
        w = next(iter(d["state_dict"]["g_ab"].values()))
        w.view(-1)[0] += 1e-3

    _rewrite(path, nudge, fix_digest=False)
    with pytest.raises(GenreshiftError, match="modified or corrupted"):
        ckpt.load_converter(path)


def test_refuses_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GenreshiftError, match="truncated"):
        ckpt.load_converter(path)


def test_refuses_wrong_kind(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    with pytest.raises(GenreshiftError, match="is a converter checkpoint, but a classifier"):
        ckpt.load_classifier(path)


def test_refuses_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    _rewrite(path, lambda d: d["model_config"].update(channels=8), fix_digest=True)
    with pytest.raises(GenreshiftError, match="do not fit the model config"):
        ckpt.load_converter(path)


def test_refuses_unknown_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    _rewrite(path, lambda d: d["model_config"].update(attention=True), fix_digest=True)
    with pytest.raises(GenreshiftError, match="unknown keys \\['attention'\\].*newer"):
        ckpt.load_converter(path)


def test_refuses_files_that_lack_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    _rewrite(path, lambda d: d["domains"].pop("b"), fix_digest=True)
    with pytest.raises(GenreshiftError, match=rf"{path}: converter checkpoint lacks 'b'"):
        ckpt.load_converter(path)
    cfg = ClassifierConfig(n_mels=N_MELS, n_classes=3, channels=4, n_blocks=2, frames=16)
    ckpt.save_classifier(path, model=GenreClassifier(cfg), config=cfg,
                         mel_config=MelConfig(n_mels=N_MELS), genres=["blues", "jazz", "rock"],
                         provenance=ckpt.provenance("test", steps=1))
    _rewrite(path, lambda d: d.pop("genres"), fix_digest=True)
    with pytest.raises(GenreshiftError, match="classifier checkpoint lacks 'genres'.*damaged"):
        ckpt.load_classifier(path)


def test_refuses_inconsistent_mel_config(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    _rewrite(path, lambda d: d["mel_config"].update(n_mels=64), fix_digest=True)
    with pytest.raises(GenreshiftError, match="mel bands"):
        ckpt.load_converter(path)


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.pt"
    save_tiny_converter(path)
    before = path.read_bytes()

    def failing_save(obj, f, *a, **kw):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_tiny_converter(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    ckpt.load_converter(path)
