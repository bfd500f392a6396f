"""The server's floors, read from its own imports: a new import that runs back up fails here, named.

From the ground up:

* **ground** — plain building blocks (``server/<module>.py`` below): database plumbing, settings,
  errors, vocabularies and their labels, the caller type. They import nothing above them.
* **records** — ``server/records/``: the tables, one module per aggregate. Ground only.
* **domains** — ``server/<domain>/`` (service, schemas, routes, cli): ground, records and *lower*
  domains. No two domains import each other, through any chain (the graph has no cycle), and a
  domain's services never import routes, CLI modules or the web app.
* **faces** — a domain's ``routes.py`` and ``cli.py``, and the plumbing they share
  (``server/deps.py``, ``server/cli_support.py``): they may import any service, no service
  imports them.
* **top** — the web app, the app factory and the CLI assembly; nothing below imports them.

Lazy imports inside functions count too: a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"

GROUND = {
    "caller",
    "clock",
    "config",
    "dates",
    "db",
    "errors",
    "inputs",
    "jobs",
    "keyring",
    "labels",
    "limits",
    "live",
    "masking",
    "migrate",
    "proxies",
    "uploads",
    "vocabulary",
}
PLUMBING = {"cli_support", "deps", "textguard"}
TOP_MODULES = {"app", "cli", "schedule", "serve", "server_cli"}
FACES = {"routes", "cli"}
TOP_PACKAGES = {"web", "migrations"}
RECORDS = "records"


@dataclass(frozen=True)
class Import:
    source: str  # path relative to the repository, e.g. server/taps/service.py
    line: int
    target: str  # dotted module, e.g. server.kiosks.service

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _server_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        source = str(path.relative_to(SERVER.parent))
        package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import: resolve against the importing package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets = [".".join([*base, node.module] if node.module else base)]
                elif node.module:
                    targets = [node.module]
            found.extend(Import(source, node.lineno, t) for t in targets if t.split(".")[0] == "server")
    return found


def _floor(module: str) -> tuple[str, str]:
    """(floor, unit): the floor a module stands on, and the unit it belongs to on that floor."""
    parts = module.split(".")
    if len(parts) == 1:
        return "top", "server"
    head = parts[1]
    if (SERVER / head).is_dir():
        if head == RECORDS:
            return "records", head
        if head in TOP_PACKAGES:
            return "top", head
        return ("faces" if parts[-1] in FACES else "domain"), head
    if head in GROUND:
        return "ground", head
    if head in PLUMBING:
        return "faces", head
    if head in TOP_MODULES:
        return "top", head
    return "unknown", head


RANK = {"ground": 0, "records": 1, "domain": 2, "faces": 3, "top": 4}
IMPORTS = _server_imports()


def test_every_server_module_has_a_floor() -> None:
    """A new top-level module must be placed on a floor (add it to GROUND or TOP_MODULES)."""
    unplaced = sorted(
        {
            _floor(_module_name(SERVER.parent / i.source))[1]
            for i in IMPORTS
            if _floor(_module_name(SERVER.parent / i.source))[0] == "unknown"
        }
    )
    assert not unplaced, f"server modules on no floor: {unplaced}"


def test_no_import_runs_back_up_a_floor() -> None:
    """Ground imports only ground; records only ground and records; domains never the top."""
    back_edges = []
    for imp in IMPORTS:
        src_floor, _ = _floor(_module_name(SERVER.parent / imp.source))
        dst_floor, _ = _floor(imp.target)
        if src_floor in RANK and dst_floor in RANK and RANK[dst_floor] > RANK[src_floor]:
            back_edges.append(f"{imp} ({src_floor} → {dst_floor})")
    assert not back_edges, "imports that run back up:\n" + "\n".join(back_edges)


def _domain_edges() -> dict[str, dict[str, list[Import]]]:
    edges: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in IMPORTS:
        src_floor, src = _floor(_module_name(SERVER.parent / imp.source))
        dst_floor, dst = _floor(imp.target)
        in_domains = {src_floor, dst_floor} <= {"domain", "faces"} and not {src, dst} & PLUMBING
        if in_domains and src != dst:
            edges[src][dst].append(imp)
    return edges


def _find_cycle(edges: dict[str, dict[str, list[Import]]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_domains_import_each_other_in_one_direction_only() -> None:
    """The domain graph has no cycle; a failure names each import along the loop."""
    edges = _domain_edges()
    cycle = _find_cycle(edges)
    if cycle:
        hops = [f"{a} → {b}: " + "; ".join(map(str, edges[a][b][:3])) for a, b in itertools.pairwise(cycle)]
        pytest.fail("domains import each other in a loop:\n" + "\n".join(hops))


def test_services_never_import_routes_cli_or_web() -> None:
    """Routes and CLI modules call services; never the other way round."""
    wrong = []
    for imp in IMPORTS:
        src_floor, _ = _floor(_module_name(SERVER.parent / imp.source))
        if src_floor != "domain":
            continue
        if _floor(imp.target)[0] in {"faces", "top"}:
            wrong.append(str(imp))
    assert not wrong, "services that import routes, CLI or web:\n" + "\n".join(wrong)


def test_the_domain_graph_is_read_at_all() -> None:
    """Guards the guard: the parser finds the imports the server is known to have."""
    edges = _domain_edges()
    assert "records" not in edges
    assert edges["taps"], "taps imports other domains (ingest decides with them)"
    assert any(i.target.startswith("server.records") for i in IMPORTS)
