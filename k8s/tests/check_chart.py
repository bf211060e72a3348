#!/usr/bin/env python3
"""Lints and renders the Roster chart for several values sets, validates
every manifest against the oldest and newest Kubernetes the chart claims,
and checks what matters: secrets only in Secrets, hardened containers, gRPC
probes, NetworkPolicies, migrations before the services.

Run from the repository root with the project's virtualenv (make test does):
    .venv/bin/python k8s/tests/check_chart.py
"""

from __future__ import annotations

import copy
import json
import re
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parents[1] / "roster"
RELEASE = "rel"
NAMESPACE = "roster"
FULLNAME = f"{RELEASE}-roster"

# Kubernetes versions the chart is checked against: kubeVersion's floor, and
# the newest kubernetes-validate knows.
OLDEST = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]).group(1)
NEWEST = kubernetes_validate.utils.latest_version()

HEALTH = {
    "user-registry": "roster.v1.UserRegistry",
    "access": "roster.v1.UserAccess",
    "sessions": "roster.v1.Authentication",
    "invitations": "roster.v1.UserInvitationRegistry",
    "notifications": "roster.v1.NotificationService",
    "all": "roster.v1.UserAccess",
}
CALLS = {
    "user-registry": {"access", "invitations"},
    "access": {"user-registry", "sessions", "invitations"},
    "sessions": {"user-registry", "access"},
    "invitations": {"access", "user-registry"},
    "notifications": {"access", "user-registry", "invitations"},
    "all": set(),
}
SPLIT = ["user-registry", "access", "sessions", "invitations", "notifications"]

# Secret values no manifest but a Secret may show.
SENTINELS = {
    "databaseUrl": "postgres://roster:db-sentinel-pass@db.example:5432/roster",
    "natsUrl": "nats://nats-sentinel-token@nats.example:4222",
    "smtpUrl": "smtp://mailer:smtp-sentinel-pass@mail.example:587",
    "tokenHashKey": "token-hash-sentinel-0123456789abcdef0123456789",
    "clusterKeys": "cluster-key-sentinel-0123456789abcdef0123456789",
    "natsPassword": "nats-password-sentinel",
    "natsCreds": "-----BEGIN NATS USER JWT-----\nnats-creds-sentinel\n",
    "bootstrapAdminPassword": "bootstrap-sentinel-Password-1",
}

BASE = {"secrets": {k: SENTINELS[k] for k in ("databaseUrl", "natsUrl", "smtpUrl")}}


def merged(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        out = deep_merge(out, part)
    return out


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


CASES: dict[str, dict] = {
    "defaults": BASE,
    "all mode": merged(BASE, {"mode": "all"}),
    "tls": merged(BASE, {"tls": {"enabled": True, "secretName": "roster-tls", "mutual": True}}),
    "hpa": merged(BASE, {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6}}),
    "existing secret": {
        "secrets": {"existingSecret": "byo", "keys": {"databaseUrl": "pg-url"}},
        "nats": {"auth": "token"},
    },
    "init containers": merged(BASE, {"migrations": {"mode": "initContainer"}}),
    "everything": merged(
        BASE,
        {
            "secrets": {k: SENTINELS[k] for k in ("tokenHashKey", "clusterKeys", "natsCreds", "bootstrapAdminPassword")},
            "nats": {"auth": "creds"},
            "bootstrap": {"adminUserId": "ops", "passwordFromSecret": True},
            "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
            "config": {
                "user_registry": {"password_policy": {"min_length": 14}, "invitation_required": True},
                "auth": {"trusted_proxies": ["10.0.0.0/8"]},
            },
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "extraVolumes": [{"name": "extra", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
            "extraContainers": [
                {
                    "name": "sidecar",
                    "image": "example/sidecar:1",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
            "podAnnotations": {"example.com/a": "b"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {}},
            "networkPolicy": {"egress": {"postgresql": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"port": 5432}]}]}},
        },
    ),
}

# Values that must be refused at install, and a piece of the message.
BAD = {
    "unknown mode": (merged(BASE, {"mode": "both"}), "/mode"),
    "unknown top-level key": (merged(BASE, {"replicas": 3}), "replicas"),
    "database URL in the config": (merged(BASE, {"config": {"database": {"url": "postgres://x"}}}), "/config/database/url"),
    "token hash key in the config": (merged(BASE, {"config": {"auth": {"token_hash_key": "k"}}}), "/config/auth/token_hash_key"),
    "cluster keys in the config": (merged(BASE, {"config": {"cluster": {"keys": ["k"]}}}), "/config/cluster/keys"),
    "TLS without a secret": (merged(BASE, {"tls": {"enabled": True}}), "/tls/secretName"),
    "ServiceMonitor without metrics": (merged(BASE, {"metrics": {"serviceMonitor": {"enabled": True}}}), "/metrics/enabled"),
    "short cluster key": (merged(BASE, {"secrets": {"clusterKeys": "short"}}), "/secrets/clusterKeys"),
    "unknown migrations mode": (merged(BASE, {"migrations": {"mode": "hook"}}), "/migrations/mode"),
    "no database URL": ({"secrets": {"natsUrl": "nats://n:4222", "smtpUrl": "smtp://m:25"}}, "secrets.databaseUrl"),
}

failures: list[str] = []


def check(cond: bool, what: str) -> None:
    if not cond:
        failures.append(what)


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["_template"] = path
                docs.append(doc)
    return docs


def strip(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc.pop("_template", None)
    if not doc["metadata"]["annotations"]:
        del doc["metadata"]["annotations"]
    return doc


def pods(docs: list[dict]):
    """(kind, name, pod spec) of every Deployment and Job."""
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d["kind"], d["metadata"]["name"], d["spec"]["template"]["spec"]


def component_of(name: str) -> str:
    return name.removeprefix(FULLNAME + "-")


def validate(case: str, docs: list[dict]) -> None:
    for doc in docs:
        plain = strip(doc)
        for version in (OLDEST, NEWEST):
            try:
                kubernetes_validate.validate(plain, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                check(doc["kind"] == "ServiceMonitor", f"{case}: no schema for {doc['kind']}")
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                failures.append(f"{case}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {path}: {e.message}")


def check_no_secret_outside_secrets(case: str, docs: list[dict]) -> None:
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for key, value in SENTINELS.items():
            for piece in {value, value.split("\n")[1] if "\n" in value else value}:
                check(piece not in text, f"{case}: {doc['kind']}/{doc['metadata']['name']} shows secret {key}")
    for kind, name, spec in pods(docs):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for env in c.get("env", []):
                if env["name"].startswith("ROSTER__") and env["name"] not in ("ROSTER__TELEMETRY__LOG_FORMAT",):
                    check("secretKeyRef" in env.get("valueFrom", {}), f"{case}: {name}/{c['name']}: {env['name']} is not from a Secret")


def check_hardened(case: str, docs: list[dict]) -> None:
    for kind, name, spec in pods(docs):
        psc = spec.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True, f"{case}: {name}: pod not runAsNonRoot")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{case}: {name}: pod seccomp")
        check(spec.get("automountServiceAccountToken") is False, f"{case}: {name}: service account token mounted")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            where = f"{case}: {kind} {name}/{c['name']}"
            check(sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
            check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
            check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
            check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: capabilities not dropped")
            check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp")
            if c["name"] in ("rosterd", "migrate"):
                mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
                for path in ("/tmp", "/var/lib/roster"):
                    check(path in mounts and "emptyDir" in volumes[mounts[path]["name"]], f"{where}: no emptyDir at {path}")
                check(c["resources"].get("requests", {}).get("cpu") and c["resources"]["requests"].get("memory"), f"{where}: no resource requests")


def settings(docs: list[dict], name: str) -> dict:
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    return tomllib.loads(cm["data"]["roster.toml"])


def check_release(case: str, values: dict, docs: list[dict]) -> None:
    mode = values.get("mode", "split")
    tls = values.get("tls", {}).get("enabled", False)
    migrations = values.get("migrations", {}).get("mode", "job")
    components = ["all"] if mode == "all" else SPLIT
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    deployments = {component_of(n): d for n, d in by_kind.get("Deployment", {}).items()}
    check(sorted(deployments) == sorted(components), f"{case}: Deployments {sorted(deployments)}")
    services = {component_of(n): d for n, d in by_kind.get("Service", {}).items()}
    check(sorted(services) == sorted(components), f"{case}: Services {sorted(services)}")
    for comp, svc in services.items():
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        check({"grpc", "internal"} <= set(ports), f"{case}: Service {comp} ports {sorted(ports)}")
        if not tls:
            check(ports["grpc"].get("appProtocol") == "kubernetes.io/h2c", f"{case}: Service {comp} appProtocol")
        check(("metrics" in ports) == values.get("metrics", {}).get("enabled", False), f"{case}: Service {comp} metrics port")

    # The settings file: parseable TOML, peers at the Services' internal port.
    conf = settings(docs, f"{FULLNAME}-config")
    check(conf["listen"] == "0.0.0.0:8884" and conf["internal_listen"] == "0.0.0.0:8885", f"{case}: listeners {conf}")
    check(conf["database"]["migrate_on_start"] is False, f"{case}: migrate_on_start")
    metrics_on = values.get("metrics", {}).get("enabled", False)
    check((conf.get("metrics", {}).get("listen") == "0.0.0.0:9090") == metrics_on, f"{case}: metrics.listen {conf.get('metrics')}")
    scheme = "https" if tls else "http"
    if mode == "all":
        check("cluster" not in conf or not any(k.endswith("_address") for k in conf["cluster"]), f"{case}: all mode calls itself")
    else:
        for key, comp in [("access_address", "access"), ("user_registry_address", "user-registry"),
                          ("sessions_address", "sessions"), ("invitations_address", "invitations")]:
            want = f"{scheme}://{FULLNAME}-{comp}.{NAMESPACE}.svc:8885"
            check(conf["cluster"][key] == want, f"{case}: cluster.{key} = {conf['cluster'].get(key)}, want {want}")
            check(f"{FULLNAME}-{comp}" in by_kind["Service"], f"{case}: no Service for {comp}")
    if tls:
        check(conf["tls"]["cert_file"] == "/etc/roster/tls/tls.crt" and conf["tls"]["ca_file"] == "/etc/roster/tls/ca.crt", f"{case}: tls files")
        check(conf["tls"].get("client_ca_file") == "/etc/roster/tls/ca.crt", f"{case}: mutual TLS")
    for key, value in values.get("config", {}).get("user_registry", {}).get("password_policy", {}).items():
        check(conf["user_registry"]["password_policy"][key] == value and isinstance(conf["user_registry"]["password_policy"][key], int), f"{case}: config passed through")

    for comp, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        c = next(c for c in spec["containers"] if c["name"] == "rosterd")
        check(c["args"] == ["--config", "/etc/roster/config/roster.toml", "start", comp], f"{case}: {comp} args {c['args']}")
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in spec["volumes"]}
        check(vols[mounts["/etc/roster/config"]]["configMap"]["name"] == f"{FULLNAME}-config", f"{case}: {comp} config volume")
        if tls:
            check(vols[mounts["/etc/roster/tls"]]["secret"]["secretName"] == "roster-tls", f"{case}: {comp} TLS volume")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                check(c[probe]["tcpSocket"]["port"] == "grpc", f"{case}: {comp} {probe} under TLS")
        else:
            check(c["readinessProbe"]["grpc"] == {"port": 8884, "service": HEALTH[comp]}, f"{case}: {comp} readiness {c['readinessProbe']}")
            check(c["livenessProbe"]["grpc"] == {"port": 8884}, f"{case}: {comp} liveness {c['livenessProbe']}")
            check(c["startupProbe"]["grpc"] == {"port": 8884}, f"{case}: {comp} startup {c['startupProbe']}")
        env = {e["name"]: e for e in c["env"]}
        secret_name = values.get("secrets", {}).get("existingSecret") or f"{FULLNAME}-secrets"
        for var in ("ROSTER__DATABASE__URL", "ROSTER__AUTH__TOKEN_HASH_KEY", "ROSTER__CLUSTER__KEYS", "ROSTER__EVENTS__NATS_URL"):
            check(env[var]["valueFrom"]["secretKeyRef"]["name"] == secret_name, f"{case}: {comp} {var} from {secret_name}")
        if values.get("secrets", {}).get("keys", {}).get("databaseUrl"):
            check(env["ROSTER__DATABASE__URL"]["valueFrom"]["secretKeyRef"]["key"] == values["secrets"]["keys"]["databaseUrl"], f"{case}: key name")
        check(("replicas" in dep["spec"]) != values.get("autoscaling", {}).get("enabled", False), f"{case}: {comp} replicas vs HPA")
        check(len(spec.get("topologySpreadConstraints", [])) == 2, f"{case}: {comp} topology spread")
        check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, f"{case}: {comp} rolling update")
        init = [i for i in spec.get("initContainers", []) if i["name"] == "migrate"]
        if migrations == "initContainer":
            check(len(init) == 1 and init[0]["args"][-1] == "migrate", f"{case}: {comp} migrate init container")
        else:
            check(not init, f"{case}: {comp} has a migrate init container in job mode")

    jobs = by_kind.get("Job", {})
    if migrations == "job":
        job = jobs.get(f"{FULLNAME}-migrate")
        check(job is not None, f"{case}: no migration Job")
        if job:
            ann = job["metadata"]["annotations"]
            check(ann.get("helm.sh/hook") == "pre-install,pre-upgrade", f"{case}: migration Job hook {ann}")
            c = job["spec"]["template"]["spec"]["containers"][0]
            check(c["args"] == ["--config", "/etc/roster/config/roster.toml", "migrate"], f"{case}: Job args")
            cm = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
            hook_cm = by_kind["ConfigMap"].get(cm)
            check(hook_cm is not None and "pre-install" in hook_cm["metadata"]["annotations"].get("helm.sh/hook", ""), f"{case}: Job's ConfigMap is not a hook")
            check(hook_cm is not None and hook_cm["data"] == by_kind["ConfigMap"][f"{FULLNAME}-config"]["data"], f"{case}: Job's settings differ")
            secret = by_kind.get("Secret", {}).get(f"{FULLNAME}-secrets")
            if secret:
                w = lambda d: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
                check("pre-install" in secret["metadata"]["annotations"].get("helm.sh/hook", "") and w(secret) < w(job), f"{case}: Secret not made before the Job")
    else:
        check(not jobs, f"{case}: a Job in initContainer mode")

    if values.get("secrets", {}).get("existingSecret"):
        check("Secret" not in by_kind, f"{case}: a Secret although existingSecret is set")
    else:
        secret = by_kind["Secret"][f"{FULLNAME}-secrets"]
        data = secret["stringData"]
        check(len(data["token-hash-key"]) >= 32 and all(len(k) >= 32 for k in data["cluster-keys"].split(",")), f"{case}: generated keys")
        check(secret["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", f"{case}: Secret not kept")
        # A hook only where a hook needs it: GitOps tools re-create hooks.
        check(("helm.sh/hook" in secret["metadata"]["annotations"]) == (migrations == "job"), f"{case}: Secret hook")

    # NetworkPolicies: each service reaches exactly the services it calls,
    # and is reached on its internal port only by its callers.
    if values.get("networkPolicy", {}).get("enabled", True):
        policies = {component_of(n): p for n, p in by_kind.get("NetworkPolicy", {}).items()}
        for comp in components:
            p = policies.get(comp)
            check(p is not None, f"{case}: no NetworkPolicy for {comp}")
            if not p:
                continue
            check(p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == comp, f"{case}: policy selector {comp}")
            reached = set()
            for rule in p["spec"]["egress"]:
                for peer in rule.get("to", []):
                    label = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                    if label:
                        reached.add(label)
                        check([x["port"] for x in rule["ports"]] == [8885], f"{case}: {comp} calls {label} on {rule['ports']}")
            check(reached == CALLS[comp], f"{case}: {comp} reaches {sorted(reached)}, want {sorted(CALLS[comp])}")
            egress_ports = {port["port"] for rule in p["spec"]["egress"] for port in rule.get("ports", [])}
            check({53, 5432, 4222, 587} <= egress_ports, f"{case}: {comp} egress ports {sorted(egress_ports)}")
            callers = {c for c in components if comp in CALLS[c]}
            internal_from = set()
            for rule in p["spec"]["ingress"]:
                if [x["port"] for x in rule["ports"]] == [8885]:
                    internal_from |= {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]}
            check(internal_from == callers, f"{case}: {comp} reached by {sorted(internal_from)}, want {sorted(callers)}")
        if migrations == "job":
            check("migrate" in policies, f"{case}: no NetworkPolicy for the migration Job")

    pdbs = by_kind.get("PodDisruptionBudget", {})
    check(len(pdbs) == len(components), f"{case}: PodDisruptionBudgets {sorted(pdbs)}")
    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    check(len(hpas) == (len(components) if values.get("autoscaling", {}).get("enabled") else 0), f"{case}: HPAs {sorted(hpas)}")
    monitors = by_kind.get("ServiceMonitor", {})
    want_monitor = values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    check(len(monitors) == (1 if want_monitor else 0), f"{case}: ServiceMonitors {sorted(monitors)}")
    for m in monitors.values():
        check(m["spec"]["endpoints"][0]["port"] == "metrics", f"{case}: ServiceMonitor port")


def main() -> int:
    for version in (OLDEST, NEWEST):
        report = helm.lint(CHART, BASE, strict=True, kube_version=f"v{version}")
        for msg in report["messages"]:
            if msg["severity"] >= 2:
                failures.append(f"lint (Kubernetes {version}): {msg['path']}: {msg['error']}")
        failures.extend(f"lint (Kubernetes {version}): {e}" for e in report["errors"])

    for case, values in CASES.items():
        try:
            docs = render(values)
        except helm.HelmError as e:
            failures.append(f"{case}: render failed: {e}")
            continue
        validate(case, docs)
        check_no_secret_outside_secrets(case, docs)
        check_hardened(case, docs)
        check_release(case, values, docs)
        print(f"ok  {case}: {len(docs)} manifests, valid for Kubernetes {OLDEST} and {NEWEST}")

    for case, (values, expect) in BAD.items():
        try:
            render(values)
            failures.append(f"refused: {case} was accepted")
        except helm.HelmError as e:
            check(expect in str(e), f"refused: {case}: message does not name {expect}: {e}")
            print(f"ok  refused: {case}")

    for f in failures:
        print("FAIL", f)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("chart checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
