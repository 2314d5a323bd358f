"""The Hugging Face course, chapter 3 ("Fine-tuning a pretrained model"), with only the import changed.

The course loads GLUE MRPC from the Hub and bert-base-uncased; neither is reachable here, so the same code runs on a
small MRPC-shaped datasets.DatasetDict made in the test and on the real all-MiniLM-L6-v2 (a BERT). Everything after
the data is the course's code: the Trainer section and the full training loop section.
"""
import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")  # installed by the test set-up; the Trainer does not need it

from oracle import MODELS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [("The cat sat on the mat.", "A cat was sitting on the mat.", 1),
         ("Stocks fell sharply on Monday.", "The market dropped a lot on Monday.", 1),
         ("He plays the piano every day.", "The weather is cold in winter.", 0),
         ("She bought a new car.", "A new car was purchased by her.", 1),
         ("The train leaves at noon.", "Bananas are rich in potassium.", 0),
         ("They won the final match.", "The team was victorious in the final.", 1),
         ("I like green tea.", "The bridge was closed for repairs.", 0),
         ("The meeting is postponed.", "Cats are independent animals.", 0)]


@pytest.fixture
def raw_datasets():
    def split(rows):
        return datasets.Dataset.from_dict({"sentence1": [a for a, _, _ in rows], "sentence2": [b for _, b, _ in rows],
                                           "label": [y for _, _, y in rows], "idx": list(range(len(rows)))})
    return datasets.DatasetDict({"train": split(PAIRS * 2), "validation": split(PAIRS)})


def test_chapter3_trainer_and_full_training_loop(raw_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # TrainingArguments("test-trainer") writes next to the script
    # ---- "Processing the data"
    from leanformers import AutoTokenizer, DataCollatorWithPadding

    checkpoint = str(MODELS / "minilm")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def tokenize_function(example):
        return tokenizer(example["sentence1"], example["sentence2"], truncation=True)

    tokenized_datasets = raw_datasets.map(tokenize_function, batched=True)
    data_collator = DataCollatorWithPadding(tokenizer=tokenizer)
    samples = tokenized_datasets["train"][:8]
    samples = {k: v for k, v in samples.items() if k not in ["idx", "sentence1", "sentence2"]}
    batch = data_collator(samples)
    assert batch["input_ids"].shape[0] == 8 and batch["labels"].tolist() == [y for _, _, y in PAIRS]

    # ---- "Fine-tuning a model with the Trainer API"
    from leanformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    training_args = TrainingArguments("test-trainer", eval_strategy="epoch", disable_tqdm=True)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)

    def compute_metrics(eval_preds):
        logits, labels = eval_preds
        predictions = np.argmax(logits, axis=-1)
        return {"accuracy": float((predictions == labels).mean())}

    trainer = Trainer(model, training_args, train_dataset=tokenized_datasets["train"],
                      eval_dataset=tokenized_datasets["validation"], data_collator=data_collator,
                      processing_class=tokenizer, compute_metrics=compute_metrics)
    result = trainer.train()
    assert result.global_step == 6  # 16 examples, batch 8, 3 epochs (TrainingArguments' defaults)
    predictions = trainer.predict(tokenized_datasets["validation"])
    assert predictions.predictions.shape == (8, 2) and predictions.label_ids.tolist() == [y for _, _, y in PAIRS]
    evals = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    assert [entry["epoch"] for entry in evals] == [1.0, 2.0, 3.0]
    assert (tmp_path / "test-trainer" / "checkpoint-6" / "model.safetensors").is_file()

    # ---- "A full training"
    from torch.optim import AdamW
    from torch.utils.data import DataLoader

    from leanformers import get_scheduler

    tokenized_datasets = tokenized_datasets.remove_columns(["sentence1", "sentence2", "idx"])
    tokenized_datasets = tokenized_datasets.rename_column("label", "labels")
    tokenized_datasets.set_format("torch")
    train_dataloader = DataLoader(tokenized_datasets["train"], shuffle=True, batch_size=8, collate_fn=data_collator)
    eval_dataloader = DataLoader(tokenized_datasets["validation"], batch_size=8, collate_fn=data_collator)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    optimizer = AdamW(model.parameters(), lr=5e-5)
    num_epochs = 3
    num_training_steps = num_epochs * len(train_dataloader)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0,
                                 num_training_steps=num_training_steps)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    losses = []
    for _ in range(num_epochs):
        for batch in train_dataloader:
            outputs = model(**batch)
            loss = outputs.loss
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    assert len(losses) == num_training_steps and all(np.isfinite(losses))
    assert lr_scheduler.get_last_lr()[0] == 0.0  # linear decay reached the end
    model.eval()
    correct = 0
    for batch in eval_dataloader:
        with torch.no_grad():
            outputs = model(**batch)
        correct += int((outputs.logits.argmax(dim=-1) == batch["labels"]).sum())
    assert 0 <= correct <= 8
    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p)]
    assert len(changed) == len(before)  # the loop trained every parameter, the new head included
