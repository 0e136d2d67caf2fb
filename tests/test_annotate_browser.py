"""The labelling app in real headless Chromium (Debian's chromium, driven by Playwright).

Set STANCE_SCREENSHOT=docs/annotate.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from pipeline.schema import load_schema
from support import REPO, SCRIPT_TEXT, Server, add_annotator, make_project, seed_labels, wait_for_mirror, wait_for_ranking

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                         "(apt-get install -y chromium)")]
SCHEMA = load_schema(REPO / "labels" / "schema.yaml")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("annotate_browser"), script_paragraph=True)
    token = add_annotator(root, "alice")
    server = Server(root).start()
    # the learning loop's first pass (embed, fit on the labels it finds) ends before any label is saved:
    # a fit that came after the first label would make a suggestion this module's tests do not expect
    wait_for_ranking(server, "alice", token, lambda s: s["ranking"]["status"] == "ready")
    yield server, token
    server.stop()


@pytest.fixture(scope="module")
def learning_app(tmp_path_factory):
    """Expert labels on 6 of 20 paragraphs, so the fast model suggests from the start; refit every 2 labels."""
    root = make_project(tmp_path_factory.mktemp("annotate_learning"), n_paragraphs=20, retrain_every=2)
    seed_labels(root, SCHEMA, range(6))
    token = add_annotator(root, "alice")
    server = Server(root).start()
    wait_for_ranking(server, "alice", token, lambda s: s["ranking"]["model"] == "fast")
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
             "rationale": "", "note": "hedged wording", "suggestion_shown": False}  # no model yet: nothing to suggest
    assert noted in map(json.loads, wait_for_mirror(mirror, lambda lines: noted in map(json.loads, lines)))
    page.screenshot(path=str(os.environ.get("STANCE_SCREENSHOT") or tmp_path / "annotate.png"))
    page.keyboard.press("Backspace")
    page.wait_for_selector("text=Undone")
    assert page.query_selector(".choice.selected") is None
    assert not any(offered in line for line in wait_for_mirror(
        mirror, lambda lines: not any(offered in line for line in lines)))


def test_suggestion_shows_and_enter_accepts_it(learning_app, page):
    server, token = learning_app
    sign_in(page, server.url, token)
    page.wait_for_selector("#suggestion:not([hidden])")
    task = page.eval_on_selector("#suggestion", "el => el.dataset.task")
    suggested = page.eval_on_selector(f".choice.suggested[data-task='{task}']", "el => el.dataset.label")
    assert page.text_content("#suggestion").startswith(f"Model suggests {task} = {suggested} (")
    paragraph = page.eval_on_selector("#paragraph", "el => el.dataset.paragraphId")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"text=Saved {task} = {suggested}")
    expected = {"paragraph_id": paragraph, "task": task, "label": suggested, "annotator": "alice",
                "rationale": "", "suggestion_shown": True, "suggestion_accepted": True}
    mirror = server.root / "labels" / "annotations.jsonl"
    assert expected in map(json.loads, wait_for_mirror(mirror, lambda lines: expected in map(json.loads, lines)))
    page.uncheck("#show-suggestions")  # the toggle hides them, and is remembered for this annotator
    page.wait_for_selector("#suggestion", state="hidden")
    page.reload()
    page.wait_for_selector("#paragraph:not(:empty)")
    assert not page.is_checked("#show-suggestions") and page.query_selector(".choice.suggested") is None
    page.check("#show-suggestions")
    page.wait_for_selector("#suggestion:not([hidden])")


def queue_on_stats_page(page) -> tuple[str, list[str]]:
    """(ranking line, paragraph ids in queue order) as the stats page shows them."""
    page.wait_for_selector("#queue tr:nth-child(2)")
    ids = page.eval_on_selector_all("#queue tr td:nth-child(2)", "cells => cells.map(c => c.textContent)")
    return page.text_content("#ranking"), ids


def test_queue_order_changes_after_n_labels(learning_app, page):
    server, token = learning_app
    sign_in(page, server.url, token)
    page.click("#stats-link")
    before_line, before = queue_on_stats_page(page)
    version = int(before_line.split("#")[1].split()[0])
    page.go_back()
    page.wait_for_selector("#paragraph:not(:empty)")
    for _ in range(2):  # retrain_every: 2; each is labelled against the model's suggestion
        paragraph = page.eval_on_selector("#paragraph", "el => el.dataset.paragraphId")
        task = page.eval_on_selector("#suggestion", "el => el.dataset.task")
        other = page.eval_on_selector(f".choice[data-task='{task}']:not(.suggested) kbd", "el => el.textContent")
        page.keyboard.press(other)
        page.wait_for_selector(f"text=Saved {task}")
        page.wait_for_function(f"document.querySelector('#paragraph').dataset.paragraphId !== '{paragraph}' "
                               "|| !document.querySelector('#suggestion').hidden")
    page.goto(server.url + "/stats")
    page.wait_for_function(f"!document.querySelector('#ranking').textContent.startsWith('ranking #{version} ')"
                           " || (location.reload(), false)", polling=1000, timeout=60_000)
    after_line, after = queue_on_stats_page(page)
    assert f"ranking #{version + 1} " in after_line and "refit" in after_line
    common = [p for p in after if p in before]
    assert len(common) >= 5 and common != [p for p in before if p in after]
