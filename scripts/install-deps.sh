#!/usr/bin/env bash
#   install-deps.sh [--fuzz] [--bench] - installs the Debian packages troupe
#   needs, if any are missing: with apt-get when root, with sudo otherwise.
#   Says clearly what to do when it can do neither. Quiet when nothing is
#   missing.
set -euo pipefail

#   To build, run and test libtroupe and the troupe program (python3 reads
#   the JSON the command line prints, in the tests; iproute2's `ip netns`
#   makes the two hosts of the multi-host test, troupe_netns_test.sh).
#   The Python binding (bindings/python) and its tests: pyzmq, msgpack,
#   pytest, and venv, setuptools and pip to install the binding offline.
#   openssl makes the self-signed certificate of the HTTPS tests.
packages=(gcc make cmake pkg-config
          libzmq3-dev libczmq-dev libmsgpack-dev libcurl4-openssl-dev
          libyaml-dev check python3 iproute2 openssl
          python3-zmq python3-msgpack python3-pytest python3-venv
          python3-setuptools python3-pip)
#   git: the git_watch actor runs it (examples/watch.yaml and its tests).
packages+=(git)
for arg in "$@"; do
    case $arg in
        #   libFuzzer targets: clang with its runtime libraries.
        --fuzz)  packages+=(clang libclang-rt-14-dev) ;;
        #   Benchmark peers: Erlang/OTP, the C++ Actor Framework, and
        #   redis-server (its redis-tools bring redis-benchmark) for the
        #   broker's scratchpad and event benchmarks.
        --bench) packages+=(g++ erlang-base libcaf-dev redis-server) ;;
        *) echo "install-deps.sh: unknown option '$arg'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "troupe needs these Debian packages: ${missing[*]}" >&2
    echo "apt-get is not available here; install them with your package manager." >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    echo "troupe needs these Debian packages: ${missing[*]}" >&2
    echo "You are not root and sudo cannot run without a password here. Run:" >&2
    echo "    sudo apt-get install -y ${missing[*]}" >&2
    echo "then run make again." >&2
    exit 1
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
install=("${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}")
#   On a fresh machine the package lists may be empty or stale: update and
#   try once more before giving up.
if ! "${install[@]}"; then
    "${sudo[@]}" apt-get update -q
    "${install[@]}"
fi
