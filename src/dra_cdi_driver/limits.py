"""Every limit the driver puts on what it is sent, in one place, each with its reason.

Going over a limit is a per-claim error that names the limit; nothing is prepared for that
claim. Where the API server already enforces a limit on what it stores, ours is the same
number: a claim that breaks it did not come from the API server.
"""

from __future__ import annotations

# Claims in one NodePrepareResources/NodeUnprepareResources call. The kubelet sends one
# pod's claims of this driver per call. The API does not limit how many claims a pod names;
# 512 is far beyond any real pod (the benchmark's largest call has 100) and bounds the work
# and the size of the answer of one call.
MAX_CLAIMS_PER_CALL = 512

# Allocation results of one claim (resource.k8s.io AllocationResultsMaxSize).
MAX_RESULTS_PER_CLAIM = 32

# Opaque configuration entries of one claim (resource.k8s.io DeviceConfigMaxSize), and the
# JSON size of one entry's parameters (OpaqueParametersMaxLength, 10 KiB).
MAX_CONFIG_ENTRIES = 32
MAX_OPAQUE_BYTES = 10 * 1024
# Nesting of objects and lists in one entry's parameters. GpuConfig needs 3
# (parameters.sharing.strategy); 16 leaves room for future fields and stops a deeply nested
# document before anything recurses over it.
MAX_OPAQUE_DEPTH = 16

# Environment variables one config entry may set, and the size of each value. Every one of
# them is set in every container that gets the device; 64 is far more than any GpuConfig
# needs, and 4 KiB a value keeps a spec small.
MAX_ENV_ENTRIES = 64
MAX_ENV_VALUE_BYTES = 4096

# Any one string written into a CDI spec (an env entry, a path, a hook argument), and the
# whole spec. Runtimes read every spec of the CDI root on each container start: a spec of
# ours stays small. The largest real spec (32 NVIDIA GPUs with libraries) is ~40 KiB.
MAX_SPEC_STRING_BYTES = 8192
MAX_SPEC_BYTES = 1024 * 1024

# How long one call may take when the kubelet sets no deadline. The kubelet gives up after
# 45 s; an answer sent after that is lost, together with every claim in it.
DEFAULT_CALL_BUDGET_S = 40.0
# What is kept back from the caller's deadline to send the answer in time.
ANSWER_MARGIN_S = 2.0
