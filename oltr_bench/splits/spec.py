"""The interface of a dataset ``make-splits`` can build, option checking, and the checked final write."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from oltr_bench.errors import OltrError
from oltr_bench.splits.format import SplitDir, write_split_dir
from oltr_bench.splits.official import Release, import_lists
from oltr_bench.splits.profile import PartialPareto, Profile, resolve_profile
from oltr_bench.splits.scan import require_readable


# The make-splits flags that together give the long-tailed profile (``--alpha``, ``--max``, ...).
PROFILE_OPTIONS = frozenset({"alpha", "max", "min", "counts"})


class DatasetSpec:
    """Base class: a dataset ``make-splits`` can build (override :meth:`make_splits`).

    ``name`` is the split directory name and config folder; ``needs`` tells the user what must
    be on disk; ``sources`` where each part of it comes from (``(what, where)`` pairs; oltr-bench
    never downloads anything); ``options`` are the ``make-splits`` options the dataset accepts.
    """

    name: str = ""
    needs: str = ""
    sources: tuple[tuple[str, str], ...] = ()
    options: frozenset[str] = frozenset()

    def make_splits(self, out_root: Path, *, seed: int, overwrite: bool, progress: bool, **options: Any) -> SplitDir:
        """Write the split directory ``out_root/<dataset name>`` and return it.

        A dataset that accepts :data:`PROFILE_OPTIONS` receives them as one ``profile``: a
        :class:`~oltr_bench.splits.profile.Profile` (``--counts``), a
        :class:`~oltr_bench.splits.profile.PartialPareto` that it completes with its defaults, or None.
        """
        raise NotImplementedError


OLTR_RELEASE = ("the released lists of the OLTR paper (with the open list)",
                "the OLTR repository's README, https://github.com/zhmiao/OpenLongTailRecognition-OLTR "
                "(project page https://liuziwei7.github.io/projects/LongTail.html)")
DECOUPLING_RELEASE = ("the same lists in the Decoupling code's path dialect (no open list)",
                      "https://github.com/facebookresearch/classifier-balancing")


class ReleasedDataset(DatasetSpec):
    """An OLTR benchmark with released lists: ``--official DIR`` imports and verifies them,
    otherwise :meth:`generate` builds the split from the raw dataset by the protocol.

    Subclasses set ``release``, ``root_help`` (what ``--root`` must be) and ``default_profile``,
    and implement :meth:`generate`; :meth:`lists_root` maps ``--root`` to the folder the released
    paths are relative to.
    """

    release: Release
    root_help: str = ""
    default_profile: Profile
    default_val_per_class = 20
    options = frozenset({"root", "official", "open_root", "allow_missing", "val_per_class"}) | PROFILE_OPTIONS

    def lists_root(self, root: Path) -> Path:
        return root

    def make_splits(
        self,
        out_root: Path,
        *,
        seed: int,
        overwrite: bool,
        progress: bool,
        root: Path | None = None,
        official: Path | None = None,
        open_root: Path | None = None,
        allow_missing: bool = False,
        profile: Profile | PartialPareto | None = None,
        val_per_class: int | None = None,
        **_: Any,
    ) -> SplitDir:
        if root is None:
            raise OltrError(f"dataset {self.name!r} needs --root DIR: {self.root_help}")
        root = Path(root)
        ensure_free(out_root / self.name, overwrite)
        if official is not None:
            if profile is not None or val_per_class is not None:
                raise OltrError("--official imports the released lists; the profile and --val-per-class options do not apply")
            return import_lists(
                self.release, Path(official), root=self.lists_root(root), open_root=open_root,
                allow_missing=allow_missing, out_root=out_root, overwrite=overwrite, progress=progress,
            )
        return self.generate(
            out_root, root, seed=seed, overwrite=overwrite, progress=progress,
            open_root=None if open_root is None else Path(open_root), allow_missing=allow_missing,
            profile=resolve_profile(profile, self.default_profile),
            val_per_class=self.default_val_per_class if val_per_class is None else val_per_class,
        )

    def generate(
        self, out_root: Path, root: Path, *, seed: int, overwrite: bool, progress: bool, open_root: Path | None,
        allow_missing: bool, profile: Profile, val_per_class: int,
    ) -> SplitDir:
        """Build the split from the raw dataset under ``root`` by the benchmark's protocol."""
        raise NotImplementedError


def check_options(spec: DatasetSpec, given: dict[str, Any]) -> None:
    """Reject ``make-splits`` options the dataset does not use (instead of silently ignoring them).

    ``given`` is keyed by flag name (``max`` for ``--max``), as the user typed them, so the
    message names flags that exist.
    """
    unused = sorted(k for k, v in given.items() if v is not None and v is not False and k not in spec.options)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        accepted = ", ".join("--" + k.replace("_", "-") for k in sorted(spec.options)) or "none"
        raise OltrError(f"dataset {spec.name!r} does not use {flags}; it accepts: {accepted}")


def ensure_free(out_dir: Path, overwrite: bool) -> None:
    """Fail before any slow work when the split directory exists and may not be replaced."""
    if out_dir.exists() and not overwrite:
        raise OltrError(f"{out_dir} already exists; pass --overwrite to replace it or choose another --out")


def write_checked_split(
    out_dir: Path,
    *,
    dataset: str,
    classes: Sequence[str],
    lists: dict[str, Sequence[tuple[str, int]]],
    roots: dict[str, str],
    source: dict[str, Any],
    overwrite: bool,
    progress: bool,
) -> SplitDir:
    """Check that every listed image is a readable file under its root, then write the split directory."""
    for split, entries in lists.items():
        require_readable(Path(roots[split]), [path for path, _ in entries], f"{split} images", progress=progress)
    return write_split_dir(out_dir, dataset=dataset, classes=classes, lists=lists, roots=roots, source=source, overwrite=overwrite)
