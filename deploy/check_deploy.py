#!/usr/bin/env python3
"""Offline checks of the monitoring files that promtool and the schema validators cannot make.

- Every metric a PromQL expression names (alert rules, Grafana dashboard panels and
  variables, the KEDA ScaledObject's Prometheus queries, the HPA alternative's external
  metrics) is one the Rust sources record, or one listed in
  deploy/prometheus/external-metrics.txt (Prometheus' own `up`, redis_exporter).
- Every alert has a `promtool test rules` case where it fires and one where it does not.
- Every alert's runbook_url points at a heading that exists in docs/operations.md.
- Every file or folder docker-compose.yml bind-mounts exists (`docker-compose config`
  does not look), and the monitoring services stay out of the default profile.
- docker-compose.yml's `cluster` profile: exactly its services are in it; no service of
  the default profile depends on a profiled one; the init service names every
  redis-node-N; api-cluster and worker-cluster name every node in their
  redis+cluster:// URL and set the same queue.partitions (> 1); no two services publish
  the same host port.
- docker-compose.yml: a service whose environment names another service's address
  (`http://simulator:9100`, `...@postgres:5432`) depends on it, directly or through
  another, so `docker compose up <service>` starts what it talks to.
- The Dockerfile's final stage is a slim base, runs as a numeric non-root user (so
  Kubernetes' runAsNonRoot can check it) and has a HEALTHCHECK that uses no tool the
  image lacks (no curl or wget: the binaries' `healthcheck` subcommands).
- Every Kubernetes overlay in deploy/k8s/overlays, built with `kubectl kustomize`: every
  namespaced object is in one namespace, the one the overlay's kustomization.yaml names
  (an object with none lands in whatever namespace kubectl's context has, away from the
  rest: a component's HPA once did), and the build holds that Namespace object, so
  `kubectl apply -k` works on a fresh cluster; and the worker's memory limit holds what
  its backfills' report documents may take at the caps its drover.toml (or an
  environment override) sets, and the rest of the worker.

Run from the repository root: python3 deploy/check_deploy.py [--dashboard-rules FILE]
[--kubectl PATH] (needs PyYAML). Exits 1 with one line per problem. With --dashboard-rules
it also writes every dashboard expression, Grafana variables filled in, as a recording
rule to FILE, so `promtool check rules FILE` checks their PromQL syntax. The overlays are
built with --kubectl PATH (deploy/validate.sh passes its own), else with `kubectl` from
PATH; with neither, that check is skipped with a warning.
"""
import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = ROOT / "deploy/prometheus/alerts.test.yml"
EXTERNAL = ROOT / "deploy/prometheus/external-metrics.txt"
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
SCALERS = [ROOT / "deploy/k8s/base/worker-scaledobject.yaml", ROOT / "deploy/k8s/components/worker-hpa/worker-hpa.yaml"]
RUNBOOK = ROOT / "docs/operations.md"
COMPOSE = ROOT / "docker-compose.yml"
OVERLAYS = sorted(p.parent for p in (ROOT / "deploy/k8s/overlays").glob("*/kustomization.yaml"))
# Kinds that live in no namespace; every other kind (ScaledObject included) is namespaced.
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
    "StorageClass", "PersistentVolume", "IngressClass", "RuntimeClass", "APIService", "CSIDriver",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "ClusterIssuer",
}
DOCKERFILE = ROOT / "deploy/Dockerfile"
MIB = 1 << 20
MONITORING = {"otel-collector", "jaeger", "redis-exporter", "prometheus", "grafana"}
REDIS_NODES = {f"redis-node-{i}" for i in range(1, 7)}
CLUSTER = REDIS_NODES | {"redis-cluster-init", "postgres-cluster", "simulator-cluster", "api-cluster", "worker-cluster"}
SOURCES = ["api/src", "worker/src", "shared/src"]

# PromQL words that are not metric names.
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "days_in_month", "delta", "deriv",
    "exp", "floor", "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time",
    "min_over_time", "minute", "month", "predict_linear", "present_over_time", "quantile_over_time",
    "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector", "year",
}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan"}


def recorded_metrics():
    """Names the code records through the `metrics` macros, with the series a histogram renders."""
    consts = {}
    calls = []
    for d in SOURCES:
        for f in (ROOT / d).rglob("*.rs"):
            text = f.read_text()
            for name, value in re.findall(r'const\s+([A-Z_][A-Z0-9_]*)\s*:\s*&str\s*=\s*"([a-z_:][a-z0-9_:]*)"', text):
                consts[name] = value
            calls += re.findall(r'\b(counter|gauge|histogram)!\(\s*([A-Za-z_:"][A-Za-z0-9_:"]*)', text)
    names = set()
    for macro, arg in calls:
        if arg.startswith('"'):
            name = arg.strip('"')
        else:
            name = consts.get(arg.split("::")[-1])
            if name is None:
                sys.exit(f"check_deploy: cannot resolve the metric name {arg!r} in a {macro}! call")
        if macro == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def external_metrics():
    lines = (l.split("#", 1)[0].strip() for l in EXTERNAL.read_text().splitlines())
    return {l for l in lines if l}


def metric_names(expr):
    """The metric names a PromQL expression selects (a tokenizer, not a full parser)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", e)  # Grafana variables
    e = re.sub(r"\{[^}]*\}", " ", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                       # range and subquery windows
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        if word in FUNCTIONS or word in AGGREGATIONS or word in KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or re.fullmatch(r"e\d*", word):
            continue
        if e[m.end():].lstrip().startswith("("):
            sys.exit(f"check_deploy: unknown PromQL function {word!r} in: {expr}")
        names.add(word)
    return names


def dashboard_exprs(path):
    """Every PromQL text in a dashboard: panel targets and query variables."""
    board = json.loads(path.read_text())
    out = []

    def panels(ps):
        for p in ps:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f'panel "{p.get("title")}"', t["expr"]))
            panels(p.get("panels", []))

    panels(board.get("panels", []))
    for v in board.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]+\s*\)\s*", q)
        out.append((f'variable "{v.get("name")}"', m.group(1) if m else q))
    if not out:
        sys.exit(f"check_deploy: {path} has no PromQL at all")
    return out


def scaler_exprs():
    """The PromQL of KEDA's Prometheus triggers and the metric names of External HPA metrics."""
    out = []
    for path in SCALERS:
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc.get("spec", {})
            for t in spec.get("triggers", []):
                if t.get("type") == "prometheus":
                    out.append((f'{path.name} trigger "{t.get("name")}"', t["metadata"]["query"]))
            for m in spec.get("metrics", []):
                if m.get("type") == "External":
                    out.append((f"{path.name} external metric", m["external"]["metric"]["name"]))
    return out


def grafana_to_promql(expr):
    """A dashboard expression with Grafana's variables replaced by what they expand to."""
    e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", e)


def write_dashboard_rules(path):
    rules = []
    for board in DASHBOARDS:
        for i, (_, expr) in enumerate(dashboard_exprs(board)):
            rules.append({"record": f"dashboard:{board.stem}:{i}", "expr": grafana_to_promql(expr)})
    for i, (_, expr) in enumerate(scaler_exprs()):
        rules.append({"record": f"scaler:{i}", "expr": expr})
    pathlib.Path(path).write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))


def dockerfile_problems():
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    stages = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
    final = lines[stages[-1]:] if stages else []
    problems = []
    base = final[0].split()[1] if final else ""
    if "slim" not in base and "distroless" not in base:
        problems.append(f"deploy/Dockerfile: final stage FROM {base!r} is neither slim nor distroless")
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    uid = users[-1].split(":")[0] if users else ""
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"deploy/Dockerfile: final stage runs as {users[-1] if users else 'root'!r}, not a numeric non-root uid")
    checks = [l for l in final if l.upper().startswith("HEALTHCHECK ")]
    if not checks:
        problems.append("deploy/Dockerfile: no HEALTHCHECK")
    elif re.search(r"\b(curl|wget)\b", checks[-1]):
        problems.append("deploy/Dockerfile: the HEALTHCHECK calls curl or wget, which the image does not have")
    return problems


def build_overlays(kubectl):
    """Each overlay built with `kubectl kustomize`: (overlay, its objects), and the
    problems of those that would not build."""
    builds, problems = [], []
    for overlay in OVERLAYS:
        try:
            built = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True)
        except OSError as e:
            sys.exit(f"check_deploy: cannot run {kubectl} to build the overlays: {e}")
        if built.returncode != 0:
            problems.append(f"{overlay.relative_to(ROOT)}: kubectl kustomize failed: {built.stderr.strip()}")
            continue
        builds.append((overlay, [d for d in yaml.safe_load_all(built.stdout) if d]))
    return builds, problems


# What a worker holds besides its backfills' report documents: its other runs, pools and
# buffers (an allowance, not a measurement).
WORKER_REST_BYTES = 128 * MIB
# The worker's defaults (worker/src/config.rs, worker/src/marketplace/config.rs).
WORKER_DEFAULTS = {"backfill": 4, "max_document_bytes": 128 * MIB, "max_unpacked_bytes": 256 * MIB}


def memory_bytes(quantity):
    """A Kubernetes memory quantity (`512Mi`, `1.5Gi`, `800M`, `1e9`, `500m`, bytes) in
    bytes, or None when it is not one."""
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    units |= {f"{p}i": float(1 << (10 * n)) for n, p in enumerate("KMGTPE", start=1)}
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?", str(quantity).strip())
    if not m or (m.group(2) and m.group(3)):
        return None
    return int(float(m.group(1)) * 10 ** int(m.group(2) or 0) * units[m.group(3) or ""])


def worker_env(objects, container):
    """The worker's environment as the cluster gives it: the ConfigMaps it takes whole
    (`envFrom`), then its own `env` values."""
    env = {}
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o.get("kind") == "ConfigMap"}
    for source in container.get("envFrom", []):
        env |= maps.get(source.get("configMapRef", {}).get("name"), {})
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return env


def worker_memory_problems(builds):
    """Each built overlay: the worker's memory limit holds what its backfills may hold at
    once — each its report document unpacked, at the caps of its drover.toml, beside
    either the document as downloaded (while it is unpacked) or the rows parsed from it
    (counted as up to the unpacked text's own size: a row keeps some of its line's
    fields) — and the rest of the worker. (Found by the fifth audits of 2026-12-06:
    512 Mi against four backfills of up to 384 MiB each, so large reports could take a
    worker past its limit, to be OOM-killed with every run it held cut off.)"""
    problems = []
    for overlay, objects in builds:
        where = overlay.relative_to(ROOT)
        workers = [o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == "drover-worker"]
        tomls = [o for o in objects if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("drover-config")]
        if len(workers) != 1 or len(tomls) != 1:
            problems.append(f"{where}: expected one drover-worker Deployment and one drover-config ConfigMap")
            continue
        container = workers[0]["spec"]["template"]["spec"]["containers"][0]
        limit = container.get("resources", {}).get("limits", {}).get("memory")
        if limit is None or memory_bytes(limit) is None:
            problems.append(f"{where}: the worker has no memory limit that reads as one ({limit!r})")
            continue
        worker = tomllib.loads(tomls[0]["data"]["drover.toml"]).get("worker", {})
        env = worker_env(objects, container)
        market = worker.get("marketplace", {})
        try:
            backfills = int(env.get("DROVER_WORKER__CONCURRENCY__BACKFILL", worker.get("concurrency", {}).get("backfill", WORKER_DEFAULTS["backfill"])))
            document = int(env.get("DROVER_WORKER__MARKETPLACE__MAX_DOCUMENT_BYTES", market.get("max_document_bytes", WORKER_DEFAULTS["max_document_bytes"])))
            unpacked = int(env.get("DROVER_WORKER__MARKETPLACE__MAX_UNPACKED_BYTES", market.get("max_unpacked_bytes", WORKER_DEFAULTS["max_unpacked_bytes"])))
        except ValueError as e:
            problems.append(f"{where}: the worker's backfill concurrency or report caps do not read as numbers: {e}")
            continue
        needs = backfills * (max(document, unpacked) + unpacked) + WORKER_REST_BYTES
        if memory_bytes(limit) < needs:
            problems.append(
                f"{where}: the worker's memory limit {limit} is below what {backfills} backfills may hold "
                f"({backfills} x ({max(document, unpacked) // MIB} + {unpacked // MIB}) MiB of report documents + "
                f"{WORKER_REST_BYTES // MIB} MiB for the rest = {needs // MIB} MiB): lower "
                "worker.marketplace.max_document_bytes / max_unpacked_bytes or the backfill concurrency, or raise the limit"
            )
    return problems


def overlay_namespace_problems(builds):
    """Each built overlay: one namespace for every namespaced object, the overlay's own."""

    def says(ns):
        return f"namespace {ns}" if ns else "no namespace (kubectl's current one)"

    problems = []
    for overlay, objects in builds:
        where = overlay.relative_to(ROOT)
        declared = (yaml.safe_load((overlay / "kustomization.yaml").read_text()) or {}).get("namespace")
        found = {}
        for o in objects:
            if o.get("kind") in CLUSTER_SCOPED:
                continue
            meta = o.get("metadata", {})
            found.setdefault(meta.get("namespace"), []).append(f"{o.get('kind')} {meta.get('name')}")
        if declared:
            expected = declared
            for ns, names in sorted(found.items(), key=lambda kv: str(kv[0])):
                if ns != declared:
                    problems.append(f"{where}: {', '.join(names)} in {says(ns)}, not the overlay's {declared}")
        elif len(found) == 1 and None not in found:
            expected = next(iter(found))
        else:
            expected = None
            spread = "; ".join(
                f"{says(ns)}: " + (", ".join(names) if len(names) <= 3 else f"{len(names)} objects")
                for ns, names in sorted(found.items(), key=lambda kv: str(kv[0]))
            )
            problems.append(f"{where}: sets no `namespace:` and its objects are not all in one: {spread}")
        if expected and not any(o.get("kind") == "Namespace" and o.get("metadata", {}).get("name") == expected for o in objects):
            problems.append(f"{where}: no Namespace {expected} in the build: `kubectl apply -k` fails on a cluster without it")
    return problems


def open_ingress_problems():
    """Every NetworkPolicy ingress rule names who may connect: a rule with ports alone
    lets every pod in the cluster in, and the API trusts X-Forwarded-For from the
    proxies it names (api.ui.trusted_proxies), so any pod could pose as a proxy."""
    problems = []
    for path in sorted((ROOT / "deploy" / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "NetworkPolicy":
                continue
            for i, rule in enumerate((doc.get("spec") or {}).get("ingress") or []):
                if not rule.get("from"):
                    name = doc.get("metadata", {}).get("name")
                    problems.append(f"{path.relative_to(ROOT)}: NetworkPolicy {name} ingress rule {i + 1} names no `from`: every pod may connect")
    return problems


def anchor(heading):
    """GitHub's anchor for a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def main():
    parser = argparse.ArgumentParser(description="Offline checks of Drover's deploy files.")
    parser.add_argument("--dashboard-rules", metavar="FILE", help="write the dashboard's PromQL as recording rules to FILE")
    parser.add_argument("--kubectl", metavar="PATH", help="the kubectl that builds the overlays (default: kubectl on PATH)")
    args = parser.parse_args()
    if args.dashboard_rules:
        write_dashboard_rules(args.dashboard_rules)
    problems = []
    known = recorded_metrics() | external_metrics()
    rules = yaml.safe_load(RULES.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]

    for r in alerts:
        for name in sorted(metric_names(r["expr"]) - known):
            problems.append(f"alert {r['alert']}: no such metric {name}")
    for board in DASHBOARDS:
        for where, expr in dashboard_exprs(board):
            for name in sorted(metric_names(expr) - known):
                problems.append(f"{board.relative_to(ROOT)} {where}: no such metric {name}")

    for where, expr in scaler_exprs():
        for name in sorted(metric_names(expr) - known):
            problems.append(f"{where}: no such metric {name}")

    fires, silent = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for t in case.get("alert_rule_test", []):
            (fires if t.get("exp_alerts") else silent).add(t["alertname"])
    headings = {anchor(h) for h in re.findall(r"^#+\s+(.*)$", RUNBOOK.read_text(), re.M)}
    for r in alerts:
        a = r["alert"]
        if a not in fires:
            problems.append(f"alert {a}: no rule test where it fires")
        if a not in silent:
            problems.append(f"alert {a}: no rule test where it does not fire")
        url = r.get("annotations", {}).get("runbook_url", "")
        doc, _, frag = url.partition("#")
        if doc != "docs/operations.md" or frag not in headings:
            problems.append(f"alert {a}: runbook_url {url!r} is not a heading of docs/operations.md")

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith(".") and not (ROOT / src).exists():
                problems.append(f"docker-compose.yml service {name}: mounts {src}, which does not exist")
        in_monitoring = "monitoring" in svc.get("profiles", [])
        if in_monitoring != (name in MONITORING):
            problems.append(f"docker-compose.yml service {name}: profile monitoring is {in_monitoring}")
    if not MONITORING <= services.keys():
        problems.append(f"docker-compose.yml: missing {sorted(MONITORING - services.keys())}")
    problems += compose_cluster_problems(services)
    problems += compose_dependency_problems(services)

    problems += dockerfile_problems()
    problems += open_ingress_problems()

    kubectl = args.kubectl or shutil.which("kubectl")
    if kubectl:
        builds, unbuilt = build_overlays(kubectl)
        problems += unbuilt + overlay_namespace_problems(builds) + worker_memory_problems(builds)
        overlays = f", {len(OVERLAYS)} overlays' namespaces and worker memory"
    else:
        print(
            "check_deploy: warning: no kubectl on PATH (or --kubectl): the overlays' namespaces and worker memory are not checked",
            file=sys.stderr,
        )
        overlays = ""

    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"check_deploy: {len(alerts)} alerts, {len(DASHBOARDS)} dashboards: metric names, rule tests, runbook links, compose mounts, Dockerfile, network policies{overlays} OK")


def compose_cluster_problems(services):
    """The `cluster` profile: its services, its wiring, and the default profile untouched."""
    problems = []
    for name, svc in services.items():
        in_cluster = "cluster" in svc.get("profiles", [])
        if in_cluster != (name in CLUSTER):
            problems.append(f"docker-compose.yml service {name}: profile cluster is {in_cluster}")
        if not svc.get("profiles"):
            deps = svc.get("depends_on", [])
            for dep in deps if isinstance(deps, list) else deps.keys():
                if services.get(dep, {}).get("profiles"):
                    problems.append(f"docker-compose.yml service {name} (default profile) depends on {dep}, which is not in it")
    if not CLUSTER <= services.keys():
        return problems + [f"docker-compose.yml: missing {sorted(CLUSTER - services.keys())}"]
    for name in sorted(REDIS_NODES):
        cmd = services[name].get("command", [])
        if "--cluster-enabled" not in cmd or cmd[cmd.index("--cluster-enabled") + 1] != "yes":
            problems.append(f"docker-compose.yml service {name}: not started with --cluster-enabled yes")
    init = services["redis-cluster-init"]
    named = {a.split(":")[0] for a in init.get("command", []) if a.startswith("redis-node-")}
    if named != REDIS_NODES:
        problems.append(f"docker-compose.yml redis-cluster-init: names {sorted(named)}, not every node")
    if set(init.get("depends_on", {})) != REDIS_NODES:
        problems.append("docker-compose.yml redis-cluster-init: does not wait for every node")
    partitions = {}
    for name, section in [("api-cluster", "API"), ("worker-cluster", "WORKER")]:
        env = services[name].get("environment", {})
        url = env.get(f"DROVER_{section}__REDIS_URL", "")
        if not url.startswith("redis+cluster://"):
            problems.append(f"docker-compose.yml {name}: DROVER_{section}__REDIS_URL is not a redis+cluster:// URL")
        seeds = {h.split(":")[0] for h in url.removeprefix("redis+cluster://").split(",")}
        if seeds != REDIS_NODES:
            problems.append(f"docker-compose.yml {name}: the cluster URL names {sorted(seeds)}, not every node")
        partitions[name] = env.get(f"DROVER_{section}__QUEUE__PARTITIONS")
        if "redis-cluster-init" not in services[name].get("depends_on", {}):
            problems.append(f"docker-compose.yml {name}: does not wait for redis-cluster-init")
    if len(set(partitions.values())) != 1 or not str(partitions["api-cluster"]).isdigit() or int(partitions["api-cluster"]) < 2:
        problems.append(f"docker-compose.yml: queue.partitions of the cluster stack differ or are not > 1: {partitions}")
    published = {}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            host = parts[-2] if len(parts) > 1 else parts[0]  # the host port, any address
            if host in published:
                problems.append(f"docker-compose.yml services {published[host]} and {name} both publish {host}")
            published[host] = name
    return problems


def compose_dependency_problems(services):
    """Every service another one's environment names is among its (transitive) depends_on."""

    def deps(name):
        d = services.get(name, {}).get("depends_on", [])
        return set(d if isinstance(d, list) else d.keys())

    problems = []
    for name, svc in services.items():
        reach, todo = set(), list(deps(name))
        while todo:
            dep = todo.pop()
            if dep not in reach:
                reach.add(dep)
                todo += deps(dep)
        env = svc.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.partition("=")[::2] for e in env)
        for var, value in items:
            for host in re.findall(r"(?:://|@|,)([A-Za-z0-9_.-]+):\d+", str(value or "")):
                if host in services and host != name and host not in reach:
                    problems.append(f"docker-compose.yml service {name}: {var} names {host}, which it does not depend on")
    return problems


if __name__ == "__main__":
    main()
