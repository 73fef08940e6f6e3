"""The repository explains itself, and its documentation cannot part from the code: every setting
of the typed config is in the generated settings reference (and the page is what its generator
writes today), every job has a guide, every module of the package and every layer of the layering
test are in the architecture page, every location of the lake layout is in the data contracts, the
README stays short, and no link points outside the repository. Pure Python: no Spark."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import typing
from pathlib import Path

import pytest

import test_architecture
from lakeloop.config import Profile
from lakeloop.layout import LakeLayout
from lakeloop_dev import settings_doc

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PACKAGE = REPO / "lib" / "lakeloop"
LINKED_SUFFIXES = (".md", ".py", ".txt", ".toml", ".yaml", ".yml")
# Written in two parts so that this file does not name them itself.
OUTSIDE = ("DESIGN" + ".md", "../" + "shared", "/work/" + "shared")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def setting_keys(cls: type = Profile, prefix: str = "") -> list[str]:
    """Every dotted setting of the typed config, walked here independently of the generator: a field
    holding a section that is always there contributes that section's settings; an optional section or
    a mapping of sections contributes itself and its settings (``<name>`` for a mapping's key)."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        inner = [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        always = f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
        if inner and always and dataclasses.is_dataclass(f.default_factory()):  # type: ignore[misc]
            keys += setting_keys(inner[0], f"{key}.")
            continue
        keys.append(key)
        if inner:
            mapped = typing.get_origin(hint) is dict
            keys += setting_keys(inner[0], f"{key}.<name>." if mapped else f"{key}.")
    return keys


def reference_rows() -> dict[str, list[str]]:
    """The settings reference's rows: setting -> its cells (type, default, meaning)."""
    rows = {}
    for line in read(DOCS / "settings.md").splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", match.group(2))]
    return rows


# --------------------------------------------------------------------------- settings


def test_every_setting_of_the_typed_config_is_in_the_settings_reference():
    keys = setting_keys()
    assert len(keys) > 100 and "train.augmentation.shift" in keys and "ingest_tables.tables.<name>.keys" in keys
    assert [k for k in keys if k not in reference_rows()] == []


def test_every_setting_in_the_reference_says_what_it_does():
    assert [k for k, cells in reference_rows().items() if len(cells) != 3 or not cells[2]] == []


def test_the_settings_reference_is_what_the_generator_writes_today():
    assert read(DOCS / "settings.md") == settings_doc.render(), (
        "docs/settings.md is out of date: run PYTHONPATH=lib:dev .venv/bin/python -m lakeloop_dev.settings_doc"
    )


def test_every_explanation_the_generator_supplies_names_a_real_setting():
    assert sorted(set(settings_doc.EXPLAIN) - set(setting_keys())) == []


@dataclasses.dataclass(frozen=True)
class _Base:
    """A section's base class, in another place of the source."""

    inherited: int = 0  # from the base class


@dataclasses.dataclass(frozen=True)
class _Inner(_Base):
    """An inner section."""

    # above, first line
    # above, second line
    commented_above: int = 1
    trailing: str = "x"  # on the line itself
    bare: bool = False


@dataclasses.dataclass(frozen=True)
class _Outer:
    """The root."""

    name: str
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    maybe: _Inner | None = None
    many: dict[str, _Inner] = dataclasses.field(default_factory=dict)


def test_the_generator_reads_the_comments_on_a_fields_line_and_above_it():
    rows = {s.key: s for s in settings_doc.settings(_Outer)}
    assert rows["inner.commented_above"].explanation == "above, first line above, second line"
    assert rows["inner.trailing"].explanation == "on the line itself"
    assert rows["inner.trailing"].default == "`x`" and rows["name"].default == "required"
    assert rows["inner.bare"].explanation == ""
    assert "maybe" in rows and "maybe.trailing" in rows and "inner" not in rows
    assert "many.<name>.bare" in rows
    assert rows["inner.inherited"].explanation == "from the base class"
    assert sorted(rows) == sorted(setting_keys(_Outer))


# --------------------------------------------------------------------------- jobs, modules, layers, layout


def test_every_job_has_a_guide():
    jobs = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if not p.name.startswith("_"))
    assert len(jobs) >= 7
    assert [j for j in jobs if not (DOCS / "jobs" / f"{j}.md").is_file()] == []
    index, overview = read(DOCS / "README.md"), read(DOCS / "jobs" / "README.md")
    assert [j for j in jobs if f"(jobs/{j}.md)" not in index or f"({j}.md)" not in overview] == []


def test_every_module_of_the_package_is_named_in_the_architecture_doc():
    doc = read(DOCS / "architecture.md")
    modules = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    assert [m for m in modules if f"`{m}`" not in doc] == []


def test_the_architecture_docs_layer_table_is_the_layering_tests():
    doc = read(DOCS / "architecture.md")
    table: dict[str, int] = {}
    for level, names in re.findall(r"^\| (\d+) \| ([^|]+) \|$", doc, re.M):
        for name in names.split(","):
            table[name.strip().strip("`")] = int(level)
    assert table == test_architecture.LAYERS


def test_each_module_sits_in_the_architecture_doc_at_the_layer_the_layering_test_gives_it():
    doc = read(DOCS / "architecture.md")
    wrong = []
    for first, level in re.findall(r"^\| (`[^|]+) \| (\d+) \|", doc, re.M):
        for path in re.findall(r"`([\w/]+(?:\.py|/))`", first):
            top = path.split("/")[0].removesuffix(".py")
            if test_architecture.LAYERS[top] != int(level):
                wrong.append((path, int(level), test_architecture.LAYERS[top]))
    assert wrong == []


def test_every_location_of_the_lake_layout_is_in_the_data_contracts():
    doc = read(DOCS / "data-contracts.md")
    names = [n for n, v in vars(LakeLayout).items() if not n.startswith("_") and (callable(v) or isinstance(
        v, (property, staticmethod)))]
    assert len(names) > 20
    assert [n for n in names if not re.search(rf"\b{n}\b", doc)] == []


# --------------------------------------------------------------------------- the README and links


def test_the_readme_is_under_400_lines():
    assert len(read(REPO / "README.md").splitlines()) < 400


def test_the_readmes_two_commands_are_the_ones_ci_and_the_demo_test_run():
    readme = read(REPO / "README.md")
    assert "## Quick start\n\n```\n./dev/demo.sh\n./dev/test.sh\n```\n" in readme
    assert "\n./dev/test.sh\n" in read(REPO / ".ci" / "run")


def repository_files() -> list[Path]:
    """The files a clone has (tracked, or new and not ignored) whose links and paths are checked."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [REPO / name for name in listed if name.endswith(LINKED_SUFFIXES) and (REPO / name).is_file()]


def heading_anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", read(page), flags=re.M | re.S)
    headings = re.findall(r"^#+ (.*)$", text, re.M)
    return {re.sub(r"[^a-z0-9_ -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(path: Path) -> list[str]:
    """What in ``path`` points outside the repository or at nothing: a Markdown link to a missing file,
    a file outside the checkout or a missing heading; a ``*.md`` name no file of the repository has;
    a folder outside the repository named by its known outside locations."""
    text = read(path)
    found = [f"{path.relative_to(REPO)}: names {o}" for o in OUTSIDE if o in text]
    if path.suffix == ".md":
        for target in re.findall(r"\]\(\s*<?([^)\s>]+)>?\s*\)", text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: documentation elsewhere is fine
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            if REPO not in resolved.parents and resolved != REPO:
                found.append(f"{path.relative_to(REPO)}: link {target} leaves the repository")
            elif not resolved.exists():
                found.append(f"{path.relative_to(REPO)}: link {target} points at nothing")
            elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
                found.append(f"{path.relative_to(REPO)}: link {target} names no heading of {resolved.name}")
    for name in set(re.findall(r"(?<![\w/.-])((?:\.\./|\./)*[\w][\w./-]*\.md)\b", text)):
        bases = (path.parent, REPO, DOCS)
        if not any((base / name).resolve().is_file() and REPO in (base / name).resolve().parents for base in bases):
            found.append(f"{path.relative_to(REPO)}: names {name}, which is not in the repository")
    return found


def test_no_link_in_the_repository_points_outside_it():
    files = repository_files()
    assert REPO / "README.md" in files and DOCS / "architecture.md" in files
    assert [problem for path in files for problem in broken_links(path)] == []


@pytest.mark.parametrize("text, problem", [
    ("see [the design](../." + OUTSIDE[1][2:] + "/x.md)", "leaves the repository"),
    ("see [it](docs/nothing-here" + ".md)", "points at nothing"),
    ("see [it](docs/architecture.md#no-such-heading)", "names no heading"),
    ("as " + OUTSIDE[0] + " says", "names " + OUTSIDE[0]),
    ("[docs](https://docs.databricks.com/dev-tools/bundles/) and [arch](docs/architecture.md#layers)", None),
])
def test_the_link_check_finds_what_points_outside(tmp_path, monkeypatch, text, problem):
    page = REPO / "README.md"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: text if self == page else Path.read_bytes(
        self).decode(encoding or "utf-8"))
    found = broken_links(page)
    assert (found == []) if problem is None else any(problem in f for f in found), found


# --------------------------------------------------------------------------- README sections named elsewhere

# The README's name, then (optionally) `.md`, a comma or `'s`, then a title in double quotes (escaped as a
# notebook's JSON writes them, or wrapped onto the next line) that starts like a word. Built from parts so
# that this file does not name a section itself.
README_SECTION = re.compile("README" + r"""(?:\.md)?(?:,|'s)?\s+\\?"([\w`][^"\\]*)\\?\"""")


def readme_headings() -> set[str]:
    text = re.sub(r"^```.*?^```", "", read(REPO / "README.md"), flags=re.M | re.S)
    return {" ".join(h.split()) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def readme_sections_named(path: Path, headings: set[str]) -> list[str]:
    """Each README section ``path`` names by its quoted title that is not a heading of README.md."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    found = []
    for match in README_SECTION.finditer(text):
        title = " ".join(match.group(1).replace("\\n", " ").split())
        if title not in headings:
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{path.relative_to(REPO)}:{line}: names README section {title!r}, which the README lacks")
    return found


def test_every_readme_section_a_file_names_is_a_heading_of_the_readme():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [REPO / name for name in listed if name and (REPO / name).is_file()]
    headings = readme_headings()
    assert "Quick start" in headings and REPO / "spark-submit.sh" in files
    assert [problem for path in files for problem in readme_sections_named(path, headings)] == [], (
        "a README section moved to docs/ (docs/README.md is the index): name the docs page instead")


@pytest.mark.parametrize("text, wrong", [
    ("see " + "README" + ' "Quick start"', []),
    ("(" + "README" + ', "Gone away")', ["Gone away"]),
    ("the " + "README" + "'s \"Gone\naway\" and " + "README" + ' "Quick start"', ["Gone away"]),
    ('"source": ["(' + "README" + ' \\"Gone away\\")"]', ["Gone away"]),
    ("the " + "README" + "'s first command", []),
])
def test_the_readme_section_check_finds_a_title_the_readme_lacks(monkeypatch, text, wrong):
    page = REPO / "BENCHMARKS.md"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: text if self == page else Path.read_bytes(
        self).decode(encoding or "utf-8"))
    found = readme_sections_named(page, readme_headings())
    assert [f.split("section ")[1].split(",")[0].strip("'") for f in found] == wrong, found
