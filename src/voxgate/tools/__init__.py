"""Tools a persona can call mid-conversation (docs/tools.md): functions described by their
type hints, calls read out of the reply as it streams, built-ins such as the clock."""
