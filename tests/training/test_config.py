"""What `auto` resolves to, and bad hyperparameters named by field."""

from __future__ import annotations

import pytest

from tunery.errors import InvalidInput
from tunery.training.config import Hyperparameters, auto_batch_size, auto_n_epochs


@pytest.mark.parametrize(("n", "epochs"), [(1, 25), (10, 10), (20, 5), (34, 3), (72, 3), (229, 3), (900, 2), (1300, 1),
                                           (5000, 1)])
def test_auto_epochs(n, epochs):
    assert auto_n_epochs(n) == epochs


@pytest.mark.parametrize(("n", "epochs"), [(20, 5), (64, 2), (229, 2), (5000, 1)])
def test_dpo_auto_epochs_keep_their_measured_target(n, epochs):
    from tunery.training.config import DPOHyperparameters

    assert DPOHyperparameters.parse({}).resolve(n).n_epochs == epochs


@pytest.mark.parametrize(("n", "bs"), [(10, 1), (19, 1), (20, 2), (40, 4), (72, 4), (82, 8), (159, 8), (229, 8), (100_000, 8)])
def test_auto_batch_size(n, bs):
    assert auto_batch_size(n) == bs


def test_resolve_keeps_explicit_values():
    r = Hyperparameters.parse({"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}).resolve(72)
    assert (r.n_epochs, r.batch_size, r.learning_rate_multiplier) == (2, 4, 0.5)


@pytest.mark.parametrize(("hp", "param"), [
    ({"n_epochs": 0}, "hyperparameters.n_epochs"),
    ({"n_epochs": 1.5}, "hyperparameters.n_epochs"),
    ({"n_epochs": "many"}, "hyperparameters.n_epochs"),
    ({"batch_size": True}, "hyperparameters.batch_size"),
    ({"learning_rate_multiplier": -1}, "hyperparameters.learning_rate_multiplier"),
    ({"learning_rate_multiplier": float("nan")}, "hyperparameters.learning_rate_multiplier"),
    ({"epochs": 3}, "hyperparameters.epochs"),
])
def test_bad_values_name_the_field(hp, param):
    with pytest.raises(InvalidInput) as e:
        Hyperparameters.parse(hp)
    assert e.value.param == param


def test_lora_settings_take_the_catalog_defaults_and_a_request_overrides():
    from tunery.models.catalog import CATALOG
    from tunery.training.config import LoraSettings, LoraSpec

    d = CATALOG["smollm2-135m-instruct"].training
    default = LoraSettings.from_defaults(d)
    assert (default.r, default.layers, default.target_modules) == (d.lora_r, d.lora_layers, d.lora_target_modules)
    every = LoraSettings.from_defaults(d, {"layers": "all", "r": 8, "target_modules": ["q_proj"]})
    assert (every.r, every.layers, every.target_modules, every.alpha) == (8, None, ("q_proj",), d.lora_alpha)
    assert LoraSettings.from_defaults(d, LoraSpec(layers=[29, 20, 20])).layers == (20, 29)


def test_tool_data_takes_the_catalogs_tool_layers_unless_the_request_chooses():
    from tunery.models.catalog import CATALOG
    from tunery.training.config import LoraSettings

    d = CATALOG["smollm2-135m-instruct"].training
    assert d.lora_layers == tuple(range(20, 30)) and d.tool_lora_layers is None  # measured: issue 17
    assert LoraSettings.from_defaults(d, tools=True).layers is None  # every layer
    assert LoraSettings.from_defaults(d, {"layers": [28, 29]}, tools=True).layers == (28, 29)
    assert LoraSettings.from_defaults(d, tools=False).layers == d.lora_layers


@pytest.mark.parametrize(("lora", "param"), [
    ({"target_modules": "q_proj"}, "lora.target_modules"),  # a bare string is not a list of letters
    ({"r": 1025}, "lora.r"),
    ({"alpha": 0}, "lora.alpha"),
    ({"layers": [True]}, "lora.layers"),
    ({"rank": 8}, "lora.rank"),
])
def test_bad_lora_settings_name_the_field(lora, param):
    from tunery.models.catalog import TrainingDefaults
    from tunery.training.config import LoraSettings

    with pytest.raises(InvalidInput) as e:
        LoraSettings.from_defaults(TrainingDefaults(), lora)
    assert e.value.param == param


def test_a_batch_larger_than_the_examples_is_refused():
    Hyperparameters.parse({"batch_size": 12}).check_examples(12)
    Hyperparameters.parse({}).check_examples(1)  # auto fits any file
    with pytest.raises(InvalidInput, match="larger than the 12 training examples") as e:
        Hyperparameters.parse({"batch_size": 13}).check_examples(12)
    assert e.value.param == "hyperparameters.batch_size"
