"""The list-file dataset: one sample per list line, read from the split's root.

A list path is a file path relative to the split root (``n01440764/xyz.JPEG``), or
``<scheme>:<key>`` for images stored inside container files (MS1M-LT's ``rec:<record index>``
in MXNet RecordIO files). A *reader* turns a line into a :class:`~oltr_bench.data.images.RawImage`:
:class:`FileReader` for paths; a scheme's reader registers itself with :func:`register_reader`
in the module that :data:`SCHEME_MODULES` names, which is imported the first time a list uses
the scheme. The pre-resized image cache (:mod:`oltr_bench.data.image_cache`) is another reader.

A missing or undecodable image is an error naming its path; with ``skip_corrupt`` it is
dropped from its batch instead, and the batch reports its path so the engine can count it
(never silently). Loader workers never raise for an image: they hand a :class:`Skipped` marker
to the main process, which raises the error (an exception raised inside a worker would reach
the user as a worker traceback).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import torch

from oltr_bench.data.images import RawImage, UnreadableImage
from oltr_bench.data.transforms import Pipeline, stack_images
from oltr_bench.errors import OltrError
from oltr_bench.splits.format import SplitDir

Reader = Callable[[int], RawImage]
"""``reader(i)`` -> the ``i``-th image of the list the reader was made for."""

ReaderFactory = Callable[[Path, Sequence[str]], Reader]
"""``factory(root, paths)`` -> a reader over those list paths (must be picklable for workers)."""

READERS: dict[str, ReaderFactory] = {}
SCHEME_MODULES = {"rec": "oltr_bench.data.records"}


def register_reader(scheme: str):
    """Register the reader factory for list paths ``<scheme>:<key>``."""

    def decorator(factory: ReaderFactory) -> ReaderFactory:
        READERS[scheme] = factory
        return factory

    return decorator


def path_scheme(path: str) -> str:
    """``"rec"`` for ``rec:123``; ``""`` for a plain relative file path."""
    head, sep, _ = path.partition(":")
    return head if sep and "/" not in head else ""


class FileReader:
    """Image files under ``root``, read as bytes (decoded later by the transform)."""

    def __init__(self, root: Path, paths: Sequence[str]):
        self.root = Path(root)
        self.paths = list(paths)

    def __call__(self, i: int) -> RawImage:
        path = self.root / self.paths[i]
        try:
            return RawImage(str(path), data=path.read_bytes())
        except FileNotFoundError:
            raise UnreadableImage(str(path), "does not exist") from None
        except OSError as exc:
            raise UnreadableImage(str(path), f"cannot be read ({exc.strerror or exc})") from None


def make_reader(root: Path, paths: Sequence[str]) -> Reader:
    """The reader for a list's paths (all lines of one list use one scheme)."""
    schemes = {path_scheme(p) for p in paths[:1000]} or {""}
    if len(schemes) > 1:
        raise OltrError(f"the list under {root} mixes path kinds {sorted(schemes)}; expected one kind per list")
    scheme = schemes.pop()
    if not scheme:
        return FileReader(root, paths)
    if scheme not in READERS and scheme in SCHEME_MODULES:
        try:
            importlib.import_module(SCHEME_MODULES[scheme])
        except ImportError as exc:
            raise OltrError(f"list paths '{scheme}:...' need {SCHEME_MODULES[scheme]}, which failed to import: {exc}") from None
    if scheme not in READERS:
        known = ", ".join(sorted({*READERS, *SCHEME_MODULES})) or "(none)"
        raise OltrError(f"list paths '{scheme}:...' under {root} have no reader; known schemes: {known}")
    return READERS[scheme](root, paths)


class Skipped(NamedTuple):
    """What the dataset returns instead of a sample whose image failed (see :func:`raise_failures`)."""

    index: int
    path: str
    reason: str
    fatal: bool  # True: stop the run (skipping is off, or the transform itself failed)
    unreadable: bool  # True: the file is missing or undecodable (--skip-corrupt applies)


def raise_failures(skipped: Sequence[Skipped]) -> None:
    """Raise the error of the first fatal failure in a batch (in the main process)."""
    for item in skipped:
        if item.fatal:
            if item.unreadable:
                raise UnreadableImage(item.path, item.reason)
            raise OltrError(f"image {item.path} {item.reason}")


class Batch(NamedTuple):
    """A collated batch: inputs (a tensor, or a list when samples differ in shape), labels, list indices, aux, failures."""

    x: torch.Tensor | list[torch.Tensor]
    y: torch.Tensor
    index: torch.Tensor
    aux: torch.Tensor | list[torch.Tensor]
    skipped: list[Skipped]


class ListDataset(torch.utils.data.Dataset):
    """Samples of one split list; ``indices`` selects a subset (``--quick``).

    ``dataset[(i, seed)]`` (or ``dataset[i]``, seed 0) -> ``(x, label, i, aux)`` from the
    pipeline's per-sample step with that augmentation seed, or :class:`Skipped`.
    """

    def __init__(
        self,
        split: SplitDir,
        which: str,
        pipeline: Pipeline,
        indices: Sequence[int] | None = None,
        *,
        skip_corrupt: bool = False,
        reader: Reader | None = None,
    ):
        entries = split.entries(which)
        self.root: Path = split.root(which)
        self.which = which
        chosen = range(len(entries)) if indices is None else indices
        self.paths = [entries[i][0] for i in chosen]
        self.labels = [entries[i][1] for i in chosen]
        self.pipeline = pipeline
        self.skip_corrupt = skip_corrupt
        self.reader = reader if reader is not None else make_reader(self.root, self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def raw(self, index: int) -> RawImage:
        return self.reader(index)

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, 0)
        try:
            x, aux = self.pipeline.sample(self.reader(index), seed)
        except UnreadableImage as exc:
            return Skipped(index, exc.path, exc.reason, fatal=not self.skip_corrupt, unreadable=True)
        except Exception as exc:  # noqa: BLE001 - a transform bug is reported with the image it failed on
            reason = f"failed in the {self.which} transform ({type(exc).__name__}: {exc})"
            return Skipped(index, str(self.root / self.paths[index]), reason, fatal=True, unreadable=False)
        return x, self.labels[index], index, aux


def collate(samples: list) -> Batch:
    """Stack samples (lists where shapes differ); skipped samples leave the batch and report their path."""
    kept = [s for s in samples if not isinstance(s, Skipped)]
    skipped = [s for s in samples if isinstance(s, Skipped)]
    if not kept:
        empty = torch.zeros(0)
        return Batch(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), empty, skipped)
    xs, ys, idx, aux = zip(*kept)
    same = all(x.shape == xs[0].shape for x in xs) and all(a.shape == aux[0].shape for a in aux)
    return Batch(
        stack_images(list(xs)) if same else list(xs),
        torch.tensor(ys, dtype=torch.long),
        torch.tensor(idx, dtype=torch.long),
        torch.stack(aux) if same else list(aux),
        skipped,
    )


def make_loader(dataset, batches, *, workers: int, pin_memory: bool, persistent: bool = False) -> torch.utils.data.DataLoader:
    """A loader over ``batches`` (an iterable of lists of dataset items, re-iterated every epoch);
    iterate it through :func:`guarded`."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        timeout=LOADER_TIMEOUT if workers > 0 else 0,
        # Its own generator: creating an epoch's iterator must not consume the global RNG (exact resume).
        generator=torch.Generator().manual_seed(0),
    )


LOADER_TIMEOUT = 1800
"""Seconds a loader worker may take for one batch before the run fails: a worker that stalls
(e.g. blocked on a full shared-memory file system) must end the run, not hang it."""
_WORKER_FAILURES = ("DataLoader worker", "DataLoader timed out", "shared memory", "unable to write to file </torch_")


def guarded(loader: Iterable) -> Iterator:
    """Iterate ``loader``; a loader worker that dies or stalls ends in a one-line :class:`OltrError`
    (PyTorch notices a dead worker at once and a stalled one after :data:`LOADER_TIMEOUT`)."""
    try:
        yield from loader
    except RuntimeError as exc:
        text = str(exc)
        if not any(marker in text for marker in _WORKER_FAILURES):
            raise
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise OltrError(f"a data-loading worker failed ({first}); the machine may be out of memory or of shared memory "
                        "(/dev/shm; with docker, --shm-size): set data.workers=0 to load in the main process, or free them "
                        "and resume with --resume") from None
