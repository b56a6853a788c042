"""``python -m perdure``: the `perdure` command line."""

from perdure.cli import main

raise SystemExit(main())
