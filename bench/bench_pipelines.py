"""Issue 3 benchmark: transformers' pipeline() vs ours, both in this process, on checkpoints of real size (random
weights saved by transformers) with the real bert-base-uncased vocabulary (from the MiniLM files).

text-classification  DistilBERT-size (66M) classifier, 256 Botchan sentences of mixed length
token-classification DistilBERT-size, 9 CoNLL labels, aggregation_strategy="simple", the same 256 sentences
question-answering   DistilBERT-size, 16 long contexts (400 words, ~520 tokens: 2 windows of 384 each, doc_stride 128)
zero-shot            BERT-base-size (110M) NLI classifier (contradiction/neutral/entailment), 32 sentences x 5 labels
mpnet                MPNet-base-size (all-mpnet-base-v2's shape) feature-extraction, the 256 sentences
deberta              DeBERTa-v3-base-size NLI classifier, zero-shot as above (its SentencePiece tokenizer over the
                     Botchan unigram model in .models/spm, converted from spm.model by each library)
modernbert           ModernBERT-base-size text classifier (global + local attention), the 256 sentences
qwen3 gemma2 phi3 opt gpt-neox  small decoders (hidden 256, 4 layers, 4 heads, 2 KV heads where the arch has GQA)
                     with the GPT-2 vocab (.models/gpt2_vocab, left padding, pad = eos): greedy text-generation of
                     16 new tokens for 16 sentences (run these with --batch-sizes 1 8); identical = same texts
Each at batch_size 1 and 32 (transformers' batch_size counts model rows, ours counts inputs: for QA and zero-shot
ours puts all windows/label pairs of 32 inputs in one pass). Identical = same labels/words/answers/offsets and
every score within 1e-4. ratio = hf wall time / ours (best of --repeats); cpu r = the same with process CPU time.

Run: .venv/bin/python bench/bench_pipelines.py [--quick] [--repeats 1] [--tasks text ner qa zero-shot]
"""
import argparse
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from common import MODELS, best_time, compare, load_note, paragraphs, sentences

MINILM = MODELS / "minilm"
CONLL = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
NLI = ["contradiction", "neutral", "entailment"]
LABELS = ["literature", "politics", "school", "weather", "food"]
QUESTIONS = ["Who went to the school?", "What did the teacher say?", "Where did he live?", "Why was he angry?"]


def labels(names):
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


# task -> (transformers config class, model class, config overrides)
CHECKPOINTS = {
    "text": ("DistilBertConfig", "DistilBertForSequenceClassification", labels(["NEGATIVE", "POSITIVE"])),
    "ner": ("DistilBertConfig", "DistilBertForTokenClassification", labels(CONLL)),
    "qa": ("DistilBertConfig", "DistilBertForQuestionAnswering", {}),
    "zero-shot": ("BertConfig", "BertForSequenceClassification", labels(NLI)),
    "mpnet": ("MPNetConfig", "MPNetModel", {"vocab_size": 30527, "max_position_embeddings": 514}),
    "deberta": ("DebertaV2Config", "DebertaV2ForSequenceClassification", {
        **labels(NLI), "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "relative_attention": True, "position_buckets": 256, "pos_att_type": ["p2c", "c2p"],
        "norm_rel_ebd": "layer_norm", "share_att_key": True, "position_biased_input": False,
        "max_relative_positions": -1}),
    "modernbert": ("ModernBertConfig", "ModernBertForSequenceClassification", {
        **labels(["NEGATIVE", "POSITIVE"]), "vocab_size": 30522, "pad_token_id": 0, "cls_token_id": 101,
        "sep_token_id": 102, "bos_token_id": 101, "eos_token_id": 102}),
}
SMALL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512,
         "vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256, "pad_token_id": 50256}
GQA = {"num_key_value_heads": 2, "head_dim": 64}
DECODERS = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**SMALL, **GQA}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {**SMALL, **GQA}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {**SMALL, "num_key_value_heads": 2}),
    "opt": ("OPTConfig", "OPTForCausalLM", {**SMALL, "ffn_dim": 512, "word_embed_proj_dim": 256}),
    "gpt-neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", SMALL),
}
CHECKPOINTS.update(DECODERS)
TASK_NAMES = {**dict.fromkeys(DECODERS, "text-generation"),
              "text": "text-classification", "ner": "token-classification", "qa": "question-answering",
              "zero-shot": "zero-shot-classification", "mpnet": "feature-extraction",
              "deberta": "zero-shot-classification", "modernbert": "text-classification"}


def make_checkpoint(key: str, folder: Path, quick: bool) -> str:
    import transformers

    config_class, model_class, overrides = CHECKPOINTS[key]
    size = dict(n_layers=2) if quick and config_class == "DistilBertConfig" else {}
    size = dict(num_hidden_layers=2) if quick and config_class != "DistilBertConfig" else size
    if key == "deberta":  # spm.model + tokenizer_config.json only, as microsoft/deberta-v3-* ship
        tokenizer = transformers.DebertaV2Tokenizer(str(MODELS / "spm" / "botchan_en_unigram_1000.model"))
        tokenizer.save_pretrained(folder)
        size["vocab_size"] = len(tokenizer)
    config = getattr(transformers, config_class)(**{**overrides, **size})
    torch.manual_seed(0)
    getattr(transformers, model_class)(config).eval().save_pretrained(folder)
    if key in DECODERS:  # the GPT-2 BPE; batched generation needs left padding and a pad token
        vocab = MODELS / "gpt2_vocab"
        tokenizer = transformers.GPT2TokenizerFast(str(vocab / "vocab.json"), str(vocab / "merges.txt"),
                                                   padding_side="left")
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.save_pretrained(folder)
        return str(folder)
    if key == "deberta":
        return str(folder)
    if key == "mpnet":
        transformers.MPNetTokenizerFast(vocab_file=str(MINILM / "vocab.txt")).save_pretrained(folder)
        return str(folder)
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(MINILM / name, folder / name)
    settings = json.loads((MINILM / "tokenizer_config.json").read_text())
    # DistilBERT takes no token_type_ids: let each library pick the tokenizer class from the model type
    settings.pop("tokenizer_class")
    if key == "modernbert":  # as ModernBERT's own tokenizer_config.json: no token_type_ids
        settings["model_input_names"] = ["input_ids", "attention_mask"]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return str(folder)


def inputs_and_options(key: str, quick: bool):
    """(inputs, call options, what one input is called) for a task."""
    if key == "qa":
        contexts = paragraphs(4 if quick else 16, words=150 if quick else 400)
        items = [{"question": QUESTIONS[i % len(QUESTIONS)], "context": c} for i, c in enumerate(contexts)]
        return items, {}, "questions"
    if key in DECODERS:
        return sentences(4 if quick else 16), {"max_new_tokens": 16, "do_sample": False}, "prompts"
    texts = sentences(32 if quick else 256)
    if key == "ner":
        return texts, {"aggregation_strategy": "simple"}, "sentences"
    if key in ("zero-shot", "deberta"):
        return texts[:16 if quick else 32], {"candidate_labels": LABELS}, "sentences"
    return texts, {}, "sentences"


def bench_task(key: str, args) -> list[str]:
    import transformers

    import leanformers

    items, options, unit = inputs_and_options(key, args.quick)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_checkpoint(key, Path(tmp), args.quick)
        for batch_size in args.batch_sizes:
            # transformers' Gemma 2 soft-caps attention logits only in eager attention
            eager = {"model_kwargs": {"attn_implementation": "eager"}} if key == "gemma2" else {}
            pipes = [transformers.pipeline(TASK_NAMES[key], model=folder, batch_size=batch_size, **eager),
                     leanformers.pipeline(TASK_NAMES[key], model=folder, batch_size=batch_size)]
            results, seconds, cpu = [], [], []
            for pipe in pipes:
                pipe(items[:4], **options)  # warm-up
                wall, cpu_time, result = best_time(lambda: pipe(items, **options), args.repeats)
                results.append(result)
                seconds.append(wall)
                cpu.append(cpu_time)
            if key == "mpnet":  # transformers' batched feature-extraction keeps each row padded: cut to ours
                results[0] = [[rows[0][:len(ours[0])]] for rows, ours in zip(results[0], results[1])]
            same, diff = compare(*results)
            identical = "yes" if same and diff <= 1e-4 else f"NO (structure equal: {same})"
            name = f"{TASK_NAMES[key]}/{key}" if key in DECODERS else TASK_NAMES[key]
            rows.append(f"{name:24} {batch_size:5} {len(items):4} {unit:9} "
                        f"{len(items) / seconds[0]:8.1f} {len(items) / seconds[1]:8.1f} "
                        f"{seconds[0] / seconds[1]:6.2f} {cpu[0] / cpu[1]:6.2f} {diff:9.1e} {identical}")
            print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2-layer models and few inputs: checks the script")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    args = parser.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("leanformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, transformers {transformers.__version__}, "
          f"{load_note()}{' (QUICK sizes)' if args.quick else ''}")
    print(f"{'task':24} {'batch':>5} {'n':>4} {'unit':9} {'hf /s':>8} {'ours /s':>8} {'ratio':>6} {'cpu r':>6} "
          f"{'max diff':>9} "
          f"identical")
    for key in args.tasks:
        bench_task(key, args)
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
