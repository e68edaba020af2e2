"""ONNX graphs: export from the .pt files, parity of onnxruntime with torch, the self-describing
header (read without torch), the files a reader must refuse (stale, corrupt, foreign, renamed),
`train export`, and a conversion process that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from genreshift import checkpoint as ckpt
from genreshift.checkpoint import Domain
from genreshift.cli import main
from genreshift.errors import GenreshiftError
from genreshift.inference.runtime import OnnxClassifier, OnnxGenerator, split_windows
from genreshift.models.classifier import ClassifierConfig, GenreClassifier, classify_clip
from genreshift.models.classifier import split_windows as torch_split_windows
from genreshift.models.generator import Generator, GeneratorConfig
from genreshift.spectral import MelConfig

N_MELS = 16
# onnxruntime and torch run the same float32 arithmetic in different orders: ~2e-6 apart on
# the shipped generators and these tiny ones. 1e-4 of the [-1, 1] log-mel range is 0.012 dB,
# far below what the float16 weights of the shipped files already move (~1e-3), yet a wrong
# padding, crop, norm or weight would be off by 1e-2 or more.
GEN_TOL = 1e-4
CLF_TOL = 1e-5  # probabilities: the softmax of logits that agree to ~1e-6


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks on a busy 2-core machine
    yield
    torch.set_num_threads(old)


def _perturb(module: nn.Module, seed: int) -> None:
    """Random weights everywhere: the residual head starts at zero (the identity), and the
    norms' affine parameters at 1 / 0, which would make a parity test trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.2))
            if p.dim() == 1 and name.endswith("weight"):  # norm scales around 1
                p.add_(1.0)


def save_converter(path: Path, *, variant: str = "212d", residual: bool = True,
                   a: str = "rest", b: str = "jazz", half: bool = False, seed: int = 0) -> Path:
    cfg = GeneratorConfig(variant=variant, n_mels=N_MELS, channels=4, n_down=2, n_res=1,
                          core_channels=8, residual=residual)
    g_ab, g_ba = Generator(cfg), Generator(cfg)
    _perturb(g_ab, seed)
    _perturb(g_ba, seed + 1)
    genres = {"rest": ("blues", "rock"), "jazz": ("jazz",), "blues": ("blues",)}
    return ckpt.save_converter(
        path, g_ab=g_ab, g_ba=g_ba, config=cfg, mel_config=MelConfig(n_mels=N_MELS),
        a=Domain(a, genres[a]), b=Domain(b, genres[b]),
        provenance=ckpt.provenance("onnx test", steps=7), half=half)


def save_classifier(path: Path) -> Path:
    cfg = ClassifierConfig(n_mels=N_MELS, n_classes=3, channels=4, n_blocks=2, frames=16)
    torch.manual_seed(3)
    model = GenreClassifier(cfg)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # batch-norm statistics away from their defaults
            model(torch.rand(4, N_MELS, 16) * 2 - 1)
    return ckpt.save_classifier(path, model=model.eval(), config=cfg,
                                mel_config=MelConfig(n_mels=N_MELS),
                                genres=["blues", "jazz", "rock"],
                                provenance=ckpt.provenance("onnx test", steps=2))


def mel(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape, dtype=np.float32) * 2 - 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a rest->jazz converter, a blues<->jazz one and a classifier, exported."""
    d = tmp_path_factory.mktemp("onnx")
    save_converter(d / "rest-to-jazz.pt")
    save_converter(d / "blues-jazz.pt", variant="2d", residual=False, a="blues", half=True,
                   seed=5)
    save_classifier(d / "classifier.pt")
    for f in ("rest-to-jazz.pt", "blues-jazz.pt", "classifier.pt"):
        ckpt.export_onnx(d / f)
    return d


# --------------------------------------------------------------------------- export and parity


def test_export_writes_one_graph_per_used_direction(exported: Path) -> None:
    assert sorted(p.name for p in exported.glob("*.onnx")) == [
        "blues-jazz.ab.onnx", "blues-jazz.ba.onnx", "classifier.onnx", "rest-to-jazz.ab.onnx"]
    model = ort.InferenceSession(str(exported / "rest-to-jazz.ab.onnx"),
                                 providers=["CPUExecutionProvider"])
    (inp,), (out,) = model.get_inputs(), model.get_outputs()
    assert inp.name == "mel" and inp.shape == ["batch", N_MELS, "frames"]
    assert inp.type == out.type == "tensor(float)" and out.shape == ["batch", N_MELS, "frames"]


@pytest.mark.parametrize("name, direction", [("rest-to-jazz", "ab"), ("blues-jazz", "ab"),
                                             ("blues-jazz", "ba")])
def test_generator_matches_torch(exported: Path, name: str, direction: str) -> None:
    conv = ckpt.load_converter(exported / f"{name}.pt")
    torch_gen = conv.g_ab if direction == "ab" else conv.g_ba
    gen = OnnxGenerator(exported / f"{name}.{direction}.onnx", threads=1)
    assert gen.direction == direction and gen.stride == conv.config.stride == 4
    assert gen.config == conv.config and gen.mel_config == conv.mel_config
    assert gen.target.name == ("jazz" if direction == "ab" else conv.a.name)
    for frames in (37, 64):  # 37: padded to 40 inside, cropped back
        x = mel(2, N_MELS, frames, seed=frames)
        with torch.no_grad():
            ref = torch_gen(torch.from_numpy(x)).numpy()
        out = gen(x)
        assert out.shape == x.shape and out.dtype == np.float32
        assert np.abs(ref - x).max() > 0.05  # the network does change its input
        np.testing.assert_allclose(out, ref, atol=GEN_TOL, rtol=0)


def test_generator_short_inputs_match_torch_padding(exported: Path) -> None:
    """Shorter than two bottleneck frames: padded as Generator.forward pads (the values of a
    2-frame instance norm are ill-conditioned in float32, so only shape and a loose bound)."""
    gen = OnnxGenerator(exported / "rest-to-jazz.ab.onnx", threads=1)
    torch_gen = ckpt.load_converter(exported / "rest-to-jazz.pt").g_ab
    for frames in (1, 5):
        x = mel(1, N_MELS, frames, seed=frames)
        with torch.no_grad():
            ref = torch_gen(torch.from_numpy(x)).numpy()
        assert gen(x).shape == (1, N_MELS, frames)
        np.testing.assert_allclose(gen(x), ref, atol=5e-2, rtol=0)
    with pytest.raises(ValueError, match="n_mels=16"):
        gen(mel(1, N_MELS + 1, 8))


def test_classifier_matches_torch(exported: Path) -> None:
    clf = ckpt.load_classifier(exported / "classifier.pt")
    onnx_clf = OnnxClassifier(exported / "classifier.onnx", threads=1)
    assert onnx_clf.genres == ["blues", "jazz", "rock"] and onnx_clf.config == clf.config
    for frames in (10, 16, 45):  # one padded window; exactly one; hop 8 plus an end-aligned one
        x = mel(N_MELS, frames, seed=frames)
        np.testing.assert_array_equal(split_windows(x, 16),
                                      torch_split_windows(torch.from_numpy(x), 16).numpy())
        ref = classify_clip(clf.model, torch.from_numpy(x)).numpy()
        probs = onnx_clf.classify_clip(x, batch_size=2)  # several batches for 45 frames
        assert probs.shape == (3,) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, ref, atol=CLF_TOL, rtol=0)
        assert abs(float(probs.sum()) - 1.0) < 1e-5
    # windows side by side (source detection's hop): 45 frames are windows at 0, 16 and 29
    x = mel(N_MELS, 45, seed=7)
    probs = onnx_clf.classify_clip(x, hop=16)
    np.testing.assert_allclose(probs, classify_clip(clf.model, torch.from_numpy(x),
                                                    hop=16).numpy(), atol=CLF_TOL, rtol=0)
    each = [onnx_clf.classify_clip(x[:, s:s + 16]) for s in (0, 16, 29)]
    np.testing.assert_allclose(probs, np.mean(each, axis=0), atol=1e-6, rtol=0)
    assert not np.allclose(probs, onnx_clf.classify_clip(x), atol=1e-4)  # hop 8 differs


# --------------------------------------------------------------------------- headers


def test_header_round_trip(exported: Path) -> None:
    pt = ckpt.read_checkpoint(exported / "blues-jazz.pt")
    h = ckpt.read_onnx_header(exported / "blues-jazz.ba.onnx")
    for key in ("kind", "role", "model_config", "mel_config", "domains", "provenance",
                "sha256"):
        assert h[key] == pt[key], key
    assert h["direction"] == "ba" and h["format_version"] == ckpt.ONNX_FORMAT_VERSION
    assert h["source"]["file"] == "blues-jazz.pt" and h["export"]["opset"] == ckpt.ONNX_OPSET
    # the wire-format reader agrees with onnxruntime's own protobuf parser
    meta = ort.InferenceSession(str(exported / "blues-jazz.ba.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map["genreshift"]) == h
    c = ckpt.read_onnx_header(exported / "classifier.onnx")
    assert c["kind"] == "classifier" and c["genres"] == ["blues", "jazz", "rock"]
    assert "direction" not in c


def test_stale_graph_is_refused_until_reexported(tmp_path: Path) -> None:
    pt = save_converter(tmp_path / "rest-to-jazz.pt")
    (graph,) = ckpt.export_onnx(pt)
    save_converter(pt, seed=9)  # retrained: same name, other weights
    for read in (ckpt.read_onnx_header, OnnxGenerator):
        with pytest.raises(GenreshiftError, match=r"out of date.*--onnx-only .*rest-to-jazz\.pt"):
            read(graph)
    assert ckpt.read_onnx_header(graph, check_source=False)["kind"] == "converter"
    assert main(["train", "export", "--onnx-only", str(pt)]) == 0
    assert ckpt.read_onnx_header(graph)["source"]["sha256"] == ckpt._file_sha256(pt)
    pt.unlink()  # a graph without its .pt is self-contained
    assert OnnxGenerator(graph)(mel(1, N_MELS, 8)).shape == (1, N_MELS, 8)


def test_damaged_foreign_and_renamed_files_are_refused(exported: Path, tmp_path: Path) -> None:
    good = (exported / "rest-to-jazz.ab.onnx").read_bytes()

    def place(name: str, data: bytes) -> Path:
        (tmp_path / name).write_bytes(data)
        return tmp_path / name

    with pytest.raises(GenreshiftError, match="does not exist"):
        ckpt.read_onnx_header(tmp_path / "nope.ab.onnx")
    for data in (good[:len(good) // 2], b"not an onnx file at all", b""):
        with pytest.raises(GenreshiftError, match=r"not a readable ONNX.*--onnx-only"):
            ckpt.read_onnx_header(place("x.ab.onnx", data))
    # a byte of the weights changed: the header still reads, the graph is refused
    i = len(good) // 2
    flipped = place("y.ab.onnx", good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:])
    assert ckpt.read_onnx_header(flipped)["kind"] == "converter"
    with pytest.raises(GenreshiftError, match="modified or corrupted"):
        OnnxGenerator(flipped)
    # an ONNX model genreshift did not write
    import onnx

    foreign = onnx.load_from_string(good)
    del foreign.metadata_props[:]
    with pytest.raises(GenreshiftError, match="not one genreshift exported"):
        ckpt.read_onnx_header(place("z.onnx", foreign.SerializeToString()))
    # renamed to the other direction, or given to the wrong class
    with pytest.raises(GenreshiftError, match=r"must end in '\.ab\.onnx'"):
        ckpt.read_onnx_header(place("rest-to-jazz.ba.onnx", good))
    with pytest.raises(GenreshiftError, match="converter graph, but a classifier"):
        OnnxClassifier(place("w.ab.onnx", good))


def test_reexport_removes_the_graph_of_a_direction_no_longer_used(tmp_path: Path) -> None:
    pt = save_converter(tmp_path / "m.pt", a="blues")
    assert [p.name for p in ckpt.export_onnx(pt)] == ["m.ab.onnx", "m.ba.onnx"]
    save_converter(pt, a="rest")  # now rest -> jazz: b -> a would produce 'rest'
    assert [p.name for p in ckpt.export_onnx(pt)] == ["m.ab.onnx"]
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["m.ab.onnx"]


def test_resume_files_and_rest_only_converters_are_not_exported(tmp_path: Path) -> None:
    pt = save_converter(tmp_path / "c.pt")
    raw = torch.load(pt, weights_only=True)
    raw.update(role="resume", resume={"step": 1})
    raw["sha256"] = ckpt.content_digest(raw)
    torch.save(raw, tmp_path / "resume.pt")
    with pytest.raises(GenreshiftError, match="resume file.*train export"):
        ckpt.export_onnx(tmp_path / "resume.pt")
    both_rest = save_converter(tmp_path / "rest-rest.pt", a="rest", b="rest")
    with pytest.raises(GenreshiftError, match="nothing to export"):
        ckpt.export_onnx(both_rest)


# --------------------------------------------------------------------------- CLI, no torch


def test_cli_export_writes_graphs_next_to_the_inference_file(tmp_path: Path, capsys) -> None:
    src = save_converter(tmp_path / "converter.pt", a="blues")
    out = tmp_path / "ship" / "blues-to-jazz.pt"
    assert main(["train", "export", str(src), str(out), "--half"]) == 0
    printed = capsys.readouterr().out
    assert "blues-to-jazz.ab.onnx" in printed and "blues-to-jazz.ba.onnx" in printed
    for d in ("ab", "ba"):
        assert ckpt.read_onnx_header(out.with_name(f"blues-to-jazz.{d}.onnx"))["direction"] == d
    assert main(["train", "export", str(src), str(tmp_path / "bare.pt"), "--no-onnx"]) == 0
    assert not list(tmp_path.glob("bare*.onnx"))
    assert main(["train", "export", "--onnx-only", str(tmp_path / "bare.pt")]) == 0
    assert sorted(p.name for p in tmp_path.glob("bare*.onnx")) == ["bare.ab.onnx",
                                                                   "bare.ba.onnx"]
    assert main(["train", "export", str(src)]) == 1
    assert "IN OUT" in capsys.readouterr().err


def test_conversion_process_never_imports_torch(exported: Path) -> None:
    code = f"""
import sys
from pathlib import Path
import numpy as np
from genreshift.checkpoint import read_onnx_header
from genreshift.inference.runtime import OnnxClassifier, OnnxGenerator
folder = Path({str(exported)!r})
headers = [read_onnx_header(p) for p in sorted(folder.glob("*.onnx"))]
assert len(headers) == 4, headers
y = OnnxGenerator(folder / "rest-to-jazz.ab.onnx")(np.zeros((1, {N_MELS}, 21), np.float32))
p = OnnxClassifier(folder / "classifier.onnx").classify_clip(np.zeros(({N_MELS}, 30), np.float32))
assert y.shape == (1, {N_MELS}, 21) and p.shape == (3,)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_shipped_graphs_are_current() -> None:
    """Every shipped .pt has its graphs, exported from it as it is now (a .pt replaced without
    `train export --onnx-only` fails here, not in a user's conversion). Reference mode's style
    model has none: reference mode needs torch's autograd, so it never runs as ONNX."""
    from genreshift.inference.convert import STYLE_MODEL_FILE

    folder = Path(ckpt.__file__).resolve().parent / "checkpoints"
    pts = sorted(p for p in folder.glob("*.pt") if p.name != STYLE_MODEL_FILE)
    if not pts:
        pytest.skip("no shipped models in this checkout")
    sources = {ckpt.read_onnx_header(g)["source"]["file"] for g in folder.glob("*.onnx")}
    assert sources == {pt.name for pt in pts}
