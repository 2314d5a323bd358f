"""text-generation (and the seq2seq pipelines) next to transformers 4.57.6's pipelines on tiny random checkpoints
with the real GPT-2 vocabulary: identical generated texts and token ids, batched (left-padded) = one by one."""
from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
import transformers

import leanformers
from oracle import MODELS

transformers.logging.set_verbosity_error()
logging.getLogger("leanformers").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

GPT2_VOCAB = MODELS / "gpt2_vocab"
PROMPTS = ["Hello, my dog is", "The capital of France", "Once upon a time there was a very long", "A"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
needs_vocab = pytest.mark.skipif(not (GPT2_VOCAB / "vocab.json").exists(), reason="run scripts/fetch_models.sh")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny random GPT-2 (real 50257-token vocabulary, 128 positions) with a chat template."""
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                     initializer_range=0.5)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_VOCAB / name, folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 128, "chat_template": CHAT_TEMPLATE}))
    folder = str(folder)
    return folder, transformers.pipeline("text-generation", model=folder), \
        leanformers.pipeline("text-generation", model=folder), \
        leanformers.pipeline("text-generation", model=folder, batch_size=3)


@needs_vocab
@pytest.mark.parametrize("call", [
    {"do_sample": False, "max_new_tokens": 8},
    {"do_sample": False, "max_new_tokens": 5, "num_beams": 3, "num_return_sequences": 2},
    {"do_sample": False, "max_new_tokens": 4, "return_full_text": False},
    {"do_sample": False, "max_new_tokens": 4, "return_tensors": True},
    {"do_sample": False, "max_new_tokens": 6, "prefix": "In short: "},
    {"do_sample": False, "max_new_tokens": 9, "stop_sequence": " fourteen"},
    {"do_sample": False, "max_new_tokens": 6, "repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
])
def test_text_generation(gpt2, call):
    _, theirs, ours, batched = gpt2
    assert ours(PROMPTS[0], **call) == theirs(PROMPTS[0], **call)
    expected = theirs(PROMPTS, **call)
    assert ours(PROMPTS, **call) == expected
    assert batched(PROMPTS, **call) == expected  # left-padded groups of 3


@needs_vocab
def test_text_generation_sampling_chat_and_stream(gpt2):
    _, theirs, ours, _ = gpt2
    call = {"max_new_tokens": 6, "do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 0.8}
    for prompt in PROMPTS[:2]:  # single prompts: transformers' list path draws a DataLoader seed from the RNG first
        torch.manual_seed(3)
        expected = theirs(prompt, **call)
        torch.manual_seed(3)
        assert ours(prompt, **call) == expected
    chat = [{"role": "user", "content": "Hi there"}]
    continued = chat + [{"role": "assistant", "content": "Well"}]
    for messages in (chat, continued):
        assert ours(messages, do_sample=False, max_new_tokens=5) == theirs(messages, do_sample=False, max_new_tokens=5)
    assert ours([chat, continued], do_sample=False, max_new_tokens=3) == \
        theirs([chat, continued], do_sample=False, max_new_tokens=3)
    assert list(ours((p for p in PROMPTS), do_sample=False, max_new_tokens=3)) == \
        theirs(PROMPTS, do_sample=False, max_new_tokens=3)


@needs_vocab
def test_text_generation_defaults_and_errors(gpt2):
    folder, theirs, ours, _ = gpt2
    assert ours.generation_config.max_new_tokens == 256 and ours.generation_config.do_sample
    assert ours.generation_config.temperature == 0.7
    with pytest.raises(ValueError, match="max_new_tokens"):
        ours(PROMPTS[0], max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        ours(PROMPTS[0], temperature=0.0, do_sample=True)
    with pytest.raises(ValueError, match="top_p"):
        ours(PROMPTS[0], top_p=1.5, do_sample=True)
    with pytest.raises(ValueError, match="num_return_sequences"):
        ours(PROMPTS[0], do_sample=False, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="context window is 128"):
        ours("word " * 200, max_new_tokens=2)
    assert ours("word " * 200, max_new_tokens=2, do_sample=False, handle_long_generation="hole") == \
        theirs("word " * 200, max_new_tokens=2, do_sample=False, handle_long_generation="hole")
    encoder = leanformers.AutoModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="ForCausalLM"):
        leanformers.pipeline("text-generation", model=encoder, tokenizer=folder)


# ---------------------------------------------------------------- encoder-decoders: text2text, summary, translation
SPM = MODELS / "spm"
SOURCES = ["I was a naughty boy.", "Hello, unaffable world!", "The weather is nice and I went out for a long walk.",
           "Yes."]
needs_spm = pytest.mark.skipif(not (SPM / "botchan_en_unigram_1000.model").exists(), reason="run fetch_models.sh")


def _spm_vocab(folder, spm_files: dict, head: list, tail: list) -> dict:
    import sentencepiece

    pieces = list(head)
    for source, target in spm_files.items():
        shutil.copy(SPM / source, folder / target)
        processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / target))
        pieces += [p for p in map(processor.id_to_piece, range(3, processor.get_piece_size())) if p not in pieces]
    vocab = {p: i for i, p in enumerate(pieces + tail)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return vocab


def _save(folder, model, tokenizer_config):
    model.eval().save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return str(folder)


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    """Tiny random Marian (source/target SentencePiece + vocab.json), T5 (spiece.model, task_specific_params) and
    M2M100 (language codes) checkpoints."""
    root = tmp_path_factory.mktemp("seq2seq")
    marian = root / "marian"
    marian.mkdir()
    vocab = _spm_vocab(marian, {"botchan_en_unigram_1000.model": "source.spm", "botchan_en_bpe_1000.model":
                                "target.spm"}, ["</s>", "<unk>"], [">>fr<<", ">>de<<", "<pad>"])
    torch.manual_seed(0)
    small = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.3)
    model = transformers.MarianMTModel(transformers.MarianConfig(
        vocab_size=len(vocab), pad_token_id=vocab["<pad>"], eos_token_id=0, decoder_start_token_id=vocab["<pad>"],
        forced_eos_token_id=0, **small))
    folders = {"marian": _save(marian, model, {"tokenizer_class": "MarianTokenizer", "model_max_length": 64})}

    t5 = root / "t5"
    t5.mkdir()
    shutil.copy(SPM / "botchan_en_unigram_1000.model", t5 / "spiece.model")
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5"}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(t5))
    torch.manual_seed(1)
    params = {"summarization": {"prefix": "summarize: ", "max_length": 12, "min_length": 3, "num_beams": 2},
              "translation_en_to_de": {"prefix": "translate English to German: ", "max_length": 10}}
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, initializer_factor=3.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0,
        task_specific_params=params))
    folders["t5"] = _save(t5, model, {"tokenizer_class": "T5Tokenizer", "model_max_length": 64})

    m2m = root / "m2m"
    m2m.mkdir()
    _spm_vocab(m2m, {"botchan_en_bpe_1000.model": "sentencepiece.bpe.model"}, ["<s>", "<pad>", "</s>", "<unk>"], [])
    (m2m / "config.json").write_text(json.dumps({"model_type": "m2m_100"}))
    (m2m / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "M2M100Tokenizer"}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(m2m))
    torch.manual_seed(2)
    model = transformers.M2M100ForConditionalGeneration(transformers.M2M100Config(
        vocab_size=len(tokenizer) + 110, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, bos_token_id=0,
        **{k: v for k, v in small.items() if k != "max_position_embeddings"}, max_position_embeddings=64))
    folders["m2m"] = _save(m2m, model, {"tokenizer_class": "M2M100Tokenizer"})
    return folders


def _same_seq2seq(task, folder, inputs, batch_size=3, **call):
    theirs = transformers.pipeline(task, model=folder)
    ours = leanformers.pipeline(task, model=folder)
    batched = leanformers.pipeline(task, model=folder, batch_size=batch_size)
    expected = theirs(inputs, **call)
    assert ours(inputs, **call) == expected
    assert batched(inputs, **call) == expected
    return expected


@needs_spm
@pytest.mark.parametrize("call", [{"max_new_tokens": 6}, {"max_new_tokens": 5, "num_beams": 1},
                                  {"max_new_tokens": 7, "num_beams": 3, "num_return_sequences": 2,
                                   "no_repeat_ngram_size": 2, "length_penalty": 0.5},
                                  {"max_new_tokens": 4, "clean_up_tokenization_spaces": True}])
def test_translation_marian(seq2seq, call):
    expected = _same_seq2seq("translation", seq2seq["marian"], SOURCES, **call)
    assert isinstance(expected[0], (dict, list))
    assert _same_seq2seq("translation", seq2seq["marian"], SOURCES[0], **call)


@needs_spm
def test_text2text_and_return_tensors(seq2seq):
    theirs = transformers.pipeline("text2text-generation", model=seq2seq["marian"])
    ours = leanformers.pipeline("text2text-generation", model=seq2seq["marian"], batch_size=2)
    expected = theirs(SOURCES, max_new_tokens=5, return_tensors=True)
    got = ours(SOURCES, max_new_tokens=5, return_tensors=True)
    assert [r["generated_token_ids"].tolist() for r in got] == [r["generated_token_ids"].tolist() for r in expected]
    assert ours(SOURCES, max_new_tokens=5) == theirs(SOURCES, max_new_tokens=5)


@needs_spm
def test_t5_task_prefixes_and_settings(seq2seq):
    """summarization and translation_en_to_de take T5's task_specific_params (prefix, max_length, num_beams)."""
    # max_new_tokens: the pipeline default (256) outranks the task's max_length, in transformers as here
    summaries = _same_seq2seq("summarization", seq2seq["t5"], SOURCES, max_new_tokens=6)
    assert set(summaries[0]) == {"summary_text"}
    translations = _same_seq2seq("translation_en_to_de", seq2seq["t5"], SOURCES, max_new_tokens=6)
    assert set(translations[0]) == {"translation_text"}
    ours = leanformers.pipeline("translation_en_to_de", model=seq2seq["t5"])
    assert ours.prefix == "translate English to German: " and ours.generation_config.max_length == 10
    assert leanformers.pipeline("summarization", model=seq2seq["t5"]).generation_config.num_beams == 2


@needs_spm
def test_translation_language_codes(seq2seq):
    """M2M100: src_lang / tgt_lang set the source code and force the target code as the first token."""
    _same_seq2seq("translation", seq2seq["m2m"], SOURCES, src_lang="en", tgt_lang="fr", max_new_tokens=5)
    ours = leanformers.pipeline("translation", model=seq2seq["m2m"])
    with pytest.raises(ValueError, match="src_lang"):
        ours(SOURCES[0])
    with pytest.raises(ValueError, match="unknown tgt_lang 'xx'"):
        ours(SOURCES[0], src_lang="en", tgt_lang="xx")
    with pytest.raises(ValueError, match="unknown language code 'yy'"):
        ours(SOURCES[0], src_lang="yy", tgt_lang="fr")


@needs_spm
def test_seq2seq_errors(seq2seq, gpt2):
    ours = leanformers.pipeline("summarization", model=seq2seq["marian"])
    with pytest.raises(ValueError, match="at most 64"):
        ours("word " * 100)
    assert ours("word " * 100, truncation=True, max_new_tokens=3)
    with pytest.raises(ValueError, match="not an encoder-decoder model"):
        leanformers.pipeline("summarization", model=gpt2[0])


SMOLLM2 = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(not SMOLLM2.is_file(), reason="run scripts/fetch_models.sh for the SmolLM2 GGUF")
def test_real_smollm2_chat_streams_its_answer(capsys):
    """The real SmolLM2 GGUF through pipeline(): the chat answer, printed token by token by a TextStreamer."""
    chat = leanformers.pipeline("text-generation", model=SMOLLM2.parent, gguf_file=SMOLLM2.name)
    streamer = leanformers.TextStreamer(chat.tokenizer, skip_prompt=True, skip_special_tokens=True)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    result = chat(question, max_new_tokens=16, do_sample=False, streamer=streamer)
    assert result[0]["generated_text"][-1] == {"role": "assistant", "content": "The capital of France is Paris."}
    assert capsys.readouterr().out.strip() == "The capital of France is Paris."


@needs_vocab
def test_zero_shot_on_bart_mnli_style(tmp_path):
    """zero-shot-classification on a BART sequence classifier (bart-large-mnli's layout: eos pooling, byte BPE)."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_VOCAB / name, tmp_path / name)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BartTokenizer",
                                                                "model_max_length": 64}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    nli = {0: "contradiction", 1: "neutral", 2: "entailment"}
    torch.manual_seed(0)
    transformers.BartForSequenceClassification(transformers.BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.3,
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id, id2label=nli, label2id={v: k for k, v in nli.items()},
    )).eval().save_pretrained(tmp_path)
    texts = ["I love this movie!", "Terrible, awful, no good.", "The weather is nice today in Paris."]
    call = {"candidate_labels": ["politics", "sports", "cooking", "travel", "science"]}
    expected = transformers.pipeline("zero-shot-classification", model=str(tmp_path))(texts, **call)
    for batch_size in (1, 2):
        ours = leanformers.pipeline("zero-shot-classification", model=str(tmp_path), batch_size=batch_size)
        got = ours(texts, **call)
        for theirs, ours in zip(expected, got):
            assert ours["labels"] == theirs["labels"] and ours["sequence"] == theirs["sequence"]
            assert max(abs(a - b) for a, b in zip(ours["scores"], theirs["scores"])) <= 1e-4


@needs_vocab
def test_roberta_byte_level_encoder_tasks(tmp_path):
    """A tiny RoBERTa with the real byte-level BPE vocabulary: no word-piece prefix, so NER falls back to
    transformers' word heuristic, fill-mask tokens carry their leading space, QA offsets come from byte-level BPE."""
    # RoBERTa's layout: <s> <pad> </s> <unk> first (positions count past pad id 1), then GPT-2's tokens, <mask> last
    gpt2_vocab = json.loads((GPT2_VOCAB / "vocab.json").read_text())
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {**{t: i for i, t in enumerate(specials)}, **{t: i + 4 for t, i in gpt2_vocab.items()}}
    vocab["<mask>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    shutil.copy(GPT2_VOCAB / "merges.txt", tmp_path / "merges.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer",
                                                                "model_max_length": 64}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    labels = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    config = transformers.RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=66, initializer_range=0.3, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, id2label=labels,
        label2id={v: k for k, v in labels.items()})
    texts = ["Sarah Connor met John at Cyberdyne in Los Angeles.", "Unaffable hobbits walked to Mordor!"]
    for task, head, call, inputs in (
            ("ner", "ForTokenClassification", {"aggregation_strategy": "first"}, texts),
            ("ner", "ForTokenClassification", {"aggregation_strategy": "simple", "ignore_labels": []}, texts),
            ("fill-mask", "ForMaskedLM", {"top_k": 3}, ["Paris is the <mask> of France.", "A <mask> day."]),
            ("question-answering", "ForQuestionAnswering", {"top_k": 2},
             {"question": ["Who met John?", "Where?"], "context": texts[0] + " " + texts[1]})):
        folder = tmp_path / head
        torch.manual_seed(0)
        if head == "ForQuestionAnswering":  # transformers sizes the QA projection by num_labels: keep it 2
            config.id2label, config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
        getattr(transformers, f"Roberta{head}")(config).eval().save_pretrained(folder)
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            shutil.copy(tmp_path / name, folder / name)
        theirs = transformers.pipeline(task, model=str(folder))
        ours = leanformers.pipeline(task, model=str(folder), batch_size=2)
        expected, got = (theirs(**inputs, **call), ours(**inputs, **call)) if isinstance(inputs, dict) else \
            (theirs(inputs, **call), ours(inputs, **call))
        _assert_close_results(expected, got)


def _assert_close_results(theirs, ours):
    if isinstance(theirs, dict):
        assert set(theirs) == set(ours)
        for key in theirs:
            _assert_close_results(theirs[key], ours[key])
    elif isinstance(theirs, list):
        assert len(theirs) == len(ours)
        for a, b in zip(theirs, ours):
            _assert_close_results(a, b)
    elif isinstance(theirs, float) or type(theirs).__name__.startswith("float"):
        assert abs(float(theirs) - ours) <= 1e-4
    else:
        assert theirs == ours
