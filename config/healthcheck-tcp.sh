#!/usr/bin/env bash
# An exec healthcheck for betwixt: called as `healthcheck-tcp.sh HOST PORT`, prints 1 when the
# port accepts a TCP connection within a second, 0 otherwise.
if timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then echo 1; else echo 0; fi
