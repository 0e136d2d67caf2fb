"""The labelling web app: a small JSON API plus static, dependency-free HTML/JS.

Every /api call carries the annotator's name and token (headers `X-Annotator` and
`Authorization: Bearer <token>`), so there is no cookie to ride on (no CSRF), and the
page keeps them in sessionStorage only. No endpoint takes a path: the app reads the
schema, guidelines and paragraphs named in params.yaml and writes only through the
label store. A strict Content-Security-Policy (no inline script) backs up the page's
rule of rendering data with textContent only.

Untrusted input is handled in this order: a body over 64 KB is refused with 413 before it
is read (by its Content-Length, or while it streams in), then the caller is authenticated,
and only then is the body read and validated. Error messages never repeat the input.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Iterable

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from pipeline.annotate.learner import LearningLoop
from pipeline.annotate.project import Project
from pipeline.annotate.queue import QueueOptions, next_paragraph
from pipeline.config import ConfigError
from pipeline.labels import Annotation, agreement, model_agreement

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_BODY_BYTES = 64 * 1024  # a label with a 4000-character note and rationale is well under this


TOO_LARGE = f"request body over {MAX_BODY_BYTES // 1024} KB"


class ContentLengthLimit:
    """ASGI middleware: 413 for a declared Content-Length over the limit, before anything is read.
    A body sent without one is counted as it is read (`json_body`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        length = dict(scope["headers"]).get(b"content-length") if scope["type"] == "http" else None
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            response = JSONResponse({"detail": TOO_LARGE}, 413, {**SECURITY_HEADERS, "Connection": "close"})
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paragraph_id: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=200)
    label: str = Field(min_length=1, max_length=200)
    rationale: str = Field("", max_length=4000)
    note: str = Field("", max_length=4000)
    suggested: str | None = Field(None, max_length=200, description="the model's suggestion shown for this task")


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    show_suggestions: bool


class SkipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paragraph_id: str = Field(min_length=1, max_length=200)


def validation_message(errors: list[dict], fields: Iterable[str] = ()) -> str:
    """'field 'x': what is wrong' per error, naming only the model's own fields and never
    repeating the offending value (pydantic's `input`) or an unknown key."""
    known = set(fields)
    where = [next((str(part) for part in e["loc"] if part in known), "body") for e in errors]
    return "; ".join(f"field '{name}': {e['msg']}" if name != "body" or e["type"] != "extra_forbidden"
                     else f"unknown field (allowed: {', '.join(sorted(known))})"
                     for name, e in zip(where, errors[:10]))


def json_body(model: type[BaseModel]):
    """A dependency reading the body as `model`. Declared after the `annotator` dependency,
    so the body of an unauthenticated request is never read."""
    async def parse(request: Request) -> BaseModel:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, TOO_LARGE, {"Connection": "close"})
        try:
            return model.model_validate_json(bytes(body))
        except ValidationError as err:
            raise HTTPException(422, validation_message(err.errors(include_url=False, include_input=False),
                                                        model.model_fields)) from None
    return parse


def create_app(project: Project, options: QueueOptions, loop: LearningLoop) -> FastAPI:
    console = Console(stderr=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        project.import_label_file()
        loop.start()  # embeds and fits in the background: the app serves (in seeded order) meanwhile
        console.print(f"[green]label store[/green] {project.store.db_path} -> {project.store.annotations_path}")
        with project.store.background_mirror():
            yield
        loop.stop()

    app = FastAPI(title="stance annotate", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    app.add_middleware(ContentLengthLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(err.errors())}, 422)

    def annotator(x_annotator: str = Header(""), authorization: str = Header("")) -> str:
        scheme, _, token = authorization.partition(" ")
        if not x_annotator or scheme.lower() != "bearer" or not project.store.authenticate(x_annotator, token.strip()):
            raise HTTPException(401, "sign in with your annotator name and token", {"WWW-Authenticate": "Bearer"})
        return x_annotator

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/api/session")
    def session(name: str = Depends(annotator)) -> dict:
        return {"annotator": name}

    @app.get("/api/schema")
    def schema(_: str = Depends(annotator)) -> dict:
        tasks = [{"name": name, "question": task.question,
                  "classes": [{"name": c, "key": d.key, "definition": d.definition} for c, d in task.classes.items()]}
                 for name, task in project.schema.tasks.items()]
        guidelines = project.guidelines.read_text(encoding="utf-8") if project.guidelines.exists() else ""
        return {"tasks": tasks, "guidelines": guidelines}

    @app.get("/api/next")
    def next_(name: str = Depends(annotator)) -> dict:
        try:
            return _state(project, options, loop, name)
        except ConfigError as err:  # e.g. no paragraphs.parquet yet: say so instead of a bare 500
            raise HTTPException(503, str(err)) from None

    @app.post("/api/labels")
    def save_label(name: str = Depends(annotator), body: LabelIn = Depends(json_body(LabelIn))) -> dict:
        if not project.pool.current().has(body.paragraph_id):
            raise HTTPException(404, "unknown paragraph id")
        if project.schema.check(body.task, body.label):
            field = "task" if body.task not in project.schema.tasks else "label"
            raise HTTPException(422, f"field '{field}': not in the label schema")
        shown = body.suggested is not None
        project.store.save(Annotation(paragraph_id=body.paragraph_id, task=body.task, label=body.label,
                                      annotator=name, rationale=body.rationale.strip(), note=body.note.strip(),
                                      suggestion_shown=shown,
                                      suggestion_accepted=body.suggested == body.label if shown else None))
        loop.label_saved()
        return {"saved": True, "paragraph_id": body.paragraph_id, "task": body.task, "label": body.label}

    @app.post("/api/settings")
    def settings(name: str = Depends(annotator), body: SettingsIn = Depends(json_body(SettingsIn))) -> dict:
        project.store.set_show_suggestions(name, body.show_suggestions)
        return {"show_suggestions": body.show_suggestions}

    @app.get("/stats", include_in_schema=False)
    def stats_page() -> FileResponse:
        return FileResponse(STATIC / "stats.html", media_type="text/html")

    @app.get("/api/stats")
    def stats(_: str = Depends(annotator)) -> dict:
        return _finite(_stats(project, loop))

    @app.post("/api/skip")
    def skip(name: str = Depends(annotator), body: SkipIn = Depends(json_body(SkipIn))) -> dict:
        if not project.pool.current().has(body.paragraph_id):
            raise HTTPException(404, "unknown paragraph id")
        project.store.skip(name, body.paragraph_id)
        return {"skipped": body.paragraph_id}

    @app.post("/api/undo")
    def undo(name: str = Depends(annotator)) -> dict:
        return {"undone": project.store.undo(name)}

    return app


def _state(project: Project, options: QueueOptions, loop: LearningLoop, name: str) -> dict:
    """What the page shows: the next paragraph with its article context, my labels on it, progress,
    and (when the annotator has them on) the current model's suggestions."""
    snapshot = project.pool.current()
    labels = project.store.labels()
    skipped = project.store.skipped(name)
    ranking = loop.ranking
    pick = next_paragraph(snapshot.frame, labels, skipped, name, project.schema.task_names,
                          ranking.scores, options, project.store.last_paragraph(name))
    mine = [lab for lab in labels if lab.annotator == name and snapshot.has(lab.paragraph_id)]
    done = {p for p in {lab.paragraph_id for lab in mine}
            if set(project.schema.task_names) <= {lab.task for lab in mine if lab.paragraph_id == p}}
    progress = {"done": len(done), "skipped": len(skipped), "total": len(snapshot.frame),
                "my_labels": len(mine), "all_labels": len(labels)}
    show = project.store.show_suggestions(name)
    if pick is None:
        return {"paragraph": None, "progress": progress, "show_suggestions": show}
    previous, following = snapshot.neighbours(pick.paragraph_id)
    current = {lab.task: {"label": lab.label, "note": lab.note, "rationale": lab.rationale}
               for lab in mine if lab.paragraph_id == pick.paragraph_id}
    classes = {task: project.schema.labels(task) for task in project.schema.task_names}
    return {"paragraph": snapshot.record(pick.paragraph_id), "reason": pick.reason,
            "context": {"previous": previous, "next": following}, "labels": current, "progress": progress,
            "show_suggestions": show, "model": ranking.model,
            "suggestions": ranking.suggestion(pick.paragraph_id, classes) if show else None}


def _stats(project: Project, loop: LearningLoop, top: int = 10) -> dict:
    """The lead's view: labels per annotator and class, human-human and model-human agreement, and what
    the queue offers next (paragraphs nobody has labelled, on-topic first) with its score components."""
    labels = project.store.labels()
    schema = project.schema
    counts: dict[str, Counter] = defaultdict(Counter)
    for lab in labels:
        counts[lab.annotator][f"{lab.task}:{lab.label}"] += 1
    ranking = loop.ranking
    classes = {task: schema.labels(task) for task in schema.task_names}
    predicted = {}
    for pid in {lab.paragraph_id for lab in labels}:
        for task, suggestion in (ranking.suggestion(pid, classes) or {}).items():
            predicted[(pid, task)] = suggestion["label"]
    queue: list[dict] = []
    if project.pool.path.exists():
        frame = project.pool.current().frame
        fresh = frame[~frame["paragraph_id"].isin({lab.paragraph_id for lab in labels})]
        on_topic = fresh[fresh["on_topic"].astype(bool)]
        queue = ranking.top(set((on_topic if len(on_topic) else fresh)["paragraph_id"]), top)
        for row in queue:
            row["text"] = str(frame.at[row["paragraph_id"], "text"])[:200]
    return {
        "labels": {"total": len(labels), "columns": [f"{t}:{c}" for t in schema.task_names for c in classes[t]],
                   "by_annotator": {name: dict(c) for name, c in sorted(counts.items())}},
        "human_agreement": agreement(labels, schema),
        "model_agreement": model_agreement(labels, predicted, schema),
        "ranking": {"version": ranking.version, "model": ranking.model, "fitted_on": ranking.fitted_on,
                    "labels_seen": ranking.labels_seen,
                    "trigger": ranking.trigger, "created_at": ranking.created_at, "status": loop.status,
                    "labels_since_fit": loop.labels_since_fit, "retrain_every": loop.queue.retrain_every,
                    "weights": {"uncertainty": loop.queue.uncertainty, "disagreement": loop.queue.disagreement,
                                "rarity": loop.queue.rarity}, "method": loop.queue.method},
        "queue": queue,
    }


def _finite(value):
    """JSON has no NaN: undefined statistics (e.g. kappa on one class) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
