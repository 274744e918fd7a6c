"""A model whose weights are gone is named with the way to get them back: pulled again when it came
from the catalog, put back or added again when it was added from a folder."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from tunery.errors import InvalidInput


def _asked(name: str) -> InvalidInput:
    from tunery.cli.main import cli

    r = CliRunner().invoke(cli, ["ask", name, "hello?"])
    assert isinstance(r.exception, InvalidInput), r.output  # the CLI's edge shows it as one line
    assert r.exception.param == "model" and "are missing at" in r.exception.message
    return r.exception


def test_a_local_model_whose_folder_is_gone_is_added_again_not_pulled(tiny_model_dir, tmp_path):
    from tunery.models.pull import add_local

    folder = shutil.copytree(tiny_model_dir, tmp_path / "mine")
    add_local("mine", folder)
    shutil.rmtree(folder)
    hint = _asked("mine").hint
    assert "tunery models pull" not in hint, hint  # there is nothing to pull a local model from
    assert "tunery models remove mine" in hint and "tunery models add mine FOLDER" in hint, hint


def test_a_catalog_model_whose_folder_is_gone_is_pulled_again(tmp_path):
    from tunery.models import ModelRecord, register

    register(ModelRecord(id="tiny-random", kind="base", path=tmp_path / "gone", source="builtin-tiny",
                         meta={"catalog": "tiny-random"}))
    assert "tunery models pull tiny-random" in _asked("tiny-random").hint
