"""predictor/plots.py."""

from __future__ import annotations

from matplotlib.collections import PathCollection

from sparsevit_sdk.predictor import accuracy, plot_held_out


def test_held_out_plot_shows_what_evaluate_scores(fitted, measured, tmp_path):
    held = fitted.held_out(measured)
    assert accuracy(held["predicted_ms"], held["p10_ms"]) == fitted.learned_.metrics["xgboost"]
    fig = plot_held_out(fitted, measured, tmp_path / "fit.png")
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections if isinstance(c, PathCollection))
    assert points == len(held) and (tmp_path / "fit.png").stat().st_size > 0
    assert f"{len(held)} held-out models" in fig.axes[0].get_title()
