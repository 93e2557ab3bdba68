#!/usr/bin/env bash
# Build (or reuse) a free-threaded CPython (3.13 by default, FT_VERSION=3.14 where a Debian
# mirror holds its source) and run tinypl's thread benchmarks on it.
#
# On 3.13t, a pure-Python CPU-bound function scales in two threads only if its code's
# constants are immortal. CPython 3.13t immortalizes the constants of code it loads from
# a .pyc and of the main script, but not of code made by an explicit compile() (gh-118527),
# and importlib compiles a module that has no usable .pyc with compile(): under `python -B`
# or PYTHONDONTWRITEBYTECODE (set on these machines), the benchmarks' `spin` kept its large
# int constants mortal, every iteration counted references to them atomically from both
# threads, and two threads ran 0.7-1.0x serial, whatever library ran them. So this script
# byte-compiles tinypl and the benchmarks into a cache folder (PYTHONPYCACHEPREFIX, never
# the repository) and runs them from there; measured with the same interpreter, the spin
# then ran 1.9-2.0x serial in two threads.
#
#   benchmarks/freethreaded.sh            # build/reuse, then the benchmarks
#   benchmarks/freethreaded.sh --build    # only build/reuse the interpreter and its venv
#   benchmarks/freethreaded.sh --tests    # also run the whole test suite once
#   benchmarks/freethreaded.sh --only-tests
#
# Everything lands in a cache folder, never in the repository:
#   ${TINYPL_FT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/tinypl-ft}/{src,build,python,venv}
# The source is Debian's python3.13 source package from trixie (python3.14: forky, sid),
# fetched with apt-get through a private apt configuration (the system's sources and lists
# are left alone); its
# upstream tarball (.orig.tar.xz) is built, without the Debian patches, which assume
# Debian's own install layout. If apt cannot reach trixie, python.org's tarball is tried.
# The build runs under `nice` (JOBS defaults to the number of cores).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FT_VERSION=${FT_VERSION:-3.13}
case $FT_VERSION in
    3.13) SUITES="trixie"; UPSTREAM_VERSION=${UPSTREAM_VERSION:-3.13.5} ;;
    3.14) SUITES="forky sid"; UPSTREAM_VERSION=${UPSTREAM_VERSION:-3.14.0} ;;
    *) echo "FT_VERSION must be 3.13 or 3.14, not '$FT_VERSION'" >&2; exit 2 ;;
esac
BASE=${TINYPL_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tinypl-ft}
# 3.13 keeps the layout of the first version of this script, so a built interpreter is reused.
if [[ $FT_VERSION == 3.13 ]]; then CACHE=$BASE; else CACHE=$BASE/$FT_VERSION; fi
PREFIX=$CACHE/python
PY=$PREFIX/bin/python${FT_VERSION}t
VENV=$CACHE/venv
JOBS=${JOBS:-$(nproc)}

log() { printf '[freethreaded] %s\n' "$*" >&2; }

fetch_source() {
    local src=$CACHE/src apt=$CACHE/apt
    mkdir -p "$src" "$apt/lists/partial" "$apt/cache/archives/partial"
    if ls "$src"/python"$FT_VERSION"_*.orig.tar.xz >/dev/null 2>&1; then return; fi
    local suite
    : >"$apt/sources.list"
    for suite in $SUITES; do
        printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
            http://deb.debian.org/debian "$suite" >>"$apt/sources.list"
    done
    local opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    log "fetching Debian's python$FT_VERSION source package ($SUITES) into $src"
    # A suite's index can name a version its mirror no longer (or not yet) holds: newest first.
    local version
    if apt-get "${opts[@]}" update; then
        for version in $(apt-cache "${opts[@]}" showsrc "python$FT_VERSION" 2>/dev/null \
            | sed -n 's/^Version: //p' | sort -rVu); do
            if (cd "$src" && apt-get "${opts[@]}" source --download-only "python$FT_VERSION=$version"); then
                return
            fi
        done
    fi
    log "apt-get source failed; trying python.org's Python-$UPSTREAM_VERSION.tar.xz"
    curl -fsSL -o "$src/python${FT_VERSION}_$UPSTREAM_VERSION.orig.tar.xz" \
        "https://www.python.org/ftp/python/$UPSTREAM_VERSION/Python-$UPSTREAM_VERSION.tar.xz"
}

build_python() {
    if [[ -x $PY ]] && "$PY" -c 'import sys; assert not sys._is_gil_enabled()' 2>/dev/null; then
        log "reusing $PY"
        return
    fi
    fetch_source
    local tarball build=$CACHE/build
    tarball=$(ls "$CACHE"/src/python"$FT_VERSION"_*.orig.tar.xz | sort -V | tail -1)
    rm -rf "$build" && mkdir -p "$build"
    log "building $(basename "$tarball") with --disable-gil in $build (JOBS=$JOBS; several minutes)"
    tar -xJf "$tarball" -C "$build" --strip-components=1
    (cd "$build" && nice -n 10 ./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install \
        >"$build/configure.log" 2>&1 && nice -n 10 make -j"$JOBS" >"$build/make.log" 2>&1 \
        && nice -n 10 make install >"$build/install.log" 2>&1) || {
        log "build failed; see the logs in $build"
        exit 1
    }
    "$PY" -c 'import sys; assert not sys._is_gil_enabled(), "GIL enabled"'
}

make_venv() {
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating $VENV"
        "$PY" -m venv "$VENV"
    fi
    # tinypl runs from the checkout; its dependencies, the test dependencies and the
    # peers that have cp313t wheels are installed. numpy only as a wheel: a source build
    # would take far longer than Python's.
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Wheels only, for every package: a source build may need a compiler toolchain
    # (hypothesis' native part wants Rust and crates.io) that is not there.
    "$VENV/bin/python" -m pip install -q --only-binary :all: numpy attrs toolz cloudpickle \
        threadpoolctl pytest pytest-timeout pytest-xdist hypothesis psutil pillow tqdm
    # The other extras, so the suite skips only what cannot run there (torch: no CPU
    # wheel for 3.13t on PyPI). --prefer-binary, not --only-binary: a few of their
    # dependencies have no cp313t wheel but build from source in pure Python (PyYAML).
    # One at a time: one that cannot build (a new mypy wants ast-serialize, whose source
    # build fetches crates from the network) must not keep the others out.
    local extra
    for extra in distributed mkdocs mkdocs-material "mkdocstrings[python]" ruff mypy loky \
        mpi4py mpich; do
        "$VENV/bin/python" -m pip install -q --prefer-binary "$extra" >/dev/null 2>&1 \
            || log "$extra did not install; the tests that need it will skip"
    done
    # Editable (hatchling: a .pth entry, nothing is written into the checkout), so the
    # typing tests find tinypl installed from this checkout, as in CI.
    "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO"
    local peer
    for peer in grain spdl; do
        "$VENV/bin/python" -m pip install -q --only-binary :all: "$peer" \
            || log "$peer has no wheel for this interpreter; its rows will show n/a"
    done
}

# Byte-compiled code, kept out of the repository (see the top): every run below imports
# tinypl and the benchmarks from .pyc files in the cache, as an installed package would be.
use_bytecode() {
    unset PYTHONDONTWRITEBYTECODE
    export PYTHONPYCACHEPREFIX=$CACHE/pycache
    "$VENV/bin/python" -m compileall -q "$REPO/tinypl" "$REPO/benchmarks" "$REPO/tests" >/dev/null
}

run_benchmarks() {
    cd "$REPO"
    log "GIL enabled: $("$VENV/bin/python" -c 'import sys; print(sys._is_gil_enabled())')"
    # The thread suite (efficiency, overhead, and the CPU-bound pure-Python case), then
    # the image loader on threads (peers without cp313t wheels show n/a).
    PYTHONPATH=$REPO "$VENV/bin/python" -m benchmarks thread --no-t010 "$@"
    PYTHONPATH=$REPO "$VENV/bin/python" -m benchmarks dataloader --part files --no-t010 \
        --files-peers serial,pool,tinypl-threads,tinypl-processes,spdl,grain-threads
}

run_tests() {
    cd "$REPO"
    log "running the whole test suite on $("$VENV/bin/python" -VV)"
    PYTHONPATH=$REPO "$VENV/bin/python" -m pytest -q -p no:cacheprovider
}

mode=bench
case ${1:-} in
    --build) mode=build; shift ;;
    --tests) mode=bench+tests; shift ;;
    --only-tests) mode=tests; shift ;;
esac
build_python
make_venv
use_bytecode
case $mode in
    build) ;;
    bench) run_benchmarks "$@" ;;
    bench+tests) run_benchmarks "$@"; run_tests ;;
    tests) run_tests ;;
esac
