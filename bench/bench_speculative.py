"""Issue 12 benchmark: batch-1 greedy decoding with prompt lookup on input-grounded prompts, ours vs transformers.

Model: the real SmolLM2-135M-Instruct (GPT-2 size: 135M parameters; the GGUF's Q4_1 weights dequantized to fp32).
Random GPT-2 weights would not copy text from their prompt, so prompt lookup would propose nothing they accept;
a real instruction-tuned model does. Ours loads the GGUF; transformers' LlamaForCausalLM holds the same weights.
Prompts (chat template, a Botchan passage of ~120 words given in the message; for quote and edit the answer is
begun with the passage's first 8 words, edited for edit):
  quote      "Repeat the following passage word for word"
  edit       "Rewrite the passage replacing the name ... with ..."
  summarise  "Summarise the passage in a few sentences, quoting it where you can"
Each case: plain greedy and greedy with prompt_lookup_num_tokens=K (max_matching_ngram_size 2), for both
libraries, up to --new-tokens tokens (eos may stop earlier: the same tokens for all
four runs, checked); both libraries run in this process, one after the other. tokens/s = new tokens / best wall
time of one generate() call (prompt pass included);
"cpu" ratios use process CPU time (steadier while other jobs load the machine). transformers 4.57.6's lookup can run
past max_new_tokens (it does not cap its drafts at max_length): its extra tokens count in its favour.

Run: .venv/bin/python bench/bench_speculative.py [--quick] [--repeats 2] [--new-tokens 128] [--k 10]
"""
import argparse
import logging
import warnings

import torch
from common import MODELS, load_note, measure, paragraphs

SMOLLM2 = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = {
    "quote": "Repeat the following passage word for word.\n\n{text}",
    "edit": "Rewrite the following passage, replacing every 'I' with 'the teacher'. Keep everything else the "
            "same.\n\n{text}",
    "summarise": "Summarise the following passage in a few sentences, quoting it where you can.\n\n{text}",
}


def chat_prompts(words: int) -> dict:
    from leanformers.gguf import load_gguf
    from leanformers.tokenization import Tokenizer

    checkpoint = load_gguf(SMOLLM2, with_tensors=False)
    tokenizer = Tokenizer(checkpoint.tokenizer_object, **checkpoint.tokenizer_config)
    text = paragraphs(1, words, seed=4)[0]
    start = " ".join(text.split()[:8])
    # the answer is begun for the model (as a chat UI's "continue" does): a 135M model does not follow "repeat
    # this" from the instruction alone, but once its answer starts like the passage it continues copying
    answer_starts = {"quote": start, "edit": start.replace("I ", "the teacher "), "summarise": ""}
    return {name: tokenizer.apply_chat_template([{"role": "user", "content": template.format(text=text)}],
                                                add_generation_prompt=True)
            + tokenizer.encode(answer_starts[name], add_special_tokens=False)
            for name, template in PROMPTS.items()}


def load_model(library: str):
    """Ours from the GGUF file; transformers' Llama holding the same dequantized weights (as bench_generation.py)."""
    if library == "leanformers":
        import leanformers

        return leanformers.AutoModelForCausalLM.from_pretrained(SMOLLM2.parent, gguf_file=SMOLLM2.name)
    import transformers

    from leanformers.gguf import load_gguf

    checkpoint = load_gguf(SMOLLM2)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(**checkpoint.config)).eval()
    llama.load_state_dict(checkpoint.state_dict, strict=False)
    llama.tie_weights()
    return llama


def run_library(library: str, prompts: dict, new_tokens: int, k: int, repeats: int, threads: int) -> dict:
    """In a fresh process: load once, then for each prompt time plain greedy and prompt lookup."""
    import transformers

    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    logging.getLogger("leanformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    lm = load_model(library)
    results = {}
    for name, prompt in prompts.items():
        ids = torch.tensor([prompt])
        for mode, extra in (("plain", {}), ("lookup", {"prompt_lookup_num_tokens": k})):
            def generate(n=new_tokens, extra=extra, ids=ids):
                with torch.inference_mode():
                    out = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                      num_beams=1, pad_token_id=2, **extra)
                return out[0, ids.shape[1]:].tolist()

            results[name, mode] = measure(generate, lambda generate=generate: generate(8), repeats)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="32 new tokens, a 60-word passage: checks the script")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=None, help="default 128 (32 with --quick)")
    parser.add_argument("--k", type=int, default=10, help="prompt_lookup_num_tokens (default 10)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS), choices=list(PROMPTS))
    args = parser.parse_args()
    new_tokens = args.new_tokens or (32 if args.quick else 128)
    import transformers

    prompts = {name: ids for name, ids in chat_prompts(60 if args.quick else 120).items() if name in args.prompts}
    print(f"torch {torch.__version__}, threads {args.threads}, transformers {transformers.__version__}, SmolLM2-135M "
          f"fp32, up to {new_tokens} new tokens, prompt_lookup_num_tokens={args.k}, {load_note()}")
    # one library after the other in this process (the model of the first is freed before the second loads)
    theirs, ours = (run_library(library, prompts, new_tokens, args.k, args.repeats, args.threads)
                    for library in ("transformers", "leanformers"))
    print(f"{'prompt':10} {'tokens':>6} | {'hf plain':>8} {'hf look':>8} {'ours plain':>10} {'ours look':>9} tok/s | "
          f"{'vs hf look':>10} {'cpu':>5} | {'vs own plain':>12} {'hf own':>6} | identical")
    for name in prompts:
        rate = {}
        for who, result in (("hf", theirs), ("ours", ours)):
            for mode in ("plain", "lookup"):
                run = result[name, mode]
                rate[who, mode] = len(run["result"]) / run["seconds"]
        reference = ours[name, "plain"]["result"]
        hf_lookup = theirs[name, "lookup"]["result"]
        same = (ours[name, "lookup"]["result"] == reference == theirs[name, "plain"]["result"]
                and hf_lookup[:len(reference)] == reference)
        cpu = (theirs[name, "lookup"]["cpu"] / len(hf_lookup)) / (ours[name, "lookup"]["cpu"] / len(reference))
        print(f"{name:10} {len(reference):6d} | {rate['hf', 'plain']:8.1f} {rate['hf', 'lookup']:8.1f} "
              f"{rate['ours', 'plain']:10.1f} {rate['ours', 'lookup']:9.1f}       | "
              f"{rate['ours', 'lookup'] / rate['hf', 'lookup']:10.2f} {cpu:5.2f} | "
              f"{rate['ours', 'lookup'] / rate['ours', 'plain']:12.2f} "
              f"{rate['hf', 'lookup'] / rate['hf', 'plain']:6.2f} | {'yes' if same else 'NO'}", flush=True)
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
