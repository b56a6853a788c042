"""The public Replayer (issue 5)."""
