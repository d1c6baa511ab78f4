"""Drives the example service's MCP endpoint with the official MCP Python SDK (`pip install mcp`).

Run by tests/mcp.rs (`live_python_sdk`, with KEYWARD_TEST_INTEROP=1) against a server it started:

    python3 tests/mcp_client.py README.md 127.0.0.1:PORT

The client configuration is the README's environment-variable form of `mcpServers` (its url and
headers, with `${VAR}` taken from the environment); only the address is replaced by the test
server's. Keys come from the environment, never the command line: TOADO_READ_KEY (scope `read`),
TOADO_WRITE_KEY (`tickets:write`), TOADO_DOOMED_KEY (revoked during its session with
TOADO_ADMIN_KEY). Prints one JSON line with what the Rust test checks further (the ticket made
through MCP); any failed check raises, with a non-zero exit status.
"""

import asyncio
import json
import os
import re
import sys
from urllib.parse import urlsplit, urlunsplit

import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def readme_servers(readme: str) -> list[dict]:
    """Every `mcpServers` entry of the README's JSON blocks, in order."""
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.S)
    entries = []
    for block in blocks:
        if '"mcpServers"' not in block:
            continue  # another JSON block (such as keytool import's JSON lines)
        doc = json.loads(block)
        if "mcpServers" in doc:
            entries.extend(doc["mcpServers"].values())
    return entries


def has_assertion(e: BaseException) -> bool:
    """Whether `e`, or any error an anyio task group wrapped in it, is a failed check."""
    if isinstance(e, AssertionError):
        return True
    return any(has_assertion(inner) for inner in getattr(e, "exceptions", ()))


def env_form(readme: str) -> dict:
    """The README entry whose headers name an environment variable."""
    for entry in readme_servers(readme):
        if any("${" in v for v in entry["headers"].values()):
            return entry
    raise AssertionError("README has no mcpServers entry with ${VAR} headers")


def configure(entry: dict, addr: str, variable_values: dict[str, str]) -> tuple[str, dict]:
    url = urlsplit(entry["url"])
    url = urlunsplit((url.scheme, addr, url.path, url.query, url.fragment))

    def expand(value: str) -> str:
        return re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: variable_values[m.group(1)], value)

    return url, {name: expand(value) for name, value in entry["headers"].items()}


def variable(entry: dict) -> str:
    for value in entry["headers"].values():
        m = re.search(r"\$\{([A-Z0-9_]+)\}", value)
        if m:
            return m.group(1)
    raise AssertionError("no ${VAR} in the headers")


async def with_session(url: str, headers: dict, body):
    # The SDK's own client (its timeouts for MCP: a long read timeout for SSE streams), with
    # the configured headers.
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)


def tool_names(listing) -> set[str]:
    return {tool.name for tool in listing.tools}


def payload(result) -> dict:
    """A tool result's structured content, checked against its text content."""
    assert not result.is_error, result
    structured = result.structured_content
    assert isinstance(structured, dict), result
    texts = [c.text for c in result.content if c.type == "text"]
    assert texts and json.loads(texts[0]) == structured, (texts, structured)
    return structured


async def main(readme_path: str, addr: str) -> None:
    with open(readme_path, encoding="utf-8") as f:
        entry = env_form(f.read())
    var = variable(entry)

    def config(key_env: str) -> tuple[str, dict]:
        return configure(entry, addr, {var: os.environ[key_env]})

    # A `read` key: the handshake, list_tickets only, a call that returns tickets, and a
    # refused call of the tool it cannot see.
    async def as_reader(session: ClientSession):
        assert session.initialize_result.server_info.name == "toado"
        names = tool_names(await session.list_tools())
        assert names == {"list_tickets"}, names
        tickets = payload(await session.call_tool("list_tickets", {}))["tickets"]
        assert tickets and all("created_by" in t for t in tickets), tickets
        try:
            result = await session.call_tool(
                "create_ticket", {"title": "nope", "company": "42", "project": "7"}
            )
        except MCPError as e:
            assert e.error.code == -32602, e.error
            assert "tickets:write" in e.error.message, e.error
        else:
            raise AssertionError(f"a read key created a ticket: {result}")
        return len(tickets)

    seen = await with_session(*config("TOADO_READ_KEY"), as_reader)

    # A `tickets:write` key sees both tools and creates a ticket, named after it and MCP.
    async def as_writer(session: ClientSession):
        names = tool_names(await session.list_tools())
        assert names == {"list_tickets", "create_ticket"}, names
        ticket = payload(
            await session.call_tool(
                "create_ticket",
                {"title": "Filed by an agent", "company": "42", "project": "7"},
            )
        )
        assert ticket["created_by"]["channel"] == "mcp", ticket
        after = payload(await session.call_tool("list_tickets", {}))["tickets"]
        assert any(t["id"] == ticket["id"] for t in after), after
        return ticket

    ticket = await with_session(*config("TOADO_WRITE_KEY"), as_writer)

    # A key revoked during its session: its next request is refused, and it cannot connect.
    doomed = os.environ["TOADO_DOOMED_KEY"]
    doomed_id = doomed.rsplit("_", 1)[1][:12]

    async def revoked_mid_session(session: ClientSession):
        assert tool_names(await session.list_tools()) == {"list_tickets"}
        async with httpx2.AsyncClient(timeout=30) as admin:
            r = await admin.post(
                f"http://{addr}/admin/keys/{doomed_id}/revoke",
                headers={"Authorization": f"Bearer {os.environ['TOADO_ADMIN_KEY']}"},
            )
            assert r.status_code == 200, r.text
        try:
            await session.list_tools()
        except Exception:  # noqa: BLE001 - the SDK reports the 401 as a transport error
            return "refused"
        raise AssertionError("a revoked key was served within its session")

    try:
        outcome = await with_session(*config("TOADO_DOOMED_KEY"), revoked_mid_session)
    except BaseException as e:  # the transport may end the session with the error too
        if has_assertion(e):
            raise
        outcome = "refused"
    assert outcome == "refused", outcome

    async def unreachable(session: ClientSession):
        raise AssertionError("a revoked key completed the handshake")

    connected = True
    try:
        await with_session(*config("TOADO_DOOMED_KEY"), unreachable)
    except BaseException as e:  # noqa: BLE001 - 401 on initialize, however the SDK wraps it
        if has_assertion(e):
            raise
        connected = False
    assert not connected

    # The bare HTTP answer to the revoked key: 401 with the RFC 6750 challenge.
    url, headers = config("TOADO_DOOMED_KEY")
    async with httpx2.AsyncClient(timeout=30) as http:
        r = await http.post(
            url,
            headers={
                **headers,
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        )
        assert r.status_code == 401, r.status_code
        assert r.headers["www-authenticate"].startswith("Bearer "), r.headers

    print(json.dumps({"seen": seen, "ticket": ticket}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
