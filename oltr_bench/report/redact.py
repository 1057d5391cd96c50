"""What a published site shows of local paths and of the machine a run used.

Run manifests, configs and results record absolute paths (the run and split directories, the
stage-1 run, weight files) and the machine's OS and kernel build. A site is made to be
published, so by default every absolute path is shown relative to a folder that says what it
is: the runs folder a run was found in (``runs/embedded/plain/<run>``) or oltr-bench's work
folder (``oltr_work/splits/embedded``), the outermost that contains it; a path under neither is
shown by its last component (``…/caffe_resnet152.pth``), and the home folder inside other text
as ``~``; the entries shipped with oltr-bench as ``leaderboard/<dataset>/<file>``. ``versions.platform`` (OS, kernel build) is left out; the device (GPU or CPU model,
core count) and package versions stay, as a reader needs them to judge timings and reproduce.
The CSV table names its source files the same way. ``oltr-bench report --local-paths`` shows
everything as recorded, for a site or table kept on one's machine.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any, Iterable

from oltr_bench.paths import work_dir
from oltr_bench.report.entries import shipped_entries_dir

HIDDEN = (("versions", "platform"),)  # manifest keys that describe the machine, not the run
SHORTENED = "…"


class Redactor:
    """Shows paths relative to named anchor folders; ``enabled=False`` shows them unchanged."""

    def __init__(self, anchors: Iterable[tuple[Path, str]] = (), enabled: bool = True):
        self.enabled = enabled
        # Each folder as given and with symlinks resolved (manifests record resolved paths);
        # outermost first, so that a path under both the work folder and its runs folder keeps the longer context.
        forms = {(Path(os.path.abspath(a)), label) for a, label in anchors} | {(Path(a).resolve(), label) for a, label in anchors}
        self.anchors = sorted(forms, key=lambda a: (len(a[0].parts), a[1]))
        home = str(Path.home())
        self.home = home if home not in ("", "/") else None

    def path(self, value: str | os.PathLike) -> str:
        if not self.enabled:
            return str(value)
        path = Path(os.path.abspath(value))
        for anchor, label in self.anchors:
            if path == anchor or anchor in path.parents:
                return PurePath(label, path.relative_to(anchor)).as_posix()
        return f"{SHORTENED}/{path.name}"

    def text(self, text: str) -> str:
        """Free text (a config file, a message): anchored folders by their labels, the home folder as ``~``."""
        if not self.enabled:
            return text
        for anchor, label in sorted(self.anchors, key=lambda a: -len(str(a[0]))):
            text = text.replace(str(anchor), label)
        return text.replace(self.home, "~") if self.home else text

    def config(self, text: str, config: Any) -> str:
        """A config file's text with the absolute paths its values name redacted (longest first)."""
        if not self.enabled:
            return text
        for found in sorted(set(_absolute_paths(config)), key=len, reverse=True):
            text = text.replace(found, self.path(found))
        return self.text(text)

    def value(self, value: Any) -> Any:
        """A manifest or config with every path redacted and the machine keys left out."""
        if not self.enabled:
            return value
        return self._walk(value, ())

    def _walk(self, value: Any, where: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: self._walk(v, (*where, str(k))) for k, v in value.items() if (*where, str(k)) not in HIDDEN}
        if isinstance(value, list):
            return [self._walk(v, where) for v in value]
        if isinstance(value, str):
            return self.path(value) if _is_absolute_path(value) else self.text(value)
        return value


def _is_absolute_path(value: str) -> bool:
    return len(value) > 1 and "\n" not in value and os.path.isabs(value)


def _absolute_paths(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _absolute_paths(v)
    elif isinstance(value, list):
        for v in value:
            yield from _absolute_paths(v)
    elif isinstance(value, str) and _is_absolute_path(value):
        yield value


def site_anchors(runs: Iterable[Any]) -> list[tuple[Path, str]]:
    """The work folder, the shipped entries' folder (``leaderboard``), and the runs folder of
    each run (``<runs>/<dataset>/<method>/<run>``; else the folder that holds the run directory)."""
    env = os.environ.get("OLTR_BENCH_HOME")
    anchors = [(work_dir(), "$OLTR_BENCH_HOME" if env else work_dir().name), (shipped_entries_dir(), "leaderboard")]
    for run in runs:
        run_dir = Path(os.path.abspath(run.run_dir or run.path.parent))
        res = run.results
        laid_out = run_dir.parent.name == str(res.get("method")) and run_dir.parent.parent.name == str(res.get("dataset"))
        folder = run_dir.parents[2] if laid_out and len(run_dir.parents) > 2 else run_dir.parent
        anchors.append((folder, folder.name or str(folder)))
    return anchors
