"""The billed-against-estimated section that ``cost actuals`` adds to a run's reports.

One row per Cost Explorer service, with the parts of the run's estimate that service bills
(GPU and load-generator nodes under EC2 compute, the control plane under EKS, NAT gateway hours
under "EC2 - Other"). A ``cost-actuals.json`` written before estimates had parts still renders.
The section sits between markers in ``report.md`` and ``report.html``: asking again replaces it,
and ``qwen-stress report RUN_DIR`` (which rewrites both reports) puts it back from
``cost-actuals.json``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

BEGIN = "<!-- BEGIN cost-actuals -->"
END = "<!-- END cost-actuals -->"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
MD_ANCHOR = "<details><summary>Metric definitions"
HTML_ANCHOR = "<h2>Metric definitions</h2>"


def usd(value: float | None) -> str:
    """``$1.2346``, ``-$0.9050`` (run costs are small: four decimals), or a dash when unknown."""
    if value is None:
        return "—"
    text = f"${abs(value):,.4f}"
    return f"-{text}" if round(value, 4) < 0 else text


def _status_line(actuals: dict[str, Any]) -> str:
    status = actuals["status"]
    line = f"Status: **{status}** ({actuals['status_text']})"
    if actuals.get("ask_again_after"):
        line += f"; ask again after {actuals['ask_again_after']}"
    return line + "."


def _scope(actuals: dict[str, Any]) -> str:
    window = actuals["window"]
    tags = [f"`{actuals['run_tag']['filter']}`"]
    if actuals.get("stack_tags"):
        tags.append(f"`{actuals['stack_tags']['filter']}` (whole days)")
    return (
        f"Spend tagged {' and '.join(tags)} from {window['start']} to before "
        f"{window['end_exclusive']} (UTC, {actuals['metric']}), queried {actuals['queried_at']}."
    )


def _untagged(actuals: dict[str, Any]) -> str:
    parts = ", ".join(
        f"{service} {usd(amount)}"
        for service, amount in sorted(actuals["untagged"]["by_service"].items())
        if amount
    )
    return (
        f"Untagged spend of the same services on those days (no `project` tag, so no stack's): "
        f"{usd(actuals['untagged_usd'])}" + (f" ({parts})" if parts else "") + "."
    )


def _parts(row: dict[str, Any]) -> str:
    """``GPU nodes $0.1234, Load-generator nodes $0.0456``: what the row's estimate is made of."""
    parts = row.get("parts") or []
    return ", ".join(f"{p['resource']} {usd(p['usd'])}" for p in parts) or "—"


def _rows(actuals: dict[str, Any]) -> list[list[str]]:
    stack = actuals.get("stack_tags") is not None
    rows = []
    for r in actuals["reconciliation"]:
        row = [r["service"], _parts(r), usd(r["estimated_usd"]), usd(r["billed_run_usd"])]
        row += [usd(r["billed_stack_usd"])] if stack else []
        row.append(usd(r["difference_usd"]))
        rows.append(row)
    estimated = actuals["estimate"]["usd"]
    total = ["**Total**", "", usd(estimated), usd(_sum(actuals, "billed_run_usd"))]
    total += [usd(_sum(actuals, "billed_stack_usd"))] if stack else []
    total.append(usd(None if estimated is None else actuals["billed_usd"] - estimated))
    return [*rows, total]


def _sum(actuals: dict[str, Any], key: str) -> float:
    return sum(r[key] or 0.0 for r in actuals["reconciliation"])


def _header(actuals: dict[str, Any]) -> list[str]:
    head = ["Service", "Estimated parts", "Estimated", "Billed (run-id tag)"]
    head += ["Billed (stack tags)"] if actuals.get("stack_tags") is not None else []
    return [*head, "Billed - estimated"]


def _basis(actuals: dict[str, Any]) -> str:
    estimate = actuals["estimate"]
    prices = f" Prices: {estimate['prices']}." if estimate.get("prices") else ""
    return f"Estimate basis: {estimate['basis']}.{prices}"


def _notes(actuals: dict[str, Any]) -> list[str]:
    """The run's notes, and what the table cannot set side by side."""
    notes = list(actuals.get("notes", []))
    if actuals.get("stack_tags") is not None:
        notes.append(
            "The stack tags' spend covers whole days of the platform, the estimate only the "
            "run's share of it: billed above estimated there is the rest of those days."
        )
    loose = [
        p for p in actuals["estimate"].get("parts") or [] if p.get("service") is None and p["usd"]
    ]
    if loose:
        what = ", ".join(f"{p['resource']} {usd(p['usd'])} ({p['detail']})" for p in loose)
        notes.append(
            f"Not set against a service (priced by the user; no AWS service is known): {what}."
        )
    return notes


def markdown(actuals: dict[str, Any]) -> str:
    """The section for ``report.md`` (and the terminal): status, table, untagged spend."""
    head = _header(actuals)
    lines = [
        "### Billed cost (AWS Cost Explorer)",
        "",
        _status_line(actuals),
        "",
        _scope(actuals),
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 2),
        *("| " + " | ".join(row) + " |" for row in _rows(actuals)),
        "",
        _basis(actuals),
        "",
        _untagged(actuals),
    ]
    lines += [f"\n> {note}" for note in _notes(actuals)]
    return "\n".join(lines)


def html_section(actuals: dict[str, Any]) -> str:
    """The same section for ``report.html``."""
    esc = html.escape

    def plain(text: str) -> str:
        return esc(text.replace("**", "").replace("`", ""))

    cells = "".join(f"<th>{esc(h)}</th>" for h in _header(actuals))
    body = "".join(
        "<tr>" + "".join(f"<td>{plain(c)}</td>" for c in row) + "</tr>" for row in _rows(actuals)
    )
    notes = "".join(f"<div class='warn'>{esc(n)}</div>" for n in _notes(actuals))
    return (
        "<h2>Billed cost (AWS Cost Explorer)</h2>"
        f"<p>{plain(_status_line(actuals))}</p><p class='meta'>{plain(_scope(actuals))}</p>"
        f"<table><tr>{cells}</tr>{body}</table>"
        f"<p class='meta'>{esc(_basis(actuals))}</p>"
        f"<p>{plain(_untagged(actuals))}</p>{notes}"
    )


def _place(text: str, block: str, anchors: tuple[str, ...]) -> str:
    """Replace the marked block, else insert it before the first anchor found, else append it."""
    marked = f"{BEGIN}\n{block}\n{END}\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        return before + marked + rest.split(END, 1)[1].lstrip("\n")
    for anchor in anchors:
        i = text.find(anchor)
        if i >= 0:
            return text[:i] + marked + "\n" + text[i:]
    return text.rstrip("\n") + "\n\n" + marked


def _rewrite(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def add_to_reports(run_dir: Path, actuals: dict[str, Any]) -> list[Path]:
    """Put the section into the run's ``report.md`` and ``report.html``; return those updated."""
    done = []
    md = run_dir / REPORT_MD
    if md.exists():
        _rewrite(md, _place(md.read_text(encoding="utf-8"), markdown(actuals), (MD_ANCHOR,)))
        done.append(md)
    page = run_dir / REPORT_HTML
    if page.exists():
        text = page.read_text(encoding="utf-8")
        _rewrite(page, _place(text, html_section(actuals), (HTML_ANCHOR, "</body>")))
        done.append(page)
    return done
