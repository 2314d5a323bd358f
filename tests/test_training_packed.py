"""Training on padded batches skips the padding: an encoder's per-token layers run on the real tokens only
(Transformer.pack) when no loss reads a padded position. The loss and every gradient equal the padded computation
and transformers' (dropout 0); heads that read padded positions (QA spans, token labels that are not -100 at the
padding) and inference keep the padded path."""
import pytest
import torch
import transformers

import leanformers
from leanformers.modeling.transformer import Transformer

transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(vocab_size=120, max_position_embeddings=64)
CONFIGS = {
    "bert": lambda **kw: transformers.BertConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                                 num_attention_heads=4, hidden_dropout_prob=0.0,
                                                 attention_probs_dropout_prob=0.0, **TINY, **kw),
    "distilbert": lambda **kw: transformers.DistilBertConfig(dim=32, hidden_dim=48, n_layers=2, n_heads=4, dropout=0.0,
                                                             attention_dropout=0.0, seq_classif_dropout=0.0,
                                                             qa_dropout=0.0, **TINY, **kw),
    "roberta": lambda **kw: transformers.RobertaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                                       num_attention_heads=4, hidden_dropout_prob=0.0,
                                                       attention_probs_dropout_prob=0.0, pad_token_id=1,
                                                       **{**TINY, "max_position_embeddings": 70}, **kw),
}


def padded_batch(task, pad_id=0, label_pads=-100):
    g = torch.Generator().manual_seed(0)
    lengths = [20, 12, 5, 17]
    ids = torch.randint(5, 120, (4, 20), generator=g)
    mask = torch.zeros(4, 20, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids[mask == 0] = pad_id
    inputs = {"input_ids": ids, "attention_mask": mask}
    if task == "AutoModelForSequenceClassification":
        inputs["labels"] = torch.tensor([0, 1, 2, 1])
    elif task == "AutoModelForQuestionAnswering":
        inputs.update(start_positions=torch.tensor([1, 2, 3, 4]), end_positions=torch.tensor([3, 4, 4, 9]))
    else:
        labels = torch.randint(0, 3 if task == "AutoModelForTokenClassification" else 120, (4, 20), generator=g)
        labels[mask == 0] = label_pads
        inputs["labels"] = labels
    return inputs


def spy_packing(monkeypatch):
    calls = []
    original = Transformer.pack

    def pack(x, attention_mask):
        calls.append(int(attention_mask.sum()))
        return original(x, attention_mask)

    monkeypatch.setattr(Transformer, "pack", staticmethod(pack))
    return calls


def pair(arch, task, tmp_path):
    config = CONFIGS[arch](num_labels=2 if task == "AutoModelForQuestionAnswering" else 3)
    torch.manual_seed(0)
    theirs = getattr(transformers, task).from_config(config)
    theirs.save_pretrained(tmp_path)
    ours = getattr(leanformers, task).from_pretrained(tmp_path)
    return theirs.train(), ours.train()


def loss_and_grads(model, inputs):
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", sorted(CONFIGS))
@pytest.mark.parametrize("task", ["AutoModelForSequenceClassification", "AutoModelForTokenClassification",
                                  "AutoModelForMaskedLM"])
def test_packed_training_equals_padded_and_transformers(arch, task, tmp_path, monkeypatch):
    theirs, ours = pair(arch, task, tmp_path)
    inputs = padded_batch(task, pad_id=theirs.config.pad_token_id)
    their_loss, their_grads = loss_and_grads(theirs, inputs)
    calls = spy_packing(monkeypatch)
    packed_loss, packed = loss_and_grads(ours, inputs)
    assert calls == [54]  # the 54 real tokens of the 4 x 20 batch
    monkeypatch.setattr(Transformer, "packable", lambda self, mask: False)
    padded_loss, padded = loss_and_grads(ours, inputs)
    assert packed_loss == pytest.approx(padded_loss, abs=1e-6)
    assert packed_loss == pytest.approx(their_loss, abs=1e-5)
    assert packed.keys() == padded.keys()
    for name in packed:
        torch.testing.assert_close(packed[name], padded[name], atol=1e-6, rtol=1e-5, msg=name)
    # the same total gradient as transformers' (names differ; the per-name comparison is test_training_model's)
    total = sum(g.abs().sum().item() for g in packed.values())
    assert total == pytest.approx(sum(g.abs().sum().item() for g in their_grads.values()), rel=1e-5)


@pytest.mark.parametrize("case", ["qa", "labels at the padding", "eval", "no padding"])
def test_padded_path_where_padding_is_read(case, tmp_path, monkeypatch):
    task = "AutoModelForQuestionAnswering" if case == "qa" else "AutoModelForTokenClassification"
    theirs, ours = pair("bert", task, tmp_path)
    inputs = padded_batch(task, label_pads=1 if case == "labels at the padding" else -100)
    if case == "no padding":
        inputs["attention_mask"][:] = 1
    if case == "eval":
        theirs.eval(), ours.eval()
    calls = spy_packing(monkeypatch)
    their_loss, _ = loss_and_grads(theirs, inputs)
    our_loss, _ = loss_and_grads(ours, inputs)
    assert calls == []
    assert our_loss == pytest.approx(their_loss, abs=1e-5)


def test_trainer_on_padded_rows_logs_transformers_losses(tmp_path, monkeypatch):
    """The Trainer on padding="max_length" rows (where the packed path applies): the same losses as transformers'."""
    task = "AutoModelForSequenceClassification"
    theirs, ours = pair("bert", task, tmp_path / "ckpt")
    rows = []
    for i in range(16):
        n = 6 + i % 10
        rows.append({"input_ids": [2] + [7 + (i * 5 + j) % 100 for j in range(n - 2)] + [3] + [0] * (16 - n),
                     "attention_mask": [1] * n + [0] * (16 - n), "label": i % 3})
    losses = {}
    calls = spy_packing(monkeypatch)
    for lib, model in (("transformers", theirs), ("leanformers", ours)):
        library = transformers if lib == "transformers" else leanformers
        args = library.TrainingArguments(str(tmp_path / lib), per_device_train_batch_size=4, max_steps=4,
                                         logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                                         seed=3, learning_rate=1e-3)
        trainer = library.Trainer(model=model, args=args, train_dataset=rows)
        trainer.train()
        losses[lib] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses["leanformers"]) == 4 and len(calls) == 4  # every step ran packed
    assert losses["leanformers"] == pytest.approx(losses["transformers"], abs=1e-4)
