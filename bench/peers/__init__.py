"""Benchmarks against peers: perdure vs LangGraph (functional API, SQLite) and DBOS (SQLite).

The same four workloads, one worker module per system (``perdure_w.py``,
``langgraph_w.py``, ``dbos_w.py``), each run in a fresh interpreter from the
system's own virtualenv; ``python -m bench.peers`` writes ``results.md`` here
and ``docs/assets/peers.png``; ``--quick`` is the CI smoke run (tiny sizes).
Peers come from the ``bench`` extra or from ``--langgraph-python`` /
``--dbos-python`` interpreters; a missing peer is skipped with a message.
"""
