"""Could part of an embed_lr encoder run int8 beside bf16 and keep its labels? (issue 10)

Dynamic int8 of every Linear layer moves most of mpnet's labels (precision.py never picks it). This asks
which layers are to blame and what int8 would buy where it is harmless: each variant is the bf16 encoder
with torch's dynamic int8 in one kind of Linear layer of every block (per-tensor or per-channel weights),
scored against the fp32 labels of a saved model's own heads on the paragraphs training checks precision on
(every real one, then others spread over the corpus), and timed on 160 of them.

    python benchmarks/int8_layers.py models/embed_lr          # about 6 minutes on 2 cores

Prints one line per variant: label agreement (all / real paragraphs; the lowest over tasks), mean cosine
of the embeddings to fp32, paragraphs/s. Results and what they mean: README, "Scoring speed".
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config import load_params, resolve  # noqa: E402
from pipeline.dataset import load_frame  # noqa: E402
from pipeline.model import StanceModel  # noqa: E402
from pipeline.models.encoder import model_text, sentence_embeddings  # noqa: E402
from pipeline.train import precision_sample, testable_rows  # noqa: E402

# the Linear layers of one mpnet block, by what feeds them
KINDS = {"attention q/k/v (layer-norm output)": ["attention.attn.q", "attention.attn.k", "attention.attn.v"],
         "attention output": ["attention.attn.o"],
         "feed-forward up (layer-norm output)": ["intermediate.dense"],
         "feed-forward down (GELU output)": ["output.dense"]}
KINDS["all of them"] = [name for names in KINDS.values() for name in names]


class Int8Linear(torch.nn.Module):
    """A Linear layer under torch's dynamic int8 quantization, taking and returning the model's dtype."""

    def __init__(self, linear: torch.nn.Linear, per_channel: bool):
        super().__init__()
        qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
                   else torch.ao.quantization.default_dynamic_qconfig)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
            self.quantized = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(copy.deepcopy(linear).float()), {torch.nn.Linear: qconfig}, dtype=torch.qint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantized(x.float()).to(x.dtype)


def mixed(encoder: torch.nn.Module, names: list[str], per_channel: bool) -> torch.nn.Module:
    """A bf16 copy of `encoder` with int8 in the Linear layers `names` of every block."""
    model = copy.deepcopy(encoder).to(torch.bfloat16).eval()
    for block in model.encoder.layer:
        for name in names:
            *path, attribute = name.split(".")
            parent = block
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, attribute, Int8Linear(getattr(parent, attribute), per_channel))
    return model


def main() -> None:
    stance = StanceModel.load(Path(sys.argv[1] if len(sys.argv) > 1 else "models/embed_lr"))
    if stance.family != "embed_lr":
        raise SystemExit(f"{sys.argv[1]}: an embed_lr model is needed (this one is {stance.family})")
    classifiers = stance.classifiers
    first = next(iter(classifiers.values()))
    settings = first.params
    folder = first._encoder_dir
    tokenizer = AutoTokenizer.from_pretrained(folder)
    fp32 = AutoModel.from_pretrained(folder, use_safetensors=True).eval()

    params = load_params()
    frame = load_frame(resolve(params.dataset.out_dir))
    texts = [model_text(tokenizer, t, settings.max_length) for t in precision_sample(frame, params.evaluate.test_on)]
    n_real = int(testable_rows(frame, params.evaluate.test_on).sum())
    timed = [f"{t} [{i}]" for i, t in enumerate(texts[:160])]

    def embed(model, some):
        return sentence_embeddings(model, tokenizer, some, settings.max_length, settings.batch_size, settings.layers,
                                   description="embedding")

    def labels(X):
        return {task: clf._head.predict_proba(X).argmax(1) for task, clf in classifiers.items()}

    X_ref = embed(fp32, texts)
    reference = labels(X_ref)
    print(f"{len(texts)} paragraphs ({n_real} real), {settings.layers} pooled")
    print("variant | agreement all / real | cosine to fp32 | paragraphs/s")
    variants = [("bf16", [], False)] + [(f"bf16 + int8 {kind}{', per-channel' if pc else ''}", names, pc)
                                        for kind, names in KINDS.items() for pc in (False, True)]
    for name, names, per_channel in variants:
        model = mixed(fp32, names, per_channel)
        X = embed(model, texts)
        got = labels(X)
        share = min(float(np.mean(got[t] == reference[t])) for t in reference)
        share_real = min(float(np.mean(got[t][:n_real] == reference[t][:n_real])) for t in reference)
        cosine = float(np.mean(np.sum(X * X_ref, 1) / np.linalg.norm(X, axis=1) / np.linalg.norm(X_ref, axis=1)))
        embed(model, timed[:16])  # warm-up
        start = time.perf_counter()
        embed(model, timed)
        print(f"{name} | {share:.4f} / {share_real:.4f} | {cosine:.5f} | {len(timed) / (time.perf_counter() - start):.1f}",
              flush=True)


if __name__ == "__main__":
    main()
