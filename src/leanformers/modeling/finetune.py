"""The fine-tuning side of PreTrainedModel, with transformers' names: gradient checkpointing, resizing the vocabulary,
the input / output embeddings, counting parameters, and the base model (`model.base_model`, `model.bert`, ...) to
freeze with `requires_grad_(False)`."""
from __future__ import annotations

import torch
from torch import nn


class FineTuning:
    """Mixed into PreTrainedModel (which provides config, spec, task, model, head, tie_weights, tied_weights)."""

    # ---- the base model under transformers' attribute name
    @property
    def base_model(self) -> nn.Module:
        """The base stack without the task head (freeze it with `model.base_model.requires_grad_(False)`)."""
        return self.model

    def __getattr__(self, name: str):
        """`model.bert`, `model.distilbert`, `model.transformer`, ...: transformers' name of the base model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            spec = type(self).spec
            if spec is not None and spec.base_prefix and name == spec.base_prefix:
                return self.base_model
            raise

    # ---- counting
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """The number of (trainable, with only_trainable) parameters, each shared tensor counted once."""
        skip = set()
        if exclude_embeddings:
            skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        return sum(p.numel() for p in self.parameters()
                   if (p.requires_grad or not only_trainable) and id(p) not in skip)

    # ---- gradient checkpointing
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None):
        """Recompute each block's activations in the backward pass (torch.utils.checkpoint) instead of keeping
        them: less memory, the same gradients. Only in train() mode with gradients on; the KV cache is off then."""
        kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = kwargs

    def gradient_checkpointing_disable(self):
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = None

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", None) for m in self.modules())

    # ---- embeddings
    def get_input_embeddings(self) -> nn.Module:
        return self.get_submodule(self.input_embeddings_name().rpartition(".")[0])

    def set_input_embeddings(self, embeddings: nn.Module):
        """Replace the word embeddings (every stack that shares them: encoder and decoder) and re-tie the head."""
        old = self.get_input_embeddings()
        for module in self.modules():
            for name, child in list(module.named_children()):
                if child is old:
                    setattr(module, name, embeddings)
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Module | None:
        """The vocabulary projection of a language-model head (None for other heads)."""
        decoder = getattr(self.head, "decoder", None) if self.head is not None else None
        return decoder if isinstance(decoder, nn.Linear) else None

    def set_output_embeddings(self, projection: nn.Linear):
        self.head.decoder = projection

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Grow or shrink the vocabulary to new_num_tokens rows (rounded up to pad_to_multiple_of): the input
        embeddings, an untied output projection and its bias, BART's final_logits_bias; config.vocab_size follows and
        a tied head stays tied. New rows are the old rows' mean, as transformers draws them (mean_resizing; else
        normal(0, initializer_range) as its init)."""
        embeddings = self.get_input_embeddings()
        if not isinstance(embeddings, nn.Embedding):
            raise NotImplementedError(f"{type(self).__name__} has no single embedding table to resize")
        if new_num_tokens is None:
            new_num_tokens = embeddings.num_embeddings
        if pad_to_multiple_of:
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        tied = bool(self.tied_weights())
        embeddings.weight = nn.Parameter(self._resized(embeddings.weight, new_num_tokens, mean_resizing))
        embeddings.num_embeddings = new_num_tokens
        head = self.get_output_embeddings()
        if head is not None and not tied:
            head.weight = nn.Parameter(self._resized(head.weight, new_num_tokens, mean_resizing))
        if head is not None:
            head.out_features = new_num_tokens
            if head.bias is not None:
                head.bias = nn.Parameter(self._resized_bias(head.bias, new_num_tokens, mean_resizing))
        for name in ("bias", "final_logits_bias"):  # masked-LM bias, BART's per-token logits bias
            bias = getattr(self.head, name, None) if self.head is not None else None
            if isinstance(bias, nn.Parameter) and bias.shape[-1] != new_num_tokens:
                mean = mean_resizing and name == "bias"
                setattr(self.head, name, nn.Parameter(self._resized_bias(bias, new_num_tokens, mean)))
        self.config.vocab_size = new_num_tokens
        self.tie_weights()
        return embeddings

    def _resized(self, weight: torch.Tensor, rows: int, mean_resizing: bool) -> torch.Tensor:
        old = weight.shape[0]
        new = weight.new_empty(rows, weight.shape[1])
        with torch.no_grad():
            new[:min(old, rows)] = weight[:rows]
            if rows > old:
                new[old:] = _added_rows(weight, rows - old, mean_resizing, self._init_std())
        return new

    @staticmethod
    def _resized_bias(bias: torch.Tensor, size: int, mean_resizing: bool) -> torch.Tensor:
        old = bias.shape[-1]
        new = bias.new_zeros(*bias.shape[:-1], size)
        with torch.no_grad():
            new[..., :min(old, size)] = bias[..., :size]
            if size > old and mean_resizing:
                new[..., old:] = bias.mean(-1, keepdim=True)
        return new

    def _init_std(self) -> float:
        from .init import default_std

        return default_std(self.config)


def _added_rows(weight: torch.Tensor, count: int, mean_resizing: bool, std: float) -> torch.Tensor:
    """transformers' new embedding rows: drawn from N(mean, 1e-9 * covariance) of the old rows (their mean if the
    covariance is not positive definite); without mean_resizing, normal(0, initializer_range)."""
    if not mean_resizing:
        return torch.randn(count, weight.shape[1], dtype=weight.dtype, device=weight.device) * std
    old = weight.detach().float()
    mean = old.mean(0)
    centred = old - mean
    covariance = centred.T @ centred / old.shape[0]
    if bool(torch.linalg.eigvalsh(covariance).min() > 0):
        sampler = torch.distributions.MultivariateNormal(mean, covariance_matrix=1e-9 * covariance)
        return sampler.sample((count,)).to(weight.dtype)
    return mean.expand(count, -1).to(weight.dtype)
