"""The distribution: the wheel carries the default models, and an installed wheel converts
from outside the repository with nothing but its own files; with no converter to be found,
`genreshift genres` and `convert --to` fail with a message that fits where they looked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, music_like

from genreshift.cli import main

PACKAGE_MODELS = ROOT / "genreshift" / "checkpoints"
SHIPPED_FILES = sorted(p.name for p in PACKAGE_MODELS.iterdir() if p.is_file())


def _run(args: list[str], cwd: Path, pythonpath: Path | None = None,
         models_env: str | None = None) -> subprocess.CompletedProcess:
    """`python -m genreshift ARGS` in a fresh process; only PYTHONPATH and GENRESHIFT_MODELS
    differ from this process's environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GENRESHIFT_MODELS")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    if models_env is not None:
        env["GENRESHIFT_MODELS"] = models_env
    return subprocess.run([sys.executable, "-m", "genreshift", *args], check=False,
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genreshift: error: "), r.stderr
    return lines[0]


def test_repository_checkpoints_is_a_link_to_the_package_data() -> None:
    """One source of the models: checkpoints/ in the repository root is the package folder."""
    link = ROOT / "checkpoints"
    assert link.is_symlink() and not Path(os.readlink(link)).is_absolute()
    assert link.resolve() == PACKAGE_MODELS.resolve()
    assert {"classifier.pt", "MODEL_CARD.md"} <= set(SHIPPED_FILES)
    assert any(n.startswith("rest-to-") and n.endswith(".pt") for n in SHIPPED_FILES)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the package's sources (no stale build/ of the checkout
    can leak into it), checked for the models, then installed into a bare target folder."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for lic in ROOT.glob("LICEN[CS]E*"):
        shutil.copy2(lic, src / lic.name)
    shutil.copytree(ROOT / "genreshift", src / "genreshift",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(dist), str(src)],
                       check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheels = list(dist.glob("genreshift-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    for name in SHIPPED_FILES:
        member = f"genreshift/checkpoints/{name}"
        assert member in sizes, f"the wheel lacks {member}"
        assert sizes[member] == (PACKAGE_MODELS / name).stat().st_size, member
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(site), str(wheels[0])], check=False, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return site


@pytest.mark.slow
def test_installed_wheel_lists_and_converts_outside_the_repository(
        installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert ROOT not in work.resolve().parents
    r = _run(["genres", "--json"], work, pythonpath=installed)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    # the models came from the installed package, not from the checkout
    folder = Path(s["folder"])
    assert folder == (installed / "genreshift" / "checkpoints").resolve(), folder
    assert s["targets"] and all(Path(t["model"]).parent == folder for t in s["targets"])
    assert Path(s["classifier"]).parent == folder
    shipped_targets = sorted(n[len("rest-to-"):-3] for n in SHIPPED_FILES
                             if n.startswith("rest-to-") and n.endswith(".pt"))
    assert sorted(t["genre"] for t in s["targets"]) == shipped_targets
    r = _run(["genres"], work, pythonpath=installed)
    assert r.returncode == 0 and "jazz" in r.stdout and str(folder) in r.stdout, r.stderr

    sr = 22_050
    sf.write(work / "in.wav", music_like(2.0, sr, seed=3), sr, subtype="PCM_16")
    r = _run(["convert", "in.wav", "--to", "jazz", "-o", "out.wav", "--json"], work,
             pythonpath=installed)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert Path(summary["targets"][0]["model"]) == folder / "rest-to-jazz.pt"
    out, out_sr = sf.read(work / "out.wav", dtype="float32", always_2d=True)
    assert out_sr == sr and out.shape == (2 * sr, 1)
    assert np.isfinite(out).all() and 0.01 < np.abs(out).max() <= 1.0


def test_installed_wheel_without_its_models_says_so(installed: Path, tmp_path: Path) -> None:
    """An installation whose package folder lacks the models (a wheel built without the
    package data) fails, naming that folder and the reinstall."""
    site = tmp_path / "site"
    shutil.copytree(installed, site)
    shutil.rmtree(site / "genreshift" / "checkpoints")
    line = _one_error_line(_run(["genres"], tmp_path, pythonpath=site))
    assert str((site / "genreshift" / "checkpoints").resolve()) in line
    assert "does not exist" in line and "reinstall" in line and "--models" in line


def _main_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """The CLI in this process (the same main() as the console script): exit 1 and one line
    on stderr; returns that line and stdout."""
    code = main(args)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("genreshift: error: "), err
    return lines[0], out


@pytest.mark.parametrize("how", ["env-missing", "env-empty", "option-empty"])
def test_no_converters_found_names_the_folder_and_the_fix(
        how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    (empty / "notes.pt").write_bytes(b"not a checkpoint")
    monkeypatch.delenv("GENRESHIFT_MODELS", raising=False)
    args: list[str] = []
    if how == "env-missing":
        where = tmp_path / "nope"
        monkeypatch.setenv("GENRESHIFT_MODELS", str(where))
    elif how == "env-empty":
        where = empty
        monkeypatch.setenv("GENRESHIFT_MODELS", str(where))
    else:
        where, args = empty, ["--models", str(empty)]
    line, _ = _main_error(["genres", *args], capsys)
    assert str(where) in line
    if how == "env-missing":
        assert "$GENRESHIFT_MODELS" in line and "no such folder" in line and "unset it" in line
    elif how == "env-empty":
        assert "$GENRESHIFT_MODELS" in line and "unset it" in line and "notes.pt" in line
    else:
        assert line.startswith("genreshift: error: --models ") and "notes.pt" in line
    _, out = _main_error(["genres", "--json", *args], capsys)
    assert json.loads(out)["targets"] == []
    song, result = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(song, music_like(1.0), 22_050)
    line, _ = _main_error(["convert", str(song), "--to", "jazz", "-o", str(result), *args],
                          capsys)
    assert str(where) in line and "unknown target genre" not in line
    assert not result.exists()


def test_models_option_and_env_override_the_package_models(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder with one converter: --models and $GENRESHIFT_MODELS each select it instead of
    the package's; --models wins over the variable."""
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy2(PACKAGE_MODELS / "rest-to-jazz.pt", one / "rest-to-jazz.pt")
    for args, env in ((["--models", str(one)], None), ([], str(one)),
                      (["--models", str(one)], str(tmp_path / "nope"))):
        if env is None:
            monkeypatch.delenv("GENRESHIFT_MODELS", raising=False)
        else:
            monkeypatch.setenv("GENRESHIFT_MODELS", env)
        assert main(["genres", "--json", *args]) == 0, (args, env)
        s = json.loads(capsys.readouterr().out)
        assert Path(s["folder"]) == one and [t["genre"] for t in s["targets"]] == ["jazz"]
        assert s["classifier"] is None
