"""Issue 4 benchmark: greedy generate() of transformers vs ours, token for token.

gpt2 b1 / b8   GPT-2 size (124M, random weights saved by transformers), Botchan prompts tokenized with the real GPT-2
               vocabulary; batch 8 = 8 prompts of mixed length, left-padded with an attention mask
smollm2 b1     the real SmolLM2-135M-Instruct GGUF (Q4_1 dequantized to fp32): ours loads the file, the oracle is
               transformers' LlamaForCausalLM holding the same dequantized weights (as tests/test_decoders_smollm2.py)
Every run generates exactly --new-tokens tokens (min_new_tokens = max_new_tokens, so EOS cannot stop a row early).
tokens/s = rows x new tokens / best wall time of one generate() call (prompt pass included); ratio = hf time / ours,
cpu r = the same with process CPU time (steadier while other jobs load the machine).
Each (library, case) runs in a fresh process: memory = RSS after loading and the peak RSS (VmHWM, reset after
loading) over the generate() calls, i.e. weights + everything generation allocates; not tracemalloc.

Run: .venv/bin/python bench/bench_generation.py [--quick] [--repeats 2] [--cases gpt2-b1 gpt2-b8 smollm2-b1]
"""
import argparse
import logging
import tempfile
import warnings

import torch

from common import MODELS, compare, in_fresh_process, load_note, measure, sentences

GPT2_VOCAB = MODELS / "gpt2_vocab"
SMOLLM2 = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT = [{"role": "user", "content": "Tell me a long story about a teacher in a small town school."}]
CASES = {"gpt2-b1": ("gpt2", 1), "gpt2-b8": ("gpt2", 8), "smollm2-b1": ("smollm2", 1)}


def save_gpt2(folder: str, quick: bool) -> None:
    import transformers

    config = transformers.GPT2Config(**({"n_layer": 2} if quick else {}))
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)


def gpt2_prompts(batch: int) -> list[list[int]]:
    from transformers import GPT2TokenizerFast

    tokenizer = GPT2TokenizerFast(vocab_file=str(GPT2_VOCAB / "vocab.json"), merges_file=str(GPT2_VOCAB / "merges.txt"))
    return [tokenizer(text)["input_ids"] for text in sentences(batch, seed=1, min_words=8)]


def smollm2_prompt() -> list[int]:
    from leanformers.gguf import load_gguf
    from leanformers.tokenization import Tokenizer

    checkpoint = load_gguf(SMOLLM2, with_tensors=False)
    tokenizer = Tokenizer(checkpoint.tokenizer_object, **checkpoint.tokenizer_config)
    return tokenizer.apply_chat_template(CHAT, add_generation_prompt=True)


def left_padded(prompts: list[list[int]], pad: int):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def load_model(library: str, model: str, folder: str | None):
    """The model under test: ours via AutoModelForCausalLM; the oracle's GPT-2 from the folder, its Llama from our
    dequantized GGUF weights (transformers' own GGUF path needs `accelerate`)."""
    if library == "leanformers":
        import leanformers

        if model == "smollm2":
            return leanformers.AutoModelForCausalLM.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
        return leanformers.AutoModelForCausalLM.from_pretrained(folder)
    import transformers

    if model == "gpt2":
        return transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    from leanformers.gguf import load_gguf

    checkpoint = load_gguf(SMOLLM2)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**checkpoint.config)).eval()
    llama.load_state_dict(checkpoint.state_dict, strict=False)
    llama.tie_weights()
    del checkpoint
    return llama


def run_case(library: str, model: str, folder: str | None, prompts, pad: int, new_tokens: int, repeats: int,
             threads: int):
    """In a fresh process: load, warm up, time greedy generation; returns measure()'s dict with the new tokens."""
    import transformers

    torch.set_num_threads(threads)

    transformers.logging.set_verbosity_error()
    logging.getLogger("leanformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    lm = load_model(library, model, folder)
    ids, mask = left_padded(prompts, pad)

    def generate(n=new_tokens):
        with torch.inference_mode():
            out = lm.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              num_beams=1, pad_token_id=pad)
        return out[:, ids.shape[1]:].tolist()

    return measure(generate, lambda: generate(4), repeats)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="2-layer GPT-2, 16 new tokens: checks the script")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=None, help="default 128 (16 with --quick)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    new_tokens = args.new_tokens or (16 if args.quick else 128)
    import transformers

    print(f"torch {torch.__version__}, threads {args.threads}, transformers {transformers.__version__}, "
          f"{new_tokens} new tokens, {load_note()}{' (QUICK sizes)' if args.quick else ''}")
    print(f"{'case':11} {'hf tok/s':>9} {'ours tok/s':>10} {'ratio':>6} {'cpu r':>6} | {'hf MiB load/peak':>16} "
          f"{'ours MiB load/peak':>18} | identical tokens")
    with tempfile.TemporaryDirectory() as folder:
        if any(CASES[c][0] == "gpt2" for c in args.cases):
            save_gpt2(folder, args.quick)
        for case in args.cases:
            model, batch = CASES[case]
            prompts, pad = (gpt2_prompts(batch), 50256) if model == "gpt2" else ([smollm2_prompt()], 2)
            theirs, ours = (in_fresh_process(run_case, library, model, folder, prompts, pad, new_tokens, args.repeats,
                                             args.threads)
                            for library in ("transformers", "leanformers"))
            rate = batch * new_tokens
            same = compare(theirs["result"], ours["result"])[0]
            print(f"{case:11} {rate / theirs['seconds']:9.1f} {rate / ours['seconds']:10.1f} "
                  f"{theirs['seconds'] / ours['seconds']:6.2f} {theirs['cpu'] / ours['cpu']:6.2f} | "
                  f"{theirs['rss_loaded']:7.0f}/{theirs['rss_peak']:<8.0f} "
                  f"{ours['rss_loaded']:9.0f}/{ours['rss_peak']:<8.0f} | {'yes' if same else 'NO'}", flush=True)
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
