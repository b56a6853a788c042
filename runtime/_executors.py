"""Thread pools for sync user code: one for task attempts, a larger one for sync workflow bodies.

Separate pools mean sync bodies blocked on `.result()` can never starve the
tasks they wait for. Context variables (the run scope, structlog context, the
current span) are copied into the worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_pools: dict[str, ThreadPoolExecutor] = {}
_SIZES = {"task": 64, "body": 256}


def _pool(kind: str) -> ThreadPoolExecutor:
    pool = _pools.get(kind)
    if pool is None:
        pool = _pools[kind] = ThreadPoolExecutor(
            max_workers=_SIZES[kind], thread_name_prefix=f"perdure-{kind}"
        )
    return pool


async def run_sync(kind: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run `fn` in the `kind` ("task" or "body") pool with the caller's context variables.

    `kind` and `fn` are positional-only, so `kwargs` may hold any name (a user
    function's ``kind=`` or ``fn=`` parameter, or its ``**kwargs``).
    """
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(_pool(kind), functools.partial(ctx.run, fn, *args, **kwargs))
