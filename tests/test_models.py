"""Model architectures, transfer-learning weights from a file, and the Spark-less training entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lakeloop.errors import ConfigError
from lakeloop.models import build_model, load_state_dict_bytes, state_dict_bytes
from lakeloop.training.dataset import materialize_training_set
from lakeloop.training.driver import make_plan, training_key
from support.lakes import copy_lake

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("architecture", "channels", "size"),
    [("lenet5", 1, 32), ("lenet5", 3, 28), ("small_resnet", 3, 32), ("resnet18", 3, 64), ("resnet18", 1, 64)],
)
def test_architectures_give_one_logit_per_class(architecture, channels, size):
    model = build_model(architecture, 7, channels, size, size).eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, channels, size, size)).shape == (2, 7)


def test_resnet18_starts_from_a_user_supplied_weights_file():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    donor = resnet18(weights=None)
    state = load_state_dict_bytes(state_dict_bytes(donor))
    model = build_model("resnet18", 4, 3, 64, 64, pretrained_state=state)
    assert torch.equal(model.conv1.weight, donor.conv1.weight)
    assert model.fc.out_features == 4
    with pytest.raises(ConfigError, match="does not fit torchvision's resnet18"):
        build_model("resnet18", 4, 3, 64, 64, pretrained_state={"conv9.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("args", "message"),
    [(("lenet5", 1, 1, 32, 32), "at least 2 classes"), (("lenet5", 10, 1, 12, 12), "at least 16x16"),
     (("vgg", 10, 1, 32, 32), "is not one of")],
)
def test_bad_model_settings_are_clear_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        build_model(*args)


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
    code = WITHOUT_SPARK.format(module="lakeloop.training.rank")
    proc = subprocess.run([sys.executable, "-c", code, "--plan", str(plan_file), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["world_size"] == 1 and len(summary["history"]) == 2
    assert summary["val_accuracy"] > 0.5
    result = torch.load(out, weights_only=False)
    model = build_model("lenet5", 10, 1, 32, 32)
    model.load_state_dict(load_state_dict_bytes(result["weights"]))
