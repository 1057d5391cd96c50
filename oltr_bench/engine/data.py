"""The run's data: the split's datasets (``--quick`` subsets), loaders, the image cache, and
batches turned into model inputs on the device, with unreadable images failing or counted.

``--quick`` picks each split's subset when the split is first used, so a quick run, too, reads
the test and open lists only for the final evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from oltr_bench.config import RunConfig
from oltr_bench.data import image_cache
from oltr_bench.data.images import UndecodableItems, UnreadableImage
from oltr_bench.data.lists import Batch, ListDataset, guarded, make_loader, make_reader, raise_failures
from oltr_bench.data.transforms import build_pipeline
from oltr_bench.engine import distributed
from oltr_bench.engine.distributed import Dist
from oltr_bench.engine.hooks import Phase
from oltr_bench.splits.format import SplitDir

log = logging.getLogger(__name__)
SHOWN_SKIPPED = 20  # unreadable images named in the log (all are counted, the first 100 listed in the manifest)


def quick_subset(labels: list[int], per_class: int, seed: int) -> list[int]:
    """The first ``per_class`` indices of each class after a seeded shuffle (for ``--quick``)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    taken: dict[int, int] = {}
    chosen = []
    for i in order:
        label = labels[int(i)]
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(int(i))
    return sorted(chosen)


class RunData:
    """Datasets, loaders and device inputs of one run on one split."""

    def __init__(self, cfg: RunConfig, split: SplitDir, dist: Dist, *, quick: bool, channels_last: bool, phase: Phase,
                 progress: bool):
        self.cfg, self.split, self.dist = cfg, split, dist
        self.device = dist.device
        self.quick = quick
        self.channels_last = channels_last
        self.phase = phase
        self.progress = progress
        self.skipped: set[str] = set()
        self.image_caches: dict[str, Any] = {}
        self._subsets: dict[str, list[int]] = {}
        self._datasets: dict[tuple[str, bool], ListDataset] = {}

    def subset(self, which: str) -> list[int] | None:
        """The list positions ``--quick`` uses of split ``which`` (None: the whole list)."""
        if not self.quick:
            return None
        if which not in self._subsets:
            q, seed = self.cfg.quick, self.cfg.seed
            if which == "open":
                n_open = len(self.split.entries("open"))
                self._subsets[which] = sorted(np.random.default_rng(seed).permutation(n_open)[: q.open_images].tolist())
            else:
                per_class = q.train_per_class if which == "train" else q.eval_per_class
                self._subsets[which] = quick_subset(self.split.labels(which), per_class, seed)
        return self._subsets[which]

    def num_samples(self, which: str) -> int:
        subset = self.subset(which)
        return len(subset) if subset is not None else len(self.split.entries(which))

    def dataset(self, which: str, train: bool) -> ListDataset:
        key = (which, train)
        if key not in self._datasets:
            data = self.cfg.data
            reader = self._image_cache_reader(which) if data.image_cache else None
            self._datasets[key] = ListDataset(self.split, which, build_pipeline(data, train), self.subset(which),
                                              skip_corrupt=data.skip_corrupt, reader=reader)
        return self._datasets[key]

    def loader(self, dataset: ListDataset, batches, persistent: bool = False) -> torch.utils.data.DataLoader:
        return make_loader(dataset, batches, workers=self.cfg.data.workers, pin_memory=self.device.type == "cuda",
                           persistent=persistent)

    def _image_cache_reader(self, which: str):
        data = self.cfg.data
        side = data.image_cache_side
        entries = self.split.entries(which)
        chosen = self.subset(which)
        paths = [entries[i][0] for i in (range(len(entries)) if chosen is None else chosen)]
        root = self.split.root(which)
        path = image_cache.cache_dir(Path(data.image_cache), self.split.dataset, which, side, self.split.fingerprint, paths)
        # Rank 0 decides: ranks that saw the cache differently would take different collectives.
        if not distributed.broadcast_object(self.dist, image_cache.is_complete(path) if self.dist.is_main else None):
            with self.phase("image_cache"):
                rank, world = self.dist.rank, self.dist.world_size
                bar = tqdm(total=-(-len(paths) // world), desc=f"image cache {which}", unit="img", disable=not self.progress)
                skipped = image_cache.build_part(path, rank, world, make_reader(root, paths), len(paths), side,
                                                 workers=data.workers, skip_corrupt=data.skip_corrupt, progress=bar.update)
                bar.close()
                self.note_skipped(skipped)
                distributed.barrier(self.dist)
                if self.dist.is_main:
                    image_cache.write_meta(path, len(paths), side, world,
                                           {"dataset": self.split.dataset, "split": which, "split_fingerprint": self.split.fingerprint})
                distributed.barrier(self.dist)
        self.image_caches[which] = {
            "path": str(path), "side": side,
            "note": f"images read pre-resized to a shorter side of at most {side} px: training crops larger than that "
                    "lose resolution before their final resize (evaluation at Resize(side) is unchanged)",
        }
        return image_cache.ImageCacheReader(path, paths, root, make_reader(root, paths))

    def note_skipped(self, paths: Sequence[str]) -> None:
        for path in paths:
            if path not in self.skipped and len(self.skipped) < SHOWN_SKIPPED and self.dist.is_main:
                log.warning("skipping unreadable image %s", path)
            self.skipped.add(path)

    def inputs(self, batch: Batch, dataset: ListDataset | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Model input and labels on the device (``dataset`` None: cached inputs, used as they are);
        None when every image of the batch was skipped."""
        raise_failures(batch.skipped)
        self.note_skipped([item.path for item in batch.skipped])
        while True:
            if len(batch.y) == 0:
                return None
            if dataset is None:
                x = batch.x.to(self.device, non_blocking=True)
                break
            try:
                x = dataset.pipeline.batch(batch.x, batch.aux, self.device)
                break
            except UndecodableItems as exc:
                bad = {pos for pos, _ in exc.items}
                if not dataset.skip_corrupt:
                    pos, reason = exc.items[0]
                    raise UnreadableImage(str(dataset.root / dataset.paths[int(batch.index[pos])]), reason) from None
                self.note_skipped([str(dataset.root / dataset.paths[int(batch.index[p])]) for p in bad])
                keep = [i for i in range(len(batch.y)) if i not in bad]
                batch = Batch([batch.x[i] for i in keep], batch.y[keep], batch.index[keep], [batch.aux[i] for i in keep], [])
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, batch.y.to(self.device, non_blocking=True)

    def eval_batches(self, dataset: ListDataset, positions: Sequence[int], desc: str) -> Iterator[tuple[torch.Tensor, Batch]]:
        """``(model input, batch)`` over ``positions`` of ``dataset`` in ``eval.batch_size`` batches,
        evaluation transform; batches whose images were all skipped are left out."""
        bs = self.cfg.eval.batch_size
        batches = [[(i, 0) for i in positions[s:s + bs]] for s in range(0, len(positions), bs)]
        loader = guarded(self.loader(dataset, batches))
        for batch in tqdm(loader, total=len(batches), desc=desc, leave=False, disable=not self.progress, unit="batch"):
            prepared = self.inputs(batch, dataset)
            if prepared is not None:
                yield prepared[0], batch
