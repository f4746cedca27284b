"""Adapters on the top layers by default; an explicit choice is kept."""

from __future__ import annotations

import pytest

from contract.adapter_config import DEFAULT_UPPER_LAYERS, AdapterConfig, with_default_layers


def test_a_project_without_layers_gets_the_top_layers() -> None:
    assert DEFAULT_UPPER_LAYERS == 2
    assert with_default_layers({}, 6)["layers"] == [4, 5]
    assert with_default_layers({"kind": "ia3"}, 12)["layers"] == [10, 11]
    assert with_default_layers({"kind": "bottleneck"}, 1)["layers"] == [0]
    AdapterConfig.from_dict(with_default_layers({"r": 4}, 6))  # a valid config


@pytest.mark.parametrize("adapter", [
    {"layers": None}, {"layers": [0, 1, 2]}, {"kind": "full"}, {"kind": "prompt"},
])
def test_an_explicit_choice_or_a_kind_without_layers_is_kept(adapter: dict[str, object]) -> None:
    assert with_default_layers(adapter, 6) == adapter
