"""The fast path by default: a base model and its LoRA fine-tunes served from one compiled
(quantized ONNX) copy of the base, fine-tunes as adapters; the precision flag; the fallbacks."""

from __future__ import annotations

import threading

import pytest

from tunery.chat import ChatMessage, GenerationParams, Role

HI = [ChatMessage(Role.USER, "Tell me about Rome.")]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


@pytest.fixture
def own_compiled_dir(monkeypatch, tunery_home):
    """This test's compiled copies live in its own home (not the session's shared folder)."""
    monkeypatch.delenv("TUNERY_COMPILED_DIR", raising=False)
    return tunery_home / "compiled"


@pytest.fixture
def two_fts(tiny_model, lora_dirs):
    from tunery.models import ModelRecord, register

    return [register(ModelRecord(id=f"ft:tiny-random:t{i}:x", kind="fine-tuned", parent="tiny-random",
                                 method="lora", path=d, source="test")).id for i, d in enumerate(lora_dirs[:2])]


def test_precision_names_are_checked(monkeypatch):
    from tunery.compiled.cache import DEFAULT_PRECISION, check_precision
    from tunery.errors import InvalidInput

    monkeypatch.delenv("TUNERY_PRECISION", raising=False)
    assert check_precision(None) == DEFAULT_PRECISION == "int8"
    assert check_precision("FP32") == check_precision("float32") == "fp32"
    monkeypatch.setenv("TUNERY_PRECISION", "int4")
    assert check_precision("auto") == "int4"
    with pytest.raises(InvalidInput, match="unknown precision 'int3'") as e:
        check_precision("int3")
    assert e.value.param == "precision"
    monkeypatch.setenv("TUNERY_PRECISION", "bf16")
    with pytest.raises(InvalidInput, match="TUNERY_PRECISION=bf16"):
        check_precision(None)


def test_routes_base_lora_full_and_unsupported_models(tiny_model, two_fts, tmp_path):
    import json
    import shutil

    from tunery.models import ModelRecord, get, register
    from tunery.serving.manager import route

    base = get("tiny-random")
    assert route(base, base, None)[:2] == ("compiled-int8", "int8")
    assert route(get(two_fts[0]), base, "int4")[:2] == ("compiled-int4", "int4")
    assert route(base, base, "fp32") == ("torch", "fp32", None)
    full = register(ModelRecord(id="ft:tiny-random:full:x", kind="fine-tuned", parent="tiny-random",
                                method="full", path=tiny_model.path, source="test"))
    kind, served, notice = route(full, full, None)
    assert (kind, served) == ("torch", "fp32") and "full fine-tune" in notice
    odd = shutil.copytree(tiny_model.path, tmp_path / "odd")
    cfg = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    rec = register(ModelRecord(id="odd", kind="base", path=odd, source="test"))
    kind, served, notice = route(rec, rec, None)
    assert kind == "torch" and "does not take bert models" in notice


def test_base_is_compiled_once_with_its_quality_measured(tiny_model, own_compiled_dir):
    from tunery.compiled.cache import MANIFEST
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import manager, shutdown

    shutdown()  # no engine left from another test
    said: list[str] = []
    target = LocalChatModel("tiny-random").load(said.append)
    assert target.precision == "int8" and target.notice is None
    assert any("building the int8 copy of tiny-random" in s for s in said)
    [folder] = [p for p in own_compiled_dir.iterdir() if p.is_dir()]
    manifest = (folder / MANIFEST).read_text()
    assert '"precision": "int8"' in manifest and '"fp32_loss"' in manifest and '"lora_inputs"' in manifest
    stamp = (folder / MANIFEST).stat().st_mtime_ns
    manager().close()  # a new engine, the same copy
    said.clear()
    LocalChatModel("tiny-random").load(said.append)
    assert LocalChatModel("tiny-random").generate(HI, GREEDY).usage.completion_tokens > 0
    assert not said and (folder / MANIFEST).stat().st_mtime_ns == stamp


def test_two_fine_tunes_answer_concurrently_over_one_base(tiny_model, two_fts):
    """Each fine-tune keeps its own behaviour when requests for it, the other and the base arrive
    together: every answer equals the one it gets alone. (That the int8 adapters compute what
    PEFT does, within int8 rounding, is tests/compiled/test_onnx_lora.py's.)"""
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import manager

    names = [*two_fts, "tiny-random"]
    alone = {n: LocalChatModel(n).generate(HI, GREEDY).text for n in names}
    assert len(set(alone.values())) == 3  # the adapters really change the answers
    together: dict[int, str] = {}

    def ask(i: int, name: str) -> None:
        together[i] = LocalChatModel(name).generate(HI, GREEDY).text

    order = names * 3
    threads = [threading.Thread(target=ask, args=(i, n)) for i, n in enumerate(order)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [together[i] for i in range(len(order))] == [alone[n] for n in order]
    assert len({LocalChatModel(n).target().engine for n in names}) == 1  # one copy of the base
    assert manager().loaded() == [f"compiled-int8:{tiny_model.path}"]


def test_adapters_are_unloaded_least_recently_used(tiny_model, two_fts, monkeypatch):
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import shutdown

    shutdown()  # engines read the limit when they start
    monkeypatch.setenv("TUNERY_MAX_ADAPTERS", "1")
    first = [LocalChatModel(n).generate(HI, GREEDY).text for n in two_fts]
    engine = LocalChatModel(two_fts[0]).target().engine
    assert len(engine.adapters.loaded) == 1  # the second evicted the first
    again = [LocalChatModel(n).generate(HI, GREEDY).text for n in two_fts]
    assert again == first  # reloaded after eviction, same answers
    assert first[0] != first[1]


def test_fp32_is_the_pytorch_engine_and_a_full_fine_tune_falls_back(tiny_model, lora_dirs):
    from tunery.models import ModelRecord, register
    from tunery.serving.local import LocalChatModel
    from tunery.serving.torch_engine import TorchEngine

    target = LocalChatModel("tiny-random", precision="fp32").target()
    assert isinstance(target.engine, TorchEngine) and target.precision == "fp32"
    register(ModelRecord(id="ft:tiny-random:full:y", kind="fine-tuned", parent="tiny-random", method="full",
                         path=tiny_model.path, source="test"))
    model = LocalChatModel("ft:tiny-random:full:y")
    target = model.load()
    assert isinstance(target.engine, TorchEngine) and "full fine-tune" in target.notice
    assert model.generate(HI, GREEDY).usage.completion_tokens > 0  # served, not refused


def test_a_deployment_keeps_its_precision(tiny_model, monkeypatch):
    from tunery.errors import InvalidInput
    from tunery.serving import deployments
    from tunery.serving.local import LocalChatModel

    monkeypatch.setenv("TUNERY_PRECISION", "int8")
    dep = deployments.create("slow", "tiny-random", precision="fp32")
    assert dep.precision == "fp32" and dep.to_openai()["precision"] == "fp32"
    assert LocalChatModel("slow").target().precision == "fp32"
    assert LocalChatModel("tiny-random").target().precision == "int8"
    with pytest.raises(InvalidInput, match="unknown precision"):
        deployments.create("bad", "tiny-random", precision="int2")


def test_cli_precision_flag_and_models_show(tiny_model, monkeypatch):
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.serving import deployments
    from tunery.serving.manager import manager, shutdown

    shutdown()
    deployments.create("fast", "tiny-random", precision="int8")
    runner = CliRunner()
    # the flag outranks the deployment's own precision
    ok = runner.invoke(cli, ["ask", "fast", "Hello", "--max-tokens", "3", "--temperature", "0", "--precision", "fp32"])
    assert ok.exit_code == 0, ok.output
    assert manager().loaded() == [f"torch:{tiny_model.path}"]
    again = runner.invoke(cli, ["ask", "fast", "Hello", "--max-tokens", "3", "--temperature", "0"])
    assert again.exit_code == 0 and f"compiled-int8:{tiny_model.path}" in manager().loaded()  # nothing left over
    bad = runner.invoke(cli, ["ask", "tiny-random", "Hello", "--precision", "int3"])
    assert bad.exit_code != 0 and "int3" in bad.output
    shown = runner.invoke(cli, ["models", "show", "tiny-random"])
    assert shown.exit_code == 0 and "int8" in shown.output, shown.output


def test_an_adapter_the_fast_path_cannot_take_falls_back_with_a_notice(tiny_model, lora_dirs, tmp_path):
    import json
    import shutil

    from tunery.models import ModelRecord, register
    from tunery.serving.local import LocalChatModel
    from tunery.serving.torch_engine import TorchEngine

    dora = shutil.copytree(lora_dirs[0], tmp_path / "dora")
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": ["lm_head"]}))
    register(ModelRecord(id="ft:tiny-random:odd:x", kind="fine-tuned", parent="tiny-random", method="lora",
                         path=dora, source="test"))
    target = LocalChatModel("ft:tiny-random:odd:x").load()
    assert isinstance(target.engine, TorchEngine) and "saves whole modules" in target.notice


def test_an_adapter_rewritten_in_place_is_converted_again(tiny_model, two_fts, lora_dirs, tmp_path):
    import os
    import shutil

    from tunery.models import get
    from tunery.serving.local import LocalChatModel

    first = LocalChatModel(two_fts[0]).generate(HI, GREEDY).text
    folder = get(two_fts[0]).path
    engine = LocalChatModel(two_fts[0]).target().engine
    files = sorted((engine.adapters.compiled.folder / "adapters").glob("*.onnx_adapter"))
    # the other fine-tune's weights written over this one's
    shutil.copy(lora_dirs[1] / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    os.utime(folder / "adapter_model.safetensors", ns=(1, 1))
    second = LocalChatModel(two_fts[0]).generate(HI, GREEDY).text
    assert second == LocalChatModel(two_fts[1]).generate(HI, GREEDY).text and second != first
    after = sorted((engine.adapters.compiled.folder / "adapters").glob("*.onnx_adapter"))
    assert len(after) == len(files) and after != files  # the stale file replaced, not kept beside


def test_requests_held_for_another_adapter_are_answered_on_close(tiny_model, two_fts):
    """A batch holds one adapter's requests; the others wait in the engine. Closing it answers them."""
    import queue

    from tunery.serving.engine import Delta
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import shutdown

    shutdown()
    targets = [LocalChatModel(n).target() for n in two_fts]
    finals: queue.Queue[Delta] = queue.Queue()
    ids = targets[0].encode(HI)

    def emit(d: Delta) -> None:
        if d.final:
            finals.put(d)

    for i in range(6):
        targets[i % 2].submit(ids, GenerationParams(max_tokens=40, temperature=0.0), emit)
    targets[0].engine.close()
    got = [finals.get(timeout=60) for _ in range(6)]
    shutdown()  # the manager forgets the closed engine
    assert len(got) == 6  # every request ended, served or told the engine closed


def test_fine_tunes_on_the_default_layers_share_a_copy_with_side_paths_there_only(tiny_model, lora_dirs, tmp_path,
                                                                                  own_compiled_dir, monkeypatch):
    """A base whose catalog LoRA adapts some layers is served from a copy with side paths on those
    only, and so are its fine-tunes that stay inside them; a fine-tune on other layers gets a
    second copy, with side paths on every layer."""
    import dataclasses

    from tunery.models.catalog import CATALOG
    from tunery.serving.manager import shutdown

    spec = CATALOG["tiny-random"]
    monkeypatch.setitem(CATALOG, "tiny-random", dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, lora_layers=(1,))))
    shutdown()
    try:
        _serve_on_the_default_layers(tiny_model, lora_dirs, tmp_path, own_compiled_dir)
    finally:
        shutdown()  # its engines serve copies made under the patched catalog: none may outlive it


def _serve_on_the_default_layers(tiny_model, lora_dirs, tmp_path, own_compiled_dir):
    import json

    from support_adapters import make_adapter
    from tunery.compiled.cache import MANIFEST
    from tunery.compiled.lora import LAYOUT
    from tunery.models import ModelRecord, register
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import describe_serving, route, serving_info

    top = make_adapter(tiny_model.path, tmp_path / "top", seed=3, layers=[1])
    base, inside, outside = (tiny_model, *(register(ModelRecord(
        id=f"ft:tiny-random:{n}:x", kind="fine-tuned", parent="tiny-random", method="lora", path=p, source="test"))
        for n, p in (("top", top), ("all", lora_dirs[0]))))
    # a checkpoint of a job from the all-layer fine-tune: its own adapter is on layer 1, but it runs
    # stacked onto its parent's, so it needs the all-layer copy too (and says so in `models show`)
    checkpoint = register(ModelRecord(id="ft:tiny-random:ck:x:ckpt-step-1", kind="fine-tuned", parent=outside.id,
                                      method="lora", path=top, source="test"))
    assert route(base, base, None)[0] == route(inside, base, None)[0] == "compiled-int8"
    assert route(outside, base, None)[0] == route(checkpoint, base, None)[0] == "compiled-int8+all"
    answers = {r.id: LocalChatModel(r.id).generate(HI, GREEDY).text for r in (base, inside, outside, checkpoint)}
    assert len(set(answers.values())) == 4  # each its own model
    copies = {p.name.split("-int8", 1)[1]: p for p in own_compiled_dir.iterdir() if (p / MANIFEST).exists()}
    assert sorted(copies) == [f"-L1-lora{LAYOUT}", f"-lora{LAYOUT}"]
    some, every = copies[f"-L1-lora{LAYOUT}"], copies[f"-lora{LAYOUT}"]
    assert json.loads((some / MANIFEST).read_text())["lora_layers"] == [1]
    assert json.loads((every / MANIFEST).read_text())["lora_layers"] is None
    assert len(list((some / "adapters").iterdir())) == 1  # the layer-1 fine-tune's
    assert len(list((every / "adapters").iterdir())) == 2  # the all-layer fine-tune's and the checkpoint's
    # `tunery models show` and the studio say which copy serves it
    assert "(adapter inputs on layers 1)" in describe_serving(serving_info(inside))
    assert "(adapter inputs on every layer)" in describe_serving(serving_info(outside))
    assert serving_info(checkpoint)["compiled"]["folder"] == str(every)
    assert serving_info(inside)["compiled"]["folder"] == str(some)
