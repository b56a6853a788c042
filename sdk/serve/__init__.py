"""perdure.serve: the gateway (``perdure serve``) and the remote `Client`'s transport.

Needs the ``serve`` extra (``pip install 'perdure[serve]'``: Starlette, uvicorn,
httpx2). Nothing here is imported by ``import perdure``: the CLI loads it for
``perdure serve`` and ``Client(url=...)`` loads the remote client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perdure.serve._app import create_app
    from perdure.serve._remote import RemoteClient

__all__ = ["RemoteClient", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from perdure.serve._app import create_app

        return create_app
    if name == "RemoteClient":
        from perdure.serve._remote import RemoteClient

        return RemoteClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
