"""What a server serves: pipelines built from the command line's models, the generation engine over the causal LM,
a micro-batcher per pipeline. No HTTP here either."""
from __future__ import annotations

import dataclasses
import os
import threading

from ..pipelines import Pipeline, pipeline, resolve_task
from .engine import GenerationEngine, PipelineBatcher


@dataclasses.dataclass
class ModelSource:
    """One model to serve: a folder / repo id (with an optional GGUF file in it) or a ready Pipeline."""
    model: str | Pipeline
    task: str | None = None
    gguf_file: str | None = None
    tokenizer: str | None = None
    name: str | None = None           # the id clients use (`model` in requests); default: `model` as given

    def load(self, dtype=None, quantization=None) -> Pipeline:
        if isinstance(self.model, Pipeline):
            return self.model
        extra = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        if quantization:
            extra["model_kwargs"] = {"quantization": quantization}
        task = self.task or ("text-generation" if self.gguf_file else None)
        return pipeline(task, model=os.fspath(self.model), tokenizer=self.tokenizer, dtype=dtype, **extra)

    def served_name(self, pipe: Pipeline) -> str:
        if self.name:
            return self.name
        if isinstance(self.model, Pipeline):
            return str(pipe.model.config.get("_name_or_path") or pipe.task)
        return os.fspath(self.model)


@dataclasses.dataclass
class Served:
    """The loaded models. `chat`: the generation engine's model name (None without a causal LM), `embeddings`: the
    feature-extraction pipeline's; `pipelines`: canonical task -> (name, pipeline, batcher)."""
    engine: GenerationEngine | None = None
    chat: str | None = None
    embeddings: str | None = None
    pipelines: dict = dataclasses.field(default_factory=dict)
    tokenizer_locks: dict = dataclasses.field(default_factory=dict)   # id(tokenizer) -> lock

    @property
    def names(self) -> list[str]:
        return sorted({name for name, _, _ in self.pipelines.values()})

    def pipeline_for(self, task: str):
        """(name, pipeline, batcher) serving `task` (an alias, translation_xx_to_yy, ...); KeyError if none."""
        return self.pipelines[resolve_task(task)]

    def tokenizer_lock(self, tokenizer) -> threading.RLock:
        return self.tokenizer_locks.setdefault(id(tokenizer), threading.RLock())

    def stop(self):
        if self.engine is not None:
            self.engine.stop()
        for _, _, batcher in self.pipelines.values():
            batcher.stop()


def load_served(sources: list[ModelSource], max_batch_size: int, max_queue: int, dtype=None, quantization=None,
                metrics=None) -> Served:
    """Load every source; the first text-generation pipeline also gets the continuous-batching engine."""
    served = Served()
    for source in sources:
        pipe = source.load(dtype, quantization)
        name = source.served_name(pipe)
        task = resolve_task(pipe.task)
        locks = [served.tokenizer_lock(pipe.tokenizer)]
        if task == "text-generation" and served.engine is None:
            engine = GenerationEngine(pipe.model, pipe.tokenizer, max_batch_size=max_batch_size, max_queue=max_queue,
                                      metrics=metrics)
            engine.tokenizer_lock = locks[0]
            engine.start()
            served.engine, served.chat = engine, name
            locks.append(engine.lock)
        if task == "feature-extraction" and served.embeddings is None:
            served.embeddings = name
        batcher = PipelineBatcher(pipe, max_batch_size=max_batch_size, max_queue=max_queue, locks=tuple(locks),
                                  batchable=task not in ("text-generation",))
        served.pipelines.setdefault(task, (name, pipe, batcher))
    return served
