"""Measures the web app (not a test: run it by hand; docs/WEB.md quotes it).

    python tests/bench_web.py throughput [--jobs 4] [--workers 1 2]
    python tests/bench_web.py latency [--jobs 10]
    python tests/bench_web.py rates
    python tests/bench_web.py slowclients [--connections 200]

throughput: a redis-server of its own, `genreshift serve --queue` and N `genreshift worker`
processes (one torch thread each) with the shipped models; --jobs 30 s stereo 44.1 kHz songs
are posted at once and the wall time from the first post to the last "done" gives jobs per
minute. latency: one short job at a time to an idle worker; the time from the web process's
enqueue to the worker's start (both stamped in the job's Redis record, same clock), next to
the in-process queue's (JobManager, the same measurement on its Job). rates: Converter.run's
seconds of work per second of audio, the time estimate's starting values. slowclients:
`genreshift serve` with its default limits, then with the header timeout out of the way
(uvicorn alone); N connections each send half a request header and wait, while a normal
client asks for /api/info: how long the half-open ones stay, and what the normal one gets.
Each run prints the 1-minute load average before and after: on a shared machine the times are
upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from conftest import ROOT, music_like
from test_web_api import wav_bytes
from test_web_queue import REDIS_SERVER, Site


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def _models() -> Path:
    from genreshift.inference.convert import default_models_dir

    return default_models_dir()


def _song(seconds: float, seed: int) -> bytes:
    """A stereo 44.1 kHz song: 5 s of music_like (slow to make at length) repeated."""
    part = min(seconds, 5.0)
    left, right = music_like(part, 44_100, seed=seed), music_like(part, 44_100, seed + 1)
    reps = int(np.ceil(seconds / part))
    audio = np.tile(np.stack([left, right], 1), (reps, 1))[:int(seconds * 44_100)]
    return wav_bytes(audio, 44_100, subtype="PCM_16")


def throughput(n_workers: int, jobs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        site = Site(Path(tmp), _models())
        site.start_redis()
        try:
            site.start_web()
            for i in range(n_workers):
                site.start_worker(f"b{i}")
            site.wait_web()
            site.wait_workers(n_workers)
            songs = [_song(30.0, seed=10 * k) for k in range(jobs)]
            load = _load()
            t0 = time.monotonic()
            ids = [site.post(s, genre="jazz")["id"] for s in songs]
            done = [site.wait(i, timeout=3600) for i in ids]
            wall = time.monotonic() - t0
            assert all(d["state"] == "done" for d in done), [d["error"] for d in done]
            return {"workers": n_workers, "jobs": jobs, "wall_s": round(wall, 1),
                    "jobs_per_min": round(jobs / wall * 60, 2),
                    "job_s": [d["elapsed_s"] for d in done], "load": f"{load} -> {_load()}"}
        finally:
            site.close()


def latency(jobs: int) -> dict:
    import redis

    from genreshift.web.jobs import Job, JobManager

    with tempfile.TemporaryDirectory() as tmp:
        site = Site(Path(tmp), _models())
        site.start_redis()
        try:
            site.start_web()
            site.start_worker("b0")
            site.wait_web()
            site.wait_workers(1)
            r = redis.Redis.from_url(site.url)
            delays = []
            song = _song(1.0, seed=3)
            load = _load()
            for _ in range(jobs):
                job = site.wait(site.post(song, genre="jazz")["id"])
                assert job["state"] == "done", job["error"]
                f = r.hgetall(f"genreshift:job:{job['id']}")
                delays.append(float(f[b"started"]) - float(f[b"enqueued"]))
                time.sleep(1.5)  # the worker is back in its BLPOP, idle
        finally:
            site.close()
        redis_ms = sorted(round(d * 1000, 1) for d in delays)

        # the in-process queue: the same stamps on its own Job, with a job that does nothing
        started = threading.Event()
        manager = JobManager(lambda job, state, stage: started.set() or {}, workers=1,
                             workdir=tmp)
        manager.start()
        local = []
        try:
            for _ in range(jobs):
                started.clear()
                job_id, folder = manager.new_job_dir()
                job = Job(id=job_id, dir=folder, mode="trained", input_path=folder / "x",
                          input_name="x", input_info={"duration_s": 1.0},
                          original_path=folder / "x", label="x")
                t = time.time()
                manager.submit(job)
                started.wait(10)
                local.append(job.started - t)
                time.sleep(0.5)
        finally:
            manager.close()
        return {"jobs": jobs, "redis_ms": redis_ms,
                "redis_median_ms": round(statistics.median(delays) * 1000, 1),
                "in_process_median_ms": round(statistics.median(local) * 1000, 2),
                "load": f"{load} -> {_load()}"}


def rates() -> list[dict]:
    import soundfile as sf
    import torch

    from genreshift.web.jobs import Converter, Job, WorkerState

    torch.set_num_threads(1)
    conv = Converter(None, "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, seconds in (("trained", 30.0), ("trained", 10.0), ("reference", 30.0),
                              ("reference", 10.0)):
            for rep in range(2):
                d = Path(tmp) / f"{mode}-{seconds:g}-{rep}"
                d.mkdir()
                song = d / "input.wav"
                song.write_bytes(_song(seconds, seed=1))
                ref = None
                if mode == "reference":
                    ref = d / "reference.wav"
                    sf.write(ref, music_like(10.0, 22_050, seed=4), 22_050)
                job = Job(id="b" * 32, dir=d, mode=mode, input_path=song, input_name="s.wav",
                          input_info={"duration_s": seconds}, original_path=song,
                          label="jazz", genre="jazz" if mode == "trained" else None,
                          reference_path=ref, reference_name="r")
                load = _load()
                t = time.perf_counter()
                conv.run(job, WorkerState(), lambda s: None)
                wall = time.perf_counter() - t
                rows.append({"mode": mode, "seconds": seconds, "wall_s": round(wall, 2),
                             "rate": round(wall / seconds, 3), "load": f"{load} -> {_load()}"})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def slowclients(connections: int, header_timeout: float | None, watch: float) -> dict:
    import socket
    import subprocess

    import httpx
    from test_web_queue import _free_port

    port = _free_port()
    extra = [] if header_timeout is None else ["--header-timeout", str(header_timeout)]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genreshift", "serve", "--port", str(port), "--workdir", tmp,
             "--log-level", "warning", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.2)
            load = _load()
            socks = []
            for _ in range(connections):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                s.setblocking(False)
                socks.append(s)
            t0 = time.monotonic()
            time.sleep(1.0)
            t = time.monotonic()
            try:
                normal = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=30).status_code
            except httpx.TransportError as e:
                normal = type(e).__name__
            normal_s = time.monotonic() - t
            closed_at: dict[int, float] = {}
            while len(closed_at) < len(socks) and time.monotonic() - t0 < watch:
                for i, s in enumerate(socks):
                    if i in closed_at:
                        continue
                    try:
                        if s.recv(1) == b"":
                            closed_at[i] = time.monotonic() - t0
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic() - t0
                time.sleep(0.05)
            for s in socks:
                s.close()
            times = sorted(closed_at.values())
            return {"connections": connections,
                    "header_timeout": header_timeout if header_timeout is not None else 10.0,
                    "closed": len(times), "watched_s": watch,
                    "first_closed_s": round(times[0], 2) if times else None,
                    "last_closed_s": round(times[-1], 2) if times else None,
                    "normal_request": normal, "normal_request_s": round(normal_s, 3),
                    "load": f"{load} -> {_load()}"}
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["throughput", "latency", "rates", "slowclients"])
    p.add_argument("--connections", type=int, default=200)
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    if args.what in ("throughput", "latency") and REDIS_SERVER is None:
        sys.exit("redis-server is not installed (make sysdeps)")
    print(f"commit {os.popen(f'git -C {ROOT} rev-parse --short HEAD').read().strip()}, "
          f"{os.cpu_count()} cores, load {_load()}", flush=True)
    if args.what == "throughput":
        for n in args.workers:
            print(json.dumps(throughput(n, args.jobs or 4)), flush=True)
    elif args.what == "latency":
        print(json.dumps(latency(args.jobs or 10)), flush=True)
    elif args.what == "slowclients":
        print(json.dumps(slowclients(args.connections, None, watch=30.0)), flush=True)
        # uvicorn without our header timeout (a timeout longer than the watch)
        print(json.dumps(slowclients(args.connections, 3600.0, watch=30.0)), flush=True)
    else:
        rates()


if __name__ == "__main__":
    main()
