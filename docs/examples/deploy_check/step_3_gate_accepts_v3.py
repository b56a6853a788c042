"""The gate passes orders_v3; deployed, it finishes the old runs and starts new ones on v2."""

import check_deploy

from perdure import Command

assert check_deploy.main(["orders_v3"]) == 0

# The deploy: this process now runs orders_v3 on the same store.
from orders_v3 import ship_order, ship_order_v2  # noqa: E402

answered = ship_order.invoke(Command(resume=True), {"configurable": {"thread_id": "order-2"}})
assert answered == {
    "order": "order-2",
    "reservation": "reservation-order-2",
    "receipt": "charge-order-2-4500",
}

new = {"configurable": {"thread_id": "order-4"}}
paused = ship_order_v2.invoke({"id": "order-4", "cents": 250_000}, new)
assert paused == {"order": "order-4", "status": "held for review"}
