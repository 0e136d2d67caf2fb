"""The scoring report rendered in real headless Chromium (Debian's chromium, driven by Playwright).

Set STANCE_REPORT_SCREENSHOT=docs/report.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from support import REPO, tiny_model
from pipeline.cli import app
from pipeline.schema import load_schema
from pipeline.segment import segment_text

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                         "(apt-get install -y chromium)")


def test_report_renders_offline_with_charts_and_escaped_text(tmp_path, seed_files):
    from playwright.sync_api import sync_playwright

    paragraphs = [p for text in seed_files.values() for a in segment_text(text) for p in a.paragraphs]
    model = tiny_model(tmp_path / "model", paragraphs)
    outlets = ["London Daily", "Asia Review", "Wire <Agency>"]
    rows = pd.DataFrame({
        "id": [f"p{i}" for i in range(len(paragraphs) + 1)],
        "text": paragraphs + ["An injected row whose source name carries markup that must stay inert text."],
        "source": [outlets[i % 3] for i in range(len(paragraphs))] + ['<script>alert("x")</script>'],
        "date": [f"2025-{1 + i % 6:02d}-15" for i in range(len(paragraphs) + 1)],
    })
    src = tmp_path / "paragraphs.parquet"
    rows.to_parquet(src)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(src), "--out", str(out), "--model", str(model)])
    assert result.exit_code == 0, result.output
    report = out / "report.html"
    schema = load_schema(REPO / "labels" / "schema.yaml")

    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(report.as_uri())
        for task in schema.task_names:
            for chart in ("distribution", "sources", "time"):
                svg = page.locator(f'svg[data-chart="{chart}-{task}"]')
                assert svg.count() == 1
                assert svg.locator("rect").count() >= 1
                box = svg.bounding_box()
                assert box and box["width"] > 300 and box["height"] > 20
            for label in schema.labels(task):
                table = page.locator(f'table.top[data-task="{task}"][data-class="{label}"]')
                if table.count():
                    assert table.locator("tbody tr").count() >= 1
            assert page.locator(f'svg[data-chart="sources-{task}"] text', has_text="Wire <Agency>").count() == 1
        assert page.locator("script").count() == 0
        assert page.locator('svg[data-chart^="sources-"] text', has_text='<script>alert("x")</script>').count() >= 1
        assert not dialogs
        page.screenshot(path=str(os.environ.get("STANCE_REPORT_SCREENSHOT") or tmp_path / "report.png"))
        browser.close()
    assert requests == [report.as_uri()], "the report must load nothing besides itself"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["paragraphs"] == len(rows)
