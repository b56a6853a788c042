"""orders_v3.py: the same change, versioned by name. Old runs keep their code; new ones get v2."""

from perdure import entrypoint, interrupt, task


@task
def reserve_stock(order: dict) -> str:
    return f"reservation-{order['id']}"


@task
def charge_card(order: dict) -> str:
    return f"charge-{order['id']}-{order['cents']}"


@task
def check_fraud(order: dict) -> bool:
    return order["cents"] < 100_000


@entrypoint()
def ship_order(order: dict) -> dict:
    """Unchanged, and kept until the last run started on it has finished."""
    reservation = reserve_stock(order).result()
    if not interrupt({"ask": "ship this order?", "order": order["id"]}):
        return {"order": order["id"], "status": "rejected"}
    receipt = charge_card(order).result()
    return {"order": order["id"], "reservation": reservation, "receipt": receipt}


@entrypoint(name="ship_order_v2")
def ship_order_v2(order: dict) -> dict:
    """New orders start here."""
    reservation = reserve_stock(order).result()
    if not check_fraud(order).result():
        return {"order": order["id"], "status": "held for review"}
    if not interrupt({"ask": "ship this order?", "order": order["id"]}):
        return {"order": order["id"], "status": "rejected"}
    receipt = charge_card(order).result()
    return {"order": order["id"], "reservation": reservation, "receipt": receipt}
