"""The parts that talk to the API server, or shape the objects sent to it.

- `client`: the Kubernetes client, and which resource.k8s.io version to speak.
- `claims`: reads a ResourceClaim and the allocation the scheduler wrote into its status.
- `claim_status`: writes our devices' status into each prepared ResourceClaim.
- `slices`: pure functions from devices to ResourceSlice objects.
- `slice_api`: the ResourceSlice API as the publisher needs it.
- `publisher`: keeps this node's ResourceSlices published.

Data flows kubelet plumbing (`kubelet/`) -> driver core (`driver.py`, which reads claims
through `claims`) -> devices, CDI and checkpoint (`devices/`, `cdi.py`, `checkpoint.py`);
the publisher reads `devices/` and writes slices.
"""
