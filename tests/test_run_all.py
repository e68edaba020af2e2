"""benchmarks/run_all: the suite that regenerates BENCHMARKS.md, run end to end at --quick
sizes on the sections that evaluate every method (a freshly rendered corpus, the shipped
models), and its refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_all(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"),
                           *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_quick_run_writes_the_comparison(tmp_path: Path) -> None:
    if not (Path("/usr/share/sounds/sf2") / "FluidR3_GM.sf2").is_file():
        pytest.skip("GM SoundFonts not installed (the Makefile installs them)")
    out = tmp_path / "B.md"
    r = run_all("--quick", "--only", "evaluate,gram", "--work", tmp_path / "work",
                "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    assert f"Commit `{commit}`" in text and "QUICK run" in text
    # every method has a row in the comparison; the Gram section has all five
    for method in ("identity", "eq", "trained", "reference"):
        assert re.search(rf"^\| {method} \| 2 \|", text, re.M), method
    gram = text.split("## The published Gram baseline")[1]
    assert re.search(r"^\| gram-baseline \| 1 \|", gram, re.M)
    # the table's numbers are the reports' numbers
    summary = json.loads((tmp_path / "evaluate_summary.json").read_text())
    trained = summary["main"]["trained"]["overall"]["method"]
    assert f"| {trained['lsd_db']:.2f} (" in text
    assert f"| {trained['chroma']:.3f} | {trained['chroma_corr']:.3f} |" in text
    for png in ("comparison.png", "comparison_short.png"):
        assert (tmp_path / png).stat().st_size > 10_000
        assert f"]({png})" in text
    assert not (tmp_path / "work").exists()  # scratch removed without --keep
    assert str(tmp_path) not in text  # scratch paths are written as $WORK


def test_refusals(tmp_path: Path) -> None:
    r = run_all("--only", "nope", "--out", tmp_path / "B.md")
    assert r.returncode == 2 and "unknown section nope" in r.stderr
    r = run_all("--only", "evaluate")  # a partial run must not replace BENCHMARKS.md
    assert r.returncode == 2 and "own --out" in r.stderr
    r = run_all("--quick")
    assert r.returncode == 2 and "own --out" in r.stderr
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "file").write_text("x")
    r = run_all("--work", tmp_path / "someone", "--out", tmp_path / "B.md")
    assert r.returncode == 1 and "not made by run_all" in r.stderr
    assert (tmp_path / "someone" / "file").is_file()


def test_a_stopped_run_resumes_with_its_saved_sections(tmp_path: Path) -> None:
    if not (Path("/usr/share/sounds/sf2") / "FluidR3_GM.sf2").is_file():
        pytest.skip("GM SoundFonts not installed (the Makefile installs them)")
    work, out = tmp_path / "work", tmp_path / "B.md"
    # a run that got as far as its corpus: the section is saved as it ends
    r = run_all("--quick", "--only", "corpus", "--work", work, "--keep", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((work / "sections" / "corpus.json").read_text())
    assert "real-time factor" in saved["body"]
    # going on: the corpus is taken as it is (not rendered again), the rest runs
    (work / "synth" / "marker").write_text("kept")
    r = run_all("--quick", "--only", "corpus,window_seams", "--work", work, "--keep",
                "--resume", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "corpus: saved by the earlier run" in r.stdout
    assert (work / "synth" / "marker").read_text() == "kept"
    text = out.read_text()
    assert "Resumed run: corpus measured by an earlier process" in text
    assert saved["body"].replace(str(work), "$WORK") in text
    assert "## Trained mode: windowed against one-piece output" in text
    assert (work / "sections" / "window_seams.json").is_file()
    # each row carries the CPU check taken before its section: the saved one for a saved section
    rows = dict(re.findall(r"^\| \[([^]]+)\]\(#[^)]*\) \|.*\| ([0-9.]+|—) \|$", text, re.M))
    assert rows["Synthetic corpus: rendering speed"] == f"{saved['times'][3]:.3f}"
    assert float(rows["Trained mode: windowed against one-piece output"]) > 0
    # another machine: only sections/ travels; the corpus is rendered again, the rest is taken
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(work / "sections", moved / "sections")
    # a section saved before the CPU check existed (three times, no check) still resumes
    seams = moved / "sections" / "window_seams.json"
    rec = json.loads(seams.read_text())
    rec["times"] = rec["times"][:3]
    seams.write_text(json.dumps(rec))
    out.unlink()
    r = run_all("--quick", "--only", "corpus,window_seams", "--work", moved, "--keep",
                "--resume", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rendering it again" in r.stdout and "window_seams: saved by" in r.stdout
    assert (moved / "synth" / "metadata.csv").is_file()
    assert "Resumed run: window_seams measured" in out.read_text()
    assert re.search(r"^\| \[Trained mode: windowed against one-piece output\].* \| — \|$",
                     out.read_text(), re.M)
    # other sizes would mix two measurements in one file: refused, nothing written
    out.unlink()
    r = run_all("--quick", "--set", "seams_every=2", "--only", "window_seams", "--work", work,
                "--resume", "--out", out)
    assert r.returncode == 1 and "measured with other sizes" in r.stderr
    assert not out.exists()
    r = run_all("--resume", "--out", out)
    assert r.returncode == 2 and "--resume needs --work" in r.stderr


def test_code_signature_ignores_documentation_commits(tmp_path: Path, monkeypatch) -> None:
    """A resumed run keeps its sections across commits of notes, not across code changes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all_mod", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_all_mod", mod)  # its dataclasses look it up
    spec.loader.exec_module(mod)
    repo = tmp_path / "repo"
    (repo / "genreshift").mkdir(parents=True)
    (repo / "benchmarks" / "results").mkdir(parents=True)

    def commit(path: str, text: str) -> str:
        (repo / path).write_text(text)
        for cmd in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit",
                                   "-qm", path]):
            subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
        return mod._code_signature()

    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    monkeypatch.setattr(mod, "ROOT", repo)
    first = commit("genreshift/a.py", "x = 1\n")
    assert commit("README.md", "notes\n") == first
    assert commit("genreshift/MODEL_CARD.md", "card\n") == first
    assert commit("benchmarks/results/plot.png", "png\n") == first
    second = commit("genreshift/a.py", "x = 2\n")
    assert second != first
    # uncommitted edits: of the notes, nothing; of the code, a hash of their diff
    (repo / "README.md").write_text("more notes\n")
    (repo / "benchmarks" / "results" / "plot.png").write_text("png 2\n")
    assert mod._code_changes() is None
    (repo / "genreshift" / "a.py").write_text("x = 3\n")
    changed = mod._code_changes()
    assert changed is not None and mod._code_signature() == second
    (repo / "genreshift" / "a.py").write_text("x = 4\n")
    assert mod._code_changes() not in (None, changed)
