"""One self-contained HTML report (inline CSS and SVG, no script, no network) for a scoring run.

`ReportStats` is fed part by part, so the report of a million paragraphs is built in flat
memory: counts per task and class, per source, per month, and a small heap of the strongest
paragraphs per class. Every piece of input text is HTML-escaped.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from datetime import datetime, timezone
from html import escape

import pandas as pd

from pipeline.scoring.core import proba_column

PALETTE = ["#1b7837", "#c2352b", "#8c8c8c", "#2166ac", "#e08214", "#762a83", "#35978f", "#bf812d"]
MAX_SOURCES = 15


class ReportStats:
    def __init__(self, schema, top_k: int = 5):
        self.schema = schema
        self.top_k = top_k
        self.paragraphs = 0
        self.articles = 0
        self.documents: set[str] = set()
        self.by_class = {t: Counter() for t in schema.task_names}
        self.article_stance = {t: Counter() for t in schema.task_names}
        self.by_source = {t: defaultdict(Counter) for t in schema.task_names}
        self.by_month = {t: defaultdict(Counter) for t in schema.task_names}
        self.top: dict[tuple[str, str], list] = defaultdict(list)
        self._tie = 0

    def update(self, paragraphs: pd.DataFrame, articles: pd.DataFrame) -> None:
        self.paragraphs += len(paragraphs)
        self.articles += len(articles)
        self.documents.update(articles["doc_id"].unique().tolist())
        sources = paragraphs["source"].fillna("(unknown)")
        months = pd.to_datetime(paragraphs["date"], errors="coerce", utc=True, format="mixed").dt.strftime("%Y-%m")
        for task in self.schema.task_names:
            self.by_class[task].update(paragraphs[task].tolist())
            self.article_stance[task].update(articles[f"{task}__stance"].tolist())
            for (source, label), n in pd.crosstab(sources, paragraphs[task]).stack().items():
                if n:
                    self.by_source[task][source][label] += int(n)
            dated = months.notna()
            if dated.any():
                for (month, label), n in pd.crosstab(months[dated], paragraphs[task][dated]).stack().items():
                    if n:
                        self.by_month[task][month][label] += int(n)
            for label in self.schema.labels(task):
                column = proba_column(task, label)
                hits = paragraphs[paragraphs[task] == label].nlargest(self.top_k, column)
                heap = self.top[(task, label)]
                for row in hits[["id", "doc_id", "source", "text", column]].itertuples(index=False):
                    self._tie += 1
                    item = (float(row[4]), -self._tie, row[0], row[1], row[2], row[3])
                    if len(heap) < self.top_k:
                        heapq.heappush(heap, item)
                    else:
                        heapq.heappushpop(heap, item)


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _legend(labels: list[str]) -> str:
    items = "".join(f'<span class="key"><i style="background:{_color(i)}"></i>{escape(c)}</span>'
                    for i, c in enumerate(labels))
    return f'<div class="legend">{items}</div>'


def stacked_bars(rows: list[tuple[str, Counter]], labels: list[str], chart_id: str, normalise: bool) -> str:
    """Horizontal stacked bars, one per row; a <title> on each segment gives the exact count."""
    width, label_w, bar_h, gap = 760, 190, 22, 8
    plot_w = width - label_w - 70
    height = len(rows) * (bar_h + gap) + gap
    parts = [f'<svg class="chart" data-chart="{escape(chart_id)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    biggest = max((sum(c.values()) for _, c in rows), default=1) or 1
    for r, (name, counts) in enumerate(rows):
        y = gap + r * (bar_h + gap)
        total = sum(counts.values())
        scale = plot_w / (total if normalise else biggest) if total else 0
        x = label_w
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.7}" text-anchor="end">{escape(str(name)[:30])}</text>')
        for i, label in enumerate(labels):
            n = counts.get(label, 0)
            if not n:
                continue
            w = n * scale
            share = 100 * n / total
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{_color(i)}">'
                         f'<title>{escape(str(name))} · {escape(label)}: {n} ({share:.0f}%)</title></rect>')
            if w > 34:
                parts.append(f'<text class="in" x="{x + w / 2:.1f}" y="{y + bar_h * 0.7}" '
                             f'text-anchor="middle">{share:.0f}%</text>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + bar_h * 0.7}">{total}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _top_table(stats: ReportStats, task: str, label: str) -> str:
    items = sorted(stats.top.get((task, label), []), reverse=True)
    if not items:
        return f'<p class="empty">No paragraph was labelled <b>{escape(label)}</b>.</p>'
    rows = "".join(f"<tr><td class=\"p\">{p:.3f}</td><td>{escape(text)}</td>"
                   f"<td class=\"src\">{escape(str(source or ''))}<br><small>{escape(str(doc_id))}</small></td></tr>"
                   for p, _, _pid, doc_id, source, text in items)
    return (f'<table class="top" data-task="{escape(task)}" data-class="{escape(label)}">'
            f"<thead><tr><th>p({escape(label)})</th><th>Paragraph</th><th>Source / document</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _task_section(stats: ReportStats, task: str) -> str:
    labels = stats.schema.labels(task)
    question = stats.schema.tasks[task].question
    html = [f'<section class="task" id="task-{escape(task)}"><h2>{escape(task)}</h2><p class="q">{escape(question)}</p>',
            "<h3>Stance distribution</h3>", _legend(labels),
            stacked_bars([("paragraphs", stats.by_class[task]), ("articles (overall stance)", stats.article_stance[task])],
                         labels, f"distribution-{task}", normalise=True)]
    sources = sorted(stats.by_source[task].items(), key=lambda kv: -sum(kv[1].values()))
    shown = f"top {MAX_SOURCES} of {len(sources)} sources" if len(sources) > MAX_SOURCES else f"{len(sources)} sources"
    html += [f"<h3>By source <small>(paragraphs; {shown})</small></h3>",
             stacked_bars(sources[:MAX_SOURCES], labels, f"sources-{task}", normalise=True)]
    months = sorted(stats.by_month[task].items())
    if months:
        html += ["<h3>Over time <small>(paragraphs per month)</small></h3>",
                 stacked_bars(months, labels, f"time-{task}", normalise=False)]
    else:
        html.append('<p class="empty">No dates in the input, so no timeline.</p>')
    html.append("<h3>Strongest paragraphs per class</h3>")
    for label in labels:
        html += [f"<h4>{escape(label)} <small>{escape(stats.schema.tasks[task].classes[label].definition)}</small></h4>",
                 _top_table(stats, task, label)]
    html.append("</section>")
    return "".join(html)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
small{color:#666;font-weight:normal}.q{color:#444;font-style:italic}
svg.chart{display:block;max-width:100%;height:auto;font-size:12px}svg.chart text.in{fill:#fff;font-weight:600}
.legend{margin:.3em 0}.key{margin-right:1.2em;white-space:nowrap}.key i{display:inline-block;width:.9em;height:.9em;margin-right:.35em;vertical-align:-.1em}
table{border-collapse:collapse;width:100%;margin:.4em 0 1em}td,th{border:1px solid #ddd;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f4f4f4}td.p{font-variant-numeric:tabular-nums;width:5em}td.src{width:14em;word-break:break-all}
.stats td:first-child{width:16em}.empty{color:#777}.problems td{font-family:ui-monospace,monospace;font-size:12px}
"""


def render(stats: ReportStats, summary: dict) -> str:
    problems = summary.get("skipped", [])
    head = [("Documents", len(stats.documents)), ("Articles", stats.articles), ("Paragraphs", stats.paragraphs),
            ("Skipped inputs", len(problems)), ("Model", summary.get("model", "")),
            ("Generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in head)
    body = [f"<h1>Stance report</h1><table class=\"stats\">{rows}</table>",
            "<p>Article stance = the class with the highest mean probability over the article's paragraphs "
            "(confidence = that mean); shares count paragraphs by predicted class.</p>"]
    body += [_task_section(stats, task) for task in stats.schema.task_names]
    if problems:
        items = "".join(f"<tr><td>{escape(p['path'])}{'' if p.get('line') is None else ':' + str(p['line'])}</td>"
                        f"<td>{escape(p['reason'])}</td></tr>" for p in problems[:500])
        body.append(f'<h2>Skipped inputs</h2><table class="problems"><thead><tr><th>Where</th><th>Reason</th></tr>'
                    f"</thead><tbody>{items}</tbody></table>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Stance report</title>"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
