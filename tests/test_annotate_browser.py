"""The labelling app in real headless Chromium (Debian's chromium, driven by Playwright).

Set STANCE_SCREENSHOT=docs/annotate.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from pipeline.schema import load_schema
from support import REPO, SCRIPT_TEXT, Server, add_annotator, make_project, wait_for_mirror

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                         "(apt-get install -y chromium)")]
SCHEMA = load_schema(REPO / "labels" / "schema.yaml")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("annotate_browser"), script_paragraph=True)
    token = add_annotator(root, "alice")
    server = Server(root).start()
    yield server, token
    server.stop()


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        yield page
        browser.close()


def sign_in(page, url: str, token: str) -> None:
    page.goto(url)
    page.fill("#name", "alice")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#paragraph:not(:empty)")


def test_wrong_token_is_refused(app, page):
    server, token = app
    page.goto(server.url)
    page.fill("#name", "alice")
    page.fill("#token", token + "x")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin-error:not(:empty)")
    assert page.is_visible("#signin") and not page.is_visible("#work")


def test_label_with_keyboard_reload_and_continue(app, page, tmp_path):
    server, token = app
    sign_in(page, server.url, token)
    # the only on-topic paragraph comes first; it holds markup, which must show as text and never run
    first = page.eval_on_selector("#paragraph", "el => el.dataset.paragraphId")
    assert first == "p00"
    assert page.text_content("#paragraph") == SCRIPT_TEXT
    assert page.eval_on_selector("#paragraph", "el => el.children.length") == 0
    assert page.evaluate("window.__pwned") is None
    assert page.text_content("#title") == "Article 0: Russia and China"
    assert page.text_content("#next").startswith("Analysts note")  # article context

    chosen = {task: SCHEMA.tasks[task].classes[cls] for task, cls in
              zip(SCHEMA.task_names, [SCHEMA.labels(t)[i % 3] for i, t in enumerate(SCHEMA.task_names)])}
    for task, definition in chosen.items():
        page.keyboard.press(definition.key)
        page.wait_for_selector(f"text=Saved {task}")
    page.wait_for_function("document.querySelector('#paragraph').dataset.paragraphId !== 'p00'")
    offered = page.eval_on_selector("#paragraph", "el => el.dataset.paragraphId")

    page.reload()
    page.wait_for_selector("#paragraph:not(:empty)")
    assert page.eval_on_selector("#paragraph", "el => el.dataset.paragraphId") == offered
    assert page.text_content("#progress").startswith("1 labelled by you")
    mirror = server.root / "labels" / "annotations.jsonl"
    expected = {("p00", task, label) for task, label in
                zip(SCHEMA.task_names, [SCHEMA.labels(t)[i % 3] for i, t in enumerate(SCHEMA.task_names)])}
    saved = {(r["paragraph_id"], r["task"], r["label"]) for r in map(json.loads, wait_for_mirror(
        mirror, lambda lines: len(lines) >= len(expected))) if r["annotator"] == "alice"}
    assert expected <= saved

    # the next paragraph gets a note; undo takes the last label back
    task = SCHEMA.task_names[0]
    page.fill("#note", "hedged wording")
    page.click("#paragraph")  # leave the text box so keys label again
    page.keyboard.press(SCHEMA.tasks[task].classes[SCHEMA.labels(task)[1]].key)
    page.wait_for_selector(f"text=Saved {task}")
    page.wait_for_selector(".choice.selected")
    noted = {"paragraph_id": offered, "task": task, "label": SCHEMA.labels(task)[1], "annotator": "alice",
             "rationale": "", "note": "hedged wording"}
    assert noted in map(json.loads, wait_for_mirror(mirror, lambda lines: noted in map(json.loads, lines)))
    page.screenshot(path=str(os.environ.get("STANCE_SCREENSHOT") or tmp_path / "annotate.png"))
    page.keyboard.press("Backspace")
    page.wait_for_selector("text=Undone")
    assert page.query_selector(".choice.selected") is None
    assert not any(offered in line for line in wait_for_mirror(
        mirror, lambda lines: not any(offered in line for line in lines)))
