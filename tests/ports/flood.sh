#!/bin/sh
# A command that writes far more than anyone asked for: 3,000,000 bytes.
head -c 3000000 /dev/zero | tr '\0' x
