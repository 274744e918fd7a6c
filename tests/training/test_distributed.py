"""Data-parallel training under torchrun (``training.distributed``): two CPU processes (gloo,
loopback) give one process's loss curve and weights, rank 0 alone writes, and a checkpoint
written by two ranks resumes in one.

The two-rank run is this file itself, started through ``python -m torch.distributed.run``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

METHODS = ("lora", "full")
EPOCHS, BATCH = 2, 3  # 10 examples: 4 steps an epoch, the last of one example, so one rank gets none


def train(model_dir: Path, out: Path, method: str, *, resume: bool = False, stop_after: int = 0,
          sharding: str = "auto"):
    """The run every test compares: LoRA on the upper layer only (the frozen-layer path) or full
    fine-tuning of the tiny model, a checkpoint every 3 steps, validation every 2; cancelled
    after step ``stop_after`` when given. Rank 0's messages are kept in ``messages.txt``."""
    from transformers import AutoTokenizer

    from support_chat import chat_lines
    from tunery.chat import Conversation
    from tunery.training import Callbacks, Trainer, TrainingConfig, encode_all
    from tunery.training.config import LoraSettings

    tok = AutoTokenizer.from_pretrained(model_dir)
    ex = encode_all([Conversation.from_dicts(x["messages"]) for x in chat_lines(10)], tok, max_length=256)
    cfg = TrainingConfig(method=method, n_epochs=EPOCHS, batch_size=BATCH, learning_rate=1e-2 if method == "lora" else 1e-3,
                         seed=5, max_seq_length=256, checkpoint_every=3, keep_checkpoints=10, eval_every=2,
                         lora=LoraSettings(r=4, alpha=8, layers=(1,)), sharding=sharding)
    rank = os.environ.get("RANK", "0")
    out.mkdir(parents=True, exist_ok=True)

    done = []

    def log(row):
        done.append(row["step"])
        with open(out / f"metrics-rank{rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def message(level, text):
        with open(out / "messages.txt", "a") as f:
            f.write(f"{level}: {text}\n")

    cb = Callbacks(on_metrics=log, on_message=message,
                   should_stop=lambda: bool(stop_after) and len(done) >= stop_after)
    return Trainer(base_path=model_dir, tokenizer=tok, config=cfg, train=ex, valid=ex[:3], output_dir=out,
                   callbacks=cb).run(resume=resume)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _assert_same_run(rows, ref_rows, weights, ref_weights):
    import torch

    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows]
    # grad_norm: the summed gradients' norm, which AdamW would not notice if they were averaged instead
    for key in ("train_loss", "train_mean_token_accuracy", "grad_norm", "valid_loss", "full_valid_loss"):
        got = [r[key] for r in rows if key in r]
        want = [r[key] for r in ref_rows if key in r]
        assert len(got) == len(want) > 0 and got == pytest.approx(want, rel=1e-4), key
    assert weights.keys() == ref_weights.keys()
    for k in weights:
        torch.testing.assert_close(weights[k], ref_weights[k], rtol=1e-3, atol=1e-5, msg=k)


@pytest.fixture(scope="module")
def two_ranks(tiny_model_dir, tmp_path_factory):
    """Both methods trained by 2 processes x 1 thread; the output folder of each."""
    root = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "TUNERY_HOME": str(root / "home"), "TUNERY_NUM_THREADS": "2", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           __file__, str(tiny_model_dir), str(root)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {m: root / m for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_give_the_one_process_run(two_ranks, tiny_model_dir, tmp_path, method):
    ref = train(tiny_model_dir, tmp_path / method, method)
    out = two_ranks[method]
    why = "ddp (auto, CPU): " if method == "full" else "ddp: auto shards full supervised fine-tunes only"
    assert f"info: Sharding: {why}" in (out / "messages.txt").read_text()  # the tiny model fits: no sharding
    rows = [json.loads(line) for line in (out / "metrics-rank0.jsonl").read_text().splitlines()]
    assert len(rows) == ref.steps == 8
    _assert_same_run(rows, ref.metrics, _weights(out / "final"), _weights(ref.output_dir))


@pytest.mark.parametrize("method", METHODS)
def test_rank_zero_alone_reports_and_writes(two_ranks, method):
    from tunery.training import checkpoint

    out = two_ranks[method]
    assert not (out / "metrics-rank1.jsonl").exists()  # rank 1's callbacks never ran
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == [
        "step-3", "step-4", "step-6", "step-8"]
    assert (out / "results.csv").read_text().count("\n") == 9  # header and 8 steps, written once
    assert not list(out.rglob("*.tmp*"))  # no half-written folder left by a second writer


def test_a_cancel_seen_by_rank_zero_stops_every_rank(two_ranks):
    out = two_ranks["lora"].parent / "cancel"
    assert (out / "cancelled-rank0").exists() and (out / "cancelled-rank1").exists()
    assert len((out / "metrics-rank0.jsonl").read_text().splitlines()) == 2


def test_rank_zero_chooses_the_precision_for_every_rank(two_ranks):
    """``auto`` precision measured apart, rank 0 finding bf16 faster and rank 1 slower: both train
    as rank 0 chose (and neither hangs, as ranks that went apart would in the held-out loss check)."""
    out = two_ranks["lora"].parent / "precision"
    assert [(out / f"precision-rank{r}.txt").read_text() for r in (0, 1)] == ["bf16", "bf16"]


def test_resume_two_rank_checkpoint_in_one_process(two_ranks, tiny_model_dir, tmp_path):
    ref = train(tiny_model_dir, tmp_path / "ref", "lora")
    out = tmp_path / "resumed"
    shutil.copytree(two_ranks["lora"] / "checkpoints" / "step-3", out / "checkpoints" / "step-3")
    res = train(tiny_model_dir, out, "lora", resume=True)
    assert res.resumed_from == 3
    _assert_same_run(res.metrics, ref.metrics, _weights(res.output_dir), _weights(ref.output_dir))


def test_exit_destroys_the_process_group_only_after_a_clean_finish(monkeypatch):
    """After a failure the other ranks may sit in a collective, and destroying an NCCL group then
    can stall the exit; after ``finish`` it must be destroyed (gloo aborts at exit otherwise)."""
    import torch.distributed as dist

    from tunery.training import distributed

    destroyed = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: None)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: destroyed.append(True))
    monkeypatch.setattr(distributed, "_clean", False)  # a run that died before finish()
    distributed._close()
    assert destroyed == []
    distributed.finish()
    distributed._close()
    assert destroyed == [True]


def test_a_rank_picks_its_own_gpu_only_among_several(monkeypatch):
    import torch

    from tunery.runtime import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")  # a launcher's lone process: the current GPU, as without one
    assert default_device() == "cuda"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_device() == "cuda:1"


def test_launch_command_uses_torchrun_for_several_processes(monkeypatch):
    from tunery.errors import InvalidInput
    from tunery.training.distributed import NPROC_ENV, launch_command, threads

    job = ["-m", "tunery.jobs", "ftjob-1"]
    monkeypatch.delenv(NPROC_ENV, raising=False)
    assert launch_command(job) == [sys.executable, *job]
    monkeypatch.setenv(NPROC_ENV, "3")  # the worker's default ...
    assert launch_command(job)[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3"]
    assert launch_command(job, 1) == [sys.executable, *job]  # ... a job's own value wins
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert threads(8) == 2 and threads(2) == 1
    monkeypatch.setenv(NPROC_ENV, "two")
    with pytest.raises(InvalidInput, match=NPROC_ENV):
        launch_command(job)


def test_request_takes_nproc_per_node_and_refuses_it_for_dpo():
    from tunery.errors import InvalidInput
    from tunery.jobs.spec import FineTuneRequest

    base = {"model": "tiny-random", "training_file": "file-1"}
    assert FineTuneRequest.parse({**base, "nproc_per_node": 2}).nproc_per_node == 2
    in_method = {**base, "method": {"type": "supervised", "supervised": {"nproc_per_node": 2}}}
    assert FineTuneRequest.parse(in_method).to_json()["nproc_per_node"] == 2
    with pytest.raises(InvalidInput, match="nproc_per_node"):
        FineTuneRequest.parse({**base, "nproc_per_node": 0})
    with pytest.raises(InvalidInput, match="DPO trains in one process"):
        FineTuneRequest.parse({**base, "nproc_per_node": 2, "method": {"type": "dpo"}})


def precision_choice(model_dir: Path, out: Path) -> None:
    """The ``auto`` precision of a LoRA run, with each rank's CPU measurement faked to disagree
    (each rank its own home, so neither reads the other's cached figure); the choice is written
    per rank to ``precision-rank<r>.txt``."""
    from transformers import AutoTokenizer

    from support_chat import chat_lines
    from tunery.chat import Conversation
    from tunery.training import Trainer, TrainingConfig, distributed, encode_all
    from tunery.training import precision as prec
    from tunery.training.model import prepare_model

    rank = os.environ["RANK"]
    out.mkdir(parents=True, exist_ok=True)
    os.environ.pop("TUNERY_TRAIN_PRECISION", None)
    os.environ["TUNERY_HOME"] = str(out / f"home-rank{rank}")
    prec._memo.clear()
    prec.measure = lambda **kw: prec.Measurement("fake", 1.0, 0.5 if rank == "0" else 4.0)
    prec.loss_agrees = lambda fp32, bf16: True
    tok = AutoTokenizer.from_pretrained(model_dir)
    ex = encode_all([Conversation.from_dicts(x["messages"]) for x in chat_lines(4)], tok, max_length=256)
    cfg = TrainingConfig(method="lora", n_epochs=1, batch_size=2, learning_rate=1e-2, seed=5, max_seq_length=256,
                         precision="auto")
    trainer = Trainer(base_path=model_dir, tokenizer=tok, config=cfg, train=ex, valid=ex, output_dir=out)
    device = distributed.setup("cpu")
    choice = trainer._precision(prepare_model(model_dir, cfg, device), device)
    (out / f"precision-rank{rank}.txt").write_text(choice.precision)
    distributed.finish()


if __name__ == "__main__":  # one rank of the two_ranks fixture's run
    model_dir, root = Path(sys.argv[1]), Path(sys.argv[2])
    from tunery.training import checkpoint

    save_model = checkpoint.save_model

    def recorded(model, out, **kw):  # any save by a rank other than 0 fails the run
        if os.environ["RANK"] != "0":
            raise AssertionError(f"rank {os.environ['RANK']} wrote {out}")
        save_model(model, out, **kw)

    checkpoint.save_model = recorded
    for m in METHODS:
        train(model_dir, root / m, m)
    from tunery.training import Cancelled

    try:  # rank 0 alone sees the cancel; rank 1 must stop at the same step, not wait for it forever
        train(model_dir, root / "cancel", "lora", stop_after=2)
    except Cancelled:
        (root / "cancel" / f"cancelled-rank{os.environ['RANK']}").touch()
    precision_choice(model_dir, root / "precision")


def test_more_ranks_than_gpus_are_refused_before_any_starts(monkeypatch, tiny_model, chat_file):
    """Each rank trains on its own GPU: on a GPU machine, two ranks with one GPU died in CUDA
    ("invalid device ordinal", seen on a lent H200). The worker that claims the job fails it,
    naming the fix, before any rank starts; without CUDA, ranks share the CPU and any number may run."""
    import torch

    from tunery.data import files
    from tunery.errors import InvalidInput
    from tunery.jobs import Worker, create_job, get_job
    from tunery.training.distributed import check_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_devices(4)  # no GPU: ranks on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_devices(1)
    with pytest.raises(InvalidInput, match="2 training processes need 2 GPUs, one each, and this machine has 1") as e:
        check_devices(2)
    assert "CUDA_VISIBLE_DEVICES=" in e.value.hint and e.value.param == "nproc_per_node"
    monkeypatch.setenv("TUNERY_NPROC_PER_NODE", "3")
    with pytest.raises(InvalidInput, match="3 training processes"):
        check_devices()

    train = files.create_from_path(chat_file(12), "fine-tune")
    job = create_job(model="tiny-random", training_file=train.id, nproc_per_node=2, training_method="full",
                     hyperparameters={"n_epochs": 1})
    worker = Worker(poll_interval=0.1)
    worker._validate(job["id"])  # another machine's worker may train it: validation passes
    assert get_job(job["id"])["status"] == "queued"
    worker._start_next()  # this machine's worker claims it and fails it, naming the fix; no rank starts
    job = get_job(job["id"])
    assert job["status"] == "failed" and "need 2 GPUs" in job["error"]["message"], job
    assert "CUDA_VISIBLE_DEVICES=" in job["error"]["message"] and worker.child is None


def test_a_job_that_fails_in_training_keeps_the_errors_fix(monkeypatch, tiny_model, chat_file):
    """A rank's own check (more ranks than GPUs on its machine) puts the fix in the error's hint:
    the job's error kept only the message, and the fix was lost."""
    from tunery.data import files
    from tunery.errors import InvalidInput
    from tunery.jobs import create_job, get_job, runner

    def refuse(job_id):
        raise InvalidInput("2 training processes need 2 GPUs", param="nproc_per_node", hint="ask for at most 1")

    train = files.create_from_path(chat_file(12), "fine-tune")
    job = create_job(model="tiny-random", training_file=train.id, hyperparameters={"n_epochs": 1})
    monkeypatch.setattr(runner, "run", refuse)
    assert runner.main([job["id"]]) == 1
    error = get_job(job["id"])["error"]
    assert error["message"] == "2 training processes need 2 GPUs (ask for at most 1)" and error["param"] == "nproc_per_node"
