#!/bin/sh
# A command that takes its time ($1 seconds, default 0.3) before answering.
sleep "${1:-0.3}"
echo done
