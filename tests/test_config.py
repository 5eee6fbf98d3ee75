import pytest

from tfrs_movies.config import DEFAULTS, ConfigError, load_config, parse_override
from tfrs_movies.train import config_from_args, parse_args


def test_defaults_when_nothing_given():
    assert load_config() == DEFAULTS


def test_precedence_defaults_file_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  batch_size: 64\nmodel:\n  embedding_dim: 16\n")
    config = load_config(path, ["train.epochs=3"])
    assert config["train"]["epochs"] == 3  # --set beats the file
    assert config["train"]["batch_size"] == 64  # the file beats the defaults
    assert config["train"]["learning_rate"] == DEFAULTS["train"]["learning_rate"]


def test_cli_shorthands_and_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n")
    args = parse_args(["--config", str(path), "--epochs", "2", "--batch-size", "32", "--lr", "0.5",
                       "--run-dir", "/tmp/x", "--set", "model.user_layers=[32, 16]"])  # fmt: skip
    config = config_from_args(args)
    assert config["train"]["epochs"] == 2
    assert config["train"]["batch_size"] == 32
    assert config["train"]["learning_rate"] == 0.5
    assert config["run_dir"] == "/tmp/x"
    assert config["model"]["user_layers"] == [32, 16]


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epoch=3", "train.epoch"),
        ("train.epochs=abc", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("data.name=movielens", "data.name"),
        ("data.split.kind=sideways", "data.split.kind"),
        ("data.split.test_fraction=1.5", "data.split.test_fraction"),
        ("run_dir=3", "run_dir"),
        ("model.user_layers=5", "model.user_layers"),
    ],
)
def test_bad_key_or_value_names_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override])


def test_unknown_key_in_file_names_the_key_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match=r"'train.batchsize'.*train.batch_size"):
        load_config(path)


def test_override_values_are_yaml():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=null") == ("a", None)
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ ships at least one experiment"
    for path in configs:
        load_config(path)
