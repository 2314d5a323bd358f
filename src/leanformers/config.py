"""Config: an attribute view of config.json. No torch here.

Unknown keys are kept as they are. Each model family names the same idea differently (GPT-2's `n_embd`, DistilBERT's
`dim`); ATTRIBUTE_MAPS lets code read the canonical name (`hidden_size`) on any config, as transformers does.
DEFAULTS fills in keys that old checkpoints omit because transformers' config classes supply them.
"""
from __future__ import annotations

import copy
import json
import os

from . import hub

# canonical name -> the name this model_type's config.json uses
ATTRIBUTE_MAPS: dict[str, dict[str, str]] = {
    "distilbert": {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
                   "intermediate_size": "hidden_dim", "hidden_act": "activation"},
    "gpt2": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer", "intermediate_size": "n_inner", "hidden_act": "activation_function",
             "layer_norm_eps": "layer_norm_epsilon"},
    "openai-gpt": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
                   "num_hidden_layers": "n_layer", "hidden_act": "afn", "layer_norm_eps": "layer_norm_epsilon"},
    "ctrl": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer", "intermediate_size": "dff", "layer_norm_eps": "layer_norm_epsilon"},
    **{t: {"layer_norm_eps": "rms_norm_eps"} for t in ("llama", "mistral", "qwen2")},
    **{t: {"layer_norm_eps": "rms_norm_eps"} for t in ("qwen3", "gemma", "phi3")},
    "gemma2": {"layer_norm_eps": "rms_norm_eps", "hidden_act": "hidden_activation"},
    "modernbert": {"layer_norm_eps": "norm_eps", "hidden_act": "hidden_activation"},
    "opt": {"intermediate_size": "ffn_dim", "hidden_act": "activation_function"},
    "gpt_neox": {"rope_theta": "rotary_emb_base", "partial_rotary_factor": "rotary_pct"},
    "transfo-xl": {"hidden_size": "d_model", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
                   "intermediate_size": "d_inner", "layer_norm_eps": "layer_norm_epsilon"},
    "t5": {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
           "intermediate_size": "d_ff", "layer_norm_eps": "layer_norm_epsilon", "hidden_act": "feed_forward_proj"},
    "mt5": {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
            "intermediate_size": "d_ff", "layer_norm_eps": "layer_norm_epsilon", "hidden_act": "feed_forward_proj"},
    **{t: {"hidden_size": "d_model", "num_attention_heads": "encoder_attention_heads",
           "num_hidden_layers": "encoder_layers", "intermediate_size": "encoder_ffn_dim",
           "hidden_act": "activation_function"}
       for t in ("bart", "mbart", "marian", "pegasus", "m2m_100", "prophetnet")},
}

# keys that transformers' config classes default when a config.json leaves them out
_BASE_DEFAULTS = {
    "tie_word_embeddings": True, "is_decoder": False, "is_encoder_decoder": False, "add_cross_attention": False,
    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None, "decoder_start_token_id": None,
    "output_hidden_states": False, "output_attentions": False, "problem_type": None, "torch_dtype": None,
    "architectures": None, "task_specific_params": None,
}
_BERT_LIKE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
              "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2,
              "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "pad_token_id": 0}
_SEQ2SEQ = {"vocab_size": 50265, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
            "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
            "decoder_ffn_dim": 4096, "activation_function": "gelu", "max_position_embeddings": 1024,
            "scale_embedding": False, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
            "is_encoder_decoder": True}
_T5 = {"d_model": 512, "d_kv": 64, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
       "layer_norm_epsilon": 1e-6, "pad_token_id": 0, "eos_token_id": 1, "is_encoder_decoder": True}
DEFAULTS: dict[str, dict] = {
    "bert": _BERT_LIKE,
    "roberta": {**_BERT_LIKE, "vocab_size": 50265, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "xlm-roberta": {**_BERT_LIKE, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "electra": {**_BERT_LIKE, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024,
                "embedding_size": 128, "summary_type": "first", "summary_activation": "gelu"},
    "albert": {**_BERT_LIKE, "vocab_size": 30000, "embedding_size": 128, "hidden_size": 4096,
               "num_attention_heads": 64, "intermediate_size": 16384, "hidden_act": "gelu_new",
               "num_hidden_groups": 1, "inner_group_num": 1, "layer_norm_eps": 1e-12, "classifier_dropout_prob": 0.1,
               "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3},
    "mpnet": {"vocab_size": 30527, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
              "intermediate_size": 3072, "hidden_act": "gelu", "max_position_embeddings": 512,
              "layer_norm_eps": 1e-12, "relative_attention_num_buckets": 32, "pad_token_id": 1, "bos_token_id": 0,
              "eos_token_id": 2},
    "deberta-v2": {"vocab_size": 128100, "hidden_size": 1536, "num_hidden_layers": 24, "num_attention_heads": 24,
                   "intermediate_size": 6144, "hidden_act": "gelu", "max_position_embeddings": 512,
                   "type_vocab_size": 0, "layer_norm_eps": 1e-7, "relative_attention": False,
                   "max_relative_positions": -1, "pad_token_id": 0, "position_biased_input": True,
                   "pos_att_type": None, "pooler_dropout": 0, "pooler_hidden_act": "gelu", "legacy": True},
    "modernbert": {"vocab_size": 50368, "hidden_size": 768, "intermediate_size": 1152, "num_hidden_layers": 22,
                   "num_attention_heads": 12, "hidden_activation": "gelu", "max_position_embeddings": 8192,
                   "norm_eps": 1e-5, "norm_bias": False, "pad_token_id": 50283, "eos_token_id": 50282,
                   "bos_token_id": 50281, "cls_token_id": 50281, "sep_token_id": 50282, "global_rope_theta": 160000.0,
                   "attention_bias": False, "global_attn_every_n_layers": 3, "local_attention": 128,
                   "local_rope_theta": 10000.0, "mlp_bias": False, "decoder_bias": True, "classifier_pooling": "cls",
                   "classifier_bias": False, "classifier_activation": "gelu", "sparse_prediction": False},
    "distilbert": {"vocab_size": 30522, "max_position_embeddings": 512, "sinusoidal_pos_embds": False,
                   "n_layers": 6, "n_heads": 12, "dim": 768, "hidden_dim": 3072, "activation": "gelu",
                   "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2,
                   "layer_norm_eps": 1e-12},  # not a DistilBertConfig key: transformers hard-codes it
    # Llama-family config classes (their keys a hand-written config.json may leave out)
    **{t: {"hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None,
           "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "use_cache": True}
       for t in ("llama", "mistral", "qwen2")},
    # decoders added with issue 13: transformers' config-class defaults
    "qwen3": {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128, "hidden_act": "silu",
              "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "use_cache": True,
              "tie_word_embeddings": False, "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
              "use_sliding_window": False, "max_window_layers": 28},  # sliding_window, layer_types: derived
    "gemma": {"vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
              "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
              "hidden_act": "gelu_pytorch_tanh", "hidden_activation": None, "max_position_embeddings": 8192,
              "rms_norm_eps": 1e-6, "use_cache": True, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
              "tie_word_embeddings": True, "rope_theta": 10000.0, "attention_bias": False},
    "gemma2": {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
               "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
               "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
               "use_cache": True, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
               "tie_word_embeddings": True, "rope_theta": 10000.0, "attention_bias": False,
               "query_pre_attn_scalar": 256, "sliding_window": 4096,  # layer_types: derived (alternating)
               "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0},
    "phi3": {"vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
             "num_attention_heads": 32, "hidden_act": "silu",  # num_key_value_heads: num_attention_heads
             "max_position_embeddings": 4096, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
             "use_cache": True, "tie_word_embeddings": False, "rope_theta": 10000.0, "rope_scaling": None,
             "partial_rotary_factor": 1.0, "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000,
             "sliding_window": None},
    "opt": {"vocab_size": 50272, "hidden_size": 768, "num_hidden_layers": 12, "ffn_dim": 3072,
            "max_position_embeddings": 2048, "do_layer_norm_before": True, "_remove_final_layer_norm": False,
            "num_attention_heads": 12, "activation_function": "relu",  # word_embed_proj_dim: hidden_size
            "use_cache": True, "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 2, "enable_bias": True,
            "layer_norm_elementwise_affine": True,
            "layer_norm_eps": 1e-5},  # not an OPTConfig key: its nn.LayerNorm default
    "gpt_neox": {"vocab_size": 50432, "hidden_size": 6144, "num_hidden_layers": 44, "num_attention_heads": 64,
                 "intermediate_size": 24576, "hidden_act": "gelu", "rotary_pct": 0.25, "rotary_emb_base": 10000,
                 "max_position_embeddings": 2048, "layer_norm_eps": 1e-5, "use_cache": True, "bos_token_id": 0,
                 "eos_token_id": 2, "tie_word_embeddings": False, "use_parallel_residual": True,
                 "rope_scaling": None, "attention_bias": True},
    # encoder-decoder config classes: sizes, and the token ids generation reads (forced_eos_token_id, ...)
    "bart": {**_SEQ2SEQ, "decoder_start_token_id": 2, "forced_eos_token_id": 2},
    "mbart": {**_SEQ2SEQ, "forced_eos_token_id": 2},
    "marian": {**_SEQ2SEQ, "vocab_size": 58101, "decoder_vocab_size": 58101, "bos_token_id": None,
               "pad_token_id": 58100, "eos_token_id": 0, "decoder_start_token_id": 58100, "forced_eos_token_id": 0,
               "share_encoder_decoder_embeddings": True},
    "pegasus": {**_SEQ2SEQ, "bos_token_id": None, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
                "forced_eos_token_id": 1},
    "m2m_100": {**_SEQ2SEQ, "vocab_size": 128112, "activation_function": "relu", "scale_embedding": True,
                "decoder_start_token_id": 2},
    "t5": {**_T5, "vocab_size": 32128, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8,
           "feed_forward_proj": "relu", "tie_word_embeddings": True},
    "mt5": {**_T5, "vocab_size": 250112, "d_ff": 1024, "num_layers": 8, "num_decoder_layers": 8, "num_heads": 6,
            "feed_forward_proj": "gated-gelu", "decoder_start_token_id": 0, "tie_word_embeddings": False},
    "gpt2": {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
             "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "bos_token_id": 50256,
             "eos_token_id": 50256, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False},
    "openai-gpt": {"vocab_size": 40478, "n_positions": 512, "n_embd": 768, "n_layer": 12, "n_head": 12, "afn": "gelu",
                   "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5,
                   "initializer_range": 0.02, "summary_type": "cls_index", "summary_use_proj": True,
                   "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True},
    "ctrl": {"vocab_size": 246534, "n_positions": 256, "n_embd": 1280, "n_layer": 48, "n_head": 16, "dff": 8192,
             "resid_pdrop": 0.1, "embd_pdrop": 0.1, "layer_norm_epsilon": 1e-6, "initializer_range": 0.02,
             "use_cache": True},
    "transfo-xl": {"vocab_size": 267735, "cutoffs": [20000, 40000, 200000], "tie_projs": [False, True, True, True],
                   "d_model": 1024, "d_embed": 1024, "d_head": 64, "d_inner": 4096, "div_val": 4, "pre_lnorm": False,
                   "n_layer": 18, "n_head": 16, "mem_len": 1600, "same_length": True, "attn_type": 0,
                   "clamp_len": 1000, "sample_softmax": -1, "adaptive": True, "dropout": 0.1, "dropatt": 0.0,
                   "untie_r": True, "init": "normal", "init_range": 0.01, "proj_init_std": 0.01, "init_std": 0.02,
                   "layer_norm_epsilon": 1e-5, "eos_token_id": 0},
    **{t: {"vocab_size": 30522, "hidden_size": 1024, "encoder_ffn_dim": 4096, "num_encoder_layers": 12,
           "num_encoder_attention_heads": 16, "decoder_ffn_dim": 4096, "num_decoder_layers": 12,
           "num_decoder_attention_heads": 16, "max_position_embeddings": 512, "init_std": 0.02,
           "activation_function": "gelu", "ngram": 2, "num_buckets": 32, "relative_max_distance": 128,
           "disable_ngram_loss": False, "eps": 0.0, "attention_dropout": 0.1, "activation_dropout": 0.1,
           "dropout": 0.1, "use_cache": True, "is_encoder_decoder": True, "add_cross_attention": True,
           "bos_token_id": 1, "pad_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 0}
       for t in ("prophetnet", "xlm-prophetnet")},
}


# the rest of transformers' config-class defaults: dropout and initialisation (what training reads), so that a
# config built here (BertConfig()) is transformers' and a saved config.json says the same
_BERT_TRAINING = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
                  "use_cache": True, "classifier_dropout": None}
_GPT_TRAINING = {"resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02}
_GPT_SUMMARY = {"summary_type": "cls_index", "summary_use_proj": True, "summary_activation": None,
                "summary_first_dropout": 0.1, "summary_proj_to_labels": True}
_LLAMA_TRAINING = {"initializer_range": 0.02, "attention_dropout": 0.0}
_SEQ2SEQ_TRAINING = {"dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0, "init_std": 0.02,
                     "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0, "use_cache": True}
_T5_TRAINING = {"dropout_rate": 0.1, "classifier_dropout": 0.0, "initializer_factor": 1.0, "use_cache": True}
TRAINING_DEFAULTS: dict[str, dict] = {
    "bert": _BERT_TRAINING, "roberta": _BERT_TRAINING, "xlm-roberta": _BERT_TRAINING,
    "electra": {**_BERT_TRAINING, "summary_use_proj": True, "summary_last_dropout": 0.1},
    "albert": {"hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0, "initializer_range": 0.02,
               "position_embedding_type": "absolute", "classifier_dropout_prob": 0.1},
    "distilbert": {"dropout": 0.1, "attention_dropout": 0.1, "initializer_range": 0.02},
    "gpt2": {**_GPT_TRAINING, **_GPT_SUMMARY, "use_cache": True, "reorder_and_upcast_attn": False},
    "openai-gpt": {"vocab_size": 40478, "n_positions": 512, "n_embd": 768, "n_layer": 12, "n_head": 12, "afn": "gelu",
                   "layer_norm_epsilon": 1e-5, **_GPT_TRAINING, **_GPT_SUMMARY},
    "ctrl": {"vocab_size": 246534, "n_positions": 256, "n_embd": 1280, "n_layer": 48, "n_head": 16, "dff": 8192,
             "resid_pdrop": 0.1, "embd_pdrop": 0.1, "layer_norm_epsilon": 1e-6, "initializer_range": 0.02,
             "use_cache": True},
    "llama": {"vocab_size": 32000, "max_position_embeddings": 2048, "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32, "pretraining_tp": 1, "bos_token_id": 1,
              "eos_token_id": 2, **_LLAMA_TRAINING},
    "mistral": {"vocab_size": 32000, "max_position_embeddings": 131072, "hidden_size": 4096,
                "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "bos_token_id": 1, "eos_token_id": 2, **_LLAMA_TRAINING},
    "qwen2": {"vocab_size": 151936, "max_position_embeddings": 32768, "hidden_size": 4096, "intermediate_size": 22016,
              "num_hidden_layers": 32, "num_attention_heads": 32, "use_sliding_window": False,
              "max_window_layers": 28, **_LLAMA_TRAINING},
    "transfo-xl": {"vocab_size": 267735, "cutoffs": [20000, 40000, 200000], "d_model": 1024, "d_embed": 1024,
                   "d_head": 64, "d_inner": 4096, "div_val": 4, "pre_lnorm": False, "n_layer": 18, "n_head": 16,
                   "mem_len": 1600, "same_length": True, "attn_type": 0, "clamp_len": 1000, "sample_softmax": -1,
                   "untie_r": True, "layer_norm_epsilon": 1e-5, "eos_token_id": 0, "dropout": 0.1, "dropatt": 0.0,
                   "init": "normal", "init_range": 0.01, "proj_init_std": 0.01, "init_std": 0.02, "adaptive": True},
    "bart": {**_SEQ2SEQ_TRAINING, "classifier_dropout": 0.0, "num_hidden_layers": 12, "num_labels": 3},
    "mbart": {**_SEQ2SEQ_TRAINING, "classifier_dropout": 0.0, "num_hidden_layers": 12},
    "marian": {**_SEQ2SEQ_TRAINING, "num_hidden_layers": 12},
    "pegasus": {**_SEQ2SEQ_TRAINING, "num_hidden_layers": 12},
    "m2m_100": {**_SEQ2SEQ_TRAINING, "attention_dropout": 0.1, "encoder_layerdrop": 0.05, "decoder_layerdrop": 0.05,
                "num_hidden_layers": 12},
    "t5": {**_T5_TRAINING, "dense_act_fn": "relu", "is_gated_act": False},
    "mt5": {**_T5_TRAINING, "dense_act_fn": "gelu_new", "is_gated_act": True, "tokenizer_class": "T5Tokenizer"},
    "prophetnet": {"vocab_size": 30522, "hidden_size": 1024, "encoder_ffn_dim": 4096, "num_encoder_layers": 12,
                   "num_encoder_attention_heads": 16, "decoder_ffn_dim": 4096, "num_decoder_layers": 12,
                   "num_decoder_attention_heads": 16, "max_position_embeddings": 512, "init_std": 0.02,
                   "activation_function": "gelu", "ngram": 2, "num_buckets": 32, "relative_max_distance": 128,
                   "disable_ngram_loss": False, "eps": 0.0, "attention_dropout": 0.1, "activation_dropout": 0.1,
                   "dropout": 0.1, "use_cache": True, "is_encoder_decoder": True, "add_cross_attention": True,
                   "bos_token_id": 1, "pad_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 0},
}
for _model_type, _defaults in TRAINING_DEFAULTS.items():
    DEFAULTS[_model_type] = {**_defaults, **DEFAULTS.get(_model_type, {})}


class Config:
    """config.json as attributes. `config.hidden_size` works whatever the checkpoint calls it."""

    def __init__(self, **kwargs):
        model_type = kwargs.get("model_type")
        d = dict(_BASE_DEFAULTS)
        d.update(DEFAULTS.get(model_type, {}))
        d.update(kwargs)
        num_labels = d.pop("num_labels", None)
        if "num_labels" not in kwargs and kwargs.get("id2label"):  # a class default must not replace given labels
            num_labels = None
        self.__dict__["_attribute_map"] = ATTRIBUTE_MAPS.get(model_type, {})
        self.__dict__.update(d)
        self._normalise_labels(num_labels)

    def _normalise_labels(self, num_labels=None):
        id2label = self.__dict__.get("id2label")
        if num_labels is not None and (id2label is None or len(id2label) != num_labels):
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        if id2label is None:
            id2label = {0: "LABEL_0", 1: "LABEL_1"}
        id2label = {int(k): v for k, v in id2label.items()}
        self.__dict__["id2label"] = id2label
        label2id = self.__dict__.get("label2id")
        if not label2id or set(label2id.values()) != set(id2label) or len(label2id) != len(id2label):
            label2id = {v: k for k, v in id2label.items()}
        self.__dict__["label2id"] = {k: int(v) for k, v in label2id.items()}

    # ---- attribute access with aliases
    def __getattr__(self, name):  # only called when normal lookup fails
        amap = object.__getattribute__(self, "_attribute_map")
        if name in amap:
            return getattr(self, amap[name])
        if name == "num_labels":
            return len(self.id2label)
        raise AttributeError(f"{self.__dict__.get('model_type') or 'this'} config has no attribute {name!r}")

    def __setattr__(self, name, value):
        name = self._attribute_map.get(name, name)
        if name == "num_labels":
            self._normalise_labels(int(value))
            return
        self.__dict__[name] = value
        if name == "id2label":
            self.__dict__.pop("label2id", None)
            self._normalise_labels()

    def get(self, name, default=None):
        try:
            value = getattr(self, name)
        except AttributeError:
            return default
        return default if value is None else value

    def __contains__(self, name):
        return name in self.__dict__ or name in self._attribute_map

    def __eq__(self, other):
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"{self.__class__.__name__} {self.to_json_string()}"

    # ---- (de)serialisation
    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "Config":
        d = copy.deepcopy(d)
        d.update(overrides)
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}

    def to_json_string(self) -> str:
        d = self.to_dict()
        d["id2label"] = {str(k): v for k, v in d["id2label"].items()}
        return json.dumps(d, indent=2, sort_keys=True, default=str)

    def save_pretrained(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
            f.write(self.to_json_string() + "\n")

    @classmethod
    def from_pretrained(cls, name_or_path, *, revision=None, cache_dir=None, token=None, local_files_only=False,
                        subfolder="", **overrides) -> "Config":
        if isinstance(name_or_path, Config):
            return name_or_path
        d = hub.load_json(name_or_path, "config.json", revision=revision, cache_dir=cache_dir, token=token,
                          local_files_only=local_files_only, subfolder=subfolder)
        if not isinstance(d, dict):
            raise ValueError(f"config.json of {name_or_path!r} is not a JSON object")
        check_sizes(d, f"config.json of {os.fspath(name_or_path)!r}")
        config = cls.from_dict(d, **overrides)
        object.__setattr__(config, "_name_or_path", os.fspath(name_or_path))
        return config


# sizes a model is built from (under any family's name): a count that must be a whole number >= 1, or >= 0 for the
# ones a model may legitimately have none of
_POSITIVE_SIZES = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size", "max_position_embeddings",
                   "num_key_value_heads", "head_dim", "embedding_size", "d_kv", "decoder_attention_heads",
                   "encoder_ffn_dim", "decoder_ffn_dim", "num_labels")
_COUNTS = ("num_hidden_layers", "decoder_layers", "num_decoder_layers", "type_vocab_size")


def check_sizes(d: dict, source: str) -> None:
    """Refuse sizes no model can be built from (negative, zero heads, text, heads that do not divide the width)
    with an error naming the key, before torch meets them as a negative dimension or a division by zero."""
    aliases = {raw: canonical for canonical, raw in ATTRIBUTE_MAPS.get(d.get("model_type"), {}).items()}
    sizes = {}  # canonical name -> value
    for key, value in d.items():
        canonical = aliases.get(key, key)
        if canonical not in _POSITIVE_SIZES + _COUNTS or value is None:
            continue
        low = 0 if canonical in _COUNTS else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{source}: {key!r} must be a whole number >= {low}, not {value!r}")
        sizes[canonical] = value
    hidden, heads, kv_heads = (sizes.get(k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads"))
    if hidden and heads and not {"head_dim", "d_kv", "d_head"} & set(d) and hidden % heads:
        raise ValueError(f"{source}: hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})")
    if heads and kv_heads and heads % kv_heads:
        raise ValueError(f"{source}: num_attention_heads ({heads}) is not a multiple of num_key_value_heads "
                         f"({kv_heads})")


# what every transformers PretrainedConfig has, whatever its config.json holds: from_pretrained(key=value) sets these
PRETRAINED_CONFIG_ATTRIBUTES = frozenset(
    "add_cross_attention architectures bad_words_ids begin_suppress_tokens bos_token_id chunk_size_feed_forward "
    "cross_attention_hidden_size decoder_start_token_id diversity_penalty do_sample dtype early_stopping "
    "encoder_no_repeat_ngram_size eos_token_id exponential_decay_length_penalty finetuning_task forced_bos_token_id "
    "forced_eos_token_id id2label is_decoder is_encoder_decoder label2id length_penalty max_length min_length "
    "no_repeat_ngram_size num_beam_groups num_beams num_return_sequences output_hidden_states output_scores "
    "pad_token_id prefix problem_type pruned_heads remove_invalid_values repetition_penalty return_dict "
    "return_dict_in_generate sep_token_id suppress_tokens task_specific_params temperature tf_legacy_loss "
    "tie_encoder_decoder tie_word_embeddings tokenizer_class top_k top_p torchscript transformers_version typical_p "
    "use_bfloat16 name_or_path num_labels output_attentions torch_dtype use_return_dict".split())
# transformers' from_pretrained options that only steer downloading, placement or other frameworks: accepted, unused
LOADING_ONLY_KWARGS = frozenset(
    "force_download resume_download proxies use_auth_token from_tf from_flax low_cpu_mem_usage max_memory "
    "offload_folder offload_state_dict offload_buffers use_safetensors weights_only variant adapter_kwargs "
    "adapter_name tp_plan tp_size device_mesh key_mapping use_kernels distributed_config code_revision "
    "_from_pipeline _from_auto _commit_hash _fast_init mirror".split())


def apply_model_kwargs(config: "Config", kwargs: dict, owner: str) -> "Config":
    """transformers' rule for from_pretrained(**kwargs): a key the config has (its config.json keys, its family's
    aliases, PretrainedConfig's own attributes) is set on the config; any other key reaches the model's __init__,
    which raises TypeError. Loading-only options are accepted and ignored."""
    kwargs = {key: value for key, value in kwargs.items() if key not in LOADING_ONLY_KWARGS}
    for key in kwargs:
        if key not in config and key not in PRETRAINED_CONFIG_ATTRIBUTES:
            raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {key!r}")
    return Config.from_dict(config.to_dict(), **kwargs) if kwargs else config


class AutoConfig:
    """`AutoConfig.from_pretrained(name_or_path)` as in transformers; one Config class serves every model_type."""

    from_pretrained = Config.from_pretrained
    from_dict = Config.from_dict

    @staticmethod
    def for_model(model_type: str, **kwargs) -> Config:
        return Config(model_type=model_type, **kwargs)


# transformers' config class names -> model_type: `BertConfig(num_labels=3)` is Config(model_type="bert", ...) with
# transformers' defaults for that architecture (DEFAULTS above)
CONFIG_CLASSES = {
    "BertConfig": "bert", "DistilBertConfig": "distilbert", "RobertaConfig": "roberta",
    "XLMRobertaConfig": "xlm-roberta", "AlbertConfig": "albert", "ElectraConfig": "electra", "GPT2Config": "gpt2",
    "OpenAIGPTConfig": "openai-gpt", "CTRLConfig": "ctrl", "LlamaConfig": "llama", "MistralConfig": "mistral",
    "Qwen2Config": "qwen2", "TransfoXLConfig": "transfo-xl", "BartConfig": "bart", "MBartConfig": "mbart",
    "MarianConfig": "marian", "PegasusConfig": "pegasus", "M2M100Config": "m2m_100", "T5Config": "t5",
    "MT5Config": "mt5", "ProphetNetConfig": "prophetnet", "EncoderDecoderConfig": "encoder-decoder",
}


def _config_class(name: str, model_type: str) -> type:
    def __init__(self, **kwargs):
        kwargs.setdefault("model_type", model_type)
        if kwargs["model_type"] != model_type:
            raise ValueError(f"{name} is for model_type {model_type!r}; got model_type={kwargs['model_type']!r}")
        Config.__init__(self, **kwargs)

    doc = f"""The {model_type} config with transformers' {name} defaults; any key may be given (`num_labels=3`)."""
    return type(name, (Config,), {"__init__": __init__, "__doc__": doc, "model_type": model_type})


globals().update({name: _config_class(name, model_type) for name, model_type in CONFIG_CLASSES.items()})


def _from_encoder_decoder_configs(cls, encoder_config, decoder_config, **kwargs) -> Config:
    """EncoderDecoderConfig from two configs; the decoder's is marked is_decoder with cross-attention, as there."""
    decoder = {**decoder_config.to_dict(), "is_decoder": True, "add_cross_attention": True}
    return cls(encoder=encoder_config.to_dict(), decoder=decoder, is_encoder_decoder=True, **kwargs)


EncoderDecoderConfig.from_encoder_decoder_configs = classmethod(_from_encoder_decoder_configs)  # noqa: F821
