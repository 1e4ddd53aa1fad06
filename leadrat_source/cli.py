"""Command-line entry point (filled in as commands land)."""


def main() -> int:
    raise SystemExit("not yet")
