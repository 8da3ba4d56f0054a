#!/bin/sh
#   stubborn.sh READY - ignores SIGTERM, creates the file READY, then
#   sleeps: only SIGKILL ends it (for tr_proc_test).
trap '' TERM
: > "$1"
exec sleep 1000
