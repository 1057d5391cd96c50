"""The leaderboard site: pages, plots (drawn, skipped with a reason, reused), escaping, safe output folder."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from oltr_bench.errors import OltrError
from oltr_bench.report.collect import collect
from oltr_bench.report.rows import build_rows
from oltr_bench.report.site import MARKER, build_site
from tests.report_fixtures import make_entry, make_run


class Links(HTMLParser):
    """Every href/src, every inline script body, and the page text."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.srcs, self.inline_scripts, self.text = [], [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "href" in attrs:
            self.hrefs.append(attrs["href"])
        if "src" in attrs:
            self.srcs.append(attrs["src"])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)
        self.text.append(data)


def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture
def site_inputs(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path / "runs", seed=seed, metrics={"top1": 0.5, "many": 0.7, "medium": 0.5, "few": 0.2,
                                                        "open_many": 0.6, "open_medium": 0.4, "open_few": 0.1,
                                                        "open_f1": 0.4, "auroc": 0.8, "oscr": 0.3, "ece": 0.1})
    make_run(tmp_path / "runs", method="old", with_curves=False, with_train_counts=False)
    make_entry(tmp_path / "lb", "paper", name="Plain (paper)")
    make_entry(tmp_path / "lb", "evil", name="<script>alert(1)</script>", method="evil",
               notes='<img src=x onerror="alert(2)"> & </pre>', code_url="https://example.org/code?a=1&b=<2>")
    make_entry(tmp_path / "lb", "imnet", name="On ImageNet-LT", dataset="imagenet_lt", backbone="resnet152")
    return tmp_path


def build(site_inputs, out, **kwargs):
    rows = build_rows(collect([site_inputs / "runs"], leaderboard_dirs=[site_inputs / "lb"]))
    return rows, build_site(rows, out, **kwargs)


def test_pages_and_plots(site_inputs, tmp_path):
    rows, summary = build(site_inputs, tmp_path / "site")
    site = tmp_path / "site"
    assert summary.index == site / "index.html" and (site / MARKER).is_file()
    assert (site / "static" / "leaderboard.js").is_file() and (site / "static" / "style.css").is_file()
    assert sorted(p.name for p in site.iterdir() if p.is_dir()) == ["imagenet_lt", "static", "toy_lt"]
    assert summary.pages == 2 + 2 + len(rows)  # index, compare, 2 dataset pages, one page per row
    plain = next(r for r in rows if r.name == "plain")
    page = site / "toy_lt" / plain.slug
    kinds = sorted(p.name.rsplit("-", 1)[0] for p in page.glob("*.svg"))
    assert kinds == ["open-f1", "oscr", "per-class", "reliability", "roc", "shot-groups"]
    html = (page / "index.html").read_text()
    for svg in page.glob("*.svg"):
        assert f'src="{svg.name}"' in html
        assert svg.read_text().lstrip().startswith("<?xml")
    assert "seed 0" in html and "seed 1" in html and "Resolved config (config.yaml)" in html and "Run manifest" in html
    # Results from an older oltr-bench: the plots they cannot support are skipped with a reason.
    old = next(r for r in rows if r.name == "old")
    old_html = (site / "toy_lt" / old.slug / "index.html").read_text()
    assert "Per-class accuracy against training count: not drawn — results.json has no train_counts" in old_html
    assert "ROC (known = positive): not drawn — results.json has no curves.roc" in old_html
    # Every link of every page stays inside the site or is an http(s) URL, and no page has inline script.
    for html_file in site.rglob("*.html"):
        links = parse(html_file)
        assert not links.inline_scripts, html_file
        for target in links.hrefs + links.srcs:
            if target.startswith("https://"):
                continue
            path, _, fragment = target.partition("#")
            assert (html_file.parent / path).resolve().is_file() if path else fragment, (html_file, target)
            if fragment:
                page = (html_file.parent / path) if path else html_file
                assert f'id="{fragment}"' in page.read_text(), (html_file, target)


def test_dataset_page_has_filters_search_groups_and_sortable_columns(site_inputs, tmp_path):
    build(site_inputs, tmp_path / "site")
    html = (tmp_path / "site" / "toy_lt" / "index.html").read_text()
    for key in ("backbone", "pretraining", "extra", "source"):
        assert f'<select data-filter="{key}">' in html
    assert '<input type="search" data-search' in html
    assert '<option value="reported">reported</option>' in html and '<option value="reproduced">reproduced</option>' in html
    for group in ("closed", "open", "detection", "calibration"):
        assert f'<input type="checkbox" data-group="{group}" checked>' in html
    # One table per protocol (all rows here are under oltr); metric columns with a value somewhere,
    # grouped, each sorting best first: ECE lowest first.
    assert html.count('<table class="leaderboard sortable"') == 1
    keys = [part.split('"')[0] for part in html.split('data-key="')[1:]]
    assert keys == ["many", "medium", "few", "top1", "open_f1", "open_many", "open_medium", "open_few", "auroc", "oscr", "ece"]
    assert '<th class="num g-calibration" data-type="num" data-key="ece" data-better="lower"' in html
    assert '<th class="num g-closed" data-type="num" data-key="many" data-better="higher"' in html
    assert '<th class="rank" data-type="num" data-better="lower"' in html and 'aria-sort="ascending"><button type="button">#</button>' in html
    assert 'data-sort="0.4"' in html  # the runs' open F, sortable as a number
    # Percent by default, the fraction alongside for the switch.
    assert '<span class="v" data-pct="40.0" data-frac="0.400">40.0</span>' in html


def test_rows_are_ranked_by_open_f_then_few_shot_accuracy(tmp_path):
    from oltr_bench.report.rows import ranked

    for slug, metrics in {"a": {"open_f1": 0.3, "few": 0.1}, "b": {"open_f1": 0.5, "few": 0.1}, "c": {"open_f1": 0.3, "few": 0.2},
                          "d": {"few": 0.4}, "e": {"few": 0.05}, "f": {"top1": 0.9}, "g": {"open_f1": 0.3, "few": 0.2}}.items():
        make_entry(tmp_path / "lb", slug, name=slug.upper(), metrics=metrics)
    make_run(tmp_path / "runs", partial=True, metrics={"open_f1": 0.9, "few": 0.9})  # a --quick run: never ranked
    rows = build_rows(collect([tmp_path / "runs"], leaderboard_dirs=[tmp_path / "lb"]))
    order = [(rank, row.display_name) for rank, row in ranked(rows)]
    assert order == [(1, "B"), (2, "C"), (2, "G"), (4, "A"), (5, "D"), (6, "E"), (None, "F"), (None, "plain (quick)")]
    build_site(rows, tmp_path / "site", plots=False)
    html = (tmp_path / "site" / "toy_lt" / "index.html").read_text()
    assert [html.index(f">{name}</a>") for _, name in order] == sorted(html.index(f">{name}</a>") for _, name in order)
    assert '<td class="rank num" data-sort="2.0">2</td>' in html and '<td class="rank num" data-sort="">–</td>' in html


def test_every_string_is_escaped_and_only_http_urls_are_links(site_inputs, tmp_path):
    rows, _ = build(site_inputs, tmp_path / "site")
    evil = next(r for r in rows if r.method == "evil")
    for page in (tmp_path / "site" / "toy_lt" / "index.html", tmp_path / "site" / "toy_lt" / evil.slug / "index.html"):
        html = page.read_text()
        assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<img src=x" not in html
        assert "<script>alert(1)</script>" in "".join(parse(page).text)  # shown as text
    detail = (tmp_path / "site" / "toy_lt" / evil.slug / "index.html").read_text()
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; &lt;/pre&gt;" in detail
    assert 'href="https://example.org/code?a=1&amp;b=&lt;2&gt;"' in detail
    # A URL that is not http(s) is shown as text, never as a link.
    evil.paper = {"title": "Click me", "url": "javascript:alert(3)"}
    evil.code_url = "data:text/html,<script>alert(4)</script>"
    build_site(rows, tmp_path / "site2", plots=False)
    detail = (tmp_path / "site2" / "toy_lt" / evil.slug / "index.html").read_text()
    assert not [h for h in parse(tmp_path / "site2" / "toy_lt" / evil.slug / "index.html").hrefs if not h.startswith(("../", "https://"))]
    assert "Click me (javascript:alert(3))" in detail and "&lt;script&gt;alert(4)" in detail


def test_config_values_are_escaped(tmp_path):
    run = make_run(tmp_path / "runs")
    config = (run / "config.yaml").read_text() + "notes: </pre><script>alert(5)</script>\n"
    (run / "config.yaml").write_text(config)
    rows = build_rows(collect([tmp_path / "runs"]))
    build_site(rows, tmp_path / "site", plots=False)
    html = (tmp_path / "site" / "toy_lt" / rows[0].slug / "index.html").read_text()
    assert "&lt;/pre&gt;&lt;script&gt;alert(5)" in html and "<script>alert(5)" not in html
    assert "the site was built with --no-plots" in html


def test_rebuild_reuses_unchanged_plots(site_inputs, tmp_path):
    _, first = build(site_inputs, tmp_path / "site")
    total = first.plots_drawn + first.plots_reused
    assert first.plots_drawn >= 8 and total == len(list((tmp_path / "site").rglob("*.svg")))
    _, second = build(site_inputs, tmp_path / "site")
    assert second.plots_drawn == 0 and second.plots_reused == total
    # A changed number redraws that plot only.
    entry = site_inputs / "lb" / "toy_lt" / "paper.json"
    data = json.loads(entry.read_text())
    data["metrics"]["many"] = 0.61
    entry.write_text(json.dumps(data))
    _, third = build(site_inputs, tmp_path / "site")
    assert third.plots_drawn == 1 and third.plots_reused == total - 1


def test_never_overwrites_a_folder_that_is_not_a_site(site_inputs, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(OltrError, match="not empty and is not an oltr-bench site"):
        build(site_inputs, out)
    assert (out / "thesis.tex").read_text() == "precious" and len(list(out.iterdir())) == 1
    (tmp_path / "empty").mkdir()
    build(site_inputs, tmp_path / "empty", plots=False)
    assert (tmp_path / "empty" / "index.html").is_file()


def test_a_failed_build_leaves_the_previous_site(site_inputs, tmp_path, monkeypatch):
    build(site_inputs, tmp_path / "site", plots=False)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "site").rglob("*"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("oltr_bench.report.site._detail_page", boom)
    with pytest.raises(RuntimeError):
        build(site_inputs, tmp_path / "site", plots=False)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "site").rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []


def test_report_html_cli(cli, site_inputs, tmp_path):
    out = cli("report", str(site_inputs / "runs"), "--html", str(tmp_path / "site"), "--no-plots").output
    assert out.strip().splitlines()[-1] == f"site: {(tmp_path / 'site' / 'index.html').resolve()}"
    index = (tmp_path / "site" / "index.html").read_text()
    assert "imagenet_lt/index.html" in index and "places_lt/index.html" in index  # the shipped entries
    compare = (tmp_path / "site" / "compare.html").read_text()
    assert "Plain model (OLTR paper)" not in compare  # toy_lt runs have no published counterpart


def test_names_from_results_never_leave_the_site_folder(tmp_path):
    run = make_run(tmp_path / "runs")
    results = json.loads((run / "results.json").read_text())
    results["dataset"], results["method"] = "../../../escaped", "../../m"
    (run / "results.json").write_text(json.dumps(results))
    rows = build_rows(collect([tmp_path / "runs"]))
    build_site(rows, tmp_path / "out" / "site", plots=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["site"]
    (page,) = (tmp_path / "out" / "site").glob("*/*/index.html")
    assert page.parent.parent.name == "escaped" and page.parent.name.startswith("run-m-")
    assert "../../../escaped" in "".join(parse(tmp_path / "out" / "site" / "index.html").text)


# -- the methods overview ---------------------------------------------------------------------------

def test_methods_overview_puts_published_and_our_results_side_by_side(tmp_path):
    from oltr_bench.report.overview import methods_overview

    make_run(tmp_path / "runs", method="plain", metrics={"top1": 0.5, "few": 0.2, "open_f1": 0.4})
    make_run(tmp_path / "runs", method="plain", lr=0.01, metrics={"top1": 0.9, "few": 0.9, "open_f1": 0.9})  # a second config
    make_run(tmp_path / "runs", method="dme", seed=0, metrics={"top1": 0.45, "few": 0.3, "open_f1": 0.5})
    make_run(tmp_path / "runs", method="dme", seed=1, metrics={"top1": 0.55, "few": 0.3, "open_f1": 0.5})
    make_run(tmp_path / "runs", method="dme", seed=7, partial=True, metrics={"top1": 0.99, "open_f1": 0.99})  # --quick
    lb = tmp_path / "lb"
    make_entry(lb, "in-plain", dataset="imagenet_lt", protocol="oltr-2019", method="plain", metrics={"top1": 0.209, "few": 0.004, "open_f1": 0.295})
    make_entry(lb, "in-dme", dataset="imagenet_lt", protocol="oltr-2019", method="dme", metrics={"top1": 0.356, "few": 0.185, "open_f1": 0.474})
    make_entry(lb, "in-repo", dataset="imagenet_lt", protocol="oltr-code", method="dme", metrics={"open_few": 0.175, "open_f1": 0.446})
    make_entry(lb, "toy-plain", method="plain", metrics={"top1": 0.4, "few": 0.25, "open_f1": 0.3})  # toy_lt, oltr, τ 0.1
    make_entry(lb, "toy-dme", method="dme", open_threshold=0.2, metrics={"few": 0.1, "open_f1": 0.3})
    make_entry(lb, "toy-2019", method="dme", protocol="oltr-2019", metrics={"few": 0.2})
    make_entry(lb, "ms1m", dataset="ms1m_lt", method="dme", metrics={}, other_metrics={"value (metric undetermined)": 0.745})
    overview = methods_overview(build_rows(collect([tmp_path / "runs"], leaderboard_dirs=[lb])))
    groups = [(g.dataset, g.side, g.protocol, [k for k, _ in g.keys], [k for k, _ in g.gap_keys], g.other) for g in overview.groups]
    assert groups == [  # our datasets first; within a dataset ours, then published by protocol
        ("toy_lt", "ours", "oltr", ["open_f1", "few", "top1"], ["open_f1", "few", "top1"], False),
        ("toy_lt", "published", "oltr", ["open_f1", "few", "top1"], [], False),
        ("toy_lt", "published", "oltr-2019", ["few"], [], False),
        ("imagenet_lt", "published", "oltr-2019", ["open_f1", "few", "top1"], [], False),
        ("imagenet_lt", "published", "oltr-code", ["open_f1", "open_few"], [], False),
        ("ms1m_lt", "published", "oltr", [], [], True),
    ]
    assert overview.methods == ["dme", "plain"] and overview.unpublished == []
    dme, plain = overview.cell("dme", 0), overview.cell("plain", 0)
    # dme: the two seeds (not the --quick run, whatever its numbers); plain: one of two configurations, chosen by name.
    assert dme.row.n_seeds == 2 and dme.row.metrics["top1"] == pytest.approx(0.5) and dme.more == 1
    assert plain.more == 1 and plain.row.metrics["top1"] == 0.5
    # Δ only within toy_lt under oltr; open F only at the same τ (the published dme used τ 0.2).
    assert plain.gaps == pytest.approx({"open_f1": 0.1, "few": -0.05, "top1": 0.1})
    assert dme.gaps == pytest.approx({"few": 0.2})
    assert overview.cell("dme", 3).row.metrics["open_f1"] == 0.474 and overview.cell("dme", 3).gaps == {}
    assert overview.cell("plain", 4) is None and overview.cell("dme", 5).row.other_metrics


def test_methods_overview_has_every_shot_group(tmp_path):
    from oltr_bench.report.overview import methods_overview

    make_entry(tmp_path / "lb", "paper", method="dme", metrics={"many": 0.43, "medium": 0.35, "few": 0.19, "top1": 0.36, "open_f1": 0.47})
    make_entry(tmp_path / "lb", "repo", method="dme", protocol="oltr-code",
               metrics={"open_many": 0.44, "open_medium": 0.35, "open_few": 0.18, "open_f1": 0.45})
    overview = methods_overview(build_rows(collect([], leaderboard_dirs=[tmp_path / "lb"])))
    assert [[k for k, _ in g.keys] for g in overview.groups] == [
        ["open_f1", "many", "medium", "few", "top1"], ["open_f1", "open_many", "open_medium", "open_few"]]


def test_index_shows_the_methods_overview(tmp_path):
    make_run(tmp_path / "runs", method="plain", dataset="embedded", metrics={"top1": 0.5, "few": 0.2, "open_f1": 0.4})
    make_entry(tmp_path / "lb", "in-plain", dataset="imagenet_lt", protocol="oltr-2019", method="plain", name="Plain (paper)",
               metrics={"top1": 0.209, "few": 0.004, "open_f1": 0.295})
    rows = build_rows(collect([tmp_path / "runs"], leaderboard_dirs=[tmp_path / "lb"]))
    build_site(rows, tmp_path / "site", plots=False)
    index = tmp_path / "site" / "index.html"
    html = index.read_text()
    assert 'id="methods"' in html and 'href="#methods"' in html
    assert '<th class="group" colspan="3">embedded · ours<br><code>oltr</code></th>' in html
    assert '<th class="group" colspan="3">imagenet_lt · published<br><code>oltr-2019</code></th>' in html
    # The embedded benchmark is said to be what it is, and not ImageNet-LT.
    assert ("<code>embedded</code> (Rendered-glyph open long-tailed benchmark generated locally (no data, no network)) "
            "has no published\nresults on this site and is not imagenet_lt:") in html
    (plain_row,) = [r for r in html.split("<tr>") if 'data-sort="plain"' in r]
    run = next(r for r in rows if r.kind == "run")
    assert f'href="embedded/{run.slug}/index.html"' in plain_row and 'href="imagenet_lt/entry-in-plain/index.html"' in plain_row
    # Percent, as papers print them, with the fraction for the switch.
    assert 'data-pct="40.0" data-frac="0.400">40.0</span></a>' in plain_row and 'data-frac="0.295">29.5</span></a>' in plain_row
    compare = (tmp_path / "site" / "compare.html").read_text()
    assert "No method has both a reported and a reproduced result on the same dataset yet" in compare and "index.html#methods" in compare


def test_demo_points_to_the_overview_of_its_runs_and_the_papers(cli, embedded_split, tmp_path):
    (tmp_path / "work" / "splits").mkdir(parents=True)
    (tmp_path / "work" / "splits" / "embedded").symlink_to(embedded_split.path)
    out = cli("demo", "--quick", "--method", "plain").output
    assert "identification (heldout, embedded): plain rank-1 " in out and "at 360 distractors, embedding penultimate" in out
    index = tmp_path / "work" / "report" / "site" / "index.html"
    assert 'class="cmc-plot"' in (index.parent / "embedded" / "index.html").read_text()
    report = (tmp_path / "work" / "report" / "report.md").read_text()
    assert "face identification (heldout" in report and "| standard | penultimate | 360 |" in report  # the run's profile
    assert f"methods overview, these runs next to the published OLTR results: {index.resolve().as_uri()}#methods" in out
    html = index.read_text()
    (plain_row,) = [r for r in html.split("<tr>") if 'data-sort="plain"' in r]
    assert 'href="embedded/run-plain-' in plain_row and "badge quick" in plain_row
    assert 'href="imagenet_lt/entry-oltr2019-plain/index.html"' in plain_row and 'data-frac="0.295">29.5</span></a>' in plain_row
    assert 'href="places_lt/entry-oltr2019-plain/index.html"' in plain_row and 'data-frac="0.366">36.6</span></a>' in plain_row


# -- publishing: local paths and machine details --------------------------------------------------

def test_pages_show_no_local_paths_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OLTR_BENCH_HOME", str(tmp_path / "home" / "work"))
    stage1 = make_run(tmp_path / "home" / "exp" / "runs", method="plain")
    run = make_run(tmp_path / "home" / "exp" / "runs", method="dme", stage1_run=stage1)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(split_dir=str(tmp_path / "home" / "work" / "splits" / "toy_lt"), versions={"oltr_bench": "0.1.0", "platform": "Linux-6.1.0-hostbuild"},
                    device={"type": "cuda", "name": "NVIDIA H100"}, note=f"features cached in {tmp_path}/home/cache",
                    skipped=[str(tmp_path / "data" / "img1.jpg")])
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("weights: null", f"weights: {tmp_path}/data/caffe_resnet152.pth"))
    rows = build_rows(collect([tmp_path / "home" / "exp" / "runs"]))
    dme = next(r for r in rows if r.method == "dme")
    build_site(rows, tmp_path / "site", plots=False)
    html = (tmp_path / "site" / "toy_lt" / dme.slug / "index.html").read_text()
    assert str(tmp_path) not in html and "hostbuild" not in html
    assert f'<p class="path">runs/toy_lt/dme/{run.name}</p>' in html
    assert f"&#34;stage1_run&#34;: &#34;runs/toy_lt/plain/{stage1.name}&#34;" in html
    assert "&#34;split_dir&#34;: &#34;$OLTR_BENCH_HOME/splits/toy_lt&#34;" in html  # the work folder
    assert "&#34;…/img1.jpg&#34;" in html and "features cached in ~/cache" in html  # outside both; the home folder
    assert "weights: …/caffe_resnet152.pth" in html and "NVIDIA H100" in html  # the device stays
    build_site(rows, tmp_path / "local", plots=False, local_paths=True)
    html = (tmp_path / "local" / "toy_lt" / dme.slug / "index.html").read_text()
    assert f'<p class="path">{run}</p>' in html and "Linux-6.1.0-hostbuild" in html and f"weights: {tmp_path}/data/caffe_resnet152.pth" in html


def test_report_cli_local_paths(cli, tmp_path):
    run = make_run(tmp_path / "runs")
    cli("report", str(tmp_path / "runs"), "--html", str(tmp_path / "site"), "--no-plots", "--no-leaderboard")
    cli("report", str(tmp_path / "runs"), "--html", str(tmp_path / "local"), "--no-plots", "--no-leaderboard", "--local-paths")
    (page,) = (tmp_path / "site" / "toy_lt").glob("run-*/index.html")
    assert str(run) not in page.read_text() and f"runs/toy_lt/plain/{run.name}" in page.read_text()
    (page,) = (tmp_path / "local" / "toy_lt").glob("run-*/index.html")
    assert str(run) in page.read_text()


def test_methods_overview_shows_no_gap_for_a_quick_run(tmp_path):
    """A --quick run's numbers are not a result: no Δ beside it (the comparison page drops it too)."""
    from oltr_bench.report.overview import methods_overview

    make_run(tmp_path / "runs", method="plain", partial=True, metrics={"top1": 0.01, "few": 0.0, "open_f1": 0.0})
    make_entry(tmp_path / "lb", "toy-plain", method="plain", metrics={"top1": 0.4, "few": 0.25, "open_f1": 0.3})
    overview = methods_overview(build_rows(collect([tmp_path / "runs"], leaderboard_dirs=[tmp_path / "lb"])))
    quick = overview.cell("plain", 0)
    assert quick.row.partial and quick.gaps == {}
