#!/bin/sh
# A JSON-lines process in plain shell: each request line is its answer.
while IFS= read -r line; do
    printf '%s\n' "$line"
done
