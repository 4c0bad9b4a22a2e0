#!/usr/bin/env bash
# Build the driver's wheel from a source tree and install it into a fresh virtualenv.
#
#   hack/build-venv.sh SRC_DIR VENV_DIR
#
# This is the install step of deploy/Dockerfile (its builder stage runs exactly this script),
# and tests/deploy/test_image_install.py runs it in a clean temporary dir, so CI exercises
# the image's install without a container engine.
#
# SRC_DIR holds what the Dockerfile copies in (pyproject.toml, README.md, src/). The wheel
# is built there (setuptools writes build/ and *.egg-info next to the sources): pass a copy.
# VENV_DIR gets the package and its runtime dependencies only: no pip, no setuptools.
# PYTHON picks the interpreter (default python3); it needs pip >= 22.3 (for --python).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SRC_DIR VENV_DIR" >&2
    exit 2
fi
src="$1"
venv="$2"
python="${PYTHON:-python3}"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# 1. The wheel: our package only; its dependencies come from the index in step 3.
"$python" -m pip wheel --no-deps --wheel-dir "$wheels" "$src"

# 2. A bare venv: the runtime image needs no installer inside it.
"$python" -m venv --without-pip "$venv"

# 3. The wheel and its dependencies, installed by the outer pip into the venv, with the
#    extra of the nvidia device source (nvidia-ml-py: pure Python; it loads the host's
#    libnvidia-ml.so.1 only when --device-source nvidia asks for it), so that one image
#    serves both sources. pip compiles every module to bytecode here, so the read-only root
#    filesystem costs nothing at start.
wheel=("$wheels"/*.whl)
"$python" -m pip --python "$venv/bin/python" install --no-warn-script-location "${wheel[0]}[nvidia]"

# 4. A smoke test: the entry point runs, and the whole program (gRPC stubs included) imports
#    from the venv alone (-I: no user site, no PYTHONPATH, no current dir).
"$venv/bin/dra-cdi-driver" --version
"$venv/bin/python" -I -c "import dra_cdi_driver.app"
