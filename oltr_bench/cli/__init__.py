"""The ``oltr-bench`` command line: a thin layer over the Python API.

Each command lives in its own module and imports the heavy parts (torch, the engine, the
site builder) only when it runs, so ``--help`` and the light commands start fast; user errors (:class:`~oltr_bench.errors.OltrError`) are
printed as one paragraph and exit with status 2.
"""

from __future__ import annotations

import click

from oltr_bench import __version__
from oltr_bench.errors import OltrError
from oltr_bench.log import setup as setup_logging
from oltr_bench.utils.io import WRITE_ERRORS, write_error


class UserError(click.ClickException):
    exit_code = 2


class Group(click.Group):
    """A click group that turns :class:`OltrError` into a clean message and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OltrError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            if exc.errno not in WRITE_ERRORS:
                raise
            raise UserError(str(write_error(exc.filename, exc))) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="oltr-bench")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on standard error (progress bars stay, unless --no-progress).")
@click.option("-v", "--verbose", is_flag=True, help="Also debug messages.")
def main(quiet: bool, verbose: bool) -> None:
    """Benchmark splits, baselines and exact metrics for Open Long-Tailed Recognition.

    \b
    Quick start (embedded benchmark, no data needed):
      oltr-bench demo
    \b
    Real data:
      oltr-bench make-splits --dataset imagenet --root /data/ILSVRC2012
      oltr-bench run --method dme --dataset imagenet_lt
      oltr-bench report oltr_work/runs --html site/

    Everything is written under ./oltr_work (or $OLTR_BENCH_HOME) unless --out says otherwise.
    Messages go to standard error (-q: warnings only; -v: debug too); results and paths to standard output.
    """
    if quiet and verbose:
        raise UserError("give --quiet or --verbose, not both")
    setup_logging(-1 if quiet else 1 if verbose else 0)


def _register() -> None:
    from oltr_bench.cli import demo, evaluate, faces, leaderboard, listing, make_splits, report, run, suite

    for module in (make_splits, run, suite, evaluate, faces, report, leaderboard, listing, demo):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
