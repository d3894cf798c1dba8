"""Shared pieces of the ``wavis`` command line (:mod:`wavis.cli`, :mod:`wavis.cli_user`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

EXIT_FAILURE, EXIT_USAGE = 1, 2


class Failure(click.ClickException):
    """A clear one-line failure (exit 1)."""

    exit_code = EXIT_FAILURE

    def show(self, file=None) -> None:  # noqa: D102
        click.echo(f"wavis: {self.format_message()}", err=True)


class UsageFailure(Failure):
    exit_code = EXIT_USAGE


def _emit(as_json: bool, data: dict[str, Any], text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str))
    else:
        click.echo(text if text is not None else "\n".join(f"{k}: {v}" for k, v in data.items()))


def _note(msg: str) -> None:
    click.echo(f"wavis: {msg}", err=True)


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="data directory of the embedded PostgreSQL/Redis and the pepper file (env WAVIS_DATA_DIR; "
         "admin commands default to the running server's, else ./.wavis-data)")
json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object on stdout")
log_level_option = click.option("--log-level", default=lambda: os.environ.get("WAVIS_LOG_LEVEL", "INFO"),
                                show_default="env WAVIS_LOG_LEVEL or INFO")


