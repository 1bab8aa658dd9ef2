"""The web side: ``create_app(gateway)`` (app.py) serves

- the relay routes (relay_routes.py, raw ASGI over exchange.py: the metered hot path
  never goes through Quart),
- Quart blueprints: public.py (probes, health), models.py (model listing), transfer.py
  (the reseller transfer API), each reading the gateway through context.py,
- errors in the shape each route speaks (error_shapes.py), JSON through responses.py.
"""
