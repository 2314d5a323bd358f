"""Transformer-XL: the parts no other architecture shares.

- relative positional attention: scores = (q + r_w_bias)·k + (q + r_r_bias)·R[i - j], with R a sinusoid of the
  distance projected by `r`, and the "relative shift" that lines distances up with keys;
- segment memory `mems`: every layer also attends to the hidden states it saw in the previous segments (kept as
  transformers keeps them: one (mem_len, batch, d_model) tensor per layer, time first);
- adaptive input embedding and adaptive log-softmax: the vocabulary is cut into clusters (`cutoffs`), rarer clusters
  get narrower vectors (`div_val`), each projected to/from d_model.

The stack, its blocks and the LM head are built here; norms, the MLP, the classification head, loading, ties and
the Auto classes are the shared ones. Tensors are batch first inside; only `mems` keep transformers' layout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .heads import compute_loss
from .layers import MLP, dropout, norm
from .model import PreTrainedModel
from .outputs import ModelOutput

# TransfoXLConfig's defaults, for config.json files that leave a key out
DEFAULTS = {"cutoffs": [20000, 40000, 200000], "d_embed": 1024, "d_head": 64, "div_val": 4, "pre_lnorm": False,
            "mem_len": 1600, "clamp_len": 1000, "same_length": True, "proj_share_all_but_first": True,
            "attn_type": 0, "sample_softmax": -1, "untie_r": True, "layer_norm_epsilon": 1e-5}


def setting(config, name):
    value = config.get(name)
    return DEFAULTS[name] if value is None else value


def tie_projs(config) -> list[bool]:
    """Which output projections share the input projection of the same cluster (all but the first, by default)."""
    tied = config.get("tie_projs")
    if tied is None:
        tied = [False] + [bool(setting(config, "proj_share_all_but_first"))] * len(setting(config, "cutoffs"))
    return list(tied)


class Clusters:
    """The vocabulary cut at `cutoffs`: cluster i holds ids [bounds[i], bounds[i+1]) in vectors of width sizes[i]."""

    def __init__(self, config):
        self.vocab_size, self.d_proj = config.vocab_size, config.d_model
        self.d_embed, self.div_val = setting(config, "d_embed"), setting(config, "div_val")
        self.bounds = [0, *setting(config, "cutoffs"), self.vocab_size]
        self.sizes = [self.d_embed // self.div_val ** i for i in range(len(self.bounds) - 1)]
        # div_val == 1: one table for the whole vocabulary, projected only when d_embed != d_model
        self.projected = self.div_val != 1 or self.d_proj != self.d_embed

    def projections(self, count: int) -> nn.ParameterList:
        """(d_model, width) matrices, applied as F.linear(x, p) on the way in and x @ p on the way out."""
        if not self.projected:
            return nn.ParameterList()
        return nn.ParameterList(nn.Parameter(torch.empty(self.d_proj, self.sizes[i])) for i in range(count))


class AdaptiveEmbedding(nn.Module):
    """ids (B, T) -> (B, T, d_model): each cluster's table, projected to d_model, times sqrt(d_model)."""

    def __init__(self, config):
        super().__init__()
        self.clusters = c = Clusters(config)
        if c.div_val == 1:
            self.word = nn.ModuleList([nn.Embedding(c.vocab_size, c.d_embed)])
        else:
            self.word = nn.ModuleList(nn.Embedding(end - start, size)
                                      for start, end, size in zip(c.bounds, c.bounds[1:], c.sizes))
        self.projections = c.projections(len(self.word))
        self.scale = c.d_proj ** 0.5

    def forward(self, input_ids):
        c = self.clusters
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= c.vocab_size):
            raise ValueError(f"input_ids must lie in [0, vocab_size={c.vocab_size}); got ids from "
                             f"{int(input_ids.min())} to {int(input_ids.max())}")
        if len(self.word) == 1:
            x = self.word[0](input_ids)
            if len(self.projections):
                x = F.linear(x, self.projections[0])
            return x * self.scale
        x = self.projections[0].new_zeros(*input_ids.shape, c.d_proj)
        for i, (start, end) in enumerate(zip(c.bounds, c.bounds[1:])):
            inside = (input_ids >= start) & (input_ids < end)
            if inside.any():
                x[inside] = F.linear(self.word[i](input_ids[inside] - start), self.projections[i])
        return x * self.scale


def relative_positions(key_length: int, d_model: int, clamp_len: int, dtype, device) -> torch.Tensor:
    """(K, d_model) sinusoids of the distances K-1, ..., 0 (capped at clamp_len): [sin | cos]."""
    inv_freq = 1 / (10000 ** (torch.arange(0.0, d_model, 2.0, device=device) / d_model))
    distance = torch.arange(key_length - 1, -1, -1.0, device=device)
    if clamp_len > 0:
        distance = distance.clamp(max=clamp_len)
    angles = torch.outer(distance.to(dtype), inv_freq.to(dtype))
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def relative_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, K) scores against distances K-1..0 -> scores against keys: row i moves left by T-1-i, so that
    column j holds distance (K-T+i) - j. Done with one pad and two views, as in the paper's code."""
    batch, heads, query_length, key_length = x.shape
    padded = F.pad(x, (1, 0)).view(batch, heads, key_length + 1, query_length)
    return padded[:, :, 1:].reshape(batch, heads, query_length, key_length)


def blocked_keys(query_length: int, memory_length: int, mem_len: int, same_length: bool, device) -> torch.Tensor:
    """(T, M+T) bool, True where query i may not look: the future, and with `same_length` the keys too far back
    for every query to see the same number of keys."""
    ones = torch.ones(query_length, memory_length + query_length, dtype=torch.bool, device=device)
    blocked = ones.triu(1 + memory_length)
    if same_length:
        overflow = memory_length + query_length - mem_len
        blocked = blocked | ones.tril(-(query_length - overflow if overflow > 0 else query_length))
    return blocked


class RelativeAttention(nn.Module):
    """Multi-head attention over [memory; segment] with content (r_w_bias) and position (r_r_bias) terms."""

    def __init__(self, config, own_biases: bool):
        super().__init__()
        self.num_heads, self.head_dim = config.n_head, setting(config, "d_head")
        inner = self.num_heads * self.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * inner, bias=False)
        self.r = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        # untie_r=False: one pair for the whole stack, passed in by it
        self.r_w_bias = nn.Parameter(torch.empty(self.num_heads, self.head_dim)) if own_biases else None
        self.r_r_bias = nn.Parameter(torch.empty(self.num_heads, self.head_dim)) if own_biases else None
        self.scale = self.head_dim ** -0.5
        self.dropout = config.get("dropatt", 0.0)  # on the attention probabilities, in train() mode

    def forward(self, context, query_length, positions, blocked, shared_biases=None, head_mask=None):
        """context (B, K, d_model) = [memory; segment], positions (K, d_model), blocked (T, K)
        -> (B, T, d_model), probabilities (B, H, T, K)."""
        batch, key_length, _ = context.shape
        q, k, v = self.qkv(context).view(batch, key_length, 3, self.num_heads, self.head_dim).unbind(2)
        q = q[:, -query_length:]                                            # (B, T, H, D)
        r = self.r(positions).view(key_length, self.num_heads, self.head_dim)  # (K, H, D)
        r_w, r_r = (self.r_w_bias, self.r_r_bias) if self.r_w_bias is not None else shared_biases
        content = torch.einsum("bihd,bjhd->bhij", q + r_w, k)
        position = relative_shift(torch.einsum("bihd,jhd->bhij", q + r_r, r))
        scores = ((content + position) * self.scale).masked_fill(blocked, torch.finfo(content.dtype).min)
        probs = scores.softmax(dim=-1)
        if head_mask is not None:  # (H,) 1 keeps a head, 0 silences it
            probs = probs * head_mask[None, :, None, None]
        out = torch.einsum("bhij,bjhd->bihd", dropout(probs, self.dropout, self.training), v)
        out = out.reshape(batch, query_length, -1)
        return self.o(out), probs


class RelativeBlock(nn.Module):
    """Relative attention over [memory; x] then the MLP (ReLU), each with a residual and a LayerNorm (post or pre)."""

    def __init__(self, config, own_biases: bool):
        super().__init__()
        eps, hidden = setting(config, "layer_norm_epsilon"), config.d_model
        self.pre_norm = bool(setting(config, "pre_lnorm"))
        self.attention = RelativeAttention(config, own_biases)
        self.attention_norm = norm("layer", hidden, eps)
        self.dropout = config.get("dropout", 0.0)  # after the activation and after each sublayer, in train() mode
        self.mlp = MLP(hidden, config.d_inner, "relu", dropout=self.dropout)
        self.mlp_norm = norm("layer", hidden, eps)

    def forward(self, x, memory, positions, blocked, shared_biases=None, head_mask=None):
        """x (B, T, d_model), memory (B, M, d_model) or None -> (B, T, d_model), probabilities."""
        context = x if memory is None else torch.cat([memory, x], dim=1)
        attend = dict(shared_biases=shared_biases, head_mask=head_mask)
        if self.pre_norm:
            out, probs = self.attention(self.attention_norm(context), x.shape[1], positions, blocked, **attend)
            x = x + self.drop(out)
            return x + self.drop(self.mlp(self.mlp_norm(x))), probs
        out, probs = self.attention(context, x.shape[1], positions, blocked, **attend)
        x = self.attention_norm(x + self.drop(out))
        return self.mlp_norm(x + self.drop(self.mlp(x))), probs

    def drop(self, out):
        return dropout(out, self.dropout, self.training)


class TransfoXLStack(nn.Module):
    """Adaptive embedding -> relative blocks, each reading its layer's memory; returns the updated memory."""

    def __init__(self, config):
        super().__init__()
        if setting(config, "attn_type") != 0:
            raise NotImplementedError(f"Transformer-XL attn_type={config.attn_type} is not supported (only 0, the "
                                      "relative attention every released checkpoint uses)")
        self.config = config
        self.embeddings = AdaptiveEmbedding(config)
        untie = bool(setting(config, "untie_r"))
        shape = (config.n_head, setting(config, "d_head"))
        self.r_w_bias = None if untie else nn.Parameter(torch.empty(shape))
        self.r_r_bias = None if untie else nn.Parameter(torch.empty(shape))
        self.layers = nn.ModuleList(RelativeBlock(config, own_biases=untie) for _ in range(config.n_layer))
        self.mem_len, self.clamp_len = setting(config, "mem_len"), setting(config, "clamp_len")
        self.same_length = bool(setting(config, "same_length"))
        self.dropout = config.get("dropout", 0.0)  # embeddings, positions and the last layer's output (train())

    def init_mems(self, batch_size: int):
        """Empty memory as transformers starts it: mem_len zero vectors per layer (they are attended to)."""
        if self.mem_len <= 0:
            return None
        param = self.embeddings.word[0].weight
        return [param.new_zeros(self.mem_len, batch_size, self.config.d_model) for _ in self.layers]

    def forward(self, input_ids=None, mems=None, head_mask=None, inputs_embeds=None, output_attentions=False,
                output_hidden_states=False):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d_model)
        x = dropout(x, self.dropout, self.training)
        mems = self.init_mems(x.shape[0]) if mems is None else self._check_mems(mems, x)
        memory_length = mems[0].shape[0] if mems is not None else 0
        key_length = memory_length + x.shape[1]
        positions = relative_positions(key_length, self.config.d_model, self.clamp_len, x.dtype, x.device)
        positions = dropout(positions, self.dropout, self.training)
        blocked = blocked_keys(x.shape[1], memory_length, self.mem_len, self.same_length, x.device)
        shared = None if self.r_w_bias is None else (self.r_w_bias, self.r_r_bias)
        head_mask = self._head_mask(head_mask, x.dtype)
        inputs, attentions = [], []
        for i, layer in enumerate(self.layers):
            inputs.append(x)
            memory = None if mems is None else mems[i].transpose(0, 1)  # (M, B, d) -> (B, M, d)
            x, probs = layer(x, memory, positions, blocked, shared, head_mask[i])
            attentions.append(probs)
        x = dropout(x, self.dropout, self.training)
        return ModelOutput(
            last_hidden_state=x,
            mems=self._update_mems(inputs, mems),
            hidden_states=tuple(inputs + [x]) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def _check_mems(self, mems, x):
        if len(mems) != len(self.layers) or any(m.dim() != 3 or m.shape[1:] != (x.shape[0], x.shape[2]) for m in mems):
            shapes = [tuple(m.shape) for m in mems]
            raise ValueError(f"mems must be {len(self.layers)} tensors of shape (memory length, batch={x.shape[0]}, "
                             f"d_model={x.shape[2]}), as a previous call returned them; got {shapes}")
        return mems

    def _update_mems(self, inputs, mems):
        """Each layer's memory: its last mem_len inputs over [old memory; this segment], time first."""
        if mems is None:
            return None
        end = mems[0].shape[0] + inputs[0].shape[1]
        start = max(0, end - self.mem_len)
        return [torch.cat([m, h.transpose(0, 1)], dim=0)[start:end] for m, h in zip(mems, inputs)]

    def _head_mask(self, head_mask, dtype):
        """None, (H,) for every layer or (layers, H) -> one (H,) mask (or None) per layer."""
        if head_mask is None:
            return [None] * len(self.layers)
        head_mask = head_mask.to(dtype)
        return [head_mask] * len(self.layers) if head_mask.dim() == 1 else list(head_mask)


class AdaptiveLogSoftmax(nn.Module):
    """(B, T, d_model) -> (B, T, vocab) log-probabilities. The head cluster scores its own ids plus one entry per
    tail cluster; a tail id's log-probability is its cluster's entry plus its log-softmax inside the cluster."""

    def __init__(self, config):
        super().__init__()
        self.clusters = c = Clusters(config)
        tails = len(c.bounds) - 2
        self.cluster_weight = nn.Parameter(torch.zeros(tails, c.d_embed)) if tails else None
        self.cluster_bias = nn.Parameter(torch.zeros(tails)) if tails else None
        if c.div_val == 1:  # one output matrix, sliced per cluster
            self.decoder = nn.ModuleList([nn.Linear(c.d_embed, c.vocab_size)])
        else:
            self.decoder = nn.ModuleList(nn.Linear(size, end - start)
                                         for start, end, size in zip(c.bounds, c.bounds[1:], c.sizes))
        self.projections = c.projections(len(c.sizes))

    def _logits(self, hidden, i):  # (N, d_model) -> (N, size of cluster i [+ tails for the head])
        c = self.clusters
        if c.div_val == 1:
            weight = self.decoder[0].weight[c.bounds[i]:c.bounds[i + 1]]
            bias = self.decoder[0].bias[c.bounds[i]:c.bounds[i + 1]]
        else:
            weight, bias = self.decoder[i].weight, self.decoder[i].bias
        if i == 0 and self.cluster_weight is not None:
            weight = torch.cat([weight, self.cluster_weight])
            bias = torch.cat([bias, self.cluster_bias])
        if len(self.projections):
            hidden = F.linear(hidden, self.projections[i].t())
        return F.linear(hidden, weight, bias)

    def forward(self, hidden):
        flat = hidden.reshape(-1, hidden.shape[-1])
        head = self._logits(flat, 0).log_softmax(dim=-1)
        bounds = self.clusters.bounds
        pieces = [head[:, :bounds[1]]]
        for i in range(1, len(bounds) - 1):
            cluster = head[:, bounds[1] + i - 1, None]  # log P(cluster i)
            pieces.append(cluster + self._logits(flat, i).log_softmax(dim=-1))
        return torch.cat(pieces, dim=-1).view(*hidden.shape[:-1], -1)

    def losses(self, log_probs, labels):
        """(B, T, V), (B, T) -> (B, T-1) negative log-likelihoods of the next token (0 where labels are -100).

        transformers' adaptive softmax writes them cluster by cluster (ids of the head cluster first, in order) with
        the ignored ones last, when there are clusters; the same order is kept here."""
        targets = labels[:, 1:].reshape(-1)
        keep = targets != -100
        scores = log_probs[:, :-1].reshape(-1, log_probs.shape[-1])
        nll = torch.zeros(targets.shape, dtype=scores.dtype, device=scores.device)
        nll[keep] = -scores[keep].gather(1, targets[keep, None]).squeeze(1)
        if self.cluster_weight is not None:
            boundaries = torch.tensor(self.clusters.bounds[1:-1], device=targets.device)
            cluster = torch.bucketize(targets, boundaries, right=True).masked_fill(~keep, len(self.clusters.bounds))
            nll = nll[torch.argsort(cluster, stable=True)]
        return nll.view(labels.shape[0], -1)


class TransfoXLOutput(ModelOutput):
    """transformers' field names; `logits` reads the LM's prediction_scores and `past_key_values` the mems, so
    generate() drives this model like any causal LM."""

    @property
    def logits(self):
        return self.get("logits", self.get("prediction_scores"))

    @property
    def past_key_values(self):
        return self.get("mems")


class TransfoXLPreTrainedModel(PreTrainedModel):
    """TransfoXLModel / TransfoXLLMHeadModel / TransfoXLForSequenceClassification (made by model_class)."""

    def build_base(self, config):
        return TransfoXLStack(config)

    def build_head(self, config):
        if self.task == "causal_lm":
            if setting(config, "sample_softmax") > 0:
                raise NotImplementedError("Transformer-XL with sample_softmax > 0 is not supported "
                                          "(transformers does not support it either)")
            return AdaptiveLogSoftmax(config)
        return super().build_head(config)

    def tied_weights(self) -> dict[str, str]:
        """The output clusters share the input tables (tie_word_embeddings) and, per tie_projs, their projections."""
        if self.task != "causal_lm":
            return {}
        ties, clusters = {}, self.head.clusters
        if self.config.get("tie_word_embeddings", True):
            ties.update({f"head.decoder.{i}.weight": f"model.embeddings.word.{i}.weight"
                         for i in range(len(self.head.decoder))})
        if clusters.projected:
            for i, tied in enumerate(tie_projs(self.config)[:len(self.head.projections)]):
                if tied:
                    ties[f"head.projections.{i}"] = f"model.embeddings.projections.{0 if clusters.div_val == 1 else i}"
        return ties

    def get_input_embeddings(self):
        return self.model.embeddings

    def init_mems(self, batch_size: int):
        return self.model.init_mems(batch_size)

    def forward(self, input_ids=None, mems=None, head_mask=None, inputs_embeds=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=True, attention_mask=None,
                past_key_values=None, use_cache=None):
        """Like transformers' TransfoXL forward; `past_key_values` is another name for `mems` (what generate()
        passes) and `attention_mask` is accepted only when it masks nothing: Transformer-XL has no padding."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("Transformer-XL cannot attend around padding (it takes no attention mask); "
                             "run sequences of different lengths one by one, or use equal lengths")
        outputs = self.model(
            input_ids, mems if mems is not None else past_key_values, head_mask, inputs_embeds,
            output_attentions=_flag(output_attentions, self.config.get("output_attentions")),
            output_hidden_states=_flag(output_hidden_states, self.config.get("output_hidden_states")))
        if self.task == "base":
            out = TransfoXLOutput(**outputs)
        elif self.task == "causal_lm":
            out = self._lm_output(outputs, labels)
        else:
            result = self.head(outputs, input_ids=input_ids)
            loss = compute_loss(self.task, self.config, result, labels) if labels is not None else None
            out = TransfoXLOutput(loss=loss, **result, **{k: v for k, v in outputs.items() if k != "last_hidden_state"})
        return out if return_dict else out.to_tuple()

    def _lm_output(self, outputs, labels):
        rest = {k: v for k, v in outputs.items() if k != "last_hidden_state"}
        log_probs = self.head(outputs.last_hidden_state)
        if labels is None:
            return TransfoXLOutput(prediction_scores=log_probs, **rest)
        if bool((labels[0, 1:] == -100).all()):  # as transformers: one real label keeps the loss finite
            labels = labels.clone()
            labels[0, 1] = self.config.eos_token_id
        losses = self.head.losses(log_probs, labels)
        # as transformers: no prediction scores when given labels (an empty tuple keeps the tuple positions)
        return TransfoXLOutput(losses=losses, prediction_scores=(), **rest, loss=losses[losses != 0].mean())

    def generate(self, *args, **kwargs):
        if self.model.mem_len <= 0:  # no memory to carry: every step re-reads the whole sequence
            kwargs["use_cache"] = False
        return super().generate(*args, **kwargs)

    @staticmethod
    def _reorder_cache(mems, beam_idx):
        """Beam search: keep the memory of the surviving beams (batch is dim 1 of each (M, B, d) memory)."""
        return [m.index_select(1, beam_idx.to(m.device)) for m in mems]


def _flag(value, default):
    return bool(default) if value is None else bool(value)
