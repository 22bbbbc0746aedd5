"""Box plots of per-test-day metrics per method, on synthetic input."""

import numpy as np
import pytest

from baselines.compare_plots import BOX_METRICS, box_plots


def _per_day(rng):
    """Three methods, two seeds x 5 test days pooled; ppo has NaN days, rule none at all."""
    out = {}
    for method, scale in (("gradmap", 0.01), ("ppo", 0.3), ("rule", 1.0)):
        out[method] = {k: scale * rng.gamma(2.0, size=10) for k in BOX_METRICS}
        out[method]["cost"] = 400 + 50 * rng.standard_normal(10)
    out["gradmap"]["line_violation_magnitude"][:6] = 0.0  # days without any overload
    for k in BOX_METRICS:
        out["ppo"][k][[2, 7]] = np.nan  # two non-converged days, in every metric
    out["rule"]["voltage_worst_pu"][:] = np.nan
    return out


def test_one_panel_per_metric_one_box_per_method_nan_days_counted(tmp_path):
    per_day = _per_day(np.random.default_rng(0))
    fig = box_plots(per_day, tmp_path / "box.png")
    assert (tmp_path / "box.png").stat().st_size > 10_000
    assert len(fig.axes) == len(BOX_METRICS) == 4
    for ax, metric in zip(fig.axes, BOX_METRICS, strict=True):
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert [t.split("\n")[0] for t in ticks] == ["gradmap", "ppo", "rule"]
        assert ticks[0] == "gradmap\n10 days" and ticks[1] == "ppo\n8 days\n2 NaN left out"
        nan_days = 2 + (10 if metric == "voltage_worst_pu" else 0)
        assert ax.get_title().endswith(f"\n{nan_days} NaN days left out")
        # the boxes span the quartiles of the kept days: ppo's from its 8 finite values
        boxes = [ln.get_ydata() for ln in ax.lines  # (q1, q1, q3, q3, q1) outlines
                 if ln.get_label().startswith("_child") and len(ln.get_ydata()) == 5]
        assert len(boxes) == 3
        ppo = per_day["ppo"][metric][~np.isnan(per_day["ppo"][metric])]
        assert boxes[1][1:3] == pytest.approx(np.percentile(ppo, [25, 75]), rel=1e-12)
        assert ax.get_yscale() == ("linear" if metric == "cost" else "symlog")


def test_chosen_metrics_and_a_missing_one(tmp_path):
    per_day = _per_day(np.random.default_rng(1))
    fig = box_plots(per_day, tmp_path / "two.png", metrics=("cost", "voltage_worst_pu"))
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[0].get_xticklabels()][2] \
        == "rule\n10 days"
    del per_day["gradmap"]["cost"]
    with pytest.raises(ValueError, match="method 'gradmap' has no per-day values of 'cost'"):
        box_plots(per_day, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no methods"):
        box_plots({}, tmp_path / "y.png")
