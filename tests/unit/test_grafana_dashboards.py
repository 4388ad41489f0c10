"""The dashboards strata.deploy.grafana provisions (roles/grafana/files/dashboards/*.json) and its datasource and
provider files.

- every dashboard's structure: unique uid and title, panels with ids and grid positions, every datasource reference
  pointing at a provisioned uid (strata-prometheus, strata-loki), no panel without a query;
- EVERY PromQL expression (panel targets, template variable selectors, annotation queries) parsed by promtool: each
  becomes a recording rule in a rule file checked offline with ``promtool check rules`` (promtool from Debian's
  ``prometheus`` package; missing, these tests FAIL). Grafana's own variables are replaced first the way Grafana
  would (``$__rate_interval`` -> ``1m``); ``$var`` inside label matchers stays, a valid regular expression;
- the metric names used exist where they come from: the demo app's metrics are read from its source;
- the datasource and dashboard-provider files, rendered by Ansible's own template engine from the role's
  templates, are valid YAML with the expected keys and secrets only under ``secureJsonData``.

Nothing here runs Grafana: its binaries cannot be downloaded on this machine (see roles/grafana/README.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "grafana"
DASHBOARD_DIR = ROLE / "files" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
APP_SOURCE = ROOT / "roles" / "app" / "files" / "demo" / "strata_demo_app.py"
ROLE_VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
PROMETHEUS_UID = ROLE_VARS["_grafana_prometheus_uid"]
LOKI_UID = ROLE_VARS["_grafana_loki_uid"]
PROVISIONED = {("prometheus", PROMETHEUS_UID), ("loki", LOKI_UID)}
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}
EXPECTED = {"hosts", "lb", "app", "postgresql", "redis", "rollout"}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$", re.S)
PROMTOOL_TIMEOUT = 120


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def promql_of(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) of every PromQL expression of a dashboard."""
    found = []
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "prometheus":
                found.append((f"panel {panel['id']} '{panel['title']}' {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["datasource"]["type"] == "prometheus":
            match = LABEL_VALUES.match(variable["query"]["query"].strip())
            assert match, f"variable {variable['name']}: expected label_values(<selector>, <label>)"
            found.append((f"variable {variable['name']}", match["selector"]))
    for annotation in dashboard["annotations"]["list"]:
        if annotation["datasource"].get("type") == "prometheus":
            found.append((f"annotation '{annotation['name']}'", annotation["expr"]))
    return found


def grafana_to_promql(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if not path:
        pytest.fail(
            "promtool not found in PATH or /usr/bin: install Debian's 'prometheus' package (`make host-deps`) - the "
            "dashboards' PromQL cannot be checked without it",
            pytrace=False,
        )
    return path


def check_rules(promtool: str, tmp_path: Path, expressions: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    rules = [
        {"record": f"strata:dashboard_expr_{i}", "expr": grafana_to_promql(expr)}
        for i, (_w, expr) in enumerate(expressions)
    ]
    rule_file = tmp_path / "dashboard-exprs.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    return subprocess.run(
        [promtool, "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


def test_the_role_ships_every_dashboard_it_documents() -> None:
    assert {p.stem for p in DASHBOARDS} == EXPECTED
    assert set(ROLE_VARS["_grafana_shipped_dashboards"]) == EXPECTED
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(defaults["grafana_dashboards"]) == EXPECTED


def test_uids_and_titles_are_unique() -> None:
    dashboards = [load(p) for p in DASHBOARDS]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["uid"] == f"strata-{path.stem}"
    assert len(dashboard["uid"]) <= 40, "Grafana limits uids to 40 characters"
    assert dashboard["title"].startswith("Strata / ")
    assert "strata" in dashboard["tags"]
    assert dashboard["editable"] is False, "provisioned dashboards are changed in the collection, not in the UI"
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard, "a provisioned dashboard must not carry a database id"
    panels = panels_of(dashboard)
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), f"duplicate panel ids in {path.name}"
    data_panels = [p for p in panels if p["type"] != "row"]
    assert len(data_panels) >= 4
    for panel in panels:
        where = f"{path.name}: panel {panel['id']} '{panel.get('title')}'"
        assert panel.get("title"), f"{where} has no title"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, f"{where}: bad gridPos {grid}"
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{where} has no query"
        assert (panel["datasource"]["type"], panel["datasource"]["uid"]) in PROVISIONED, (
            f"{where}: {panel['datasource']}"
        )
        for target in panel["targets"]:
            ref = (target["datasource"]["type"], target["datasource"]["uid"])
            assert ref in PROVISIONED, f"{where} {target['refId']}: datasource {ref} is not provisioned"
            assert target["expr"].strip(), f"{where} {target['refId']}: empty query"
        if panel["type"] == "logs":
            assert panel["datasource"]["uid"] == LOKI_UID, f"{where}: a logs panel reads Loki"
    # no two panels overlap on the grid
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{path.name}: panels {cells[(x, y)]} and {panel['id']} overlap at {(x, y)}"
                cells[(x, y)] = panel["id"]
    for variable in dashboard["templating"]["list"]:
        assert (variable["datasource"]["type"], variable["datasource"]["uid"]) in PROVISIONED
    for annotation in dashboard["annotations"]["list"]:
        ref = (annotation["datasource"].get("type"), annotation["datasource"].get("uid"))
        assert annotation["datasource"] == GRAFANA_BUILTIN or ref in PROVISIONED, (
            f"annotation {annotation['name']}: {ref}"
        )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_variable_used_is_defined(path: Path) -> None:
    dashboard = load(path)
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    text = json.dumps([panels_of(dashboard), dashboard["annotations"], dashboard["templating"]])
    used = set(re.findall(r"\$(?!__)([a-zA-Z_][a-zA-Z0-9_]*)", text))
    assert used <= defined, f"{path.name} uses undefined variables: {sorted(used - defined)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_promql_expression_parses(promtool: str, tmp_path: Path, path: Path) -> None:
    expressions = promql_of(load(path))
    assert expressions, f"{path.name} has no PromQL"
    result = check_rules(promtool, tmp_path, expressions)
    if result.returncode != 0:
        # name the expression that failed: promtool reports it by its position in the group
        listing = "\n".join(f"  {i}: {where}: {expr}" for i, (where, expr) in enumerate(expressions))
        pytest.fail(f"promtool check rules rejected PromQL of {path.name}:\n{result.stdout}{result.stderr}\n{listing}")
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_promtool_rejects_broken_promql(promtool: str, tmp_path: Path) -> None:
    """The check above is a real parse: a broken expression fails it."""
    result = check_rules(promtool, tmp_path, [("broken", f"sum by (version (rate(x[{'$__rate_interval'}]))")])
    assert result.returncode != 0


def test_the_app_panels_use_the_demo_apps_metric_names() -> None:
    source = APP_SOURCE.read_text()
    declared = set(re.findall(r'(?:Counter|Histogram|Info)\(\s*"([a-z_]+)"', source))
    assert declared == {"strata_demo_http_requests", "strata_demo_http_request_duration_seconds", "strata_demo_app"}
    exposed = {
        "strata_demo_http_requests_total",
        "strata_demo_http_request_duration_seconds_bucket",
        "strata_demo_http_request_duration_seconds_sum",
        "strata_demo_http_request_duration_seconds_count",
        "strata_demo_app_info",
    }
    used: set[str] = set()
    for path in DASHBOARDS:
        for _where, expr in promql_of(load(path)):
            used |= set(re.findall(r"\bstrata_demo_[a-z_]+", expr))
    assert used, "no dashboard reads the demo app"
    assert used <= exposed, f"metric names the demo app does not expose: {sorted(used - exposed)}"


def test_the_rollout_dashboard_annotates_every_step() -> None:
    rollout = load(DASHBOARD_DIR / "rollout.json")
    annotations = {a["name"]: a for a in rollout["annotations"]["list"] if a["datasource"].get("uid") == PROMETHEUS_UID}
    assert "haproxy_server_weight" in annotations["Weight step"]["expr"]
    assert "changes(" in annotations["Weight step"]["expr"]
    assert all(a["enable"] for a in annotations.values())
    titles = {p["title"] for p in panels_of(rollout)}
    assert {"Weight share by version", "Error ratio by version", "p95 latency by version"} <= titles


# ------------------------------------------------------------------ rendered provisioning files


def render_template(
    role: Path,
    tmp_path: Path,
    template: str,
    variables: dict[str, Any],
    *,
    hostname: str = "mon1",
    inventory: str | None = None,
) -> str:
    """Render a role template with Ansible's own engine: ansible.builtin.template on ``hostname`` (local connection),
    with the role's defaults and vars, then ``variables`` (extra vars, so they win like inventory values would).
    ``hostname`` may be a pattern (``all``): each host's file is ``out/<template>.<host>``; the first is returned."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"Render a template of strata.deploy.{role.name}",
                    "hosts": hostname,
                    "gather_facts": False,
                    "vars_files": [str(role / "defaults" / "main.yml"), str(role / "vars" / "main.yml")],
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.template": {
                                "src": str(role / "templates" / template),
                                "dest": str(out / template) + ".{{ inventory_hostname }}",
                                "mode": "0600",
                            },
                        }
                    ],
                }
            ]
        )
    )
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    (tmp_path / "hosts.ini").write_text(inventory or f"{hostname} ansible_connection=local\n")
    # A configuration of its own: the project's ansible.cfg names the lab's vault file by a relative path.
    (tmp_path / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {ROOT / '.cache' / 'collections'}\n")
    ansible_playbook = shutil.which(
        "ansible-playbook", path=os.pathsep.join([str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")])
    )
    assert ansible_playbook, "ansible-playbook not found (make venv)"
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=shutil.which("python3") or "/usr/bin/python3",
    )
    result = subprocess.run(
        [ansible_playbook, "-i", "hosts.ini", "-e", "@vars.yml", str(playbook)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"rendering {template} failed:\n{result.stdout}{result.stderr}"
    return sorted(out.glob(f"{template}.*"))[0].read_text()


def render(tmp_path: Path, template: str, variables: dict[str, Any]) -> str:
    return render_template(ROLE, tmp_path, template, variables)


SECRET_VARS = {
    "grafana_admin_password": "admin-password-from-vault",
    "grafana_secret_key": "secret-key-from-vault-0123",
    "grafana_prometheus_password": "prometheus-password-from-vault",
    "grafana_loki_username": "grafana",
    "grafana_loki_password": "loki-pa$$word-from-vault",
    "_grafana_ca_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
}


def test_rendered_datasources(tmp_path: Path) -> None:
    text = render(tmp_path, "datasources.yml.j2", {**SECRET_VARS})
    data = yaml.safe_load(text)
    assert data["apiVersion"] == 1
    assert data["prune"] is True
    by_uid = {d["uid"]: d for d in data["datasources"]}
    assert set(by_uid) == {PROMETHEUS_UID, LOKI_UID}
    prometheus, loki = by_uid[PROMETHEUS_UID], by_uid[LOKI_UID]
    assert prometheus["type"] == "prometheus" and loki["type"] == "loki"
    assert prometheus["url"] == "https://mon1:9090" and loki["url"] == "https://mon1:3101"
    assert prometheus["isDefault"] is True and loki["isDefault"] is False
    assert prometheus["basicAuth"] is True and prometheus["basicAuthUser"] == "admin"
    assert prometheus["secureJsonData"]["basicAuthPassword"] == SECRET_VARS["grafana_prometheus_password"]
    # Grafana expands $NAME in provisioning files: a literal $ is written $$
    assert loki["secureJsonData"]["basicAuthPassword"] == "loki-pa$$$$word-from-vault"
    for source in (prometheus, loki):
        assert source["editable"] is False
        assert source["jsonData"]["tlsAuthWithCACert"] is True
        assert source["secureJsonData"]["tlsCACert"].startswith("-----BEGIN CERTIFICATE-----")
        # secrets only under secureJsonData (Grafana encrypts those)
        outside = json.dumps({k: v for k, v in source.items() if k != "secureJsonData"})
        assert "from-vault" not in outside


def test_rendered_datasources_without_loki_or_auth(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        "datasources.yml.j2",
        {**SECRET_VARS, "grafana_loki_url": "", "grafana_prometheus_username": "", "_grafana_ca_pem": ""},
    )
    data = yaml.safe_load(text)
    assert [d["uid"] for d in data["datasources"]] == [PROMETHEUS_UID]
    assert data["datasources"][0]["basicAuth"] is False
    assert data["datasources"][0]["secureJsonData"] == {}


def test_rendered_dashboard_provider(tmp_path: Path) -> None:
    data = yaml.safe_load(render(tmp_path, "dashboards.yml.j2", {}))
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == ROLE_VARS["_grafana_dashboards_dir"]
    assert provider["allowUiUpdates"] is False and provider["disableDeletion"] is True


def test_rendered_grafana_ini_keeps_secrets_out_and_access_closed(tmp_path: Path) -> None:
    text = render(tmp_path, "grafana.ini.j2", {**SECRET_VARS, "grafana_ini_extra": {"server": {"enable_gzip": False}}})
    assert "from-vault" not in text
    sections: dict[str, dict[str, str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        assert current is not None
        sections[current][key] = value
    assert sections["auth.anonymous"]["enabled"] == "false"
    assert sections["users"]["allow_sign_up"] == "false"
    assert sections["server"]["protocol"] == "https"
    assert sections["server"]["enable_gzip"] == "false", "grafana_ini_extra overrides the role's settings"
    # Grafana reads both from files: grafana.ini names the files only
    for key in ("admin_password", "secret_key"):
        assert sections["security"][key] == f"$__file{{/etc/grafana/secrets/{key}}}"
