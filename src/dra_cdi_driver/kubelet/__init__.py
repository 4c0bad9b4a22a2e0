"""Everything the kubelet talks to: the registration and DRA gRPC services on unix sockets.

Nothing here knows about devices or CDI; it converts between the wire messages
and the driver core (`dra_cdi_driver.driver`).
"""
