"""Issue 5 benchmark: a Marian model the size of Helsinki-NLP/opus-mt-fr-en (d_model 512, 6+6 layers, 8 heads,
ffn 2048, vocab 59514, random weights saved by transformers) translating 100 sentences in batches of 16, greedy and
beam 4, fp32: transformers 4.57.6 vs ours vs CTranslate2 (its TransformersConverter on the same checkpoint).

Random weights produce junk that could stop at any step, so every library generates exactly --new-tokens tokens per
sentence (transformers/ours: min_new_tokens = max_new_tokens; CTranslate2: min_decoding_length =
max_decoding_length) and <pad> is banned (bad_words_ids) as CTranslate2 drops it from its vocabulary. The same
length-sorted chunks of 16 go to each library. The tokenizer is transformers' MarianTokenizer over a real
sentencepiece model (Botchan unigram 1000 pieces, filler entries up to 59514); tokenization is not timed.
tokens/s = sentences x new tokens / best wall time; memory = RSS after loading and peak RSS (VmHWM reset after
loading) of a fresh process per library. "same" = fraction of sentences whose tokens equal transformers'.

Run: .venv/bin/python bench/bench_translation.py [--quick] [--repeats 1] [--new-tokens 48]
"""
import argparse
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from common import MODELS, in_fresh_process, load_note, measure, sentences

SPM = MODELS / "spm" / "botchan_en_unigram_1000.model"
VOCAB = 59514
PAD = VOCAB - 1
BATCH = 16


def write_tokenizer(folder: Path) -> None:
    """Marian tokenizer files: the sentencepiece model as source and target, a shared vocab.json of opus-mt size."""
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(SPM))
    names = ["</s>", "<unk>"] + [pieces.id_to_piece(i) for i in range(pieces.get_piece_size())
                                 if not pieces.is_control(i) and not pieces.is_unknown(i)]
    names += [f"▁filler{i}" for i in range(VOCAB - 1 - len(names))] + ["<pad>"]
    (folder / "vocab.json").write_text(json.dumps({name: i for i, name in enumerate(names)}))
    for name in ("source.spm", "target.spm"):
        shutil.copy(SPM, folder / name)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"source_lang": "fr", "target_lang": "en", "model_max_length": 512, "separate_vocabs": False}))


def save_marian(folder: Path, quick: bool) -> None:
    import transformers

    layers = 2 if quick else 6
    config = transformers.MarianConfig(
        vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=512, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        activation_function="swish", max_position_embeddings=512, scale_embedding=True, pad_token_id=PAD,
        decoder_start_token_id=PAD, eos_token_id=0, forced_eos_token_id=None, static_position_embeddings=True)
    torch.manual_seed(0)
    transformers.MarianMTModel(config).eval().save_pretrained(folder)
    write_tokenizer(folder)


def source_chunks(folder: Path, n: int) -> list[list[list[int]]]:
    """n sentences as token ids (with </s>), sorted by length and cut into chunks of BATCH."""
    import transformers

    tokenizer = transformers.MarianTokenizer.from_pretrained(folder)
    ids = sorted(tokenizer(sentences(n, seed=2))["input_ids"], key=len)
    return [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]


def torch_translator(library: str, folder: str):
    module = __import__(library)
    model = module.MarianMTModel.from_pretrained(folder)
    model.eval()

    def translate(chunk, beams, new_tokens):
        width = max(map(len, chunk))
        ids = torch.tensor([row + [PAD] * (width - len(row)) for row in chunk])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk])
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=mask, num_beams=beams, do_sample=False,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, bad_words_ids=[[PAD]])
        return out[:, 1:].tolist()  # drop the decoder start token

    return translate


def ctranslate2_translator(folder: str, threads: int, compute_type: str = "float32"):
    import ctranslate2

    translator = ctranslate2.Translator(str(Path(folder) / "ct2"), device="cpu", compute_type=compute_type,
                                        inter_threads=1, intra_threads=threads)
    vocab = list(json.loads((Path(folder) / "vocab.json").read_text()))
    index = {name: i for i, name in enumerate(vocab)}

    def translate(chunk, beams, new_tokens):
        results = translator.translate_batch([[vocab[i] for i in row] for row in chunk], beam_size=beams,
                                             max_decoding_length=new_tokens, min_decoding_length=new_tokens)
        return [[index[token] for token in result.hypotheses[0]] for result in results]

    return translate


def run_library(library: str, folder: str, chunks, beams: int, new_tokens: int, repeats: int, threads: int):
    """In a fresh process: load, warm up on one chunk, time the whole set; returns measure()'s dict."""
    torch.set_num_threads(threads)
    logging.getLogger("leanformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if library == "ctranslate2":
        translate = ctranslate2_translator(folder, threads)
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        translate = torch_translator(library, folder)
    return measure(lambda: [row for chunk in chunks for row in translate(chunk, beams, new_tokens)],
                   lambda: translate(chunks[0], beams, 4), repeats)


def convert_for_ctranslate2(folder: Path) -> None:
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(folder)).convert(str(folder / "ct2"), force=True)  # fp32 weights as saved


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2+2 layers, 32 sentences, 8 tokens: checks the script")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=None, help="default 48 (8 with --quick)")
    parser.add_argument("--beams", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    new_tokens = args.new_tokens or (8 if args.quick else 48)
    n = 32 if args.quick else 100
    import transformers

    print(f"torch {torch.__version__}, threads {args.threads}, transformers {transformers.__version__}, {n} sentences, "
          f"batch {BATCH}, {new_tokens} new tokens each, {load_note()}{' (QUICK sizes)' if args.quick else ''}")
    print(f"{'beams':5} {'library':12} {'tok/s':>8} {'vs hf':>6} {'cpu vs hf':>9} {'MiB load/peak':>14} same as hf")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_marian(folder, args.quick)
        convert_for_ctranslate2(folder)
        chunks = source_chunks(folder, n)
        for beams in args.beams:
            runs = {library: in_fresh_process(run_library, library, str(folder), chunks, beams, new_tokens,
                                              args.repeats, args.threads)
                    for library in ("transformers", "leanformers", "ctranslate2")}
            reference = runs["transformers"]
            for library, run in runs.items():
                same = sum(a == b for a, b in zip(reference["result"], run["result"])) / n
                print(f"{beams:5} {library:12} {n * new_tokens / run['seconds']:8.1f} "
                      f"{reference['seconds'] / run['seconds']:6.2f} {reference['cpu'] / run['cpu']:9.2f} "
                      f"{run['rss_loaded']:6.0f}/{run['rss_peak']:<7.0f} {same:.0%}", flush=True)
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
