"""Model factories (built-in and the user's), starting from other weights, and the Spark-less training entry point."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lakeloop.errors import ConfigError, ModelFactoryError
from lakeloop.io.lakefs import LakeFiles
from lakeloop.models import ModelSpec, build_model, fit_state_dict, load_state_dict_bytes, state_dict_bytes
from lakeloop.training.dataset import materialize_training_set
from lakeloop.training.driver import make_plan, training_key
from support.lakes import copy_lake

REPO = Path(__file__).resolve().parents[1]


def _spec(outputs: int, channels: int, size: int, **options) -> ModelSpec:
    return ModelSpec(num_outputs=outputs, input_shape=(channels, size, size), options=options)


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [("lenet5", 1, 32), ("lenet5", 3, 28), ("small_resnet", 3, 32), ("resnet18", 3, 64), ("resnet18", 1, 64)],
)
def test_built_in_models_give_one_logit_per_class(name, channels, size):
    model = build_model(name, _spec(7, channels, size)).eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, channels, size, size)).shape == (2, 7)


def test_resnet18_starts_from_a_user_supplied_weights_file_with_its_head_replaced():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    donor = resnet18(weights=None)
    state = load_state_dict_bytes(state_dict_bytes(donor))
    model = build_model("resnet18", _spec(4, 3, 64))
    fit = fit_state_dict(model, state, "file:/weights/resnet18.pt")
    assert torch.equal(model.conv1.weight, donor.conv1.weight)
    assert model.fc.out_features == 4 and fit["replaced"] == ["fc.weight", "fc.bias"]
    grey = build_model("resnet18", _spec(4, 1, 64))
    fit = fit_state_dict(grey, state, "file:/weights/resnet18.pt")
    assert fit["adapted"] == ["conv1.weight"]  # RGB filters averaged for one channel
    assert torch.allclose(grey.conv1.weight, donor.conv1.weight.mean(dim=1, keepdim=True))
    with pytest.raises(ConfigError, match="none of its 1 tensors fits the model"):
        fit_state_dict(model, {"conv9.weight": torch.zeros(1)}, "file:/weights/other.pt")


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [("lenet5", _spec(1, 1, 32), "at least 2 classes"), ("lenet5", _spec(10, 1, 12), "at least 16x16"),
     ("vgg", _spec(10, 1, 32), "neither a built-in model")],
)
def test_bad_model_settings_are_clear_errors(name, spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, spec)


USER_MODULE = """
from torch import nn

def build(spec):
    width = spec.options.get("width", 8)
    return nn.Sequential(nn.Flatten(), nn.Linear(spec.channels * spec.height * spec.width, width), nn.ReLU(),
                         nn.Linear(width, spec.num_outputs))

def make_loss(spec):
    return nn.CrossEntropyLoss(label_smoothing=0.1)

def not_a_module(spec):
    return "a string"

def broken(spec):
    raise ValueError("width must be even")
"""


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    """A module of the user's, outside lakeloop, importable the way PYTHONPATH makes it."""
    (tmp_path / "acme_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "acme_models"
    sys.modules.pop("acme_models", None)


def test_a_user_factory_builds_the_model_and_its_hooks_are_found(user_module):
    from lakeloop.models import find_hook, model_record

    model = build_model(f"{user_module}:build", _spec(3, 1, 8, width=16))
    assert model[1].out_features == 16 and model[3].out_features == 3
    assert find_hook(f"{user_module}:build", "make_loss") is not None
    assert find_hook(f"{user_module}:build", "make_optimizer") is None
    record = model_record(f"{user_module}:build", _spec(3, 1, 8, width=16))
    assert record["factory"] == "acme_models:build" and record["hooks"] == ["make_loss"]
    assert ModelSpec.from_dict(json.loads(json.dumps(record["spec"]))) == _spec(3, 1, 8, width=16)


@pytest.mark.parametrize(
    ("reference", "message"),
    [("no_such_models:build", r"module 'no_such_models' cannot be imported .*--py-files path/to/module.py"),
     ("acme_models:buld", r"'acme_models' has no attribute 'buld'"),
     ("acme_models:not_a_module", r"returned a str, not a torch.nn.Module"),
     ("acme_models:broken", r"failed for a classification of image 1x8x8 into 3 outputs: ValueError: width"),
     ("acme_models", r"package.module:factory")],
)
def test_a_factory_that_cannot_be_imported_or_fails_names_the_reference_and_the_fix(user_module, reference,
                                                                                     message):
    with pytest.raises(ModelFactoryError, match=message):
        build_model(reference, _spec(3, 1, 8))


def test_class_indices_stay_put_when_new_classes_arrive():
    from lakeloop.features.silver import stable_classes

    assert stable_classes([], {"10", "2", "1", "cat"}) == ["1", "2", "10", "cat"]
    assert stable_classes(["1", "2", "10"], {"2", "10", "3", "0"}) == ["1", "2", "10", "0", "3"]


# Runs a lakeloop entry point in a fresh interpreter where importing pyspark fails: proof that
# it needs no Spark (what runs on a GPU box without a JVM).
WITHOUT_SPARK = "import sys; sys.modules['pyspark'] = None; from {module} import main; sys.exit(main(sys.argv[1:]))"


def test_train_rank_runs_without_spark_from_a_plan(spark, digits_lake, tmp_path):
    """What runs on a GPU box: the per-process function alone, fed by a plan file."""
    profile = copy_lake(digits_lake, tmp_path / "lake", ("train.num_processes", 1), ("train.epochs", 2))
    ts = materialize_training_set(spark, profile)
    plan = make_plan(profile, ts, "plan-test", training_key(profile.train, ts))
    plan_file, out = tmp_path / "plan.json", tmp_path / "result.pt"
    plan_file.write_text(plan.to_json())
    env = {"PYTHONPATH": str(REPO / "lib"), "PATH": "/usr/bin:/bin"}
    code = WITHOUT_SPARK.format(module="lakeloop.cli.train_rank")
    proc = subprocess.run([sys.executable, "-c", code, "--plan", str(plan_file), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["world_size"] == 1 and len(summary["history"]) == 2
    assert summary["val_accuracy"] > 0.5
    # The weights are in the registry's staging area, written by the process itself; the result names them.
    staged = torch.load(out, weights_only=False)["weights_file"]
    assert staged == summary["weights_file"] and staged["uri"] == f"{plan.staging_dir}/weights.pt"
    data = LakeFiles().read_bytes(staged["uri"])
    assert (len(data), hashlib.sha256(data).hexdigest()) == (staged["bytes"], staged["sha256"])
    model = build_model("lenet5", _spec(10, 1, 32))
    model.load_state_dict(load_state_dict_bytes(data))


def test_a_plan_carries_the_profiles_train_settings_and_round_trips_as_json():
    """TrainPlan holds the TrainConfig it came from (no default declared twice); a plan file written flat
    by an earlier version is still read."""
    import dataclasses
    import pickle

    from lakeloop.config import load_profile
    from lakeloop.training.loader import ShardPlan
    from lakeloop.training.rank import TrainPlan

    cfg = load_profile("local", [("train.augmentation.crop_scale", [0.5, 1.0]), ("train.epochs", 3)]).train
    plan = TrainPlan(run_id="r", train_url="file:/t", val_url="file:/v", test_url="file:/s", spec_json="",
                     classes=("a", "b"), shards=ShardPlan(2, 8, (16, 16), 4, 2), checkpoint_dir="file:/c",
                     train=cfg, model="lenet5", class_weights=(1.0, 3.0))
    assert TrainPlan.from_json(plan.to_json()) == plan == pickle.loads(pickle.dumps(plan))
    flat = json.loads(plan.to_json())
    settings = flat.pop("train")
    flat.update({k: v for k, v in settings.items() if k not in ("model", "class_weights")})
    old = TrainPlan.from_json(json.dumps(flat))
    assert old.train == dataclasses.replace(cfg, model="lenet5") and old.class_weights == (1.0, 3.0)


def test_a_failing_training_process_is_named_by_its_rank_its_own_error_and_its_traceback(spark, digits_lake,
                                                                                          tmp_path):
    """TorchDistributor's own error says only that training failed: the ranks' records say why."""
    import dataclasses

    from lakeloop.training.driver import TrainingFailed, run_distributed

    profile = copy_lake(digits_lake, tmp_path / "lake", ("train.epochs", 1))
    ts = materialize_training_set(spark, profile)
    plan = make_plan(profile, ts, "plan-fails", training_key(profile.train, ts))
    vanished = dataclasses.replace(plan, train_url=f"{plan.train_url}-vanished")
    with pytest.raises(TrainingFailed, match=r"training failed: rank [01] on \S+ raised \w+") as failed:
        run_distributed(vanished)
    message = str(failed.value)
    assert "-vanished" in message and "Its traceback is in " in message
    assert 'File "' in message.split("it ends:", 1)[1]  # the end of the rank's traceback, not the wrapper's
