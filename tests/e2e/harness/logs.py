"""Which lines of each component's log are worth showing when something fails."""

from __future__ import annotations

import re
from pathlib import Path

from . import procs

_ALL = re.compile(r"")
_KLOG_PROBLEMS = re.compile(r"^[EW]\d{4} ")
# component -> (lines worth showing, how many of the last ones)
FILTERS: dict[str, tuple[re.Pattern[str], int]] = {
    "dra-cdi-driver": (_ALL, 60),
    "kubelet": (re.compile(r'^[EW]\d{4} |DRA|[Cc]laim|"Registered|[Pp]lugin'), 50),
    "containerd": (re.compile(r"level=(error|warning|fatal)|CDI"), 25),
    "kube-scheduler": (_ALL, 20),
    "kube-controller-manager": (_KLOG_PROBLEMS, 20),
    "kube-apiserver": (_KLOG_PROBLEMS, 10),
    "etcd": (_ALL, 5),
}


def tails(log_files: dict[str, Path], scale: float = 1.0) -> list[tuple[str, str]]:
    """[(title, text)] with the relevant end of every log, `scale` times the usual length."""
    out = []
    for name, path in log_files.items():
        pattern, n = FILTERS.get(name, (_ALL, 20))
        n = max(3, int(n * scale))
        lines = [ln for ln in procs.tail(path, 20000).splitlines() if pattern.search(ln)][-n:]
        out.append((f"{name} log ({path}, last {n} relevant lines)", "\n".join(lines)))
    return out


def tails_text(log_files: dict[str, Path], scale: float = 1.0) -> str:
    return "\n".join(f"---- {title}\n{text}" for title, text in tails(log_files, scale))
