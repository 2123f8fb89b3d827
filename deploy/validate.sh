#!/usr/bin/env bash
# Validates docker-compose.yml and the Kubernetes manifests offline (no Docker engine,
# no cluster): `docker-compose config` and `kubernetes-validate`, from PyPI, each in its
# own cached virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DROVER_TOOL_CACHE:-/var/cache/drover/tools}"
mkdir -p "$cache"
if [ ! -x "$cache/k8s/bin/kubernetes-validate" ]; then
  python3 -m venv "$cache/k8s"
  "$cache/k8s/bin/pip" install -q kubernetes-validate
fi
if [ ! -x "$cache/compose/bin/docker-compose" ]; then
  python3 -m venv "$cache/compose"
  # docker-compose 1.29 needs PyYAML 5.4, which only builds with Cython < 3.
  "$cache/compose/bin/pip" install -q "cython<3.0" wheel
  "$cache/compose/bin/pip" install -q --no-build-isolation "PyYAML==5.4.1"
  "$cache/compose/bin/pip" install -q docker-compose==1.29.2
fi
"$cache/compose/bin/docker-compose" -f docker-compose.yml config -q
echo "docker-compose.yml: valid"
"$cache/k8s/bin/kubernetes-validate" --strict deploy/k8s/*.yaml
