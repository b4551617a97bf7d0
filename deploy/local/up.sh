#!/usr/bin/env bash
# Start every local server the stack and the tests need, and wait until each answers. Safe to run twice.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$LOCAL_DIR/redis.sh" start
"$LOCAL_DIR/postgres.sh" start
"$LOCAL_DIR/kafka.sh" start
