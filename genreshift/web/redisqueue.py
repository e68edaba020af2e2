"""Conversion jobs through Redis and RQ: one web process enqueues, `genreshift worker`
processes on any machine that reaches Redis and the shared storage folder convert.

Nothing passes through process memory. A job's files live in ``STORAGE/jobs/<id>/`` (the web
process writes the upload there, a worker the result); its record is a Redis hash
``genreshift:job:<id>`` (what it is, its state, stage, timings and result summary), and the
queue is RQ's (a Redis list, with RQ's registries of running and failed jobs). The page polls
the web process, which reads the hash: progress reaches it as in the in-process queue.

- A web restart loses nothing: jobs, records and files are all outside it.
- A worker converts in its own process (RQ's SimpleWorker): imports, compiled code and the
  loaded models stay warm from one job to the next (RQ's default forks a "work horse" per
  job, which re-imports librosa and matplotlib every time: docs/DECISIONS.md, 2026-12-01).
  While it converts, a thread beats the
  worker's heart every ``heartbeat`` seconds. A worker that dies (SIGKILL, out of memory, a
  lost machine) stops beating; once ``3 * heartbeat`` seconds have passed, RQ's registry
  cleanup (run by the web process every few seconds, and by every worker) retries the job
  once (``Retry(max=1)``), then fails it. ``reconcile`` brings the job's record in line with
  RQ's verdict, so a job never stays "running" after its worker is gone.
- Expiry: a finished job's id goes into the sorted set ``genreshift:expiry`` scored by the
  time it expires; ``sweep`` (the web process's janitor, and every worker's maintenance)
  deletes the folders that are due and leaves a tombstone so that late requests hear "expired".

Redis must be private to the site (a password in the URL, a private network): whoever can
write to it can make the workers run any importable function, as with any RQ deployment.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import RedisError
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from genreshift.errors import GenreshiftError
from genreshift.web.jobs import (
    JOB_ID_RE,
    START_RATES,
    Job,
    JobGone,
    QueueFull,
    QueueUnavailable,
    UnknownJob,
    WorkerState,
    log_tag,
    make_job_dir,
    next_rate,
    status_of,
    user_message,
)

log = logging.getLogger("genreshift.web")

QUEUE_NAME = "genreshift"
PREFIX = "genreshift:"
EXPIRY_KEY = PREFIX + "expiry"  # sorted set: job id -> Unix time its files are deleted
ACTIVE_KEY = PREFIX + "active"  # set: ids of jobs queued or running
RATES_KEY = PREFIX + "rates"  # hash: mode -> seconds of work per second of audio
SEQ_KEY = PREFIX + "seq"
# sorted set: worker name -> the time it counts as gone unless it beats again. RQ's own
# registry keeps a SIGKILLed worker for over a minute.
WORKERS_KEY = PREFIX + "workers"
TOMBSTONE_SECONDS = 7 * 86400  # how long "expired" / "deleted" is remembered
DEFAULT_HEARTBEAT = 10  # s between a busy worker's heartbeats
# A job's record outlives its expiry by this much at most, should every sweeper be gone.
RECORD_SLACK = 86400
SOCKET_TIMEOUT = 5.0  # s the web process waits for Redis before answering 503
# RQ's limit on one job: generous (the estimate's rate can be off several times on a loaded
# machine), so that only a conversion that hangs is cut.
JOB_TIMEOUT_BASE = 600
JOB_TIMEOUT_PER_AUDIO_SECOND = 20

MUTABLE = ("state", "stage", "started", "finished", "error", "summary", "cancelled", "enqueued")


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def gone_key(job_id: str) -> str:
    return f"{PREFIX}gone:{job_id}"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str, *, what: str = "--queue", socket_timeout: float | None = SOCKET_TIMEOUT
            ) -> redis.Redis:
    """A checked connection to the Redis at ``url`` (redis://HOST:PORT/DB); a clear
    GenreshiftError if the URL is wrong or the server cannot be reached."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise GenreshiftError(f"{what} '{url}': not a Redis URL; give redis://HOST:PORT/DB "
                              "(for example redis://127.0.0.1:6379/0)")
    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=SOCKET_TIMEOUT,
                                 socket_timeout=socket_timeout, health_check_interval=30)
        r.ping()
    except ValueError as e:
        raise GenreshiftError(f"{what} '{shown_url(url)}': {e}; give redis://HOST:PORT/DB"
                              ) from None
    except RedisError as e:
        raise GenreshiftError(f"cannot reach Redis at {shown_url(url)} ({e}); start "
                              "redis-server there, or correct " + what) from None
    return r


def check_storage(storage: str | Path | None, what: str = "--storage") -> Path:
    if storage is None:
        raise GenreshiftError(f"the Redis queue needs {what} DIR: the folder that the web "
                              "process and every worker share (a network filesystem when "
                              "they are on several machines)")
    root = Path(storage)
    if not root.is_dir():
        raise GenreshiftError(f"{what} {root}: no such folder; create it (shared by the web "
                              "process and every worker)")
    jobs = root / "jobs"
    try:
        jobs.mkdir(mode=0o700, exist_ok=True)
        probe = jobs / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise GenreshiftError(f"{what} {root}: cannot write there ({e.strerror}); give a "
                              "folder this user can write") from None
    return jobs


def _rq_queue(r: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=r, serializer=JSONSerializer)


# --------------------------------------------------------------------------- records


def _record(job: Job, *, rq_id: str, ttl_seconds: float) -> dict[str, str]:
    meta = {"mode": job.mode, "input_name": job.input_name, "input_info": job.input_info,
            "input_file": job.input_path.name, "original_file": job.original_path.name,
            "label": job.label, "genre": job.genre, "source": job.source,
            "strength": job.strength, "rhythm": job.rhythm,
            "reference_name": job.reference_name,
            "reference_file": job.reference_path.name if job.reference_path else None,
            "created": job.created, "seq": job.seq, "ttl_seconds": ttl_seconds,
            "rq_id": rq_id}
    return {"meta": json.dumps(meta), "state": job.state, "stage": job.stage,
            "enqueued": repr(time.time())}


def _text(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _job_from(job_id: str, f: dict[str, str], root: Path) -> tuple[Job, dict]:
    meta = json.loads(f["meta"])
    d = root / job_id
    job = Job(id=job_id, dir=d, mode=meta["mode"], input_path=d / meta["input_file"],
              input_name=meta["input_name"], input_info=meta["input_info"],
              original_path=d / meta["original_file"], label=meta["label"],
              genre=meta["genre"], source=meta["source"], strength=meta["strength"],
              rhythm=meta.get("rhythm", "keep"),
              reference_path=d / meta["reference_file"] if meta["reference_file"] else None,
              reference_name=meta["reference_name"], created=meta["created"],
              state=f.get("state", "queued"), stage=f.get("stage", ""), seq=meta["seq"],
              started=_float(f.get("started")), finished=_float(f.get("finished")),
              error=f.get("error") or None,
              summary=json.loads(f["summary"]) if f.get("summary") else None,
              cancelled=bool(f.get("cancelled")))
    return job, meta


def _finish(pipe, job_id: str, ttl_seconds: float, finished: float, mapping: dict) -> None:
    pipe.hset(job_key(job_id), mapping={**mapping, "finished": repr(finished)})
    pipe.expire(job_key(job_id), int(ttl_seconds + RECORD_SLACK))
    pipe.zadd(EXPIRY_KEY, {job_id: finished + ttl_seconds})
    pipe.srem(ACTIVE_KEY, job_id)


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- shared upkeep


def reconcile(r: redis.Redis, job_id: str, root: Path) -> None:
    """Bring a queued or running job's record in line with what RQ knows: a job whose worker
    died is queued again (RQ retries it once) or failed, never left "running"."""
    f = _text(r.hgetall(job_key(job_id)))
    if not f or f.get("state") not in ("queued", "running"):
        r.srem(ACTIVE_KEY, job_id)
        return
    meta = json.loads(f["meta"])
    try:
        rq_job = RQJob.fetch(meta["rq_id"], connection=r, serializer=JSONSerializer)
        status = rq_job.get_status(refresh=False)
    except NoSuchJobError:
        rq_job, status = None, None
    if status in (JobStatus.STARTED, JobStatus.FINISHED, JobStatus.CREATED):
        return  # running, or it has just written its own end
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        if f["state"] == "running":  # retried after its worker stopped
            with r.pipeline() as pipe:
                pipe.hset(job_key(job_id), mapping={
                    "state": "queued", "started": "",
                    "stage": "waiting for a worker again (the one converting it stopped)"})
                pipe.execute()
        return
    twice = rq_job is not None and rq_job.retries_left == 0  # Retry(max=1) was used up
    error = ("the conversion was interrupted: the worker running it stopped (killed, or out "
             "of memory)" + (", and so did the retry" if twice else "") +
             "; upload the song again")

    def fail(pipe) -> None:
        state = pipe.hget(job_key(job_id), "state")
        pipe.multi()
        if state in (b"queued", b"running"):
            _finish(pipe, job_id, meta["ttl_seconds"], time.time(),
                    {"state": "failed", "stage": "failed", "error": error})
        else:
            pipe.srem(ACTIVE_KEY, job_id)

    if f.get("cancelled"):  # deleted while it ran: nobody is left to delete its files
        discard(root / job_id)
        with r.pipeline() as pipe:
            pipe.delete(job_key(job_id))
            pipe.srem(ACTIVE_KEY, job_id)
            pipe.execute()
        return
    r.transaction(fail, job_key(job_id))
    log.warning("%s failed: its worker stopped", log_tag(job_id))


def sweep(r: redis.Redis, root: Path, now: float | None = None) -> int:
    """Delete the files of every job that is due to expire; returns how many."""
    now = time.time() if now is None else now
    due = [i.decode() for i in r.zrangebyscore(EXPIRY_KEY, "-inf", now)]
    for job_id in due:
        if JOB_ID_RE.fullmatch(job_id):  # never a path of anyone's choosing
            discard(root / job_id)
        with r.pipeline() as pipe:
            pipe.delete(job_key(job_id))
            pipe.set(gone_key(job_id), "expired", ex=TOMBSTONE_SECONDS)
            pipe.zrem(EXPIRY_KEY, job_id)
            pipe.execute()
    return len(due)


def live_workers(r: redis.Redis) -> int:
    now = time.time()
    r.zremrangebyscore(WORKERS_KEY, "-inf", now)
    return int(r.zcount(WORKERS_KEY, now, "+inf"))


def upkeep(r: redis.Redis, root: Path) -> None:
    """RQ's cleanup of jobs whose worker stopped, our records brought in line, expiry."""
    StartedJobRegistry(QUEUE_NAME, connection=r, serializer=JSONSerializer).cleanup()
    for raw in r.smembers(ACTIVE_KEY):
        reconcile(r, raw.decode(), root)
    sweep(r, root)


# --------------------------------------------------------------------------- the web side


class RedisJobManager:
    """The web process's side: the same interface as jobs.JobManager (the app cannot tell
    them apart), over Redis. Every Redis failure becomes QueueUnavailable (503)."""

    def __init__(self, url: str, storage: str | Path | None, *, max_queue: int = 16,
                 ttl_seconds: float = 3600.0, upkeep_every: float = 2.0) -> None:
        if max_queue < 1 or not ttl_seconds > 0:
            raise GenreshiftError("the web app needs a queue of at least one job and a "
                                  "positive time to keep results")
        self.root = check_storage(storage)
        self.url = url
        self.r = connect(url)
        self.queue = _rq_queue(self.r)
        self.max_queue = max_queue
        self.ttl_seconds = float(ttl_seconds)
        self.upkeep_every = min(upkeep_every, max(0.2, self.ttl_seconds / 4))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _unavailable(self, e: RedisError) -> QueueUnavailable:
        where = f"the job queue (Redis at {shown_url(self.url)})"
        if isinstance(e, (redis.ConnectionError, redis.TimeoutError)):
            return QueueUnavailable(f"{where} cannot be reached ({type(e).__name__}); try "
                                    "again in a minute")
        log.error("Redis error: %s", e)
        return QueueUnavailable(f"{where} answered with an error ({type(e).__name__}); try "
                                "again in a minute, or tell the site's operator")

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._janitor, name="genreshift-upkeep",
                                            daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the janitor. Jobs, their records and files stay: they belong to the site,
        not to this process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.r.close()

    def _janitor(self) -> None:
        failing = False
        while not self._stop.wait(self.upkeep_every):
            try:
                upkeep(self.r, self.root)
                if failing:
                    log.warning("Redis at %s answers again", shown_url(self.url))
                failing = False
            except RedisError as e:
                if not failing:
                    log.warning("Redis at %s cannot be reached (%s); expiry and recovery "
                                "wait for it", shown_url(self.url), e)
                failing = True
            except Exception:  # never let the janitor die: expiry is a promise
                log.exception("queue upkeep failed")

    # ----------------------------------------------------------------- jobs

    def new_job_dir(self) -> tuple[str, Path]:
        return make_job_dir(self.root)

    @staticmethod
    def discard(folder: Path) -> None:
        discard(folder)

    def has_room(self) -> bool:
        try:
            return self.queue.count < self.max_queue
        except RedisError as e:
            raise self._unavailable(e) from None

    def worker_count(self) -> int | None:
        """Workers alive now (their heartbeat is recent); None if Redis cannot be reached."""
        try:
            return live_workers(self.r)
        except RedisError:
            return None

    def submit(self, job: Job) -> None:
        try:
            if self.queue.count >= self.max_queue:
                raise QueueFull
            job.seq = int(self.r.incr(SEQ_KEY))
            rq_id = uuid.uuid4().hex  # not the job's id: RQ's logs show this one
            # One MULTI: the record and the queue entry exist together or not at all (RQ
            # opens the transaction, so its enqueue comes first).
            with self.r.pipeline() as pipe:
                self.queue.enqueue(
                    "genreshift.web.redisqueue.run_job", args=(job.id,), job_id=rq_id,
                    description="genreshift conversion", retry=Retry(max=1),
                    job_timeout=int(JOB_TIMEOUT_BASE + JOB_TIMEOUT_PER_AUDIO_SECOND
                                    * job.input_info["duration_s"]),
                    result_ttl=600, failure_ttl=int(self.ttl_seconds + RECORD_SLACK),
                    pipeline=pipe)
                pipe.hset(job_key(job.id), mapping=_record(job, rq_id=rq_id,
                                                           ttl_seconds=self.ttl_seconds))
                pipe.sadd(ACTIVE_KEY, job.id)
                pipe.execute()
        except RedisError as e:
            raise self._unavailable(e) from None

    def _fields(self, job_id: str) -> dict[str, str]:
        if not JOB_ID_RE.fullmatch(job_id):
            raise UnknownJob(job_id)
        try:
            gone = self.r.get(gone_key(job_id))
            if gone is not None:
                raise JobGone(job_id, gone.decode())
            f = _text(self.r.hgetall(job_key(job_id)))
            if f.get("state") in ("queued", "running"):
                reconcile(self.r, job_id, self.root)
                f = _text(self.r.hgetall(job_key(job_id)))
        except RedisError as e:
            raise self._unavailable(e) from None
        if not f:
            raise UnknownJob(job_id)
        return f

    def get(self, job_id: str) -> Job:
        return _job_from(job_id, self._fields(job_id), self.root)[0]

    def delete(self, job_id: str) -> None:
        """Forget the job and delete its files now; a running conversion finishes first,
        then its worker deletes them."""
        job = self.get(job_id)
        try:
            with self.r.pipeline() as pipe:
                pipe.set(gone_key(job_id), "deleted", ex=TOMBSTONE_SECONDS)
                pipe.hset(job_key(job_id), "cancelled", "1")
                pipe.zrem(EXPIRY_KEY, job_id)
                pipe.execute()
            if job.state == "queued":
                meta = json.loads(self.r.hget(job_key(job_id), "meta"))
                try:
                    RQJob.fetch(meta["rq_id"], connection=self.r,
                                serializer=JSONSerializer).cancel()
                except NoSuchJobError:
                    pass
            state = (self.r.hget(job_key(job_id), "state") or b"").decode()
            if state != "running":
                self.r.delete(job_key(job_id))
                self.r.srem(ACTIVE_KEY, job_id)
                discard(job.dir)
        except RedisError as e:
            raise self._unavailable(e) from None

    def sweep(self) -> int:
        try:
            return sweep(self.r, self.root)
        except RedisError as e:
            raise self._unavailable(e) from None

    def snapshot(self, job: Job) -> dict:
        try:
            position = None
            if job.state == "queued":
                meta = json.loads(self.r.hget(job_key(job.id), "meta") or b"{}")
                position = self.queue.get_job_position(meta.get("rq_id", ""))
                if position is None:  # being handed to a worker right now
                    position = 0
                if live_workers(self.r) == 0:
                    job.stage += "; no worker is running now"
            rate = self.r.hget(RATES_KEY, job.mode)
        except RedisError as e:
            raise self._unavailable(e) from None
        rate = float(rate) if rate is not None else START_RATES.get(job.mode)
        return status_of(job, position=position, rate=rate, ttl_seconds=self.ttl_seconds,
                         now=time.time())

    def rate(self, mode: str) -> float | None:
        try:
            rate = self.r.hget(RATES_KEY, mode)
        except RedisError as e:
            raise self._unavailable(e) from None
        return float(rate) if rate is not None else START_RATES.get(mode)


# --------------------------------------------------------------------------- the worker side


@dataclass
class WorkerContext:
    """What `genreshift worker` sets up once for all its jobs."""

    root: Path
    converter: object  # jobs.Converter
    state: WorkerState  # its model cache, kept from one job to the next


_context: WorkerContext | None = None


def run_job(job_id: str) -> None:
    """RQ's task: convert the job ``job_id`` from the shared storage; its record in Redis
    says how far it got, as the in-process queue's Job does."""
    ctx = _context
    if ctx is None:
        raise RuntimeError("run_job runs inside `genreshift worker`")
    r = get_current_job().connection
    key = job_key(job_id)
    f = _text(r.hgetall(key))
    if not f or f.get("cancelled") or f.get("state") not in ("queued", "running"):
        if f.get("cancelled") or not f:
            discard(ctx.root / job_id)
            r.delete(key)
            r.srem(ACTIVE_KEY, job_id)
        return
    job, meta = _job_from(job_id, f, ctx.root)
    started = time.time()
    # If this run is taken for dead (a heartbeat starved past its time to live) and retried,
    # the retry writes its own token: this run then leaves the record to it.
    token = uuid.uuid4().hex
    r.hset(key, mapping={"state": "running", "stage": "starting", "started": repr(started),
                         "error": "", "runner": token})
    log.info("%s started (%s, %.1f s of audio)", log_tag(job_id), job.mode,
             job.input_info["duration_s"])

    def stage(text: str) -> None:
        if r.hget(key, "runner") == token.encode():
            r.hset(key, "stage", text)

    summary, error = None, None
    try:
        summary = ctx.converter.run(job, ctx.state, stage)
    except GenreshiftError as e:
        error = user_message(job, e)
    except JobTimeoutException:
        error = ("the conversion took longer than this server allows for a song of this "
                 "length; try a shorter one")
    except Exception as e:  # a bug: the user gets one line, the log the traceback
        log.exception("%s failed", log_tag(job_id))
        error = (f"internal error ({type(e).__name__}); the conversion failed, the "
                 "server's log has the details")
    finished = time.time()

    def finish(pipe) -> None:
        ours = pipe.hget(key, "runner") == token.encode()
        pipe.multi()
        if not ours:
            return
        if error is None:
            _finish(pipe, job_id, meta["ttl_seconds"], finished,
                    {"state": "done", "stage": "done", "summary": json.dumps(summary)})
        else:
            _finish(pipe, job_id, meta["ttl_seconds"], finished,
                    {"state": "failed", "stage": "failed", "error": error})

    r.transaction(finish, key)
    if r.hget(key, "runner") != token.encode():
        log.warning("%s was retried while this worker still ran it; the retry's result "
                    "stands", log_tag(job_id))
        return
    seconds = job.input_info["duration_s"]
    if error is None and seconds > 0:
        sample = (finished - started) / seconds

        def update(pipe) -> None:
            old = pipe.hget(RATES_KEY, job.mode)
            pipe.multi()
            pipe.hset(RATES_KEY, job.mode, repr(next_rate(float(old) if old else None, sample)))

        r.transaction(update, RATES_KEY)
    log.info("%s %s in %.1f s", log_tag(job_id), "done" if error is None else "failed",
             finished - started)
    if r.hget(key, "cancelled"):  # deleted while it ran
        discard(job.dir)
        with r.pipeline() as pipe:
            pipe.delete(key)
            pipe.zrem(EXPIRY_KEY, job_id)
            pipe.execute()


class ConversionWorker(SimpleWorker):
    """RQ's in-process worker, with a heartbeat while it converts (SimpleWorker has none, so
    RQ would take a dead worker's job for a live one until the job's whole timeout passed), a
    heartbeat time to live of our choosing (RQ adds 60 s to each), and our expiry in its
    maintenance. ``heartbeat_seconds`` is set per worker."""

    heartbeat_seconds: int = DEFAULT_HEARTBEAT
    storage_root: Path | None = None

    def execute_job(self, job: RQJob, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat_seconds):
                try:
                    self.maintain_heartbeats(job, execution)
                except RedisError as e:  # the job goes on; RQ's loop meets the outage
                    self.log.warning("heartbeat failed: %s", e)

        beating = threading.Thread(target=beat, name="genreshift-heartbeat", daemon=True)
        beating.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beating.join()
        self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job: RQJob, working_time: float = 0.0) -> int:
        grace = 2 * self.heartbeat_seconds
        if job.timeout and job.timeout > 0:
            return int(max(1.0, min(job.timeout - working_time, self.heartbeat_seconds))) + grace
        return self.heartbeat_seconds + grace

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        super().heartbeat(timeout, pipeline)
        # Idle or busy, a worker beats every heartbeat_seconds (see run_worker's worker_ttl):
        # three missed beats and the site counts it as gone.
        (pipeline if pipeline is not None else self.connection).zadd(
            WORKERS_KEY, {self.name: time.time() + 3 * self.heartbeat_seconds})

    def register_birth(self) -> None:
        super().register_birth()
        self.connection.zadd(WORKERS_KEY, {self.name: time.time() + 3 * self.heartbeat_seconds})

    def register_death(self) -> None:
        super().register_death()
        self.connection.zrem(WORKERS_KEY, self.name)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        if self.storage_root is not None:
            try:
                upkeep(self.connection, self.storage_root)
            except RedisError as e:
                self.log.warning("queue upkeep failed: %s", e)


def run_worker(url: str, storage: str | Path | None, *, models_dir: str | Path | None = None,
               device: str = "auto", threads: int | None = None,
               heartbeat: int = DEFAULT_HEARTBEAT, name: str | None = None,
               burst: bool = False, log_level: str = "INFO") -> int:
    """`genreshift worker`: take jobs from the Redis queue at ``url`` until stopped (SIGINT or
    SIGTERM let the job under way finish; a second one stops at once)."""
    global _context
    from genreshift.web.jobs import Converter

    root = check_storage(storage)
    if heartbeat < 1:
        raise GenreshiftError("--heartbeat must be at least 1 s")
    # BLPOP waits up to the worker's TTL: no socket timeout shorter than that (RQ sets it).
    r = connect(url, socket_timeout=None)
    converter = Converter(models_dir, device, threads=threads)
    # What every job needs, imported once (librosa and matplotlib load lazily otherwise, in
    # the first job: tens of seconds on a loaded machine). plot_conversion picks the Agg
    # backend itself; it is chosen here the same way before pyplot loads.
    import librosa.filters  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    import genreshift.inference.plot
    import genreshift.inference.reference  # noqa: F401  (reference mode: torch)

    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    _context = WorkerContext(root=root, converter=converter, state=converter.new_state())
    worker_class = type("ConversionWorker", (ConversionWorker,),
                        {"heartbeat_seconds": heartbeat, "storage_root": root})
    worker = worker_class([_rq_queue(r)], connection=r, name=name, serializer=JSONSerializer,
                          # RQ waits worker_ttl - 15 s for a job between heartbeats
                          job_monitoring_interval=heartbeat, worker_ttl=heartbeat + 15,
                          maintenance_interval=60,
                          log_job_description=False)
    # The job lines (genreshift.web: started, done, failed) go where RQ's go.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(log_level.upper())
    worker.work(burst=burst, logging_level=log_level.upper(), with_scheduler=False)
    return 0
