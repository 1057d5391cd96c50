"""``oltr-bench embed`` end to end on the embedded benchmark (the embedded analogue of MS1M-LT):
quick plain and DME runs, the heldout lists, the DME meta-embedding, resumable parts, devkit
feature files equal to the embeddings, evaluate-faces and the report's face table and CMC plot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from oltr_bench.formats import megaface
from oltr_bench.metrics.embeddings import EmbeddingsFile


def _run(cli, split, out, method):
    text = cli("run", "--method", method, "--splits", str(split.path), "--out", str(out), "--quick", "--no-progress").output
    return Path(text.strip().splitlines()[-1])


def test_embed_evaluate_and_report(embedded_split, cli, tmp_path):
    runs = tmp_path / "runs"
    plain = _run(cli, embedded_split, runs, "plain")
    out = tmp_path / "emb.npz"
    devkit = tmp_path / "devkit"
    cli("embed", str(plain), "--out", str(out), "--devkit-dir", str(devkit), "--chunk", "1000", "--no-progress")
    with EmbeddingsFile(out) as emb:
        meta = emb.meta
        assert meta["embedding"] == "penultimate" and meta["protocol"] == "heldout" and meta["params"]["seed"] == 0
        assert len(emb.probe_ids) == 3600 + 360 and emb.num_distractors == 360
        assert set(emb.probe_train_count[:3600]) <= set(embedded_split.train_counts) and (emb.probe_train_count[3600:] == 0).all()
        probes = emb.probe_features.copy()
        distractors = np.concatenate(list(emb.distractor_blocks(100, emb.num_distractors)))
        ids = emb.probe_ids[[0, 3700]].tolist()
    assert not (tmp_path / "emb.npz.parts").exists()
    for i, pid in zip((0, 3700), ids):  # devkit files read back equal the embeddings
        assert np.array_equal(megaface.read_feature(devkit / "probes" / (pid + megaface.SUFFIX)), probes[i])
    # torchrun: two processes, each its share of the chunks, the same file
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "oltr_bench", "embed",
           str(plain), "--out", str(tmp_path / "ddp.npz"), "--chunk", "1000", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    with EmbeddingsFile(tmp_path / "ddp.npz") as emb:
        assert np.array_equal(emb.probe_features, probes)
    # resume: an embedding that stopped before the file was written keeps its parts, and a rerun
    # embeds only the chunks that are missing (here the devkit files cannot be written: it fails last)
    again = tmp_path / "again.npz"
    (tmp_path / "a_file").write_text("")
    failed = cli("embed", str(plain), "--out", str(again), "--chunk", "1000", "--devkit-dir", str(tmp_path / "a_file" / "dk"),
                 "--no-progress", ok=False)
    assert failed.exit_code == 2 and "not a folder" in failed.output, failed.output
    parts = tmp_path / "again.npz.parts"
    first = parts / "probe-000000.npy"
    np.save(first, np.full_like(np.load(first), 7.0))  # a part already there is used as it is
    (parts / "probe-000001.npy").unlink()  # a missing part is embedded again
    cli("embed", str(plain), "--out", str(again), "--chunk", "1000", "--no-progress")
    with EmbeddingsFile(again) as emb:
        assert (emb.probe_features[:1000] == 7).all() and np.array_equal(emb.probe_features[1000:], probes[1000:])
        assert np.array_equal(np.concatenate(list(emb.distractor_blocks(1000, emb.num_distractors))), distractors)
    (tmp_path / "other.npz.parts").mkdir()
    (tmp_path / "other.npz.parts" / "plan.json").write_text("{}")
    assert "another embedding" in cli("embed", str(plain), "--out", str(tmp_path / "other.npz"), ok=False).output

    dme = _run(cli, embedded_split, runs, "dme")
    cli("embed", str(dme), "--no-progress")
    with EmbeddingsFile(dme / "embeddings" / "heldout.npz") as emb:
        assert emb.meta["embedding"] == "meta_embedding" and emb.meta["method"] == "dme"
    cli("evaluate-faces", "--embeddings", str(dme / "embeddings" / "heldout.npz"), "--json", str(dme / "face_results.json"),
        "--no-progress")
    results = json.loads((dme / "face_results.json").read_text())
    assert results["protocol"] == "heldout" and results["distractors"] == 360 and len(results["metrics"]["cmc"]) == 10
    report = cli("report", str(runs), "--no-leaderboard").output
    assert "face identification (heldout" in report and "meta_embedding" in report
    site = cli("report", str(runs), "--html", str(tmp_path / "site"), "--no-plots").output
    page = (tmp_path / "site" / "embedded" / "index.html").read_text()
    assert 'class="cmc-plot"' in page and "meta_embedding" in page and "site:" in site
