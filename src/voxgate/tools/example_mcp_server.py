"""An example MCP server, written with the official ``mcp`` package: a persona can use it as
it stands, and the tests use it to check both MCP transports for real.

    python -m voxgate.tools.example_mcp_server              # stdio (what persona files start)
    python -m voxgate.tools.example_mcp_server --http 8765  # streamable HTTP at /mcp

In a persona file::

    [[mcp_servers]]
    name = "examples"
    command = ["python", "-m", "voxgate.tools.example_mcp_server"]
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer(
    "voxgate-examples",
    instructions="Unit conversion and date arithmetic for a voice assistant.",
)

# Errors are ToolError: the server hands their message to the caller (other exceptions
# become a generic "Error executing tool").

# Each unit: (dimension, how many base units one of it is). Temperatures are apart.
_UNITS: dict[str, tuple[str, float]] = {
    "km": ("length", 1000.0), "kilometres": ("length", 1000.0),
    "kilometers": ("length", 1000.0), "m": ("length", 1.0), "metres": ("length", 1.0),
    "meters": ("length", 1.0), "miles": ("length", 1609.344), "mile": ("length", 1609.344),
    "feet": ("length", 0.3048), "ft": ("length", 0.3048), "inches": ("length", 0.0254),
    "kg": ("mass", 1.0), "kilograms": ("mass", 1.0), "g": ("mass", 0.001),
    "grams": ("mass", 0.001), "lb": ("mass", 0.45359237), "pounds": ("mass", 0.45359237),
    "ounces": ("mass", 0.028349523125), "oz": ("mass", 0.028349523125),
    "litres": ("volume", 1.0), "liters": ("volume", 1.0), "l": ("volume", 1.0),
    "gallons": ("volume", 3.785411784), "cups": ("volume", 0.2365882365),
}  # fmt: skip
_TEMPERATURES = ("celsius", "fahrenheit", "kelvin", "c", "f", "k")


def _to_celsius(value: float, unit: str) -> float:
    if unit.startswith("f"):
        return (value - 32.0) * 5.0 / 9.0
    return value - 273.15 if unit.startswith("k") else value


def _from_celsius(value: float, unit: str) -> float:
    if unit.startswith("f"):
        return value * 9.0 / 5.0 + 32.0
    return value + 273.15 if unit.startswith("k") else value


@server.tool()
def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a quantity between units of length, mass, volume or temperature
    (for example 5 miles to km, 70 fahrenheit to celsius)."""
    source, target = from_unit.strip().lower(), to_unit.strip().lower()
    if source in _TEMPERATURES and target in _TEMPERATURES:
        result = _from_celsius(_to_celsius(value, source), target)
    elif source in _UNITS and target in _UNITS:
        (dimension, scale), (target_dimension, target_scale) = _UNITS[source], _UNITS[target]
        if dimension != target_dimension:
            raise ToolError(f"cannot convert {dimension} ({from_unit}) to {target_dimension}")
        result = value * scale / target_scale
    else:
        known = ", ".join(sorted({*_UNITS, *_TEMPERATURES}))
        raise ToolError(f"unknown unit {from_unit!r} or {to_unit!r}; known: {known}")
    return f"{value:g} {from_unit} is {result:.4g} {to_unit}"


@server.tool()
def days_until(day: str) -> str:
    """How many days from today until a date, given as YYYY-MM-DD."""
    try:
        target = date.fromisoformat(day.strip())
    except ValueError:
        raise ToolError(f"{day!r} is not a date in the form YYYY-MM-DD") from None
    days = (target - date.today()).days
    when = "today" if days == 0 else f"in {days} days" if days > 0 else f"{-days} days ago"
    return f"{target:%A %d %B %Y} is {when}"


@server.tool()
async def slow_echo(text: str, seconds: float) -> str:
    """Say the text back after waiting the given seconds (a test of slow tools)."""
    await asyncio.sleep(max(0.0, min(seconds, 60.0)))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="streamable HTTP on PORT")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if args.http is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.http)


if __name__ == "__main__":
    main()
