"""Which claim references are valid, decided from Kubernetes' own rules.

Written apart from the driver's checks (validation.py), so that the two can disagree and a
fuzz test can see it.
"""

from __future__ import annotations

import string
import uuid

_LOWER_ALNUM = set(string.ascii_lowercase + string.digits)
Ref = tuple[str, str, str]  # (namespace, name, uid), as DraClient takes claims


def canonical_uid(value: str) -> bool:
    """A uid as the API server issues it: a UUID in its canonical lowercase form."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def is_dns_label(value: str, limit: int = 63) -> bool:
    return (
        0 < len(value) <= limit
        and set(value) <= _LOWER_ALNUM | {"-"}
        and value[0] in _LOWER_ALNUM
        and value[-1] in _LOWER_ALNUM
    )


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and all(is_dns_label(p, 253) for p in value.split("."))


def is_valid(ref: Ref) -> bool:
    namespace, name, uid = ref
    return is_dns_label(namespace) and is_dns_subdomain(name) and canonical_uid(uid)
