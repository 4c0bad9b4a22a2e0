"""Checks of values that arrive from outside, before the driver acts on them.

A claim reference comes over the kubelet socket, and anyone who is root on the
node can connect to it. Its uid ends up in file names under the CDI root and the
plugin dir, so it must be the plain token the API server issues (a UUID) before
any file is created, read or removed for it. Namespace and name follow
Kubernetes' own rules.
"""

from __future__ import annotations

import re

from dra_cdi_driver.model import ClaimError, ClaimRef

# metadata.uid as the API server issues it (a random UUID, printed lowercase).
_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# RFC 1123 label (namespaces) and subdomain (object names), as the API server checks them.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_NAMESPACE = 63
MAX_NAME = 253


def is_uid(value: str) -> bool:
    return _UID.fullmatch(value) is not None


def is_namespace(value: str) -> bool:
    return len(value) <= MAX_NAMESPACE and _DNS_LABEL.fullmatch(value) is not None


def is_object_name(value: str) -> bool:
    return len(value) <= MAX_NAME and _DNS_SUBDOMAIN.fullmatch(value) is not None


def check_claim_ref(claim: ClaimRef) -> None:
    """Raise a ClaimError naming the first field of `claim` that the API server would
    never have issued; nothing may be created, read or removed for such a claim."""
    problems = []
    if not is_uid(claim.uid):
        problems.append("uid: not a UUID as the API server issues them")
    if not is_namespace(claim.namespace):
        problems.append(f"namespace: not a DNS label of at most {MAX_NAMESPACE} characters")
    if not is_object_name(claim.name):
        problems.append(f"name: not a DNS subdomain of at most {MAX_NAME} characters")
    if problems:
        raise ClaimError(claim, "malformed request: " + "; ".join(problems))
