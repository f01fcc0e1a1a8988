"""The tool subcommands of `python -m fastast_pl` (registered in `fastast_pl.cli.TOOLS`).

Each module has a ``main(argv) -> int`` that parses its own arguments: 0 on success, 2 with
a one-line message on stderr for a user error.
"""
