"""Production, before the deploy: three orders; one is shipped, two wait for a person."""

from orders_v1 import ship_order

from perdure import Command

for order_id, cents in (("order-1", 1999), ("order-2", 4500), ("order-3", 120)):
    config = {"configurable": {"thread_id": order_id}}
    ship_order.invoke({"id": order_id, "cents": cents}, config)

ship_order.invoke(Command(resume=True), {"configurable": {"thread_id": "order-1"}})
# order-2 and order-3 are in flight: waiting on interrupt(), in the store.
