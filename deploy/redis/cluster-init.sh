#!/bin/sh
# Makes a Redis Cluster of the cluster-mode redis-servers given as host:port arguments
# (CLUSTER_REPLICAS replicas per primary, default 1), and returns once every node says
# cluster_state:ok with all 16384 slots served and is linked to every other node.
# Safe to run again:
#   - every node already ok and linked to every other: nothing to do;
#   - the nodes already know each other (the cluster was created before, e.g. their
#     containers came back with new addresses): every node is introduced to every other
#     at its current address (CLUSTER MEET; a node recognises a known peer by its id and
#     takes the new address), then it waits;
#   - otherwise: `redis-cli --cluster create ... --cluster-yes`.
# Used by docker-compose.yml (service redis-cluster-init, profile `cluster`) and
# deploy/run-local.sh --cluster. POSIX sh: runs in the redis image. Host names are
# resolved to IPv4 addresses (CLUSTER MEET takes addresses).
set -eu
replicas="${CLUSTER_REPLICAS:-1}"
wait_secs="${CLUSTER_INIT_TIMEOUT:-60}"
if [ "$#" -lt 3 ]; then
  echo "usage: $0 host:port host:port host:port ..." >&2
  exit 2
fi

# host:port -> ip:port
resolve() {
  host=${1%:*}
  port=${1##*:}
  case "$host" in
    *[!0-9.]*) ip=$(getent ahostsv4 "$host" | awk 'NR == 1 { print $1 }') ;;
    *) ip=$host ;;
  esac
  if [ -z "$ip" ]; then
    echo "cluster-init: cannot resolve $host" >&2
    return 1
  fi
  echo "$ip:$port"
}

cli() { # ip:port, then a command
  addr=$1
  shift
  redis-cli -h "${addr%:*}" -p "${addr##*:}" "$@"
}

info_field() { # ip:port field
  cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

# Every node: cluster_state:ok, all slots served, and a live link to every peer with no
# peer flagged failing. (cluster_state alone is not enough: a node whose peers all moved
# says ok again after a while, since too few primaries are reachable to agree that any
# of them failed.)
all_ok() {
  for n in $nodes; do
    [ "$(info_field "$n" cluster_state)" = ok ] || return 1
    [ "$(info_field "$n" cluster_slots_ok)" = 16384 ] || return 1
    cli "$n" cluster nodes 2>/dev/null | tr -d '\r' |
      awk 'NF < 8 || $8 != "connected" || $3 ~ /fail/ { bad = 1 } END { exit bad }' || return 1
  done
}

# Every node answers PING (their host names resolve once their containers run).
nodes=""
deadline=$(($(date +%s) + wait_secs))
for node in "$@"; do
  while :; do
    if addr=$(resolve "$node" 2>/dev/null) && [ "$(cli "$addr" ping 2>/dev/null)" = PONG ]; then
      nodes="$nodes $addr"
      break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "cluster-init: $node did not answer within ${wait_secs}s" >&2
      exit 1
    fi
    sleep 0.5
  done
done

if all_ok; then
  echo "cluster-init: cluster already ok ($# nodes)"
  exit 0
fi

known=0
for n in $nodes; do
  k=$(info_field "$n" cluster_known_nodes)
  if [ "${k:-0}" -gt "$known" ]; then known=$k; fi
done
if [ "$known" -gt 1 ]; then
  echo "cluster-init: nodes already joined ($known known): introducing them at their current addresses"
  for a in $nodes; do
    for b in $nodes; do
      [ "$a" = "$b" ] || cli "$a" cluster meet "${b%:*}" "${b##*:}" >/dev/null
    done
  done
else
  echo "cluster-init: creating the cluster:$nodes ($replicas replica(s) per primary)"
  # shellcheck disable=SC2086 # one argument per node
  redis-cli --cluster create $nodes --cluster-replicas "$replicas" --cluster-yes
  echo  # redis-cli leaves its last colour code without a newline
fi

deadline=$(($(date +%s) + wait_secs))
until all_ok; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "cluster-init: the cluster is not ok after ${wait_secs}s; cluster info of each node:" >&2
    for n in $nodes; do echo "$n: $(info_field "$n" cluster_state)" >&2; done
    exit 1
  fi
  sleep 0.5
done
echo "cluster-init: cluster_state:ok on all $# nodes"
