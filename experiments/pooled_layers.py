"""Which frozen-mpnet features generalise best to real text? (issue 9; results in results/model_selection.md)

One fp32 pass of all-mpnet-base-v2 over the labelled corpus (paragraphs, and their sentences separately)
keeps the mean-pooled hidden states of several layers; each variant below is a logistic regression on
some of them, scored three ways, mean macro-F1 over the tasks:
- head: the model card's headline (3 x 5-fold CV grouped by article, only real articles in test folds);
- transfer: train on authored text only, test on every real paragraph;
- authored: 5-fold CV grouped by article on the authored articles only (1,287 test paragraphs: a steadier,
  if in-style, check of what the 80 real paragraphs can barely tell apart).

    python experiments/pooled_layers.py                       # every variant, C in 8 and 32
    python experiments/pooled_layers.py last+L6,last 8,32     # some variants and Cs

Features are cached in $STANCE_CACHE/experiments/pooled_layers-<hash of layers and texts>.npz (about 6 minutes on 2 cores to build).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config import load_params, resolve  # noqa: E402
from pipeline.dataset import load_frame  # noqa: E402
from pipeline.evaluate import _macro_f1, bootstrap_macro_f1, cross_validate, transfer  # noqa: E402
from pipeline.models.base import StanceClassifier  # noqa: E402
from pipeline.models.encoder import sentence_embeddings  # noqa: E402
from pipeline.models.head import LogRegHead  # noqa: E402
from pipeline.models.weights import cache_root, encoder_dir  # noqa: E402
from pipeline.schema import load_schema  # noqa: E402
from pipeline.train import group_values, testable_rows  # noqa: E402

LAYERS = (4, 6, 8, 10, 12)  # hidden-state indices kept (12 = the last layer's output)
SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[A-Z“\"‘(])")


def pooled(model, tokenizer, texts: list[str]) -> dict[int, np.ndarray]:
    """The mean-pooled, normalised hidden states of LAYERS per text, from the encoder's own pooling."""
    blocks = sentence_embeddings(model, tokenizer, texts, 256, 16, LAYERS)
    return dict(zip(LAYERS, np.split(blocks, len(LAYERS), axis=1)))


def features(texts: list[str]) -> dict[str, np.ndarray]:
    key = hashlib.sha256("\n".join([repr(LAYERS), *texts]).encode()).hexdigest()[:12]
    path = cache_root() / "experiments" / f"pooled_layers-{key}.npz"
    if not path.exists():
        folder = encoder_dir("mpnet")
        tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
        sentences, owner = [], []
        for i, text in enumerate(texts):
            for sentence in filter(str.strip, SENTENCE_END.split(text)):
                sentences.append(sentence.strip())
                owner.append(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"L{k}": v for k, v in pooled(model, tokenizer, texts).items()},
                 sentences=sentence_embeddings(model, tokenizer, sentences, 256, 16), owner=np.array(owner))
    data = np.load(path)
    norm = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    layer = {k: norm(data[f"L{k}"]) for k in LAYERS}
    sentence, owner = norm(data["sentences"]), data["owner"]
    sent_max = np.full_like(layer[12], -np.inf)
    sent_sum = np.zeros_like(layer[12])
    for vector, i in zip(sentence, owner):
        sent_max[i] = np.maximum(sent_max[i], vector)
        sent_sum[i] += vector
    return {
        "last": layer[12], "last+L8": np.hstack([layer[12], layer[8]]), "last+L6": np.hstack([layer[12], layer[6]]),
        "avg10-12": norm(layer[10] + layer[12]), "last+L10+L8+L6": np.hstack([layer[k] for k in (12, 10, 8, 6)]),
        "sentmean": norm(sent_sum), "last+sentmax": np.hstack([layer[12], norm(sent_max)]),
        "last+sentmean": np.hstack([layer[12], norm(sent_sum)]),
        # encoders cut at the deepest layer read: L8 runs 8 of 12 layers, L6 half of them
        "L6": layer[6], "L8": layer[8], "L8+L6": np.hstack([layer[8], layer[6]]),
        "L6+L4": np.hstack([layer[6], layer[4]]),
    }


def three_scores(frame, groups: np.ndarray, make_estimator) -> dict[str, float]:
    """Mean macro-F1 over the tasks of `make_estimator(classes)`: headline CV, transfer, authored-only CV."""
    params, schema = load_params(), load_schema()
    scores = {"head": [], "transfer": [], "authored": []}
    for task in schema.task_names:
        rows = frame[frame[task] >= 0]
        classes, y, g, tx = schema.labels(task), rows[task].to_numpy(), groups[rows.index], rows["text"].tolist()
        real = testable_rows(rows, params.evaluate.test_on)
        estimator = make_estimator(classes)
        cv = cross_validate(estimator, tx, y, g, classes, 5, 3, params.seed, real)
        scores["head"].append(bootstrap_macro_f1(cv, 1, 0.95, 0)[0])
        held = transfer(estimator, tx, y, g, classes, real)
        scores["transfer"].append(_macro_f1(held.y, held.proba[0].argmax(1), len(classes)))
        written = cross_validate(estimator, tx, y, g, classes, 5, 1, params.seed, ~real)
        scores["authored"].append(_macro_f1(written.y, written.proba[0].argmax(1), len(classes)))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def lookup_classifier(variants: dict[str, np.ndarray], texts: list[str]) -> type[StanceClassifier]:
    """A classifier family fitting a logistic regression on one variant's precomputed features, a row per
    text of `texts` (CV clones it per fold); hyperparameters C and variant."""
    row_of = {t: i for i, t in enumerate(texts)}

    class Lookup(StanceClassifier):
        family = "lookup"

        class Params(BaseModel):
            C: float = 8.0
            variant: str = next(iter(variants))

        def fit(self, texts, labels):
            X = variants[self.params.variant][[row_of[t] for t in texts]]
            self._head = LogRegHead(self.classes, self.params.C, self.seed).fit(X, labels)
            return self

        def predict_proba(self, texts):
            return self._head.predict_proba(variants[self.params.variant][[row_of[t] for t in texts]])

    return Lookup


def main() -> None:
    params = load_params()
    frame = load_frame(resolve(params.dataset.out_dir))
    texts = frame["text"].tolist()
    variants = features(texts)

    Lookup = lookup_classifier(variants, texts)
    groups = group_values(frame, "article").to_numpy()
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(variants)
    Cs = [float(c) for c in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8.0, 32.0]
    print("variant | C | head | transfer | authored")
    for name in names:
        for C in Cs:
            scores = three_scores(frame, groups, lambda classes: Lookup(classes, params.seed, C=C, variant=name))
            print(f"{name} | {C:g} | " + " | ".join(f"{v:.3f}" for v in scores.values()), flush=True)


if __name__ == "__main__":
    main()
