"""Command line, one entry point ``wavis`` (built on click):

* operators: ``serve`` (the API server), ``worker`` (a compute worker), ``webhooks`` (the webhook
  delivery worker alone), ``admin create-account|create-key|revoke-key|maintenance``;
* users: ``keygen`` (keys to files, mode 0600), ``encrypt`` / ``decrypt`` (files), ``upload``,
  ``compute``, ``gate`` and ``circuit`` (TFHE), ``health`` (:mod:`wavis.cli_user`);
* ``bench …``: the benchmark harness (:mod:`wavis.bench`, which parses its own arguments).

Every command answers ``--json`` with one JSON object on stdout where it prints a result, prints
errors as one line ``wavis: …`` on stderr and exits non-zero: 1 for a failure (the server's error
code is in the line, and in ``{"error": …}`` with ``--json``), 2 for a usage error.

Service dependencies are imported only inside the commands, so ``import wavis.cli`` stays light.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from ._cli_base import (EXIT_FAILURE, EXIT_USAGE, Failure, UsageFailure, _emit, _note, data_dir_option,  # noqa: F401
                        json_option, log_level_option)


def _level(name: str) -> int:
    return getattr(logging, str(name).upper(), logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="wavis", prog_name="wavis")
def cli() -> None:
    """WAVIS: fully homomorphic encryption (CKKS, TFHE) as a service."""


# --- operators --------------------------------------------------------------------------------

@cli.command()
@click.option("--host", default=None, help="listen address (env WAVIS_HOST, default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="listen port (env WAVIS_PORT, default 8080)")
@data_dir_option
@log_level_option
@click.option("--engine", type=click.Choice(["embedded", "remote"]), default=None,
              help="embedded (default, env WAVIS_ENGINE): this process also computes; remote: jobs go to "
                   "`wavis worker` processes only")
def serve(host, port, data_dir, log_level, engine) -> int:
    """Run the REST API server. With WAVIS_DATABASE_URL / WAVIS_REDIS_URL unset it starts an
    embedded PostgreSQL and Redis under the data directory. Logs are JSON lines unless
    WAVIS_LOG_FORMAT=text."""
    from wavis.service import server  # noqa: PLC0415
    from wavis.service.embedded import DataDirBusy  # noqa: PLC0415
    from wavis.service.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env(host=host, port=port, data_dir=data_dir, engine=engine)
    server.setup_logging(_level(log_level), settings.json_logs)
    # an operator's mistake (a second server on the data dir, a port in use) is one line, not a traceback
    try:
        server.run(settings)
    except DataDirBusy as exc:
        raise Failure(str(exc)) from None
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise
        raise Failure(f"cannot listen: {exc}") from None
    return 0


@cli.command()
@data_dir_option
@log_level_option
@click.option("--threads", type=int, default=None, help="compute threads (env WAVIS_COMPUTE_THREADS)")
def worker(data_dir, log_level, threads) -> int:
    """Run the compute engine alone: consume the job streams through the Redis consumer group,
    batch jobs onto the CPU/GPU, write results to PostgreSQL. Needs the same WAVIS_DATABASE_URL /
    WAVIS_REDIS_URL / WAVIS_REDIS_PREFIX and WAVIS_MASTER_KEY as the API processes."""
    from wavis.service.server import run_worker, setup_logging  # noqa: PLC0415
    from wavis.service.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env(data_dir=data_dir, compute_threads=threads)
    setup_logging(_level(log_level), settings.json_logs)
    run_worker(settings)
    return 0


@cli.command()
@data_dir_option
@log_level_option
def webhooks(data_dir, log_level) -> int:
    """Run the webhook delivery worker alone (any number of these, and the workers inside
    `wavis serve`, may run together). WAVIS_WEBHOOK_WORKER=0 keeps `wavis serve` from
    delivering itself."""
    from wavis.service.server import setup_logging  # noqa: PLC0415
    from wavis.service.settings import Settings  # noqa: PLC0415
    from wavis.service.webhook_worker import run as run_webhooks  # noqa: PLC0415

    settings = Settings.from_env(data_dir=data_dir)
    setup_logging(_level(log_level), settings.json_logs)
    run_webhooks(settings)
    return 0


@cli.group()
def admin() -> None:
    """Operator commands. They use the same data directory and database as the running
    `wavis serve` (found through its record, see wavis.client.discovery) unless --data-dir,
    WAVIS_DATA_DIR or WAVIS_DATABASE_URL say otherwise, and say on stderr which they used."""


def _admin_settings(data_dir: Path | None, *, need: str = "database"):
    """Settings for an admin command and a sentence naming the database (or Redis) it uses.

    Order: ``--data-dir``; ``WAVIS_DATA_DIR``; ``WAVIS_DATABASE_URL`` (``WAVIS_REDIS_URL`` for
    Redis); the running server of ``./.wavis-data``; the one running server; else ``./.wavis-data``.
    A running server whose database or pepper came from the environment cannot be reached
    without that environment: a clear error, never a second database."""
    from wavis.client import discovery  # noqa: PLC0415
    from wavis.service.settings import Settings  # noqa: PLC0415

    env = os.environ
    url_var = "WAVIS_DATABASE_URL" if need == "database" else "WAVIS_REDIS_URL"
    record = None
    if data_dir is not None or env.get("WAVIS_DATA_DIR"):
        chosen = Path(data_dir or env["WAVIS_DATA_DIR"])
        source = "--data-dir" if data_dir is not None else "WAVIS_DATA_DIR"
        record = discovery.server_for_data_dir(chosen)
    elif env.get(url_var):
        chosen, source = discovery.DEFAULT_DATA_DIR, url_var
    else:
        servers = discovery.running_servers()
        record = discovery.server_for_data_dir(discovery.DEFAULT_DATA_DIR)
        if record is None and len(servers) == 1:
            record = servers[0]
        elif record is None and len(servers) > 1:
            listing = "; ".join(f"{r.url} (data dir {r.data_dir})" for r in servers)
            raise Failure(f"{len(servers)} wavis servers are running ({listing}): pass --data-dir to choose one")
        if record is not None:
            chosen, source = Path(record.data_dir), f"the running server at {record.url}"
        else:
            chosen, source = discovery.DEFAULT_DATA_DIR, "the default (no running server found)"
    settings = Settings.from_env(data_dir=chosen)
    if record is not None:
        what = record.database if need == "database" else record.redis
        if what != "embedded" and not env.get(url_var):
            raise Failure(f"the server at {record.url} uses the external {'PostgreSQL' if need == 'database' else 'Redis'} "
                          f"{what}: set {url_var} (with its password) as for the server")
        if need == "database" and record.pepper == "env" and settings.api_key_pepper is None:
            raise Failure(f"the server at {record.url} reads its API-key pepper from WAVIS_API_KEY_PEPPER: set it "
                          "to the same value, or the keys made here would not authenticate there")
    if env.get(url_var):
        target = f"the external {'PostgreSQL' if need == 'database' else 'Redis'} {discovery.redact_url(env[url_var])}"
    else:
        target = f"the embedded {'PostgreSQL' if need == 'database' else 'Redis'} of {Path(chosen).resolve()}"
    return settings, f"{target} (from {source})"


def _check_email(email: str) -> None:
    # a plausibility check, not RFC 5322: one '@', a non-empty local part, a dotted domain
    local, _, domain = email.strip().partition("@")
    if not local or "." not in domain.strip(".") or " " in email.strip() or "@" in domain:
        raise UsageFailure(f"{email!r} is not an email address")


@admin.command("create-account")
@click.option("--email", required=True)
@click.option("--plan", default="free", show_default=True)
@click.option("--environment", type=click.Choice(["live", "test", "dev"]), default="live", show_default=True,
              help="environment of the API key")
@json_option
@data_dir_option
def create_account(email, plan, environment, as_json, data_dir) -> int:
    """Create an account and its first account_admin API key (shown once)."""
    from wavis.service.admin import PLANS, create_account as create  # noqa: PLC0415
    from wavis.service.server import setup_logging  # noqa: PLC0415

    setup_logging(logging.WARNING)
    if plan not in PLANS:
        raise UsageFailure(f"unknown plan {plan!r} (one of {', '.join(PLANS)})")
    _check_email(email)
    settings, where = _admin_settings(data_dir)
    _note(f"database: {where}")
    import asyncpg  # noqa: PLC0415

    try:
        new = create(settings, email=email, plan=plan, environment=environment)
    except asyncpg.UniqueViolationError:
        raise Failure(f"an account with email {email!r} already exists") from None
    _emit(as_json, {"account_id": new.account_id, "api_key_id": new.api_key_id, "api_key": new.api_key,
                    "database": where},
          f"account_id: {new.account_id}\napi_key:    {new.api_key}   (shown once; store it now)")
    return 0


@admin.command("create-key")
@click.option("--account", "account_id", required=True, help="account id (acct_…)")
@click.option("--role", type=click.Choice(["viewer", "developer", "account_admin"]), default="developer",
              show_default=True)
@click.option("--environment", type=click.Choice(["live", "test", "dev"]), default="live", show_default=True)
@json_option
@data_dir_option
def create_key(account_id, role, environment, as_json, data_dir) -> int:
    """Create another API key for an existing account (shown once)."""
    from wavis.service.admin import create_key as create  # noqa: PLC0415
    from wavis.service.server import setup_logging  # noqa: PLC0415

    setup_logging(logging.WARNING)
    settings, where = _admin_settings(data_dir)
    _note(f"database: {where}")
    new = create(settings, account_id=account_id, role=role, environment=environment)
    if new is None:
        raise Failure(f"no account {account_id!r} in this database")
    _emit(as_json, {"account_id": new.account_id, "api_key_id": new.api_key_id, "api_key": new.api_key,
                    "role": role, "database": where},
          f"api_key_id: {new.api_key_id}\napi_key:    {new.api_key}   (shown once; store it now)")
    return 0


@admin.command("set-plan")
@click.option("--account", "account_id", required=True, help="account id (acct_…)")
@click.option("--plan", default=None, help="free, payg, starter, pro, scale or enterprise")
@click.option("--monthly-fcu", type=click.IntRange(min=0), default=None,
              help="enterprise only: FCU included per month")
@click.option("--monthly-usd", type=str, default=None, help="enterprise only: the monthly price in USD")
@click.option("--clear-overrides", is_flag=True, help="drop the per-account enterprise terms")
@json_option
@data_dir_option
def set_plan(account_id, plan, monthly_fcu, monthly_usd, clear_overrides, as_json, data_dir) -> int:
    """Change an account's plan; set an Enterprise account's own allowance and price (docs/billing.md)."""
    from decimal import Decimal, InvalidOperation  # noqa: PLC0415

    from wavis.service.admin import set_plan as apply  # noqa: PLC0415
    from wavis.service.server import setup_logging  # noqa: PLC0415

    setup_logging(logging.WARNING)
    usd = None
    if monthly_usd is not None:
        try:
            usd = Decimal(monthly_usd)
        except InvalidOperation:
            raise UsageFailure(f"--monthly-usd {monthly_usd!r} is not a number") from None
        if not usd.is_finite():
            raise UsageFailure(f"--monthly-usd {monthly_usd!r} is not a number")
    settings, where = _admin_settings(data_dir)
    _note(f"database: {where}")
    try:
        out = apply(settings, account_id, plan=plan, monthly_fcu=monthly_fcu, monthly_usd=usd,
                    clear_overrides=clear_overrides)
    except ValueError as e:
        raise UsageFailure(str(e)) from None
    if out is None:
        raise Failure(f"no account {account_id!r} in this database")
    _emit(as_json, {**out, "database": where},
          f"{out['account_id']}: plan {out['plan']}"
          + (f", {out['monthly_fcu_override']} FCU/month" if out["monthly_fcu_override"] is not None else "")
          + (f", ${out['monthly_usd_override']}/month" if out["monthly_usd_override"] is not None else ""))
    return 0


@admin.command("revoke-key")
@click.argument("key")
@json_option
@data_dir_option
def revoke_key(key, as_json, data_dir) -> int:
    """Revoke an API key now, by its id (apikey_…) or by the key itself (wvs_…)."""
    from wavis.service.admin import revoke_key as revoke  # noqa: PLC0415
    from wavis.service.server import setup_logging  # noqa: PLC0415

    setup_logging(logging.WARNING)
    settings, where = _admin_settings(data_dir)
    _note(f"database: {where}")
    found = revoke(settings, key)
    if found is None:
        raise Failure("no such API key in this database")
    _emit(as_json, {"api_key_id": found, "revoked": True, "database": where}, f"revoked: {found}")
    return 0


@admin.command()
@click.argument("mode", type=click.Choice(["on", "off", "status"]))
@click.option("--retry-after", type=int, default=300, show_default=True, help="Retry-After seconds answered while on")
@json_option
@data_dir_option
def maintenance(mode, retry_after, as_json, data_dir) -> int:
    """Maintenance mode on/off (a flag in Redis, seen by every API process)."""
    from wavis.service.admin import maintenance as set_mode  # noqa: PLC0415
    from wavis.service.server import setup_logging  # noqa: PLC0415

    setup_logging(logging.WARNING)
    settings, where = _admin_settings(data_dir, need="redis")
    _note(f"redis: {where}")
    state = set_mode(settings, mode, retry_after)
    _emit(as_json, {"maintenance": state}, f"maintenance: {'on' if state else 'off'}")
    return 0


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def bench(ctx) -> int:
    """Benchmarks (wavis.bench; `wavis bench --help` for its options)."""
    try:
        from wavis import bench as bench_mod  # noqa: PLC0415
    except ImportError:
        raise Failure("the benchmark package wavis.bench is not installed in this build") from None
    return int(bench_mod.main(list(ctx.args)) or 0)


from . import cli_user  # noqa: E402  (the user commands: keygen, encrypt, decrypt, compute, gate, circuit, …)

cli_user.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 usage)."""
    try:
        rv = cli.main(args=argv, prog_name="wavis", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("wavis: aborted", err=True)
        return EXIT_FAILURE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return int(rv or 0) if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
