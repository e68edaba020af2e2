"""onnxruntime's graph optimisation levels on the shipped graphs: session creation, first run
and best of 5 later runs of one 256-frame generator window and 11 classifier windows of 128
frames (what genreshift/inference/runtime.py's per-network level was chosen by).

    .venv/bin/python benchmarks/onnx_levels.py [all extended basic ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from genreshift.checkpoint import load_onnx
from genreshift.inference import runtime

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
GRAPHS = (("classifier.onnx", "classifier", (11, 128, 128)),
          ("rest-to-jazz.ab.onnx", "converter", (1, 128, 256)))


def measure(level: str) -> str:
    out = []
    for name, kind, shape in GRAPHS:
        _, data = load_onnx(ROOT / "checkpoints" / name, kind=kind)
        so = runtime.session_options(None)
        so.graph_optimization_level = LEVELS[level]
        t = time.perf_counter()
        s = ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])
        t_sess = time.perf_counter() - t
        feed = {s.get_inputs()[0].name: np.random.default_rng(0).uniform(
            -1, 0, shape).astype(np.float32)}
        t = time.perf_counter()
        s.run(None, feed)
        t_first = time.perf_counter() - t
        later = []
        for _ in range(5):
            t = time.perf_counter()
            s.run(None, feed)
            later.append(time.perf_counter() - t)
        out.append(f"{kind}: session {t_sess * 1e3:.0f} ms, first run {t_first * 1e3:.0f} ms, "
                   f"best later {min(later) * 1e3:.0f} ms")
    return f"{level}: " + "; ".join(out)


if __name__ == "__main__":
    for level in sys.argv[1:] or ["all", "extended", "basic", "all", "extended"]:
        print(measure(level))
