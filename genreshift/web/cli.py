"""`genreshift serve` (the web app under uvicorn) and `genreshift worker` (conversions from
the Redis queue).

Registered by genreshift.cli; FastAPI, uvicorn, RQ and redis (the ``[web]`` extra) are imported
only when a command runs, so the rest of the CLI works without them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from genreshift.errors import GenreshiftError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Host names a loopback-bound server answers to (the Host header); others are refused.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _positive(kind: type, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: {what} must be greater than 0")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 0..65535 (0: any free port)")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _need_web(e: ImportError) -> GenreshiftError:
    return GenreshiftError(
        f"the web app needs FastAPI, uvicorn, RQ and redis (missing: {e.name}); install them "
        "with pip install 'genreshift[web]'")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from genreshift.web.app import BodyLimits, create_app
        from genreshift.web.server import ServerLimits, serve
    except ImportError as e:
        raise _need_web(e) from None
    from genreshift.inference.pipeline import without_huge_pages

    without_huge_pages()

    if args.queue is None and args.storage is not None:
        raise GenreshiftError("--storage is the folder shared with Redis workers: it needs "
                              "--queue redis://HOST:PORT/DB (without --queue, --workdir sets "
                              "where job files go)")
    if args.queue is not None:
        if args.workers is not None:
            raise GenreshiftError("--workers sets the conversion threads of a server without "
                                  "--queue; with --queue, start `genreshift worker` processes "
                                  "instead (one per core to use)")
        if args.storage is None:
            raise GenreshiftError("--queue needs --storage DIR: the folder where uploads and "
                                  "results live, shared with every `genreshift worker`")
    workers = args.workers or 1
    loopback = _is_loopback(args.host)
    if args.queue is not None:
        try:
            import redis  # noqa: F401
            import rq  # noqa: F401
        except ImportError as e:
            raise _need_web(e) from None
    # Each worker converts with its own threads; sharing the cores between them beats every
    # worker starting one thread per core (oversubscribed, every job slows down).
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    app = create_app(models_dir=args.models, workers=workers, threads=threads,
                     max_upload_mb=args.max_upload_mb, max_seconds=args.max_minutes * 60,
                     ttl_seconds=args.ttl_minutes * 60, workdir=args.workdir,
                     device=args.device, max_queue=args.max_queue,
                     allowed_hosts=LOOPBACK_NAMES if loopback else None,
                     queue=args.queue, storage=args.storage,
                     trusted_origins=tuple(args.allow_origin),
                     body_limits=BodyLimits(idle_timeout=args.body_timeout,
                                            min_rate=args.min_body_kbps * 1000))
    if threads is not None and "torch" in sys.modules:  # reference mode's torch, if loaded
        import torch

        torch.set_num_threads(threads)
    if not loopback:
        print(f"genreshift: warning: listening on {args.host}, not on this machine only: "
              "anyone who can reach it can upload files and use its CPU", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    where = ("conversions in this process" if args.queue is None else
             "jobs go to `genreshift worker` processes through the Redis queue")
    print(f"genreshift: serving on http://{shown}:{args.port}/ ({where}; Ctrl+C stops)",
          flush=True)
    serve(app, host=args.host, port=args.port, log_level=args.log_level,
          limits=ServerLimits(header_timeout=args.header_timeout,
                              keep_alive=args.keep_alive,
                              limit_concurrency=args.max_connections))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    try:
        from genreshift.web.redisqueue import run_worker
    except ImportError as e:
        raise _need_web(e) from None
    from genreshift.inference.pipeline import without_huge_pages

    without_huge_pages()
    return run_worker(args.queue, args.storage, models_dir=args.models, device=args.device,
                      threads=args.threads, heartbeat=args.heartbeat, name=args.name,
                      burst=args.burst, log_level=args.log_level)


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """Register `genreshift serve` on the top-level subcommands."""
    p = sub.add_parser(
        "serve", help="run the web app (upload a song, pick a genre, listen, download)",
        description="Serve the web page and its JSON API (OpenAPI schema at /openapi.json, "
                    "interactive docs at /docs). Conversions run in a bounded queue of worker "
                    "threads, or with --queue in `genreshift worker` processes on any machine; "
                    "results expire and their files are deleted. Binds to 127.0.0.1 unless "
                    "--host says otherwise.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                        "0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=_positive(int, "--workers"), default=None,
                   help="conversions run at once in this process (default 1; each is "
                        "CPU-heavy); not with --queue")
    p.add_argument("--queue", metavar="redis://HOST:PORT/DB",
                   help="send jobs to `genreshift worker` processes through this Redis "
                        "(default: convert in this process)")
    p.add_argument("--storage", metavar="DIR",
                   help="with --queue: the folder of uploads and results that every worker "
                        "shares (kept across restarts, until the results expire)")
    p.add_argument("--max-queue", type=_positive(int, "--max-queue"), default=16,
                   help="jobs waiting for a worker before new ones are refused (default 16)")
    p.add_argument("--models", metavar="DIR",
                   help="folder of converter checkpoints and classifier.pt (default: "
                        "$GENRESHIFT_MODELS, else the models shipped in the package)")
    p.add_argument("--max-upload-mb", type=_positive(float, "--max-upload-mb"), default=50.0,
                   metavar="MB", help="largest accepted file (default 50 MB)")
    p.add_argument("--max-minutes", type=_positive(float, "--max-minutes"), default=10.0,
                   metavar="MIN", help="longest accepted song or reference (default 10 min)")
    p.add_argument("--ttl-minutes", type=_positive(float, "--ttl-minutes"), default=60.0,
                   metavar="MIN",
                   help="results are deleted this long after their job ends (default 60)")
    p.add_argument("--workdir", metavar="DIR",
                   help="where job files live (default: a private temporary folder, removed "
                        "when the server stops)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto takes CUDA when present")
    p.add_argument("--allow-origin", metavar="URL", action="append", default=[],
                   help="another origin whose pages may upload and delete, such as a "
                        "reverse proxy's https://music.example.org (repeatable); the "
                        "server's own is always allowed")
    p.add_argument("--header-timeout", type=_positive(float, "--header-timeout"),
                   default=10.0, metavar="S",
                   help="close connections whose request header is not complete in S "
                        "seconds (default 10)")
    p.add_argument("--body-timeout", type=_positive(float, "--body-timeout"), default=30.0,
                   metavar="S", help="answer 408 when an upload stops for S seconds "
                                     "(default 30)")
    p.add_argument("--min-body-kbps", type=_positive(float, "--min-body-kbps"), default=16.0,
                   metavar="KB_S",
                   help="past the first --body-timeout seconds, an upload must average this "
                        "many kB/s (default 16)")
    p.add_argument("--keep-alive", type=_positive(int, "--keep-alive"), default=5,
                   metavar="S", help="idle kept-alive connections close after S seconds "
                                     "(default 5)")
    p.add_argument("--max-connections", type=_positive(int, "--max-connections"),
                   default=100, metavar="N",
                   help="past N open connections, requests get 503 at once (default 100)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def add_worker_parser(sub: argparse._SubParsersAction) -> None:
    """Register `genreshift worker` on the top-level subcommands."""
    p = sub.add_parser(
        "worker", help="convert the web app's jobs from a Redis queue (run one per core to "
                       "use, on any machine)",
        description="Take conversion jobs that `genreshift serve --queue` put in Redis, "
                    "reading uploads from and writing results to the shared --storage "
                    "folder. Ctrl+C (or SIGTERM) lets the job under way finish; a second one "
                    "stops at once (the job is then retried once, by another worker).")
    p.add_argument("--queue", required=True, metavar="redis://HOST:PORT/DB",
                   help="the Redis that `genreshift serve --queue` uses")
    p.add_argument("--storage", required=True, metavar="DIR",
                   help="the folder given to `genreshift serve --storage` (the same files: "
                        "a network filesystem on another machine)")
    p.add_argument("--models", metavar="DIR",
                   help="folder of converter checkpoints and classifier.pt, the same models "
                        "as the web server's (default: $GENRESHIFT_MODELS, else the models "
                        "shipped in the package)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto takes CUDA when present")
    p.add_argument("--threads", type=_positive(int, "--threads"), default=None,
                   help="threads per conversion (default: every core; with N workers "
                        "on one machine, give each cores / N)")
    p.add_argument("--heartbeat", type=_positive(int, "--heartbeat"), default=10,
                   metavar="S",
                   help="seconds between the worker's signs of life while it converts; a "
                        "job whose worker has been silent for 3 of them is retried once, "
                        "then failed (default 10)")
    p.add_argument("--name", help="the worker's name in Redis and its log, unique on the site "
                                  "(default: a random one)")
    p.add_argument("--burst", action="store_true",
                   help="stop once the queue is empty (default: wait for jobs)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_worker)
