"""Champion / challenger: lakeloop registry list | show | compare | promote | rollback, on a real
registry folder. The gate reads each version's evaluation (gold.model_evaluations' test row): a
stand-in lookup where the gate's logic is tested, the real table (Spark) where the command is."""

from __future__ import annotations

import json

import pytest

from lakeloop.cli.registry import main
from lakeloop.config import PromoteConfig
from lakeloop.errors import PromotionRefused
from lakeloop.ops.promotion import compare_versions, promote, rollback
from lakeloop.registry import Registry

GATE = PromoteConfig(alias="production", metric="accuracy", margin=0.005)


class Evaluated(dict):
    """A stand-in for gold.model_evaluations' test rows: (name, version) -> the evaluation's figures."""

    def __call__(self, version):
        return self.get((version.name, version.version))


EVALUATED = Evaluated()


def _publish(registry: Registry, accuracy: float, features_version: int = 4, macro_f1: float | None = None,
             trained_accuracy: float | None = None) -> int:
    """A version whose evaluation found ``accuracy`` (training recorded ``trained_accuracy``, default the same)."""
    trained = accuracy if trained_accuracy is None else trained_accuracy
    metadata = {"model": {"name": "lenet5"}, "preprocess": {"height": 32},
                "features": {"table": "file:/lake/silver/features", "delta_version": features_version},
                "metrics": {"test_accuracy": trained, "test": {"accuracy": trained, "macro_f1": macro_f1 or trained}}}
    version = registry.publish("digits", b"weights", metadata).version
    EVALUATED[("digits", version)] = {"accuracy": accuracy, "macro_f1": macro_f1 or accuracy, "rows": 180}
    return version


@pytest.fixture()
def registry(tmp_path):
    EVALUATED.clear()
    return Registry(f"file:{tmp_path}/models")


def test_the_first_promotion_sets_the_alias_and_records_who_when_and_why(registry):
    v1 = _publish(registry, 0.95)
    result = promote(registry, "digits", v1, GATE, EVALUATED, reason="first model", actor="ana")
    assert result["promoted"] and registry.resolve("digits", "production").version == v1
    [entry] = registry.alias_log("digits", "production")
    assert (entry["version"], entry["previous"], entry["action"], entry["by"], entry["reason"], entry["forced"]) == \
        (v1, None, "promote", "ana", "first model", False)
    assert entry["at"].endswith("+00:00")


def test_a_challenger_that_does_not_beat_the_champion_by_the_margin_is_refused(registry):
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.953)
    promote(registry, "digits", v1, GATE, EVALUATED, reason="first", actor="ana")
    with pytest.raises(PromotionRefused, match=r"digits:2 is not promoted .* test accuracy 0\.9530 vs 0\.9500: "
                                               r"\+0\.0030, not more than the margin 0\.005"):
        promote(registry, "digits", v2, GATE, EVALUATED, reason="try", actor="ana")
    assert registry.resolve("digits", "production").version == v1
    assert len(registry.alias_log("digits")) == 1  # a refusal moves and records nothing


def test_a_better_challenger_is_promoted_with_the_comparison_kept(registry):
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.97)
    promote(registry, "digits", v1, GATE, EVALUATED, reason="first", actor="ana")
    result = promote(registry, "digits", v2, GATE, EVALUATED, reason="better on test", actor="bo")
    assert result["improvement"] == pytest.approx(0.02) and result["previous"] == v1
    entry = registry.alias_log("digits", "production")[-1]
    assert entry["previous"] == v1 and entry["evidence"]["champion"]["value"] == 0.95
    assert registry.resolve("digits", "production").version == v2


def test_versions_tested_on_different_splits_are_not_compared_unless_forced(registry):
    v1, v2 = _publish(registry, 0.95, features_version=4), _publish(registry, 0.99, features_version=6)
    promote(registry, "digits", v1, GATE, EVALUATED, reason="first", actor="ana")
    comparison = compare_versions(registry, registry.resolve("digits", v1), registry.resolve("digits", v2), GATE,
                                  EVALUATED)
    assert comparison["same_test_split"] is False and comparison["beats"] is False
    with pytest.raises(PromotionRefused, match=r"not the same test split: version 1 was tested on .* v4, version 2 "
                                               r"on .* v6"):
        promote(registry, "digits", v2, GATE, EVALUATED, reason="newer data", actor="ana")
    promote(registry, "digits", v2, GATE, EVALUATED, reason="newer data, checked by hand", actor="ana", force=True)
    assert registry.alias_log("digits", "production")[-1]["forced"] is True


def test_a_lower_is_better_metric_is_compared_the_other_way(registry):
    v1 = registry.publish("digits", b"w", {}).version
    v2 = registry.publish("digits", b"w", {}).version
    EVALUATED.update({("digits", v1): {"expected_calibration_error": 0.30},
                      ("digits", v2): {"expected_calibration_error": 0.20}})
    gate = PromoteConfig(metric="expected_calibration_error", lower_is_better=True, margin=0.05)
    promote(registry, "digits", v1, gate, EVALUATED, reason="first", actor="ana")
    result = promote(registry, "digits", v2, gate, EVALUATED, reason="better calibrated", actor="ana")
    assert result["improvement"] == pytest.approx(0.1)


def test_rollback_restores_the_previous_holder_and_is_recorded(registry):
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.97)
    promote(registry, "digits", v1, GATE, EVALUATED, reason="first", actor="ana")
    promote(registry, "digits", v2, GATE, EVALUATED, reason="better", actor="ana")
    assert rollback(registry, "digits", "production", reason="bad in production", actor="bo") == \
        {"alias": "production", "from": v2, "to": v1}
    assert registry.resolve("digits", "production").version == v1
    assert registry.alias_log("digits", "production")[-1]["action"] == "rollback"
    with pytest.raises(PromotionRefused, match=r"digits@production has no earlier holder"):
        rollback(registry, "digits", "production", reason="again", actor="bo")


def test_promotion_refuses_a_version_with_no_evaluation_and_names_the_evaluate_command(registry):
    v1 = registry.publish("digits", b"w", {"metrics": {"test": {"accuracy": 0.99}}}).version
    with pytest.raises(PromotionRefused, match=r"digits:1 has no test-split row in gold\.model_evaluations: run "
                                               r"\./spark-submit\.sh evaluate --model digits:1 first"):
        promote(registry, "digits", v1, GATE, EVALUATED, reason="first", actor="ana")
    assert registry.list_aliases("digits").get("production") is None  # training's 0.99 does not decide

    EVALUATED[("digits", v1)] = {"accuracy": 0.95}
    promote(registry, "digits", v1, GATE, EVALUATED, reason="evaluated", actor="ana")
    v2 = registry.publish("digits", b"w", {"metrics": {"test": {"accuracy": 0.99}}}).version
    comparison = compare_versions(registry, registry.resolve("digits", v1), registry.resolve("digits", v2), GATE,
                                  EVALUATED)
    assert comparison["beats"] is False and "evaluate --model digits:2" in comparison["why"]


def _evaluation_rows(spark, lake_root: str, rows) -> None:
    """Rows of gold.model_evaluations as the evaluate job writes them: (version, split, accuracy)."""
    from pyspark.sql import functions as F

    from lakeloop.layout import LakeLayout

    schema = "model_name string, model_version int, split string, rows long, accuracy double, macro_f1 double, " \
             "evaluation string, run_id string"
    data = [("digits", v, split, 180, acc, acc, json.dumps({"accuracy": acc, "macro_recall": acc}), f"evaluate-{v}")
            for v, split, acc in rows]
    spark.createDataFrame(data, schema).withColumn("evaluated_at", F.current_timestamp()) \
        .write.format("delta").mode("append").save(LakeLayout(lake_root).model_evaluations)


def test_the_gate_decides_on_gold_model_evaluations_figures_not_on_those_training_recorded(
        spark, registry, tmp_path, capsys):
    lake = ["--set", f"lake_root=file:{tmp_path}"]
    # Training recorded the opposite order: version 1 0.99, version 2 0.90.
    v1 = _publish(registry, 0.90, trained_accuracy=0.99)
    v2 = _publish(registry, 0.97, trained_accuracy=0.90)
    v3 = _publish(registry, 0.99)
    # The evaluation's test rows; a train row of version 1 that would win is not the gate's split.
    _evaluation_rows(spark, f"file:{tmp_path}", [(v1, "test", 0.90), (v1, "train", 1.0), (v2, "test", 0.97)])

    assert main([*lake, "promote", f"digits:{v1}", "--reason", "first"], open_session=lambda _: spark) == 0
    capsys.readouterr()
    assert main([*lake, "compare", f"digits:{v2}"], open_session=lambda _: spark) == 0
    compared = json.loads(capsys.readouterr().out)
    assert (compared["champion"]["value"], compared["challenger"]["value"]) == (0.90, 0.97)
    assert main([*lake, "promote", f"digits:{v2}", "--reason", "better evaluated"], open_session=lambda _: spark) == 0
    entry = registry.alias_log("digits", "production")[-1]
    assert entry["version"] == v2 and entry["evidence"]["champion"]["value"] == 0.90
    assert entry["evidence"]["challenger"]["value"] == 0.97
    assert entry["evidence"]["challenger"]["evaluation"]["run_id"] == f"evaluate-{v2}"
    # Version 3 was never evaluated (its figure exists only in the registry): refused, naming the command.
    capsys.readouterr()
    assert main([*lake, "promote", f"digits:{v3}", "--reason", "try"], open_session=lambda _: spark) == 1
    assert f"run ./spark-submit.sh evaluate --model digits:{v3} first" in capsys.readouterr().err
    # A figure of the evaluation JSON (not a column) can decide too.
    gate = ["--set", "promote.metric=macro_recall"]
    assert main([*lake, *gate, "compare", f"digits:{v1}", f"digits:{v2}"], open_session=lambda _: spark) == 0
    compared = json.loads(capsys.readouterr().out)
    assert (compared["champion"]["value"], compared["challenger"]["value"]) == (0.97, 0.90)


def test_the_registry_command_lists_compares_promotes_and_refuses(spark, registry, tmp_path, capsys):
    lake = ["--set", f"lake_root=file:{tmp_path}"]
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.951)
    _evaluation_rows(spark, f"file:{tmp_path}", [(v1, "test", 0.95), (v2, "test", 0.951)])
    assert main([*lake, "promote", f"digits:{v1}", "--reason", "first"]) == 0  # the active session reads the table
    assert main([*lake, "--set", "promote.margin=0.01", "promote", f"digits:{v2}", "--reason", "try"]) == 1
    assert "refused" in capsys.readouterr().err
    assert main([*lake, "list"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("digits:1") and "@production" in first and "accuracy=0.9500" in first
    assert second.startswith("digits:2") and "@latest" in second
    assert main([*lake, "compare", f"digits:{v2}"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["champion"]["version"] == v1 and compared["challenger"]["version"] == v2
    assert main([*lake, "show", "digits@production"]) == 0
    assert json.loads(capsys.readouterr().out)["alias_log"][0]["reason"] == "first"
    assert main([*lake, "show", "digits:9"]) == 2
    assert "no version 9" in capsys.readouterr().err
