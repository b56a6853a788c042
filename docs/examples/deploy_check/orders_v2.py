"""orders_v2.py: a candidate that checks for fraud before the approval. It breaks runs in flight."""

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
    reservation = reserve_stock(order).result()
    if not check_fraud(order).result():  # new: a step where old runs recorded the interrupt
        return {"order": order["id"], "status": "held for review"}
    if not interrupt({"ask": "ship this order?", "order": order["id"]}):
        return {"order": order["id"], "status": "rejected"}
    receipt = charge_card(order).result()
    return {"order": order["id"], "reservation": reservation, "receipt": receipt}
