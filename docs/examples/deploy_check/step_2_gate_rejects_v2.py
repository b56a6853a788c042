"""The gate, run against orders_v2: both orders in flight would break, so it says no."""

import subprocess
import sys

import check_deploy

assert check_deploy.main(["orders_v2"]) == 1

# The same check from the command line: exit status 1 stops a deploy script.
cli = subprocess.run(
    [sys.executable, "-m", "perdure", "replay", "--all", "--in-flight", "--app", "orders_v2"],
    check=False,
    capture_output=True,
    text=True,
)
print(cli.stdout)
assert cli.returncode == 1
assert "2 diverged" in cli.stdout
