"""Config resolution: precedence, typing, unknown keys, malformed YAML."""
import pytest
import yaml

from benchmark.train.config import ConfigError, resolve
from benchmark.train.run_setup import build_method
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


# --- one home per fact, profile bases, sources ------------------------------------------------------------------

def test_dataset_facts_follow_the_dataset_not_the_profile():
    # crop size and evaluation mode from the catalogue, the loss from the dataset's YAML: a profile no longer
    # carries another dataset's copies of them
    cfg = resolve(profile="pascal", dataset="cityscapes")
    assert (cfg.data.crop_size, cfg.eval.mode) == (801, "sliding")
    assert (cfg.loss.criterion, cfg.loss.conf_thresh, cfg.loss.ohem_min_kept_world_size) == ("ohem", 0.0, 4)
    assert resolve(profile="smoke").data.crop_size == 32     # the embedded tiny variant's image size


def test_a_profile_variant_is_its_base_with_a_few_lines():
    blended, classic = resolve(profile="pascal_blended").to_dict(), resolve(profile="pascal").to_dict()
    assert blended["grid"].pop("splits") == ["1_16", "1_8", "1_4", "u2pl_1_16", "u2pl_1_8", "u2pl_1_4"]
    classic["grid"].pop("splits")
    assert {**blended, "profile": "pascal"} == classic


def test_the_gpu_profiles_share_one_statement_of_the_official_recipe():
    from benchmark.train.config_files import available, profile_chain
    assert "_unimatch_official" not in available("profiles")       # a base only, not a profile to pick
    for profile in ("pascal", "pascal_blended", "cityscapes", "coco"):
        assert profile_chain(profile)[0][0] == "_unimatch_official"
        cfg = resolve(profile=profile)
        assert (cfg.train.total_batch_size, cfg.train.amp, cfg.eval.every_epochs) == (8, "off", 1)
        assert cfg.model.deep_stem and cfg.per_method == {"supervised": {"labeled_batch_factor": 2}}


@pytest.fixture
def profiles_dir(tmp_path, monkeypatch):
    from benchmark.train import config_files
    (tmp_path / "profiles").mkdir()
    monkeypatch.setattr(config_files, "CONFIG_DIR", tmp_path)
    return tmp_path / "profiles"


def test_profile_bases_are_checked(profiles_dir):
    (profiles_dir / "a.yaml").write_text("base: b\ntrain: {iters: 3}\n")
    (profiles_dir / "b.yaml").write_text("base: a\n")
    with pytest.raises(ConfigError, match="'a' is its own base: a -> b -> a"):
        resolve(profile="a")
    (profiles_dir / "b.yaml").write_text("base: gone\n")
    with pytest.raises(ConfigError, match="unknown profile 'gone'"):
        resolve(profile="a")
    (profiles_dir / "b.yaml").write_text("train: {itres: 4}\n")      # a base's keys are checked like any other
    with pytest.raises(ConfigError, match=r"train\.itres"):
        resolve(profile="a")
    (profiles_dir / "b.yaml").write_text("train: {iters: 4, lr: 0.5}\nreport_note: from b\n")
    cfg = resolve(profile="a")
    assert (cfg.train.iters, cfg.train.lr) == (3, 0.5)
    from benchmark.train.config_files import profile_report_note
    assert profile_report_note("a") == "from b" and profile_report_note("not_shipped") == ""


def test_print_config_names_where_each_value_came_from(tmp_path, capsys):
    from benchmark.train.command import main
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  lr: 0.5\n")
    assert main(["--profile", "pascal_blended", "--config", str(extra), "--print-config", "train.iters=5"]) == 0
    text = capsys.readouterr().out
    lines = {line.split(":")[0].strip(): line for line in text.splitlines()}
    assert lines["crop_size"].endswith("# dataset (datasets/catalog.py)")
    assert lines["criterion"].endswith("# dataset (configs/datasets/pascal.yaml)")
    assert lines["epochs"].endswith("# base (configs/profiles/pascal.yaml)")
    assert lines["splits"].endswith("# profile (configs/profiles/pascal_blended.yaml)")
    assert lines["lr"].endswith(f"# file ({extra})")
    assert lines["iters"].endswith("# CLI") and lines["seed"].endswith("# default")
    expected = resolve(profile="pascal_blended", config_file=str(extra), overrides=["train.iters=5"]).to_dict()
    assert yaml.safe_load(text) == expected                    # still the resolved config, as YAML


def test_a_run_config_saved_with_a_retired_key_still_loads(tmp_path):
    from benchmark.train.config import build, load_run_config
    saved = resolve(profile="smoke").to_dict()
    saved["output"]["report_note"] = "copied into runs by older code"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert load_run_config(tmp_path / "config.yaml").to_dict() == resolve(profile="smoke").to_dict()
    with pytest.raises(ConfigError, match="output.report_note"):
        build(saved)                                             # a key a config can no longer set
