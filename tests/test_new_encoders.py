"""Issue 13's encoders x every head transformers has, against the oracle on tiny random checkpoints: outputs and
losses, padded batches against single runs, a base checkpoint into a head model, hidden states and attentions, and
the pipelines on them."""
import logging
from pathlib import Path

import pytest
import torch
import transformers

import leanformers
from oracle import assert_close, assert_padded_equals_alone, random_inputs, save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")
transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)

HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
         "ForMultipleChoice"]
_SIZES = dict(vocab_size=99, hidden_size=36, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, num_labels=3, initializer_range=0.1)

# architecture -> (class-name prefix, tiny config with odd sizes); each entry runs for every head
TINY = {
    "mpnet": ("MPNet", lambda: transformers.MPNetConfig(**_SIZES, relative_attention_num_buckets=32)),
    # four layers: global, local, local, global; a window of 2 either side, within the 9-token inputs
    "modernbert": ("ModernBert", lambda: transformers.ModernBertConfig(
        **{**_SIZES, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 4}, local_attention=4,
        global_rope_theta=1000.0, local_rope_theta=50.0, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        cls_token_id=2, sep_token_id=1)),
    "modernbert-mean-biases": ("ModernBert", lambda: transformers.ModernBertConfig(
        **{**_SIZES, "hidden_size": 32, "intermediate_size": 40}, local_attention=4, classifier_pooling="mean",
        norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True, pad_token_id=0, eos_token_id=1,
        bos_token_id=2, cls_token_id=2, sep_token_id=1)),
    # DeBERTa-v3: shared keys, log buckets, a normed table, no absolute positions
    "deberta-v3": ("DebertaV2", lambda: transformers.DebertaV2Config(
        **_SIZES, relative_attention=True, position_buckets=8, max_relative_positions=64, pos_att_type=["p2c", "c2p"],
        share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)),
    # DeBERTa-v2's: separate position projections, absolute positions too, token types, embedding_size != hidden
    "deberta-v2": ("DebertaV2", lambda: transformers.DebertaV2Config(
        **_SIZES, relative_attention=True, max_relative_positions=6, pos_att_type="c2p|p2c", share_att_key=False,
        position_biased_input=True, type_vocab_size=2, embedding_size=20)),
}


def _inputs(config, batch=3, length=9, seed=0):
    ids, mask = random_inputs(config.vocab_size, batch, length, seed=seed, special=(3,))
    ids = ids.masked_fill(mask == 0, config.pad_token_id)  # positions count past padding (RoBERTa / MPNet)
    extra = {}
    if getattr(config, "type_vocab_size", 0) > 1:
        extra["token_type_ids"] = (torch.arange(length) >= length // 2).long().expand(batch, length).contiguous()
    return ids, mask, extra


def _oracle(arch, head, **overrides):
    prefix, make_config = TINY[arch]
    config = make_config()
    for k, v in overrides.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    model = getattr(transformers, prefix + head)(config).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # norms away from their init, so that a norm applied wrong shows
        for name, param in model.named_parameters():
            if "norm" in name.lower() and param.dim() == 1:
                param.add_(0.3 * torch.randn(param.shape, generator=g))
    return model


def _run(model, ids, mask, extra, head, **kwargs):
    if head == "ForMultipleChoice":  # (batch, choices, length): three choices that differ by a rotation
        ids = torch.stack([ids.roll(i, dims=1) for i in range(3)], 1)
        mask = mask[:, None].expand(-1, 3, -1).contiguous()
        extra = {k: v[:, None].expand(-1, 3, -1).contiguous() for k, v in extra.items()}
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, **extra, **kwargs)


def _labels(head, ids, mask):
    g = torch.Generator().manual_seed(2)
    return {
        "ForSequenceClassification": {"labels": torch.tensor([2, 0, 1])},
        "ForTokenClassification": {"labels": torch.randint(0, 3, ids.shape, generator=g).masked_fill(mask == 0, -100)},
        "ForMaskedLM": {"labels": torch.randint(0, 99, ids.shape, generator=g).masked_fill(mask == 0, -100)},
        "ForQuestionAnswering": {"start_positions": torch.tensor([1, 4, 30]), "end_positions": torch.tensor([3, 6, 2])},
        "ForMultipleChoice": {"labels": torch.tensor([2, 0, 1])},
    }.get(head, {})


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_head_checkpoint_parity(arch, head, safe, tmp_path):
    theirs = _oracle(arch, head, **({"num_labels": 2} if head == "ForQuestionAnswering" else {}))
    folder = save_tiny(theirs, tmp_path / "ckpt", safe=safe)
    ours = getattr(leanformers, TINY[arch][0] + head).from_pretrained(folder)
    assert not ours.loading_info["missing_keys"] and not ours.loading_info["unexpected_keys"], ours.loading_info
    ids, mask, extra = _inputs(theirs.config)
    labels = _labels(head, ids, mask) if safe else {}  # outputs with and without the loss
    expected, got = _run(theirs, ids, mask, extra, head, **labels), _run(ours, ids, mask, extra, head, **labels)
    keys = [k for k, v in expected.items() if isinstance(v, torch.Tensor)]
    if head in ("Model", "ForMaskedLM", "ForTokenClassification"):  # per token: the real tokens
        real = mask.bool()
        keys = [k for k in keys if k != "pooler_output"]  # (batch, hidden), compared whole below
        if "pooler_output" in expected:
            assert_close(expected, got, keys=["pooler_output"], what=f"{arch}{head}")
        expected = {k: expected[k][real] if expected[k].dim() > 1 else expected[k] for k in keys}
        got = {k: got[k][real] if got[k].dim() > 1 else got[k] for k in keys}
    assert_close(expected, got, keys=keys, what=f"{arch}{head}")


@pytest.mark.parametrize("arch", sorted(TINY))
def test_auto_classes_padding_and_base_checkpoint(arch, tmp_path):
    theirs = _oracle(arch, "ForSequenceClassification")
    folder = save_tiny(theirs, tmp_path / "ckpt")
    ours = leanformers.AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(ours).__name__ == TINY[arch][0] + "ForSequenceClassification"
    ids, mask, extra = _inputs(theirs.config)
    assert_padded_equals_alone(ours, ids, mask, **extra)
    base = leanformers.AutoModel.from_pretrained(folder)  # a head checkpoint into the base model
    real = mask.bool()
    assert_close({"h": _run(theirs.base_model, ids, mask, extra, "Model").last_hidden_state[real]},
                 {"h": _run(base, ids, mask, extra, "Model").last_hidden_state[real]})
    base_folder = save_tiny(_oracle(arch, "Model"), tmp_path / "base")
    head = leanformers.AutoModelForTokenClassification.from_pretrained(base_folder, num_labels=5)
    missing = head.loading_info["missing_keys"]
    assert missing and all(k.startswith("head.") for k in missing), missing


@pytest.mark.parametrize("arch", sorted(TINY))
def test_hidden_states_and_attentions(arch, tmp_path):
    theirs = _oracle(arch, "Model")
    theirs.config._attn_implementation = "eager"
    ours = leanformers.AutoModel.from_pretrained(save_tiny(theirs, tmp_path / "ckpt"))
    ids, mask, extra = _inputs(theirs.config)
    a = _run(theirs, ids, mask, extra, "Model", output_hidden_states=True, output_attentions=True)
    b = _run(ours, ids, mask, extra, "Model", output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == len(b.hidden_states) and len(a.attentions) == len(b.attentions)
    real = mask.bool()
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close({"t": x[real]}, {"t": y[real]}, what=f"hidden state {i}")
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions)):  # rows of real queries
        assert_close({"t": x.transpose(1, 2)[real]}, {"t": y.transpose(1, 2)[real]}, what=f"attention {i}")


# ---------------------------------------------------------------- pipelines
MINILM_VOCAB = Path(__file__).resolve().parents[1] / ".models" / "minilm" / "vocab.txt"
needs_vocab = pytest.mark.skipif(not MINILM_VOCAB.exists(), reason="run scripts/fetch_models.sh for the MiniLM files")
TEXTS = ["I love this movie!", "Terrible, awful, no good.", "ok", "Hugging Face is based in New York City.",
         "A much longer sentence that goes on and on about nothing much at all, really, in Paris and Berlin."]


def _pipeline_outputs_close(theirs, ours, path="result"):
    if isinstance(theirs, dict):
        assert set(theirs) == set(ours), path
        for key in theirs:
            _pipeline_outputs_close(theirs[key], ours[key], f"{path}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert len(theirs) == len(ours), path
        for i, (a, b) in enumerate(zip(theirs, ours)):
            _pipeline_outputs_close(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert abs(theirs - ours) <= 1e-4, f"{path}: {theirs} vs ours {ours}"
    else:
        assert theirs == ours, f"{path}: {theirs!r} vs ours {ours!r}"


@needs_vocab
def test_mpnet_feature_extraction_and_sentence_embeddings(tmp_path):
    """A tiny MPNet with an MPNet tokenizer over the bert-base-uncased vocabulary: feature-extraction equals
    transformers' pipeline; pooling="mean" + normalize gives sentence-transformers' mean pooling of those states."""
    tokenizer = transformers.MPNetTokenizerFast(vocab_file=str(MINILM_VOCAB))
    config = transformers.MPNetConfig(**{**_SIZES, "vocab_size": len(tokenizer), "max_position_embeddings": 514})
    torch.manual_seed(0)
    transformers.MPNetModel(config).eval().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    theirs = transformers.pipeline("feature-extraction", model=str(tmp_path))
    ours = leanformers.pipeline("feature-extraction", model=str(tmp_path))
    _pipeline_outputs_close(theirs(TEXTS), ours(TEXTS))
    assert leanformers.AutoTokenizer.from_pretrained(tmp_path)(TEXTS[0]).keys() == {"input_ids", "attention_mask"}
    embed = leanformers.pipeline("feature-extraction", model=str(tmp_path), pooling="mean", normalize=True,
                                 batch_size=4)
    vectors = torch.tensor(embed(TEXTS))
    for text, vector in zip(TEXTS, vectors):
        mean = theirs(text, return_tensors=True)[0].mean(0)
        assert (vector - mean / mean.norm()).abs().max() < 1e-5


SPM = Path(__file__).resolve().parents[1] / ".models" / "spm"
needs_spm = pytest.mark.skipif(not (SPM / "botchan_en_unigram_1000.model").exists(),
                               reason="run scripts/fetch_models.sh for the SentencePiece models")
NLI = {0: "contradiction", 1: "neutral", 2: "entailment"}


def _deberta_tokenizer_folder(folder, **options):
    """A DeBERTa-v2 tokenizer over a real SentencePiece model, saved as microsoft/deberta-v3-* ship theirs: spm.model
    and tokenizer_config.json, no tokenizer.json (so both libraries convert it)."""
    tokenizer = transformers.DebertaV2Tokenizer(vocab_file=str(SPM / "botchan_en_unigram_1000.model"), **options)
    tokenizer.save_pretrained(folder)
    assert not (Path(folder) / "tokenizer.json").exists() and (Path(folder) / "spm.model").exists()
    return tokenizer


@needs_spm
@pytest.mark.parametrize("options", [{}, {"do_lower_case": True, "split_by_punct": True}])
def test_deberta_sentencepiece_tokenizer_equals_oracle(options, tmp_path):
    _deberta_tokenizer_folder(tmp_path, **options)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = leanformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["Hello World, how are you?", "  spaces   inside  and out  ", "I didn't go; (really!) [MASK] x",
             "Botchan was a boy 123,456.78"]
    for text in texts:
        expected = theirs(text, return_offsets_mapping=True)
        got = ours(text, return_offsets_mapping=True)
        assert dict(got) == {k: list(v) for k, v in expected.items()}, text
        assert ours.decode(got["input_ids"]) == theirs.decode(expected["input_ids"]), text
    pair = (texts[0], texts[2])
    assert dict(ours(*pair)) == dict(theirs(*pair))


@needs_spm
def test_zero_shot_on_deberta_nli_head(tmp_path):
    """zero-shot-classification on a tiny DeBERTa-v3-style NLI head equals transformers' pipeline."""
    tokenizer = _deberta_tokenizer_folder(tmp_path)
    config = TINY["deberta-v3"][1]()
    config.vocab_size, config.id2label, config.label2id = len(tokenizer), NLI, {v: k for k, v in NLI.items()}
    config.max_position_embeddings = 512
    torch.manual_seed(0)
    transformers.DebertaV2ForSequenceClassification(config).eval().save_pretrained(tmp_path)
    theirs = transformers.pipeline("zero-shot-classification", model=str(tmp_path))
    ours = leanformers.pipeline("zero-shot-classification", model=str(tmp_path))
    labels = ["travel", "cooking", "dancing"]
    for call in ({}, {"multi_label": True}):
        _pipeline_outputs_close(theirs(TEXTS, candidate_labels=labels, **call),
                                ours(TEXTS, candidate_labels=labels, **call))
