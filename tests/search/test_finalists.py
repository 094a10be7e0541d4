"""Where the target is this machine, the search's winner is measured before it is chosen."""

from __future__ import annotations

import pandas as pd
import pytest

from sparsevit_sdk import SearchResult, SearchSession, build_model
from sparsevit_sdk.accuracy import AgreementProxy
from sparsevit_sdk.demo import probe_images
from sparsevit_sdk.local import for_device
from sparsevit_sdk.search.finalists import Finalist, Measured, band_of, finalists

SHAPE = (1, 3, 64, 64)


def _history(rows):
    return pd.DataFrame(rows, columns=["ratios", "predicted_ms", "score"])


def test_finalists_are_the_front_near_the_budget_best_scored_first():
    history = _history([((0.1,), 9.0, 0.90), ((0.2,), 10.4, 0.95), ((0.3,), 11.5, 0.99), ((0.4,), 8.0, 0.80),
                        ((0.5,), 7.0, None), ((0.6,), 9.5, 0.85), ((0.7,), 9.9, 0.95)])
    picked = finalists(history, budget_ms=10.0, band=0.05, k=2)
    # 11.5 ms is beyond the band; the unscored config, and those another beats on both score and latency
    # (0.6: slower than 0.1 and worse; 0.2: slower than 0.7 and no better), are no finalists
    assert picked["ratios"].tolist() == [(0.7,), (0.1,)]
    assert finalists(history, budget_ms=10.0, band=0.2, k=5)["ratios"].tolist() == [(0.3,), (0.7,), (0.1,), (0.4,)]


def test_the_best_scored_finalist_measured_within_the_budget_wins():
    def measured(*ms):
        return Measured(dense_ms=20.0, budget_ms=10.0, threads=1, clock="cpu", statistic="p10_ms",
                        finalists=tuple(Finalist((r,), s, 10.0, m) for r, s, m in zip((0.1, 0.2, 0.3), (0.9, 0.8, 0.7),
                                                                                        ms)))
    # the predicted winner measures over the budget: the next best-scored within it is chosen
    assert measured(11.0, 9.5, 8.0).chosen().ratios == (0.2,)
    assert measured(9.0, 9.5, 8.0).chosen().ratios == (0.1,)
    assert measured(12.0, 11.0, 10.5).chosen().ratios == (0.3,)  # none within: the fastest measured
    assert Measured.from_dict(measured(11.0, 9.5, 8.0).to_dict()) == measured(11.0, 9.5, 8.0)


def test_the_band_is_the_predictors_error_at_least_five_percent():
    assert band_of({"mape": 12.0}) == 0.12 and band_of({"mape": 1.0}) == 0.05 and band_of(None) == 0.1


@pytest.mark.slow
def test_a_search_on_this_machine_chooses_among_measured_finalists(tmp_path):
    micro = build_model("swin_micro")
    predictor = for_device(micro, SHAPE, "cpu", cache=False, progress=False, time_limit=0.01)
    proxy = AgreementProxy(micro, probe_images(SHAPE, num_images=1)[0])
    result = SearchSession(micro, predictor, input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=8,
                           parents=4, generations=2, seed=0, progress=False).run()
    measured = result.measured
    assert measured is not None and 1 <= len(measured.finalists) <= 5 and measured.clock == "cpu"
    chosen = measured.chosen()
    assert result.best.ratios == chosen.ratios and result.score == chosen.score
    assert result.predicted_ms == chosen.predicted_ms  # both figures kept: predicted and measured
    assert "measured here before choosing" in result.summary()
    assert result.validate("cpu", repeats=2, warmup=1, rounds=1).machine_speed > 0  # the probe timed again
    labels = result.plot(tmp_path / "front.png").axes[0].get_legend_handles_labels()[1]
    assert "finalists, measured here" in labels and any("held-out error" in label for label in labels)
    loaded = SearchResult.load(result.save(tmp_path / "r.json"))
    assert loaded.measured == measured and loaded.summary() == result.summary()
    # a target that is not this machine is not measured
    other = SearchSession(micro, "jetson-orin", input_shape=SHAPE, proxy=proxy, latency_budget=1.0, population=4,
                          parents=2, generations=0, progress=False).run()
    assert other.measured is None and "measured here" not in other.summary()
