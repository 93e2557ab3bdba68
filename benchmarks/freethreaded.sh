#!/usr/bin/env bash
# Build (or reuse) a free-threaded CPython 3.13 and run tinypl's thread benchmarks on it.
#
#   benchmarks/freethreaded.sh            # build/reuse, then the benchmarks
#   benchmarks/freethreaded.sh --build    # only build/reuse the interpreter and its venv
#   benchmarks/freethreaded.sh --tests    # also run the whole test suite once
#   benchmarks/freethreaded.sh --only-tests
#
# Everything lands in a cache folder, never in the repository:
#   ${TINYPL_FT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/tinypl-ft}/{src,build,python,venv}
# The source is Debian trixie's python3.13 source package, fetched with apt-get through a
# private apt configuration (the system's sources and lists are left alone); its
# upstream tarball (.orig.tar.xz) is built, without the Debian patches, which assume
# Debian's own install layout. If apt cannot reach trixie, python.org's tarball is tried.
# The build runs under `nice` (JOBS defaults to the number of cores).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${TINYPL_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tinypl-ft}
PREFIX=$CACHE/python
PY=$PREFIX/bin/python3.13t
VENV=$CACHE/venv
JOBS=${JOBS:-$(nproc)}
UPSTREAM_VERSION=${UPSTREAM_VERSION:-3.13.5}

log() { printf '[freethreaded] %s\n' "$*" >&2; }

fetch_source() {
    local src=$CACHE/src apt=$CACHE/apt
    mkdir -p "$src" "$apt/lists/partial" "$apt/cache/archives/partial"
    if ls "$src"/python3.13_*.orig.tar.xz >/dev/null 2>&1; then return; fi
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' \
        http://deb.debian.org/debian >"$apt/sources.list"
    local opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
    log "fetching Debian trixie's python3.13 source package into $src"
    if (cd "$src" && apt-get "${opts[@]}" update && apt-get "${opts[@]}" source --download-only python3.13); then
        return
    fi
    log "apt-get source failed; trying python.org's Python-$UPSTREAM_VERSION.tar.xz"
    curl -fsSL -o "$src/python3.13_$UPSTREAM_VERSION.orig.tar.xz" \
        "https://www.python.org/ftp/python/$UPSTREAM_VERSION/Python-$UPSTREAM_VERSION.tar.xz"
}

build_python() {
    if [[ -x $PY ]] && "$PY" -c 'import sys; assert not sys._is_gil_enabled()' 2>/dev/null; then
        log "reusing $PY"
        return
    fi
    fetch_source
    local tarball build=$CACHE/build
    tarball=$(ls "$CACHE"/src/python3.13_*.orig.tar.xz | sort | tail -1)
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
    # tinypl runs from the checkout (PYTHONPATH), so nothing is built inside the repository;
    # its dependencies, the test dependencies and the peers that have cp313t wheels are
    # installed. numpy only as a wheel: a source build would take far longer than Python's.
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Wheels only, for every package: a source build may need a compiler toolchain
    # (hypothesis' native part wants Rust and crates.io) that is not there.
    "$VENV/bin/python" -m pip install -q --only-binary :all: numpy attrs toolz cloudpickle \
        threadpoolctl pytest pytest-timeout hypothesis psutil pillow
    local peer
    for peer in grain spdl; do
        "$VENV/bin/python" -m pip install -q --only-binary :all: "$peer" \
            || log "$peer has no wheel for this interpreter; its rows will show n/a"
    done
}

run_benchmarks() {
    cd "$REPO"
    log "GIL enabled: $("$VENV/bin/python" -c 'import sys; print(sys._is_gil_enabled())')"
    # The thread suite (efficiency, overhead, and the CPU-bound pure-Python case), then
    # the image loader on threads (peers without cp313t wheels show n/a).
    PYTHONPATH=$REPO "$VENV/bin/python" -B -m benchmarks thread --no-t010 "$@"
    PYTHONPATH=$REPO "$VENV/bin/python" -B -m benchmarks dataloader --part files --no-t010 \
        --files-peers serial,pool,tinypl-threads,tinypl-processes,spdl,grain-threads
}

run_tests() {
    cd "$REPO"
    log "running the whole test suite on $("$VENV/bin/python" -VV)"
    PYTHONPATH=$REPO "$VENV/bin/python" -m pytest -q -x -p no:cacheprovider
}

mode=bench
case ${1:-} in
    --build) mode=build; shift ;;
    --tests) mode=bench+tests; shift ;;
    --only-tests) mode=tests; shift ;;
esac
build_python
make_venv
case $mode in
    build) ;;
    bench) run_benchmarks "$@" ;;
    bench+tests) run_benchmarks "$@"; run_tests ;;
    tests) run_tests ;;
esac
