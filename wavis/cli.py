"""Command line: ``wavis serve`` (the API server), ``wavis worker`` (a compute worker),
``wavis webhooks`` (the webhook delivery worker alone), ``wavis admin …`` and ``wavis bench …``
(the benchmark harness, :mod:`wavis.bench`, which parses its own arguments).

Service dependencies are imported only inside the commands, so ``import wavis.cli`` stays light.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data directory for the embedded servers and the pepper file "
                        "(env WAVIS_DATA_DIR, default ./.wavis-data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wavis", description="WAVIS: FHE as a service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the REST API server",
                           description="Run the API server. With WAVIS_DATABASE_URL / WAVIS_REDIS_URL unset it "
                                       "starts an embedded PostgreSQL and Redis under the data directory.")
    serve.add_argument("--host", default=None, help="listen address (env WAVIS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (env WAVIS_PORT, default 8080)")
    _add_common(serve)
    serve.add_argument("--log-level", default=os.environ.get("WAVIS_LOG_LEVEL", "INFO"))
    serve.add_argument("--engine", choices=["embedded", "remote"], default=None,
                       help="embedded (default, env WAVIS_ENGINE): this process also computes; remote: jobs go "
                            "to `wavis worker` processes only")

    worker = sub.add_parser("worker", help="run a compute worker (consumes the job streams)",
                            description="Run the compute engine alone: consume the job streams through the Redis "
                                        "consumer group, batch jobs onto the CPU/GPU, write results to PostgreSQL. "
                                        "Needs the same WAVIS_DATABASE_URL / WAVIS_REDIS_URL / WAVIS_REDIS_PREFIX and "
                                        "WAVIS_MASTER_KEY as the API processes.")
    _add_common(worker)
    worker.add_argument("--log-level", default=os.environ.get("WAVIS_LOG_LEVEL", "INFO"))
    worker.add_argument("--threads", type=int, default=None, help="compute threads (env WAVIS_COMPUTE_THREADS)")

    wh = sub.add_parser("webhooks", help="run the webhook delivery worker alone",
                        description="Deliver webhook events from the outbox (any number of these, and the "
                                    "workers inside `wavis serve`, may run together). WAVIS_WEBHOOK_WORKER=0 "
                                    "keeps `wavis serve` from delivering itself.")
    _add_common(wh)
    wh.add_argument("--log-level", default=os.environ.get("WAVIS_LOG_LEVEL", "INFO"))

    admin = sub.add_parser("admin", help="operator commands")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    ca = admin_sub.add_parser("create-account", help="create an account and its first account_admin API key")
    ca.add_argument("--email", required=True)
    ca.add_argument("--plan", default="free")
    ca.add_argument("--environment", default="live", choices=["live", "test", "dev"],
                    help="environment of the API key (default live)")
    ca.add_argument("--json", action="store_true", help="print {account_id, api_key} as JSON")
    _add_common(ca)
    mt = admin_sub.add_parser("maintenance", help="maintenance mode on/off (a flag in Redis, seen by every API process)")
    mt.add_argument("mode", choices=["on", "off", "status"])
    mt.add_argument("--retry-after", type=int, default=300, help="Retry-After seconds answered while on")
    _add_common(mt)
    sub.add_parser("bench", add_help=False, help="the benchmark harness (wavis bench --help; wavis.bench)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # wavis.bench parses the rest (wavis bench --help)
        from wavis.bench import main as bench_main  # noqa: PLC0415

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    from wavis.service.server import setup_logging  # noqa: PLC0415
    from wavis.service.settings import Settings  # noqa: PLC0415

    if args.command == "serve":
        setup_logging(getattr(logging, str(args.log_level).upper(), logging.INFO))
        from wavis.service.embedded import DataDirBusy  # noqa: PLC0415
        from wavis.service.server import run  # noqa: PLC0415

        # an operator's mistake (a second server on the data dir, a port in use) is one line, not a traceback
        try:
            run(Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir, engine=args.engine))
        except DataDirBusy as exc:
            print(f"wavis: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
            print(f"wavis: cannot listen: {exc}", file=sys.stderr)
            return 1
        return 0

    if args.command == "worker":
        settings = Settings.from_env(data_dir=args.data_dir, compute_threads=args.threads)
        setup_logging(getattr(logging, str(args.log_level).upper(), logging.INFO), settings.json_logs)
        from wavis.service.server import run_worker  # noqa: PLC0415

        run_worker(settings)
        return 0

    if args.command == "webhooks":
        settings = Settings.from_env(data_dir=args.data_dir)
        setup_logging(getattr(logging, str(args.log_level).upper(), logging.INFO), settings.json_logs)
        from wavis.service.webhook_worker import run as run_webhooks  # noqa: PLC0415

        run_webhooks(settings)
        return 0

    if args.command == "admin" and args.admin_command == "maintenance":
        setup_logging(logging.WARNING)
        from wavis.service.admin import maintenance  # noqa: PLC0415

        state = maintenance(Settings.from_env(data_dir=args.data_dir), args.mode, args.retry_after)
        print(f"maintenance: {'on' if state else 'off'}")
        return 0

    if args.command == "admin" and args.admin_command == "create-account":
        setup_logging(logging.WARNING)
        from wavis.service.admin import PLANS, create_account  # noqa: PLC0415

        if args.plan not in PLANS:
            print(f"wavis: unknown plan {args.plan!r} (one of {', '.join(PLANS)})", file=sys.stderr)
            return 2
        # a plausibility check, not RFC 5322: one '@', a non-empty local part, a dotted domain
        local, _, domain = args.email.strip().partition("@")
        if not local or "." not in domain.strip(".") or " " in args.email.strip() or "@" in domain:
            print(f"wavis: {args.email!r} is not an email address", file=sys.stderr)
            return 2
        import asyncpg  # noqa: PLC0415

        try:
            new = create_account(Settings.from_env(data_dir=args.data_dir), email=args.email, plan=args.plan,
                                 environment=args.environment)
        except asyncpg.UniqueViolationError:
            print(f"wavis: an account with email {args.email!r} already exists", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps({"account_id": new.account_id, "api_key": new.api_key}))
        else:
            print(f"account_id: {new.account_id}")
            print(f"api_key:    {new.api_key}   (shown once; store it now)")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
