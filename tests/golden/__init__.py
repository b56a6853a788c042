"""Golden logs (issue 5): runs written by earlier versions, replayed in CI."""
