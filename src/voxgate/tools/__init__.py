"""Tools a persona can call mid-conversation (issue 13; being built: not yet wired in)."""
