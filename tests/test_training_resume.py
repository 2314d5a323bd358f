"""Checkpoints that lose nothing: resuming reproduces the uninterrupted run (weights 1e-6, same log history), with
dropout on and a masking collator that draws from torch's global generator; a SIGKILL while a checkpoint is being
written leaves the previous one as the newest complete checkpoint; Ctrl-C stops after the current step with a
complete checkpoint. The interrupted runs are real subprocesses."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from leanformers.training import checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / ".models" / "minilm"
SETTINGS = {"per_device_train_batch_size": 4, "num_train_epochs": 2, "learning_rate": 2e-3, "logging_steps": 3,
            "save_steps": 4,
                "report_to": "none", "disable_tqdm": True, "seed": 11, "warmup_steps": 2}

# One script for every run: a tiny BERT masked LM (dropout 0.1) on 24 sentences with the MLM collator (unseeded:
# it masks with torch's global generator, so resuming must restore it). argv: model folder, output_dir, JSON of
# extra arguments; env SLOW_STEP sleeps after each step, SLOW_SAVE sleeps inside the second checkpoint's writing.
SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    import torch
    torch.set_num_threads(1)
    import leanformers as lf
    from leanformers.training import Trainer, TrainingArguments, TrainerCallback, DataCollatorForLanguageModeling
    from leanformers.training import checkpoint

    folder, output_dir, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    resume = extra.pop("resume", None)
    tokenizer = lf.AutoTokenizer.from_pretrained(os.environ["TOKENIZER"])
    words = "the cat sat on a mat while dogs ran past quiet old houses near green fields".split()
    texts = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(4 + i % 6)) for i in range(24)]
    train = [dict(tokenizer(t)) for t in texts]
    model = lf.AutoModelForMaskedLM.from_pretrained(folder)
    if not any(p.requires_grad for p in model.parameters()):
        model.requires_grad_(True)

    class Pace(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            print("STEP", state.global_step, flush=True)
            time.sleep(float(os.environ.get("SLOW_STEP", 0)))

    if os.environ.get("SLOW_SAVE"):
        save_torch = checkpoint.save_torch
        def slow_save(obj, path):
            save_torch(obj, path)
            if "tmp-checkpoint-8" in path and path.endswith("optimizer.pt"):
                print("SAVING", flush=True)
                time.sleep(60)
        checkpoint.save_torch = slow_save

    trainer = Trainer(model=model, args=TrainingArguments(output_dir, **extra), train_dataset=train,
                      data_collator=DataCollatorForLanguageModeling(tokenizer), callbacks=[Pace()])
    trainer.train(resume_from_checkpoint=resume)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, os.path.join(output_dir, "final.pt"))
    json.dump(trainer.state.log_history, open(os.path.join(output_dir, "history.json"), "w"))
''')


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not (TOKENIZER / "tokenizer.json").exists():
        pytest.skip("the real MiniLM tokenizer is not in .models (scripts/fetch_models.sh)")
    root = tmp_path_factory.mktemp("resume")
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                                     max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(root / "init")
    script = root / "train.py"
    script.write_text(SCRIPT)
    reference = run(root, root / "reference", {})
    assert reference.returncode == 0, reference.stderr
    return root


def run(root, output_dir, extra, wait=True, **env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TOKENIZER": str(TOKENIZER), **env}
    command = [sys.executable, str(root / "train.py"), str(root / "init"), str(output_dir),
               json.dumps({**SETTINGS, **extra})]
    if wait:
        return subprocess.run(command, check=False, env=environment, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(process, marker: str):
    for line in process.stdout:
        if line.strip() == marker:
            return
    raise AssertionError(f"the run ended before printing {marker!r}: {process.stderr.read()[-2000:]}")


def assert_same_as_reference(root, output_dir):
    expected = torch.load(root / "reference" / "final.pt")
    got = torch.load(output_dir / "final.pt")
    assert expected.keys() == got.keys()
    worst = max((expected[k] - got[k]).abs().max().item() for k in expected)
    assert worst <= 1e-6, worst
    drop = ("train_runtime", "train_samples_per_second", "train_steps_per_second")
    history = [json.loads((d / "history.json").read_text()) for d in (root / "reference", output_dir)]
    history = [[{k: v for k, v in entry.items() if k not in drop} for entry in h] for h in history]
    assert history[0] == history[1]
    logs = [[json.loads(line) for line in (d / "trainer_log.jsonl").read_text().splitlines()]
            for d in (root / "reference", output_dir)]
    drop = (*drop, "time")
    assert [{k: v for k, v in e.items() if k not in drop} for e in logs[0]] == \
        [{k: v for k, v in e.items() if k not in drop} for e in logs[1]]  # no step logged twice after the resume


def test_sigkill_mid_training_then_resume_equals_uninterrupted(setup):
    root, output_dir = setup, setup / "killed"
    process = run(root, output_dir, {}, wait=False, SLOW_STEP="0.2")
    try:
        wait_for(process, "STEP 6")  # checkpoint-4 is written, the run is between checkpoints
    finally:
        process.kill()
        process.wait()
    assert checkpoint.latest_checkpoint(str(output_dir)).endswith("checkpoint-4")
    resumed = run(root, output_dir, {"resume": True})
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_reference(root, output_dir)
    files = set(os.listdir(output_dir / "checkpoint-4"))
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"} <= files
    assert files & set(checkpoint.WEIGHT_FILES)


def test_sigkill_while_saving_leaves_the_previous_checkpoint(setup):
    root, output_dir = setup, setup / "killed-saving"
    process = run(root, output_dir, {}, wait=False, SLOW_SAVE="1")
    try:
        wait_for(process, "SAVING")  # inside checkpoint-8's writing: optimizer.pt done, the rest not
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (output_dir / "tmp-checkpoint-8").is_dir() and not (output_dir / "checkpoint-8").exists()
    assert checkpoint.latest_checkpoint(str(output_dir)).endswith("checkpoint-4")
    resumed = run(root, output_dir, {"resume": True})
    assert resumed.returncode == 0, resumed.stderr
    assert not (output_dir / "tmp-checkpoint-8").exists()  # the next save of step 8 replaced the leftover
    assert_same_as_reference(root, output_dir)


def test_ctrl_c_stops_after_the_step_with_a_checkpoint(setup):
    root, output_dir = setup, setup / "interrupted"
    process = run(root, output_dir, {}, wait=False, SLOW_STEP="0.3")
    wait_for(process, "STEP 5")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "resume_from_checkpoint=True" in err
    later = [int(line.split()[1]) for line in out.splitlines() if line.startswith("STEP")]
    stopped = later[-1] if later else 5  # the signal came during step 5's callbacks, or just after
    latest = checkpoint.latest_checkpoint(str(output_dir))
    assert latest.endswith(f"checkpoint-{stopped}") and stopped in (5, 6)
    resumed = run(root, output_dir, {"resume": True})
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_reference(root, output_dir)


def test_save_total_limit_keeps_the_newest(setup):
    root, output_dir = setup, setup / "limited"
    result = run(root, output_dir, {"save_total_limit": 2})
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(output_dir)) == ["checkpoint-12", "checkpoint-8", "final.pt", "history.json",
                                              "trainer_log.jsonl"]
    log = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [3, 6, 9, 12] and "train_loss" in log[-1]
