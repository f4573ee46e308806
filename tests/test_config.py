"""Typed configs: compose-time type/choice errors, start-up range checks naming the key, runtime keys
kept out of checkpoints, old checkpoints still loading, and new model YAMLs accepted."""

import pytest
import torch
from hydra.errors import ConfigCompositionException

from stereo.checkpoint import load_network
from stereo.config import CONF_DIR, TrainAppConfig, check_config, load_config
from stereo.errors import ConfigError
from stereo.models import build_model, count_parameters
from stereo.train import loss_weights


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.batch_size=abc", "batch_size"),
        ("precision=fp8", "fp8"),
        ("val.mask=everything", "everything"),
        ("model.volume=cost", "cost"),
        ("train.bogus=1", "bogus"),
    ],
)
def test_wrong_type_or_choice_fails_at_compose_time(override, expected):
    with pytest.raises(ConfigCompositionException) as info:
        load_config("train", [override])
    chain = f"{info.value} {info.value.__cause__}"
    assert expected in chain
    if override.startswith("precision"):
        assert "fp32, bf16, fp16" in chain  # the valid values are listed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=-2", "train.batch_size=-2: must be >= 1"),
        ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
        ("train.lr=-1e-3", "train.lr=-0.001: must be > 0"),
        ("device=gpu", "device=gpu: expected auto, cpu, cuda, cuda:N or mps"),
        ("data.crop_size=[1]", "data.crop_size=[1]: expected 2 values"),
        ("data.crop_size=[250,512]", "data.crop_size=[250,512]: must be a multiple of 16"),
        ("model.max_disp=100", "model.max_disp=100: must be a multiple of 16"),
        ("val.limit=-3", "val.limit=-3: must be >= -1"),
        ("data.augment.eraser_prob=1.5", "data.augment.eraser_prob=1.5: must be <= 1"),
        ("model.feature.attention.0.heads=0", "model.feature.attention.0.heads=0: must be >= 1"),
    ],
)
def test_range_errors_name_key_value_and_rule(override, message):
    cfg = load_config("train", ["model=ea_psmnet_light", override])
    with pytest.raises(ConfigError) as info:
        check_config(cfg, TrainAppConfig)
    assert message in str(info.value)


def test_missing_required_keys_are_named():
    cfg = load_config("infer", ["left=a.png"])
    from stereo.config import InferAppConfig

    with pytest.raises(ConfigError, match=r"right is required"):
        check_config(cfg, InferAppConfig)


def test_defaults_are_valid():
    for name, over in (("train", []), ("eval", ["checkpoint=x"]), ("infer", ["checkpoint=x", "left=a", "right=b"])):
        from stereo.config import SCHEMAS

        check_config(load_config(name, over), SCHEMAS[name])


def test_validation_and_eval_share_the_protocol():
    t, e = load_config("train"), load_config("eval", ["checkpoint=x"])
    assert (t.val.render_pass, t.val.mask, t.val.averaging) == (e.data.render_pass, e.mask, e.averaging)


def test_new_model_yaml_needs_no_code(tmp_path):
    """A model YAML with a new name builds (no whitelist); its architecture keys are typed."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "model/my_net.yaml").write_text("defaults:\n  - psmnet\n  - _self_\nname: my_net\nhourglasses: 2\n")
    cfg = load_config("train", ["model=my_net"], config_dir=conf)
    model = build_model(cfg.model)
    assert model.hourglasses == 2 and model.config.name == "my_net"


def test_runtime_keys_stay_out_of_checkpoints_and_old_checkpoints_load(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    assert not {"eval_chunk_rows", "channels_last_3d", "loss_weights"} & set(ckpt["model_config"])
    # A checkpoint written before runtime keys moved out of the model config still loads.
    old = {**ckpt, "model_config": {**ckpt["model_config"], "eval_chunk_rows": 8, "channels_last_3d": False,
                                    "loss_weights": [0.7, 1.0], "name": "ea_psmnet_light"}}  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    runtime = {"eval_chunk_rows": 16, "channels_last_3d": False, "fold_batchnorm": False}  # all parameters kept
    model, _ = load_network(tmp_path / "old.pt", torch.device("cpu"), runtime)
    assert model.runtime.eval_chunk_rows == 16 and model.memory_format == torch.contiguous_format
    assert count_parameters(model) == sum(v.numel() for k, v in ckpt["model"].items() if "running" not in k
                                          and "num_batches" not in k)  # fmt: skip


def test_loss_weights_follow_the_heads():
    assert loss_weights(None, 3) == [0.5, 0.7, 1.0] and loss_weights(None, 2) == [0.7, 1.0]
    assert loss_weights([1, 1], 2) == [1.0, 1.0]
    with pytest.raises(ConfigError, match="2 values for a model with 3 heads"):
        loss_weights([1, 1], 3)
    with pytest.raises(ConfigError, match="set train.loss_weights"):
        loss_weights(None, 4)


def test_experiment_overlay_and_both_passes(sample_root):
    cfg = load_config("train", ["experiment=shipped"])
    assert cfg.model.name == "ea_psmnet_light" and cfg.data.render_pass == "both" and cfg.train.max_steps == 600
    assert str(cfg.model.refine) == "modes" and str(cfg.model.subpixel) == "match" and cfg.model.subpixel_steps == 2
    assert str(cfg.model.subpixel_select) == "learned" and cfg.model.subpixel_rounds == 1 and cfg.train.cache_frozen
    assert list(cfg.train.freeze) == ["feature_extraction", "aggregation", "refinement", "subpixel.features"]
    check_config(cfg, TrainAppConfig)
    from stereo.data.registry import dataset_samples

    cfg.data.root, cfg.data.extra_roots = str(sample_root), []
    both = dataset_samples(cfg.data, "train")
    clean = dataset_samples(cfg.data, "train", "clean")
    final = dataset_samples(cfg.data, "train", "final")
    assert both == clean + final and all("cleanpass" in str(s.left) for s in clean)
    assert [s.disparity for s in clean] == [s.disparity for s in final]


def test_help_names_the_keys_that_matter():
    import subprocess
    import sys

    from tests.conftest import REPO

    for script, keys in (("train.py", ["data.root=", "train.batch_size=", "train.resume=", "experiment="]),
                         ("evaluate.py", ["checkpoint=", "method=", "mask=", "early_exit="]),
                         ("infer.py", ["left=", "output_dir=", "calib=", "point_cloud="])):  # fmt: skip
        out = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], capture_output=True,
                             text=True, timeout=120).stdout  # fmt: skip
        assert "Examples:" in out and "powered by Hydra" not in out, out
        for k in keys:
            assert k in out, (script, k)
    assert "model:" not in out  # infer lists no config group it cannot use


@pytest.mark.parametrize("args", [["evaluate.py", "--help"], ["make_sceneflow_sample.py", "--help"],
                                  ["bench_chart.py", "--help"]])  # fmt: skip
def test_output_into_a_closed_pipe_stops_quietly(args):
    # `stereo-eval --help | head`: the reader is gone before the help is written.
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / args[0]), *args[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # before the interpreter has even started
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()[-2000:]


def test_runtime_settings_have_one_default(checkpoint):
    """Runtime settings reach models only through RuntimeConfig: a model built or loaded without any takes
    the schema's values (loading used to keep BatchNorm unfolded, against the schema's fold_batchnorm=true)."""
    from stereo.config import RuntimeConfig, runtime_config

    assert build_model(load_config("model/ea_psmnet_light")).runtime == RuntimeConfig()
    loaded, _ = load_network(checkpoint, torch.device("cpu"))
    assert loaded.runtime == RuntimeConfig()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in loaded.modules())
    kept, _ = load_network(checkpoint, torch.device("cpu"), {"fold_batchnorm": False, "eval_chunk_rows": 8})
    assert kept.runtime == runtime_config(None, fold_batchnorm=False, eval_chunk_rows=8)
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in kept.modules())
    with pytest.raises(ConfigError, match="exit_threshold=2: must be <= 1"):
        runtime_config(None, exit_threshold=2)


def _leaves(node, prefix=""):
    """(dotted key, value) of every leaf of a plain YAML mapping; lists are leaves."""
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, f"{key}.")
        else:
            yield key, v


def _yaml_files():
    """(file below conf/, app, overrides that select it, key prefix of its values in the composed config)."""
    for app in ("train", "eval", "infer", "export"):
        yield f"{app}.yaml", app, [], ""
    for group in ("model", "data", "experiment"):
        for f in sorted((CONF_DIR / group).glob("*.yaml")):
            yield f"{group}/{f.name}", "train", [f"{group}={f.stem}"], "" if group == "experiment" else f"{group}."


@pytest.mark.parametrize("rel", [f[0] for f in _yaml_files()])
def test_no_yaml_value_restates_what_it_would_be_anyway(rel, tmp_path):
    """The schemas hold the defaults: a value in a YAML must change the composed config (removing every
    value of the file, one file at a time, must change each of them), else it is a second definition."""
    import shutil

    from omegaconf import OmegaConf

    _, app, overrides, prefix = next(f for f in _yaml_files() if f[0] == rel)
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    raw = OmegaConf.to_container(OmegaConf.load(conf / rel))
    kept = {k: v for k, v in raw.items() if k in ("defaults", "hydra")}
    (conf / rel).write_text(("# @package _global_\n" if prefix == "" and "/" in rel else "") + OmegaConf.to_yaml(kept))
    full = OmegaConf.to_container(load_config(app, overrides), resolve=True, enum_to_str=True)
    bare = OmegaConf.to_container(load_config(app, overrides, config_dir=conf), resolve=True, enum_to_str=True)
    values = {k: v for k, v in _leaves({k: v for k, v in raw.items() if k not in kept})}
    restated = [k for k in values if OmegaConf.select(OmegaConf.create(full), prefix + k) ==
                OmegaConf.select(OmegaConf.create(bare), prefix + k)]  # fmt: skip
    assert not restated, f"conf/{rel} restates what the schema or an earlier file already gives: {restated}"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["regression=local", "model.refine=modes"], "regression=local with model.refine=modes"),
        (["train.batch_size=4", "train.micro_batch=3"], "train.micro_batch=3 must divide train.batch_size=4"),
        (
            ["early_exit=head", "exit_head=3", "model.hourglasses=2"],
            r"exit_head=3: the model has heads 1..2 \(model.hourglasses\)",
        ),
    ],
)
def test_refused_combinations_stop_before_any_work(tmp_path, overrides, match):
    """Keys that refuse each other are refused by check_config, with the config, before the dataset is
    looked at (its root here does not exist) or a model is built."""
    from stereo.train import Trainer

    cfg = load_config("train", ["model=ea_psmnet_light", f"data.root={tmp_path / 'nowhere'}", *overrides])
    with pytest.raises(ConfigError, match=match):
        check_config(cfg, TrainAppConfig)
    with pytest.raises(ConfigError, match=match):
        Trainer(cfg, tmp_path / "run")
    fine = load_config("train", ["model=ea_psmnet_light", "regression=local", "model.refine=modes", "refinement=false"])
    check_config(fine, TrainAppConfig)  # the windowed estimate alone: allowed
