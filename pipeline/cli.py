"""The `stance` command line. It only parses arguments and calls stage cores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from pipeline import ingest as ingest_stage
from pipeline.config import ConfigError, load_params, resolve

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Stance and framing classification for news text.")

console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Stance and framing classification for news text."""


@app.command()
def ingest(
    files: Annotated[Optional[list[Path]], typer.Argument(help="new pages to add to the raw corpus first")] = None,
) -> None:
    """Segment every page under the raw folder into data/paragraphs.parquet."""
    params = load_params().ingest
    raw_dir = resolve(params.raw_dir)
    try:
        added = ingest_stage.add_documents(files or [], raw_dir)
        frame = ingest_stage.ingest_folder(raw_dir, params)
    except ConfigError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    ingest_stage.write_paragraphs(frame, resolve(params.paragraphs))
    console.print(f"added {len(added)} file(s); {len(frame)} paragraphs from {frame['source'].nunique()} "
                  f"sources ({int(frame['on_topic'].sum())} on-topic) -> {params.paragraphs}")


# --- sub-commands owned by other modules register here (one line each) ---
from pipeline.annotate.cli import annotate_app, labels_app; app.add_typer(annotate_app, name="annotate"); app.add_typer(labels_app, name="labels")  # noqa: E402,E702


def main() -> None:
    app()


if __name__ == "__main__":
    main()
