"""Search-space parsing: every override form of hydra-optuna-sweeper 1.3, values back to overrides."""

from __future__ import annotations

from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.neuropbr_optuna._search_space import format_value, grid_values, parse_params


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("interval(0.1, 2.0)", FloatDistribution(0.1, 2.0)),
        ("interval(1, 3)", FloatDistribution(1.0, 3.0)),  # interval() is float unless cast
        ("tag(log, interval(1e-5, 1e-2))", FloatDistribution(1e-5, 1e-2, log=True)),
        ("int(interval(1, 8))", IntDistribution(1, 8)),
        ("tag(log, int(interval(1, 64)))", IntDistribution(1, 64, log=True)),
        ("range(0, 10, 2)", IntDistribution(0, 8, step=2)),
        ("range(5)", IntDistribution(0, 4)),
        ("range(5, 0, -2)", IntDistribution(1, 5, step=2)),
        ("tag(log, range(1, 9))", IntDistribution(1, 8, log=True)),
        ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("choice(adam, adamw)", CategoricalDistribution(["adam", "adamw"])),
        ("choice(1, 2.5, true, x)", CategoricalDistribution([1, 2.5, True, "x"])),
        ("resnet18,resnet50", CategoricalDistribution(["resnet18", "resnet50"])),
        ("shuffle(range(3))", CategoricalDistribution([0, 1, 2])),  # unshuffled: stable across runs
        ("shuffle(c, a, b)", CategoricalDistribution(["c", "a", "b"])),
    ],
)
def test_each_sweep_form_becomes_its_distribution(override: str, expected: Any) -> None:
    space = parse_params({"key": override})
    assert space.distributions == {"key": expected}
    assert space.fixed == {}
    assert space.sources["key"] == override


def test_fixed_values_pass_through_as_override_lines() -> None:
    space = parse_params(
        {"loss.weights.gan": 0.05, "encoder": "resnet18", "flag": True}, ["+extra=1", "~removed"]
    )
    assert space.distributions == {}
    assert list(space.fixed.values()) == [
        "loss.weights.gan=0.05",
        "encoder=resnet18",
        "flag=true",
        "+extra=1",
        "~removed",
    ]
    assert space.fixed_values == {
        "loss.weights.gan": 0.05,
        "encoder": "resnet18",
        "flag": True,
        "+extra": 1,
        "~removed": None,
    }


def test_command_line_overrides_win_over_the_preset() -> None:
    space = parse_params(
        {"a": "interval(0, 1)", "b": "interval(0, 1)", "c": 3},
        ["a=0.5", "b=interval(0.2, 0.4)", "c=choice(1, 2)"],
    )
    assert space.fixed == {"a": "a=0.5"}
    assert space.distributions == {"b": FloatDistribution(0.2, 0.4), "c": CategoricalDistribution([1, 2])}


def _parse_value(text: str) -> Any:
    return OverridesParser.create().parse_override(f"key={text}").value()


@pytest.mark.parametrize(
    "value",
    [
        "resnet18",
        "12e4",
        "true",
        "null",
        "a b",
        "it's",
        "sqlite:////tmp/x y/optuna.db",
        "postgresql+psycopg2://u:p%40ss@127.0.0.1:5432/db",
        "${x}",
        3,
        0.1,
        1e-5,
        0.30000000000000004,
        True,
        False,
        None,
        [1, 2],
        {"a": 1},
    ],
)
def test_format_value_round_trips_through_hydras_parser(value: Any) -> None:
    parsed = _parse_value(format_value(value))
    assert parsed == value and type(parsed) is type(value)


def test_sampled_values_become_overrides_in_the_written_form() -> None:
    space = parse_params(
        {"fixed": 1, "lr": "tag(log, interval(1e-5, 1e-2))", "shape": "choice([1,2], {a:1}, 'x y')"}
    )
    lines = space.overrides_for({"lr": 1e-4, "shape": "[1,2]"})
    assert lines == ["fixed=1", "lr=0.0001", "shape=[1,2]"]
    assert space.overrides_for({"shape": "x y"})[-1] == "shape=x\\ y"
    assert [_parse_value(line.split("=", 1)[1]) for line in lines] == [1, 1e-4, [1, 2]]


def test_grid_lists_every_discrete_value() -> None:
    space = parse_params(
        {"a": "choice(x, y)", "b": "range(0, 3)", "c": "int(interval(1, 3))", "d": "range(0.5, 1.0, 0.25)"}
    )
    assert space.grid() == {"a": ["x", "y"], "b": [0, 1, 2], "c": [1, 2, 3], "d": [0.5, 0.75]}


def test_grid_rejects_continuous_parameters() -> None:
    with pytest.raises(ValueError, match=r"hydra.sweeper.params.lr: sampler=grid needs a discrete space"):
        grid_values("lr", FloatDistribution(0.1, 1.0))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("glob(*)", r"hydra.sweeper.params.key=glob\(\*\): .* glob\(\) is not supported"),
        (
            "tag(fancy, interval(0, 1))",
            r"hydra.sweeper.params.key: unknown tag\(s\) \['fancy'\]; supported: \['log'\]",
        ),
        ("interval(1, 1)", r"hydra.sweeper.params.key: interval\(1.0, 1.0\) is empty"),
        ("tag(log, interval(0, 1))", r"tag\(log, ...\) needs a start > 0, got 0.0"),
        ("tag(log, choice(1, 2))", r"tag\(log, ...\) applies to intervals and ranges, not choices"),
        ("range(3, 3)", r"range\(3, 3, 1\) has no elements"),
        ("tag(log, range(1, 9, 2))", r"tag\(log, range\(...\)\) needs step 1, got 2"),
    ],
)
def test_unsupported_forms_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_params({"key": override})
