"""`leanformers TASK [TEXT ...] [--model ID_OR_PATH] [--top-k N] ...`: run a pipeline and print JSON.

Texts come from the arguments, or from stdin one per line (then one JSON line per input, in order, as results are
ready). Any pipeline option can be given as `--option name=value` (value read as JSON when it parses, else a string).

    leanformers sentiment-analysis "I love this!" --model ./my-classifier
    cat questions.txt | leanformers question-answering --context "$(cat doc.txt)" --model ./squad
"""
from __future__ import annotations

import argparse
import json
import sys

# flags that map to a pipeline call option: (flag, option name, argparse type)
_CALL_OPTIONS = [
    ("--top-k", "top_k", int),
    ("--aggregation-strategy", "aggregation_strategy", str),
    ("--context", "context", str),
    ("--candidate-labels", "candidate_labels", str),
    ("--hypothesis-template", "hypothesis_template", str),
    ("--max-new-tokens", "max_new_tokens", int),
    ("--pooling", "pooling", str),
]


def build_parser() -> argparse.ArgumentParser:
    from .pipelines import supported_tasks

    parser = argparse.ArgumentParser(prog="leanformers", description="Run a transformers-style pipeline, print JSON.")
    parser.add_argument("task", help=f"one of: {', '.join(supported_tasks())}")
    parser.add_argument("texts", nargs="*", help="inputs (none: read stdin, one input per line)")
    parser.add_argument("--model", help="repo id or folder (default: transformers' default model for the task)")
    parser.add_argument("--tokenizer", help="repo id or folder of the tokenizer (default: the model's)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--dtype", help="float32, float16 or bfloat16")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs per model pass (default: 8)")
    parser.add_argument("--gguf-file", help="a GGUF file inside --model's folder (weights and tokenizer)")
    parser.add_argument("--chat", action="store_true",
                        help="text-generation: send each input as a user message through the chat template")
    for flag, _, kind in _CALL_OPTIONS:
        parser.add_argument(flag, type=kind)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="any other pipeline option, e.g. --option multi_label=true (repeatable)")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print JSON with this indent")
    return parser


def call_options(args) -> dict:
    options = {name: getattr(args, name) for _, name, _ in _CALL_OPTIONS if getattr(args, name) is not None}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--option takes NAME=VALUE, got {item!r}")
        try:
            options[name.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[name.replace("-", "_")] = value
    return options


def _inputs(task: str, texts, options, chat: bool = False):
    """Question answering reads questions (with --context); chats are user messages; other tasks read texts."""
    if chat:
        return ([{"role": "user", "content": text}] for text in texts)
    if task != "question-answering":
        return texts
    context = options.pop("context", None)
    if context is None:
        raise ValueError("question-answering needs --context (the questions are the inputs)")
    return ({"question": question, "context": context} for question in texts)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # `leanformers serve ...`: the HTTP server (leanformers.serving)
        from .serving.cli import main as serve_main

        return serve_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, KeyError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"leanformers: error: {message}", file=sys.stderr)
        return 2


def run(args) -> int:
    from .pipelines import pipeline, resolve_task

    task = resolve_task(args.task)
    options = call_options(args)
    extra = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    pipe = pipeline(args.task, model=args.model, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype,
                    batch_size=args.batch_size, **extra)
    if args.chat and task != "text-generation":
        raise ValueError("--chat is for text-generation")
    if args.texts:
        inputs = list(_inputs(task, list(args.texts), options, args.chat))
        _print(pipe(inputs[0] if len(inputs) == 1 else inputs, **options), args.indent)  # one text: as pipe(text)
        return 0
    if sys.stdin.isatty():
        raise ValueError("no input: give texts as arguments or pipe them on stdin, one per line")
    lines = (line.rstrip("\n") for line in sys.stdin if line.strip())
    for result in pipe(_lines(_inputs(task, lines, options, args.chat)), **options):
        _print(result, args.indent)
    return 0


def _lines(iterable):
    """A generator, so the pipeline streams: results print as each chunk of lines is done."""
    yield from iterable


def _print(result, indent):
    print(json.dumps(_plain(result), indent=indent, ensure_ascii=False), flush=True)


def _plain(value):
    """numpy scalars and tensors -> JSON-friendly Python values."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


if __name__ == "__main__":
    sys.exit(main())
