#!/bin/sh
#   install_venv.sh PYTHON VENV SOURCE - makes VENV, a virtual environment
#   of PYTHON (Debian's /usr/bin/python3) that sees the system's packages
#   (python3-zmq, python3-msgpack, python3-pytest), and installs the
#   binding at SOURCE (bindings/python) into it with pip, offline: no
#   index, no build isolation (setuptools from python3-setuptools). The
#   binding's tests then import the installed copy, as a user would.
#   pip builds in the folder it is given, so it is given a copy: the
#   source tree is left as it is.
set -eu
python=$1
venv=$2
source=$3
rm -rf "$venv"
"$python" -m venv --system-site-packages "$venv"
copy=$(mktemp -d "${TMPDIR:-/tmp}/troupe-python.XXXXXX")
trap 'rm -rf "$copy"' EXIT
cp -R "$source"/. "$copy"/
rm -rf "$copy"/build "$copy"/*.egg-info
"$venv/bin/pip" install --quiet --no-index --no-build-isolation --disable-pip-version-check "$copy"
#   The installed copy, not the source, must be the one imported.
cd "$venv"
"$venv/bin/python" - <<'PY'
import troupe, zmq, msgpack
assert "site-packages" in troupe.__file__, troupe.__file__
print("troupe %s installed at %s (pyzmq %s, libzmq %s, msgpack %s)"
      % (troupe.__version__, troupe.__file__, zmq.__version__, zmq.zmq_version(),
         ".".join(map(str, msgpack.version))))
PY
