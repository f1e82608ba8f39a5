"""The per-variant report of an experiment: exposures, attributed orders, returned orders,
return rates with intervals, differences against control, the sample-ratio check, the
minimum detectable effect, and a plot of the cumulative return rate per variant.

Attribution (see :meth:`Store.attributed_orders`): an order counts for a variant when one
of its lines is a product the ordering unit was exposed to under that variant, at most
the experiment's attribution window before the order. An order is *returned* when such a
line was returned. Orders that would count for two variants (a unit exposed under both,
which deterministic assignment never does) are left out and reported.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import io
import math
from collections import defaultdict

import numpy as np

from services.experiments import stats
from services.experiments.definition import Experiment
from services.experiments.store import Store

PLOT_POINTS = 400  # points per curve: enough for the eye, small PNG
# Curves start at a variant's 30th order: before that the rate swings from 0 to 100 % and
# squeezes the part worth reading into a thin band.
PLOT_FIRST_ORDER = 30


@dataclasses.dataclass(frozen=True)
class VariantReport:
    """One variant's row. Differences are this variant minus control (None for control)."""

    name: str
    weight: float
    units_assigned: int
    units_exposed: int
    exposures: int
    orders: int
    returned: int
    rate: float
    rate_ci: tuple[float, float]
    diff: float | None = None
    diff_ci: tuple[float, float] | None = None
    rel: float | None = None
    rel_ci: tuple[float, float] | None = None
    pvalue: float | None = None
    mde: float | None = None


@dataclasses.dataclass(frozen=True)
class Report:
    """An experiment's report (see the module docstring)."""

    experiment: Experiment
    variants: tuple[VariantReport, ...]
    srm: stats.SRM
    conflicting_units: int
    ambiguous_orders: int
    generated_at: dt.datetime
    # per variant: order times (ms, sorted) and whether each order was returned
    timeline: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(repr=False)


def build_report(store: Store, exp: Experiment) -> Report:
    """Compute the report of ``exp`` from ``store``."""
    window_ms = int(exp.attribution_window.total_seconds() * 1000)
    rows = store.attributed_orders(exp.id, window_ms)
    by_order: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for oid, variant, ts, returned in rows:
        by_order[oid].append((variant, ts, returned))
    per: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    ambiguous = 0
    for entries in by_order.values():
        if len({v for v, _, _ in entries}) > 1:
            ambiguous += 1
            continue
        v, ts, returned = entries[0]
        per[v].append((ts, returned))
    timeline = {}
    for v in exp.variants:
        items = sorted(per.get(v.name, []))
        timeline[v.name] = (
            np.array([t for t, _ in items], np.int64),
            np.array([r for _, r in items], bool),
        )
    assigned = store.assigned_units(exp.id)
    exposed = store.exposure_counts(exp.id)
    control = exp.variant(exp.control)
    n0 = len(timeline[control.name][1])
    x0 = int(timeline[control.name][1].sum())
    out = []
    for v in exp.variants:
        n = len(timeline[v.name][1])
        x = int(timeline[v.name][1].sum())
        lo, hi = stats.rate_ci(x, n)
        row = dict(
            name=v.name,
            weight=v.weight,
            units_assigned=assigned.get(v.name, 0),
            units_exposed=exposed.get(v.name, (0, 0))[1],
            exposures=exposed.get(v.name, (0, 0))[0],
            orders=n,
            returned=x,
            rate=x / n if n else float("nan"),
            rate_ci=(float(lo), float(hi)),
        )
        if v.name != control.name and n > 0 and n0 > 0:
            dlo, dhi = stats.diff_ci(x, n, x0, n0)
            row.update(
                diff=x / n - x0 / n0,
                diff_ci=(float(dlo), float(dhi)),
                pvalue=float(stats.diff_pvalue(x, n, x0, n0)),
                mde=stats.mde(x0 / n0, n0, n),
            )
            if x0 > 0 and x > 0:
                rlo, rhi = stats.ratio_ci(x, n, x0, n0)
                row.update(rel=(x / n) / (x0 / n0) - 1, rel_ci=(float(rlo) - 1, float(rhi) - 1))
        out.append(VariantReport(**row))
    srm = stats.srm_check([r.units_exposed for r in out], exp.weights)
    return Report(
        experiment=exp,
        variants=tuple(out),
        srm=srm,
        conflicting_units=store.conflicting_units(exp.id),
        ambiguous_orders=ambiguous,
        generated_at=dt.datetime.now(dt.UTC),
        timeline=timeline,
    )


def _pct(x: float | None, digits: int = 2, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x * 100:+.{digits}f} %" if sign else f"{x * 100:.{digits}f} %"


def _ci(ci: tuple[float, float] | None, sign: bool = False) -> str:
    if ci is None or not all(map(math.isfinite, ci)):
        return "–"
    return f"[{_pct(ci[0], sign=sign)}, {_pct(ci[1], sign=sign)}]"


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return f"{p:.2g}" if p >= 1e-4 else "<0.0001"


COLUMNS = (
    "variant", "units", "exposures", "orders", "returned", "return rate", "95% CI",
    "diff vs control", "95% CI", "relative", "95% CI", "p-value", "MDE (80% power)",
)  # fmt: skip


def table_rows(r: Report) -> list[list[str]]:
    """The report's table as text cells (shared by the terminal and HTML forms)."""
    rows = []
    for v in r.variants:
        is_control = v.name == r.experiment.control
        rows.append(
            [
                v.name + (" (control)" if is_control else ""),
                str(v.units_exposed),
                str(v.exposures),
                str(v.orders),
                str(v.returned),
                _pct(v.rate),
                _ci(v.rate_ci),
                _pct(v.diff, sign=True),
                _ci(v.diff_ci, sign=True),
                _pct(v.rel, 1, sign=True),
                _ci(v.rel_ci, sign=True),
                _p(v.pvalue),
                _pct(v.mde) if not is_control else "–",
            ]
        )
    return rows


def srm_line(r: Report) -> str:
    s = r.srm
    obs = ", ".join(f"{v.name}={n}" for v, n in zip(r.variants, s.observed, strict=True))
    verdict = "MISMATCH: the split is broken; do not trust the effects" if s.flagged else "ok"
    return (
        f"sample ratio (units exposed): {obs}; chi-square {s.chi2:.2f}, "
        f"p = {_p(s.pvalue)} -> {verdict} (flagged below p = {stats.SRM_ALPHA})"
    )


def window_text(exp: Experiment) -> str:
    hours = exp.attribution_window.total_seconds() / 3600
    return f"{hours:g} h ({hours / 24:g} days)" if hours >= 24 else f"{hours:g} h"


def to_text(r: Report) -> str:
    """The report as a terminal table."""
    rows = [list(COLUMNS), *table_rows(r)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        f"experiment {r.experiment.id}: {r.experiment.description}".rstrip(": "),
        f"unit: {r.experiment.unit}; attribution window: {window_text(r.experiment)}; "
        f"control: {r.experiment.control}",
        "",
    ]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", srm_line(r)]
    if r.conflicting_units or r.ambiguous_orders:
        lines.append(
            f"warning: {r.conflicting_units} units were exposed under more than one variant; "
            f"{r.ambiguous_orders} orders attributed to two variants were left out"
        )
    return "\n".join(lines)


def plot_png(r: Report) -> bytes:
    """PNG of the cumulative return rate per variant over order time, with 95 % Wilson
    bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    try:
        for i, v in enumerate(r.variants):
            ts, ret = r.timeline[v.name]
            if len(ts) == 0:
                continue
            n = np.arange(1, len(ts) + 1)
            x = np.cumsum(ret)
            # Thin to PLOT_POINTS points; the intervals are exact at every kept point.
            first = min(PLOT_FIRST_ORDER, len(ts)) - 1
            keep = np.unique(
                np.linspace(first, len(ts) - 1, min(PLOT_POINTS, len(ts) - first)).astype(int)
            )
            lo, hi = stats.rate_ci(x[keep], n[keep])
            when = [dt.datetime.fromtimestamp(t / 1000, dt.UTC) for t in ts[keep]]
            color = f"C{i}"
            label = f"{v.name} ({v.returned}/{v.orders} = {_pct(v.rate, 1)})"
            ax.plot(when, x[keep] / n[keep], color=color, lw=1.8, label=label)
            ax.fill_between(when, lo, hi, color=color, alpha=0.2, lw=0)
        ax.set_title(
            f"{r.experiment.id}: cumulative return rate with 95 % intervals "
            f"(from each variant's {PLOT_FIRST_ORDER}th order)",
            fontsize=11,
        )
        ax.set_xlabel("order time (UTC)")
        ax.set_ylabel("returned orders / orders")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def to_html(r: Report, png: bytes | None = None) -> str:
    """A self-contained HTML page: the table, the SRM verdict, the plot embedded."""
    png = plot_png(r) if png is None else png
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table_rows(r)
    )
    warn = ""
    if r.conflicting_units or r.ambiguous_orders:
        warn = (
            f"<p class=bad>{r.conflicting_units} units were exposed under more than one "
            f"variant; {r.ambiguous_orders} orders attributed to two variants were left out.</p>"
        )
    srm_class = "bad" if r.srm.flagged else "ok"
    img = base64.b64encode(png).decode()
    x = r.experiment
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(x.id)}: experiment report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}} .bad{{color:#b00;font-weight:bold}} .ok{{color:#070}}
</style></head><body>
<h1>Experiment {e(x.id)}</h1>
<p>{e(x.description)}</p>
<p>Unit: {e(x.unit)} · control: {e(x.control)} · attribution window: {e(window_text(x))}
 · generated {e(r.generated_at.strftime("%Y-%m-%d %H:%M UTC"))}</p>
<table><tr>{head}</tr>{body}</table>
<p class={srm_class}>{e(srm_line(r))}</p>{warn}
<p>Return rate = returned orders / attributed orders. Intervals: Wilson (rates), Newcombe
(difference), log risk ratio (relative); p-value: two-sided z-test; MDE: the smallest drop in
the return rate a two-sided test at 5 % detects with 80 % power at these sample sizes.</p>
<img alt="cumulative return rate per variant" src="data:image/png;base64,{img}">
</body></html>
"""


def to_json(r: Report) -> dict:
    """The report's numbers as JSON-able data."""
    return {
        "experiment": r.experiment.id,
        "control": r.experiment.control,
        "variants": [
            {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(row).items()
            }
            for row in r.variants
        ],
        "srm": {"chi2": r.srm.chi2, "pvalue": r.srm.pvalue, "flagged": r.srm.flagged},
        "conflicting_units": r.conflicting_units,
        "ambiguous_orders": r.ambiguous_orders,
    }
