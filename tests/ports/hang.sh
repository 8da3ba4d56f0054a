#!/bin/sh
# A command that never ends, with a grandchild in its process group: both
# pids are written to the file named by $1 (the grandchild's first), so
# that the test can check that stopping it left neither behind.
sleep 600 &
echo "$!" > "$1.tmp"
echo "$$" >> "$1.tmp"
mv "$1.tmp" "$1"
exec sleep 600
