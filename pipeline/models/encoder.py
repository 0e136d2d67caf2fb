"""The shared sentence encoders and the torch plumbing of the transformer families.

Everything here runs offline: weights come from a packaged encoder (pipeline/models/weights.py) or from a
saved model folder, never from a hub. Embeddings are mean-pooled over real tokens and
L2-normalised, exactly as sentence-transformers does for this checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Self, Sequence

import numpy as np
import torch
from pydantic import Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file as load_safetensors, save_file as save_safetensors
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_bidirectional_mask

from pipeline.models.base import StanceClassifier
from pipeline.models.weights import cache_root, encoder_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def setup_torch(seed: int) -> None:
    """Use every core, and seed every torch generator a fit touches (dropout, head init)."""
    torch.set_num_threads(usable_cores())
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def fingerprint(folder: Path) -> str:
    """Content hash of a model folder's weights: the key under which a loaded encoder is shared."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@contextmanager
def progress(description: str, total: int, show: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields `advance(n)`. Hidden for single-step work."""
    if not show or total <= 1:
        yield lambda n=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def length_batches(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding (and compute) stays small."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def mean_pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, L2-normalised; summed in float32 whatever precision the encoder ran in."""
    last_hidden = last_hidden.float()
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    pooled = (last_hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


PAD_TO = 8  # batches pad to a multiple of this many tokens: few distinct shapes, so kernel caches and
# the allocator stop growing after the first batches (attention and pooling ignore padding)
CHARS_PER_TOKEN = 32  # a text longer than max_length x this is cut before tokenizing (see model_text)


def model_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> str:
    """The part of `text` the model sees, found without tokenizing all of a huge text (a 10 MB paragraph
    would take seconds and a gigabyte): a long text is cut at the last space before max_length x
    CHARS_PER_TOKEN characters, and the cut is kept only if it still fills `max_length` tokens, so the
    result truncates to exactly the tokens of the whole text (tokenizers split words at spaces, so the
    prefix's tokens begin the whole text's). Otherwise (long words, runs of spaces) the whole text stays."""
    limit = max_length * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    if cut > 0 and len(tokenizer(text[:cut], truncation=True, max_length=max_length)["input_ids"]) == max_length:
        return text[:cut]
    return text


def token_batches(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, batch_size: int,
                  on: torch.device) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices, tokenized batch) of `texts`, tokenized once in one fast-tokenizer call. A batch holds only
    texts whose truncated token count rounds up to the same multiple of PAD_TO, so each text is always
    padded to that length whatever else is embedded with it: its embedding is then the same bit for bit
    in any company (a cache filled a few texts at a time gives what one pass gives), and padding stays
    under PAD_TO tokens a text (sorting by characters had left a third more tokens than the texts have)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    width = [-(-len(ids) // PAD_TO) * PAD_TO for ids in encoded["input_ids"]]
    same_width: dict[int, list[int]] = {}
    for i in sorted(range(len(texts)), key=lambda i: width[i]):
        same_width.setdefault(width[i], []).append(i)
    for group in same_width.values():
        for idx in (group[start:start + batch_size] for start in range(0, len(group), batch_size)):
            rows = [{k: encoded[k][i] for k in encoded.keys()} for i in idx]
            batch = tokenizer.pad(rows, padding=True, pad_to_multiple_of=PAD_TO, return_tensors="pt")
            yield idx, {k: v.to(on) for k, v in batch.items()}


LAST_LAYER = (-1,)  # the sentence-transformers embedding: the last layer's output, mean-pooled


def check_layers(layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """`layers` as hidden-state indices of an encoder with `num_layers` layers (0 = the embeddings, -1 = the
    last layer's output, as Python indexes the model's `hidden_states`); an index it lacks is a ValueError."""
    layers = tuple(layers)
    bad = [i for i in layers if not -(num_layers + 1) <= i <= num_layers]
    if not layers or bad:
        raise ValueError(f"layers {list(layers)}: this encoder's hidden states are 0..{num_layers} "
                         f"(or -{num_layers + 1}..-1 from the top)")
    return layers


def pooled_layers(model: PreTrainedModel, batch: dict[str, torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """The mean-pooled, L2-normalised output of each of `layers`, side by side: (batch, dim x len(layers)).
    A middle layer keeps wording that the last one, trained for topical similarity, averages away: beside it,
    it lifted transfer to real text by ~0.05 macro-F1 (experiments/results/model_selection.md). Layers above
    the deepest one asked for are never run: pooling layer 6 of 12 costs half an encoder pass."""
    if tuple(layers) == LAST_LAYER:
        return mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])
    depth = model.config.num_hidden_layers + 1
    wanted = [i % depth for i in layers]
    states = [embedding_states(model.base_model, batch)]
    states += layer_outputs(model.base_model, states[0], batch["attention_mask"], 0, max(wanted))
    return torch.cat([mean_pool(states[i], batch["attention_mask"]) for i in wanted], dim=1)


def sentence_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                        max_length: int, batch_size: int, layers: Sequence[int] = LAST_LAYER,
                        description: str = "embedding") -> np.ndarray:
    """(n, dim x len(layers)) float32 embeddings (each layer's block normalised), in input order."""
    texts = list(texts)
    layers = check_layers(layers, model.config.num_hidden_layers)
    on = next(model.parameters()).device
    out = np.zeros((len(texts), model.config.hidden_size * len(layers)), dtype=np.float32)
    model.eval()
    with torch.inference_mode(), progress(description, len(texts)) as advance:
        for idx, batch in token_batches(tokenizer, texts, max_length, batch_size, on):
            out[idx] = pooled_layers(model, batch, layers).float().cpu().numpy()
            advance(len(idx))
    return out


# Inference precisions of the transformer families, tried in this order by pipeline/precision.py:
# fp32 is the reference every other one must agree with; bf16 runs on CPUs with bfloat16 units
# (AVX512-BF16, AMX); int8 is torch's dynamic quantization of the Linear layers.
PRECISIONS = ("fp32", "bf16", "int8")
PrecisionSetting = Literal["auto", "fp32", "bf16", "int8"]


def precision_field() -> Any:
    """The `precision` hyperparameter every transformer family takes."""
    return Field("auto", description="scoring precision: auto = the fastest of fp32/bf16/int8 whose labels agree "
                                     "with fp32 on >= 99% of a fixed set of labelled paragraphs (chosen at training); "
                                     "fp32 = none other; bf16 or int8 = that one if it agrees, else fp32")


def inference_model(model: PreTrainedModel, precision: str, keep_original: bool = True) -> torch.nn.Module:
    """The model to score with at `precision`: on a CPU, its Linear layers prepacked for oneDNN (fp32, bf16)
    or dynamically quantized (int8). With `keep_original` the model passed in is left as it is (the result
    is a copy); without, it is converted in place, so no second copy is ever in memory. On a GPU the model
    is returned as it is."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown inference precision '{precision}' (known: {', '.join(PRECISIONS)})")
    if device().type != "cpu":
        return model
    target = copy.deepcopy(model) if keep_original else model
    if precision in ("fp32", "bf16"):
        return pack_linear_layers(target.to(torch.float32 if precision == "fp32" else torch.bfloat16).eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
        return torch.ao.quantization.quantize_dynamic(target.cpu().eval(), {torch.nn.Linear}, dtype=torch.qint8)


def onednn_linear_available() -> bool:
    """Whether this torch can run Linear layers through oneDNN with prepacked weights (x86 CPUs)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# The kernels an inference encoder's Linear layers run on: part of the embedding cache's key, since the two
# sum in different orders (embeddings differ in the seventh digit) and a cache must not mix them.
LINEAR_KERNELS = "onednn" if onednn_linear_available() else "aten"


class PackedLinear(torch.nn.Module):
    """An inference-only Linear layer whose weight oneDNN has reordered once into its blocked layout, with
    the GELU that follows it, if any, computed in the same kernel.

    torch's own Linear hands each call to a BLAS that, on this project's AMD CPUs, ran fp32 matrix products
    at ~170 GFLOP/s and bf16 at ~650; the prepacked oneDNN kernel runs the same products at ~430 and ~815
    (benchmarks/score_speed.py measures what it gives end to end). Outputs match torch's up to the order of
    the sums."""

    def __init__(self, linear: torch.nn.Linear, activation: Literal["none", "gelu"] = "none"):
        super().__init__()
        self.out_features = linear.out_features
        self.activation = activation
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # "none" as the GELU algorithm is the exact (erf) GELU, the one BERT-style encoders use
        flat = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.weight, self.bias,
                                                  self.activation, [], "none" if self.activation == "gelu" else "")
        return flat.reshape(*x.shape[:-1], self.out_features)


def exact_gelu_after_dense(module: torch.nn.Module) -> bool:
    """Whether `module` is a BERT-style feed-forward input (MPNet, BERT, RoBERTa): a Linear `dense`, then
    transformers' exact GELU, which PackedLinear can compute in the same kernel."""
    from transformers.activations import GELUActivation

    act = getattr(module, "intermediate_act_fn", None)
    return (type(getattr(module, "dense", None)) is torch.nn.Linear and isinstance(act, GELUActivation)
            and act.act is torch.nn.functional.gelu)


def pack_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """`model` (fp32 or bf16, for inference only) with every Linear layer a PackedLinear, where oneDNN can."""
    if not onednn_linear_available():
        return model
    for parent in list(model.modules()):
        if exact_gelu_after_dense(parent):
            parent.dense = PackedLinear(parent.dense, activation="gelu")
            parent.intermediate_act_fn = torch.nn.Identity()
        for name, child in parent.named_children():
            if type(child) is torch.nn.Linear:
                setattr(parent, name, PackedLinear(child))
    return model


class EmbeddingCache:
    """Embeddings of training texts on disk, one file per encoder, quantization and max_length, keyed by
    the text's sha256: re-running `dvc repro`, or an experiment that changes only the head, encodes nothing
    again, and CV cost stays flat as folds and families multiply. Only `fit` writes to it."""

    def __init__(self, path: Path):
        self.path = path
        self._vectors: dict[str, np.ndarray] | None = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def vectors(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            if self.path.exists():
                with np.load(self.path) as data:
                    self._vectors = dict(zip(data["keys"].tolist(), data["vectors"]))
        return self._vectors

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Remember and write atomically; a concurrent writer's entries may be lost, never corrupted."""
        known = self.vectors()
        known.update({self.key(t): v for t, v in zip(texts, vectors)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        tmp.replace(self.path)


class FrozenEncoder:
    """A loaded encoder that is never trained, shared by every classifier in the process.

    Remembers the embedding of each text it has seen, so the tasks of a StanceModel and
    the folds of a cross-validation encode each paragraph once; with a `cache_dir`, texts it
    was trained on are also kept on disk across processes (EmbeddingCache).
    """

    MEMO_LIMIT = 20_000  # texts (~3 KB per pooled layer with mpnet): a corpus for CV, a few batches when scoring

    def __init__(self, folder: Path, precision: str, key: str | None = None, cache_dir: Path | None = None):
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # only the model at `precision` stays in memory (a bf16 or int8 encoder is converted in place)
        self.scorer = inference_model(AutoModel.from_pretrained(folder, use_safetensors=True).to(device()).eval(),
                                      precision, keep_original=False)
        self.hidden_size = self.scorer.config.hidden_size
        self._memo: dict[tuple, np.ndarray] = {}
        self._disk_prefix = None if cache_dir is None or key is None else cache_dir / f"{key}-{precision}-{LINEAR_KERNELS}"
        self._disk: dict[tuple, EmbeddingCache] = {}

    def embed(self, texts: Sequence[str], max_length: int, batch_size: int, persist: bool = False,
              layers: Sequence[int] = LAST_LAYER) -> np.ndarray:
        """(n, dim x len(layers)) embeddings (`sentence_embeddings`); `persist` (training) also writes newly
        encoded texts to the disk cache."""
        texts = [model_text(self.tokenizer, t, max_length) for t in texts]
        setting = (max_length, check_layers(layers, self.scorer.config.num_hidden_layers))
        todo = list(dict.fromkeys(t for t in texts if (setting, t) not in self._memo))
        disk = None
        if self._disk_prefix is not None:
            suffix = "" if setting[1] == LAST_LAYER else "-layers" + "_".join(map(str, setting[1]))
            disk = self._disk.setdefault(setting, EmbeddingCache(Path(f"{self._disk_prefix}-{max_length}{suffix}.npz")))
        if todo and disk is not None:
            stored = disk.vectors()
            found = [t for t in todo if EmbeddingCache.key(t) in stored]
            self._memo.update({(setting, t): stored[EmbeddingCache.key(t)] for t in found})
            todo = [t for t in todo if (setting, t) not in self._memo]
        if todo:
            if len(self._memo) + len(todo) > self.MEMO_LIMIT:
                self._memo.clear()
            vectors = sentence_embeddings(self.scorer, self.tokenizer, todo, max_length, batch_size, setting[1])
            self._memo.update({(setting, t): v for t, v in zip(todo, vectors)})
            if persist and disk is not None:
                disk.add(todo, vectors)
        dim = self.hidden_size * len(setting[1])
        return np.stack([self._memo[(setting, t)] for t in texts]) if texts else np.zeros((0, dim), np.float32)


_FROZEN: dict[tuple[str, str], FrozenEncoder] = {}


def frozen_encoder(folder: Path, key: str, precision: str = "fp32") -> FrozenEncoder:
    """The encoder with weights fingerprint `key` at `precision`, loaded from `folder` only the first time;
    its training embeddings are cached under $STANCE_CACHE/embeddings."""
    if (key, precision) not in _FROZEN:
        _FROZEN[(key, precision)] = FrozenEncoder(folder, precision, key, cache_root() / "embeddings")
    return _FROZEN[(key, precision)]


_FINGERPRINTS: dict[Path, str] = {}


def encoder_fingerprint(folder: Path) -> str:
    """`fingerprint`, computed once per process for a packaged encoder folder (hashing costs seconds)."""
    if folder not in _FINGERPRINTS:
        _FINGERPRINTS[folder] = fingerprint(folder)
    return _FINGERPRINTS[folder]


class FrozenPrefix:
    """Hidden states after the embeddings and the lower, frozen encoder layers, computed once per text.

    SetFit and fine-tuning train only the top `trainable_layers`; everything below never changes,
    and is the same for every fold of a cross-validation and every task. Caching its output per
    text makes each training step (and each fold's evaluation) cost only the trainable layers:
    this is what makes transformer cross-validation fit in minutes on two CPU cores.
    """

    MEMO_LIMIT = 5_000  # texts; ~200 KB each at 128 tokens

    def __init__(self, folder: Path, frozen_layers: int, max_length: int, batch_size: int):
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # inference only (the layers above are trained on its output): fp32 with prepacked Linear layers
        self.model = inference_model(AutoModel.from_pretrained(folder, use_safetensors=True).to(device()).eval(),
                                     "fp32", keep_original=False)
        self.frozen_layers = frozen_layers
        self.max_length = max_length
        self.batch_size = batch_size
        self._memo: dict[str, torch.Tensor] = {}

    def _compute(self, texts: list[str]) -> None:
        base, on = self.model, device()
        # no_grad, not inference_mode: the cached states feed layers that are trained with autograd
        with torch.no_grad(), progress("caching frozen layers", len(texts)) as advance:
            for idx, batch in token_batches(self.tokenizer, texts, self.max_length, self.batch_size, on):
                hidden = lower_states(base, batch, self.frozen_layers)
                for row, i in enumerate(idx):
                    length = int(batch["attention_mask"][row].sum())
                    self._memo[texts[i]] = hidden[row, :length].clone()
                advance(len(idx))

    def hidden(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (n, tokens, dim) right-padded with zeros, attention mask (n, tokens))."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if len(self._memo) + len(todo) > self.MEMO_LIMIT:
            self._memo.clear()
            todo = list(dict.fromkeys(texts))
        if todo:
            self._compute(todo)
        states = [self._memo[t] for t in texts]
        mask = torch.zeros(len(states), max(len(h) for h in states), dtype=torch.long, device=states[0].device)
        for row, h in enumerate(states):
            mask[row, :len(h)] = 1
        return torch.nn.utils.rnn.pad_sequence(states, batch_first=True), mask


_PREFIXES: dict[tuple[str, int, int], FrozenPrefix] = {}


def frozen_prefix(folder: Path, frozen_layers: int, max_length: int, batch_size: int = 32) -> FrozenPrefix:
    """The shared prefix cache of the encoder in `folder` with `frozen_layers` frozen layers."""
    key = (encoder_fingerprint(folder), frozen_layers, max_length)
    if key not in _PREFIXES:
        _PREFIXES[key] = FrozenPrefix(folder, frozen_layers, max_length, batch_size)
    return _PREFIXES[key]


def layer_outputs(base: PreTrainedModel, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int,
                  stop: int | None = None) -> list[torch.Tensor]:
    """The output of each encoder layer in [start, stop) of a BERT- or MPNet-style model, run on hidden states
    (MPNet's layers also take the relative position bias its encoder computes from the sequence length)."""
    mask = create_bidirectional_mask(config=base.config, inputs_embeds=hidden, attention_mask=attention_mask)
    extra = (base.encoder.compute_position_bias(hidden),) if hasattr(base.encoder, "relative_attention_bias") else ()
    outputs = []
    for layer in base.encoder.layer[start:stop]:
        out = layer(hidden, mask, *extra)
        hidden = out[0] if isinstance(out, tuple) else out
        outputs.append(hidden)
    return outputs


def upper_layers(base: PreTrainedModel, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int,
                 stop: int | None = None) -> torch.Tensor:
    """The hidden states after encoder layers [start, stop) (the input itself when the range is empty)."""
    return (layer_outputs(base, hidden, attention_mask, start, stop) or [hidden])[-1]


def embedding_states(base: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The embedding layer's output for a tokenized batch: hidden state 0, the input of encoder layer 0."""
    extra = {"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch else {}
    return base.embeddings(input_ids=batch["input_ids"], **extra)


def lower_states(base: PreTrainedModel, batch: dict[str, torch.Tensor], frozen_layers: int) -> torch.Tensor:
    """Hidden states after the embeddings and the first `frozen_layers` encoder layers of a tokenized batch."""
    return upper_layers(base, embedding_states(base, batch), batch["attention_mask"], 0, frozen_layers)


def frozen_modules(model: PreTrainedModel, frozen_layers: int) -> list[torch.nn.Module]:
    """The parts of a model that training never changes: the embeddings and the lower `frozen_layers` layers."""
    base = model.base_model
    return [base.embeddings, *base.encoder.layer[:frozen_layers]]


def trained_state(model: PreTrainedModel, frozen_layers: int) -> dict[str, torch.Tensor]:
    """The model's weights outside its frozen modules: all a task adds to the shared encoder."""
    names = {id(module): name for name, module in model.named_modules()}
    frozen = tuple(f"{names[id(m)]}." if names[id(m)] else "" for m in frozen_modules(model, frozen_layers))
    return {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(frozen)}


def shared_encoder_dir(task_folder: Path, key: str) -> Path:
    """Where a model folder keeps the encoder its tasks share: `encoders/<key>` beside `tasks/`."""
    return Path(task_folder).parent.parent / "encoders" / key


def save_shared_encoder(task_folder: Path, key: str, source: Path) -> Path:
    """Write the encoder in `source` (fp32 weights, tokenizer) to the model's `encoders/<key>` unless another
    task already did; returns that folder."""
    shared = shared_encoder_dir(task_folder, key)
    if not (shared / "config.json").exists():
        AutoModel.from_pretrained(source, use_safetensors=True).save_pretrained(shared)
        AutoTokenizer.from_pretrained(source).save_pretrained(shared)
    return shared


def resolve_shared_encoder(task_folder: Path, relative: str) -> Path:
    """The shared encoder a task's settings point to; only the model's own encoders/ folder is accepted."""
    encoder = (Path(task_folder) / relative).resolve()
    if not encoder.is_relative_to(Path(task_folder).resolve().parent.parent / "encoders"):
        raise ValueError(f"{task_folder}: encoder_dir points outside the model's encoders/ folder")
    return encoder


class TopLayersTrained(StanceClassifier):
    """What SetFit and fine-tuning share: only the top `trainable_layers` train (on a FrozenPrefix), so the
    embeddings and lower layers of every task are the packaged encoder's. A saved model keeps that encoder
    once (`encoders/<key>`, beside `tasks/`) and each task only its trained top (`top.safetensors`); when
    scoring, the lower layers run once for all tasks (`score_tasks`) and each task runs its top and head.
    Scoring runs at the model's inference `precision` (fp32 until `set_precision` says otherwise).

    A family subclass sets SETTINGS_FILE, builds `_model` in `fit`/`_build`, and turns the lower layers'
    states into probabilities in `proba_from_states`."""

    precisions = PRECISIONS
    shares_lower_layers = True
    SETTINGS_FILE = ""  # the family's settings file in a task folder

    def _init_state(self) -> None:
        self._model = None
        self._tokenizer = None
        self._scorer = None
        self._base_dir: Path | None = None  # the encoder whose lower layers every task shares
        self._base_key: str | None = None
        self._prefix: FrozenPrefix | None = None  # set while training in this process; a loaded model has none
        self.precision = "fp32"  # at scoring; fitting and cross-validation always use fp32

    def _start_fit(self) -> None:
        setup_torch(self.seed)
        self._base_dir = encoder_dir(self.params.encoder)
        self._base_key = encoder_fingerprint(self._base_dir)
        self._tokenizer = AutoTokenizer.from_pretrained(self._base_dir)

    def _frozen_layers(self) -> int:
        return self._model.config.num_hidden_layers - self.params.trainable_layers

    def lower_key(self) -> tuple:
        """Tasks with equal keys compute the same lower-layer states, so one pass serves them all."""
        return self._base_key, self._frozen_layers(), self.params.max_length, self.precision

    def set_precision(self, precision: str) -> None:
        self._scorer = inference_model(self._model, precision)
        self.precision = precision

    def proba_from_states(self, hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Via the cached frozen states while training in-process (same weights, same numbers), else one
        pass through the scoring model."""
        texts = list(texts)
        if self._prefix is None or self.precision != "fp32":
            return score_tasks({"task": self}, texts)["task"]
        proba = np.zeros((len(texts), len(self.classes)))
        with torch.no_grad():
            for idx in length_batches(texts, self.params.eval_batch_size):
                proba[idx] = self.proba_from_states(*self._prefix.hidden([texts[i] for i in idx]))
        return proba

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shared = save_shared_encoder(folder, self._base_key, self._base_dir)
        save_safetensors(trained_state(self._model, self._frozen_layers()), folder / "top.safetensors")
        self._model.config.to_json_file(folder / "config.json")
        meta = {**self.settings(), "precision": self.precision, "encoder_key": self._base_key,
                "encoder_dir": os.path.relpath(shared, folder)}
        (folder / self.SETTINGS_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = json.loads((folder / cls.SETTINGS_FILE).read_text(encoding="utf-8"))
        clf = cls.from_settings(meta)
        clf._base_dir, clf._base_key = resolve_shared_encoder(folder, meta["encoder_dir"]), meta["encoder_key"]
        clf._tokenizer = AutoTokenizer.from_pretrained(clf._base_dir)
        clf._model = clf._build(clf._base_dir, folder)
        top = load_safetensors(folder / "top.safetensors")
        expected = trained_state(clf._model, clf._frozen_layers())
        if set(top) != set(expected):
            raise ValueError(f"{folder}: top.safetensors does not hold this model's trained layers")
        clf._model.load_state_dict(top, strict=False)
        clf._model.to(device()).eval().requires_grad_(False)
        clf.set_precision(meta["precision"])
        return clf

    def _build(self, encoder: Path, task_folder: Path) -> PreTrainedModel:
        """The family's model on the shared encoder's weights, before the task's trained top is loaded."""
        raise NotImplementedError


def score_tasks(classifiers: dict[str, TopLayersTrained], texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Probabilities per task with one pass of the shared lower layers per batch (the tasks' `lower_key`s
    must be equal); each task runs only its own top layers and head on those states."""
    first = next(iter(classifiers.values()))
    texts = [model_text(first._tokenizer, t, first.params.max_length) for t in texts]
    on = next(first._scorer.parameters()).device
    out = {task: np.zeros((len(texts), len(clf.classes))) for task, clf in classifiers.items()}
    with torch.inference_mode(), progress("scoring", len(texts)) as advance:
        for idx, batch in token_batches(first._tokenizer, texts, first.params.max_length,
                                        first.params.eval_batch_size, on):
            hidden = lower_states(first._scorer.base_model, batch, first._frozen_layers())
            for task, clf in classifiers.items():
                out[task][idx] = clf.proba_from_states(hidden, batch["attention_mask"])
            advance(len(idx))
    return out


def freeze_lower_layers(model: PreTrainedModel, trainable_layers: int) -> None:
    """Train only the top `trainable_layers` transformer layers (and any head): on a few hundred
    examples this loses little, and backpropagation stops early, which is what makes CPU training fast."""
    layers = len(model.base_model.encoder.layer)
    if trainable_layers > layers:
        raise ValueError(f"trainable_layers={trainable_layers}, but the encoder has {layers} layers")
    for module in frozen_modules(model, layers - trainable_layers):
        for param in module.parameters():
            param.requires_grad_(False)


def optimizer_and_schedule(model: torch.nn.Module, learning_rate: float, weight_decay: float,
                           warmup_ratio: float, steps: int):
    """AdamW with linear warmup then linear decay to zero, as in the transformers Trainer."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    warmup = max(1, int(round(warmup_ratio * steps)))

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of similar-length items: random order, but little padding."""
    order = rng.permutation(len(lengths))
    pool = 8 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [[int(i) for i in chunk[j:j + batch_size]] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
