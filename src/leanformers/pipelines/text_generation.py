"""text-generation: continue prompts (or chats) with a causal LM, as transformers 4.57's pipeline does.

Generation settings take transformers' priority: call options > pipeline options > the model's generation config >
the pipeline default (max_new_tokens=256, do_sample=True, temperature=0.7). Beyond transformers, batches are
left-padded (so a batch continues each prompt as it would alone) and grouped by prompt length.
"""
from __future__ import annotations

from ..generation import GenerationConfig
from .base import Pipeline

RETURN_TYPES = ("tensors", "new_text", "full_text")
# options the pipeline itself reads; every other option goes to generate()
_OWN_OPTIONS = ("return_full_text", "return_tensors", "return_text", "return_type", "clean_up_tokenization_spaces",
                "prefix", "handle_long_generation", "stop_sequence", "truncation", "max_length",
                "continue_final_message", "skip_special_tokens", "tokenizer_encode_kwargs", "add_special_tokens",
                "padding")


class GeneratingPipeline(Pipeline):
    """What text-generation and the text2text family share: the generation config and batched generate calls."""
    default_generation = {}

    def __init__(self, *args, **kwargs):
        model = kwargs.get("model", args[0] if args else None)
        self.generation_config = self.pipeline_generation_config(model, kwargs.get("task") or self.task, kwargs)
        if isinstance(kwargs.get("assistant_model"), str):  # transformers loads a named assistant like the model
            from ..modeling.auto import AutoModelForCausalLM, AutoModelForSeq2SeqLM

            auto = AutoModelForSeq2SeqLM if model.config.get("is_encoder_decoder", False) else AutoModelForCausalLM
            kwargs["assistant_model"] = auto.from_pretrained(kwargs["assistant_model"]).to(model.device)
        super().__init__(*args, **kwargs)

    def pipeline_generation_config(self, model, task, kwargs) -> GenerationConfig:
        """transformers' Pipeline.__init__: pipeline default < model defaults < construction kwargs; task params."""
        self.prefix = None
        if not hasattr(model, "can_generate") or not model.can_generate():
            return GenerationConfig()  # _check_head reports the wrong model clearly
        default = GenerationConfig(**self.default_generation)
        config = GenerationConfig(**self.default_generation)
        config.merge_model_defaults(model.generation_config or GenerationConfig.from_model_config(model.config))
        fields = {k: kwargs.pop(k) for k in list(kwargs) if k in config.__dict__ and not k.startswith("_")}
        config.update(**fields)
        if default.max_new_tokens is not None and config.max_new_tokens == default.max_new_tokens \
                and config.max_length is not None and config.max_length != 20:
            config.max_new_tokens = None  # a model's own max_length wins over the pipeline's length default
        self.prefix = model.config.get("prefix")
        task_params = (model.config.get("task_specific_params") or {}).get(task)
        if task_params:
            task_params = dict(task_params)
            self.prefix = task_params.pop("prefix", self.prefix)
            config.update(**task_params)
        return config

    def set_pad_token(self):
        if self.tokenizer.pad_token_id is not None and self.generation_config.pad_token_id is None:
            self.generation_config.pad_token_id = self.tokenizer.pad_token_id

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.config.get("is_encoder_decoder", False))

    def generate(self, input_ids: list[list[int]], generate_kwargs: dict):
        """Padded prompts (B, T) -> generated ids (B * num_return_sequences, T'), and the padding before each prompt.

        Decoder-only prompts are padded on the left (generation continues from their last token), encoder inputs on
        the right."""
        import torch

        length = max(len(ids) for ids in input_ids)
        pad_id = _first(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else
                        self.generation_config.pad_token_id if self.generation_config.pad_token_id is not None else 0)
        ids = torch.full((len(input_ids), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(input_ids), length), dtype=torch.long)
        left = not self.is_encoder_decoder
        for row, prompt in enumerate(input_ids):
            if prompt:
                span = slice(length - len(prompt), length) if left else slice(0, len(prompt))
                ids[row, span] = torch.as_tensor(prompt)
                mask[row, span] = 1
        kwargs = {"generation_config": self.generation_config, **generate_kwargs}
        if length == 0:  # empty prompts: generation starts from the bos token
            output = self.model.generate(input_ids=None, **kwargs)
        else:
            output = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs)
        sequences = output.sequences if hasattr(output, "sequences") else output
        return sequences.cpu(), [length - len(prompt) if left else 0 for prompt in input_ids]

    def generate_groups(self, prompts: list[list[int]], generate_kwargs: dict) -> list[list[list[int]]]:
        """Each prompt's generated rows, generating batch_size prompts of similar length at once.

        Rows come back as the prompt alone would give them: its padding removed, and a row that stopped early
        padded only as far as that prompt's own longest row (not the batch's)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results = [None] * len(prompts)
        for group in self.groups(order, prompts, generate_kwargs):
            sequences, padding = self.generate([prompts[i] for i in group], generate_kwargs)
            per_prompt = sequences.shape[0] // len(group)
            for position, index in enumerate(group):
                rows = sequences[position * per_prompt:(position + 1) * per_prompt]
                start = 1 if self.is_encoder_decoder else len(prompts[index])  # after the decoder start / the prompt
                results[index] = self.as_alone([row[padding[position]:].tolist() for row in rows], start,
                                               generate_kwargs)
        return results

    def groups(self, order, prompts, generate_kwargs):
        """batch_size prompts at a time; a decoder's absolute lengths (max_length, min_length) count left padding,
        so with those only prompts of equal length share a batch."""
        absolute = not self.is_encoder_decoder and (
            generate_kwargs.get("max_new_tokens", self.generation_config.max_new_tokens) is None
            or generate_kwargs.get("min_length", self.generation_config.min_length))
        # assisted decoding (a drafter) takes one prompt at a time, as transformers' does
        lookup = generate_kwargs.get("prompt_lookup_num_tokens", self.generation_config.prompt_lookup_num_tokens)
        assisted = generate_kwargs.get("assistant_model") is not None or lookup is not None
        batch_size = 1 if assisted else self.batch_size
        group = []
        for index in order:
            full = len(group) == batch_size
            if group and (full or (absolute and len(prompts[index]) != len(prompts[group[0]]))):
                yield group
                group = []
            group.append(index)
        if group:
            yield group

    def as_alone(self, rows: list[list[int]], prompt_length: int, generate_kwargs: dict) -> list[list[int]]:
        """Cut rows after their first end-of-sequence token, then pad them to their longest (as a batch of one)."""
        eos = generate_kwargs.get("eos_token_id", self.generation_config.eos_token_id)
        eos_ids = set(eos) if isinstance(eos, (list, tuple)) else set() if eos is None else {eos}
        if not eos_ids:
            return rows
        cut = []
        for row in rows:
            ends = [i for i in range(prompt_length, len(row)) if row[i] in eos_ids]
            cut.append(row[:ends[0] + 1] if ends else row)
        pad = generate_kwargs.get("pad_token_id", self.generation_config.pad_token_id)
        pad = pad if pad is not None else _first(eos)  # generate's fallback
        longest = max(len(row) for row in cut)
        return [row + [pad] * (longest - len(row)) for row in cut]


class TextGenerationPipeline(GeneratingPipeline):
    task = "text-generation"
    heads = ("causal_lm",)
    default_generation = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_pad_token()

    def parameters(self, return_full_text=None, return_tensors=None, return_text=None, return_type=None,
                   clean_up_tokenization_spaces=None, prefix=None, handle_long_generation=None, stop_sequence=None,
                   truncation=None, max_length=None, continue_final_message=None, skip_special_tokens=None,
                   tokenizer_encode_kwargs=None, add_special_tokens=None, padding=None, **generate_kwargs):
        tokenizer_kwargs = {k: v for k, v in {"add_special_tokens": add_special_tokens, "truncation": truncation,
                                              "max_length": max_length}.items() if v is not None}
        tokenizer_kwargs.update(tokenizer_encode_kwargs or {})
        if max_length is not None:
            generate_kwargs["max_length"] = max_length
        if handle_long_generation not in (None, "hole"):
            raise ValueError(f"{handle_long_generation} is not a valid value for `handle_long_generation` parameter "
                             "expected [None, 'hole']")
        if stop_sequence is not None:
            generate_kwargs["eos_token_id"] = self.tokenizer.encode(stop_sequence, add_special_tokens=False)
        prefix = self.prefix if prefix is None else prefix
        if prefix:
            generate_kwargs["prefix_length"] = len(self.tokenizer(prefix, add_special_tokens=bool(add_special_tokens))
                                                   ["input_ids"])
        return {"tokenizer_kwargs": tokenizer_kwargs, "prefix": prefix or "", "hole": handle_long_generation,
                "continue_final_message": continue_final_message, "generate_kwargs": generate_kwargs,
                "return_type": _return_type(return_type, return_full_text, return_tensors, return_text),
                "clean_up": True if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces,
                "skip_special_tokens": True if skip_special_tokens is None else skip_special_tokens}

    def __call__(self, text_inputs, **kwargs):
        if isinstance(text_inputs, (list, tuple)) and text_inputs and isinstance(text_inputs[0], dict):
            return super().__call__(Chat(text_inputs), **kwargs)  # one chat
        if isinstance(text_inputs, (list, tuple)) and text_inputs and isinstance(text_inputs[0], (list, tuple)):
            return super().__call__([Chat(chat) for chat in text_inputs], **kwargs)
        return super().__call__(text_inputs, **kwargs)

    def run(self, items, params):
        if not items:
            return []
        prompts = [self.encode_prompt(item, params) for item in items]
        generated = self.generate_groups(prompts, self.generate_kwargs(params))
        return [self.records(item, prompt, rows, params) for item, prompt, rows in zip(items, prompts, generated)]

    def encode_prompt(self, item, params) -> list[int]:
        options = dict(params["tokenizer_kwargs"])
        if isinstance(item, Chat):
            options.pop("add_special_tokens", None)  # chats ignore it, as in transformers
            continue_final = params["continue_final_message"]
            if continue_final is None:
                continue_final = item.messages[-1]["role"] == "assistant"
            ids = self.tokenizer.apply_chat_template(item.messages, add_generation_prompt=not continue_final,
                                                     continue_final_message=continue_final, return_dict=True,
                                                     **options)["input_ids"]
        else:
            if not isinstance(item, str):
                raise TypeError(f"a text-generation input must be a str or a chat (list of role/content dicts), not "
                                f"{type(item).__name__}")
            ids = self.tokenizer(params["prefix"] + item, **options)["input_ids"]
        return self.fit_window(list(ids), params)

    def fit_window(self, ids: list[int], params) -> list[int]:
        """handle_long_generation="hole" keeps the prompt's end; otherwise a too-long prompt is a clear error."""
        limit = self.max_length()
        new_tokens = params["generate_kwargs"].get("max_new_tokens", self.generation_config.max_new_tokens)
        if params["hole"] == "hole" and limit is not None:
            if new_tokens is None:
                new_tokens = params["generate_kwargs"].get("max_length", self.generation_config.max_length) - len(ids)
                if new_tokens < 0:
                    raise ValueError("We cannot infer how many new tokens are expected")
            if len(ids) + new_tokens > limit:
                keep = limit - new_tokens
                if keep <= 0:
                    raise ValueError("We cannot use `hole` to handle this generation the number of desired tokens "
                                     "exceeds the models max length")
                ids = ids[-keep:]
        if limit is not None and len(ids) > limit:
            raise ValueError(f"the prompt has {len(ids)} tokens but the model's context window is {limit}; shorten "
                             "it, pass truncation=True, or handle_long_generation='hole'")
        return ids

    def generate_kwargs(self, params) -> dict:
        kwargs = dict(params["generate_kwargs"])
        prefix_length = kwargs.pop("prefix_length", 0)
        if prefix_length > 0:
            if "max_new_tokens" not in kwargs:
                kwargs["max_length"] = (kwargs.get("max_length") or self.generation_config.max_length) + prefix_length
            if "min_new_tokens" not in kwargs and "min_length" in kwargs:
                kwargs["min_length"] += prefix_length
        return kwargs

    def records(self, item, prompt: list[int], rows: list[list[int]], params) -> list[dict]:
        if params["return_type"] == "tensors":
            return [{"generated_token_ids": row} for row in rows]
        decode = {"skip_special_tokens": params["skip_special_tokens"],
                  "clean_up_tokenization_spaces": params["clean_up"]}
        prompt_length = len(self.tokenizer.decode(prompt, **decode)) if prompt else 0
        return [{"generated_text": self.full_text(item, self.tokenizer.decode(row, **decode)[prompt_length:], params)}
                for row in rows]

    def full_text(self, item, new_text: str, params):
        if params["return_type"] != "full_text":
            return new_text
        if isinstance(item, str):
            return item + new_text
        continue_final = params["continue_final_message"]
        if continue_final is None:
            continue_final = item.messages[-1]["role"] == "assistant"
        messages = list(item.messages)
        if continue_final:
            last = messages[-1]
            return messages[:-1] + [{"role": last["role"], "content": last["content"] + new_text}]
        return messages + [{"role": "assistant", "content": new_text}]


class Chat:
    """A conversation given to the pipeline: messages with 'role' and 'content'."""

    def __init__(self, messages):
        for message in messages:
            if not (isinstance(message, dict) and "role" in message and "content" in message):
                raise ValueError("When passing chat dicts as input, each dict must have a 'role' and 'content' key.")
        if not messages:
            raise ValueError("a chat needs at least one message")
        self.messages = list(messages)


def _return_type(return_type, return_full_text, return_tensors, return_text) -> str:
    if return_full_text is not None and return_type is None:
        if return_text is not None:
            raise ValueError("`return_text` is mutually exclusive with `return_full_text`")
        if return_tensors is not None:
            raise ValueError("`return_full_text` is mutually exclusive with `return_tensors`")
        return_type = "full_text" if return_full_text else "new_text"
    if return_tensors and return_type is None:
        if return_text is not None:
            raise ValueError("`return_text` is mutually exclusive with `return_tensors`")
        return_type = "tensors"
    return_type = str(getattr(return_type, "value", return_type or "full_text")).lower()
    if return_type not in RETURN_TYPES:
        raise ValueError(f"return_type must be one of {', '.join(RETURN_TYPES)}, not {return_type!r}")
    return return_type


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value
