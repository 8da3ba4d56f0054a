#!/bin/sh
# A command that fails: a complaint on stderr, some output, exit status 3.
echo "partial answer"
echo "fail.sh: something went wrong" >&2
exit 3
