"""What keeps importing the plan cheap, checked by behaviour (speed itself is the benchmarks' job).

The config models take their field descriptions from the docstrings under the fields through one
parse of stacks/config.py (`stacks.config._describe_fields`), not through pydantic's
`use_attribute_docstrings`, which re-reads and re-parses the source once per class at import.
"""

from __future__ import annotations

import pytest

from stacks import config


def _models() -> list[type[config.Model]]:
    return [m for m in vars(config).values() if isinstance(m, type) and issubclass(m, config.Model)]


def test_pydantic_does_not_read_the_source_at_import() -> None:
    assert not config.Model.model_config.get("use_attribute_docstrings")


def test_descriptions_follow_pydantics_attribute_docstring_rule() -> None:
    docs = pytest.importorskip("pydantic._internal._docs_extraction")
    for model in _models():
        expected = docs.extract_docstrings_from_cls(model, use_inspect=True)
        got = {name: info.description for name, info in model.model_fields.items() if info.description}
        assert got == {name: doc for name, doc in expected.items() if name in model.model_fields}, model.__name__
