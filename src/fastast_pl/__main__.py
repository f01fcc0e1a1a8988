"""`python -m fastast_pl` entry point."""

from fastast_pl.cli import main

if __name__ == "__main__":
    main()
