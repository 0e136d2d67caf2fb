"""Would the embed_lr head do better on real text with other weights? (issue 9; results/model_selection.md)

Two knobs the default head does not have, tried on the champion's features (mpnet, `layers` of
params.yaml, from the embedding cache that `dvc repro` fills):
- class weights `(n / (k * count)) ** power`: 1 = balanced (the default), 0 = unweighted, 0.5 between;
- real paragraphs repeated `real` times in training (1 = the default), so their style counts more.
Each setting is scored by pooled_layers.three_scores: headline CV, transfer (no real text in training, so the
repeat has no effect there), and CV on the authored articles.

    python experiments/head_weights.py 8:1:1,8:0.5:1,8:0:1,8:1:3,8:1:10     # C:power:real
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline.config import load_params, resolve  # noqa: E402
from pipeline.dataset import load_frame  # noqa: E402
from pipeline.models import build_classifier  # noqa: E402
from pipeline.models.base import StanceClassifier  # noqa: E402
from pipeline.train import group_values, testable_rows  # noqa: E402
from pooled_layers import three_scores  # noqa: E402


def main() -> None:
    params = load_params()
    frame = load_frame(resolve(params.dataset.out_dir))
    texts = frame["text"].tolist()
    encoder = build_classifier("embed_lr", params.models["embed_lr"], ["a", "b"], params.seed)
    features, row = encoder._embed(texts, persist=True), {t: i for i, t in enumerate(texts)}
    real_texts = set(frame.loc[testable_rows(frame, params.evaluate.test_on), "text"])

    class WeightedHead(StanceClassifier):
        """Logistic regression on the cached features with the two knobs above."""
        family = "weighted_head"

        class Params(BaseModel):
            C: float = 8.0
            power: float = 1.0
            real: int = 1

        def fit(self, train_texts, labels):
            extra = [(t, y) for t, y in zip(train_texts, labels) if t in real_texts] * (self.params.real - 1)
            train_texts, labels = list(train_texts) + [t for t, _ in extra], np.asarray(list(labels) + [y for _, y in extra])
            names, counts = np.unique(labels, return_counts=True)
            weight = {n: (len(labels) / (len(names) * c)) ** self.params.power for n, c in zip(names, counts)}
            self._lr = LogisticRegression(C=self.params.C, class_weight=weight, max_iter=5000, random_state=self.seed)
            self._lr.fit(features[[row[t] for t in train_texts]], labels)
            return self

        def predict_proba(self, test_texts):
            raw, proba = self._lr.predict_proba(features[[row[t] for t in test_texts]]), np.zeros((len(test_texts), len(self.classes)))
            for j, name in enumerate(self._lr.classes_):
                proba[:, self.classes.index(name)] = raw[:, j]
            return proba

    groups = group_values(frame, "article").to_numpy()
    settings = sys.argv[1].split(",") if len(sys.argv) > 1 else ["8:1:1", "8:0.5:1", "8:0:1", "8:1:3", "8:1:10"]
    print("C:power:real | head | transfer | authored")
    for setting in settings:
        C, power, real_times = setting.split(":")
        scores = three_scores(frame, groups, lambda classes: WeightedHead(
            classes, params.seed, C=float(C), power=float(power), real=int(real_times)))
        print(f"{setting} | " + " | ".join(f"{v:.3f}" for v in scores.values()), flush=True)


if __name__ == "__main__":
    main()
