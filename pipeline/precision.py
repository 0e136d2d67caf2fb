"""Which precision a trained model scores at: the fastest one whose labels agree with fp32.

bf16 (on CPUs with bfloat16 units) or int8 can score a transformer two to three times faster than fp32,
but reduced precision can also move labels, by how much depends on the encoder and on the heads (int8
dynamic quantization of all-mpnet-base-v2 turns its embeddings nearly random). So the choice is measured,
never assumed: at training, each precision the family offers and params.yaml allows scores a fixed set
of labelled paragraphs (the real ones first), and the fastest whose labels agree with fp32 on at least
`MIN_AGREEMENT` of them, in every task, is kept. Fitting and cross-validation always run at fp32, so the
CV metrics describe the fp32 model and the agreement says how far the scored labels can differ from it.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

MIN_AGREEMENT = 0.99
REFERENCE = "fp32"
SPEED_SAMPLE = 100  # paragraphs each precision is timed on


def distinct_texts(texts: Sequence[str], n: int) -> list[str]:
    """n texts with the corpus' lengths, each new (numbered), so no embedding cache can answer them."""
    texts = list(texts)
    return [f"{texts[i % len(texts)]} ({i})" for i in range(n)] if texts else []


def candidates(setting: str, offered: Sequence[str]) -> list[str]:
    """Precisions to try, the fp32 reference first: all offered for `auto`, else fp32 and the one asked for."""
    if not offered:
        return []
    wanted = list(offered) if setting == "auto" else [REFERENCE, setting]
    return list(dict.fromkeys([REFERENCE] + [p for p in wanted if p in offered]))


def agreement(labels: dict[str, list[str]], reference: dict[str, list[str]]) -> float:
    """The lowest share, over tasks, of texts labelled as the reference labels them."""
    shares = [float(np.mean([a == b for a, b in zip(labels[t], reference[t])])) if reference[t] else 1.0
              for t in reference]
    return min(shares) if shares else 1.0


def choose_precision(model, texts: Sequence[str], setting: str) -> dict | None:
    """Try each candidate precision on `texts`, set the model to the fastest one that agrees with fp32, and
    return what was measured: {"precision", "min_agreement", "paragraphs", "agreement": {precision: share},
    "per_s": {precision: paragraphs/s}}. None for a family with a single precision (scikit-learn)."""
    classifiers = list(model.classifiers.values())
    offered = [p for p in classifiers[0].precisions if all(p in clf.precisions for clf in classifiers)]
    tried = candidates(setting, offered)
    if len(tried) < 2:
        return None
    import torch  # only transformer families offer several precisions

    texts = list(texts)
    timed = distinct_texts(texts, min(SPEED_SAMPLE, len(texts)))  # the training texts may be cached already
    measured: dict[str, tuple[float, dict[str, list[str]]]] = {}
    for precision in tried:
        model.set_precision(precision)
        with torch.inference_mode():
            labels = model.predict(texts)
            start = time.perf_counter()
            model.predict(timed)
        measured[precision] = (len(timed) / max(time.perf_counter() - start, 1e-9), labels)
    reference = measured[REFERENCE][1]
    shares = {p: round(agreement(labels, reference), 4) for p, (_, labels) in measured.items()}
    speeds = {p: round(per_s, 2) for p, (per_s, _) in measured.items()}
    chosen = max((p for p in tried if shares[p] >= MIN_AGREEMENT), key=lambda p: speeds[p])
    model.set_precision(chosen)
    return {"precision": chosen, "min_agreement": MIN_AGREEMENT, "paragraphs": len(texts),
            "agreement": shares, "per_s": speeds}
