"""The Python API: oltr_bench.evaluate_model (any nn.Module on a split) and oltr_bench.load_results
(runs and entries as a DataFrame, the records of the tables); importing oltr_bench stays light."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import transforms as T

import oltr_bench
from oltr_bench.errors import OltrError
from oltr_bench.metrics import compute_metrics
from oltr_bench.metrics.evaluate import evaluate
from oltr_bench.metrics.predictions import load_predictions
from tests.report_fixtures import make_entry, make_run
from tests.tiny_data import make_tiny_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_split(tmp_path_factory.mktemp("api"))


class Colour(nn.Module):
    """Mean colour -> linear classifier over the 6 tiny classes, optionally with a known score."""

    def __init__(self, output: str = "logits"):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 6)
        self.output = output

    def forward(self, x):
        logits = self.fc(x.mean((2, 3)))
        if self.output == "pair":
            return logits, -x.std((1, 2, 3))
        if self.output == "dict":
            return {"logits": logits, "pred": torch.where(logits.max(1).values > 0.2, logits.argmax(1), -1)}
        return logits if self.output == "logits" else "nonsense"


def test_evaluate_model_scores_any_module_as_evaluate_scores_its_predictions(tiny, tmp_path, cli):
    model = Colour().train()
    results = oltr_bench.evaluate_model(model, tiny, transform=T.ToTensor(), device="cpu", method="colour",
                                        predictions=tmp_path / "p.npz")
    assert model.training  # back in the mode it came in
    # The same numbers as `oltr-bench evaluate` of the predictions it wrote ...
    cli("evaluate", "--predictions", str(tmp_path / "p.npz"), "--splits", str(tiny.path), "--json", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == results["metrics"]
    assert results["method"] == "colour" and results["split_fingerprint"] == tiny.fingerprint and results["counts"] == {"known": 18, "open": 6}
    # ... and as the metrics of logits computed image by image.
    ids, labels, logits = [], [], []
    with torch.no_grad():
        for part in ("test", "open"):
            for path, label in tiny.entries(part):
                from PIL import Image

                x = T.ToTensor()(Image.open(tiny.root(part) / path).convert("RGB"))[None]
                logits.append(model.eval()(x)[0].numpy())
                ids.append(path)
                labels.append(label)
    expected = compute_metrics(np.array(labels), tiny.train_counts, logits=np.array(logits))["metrics"]
    assert results["metrics"] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    assert list(load_predictions(tmp_path / "p.npz").ids) == ids


def test_evaluate_model_takes_a_known_score_or_its_own_decision(tiny):
    plain = oltr_bench.evaluate_model(Colour(), tiny, transform=T.ToTensor(), device="cpu")
    pair = oltr_bench.evaluate_model(Colour("pair"), tiny, transform=T.ToTensor(), device="cpu")
    own = oltr_bench.evaluate_model(Colour("dict"), tiny, transform=T.ToTensor(), device="cpu")
    assert pair["metrics"]["top1"] == plain["metrics"]["top1"] and pair["metrics"]["auroc"] != plain["metrics"]["auroc"]
    assert own["open_threshold"] is None and plain["open_threshold"] == 0.1
    with pytest.raises(OltrError, match="the model returned str; expected logits"):
        oltr_bench.evaluate_model(Colour("str"), tiny, transform=T.ToTensor(), device="cpu")
    with pytest.raises(OltrError, match="transform returned Image; expected a torch.Tensor"):
        oltr_bench.evaluate_model(Colour(), tiny, transform=lambda image: image, device="cpu")
    val = oltr_bench.evaluate_model(Colour(), tiny, transform=T.ToTensor(), device="cpu", which="val")
    assert val["evaluation_set"] == "val" and val["counts"] == {"known": 12, "open": 0}


def test_load_results_has_a_row_per_run_and_entry_and_rebuilds_the_table_rows(tmp_path):
    from oltr_bench.report.collect import collect
    from oltr_bench.report.rows import build_rows

    for seed, top1 in ((0, 0.30), (1, 0.34)):
        make_run(tmp_path / "runs", seed=seed, metrics={"top1": top1, "few": 0.1 * (seed + 1), "open_f1": 0.2})
    make_run(tmp_path / "runs", method="dme", metrics={"top1": 0.5})
    make_entry(tmp_path / "lb", "paper", name="Paper", metrics={"top1": 0.4, "open_f1": 0.3}, paper={"title": "T", "year": 2020})
    frame = oltr_bench.load_results([tmp_path / "runs", tmp_path / "lb"])
    assert len(frame) == 4 and list(frame["kind"]).count("run") == 3
    assert {"dataset", "protocol", "open_threshold", "seed", "config", "run_id", "git_sha", "split_fingerprint", "paper_title",
            "top1", "few", "open_f1", "auroc", "ece"} <= set(frame.columns)
    entry = frame[frame.kind == "entry"].iloc[0]
    assert (entry["name"], entry["source"], entry["paper_title"], entry["paper_year"], entry["top1"]) == ("Paper", "reported", "T", 2020, 0.4)
    assert np.isnan(entry["few"]) and frame["top1"].dtype == float
    # The table rows are the runs of one configuration averaged over their seeds.
    runs = frame[frame.kind == "run"]
    means = runs.groupby(["method", "config"])[["top1", "few", "open_f1"]].mean()
    rows = {r.method: r for r in build_rows(collect([tmp_path / "runs"])) if r.kind == "run"}
    for (method, _), values in means.iterrows():
        expected = {k: np.nan if rows[method].metrics.get(k) is None else rows[method].metrics[k] for k in values.index}
        assert values.to_dict() == pytest.approx(expected, nan_ok=True)
    assert sorted(runs[runs.method == "plain"]["seed"]) == [0, 1]


def test_importing_oltr_bench_and_the_cli_stays_light():
    code = ("import sys, oltr_bench, oltr_bench.cli; "
            "print(sorted(m for m in ('torch', 'pandas', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    with pytest.raises(AttributeError, match="has no attribute 'evaluate_models'"):
        oltr_bench.evaluate_models  # noqa: B018 - a typo fails at once
    assert oltr_bench.load_results.__module__ == "oltr_bench.report.frame" and oltr_bench.evaluate_model.__module__ == "oltr_bench.api"
