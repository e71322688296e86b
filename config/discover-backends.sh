#!/bin/sh
# Prints betwixt's backend list for exec discovery (config/discovery.toml), one backend line each:
#   host:port [weight=N] [priority=N] [max_connections=N] [sni=NAME]
# A real script would ask an inventory; a non-zero exit is a failed round (failpolicy applies).
echo "127.0.0.1:8001 weight=2"
echo "127.0.0.1:8002"
