"""Workflow tests (issue 4): @entrypoint/@task, interrupts, replay rules, streaming, sleep."""
