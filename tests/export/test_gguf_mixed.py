"""The mixed 4-bit GGUF rule: matrices that 4-bit rounding hurts most stay 8-bit, within a budget."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from gguf import quants  # noqa: E402

from tunery.export.gguf_export import choose_types  # noqa: E402

Q4_1 = gguf.GGMLQuantizationType.Q4_1


def _on_grid(seed: int) -> np.ndarray:
    """A matrix whose values already sit on the Q4_1 grid (as SmolLM2's packaged weights do)."""
    w = np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32)
    return quants.dequantize(quants.quantize(w, Q4_1), Q4_1).reshape(w.shape)


def _types(tensors: dict[str, np.ndarray]) -> dict[str, str]:
    return {k: v[0].name for k, v in choose_types(tensors, "q4_1").items()}


def test_on_grid_matrices_stay_4_bit_and_changed_ones_go_8_bit():
    tensors = {f"blk.{i}.ffn_up.weight": _on_grid(i) for i in range(5)}
    tensors["blk.5.ffn_up.weight"] = _on_grid(5) + 0.01  # a fine-tune moved it off the grid
    tensors["token_embd.weight"] = _on_grid(9)
    tensors["blk.0.attn_norm.weight"] = np.ones(64, dtype=np.float32)
    types = _types(tensors)
    assert types["blk.5.ffn_up.weight"] == "Q8_0"
    assert all(types[f"blk.{i}.ffn_up.weight"] == "Q4_1" for i in range(5))
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    # the bytes written are the type's: an on-grid matrix round-trips exactly
    qtype, raw = choose_types({"a": tensors["blk.0.ffn_up.weight"]}, "q4_1")["a"]
    assert np.array_equal(quants.dequantize(raw, qtype).reshape(64, 64), tensors["blk.0.ffn_up.weight"])


def test_at_most_a_third_of_the_parameters_go_8_bit_worst_first():
    tensors = {f"m{i}": _on_grid(i) for i in range(6)}
    rng = np.random.default_rng(0)
    for i, noise in ((3, 0.02), (4, 0.05), (5, 0.08)):  # three changed matrices, half the parameters
        tensors[f"m{i}"] = tensors[f"m{i}"] + rng.standard_normal((64, 64)).astype(np.float32) * noise
    types = _types(tensors)
    assert [k for k, t in types.items() if t == "Q8_0"] == ["m4", "m5"]  # two of six: the budget


def test_a_model_with_uniform_error_stays_all_4_bit():
    rng = np.random.default_rng(1)
    tensors = {f"m{i}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(6)}
    assert set(_types(tensors).values()) == {"Q4_1"}
    assert {v[0].name for v in choose_types(tensors, "q8_0").values()} == {"Q8_0"}  # only 4-bit types mix
