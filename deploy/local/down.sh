#!/usr/bin/env bash
# Stop exactly the servers up.sh started (by their pid files); anything else on the machine is left alone.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$LOCAL_DIR/kafka.sh" stop
"$LOCAL_DIR/postgres.sh" stop
"$LOCAL_DIR/redis.sh" stop
