#!/bin/sh
echo "cli test: not written yet" >&2; exit 1
