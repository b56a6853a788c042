"""The perdure command line (issue 5)."""
