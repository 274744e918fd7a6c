"""The one thread-count setting: ``TUNERY_NUM_THREADS`` (or ``--threads``) for training and
inference alike, its deprecated old name, and the commands that set it. How exports are opened on
those threads is tested in tests/export/test_export_threads.py."""

from __future__ import annotations

import os

import pytest
import torch

from support_chat import chat_lines
from tunery.chat import Conversation
from tunery.errors import InvalidInput
from tunery.runtime import cpu_threads, env_threads, use_threads


@pytest.fixture
def clean_env(monkeypatch):
    """Neither variable set; whatever a test sets is undone afterwards."""
    for name in ("TUNERY_NUM_THREADS", "TUNERY_THREADS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def test_cpu_threads_is_the_usable_cpus_or_the_variable(clean_env):
    monkeypatch = clean_env
    assert cpu_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("TUNERY_NUM_THREADS", "3")
    assert cpu_threads() == 3
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("TUNERY_NUM_THREADS", bad)
        with pytest.raises(InvalidInput, match=f"TUNERY_NUM_THREADS .* got '{bad}'"):
            cpu_threads()


def test_the_old_name_still_works_with_a_warning(clean_env):
    clean_env.setenv("TUNERY_THREADS", "2")
    with pytest.warns(FutureWarning, match="TUNERY_THREADS is deprecated.*TUNERY_NUM_THREADS"):
        assert env_threads() == 2
    clean_env.setenv("TUNERY_THREADS", "lots")
    with pytest.warns(FutureWarning), pytest.raises(InvalidInput, match="TUNERY_THREADS must be"):
        env_threads()
    clean_env.setenv("TUNERY_NUM_THREADS", "3")  # the new name wins, and no warning then
    assert env_threads() == 3


def test_use_threads_sets_the_variable_child_processes_inherit(clean_env):
    use_threads(None)
    assert "TUNERY_NUM_THREADS" not in os.environ
    use_threads(2)
    assert os.environ["TUNERY_NUM_THREADS"] == "2" and cpu_threads() == 2
    for bad in (0, True, "2"):
        with pytest.raises(InvalidInput, match="threads must be"):
            use_threads(bad)


@pytest.mark.parametrize("command", ["serve", "worker", "finetune"])
def test_the_threads_option_sets_the_one_setting(clean_env, command):
    from tunery.cli.main import cli

    cmd = cli.get_command(None, command)
    args = ["--threads", "3"] + (["train.jsonl"] if command == "finetune" else [])
    cmd.make_context(command, args)  # parses (and runs the option's callback) without running the command
    assert os.environ["TUNERY_NUM_THREADS"] == "3"


def test_the_trainer_runs_on_tunery_num_threads(tiny_model, tmp_path, clean_env):
    from tunery.models.loading import load_tokenizer
    from tunery.training import Callbacks, Cancelled, Trainer, TrainingConfig, encode_all

    tok = load_tokenizer(tiny_model)
    examples = encode_all([Conversation.from_dicts(x["messages"]) for x in chat_lines(4)], tok, max_length=128)
    seen = []

    def stop() -> bool:  # asked before the first step: the thread count is set by then
        seen.append(torch.get_num_threads())
        return True

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for value in ("1", "3"):
            clean_env.setenv("TUNERY_NUM_THREADS", value)
            trainer = Trainer(base_path=tiny_model.path, tokenizer=tok, output_dir=tmp_path / value,
                              config=TrainingConfig(method="lora", n_epochs=1, batch_size=2, learning_rate=1e-3,
                                                    seed=1, max_seq_length=128),
                              train=examples, valid=None, callbacks=Callbacks(should_stop=stop))
            with pytest.raises(Cancelled):
                trainer.run()
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 3]
