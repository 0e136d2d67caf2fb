"""`stance annotate` (the labelling app) and `stance labels` (import/export and label quality).

Thin: parse options, call the cores in this package, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import ConfigError, load_params

console = Console()
err_console = Console(stderr=True)

annotate_app = typer.Typer(help="The browser labelling app (default: serve).", add_completion=False)
labels_app = typer.Typer(help="Label files: import/export, agreement, conflicts, adjudication, suspicious labels.",
                         no_args_is_help=True, add_completion=False)

Host = Annotated[str, typer.Option(help="interface to bind; keep 127.0.0.1 unless behind an authenticating proxy")]
Port = Annotated[int, typer.Option(help="TCP port")]
RandomShare = Annotated[float, typer.Option(help="share of paragraphs picked uniformly at random (unbiased eval)")]
DoubleShare = Annotated[float, typer.Option(help="share of paragraphs sent for a second annotator's opinion")]
PerParagraph = Annotated[int, typer.Option(help="stop asking for more opinions on a paragraph at this many annotators")]
Uncertainty = Annotated[str, typer.Option(help="champion uncertainty: margin or entropy")]


def _fail(err: Exception) -> None:
    err_console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


@annotate_app.callback(invoke_without_command=True)
def annotate(ctx: typer.Context, host: Host = "127.0.0.1", port: Port = 8765, random_share: RandomShare = 0.2,
             double_share: DoubleShare = 0.1, annotators_per_paragraph: PerParagraph = 2,
             uncertainty: Uncertainty = "margin") -> None:
    """Start the labelling app (the same as `stance annotate serve`)."""
    if ctx.invoked_subcommand is None:
        serve(host, port, random_share, double_share, annotators_per_paragraph, uncertainty)


@annotate_app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8765, random_share: RandomShare = 0.2,
          double_share: DoubleShare = 0.1, annotators_per_paragraph: PerParagraph = 2,
          uncertainty: Uncertainty = "margin") -> None:
    """Start the labelling app."""
    import uvicorn

    from pipeline.annotate.queue import QueueOptions, UncertaintyCache, champion_predictor
    from pipeline.annotate.server import Project, create_app

    try:
        options = QueueOptions(random_share=random_share, double_share=double_share,
                               annotators_per_paragraph=annotators_per_paragraph, uncertainty=uncertainty,
                               seed=load_params().seed)
        project = Project.open()
    except (ValueError, ConfigError) as err:
        _fail(err)
    cache = UncertaintyCache(champion_predictor(err_console), options.uncertainty)
    app = create_app(project, options, cache)
    err_console.print(f"[bold]stance annotate[/bold] on http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@annotate_app.command("add-annotator")
def add_annotator(name: Annotated[str, typer.Argument(help="annotator name as it will appear in label files")]) -> None:
    """Create an annotator (or issue a new token for one) and print the token once."""
    from pipeline.annotate.server import Project

    try:
        token = Project.open().store.add_annotator(name)
    except (ValueError, ConfigError) as err:
        _fail(err)
    err_console.print(f"annotator [bold]{name}[/bold]: give them this token (it is not stored and cannot be shown again)")
    print(token)
