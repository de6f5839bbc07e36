#!/bin/sh
# A Redis Sentinel of the Sentinel deployment (`docker compose --profile ha` with
# deploy/compose.ha.yml, and deploy/k8s/redis-sentinel.yaml, which carries a copy of this file
# that deploy/check_config.py compares with it).
#
# Writes its configuration on the first start only: the sentinel rewrites the file itself as it
# learns (the current master, the replicas, the other sentinels, the epoch), and must find that
# again after a restart, not the first master.
#
# REDIS_PASSWORD       the servers' password, and this sentinel's own
# REDIS_ANNOUNCE       this sentinel's name as the others reach it
# REDIS_INITIAL_MASTER the master's name on the first start
# REDIS_MASTER_NAME    the name to monitor it under (default authbooks)
# SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS  (defaults 5000, 60000)
# SENTINEL_PORT, REDIS_PORT, REDIS_DIR  (defaults 26379, 6379 and /data)
set -eu
: "${REDIS_PASSWORD:?}" "${REDIS_ANNOUNCE:?}" "${REDIS_INITIAL_MASTER:?}"
name="${REDIS_MASTER_NAME:-authbooks}"
dir="${REDIS_DIR:-/data}"
conf="$dir/sentinel.conf"
if [ ! -s "$conf" ]; then
  cat >"$conf" <<CONF
port ${SENTINEL_PORT:-26379}
dir $dir
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $REDIS_ANNOUNCE
requirepass $REDIS_PASSWORD
sentinel sentinel-pass $REDIS_PASSWORD
sentinel monitor $name $REDIS_INITIAL_MASTER ${REDIS_PORT:-6379} 2
sentinel auth-pass $name $REDIS_PASSWORD
sentinel down-after-milliseconds $name ${SENTINEL_DOWN_AFTER_MS:-5000}
sentinel failover-timeout $name ${SENTINEL_FAILOVER_TIMEOUT_MS:-60000}
sentinel parallel-syncs $name 1
CONF
fi
exec redis-server "$conf" --sentinel
