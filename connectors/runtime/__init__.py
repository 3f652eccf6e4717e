"""Machinery every connector shares: auth, store, transport, rate budget, connections, webhooks, bulk."""
