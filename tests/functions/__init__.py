"""Tests of durable functions (`@function`, `FunctionContext`, `Client`) through the public API."""
