"""pipeline() next to transformers 4.57.6's pipelines on tiny random BERT checkpoints with the real MiniLM
(bert-base-uncased) vocabulary: same labels, entities, answers and tokens; scores within 1e-4; batched = unbatched."""
from __future__ import annotations

import logging
import shutil
import warnings

import pytest
import torch
import transformers

import leanformers
from oracle import MODELS

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", category=UserWarning)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")
MINILM = MODELS / "minilm"
ATOL = 1e-4
TEXTS = ["I love this movie!", "Terrible, awful, no good.", "ok", "Hugging Face is based in New York City.",
         "A much longer sentence that goes on and on about nothing much at all, really, in Paris and Berlin.",
         "Sarah Connor met John at the Cyberdyne Systems office in Los Angeles yesterday."]
LABELS = {"text": {0: "negative", 1: "neutral", 2: "positive"},
          "ner": {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}}

needs_minilm = pytest.mark.skipif(not (MINILM / "tokenizer.json").exists(),
                                  reason="run scripts/fetch_models.sh to fetch the MiniLM files")


def make_checkpoint(folder, head, seed=0, model_max_length=None, **config):
    """A tiny random BERT (real vocabulary size, odd small widths) + the MiniLM tokenizer files."""
    hf_config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=37, max_position_embeddings=512, initializer_range=0.3,
                                        **config)
    torch.manual_seed(seed)
    getattr(transformers, f"Bert{head}")(hf_config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(MINILM / name, folder / name)
    if model_max_length is not None:
        import json
        path = folder / "tokenizer_config.json"
        settings = json.loads(path.read_text())
        settings["model_max_length"] = model_max_length
        path.write_text(json.dumps(settings))
    return str(folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    labels = {k: {"id2label": v, "label2id": {n: i for i, n in v.items()}} for k, v in LABELS.items()}
    nli = {0: "contradiction", 1: "neutral", 2: "entailment"}
    return {
        "text": make_checkpoint(root / "text", "ForSequenceClassification", **labels["text"]),
        "single": make_checkpoint(root / "single", "ForSequenceClassification", num_labels=1),
        "ner": make_checkpoint(root / "ner", "ForTokenClassification", **labels["ner"]),
        "ner_short": make_checkpoint(root / "ner_short", "ForTokenClassification", model_max_length=12,
                                     **labels["ner"]),
        "qa": make_checkpoint(root / "qa", "ForQuestionAnswering"),
        "mlm": make_checkpoint(root / "mlm", "ForMaskedLM"),
        "nli": make_checkpoint(root / "nli", "ForSequenceClassification", id2label=nli,
                               label2id={v: k for k, v in nli.items()}),
        "base": make_checkpoint(root / "base", "Model"),
    }


def assert_same(theirs, ours, path="result"):
    """Equal structure, equal strings/ints, floats within ATOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(theirs) == set(ours), f"{path}: keys {set(theirs)} vs ours {set(ours)}"
        for key in theirs:
            assert_same(theirs[key], ours[key], f"{path}.{key}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(theirs) == len(ours), f"{path}: {theirs} vs ours {ours}"
        for i, (a, b) in enumerate(zip(theirs, ours)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, torch.Tensor):
        assert theirs.shape == ours.shape and (theirs - ours).abs().max() <= ATOL, path
    elif isinstance(theirs, float) or type(theirs).__name__.startswith("float"):
        assert abs(float(theirs) - float(ours)) <= ATOL, f"{path}: {theirs} vs ours {ours}"
    else:
        assert theirs == ours, f"{path}: {theirs!r} vs ours {ours!r}"


_BUILT = {}


def both(task, model, **kwargs):
    """(transformers' pipeline, ours) for the same checkpoint, built once per module."""
    key = (task, model, tuple(sorted(kwargs.items())))
    if key not in _BUILT:
        _BUILT[key] = (transformers.pipeline(task, model=model, **kwargs),
                       leanformers.pipeline(task, model=model, **kwargs))
    return _BUILT[key]


# ---------------------------------------------------------------- text classification
@needs_minilm
@pytest.mark.parametrize("call", [
    {}, {"top_k": None}, {"top_k": 2}, {"top_k": 1}, {"function_to_apply": "sigmoid"}, {"function_to_apply": "none"}])
def test_text_classification(checkpoints, call):
    theirs, ours = both("sentiment-analysis", checkpoints["text"])
    assert_same(theirs(TEXTS[0], **call), ours(TEXTS[0], **call))
    assert_same(theirs(TEXTS, **call), ours(TEXTS, **call))
    batched = leanformers.pipeline("text-classification", model=checkpoints["text"], batch_size=4)
    assert_same(theirs(TEXTS, **call), batched(TEXTS, **call))


@needs_minilm
def test_text_classification_pairs_single_label_and_stream(checkpoints):
    theirs, ours = both("text-classification", checkpoints["text"])
    pairs = [{"text": a, "text_pair": b} for a, b in zip(TEXTS, TEXTS[1:])]
    assert_same(theirs(pairs[0]), ours(pairs[0]))
    assert_same(theirs(pairs + TEXTS), ours(pairs + TEXTS))
    for pipe in (theirs, ours):  # a bare [text, pair] list is not a pair
        with pytest.raises(ValueError, match="text pairs"):
            pipe([[TEXTS[0], TEXTS[1]]])
    assert_same(theirs(TEXTS), list(ours(t for t in TEXTS)))
    theirs, ours = both("text-classification", checkpoints["single"])  # one label: sigmoid
    assert_same(theirs(TEXTS, top_k=None), ours(TEXTS, top_k=None))


@needs_minilm
def test_text_classification_long_texts(checkpoints):
    ours = leanformers.pipeline("text-classification", model=checkpoints["text"])
    long = " ".join(["word"] * 600)  # 602 tokens > 512 positions: transformers would crash
    cut = ours(long)
    assert cut == ours(" ".join(["word"] * 510))
    windows = ours(long, stride=16, top_k=None)
    assert abs(sum(r["score"] for r in windows) - 1) < 1e-5 and windows != cut
    with pytest.raises(ValueError, match="at most 512"):
        ours(long, truncation=False)


# ---------------------------------------------------------------- feature extraction
@needs_minilm
def test_feature_extraction(checkpoints):
    theirs, ours = both("feature-extraction", checkpoints["base"])
    assert_same(theirs(TEXTS[0]), ours(TEXTS[0]))
    assert_same(theirs(TEXTS), ours(TEXTS))
    assert_same(theirs(TEXTS[:2], return_tensors=True), ours(TEXTS[:2], return_tensors=True))
    batched = leanformers.pipeline("feature-extraction", model=checkpoints["base"], batch_size=8)
    assert_same(theirs(TEXTS), batched(TEXTS))  # cut to each text's length, unlike transformers' padded rows
    long = " ".join(["word"] * 600)
    assert_same(theirs(long, truncation=True), ours(long, truncation=True))
    assert_same(theirs(TEXTS[0], tokenize_kwargs={"max_length": 4, "truncation": True}),
                ours(TEXTS[0], tokenize_kwargs={"max_length": 4, "truncation": True}))


@needs_minilm
def test_sentence_embeddings_real_minilm():
    """The real all-MiniLM-L6-v2 with its own pooling settings gives the similarities in shared/MODELS.md."""
    embed = leanformers.pipeline("feature-extraction", model=str(MINILM), pooling="auto", batch_size=4)
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "Someone is having a meal.",
                 "The stock market crashed today."]
    vectors = torch.tensor(embed(sentences))
    assert vectors.shape == (4, 384) and torch.allclose(vectors.norm(dim=1), torch.ones(4), atol=1e-5)
    similarities = (vectors[1:] @ vectors[0]).tolist()
    assert [round(s, 3) for s in similarities] == [0.755, 0.689, 0.009]
    theirs = transformers.pipeline("feature-extraction", model=str(MINILM))(sentences[0], return_tensors=True)[0]
    mean = theirs.mean(0)
    assert (torch.tensor(embed(sentences[0])) - mean / mean.norm()).abs().max() < 1e-5
    cls = leanformers.pipeline("feature-extraction", model=str(MINILM), pooling="cls")(sentences[0])
    assert (torch.tensor(cls) - theirs[0]).abs().max() < 1e-4


# ---------------------------------------------------------------- token classification
@needs_minilm
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification(checkpoints, strategy):
    theirs, ours = both("ner", checkpoints["ner"])
    call = {"aggregation_strategy": strategy, "ignore_labels": []}
    assert_same(theirs(TEXTS[3], **call), ours(TEXTS[3], **call))
    assert_same(theirs(TEXTS, **call), ours(TEXTS, **call))
    assert_same(theirs(TEXTS, aggregation_strategy=strategy), ours(TEXTS, aggregation_strategy=strategy))
    batched = leanformers.pipeline("ner", model=checkpoints["ner"], batch_size=3)
    assert_same(theirs(TEXTS, **call), batched(TEXTS, **call))
    words = TEXTS[5].split()
    assert_same(theirs(words, is_split_into_words=True, **call), ours(words, is_split_into_words=True, **call))


@needs_minilm
@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_token_classification_long_text_windows(checkpoints, strategy):
    """model_max_length 12 splits each text into overlapping windows; merged entities equal transformers'."""
    theirs, ours = both("ner", checkpoints["ner_short"])
    call = {"aggregation_strategy": strategy, "ignore_labels": [], "stride": 4}
    assert_same(theirs(TEXTS[4:], **call), ours(TEXTS[4:], **call))
    batched = leanformers.pipeline("ner", model=checkpoints["ner_short"], batch_size=4)
    assert_same(theirs(TEXTS[4:], **call), batched(TEXTS[4:], **call))
    with pytest.raises(ValueError, match="aggregation_strategy"):
        ours(TEXTS[4], stride=4)


# ---------------------------------------------------------------- question answering
CONTEXT = ("Hugging Face Inc. is a company based in New York City. Its headquarters are in DUMBO, therefore very "
           "close to the Manhattan Bridge. The company was founded in 2016 by French entrepreneurs.")
QUESTIONS = ["Where is Hugging Face based?", "Who founded the company?", "When was it founded?"]


@needs_minilm
@pytest.mark.parametrize("call", [{}, {"top_k": 3}, {"handle_impossible_answer": True, "top_k": 2},
                                  {"align_to_words": False, "max_answer_len": 4}])
def test_question_answering(checkpoints, call):
    theirs, ours = both("question-answering", checkpoints["qa"])
    assert_same(theirs(question=QUESTIONS[0], context=CONTEXT, **call),
                ours(question=QUESTIONS[0], context=CONTEXT, **call))
    assert_same(theirs(question=QUESTIONS, context=CONTEXT, **call), ours(question=QUESTIONS, context=CONTEXT, **call))
    examples = [{"question": q, "context": CONTEXT[i * 20:]} for i, q in enumerate(QUESTIONS)]
    assert_same(theirs(examples, **call), ours(examples, **call))
    assert_same(theirs(examples[:1], **call), ours(examples[:1], **call))
    assert_same(theirs(QUESTIONS[1], CONTEXT, **call), ours(QUESTIONS[1], CONTEXT, **call))


@needs_minilm
def test_question_answering_long_context(checkpoints):
    """A context of ~500 tokens: spans of max_seq_len with doc_stride overlap, batched together."""
    theirs, ours = both("question-answering", checkpoints["qa"])
    long_context = " ".join([CONTEXT] * 14)
    call = {"question": QUESTIONS, "context": long_context, "top_k": 2}
    assert_same(theirs(**call), ours(**call))
    assert_same(theirs(**call, max_seq_len=64, doc_stride=16), ours(**call, max_seq_len=64, doc_stride=16))
    batched = leanformers.pipeline("question-answering", model=checkpoints["qa"], batch_size=4)
    assert_same(theirs(**call), batched(**call))


# ---------------------------------------------------------------- fill-mask
MASKED = ["Paris is the [MASK] of France.", "The [MASK] sat on the mat.", "I [MASK] you and [MASK] them."]


@needs_minilm
@pytest.mark.parametrize("call", [{}, {"top_k": 2}, {"targets": ["capital", "city", "cat"]}, {"targets": "dog"},
                                  {"targets": ["capital", "unaffable"], "top_k": 3}])
def test_fill_mask(checkpoints, call):
    theirs, ours = both("fill-mask", checkpoints["mlm"])
    assert_same(theirs(MASKED[0], **call), ours(MASKED[0], **call))
    assert_same(theirs(MASKED, **call), ours(MASKED, **call))
    assert_same(theirs(MASKED[2:], **call), ours(MASKED[2:], **call))  # two masks: a list per mask
    batched = leanformers.pipeline("fill-mask", model=checkpoints["mlm"], batch_size=2)
    assert_same(theirs(MASKED, **call), batched(MASKED, **call))


# ---------------------------------------------------------------- zero-shot
@needs_minilm
@pytest.mark.parametrize("call", [{"candidate_labels": ["politics", "sports", "cooking", "travel", "science"]},
                                  {"candidate_labels": "politics, sports", "multi_label": True},
                                  {"candidate_labels": ["sports"]},
                                  {"candidate_labels": ["good", "bad"], "hypothesis_template": "The mood is {}."}])
def test_zero_shot(checkpoints, call):
    theirs, ours = both("zero-shot-classification", checkpoints["nli"])
    assert_same(theirs(TEXTS[0], **call), ours(TEXTS[0], **call))
    assert_same(theirs(TEXTS, **call), ours(TEXTS, **call))
    batched = leanformers.pipeline("zero-shot-classification", model=checkpoints["nli"], batch_size=4)
    assert_same(theirs(TEXTS, **call), batched(TEXTS, **call))
    labels = call["candidate_labels"]
    assert_same(theirs(TEXTS[1], labels), ours(TEXTS[1], labels))


# ---------------------------------------------------------------- bad input, factory behaviour
@needs_minilm
def test_clear_errors(checkpoints):
    classify = leanformers.pipeline("text-classification", model=checkpoints["text"])
    for bad, error, match in ((None, TypeError, "must be a str"),  # "" gets a label, as in transformers
                              (3, TypeError, "must be a str"), ({"txt": "a"}, ValueError, "keys")):
        with pytest.raises(error, match=match):
            classify(bad)
    with pytest.raises(TypeError, match="unexpected argument.*topk"):
        classify("fine", topk=2)
    with pytest.raises(ValueError, match="No mask_token"):
        leanformers.pipeline("fill-mask", model=checkpoints["mlm"])("no mask here")
    qa = leanformers.pipeline("question-answering", model=checkpoints["qa"])
    with pytest.raises(ValueError, match="context missing"):
        qa(question="Where?")
    with pytest.raises(ValueError, match="'context'"):
        qa({"question": "Where?"})
    with pytest.raises(ValueError, match="empty"):
        qa(question="Where?", context="  ")
    zero_shot = leanformers.pipeline("zero-shot-classification", model=checkpoints["nli"])
    with pytest.raises(ValueError, match="candidate_labels"):
        zero_shot("text")
    with pytest.raises(ValueError, match="hypothesis_template"):
        zero_shot("text", candidate_labels=["a"], hypothesis_template="no slot")
    with pytest.raises(KeyError, match="Unknown task 'sentiment'.*text-classification"):
        leanformers.pipeline("sentiment", model=checkpoints["text"])
    wrong_head = leanformers.AutoModelForSequenceClassification.from_pretrained(checkpoints["text"])
    with pytest.raises(ValueError, match="needs a \\*ForTokenClassification model"):
        leanformers.pipeline("ner", model=wrong_head)
    with pytest.raises(ValueError, match="batch_size"):
        leanformers.pipeline("text-classification", model=checkpoints["text"], batch_size=0)


@needs_minilm
def test_factory_defaults_objects_and_task_inference(checkpoints, monkeypatch):
    model = leanformers.AutoModelForTokenClassification.from_pretrained(checkpoints["ner"])
    tokenizer = leanformers.AutoTokenizer.from_pretrained(checkpoints["ner"])
    by_objects = leanformers.pipeline("ner", model=model, tokenizer=tokenizer)
    by_task_inference = leanformers.pipeline(model=checkpoints["ner"])
    assert by_task_inference.task == "token-classification"
    assert by_objects(TEXTS[3]) == by_task_inference(TEXTS[3])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="distilbert/distilbert-base-uncased-finetuned-sst-2-english"):
        leanformers.pipeline("sentiment-analysis")


@needs_minilm
def test_progress_dtype_and_call_batch_size(checkpoints, capsys):
    classify = leanformers.pipeline("text-classification", model=checkpoints["text"], progress=True, batch_size=2)
    expected = leanformers.pipeline("text-classification", model=checkpoints["text"])(TEXTS)
    assert_same(expected, classify(TEXTS))
    assert "text-classification" in capsys.readouterr().err  # the progress bar, on stderr
    assert_same(expected, classify(TEXTS, batch_size=5))
    half = leanformers.pipeline("text-classification", model=checkpoints["text"], dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16
    assert [r["label"] for r in half(TEXTS[:2], top_k=None)[0]] and isinstance(half(TEXTS[0])[0]["score"], float)


def test_least_padding_groups():
    from leanformers.pipelines.base import least_padding_cuts

    assert least_padding_cuts([], 4) == [0] and least_padding_cuts([7], 4) == [0, 1]
    assert least_padding_cuts([5, 5, 5], 1) == [0, 1, 2, 3]
    assert least_padding_cuts([9, 9, 9, 9], 8) == [0, 4]  # equal lengths: one pass
    cuts = least_padding_cuts([200, 10, 10, 10, 10, 10], 8)  # the long row alone, the short ones together
    assert cuts == [0, 1, 6]
