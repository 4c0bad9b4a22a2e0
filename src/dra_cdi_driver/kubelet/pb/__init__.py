"""Generated gRPC stubs for the kubelet's DRA and plugin registration APIs.

Do not edit the *_pb2* files: run `python scripts/generate_protos.py`.
"""
