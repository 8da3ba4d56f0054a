#!/bin/sh
#   family.sh MODE DIR - a child of troupe with a grandchild in the
#   background, for tr_proc_test. The grandchild writes its pid to DIR/gpid
#   once it is ready (after its trap, if any). MODE:
#     wait      the parent waits for the grandchild; both die of SIGTERM
#     stubborn  as wait, but the grandchild ignores SIGTERM
#     orphan    the parent exits at once and leaves the grandchild running
#     linger    stubborn grandchild; the parent becomes a sleep
mode=$1
dir=$2
trap_cmd=:
case $mode in stubborn|linger) trap_cmd='trap "" TERM' ;; esac
sh -c "$trap_cmd"'; echo $$ > "$1.tmp" && mv "$1.tmp" "$1"; exec sleep 1000' \
    grandchild "$dir/gpid" &
case $mode in
    wait|stubborn) wait ;;
    orphan) exit 0 ;;
    linger) exec sleep 1000 ;;
esac
