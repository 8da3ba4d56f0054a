#!/bin/sh
# A command that writes much more to stderr than a pipe holds (about
# 200 KiB) and still answers well: its input, upper-cased.
i=0
while [ $i -lt 3000 ]; do
    echo "noisy.sh: warning line $i of 3000, padding padding padding padding" >&2
    i=$((i + 1))
done
tr a-z A-Z
