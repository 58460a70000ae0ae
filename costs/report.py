"""``qwen-stress cost report RUN_DIR...``: the team's cost-tracking report across runs.

One row per run (id, date, stack or target, plan, capacity found, GPU-hours, estimated and
billed dollars, dollars per million output tokens and per request within the SLOs), then
totals per stack and per month; as
Markdown, CSV, or a self-contained HTML page with a chart of cost against capacity over time.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from costs.runs import Run, read_actuals, read_run
from domain.run_cost import money

Format = Literal["md", "csv", "html"]
FORMATS: tuple[Format, ...] = ("md", "csv", "html")


@dataclass(frozen=True)
class Row:
    """One run with what AWS billed for it, when ``cost actuals`` has asked."""

    run: Run
    billed_usd: float | None
    billed_status: str | None

    @property
    def usd(self) -> float | None:
        """The run's cost: billed when known, else estimated."""
        return self.billed_usd if self.billed_usd is not None else self.run.estimated_usd

    @property
    def usd_per_million_tokens(self) -> float | None:
        """Dollars per million output tokens at time scale 1, from ``usd``."""
        if self.usd is None or self.run.output_tokens <= 0:
            return None
        return self.usd / self.run.output_tokens * 1e6

    @property
    def usd_per_good_request(self) -> float | None:
        """Dollars per request within the SLOs (of the plan at time scale 1), from ``usd``."""
        good = self.run.good_requests
        if self.usd is None or not good:
            return None
        return self.usd / good

    @property
    def month(self) -> str:
        """``2026-11``: the UTC month the run started in."""
        return self.run.started_at.strftime("%Y-%m")


@dataclass(frozen=True)
class Total:
    """Runs summed over one stack or one month; a figure no run has stays None, not zero."""

    key: str
    runs: int
    gpu_hours: float | None
    estimated_usd: float | None
    billed_usd: float | None
    usd_per_million_tokens: float | None
    """Over the runs with a cost (billed, else estimated) only."""
    usd_per_good_request: float | None
    """Over the runs with a cost and a count of requests within the SLOs."""


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def rows(run_dirs: Iterable[Path]) -> list[Row]:
    """Every run, oldest first (each read through ``costs.runs.read_run``)."""
    out = []
    for run_dir in run_dirs:
        run = read_run(run_dir)
        actuals = read_actuals(run_dir)
        billed = float(actuals["billed_usd"]) if actuals else None
        out.append(Row(run, billed, str(actuals["status"]) if actuals else None))
    return sorted(out, key=lambda r: (r.run.started_at, r.run.run_id))


def totals(all_rows: list[Row], key: Callable[[Row], str]) -> list[Total]:
    """Sums per group, in key order."""
    groups: dict[str, list[Row]] = {}
    for row in all_rows:
        groups.setdefault(key(row), []).append(row)
    out = []
    for name, group in sorted(groups.items()):
        priced = [r for r in group if r.usd is not None]
        tokens = sum(r.run.output_tokens for r in priced)
        cost = _sum(r.usd for r in priced)
        counted = [r for r in priced if r.run.good_requests is not None]
        good = sum(r.run.good_requests or 0.0 for r in counted)
        counted_cost = _sum(r.usd for r in counted)
        out.append(
            Total(
                key=name,
                runs=len(group),
                gpu_hours=_sum(r.run.gpu_hours for r in group),
                estimated_usd=_sum(r.run.estimated_usd for r in group),
                billed_usd=_sum(r.billed_usd for r in group),
                usd_per_million_tokens=cost / tokens * 1e6 if cost is not None and tokens else None,
                usd_per_good_request=counted_cost / good
                if counted_cost is not None and good
                else None,
            )
        )
    return out


def by_stack(all_rows: list[Row]) -> list[Total]:
    """Totals per stack (or target, for runs that name no stack)."""
    return totals(all_rows, lambda r: r.run.target)


def by_month(all_rows: list[Row]) -> list[Total]:
    """Totals per UTC month."""
    return totals(all_rows, lambda r: r.month)


def capacity(run: Run) -> str:
    """``≥ 4 users (11.93 req/s)``: at least, when no heavier step failed."""
    if run.capacity_users is None and run.capacity_rps is None:
        return "none within SLOs"
    bound = "" if run.limit_found else "≥ "
    if run.capacity_users is None:
        return f"{bound}{run.capacity_rps:.2f} req/s"
    rps = f" ({run.capacity_rps:.2f} req/s)" if run.capacity_rps is not None else ""
    return f"{bound}{run.capacity_users} users{rps}"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _usd_each(value: float | None) -> str:
    """A cost per request: a hundredth of a cent is common, so three significant figures."""
    return "—" if value is None else money(value)


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _billed(row: Row) -> str:
    if row.billed_usd is None:
        return "—"
    return _usd(row.billed_usd) + (
        "" if row.billed_status == "final" else f" ({row.billed_status})"
    )


RUN_HEAD = (
    "Run", "Date (UTC)", "Stack or target", "Plan", "Capacity", "GPU-hours",
    "Estimated", "Billed", "$ / M output tokens", "$ / good request",
)  # fmt: skip
TOTAL_HEAD = (
    "Runs", "GPU-hours", "Estimated", "Billed", "$ / M output tokens", "$ / good request",
)  # fmt: skip


def _run_cells(row: Row) -> list[str]:
    run = row.run
    return [
        run.run_id,
        run.started_at.strftime("%Y-%m-%d %H:%M"),
        run.target,
        run.plan,
        capacity(run),
        _hours(run.gpu_hours),
        _usd(run.estimated_usd),
        _billed(row),
        _usd(row.usd_per_million_tokens),
        _usd_each(row.usd_per_good_request),
    ]


def _total_cells(total: Total) -> list[str]:
    return [
        total.key,
        str(total.runs),
        _hours(total.gpu_hours),
        _usd(total.estimated_usd),
        _usd(total.billed_usd),
        _usd(total.usd_per_million_tokens),
        _usd_each(total.usd_per_good_request),
    ]


FOOTNOTE = (
    "Estimated: each run's own estimate (its basis is in its report). Billed: `qwen-stress cost "
    "actuals` (status in brackets until final). $ / M output tokens: billed where known, else "
    "estimated, over the output tokens of the plan at time scale 1; $ / good request likewise, "
    "over the requests that met the SLOs. Capacity: the highest load step within the SLOs (≥: "
    "no heavier step failed)."
)


def _md_table(head: Iterable[str], body: Iterable[list[str]], text_columns: int) -> list[str]:
    head = list(head)
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(head))) + "|",
        *("| " + " | ".join(cells) + " |" for cells in body),
    ]


def markdown(all_rows: list[Row]) -> str:
    """The report as Markdown: runs, totals per stack, totals per month."""
    lines = ["## Cost of load-test runs", ""]
    lines += _md_table(RUN_HEAD, (_run_cells(r) for r in all_rows), 5)
    lines += ["", "### Per stack", ""]
    lines += _md_table(("Stack or target", *TOTAL_HEAD), map(_total_cells, by_stack(all_rows)), 1)
    lines += ["", "### Per month", ""]
    lines += _md_table(("Month", *TOTAL_HEAD), map(_total_cells, by_month(all_rows)), 1)
    lines += ["", FOOTNOTE]
    return "\n".join(lines) + "\n"


CSV_HEAD = (
    "row", "key", "run_id", "started_at", "stack_or_target", "plan", "capacity_users",
    "capacity_rps", "capacity_is_lower_bound", "gpu_hours", "estimated_usd", "billed_usd",
    "billed_status", "runs", "output_tokens", "usd_per_million_output_tokens", "good_requests",
    "usd_per_good_request",
)  # fmt: skip


def _num(value: float | None) -> str:
    """Nine significant figures: a cost per request is often below a millionth of a dollar."""
    return "" if value is None else repr(float(f"{value:.9g}"))


def csv_text(all_rows: list[Row]) -> str:
    """The report as CSV: ``row`` is ``run``, ``stack`` or ``month``; numbers unformatted."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_HEAD, lineterminator="\n", restval="")
    writer.writeheader()
    for r in all_rows:
        run = r.run
        writer.writerow(
            {
                "row": "run",
                "key": run.run_id,
                "run_id": run.run_id,
                "started_at": run.started_at.isoformat(),
                "stack_or_target": run.target,
                "plan": run.plan,
                "capacity_users": "" if run.capacity_users is None else run.capacity_users,
                "capacity_rps": _num(run.capacity_rps),
                "capacity_is_lower_bound": str(not run.limit_found).lower(),
                "gpu_hours": _num(run.gpu_hours),
                "estimated_usd": _num(run.estimated_usd),
                "billed_usd": _num(r.billed_usd),
                "billed_status": r.billed_status or "",
                "runs": 1,
                "output_tokens": _num(run.output_tokens),
                "usd_per_million_output_tokens": _num(r.usd_per_million_tokens),
                "good_requests": _num(run.good_requests),
                "usd_per_good_request": _num(r.usd_per_good_request),
            }
        )
    for kind, groups in (("stack", by_stack(all_rows)), ("month", by_month(all_rows))):
        for t in groups:
            writer.writerow(
                {
                    "row": kind,
                    "key": t.key,
                    "stack_or_target": t.key if kind == "stack" else "",
                    "gpu_hours": _num(t.gpu_hours),
                    "estimated_usd": _num(t.estimated_usd),
                    "billed_usd": _num(t.billed_usd),
                    "runs": t.runs,
                    "usd_per_million_output_tokens": _num(t.usd_per_million_tokens),
                    "usd_per_good_request": _num(t.usd_per_good_request),
                }
            )
    return buffer.getvalue()


def _chart(all_rows: list[Row]) -> Any:
    import plotly.graph_objects as go  # noqa: PLC0415 - plotly loads only for HTML
    from plotly.subplots import make_subplots  # noqa: PLC0415

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    when = [r.run.started_at for r in all_rows]
    names = [f"{r.run.run_id} ({r.run.target})" for r in all_rows]
    fig.add_trace(
        go.Scatter(
            x=when,
            y=[r.run.estimated_usd for r in all_rows],
            name="estimated $",
            mode="markers+lines",
            text=names,
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=when,
            y=[r.billed_usd for r in all_rows],
            name="billed $",
            mode="markers",
            marker={"symbol": "diamond", "size": 10},
            text=names,
        ),
        secondary_y=False,
    )
    fig.add_trace(
        go.Scatter(
            x=when,
            y=[r.run.capacity_users for r in all_rows],
            name="capacity (users)",
            mode="markers+lines",
            line={"dash": "dot"},
            text=names,
        ),
        secondary_y=True,
    )
    fig.update_layout(
        title="Cost against capacity over time",
        template="plotly_white",
        height=420,
        legend={"orientation": "h"},
    )
    fig.update_yaxes(title_text="USD per run", secondary_y=False)
    fig.update_yaxes(title_text="users within the SLOs", secondary_y=True)
    return fig


def _html_table(head: Iterable[str], body: Iterable[list[str]]) -> str:
    esc = html.escape
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><tr>{cells}</tr>{rows}</table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
td:nth-child(-n+5),th:nth-child(-n+5){text-align:left} .meta{color:#59636e;font-size:.9rem}"""


def html_page(all_rows: list[Row]) -> str:
    """The report as one HTML page that opens offline (plotly's JavaScript inlined)."""
    import plotly.io as pio  # noqa: PLC0415 - plotly loads only for HTML

    chart = pio.to_html(
        _chart(all_rows), include_plotlyjs=True, full_html=False, config={"displaylogo": False}
    )
    return "\n".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>qwen-stress cost report</title><style>{_CSS}</style></head><body>",
            "<h1>Cost of load-test runs</h1>",
            _html_table(RUN_HEAD, (_run_cells(r) for r in all_rows)),
            "<h2>Per stack</h2>",
            _html_table(("Stack or target", *TOTAL_HEAD), map(_total_cells, by_stack(all_rows))),
            "<h2>Per month</h2>",
            _html_table(("Month", *TOTAL_HEAD), map(_total_cells, by_month(all_rows))),
            f"<p class='meta'>{html.escape(FOOTNOTE.replace('`', ''))}</p>",
            chart,
            "</body></html>",
        ]
    )


RENDER: dict[Format, Callable[[list[Row]], str]] = {
    "md": markdown,
    "csv": csv_text,
    "html": html_page,
}
