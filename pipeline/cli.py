"""The ``regsweep`` command line."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regsweep")
def main() -> None:
    """regsweep: tune lasso, ridge and elastic net on a Dask cluster, tracked in MLflow."""
