"""`python -m clsclip` runs the command-line interface."""

from clsclip.cli import main

raise SystemExit(main())
