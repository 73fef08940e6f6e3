"""Champion / challenger: lakeloop registry list | show | compare | promote | rollback, on a real
registry folder (no Spark: the gate reads what each version recorded when it was trained)."""

from __future__ import annotations

import json

import pytest

from lakeloop.config import PromoteConfig
from lakeloop.errors import PromotionRefused
from lakeloop.promotion import compare_versions, main, promote, rollback
from lakeloop.registry import Registry

GATE = PromoteConfig(alias="production", metric="accuracy", margin=0.005)


def _publish(registry: Registry, accuracy: float, features_version: int = 4, macro_f1: float | None = None) -> int:
    metadata = {"model": {"name": "lenet5"}, "preprocess": {"height": 32},
                "features": {"table": "file:/lake/silver/features", "delta_version": features_version},
                "metrics": {"test_accuracy": accuracy, "test": {"accuracy": accuracy, "macro_f1": macro_f1 or accuracy}}}
    return registry.publish("digits", b"weights", metadata).version


@pytest.fixture()
def registry(tmp_path):
    return Registry(f"file:{tmp_path}/models")


def test_the_first_promotion_sets_the_alias_and_records_who_when_and_why(registry):
    v1 = _publish(registry, 0.95)
    result = promote(registry, "digits", v1, GATE, reason="first model", actor="ana")
    assert result["promoted"] and registry.resolve("digits", "production").version == v1
    [entry] = registry.alias_log("digits", "production")
    assert (entry["version"], entry["previous"], entry["action"], entry["by"], entry["reason"], entry["forced"]) == \
        (v1, None, "promote", "ana", "first model", False)
    assert entry["at"].endswith("+00:00")


def test_a_challenger_that_does_not_beat_the_champion_by_the_margin_is_refused(registry):
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.953)
    promote(registry, "digits", v1, GATE, reason="first", actor="ana")
    with pytest.raises(PromotionRefused, match=r"digits:2 is not promoted .* test accuracy 0\.9530 vs 0\.9500: "
                                               r"\+0\.0030, not more than the margin 0\.005"):
        promote(registry, "digits", v2, GATE, reason="try", actor="ana")
    assert registry.resolve("digits", "production").version == v1
    assert len(registry.alias_log("digits")) == 1  # a refusal moves and records nothing


def test_a_better_challenger_is_promoted_with_the_comparison_kept(registry):
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.97)
    promote(registry, "digits", v1, GATE, reason="first", actor="ana")
    result = promote(registry, "digits", v2, GATE, reason="better on test", actor="bo")
    assert result["improvement"] == pytest.approx(0.02) and result["previous"] == v1
    entry = registry.alias_log("digits", "production")[-1]
    assert entry["previous"] == v1 and entry["evidence"]["champion"]["value"] == 0.95
    assert registry.resolve("digits", "production").version == v2


def test_versions_tested_on_different_splits_are_not_compared_unless_forced(registry):
    v1, v2 = _publish(registry, 0.95, features_version=4), _publish(registry, 0.99, features_version=6)
    promote(registry, "digits", v1, GATE, reason="first", actor="ana")
    comparison = compare_versions(registry, registry.resolve("digits", v1), registry.resolve("digits", v2), GATE)
    assert comparison["same_test_split"] is False and comparison["beats"] is False
    with pytest.raises(PromotionRefused, match=r"not the same test split: version 1 was tested on .* v4, version 2 "
                                               r"on .* v6"):
        promote(registry, "digits", v2, GATE, reason="newer data", actor="ana")
    promote(registry, "digits", v2, GATE, reason="newer data, checked by hand", actor="ana", force=True)
    assert registry.alias_log("digits", "production")[-1]["forced"] is True


def test_a_lower_is_better_metric_is_compared_the_other_way(registry):
    v1 = registry.publish("digits", b"w", {"metrics": {"test": {"loss": 0.30}}}).version
    v2 = registry.publish("digits", b"w", {"metrics": {"test": {"loss": 0.20}}}).version
    gate = PromoteConfig(metric="loss", lower_is_better=True, margin=0.05)
    promote(registry, "digits", v1, gate, reason="first", actor="ana")
    assert promote(registry, "digits", v2, gate, reason="lower loss", actor="ana")["improvement"] == pytest.approx(0.1)


def test_rollback_restores_the_previous_holder_and_is_recorded(registry):
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.97)
    promote(registry, "digits", v1, GATE, reason="first", actor="ana")
    promote(registry, "digits", v2, GATE, reason="better", actor="ana")
    assert rollback(registry, "digits", "production", reason="bad in production", actor="bo") == \
        {"alias": "production", "from": v2, "to": v1}
    assert registry.resolve("digits", "production").version == v1
    assert registry.alias_log("digits", "production")[-1]["action"] == "rollback"
    with pytest.raises(PromotionRefused, match=r"digits@production has no earlier holder"):
        rollback(registry, "digits", "production", reason="again", actor="bo")


def test_the_registry_command_lists_compares_promotes_and_refuses(registry, tmp_path, capsys):
    lake = ["--set", f"lake_root=file:{tmp_path}"]
    v1, v2 = _publish(registry, 0.95), _publish(registry, 0.951)
    assert main([*lake, "promote", f"digits:{v1}", "--reason", "first"]) == 0
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
