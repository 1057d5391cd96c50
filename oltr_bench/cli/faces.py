"""``oltr-bench evaluate-faces`` and ``oltr-bench embed``: face identification, the MegaFace way (SPEC.md §6)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)

FACE_RESULTS = "face_results.json"


def summary(results: dict) -> str:
    """Rank-1 by group, CMC and TAR@FAR in three lines (– = undefined)."""
    from oltr_bench.protocols import FACE_GROUPS

    m = results["metrics"]

    def value(v) -> str:
        return "–" if v is None else f"{v:.4f}"

    groups = "  ".join(f"{g} {value(m.get(f'rank1_{g}'))}" for g in FACE_GROUPS)
    cmc = " ".join(value(v) for v in m.get("cmc") or [])
    tar = "  ".join(f"@{far} {value(v)}" for far, v in (m.get("tar_at_far") or {}).items())
    return (f"rank-1 {value(m.get('rank1'))} at {results['distractors']:,} distractors ({results['counts']['pairs']:,} pairs)  "
            f"by group: {groups}\nCMC@1..10: {cmc}\nTAR@FAR: {tar}")


@click.command("evaluate-faces")
@click.option("--embeddings", required=True, type=click.Path(path_type=Path), help="Embeddings .npz (SPEC.md §6).")
@click.option("--distractors", type=int, default=None, help="Use the first N distractors [default: all].")
@click.option("--subset", type=click.Path(path_type=Path), default=None,
              help="Use the distractors of a named subset list instead: a MegaFace template list "
                   "(megaface_features_list.json_<size>_<set>) or a text file of distractor ids.")
@click.option("--method", default=None, help="Method name recorded in the results (default: the file's meta 'method').")
@click.option("--device", default=None, help="cpu or cuda [default: a GPU when there is one].")
@click.option("--block", "block_rows", type=int, default=None, help="Distractors per matrix product [default: 2^25 / probes].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=Path(FACE_RESULTS), show_default=True,
              help="Where to write the results.")
def evaluate_faces_cmd(embeddings, distractors, subset, method, device, block_rows, no_progress, json_out) -> None:
    """Validate an embeddings file and score face identification the MegaFace way.

    Each probe of an identity with two or more probe images is matched against the distractors
    plus one other image of its identity (every ordered pair); rank-1 over all pairs and per shot
    group of the probe identity (many > 100, medium 20-100, few 2-19, one 1, zero 0 training
    images), CMC@1..10, and TAR at FAR 1e-6..1e-3. Exact: the distractors stream in blocks through
    one float64 matrix product each (on the GPU when there is one), memory bounded by the probes
    and one block. The file is read without unpickling; ids must be unique, features finite, and no
    probe (or, with distractor_identity, probe identity) among the distractors.

    \b
    Example:
      oltr-bench evaluate-faces --embeddings emb.npz
      oltr-bench evaluate-faces --embeddings emb.npz --distractors 10000 --json r.json
    """
    import numpy as np

    from oltr_bench.errors import OltrError
    from oltr_bench.formats.megaface import read_list
    from oltr_bench.metrics.faces import evaluate_embeddings
    from oltr_bench.utils.io import atomic_write_json

    if subset is not None and distractors is not None:
        raise OltrError("give --distractors or --subset, not both")
    if block_rows is not None and block_rows < 1:
        raise OltrError(f"--block {block_rows}: expected a positive number of distractors per block")
    ids = np.asarray(read_list(subset), dtype=np.str_) if subset is not None else None
    results = evaluate_embeddings(embeddings, distractors=distractors, subset=ids, subset_name=subset.name if subset else None,
                                  method=method, device=device, block_rows=block_rows, progress=not no_progress)
    atomic_write_json(json_out, results)
    click.echo(summary(results))
    click.echo(f"face results: {json_out}")


COMMANDS = (evaluate_faces_cmd,)
