"""`same_store` / `store_key`: the one place that decides whether two names are one store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perdure import LmdbEventLog, MemoryEventLog, Runtime, StoreLockedError
from perdure.runtime import find_runtime, same_store, store_key


async def test_spellings_of_one_folder_are_one_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    link = tmp_path / "link"
    link.symlink_to(store)
    monkeypatch.chdir(tmp_path)
    log = LmdbEventLog(os.fspath(store))
    try:
        for other in ("store", "./store/", os.fspath(store), link, "link", log):
            assert same_store(store, other), other
            assert same_store(other, store), other
    finally:
        await log.close()
    assert not same_store(store, tmp_path / "elsewhere")


def test_the_default_store_is_what_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERDURE_STORE", os.fspath(tmp_path / "env-store"))
    assert store_key() == store_key(path=tmp_path / "env-store")


def test_postgres_urls_and_other_logs() -> None:
    url = "postgresql://user@db.example/perdure"
    assert same_store(url, url)
    assert not same_store(url, "postgresql://user@db.example/other")
    a, b = MemoryEventLog(), MemoryEventLog()
    assert same_store(a, a)
    assert not same_store(a, b)  # two memory logs are two stores, whatever their content


async def test_a_runtime_is_found_and_a_second_one_refused_by_that_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with Runtime(tmp_path / "found") as rt:
        assert find_runtime(path="./found") is rt
        assert find_runtime(path=tmp_path / "found" / ".." / "found") is rt
        assert find_runtime(path=tmp_path / "not-found") is None
        with pytest.raises(StoreLockedError, match="already open in this process"):
            async with Runtime("found/"):
                pass
