"""Does the article around a paragraph help embed_lr, and is C still right on the grown corpus? (issue 9;
results in results/model_selection.md)

Reads the embeddings `dvc repro` left in the embedding cache (anything missing is embedded) (the champion's encoder, `layers` and
`max_length` from params.yaml; run `dvc repro` first) and scores a logistic regression on each variant
the three ways `pooled_layers.py` does (headline CV, transfer, authored-only CV), mean macro-F1 over tasks:
- own: the paragraph's embedding (the champion's features);
- own+art: beside it, the mean embedding of the labelled paragraphs of its article;
- own+0.5art: the same, the article block scaled by half.

    python experiments/article_context.py                    # every variant, C 8
    python experiments/article_context.py own 4,8,16         # some variants and Cs
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pooled_layers import lookup_classifier, three_scores  # noqa: E402

from pipeline.config import load_params, resolve  # noqa: E402
from pipeline.dataset import load_frame  # noqa: E402
from pipeline.models.embed_lr import EmbedLogReg  # noqa: E402
from pipeline.models.encoder import encoder_fingerprint, frozen_encoder  # noqa: E402
from pipeline.models.weights import encoder_dir  # noqa: E402
from pipeline.train import group_values  # noqa: E402


def cached_embeddings(texts: list[str]) -> np.ndarray:
    """The champion's fp32 training embeddings of `texts`, from the cache `dvc repro` filled (any text not
    there is embedded, and not written back)."""
    settings = EmbedLogReg.Params(**load_params().models.get("embed_lr", {}))
    folder = encoder_dir(settings.encoder)
    encoder = frozen_encoder(folder, encoder_fingerprint(folder))
    return encoder.embed(texts, settings.max_length, settings.batch_size, layers=settings.layers)


def main() -> None:
    params = load_params()
    frame = load_frame(resolve(params.dataset.out_dir))
    texts = frame["text"].tolist()
    own = cached_embeddings(texts)
    articles = frame["article"].astype(str).to_numpy()
    article_mean = np.zeros_like(own)
    for article in np.unique(articles):
        rows = articles == article
        article_mean[rows] = own[rows].mean(axis=0)
    variants = {"own": own, "own+art": np.hstack([own, article_mean]),
                "own+0.5art": np.hstack([own, 0.5 * article_mean])}

    Lookup = lookup_classifier(variants, texts)

    groups = group_values(frame, "article").to_numpy()
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(variants)
    Cs = [float(c) for c in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8.0]
    print("variant | C | head | transfer | authored")
    for name in names:
        for C in Cs:
            scores = three_scores(frame, groups, lambda classes: Lookup(classes, params.seed, C=C, variant=name))
            print(f"{name} | {C:g} | " + " | ".join(f"{v:.3f}" for v in scores.values()), flush=True)


if __name__ == "__main__":
    main()
