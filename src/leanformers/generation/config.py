"""GenerationConfig: how `generate` decodes, with transformers 4.57.6's fields, defaults and loading rules. No torch.

Sources, lowest priority first: the defaults below, then `config.json` keys that name a generation field
(`from_model_config`, for old checkpoints), or `generation_config.json` (`from_pretrained`), then `generate(**kwargs)`.
"""
from __future__ import annotations

import copy
import json
import os

from .. import hub

# every field transformers' GenerationConfig.__init__ knows, with its default
DEFAULTS: dict = {
    # length
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None, "early_stopping": False,
    "max_time": None, "stop_strings": None,
    # strategy
    "do_sample": False, "num_beams": 1, "num_beam_groups": 1, "penalty_alpha": None, "dola_layers": None,
    "use_cache": True, "cache_implementation": None, "cache_config": None, "return_legacy_cache": None,
    "prefill_chunk_size": None,
    # logits manipulation
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "diversity_penalty": 0.0, "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None, "force_words_ids": None,
    "renormalize_logits": False, "constraints": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "remove_invalid_values": False, "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "sequence_bias": None, "token_healing": False, "guidance_scale": None,
    "low_memory": None, "watermarking_config": None,
    # outputs
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False, "output_scores": False,
    "output_logits": None, "return_dict_in_generate": False,
    # special tokens
    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None, "encoder_no_repeat_ngram_size": 0,
    "decoder_start_token_id": None,
    # assisted generation (generation/assisted.py: prompt lookup and assistant models; early exit is not implemented)
    "num_assistant_tokens": 20, "num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.4,
    "prompt_lookup_num_tokens": None, "max_matching_ngram_size": None, "assistant_early_exit": None,
    "assistant_lookbehind": 10, "target_lookbehind": 10, "compile_config": None, "disable_compile": False,
}
TRANSFORMERS_VERSION = "4.57.6"
# arguments of generate() itself that must not hide inside a config
_GENERATE_ARGUMENTS = ("logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "synced_gpus",
                       "assistant_model", "streamer", "negative_prompt_ids", "negative_prompt_attention_mask",
                       "use_model_defaults")
# modes transformers 4.57 moved to Hub repositories (trust_remote_code); not part of leanformers
_UNSUPPORTED = {"constraints": (None,), "force_words_ids": (None,), "assistant_early_exit": (None,),
                "guidance_scale": (None, 1, 1.0), "watermarking_config": (None,), "sequence_bias": (None,)}


def _version_tuple(version) -> tuple:
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class GenerationConfig:
    """The decoding parameters; unknown keys are kept as attributes (as transformers does)."""

    def __init__(self, **kwargs):
        from_model_config = kwargs.pop("_from_model_config", False)
        for name, default in DEFAULTS.items():
            setattr(self, name, copy.deepcopy(kwargs.pop(name, default)))
        self.transformers_version = kwargs.pop("transformers_version", TRANSFORMERS_VERSION)
        self._from_model_config = from_model_config
        kwargs.pop("_commit_hash", None)
        if not from_model_config:  # a model config carries many non-generation keys: drop them
            for name, value in kwargs.items():
                setattr(self, name, value)
        self.validate()

    # ---- checks
    def validate(self):
        """Errors that the config alone shows (transformers raises the same ones at construction)."""
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"`early_stopping` must be True, False or 'never', but is {self.early_stopping!r}.")
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"`max_new_tokens` must be greater than 0, but is {self.max_new_tokens}.")
        if self.num_return_sequences != 1:
            if self.num_beams == 1 and not self.do_sample:
                raise ValueError("Greedy decoding without beam search returns one sequence per input: "
                                 f"`num_return_sequences` must be 1 (got {self.num_return_sequences}).")
            if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
                raise ValueError(f"`num_return_sequences` ({self.num_return_sequences}) has to be smaller or equal "
                                 f"to `num_beams` ({self.num_beams}).")
        for name in _GENERATE_ARGUMENTS:
            if name in self.__dict__:
                raise ValueError(f"`{name}` is not a GenerationConfig field: pass it to `generate()` directly.")

    def validate_for_generate(self):
        """Errors that transformers raises only when generation starts (a saved config may hold them)."""
        self.validate()
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"`num_beams` must be a positive integer, but is {self.num_beams!r}.")
        self._check_mode()
        if self.do_sample:
            self._check_sampling()
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise ValueError(f"`repetition_penalty` has to be strictly positive, but is {self.repetition_penalty}.")

    def _check_mode(self):
        """Refuse the modes transformers 4.57 itself moved to Hub repositories, and other extras."""
        unsupported = [name for name, allowed in _UNSUPPORTED.items() if getattr(self, name) not in allowed]
        if self.num_beams > 1 and self.num_beam_groups > 1:
            unsupported.append("num_beam_groups")
        if self.num_beams == 1 and self.dola_layers is not None:
            unsupported.append("dola_layers")
        if self.num_beams == 1 and not self.do_sample and (self.penalty_alpha or 0) > 0 and (self.top_k or 0) > 1:
            unsupported.append("penalty_alpha")
        if unsupported:
            name = unsupported[0]
            raise NotImplementedError(f"`{name}={getattr(self, name)!r}` selects a decoding mode leanformers does "
                                      "not implement (greedy, sampling and beam search are available).")

    def _check_sampling(self):
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"`temperature` (={self.temperature}) has to be strictly positive when sampling; "
                             "for greedy decoding set `do_sample=False`.")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` has to be in (0, 1] when sampling, but is {self.top_p}.")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"`top_k` has to be a non-negative integer, but is {self.top_k!r}.")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise ValueError(f"`min_p` has to be in [0, 1], but is {self.min_p}.")
        if self.typical_p is not None and not 0 < self.typical_p <= 1:
            raise ValueError(f"`typical_p` has to be in (0, 1], but is {self.typical_p}.")

    # ---- updates
    def update(self, **kwargs) -> dict:
        """Set the fields named in kwargs; return the kwargs that are not fields (model inputs, typos)."""
        unused = {}
        for name, value in kwargs.items():
            if name in self.__dict__:
                setattr(self, name, value)
            else:
                unused[name] = value
        self.validate()
        return unused

    def merge_model_defaults(self, model_config: "GenerationConfig", use_model_defaults: bool | None = None):
        """Fields left at the global default take the model's own non-default value (transformers' rule for
        model configs saved by >= 4.50, or when `use_model_defaults=True`); else only the special tokens."""
        if use_model_defaults is None:
            use_model_defaults = _version_tuple(model_config.transformers_version) >= (4, 50, 0)
        if not use_model_defaults:
            for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
                if getattr(self, name) is None:
                    setattr(self, name, getattr(model_config, name))
            return
        for name, value in model_config.to_dict().items():
            default = DEFAULTS.get(name)
            if name in DEFAULTS and getattr(self, name) == default and value != default:
                setattr(self, name, copy.deepcopy(value))
        if self.temperature == 0.0:
            self.do_sample = False

    # ---- construction
    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "GenerationConfig":
        d = {**d, **overrides}
        return cls(**d)

    @classmethod
    def from_model_config(cls, model_config) -> "GenerationConfig":
        """The generation fields found in a model config (config.json), as transformers reads old checkpoints."""
        d = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
        config = cls(**{k: v for k, v in d.items() if v is not None}, _from_model_config=True)
        decoder = d.get("decoder")  # EncoderDecoderModel pairs: the decoder's settings fill what is unset
        if isinstance(decoder, dict) or hasattr(decoder, "to_dict"):
            decoder = decoder if isinstance(decoder, dict) else decoder.to_dict()
            for name in DEFAULTS:
                if name in decoder and getattr(config, name) == DEFAULTS[name]:
                    setattr(config, name, decoder[name])
        if not config.return_dict_in_generate and any(
                getattr(config, flag) for flag in ("output_scores", "output_logits", "output_attentions",
                                                   "output_hidden_states")):
            config.return_dict_in_generate = True
        return config

    @classmethod
    def from_pretrained(cls, name_or_path, config_file_name="generation_config.json", **kwargs) -> "GenerationConfig":
        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only", "subfolder")
                      if k in kwargs}
        d = hub.load_json(name_or_path, config_file_name, required=False, **hub_kwargs)
        if d is None:
            raise FileNotFoundError(f"{name_or_path!r} has no {config_file_name}")
        if not isinstance(d, dict):
            raise ValueError(f"{config_file_name} of {name_or_path!r} is not a JSON object")
        return cls.from_dict(d, **kwargs)

    @classmethod
    def for_model(cls, model_config, name_or_path=None, **hub_kwargs) -> "GenerationConfig":
        """What a loaded model uses: its generation_config.json if there is one, else its config.json's fields."""
        if name_or_path is not None:
            d = hub.load_json(name_or_path, "generation_config.json", required=False, **hub_kwargs)
            if isinstance(d, dict):
                return cls.from_dict(d)
        return cls.from_model_config(model_config)

    @classmethod
    def from_any(cls, obj) -> "GenerationConfig":
        """A copy of ours, or ours built from another GenerationConfig-like object (e.g. transformers')."""
        if isinstance(obj, GenerationConfig):
            return copy.deepcopy(obj)
        if hasattr(obj, "to_dict"):  # transformers' to_dict stamps its own version: keep the object's
            return cls.from_dict(obj.to_dict(), transformers_version=getattr(obj, "transformers_version",
                                                                             TRANSFORMERS_VERSION))
        if isinstance(obj, dict):
            return cls.from_dict(obj)
        raise TypeError(f"`generation_config` must be a GenerationConfig, got {type(obj).__name__}")

    # ---- (de)serialisation
    def to_dict(self) -> dict:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}

    def to_diff_dict(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in DEFAULTS or v != DEFAULTS[k]}

    def to_json_string(self, use_diff=True) -> str:
        d = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, folder, config_file_name="generation_config.json"):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, config_file_name), "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    def __eq__(self, other):
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"{self.__class__.__name__} {self.to_json_string()}"
