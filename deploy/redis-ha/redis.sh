#!/bin/sh
# A Redis server of the Sentinel deployment (`docker compose --profile ha` with
# deploy/compose.ha.yml, and deploy/k8s/redis-sentinel.yaml, which carries a copy of this file
# that deploy/check_config.py compares with it).
#
# Before it starts, it asks the sentinels which server is the master now, and starts as a
# replica of that one unless it is itself. So a server that restarts after a failover comes
# back as a replica of the new master, never as a second master whose older data its replicas
# would copy. Only when no sentinel answers (the very first start) does REDIS_INITIAL_MASTER
# decide.
#
# REDIS_PASSWORD      requirepass and masterauth (the sentinels use it too)
# REDIS_ANNOUNCE      this server's name as the others reach it
# REDIS_INITIAL_MASTER the master's name on the first start (HOST, or HOST:PORT)
# REDIS_SENTINELS     the sentinels, "HOST:PORT HOST:PORT ..."
# REDIS_MASTER_NAME   the name the sentinels monitor (default authbooks)
# REDIS_PORT, REDIS_DIR  (defaults 6379 and /data; every server of a deployment on one port)
set -eu
: "${REDIS_PASSWORD:?}" "${REDIS_ANNOUNCE:?}" "${REDIS_INITIAL_MASTER:?}" "${REDIS_SENTINELS:?}"
name="${REDIS_MASTER_NAME:-authbooks}"
port="${REDIS_PORT:-6379}"
master=""
for sentinel in $REDIS_SENTINELS; do
  # Two lines, host and port; nothing (or an error) from a sentinel that does not know yet.
  reply=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 redis-cli --no-auth-warning --raw \
    -h "${sentinel%:*}" -p "${sentinel##*:}" SENTINEL get-master-addr-by-name "$name" \
    2>/dev/null | tr '\n' ' ') || reply=""
  set -- $reply
  if [ $# -eq 2 ] && [ "$2" -eq "$2" ] 2>/dev/null; then
    master="$1:$2"
    break
  fi
done
if [ -z "$master" ]; then
  case "$REDIS_INITIAL_MASTER" in
    *:*) master="$REDIS_INITIAL_MASTER" ;;
    *) master="$REDIS_INITIAL_MASTER:$port" ;;
  esac
fi
echo "redis.sh: the master is $master; this is $REDIS_ANNOUNCE:$port" >&2
# AOF fsynced on every write: a master restarted before the sentinels notice must not come back
# without a write its replicas already confirmed (they would resynchronise from it).
# noeviction: an evicted revocation would make a revoked token valid again.
set -- --port "$port" --dir "${REDIS_DIR:-/data}" --appendonly yes --appendfsync always \
  --maxmemory-policy noeviction --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
  --replica-announce-ip "$REDIS_ANNOUNCE"
if [ "$master" != "$REDIS_ANNOUNCE:$port" ]; then
  set -- "$@" --replicaof "${master%:*}" "${master##*:}"
fi
exec redis-server "$@"
