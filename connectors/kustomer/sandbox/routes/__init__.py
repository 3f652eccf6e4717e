"""HTTP routes of the sandbox, one module per area (see ``common`` for helpers extra routers can use)."""
