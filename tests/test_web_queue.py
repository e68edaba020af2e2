"""The Redis queue for real: a redis-server of the test's own on a loopback port, `genreshift
serve --queue` and `genreshift worker` processes, jobs through them end to end.

The tests run in order on one site (Redis, a storage folder, the web process, workers), each
leaving it as the next expects: a web restart with jobs queued (and no worker yet, so that
they stay queued; then two workers start); one job end to end; two jobs spread over the two
workers; Redis going away; a worker killed mid-job (the job is retried once on another, then
failed when that one is killed too). The models are the tiny untrained ones
of test_web_api; the workers beat their heart every 2 s so that a dead one is noticed in
6 s rather than RQ's minute.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from conftest import ROOT, music_like
from test_web_api import GENRES, PNG_MAGIC, wav_bytes, write_tiny_models

from genreshift.web.jobs import log_tag

REDIS_SERVER = shutil.which("redis-server")
STATUS_KEYS = {"id", "state", "stage", "queue_position", "created_at", "elapsed_s",
               "estimate_s", "expires_in_s", "input", "settings", "result", "error", "links"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Site:
    """redis-server, a storage folder, one `genreshift serve --queue` and its workers, each a
    process of this test's own (stopped by PID)."""

    def __init__(self, tmp: Path, models: Path) -> None:
        self.tmp = tmp
        self.models = models
        self.storage = tmp / "storage"
        self.storage.mkdir()
        self.redis_port = _free_port()
        self.url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.web_port = _free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.redis: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.web_logs: list[Path] = []
        # One client for every request: a new httpx client per poll costs ~20 ms of CPU,
        # taken from the workers being watched.
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            # Saved on shutdown and loaded on start, as a real deployment's would be.
            [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "3600 1", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=(self.tmp / "redis.log").open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            assert self.redis.poll() is None, (self.tmp / "redis.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop_redis(self) -> None:
        self.redis.terminate()
        self.redis.wait(20)

    def start_web(self) -> None:
        log = self.tmp / f"web-{len(self.web_logs)}.log"
        self.web_logs.append(log)
        self.web = subprocess.Popen(
            [sys.executable, "-m", "genreshift", "serve", "--port", str(self.web_port),
             "--queue", self.url, "--storage", str(self.storage), "--models",
             str(self.models), "--ttl-minutes", "10"],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)

    def wait_web(self) -> None:
        deadline = time.monotonic() + 90
        while True:
            assert self.web.poll() is None, self.web_logs[-1].read_text()
            try:
                self.http.get("/api/info", timeout=2)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the web process did not start"
                time.sleep(0.1)

    def stop_web(self) -> str:
        self.web.send_signal(signal.SIGINT)
        self.web.wait(30)
        return self.web_logs[-1].read_text()

    def start_worker(self, name: str) -> None:
        log = self.tmp / f"worker-{name}.log"
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "genreshift", "worker", "--queue", self.url, "--storage",
             str(self.storage), "--models", str(self.models), "--threads", "1",
             "--heartbeat", "2", "--name", name],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)

    def worker_log(self, name: str) -> str:
        return (self.tmp / f"worker-{name}.log").read_text()

    def wait_workers(self, n: int) -> None:
        deadline = time.monotonic() + 90
        while self.info()["limits"]["workers"] != n:
            for name, p in self.workers.items():
                assert p.poll() is None, self.worker_log(name)
            assert time.monotonic() < deadline, f"{n} workers did not register"
            time.sleep(0.1)

    def kill_worker(self, name: str) -> None:
        """SIGKILL, as a machine that is lost: no warm shutdown, no goodbye to Redis."""
        p = self.workers.pop(name)
        p.kill()
        p.wait(10)

    def info(self) -> dict:
        return self.http.get("/api/info").json()

    def post(self, data: bytes, genre: str = "jazz", name: str = "song.wav") -> dict:
        r = self.http.post("/api/jobs", files={"file": (name, data)}, data={"genre": genre})
        assert r.status_code == 202, r.text
        return r.json()

    def status(self, job_id: str) -> dict:
        r = self.http.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, states=("done", "failed"), timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while (s := self.status(job_id))["state"] not in states:
            assert time.monotonic() < deadline, f"job stayed {s['state']}: {s}"
            time.sleep(0.1)
        return s

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def which_worker(self, job_id: str, timeout: float = 60) -> str:
        """The worker whose log says it started ``job_id`` (logs name jobs by digest)."""
        line = f"{log_tag(job_id)} started"
        deadline = time.monotonic() + timeout
        while True:
            found = [n for n in self.workers if line in self.worker_log(n)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no worker started {log_tag(job_id)}"
            time.sleep(0.05)

    def close(self) -> None:
        self.http.close()
        for p in [*self.workers.values(), self.web, self.redis]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed: `make sysdeps` installs it (Debian's "
                    "redis-server package; apt-get install redis-server)")
    s = Site(tmp_path_factory.mktemp("queue-site"),
             write_tiny_models(tmp_path_factory.mktemp("queue-models")))
    s.start_redis()
    try:
        s.start_web()
        s.wait_web()
        yield s
    finally:
        s.close()


def _redis(site: Site):
    import redis

    return redis.Redis.from_url(site.url)


# --------------------------------------------------------------------------- the tests


def test_web_restart_keeps_queued_jobs(site: Site) -> None:
    assert not site.workers  # none started yet: the jobs stay queued
    a = site.post(wav_bytes(music_like(1.0, seed=51)), name="first.wav")
    b = site.post(wav_bytes(music_like(1.0, seed=52)), name="second.wav")
    assert (a["queue_position"], b["queue_position"]) == (0, 1)
    assert "no worker is running now" in site.status(a["id"])["stage"]  # the page says why
    out = site.stop_web()
    assert "Traceback" not in out, out
    site.start_web()
    site.wait_web()
    s = site.status(b["id"])  # the new web process knows them
    assert s["state"] == "queued" and s["queue_position"] == 1
    assert s["input"]["name"] == "second.wav"
    site.start_worker("w1")
    site.start_worker("w2")
    sa, sb = site.wait(a["id"]), site.wait(b["id"])
    assert sa["state"] == sb["state"] == "done", (sa, sb)
    assert site.get(sb["links"]["downloads"]["wav"]).status_code == 200


def test_job_end_to_end_through_serve_and_workers(site: Site) -> None:
    site.wait_workers(2)
    song = wav_bytes(music_like(2.0, seed=21))
    job = site.post(song, name="My Song.wav")
    assert job["state"] == "queued" and set(job) == STATUS_KEYS
    assert job["estimate_s"] is not None  # from the starting rate, before any job finished
    s = site.wait(job["id"])
    assert s["state"] == "done", s["error"]
    assert set(s) == STATUS_KEYS  # the page reads the same status as without Redis
    assert [t["genre"] for t in s["result"]["targets"]] == ["jazz"]
    assert s["result"]["source_guess"] in GENRES and s["expires_in_s"] > 500
    # the files are in the shared storage, written by the worker
    folder = site.storage / "jobs" / s["id"]
    assert {"input.wav", "result.wav", "spectrogram.png"} <= {p.name for p in folder.iterdir()}
    r = site.get(s["links"]["downloads"]["flac"])
    assert r.status_code == 200 and r.headers["content-disposition"].endswith(
        'filename="My_Song.jazz.flac"')
    assert sf.info(io.BytesIO(r.content)).duration == pytest.approx(2.0, abs=0.05)
    assert site.get(s["links"]["original"]).content == song
    assert site.get(s["links"]["spectrogram"]).content.startswith(PNG_MAGIC)
    r = _redis(site)
    # the worker's measured speed is what the next estimate uses
    assert float(r.hget("genreshift:rates", "trained")) > 0
    # expiry: the sweep (the web process's janitor, or any worker's) deletes the files
    due = r.zscore("genreshift:expiry", s["id"])
    assert due == pytest.approx(time.time() + s["expires_in_s"], abs=5)
    from genreshift.web.redisqueue import sweep

    assert sweep(r, site.storage / "jobs", now=due + 1) >= 1
    assert not folder.exists()
    gone = site.get(s["links"]["status"])
    assert gone.status_code == 410 and "expired" in gone.json()["error"]


def test_two_jobs_spread_across_the_workers(site: Site) -> None:
    site.wait_workers(2)
    a = site.post(wav_bytes(music_like(4.0, seed=31)), genre="jazz", name="a.wav")
    b = site.post(wav_bytes(music_like(4.0, seed=32)), genre="rock", name="b.wav")
    assert {site.which_worker(a["id"]), site.which_worker(b["id"])} == {"w1", "w2"}
    sa, sb = site.wait(a["id"]), site.wait(b["id"])
    assert sa["state"] == sb["state"] == "done", (sa["error"], sb["error"])
    assert sb["result"]["targets"][0]["genre"] == "rock"
    # no job id in any log: the logs name jobs by a digest
    logs = "".join(site.worker_log(n) for n in site.workers) + site.web_logs[-1].read_text()
    assert log_tag(a["id"]) in logs and a["id"] not in logs and b["id"] not in logs
    # DELETE reaches the shared storage
    assert site.http.delete(sa["links"]["status"]).status_code == 200
    assert not (site.storage / "jobs" / sa["id"]).exists()
    assert site.get(sa["links"]["status"]).status_code == 410


def test_redis_going_away(site: Site) -> None:
    job = site.post(wav_bytes(music_like(1.5, seed=61)))
    site.wait(job["id"])
    site.stop_redis()
    try:
        r = site.get(f"/api/jobs/{job['id']}")
        assert r.status_code == 503 and "cannot be reached" in r.json()["error"]
        assert r.headers["retry-after"] == "30"
        r = site.http.post("/api/jobs", files={"file": ("a.wav", wav_bytes(music_like(1.0)))},
                           data={"genre": "jazz"})
        assert r.status_code == 503 and set(r.json()) == {"error"}
        assert "Redis at redis://127.0.0.1" in r.json()["error"]
        assert site.info()["limits"]["workers"] == 0  # the page still loads
        time.sleep(3)  # the janitor meets the outage too
        assert site.web.poll() is None and all(p.poll() is None for p in site.workers.values())
    finally:
        site.start_redis()
    # back (it kept its data, as a real one would): everything carries on without a restart
    assert site.status(job["id"])["state"] == "done"
    s = site.wait(site.post(wav_bytes(music_like(1.5, seed=62)))["id"])
    assert s["state"] == "done", s
    out = site.web_logs[-1].read_text()
    assert "Traceback" not in out and "cannot be reached" in out, out


def test_worker_killed_mid_job(site: Site) -> None:
    """Killed once: retried on another worker. Killed on the retry too: failed, with the
    reason. Never left "running"."""
    song = wav_bytes(music_like(8.0, seed=41))
    job = site.post(song)
    first = site.which_worker(job["id"])
    site.wait(job["id"], states=("running",))
    assert _children(site.workers[first].pid) == []  # it converts in its own process
    site.kill_worker(first)
    site.start_worker("w3")  # starts while the job is retried
    s = site.wait(job["id"])
    assert s["state"] == "done", s
    # Retried on a worker still alive: the other one, or w3 when the other was still
    # reconnecting after test_redis_going_away (its Redis retry loop sleeps 4 s).
    # which_worker reads only the live workers' logs (kill_worker dropped the first).
    assert site.which_worker(job["id"], timeout=5) != first

    site.wait_workers(2)
    job = site.post(song)
    site.wait(job["id"], states=("running",))
    site.kill_worker(site.which_worker(job["id"]))
    (last,) = site.workers
    assert site.which_worker(job["id"]) == last  # the retry
    site.wait(job["id"], states=("running",))
    site.kill_worker(last)
    s = site.wait(job["id"], timeout=30)
    assert s["state"] == "failed" and "the worker running it stopped" in s["error"], s
    assert "so did the retry" in s["error"] and "upload the song again" in s["error"]
    assert s["expires_in_s"] > 0  # it expires as any finished job does


def test_queue_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from genreshift.cli import main

    port = _free_port()  # nothing listens there
    cases = [
        (["serve", "--queue", f"redis://127.0.0.1:{port}/0"], "--queue needs --storage DIR"),
        (["serve", "--storage", str(tmp_path)], "it needs --queue"),
        (["serve", "--queue", "redis://x/0", "--storage", str(tmp_path), "--workers", "2"],
         "start `genreshift worker` processes"),
        (["serve", "--queue", f"redis://127.0.0.1:{port}/0", "--storage", str(tmp_path)],
         f"cannot reach Redis at redis://127.0.0.1:{port}/0"),
        (["worker", "--queue", "localhost:6379", "--storage", str(tmp_path)],
         "not a Redis URL; give redis://HOST:PORT/DB"),
        (["worker", "--queue", f"redis://127.0.0.1:{port}/0", "--storage",
          str(tmp_path / "nowhere")], "no such folder"),
        (["worker", "--queue", f"redis://:secret@127.0.0.1:{port}/0", "--storage",
          str(tmp_path)], "redis://:***@127.0.0.1"),
    ]
    for argv, phrase in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert phrase in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
        assert "secret" not in err


# --------------------------------------------------------------------------- helpers


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found

