"""dra-cdi-driver: a Kubernetes DRA kubelet plugin that hands devices to containers via CDI."""

__version__ = "0.1.0"
