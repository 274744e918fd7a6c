"""Sharded full fine-tuning under torchrun (FSDP2, ``training.distributed.shard_model``): two CPU
processes (gloo, loopback), each holding half of the model, give one process's loss curve and
weights; rank 0 alone writes full checkpoints in the 1-process layout, and a checkpoint resumes
from 2 sharded ranks into 1 process and from 1 process into 2 sharded ranks.

The two-rank run is this file itself, started through ``python -m torch.distributed.run``; the
run it is compared with is ``test_distributed.train`` in one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import _assert_same_run, _weights, train


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics-rank0.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    """The full fine-tune in one process: the reference, and the checkpoint the sharded run resumes."""
    return train(tiny_model_dir, tmp_path_factory.mktemp("one") / "full", "full")


@pytest.fixture(scope="module")
def two_ranks(tiny_model_dir, one_process, tmp_path_factory):
    """2 processes x 1 thread, sharded: a fresh run (``fresh``) and one resumed from the
    1-process run's checkpoint at step 3 (``resumed``)."""
    root = tmp_path_factory.mktemp("fsdp")
    shutil.copytree(one_process.output_dir.parent / "checkpoints" / "step-3", root / "resumed" / "checkpoints" / "step-3")
    here = Path(__file__).parent
    env = {**os.environ, "TUNERY_HOME": str(root / "home"), "TUNERY_NUM_THREADS": "2", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           __file__, str(tiny_model_dir), str(root)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


def test_two_sharded_processes_give_the_one_process_run(two_ranks, one_process):
    out = two_ranks / "fresh"
    assert "info: Sharding: fsdp: as asked" in (out / "messages.txt").read_text().splitlines()
    rows = _rows(out)
    assert len(rows) == one_process.steps == 8
    _assert_same_run(rows, one_process.metrics, _weights(out / "final"), _weights(one_process.output_dir))


def test_each_rank_held_half_of_the_model(two_ranks, one_process):
    total = sum(t.numel() for k, t in _weights(one_process.output_dir).items())
    held = [json.loads((two_ranks / "fresh" / f"held-rank{r}.json").read_text()) for r in (0, 1)]
    assert sum(h["local"] for h in held) == total  # the tied head counted once, as the file holds it
    assert all(h["local"] < 0.6 * total and h["sharded"] for h in held)


def test_rank_zero_alone_writes_the_one_process_layout(two_ranks, one_process):
    from tunery.training import checkpoint

    out = two_ranks / "fresh"
    assert not (out / "metrics-rank1.jsonl").exists()
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == ["step-3", "step-4", "step-6", "step-8"]
    assert not list(out.rglob("*.tmp*"))
    ref = one_process.output_dir
    assert sorted(p.name for p in (out / "final").iterdir()) == sorted(p.name for p in ref.iterdir())
    assert json.loads((out / "final" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    # the optimizer state is whole and keyed as one process keys it
    state, ref_state = (checkpoint.load_state(d / "checkpoints" / "step-6") for d in (out, ref.parent))
    assert state["optimizer"]["state"].keys() == ref_state["optimizer"]["state"].keys()
    for i, s in state["optimizer"]["state"].items():
        assert s["exp_avg"].shape == ref_state["optimizer"]["state"][i]["exp_avg"].shape
        assert type(s["exp_avg"]).__name__ == "Tensor"


def test_resume_one_process_checkpoint_in_two_sharded_ranks(two_ranks, one_process):
    out = two_ranks / "resumed"
    assert "info: Resumed from checkpoint at step 3" in (out / "messages.txt").read_text()
    rows = _rows(out)
    assert [r["step"] for r in rows] == [4, 5, 6, 7, 8]  # the steps run after the resume
    _assert_same_run(rows, one_process.metrics[3:], _weights(out / "final"), _weights(one_process.output_dir))


def test_resume_two_sharded_ranks_checkpoint_in_one_process(two_ranks, one_process, tiny_model_dir, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(two_ranks / "fresh" / "checkpoints" / "step-3", out / "checkpoints" / "step-3")
    res = train(tiny_model_dir, out, "full", resume=True)
    assert res.resumed_from == 3
    _assert_same_run(res.metrics, one_process.metrics, _weights(res.output_dir), _weights(one_process.output_dir))


def test_sharding_is_refused_where_it_does_not_apply(tiny_model_dir, tmp_path):
    from tunery.errors import InvalidInput

    with pytest.raises(InvalidInput, match="sharding fsdp is for full supervised fine-tuning"):
        train(tiny_model_dir, tmp_path, "lora", sharding="fsdp")


def test_auto_shards_only_what_would_not_fit_a_gpu(monkeypatch):
    from tunery.training import distributed

    choose = distributed.choose_sharding
    assert choose("fsdp", method="full", objective="supervised", n_params=1, device="cpu") == (
        "ddp", "fsdp asked, one process: nothing to shard")  # said in the job's events, not silently dropped
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "any_rank", lambda flag: flag)  # no process group here
    monkeypatch.setattr(distributed, "_shared_memory", lambda device: (10 * 2**30, 2))  # 10 GiB, 2 copies in it
    fits, too_big = 200_000_000, 300_000_000  # x 16 bytes x 2 copies: 6.0 GiB, 8.9 GiB (over 80% of 10)
    assert choose("auto", method="full", objective="supervised", n_params=fits, device="cuda:0")[0] == "ddp"
    sharding, why = choose("auto", method="full", objective="supervised", n_params=too_big, device="cuda:0")
    assert sharding == "fsdp" and "8.9 GiB for 2 copies" in why
    # on CPU sharding does not lower resident memory (benchmarks/RESULTS.md): auto never picks it there
    sharding, why = choose("auto", method="full", objective="supervised", n_params=too_big, device="cpu")
    assert sharding == "ddp" and "may not fit" in why
    assert choose("auto", method="lora", objective="supervised", n_params=too_big, device="cuda:0")[0] == "ddp"
    assert choose("ddp", method="full", objective="supervised", n_params=too_big, device="cuda:0")[0] == "ddp"
    assert choose("fsdp", method="full", objective="supervised", n_params=1, device="cpu")[0] == "fsdp"


def test_a_container_memory_limit_counts(tmp_path):
    from tunery.training.distributed import container_memory_limit

    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert container_memory_limit((str(v2), str(v1))) is None  # neither file: no container limit
    v1.write_text("4294967296\n")
    assert container_memory_limit((str(v2), str(v1))) == 4 * 2**30
    v2.write_text("max\n")
    assert container_memory_limit((str(v2), str(v1))) is None
    v2.write_text("2147483648\n")
    assert container_memory_limit((str(v2), str(v1))) == 2 * 2**30


def test_request_takes_sharding_for_full_fine_tunes_only():
    from tunery.errors import InvalidInput
    from tunery.jobs.spec import FineTuneRequest

    base = {"model": "tiny-random", "training_file": "file-1", "training_method": "full"}
    assert FineTuneRequest.parse(base).sharding == "auto"
    in_method = {**base, "method": {"type": "supervised", "supervised": {"sharding": "fsdp"}}}
    assert FineTuneRequest.parse(in_method).to_json()["sharding"] == "fsdp"
    for bad, why in (({"training_method": "lora"}, "with LoRA"), ({"method": {"type": "dpo"}}, "with DPO"),
                     ({"sharding": "zero3"}, "sharding")):
        with pytest.raises(InvalidInput, match=why):
            FineTuneRequest.parse({**base, "sharding": "fsdp", **bad})


if __name__ == "__main__":  # one rank of the two_ranks fixture's run
    model_dir, root = Path(sys.argv[1]), Path(sys.argv[2])
    rank = os.environ["RANK"]
    from tunery.training import checkpoint, distributed

    save_model, shard_model = checkpoint.save_model, distributed.shard_model

    def recorded(model, out, **kw):  # any save by a rank other than 0 fails the run
        if rank != "0":
            raise AssertionError(f"rank {rank} wrote {out}")
        save_model(model, out, **kw)

    def measured(model, device):  # what this rank holds once sharded
        from torch.distributed.tensor import DTensor

        shard_model(model, device)
        params = list(model.parameters())
        held = {"local": sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in params),
                "sharded": all(isinstance(p, DTensor) for p in params)}
        (root / "fresh").mkdir(parents=True, exist_ok=True)
        (root / "fresh" / f"held-rank{rank}.json").write_text(json.dumps(held))

    checkpoint.save_model, distributed.shard_model = recorded, measured
    train(model_dir, root / "fresh", "full", sharding="fsdp")
    train(model_dir, root / "resumed", "full", sharding="fsdp", resume=True)
