"""--seeds: every seed's rows at the top, and mean / sd across seeds in summary.csv."""

import pandas as pd
import pytest

from bench.results.row import Result
from bench.results.seeds import write_summary
from bench.results.store import RunStore, load_rows


def test_summary_gives_mean_and_sd_across_seeds(tmp_path):
    runs = {}
    for seed, auc in ((0, 0.80), (1, 0.84), (2, 0.86)):
        store = RunStore(tmp_path / f"seed-{seed}")
        store.add(Result(model="kd", method="kd", backend="torch", arch="m", precision="fp32",
                         seed=seed, auc_roc=auc, params=10))
        store.add(Result(model="quant.dynamic", method="quant.dynamic", backend="openvino",
                         arch="m", precision="int8", seed=seed, status="n/a", error="no such"))
        runs[seed] = store.root
    path = write_summary(tmp_path, runs)
    assert [r.seed for r in load_rows(tmp_path)] == [0, 0, 1, 1, 2, 2]
    summary = pd.read_csv(path).set_index("model")
    assert list(summary.index) == ["kd"]  # the n/a row measured nothing
    assert summary.loc["kd", "n_seeds"] == 3
    assert summary.loc["kd", "auc_roc_mean"] == pytest.approx(0.8333333333)
    assert summary.loc["kd", "auc_roc_sd"] == pytest.approx(pd.Series([0.80, 0.84, 0.86]).std())
