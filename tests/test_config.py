"""Profiles -> overrides -> typed config, and the errors a user sees when one is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeloop.config import load_profile
from lakeloop.errors import ConfigError
from lakeloop.layout import LakeLayout


def test_local_profile_loads_with_repo_placeholders_expanded():
    profile = load_profile("local")
    repo = Path(__file__).resolve().parents[1]
    assert profile.lake_root == f"file:{repo}/lake"
    assert profile.ingest_images.source == f"file:{repo}/demo-data/raw/images"
    assert profile.ingest_tables.tables["digits_meta"].keys == ("sample_id",)
    assert "{repo}" not in str(profile) and "{python}" not in str(profile)


PROFILES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf").glob("*.yaml"))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def test_the_shipped_profiles_are_the_documented_ones():
    assert PROFILES == ["cluster-test", "databricks", "hdfs-test", "kafka-test", "local", "local-photos", "local-wine", "s3-test", "test", "yarn",
                        "yarn-test"]


@pytest.mark.parametrize("name", PROFILES)
def test_every_shipped_profile_loads_with_every_location_a_uri_and_no_placeholder_left(name):
    import dataclasses

    profile = load_profile(name)
    values = list(_strings(dataclasses.asdict(profile)))
    placeholders = ("{repo}", "{python}", "{site_packages}", "{delta}", "{kafka}", "{hadoop_aws}")
    assert not [v for v in values if any(p in v for p in placeholders)]
    locations = [profile.lake_root, profile.ingest_images.source, profile.demo.raw_root,
                 *(t.source for t in profile.ingest_tables.tables.values())]
    schemes = {loc.partition(":")[0] for loc in locations if loc is not None}
    assert schemes <= {"file", "hdfs", "s3a", "dbfs"}, schemes
    # The lake's layout and its storage settings come from the profile alone.
    assert LakeLayout(profile.lake_root).features == f"{profile.lake_root}/silver/features"
    assert all(not key.startswith("spark.") for key in profile.hadoop_conf())


def test_extends_merges_key_by_key():
    test = load_profile("test")
    assert test.spark.master == "local[2,2]"
    assert test.spark.conf["spark.sql.shuffle.partitions"] == "2"  # overridden
    assert test.spark.conf["spark.sql.session.timeZone"] == "UTC"  # inherited from local


def test_databricks_profile_removes_local_only_settings():
    profile = load_profile("databricks")
    assert profile.spark.master is None
    assert profile.spark.conf.get("spark.pyspark.python") is None
    assert profile.jvm.packages == ()


def test_overrides_parse_yaml_values_and_spark_conf():
    profile = load_profile(
        "local",
        ["ingest_images.max_pixels=1000", "ingest_images.extensions=[png]"],
        ["spark.sql.shuffle.partitions=3"],
    )
    assert profile.ingest_images.max_pixels == 1000
    assert profile.ingest_images.extensions == ("png",)
    assert profile.spark.conf["spark.sql.shuffle.partitions"] == "3"


def test_pair_overrides_are_taken_verbatim():
    profile = load_profile("local", [("ingest_images.source", "file:/data/a: b")])
    assert profile.ingest_images.source == "file:/data/a: b"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["ingest_images.max_pixel=5"], r"unknown setting ingest_images\.max_pixel; the settings of ingest_images are: .*max_pixels"),
        (["ingest_images.max_pixels=lots"], r"ingest_images\.max_pixels must be a whole number, found 'lots'"),
        (["ingest_images.label_from=folder"], r"ingest_images\.label_from = 'folder' is not one of 'parent_folder'"),
        (["lake_root=/tmp/lake"], r"lake_root = '/tmp/lake' has no URI scheme\. Write 'file:/absolute/path'"),
        (["ingest_images.source=data/images"], r"ingest_images\.source = 'data/images' has no URI scheme"),
        (["bogus=1"], r"unknown setting bogus"),
        (["noequals"], r"expected KEY=VALUE"),
        (["ingest_tables.tables.t={source: 'file:/x', format: csv, keys: []}"], r"tables\.t\.keys is empty"),
        (["ingest_tables.tables.t={source: 'file:/x', format: csv, keys: [id]}"], r"tables\.t has no schema"),
        (["ingest_tables.tables.t={source: 'file:/x', format: xml, keys: [id], schema: 'id INT'}"], r"format = 'xml' is not one of"),
        (["ingest_tables.tables.t={source: 'file:/x', format: csv, keys: [id], schema: 'id INT', options: {mode: FAILFAST}}"],
         r"ingest_tables\.tables\.t\.options\.mode cannot be set: lakeloop reads in PERMISSIVE mode"),
        (["ingest_images.extensions=[]"], r"ingest_images\.extensions is empty"),
        (["ingest_images.extensions=[png, 'j*g']"], r"extensions entry 'j\*g' must be letters and digits"),
        (["ingest_images.label_from=labels_table"], r"label_from = labels_table but ingest_images\.labels_table is not set"),
        (["train.num_processes=0"], r"train\.num_processes = 0 must be at least 1"),
        (["train.seed=-1"], r"train\.seed = -1 is outside the seeds training accepts, 0 to 2\*\*63 - 1 "
                            r"\(9223372036854775807\); use a non-negative number in that range"),
        ([f"train.seed={2**63}"], r"train\.seed = 9223372036854775808 is outside the seeds training accepts"),
        (["train.model_name=../x"], r"model name '\.\./x' is not valid"),
        (["train.alias=latest"], r"train\.alias = 'latest'"),
        (["train.stop_after_epochs=3"], r"unknown setting train\.stop_after_epochs"),
        (["train.architecture=lenet5"], r"setting train\.architecture is now train\.model; rename it"),
        (["train.pretrained_weights=file:/w.pt"], r"train\.pretrained_weights is now train\.init_from"),
        (["train.augmentation.shift=32"], r"train\.augmentation\.shift = 32 moves an image by as much as its size"),
        (["train.augmentation.crop_scale=[0.5, 1.5]"], r"train\.augmentation\.crop_scale = \[0\.5, 1\.5\] must satisfy"),
        (["features.preprocess.storage=encoded", "features.preprocess.resize=crop",
          "features.preprocess.encoded_short_side=32"],
         r"features\.preprocess\.encoded_short_side = 32 is too small for a 32x32 input \(crop\); use at least 37"),
        (["train.model=my models.build"], r"train\.model = 'my models\.build' is neither a built-in model .* "
                                          r"package\.module:factory"),
        (["train.init_from=weights.pt"], r"train\.init_from = 'weights\.pt' is neither a registered model"),
        (["train.init_from=models/w.pt"], r"train\.init_from \(NAME:VERSION, NAME@alias, or the URI of a weights file\) "
                                          r"= 'models/w\.pt' has no URI scheme"),
        (["train.init_from=digits:latest"], r"'latest' after ':' is not a version number"),
        (["train.early_stopping_patience=0"], r"train\.early_stopping_patience = 0 must be at least 1"),
        (["train.publish_epoch=first"], r"train\.publish_epoch = 'first' is not one of 'best', 'last'"),
        (["features.training_set_files=0"], r"features\.training_set_files = 0 must be at least 1"),
        (["score.input=features.x.y"], r"score\.input .* has no URI scheme"),
        (["lake_root=ftp://files.example.com/lake"], r"lake_root = 'ftp://files\.example\.com/lake': lakeloop cannot "
                                                     r"reach scheme 'ftp:'; the schemes it supports are file:, dbfs:, "
                                                     r"s3a:, s3:, hdfs:, abfss:, wasbs:, gs:\. Copy the data to one of them"),
        (["lake_root=s3n://bucket/lake"], r"lake_root = 's3n://bucket/lake': lakeloop cannot reach scheme 's3n:'; .* "
                                          r"For S3 write 's3a://bucket/lake': lakeloop reaches S3 through Hadoop's s3a"),
        (["ingest_images.source=adl://account.azuredatalakestore.net/images"],
         r"ingest_images\.source = 'adl://account\.azuredatalakestore\.net/images': lakeloop cannot reach "
         r"scheme 'adl:'; the schemes it supports are file:, dbfs:, s3a:, s3:, hdfs:, abfss:, wasbs:, gs:"),
        (["demo.raw_root=s3n://AKIAEXAMPLE:wJalrSECRET@bucket/raw"],
         r"demo\.raw_root = 's3n://\*\*\*@bucket/raw': .* For S3 write 's3a://\*\*\*@bucket/raw'"),
        (["train.init_from=webhdfs://namenode:9870/w.pt"], r"train\.init_from .* = 'webhdfs://namenode:9870/w\.pt': "
                                                          r"lakeloop cannot reach scheme 'webhdfs:'"),
        (["lake_root=Volumes/main/lakeloop/lake"], r"lake_root = 'Volumes/main/lakeloop/lake' has no URI scheme.*"
                                                   r"'/Volumes/<catalog>/<schema>/<volume>/path'"),
        (["maintain.training_set_lease_hours=-1"], r"maintain\.training_set_lease_hours = -1 must be 0 or more "
                                                   r"\(longer than the longest training run\), e\.g\. 24"),
    ],
)
@pytest.mark.fault  # bad settings are bad inputs too: listed in the reliability figures
def test_bad_settings_name_the_key_and_the_fix(overrides, message, reliability):
    with pytest.raises(ConfigError, match=message) as error:
        load_profile("local", overrides)
    reliability.bad_input("profile", " ".join(f"--set {o}" for o in overrides), f"ConfigError: {error.value}")


@pytest.mark.parametrize("root", ["s3://bucket/lake", "s3a://bucket/lake", "abfss://lake@account.dfs.core.windows.net/l",
                                  "wasbs://lake@account.blob.core.windows.net/l", "gs://bucket/lake",
                                  "/Volumes/main/lakeloop/lake", "dbfs:/Volumes/main/lakeloop/lake",
                                  "hdfs://nn:8020/lake", "file:/data/lake"])
def test_a_profile_with_each_supported_lake_scheme_loads(root):
    profile = load_profile("local", [("lake_root", root), ("ingest_images.source", f"{root}/raw")])
    assert profile.lake_root == root


@pytest.mark.parametrize("seed", [0, 42, 43, 2**32 - 1, 2**63 - 1])
def test_any_non_negative_64_bit_seed_loads(seed):
    assert load_profile("local", [f"train.seed={seed}"]).train.seed == seed


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"profile 'prod' not found.*Known profiles: .*local.*test"):
        load_profile("prod")


def test_repo_is_the_checkout_of_a_profile_outside_any_conf_folder(tmp_path):
    path = tmp_path / "mine.yaml"
    repo = Path(__file__).resolve().parents[1]
    path.write_text(f"extends: {repo}/conf/local.yaml\nlake_root: 'file:{{repo}}/elsewhere'\n")
    assert load_profile(str(path)).lake_root == f"file:{Path(__file__).resolve().parents[1]}/elsewhere"


def test_profile_file_in_another_conf_folder(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "mine.yaml"
    path.write_text("extends: local\nlake_root: 'file:{repo}/elsewhere'\n")
    with pytest.raises(ConfigError, match="profile 'local' not found"):
        load_profile(str(path))  # 'extends' is looked up beside the file
    (tmp_path / "conf" / "local.yaml").write_text("lake_root: 'file:/base'\n")
    assert load_profile(str(path)).lake_root == f"file:{tmp_path}/elsewhere"


def test_invalid_yaml_is_named(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("lake_root: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_profile(str(path))


def test_the_config_package_names_what_the_module_did_and_keeps_each_section_in_its_own_module():
    """lakeloop.config is a package (loader, checks, one module per section); callers import from the top."""
    import dataclasses
    import typing

    import lakeloop.config as config

    assert [name for name in config.__all__ if not hasattr(config, name)] == []
    assert {"load_profile", "Profile", "TrainConfig", "REPO_ROOT", "build_settings", "check_table_source",
            "task_metric", "is_secret_setting", "JAR_PLACEHOLDERS"} <= set(config.__all__)
    assert config.REPO_ROOT == Path(__file__).resolve().parents[1]
    sections = {}

    def walk(cls):
        sections[cls.__name__] = cls.__module__
        for hint in typing.get_type_hints(cls).values():
            nested = [a for h in typing.get_args(hint) for a in typing.get_args(h)]
            for inner in (hint, *typing.get_args(hint), *nested):
                if dataclasses.is_dataclass(inner) and inner.__name__ not in sections:
                    walk(inner)

    walk(config.Profile)
    assert sections["TrainConfig"] == "lakeloop.config.train"
    assert sections["ScoreKafkaConfig"] == "lakeloop.config.score"
    assert not {module for module in sections.values()} & {"lakeloop.config.loader", "lakeloop.config.checks"}
    package = Path(config.__file__).parent
    assert {p.name: n for p in package.glob("*.py") if (n := len(p.read_text().splitlines())) > 600} == {}
