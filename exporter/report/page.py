"""The report's HTML: one self-contained page, inline CSS and SVG, no script, nothing fetched.

Every number a reader may want to check carries ``data-key`` (and ``data-exact`` for money) so
that tools and tests can read it back without parsing the displayed text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any

from . import svg
from .aggregate import Diff, bin_edges

Link = Callable[[str], tuple[str, bool]]  # a storage key -> (href or text, whether it is an href)

# nothing may load: a stray external reference would be blocked (and show as a console error)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2430;
background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header a{color:#9cc3ff}main{padding:8px 28px 40px;max-width:1180px}
section.source{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:4px 22px 18px;margin:20px 0}
h2{font-size:20px;margin:16px 0 2px}h3{font-size:16px;margin:22px 0 2px;border-top:1px solid #eceff3;padding-top:14px}
h4{font-size:14px;margin:12px 0 4px}p.what{margin:2px 0 10px;color:#4a5466}p.empty{color:#6b7585;font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;border:1px solid #eceff3;border-radius:6px;padding:6px 8px}
figcaption{font-size:12px;color:#4a5466}svg.chart{display:block;max-width:100%;height:auto}
svg .tick{font-size:10px;fill:#5b6576}svg .legend{font-size:11px;fill:#1d2430}svg .grid{stroke:#e6e9ee}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #eceff3;
text-align:left;vertical-align:top}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px;background:#f0f2f5;padding:1px 4px;border-radius:3px}.bad{color:#b3261e;font-weight:600}
details summary{cursor:pointer;color:#2f6db5;margin:4px 0}
"""


@dataclass
class CurrencyHistory:
    """Per snapshot date and currency: balance, credit (balances) and equity (equity) sums."""

    dates: list[str]
    totals: dict[str, dict[str, dict[str, Decimal | None]]]  # date -> currency -> metric -> sum

    def currencies(self) -> list[str]:
        return sorted({c for by_currency in self.totals.values() for c in by_currency})


@dataclass
class Comparison:
    latest: str
    previous: str
    ids_from: str  # the dataset whose ids name the accounts
    accounts: Diff
    changes: dict[str, Diff] = field(default_factory=dict)  # "balance"/"equity" -> diff
    histogram: dict[str, dict[int, int]] = field(default_factory=dict)  # currency -> bin -> accounts


@dataclass
class SourceView:
    source: str
    dates: list[str]
    rows: dict[str, list[int | None]]  # dataset folder -> rows per date
    currency: CurrencyHistory
    comparison: Comparison | None
    histogram_date: str | None
    histogram: dict[str, dict[int, int]]
    quality: list[dict[str, Any]]  # one per (date, dataset) with something to say
    runs: list[dict[str, Any]]  # one per run, newest first


def money(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _cell(value: Decimal | None, key: str) -> str:
    exact = "" if value is None else f' data-exact="{value}"'
    return f'<td class="num" data-key="{escape(key)}"{exact}>{money(value)}</td>'


def _count(value: int | None, key: str) -> str:
    shown = "—" if value is None else f"{value:,}"
    return f'<td class="num" data-key="{escape(key)}">{shown}</td>'


def _table(head: Sequence[str], rows: Iterable[str], numeric: Sequence[int] = ()) -> str:
    cells = "".join(f'<th{" class=num" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(title: str, where: str, generated: datetime, days: int, views: list[SourceView],
           link: Link) -> str:
    nav = " · ".join(f'<a href="#source-{escape(v.source)}">{escape(v.source)}</a>' for v in views)
    body = "".join(_source(v, link) for v in views)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><div>{escape(where)} · the last {days} snapshots at most · "
        f"made {escape(generated.strftime('%Y-%m-%d %H:%M UTC'))} · {nav}</div></header>"
        f"<main>{body}</main></body></html>\n"
    )


def _source(view: SourceView, link: Link) -> str:
    s = view.source
    span = view.dates[0] if len(view.dates) == 1 else f"{view.dates[0]} to {view.dates[-1]}"
    parts = [
        f'<section class="source" id="source-{escape(s)}" data-source="{escape(s)}">',
        f"<h2>{escape(s)}</h2><p class=what>{len(view.dates)} snapshot(s), {escape(span)}.</p>",
        _rows_section(view), _currency_section(view), _compare_section(view),
        _quality_section(view, link), _run_section(view), "</section>",
    ]
    return "".join(parts)


# ---- 1. rows


def _rows_section(view: SourceView) -> str:
    out = ["<h3>1. Rows per snapshot</h3>",
           "<p class=what>How many rows each dataset held in every snapshot, from the manifests: a sudden "
           "drop or jump is the first sign that something changed upstream.</p><div class=grid>"]
    for folder, counts in view.rows.items():
        chart = svg.line_chart(view.dates, [(folder, [None if c is None else float(c) for c in counts])],
                               label=f"{view.source} {folder}: rows per snapshot", width=340, height=170,
                               zero=True)
        latest = counts[-1]
        out.append(f"<figure>{chart}<figcaption>{escape(folder)}: "
                   f"{'—' if latest is None else f'{latest:,}'} rows in the latest snapshot</figcaption></figure>")
    out.append("</div>")
    rows = []
    for folder, counts in view.rows.items():
        cells = "".join(_count(c, f"{view.source}/{d}/{folder}/rows") for d, c in zip(view.dates, counts, strict=True))
        rows.append(f"<tr><td>{escape(folder)}</td>{cells}</tr>")
    dates = list(view.dates)
    out.append(f"<details><summary>rows of every snapshot</summary>"
               f"{_table(['dataset', *dates], rows, range(1, len(dates) + 1))}</details>")
    return "".join(out)


# ---- 2. money per currency

METRICS = (("balance", "balance"), ("equity", "equity"), ("credit", "credit"))


def _currency_section(view: SourceView) -> str:
    history = view.currency
    out = ["<h3>2. Totals per currency</h3>",
           "<p class=what>The sum of every account's balance, equity and credit per currency in each snapshot "
           "(exact decimal sums, shown rounded to cents).</p>"]
    currencies = history.currencies()
    if not currencies:
        return "".join([*out, "<p class=empty>No balances or equity in these snapshots.</p>"])
    out.append("<div class=grid>")
    for currency in currencies:
        series = []
        for metric, name in METRICS:
            points = []
            for d in history.dates:
                value = history.totals.get(d, {}).get(currency, {}).get(metric)
                points.append(None if value is None else float(value))
            if any(p is not None for p in points):
                series.append((name, points))
        chart = svg.line_chart(history.dates, series, label=f"{view.source} {currency}: totals per snapshot",
                               width=340, height=180)
        out.append(f"<figure>{chart}<figcaption>{escape(currency)}</figcaption></figure>")
    out.append("</div>")
    latest = history.dates[-1]
    out.append(f"<h4>Latest snapshot ({escape(latest)})</h4>")
    out.append(_currency_table(view.source, history, [latest]))
    if len(history.dates) > 1:
        out.append("<details><summary>every snapshot</summary>"
                   f"{_currency_table(view.source, history, list(reversed(history.dates)))}</details>")
    return "".join(out)


def _currency_table(source: str, history: CurrencyHistory, dates: list[str]) -> str:
    rows = []
    for d in dates:
        for currency, sums in history.totals.get(d, {}).items():
            cells = "".join(_cell(sums.get(m), f"{source}/{d}/{currency}/{m}") for m, _ in METRICS)
            rows.append(f"<tr><td>{escape(d)}</td><td>{escape(currency)}</td>{cells}</tr>")
    return _table(["snapshot", "currency", "balance", "equity", "credit"], rows, (2, 3, 4))


# ---- 3. latest against previous


def _compare_section(view: SourceView) -> str:
    s = view.source
    out = ["<h3>3. Latest snapshot against the one before</h3>",
           "<p class=what>Accounts that appeared or disappeared, the largest moves of balance and equity, and "
           "how equity is spread over the accounts of the latest snapshot.</p>"]
    comparison = view.comparison
    if comparison is None:
        only = view.dates[-1] if view.dates else "?"
        out.append(f"<p class=empty data-key=\"{escape(s)}/compare\">Only one snapshot ({escape(only)}): nothing to "
                   "compare yet. The next run's snapshot will be compared with it.</p>")
    else:
        accounts = comparison.accounts
        out.append(f"<h4>Accounts, {escape(comparison.previous)} → {escape(comparison.latest)} "
                   f"(ids of {escape(comparison.ids_from)})</h4>")
        out.append(_table(["", "accounts", "ids (smallest first)"], [
            f"<tr><td>added</td>{_count(accounts.added, f'{s}/accounts/added')}"
            f"<td>{_ids(accounts.added_sample, accounts.added)}</td></tr>",
            f"<tr><td>removed</td>{_count(accounts.removed, f'{s}/accounts/removed')}"
            f"<td>{_ids(accounts.removed_sample, accounts.removed)}</td></tr>",
            f"<tr><td>in both</td>{_count(accounts.kept, f'{s}/accounts/kept')}<td></td></tr>",
        ], (1,)))
        out.append("<div class=grid>")
        for metric, changes in comparison.changes.items():
            out.append(f"<div><h4>The {len(changes.changes)} largest {metric} changes</h4>")
            if not changes.changes:
                out.append(f"<p class=empty>No account's {metric} changed.</p></div>")
                continue
            rows = []
            for rank, c in enumerate(changes.changes, 1):
                rows.append(f"<tr><td>{escape(str(c.key))}</td><td>{escape(c.currency)}</td>"
                            f"{_cell(c.previous, f'{s}/{metric}/previous/{rank}')}"
                            f"{_cell(c.latest, f'{s}/{metric}/latest/{rank}')}"
                            f"{_cell(c.change, f'{s}/{metric}/change/{rank}')}</tr>")
            out.append(_table(["account", "currency", comparison.previous, comparison.latest, "change"], rows,
                              (2, 3, 4)) + "</div>")
        out.append("</div>")
    out.append(_histograms(view))
    return "".join(out)


def _ids(sample: list[Any], total: int) -> str:
    if not sample:
        return ""
    more = f" and {total - len(sample):,} more" if total > len(sample) else ""
    return ", ".join(f"<code>{escape(str(i))}</code>" for i in sample) + more


def _histograms(view: SourceView) -> str:
    if not view.histogram:
        return ""
    out = [f"<h4>Equity of the accounts on {escape(view.histogram_date or '')}</h4>"
           "<p class=what>Accounts per range of equity, per currency; ranges grow by a factor of 1.78 "
           "(four per power of ten) so cents and billions fit one axis.</p><div class=grid>"]
    by_size = sorted(view.histogram.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    for currency, bins in by_size[:6]:
        low, high = min(bins), max(bins)
        ids = list(range(low, high + 1))
        labels = [_bin_label(b) for b in ids]
        every = max(1, len(ids) // 8)
        chart = svg.bar_chart(labels, [bins.get(b, 0) for b in ids], width=420, height=190, tick_every=every,
                              label=f"{view.source} {currency}: accounts per equity range")
        total = sum(bins.values())
        out.append(f"<figure>{chart}<figcaption>{escape(currency)}: <span data-key=\"{escape(view.source)}/"
                   f"{escape(currency)}/equity-accounts\">{total:,}</span> accounts</figcaption></figure>")
    out.append("</div>")
    return "".join(out)


def _bin_label(bin_id: int) -> str:
    low, _ = bin_edges(bin_id)
    if bin_id == 0:
        return "±1"
    return ("-" if bin_id < 0 else "") + svg.compact(float(f"{low:.3g}"))


# ---- 4. data quality


def _quality_section(view: SourceView, link: Link) -> str:
    out = ["<h3>4. Data quality</h3>",
           "<p class=what>Values that could not be converted (rejected, their records kept in "
           "<code>_rejects.jsonl</code>), columns the schema did not know (drift), null tokens such as "
           "<code>N/A</code> read as null, and fields withheld as credentials.</p>"]
    if not view.quality:
        return "".join([*out, "<p class=empty>Nothing to report: no rejects, drift, null tokens or withheld "
                        "fields in these snapshots.</p>"])
    rows = []
    for q in view.quality:
        files = [_link(link, q["partition"], "partition")]
        if q["rejects_file"]:
            files.append(_link(link, q["rejects_file"], "_rejects.jsonl"))
        rejected = q["rejected_rows"]
        rows.append(
            f"<tr><td>{escape(q['date'])}</td><td>{escape(q['dataset'])}</td>"
            f"<td class=\"num{' bad' if rejected else ''}\" data-key=\"{escape(view.source)}/{escape(q['date'])}/"
            f"{escape(q['dataset'])}/rejected\">{rejected:,}</td>"
            f"<td>{_pairs(q['rejects_by_column'])}</td><td>{_pairs(q['drift'])}</td>"
            f"<td>{_pairs(q['null_tokens'])}</td><td>{', '.join(escape(w) for w in q['withheld'])}</td>"
            f"<td>{' · '.join(files)}</td></tr>"
        )
    out.append(_table(["snapshot", "dataset", "rejected rows", "rejects by column", "drift columns (rows)",
                       "null tokens", "withheld fields", "where"], rows, (2,)))
    return "".join(out)


def _link(link: Link, key: str, text: str) -> str:
    target, is_href = link(key)
    if is_href:
        return f'<a href="{escape(target)}">{escape(text)}</a>'
    return f"<code>{escape(target)}</code>"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"<code>{escape(str(k))}</code>&nbsp;{escape(_plain(v))}" for k, v in values.items())


def _plain(value: Any) -> str:
    if isinstance(value, int | float):
        return f"{value:,}"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


# ---- 5. the run

RUN_FIELDS = ("requests", "retries", "http_429", "errors", "peak_in_flight", "bytes_received", "logins")


def _run_section(view: SourceView) -> str:
    s = view.source
    out = ["<h3>5. The runs</h3>",
           "<p class=what>What each run cost and whether the API pushed back: requests, retries, answers "
           "429 (rate limited), errors by kind, the most requests in flight at once, and the time from its "
           "first start to publishing.</p>"]
    runs = view.runs
    if len(runs) > 1:
        dates = [r["date"] for r in reversed(runs)]
        chart = svg.line_chart(dates, [
            ("requests", [float(r["requests"].get("requests", 0)) for r in reversed(runs)]),
            ("retries", [float(r["requests"].get("retries", 0)) for r in reversed(runs)]),
            ("429s", [float(r["requests"].get("http_429", 0)) for r in reversed(runs)]),
        ], label=f"{s}: requests, retries and 429s per run", width=520, height=190, zero=True)
        out.append(f"<div class=grid><figure>{chart}<figcaption>requests, retries and 429s per run"
                   "</figcaption></figure></div>")
    rows = []
    for r in runs:
        req = r["requests"]
        errors = req.get("errors") or {}
        extra = {k: v for k, v in req.items() if k not in RUN_FIELDS}
        key = f"{s}/{r['run_id']}"
        rows.append(
            f"<tr><td>{escape(r['date'])}</td><td><code>{escape(r['run_id'])}</code></td>"
            f"<td class=num>{_seconds(r['seconds'])}</td>"
            f"{_count(req.get('requests'), key + '/requests')}{_count(req.get('retries'), key + '/retries')}"
            f"<td class=\"num{' bad' if req.get('http_429') else ''}\" data-key=\"{escape(key)}/http_429\">"
            f"{req.get('http_429', 0):,}</td>"
            f"<td>{_pairs(errors) or '0'}</td>{_count(req.get('peak_in_flight'), key + '/peak_in_flight')}"
            f"<td class=num>{_megabytes(req.get('bytes_received'))}</td>"
            f"<td class=num>{r['resumed']}</td><td>{_pairs(extra | r['settings'])}</td></tr>"
        )
    out.append(_table(["snapshot", "run", "duration", "requests", "retries", "429s", "errors by kind",
                       "peak in flight", "received", "resumed", "more (settled rates, settings)"], rows,
                      (2, 3, 4, 5, 7, 8, 9)))
    return "".join(out)


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _megabytes(value: Any) -> str:
    return "—" if not isinstance(value, int | float) else f"{value / 1e6:,.1f} MB"
