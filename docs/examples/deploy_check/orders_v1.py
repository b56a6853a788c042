"""orders_v1.py: the code in production. A person approves each order before it ships."""

from perdure import entrypoint, interrupt, task


@task
def reserve_stock(order: dict) -> str:
    return f"reservation-{order['id']}"


@task
def charge_card(order: dict) -> str:
    return f"charge-{order['id']}-{order['cents']}"


@entrypoint()
def ship_order(order: dict) -> dict:
    reservation = reserve_stock(order).result()
    if not interrupt({"ask": "ship this order?", "order": order["id"]}):
        return {"order": order["id"], "status": "rejected"}
    receipt = charge_card(order).result()
    return {"order": order["id"], "reservation": reservation, "receipt": receipt}
