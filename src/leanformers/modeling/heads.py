"""Task heads on top of a base stack. Each takes the base model's output and returns a dict of logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import activation, dropout, norm, norm_kind
from .spec import dropout_rate

# task -> the class-name suffix transformers uses (archs may override per task in Spec.class_names)
TASKS = {
    "base": "Model",
    "masked_lm": "ForMaskedLM",
    "sequence_classification": "ForSequenceClassification",
    "token_classification": "ForTokenClassification",
    "question_answering": "ForQuestionAnswering",
    "multiple_choice": "ForMultipleChoice",
    "pretraining": "ForPreTraining",  # ELECTRA's discriminator (replaced-token detection)
    "causal_lm": "ForCausalLM",
    "seq2seq_lm": "ForConditionalGeneration",
    "encoder": "EncoderModel",  # an encoder-decoder's encoder alone (T5EncoderModel)
}


def embedding_size(spec, config):
    return config.get("embedding_size", config.hidden_size) if spec.embedding_projection else config.hidden_size


class MaskedLMHead(nn.Module):
    """dense -> act -> norm -> vocabulary projection (tied to the word embeddings) + bias."""

    def __init__(self, spec, config):
        super().__init__()
        size = embedding_size(spec, config)
        self.dense = nn.Linear(config.hidden_size, size)
        self.act = activation(spec.mlm_act or config.hidden_act)
        self.norm = norm(norm_kind(spec, config), size, config.layer_norm_eps)
        self.decoder = nn.Linear(size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, outputs, **inputs):
        x = self.norm(self.act(self.dense(outputs.last_hidden_state)))
        return {"logits": self.decoder(x) + self.bias}


class ClassificationHead(nn.Module):
    """One vector per sequence (pooler / first / last non-padding / last eos token) -> [dense -> act] -> out."""

    def __init__(self, classifier, config, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        hidden = config.hidden_size
        self.dropout, self.dropout_first = dropout, classifier.dropout_first  # before the dense and before out
        self.pool = classifier.pool
        # position 0 is all it reads (directly or through the pooler): the stack may skip the other rows at the end
        self.reads_first_only = classifier.pool in ("first", "pooler")
        self.dense = nn.Linear(hidden, hidden) if classifier.dense_act else None
        self.act = activation(classifier.dense_act) if classifier.dense_act else None
        self.out = nn.Linear(hidden, num_outputs, bias=classifier.bias)
        self.pad_token_id, self.eos_token_id = config.get("pad_token_id"), config.get("eos_token_id")

    def pooled(self, outputs, input_ids):
        hidden = outputs.last_hidden_state
        if self.pool == "pooler":
            return outputs.pooler_output
        if self.pool == "first":
            return hidden[:, 0]
        if self.pool == "last":  # GPT-2 / Llama: the last token that is not padding
            if self.pad_token_id is None or input_ids is None:
                if hidden.shape[0] > 1:
                    raise ValueError("a batch of several sequences needs config.pad_token_id to find their last tokens")
                return hidden[:, -1]
            positions = torch.arange(input_ids.shape[-1], device=hidden.device)
            last = (positions * input_ids.ne(self.pad_token_id)).argmax(-1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if self.pool == "eos":  # BART: the last end-of-sequence token
            eos = input_ids.eq(self.eos_token_id)
            if len(set(eos.sum(1).tolist())) > 1:
                raise ValueError("all examples must have the same number of <eos> tokens")
            return hidden[eos].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1]
        raise ValueError(f"unknown pooling {self.pool!r}")

    def forward(self, outputs, input_ids=None, **inputs):
        x = self.pooled(outputs, input_ids)
        if self.dense is not None:
            if self.dropout_first:
                x = dropout(x, self.dropout, self.training)
            x = self.act(self.dense(x))
        return {"logits": self.out(dropout(x, self.dropout, self.training))}


class TokenClassificationHead(nn.Module):
    def __init__(self, config, dropout: float = 0.0):
        super().__init__()
        self.out = nn.Linear(config.hidden_size, config.num_labels)
        self.dropout = dropout

    def forward(self, outputs, **inputs):
        return {"logits": self.out(dropout(outputs.last_hidden_state, self.dropout, self.training))}


class QuestionAnsweringHead(nn.Module):
    def __init__(self, config, dropout: float = 0.0):
        super().__init__()
        self.out = nn.Linear(config.hidden_size, 2)
        self.dropout = dropout  # DistilBERT's qa_dropout; most architectures have none here

    def forward(self, outputs, **inputs):
        hidden = dropout(outputs.last_hidden_state, self.dropout, self.training)
        start, end = self.out(hidden).split(1, dim=-1)
        return {"start_logits": start.squeeze(-1).contiguous(), "end_logits": end.squeeze(-1).contiguous()}


class ReplacedTokenHead(nn.Module):
    """ELECTRA's discriminator: per token dense -> act -> one logit, "was this token replaced by the generator?"."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.out = nn.Linear(config.hidden_size, 1)

    def forward(self, outputs, **inputs):
        return {"logits": self.out(self.act(self.dense(outputs.last_hidden_state))).squeeze(-1)}


class LMHead(nn.Module):
    """Hidden states -> vocabulary logits (causal and seq2seq LMs); tied to the word embeddings when the config says
    so."""

    def __init__(self, config, bias: bool = False, logits_bias: bool = False, softcap: float | None = None):
        super().__init__()
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=bias)
        self.final_logits_bias = nn.Parameter(torch.zeros(1, config.vocab_size)) if logits_bias else None
        self.softcap = softcap  # Gemma 2: logits -> softcap * tanh(logits / softcap)

    def forward(self, outputs, **inputs):
        logits = self.decoder(outputs.last_hidden_state)
        if self.final_logits_bias is not None:  # in place under no_grad: no second (rows, vocab) tensor
            bias = self.final_logits_bias
            logits = logits + bias if torch.is_grad_enabled() else logits.add_(bias)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return {"logits": logits}


class PredictionHead(nn.Module):
    """ModernBERT's heads: [pool: cls / first real token / masked mean] -> dense -> act -> norm -> projection (the
    vocabulary for masked LM, tied to the word embeddings; labels; 2 QA logits; 1 choice score)."""

    def __init__(self, task, spec, config):
        super().__init__()
        hidden = config.hidden_size
        self.task, self.pool = task, config.get("classifier_pooling", "cls")
        self.dense = nn.Linear(hidden, hidden, bias=config.get("classifier_bias", False))
        self.act = activation(config.get("classifier_activation", "gelu"))
        self.norm = norm(norm_kind(spec, config), hidden, config.layer_norm_eps)
        if task == "masked_lm":
            self.decoder = nn.Linear(hidden, config.vocab_size, bias=config.get("decoder_bias", True))
        else:
            self.out = nn.Linear(hidden, 1 if task == "multiple_choice" else config.num_labels)

    def forward(self, outputs, attention_mask=None, **inputs):
        x = outputs.last_hidden_state
        if self.task in ("sequence_classification", "multiple_choice"):
            x = self._pooled(x, attention_mask)
        x = self.norm(self.act(self.dense(x)))
        if self.task == "masked_lm":
            return {"logits": self.decoder(x)}
        logits = self.out(x)
        if self.task == "question_answering":
            start, end = logits.split(1, dim=-1)
            return {"start_logits": start.squeeze(-1).contiguous(), "end_logits": end.squeeze(-1).contiguous()}
        return {"logits": logits}

    def _pooled(self, x, attention_mask):
        if self.pool == "mean":
            mask = attention_mask.to(x.dtype)[..., None] if attention_mask is not None else torch.ones_like(x[..., :1])
            return (x * mask).sum(1) / mask.sum(1)
        if self.task == "multiple_choice" and attention_mask is not None:  # the first real token, either padding side
            return x[torch.arange(x.shape[0], device=x.device), attention_mask.argmax(-1)]
        return x[:, 0]


def build_head(task, spec, config):
    if task == "base":
        return None
    if spec.prediction_head:
        return PredictionHead(task, spec, config)
    if task == "masked_lm":
        return MaskedLMHead(spec, config)
    if task == "sequence_classification":
        return ClassificationHead(spec.classifier, config, config.num_labels, dropout_rate(spec, config, "classifier"))
    if task == "multiple_choice":
        return ClassificationHead(spec.multiple_choice, config, 1, dropout_rate(spec, config, "classifier"))
    if task == "token_classification":
        return TokenClassificationHead(config, dropout_rate(spec, config, "token_classifier"))
    if task == "question_answering":
        return QuestionAnsweringHead(config, dropout_rate(spec, config, "qa"))
    if task == "pretraining":
        return ReplacedTokenHead(config)
    if task in ("causal_lm", "seq2seq_lm"):
        return LMHead(config, bias=spec.lm_bias,
                      softcap=config.get(spec.logit_softcap) if spec.logit_softcap else None)
    raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")


def compute_loss(task, config, result, labels, attention_mask=None):
    """The training loss transformers returns when labels are given (problem_type picks it for classification)."""
    logits = result.get("logits")
    if task == "pretraining":  # binary per token, over the real (unpadded) tokens only
        keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(labels, dtype=torch.bool)
        return F.binary_cross_entropy_with_logits(logits[keep], labels[keep].to(logits.dtype))
    if task == "sequence_classification":
        problem = config.problem_type or (
            "regression" if config.num_labels == 1 else
            "single_label_classification" if labels.dtype in (torch.long, torch.int) else "multi_label_classification")
        if problem == "regression":
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype)) if config.num_labels == 1 \
                else F.mse_loss(logits, labels.to(logits.dtype))
        if problem == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    if task == "question_answering":
        start, end = labels
        length = result["start_logits"].shape[1]
        start, end = start.clamp(0, length), end.clamp(0, length)
        loss = F.cross_entropy(result["start_logits"], start, ignore_index=length)
        return (loss + F.cross_entropy(result["end_logits"], end, ignore_index=length)) / 2
    if task == "causal_lm":  # predict token t+1 from tokens <= t
        logits, labels = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
