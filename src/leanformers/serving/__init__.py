"""`leanformers serve`: an OpenAI-compatible HTTP server with continuous batching, task endpoints and a playground.

    from leanformers.serving import create_app
    app = create_app(".models/smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")   # an ASGI app for uvicorn

engine.py (no HTTP: the continuous-batching scheduler and the encoder micro-batcher) is importable without FastAPI;
app.py needs the `serve` extra (fastapi, uvicorn). Nothing here is imported by `import leanformers`.
"""
from __future__ import annotations


def create_app(*args, **kwargs):
    """The FastAPI (ASGI) application serving the given models; see `leanformers.serving.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


def serve(*args, **kwargs) -> int:
    """Run the server under uvicorn until SIGTERM / Ctrl-C; see `leanformers.serving.app.serve`."""
    from .app import serve as _serve

    return _serve(*args, **kwargs)


__all__ = ["create_app", "serve"]
