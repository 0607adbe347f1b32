"""report.html on hand-made run directories: every row, units, best marks, plots as PNG,
escaping (autoescaping), robustness (failed / n/a rows, missing files, no teacher, one
row), an old schema-2 run, sectioned and flat configs, presets' published figures, the
number filters, the `report` command, and a load in headless Chromium."""

import base64
import io
import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bench.results.row import Result, view
from bench.results.store import RunStore, load_rows
from reports.curves import pareto_front, reliability_bins, roc_points
from reports.figures import best_compressed
from reports.html import write_report
from reports.run import load_run
from tests.helpers.runfactory import make_run

FIXTURES = Path(__file__).parent.parent / "fixtures"

HOSTILE = "<script>alert(1)</script>"


class Page(HTMLParser):
    """What the tests look at: tables (rows of cell texts, by class), images, links, tags."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.imgs, self.refs, self.tags = {}, [], [], []
        self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"class": a.get("class") or "", "text": ""}
            self._row.append(self._cell)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def body_rows(self, cls):
        return self.tables[cls][1:]  # the first row is the header


def png_ok(src: str) -> bool:
    """A data URI that decodes to a PNG matplotlib can read."""
    import matplotlib.image as mpimg

    assert src.startswith("data:image/png;base64,"), src[:40]
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(io.BytesIO(raw), format="png")
    return image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


def check_page(text: str, n_rows: int) -> Page:
    page = Page(text)
    assert len(page.body_rows("results")) == n_rows
    assert not [r for r in page.refs if re.match(r"\s*(https?:)?//", r)]  # nothing external
    assert "script" not in page.tags and "link" not in page.tags
    assert page.imgs and all(png_ok(src) for src in page.imgs)
    return page


def test_report_has_every_row_units_best_marks_and_png_plots(tmp_path):
    run = make_run(tmp_path / "run")  # 24 ok rows, a failed one and an n/a one
    t0 = time.perf_counter()
    out = write_report(run)
    elapsed = time.perf_counter() - t0
    print(f"rendered 26 rows in {elapsed:.2f} s")
    assert elapsed < 30  # about 2 s on a 2-core machine
    text = out.read_text()
    page = check_page(text, 26)
    assert len(page.imgs) == 5  # latency, size, bars, latency boxes, ROC + reliability
    header = " ".join(c["text"] for c in page.tables["results"][0])
    for unit in ("ms", "MiB", "MACs", "mJ"):
        assert unit in header
    rows = page.body_rows("results")
    best_size = [r[0]["text"] for r in rows if "best" in r[6]["class"]]  # file_mib column
    assert set(best_size) == {"kd+quant.static"}
    assert re.search(r'0\.966 <span class="ci">\[0\.9\d\d, 0\.9\d\d\]', text)  # AUC [CI]
    assert "RuntimeError: deliberate &lt;failure&gt; &amp; co" in text
    assert "dynamic int8 does not exist on this backend" in text
    assert "badge failed" in text and "badge na" in text
    assert "is an <b>estimate</b>" in text
    summary = page.tables["summary"]
    smallest = [r for r in summary if len(r) > 2 and r[1]["text"] == "smallest non-inferior"]
    assert {r[2]["text"] for r in smallest if r[0]["text"] == "torch"} == {"quant.static"}


def test_hostile_strings_are_escaped(tmp_path):
    run = make_run(tmp_path / "run", names={"kd": HOSTILE})
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data"]["classes"] = [HOSTILE, "<img src=x onerror=alert(2)>"]
    manifest["config"]["preset"] = HOSTILE
    manifest["git_commit"] = "\"><script>alert(3)</script>"
    (run / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(run).read_text()
    assert "<script" not in text.lower() and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    page = check_page(text, 26)
    assert HOSTILE in {r[0]["text"] for r in page.body_rows("results")}  # shown, as text


def test_report_survives_missing_files_failed_rows_and_no_teacher(tmp_path):
    run = make_run(tmp_path / "run", quick=True)
    for stem in ("teacher__onnxruntime", "kd__torch"):
        (run / "predictions" / f"{stem}.npz").unlink()
        (run / "latency" / f"{stem}.npz").unlink()
    (run / "predictions" / "quant.static__torch.npz").write_bytes(b"not an npz")
    text = write_report(run).read_text()
    check_page(text, 26)
    warned = re.search(r"No readable predictions file for ([^<:]*):", text).group(1)
    assert set(warned.split(", ")) == {"teacher / onnxruntime / fp32", "kd / torch / fp32",
                                       "quant.static / torch / int8"}
    warned = re.search(r"No latency samples for ([^<:]*):", text).group(1)
    assert set(warned.split(", ")) == {"teacher / onnxruntime / fp32", "kd / torch / fp32"}
    assert "--quick smoke test" in text

    one = make_run(tmp_path / "one", models=("quant.static",), backends=("torch",), failed=False)
    text = write_report(one).read_text()
    check_page(text, 1)
    assert "no ok teacher row on this backend" in text
    assert "No ok teacher row on torch" in text

    bare = RunStore(tmp_path / "bare")  # one failed row, no manifest, no files
    bare.add(Result(model="kd", method="kd", backend="torch", arch="a", precision="fp32",
                    status="failed", error="boom"))
    text = write_report(bare.root).read_text()
    page = Page(text)
    assert len(page.body_rows("results")) == 1 and not page.imgs
    assert "no manifest.json" in text and "boom" in text


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_report_for_other_tasks(tmp_path, kind):
    run = make_run(tmp_path / kind, kind=kind, models=("teacher", "kd", "quant.static"),
                   backends=("torch", "onnxruntime"), failed=False)
    text = write_report(run).read_text()
    check_page(text, 6)
    assert "could not be drawn" not in text


def test_roc_and_reliability_match_independent_computations():
    from sklearn.metrics import roc_auc_score

    from bench.stats.calibration import ece
    from tests.helpers.runfactory import labels, scores

    for kind in ("binary", "multiclass", "multilabel"):
        y = labels(kind, 300)
        s = scores(kind, y, 0.5, 1)
        if kind == "binary":
            s = np.round(s, 2)  # ties
            want = roc_auc_score(y, s)
        elif kind == "multiclass":
            want = roc_auc_score(np.eye(s.shape[1])[y].ravel(), s.ravel())  # micro
        else:
            known = ~np.isnan(y)
            want = roc_auc_score(y[known], s[known])
        fpr, tpr, _ = roc_points(kind, y, s)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # the curve's own area
        assert area == pytest.approx(want, abs=1e-12)
        assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
        assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
        conf, freq, count, got = reliability_bins(kind, y, s)
        assert len(count) == 15 and got == pytest.approx(ece(kind, y, s), abs=1e-12)


def test_pareto_front_and_best_compressed_model(tmp_path):
    # cost, value: (1, .80) (2, .90) (3, .85) (4, .95) (4, .94): front 0, 1, 3
    assert pareto_front([1, 2, 3, 4, 4], [0.80, 0.90, 0.85, 0.95, 0.94]) == [0, 1, 3]
    run = load_run(make_run(tmp_path / "run"))
    teacher, best, why = best_compressed(run)
    assert teacher["model"] == "teacher" and teacher["backend"] == best["backend"]
    ok = [r for r in run.rows if r["status"].startswith("ok") and r["method"] != "baseline"]
    assert best["auc_roc"] == max(r["auc_roc"] for r in ok)
    assert "highest AUC-ROC" in why


def test_published_figures_beside_ours(tmp_path, monkeypatch):
    from bench.config import presets

    monkeypatch.setattr(presets.PRESETS, "_items", dict(presets.PRESETS.items()))  # a copy
    presets.PRESETS.register(presets.Preset(
        name="paper-x", summary="a paper's setup", citation="Doe et al. 2024 <i>",
        published={"teacher": {"auc_roc": 0.858, "note": "Table 2"},
                   "kd": {"auc_roc": "0.851 ± 0.004", "params": 11_200_000}}))
    run = make_run(tmp_path / "run", preset="paper-x")
    text = write_report(run).read_text()
    page = Page(text)
    table = next(rows for cls, rows in page.tables.items() if cls == "" and rows
                 and rows[0][2]["text"] == "paper")
    cells = {(r[0]["text"], r[1]["text"].split()[0]): r for r in table[1:]}
    assert cells[("teacher", "auc_roc")][2]["text"] == "0.858"
    assert cells[("teacher", "auc_roc")][3]["text"].startswith("0.966")  # ours, torch
    assert cells[("kd", "auc_roc")][2]["text"] == "0.851 ± 0.004"
    assert cells[("kd", "params")][2]["text"] == "11.20 M"
    assert "Doe et al. 2024 &lt;i&gt;" in text


def test_report_command(tmp_path, capsys):
    from bench.cli import main

    run = make_run(tmp_path / "run", models=("teacher", "kd"), backends=("torch",))
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").stat().st_size > 10_000
    for bad in (tmp_path / "missing", tmp_path):
        assert main(["report", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path / "broken")]) == 2
    assert "not a medbench results file" in capsys.readouterr().err


@pytest.mark.slow
def test_report_loads_in_headless_chromium(tmp_path):
    from reports.browser import find_chromium, load_page

    if find_chromium() is None:
        pytest.skip("no Chromium on PATH (CI installs it; or set $CHROMIUM)")
    # The checks can see what they look for: a page with console errors and a remote image.
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><img src='http://example.invalid/x.png'>"
                   "<script>console.error('bad'); missingFunction();</script>")
    control = load_page(bad)
    assert any("Uncaught" in line for line in control.console)
    assert control.requests == ["http://example.invalid/x.png"]

    run = make_run(tmp_path / "run", names={"kd": HOSTILE})
    out = write_report(run)
    loaded = load_page(out, screenshot=run / "report.png", window=(1400, 4000))
    assert loaded.console == [] and loaded.requests == []
    check_page(loaded.dom, 26)  # the DOM as the browser built it: every row, PNGs, no remote refs
    assert HOSTILE in {r[0]["text"] for r in Page(loaded.dom).body_rows("results")}
    assert loaded.screenshot == run / "report.png"
    assert loaded.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speedups_within_the_noise_are_worded_and_the_floor_is_shown(tmp_path):
    run = make_run(tmp_path / "run", failed=False)
    rows = {(r.model, r.backend): r for r in load_rows(run)}
    dense = rows["prune.magnitude", "torch"]  # the teacher's latency: a dense copy
    assert dense.speedup_ci_low <= 1 <= dense.speedup_ci_high
    fast = rows["quant.static", "torch"]
    assert fast.speedup_ci_low > 1
    page = write_report(run).read_text()
    results = page[page.index('id="results"'):]
    row_html = results[results.index(">prune.magnitude<"):]
    row_html = row_html[:row_html.index("</tr>")]
    assert "no measurable difference" in row_html
    fast_html = results[results.index(">quant.static<"):]
    assert "no measurable difference" not in fast_html[:fast_html.index("</tr>")]
    floor = rows["teacher", "torch"].noise_floor
    assert f"noise floor {floor:.1%}" in page


def test_old_schema2_run_renders(tmp_path):
    """A real run directory written by schema 2: flat config, predictions without their
    task, fewer columns. It still renders whole, and the fixture is left as it was."""
    run = tmp_path / "schema2-run"
    shutil.copytree(FIXTURES / "schema2-run", run)
    text = write_report(run).read_text()
    assert not (FIXTURES / "schema2-run" / "report.html").exists()
    page = check_page(text, 8)
    assert len(page.imgs) == 5 and "could not be drawn" not in text
    rows = page.body_rows("results")
    assert {r[0]["text"] for r in rows} == {"teacher", "student", "kd", "quant.static"}
    assert {r[1]["text"] for r in rows} == {"torch", "onnxruntime"}
    assert "non-inferiority margin on AUC 0.02" in text and "densenet121 (trained)" in text
    assert "ROC (binary)" not in text  # (inside the PNG, not the page)
    assert "Teacher against <b>" in text  # the ROC figure has its best compressed row
    provenance = next(rows for cls, rows in Page(text).tables.items() if cls == "" and rows
                      and rows[0][0]["text"] == "model" and rows[0][1]["text"] == "arch")
    assert {r[0]["text"] for r in provenance[1:]} == {"teacher", "student", "kd", "quant.static"}


def test_script_in_a_model_name_is_escaped(tmp_path):
    name = "kd<script>alert('x')</script>&\"q\""
    run = make_run(tmp_path / "run", models=("teacher", "kd", "quant.static"),
                   backends=("torch",), failed=False, names={"kd": name})
    text = write_report(run).read_text()
    assert "<script" not in text.lower()
    assert "kd&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#34;q&#34;" in text
    page = check_page(text, 3)
    assert name in {r[0]["text"] for r in page.body_rows("results")}  # shown, as text
    assert name in {r[0]["text"] for r in page.body_rows("full")}
    provenance = next(rows for cls, rows in page.tables.items() if cls == "" and rows
                      and rows[0][0]["text"] == "model" and rows[0][1]["text"] == "arch")
    assert name in {r[0]["text"] for r in provenance[1:]}


def test_sectioned_config_is_read_like_a_flat_one(tmp_path):
    run = make_run(tmp_path / "run", models=("teacher", "kd"), backends=("torch",),
                   failed=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"] = {"data": {"task": "binary", "dataset": "synthetic"},
                          "training": {"teacher": "resnet18"},
                          "methods": {"spec": "kd"}, "measurement": {"margin": 0.03},
                          "output": {"out": None}, "seed": 0, "preset": None,
                          "profile": "quick"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(run).read_text()
    assert "non-inferiority margin on AUC 0.03" in text and "−margin (0.03)" in text
    assert "<b>teacher</b> resnet18 (trained)" in text
    assert "No preset: no published figures" in text


def test_table_columns_come_from_the_column_metadata(tmp_path):
    run = make_run(tmp_path / "run", models=("teacher", "kd"), backends=("torch",),
                   failed=False)
    page = Page(write_report(run).read_text())
    heads = [c["text"] for c in page.tables["results"][0]]
    assert len(heads) == len(view("main"))
    assert all(h.startswith(n) for h, n in zip(heads, view("main"), strict=True))
    heads = [c["text"] for c in page.tables["summary"][0]][2:]  # after backend, role
    assert all(h.startswith(n) for h, n in zip(heads, view("summary"), strict=True))
    assert len(page.tables["full"][0]) == len(Result.columns())


def test_number_filters():
    from reports.format import counted, fmt, interval, no_difference

    assert fmt("params", 7_040_000) == "7.04 M" and fmt("macs", 56_000) == "56.0 k"
    assert fmt("params", 7_040_000, exact=True) == "7,040,000"
    assert fmt("latency_n", 90_000) == "90.0 k" and fmt("latency_n", 9_000) == "9,000"
    assert fmt("seconds", 12.5) == "12.5"  # not a column: about 3 significant digits
    assert fmt("delong_p", 0.0004) == "<0.001" and fmt("delta_auc", 0.012) == "+0.012"
    assert fmt("auc_roc", None) == "–" and fmt("auc_roc", float("nan")) == "–"
    row = {"auc_roc": 0.8712, "auc_ci_low": 0.84, "auc_ci_high": 0.9, "speedup": 1.02,
           "speedup_ci_low": 0.97, "speedup_ci_high": 1.08}
    assert fmt("auc_roc", row["auc_roc"]) == "0.871"
    assert interval(row, ("auc_roc", "auc_ci_low", "auc_ci_high")) == ("0.840", "0.900")
    assert interval(row, ("auc_roc",)) is None
    assert no_difference(row, "speedup") == "1.02x, 95% interval [0.970, 1.08] holds 1"
    assert no_difference({**row, "speedup_ci_low": 1.01}, "speedup") is None
    assert no_difference(row, "auc_roc") is None
    assert counted(1, "row is", "rows are") == "1 row is" and counted(3, "row") == "3 rows"


def test_summary_says_when_distillation_had_nothing_to_transfer(tmp_path, monkeypatch):
    from bench.results.row import nothing_to_transfer
    from tests.helpers import runfactory

    clear = make_run(tmp_path / "clear", failed=False)  # the student is clearly worse
    assert nothing_to_transfer([r.to_dict() for r in load_rows(clear)]) is None
    assert "Nothing to transfer" not in write_report(clear).read_text()
    # a student that scores every case as the teacher does: ΔAUC 0, its interval holds 0
    monkeypatch.setitem(runfactory.MODELS, "student", (*runfactory.MODELS["student"][:7], 0.0))
    tie = make_run(tmp_path / "tie", failed=False)
    note = nothing_to_transfer([r.to_dict() for r in load_rows(tie)])
    assert note.startswith("the teacher is not clearly better than the student")
    assert "ΔAUC +0.000 [+0.000, +0.000] on torch" in note
    assert "Nothing to transfer" in write_report(tie).read_text()


def test_what_compressing_cost_is_in_the_rows_the_console_and_the_summary(tmp_path):
    from bench.results import console
    from bench.results.store import RunStore

    run = make_run(tmp_path / "run", models=("teacher", "student", "kd"), failed=False)
    store = RunStore(run, resume=True)
    rows = [r if r.model == "teacher" else r.with_(compress_seconds=12.3, compress_steps=378)
            for r in load_rows(run)]
    store.rows.clear()
    for r in rows:
        store.add(r)
    store.update_manifest(teacher={"source": "trained", "arch": "densenet121", "train_steps": 220,
                                   "train_seconds": 95.0, "rule": "trained 126 to 378 steps"})
    text = console.table(rows)
    assert "cost from the teacher: student 12 s, 378 steps, kd 12 s, 378 steps" in text
    # a realisation's work when deployed (pt2e QAT on an edge backend) is its row's own
    last = rows[-1].backend
    by_backend = [r.with_(compress_seconds=40.4, compress_steps=390)
                  if (r.model, r.backend) == ("kd", last) else r for r in rows]
    assert "kd 12-40 s, 378-390 steps (by backend)" in console.table(by_backend)
    page = write_report(run).read_text()
    assert "densenet121: 220 optimiser steps in 95 s; trained 126 to 378 steps" in page
    header = " ".join(c["text"] for c in check_page(page, len(rows)).tables["results"][0])
    assert "compress_seconds" in header and "compress_steps" in header
