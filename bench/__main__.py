"""``python -m bench``: see bench.cli for the options."""

from bench.cli import main

raise SystemExit(main())
