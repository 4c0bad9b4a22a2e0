"""End-to-end test harness: cluster providers (local, existing, kind) and helpers.

Nothing here imports the driver package: the driver is exercised only through the
cluster (its process, its sockets, its CDI specs and the API objects it writes).
"""
