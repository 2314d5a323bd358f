"""The same script under a real `torchrun --nproc_per_node=2` (gloo on CPU, 127.0.0.1): DistributedDataParallel and
sharded data give the weights and losses of one process with twice the per-device batch (1e-5); rank 0 alone writes
the checkpoint (with one rng_state_<rank>.pth per process)."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from leanformers.training.checkpoint import latest_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
STEPS = 4

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import leanformers as lf
    from leanformers.training import Trainer, TrainingArguments

    output_dir, batch = sys.argv[1], int(sys.argv[2])
    config = lf.Config.from_dict(dict(model_type="bert", vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                                      num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    torch.manual_seed(0)
    model = lf.AutoModelForSequenceClassification.from_config(config)
    if not any(p.requires_grad for p in model.parameters()):
        model.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (40, 7), generator=g).tolist()
    labels = torch.randint(0, 3, (40,), generator=g).tolist()
    train = [{"input_ids": i, "attention_mask": [1] * 7, "label": y} for i, y in zip(ids, labels)]
    args = TrainingArguments(output_dir, per_device_train_batch_size=batch, max_steps=STEPS, learning_rate=5e-3,
                             logging_steps=1, save_steps=STEPS, report_to="none", disable_tqdm=True, seed=3,
                             weight_decay=0.1, warmup_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=train)
    trainer.train()
    rank = int(os.environ.get("RANK", 0))
    torch.save(model.state_dict(), os.path.join(output_dir, f"final_{rank}.pt"))
    json.dump(trainer.state.log_history, open(os.path.join(output_dir, f"history_{rank}.json"), "w"))
''').replace("STEPS", str(STEPS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one_process_with_double_batch(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], check=False, env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                          "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script),
                          str(tmp_path / "two"), "2"], check=False, env=env, capture_output=True, text=True,
                         timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    expected = torch.load(tmp_path / "one" / "final_0.pt")
    for rank in (0, 1):
        got = torch.load(tmp_path / "two" / f"final_{rank}.pt")
        worst = max((expected[k] - got[k]).abs().max().item() for k in expected)
        assert worst <= 1e-5, (rank, worst)
    histories = [json.loads((tmp_path / d / f"history_{r}.json").read_text()) for d, r in
                 (("one", 0), ("two", 0), ("two", 1))]
    losses = [[e["loss"] for e in h if "loss" in e] for h in histories]
    assert len(losses[0]) == STEPS and losses[0] == pytest.approx(losses[1], abs=1e-4) == losses[2]
    checkpoint = tmp_path / "two" / f"checkpoint-{STEPS}"
    files = set(os.listdir(checkpoint))
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt", "trainer_state.json"} <= files
    assert not [p for p in os.listdir(tmp_path / "two") if p.startswith("tmp-")]
    assert latest_checkpoint(str(tmp_path / "two")) == str(checkpoint)
