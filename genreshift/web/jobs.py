"""Conversion jobs for the web app: a bounded queue, worker threads, results that expire.

A job is a private folder named by its id (a random token, 192 bits: knowing it is what gives
access) holding the upload, the result and the spectrogram image. ``JobManager`` runs jobs in
a fixed number of worker threads fed by a bounded queue (a conversion is CPU-heavy: more
workers than cores only makes every job slower), and deletes a job's folder ``ttl_seconds``
after it ends. ``Converter`` is what a job runs: the library's conversion functions, the same
ones `genreshift convert` calls, with one model cache per worker. genreshift.web.redisqueue
has the same interface over Redis and RQ, for workers in other processes and machines.

Nothing here knows HTTP; genreshift.web.app turns these exceptions into JSON responses.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genreshift import audio as gaudio
from genreshift.errors import GenreshiftError
from genreshift.inference import convert as tconv
from genreshift.inference.pipeline import resolve_device

log = logging.getLogger("genreshift.web")

JOB_ID_BYTES = 24  # 192 random bits, 32 URL-safe characters
JOB_ID_RE = re.compile(r"[A-Za-z0-9_-]{32}")
# Expired and deleted ids are remembered (a bounded number) so that a late request hears
# "expired" rather than "unknown".
TOMBSTONES = 10_000
# The time estimate: seconds of work per second of audio. Until a server has finished a job of
# a mode, it uses these starting rates, measured on the project's 2-core machine when quiet
# (docs/DECISIONS.md: a 30 s song converts in 2.10 s with two threads, reference mode takes
# 4.6 s) plus the spectrogram drawing (10-18% of a web job: convert_trained_file alone against
# Converter.run on the same song). The first finished job replaces the starting rate (it was
# measured elsewhere); each later one moves a running average by RATE_WEIGHT. Under heavy load
# the rates were 8x higher (docs/WEB.md, "Time estimate"): the first job there corrects it.
START_RATES = {"trained": 0.08, "reference": 0.18}
RATE_WEIGHT = 0.3
DOWNLOAD_FORMATS = ("wav", "flac", "mp3")

# pyplot keeps global state; two workers drawing at once could mix their figures.
_PLOT_LOCK = threading.Lock()


class QueueFull(Exception):
    """Every worker is busy and the queue is full."""


class QueueUnavailable(Exception):
    """The job queue's store (Redis) cannot be reached; the message says so for the client."""


class UnknownJob(Exception):
    """No job has this id (or the id is malformed)."""


class JobGone(Exception):
    """The job existed but its results were deleted (expired, or deleted on request)."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(job_id, reason)
        self.reason = reason


@dataclass
class Job:
    """One conversion: what to do, where its files are, and how far it got."""

    id: str
    dir: Path
    mode: str  # "trained" or "reference"
    input_path: Path
    input_name: str  # the client's file name, cleaned; only ever displayed
    input_info: dict  # format, encoding, sample_rate, channels, duration_s
    original_path: Path  # what a browser plays as the original (the upload, or a WAV of it)
    label: str  # "jazz", "jazz+rock" or "like-<reference>": names the downloads
    genre: str | None = None
    source: str | None = None
    strength: float = 1.0
    rhythm: str = "keep"  # trained mode's rhythm section (convert --rhythm)
    reference_path: Path | None = None
    reference_name: str | None = None
    created: float = field(default_factory=time.time)
    state: str = "queued"  # queued -> running -> done | failed
    stage: str = "waiting for a worker"
    seq: int = 0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    summary: dict | None = None
    cancelled: bool = False
    files_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def result_path(self) -> Path:
        return self.dir / "result.wav"

    @property
    def plot_path(self) -> Path:
        return self.dir / "spectrogram.png"

    def public_message(self, message: str) -> str:
        """A library message with the server's paths replaced by the names the user gave."""
        names = {self.input_path: f"'{self.input_name}'"}
        if self.reference_path is not None:
            names[self.reference_path] = f"reference '{self.reference_name}'"
        return public_message(message, names, self.dir)


def public_message(message: str, names: dict[Path, str], folder: Path) -> str:
    """``message`` with each path in ``names`` replaced by its label and any other path inside
    ``folder`` by its file name: errors never show where the server keeps files."""
    for path, label in names.items():
        message = message.replace(str(path), label)
    return re.sub(re.escape(str(folder)) + r"/?", "", message)


def new_job_id() -> str:
    return secrets.token_urlsafe(JOB_ID_BYTES)


def make_job_dir(root: Path) -> tuple[str, Path]:
    """A fresh job id and its private folder under ``root`` (both queues' storage layout)."""
    job_id = new_job_id()
    d = root / job_id
    d.mkdir(mode=0o700)
    return job_id, d


def log_tag(job_id: str) -> str:
    """What logs call a job: a short digest of its id, enough to follow one job through the
    log, useless for opening it (the id itself is the key to the job's files)."""
    return "job~" + hashlib.blake2s(job_id.encode(), digest_size=4).hexdigest()


def next_rate(old: float | None, sample: float) -> float:
    """The running average of seconds of work per second of audio after one more job."""
    return sample if old is None else (1 - RATE_WEIGHT) * old + RATE_WEIGHT * sample


def status_of(job: Job, *, position: int | None, rate: float | None, ttl_seconds: float,
              now: float) -> dict:
    """A job's status as the API shows it (both queues build it here)."""
    estimate = None
    if rate is not None and job.state in ("queued", "running"):
        estimate = round(rate * job.input_info["duration_s"], 1)
    elapsed = None
    if job.started is not None:
        elapsed = round((job.finished or now) - job.started, 2)
    expires = None
    if job.finished is not None:
        expires = round(max(0.0, job.finished + ttl_seconds - now), 1)
    return {
        "id": job.id,
        "state": job.state,
        "stage": job.stage,
        "queue_position": position if job.state == "queued" else None,
        "created_at": job.created,
        "elapsed_s": elapsed,
        "estimate_s": estimate,
        "expires_in_s": expires,
        "input": {"name": job.input_name, **job.input_info},
        "settings": {"mode": job.mode, "genre": job.genre, "source": job.source,
                     "strength": job.strength, "rhythm": job.rhythm,
                     "reference": job.reference_name},
        "result": public_summary(job.summary) if job.summary else None,
        "error": job.error,
    }


# --------------------------------------------------------------------------- the queue


class JobManager:
    """Worker threads over a bounded queue, a table of jobs by id, and expiry.

    ``run(job, worker_state, set_stage) -> summary`` does a job's work in a worker thread;
    ``worker_state()`` makes each worker's private state (a model cache) when it starts.
    A GenreshiftError from ``run`` fails the job with its message; anything else fails it
    with a generic message (the traceback goes to the server log).
    """

    def __init__(self, run: Callable[[Job, object, Callable[[str], None]], dict], *,
                 workers: int = 1, max_queue: int = 16, ttl_seconds: float = 3600.0,
                 workdir: str | Path | None = None,
                 worker_state: Callable[[], object] = lambda: None) -> None:
        if workers < 1 or max_queue < 1 or not ttl_seconds > 0:
            raise GenreshiftError("the web app needs at least one worker, a queue of at least "
                                  "one job and a positive time to keep results")
        self._run = run
        self._worker_state = worker_state
        self.workers = workers
        self.max_queue = max_queue
        self.ttl_seconds = float(ttl_seconds)
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        # A private (0700) folder of our own, even inside a given workdir: at shutdown it is
        # removed whole, and nothing else in workdir is touched.
        self.root = Path(tempfile.mkdtemp(prefix="genreshift-web-", dir=workdir))
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._jobs: dict[str, Job] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._rates: dict[str, float] = {}  # measured here; START_RATES until then
        self._lock = threading.Lock()
        self._seq = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._threads:
            return
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"genreshift-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._janitor, name="genreshift-expiry", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers (a conversion under way is waited for up to ``timeout`` s) and
        delete every job's files."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        with self._lock:
            self._jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # ----------------------------------------------------------------- jobs

    def new_job_dir(self) -> tuple[str, Path]:
        """A fresh id and its private folder, for the upload to be saved into."""
        return make_job_dir(self.root)

    @staticmethod
    def discard(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def has_room(self) -> bool:
        return not self._queue.full()

    def submit(self, job: Job) -> None:
        """Queue ``job``; QueueFull when the queue is full (its folder is then the caller's)."""
        with self._lock:
            self._seq += 1
            job.seq = self._seq
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull from None
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job:
        self.sweep()
        if not JOB_ID_RE.fullmatch(job_id):
            raise UnknownJob(job_id)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                if job_id in self._gone:
                    raise JobGone(job_id, self._gone[job_id])
                raise UnknownJob(job_id)
            return job

    def delete(self, job_id: str) -> None:
        """Forget a job and delete its files now (a running conversion finishes first, then
        its files go)."""
        job = self.get(job_id)
        with self._lock:
            job.cancelled = True
            running = job.state == "running"
            self._forget(job, "deleted")
        if not running:
            self.discard(job.dir)

    def sweep(self) -> int:
        """Delete the jobs that ended more than ttl_seconds ago; returns how many."""
        now = time.time()
        with self._lock:
            old = [j for j in self._jobs.values()
                   if j.finished is not None and now - j.finished >= self.ttl_seconds]
            for job in old:
                self._forget(job, "expired")
        for job in old:
            self.discard(job.dir)
        return len(old)

    def _forget(self, job: Job, reason: str) -> None:  # with self._lock held
        self._jobs.pop(job.id, None)
        self._gone[job.id] = reason
        while len(self._gone) > TOMBSTONES:
            self._gone.popitem(last=False)

    # ----------------------------------------------------------------- status

    def snapshot(self, job: Job) -> dict:
        """The job's state as plain data, consistent (taken under the lock)."""
        now = time.time()
        with self._lock:
            position = None
            if job.state == "queued":
                position = sum(1 for j in self._jobs.values()
                               if j.state == "queued" and j.seq < job.seq)
            return status_of(job, position=position,
                             rate=self._rates.get(job.mode, START_RATES.get(job.mode)),
                             ttl_seconds=self.ttl_seconds, now=now)

    def rate(self, mode: str) -> float | None:
        """Seconds of work per second of audio that the estimate uses now."""
        with self._lock:
            return self._rates.get(mode, START_RATES.get(mode))

    # ----------------------------------------------------------------- threads

    def _set_stage(self, job: Job, stage: str) -> None:
        with self._lock:
            job.stage = stage

    def _work(self) -> None:
        state = self._worker_state()
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.25)
            except queue.Empty:
                continue
            with self._lock:
                if job.cancelled:
                    continue
                job.state, job.stage, job.started = "running", "starting", time.time()
            summary, error = None, None
            try:
                summary = self._run(job, state, lambda s, job=job: self._set_stage(job, s))
            except GenreshiftError as e:
                error = user_message(job, e)
            except Exception as e:  # a bug: the user gets one line, the log the traceback
                log.exception("%s failed", log_tag(job.id))
                error = (f"internal error ({type(e).__name__}); the conversion failed, the "
                         "server's log has the details")
            with self._lock:
                job.finished = time.time()
                if error is None:
                    job.state, job.stage, job.summary = "done", "done", summary
                    seconds = job.input_info["duration_s"]
                    if seconds > 0:
                        self._rates[job.mode] = next_rate(
                            self._rates.get(job.mode), (job.finished - job.started) / seconds)
                else:
                    job.state, job.stage, job.error = "failed", "failed", error
                cancelled = job.cancelled
            if cancelled:
                self.discard(job.dir)

    def _janitor(self) -> None:
        period = min(30.0, max(0.2, self.ttl_seconds / 4))
        while not self._stop.wait(period):
            try:
                self.sweep()
            except Exception:  # never let the sweeper die: expiry is a promise
                log.exception("expiry sweep failed")


# --------------------------------------------------------------------------- the work


def public_summary(summary: dict) -> dict:
    """The parts of a conversion summary a client may see (no server paths)."""
    keys = ("mode", "source_genre", "source_given", "source_confidence", "source_status",
            "source_guess",
            "source_probabilities", "strength", "sample_rate", "channels", "duration_s",
            "notes", "timings_s", "style_loss_initial", "style_loss_final", "rhythm")
    out = {k: summary[k] for k in keys if k in summary}
    if "targets" in summary:
        out["targets"] = [{"genre": t["genre"], "weight": t["weight"],
                           "model": Path(t["model"]).name, "direction": t["direction"]}
                          for t in summary["targets"]]
    return out


def _folder_stamp(folder: Path) -> tuple:
    """What changes when a checkpoint is added, removed or rewritten."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                            for p in folder.iterdir() if p.suffix in (".pt", ".onnx")))
    except OSError:
        return ()


# The library's settings (GenreshiftError.option, as the CLI names them) -> the web form's
# fields, so that an error a job or an upload check raises names what the user can change.
FORM_FIELDS = {"to": "genre", "from": "source", "strength": "strength", "reference": "reference"}


def form_field(option: str) -> str:
    return FORM_FIELDS.get(option, f"the server's setting '{option}'")


def user_message(job: "Job", e: GenreshiftError) -> str:
    """What the page shows for a failed job: the error worded for the form, no server paths."""
    return job.public_message(e.worded(form_field))


@dataclass
class WorkerState:
    """A worker's own model cache, rebuilt when the model folder changes."""

    generation: int = -1
    cache: tconv.ModelCache | None = None


class Converter:
    """Runs a job through the conversion pipeline (pipeline.run), then plot_conversion. The
    model folder is rescanned when its checkpoints change (models that finish training appear
    without a restart)."""

    def __init__(self, models_dir: str | Path | None = None, device: str = "auto",
                 threads: int | None = None) -> None:
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.device = resolve_device(device)
        self.threads = threads  # per conversion (onnxruntime; torch for reference mode)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._models: tconv.ModelSet | None = None
        self._generation = 0
        self.models()  # a bad --models fails now, not at the first upload

    def _folder(self) -> Path:
        return self.models_dir if self.models_dir is not None else tconv.default_models_dir()

    def models_and_generation(self) -> tuple[tconv.ModelSet, int]:
        stamp = _folder_stamp(self._folder())
        with self._lock:
            if self._models is None or stamp != self._stamp:
                self._models = tconv.scan_models(self.models_dir)
                self._stamp = stamp
                self._generation += 1
            return self._models, self._generation

    def models(self) -> tconv.ModelSet:
        return self.models_and_generation()[0]

    def settings(self, genre: str, strength: float, source: str | None,
                 rhythm: str = "keep") -> tconv.TrainedSettings:
        return tconv.TrainedSettings(targets=tuple(tconv.parse_targets(genre)),
                                     strength=strength, source=source, rhythm=rhythm)

    @staticmethod
    def new_state() -> WorkerState:
        return WorkerState()

    def run(self, job: Job, state: WorkerState, stage: Callable[[str], None]) -> dict:
        from genreshift.inference import pipeline
        from genreshift.inference.plot import plot_conversion

        context = {}
        if job.mode == "trained":
            models, generation = self.models_and_generation()
            if state.cache is None or state.generation != generation:
                state.cache = tconv.ModelCache(self.device, threads=self.threads)
                state.generation = generation
            settings = self.settings(job.genre or "", job.strength, job.source, job.rhythm)
            context = {"models": models, "cache": state.cache}
        else:
            from genreshift.inference.reference import ReferenceSettings

            # the style model of the folder the page serves (style.pt, else classifier.pt)
            settings = ReferenceSettings(Path(job.reference_path), strength=job.strength,
                                         style_model=tconv.style_model_path(self._folder()))
        request = pipeline.Request(Path(job.input_path),
                                   pipeline.OutputOptions(Path(job.result_path), fmt="wav"),
                                   settings, device=self.device)
        stage("converting")
        result = pipeline.run(request, **context)
        stage("drawing the spectrograms")
        with _PLOT_LOCK:
            plot_conversion(job.plot_path, input_mel=result.mels["input"],
                            output_mel=result.mels["output"],
                            reference_mel=result.mels.get("reference"), cfg=result.mel_config,
                            title=f"{job.input_name} -> {job.label}")
        return result.summary


def export(job: Job, fmt: str) -> Path:
    """The result in ``fmt`` (wav, flac or mp3); FLAC and MP3 are encoded from the WAV on
    first request, once."""
    if fmt not in DOWNLOAD_FORMATS:
        raise GenreshiftError(f"unknown format '{fmt}'; choose {', '.join(DOWNLOAD_FORMATS)}")
    if fmt == "wav":
        return job.result_path
    path = job.dir / f"result.{fmt}"
    with job.files_lock:
        if not path.exists():
            # save_audio writes aside and renames; with the Redis queue two requests may
            # encode the same file at once (a Job per request, so no shared lock): the later
            # rename wins, and nobody reads half a file.
            audio, sr = gaudio.load_audio(job.result_path)
            gaudio.save_audio(path, audio, sr, fmt=fmt, force=True,
                              bit_depth=gaudio.source_bit_depth(job.result_path, fmt))
    return path
