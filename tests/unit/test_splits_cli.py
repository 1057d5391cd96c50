"""make-splits and datasets on the command line: names, options, output, atomicity."""

import json
import re

import pytest

from oltr_bench.cli.run import resolve_split_dir
from oltr_bench.splits.profile import released_counts
from tests.splits_trees import imagenet_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ilsvrc2012")
    imagenet_tree(root, train_per_class=4)
    return root


def test_datasets_listing_says_what_is_needed(cli):
    text = cli("datasets").output
    for line in ("imagenet_lt (also: imagenet):", "places_lt (also: places):", "ms1m_lt (also: ms1m):"):
        assert line in text
    assert "ILSVRC-2012 train/<wnid>/" in text and "ILSVRC-2010 val" in text
    assert "Places-Extra69" in text and "train.rec and train.idx" in text and "--official DIR" in text
    # Where the released lists and the source datasets come from (nothing is downloaded).
    assert text.count("from: the released lists of the OLTR paper (with the open list): the OLTR repository's README, "
                      "https://github.com/zhmiao/OpenLongTailRecognition-OLTR") == 2
    assert "https://image-net.org/download.php" in text and "http://places2.csail.mit.edu/download.html" in text
    assert "deepinsight/insightface" in text


def test_make_splits_imagenet_from_the_cli(cli, tree, tmp_path):
    result = cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--alpha", "6", "--max", "3", "--min", "1",
                 "--val-per-class", "1")
    split_dir = tmp_path / "work" / "splits" / "imagenet_lt"
    assert result.stdout.strip().splitlines()[-1] == str(split_dir)
    assert re.search(r"imagenet_lt: 1,000 classes; train [\d,]+, val 1,000, test 1,000; fingerprint [0-9a-f]{16}", result.stderr)
    assert "train shape: 0/0/1000 many/medium/few-shot classes (many > 100, few < 20)" in result.stderr
    assert "no open split" in result.stderr
    # `run --dataset imagenet_lt` (or the alias) finds it.
    assert resolve_split_dir("imagenet_lt", None).path == split_dir
    assert resolve_split_dir("imagenet", None).path == split_dir
    manifest = json.loads((split_dir / "manifest.json").read_text())
    assert manifest["dataset"] == "imagenet_lt" and manifest["source"]["profile"] == {"kind": "pareto", "alpha": 6.0, "max": 3, "min": 1}
    again = cli("make-splits", "--dataset", "imagenet", "--root", str(tree), ok=False)
    assert again.exit_code == 2 and "already exists; pass --overwrite" in again.output


def test_counts_from_a_file(cli, tree, tmp_path):
    counts = tmp_path / "counts.txt"
    counts.write_text(" ".join(str(1 + i % 3) for i in range(1000)))
    cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--counts", str(counts), "--val-per-class", "1")
    manifest = json.loads((tmp_path / "work" / "splits" / "imagenet_lt" / "manifest.json").read_text())
    assert manifest["train_counts"] == [1 + i % 3 for i in range(1000)]
    assert manifest["source"]["profile"]["name"] == str(counts)


@pytest.mark.parametrize("content, message", [
    (" ".join(["2"] * 999), "--counts {file}: found 999 counts; expected 1,000, one per class in label order"),
    (" ".join(["2"] * 4 + ["0"] + ["2"] * 995), "--counts {file}: entry 5 is 0; expected every count to be at least 1"),
])
def test_bad_counts_name_the_option_and_the_file(cli, tree, tmp_path, content, message):
    counts = tmp_path / "counts.txt"
    counts.write_text(content)
    result = cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--counts", str(counts), ok=False)
    assert result.exit_code == 2 and message.format(file=counts) in " ".join(result.output.split())
    inline = cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--counts", "3,2,1", ok=False)
    assert "--counts: found 3 counts; expected 1,000" in inline.output


def test_released_counts_need_big_enough_classes(cli, tree):
    result = cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--counts", "released", ok=False)
    # The released class 0 has 50 training images; the miniature tree has 4 per class.
    assert result.exit_code == 2 and "class 'n01440764'" in result.output and "has 4 images; it needs 70" in result.output
    assert sum(released_counts("imagenet_lt")) == 115_846


def test_interrupt_leaves_nothing_behind(cli, tree, tmp_path, monkeypatch):
    from oltr_bench.splits import format as split_format

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(split_format, "atomic_write_json", interrupted)
    result = cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--alpha", "6", "--max", "3", "--min", "1",
                 "--val-per-class", "1", ok=False)
    assert result.exit_code == 1 and "Aborted!" in result.output  # click's answer to Ctrl-C
    splits = tmp_path / "work" / "splits"
    assert not splits.exists() or list(splits.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (("--dataset", "ms1m", "--official", "x"), "dataset 'ms1m_lt' does not use --official"),
        (("--dataset", "folder", "--root", ".", "--counts", "released"), "--counts released is only known for imagenet_lt and places_lt"),
        (("--dataset", "imagenet"), "needs --root DIR"),
        (("--dataset", "places", "--root", "/does/not/exist"), "does not exist or is not a directory"),
        (("--dataset", "imagenet", "--root", ".", "--counts", "1,x"), "--counts '1,x': expected 'released'"),
        (("--dataset", "imagenet", "--root", ".", "--counts", "5", "--alpha", "2"), "do not combine it with --alpha"),
        # The flags typed are named, never an internal option (--profile) or a rule of another dataset.
        (("--dataset", "ms1m", "--alpha", "2", "--max", "5", "--min", "1"), "dataset 'ms1m_lt' does not use --alpha, --max, --min;"),
        (("--dataset", "ms1m", "--alpha", "2"), "dataset 'ms1m_lt' does not use --alpha;"),
        (("--counts", "5,6"), "dataset 'embedded' does not use --counts;"),
    ],
)
def test_bad_options(cli, args, message):
    result = cli("make-splits", *args, ok=False)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_partial_pareto_options_take_the_protocol_defaults(cli, tree, tmp_path):
    cli("make-splits", "--dataset", "imagenet", "--root", str(tree), "--max", "3", "--min", "1", "--val-per-class", "1")
    manifest = json.loads((tmp_path / "work" / "splits" / "imagenet_lt" / "manifest.json").read_text())
    assert manifest["source"]["profile"] == {"kind": "pareto", "alpha": 6.0, "max": 3, "min": 1}


def test_bad_option_messages_name_only_real_flags(cli):
    output = cli("make-splits", "--dataset", "ms1m", "--max", "5", ok=False).output
    accepted = output.split("it accepts:")[1]
    assert "--profile" not in output and "--max" in output and "--counts" not in accepted
    assert "--train-fraction" in accepted


def test_folder_takes_a_partial_pareto_profile(cli, tmp_path):
    """What --alpha/--max/--min leave open comes from the data-derived defaults."""
    from tests.splits_trees import touch

    for i, n in enumerate([40, 30, 25, 20]):
        for j in range(n):
            touch(tmp_path / "birds" / f"c{i}" / f"{j:03d}.jpg")
    cli("make-splits", "--dataset", "folder", "--root", str(tmp_path / "birds"), "--open-classes", "0",
        "--val-per-class", "2", "--test-per-class", "3", "--min", "3")
    manifest = json.loads((tmp_path / "work" / "splits" / "birds" / "manifest.json").read_text())
    profile = manifest["source"]["profile"]
    assert profile["kind"] == "pareto" and profile["alpha"] == 6.0 and profile["min"] == 3
    assert manifest["source"]["profile_from_data"] == ["max"] and min(manifest["train_counts"]) == 3


def test_a_split_is_found_by_name_in_the_work_folder_wherever_it_is(cli, tmp_path, monkeypatch):
    """`evaluate --splits embedded` works as `run --dataset embedded` does; README paths written for
    ./oltr_work say where the split is when $OLTR_BENCH_HOME moved it."""
    from oltr_bench.metrics.predictions import write_predictions
    from tests.report_fixtures import list_split, random_logits

    split = list_split(tmp_path / "work" / "splits")  # $OLTR_BENCH_HOME/splits/toy_lt
    ids, logits = random_logits(split)
    write_predictions(tmp_path / "p.npz", ids=ids, logits=logits, split_fingerprint=split.fingerprint)
    monkeypatch.chdir(tmp_path)
    by_name = cli("evaluate", "--predictions", "p.npz", "--splits", "toy_lt", "--json", "a.json").stdout
    by_path = cli("evaluate", "--predictions", "p.npz", "--splits", str(split.path), "--json", "b.json").stdout
    assert by_name == by_path and json.loads((tmp_path / "a.json").read_text())["split_fingerprint"] == split.fingerprint
    moved = cli("evaluate", "--predictions", "p.npz", "--splits", "oltr_work/splits/toy_lt", ok=False)
    assert moved.exit_code == 2 and f"$OLTR_BENCH_HOME puts the work folder at {tmp_path / 'work'}, where" in moved.output
    missing = cli("evaluate", "--predictions", "p.npz", "--splits", "places_lt", ok=False)
    assert missing.exit_code == 2 and f"no split directory for dataset 'places_lt' under {tmp_path / 'work' / 'splits'}" in missing.output
    (tmp_path / "work" / "runs").mkdir()
    moved = cli("report", "oltr_work/runs", ok=False)
    assert moved.exit_code == 2 and f"where {tmp_path / 'work' / 'runs'} exists" in moved.output
