"""The web app: one page and a JSON API over the library's conversion functions.

``create_app`` builds a FastAPI application; `genreshift serve` runs it under uvicorn.

Endpoints (the OpenAPI schema at /openapi.json describes them in full; docs/WEB.md in short):

    GET    /                               the page
    GET    /api/info                       target genres, limits, download formats
    POST   /api/jobs                       upload a song (+ genre or reference): 202 + status
    GET    /api/jobs/{id}                  status, progress, result summary
    GET    /api/jobs/{id}/original         the uploaded song, as a browser can play it
    GET    /api/jobs/{id}/result/{fmt}     the converted song: wav, flac or mp3
    GET    /api/jobs/{id}/spectrogram.png  input / output / difference spectrograms
    DELETE /api/jobs/{id}                  delete the job's files now

Uploads are checked by decoding them (the extension is ignored) before a job is queued, and
saved under names the server makes. Every error is ``{"error": "..."}`` with a 4xx status
(5xx only for the server's own faults): 400 unusable audio, 403 a state-changing request from
another site's page, 404 unknown job, 408 an upload that stalled, 409 not finished, 410
expired or deleted, 413 too large or too long, 415 not audio, 422 bad parameters, 503 queue
full (or, with the Redis queue, Redis unreachable). A library error's status comes from its
``kind`` (KIND_STATUS), never from its wording; an error about a setting names the form field.
/docs and /redoc serve their assets from here: they work offline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shutil
import subprocess
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import genreshift
from genreshift import audio as gaudio
from genreshift.errors import AudioError, GenreshiftError
from genreshift.inference import DEFAULT_RHYTHM
from genreshift.inference import convert as tconv
from genreshift.inference.pipeline import load_song
from genreshift.web import jobs as wjobs
from genreshift.web.jobs import (
    Job,
    JobGone,
    JobManager,
    QueueFull,
    QueueUnavailable,
    UnknownJob,
)

log = logging.getLogger("genreshift.web")

STATIC = Path(__file__).resolve().parent / "static"
MB = 1_000_000
# Room for the multipart framing and the form fields next to the files.
FORM_OVERHEAD = 64 * 1024
COPY_CHUNK = 1 << 20

# libsndfile's container names -> the extension the library reads them by.
SNDFILE_SUFFIX = {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg",
                  "MP3": ".mp3", "AIFF": ".aiff", "AU": ".au"}
# What a browser's <audio> plays as it is; anything else gets a WAV copy for the player.
PLAYABLE = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
            ".mp3": "audio/mpeg"}
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}
FFMPEG_SUFFIXES = {".m4a", ".mka", ".wma", ".aac"}  # see _ffmpeg_suffix
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count for a file that does not state it
ACCEPTED = "WAV, FLAC, OGG, MP3, AIFF or AU"
ACCEPTED_FFMPEG = "M4A/AAC, WebM/Matroska or WMA"

SONG_HELP = (f"the song: {ACCEPTED} (M4A/AAC and WebM where the server has ffmpeg); at most "
             "the size and length in /api/info; its content decides, not its name")
GENRE_HELP = "target genre (see /api/info), or a blend such as jazz:0.6,rock:0.4"
REFERENCE_HELP = "a recording to sound like, instead of a genre"
STRENGTH_HELP = "0 (the input, reconstructed) to 1 (the full conversion); default 1"
SOURCE_HELP = "the song's genre (default: detected by the classifier)"
RHYTHM_HELP = ("trained mode's rhythm section: replace the song's percussion with the target "
               "genre's groove on its beat grid (default), add the groove on top, or keep the "
               "song's own")

DOCS_ASSETS = "/docs-assets"
# Swagger UI and ReDoc start from an inline script and style their elements inline.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; connect-src 'self'; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# GenreshiftError.kind -> HTTP status. An unclassified error (kind None) gets the status of
# the place it surfaces: 400 in the upload checks, 422 in the settings checks, 500 elsewhere.
KIND_STATUS = {
    "bad_input": 400,
    "unsupported_format": 415,
    "too_large": 413,
    "not_found": 404,
    "bad_option": 422,
    "unavailable": 503,
    "bad_model": 500,
    "output": 500,
    "internal": 500,
}
# What the client reads for a server-side fault: the message itself (server paths, checkpoint
# names) goes to the log only.
SERVER_FAULTS = {
    "output": "the server could not write the files this needs (its log says why); try again "
              "later, or tell whoever runs it",
    "bad_model": "the server's models cannot be used (its log says why); tell whoever runs it",
}
SERVER_FAULT = "internal error; the server's log has the details"
# The library's settings (GenreshiftError.option, as the CLI names them) -> the form fields.
FORM_FIELDS, _field = wjobs.FORM_FIELDS, wjobs.form_field


class ApiError(Exception):
    """An answer other than success: its status and the message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


# --------------------------------------------------------------------------- schema


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong and what to do about it")


class ModelRow(BaseModel):
    genre: str
    model: str = Field(description="checkpoint file name")
    source: str = Field(description="the domain it converts from ('rest': any other genre)")
    steps: int | None = Field(description="training steps, where recorded")


class Limits(BaseModel):
    max_upload_bytes: int
    max_upload_mb: float
    max_seconds: float
    ttl_seconds: float
    workers: int = Field(description="conversions at once: this process's worker threads, "
                                     "or the Redis queue's workers alive now")
    max_queue: int
    queue: Literal["local", "redis"] = Field(
        description="local: conversions run in the web process; redis: in `genreshift worker` "
                    "processes")


class ServerInfo(BaseModel):
    version: str
    genres: list[str] = Field(description="target genres of the available converters")
    models: list[ModelRow]
    source_detection: list[str] = Field(
        description="genres the classifier tells apart (empty: no classifier; then the "
                    "source genre is not detected)")
    reference_mode: bool = Field(description="a reference recording can replace a genre")
    accepted: str = Field(description="accepted upload formats (checked by decoding)")
    download_formats: list[str]
    limits: Limits


class InputInfo(BaseModel):
    name: str = Field(description="the uploaded file's name, for display only")
    format: str
    encoding: str
    sample_rate: int
    channels: int
    duration_s: float


class JobSettings(BaseModel):
    mode: Literal["trained", "reference"]
    genre: str | None
    source: str | None
    strength: float
    rhythm: str = "keep"
    reference: str | None = Field(description="the reference file's name (reference mode)")


class TargetUsed(BaseModel):
    genre: str
    weight: float
    model: str
    direction: str


class JobResult(BaseModel):
    mode: str
    source_genre: str | None = None
    source_given: bool | None = None
    source_confidence: float | None = None
    source_status: str | None = None  # given / detected / uncertain / unknown
    source_guess: str | None = None
    source_probabilities: dict[str, float] | None = None
    targets: list[TargetUsed] | None = None
    strength: float
    sample_rate: int
    channels: int
    duration_s: float
    notes: list[str] = []
    timings_s: dict[str, float]
    style_loss_initial: float | None = None
    style_loss_final: float | None = None
    rhythm: dict | None = None  # trained mode's rhythm section: mode applied, tempo, groove


class JobLinks(BaseModel):
    status: str
    original: str
    spectrogram: str | None = Field(description="set once the job is done")
    downloads: dict[str, str] = Field(description="format -> URL, once the job is done")


class JobStatus(BaseModel):
    id: str = Field(description="the job's unguessable id; whoever has it can see the job")
    state: Literal["queued", "running", "done", "failed"]
    stage: str = Field(description="what the job is doing, in words")
    queue_position: int | None = Field(description="jobs ahead of this one (while queued)")
    created_at: float = Field(description="Unix time")
    elapsed_s: float | None = Field(description="seconds since a worker took the job")
    estimate_s: float | None = Field(
        description="expected run time (while queued or running): the song's length times "
                    "a running average of seconds of work per second of audio over the jobs "
                    "this server finished, starting from a rate measured in development")
    expires_in_s: float | None = Field(description="seconds until the files are deleted")
    input: InputInfo
    settings: JobSettings
    result: JobResult | None
    error: str | None = Field(description="why the job failed")
    links: JobLinks


class Deleted(BaseModel):
    id: str
    deleted: bool


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorBody} for c in codes}


def _api_error(e: GenreshiftError, default: int, *, names: dict[Path, str] | None = None,
               folder: Path | None = None, server_side: bool = False) -> ApiError:
    """The answer to a library error: the status from its kind (``default`` for an
    unclassified one), a setting it is about called by its form field, and no server paths.
    ``server_side``: the error is about the server's own files, whatever its kind says (a
    result that cannot be re-read is not the client's bad input)."""
    status = KIND_STATUS.get(e.kind, default) if e.kind is not None else default
    if server_side and status != 503:
        status = 500
    message = e.worded(_field)
    if folder is not None:
        message = wjobs.public_message(message, names or {}, folder)
    if status >= 500 and status != 503:
        log.error("%s error (%s): %s", e.kind or "unclassified", type(e).__name__, message)
        return ApiError(status, SERVER_FAULTS.get(e.kind, SERVER_FAULT))
    headers = {"retry-after": "30"} if status == 503 else None
    return ApiError(status, message, headers=headers)


# --------------------------------------------------------------------------- middleware


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_key(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin or Referer; None where it names no origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


@dataclass(frozen=True)
class BodyLimits:
    """How long a request body may take to arrive (docs/WEB.md, "Slow clients"): each wait
    for more of it ends after ``idle_timeout`` s, and past that first allowance the body must
    average ``min_rate`` bytes/s. The app's own reading is not counted, only the waits."""

    idle_timeout: float = 30.0
    min_rate: float = 16_000.0


class _Guard:
    """Pure ASGI middleware: caps the upload's size while it streams in (Content-Length is
    checked first; a body without one is counted) and times its arrival; refuses Host names
    the server is not meant to answer to (a web page that rebinds its DNS name to 127.0.0.1
    must not reach a server bound there) and state-changing requests from other sites' pages
    (a browser sends their Origin or Referer; API clients send neither); and adds the headers
    every response carries. A job id in a URL is a capability: no Referer may leak it."""

    def __init__(self, app: ASGIApp, *, max_body: int, limit_message: str,
                 allowed_hosts: tuple[str, ...] | None,
                 trusted_origins: tuple[str, ...] = (),
                 body_limits: BodyLimits = BodyLimits()) -> None:
        self.app = app
        self.max_body = max_body
        self.limit_message = limit_message
        self.allowed_hosts = allowed_hosts
        self.trusted = {k for k in map(_origin_key, trusted_origins) if k is not None}
        self.body_limits = body_limits

    def _host_ok(self, scope: Scope) -> bool:
        if self.allowed_hosts is None:
            return True
        host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]") in self.allowed_hosts

    def _foreign_origin(self, scope: Scope) -> str | None:
        """The other site a state-changing request comes from; None if it is our own page
        or a client that names no page (curl, scripts)."""
        if scope["method"] in SAFE_METHODS:
            return None
        headers = dict(scope.get("headers", []))
        claimed = headers.get(b"origin") or headers.get(b"referer")
        if claimed is None:
            return None
        claimed = claimed.decode("latin-1")
        key = _origin_key(claimed)
        if key is None:
            return claimed or "(empty)"  # "null": a sandboxed frame, a file:// page
        host = headers.get(b"host", b"").decode("latin-1")
        own = _origin_key(f"{scope.get('scheme', 'http')}://{host}") if host else None
        if key == own or key in self.trusted:
            return None
        return f"{key[0]}://{key[1]}" + ("" if DEFAULT_PORTS.get(key[0]) == key[2]
                                          else f":{key[2]}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._host_ok(scope):
            response = JSONResponse(
                {"error": "this server does not answer to that host name; open it as "
                          f"http://{self.allowed_hosts[0]}:PORT/ (or start it with --host)"},
                status_code=400)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                if scope["path"].startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        foreign = self._foreign_origin(scope)
        if foreign is not None:
            response = JSONResponse(
                {"error": f"{scope['method']} refused: the request comes from a page of "
                          f"another site ({foreign[:100]}); this server takes uploads and "
                          "deletions only from its own page, or from API clients that send "
                          "no Origin header"}, status_code=403)
            await response(scope, receive, send_with_headers)
            return

        limited = scope["method"] == "POST" and scope["path"].endswith("/api/jobs")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if (limited and length is not None and length.isdigit()
                and int(length) > self.max_body):
            response = JSONResponse({"error": self.limit_message}, status_code=413,
                                    headers={"connection": "close"})
            await response(scope, receive, send_with_headers)
            return
        received = 0
        waited = 0.0  # seconds spent waiting for the client's data
        body_done = False
        idle, rate = self.body_limits.idle_timeout, self.body_limits.min_rate

        async def receive_checked() -> Message:
            nonlocal received, waited, body_done
            if body_done:  # waiting for a disconnect, not for the client's data
                return await receive()
            allowance = min(idle, idle + received / rate - waited)
            t = time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, allowance))
            except asyncio.TimeoutError:
                waited += time.monotonic() - t
                slow = "stopped sending" if allowance >= idle else "is too slow"
                raise StarletteHTTPException(
                    408, f"the request body {slow} ({received} bytes in {waited:.0f} s; at "
                         f"least {rate / 1000:g} kB/s is needed); send it again",
                    headers={"connection": "close"}) from None
            waited += time.monotonic() - t
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if limited and received > self.max_body:
                    # An HTTPException passes through FastAPI's body parsing to the handlers.
                    raise StarletteHTTPException(413, self.limit_message)
            else:
                body_done = True
            return message

        await self.app(scope, receive_checked, send_with_headers)


# --------------------------------------------------------------------------- uploads


def _display_name(filename: str | None, default: str = "upload") -> str:
    """The client's file name for display and download names: its last component only, with
    anything but letters, digits and ._-() replaced. Never used as a path."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[^\w.()\- ]+", "_", name).strip(" ._")
    return name[:80] or default


def _ascii_stem(name: str) -> str:
    stem = Path(name).stem if "." in name else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "song"


def _have_ffmpeg() -> bool:
    return bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))


def _ffprobe_seconds(path: Path) -> float | None:
    """The container's duration as ffprobe reports it; None where it cannot tell."""
    try:
        r = subprocess.run([shutil.which("ffprobe") or "ffprobe", "-v", "error", "-show_entries",
                            "format=duration", "-of", "default=nw=1:nk=1", str(path)],
                           capture_output=True, text=True, timeout=60, check=False)
        seconds = float(r.stdout.strip())
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _ffmpeg_suffix(head: bytes) -> str | None:
    """Containers left to ffmpeg, recognised by their magic numbers only: ffmpeg probes any
    input it is given (playlists included), so it only ever sees these."""
    if head[4:8] == b"ftyp":
        return ".m4a"  # MP4 family: M4A, AAC in MP4, 3GP
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".mka"  # Matroska, WebM
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return ".wma"  # ASF
    if len(head) > 1 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return ".aac"  # ADTS
    return None


class _Uploads:
    """Saving and checking uploaded files."""

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    def _mb(self, n: float) -> str:
        return f"{n / MB:.3g} MB"

    def save(self, upload: UploadFile, folder: Path, stem: str, what: str) -> Path:
        """Copy the upload to ``folder/stem.bin`` (a name we make), refusing it past the size
        limit; then rename it by the format its content decodes as."""
        raw = folder / f"{stem}.bin"
        size = 0
        with raw.open("wb") as out:
            while chunk := upload.file.read(COPY_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise ApiError(413, f"{what} is larger than the {self._mb(self.max_bytes)} "
                                        "limit; upload a shorter or compressed file (FLAC, "
                                        "MP3)")
                out.write(chunk)
        if size == 0:
            raise ApiError(400, f"{what} is empty (0 bytes); choose the audio file again")
        suffix = self._sniff(raw, what)
        path = raw.with_suffix(suffix)
        raw.rename(path)
        return path

    def _sniff(self, path: Path, what: str) -> str:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError):
            info = None
        if info is not None:
            suffix = SNDFILE_SUFFIX.get(info.format)
            if suffix is None:
                raise ApiError(415, f"{what} is {info.format_info} audio, which genreshift "
                                    f"does not read; convert it to {ACCEPTED}")
            return suffix
        with path.open("rb") as f:
            head = f.read(16)
        suffix = _ffmpeg_suffix(head)
        if suffix is not None and _have_ffmpeg():
            return suffix
        accepted = ACCEPTED + (f", or {ACCEPTED_FFMPEG}" if _have_ffmpeg() else "")
        raise ApiError(415, f"{what} is not audio that genreshift can decode; upload {accepted}"
                            " (the file's content decides, not its name)")

    def _length(self, path: Path, what: str) -> float | None:
        """The length in seconds, known before anything is decoded in full: a small
        compressed file can hold hours of near-silence, whose decoding would fill the memory.
        MP3 headers only estimate it, so MP3 is counted by decoding block by block (nothing
        kept, stopping just past the limit); ffmpeg's formats are measured by ffprobe."""
        if path.suffix in FFMPEG_SUFFIXES:
            return _ffprobe_seconds(path)
        try:
            with sf.SoundFile(str(path)) as f:
                if f.frames >= UNKNOWN_FRAMES:
                    raise ApiError(400, f"{what} does not say how long it is (a stream "
                                        "capture?); re-export it as a complete file")
                if path.suffix != ".mp3":
                    return f.frames / f.samplerate
                cap = int(self.max_seconds * f.samplerate) + 1
                frames = sum(len(b) for b in f.blocks(blocksize=1 << 16, frames=cap))
                return math.inf if frames >= cap else frames / f.samplerate
        except (sf.LibsndfileError, RuntimeError) as e:
            reason = str(e).rsplit(": ", 1)[-1]  # libsndfile's reason, not our path
            raise ApiError(400, f"{what}: not a readable audio file ({reason}); check that it "
                                "is a complete, uncorrupted audio file") from None

    def check(self, path: Path, what: str, names: dict[Path, str], folder: Path,
              *, min_seconds: float = 0.0) -> tuple[dict, np.ndarray]:
        """The duration limit, then header facts and a full decode with the conversion's own
        checks (too short, silent, corrupt). Returns the facts for the job's status and the
        decoded audio [channels, samples]."""
        seconds = self._length(path, what)
        if seconds is None:
            raise ApiError(400, f"{what}: its length cannot be told without decoding it all; "
                                f"convert it to {ACCEPTED} first")
        if seconds > self.max_seconds:
            raise ApiError(413, self._too_long(what, seconds))
        try:
            info = gaudio.audio_info(path)
            audio, sr = load_song(path)
        except AudioError as e:
            raise _api_error(e, 400, names=names, folder=folder) from None
        seconds = audio.shape[-1] / sr
        if seconds > self.max_seconds:  # a header can understate the length
            raise ApiError(413, self._too_long(what, seconds))
        if seconds < min_seconds:
            raise ApiError(400, f"{what} is too short ({seconds:.2f} s); at least "
                                f"{min_seconds:g} s is needed")
        facts = {"format": info.format, "encoding": info.encoding, "sample_rate": sr,
                 "channels": int(audio.shape[0]), "duration_s": round(seconds, 3)}
        return facts, audio

    def _too_long(self, what: str, seconds: float) -> str:
        limit = _duration(self.max_seconds)
        if math.isinf(seconds):  # counted up to the limit only
            return f"{what} is longer than the {limit} accepted: cut it shorter"
        return (f"{what} is {_duration(seconds)} long; the longest accepted is {limit}: "
                "cut it shorter")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min"


# --------------------------------------------------------------------------- the app


def create_app(models_dir: str | Path | None = None, *, workers: int = 1,
               max_upload_mb: float = 50.0, max_seconds: float = 600.0,
               ttl_seconds: float = 3600.0, workdir: str | Path | None = None,
               device: str = "auto", max_queue: int = 16,
               allowed_hosts: tuple[str, ...] | None = None,
               queue: str | None = None, storage: str | Path | None = None,
               trusted_origins: tuple[str, ...] = (),
               body_limits: BodyLimits = BodyLimits(),
               threads: int | None = None) -> FastAPI:
    """The web app. ``models_dir``: converters and classifier (default: $GENRESHIFT_MODELS or
    the shipped checkpoints/); ``workers``: conversions at once; ``max_queue``: jobs waiting
    before new ones get 503; ``max_upload_mb``, ``max_seconds``: per uploaded file;
    ``ttl_seconds``: how long results are kept after their job ends; ``workdir``: where job
    folders go (default: a private temporary folder; removed when the app shuts down);
    ``allowed_hosts``: the Host names answered (default: any; `genreshift serve` on a
    loopback address allows only localhost names); ``trusted_origins``: other origins whose
    pages may upload and delete (a reverse proxy's public URL), besides the server's own;
    ``body_limits``: how slowly a request body may arrive.

    ``queue`` (redis://HOST:PORT/DB) sends the jobs to `genreshift worker` processes through
    Redis instead of converting in this process (``workers``, ``workdir`` and ``device`` then
    do not apply); uploads and results go to ``storage``, a folder every worker shares, and
    stay there when the app stops (until they expire)."""
    for name, value in (("max_upload_mb", max_upload_mb), ("max_seconds", max_seconds),
                        ("ttl_seconds", ttl_seconds)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise GenreshiftError(f"{name} must be a positive number, got {value}")
    for origin in trusted_origins:
        if _origin_key(origin) is None:
            raise GenreshiftError(f"--allow-origin '{origin}': not an origin; give "
                                  "scheme://host[:port], such as https://music.example.org")
    if queue is not None:
        from genreshift.web.redisqueue import RedisJobManager

        converter = wjobs.Converter(models_dir, "cpu")  # to list the genres; it converts nothing
        manager = RedisJobManager(queue, storage, max_queue=max_queue, ttl_seconds=ttl_seconds)
    else:
        converter = wjobs.Converter(models_dir, device, threads=threads)
        manager = JobManager(converter.run, workers=workers, max_queue=max_queue,
                             ttl_seconds=ttl_seconds, workdir=workdir,
                             worker_state=converter.new_state)
    max_bytes = int(max_upload_mb * MB)
    uploads = _Uploads(max_bytes, max_seconds)

    def limits() -> Limits:
        count = workers if queue is None else manager.worker_count()
        return Limits(max_upload_bytes=max_bytes, max_upload_mb=max_upload_mb,
                      max_seconds=max_seconds, ttl_seconds=ttl_seconds, workers=count or 0,
                      max_queue=max_queue, queue="redis" if queue else "local")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        manager.start()
        try:
            yield
        finally:
            manager.close()

    app = FastAPI(
        title="genreshift", version=genreshift.__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None,
        description="Convert a song to another genre (a trained converter) or to sound like a "
                    "reference recording. Upload with POST /api/jobs, poll GET /api/jobs/{id}, "
                    "then fetch the results. Errors are JSON objects with one field, `error`.")
    app.state.manager = manager
    app.state.converter = converter
    # Two files (song and reference) may come in one request.
    app.add_middleware(_Guard, max_body=2 * max_bytes + FORM_OVERHEAD,
                       limit_message=f"the upload is larger than the "
                                     f"{max_upload_mb:g} MB limit per file; upload a shorter "
                                     "or compressed file (FLAC, MP3)",
                       allowed_hosts=tuple(h.lower() for h in allowed_hosts)
                       if allowed_hosts is not None else None,
                       trusted_origins=tuple(trusted_origins), body_limits=body_limits)

    # ------------------------------------------------------------------- errors

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(GenreshiftError)
    async def _library_error(request: Request, exc: GenreshiftError) -> JSONResponse:
        # One that no route expected: unclassified, it is the server's fault (500).
        err = _api_error(exc, 500, folder=getattr(manager, "root", None))
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(QueueUnavailable)
    async def _queue_down(request: Request, exc: QueueUnavailable) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"retry-after": "30"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = (f"no such page or endpoint: {request.url.path}; the API is described at "
                       "/openapi.json")
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server's "
                                      "log has the details"}, status_code=500)

    def _job(job_id: str) -> Job:
        try:
            return manager.get(job_id)
        except UnknownJob:
            raise ApiError(404, f"no job '{job_id[:40]}'; check the id (job ids are only "
                                "valid on the server that made them)") from None
        except JobGone as e:
            hours = ttl_seconds / 3600
            keep = f"{hours:g} h" if hours >= 1 else f"{ttl_seconds / 60:g} min"
            why = (f"expired: results are kept for {keep} after a job ends"
                   if e.reason == "expired" else "was deleted")
            raise ApiError(410, f"job {job_id} {why}; upload the song again to convert it "
                                "again") from None

    def _finished(job: Job) -> None:
        if job.state in ("queued", "running"):
            raise ApiError(409, f"job {job.id} is still {job.state}; poll "
                                f"/api/jobs/{job.id} until its state is done")
        if job.state == "failed":
            raise ApiError(409, f"job {job.id} failed, so it has no result: {job.error}")

    def _status(request: Request, job: Job) -> dict:
        snap = manager.snapshot(job)
        base = f"{request.scope.get('root_path', '')}/api/jobs/{job.id}"
        done = snap["state"] == "done"
        snap["links"] = {
            "status": base,
            "original": f"{base}/original",
            "spectrogram": f"{base}/spectrogram.png" if done else None,
            "downloads": ({f: f"{base}/result/{f}" for f in wjobs.DOWNLOAD_FORMATS}
                          if done else {}),
        }
        return snap

    # ------------------------------------------------------------------- routes

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json", title="genreshift API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            # No badge linking to the online validator: the page names no other host.
            swagger_ui_parameters={"validatorUrl": None})
        page.headers["content-security-policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url="/openapi.json", title="genreshift API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                              with_google_fonts=False)
        page.headers["content-security-policy"] = DOCS_CSP
        return page

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"content-security-policy": PAGE_CSP,
                                     "cache-control": "no-cache"})

    @app.get("/api/info", response_model=ServerInfo, summary="What this server offers")
    def info() -> dict:
        models = converter.models()
        rows = [ModelRow(genre=r["genre"], model=Path(r["model"]).name, source=r["from"],
                         steps=r["steps"]) for r in tconv.describe_models(models)]
        accepted = ACCEPTED + (f"; {ACCEPTED_FFMPEG} (ffmpeg)" if _have_ffmpeg() else "")
        return {"version": genreshift.__version__, "genres": list(models.targets()),
                "models": rows, "source_detection": list(models.classifier_genres),
                "reference_mode": True, "accepted": accepted,
                "download_formats": list(wjobs.DOWNLOAD_FORMATS), "limits": limits()}

    @app.post("/api/jobs", status_code=202, response_model=JobStatus,
              summary="Upload a song and queue its conversion",
              responses=_errors(400, 413, 415, 422, 503))
    def create_job(
        request: Request,
        file: Annotated[UploadFile, File(description=SONG_HELP)],
        genre: Annotated[str | None, Form(description=GENRE_HELP)] = None,
        reference: Annotated[UploadFile | None, File(description=REFERENCE_HELP)] = None,
        strength: Annotated[float, Form(description=STRENGTH_HELP)] = 1.0,
        source: Annotated[str | None, Form(description=SOURCE_HELP)] = None,
        rhythm: Annotated[Literal["keep", "replace", "add"],
                          Form(description=RHYTHM_HELP)] = DEFAULT_RHYTHM,
    ) -> dict:
        genre = (genre or "").strip() or None
        source = (source or "").strip().lower() or None
        if reference is not None and not reference.filename and not reference.size:
            reference = None  # an empty file field of an HTML form
        if not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
            raise ApiError(422, f"strength {strength:g}: choose a value from 0 (the input, "
                                "reconstructed) to 1 (the full conversion)")
        if (genre is None) == (reference is None):
            raise ApiError(422, "give either a target genre ('genre') or a reference "
                                "recording ('reference'), not " +
                                ("both" if genre else "neither"))
        label = None
        if genre is not None:
            label = _check_genre(converter, genre, strength, source)
        if not manager.has_room():
            raise _busy(manager)
        job_id, folder = manager.new_job_dir()
        try:
            job = _make_job(uploads, job_id, folder, file, reference, genre, source, strength,
                            label, rhythm)
            manager.submit(job)
        except QueueFull:
            manager.discard(folder)
            raise _busy(manager) from None
        except BaseException:
            manager.discard(folder)
            raise
        return _status(request, job)

    @app.get("/api/jobs/{job_id}", response_model=JobStatus, summary="A job's status",
             responses=_errors(404, 410))
    def job_status(request: Request, job_id: str) -> dict:
        return _status(request, _job(job_id))

    @app.delete("/api/jobs/{job_id}", response_model=Deleted,
                summary="Delete a job and its files now", responses=_errors(404, 410))
    def delete_job(job_id: str) -> dict:
        _job(job_id)
        try:
            manager.delete(job_id)
        except (UnknownJob, JobGone):
            pass  # expired meanwhile: gone either way
        return {"id": job_id, "deleted": True}

    @app.get("/api/jobs/{job_id}/original", summary="The uploaded song, playable in a browser",
             response_class=FileResponse, responses=_errors(404, 410))
    def original(job_id: str) -> FileResponse:
        job = _job(job_id)
        media = PLAYABLE.get(job.original_path.suffix, "application/octet-stream")
        return _file(job, job.original_path, media)

    @app.get("/api/jobs/{job_id}/result/{fmt}", summary="The converted song",
             response_class=FileResponse, responses=_errors(404, 409, 410, 422))
    def result(job_id: str, fmt: Literal["wav", "flac", "mp3"]) -> FileResponse:
        job = _job(job_id)
        _finished(job)
        try:
            path = wjobs.export(job, fmt)
        except GenreshiftError as e:
            _job(job_id)  # expired while encoding: say so
            raise _api_error(e, 500, folder=job.dir, server_side=True) from None
        name = f"{_ascii_stem(job.input_name)}.{_ascii_stem(job.label)}.{fmt}"
        return _file(job, path, MEDIA_TYPES[fmt], filename=name)

    @app.get("/api/jobs/{job_id}/spectrogram.png", summary="Spectrogram comparison image",
             response_class=FileResponse, responses=_errors(404, 409, 410))
    def spectrogram(job_id: str) -> FileResponse:
        job = _job(job_id)
        _finished(job)
        return _file(job, job.plot_path, "image/png")

    def _file(job: Job, path: Path, media_type: str, filename: str | None = None
              ) -> FileResponse:
        if not path.is_file():  # deleted between the lookup and now
            _job(job.id)
            raise ApiError(410, f"job {job.id}: its files were deleted")
        return FileResponse(path, media_type=media_type, filename=filename)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=_docs_assets()), name="docs-assets")
    return app


def _docs_assets() -> Path:
    """Swagger UI and ReDoc as the fastapi-offline package ships them (the ``[web]`` extra):
    /docs works without the network (FastAPI's default loads them from a CDN)."""
    import fastapi_offline

    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise GenreshiftError(f"{folder}: Swagger UI is missing from the fastapi-offline "
                              "package; reinstall it (pip install --force-reinstall "
                              "fastapi-offline)")
    return folder


def _busy(manager: JobManager) -> ApiError:
    return ApiError(503, f"the server is busy: {manager.max_queue} job(s) are already waiting "
                         "for a worker; try again in a minute", headers={"retry-after": "30"})


def _check_genre(converter: wjobs.Converter, genre: str, strength: float,
                 source: str | None) -> str:
    """Refuse an unknown genre (or blend) before anything is uploaded to disk; returns the
    label for download names."""
    models = converter.models()
    available = models.targets()
    names = ", ".join(available) or "none (this server has no trained converters; use a "\
                                    "reference recording instead)"
    try:
        targets = tconv.parse_targets(genre)
    except GenreshiftError as e:
        raise _api_error(e, 422) from None
    for t in targets:
        if t.genre not in available:
            raise ApiError(422, f"unknown target genre '{t.genre}'; available: {names}")
    try:
        tconv.check_genres(models, tconv.TrainedSettings(targets=tuple(targets),
                                                         strength=strength, source=source))
    except GenreshiftError as e:
        raise _api_error(e, 422) from None
    return tconv.target_label(targets)


def _make_job(uploads: _Uploads, job_id: str, folder: Path, file: UploadFile,
              reference: UploadFile | None, genre: str | None, source: str | None,
              strength: float, label: str | None, rhythm: str = "keep") -> Job:
    """Save and check the uploads into ``folder``; the Job that converts them."""
    from genreshift.inference.reference import MIN_REFERENCE_SECONDS

    name = _display_name(file.filename)
    song = uploads.save(file, folder, "input", f"'{name}'")
    facts, audio = uploads.check(song, f"'{name}'", {song: f"'{name}'"}, folder)
    original = song
    if song.suffix not in PLAYABLE or facts["encoding"] == "DOUBLE":
        original = gaudio.save_audio(folder / "original.wav", audio, facts["sample_rate"])
    del audio
    ref_path, ref_name = None, None
    if reference is not None:
        ref_name = _display_name(reference.filename, "reference")
        what = f"reference '{ref_name}'"
        ref_path = uploads.save(reference, folder, "reference", what)
        uploads.check(ref_path, what, {ref_path: what}, folder,
                      min_seconds=MIN_REFERENCE_SECONDS)
        label = "like-" + _ascii_stem(ref_name)
    return Job(id=job_id, dir=folder, mode="trained" if genre else "reference",
               input_path=song, input_name=name, input_info=facts, original_path=original,
               label=label or "converted", genre=genre, source=source, strength=strength,
               rhythm=rhythm if genre else "keep",
               reference_path=ref_path, reference_name=ref_name)


FIELD_HINTS = {
    "file": "send the song as the multipart/form-data file field 'file'",
    "strength": "a number from 0 to 1",
    "fmt": "wav, flac or mp3",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        field = loc[-1] if loc else "request"
        hint = FIELD_HINTS.get(field)
        if err.get("type") == "missing":
            parts.append(f"'{field}' is missing" + (f": {hint}" if hint else ""))
        else:
            parts.append(f"'{field}': {err.get('msg', 'invalid')}"
                         + (f" ({hint})" if hint else ""))
    return "; ".join(parts) or "the request is not valid"
