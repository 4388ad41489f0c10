"""The generated docs stay what their sources say.

- docs/reference/ is exactly what tools/gen_reference.py generates now from the plugins' DOCUMENTATION and the
  roles' argument specs (a changed option without `python3 tools/gen_reference.py` fails here);
- every relative link in docs/ (and the README's links into docs/) points at a file that exists, and at a heading
  of it when it names one;
- the changelog fragments pass `antsibull-changelog lint`, every fragment is in changelogs/changelog.yaml, and
  CHANGELOG.md is what `antsibull-changelog generate` makes of it.

Role READMEs against their argument specs: tests/unit/test_role_specs.py (tools/role_docs.py), not repeated here.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "tools" / "gen_reference.py")
gen_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_reference)


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return gen_reference.render_all(gen_reference.read_docs())


def test_committed_reference_is_what_the_generator_produces(pages: dict[str, str]) -> None:
    found = gen_reference.differences(pages, ROOT / "docs" / "reference")
    assert found == [], "docs/reference is stale - run `python3 tools/gen_reference.py`:\n" + "\n".join(found)


def test_every_module_filter_and_role_has_a_page(pages: dict[str, str]) -> None:
    modules = {f"module_{p.stem}.md" for p in (ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
    roles = {f"role_{p.parent.parent.name}.md" for p in (ROOT / "roles").glob("*/meta/argument_specs.yml")}
    filters = {name for name in pages if name.startswith("filter_")}
    filter_files = [p for p in (ROOT / "plugins" / "filter").glob("*.py") if "DOCUMENTATION" in p.read_text()]
    assert modules | roles <= set(pages), f"no page for {sorted(modules | roles - set(pages))}"
    assert len(filters) >= len(filter_files), f"filters documented in {filter_files}, pages {sorted(filters)}"
    index = pages["README.md"]
    for name in sorted(set(pages) - {"README.md"}):
        assert f"]({name})" in index, f"{name} is not linked from docs/reference/README.md"


def test_a_stale_missing_or_orphan_page_is_reported(tmp_path: Path, pages: dict[str, str]) -> None:
    out = tmp_path / "reference"
    gen_reference.write(pages, out)
    root = gen_reference.ROOT
    gen_reference.ROOT = tmp_path
    try:
        assert gen_reference.differences(pages, out) == []
        (out / "module_canary.md").write_text(pages["module_canary.md"].replace("rollback", "roll back", 1))
        (out / "role_common.md").unlink()
        (out / "module_gone.md").write_text("# gone\n")
        found = gen_reference.differences(pages, out)
    finally:
        gen_reference.ROOT = root
    assert any("module_canary.md: differs" in line for line in found), found
    assert any("role_common.md: missing" in line for line in found), found
    assert any("module_gone.md: documents nothing" in line for line in found), found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("C(a) and O(steps=[10, 0]) and V(x)", "`a` and `steps=[10, 0]` and `x`"),
        ("O(ignore:changed=false)", "`changed=false`"),
        ("-e confirm=<environment> or C(<name>)", "-e confirm=&lt;environment&gt; or `<name>`"),
        ("C(sum(rate(x[1m])))", "`sum(rate(x[1m]))`"),
        (
            "M(strata.deploy.canary) M(ansible.builtin.copy)",
            "[strata.deploy.canary](module_canary.md) `ansible.builtin.copy`",
        ),
        (
            "I(it) B(bold) L(the docs, https://example.net) U(https://example.net)",
            "*it* **bold** [the docs](https://example.net) [https://example.net](https://example.net)",
        ),
    ],
)
def test_ansible_markup_becomes_markdown(text: str, expected: str) -> None:
    assert gen_reference.markup(text, {"strata.deploy.canary": "module_canary.md"}) == expected


# ---------------------------------------------------------------------------------------------------------- links
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", title)))
    return found


def _doc_files() -> list[Path]:
    return [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _hash, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


# ------------------------------------------------------------------------------------------------------ changelog
def _changelog(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    tool = BIN / "antsibull-changelog"
    if not tool.exists():
        pytest.fail("antsibull-changelog is not installed: run `make venv` (requirements.txt pins it)", pytrace=False)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(tool), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_changelog_fragments_pass_antsibull_changelog_lint(tmp_path: Path) -> None:
    done = _changelog("lint", cwd=ROOT, home=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_every_fragment_is_in_the_changelog_of_the_current_version() -> None:
    version = str(yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"])
    changes: dict[str, Any] = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())
    release = changes.get("releases", {}).get(version, {})
    recorded = set(release.get("fragments", []))
    fragments = {p.name for p in (ROOT / "changelogs" / "fragments").glob("*.yml")}
    missing = sorted(fragments - recorded)
    assert not missing, (
        f"fragments not yet in changelogs/changelog.yaml for {version}: {missing}. Run "
        f"`PATH=.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=.cache/collections .venv/bin/antsibull-changelog release "
        f"--version {version} --update-existing --reload-plugins` (CHANGELOG.md is regenerated with it)"
    )


def test_changelog_md_is_what_antsibull_changelog_generates(tmp_path: Path) -> None:
    # A copy, so that the check writes nothing in the checkout; the plugin cache is committed, so no ansible-doc.
    shutil.copytree(ROOT / "changelogs", tmp_path / "changelogs")
    shutil.copy(ROOT / "galaxy.yml", tmp_path / "galaxy.yml")
    done = _changelog("generate", cwd=tmp_path, home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    generated = (tmp_path / "CHANGELOG.md").read_text()
    assert (ROOT / "CHANGELOG.md").read_text() == generated, (
        "CHANGELOG.md differs from `antsibull-changelog generate`: do not edit it by hand; run "
        "`.venv/bin/antsibull-changelog generate`"
    )
