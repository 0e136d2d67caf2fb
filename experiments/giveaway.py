"""Does written text give its labels away? (issue 9; results in results/model_selection.md)

Stock wording that carries the label makes written paragraphs easy for a bag of words and teaches the
model cues that real articles do not use. The check: TF-IDF + LR (the `tfidf_lr` settings of
params.yaml) cross-validated by article with the authored articles as test folds, against the same model
on the real paragraphs (the headline CV, authored text always in training). A small gap means the writing
hides its label in argument, as real text does. Per writer, so a writer whose text is easy shows.

    python experiments/giveaway.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config import load_params, resolve  # noqa: E402
from pipeline.dataset import load_frame  # noqa: E402
from pipeline.evaluate import _macro_f1, cross_validate  # noqa: E402
from pipeline.models import build_classifier  # noqa: E402
from pipeline.schema import load_schema  # noqa: E402
from pipeline.train import group_values, testable_rows  # noqa: E402


def main() -> None:
    params, schema = load_params(), load_schema()
    frame = load_frame(resolve(params.dataset.out_dir))
    groups = group_values(frame, "article").to_numpy()
    writer = frame["source"].str.extract(r"authored/([^/]+)/", expand=False).fillna("real").to_numpy()
    print("task | authored test folds | real test folds | per writer (authored folds)")
    means = {"authored": [], "real": []}
    for task in schema.task_names:
        rows = frame[frame[task] >= 0]
        classes, y, texts = schema.labels(task), rows[task].to_numpy(), rows["text"].tolist()
        g, w = groups[rows.index], writer[rows.index]
        real = testable_rows(rows, params.evaluate.test_on)
        estimator = build_classifier("tfidf_lr", params.models["tfidf_lr"], classes, params.seed)
        scores = {}
        for side, testable in (("authored", ~real), ("real", real)):
            cv = cross_validate(estimator, texts, y, g, classes, 5, 1, params.seed, testable)
            scores[side] = _macro_f1(cv.y, cv.proba[0].argmax(1), len(classes))
            means[side].append(scores[side])
            if side == "authored":
                predicted, by = cv.proba[0].argmax(1), w[testable]
                per_writer = {name: _macro_f1(cv.y[by == name], predicted[by == name], len(classes))
                              for name in sorted(set(by), key=lambda n: (len(n), n))}
        print(f"{task} | {scores['authored']:.3f} | {scores['real']:.3f} | "
              + ", ".join(f"{k} {v:.2f}" for k, v in per_writer.items()), flush=True)
    print(f"mean | {np.mean(means['authored']):.3f} | {np.mean(means['real']):.3f} |")


if __name__ == "__main__":
    main()
