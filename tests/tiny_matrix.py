"""Every architecture x head as a tiny random oracle model, with a batch and labels for it: the matrix the training
and saving tests run (the configs are the parity tests' own: test_encoders, test_decoders, test_seq2seq,
test_encoder_decoder, test_prophetnet, test_transfo_xl)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import transformers

import test_decoders
import test_encoder_decoder
import test_encoders
import test_prophetnet
import test_seq2seq
import test_transfo_xl
from oracle import assert_close, random_inputs


@dataclass
class Case:
    family: str           # "encoder" | "decoder" | "seq2seq" | "pair" | "prophetnet" | "transfo-xl"
    head: str             # transformers' class-name suffix: "Model", "ForMaskedLM", "LMHeadModel", ...
    class_name: str       # the same name in leanformers and transformers
    make: Callable        # () -> the oracle model, seeded, in eval mode


def _seeded(build):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build().eval()


def _encoder_cases():
    cases = {}
    for arch, (prefix, make_config) in test_encoders.TINY.items():
        for head in test_encoders.HEADS + (["ForPreTraining"] if arch == "electra" else []):
            def make(make_config=make_config, name=prefix + head, head=head):
                config = make_config()
                if head == "ForQuestionAnswering":
                    config.num_labels = 2
                return _seeded(lambda: getattr(transformers, name)(config))
            cases[f"{arch}-{head}"] = Case("encoder", head, prefix + head, make)
    return cases


def _decoder_cases():
    cases = {}
    for case in test_decoders.ARCHITECTURES:
        prefix, lm, make_config = test_decoders.TINY[case]
        for key in test_decoders.HAS.get(case, test_decoders.HEADS):
            head = test_decoders.HEADS[key] or lm
            def make(make_config=make_config, name=prefix + head):
                config = make_config()
                config.num_labels = 3
                return _seeded(lambda: getattr(transformers, name)(config))
            cases[f"{case}-{head}"] = Case("decoder", head, prefix + head, make)
    return cases


def _seq2seq_cases():
    cases = {}
    for case in test_seq2seq.TINY:
        for key in test_seq2seq.HAS.get(case, ("lm", "base")):
            name = test_seq2seq._class_name(case, key)
            head = test_seq2seq.HEADS[key] or test_seq2seq.TINY[case][1]
            cases[f"{case}-{head}"] = Case("seq2seq", head, name,
                                           lambda case=case, key=key: test_seq2seq._oracle(case, key))
    return cases


def _pair_cases():
    return {f"pair-{case}": Case("pair", "EncoderDecoderModel", "EncoderDecoderModel", lambda case=case: _seeded(
        lambda: transformers.EncoderDecoderModel(test_encoder_decoder._pair_config(case))))
        for case in test_encoder_decoder.PAIRS}


def _prophetnet_cases():
    config = transformers.ProphetNetConfig(**test_prophetnet.TINY)
    return {f"prophetnet-{name}": Case("prophetnet", name.removeprefix("ProphetNet"), name,
                                       lambda name=name: _seeded(lambda: getattr(transformers, name)(config)))
            for name in ("ProphetNetModel", "ProphetNetForConditionalGeneration")}


def _transfo_xl_cases():
    cases = {}
    for name in ("TransfoXLModel", "TransfoXLLMHeadModel", "TransfoXLForSequenceClassification"):
        def make(name=name):
            config = test_transfo_xl._config("div2", pad_token_id=0)
            config.num_labels = 3
            return _seeded(lambda: getattr(transformers, name)(config))
        cases[f"transfo-xl-{name}"] = Case("transfo-xl", name.removeprefix("TransfoXL"), name, make)
    return cases


CASES: dict[str, Case] = {**_encoder_cases(), **_decoder_cases(), **_seq2seq_cases(), **_pair_cases(),
                          **_prophetnet_cases(), **_transfo_xl_cases()}


def batch(case: Case, config, labels: bool = True, seed: int = 0) -> dict:
    """Model inputs for `case` (a padded mixed-length batch of 3) and, with `labels`, the labels its head trains on."""
    g = torch.Generator().manual_seed(seed + 7)
    if case.family in ("seq2seq", "pair", "prophetnet"):
        return _encoder_decoder_batch(case, config, labels, g)
    vocab = config.vocab_size
    ids, mask = random_inputs(vocab, batch=3, length=9, seed=seed, special=(3,))
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    inputs = dict(input_ids=ids.masked_fill(mask == 0, pad), attention_mask=mask)
    if case.family == "transfo-xl":
        inputs = dict(input_ids=inputs["input_ids"][:, :6])  # no attention mask: all tokens are real
        mask = torch.ones_like(inputs["input_ids"])
    if case.family == "encoder" and getattr(config, "type_vocab_size", 0) > 1 and config.model_type != "distilbert":
        inputs["token_type_ids"] = (torch.arange(9) >= 4).long().expand(3, 9).contiguous()
    if case.head == "ForMultipleChoice":  # (batch, choices, length): three choices that differ by a rotation
        inputs = {k: torch.stack([v.roll(i, dims=1) for i in range(3)], 1) for k, v in inputs.items()}
    if not labels or case.head in ("Model",):
        return inputs
    length = inputs["input_ids"].shape[-1]
    per_token = torch.zeros(3, length, dtype=torch.long)
    if case.head in ("ForMaskedLM", "LMHeadModel", "ForCausalLM"):
        per_token = inputs["input_ids"].clone()
    elif case.head == "ForTokenClassification":
        per_token = torch.randint(0, config.num_labels, (3, length), generator=g)
    elif case.head == "ForPreTraining":
        per_token = torch.randint(0, 2, (3, length), generator=g)
    if case.head in ("ForMaskedLM", "LMHeadModel", "ForCausalLM", "ForTokenClassification"):
        inputs["labels"] = per_token.masked_fill(mask == 0, -100)
    elif case.head == "ForPreTraining":
        inputs["labels"] = per_token
    elif case.head == "ForQuestionAnswering":
        inputs.update(start_positions=torch.tensor([1, 4, 30]), end_positions=torch.tensor([3, 6, 2]))
    elif case.head == "ForMultipleChoice":
        inputs["labels"] = torch.tensor([2, 0, 1])
    elif case.head == "ForSequenceClassification":
        inputs["labels"] = torch.randint(0, config.num_labels, (3,), generator=g)
    return inputs


def _encoder_decoder_batch(case, config, labels, g):
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    vocab = config.encoder.vocab_size if case.family == "pair" else config.vocab_size
    ids, mask = random_inputs(vocab, batch=3, length=9, special=(3,))
    ids = ids.masked_fill(mask == 0, pad)
    eos = config.eos_token_id
    if eos is not None and case.head in ("ForSequenceClassification", "ForQuestionAnswering"):
        ids[torch.arange(3), mask.sum(1) - 1] = eos  # one </s> per row, where BART's classifier pools
    inputs = dict(input_ids=ids, attention_mask=mask)
    if case.head in ("ForSequenceClassification", "ForQuestionAnswering"):
        if labels and case.head == "ForSequenceClassification":
            inputs["labels"] = torch.randint(0, config.num_labels, (3,), generator=g)
        elif labels:
            inputs.update(start_positions=torch.tensor([1, 4, 30]), end_positions=torch.tensor([3, 6, 2]))
        return inputs
    decoder_vocab = getattr(config, "decoder_vocab_size", None) or vocab
    decoder_ids, decoder_mask = random_inputs(decoder_vocab, batch=3, length=7, seed=1, special=(3,))
    if labels and case.head not in ("Model",):
        inputs["labels"] = decoder_ids.masked_fill(decoder_mask == 0, -100)
    else:
        inputs.update(decoder_input_ids=decoder_ids.masked_fill(decoder_mask == 0, pad),
                      decoder_attention_mask=decoder_mask)
    return inputs


def output_keys(case: Case) -> list[str]:
    """The outputs that carry the result of `case`'s head."""
    if case.head in ("Model",):
        return ["last_hidden_state"]
    if case.head == "ForQuestionAnswering":
        return ["start_logits", "end_logits"]
    if case.family == "transfo-xl" and case.head == "LMHeadModel":
        return ["prediction_scores"]
    return ["logits"]


def assert_outputs_close(case: Case, inputs: dict, theirs, ours, atol: float = 1e-4, loss: bool = True):
    """The head's outputs (on real tokens only: a padded query of a sliding-window decoder may see no key, so its
    row is arbitrary) and the loss, if any, equal the oracle's."""
    keys = [k for k in output_keys(case) if isinstance(theirs.get(k), torch.Tensor)]  # TransfoXL: () with labels
    mask = inputs.get("attention_mask")
    if case.family == "decoder" and mask is not None and case.head != "ForSequenceClassification":
        theirs = {**{k: theirs[k][mask.bool()] for k in keys}, "loss": theirs.get("loss")}
        ours = {**{k: ours[k][mask.bool()] for k in keys}, "loss": ours.get("loss")}
    if loss and ours.get("loss") is not None:
        keys = keys + ["loss"]
    assert_close(theirs, ours, keys=keys, atol=atol, what=case.class_name)


def training_loss(case: Case, inputs: dict, outputs):
    """The loss to backpropagate: the head's own, or (base models) the mean square of the real tokens' states."""
    if outputs.get("loss") is not None:
        return outputs["loss"]
    hidden = outputs[output_keys(case)[0]]
    mask = inputs.get("decoder_attention_mask", inputs.get("attention_mask"))
    if mask is None or mask.shape != hidden.shape[:2]:
        return hidden.pow(2).mean()
    return (hidden * mask[..., None]).pow(2).mean()


def assert_gradients_close(case: Case, theirs, ours, rtol: float = 1e-4):
    """After one backward on each: every gradient of the oracle equals ours under its checkpoint name (ours mapped
    through the spec's inverse renames), within rtol of the oracle gradient's largest entry."""
    from leanformers.saving import to_checkpoint

    grads = {name: p.grad for name, p in ours.named_parameters() if p.grad is not None}
    mapped, unnamed = to_checkpoint(type(ours).spec, grads, ours.config, type(ours).task)
    assert not unnamed, unnamed
    compared = 0
    for name, param in theirs.named_parameters():
        if param.grad is None:
            continue
        assert name in mapped, f"{case.class_name}: no gradient for {name}"
        expected, got = param.grad, mapped[name]
        scale = float(expected.abs().max())
        diff = float((expected - got).abs().max())
        assert diff <= rtol * scale + 1e-7, f"{case.class_name} {name}: grad diff {diff:.3g} (max {scale:.3g})"
        compared += 1
    assert compared > 4
