"""Face identification at MegaFace scale (issue 13): ``evaluate-faces`` wall time and peak memory.

MegaFace Challenge 1 shape: 3,530 FaceScrub probes of 80 identities x 1,000,000 distractors x
512-d (random unit vectors; the cost does not depend on the values). The CLI runs in a child
process, which reports its own peak RSS (VmHWM). ``--ratio`` also runs a plain numpy
implementation (scores per probe, a full sort per probe, all impostor scores sorted for TAR@FAR)
on a 10x smaller problem (the distractors / 10) next to ``evaluate-faces`` on the same file, and
checks that both give the same numbers.

    python bench/bench_faces.py --ratio            # full scale + the 1/10 comparison
    python bench/bench_faces.py --smoke            # seconds: the script works
    python bench/bench_faces.py --device cuda      # on a GPU (bench/gpu.sh)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oltr_bench.metrics.embeddings import write_embeddings  # noqa: E402
from oltr_bench.metrics.faces import FARS  # noqa: E402


def unit(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make(path: Path, probes: int, identities: int, distractors: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ident = np.arange(probes) % identities
    centres = unit(rng, identities, dim)
    p = centres[ident] + 0.9 * unit(rng, probes, dim) / np.sqrt(2)  # genuine pairs close enough to matter
    write_embeddings(path, probe_ids=[f"facescrub/{i}.png" for i in range(probes)], probe_identity=[f"id{i}" for i in ident],
                     probe_features=p, distractor_ids=[f"megaface/{i}.jpg" for i in range(distractors)],
                     distractor_features=unit(rng, distractors, dim),
                     probe_train_count=np.asarray([(0, 1, 5, 50, 500)[i % 5] for i in ident]), meta={"method": "random"})


# The CLI in a child that reports its own peak resident memory (VmHWM of its address space: the
# rusage of a child would also count the pre-exec copy of this process, which holds the arrays).
CHILD = """
import re, sys
from oltr_bench.cli import main
try:
    main(sys.argv[2:], prog_name="oltr-bench")
finally:
    peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
    open(sys.argv[1], "w").write(peak)
"""


def run_cli(path: Path, out: Path, device: str | None) -> tuple[float, float, dict]:
    peak_file = out.with_suffix(".peak")
    cmd = [sys.executable, "-c", CHILD, str(peak_file), "-q", "evaluate-faces", "--embeddings", str(path), "--json", str(out),
           "--no-progress"]
    if device:
        cmd += ["--device", device]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"evaluate-faces failed with status {proc.returncode}")
    return wall, int(peak_file.read_text()) / 2**20, json.loads(out.read_text())


def plain_numpy(path: Path) -> tuple[float, dict]:
    """The straightforward implementation: every score, a full sort per probe, a full sort of all impostors."""
    t = time.perf_counter()
    with np.load(path, allow_pickle=False) as f:
        p, ident, d = f["probe_features"].astype(np.float64), f["probe_identity"], f["distractor_features"].astype(np.float64)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ranks, impostors, genuine = [], np.empty(len(p) * len(d)), []
    for i in range(len(p)):
        s = np.sort(d @ p[i])  # ascending
        impostors[i * len(d):(i + 1) * len(d)] = s
        same = np.flatnonzero(ident == ident[i])
        for j in same[same != i]:
            g = p[i] @ p[j]
            ranks.append(1 + len(s) - np.searchsorted(s, g, side="left"))
            if j > i:
                genuine.append(g)
    ranks, genuine = np.asarray(ranks), np.asarray(genuine)
    impostors.sort()
    n = len(impostors)
    tar = {}
    for far in FARS:
        allowed = int(n * Fraction(far))
        tar[far] = float(np.mean(genuine > impostors[n - 1 - allowed])) if allowed >= 1 else None
    return time.perf_counter() - t, {"rank1": float(np.mean(ranks == 1)), "cmc": [float(np.mean(ranks <= k)) for k in range(1, 11)],
                                     "tar_at_far": tar}


def faiss_top10(path: Path) -> tuple[float, dict]:
    """faiss (if installed): exact inner-product search (IndexFlatIP, float32) for the 10 nearest
    distractors of every probe: what rank <= 10 needs, without the impostor tail of TAR@FAR."""
    import faiss

    t = time.perf_counter()
    with np.load(path, allow_pickle=False) as f:
        p, ident, d = f["probe_features"].astype(np.float32), f["probe_identity"], f["distractor_features"].astype(np.float32)
    faiss.normalize_L2(p)
    faiss.normalize_L2(d)
    index = faiss.IndexFlatIP(d.shape[1])
    index.add(d)
    top, _ = index.search(p, 10)
    ranks = []
    for i in range(len(p)):
        same = np.flatnonzero(ident == ident[i])
        for j in same[same != i]:
            ranks.append(1 + int((top[i] >= p[i] @ p[j]).sum()))
    ranks = np.asarray(ranks)
    return time.perf_counter() - t, {"rank1": float(np.mean(ranks == 1)), "cmc": [float(np.mean(ranks <= k)) for k in range(1, 11)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=3530)
    ap.add_argument("--identities", type=int, default=80)
    ap.add_argument("--distractors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--device", default=None)
    ap.add_argument("--ratio", action="store_true", help="also the plain-numpy comparison at distractors / 10")
    ap.add_argument("--skip-full", action="store_true", help="only the comparison")
    ap.add_argument("--faiss", action="store_true", help="with --ratio: also faiss IndexFlatIP top-10 (float32) on the 1/10 problem")
    ap.add_argument("--smoke", action="store_true", help="a tiny CPU run (the script works)")
    ap.add_argument("--work", type=Path, default=None, help="where the embeddings files go [default: a temporary folder]")
    args = ap.parse_args()
    if args.smoke:
        args.probes, args.identities, args.distractors, args.dim, args.ratio = 200, 20, 5000, 64, True
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_faces_"))
    work.mkdir(parents=True, exist_ok=True)
    report = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "shape": [args.probes, args.identities, args.distractors, args.dim]}
    if not args.skip_full:
        full = work / "full.npz"
        t = time.perf_counter()
        make(full, args.probes, args.identities, args.distractors, args.dim)
        report["make_seconds"] = round(time.perf_counter() - t, 1)
        wall, peak, res = run_cli(full, work / "full.json", args.device)
        report["full"] = {"wall_s": round(wall, 1), "peak_gib": round(peak, 2), "rank1": res["metrics"]["rank1"],
                          "device": res["provenance"]["device"]}
        print(json.dumps(report), flush=True)
        full.unlink()
    if args.ratio:
        small = work / "tenth.npz"
        make(small, args.probes, args.identities, args.distractors // 10, args.dim, seed=1)
        wall, peak, res = run_cli(small, work / "tenth.json", args.device)
        np_wall, ref = plain_numpy(small)
        m = res["metrics"]
        same = abs(m["rank1"] - ref["rank1"]) <= 1e-12 and np.allclose(m["cmc"], ref["cmc"], atol=1e-12, rtol=0) and all(
            (m["tar_at_far"][f] is None) == (ref["tar_at_far"][f] is None) and (ref["tar_at_far"][f] is None or abs(m["tar_at_far"][f] - ref["tar_at_far"][f]) <= 1e-12)
            for f in FARS)
        report["tenth"] = {"evaluate_faces_s": round(wall, 1), "plain_numpy_s": round(np_wall, 1),
                           "ratio": round(np_wall / wall, 2), "same_numbers": bool(same)}
        if args.faiss:
            f_wall, f_res = faiss_top10(small)
            report["tenth"]["faiss_top10_s"] = round(f_wall, 1)
            report["tenth"]["faiss_rank1_minus_exact"] = f_res["rank1"] - m["rank1"]
        small.unlink()
    report["load_after"] = os.getloadavg()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
