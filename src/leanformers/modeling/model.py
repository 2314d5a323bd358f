"""PreTrainedModel: a base stack (`self.model`) plus a task head (`self.head`), built from a Spec.

The concrete classes users import (`BertForSequenceClassification`, `GPT2LMHeadModel`, ...) are made by
`model_class(spec, task)`: they differ only in their spec, task and name.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from . import init, packed
from .finetune import FineTuning
from .heads import TASKS, build_head, compute_loss
from .outputs import ModelOutput
from .transformer import Transformer

# inputs shaped (batch, choices, length) for multiple choice, flattened to (batch * choices, length)
_PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


class PreTrainedModel(FineTuning, nn.Module):
    spec = None          # set on each concrete class
    task = "base"

    def __init__(self, config: Config):
        super().__init__()
        if not isinstance(config, Config):
            config = Config.from_dict(config.to_dict() if hasattr(config, "to_dict") else dict(config))
        self.config = config
        depth = getattr(init._BUILDING, "depth", 0)
        init._BUILDING.depth = depth + 1
        try:
            self.model = self.build_base(config)
            self.head = self.build_head(config)
        finally:
            init._BUILDING.depth = depth
        self.generation_config = None
        if depth == 0:  # the outermost model initialises all (as transformers' post_init); not on the meta device
            self.post_init()

    def post_init(self):
        """Initialise the weights as transformers does and tie the output projection (nothing on the meta device,
        where from_pretrained builds the model before the checkpoint fills it)."""
        first = next(self.parameters(), None)
        if first is not None and not first.is_meta:
            init.init_weights(self)
            self.tie_weights()

    def build_base(self, config) -> nn.Module:
        """The base stack; encoder-decoder and decoder families override via their spec's family. An encoder whose
        config says is_decoder runs causally (BertLMHeadModel); add_cross_attention gives its blocks cross-attention
        to an encoder's output (the decoder of an EncoderDecoderModel pair)."""
        causal = self.spec.family == "decoder" or bool(config.get("is_decoder", False))
        return Transformer(self.spec, config, causal=causal, cross=bool(config.get("add_cross_attention", False)),
                           pooler=self.uses_pooler())

    def build_head(self, config) -> nn.Module | None:
        """The task head; a family whose head is not in heads.py (Transformer-XL's adaptive softmax) overrides this."""
        return build_head(self.task, self.spec, config)

    def uses_pooler(self) -> bool:
        """transformers builds the pooler only for the base model and the heads that read it."""
        if not self.spec.pooler:
            return False
        return self.task == "base" \
            or (self.task == "sequence_classification" and self.spec.classifier.pool == "pooler") \
            or (self.task == "multiple_choice" and self.spec.multiple_choice.pool == "pooler")

    # ---- weights that share storage
    def tied_weights(self) -> dict[str, str]:
        """our parameter name -> the name it shares storage with (the output projection and the word embeddings)."""
        ties = {}
        tie = self.config.get("tie_word_embeddings", self.spec.tied_embeddings)  # masked LMs honour it too
        if tie and (self.task == "masked_lm" or self.task in ("causal_lm", "seq2seq_lm") and self.spec.tied_embeddings):
            ties["head.decoder.weight"] = self.input_embeddings_name()
        return ties

    def input_embeddings_name(self) -> str:
        return "model.embeddings.word.weight"

    def tie_weights(self):
        params = dict(self.named_parameters(remove_duplicate=False))
        for target, source in self.tied_weights().items():
            module_name, _, attr = target.rpartition(".")
            setattr(self.get_submodule(module_name), attr, params[source])

    # ---- forward
    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=True, **kwargs):
        token_type_ids = kwargs.get("token_type_ids")
        if token_type_ids is not None and not self.spec.token_types:
            raise TypeError(f"{type(self).__name__} takes no token_type_ids (this architecture has no token types)")
        if self.task == "multiple_choice":
            choices = (input_ids if input_ids is not None else kwargs["inputs_embeds"]).shape[1]
            input_ids, attention_mask = _flatten(input_ids), _flatten(attention_mask)
            kwargs = {k: _flatten(v) if k in _PER_TOKEN_INPUTS else v for k, v in kwargs.items()}
        logits_to_keep = kwargs.pop("logits_to_keep", 0)
        if getattr(self.head, "reads_first_only", False):  # the last block then computes position 0 alone
            kwargs["first_only"] = True
        if self.training and torch.is_grad_enabled() and self._padding_unread(labels, attention_mask):
            kwargs["skip_padding"] = True  # the stack's per-token layers may run on the real tokens only
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if self.head is None:
            return outputs if return_dict else outputs.to_tuple()
        head_input = outputs
        if logits_to_keep and self.task == "causal_lm":  # generation needs only the last position's logits
            head_input = ModelOutput(**{**outputs, "last_hidden_state": outputs.last_hidden_state[:, -logits_to_keep:]})
        result = self.head(head_input, input_ids=input_ids, attention_mask=attention_mask)
        if self.task == "multiple_choice":
            result["logits"] = result["logits"].view(-1, choices)
        loss = None
        if labels is not None:
            loss = compute_loss(self.task, self.config, result, labels, attention_mask)
        elif self.task == "question_answering" and kwargs.get("start_positions") is not None:
            loss = compute_loss(self.task, self.config, result, (kwargs["start_positions"], kwargs["end_positions"]))
        out = ModelOutput(loss=loss, **result, **{k: v for k, v in outputs.items()
                                                 if k not in ("last_hidden_state", "pooler_output")})
        return out if return_dict else out.to_tuple()

    def _padding_unread(self, labels, attention_mask) -> bool:
        """Whether neither the loss nor the training signal reads a padded position (so a packed stack computes the
        same loss and gradients): a classifier of position 0 that is real in every row, or token labels that are -100
        wherever the mask is 0. Not QA (its loss spans every position) nor a bare model (its output is read whole)."""
        if attention_mask is None or attention_mask.dim() != 2 or not hasattr(self.model, "packable"):
            return False
        if getattr(self.head, "reads_first_only", False):
            return bool(attention_mask[:, 0].all())
        if self.task in ("token_classification", "masked_lm") and isinstance(labels, torch.Tensor):
            return labels.shape == attention_mask.shape and bool((labels[attention_mask == 0] == -100).all())
        return False

    # ---- loading / generation front doors
    @classmethod
    def from_pretrained(cls, name_or_path, *args, **kwargs):
        from ..loading import load_pretrained  # loading sits above modeling in the import order

        return load_pretrained(cls, name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, **kwargs) -> list[str]:
        """Write config.json, the weights (safetensors, or pytorch_model.bin with safe_serialization=False; sharded
        above max_shard_size="5GB") in transformers' checkpoint names, and generation_config.json; returns the file
        names. transformers' from_pretrained loads the folder."""
        from ..saving import save_pretrained  # saving sits above modeling in the import order

        return save_pretrained(self, save_directory, **kwargs)

    def push_to_hub(self, *args, **kwargs):
        """Not supported: raises, saying the Hub is out of reach (save_pretrained a folder instead)."""
        from ..saving import raise_hub_unreachable

        raise_hub_unreachable()

    @classmethod
    def from_config(cls, config, dtype=None, **kwargs):
        """A freshly initialised model (transformers' init) of this class for `config`, in train() mode as
        transformers returns it (from_pretrained returns eval() mode)."""
        model = cls(config)
        if dtype is not None:
            model.to(dtype)
        model.load_generation_config(None)
        return model

    def can_generate(self) -> bool:
        return self.task in ("causal_lm", "seq2seq_lm")

    def generate(self, *args, **kwargs):
        if not self.can_generate():
            raise TypeError(f"{type(self).__name__} cannot generate text: it has no language-modeling head. Load the "
                            f"checkpoint with AutoModelForCausalLM (decoders) or AutoModelForSeq2SeqLM instead.")
        from ..generation import generate  # generation sits above modeling in the import order

        if self.decode_rows(*args, **kwargs) >= packed.MIN_ROWS:  # several rows per step: packed weights pay
            packed.enable(self)
        return generate(self, *args, **kwargs)

    def decode_rows(self, input_ids=None, *args, **kwargs) -> int:
        """Rows each decode step will multiply by the weights: prompts x beams (or returned samples)."""
        ids = input_ids if input_ids is not None else kwargs.get("input_ids", kwargs.get("inputs"))
        encoder_outputs = kwargs.get("encoder_outputs")
        batch = ids.shape[0] if getattr(ids, "ndim", 0) == 2 else \
            encoder_outputs.last_hidden_state.shape[0] if encoder_outputs is not None else 1
        config = kwargs.get("generation_config") or self.generation_config
        beams, samples = (kwargs.get(name, getattr(config, name, 1)) or 1
                          for name in ("num_beams", "num_return_sequences"))
        return batch * max(beams, samples)

    def load_generation_config(self, name_or_path, **where):
        """generation_config.json next to the weights, else the generation fields of config.json (transformers)."""
        if not self.can_generate():
            return
        from ..generation import GenerationConfig

        self.generation_config = GenerationConfig.for_model(self.config, name_or_path, **where)

    @property
    def device(self):
        return next(self.parameters()).device

    @property
    def dtype(self):
        """The float dtype of the weights (a quantized model's int8 tables are skipped: it computes in this)."""
        params = list(self.parameters())
        return next((p.dtype for p in params if p.is_floating_point()), params[0].dtype)

    def quantize(self, quantization: str, group_size: int = 32, skip: tuple = ()) -> dict:
        """Quantize the linear layers in place: "int8" (dynamic), "int8-weight" or "int4-weight" (modeling/quant.py).
        Returns the report (also `self.quantization_report`): quantized layers, layers kept in float32 and why."""
        from .quant import quantize

        return quantize(self, quantization, group_size=group_size, skip=skip)


class DecoderModel(PreTrainedModel):
    """Decoder-only models: the same forward, with the inputs of the generation protocol spelled out (generate()
    reads this signature to pass position ids and to ask for the last position's logits only)."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                inputs_embeds=None, labels=None, logits_to_keep=0, return_dict=True, **kwargs):
        return super().forward(input_ids, attention_mask, labels, return_dict, position_ids=position_ids,
                               past_key_values=past_key_values, use_cache=use_cache, inputs_embeds=inputs_embeds,
                               logits_to_keep=logits_to_keep, **kwargs)


def _flatten(t):
    return None if t is None else t.reshape(-1, *t.shape[2:])


_CLASSES: dict[tuple[str, str], type] = {}


def model_class(spec, task: str) -> type:
    """The concrete class for (architecture, task), e.g. BertForSequenceClassification."""
    if task == "seq2seq_lm" and spec.family != "encoder-decoder":
        hint = "; load it with AutoModelForCausalLM" if "causal_lm" in spec.tasks else ""
        raise ValueError(f"{spec.model_type} is not an encoder-decoder model ({spec.family} only): it has no "
                         f"sequence-to-sequence head{hint}")
    if task not in spec.tasks:
        heads = ", ".join(TASKS[t] for t in spec.tasks)
        raise ValueError(f"{spec.model_type} has no {TASKS.get(task, task)} head; it has: {heads}")
    key = (spec.model_type, task)
    if key not in _CLASSES:
        name = spec.class_names.get(task) or f"{spec.class_prefix}{TASKS[task]}"
        base = spec.model_class or (DecoderModel if spec.family == "decoder" else PreTrainedModel)
        mixin = getattr(base, "task_mixins", {}).get(task)  # one half of an encoder-decoder (seq2seq_halves.py)
        _CLASSES[key] = type(name, (mixin, base) if mixin else (base,),
                             {"spec": spec, "task": task, "__module__": "leanformers"})
    return _CLASSES[key]
