"""Config resolution: precedence, typing, unknown keys, malformed YAML."""
import pytest

from benchmark.config import ConfigError, resolve
from benchmark.trainer import build_method
from methods.base import MethodError
from methods.settings import LossSettings


def test_precedence_cli_over_flags_over_profile_over_dataset(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  iters: 77\n  lr: 0.5\n")
    cfg = resolve(profile="smoke", method="unimatch", seed=3, config_file=str(extra),
                  overrides=["train.lr=0.25", "method.weight_fp=0.4"])
    assert cfg.data.dataset == "animals_tiny"          # from the profile
    assert cfg.train.iters == 77                       # --config over profile
    assert cfg.train.lr == 0.25                        # override over --config
    assert cfg.train.seed == 3
    assert cfg.method == {"name": "unimatch", "weight_fp": 0.4}


def test_dataset_yaml_is_below_profile_and_cli():
    cfg = resolve(profile="default", dataset="cityscapes", overrides=["loss.conf_thresh=0.5"])
    assert cfg.loss.criterion == "ohem" and cfg.eval.mode == "sliding"
    assert cfg.loss.conf_thresh == 0.5


@pytest.mark.parametrize("override, culprit", [
    ("train.itres=5", "train.itres"),
    ("bogus.key=1", "bogus"),
    ("train.iters=abc", "train.iters"),
    ("train.amp", "train.amp"),
])
def test_bad_overrides_name_the_key(override, culprit):
    with pytest.raises(ConfigError, match=culprit.replace(".", r"\.")):
        resolve(profile="smoke", overrides=[override])


def test_int_accepted_for_float_and_types_are_enforced():
    cfg = resolve(profile="smoke", overrides=["train.lr=1"])
    assert isinstance(cfg.train.lr, float)
    with pytest.raises(ConfigError, match="train.threads"):
        resolve(profile="smoke", overrides=["train.threads=1.5"])


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iters: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*line"):
        resolve(profile="smoke", config_file=str(bad))


def test_unknown_profile_and_dataset_list_known_ones():
    with pytest.raises(ConfigError, match="known: .*smoke"):
        resolve(profile="nope")
    with pytest.raises(ConfigError, match="unknown dataset"):
        resolve(profile="smoke", dataset="imagenet")


def test_method_keys_checked_against_the_method():
    cfg = resolve(profile="smoke", method="fixmatch", overrides=["method.weight_fp=0.4"])
    with pytest.raises(MethodError, match="method.weight_fp"):
        build_method(cfg, num_classes=3)
    cfg = resolve(profile="smoke", method="unimatch", overrides=["method.components.dual_strong=false"])
    assert build_method(cfg, num_classes=3).on == {"feature_perturbation": True, "dual_strong": False}
    cfg = resolve(profile="smoke", method="unimatch", overrides=["method.components.feature_agg=false"])
    with pytest.raises(MethodError, match="feature_agg"):
        build_method(cfg, num_classes=3)


def test_config_keys_and_method_parameters_share_one_type_conversion():
    # YAML 1.1 reads 1e-4 (no dot) as a string: both kinds of key take it as the number it means.
    cfg = resolve(profile="smoke", method="unimatch", overrides=["train.lr=1e-4", "method.weight_fp=1e-4"])
    assert cfg.train.lr == 1e-4 and build_method(cfg, num_classes=3).params.weight_fp == 1e-4
    assert isinstance(cfg.loss, LossSettings)   # the config's loss section is the methods layer's type


def test_per_method_settings_apply_only_to_their_method(tmp_path):
    extra = tmp_path / "p.yaml"
    extra.write_text("per_method:\n  supervised:\n    labeled_batch_factor: 2\n")
    sup = build_method(resolve(profile="smoke", method="supervised", config_file=str(extra)), 3)
    assert sup.labeled_batch_size(4) == 8
    fix = build_method(resolve(profile="smoke", method="fixmatch", config_file=str(extra)), 3)
    assert fix.labeled_batch_size(4) == 4


def test_hash_ignores_seed_and_output_but_not_recipe():
    a = resolve(profile="smoke", seed=0)
    b = resolve(profile="smoke", seed=1, overrides=["output.results_dir=/tmp/x"])
    c = resolve(profile="smoke", overrides=["train.lr=0.3"])
    assert a.hash() == b.hash() != c.hash()
