"""``oltr-bench datasets`` and ``oltr-bench methods``: listings generated from the registries."""

from __future__ import annotations

import click

from oltr_bench.registry import DATASETS, METHODS


@click.command("methods")
def methods_cmd() -> None:
    """List the registered methods with a one-line description.

    \b
    Example:
      oltr-bench methods
    """
    rows = METHODS.describe()
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        method = METHODS.get(name)
        tag = f"stage {method.stage}" + (f", from {method.init_from}" if method.init_from else "")
        click.echo(f"{name:<{width}}  {description} [{tag}]")


@click.command("datasets")
def datasets_cmd() -> None:
    """List the datasets make-splits can build, what each needs on disk and where that comes from.

    oltr-bench downloads nothing: the lines 'from:' name the official pages of the released lists
    and of the source datasets, whose terms apply.

    \b
    Example:
      oltr-bench datasets
    """
    for name, spec in DATASETS:
        aliases = DATASETS.aliases_of(name)
        alias_text = f" (also: {', '.join(aliases)})" if aliases else ""
        click.echo(f"{name}{alias_text}: {spec.__doc__.strip().splitlines()[0]}")
        click.echo(f"    needs: {spec.needs}")
        for what, where in spec.sources:
            click.echo(f"    from: {what}: {where}")


COMMANDS = (methods_cmd, datasets_cmd)
