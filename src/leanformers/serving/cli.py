"""`leanformers serve --model M [--task T] [--gguf-file F] [--embedding-model E] [--pipeline TASK=M] ...`"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leanformers serve", description=(
        "An OpenAI-compatible HTTP server (chat, completions, embeddings), task endpoints for every pipeline and a "
        "web playground at /. Docs at /docs, schema at /openapi.json."))
    parser.add_argument("--model", help="folder or repo id of the main model (its task from --task or its config)")
    parser.add_argument("--task", help="the main model's pipeline task (default: from its config; "
                                       "text-generation with --gguf-file)")
    parser.add_argument("--gguf-file", help="a GGUF file inside --model's folder")
    parser.add_argument("--tokenizer", help="folder or repo id of the main model's tokenizer")
    parser.add_argument("--served-model-name", help="the id clients send as `model` (default: --model as given)")
    parser.add_argument("--embedding-model", help="a feature-extraction model for /v1/embeddings")
    parser.add_argument("--pipeline", action="append", default=[], metavar="TASK=MODEL",
                        help="serve one more pipeline at /v1/pipelines/TASK (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 (or LEANFORMERS_API_KEY)")
    parser.add_argument("--cors-origin", action="append", default=[], help="allow this browser origin (repeatable)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="rows decoded together / inputs per pass")
    parser.add_argument("--max-queue", type=int, default=64, help="waiting requests before 503 + Retry-After")
    parser.add_argument("--max-input-tokens", type=int, help="longer prompts get a 400")
    parser.add_argument("--max-tokens", dest="default_max_tokens", type=int,
                        help="chat completions without max_tokens generate at most this many")
    parser.add_argument("--request-timeout", type=float, default=600.0, help="seconds a request may take")
    parser.add_argument("--max-body-bytes", type=int, default=2 * 1024 * 1024)
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="on SIGTERM, seconds to let running requests finish")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--dtype", help="float32, float16 or bfloat16")
    parser.add_argument("--quantization", help="passed to from_pretrained(quantization=...) where supported")
    parser.add_argument("--log-level", default="info")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    pipelines = []
    for item in args.pipeline:
        task, sep, model = item.partition("=")
        if not sep or not task or not model:
            print(f"leanformers serve: error: --pipeline takes TASK=MODEL, got {item!r}", file=sys.stderr)
            return 2
        pipelines.append((task, model))
    if not (args.model or args.embedding_model or pipelines):
        print("leanformers serve: error: give --model (and/or --embedding-model, --pipeline)", file=sys.stderr)
        return 2
    try:
        from .app import serve
    except ImportError as err:
        print(f"leanformers serve: error: {err.name} is missing; pip install 'leanformers[serve]'", file=sys.stderr)
        return 2
    if args.quantization is not None:
        from ..modeling.quant import QUANTIZATIONS

        if args.quantization not in QUANTIZATIONS:
            print(f"leanformers serve: error: unknown --quantization {args.quantization!r}; valid: "
                  f"{', '.join(QUANTIZATIONS)}", file=sys.stderr)
            return 2
    return serve(args.model, task=args.task, gguf_file=args.gguf_file, tokenizer=args.tokenizer,
                 served_model_name=args.served_model_name, embedding_model=args.embedding_model,
                 pipelines=pipelines, host=args.host, port=args.port, log_level=args.log_level,
                 api_key=args.api_key, cors_origins=tuple(args.cors_origin), max_batch_size=args.max_batch_size,
                 max_queue=args.max_queue, max_input_tokens=args.max_input_tokens,
                 default_max_tokens=args.default_max_tokens, request_timeout=args.request_timeout,
                 max_body_bytes=args.max_body_bytes, drain_timeout=args.drain_timeout, threads=args.threads,
                 dtype=args.dtype, quantization=args.quantization)


if __name__ == "__main__":
    sys.exit(main())
