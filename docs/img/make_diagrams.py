"""Write docs/img/architecture.svg and docs/img/traffic-control.svg (the pictures of docs/architecture.md).

    python3 docs/img/make_diagrams.py

Plain SVG with a white background and system fonts, so GitHub shows it the same in light and dark mode. Edit
the boxes and arrows below, not the SVG files.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
FONT = 'font-family="Helvetica, Arial, sans-serif"'
COLOURS = {
    "request": "#1f3b73",
    "data": "#1f3b73",
    "scrape": "#c25400",
    "logs": "#2e7d32",
    "control": "#6a1b9a",
}


class Svg:
    def __init__(self, width: int, height: int, title: str) -> None:
        self.width, self.height = width, height
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            "<defs>",
            *(
                f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
                for name, colour in COLOURS.items()
            ),
            "</defs>",
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        ]

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        size: int = 14,
        weight: str = "normal",
        anchor: str = "middle",
        colour: str = "#1a1a1a",
        italic: bool = False,
    ) -> None:
        style = ' font-style="italic"' if italic else ""
        self.parts.append(
            f'<text x="{x}" y="{y}" {FONT} font-size="{size}" font-weight="{weight}" text-anchor="{anchor}" '
            f'fill="{colour}"{style}>{escape(content)}</text>'
        )

    def box(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        lines: list[str],
        *,
        fill: str = "#eef3fb",
        stroke: str = "#1f3b73",
        dashed: bool = False,
        title_size: int = 15,
    ) -> None:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        self.parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" ry="8" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.6"{dash}/>'
        )
        top = y + h / 2 - (len(lines) - 1) * 9 + 5
        for i, line in enumerate(lines):
            self.text(
                x + w / 2, top + i * 18, line, size=title_size if i == 0 else 12, weight="bold" if i == 0 else "normal"
            )

    def group(
        self, x: float, y: float, w: float, h: float, label: str, *, note: str = "", dashed: bool = False
    ) -> None:
        dash = ' stroke-dasharray="8 5"' if dashed else ""
        self.parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="12" ry="12" fill="#fafafa" stroke="#8a8a8a" '
            f'stroke-width="1.2"{dash}/>'
        )
        self.text(x + 12, y + 20, label, size=14, weight="bold", anchor="start", colour="#333333")
        if note:
            self.text(x + 12, y + h - 10, note, size=12, anchor="start", colour="#8a1c1c", italic=True)

    def arrow(
        self,
        points: list[tuple[float, float]],
        kind: str,
        label: str = "",
        *,
        at: int = 0,
        dx: float = 0,
        dy: float = -6,
        both: bool = False,
    ) -> None:
        colour = COLOURS[kind]
        dash = {
            "scrape": ' stroke-dasharray="7 4"',
            "logs": ' stroke-dasharray="2 4"',
            "control": ' stroke-dasharray="10 4 2 4"',
        }.get(kind, "")
        path = " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(points))
        start = f' marker-start="url(#arrow-{kind})"' if both else ""
        self.parts.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}{start} '
            f'marker-end="url(#arrow-{kind})"/>'
        )
        if label:
            (x1, y1), (x2, y2) = points[at], points[at + 1]
            self.text((x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy, label, size=12, colour=colour)

    def legend(self, x: float, y: float, items: list[tuple[str, str]]) -> None:
        for i, (kind, label) in enumerate(items):
            yy = y + i * 20
            self.arrow([(x, yy), (x + 46, yy)], kind)
            self.text(x + 56, yy + 4, label, size=12, anchor="start")

    def save(self, name: str) -> None:
        self.parts.append("</svg>")
        (HERE / name).write_text("\n".join(self.parts) + "\n")


def architecture() -> None:
    s = Svg(1180, 715, "strata.deploy: the lab's topology and its data flows")
    s.text(590, 30, "strata.deploy - the lab's topology (inventories/lab) and its data flows", size=18, weight="bold")

    # the controller
    s.box(
        430,
        52,
        330,
        62,
        ["Ansible controller", "make lab, playbooks/*.yml, strata.deploy.canary", "internal CA in .pki/<environment>/"],
        fill="#f3e8f7",
        stroke="#6a1b9a",
    )

    # clients
    s.box(20, 300, 120, 70, ["Users", "HTTPS clients"], fill="#ffffff")

    # tiers
    s.group(175, 150, 200, 380, "lb - load balancers")
    s.box(195, 215, 160, 92, ["lb1", "HAProxy 2.6 (or nginx)", ":80 -> :443, TLS, h2", "metrics :8405"])
    s.box(195, 360, 160, 92, ["lb2", "HAProxy 2.6 (or nginx)", ":80 -> :443, TLS, h2", "metrics :8405"])

    s.group(445, 150, 200, 380, "app - application")
    for i, y in enumerate((190, 300, 410)):
        s.box(465, y, 160, 80, [f"app{i + 1}", "demo app under systemd", ":8080 /health /metrics"])

    s.group(
        720, 140, 440, 185, "postgresql", note="role and switchover on branch wip/postgresql - not on main", dashed=True
    )
    s.box(740, 172, 150, 70, ["pg1", "primary :5432", "exporter :9187"], fill="#f2f2f2", dashed=True)
    s.box(990, 165, 150, 55, ["pg2", "streaming replica"], fill="#f2f2f2", dashed=True)
    s.box(990, 232, 150, 55, ["pg3", "streaming replica"], fill="#f2f2f2", dashed=True)
    s.arrow([(890, 200), (990, 192)], "data")
    s.arrow([(890, 215), (990, 258)], "data", "WAL", at=0, dx=-20, dy=4)

    s.group(720, 345, 440, 185, "redis", note="role on main (Molecule-proven); not yet in the lab's site.yml")
    s.box(740, 380, 150, 80, ["redis1", "primary :6379", "Sentinel :26379", "exporter :9121"])
    s.box(990, 372, 150, 55, ["redis2", "replica + Sentinel"])
    s.box(990, 440, 150, 55, ["redis3", "replica + Sentinel"])
    s.arrow([(890, 405), (990, 399)], "data")
    s.arrow([(890, 430), (990, 467)], "data", "replication", at=0, dx=-30, dy=10)

    _monitoring_and_flows(s)
    s.save("architecture.svg")


def _monitoring_and_flows(s: Svg) -> None:
    # monitoring
    s.group(175, 575, 985, 120, "monitoring - mon1")
    s.box(195, 605, 200, 70, ["Prometheus :9090", "targets from the groups", "TLS + basic auth"])
    s.box(415, 605, 190, 70, ["Alertmanager :9093", "routes by severity/tier", "webhook, Slack, email"])
    s.box(625, 605, 170, 70, ["Grafana :3000", "6 dashboards as files"], fill="#f2f2f2", dashed=True)
    s.box(815, 605, 170, 70, ["Loki :3100", "behind TLS proxy :3101"], fill="#f2f2f2", dashed=True)
    s.text(1070, 632, "dashed: roles tested", size=12, colour="#8a1c1c", italic=True)
    s.text(1070, 650, "by rendering only,", size=12, colour="#8a1c1c", italic=True)
    s.text(1070, 668, "not installed in the lab", size=12, colour="#8a1c1c", italic=True)
    s.arrow([(395, 640), (415, 640)], "scrape")

    # the request path
    s.arrow([(140, 325), (195, 261)], "request", "HTTPS :443", at=0, dx=-28, dy=-4)
    s.arrow([(140, 345), (195, 406)], "request")
    for ly in (261, 406):
        for ay in (230, 340, 450):
            s.arrow([(355, ly), (465, ay)], "request")
    for i, line in enumerate(("HTTP :8080", "health checks", "every 1 s")):
        s.text(410, 485 + i * 15, line, size=12, colour=COLOURS["request"])
    s.arrow([(625, 230), (740, 207)], "data", "SQL :5432", at=0, dx=10, dy=-8)
    s.arrow([(625, 340), (740, 420)], "data", "Redis :6379", at=0, dx=30, dy=-4)

    # scrapes and logs
    s.arrow([(240, 605), (240, 452)], "scrape", "scrape", at=0, dx=-26, dy=0)
    s.arrow([(545, 605), (545, 490)], "scrape")
    s.arrow([(300, 605), (300, 562), (770, 562), (770, 530)], "scrape")
    s.text(
        345,
        596,
        "Prometheus scrapes node_exporter :9100 on every host, HAProxy :8405, the app :8080, exporters",
        size=12,
        anchor="start",
        colour=COLOURS["scrape"],
    )
    s.arrow([(600, 490), (600, 548), (900, 548), (900, 605)], "logs")
    s.text(850, 542, "Alloy: logs -> Loki", size=12, colour=COLOURS["logs"])

    # the controller's reach
    s.arrow([(470, 114), (300, 210)], "control")
    s.text(250, 120, "ssh / podman: converge", size=12, colour=COLOURS["control"])
    s.arrow([(560, 114), (555, 190)], "control")
    s.arrow([(700, 114), (790, 172)], "control")

    s.legend(
        20,
        450,
        [
            ("request", "user requests"),
            ("data", "data / replication"),
            ("scrape", "Prometheus scrape"),
            ("logs", "logs (Alloy)"),
            ("control", "Ansible"),
        ],
    )
    s.text(20, 560, "Hosts are podman", size=12, anchor="start", colour="#555555")
    s.text(20, 576, "containers on network", size=12, anchor="start", colour="#555555")
    s.text(20, 592, "strata-lab 10.89.60.0/24", size=12, anchor="start", colour="#555555")


def traffic_control() -> None:
    s = Svg(1180, 580, "strata.deploy: how the controller shifts traffic")
    s.text(
        590,
        30,
        "How a rollout moves traffic: one action on the controller, one provider module per load balancer",
        size=17,
        weight="bold",
    )
    s.box(
        30,
        70,
        300,
        150,
        [
            "strata.deploy.canary (action)",
            "steps, pause, gate, on_failure",
            "plan in check mode",
            "resume / rollback from the journal",
            "playbooks canary, rolling_update,",
            "blue_green, rollback",
        ],
        fill="#f3e8f7",
        stroke="#6a1b9a",
    )
    s.box(
        30,
        330,
        300,
        90,
        [
            "strata.deploy.prometheus_gate",
            "PromQL: canary vs limits and baseline",
            "no data -> pass | fail | inconclusive",
        ],
        fill="#fff3e6",
        stroke="#c25400",
    )
    s.box(30, 445, 300, 55, ["Prometheus (mon1 or any)", "HTTPS + basic auth"], fill="#fff3e6", stroke="#c25400")
    s.arrow([(180, 220), (180, 330)], "control", "after each step's pause", at=0, dx=85, dy=0)
    s.arrow([(180, 420), (180, 445)], "scrape")

    rows = [
        (
            "haproxy",
            "strata.deploy.haproxy_servers",
            "runs on each load balancer",
            "HAProxy runtime API",
            "admin socket, one batch,",
            "read back; server-state file",
            "journal: JSON file on each LB",
        ),
        (
            "nginx",
            "strata.deploy.nginx_upstream",
            "runs on each load balancer",
            "nginx upstream file",
            "nginx -t, then one reload;",
            "file restored if the test fails",
            "journal: JSON file on each LB",
        ),
        (
            "alb",
            "strata.deploy.alb_traffic",
            "runs where the AWS API is reached",
            "AWS ALB listener rule",
            "ModifyRule of its forward",
            "weights (0-999), read back",
            "journal: the rule's tags",
        ),
        (
            "kubernetes",
            "strata.deploy.k8s_traffic",
            "runs where the API server is reached",
            "Gateway API HTTPRoute",
            "backendRef weights, patch",
            "with resourceVersion (409 retry)",
            "journal: an annotation",
        ),
    ]
    for i, (provider, module, where, target, how1, how2, journal) in enumerate(rows):
        y = 60 + i * 112
        s.box(480, y, 270, 90, [module, f"provider: {provider}", where])
        s.box(860, y, 290, 90, [target, how1, how2, journal], fill="#ffffff")
        s.arrow([(330, 145), (480, y + 45)], "control")
        s.arrow([(750, y + 45), (860, y + 45)], "request", "set + verify", at=0, dy=-8)
    s.text(
        405,
        535,
        "Each load balancer in turn, in lockstep; a step refused by one returns all to the last safe",
        size=12,
        anchor="start",
        colour="#333333",
    )
    s.text(
        405,
        553,
        "state. strata.deploy.traffic_info reads weights and journals of any provider.",
        size=12,
        anchor="start",
        colour="#333333",
    )
    s.save("traffic-control.svg")


if __name__ == "__main__":
    architecture()
    traffic_control()
