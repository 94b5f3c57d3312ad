"""A service declared only here — three operations, one of them picking its argument from another — is
everywhere a service appears without touching any other module: listServices, getCapabilities with its
schemas, the slash form, the pipeline and the ledger, the console's Operations screen and its palette.
And the console's structure: screens import no handler, and no import cycle runs through console/."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from pydantic import Field
from textual.widgets import Select

from console.app import ConsoleApp
from gateway_core.catalog import DEFAULT_CATALOG, Catalog, ServiceSpec
from gateway_core.clock import Clock
from gateway_core.config import Settings, load_settings
from gateway_core.errors import ResourceNotFound
from gateway_core.handlers import ServiceHandler
from gateway_core.health import HealthReport
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, Picker, Target
from gateway_core.ratelimit import RateLimit
from tests.servers import run_gateway
from tests.test_console import until
from tests.test_wire_contract import execute, rpc

NOTES_SPEC = ServiceSpec("notes", "server", False, 50, 0.0001, RateLimit(max_requests=1000, window_ms=60_000),
                         "Notes kept in memory, declared only in a test")


class NoteArgs(OperationArgs):
    note_id: str = Field(min_length=1, description="the note's id")


def _listed(arguments: Any, notes: Any) -> dict[str, Any]:
    return {"count": len(notes), "notes": notes}


class NotesHandler(ServiceHandler):
    service = "notes"
    operations = OperationTable([
        Operation("list-notes", NoArgs, "read", "Every note", group="notes", shape=_listed),
        Operation("read-note", NoteArgs, "read", "One note", group="notes", target=Target("notes", "note_id"),
                  pickers={"note_id": Picker("list-notes", "notes", value="id", label="title")}, aliases=("cat",)),
        Operation("burn-note", NoteArgs, "destructive", "Burn a note", group="notes",
                  target=Target("notes", "note_id"), pickers={"note_id": Picker("list-notes", "notes", "id", "title")}),
    ])

    def __init__(self) -> None:
        self.notes = {"n1": {"id": "n1", "title": "deploy key", "text": "rotates on Fridays"},
                      "n2": {"id": "n2", "title": "on call", "text": "alice this week"}}

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls()

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        values = args.model_dump()
        if operation.name == "list-notes":
            answer: Any = list(self.notes.values())
        elif values["note_id"] not in self.notes:
            raise ResourceNotFound(f"no note {values['note_id']}", {"kind": "note", "id": values["note_id"]})
        else:
            answer = self.notes[values["note_id"]]
            if operation.name == "burn-note":
                del self.notes[values["note_id"]]
        return operation.shape(values, answer) if operation.shape else {"note": answer}

    async def health(self) -> HealthReport:
        return HealthReport("healthy", 0.1, "in memory")


async def test_a_service_declared_only_here_is_listed_described_sliced_and_recorded(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "n.db", extra_specs=(NOTES_SPEC,),
                           handler_classes={"notes": NotesHandler}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "notes")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            listed = (await client.post("/mcp/rpc", json=rpc("mcp.listServices"))).json()["result"]["data"]
            described = (await client.post("/mcp/rpc", json=rpc("mcp.getCapabilities", {"service": "notes"})))
            read = (await client.post("/mcp/rpc", json=execute("notes", "cat", ["n1"]))).json()["result"]
            sliced = (await client.post("/mcp/execute", json={"command": "/mcp-notes read_note n2", "id": 2})).json()
            missing = (await client.post("/mcp/rpc", json=execute("notes", "read-note", {"note_id": "nope"})))
        await gw.gateway.recorder.flush()
        rows = await gw.gateway.store.recent_calls(10)
    notes = next(service for service in listed if service["name"] == "notes")
    assert notes["capabilities"] == ["list-notes", "read-note", "burn-note"] and notes["status"] != "not_configured"
    capabilities = {operation["name"]: operation for operation in described.json()["result"]["data"]}
    assert capabilities["read-note"]["inputSchema"]["properties"]["note_id"]["minLength"] == 1
    assert capabilities["burn-note"]["risk"] == "destructive"
    assert read["data"]["note"]["title"] == "deploy key" and read["metadata"]["operation"] == "read-note"
    assert sliced["result"]["data"]["note"]["title"] == "on call"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == -32007
    assert [(row.service, row.operation, row.status) for row in reversed(rows) if row.service] == [
        ("notes", "read-note", "success"), ("notes", "read-note", "success"), ("notes", "read-note", "error")]


def notes_console(tmp_path: Path) -> ConsoleApp:
    settings = load_settings(None, store={"path": tmp_path / "console.db"}, server={"port": 0},
                             health={"interval_seconds": 3600})
    return ConsoleApp(settings, orchestrator_port=0, login="alice", gateway_address_shown="127.0.0.1:8100",
                      catalog=Catalog((*DEFAULT_CATALOG, NOTES_SPEC)), handler_classes={"notes": NotesHandler})


async def test_its_operations_screen_and_palette_come_from_the_declaration(tmp_path: Path) -> None:
    app = notes_console(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.gateway is not None)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"notes burn")
        await pilot.pause(0.5)
        await pilot.press("enter")
        screen = app.operations_screen
        await until(pilot, lambda: app.screen is screen and screen.selected is not None)
        assert screen.service is not None and screen.service.name == "notes"
        assert screen.selected is not None and screen.selected.name == "burn-note"
        picker = screen.query_one("#field-note_id", Select)
        await until(pilot, lambda: screen.query_one("#form").picked_names.get("note_id") == {  # type: ignore[attr-defined]
            "n1": "deploy key", "n2": "on call"})  # filled by list-notes, run as the operator
        picker.value = "n2"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        await pilot.press(*"on call", "enter")  # destructive: the target's name, typed
        await until(pilot, lambda: any(call.operation == "burn-note" for call in app.state.calls))
        burnt = next(call for call in app.state.calls if call.operation == "burn-note")
    assert burnt.agent_id == "operator:alice" and burnt.status == "success" and burnt.service == "notes"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda size: f"{size[0]}x{size[1]}")
def test_its_operations_screen_snapshot(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = notes_console(tmp_path)

    async def open_read_note(pilot: Any) -> None:
        await until(pilot, lambda: app.state.gateway is not None)
        await pilot.press("c")
        screen = app.operations_screen
        await until(pilot, lambda: app.screen is screen and screen.service is not None)
        await screen.choose("read-note")
        await until(pilot, lambda: bool(screen.query_one("#form").picked_names.get("note_id")))  # type: ignore[attr-defined]
        screen.query_one("#operations").focus()
        app._refresh()  # what the once-a-second tick would show
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=open_read_note)


# -- the console's structure --------------------------------------------------------------------------

CONSOLE = Path(__file__).resolve().parents[1] / "console"


def _imports(path: Path) -> set[str]:
    """The modules a file imports, TYPE_CHECKING blocks included (a cycle hidden there is still a cycle)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_screens_import_no_handler_and_no_import_cycle_runs_through_the_console() -> None:
    modules = {".".join(path.relative_to(CONSOLE.parent).with_suffix("").parts): path
               for path in CONSOLE.rglob("*.py")}
    graph = {name: {imported for imported in _imports(path) if imported in modules} for name, path in modules.items()}
    for name, path in modules.items():
        if name.startswith("console.screens."):
            assert not any(imported.startswith("gateway_core.handlers") for imported in _imports(path)), name
    # No cycles: a module's imports never lead back to it.
    for start in graph:
        seen, frontier = set(), list(graph[start])
        while frontier:
            module = frontier.pop()
            assert module != start, f"an import cycle runs through {start}"
            if module not in seen:
                seen.add(module)
                frontier.extend(graph[module])


def test_the_declaration_refuses_a_picker_of_an_operation_the_service_does_not_declare() -> None:
    with pytest.raises(ValueError, match="picks from 'list-nothing'"):
        OperationTable([Operation("read", NoteArgs, "read", "x", pickers={"note_id": Picker("list-nothing", "x")})])
    assert json.dumps(sorted(NotesHandler.operations)) == '["burn-note", "list-notes", "read-note"]'


def test_a_form_asks_for_a_list_or_an_object_as_json() -> None:
    from console.widgets.operation_form import form_fields
    from gateway_core.handlers.postgres import POSTGRES_OPERATIONS

    query = next(operation for operation in POSTGRES_OPERATIONS if operation.name == "query")
    kinds = {field.name: field.kind for field in form_fields(query)}
    assert kinds["params"] == "json" and kinds["sql"] == "text"


def test_a_tools_form_keeps_only_descriptions_that_are_text() -> None:
    from console.widgets.operation_form import form_fields
    from gateway_core.upstream_tool import UpstreamTool

    tool = UpstreamTool.declare("odd", "a tool", {"type": "object", "properties": {
        "a": {"type": "string", "description": 42}, "b": {"type": "string", "description": "the b"}}}, "read")
    assert {field.name: field.info.description for field in form_fields(tool)} == {"a": None, "b": "the b"}
