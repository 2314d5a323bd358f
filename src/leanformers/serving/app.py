"""The HTTP side: one FastAPI router with OpenAI's routes, the task routes, tokenize / detokenize, health, metrics and
the playground (static files at /). `create_app(...)` returns the ASGI app; `serve(...)` runs it under uvicorn.

Everything a client gets wrong is a 4xx in OpenAI's error shape ({"error": {"message", "type", "param", "code"}});
5xx only for the server's own failures and for overload (503 with Retry-After).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import threading
import time
import uuid
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import Delta, EngineStopped, QueueFull, SamplingParams
from .metrics import Metrics
from .protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TaskRequest,
    TokenizeRequest,
)
from .registry import ModelSource, Served, load_served

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


@dataclasses.dataclass
class Settings:
    """Server limits and switches (the `leanformers serve` flags)."""
    max_batch_size: int = 8
    max_queue: int = 64
    max_input_tokens: int | None = None
    default_max_tokens: int | None = None     # chat without max_tokens: this, else what the context leaves
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    request_timeout: float = 600.0
    max_body_bytes: int = 2 * 1024 * 1024
    drain_timeout: float = 30.0
    threads: int | None = None
    dtype: str | None = None
    quantization: str | None = None


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 408: "timeout_error", 413: "invalid_request_error",
          415: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable_error"}


def error_body(status: int, message: str, param=None, code=None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param,
                      "code": code if code is not None else status}}


def error_response(status: int, message: str, param=None, code=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


class State:
    """The app's live state: settings, metrics, the loaded models (None while loading), draining flag."""

    def __init__(self, sources: list[ModelSource], settings: Settings):
        self.sources, self.settings = sources, settings
        self.metrics = Metrics()
        self.served: Served | None = None
        self.load_error: str | None = None
        self.draining = False
        self.token_texts: dict[int, str] = {}

    def load(self):
        try:
            if self.settings.threads:
                import torch

                torch.set_num_threads(self.settings.threads)
            self.served = load_served(self.sources, self.settings.max_batch_size, self.settings.max_queue,
                                      self.settings.dtype, self.settings.quantization, self.metrics)
        except Exception as err:  # the server stays up and says why in /health
            logger.exception("loading the models failed")
            self.load_error = f"{type(err).__name__}: {err}"

    def ready(self) -> Served:
        if self.draining:
            raise APIError(503, "the server is shutting down", headers={"Retry-After": "5"})
        if self.served is None:
            raise APIError(503, f"the model failed to load: {self.load_error}" if self.load_error
                           else "the model is still loading", headers={"Retry-After": "5"})
        return self.served


# ---------------------------------------------------------------- middleware: body limit, draining, metrics
class Guard:
    """Pure ASGI middleware: reads a request body up to the limit (413 beyond it), counts every response by route
    and status, and times it."""

    def __init__(self, app, state: State):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), [500]
        limit = self.state.settings.max_body_bytes

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                response = error_response(413, f"the request body is over the server's limit of {limit} bytes")
                return await response(scope, receive, send_counted)
            body, more = [], True
            size = 0
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body.append(message.get("body", b""))
                size += len(body[-1])
                more = message.get("more_body", False)
                if size > limit:
                    response = error_response(413, f"the request body is over the server's limit of {limit} bytes")
                    return await response(scope, receive, send_counted)
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"".join(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, send_counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.state.metrics.observe_request(route, status[0], time.monotonic() - started)


# ---------------------------------------------------------------- the app
def create_app(model=None, *, task: str | None = None, gguf_file: str | None = None, tokenizer: str | None = None,
               embedding_model=None, pipelines: dict | list | None = None, served_model_name: str | None = None,
               load_in_background: bool = True, **settings) -> FastAPI:
    """The ASGI app serving `model` (a folder / repo id / Pipeline; its task from --task or its config), optionally an
    embedding model and more task pipelines ({task: folder or Pipeline}). Settings: see `Settings`.

    Models load when the app starts (in a thread: /health says 503 until they are ready)."""
    sources = []
    if model is not None:
        sources.append(ModelSource(model, task, gguf_file, tokenizer, served_model_name))
    if embedding_model is not None:
        sources.append(ModelSource(embedding_model, "feature-extraction"))
    items = pipelines.items() if isinstance(pipelines, dict) else (pipelines or [])
    sources += [ModelSource(source, task_name) for task_name, source in items]
    if not sources:
        raise ValueError("nothing to serve: give a model (and/or embedding_model=, pipelines=)")
    if settings.get("api_key") is None and os.environ.get("LEANFORMERS_API_KEY"):
        settings["api_key"] = os.environ["LEANFORMERS_API_KEY"]
    unknown = set(settings) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"create_app() got unknown settings: {', '.join(sorted(unknown))}")
    if settings.get("quantization") is not None:  # a wrong name fails now, not after the server has started
        from ..modeling.quant import check_quantization

        check_quantization(settings["quantization"])
    state = State(sources, Settings(**settings))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loader = threading.Thread(target=state.load, name="leanformers-load", daemon=True)
        loader.start()
        if not load_in_background:
            await asyncio.to_thread(loader.join)
        yield
        state.draining = True
        if state.served is not None:
            if state.served.engine is not None:
                await asyncio.to_thread(state.served.engine.drain, state.settings.drain_timeout)
            state.served.stop()

    app = FastAPI(title="leanformers", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible and Hugging Face task endpoints over leanformers pipelines.")
    app.state.leanformers = state
    _install_errors(app)
    app.include_router(build_router(state))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if state.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(state.settings.cors_origins), allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(Guard, state=state)
    return app


def _install_errors(app: FastAPI):
    @app.exception_handler(APIError)
    async def api_error(request, err: APIError):
        return error_response(err.status, err.message, err.param, err.code, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, err: RequestValidationError):
        problems = []
        for e in err.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {e.get('msg')}")
        first = err.errors()[0] if err.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        if "json" not in request.headers.get("content-type", "") and request.method == "POST":
            problems.append("send the body as JSON with 'Content-Type: application/json'")
        return error_response(400, "; ".join(problems) or "invalid request", param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail), headers=getattr(err, "headers", None))


# ---------------------------------------------------------------- routes
def build_router(state: State) -> APIRouter:
    router = APIRouter()

    def authorized(request: Request):
        key = state.settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(401, "a valid API key is required: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @router.get("/", include_in_schema=False)
    async def playground():
        return FileResponse(STATIC / "index.html")

    @router.get("/health", summary="200 once the models are loaded, 503 before")
    async def health():
        if state.served is None or state.draining:
            status = "draining" if state.draining else "failed" if state.load_error else "loading"
            return JSONResponse({"status": status, "error": state.load_error}, status_code=503)
        return {"status": "ok"}

    @router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics():
        served = state.served
        engine = served.engine if served is not None else None
        queued = sum(b.queue_depth for _, _, b in served.pipelines.values()) if served is not None else 0
        gauges = {"queue_depth": ("Requests waiting for the model.", queued + (engine.queue_depth if engine else 0)),
                  "running_batch_size": ("Rows in the running generation batch.", engine.running if engine else 0),
                  "peak_batch_size": ("The most rows that decoded together.", engine.peak_rows if engine else 0)}
        return PlainTextResponse(state.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    @v1.get("/models", summary="The served models")
    async def models():
        served = state.ready()
        created = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "leanformers"} for name in served.names]}

    @v1.get("/pipelines", summary="What this server serves: chat model, embedding model, task pipelines")
    async def served_tasks():
        served = state.ready()
        return {"chat": served.chat, "embeddings": served.embeddings,
                "tasks": {task: name for task, (name, _, _) in sorted(served.pipelines.items())}}

    @v1.post("/chat/completions", summary="OpenAI chat completions (stream as server-sent events)")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        served = state.ready()
        engine = _engine(served, body.model)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        if body.continue_final_message and messages[-1]["role"] != "assistant":
            raise APIError(400, "continue_final_message needs the last message to be the assistant's",
                           "continue_final_message")
        with engine.tokenizer_lock:
            if not getattr(engine.tokenizer, "chat_template", None):
                raise APIError(400, "this model has no chat template: use /v1/completions with a prompt")
            try:
                prompt = list(engine.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=body.add_generation_prompt and not body.continue_final_message,
                    continue_final_message=body.continue_final_message))
            except (ValueError, TypeError, KeyError) as err:
                raise APIError(400, f"the chat template failed on these messages: {err}", "messages") from None
        max_tokens = body.max_completion_tokens or body.max_tokens
        params = _sampling(state, engine, body, [prompt], max_tokens, bool(body.logprobs), body.top_logprobs or 0,
                           default_max=state.settings.default_max_tokens)
        handles = _submit(engine, [prompt] * body.n, params, body.seed)
        name = served.chat
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_chat_stream(state, handles, name, include_usage), handles)
        return await _chat_response(state, request, handles, name)

    @v1.post("/completions", summary="OpenAI (legacy) completions")
    async def completions(body: CompletionRequest, request: Request):
        served = state.ready()
        engine = _engine(served, body.model)
        if body.suffix:
            raise APIError(400, "`suffix` (fill-in-the-middle) is not supported", "suffix")
        if body.best_of is not None and body.best_of != body.n:
            raise APIError(400, "`best_of` other than n is not supported", "best_of")
        prompts = _prompt_ids(engine, body.prompt)
        params = _sampling(state, engine, body, prompts, body.max_tokens, body.logprobs is not None,
                           body.logprobs or 0)
        handles = _submit(engine, [p for p in prompts for _ in range(body.n)], params, body.seed)
        echo = [_decode(engine, p) if body.echo else "" for p in prompts for _ in range(body.n)]
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_completion_stream(state, handles, served.chat, include_usage, echo), handles)
        return await _completion_response(state, request, handles, served.chat, echo,
                                          sum(len(p) for p in prompts))

    @v1.post("/embeddings", summary="OpenAI embeddings (sentence embeddings as sentence-transformers makes them)")
    async def embeddings(body: EmbeddingRequest, request: Request):
        served = state.ready()
        if served.embeddings is None:
            raise APIError(404, "this server has no embedding model (start it with --embedding-model)",
                           code="model_not_found")
        _check_model(served, body.model, served.embeddings)
        name, pipe, batcher = served.pipelines["feature-extraction"]
        texts = _embedding_texts(pipe, served, body.input)
        lock = served.tokenizer_lock(pipe.tokenizer)
        parameters = _pooling(pipe)
        with lock:
            counts = [len(pipe.tokenizer(t, truncation=True, max_length=pipe.max_length())["input_ids"])
                      for t in texts]
        _check_input_tokens(state, max(counts))
        vectors = await _pipeline_call(request, batcher, texts, parameters)
        if body.dimensions is not None and body.dimensions != len(vectors[0]):
            raise APIError(400, f"this model's embeddings have {len(vectors[0])} dimensions; `dimensions` must be "
                           "that or left out", "dimensions")
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": name,
                "usage": {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}}

    @v1.post("/pipelines/{task}", summary="pipeline(task)(inputs, **parameters), as the Hugging Face Inference API")
    async def run_task(task: str, body: TaskRequest, request: Request):
        served = state.ready()
        try:
            _name, pipe, batcher = served.pipeline_for(task)
        except KeyError:
            raise APIError(404, f"this server does not serve the task {task!r}; it serves: "
                           f"{', '.join(sorted(served.pipelines)) or 'none'}", code="task_not_found") from None
        parameters = dict(body.parameters)
        if "batch_size" in parameters or "num_workers" in parameters:
            raise APIError(400, "`batch_size` / `num_workers` are the server's to choose", "parameters")
        if task.startswith("translation_") and pipe.task != task:
            raise APIError(404, f"this server translates as {pipe.task!r}, not {task!r}", code="task_not_found")
        _check_generation_length(pipe, parameters)
        return _plain(await _pipeline_call(request, batcher, body.inputs, parameters))

    @router.post("/tokenize", summary="Text or chat messages -> token ids")
    async def tokenize(body: TokenizeRequest):
        served = state.ready()
        tokenizer, lock, limit = _tokenizer(served, body.model)
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "give exactly one of `prompt` or `messages`")
        with lock:
            try:
                if body.messages is not None:
                    ids = list(tokenizer.apply_chat_template([{"role": m.role, "content": m.text()}
                                                              for m in body.messages],
                                                             add_generation_prompt=body.add_generation_prompt))
                else:
                    ids = list(tokenizer(body.prompt, add_special_tokens=body.add_special_tokens)["input_ids"])
            except (ValueError, TypeError, KeyError) as err:
                raise APIError(400, str(err)) from None
        return {"tokens": ids, "count": len(ids), "max_model_len": limit}

    @router.post("/detokenize", summary="Token ids -> text")
    async def detokenize(body: DetokenizeRequest):
        served = state.ready()
        tokenizer, lock, _ = _tokenizer(served, body.model)
        _check_ids(tokenizer, body.tokens, "tokens")
        with lock:
            return {"prompt": tokenizer.decode(body.tokens)}

    router.include_router(v1)
    return router


# ---------------------------------------------------------------- helpers: models, limits, sampling settings
def _check_model(served: Served, requested: str | None, serving: str):
    if requested is not None and requested != serving and requested not in served.names:
        raise APIError(404, f"the model {requested!r} does not exist here; served: {', '.join(served.names)}",
                       "model", "model_not_found")


def _engine(served: Served, requested: str | None):
    if served.engine is None:
        raise APIError(404, "this server has no text-generation model", "model", "model_not_found")
    _check_model(served, requested, served.chat)
    return served.engine


def _tokenizer(served: Served, requested: str | None):
    """(tokenizer, its lock, its model's context length) of the chat model, else of the first served pipeline."""
    if requested is not None:
        _check_model(served, requested, requested)
    for task in ("text-generation", "feature-extraction", *sorted(served.pipelines)):
        if task in served.pipelines:
            name, pipe, _ = served.pipelines[task]
            if requested in (None, name):
                lock = served.engine.tokenizer_lock if task == "text-generation" and served.engine else \
                    served.tokenizer_lock(pipe.tokenizer)
                return pipe.tokenizer, lock, pipe.max_length()
    raise APIError(404, "no tokenizer for that model", "model", "model_not_found")


def _check_ids(tokenizer, ids, param: str):
    size = len(tokenizer)
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise APIError(400, f"token ids {bad[:5]} are outside the vocabulary (0..{size - 1})", param)


def _check_input_tokens(state: State, count: int):
    limit = state.settings.max_input_tokens
    if limit is not None and count > limit:
        raise APIError(400, f"the input has {count} tokens, over this server's limit of {limit} "
                       "(--max-input-tokens)", code="context_length_exceeded")


def _prompt_ids(engine, prompt) -> list[list[int]]:
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "`prompt` is empty", "prompt")
    if all(isinstance(p, int) for p in prompt):
        prompt = [prompt]
    out = []
    for p in prompt:
        if isinstance(p, str):
            with engine.tokenizer_lock:
                ids = list(engine.tokenizer(p)["input_ids"])
        else:
            _check_ids(engine.tokenizer, p, "prompt")
            ids = list(p)
        if not ids:
            raise APIError(400, "a prompt is empty (no tokens)", "prompt")
        out.append(ids)
    return out


def _sampling(state: State, engine, body, prompts, max_tokens, logprobs: bool, top_logprobs: int,
              default_max=None) -> SamplingParams:
    longest = max(len(p) for p in prompts)
    _check_input_tokens(state, longest)
    context = engine.max_positions
    if context is not None and longest >= context:
        raise APIError(400, f"the prompt has {longest} tokens; this model's context is {context} tokens",
                       "messages" if isinstance(body, ChatCompletionRequest) else "prompt",
                       "context_length_exceeded")
    if max_tokens is None:
        max_tokens = default_max or ((context - longest) if context is not None else 512)
        if context is not None:
            max_tokens = min(max_tokens, context - longest)
    elif context is not None and longest + max_tokens > context:
        raise APIError(400, f"this model's context is {context} tokens, but the prompt ({longest}) plus max_tokens "
                       f"({max_tokens}) asks for {longest + max_tokens}", "max_tokens", "context_length_exceeded")
    if top_logprobs and not logprobs:
        raise APIError(400, "`top_logprobs` needs `logprobs`", "top_logprobs")
    temperature = 1.0 if body.temperature is None else body.temperature
    return SamplingParams(
        max_new_tokens=max_tokens, temperature=temperature, top_p=body.top_p or 1.0, top_k=body.top_k or 0,
        min_p=body.min_p or None, stop=body.stops(), ignore_eos=body.ignore_eos, min_new_tokens=body.min_tokens or 0,
        frequency_penalty=body.frequency_penalty or 0.0, presence_penalty=body.presence_penalty or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0, logprobs=logprobs, top_logprobs=top_logprobs,
        skip_special_tokens=body.skip_special_tokens, timeout=state.settings.request_timeout)


def _submit(engine, prompts, params: SamplingParams, seed):
    loop = asyncio.get_running_loop()
    handles = []
    try:
        for i, prompt in enumerate(prompts):
            row = dataclasses.replace(params, seed=None if seed is None else (seed + i) % (2 ** 63))
            handles.append(engine.submit(prompt, row, loop))
    except QueueFull as err:
        for handle in handles:
            handle.cancel()
        raise APIError(503, f"the server is busy ({err}); retry later", headers={"Retry-After": "1"}) from None
    except EngineStopped as err:
        raise APIError(503, str(err), headers={"Retry-After": "5"}) from None
    return handles


def _check_generation_length(pipe, parameters):
    """Generating pipelines: max_new_tokens within the model's window (a client cannot ask for a million)."""
    if pipe.task not in ("text-generation", "text2text-generation", "summarization") and \
            not pipe.task.startswith("translation"):
        return
    limit = pipe.max_length() or pipe.model.config.get("max_position_embeddings") or 1024
    for key in ("max_new_tokens", "max_length", "min_length", "min_new_tokens", "num_beams",
                "num_return_sequences"):
        value = parameters.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise APIError(400, f"`{key}` = {value} is over this model's limit of {limit}", f"parameters.{key}")


# ---------------------------------------------------------------- pipelines and embeddings
async def _pipeline_call(request: Request, batcher, inputs, parameters):
    try:
        future = batcher.submit(inputs, parameters)
    except QueueFull as err:
        raise APIError(503, f"the server is busy ({err}); retry later", headers={"Retry-After": "1"}) from None
    except EngineStopped as err:
        raise APIError(503, str(err), headers={"Retry-After": "5"}) from None
    except ValueError as err:
        raise APIError(400, str(err), "inputs") from None
    wrapped = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({wrapped}, timeout=0.5)
        if done:
            break
        if await request.is_disconnected():
            future.cancel()
            raise APIError(499, "the client went away")
    try:
        return wrapped.result()
    except (ValueError, TypeError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise APIError(400, f"{type(err).__name__}: {message}", "inputs") from None


def _pooling(pipe) -> dict:
    from .. import hub

    name = pipe.model.config.get("_name_or_path")
    has_pooling = bool(name) and hub.load_json(name, "1_Pooling/config.json", required=False) is not None
    return {"pooling": "auto"} if has_pooling else {"pooling": "mean", "truncation": True}


def _embedding_texts(pipe, served: Served, given) -> list[str]:
    if isinstance(given, str):
        given = [given]
    if not given:
        raise APIError(400, "`input` is empty", "input")
    if all(isinstance(i, int) for i in given):
        given = [given]
    texts = []
    for item in given:
        if isinstance(item, str):
            if not item.strip():
                raise APIError(400, "an input is an empty string", "input")
            texts.append(item)
        else:
            _check_ids(pipe.tokenizer, item, "input")
            with served.tokenizer_lock(pipe.tokenizer):
                texts.append(pipe.tokenizer.decode(item, skip_special_tokens=True))
    if len(texts) > 2048:
        raise APIError(400, "at most 2048 inputs per request", "input")
    return texts


def _encode_vector(vector, encoding_format: str):
    if encoding_format == "base64":
        import numpy as np

        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]


def _plain(value):
    """numpy scalars and arrays, tensors -> JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# ---------------------------------------------------------------- generation responses
def _decode(engine, ids) -> str:
    with engine.tokenizer_lock:
        return engine.tokenizer.decode(ids, skip_special_tokens=True)


def _token_text(state: State, engine, token_id: int) -> str:
    text = state.token_texts.get(token_id)
    if text is None:
        with engine.tokenizer_lock:
            text = state.token_texts[token_id] = engine.tokenizer.decode([token_id])
    return text


def _chat_logprobs(state, engine, entries):
    def one(token_id, logprob):
        text = _token_text(state, engine, token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return [{**one(e.token_id, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]} for e in entries]


def _completion_logprobs(state, engine, entries, offset: int):
    tokens = [_token_text(state, engine, e.token_id) for e in entries]
    offsets, position = [], offset
    for text in tokens:
        offsets.append(position)
        position += len(text)
    return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{_token_text(state, engine, t): lp for t, lp in e.top} for e in entries],
            "text_offset": offsets}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _raise_delta(delta: Delta):
    raise APIError(delta.status, delta.error, headers={"Retry-After": "1"} if delta.status == 503 else None)


async def _collect(request: Request, handles):
    """Every handle's deltas merged into (text, token ids, logprob entries, finish_reason, prompt, completion);
    a client that goes away cancels its rows."""
    async def one(handle):
        text, ids, entries, last = [], [], [], None
        async for delta in handle:
            if delta.error is not None:
                _raise_delta(delta)
            text.append(delta.text)
            ids += delta.token_ids
            entries += delta.logprobs or []
            last = delta
        return "".join(text), ids, entries, last.finish_reason, last.prompt_tokens, last.completion_tokens

    task = asyncio.ensure_future(asyncio.gather(*(one(h) for h in handles)))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise APIError(499, "the client went away")
    finally:
        if not task.done():
            task.cancel()
        for handle in handles:
            handle.cancel()


async def _chat_response(state, request, handles, name):
    results = await _collect(request, handles)
    engine = state.served.engine
    choices = []
    for i, (text, _, entries, reason, _, _) in enumerate(results):
        logprobs = {"content": _chat_logprobs(state, engine, entries)} if handles[i].params.logprobs else None
        choices.append({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                        "finish_reason": reason})
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": name, "choices": choices,
            "usage": _usage(results[0][4], sum(r[5] for r in results))}


async def _completion_response(state, request, handles, name, echo, prompt_tokens):
    results = await _collect(request, handles)
    engine = state.served.engine
    choices = []
    for i, (text, _, entries, reason, _, _) in enumerate(results):
        logprobs = _completion_logprobs(state, engine, entries, len(echo[i])) if handles[i].params.logprobs else None
        choices.append({"index": i, "text": echo[i] + text, "logprobs": logprobs, "finish_reason": reason})
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": name, "choices": choices,
            "usage": _usage(prompt_tokens, sum(r[5] for r in results))}


async def _merged(handles):
    """(choice index, delta) from all handles as they come."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i, handle):
        async for delta in handle:
            await queue.put((i, delta))
        await queue.put((i, None))

    tasks = [asyncio.ensure_future(pump(i, h)) for i, h in enumerate(handles)]
    try:
        open_ = len(handles)
        while open_:
            i, delta = await queue.get()
            if delta is None:
                open_ -= 1
                continue
            yield i, delta
    finally:
        for task in tasks:
            task.cancel()


def _sse(events, handles) -> StreamingResponse:
    async def body():
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except APIError as err:
            yield f"data: {json.dumps(error_body(err.status, err.message))}\n\n"
        finally:  # the client went away (the response task is cancelled) or the stream ended: free the rows
            for handle in handles:
                handle.cancel()
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _chat_stream(state, handles, name, include_usage):
    engine = state.served.engine
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(choices, usage=None):
        event = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                 "choices": choices}
        if include_usage:
            event["usage"] = usage
        return event

    yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                  "finish_reason": None} for i in range(len(handles))])
    prompt_tokens, completion = 0, [0] * len(handles)
    async for i, delta in _merged(handles):
        if delta.error is not None:
            _raise_delta(delta)
        prompt_tokens, completion[i] = delta.prompt_tokens, delta.completion_tokens
        logprobs = {"content": _chat_logprobs(state, engine, delta.logprobs)} if delta.logprobs else None
        if delta.text or logprobs or delta.finish_reason:
            yield chunk([{"index": i, "delta": {"content": delta.text} if delta.text else {}, "logprobs": logprobs,
                          "finish_reason": delta.finish_reason}])
    if include_usage:
        yield chunk([], _usage(prompt_tokens, sum(completion)))


async def _completion_stream(state, handles, name, include_usage, echo):
    engine = state.served.engine
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    offsets = [len(e) for e in echo]
    prompts, completion = {}, [0] * len(handles)

    def chunk(choices, usage=None):
        event = {"id": ident, "object": "text_completion", "created": created, "model": name, "choices": choices}
        if include_usage:
            event["usage"] = usage
        return event

    for i, text in enumerate(echo):
        if text:
            yield chunk([{"index": i, "text": text, "logprobs": None, "finish_reason": None}])
    async for i, delta in _merged(handles):
        if delta.error is not None:
            _raise_delta(delta)
        prompts[id(handles[i].prompt_ids)] = delta.prompt_tokens
        completion[i] = delta.completion_tokens
        logprobs = _completion_logprobs(state, engine, delta.logprobs, offsets[i]) if delta.logprobs else None
        offsets[i] += len(delta.text)
        yield chunk([{"index": i, "text": delta.text, "logprobs": logprobs, "finish_reason": delta.finish_reason}])
    if include_usage:
        yield chunk([], _usage(sum(prompts.values()), sum(completion)))


# ---------------------------------------------------------------- running it
def serve(model=None, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **kwargs) -> int:
    """Run the app under uvicorn; SIGTERM / Ctrl-C: refuse new requests, finish running ones (at most
    `drain_timeout` s), exit."""
    import uvicorn

    app = create_app(model, **kwargs)
    state: State = app.state.leanformers

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            state.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after shutting down (exit status -15); a finished drain exits 0 instead
            self._captured_signals.clear()

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=int(state.settings.drain_timeout))
    Server(config).run()
    return 0
