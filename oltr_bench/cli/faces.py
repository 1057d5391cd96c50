"""``oltr-bench evaluate-faces`` and ``oltr-bench embed``: face identification, the MegaFace way (SPEC.md §6)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)

from oltr_bench.formats.rundir import RunDir

FACE_RESULTS = RunDir.FACE_RESULTS


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


def identification_line(results: dict) -> str:
    """One line: method, protocol, rank-1 overall and by group, distractors."""
    from oltr_bench.protocols import FACE_GROUPS

    m = results["metrics"]

    def pct(v) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    groups = ", ".join(f"{g} {pct(m.get(f'rank1_{g}'))}" for g in FACE_GROUPS if m.get(f"rank1_{g}") is not None)
    return (f"identification ({results.get('protocol') or 'faces'}, {results['dataset']}): {results.get('method')} rank-1 "
            f"{pct(m.get('rank1'))}% ({groups}) at {results['distractors']:,} distractors, "
            f"embedding {results['provenance'].get('embedding')}")


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


@click.command("embed")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--protocol", type=click.Choice(["heldout", "megaface"]), default="heldout", show_default=True,
              help="heldout: probes and distractors from the run's split (test images of known identities, held-out "
                   "identities as zero-shot probes and distractors); megaface: the user's insightface MegaFace pack.")
@click.option("--seed", type=int, default=None, help="heldout: which held-out identities are probes [default: the split's seed].")
@click.option("--megaface", "pack", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="megaface: the insightface MegaFace test pack folder (detected there; never downloaded).")
@click.option("--size", type=int, default=None, help="megaface: the distractor list size [default: the largest in the pack].")
@click.option("--noise-lists", is_flag=True, help="megaface: leave out the images of insightface's facescrub_noises.txt / "
              "megaface_noises.txt (recorded in the results).")
@click.option("--probe-counts", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="megaface: '<identity> <count>' lines, the MS1M-LT training images of each FaceScrub identity (shot groups).")
@click.option("--layer", type=click.Choice(["auto", "penultimate"]), default="auto", show_default=True,
              help="auto: the method's own embedding (DME: the meta-embedding), else the penultimate features.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The embeddings .npz [default: RUN/embeddings/<protocol>.npz].")
@click.option("--devkit-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write MegaFace devkit feature files (16-byte header + float32) under DIR/probes and DIR/distractors.")
@click.option("--batch-size", type=int, default=None, help="Images per forward pass [default: the run's eval.batch_size].")
@click.option("--chunk", type=int, default=8192, show_default=True, help="Images per resumable part.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--allow-unsafe-checkpoints", is_flag=True, help="Read a format-1 checkpoint (weights-only, numpy arrays allowed).")
def embed_cmd(run_dir, protocol, seed, pack, size, noise_lists, probe_counts, layer, out, devkit_dir, batch_size, chunk, device,
              no_progress, allow_unsafe_checkpoints) -> None:
    """Write the embeddings file (SPEC.md §6) of a finished run for face identification.

    RUN_DIR is the run directory (its checkpoints/best.pt is the model); it is an argument, not an
    option, so that torchrun, whose own --run-path an option --run would abbreviate, passes it on.

    Batched through the engine's inference loop with the run's evaluation transform and precision;
    resumable (parts are kept in OUT.parts until the file is written: rerun the same command);
    under torchrun each process embeds its share. Score the file with evaluate-faces.

    \b
    Examples:
      oltr-bench embed oltr_work/runs/ms1m_lt/dme/RUN
      oltr-bench embed RUN --protocol megaface --megaface /data/megaface_testpack --devkit-dir feats/
      torchrun --nproc_per_node 8 -m oltr_bench embed RUN --protocol megaface --megaface /data/pack
    """
    from oltr_bench.engine import distributed
    from oltr_bench.engine.embed import embed_run
    from oltr_bench.errors import OltrError
    from oltr_bench.splits.faces import heldout, megaface_lists
    from oltr_bench.splits.locate import find_split

    if chunk < 1:
        raise OltrError(f"--chunk {chunk}: expected a positive number of images")
    if protocol == "megaface":
        if pack is None:
            raise OltrError("--protocol megaface needs --megaface DIR, the insightface MegaFace test pack (oltr-bench never downloads it)")
        lists = megaface_lists(pack, size, noise_lists, probe_counts)
    else:
        if pack is not None or noise_lists or probe_counts is not None or size is not None:
            raise OltrError("--megaface, --size, --noise-lists and --probe-counts belong to --protocol megaface")
        manifest = RunDir(run_dir).read_manifest()
        if manifest is None:
            raise OltrError(f"{run_dir}: no manifest.json; expected a run directory written by oltr-bench run")
        lists = heldout(find_split(manifest.get("split_dir") or manifest.get("dataset")), seed)
    out = out or Path(run_dir) / "embeddings" / f"{protocol}.npz"
    dist = distributed.setup(device)
    try:
        written = embed_run(run_dir, lists, out, layer=layer, dist=dist, batch_size=batch_size, chunk=chunk,
                            devkit_dir=devkit_dir, progress=not no_progress, allow_unsafe_checkpoints=allow_unsafe_checkpoints)
    finally:
        distributed.teardown(dist)
    if written is not None:
        click.echo(f"embeddings: {written}  ({len(lists.probes):,} probes, {len(lists.distractors):,} distractors)")


COMMANDS = (evaluate_faces_cmd, embed_cmd)
