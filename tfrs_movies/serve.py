"""Serve an export over HTTP: recommendations as JSON, TensorFlow Serving's REST dialect, and a page.

    python -m tfrs_movies.serve --model runs/<run>/export                  # http://127.0.0.1:8000/
    python -m tfrs_movies.serve --model runs/<run>/export --ranking runs/<other>/export --port 8080
    TFRS_MOVIES_TOKEN=secret python -m tfrs_movies.serve --model runs/<run>/export --host 0.0.0.0

It loads the export once (every SavedModel, answered once), then answers concurrently on uvicorn,
logging one line per request. It binds 127.0.0.1 unless ``--host`` says otherwise; ``--token`` (or
``$TFRS_MOVIES_TOKEN``) makes every endpoint but ``/health`` and the page ask for
``Authorization: Bearer <token>``. Endpoints: :mod:`tfrs_movies.serving.http.app`. A missing or
damaged export is one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Sequence

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from tfrs_movies.cli import add_debug_flag, command_parser, guarded
from tfrs_movies.serving.http.settings import ServerSettings
from tfrs_movies.serving.load import load_export

DEFAULTS = ServerSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("serve", __doc__)
    parser.add_argument("--model", required=True, help="an export directory (<run_dir>/export)")
    parser.add_argument("--ranking", metavar="DIR", help="another run's ranking export for the second stage")
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000; 0: a free one (logged)")
    parser.add_argument(
        "--token",
        default=os.environ.get("TFRS_MOVIES_TOKEN"),
        help="bearer token for every endpoint but /health (default: $TFRS_MOVIES_TOKEN)",
    )
    limits = parser.add_argument_group("limits and micro-batching")
    limits.add_argument("--max-body-bytes", type=int, default=DEFAULTS.max_body_bytes)
    limits.add_argument(
        "--max-batch-users",
        type=int,
        default=DEFAULTS.max_batch_users,
        help="the most user ids (or watched movies) one POST /recommend may hold",
    )
    limits.add_argument(
        "--micro-batch",
        type=int,
        default=DEFAULTS.micro_batch,
        help="the most concurrent searches gathered into one index call (1: off)",
    )
    limits.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULTS.max_wait_ms,
        help="how long a search waits for others to join its batch",
    )
    limits.add_argument("--threads", type=int, default=DEFAULTS.threads, help="request threads")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_debug_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.micro_batch < 1 or args.max_wait_ms < 0 or args.threads < 1 or args.max_body_bytes < 1:
        what = "--micro-batch, --threads and --max-body-bytes must be at least 1, --max-wait-ms at least 0"
        print(f"error: {what}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    return guarded(lambda: _serve(args), args.debug, args.verbose)


def _serve(args: argparse.Namespace) -> int:
    # A wrong path is one error line (status 2) before the app and TensorFlow load.
    exported = load_export(args.model, ranking=args.ranking)
    import uvicorn

    from tfrs_movies.serving.http.app import create_app, warm_up

    settings = ServerSettings(
        token=args.token or None,
        max_body_bytes=args.max_body_bytes,
        max_batch_users=args.max_batch_users,
        micro_batch=args.micro_batch,
        max_wait_ms=args.max_wait_ms,
        threads=args.threads,
    )
    warm_up(exported)
    app = create_app(exported, settings)
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    logging.getLogger("tfrs_movies.serve").info(
        "serving %s (%s, indexes: %s) on http://%s:%d/", args.model, exported.manifest.get("model"),
        ", ".join(exported.indexes), host, port,
    )  # fmt: skip
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
