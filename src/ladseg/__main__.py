"""``python -m ladseg`` (and ``torchrun -m ladseg``) run the command-line tool."""

from ladseg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
