#!/usr/bin/env bash
#   troupe_cli_test.sh TROUPE - the program as a user meets it: help,
#   version, dispatch, exit codes (0 ok, 1 failed, 2 usage), and the demo.
set -u
troupe=$1
failures=0

#   expect STATUS PATTERN COMMAND... : runs the command, checks its exit
#   status and that its output (stdout and stderr) matches PATTERN.
expect () {
    local status=$1 pattern=$2
    shift 2
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$status" ]; then
        echo "FAIL: '$*' exited $rc, expected $status; output:"; echo "$out"
        failures=$((failures + 1))
    elif ! grep -Eq -- "$pattern" <<<"$out"; then
        echo "FAIL: '$*' output does not match /$pattern/:"; echo "$out"
        failures=$((failures + 1))
    else
        echo "ok: $*"
    fi
}

expect 0 '^usage: troupe'                  "$troupe" --help
expect 0 '^usage: troupe'                  "$troupe" -h
expect 0 'demo +run a small demo'          "$troupe" help
expect 2 '^usage: troupe'                  "$troupe"
expect 0 '^troupe [0-9]+\.[0-9]+\.[0-9]+ \(libtroupe [0-9.]+\)$' "$troupe" --version
expect 0 '^troupe [0-9]+\.[0-9]+\.[0-9]+'  "$troupe" version
expect 2 'unexpected argument'             "$troupe" version extra
expect 2 "no command 'frobnicate'"         "$troupe" frobnicate
expect 2 "unknown option '--frob'"         "$troupe" --frob demo
expect 2 "no command 'nothing'"            "$troupe" help nothing
expect 0 '^usage: troupe demo'             "$troupe" help demo
expect 0 '^usage: troupe demo'             "$troupe" demo --help
expect 2 "unknown option '--bogus'"        "$troupe" demo --bogus
expect 2 '--workers needs a whole number'  "$troupe" demo --workers 0
expect 2 '--rounds needs a whole number'   "$troupe" demo --rounds 12x
expect 2 '--upto needs a whole number'     "$troupe" demo --upto
expect 0 'total 49995000, expected 49995000: correct' \
                                           "$troupe" -q demo --rounds 200 --workers 7 --upto 10000
expect 0 'demo passed'                     "$troupe" demo

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
