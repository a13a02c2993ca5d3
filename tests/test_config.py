"""metaal.config: YAML + command-line overrides into a checked tree of dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from metaal.config import ConfigError, from_dict, help_text, load_config, parse_overrides, to_dict
from metaal.errors import MetaalError


@dataclass
class Trainer:
    name: Literal["reinforce", "oracle"] = field(default="reinforce", metadata={"help": "how the policy is trained"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    steps: int = field(default=100, metadata={"help": "meta-training steps"})


@dataclass
class Episode:
    classes: int = field(default=2, metadata={"help": "classes per episode"})
    pool_per_class: int = field(default=5, metadata={"help": "unlabelled pool size per class"})
    budget: int = 4  # no help text on purpose

    def validate(self):
        if self.pool_per_class < 1:
            raise ValueError("pool_per_class must be >= 1")
        if self.budget > self.classes * self.pool_per_class:
            raise ValueError(f"budget {self.budget} is larger than the pool ({self.classes * self.pool_per_class})")


@dataclass
class Source:
    dataset: str = field(default="mnist", metadata={"help": "dataset name"})
    classes: list[int] | None = field(default=None, metadata={"help": "class ids to keep; null keeps all"})


@dataclass
class Root:
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    deterministic: bool = field(default=False, metadata={"help": "use deterministic kernels"})
    sources: list[Source] = field(default_factory=lambda: [Source()], metadata={"help": "datasets to sample from"})
    trainer: Trainer = field(default_factory=Trainer, metadata={"help": "meta-training"})
    episode: Episode = field(default_factory=Episode)
    tags: tuple[str, ...] = field(default=(), metadata={"help": "labels for the run"})
    note: str | None = None


YAML = """\
seed: 7
device: cpu
sources:
  - dataset: omniglot
    classes: [1, 2, 3]
  - dataset: mnist
trainer:
  name: oracle
  lr: 0.1
  steps: 5
episode: {classes: 3}
tags: [a, b]
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(YAML)
    return path


def error_of(schema, data, source="x.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        from_dict(schema, data, source)
    return str(info.value)


def test_no_file_and_empty_file_give_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(Root) == Root()
    assert load_config(Root, empty) == Root()
    assert from_dict(Root, {}) == Root()
    assert Root().sources == [Source()] and Root().trainer.lr == 0.001


def test_yaml_file_fills_the_tree(config_file):
    config = load_config(Root, config_file)
    assert config.seed == 7 and config.device == "cpu"
    assert config.sources == [Source("omniglot", [1, 2, 3]), Source("mnist", None)]
    assert config.trainer == Trainer(name="oracle", lr=0.1, steps=5)
    assert config.episode == Episode(classes=3)  # the rest of the section keeps its defaults
    assert config.tags == ("a", "b") and isinstance(config.tags, tuple)


def test_overrides_in_all_three_forms_beat_the_yaml(config_file):
    overrides = ["--trainer.lr", "0.01", "--trainer.name=reinforce", "episode.budget=6", "--tags", "[x]", "note=null"]
    config = load_config(Root, config_file, overrides)
    assert config.trainer == Trainer(name="reinforce", lr=0.01, steps=5)  # steps still from the file
    assert config.episode == Episode(classes=3, budget=6)
    assert config.tags == ("x",) and config.note is None
    assert config.sources[0].dataset == "omniglot"


def test_overriding_a_list_replaces_it_and_overrides_work_without_a_file(config_file):
    config = load_config(Root, config_file, ["sources=[{dataset: cifar}]"])
    assert config.sources == [Source("cifar")]
    assert load_config(Root, None, ["--seed", "3", "deterministic=true"]) == Root(seed=3, deterministic=True)


def test_parse_overrides_reads_values_as_yaml():
    args = ["--a.b", "1", "--a.c=true", "d=[1, 2]", "--e", "abc", "--f", "-3", "g=null", "h=0.5"]
    assert parse_overrides(args) == {"a": {"b": 1, "c": True}, "d": [1, 2], "e": "abc", "f": -3, "g": None, "h": 0.5}
    assert parse_overrides(["a={x: 1}", "a.y=2", "b.c=1", "b=2"]) == {"a": {"x": 1, "y": 2}, "b": 2}


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--trainer.lr"], "'--trainer.lr' needs a value"),
        (["--trainer.lr", "--seed", "1"], "'--trainer.lr' needs a value"),
        (["trainer.lr"], "expected '--key value' or 'key=value', got 'trainer.lr'"),
        (["trainer..lr=1"], "bad key 'trainer..lr'"),
        (["seed=[1, 2"], "cannot read the value of 'seed'"),
    ],
)
def test_malformed_overrides_are_config_errors(args, reason):
    with pytest.raises(ConfigError, match="command line: ") as info:
        parse_overrides(args)
    assert reason in str(info.value)


def test_int_is_accepted_for_float_and_converted():
    config = from_dict(Root, {"trainer": {"lr": 1}})
    assert config.trainer.lr == 1.0 and type(config.trainer.lr) is float
    # PyYAML reads `1e-3` (no dot) as a string; a float field still takes it.
    assert from_dict(Root, yaml.safe_load("trainer: {lr: 1e-3}")).trainer.lr == 0.001


@pytest.mark.parametrize(
    "data, message",
    [
        ({"trainer": {"lr": "abc"}}, "'trainer.lr' must be a float, got 'abc' (str)"),
        ({"trainer": {"name": "ppo"}}, "'trainer.name' must be one of 'reinforce', 'oracle'; got 'ppo'"),
        ({"sources": [{"dataset": "a"}, {"dataset": 3}]}, "'sources[1].dataset' must be a str, got 3 (int)"),
        ({"sources": [{"classes": [1, "x"]}]}, "'sources[0].classes[1]' must be an int, got 'x' (str)"),
        ({"sources": [{"classes": "x"}]}, "'sources[0].classes' must be a list or null, got 'x' (str)"),
        ({"sources": {"dataset": "a"}}, "'sources' must be a list, got {'dataset': 'a'} (dict)"),
        ({"sources": ["mnist"]}, "'sources[0]' must be a mapping of keys, got 'mnist' (str)"),
        ({"trainer": 5}, "'trainer' must be a mapping of keys, got 5 (int)"),
        ({"trainer": {"steps": True}}, "'trainer.steps' must be an int, got True (bool)"),
        ({"trainer": {"lr": False}}, "'trainer.lr' must be a float, got False (bool)"),
        ({"deterministic": 1}, "'deterministic' must be a bool, got 1 (int)"),
        ({"seed": None}, "'seed' must be an int, got None (NoneType)"),
        ({"tags": "a"}, "'tags' must be a list, got 'a' (str)"),
        ({"tags": ["a", 2]}, "'tags[1]' must be a str, got 2 (int)"),
    ],
)
def test_bad_values_name_the_key_the_source_and_what_is_allowed(data, message):
    assert error_of(Root, data) == f"x.yaml: {message}"


def test_unknown_keys_list_the_allowed_keys_and_suggest_the_closest():
    assert error_of(Root, {"trainer": {"lrr": 0.1}}) == (
        "x.yaml: unknown key 'trainer.lrr'; keys under 'trainer' are: name, lr, steps; did you mean 'lr'?"
    )
    assert error_of(Root, {"sed": 1}).startswith("x.yaml: unknown key 'sed'; top-level keys are: seed, device,")
    assert error_of(Root, {"sed": 1}).endswith("did you mean 'seed'?")
    assert "did you mean" not in error_of(Root, {"sources": [{"zzzzzz": 1}]})
    assert "unknown key 'sources[0].zzzzzz'; keys under 'sources[0]' are: dataset, classes" in error_of(
        Root, {"sources": [{"zzzzzz": 1}]}
    )


def test_errors_say_whether_the_bad_key_came_from_the_file_or_the_command_line(config_file):
    with pytest.raises(ConfigError) as info:
        load_config(Root, config_file, ["--trainer.lrr", "1"])
    assert str(info.value).startswith("command line: unknown key 'trainer.lrr'")
    with pytest.raises(ConfigError) as info:
        load_config(Root, config_file, ["trainer={steps: x}"])
    assert str(info.value) == "command line: 'trainer.steps' must be an int, got 'x' (str)"
    config_file.write_text(YAML.replace("steps: 5", "steps: five"))
    with pytest.raises(ConfigError) as info:
        load_config(Root, config_file, ["--trainer.lr=0.5"])
    assert str(info.value) == f"{config_file}: 'trainer.steps' must be an int, got 'five' (str)"


def test_validate_hook_errors_name_the_section():
    with pytest.raises(ConfigError) as info:
        from_dict(Root, {"episode": {"pool_per_class": 0}})
    assert str(info.value) == "config: 'episode': pool_per_class must be >= 1"
    assert isinstance(info.value.__cause__, ValueError) and isinstance(info.value, MetaalError)
    with pytest.raises(ConfigError) as info:
        load_config(Root, None, ["episode.budget=11"])
    assert str(info.value) == "config (with command-line overrides): 'episode': budget 11 is larger than the pool (10)"
    assert from_dict(Root, {"episode": {"budget": 10}}).episode.budget == 10


def test_to_dict_round_trips_and_serialises(config_file):
    config = load_config(Root, config_file, ["note=hello"])
    data = to_dict(config)
    assert data["tags"] == ["a", "b"] and data["sources"][0] == {"dataset": "omniglot", "classes": [1, 2, 3]}
    assert from_dict(Root, data) == config
    assert from_dict(Root, json.loads(json.dumps(data))) == config
    assert from_dict(Root, yaml.safe_load(yaml.safe_dump(data))) == config


def test_help_text_lists_every_dotted_key_with_type_default_and_help():
    lines = {line.split()[0]: line for line in help_text(Root).splitlines()}
    expected = [
        "seed", "device", "deterministic", "sources", "sources[].dataset", "sources[].classes", "trainer",
        "trainer.name", "trainer.lr", "trainer.steps", "episode", "episode.classes", "episode.pool_per_class",
        "episode.budget", "tags", "note",
    ]  # fmt: skip
    assert list(lines) == expected
    assert lines["trainer.lr"].split() == ["trainer.lr", "float", "=", "0.001", "Adam", "learning", "rate"]
    assert '"reinforce" | "oracle" = "reinforce"' in lines["trainer.name"]
    assert "list[int] | null = null" in lines["sources[].classes"] and "class ids to keep" in lines["sources[].classes"]
    assert 'list[Source] = [{"dataset": "mnist", "classes": null}]' in lines["sources"]
    assert lines["episode.budget"].split() == ["episode.budget", "int", "=", "4"]
    assert "deterministic kernels" in lines["deterministic"] and "false" in lines["deterministic"]


def test_bad_yaml_missing_file_and_non_mapping_top_level(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\ntrainer: [1, 2\ndevice: cpu\n")
    with pytest.raises(ConfigError) as info:
        load_config(Root, bad)
    assert str(info.value).startswith(f"{bad}: not valid YAML") and "line 3" in str(info.value)
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(Root, tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping of keys, got list"):
        load_config(Root, listing)
    assert error_of(Root, [1, 2]) == "x.yaml: the top level must be a mapping of keys, got [1, 2] (list)"
