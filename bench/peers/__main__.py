"""``python -m bench.peers [--quick]``: see `bench.peers._runner`."""

from bench.peers._runner import main

raise SystemExit(main())
