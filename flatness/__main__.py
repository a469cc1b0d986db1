"""Run the command line as ``python -m flatness``."""

from flatness.cli import main

raise SystemExit(main())
