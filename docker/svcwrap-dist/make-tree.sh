#!/usr/bin/env bash
# Runs INSIDE svcwrap-dist-builder:bookworm (debootstrap bookworm + python3.11, patchelf),
# started by build-local.sh:  make-tree.sh WHEELHOUSE OUT_TARBALL
#
# Makes /opt/svcwrap, a Python that needs nothing from the image it is copied into:
#   bin/python3.11   Debian's interpreter; PT_INTERP = /opt/svcwrap/lib/ld-linux-x86-64.so.2,
#                    DT_RPATH = $ORIGIN/../lib
#   bin/svcwrap      the launcher: `#!/opt/svcwrap/bin/python3.11 -IS`, so svcwrap is PID 1
#                    itself (no bootloader, no re-exec, nothing unpacked at start)
#   lib/*.so*        every shared library the interpreter and the compiled modules load,
#                    glibc and its loader included (the image's glibc version does not matter)
#   lib/python3.11/  the standard library (trimmed) + svcwrap and its dependencies, all as
#                    sourceless .pyc; every compiled module's DT_RPATH points at lib/
# and writes a reproducible tarball of opt/svcwrap + usr/local/bin/svcwrap (a link).
set -euo pipefail
wheelhouse=$1 out=$2
T=/opt/svcwrap
PY=python3.11
STD=$T/lib/$PY
say() { echo "make-tree.sh: $*"; }

rm -rf "$T"
mkdir -p "$T/bin" "$T/lib"
cp /usr/bin/$PY "$T/bin/$PY"
ln -s $PY "$T/bin/python3"

# ---- the standard library, minus what an init never imports ------------------------------
# (tests, GUIs, the REPL's readline/curses, databases, build tools, bundled pip)
cp -a /usr/lib/$PY "$STD"
(cd "$STD" && rm -rf test idlelib tkinter turtledemo turtle.py ensurepip lib2to3 pydoc_data \
    distutils unittest/test sqlite3 dbm curses venv site-packages dist-packages \
    config-3.11-x86_64-linux-gnu __phello__ \
    lib-dynload/_test*.so lib-dynload/_ctypes_test*.so lib-dynload/xxlimited*.so \
    lib-dynload/_xx*.so lib-dynload/_curses*.so lib-dynload/_dbm*.so lib-dynload/_sqlite3*.so \
    lib-dynload/readline*.so lib-dynload/nis*.so lib-dynload/ossaudiodev*.so \
    lib-dynload/_tkinter*.so lib-dynload/_gdbm*.so)
find "$STD" -name __pycache__ -prune -exec rm -rf {} +

# ---- svcwrap and its dependencies, straight into the stdlib directory ----------------------
# -S skips site, so there is no site-packages; the stdlib directory is on sys.path anyway.
for whl in "$wheelhouse"/*.whl; do
    $PY -I -m zipfile -e "$whl" "$STD"
done
launcher=$(echo "$STD"/svcwrap-*.data/scripts/svcwrap)
# -IS, not -I -S: Linux passes everything after the interpreter as ONE argument.
{ echo "#!$T/bin/$PY -IS"; tail -n +2 "$launcher"; } >"$T/bin/svcwrap"
chmod 755 "$T/bin/svcwrap"
rm -rf "$STD"/*.data "$STD"/bin
# record files of the wheels list .py files that are gone; only METADATA is kept
find "$STD" -path '*.dist-info/*' ! -name METADATA ! -name top_level.txt -type f -delete

# ---- shared libraries -----------------------------------------------------------------------
mapfile -t elves < <(echo "$T/bin/$PY"; find "$STD" -name '*.so' -type f)
# ldd lists the whole closure; libgcc_s is dlopen()ed by glibc (pthread_exit, cancellation)
mapfile -t libs < <( { for f in "${elves[@]}"; do ldd "$f"; done; echo "libgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 ("; } \
                     | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
for lib in "${libs[@]}"; do cp -L "$lib" "$T/lib/$(basename "$lib")"; done
cp -L /lib64/ld-linux-x86-64.so.2 "$T/lib/ld-linux-x86-64.so.2"

# DT_RPATH (--force-rpath), not DT_RUNPATH: RPATH also applies to the dependencies of what
# it finds, so libssl finds the bundled libcrypto, and a compiled module's libpthread.so.0
# is the bundled one, never the image's (an older image's copy beside the bundled libc
# makes the module fail to import).
patchelf --set-interpreter "$T/lib/ld-linux-x86-64.so.2" --force-rpath --set-rpath '$ORIGIN/../lib' "$T/bin/$PY"
for so in "${elves[@]:1}"; do
    rel=$(realpath --relative-to="$(dirname "$so")" "$T/lib")
    patchelf --force-rpath --set-rpath "\$ORIGIN/$rel" "$so"
done
# Nothing may still resolve outside the tree (ldd runs the tree's own loader).
if bad=$(for f in "${elves[@]}"; do "$T/lib/ld-linux-x86-64.so.2" --list "$f"; done \
         | awk '$2 == "=>" { print $3 }' | grep -v "^$T/" | sort -u) && [ -n "$bad" ]; then
    echo "make-tree.sh: ERROR: resolved outside $T: $bad" >&2; exit 1
fi

# ---- sourceless bytecode -------------------------------------------------------------------
# -b writes legacy foo.pyc beside foo.py, which is imported when foo.py is gone.
# A fixed hash seed (env -i, not -I/-E, which would ignore it) orders set constants the same every time;
# SOURCE_DATE_EPOCH makes the .pyc headers hash-based: the same tree byte for byte.
env -i PYTHONHASHSEED=0 SOURCE_DATE_EPOCH=315532800 "$T/bin/$PY" -S -m compileall -q -b -j0 "$STD" >/dev/null
find "$STD" -name '*.py' -type f -delete
find "$STD" -name __pycache__ -prune -exec rm -rf {} +
find "$T" -xtype l -delete   # links to removed sources (_sysconfigdata)

# ---- smoke test, then the tarball ----------------------------------------------------------
env -i "$T/bin/svcwrap" --version
env -i "$T/bin/$PY" -IS -c 'import svcwrap.cli, psutil, charset_normalizer, consul, ssl, hashlib, ctypes, lzma, bz2, decimal, uuid, json, zlib'
mkdir -p /usr/local/bin
ln -sf "$T/bin/svcwrap" /usr/local/bin/svcwrap
say "tree: $(du -sb "$T" | cut -f1) bytes, $(find "$T" -type f | wc -l) files"
tar -C / --sort=name --mtime=@315532800 --owner=0 --group=0 --numeric-owner \
    -c opt/svcwrap usr/local/bin/svcwrap | gzip -n -9 >"$out.tmp"
mv "$out.tmp" "$out"
