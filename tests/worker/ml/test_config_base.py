"""The checks and dict round trips the TAPT and training configs share."""

from __future__ import annotations

import pytest

from contract.errors import ConfigError
from worker.ml.tapt import TaptConfig
from worker.ml.training import TrainConfig


@pytest.mark.parametrize(("cls", "name"), [(TaptConfig, "TAPT config"),
                                           (TrainConfig, "train config")])
def test_dict_round_trip_and_unknown_keys(cls: type, name: str) -> None:
    config = cls(batch_size=8, grad_accum=2)
    assert cls.from_dict(config.to_dict()) == config
    assert config.micro_batch_size == 4
    with pytest.raises(ConfigError, match=f"unknown {name} keys \\['batchsize'\\]"):
        cls.from_dict({"batchsize": 8})


@pytest.mark.parametrize("cls", [TaptConfig, TrainConfig])
@pytest.mark.parametrize(("field", "value", "message"), [
    ("grad_accum", 3, "divisible by grad_accum"),
    ("batch_size", 0, "batch_size must be an int >= 1"),
    ("batch_size", True, "batch_size must be an int >= 1"),
    ("warmup_ratio", 0.5, "warmup_ratio"),
    ("precision", "fp8", "precision='fp8'"),
    ("max_grad_norm", 0.0, "max_grad_norm must be > 0"),
])
def test_shared_checks_refuse_the_same_mistakes(
    cls: type, field: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**{field: value})
