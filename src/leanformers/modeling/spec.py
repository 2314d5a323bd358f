"""The declarative description of an architecture: its real axes of variation and its checkpoint names.

One `Spec` per architecture lives in `archs/<name>.py`. Everything else (layers, attention, stacks, heads, loading)
reads a Spec; nothing else is per-model. Keep this list short: add an axis only when two architectures need it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ClassifierSpec:
    """How a sequence-level head reads the sequence: which vector, then an optional dense + activation."""
    pool: str = "first"            # "pooler" (base model's pooler) | "first" token | "last" non-padding token | "eos"
    dense_act: str | None = None   # e.g. "tanh" (RoBERTa), "gelu" (ELECTRA), "relu" (DistilBERT); None = no dense
    bias: bool = True              # bias of the output projection (GPT-2 / Llama `score` has none)
    dropout_first: bool = True     # dropout on the pooled vector before the dense layer (DistilBERT: only after)


def dropout_rate(spec, config, role: str) -> float:
    """The dropout probability of `role` ("embedding", "attention", "hidden", "activation", "final", "classifier",
    "token_classifier", "qa"): the first of spec.dropout[role]'s config keys that is set (a number there is a fixed
    fallback); 0 when the architecture has none there. "token_classifier" falls back to "classifier"."""
    keys = spec.dropout.get(role, spec.dropout.get("classifier", ()) if role == "token_classifier" else ())
    for key in keys:
        value = key if isinstance(key, (int, float)) else config.get(key)
        if value is not None:
            return float(value)
    return 0.0


# dropout roles -> config keys of the BERT family and of the fairseq-style encoder-decoders (BART, Marian, ...)
BERT_DROPOUT = {"embedding": ("hidden_dropout_prob",), "attention": ("attention_probs_dropout_prob",),
                "hidden": ("hidden_dropout_prob",), "classifier": ("classifier_dropout", "hidden_dropout_prob")}
SEQ2SEQ_DROPOUT = {"embedding": ("dropout",), "attention": ("attention_dropout",), "hidden": ("dropout",),
                   "activation": ("activation_dropout",), "classifier": ("classifier_dropout",)}


@dataclass(frozen=True)
class Spec:
    model_type: str
    family: str                         # "encoder" | "decoder" | "encoder-decoder"
    base_prefix: str                    # checkpoint prefix of the base model inside head models ("bert", "transformer")
    renames: dict[str, str]             # checkpoint module path (base prefix stripped) -> ours; "{}" = a layer index
    head_renames: dict[str, str] = field(default_factory=dict)  # checkpoint path -> ours under "head."
    # task -> more head names, for checkpoint names that would collide across heads (RoBERTa's lm_head.dense and
    # classifier.dense both become head.dense): only a model of that task reads them; others report them unexpected
    task_head_renames: dict[str, dict[str, str]] = field(default_factory=dict)
    tasks: tuple[str, ...] = ("base",)  # heads this architecture has (see heads.TASKS)
    class_prefix: str = ""              # "Bert" -> BertModel, BertForMaskedLM, ... (the names users import)
    class_names: dict[str, str] = field(default_factory=dict)  # task -> a name that breaks the pattern
                                                                # (GPT2LMHeadModel)
    model_class: type | None = None     # a PreTrainedModel subclass, for families whose forward differs (seq2seq)

    # embeddings
    position: str | None = "learned"    # "learned" | "sinusoidal" | "rotary" | "relative" | None
    relative_bias: bool = False         # MPNet: T5's bucketed relative bias on top of learned positions
    position_offset: int = 0            # BART/OPT learned tables start at 2
    positions_from_padding: bool = False  # RoBERTa: positions count past padding_idx
    positions_from_mask: bool = False   # OPT: without position_ids, positions count the attention mask's real tokens
    token_types: bool | str = False      # True: a token-type table; "words": token types read the word embeddings,
                                        # only when given (GPT-2, OpenAI GPT, CTRL)
    embedding_scale: bool = False       # multiply word embeddings by sqrt(hidden)
    embedding_norm: bool = False
    padding_rows: tuple[str, ...] = ()  # embedding tables ("word", "position") whose pad_token_id row is zero and
                                        # gets no gradient (transformers' padding_idx)
    embedding_projection: str | None = None  # embed in embedding_size, then project: "always" (ALBERT) |
                                             # "if_sizes_differ" (ELECTRA: only when embedding_size != hidden_size)
    embeddings_class: type | None = None  # (spec, config) -> embeddings module, where Embeddings cannot express
                                          # them (DeBERTa: project before the norm, parts present by config)
    # blocks
    norm: str | Callable = "layer"      # "layer" | "layer_no_bias" | "rms" | "rms_offset" (Gemma: weight stored as
                                        # w - 1), or config -> one of them
    first_attention_norm: bool = True   # False: layer 0 has no attention norm (ModernBERT: the embeddings are normed)
    # flags below typed `bool | str | Callable` are fixed, or a config key (or config -> bool) that decides
    pre_norm: bool | str | Callable = False  # x + f(norm(x)) instead of norm(x + f(x)) (OPT: do_layer_norm_before)
    final_norm: bool | str | Callable = False
    hidden_states_normed: bool = True   # the last of output_hidden_states is after the final norm (ModernBERT: before)
    sandwich_norm: bool = False         # Gemma 2: a norm on the attention and MLP outputs too, before the residual
    parallel_residual: bool | str = False  # GPT-NeoX: x + attn(norm1(x)) + mlp(norm2(x)) (use_parallel_residual)
    fused_qkv: bool = False
    qkv_bias: bool | str = True         # a bias flag, or the config key that holds it (Llama: "attention_bias")
    out_bias: bool | str = True
    mlp_bias: bool | str = True
    gated_mlp: bool = False
    mlp_act: str | None = None          # an activation the architecture fixes (CTRL: relu); None = config.hidden_act
    act_names: dict[str, str] = field(default_factory=dict)  # config's activation name -> ours (OpenAI GPT's
                                                             # "gelu" is the tanh approximation)
    layer_windows: Callable | None = None  # config -> per-layer sliding-window size or None (Mistral, Qwen2); in an
                                           # encoder, keys within that distance either side (ModernBERT's local layers)
    layer_rope_theta: Callable | None = None  # config -> per-layer rotary base (ModernBERT: global vs local layers)
    attention_scale: bool | str = True  # T5 does not divide scores by sqrt(head_dim); a config key: scale by its
                                        # value ** -0.5 instead (Gemma 2: query_pre_attn_scalar)
    attention_softcap: str | None = None  # config key: scores -> cap * tanh(scores / cap) (Gemma 2)
    attention_class: type | None = None  # (config) -> self-attention module replacing Attention (DeBERTa's
                                         # disentangled attention); its `context` class, if any, is built once per
                                         # stack and its output passed to every layer as `relative`
    qk_norm: bool = False               # Qwen3: an RMSNorm over each head's queries and keys, before rotary
    shared_layers: bool = False         # ALBERT: num_hidden_groups groups of inner_group_num blocks, each group
                                        # reused for num_hidden_layers / num_hidden_groups consecutive depths
    pooler: bool = False                # dense + tanh over the first token (BERT, ALBERT)
    # heads
    mlm_act: str | None = None          # masked-LM transform activation; None = config.hidden_act
    classifier: ClassifierSpec = ClassifierSpec()
    multiple_choice: ClassifierSpec = ClassifierSpec(pool="pooler")
    tied_embeddings: bool = True        # output projection shares the word embeddings unless config says otherwise
    lm_bias: bool = False               # the causal LM's output projection has a bias (CTRL)
    logit_softcap: str | None = None    # config key: LM logits -> cap * tanh(logits / cap) (Gemma 2)
    prediction_head: bool = False       # ModernBERT: every task head is dense -> act -> norm, then its projection
    # loading
    transpose: tuple[str, ...] = ()     # our parameter names (templates) stored transposed (GPT-2's Conv1D)
    convert: Callable | None = None     # (state_dict, config) -> state_dict, for what renames cannot express;
                                        # fused.SplitRows has `.inverse` (ours -> the checkpoint's) for saving
    # training: dropout role -> config keys (see dropout_rate); roles left out have no dropout
    dropout: dict[str, tuple] = field(default_factory=dict)
    # fresh weights: (our parameter name, config) -> the std of its normal init where transformers' differs from
    # config.initializer_range (a norm's weight: the value it is filled with); None = the default (modeling/init.py)
    init_std: Callable | None = None
    # saving (the reverse of loading: transformers' checkpoint names and layout)
    unconvert: Callable | None = None   # the inverse of `convert`, on our names: (state_dict, config, task) ->
                                        # state_dict
    save_renames: Callable | None = None  # config -> renames to write in preference to the first listed, where
                                          # several checkpoint names map to one of ours (T5's wi / wi_1)
    unprefixed_tasks: tuple[str, ...] = ()  # head classes that hold the base modules at the top, not under
                                            # base_prefix (T5ForConditionalGeneration)
