"""`genreshift serve`: run the web app under uvicorn.

Registered by genreshift.cli; FastAPI and uvicorn (the ``[web]`` extra) are imported only when
the command runs, so the rest of the CLI works without them.
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


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from genreshift.web.app import create_app
    except ImportError as e:
        raise GenreshiftError(
            f"the web app needs FastAPI and uvicorn (missing: {e.name}); install them with "
            "pip install 'genreshift[web]'") from None

    loopback = _is_loopback(args.host)
    app = create_app(models_dir=args.models, workers=args.workers,
                     max_upload_mb=args.max_upload_mb, max_seconds=args.max_minutes * 60,
                     ttl_seconds=args.ttl_minutes * 60, workdir=args.workdir,
                     device=args.device, max_queue=args.max_queue,
                     allowed_hosts=LOOPBACK_NAMES if loopback else None)
    if args.workers > 1:
        # Each worker runs torch ops; sharing the cores between them beats every worker
        # starting one thread per core (oversubscribed, every job slows down).
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    if not loopback:
        print(f"genreshift: warning: listening on {args.host}, not on this machine only: "
              "anyone who can reach it can upload files and use its CPU", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"genreshift: serving on http://{shown}:{args.port}/ (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """Register `genreshift serve` on the top-level subcommands."""
    p = sub.add_parser(
        "serve", help="run the web app (upload a song, pick a genre, listen, download)",
        description="Serve the web page and its JSON API (OpenAPI schema at /openapi.json). "
                    "Conversions run in a bounded queue of worker threads; results expire and "
                    "their files are deleted. Binds to 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                        "0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=_positive(int, "--workers"), default=1,
                   help="conversions run at once (default 1; each is CPU-heavy)")
    p.add_argument("--max-queue", type=_positive(int, "--max-queue"), default=16,
                   help="jobs waiting for a worker before new ones are refused (default 16)")
    p.add_argument("--models", metavar="DIR",
                   help="folder of converter checkpoints and classifier.pt (default: "
                        "$GENRESHIFT_MODELS or the shipped checkpoints/)")
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
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
