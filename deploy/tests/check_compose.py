#!/usr/bin/env python3
"""Checks deploy/compose.yaml: podman-compose parses and interpolates it
(and refuses it without the two keys), and it runs what Roster needs:
migrations before the five services, each hardened, peers by service name.

    .venv/bin/python deploy/tests/check_compose.py
"""

import os
import subprocess
import sys
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "compose.yaml"
PODMAN_COMPOSE = Path(sys.executable).parent / "podman-compose"
SERVICES = ["user-registry", "access", "sessions", "invitations", "notifications"]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def config(env):
    return subprocess.run(
        [str(PODMAN_COMPOSE), "-f", str(COMPOSE), "config"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}, **env},
        capture_output=True, text=True, timeout=120, cwd=COMPOSE.parent,
    )


missing = config({})
check(missing.returncode != 0 and "ROSTER_TOKEN_HASH_KEY" in missing.stderr, "compose accepted without ROSTER_TOKEN_HASH_KEY")

keys = {"ROSTER_TOKEN_HASH_KEY": "t" * 64, "ROSTER_CLUSTER_KEY": "c" * 64}
done = config(keys)
if done.returncode != 0:
    print(done.stderr, file=sys.stderr)
    sys.exit("compose config failed")
c = yaml.safe_load(done.stdout)
svc = c["services"]
check({"postgres", "nats", "mailpit", "migrate", *SERVICES} <= set(svc), f"services: {sorted(svc)}")
check("--jetstream" in svc["nats"]["command"], "NATS without JetStream")
check(svc["migrate"]["command"] == ["migrate"], "migrate command")
check(svc["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy", "migrate waits for PostgreSQL")
check("ROSTER__AUTH__TOKEN_HASH_KEY" not in svc["migrate"]["environment"], "migrate gets keys it does not need")
for name in SERVICES:
    s = svc[name]
    env = s["environment"]
    check(s["command"] == ["start", name], f"{name}: command {s['command']}")
    check(s["depends_on"]["migrate"]["condition"] == "service_completed_successfully", f"{name}: does not wait for migrations")
    check(s.get("read_only") is True and s.get("cap_drop") == ["ALL"] and s.get("user") == "65532:65532", f"{name}: not hardened")
    check(env["ROSTER__AUTH__TOKEN_HASH_KEY"] == keys["ROSTER_TOKEN_HASH_KEY"] and env["ROSTER__CLUSTER__KEYS"] == keys["ROSTER_CLUSTER_KEY"], f"{name}: keys")
    check(env["ROSTER__DATABASE__MIGRATE_ON_START"] == "false", f"{name}: migrates on start")
    for key, peer in [("ACCESS", "access"), ("USER_REGISTRY", "user-registry"), ("SESSIONS", "sessions"), ("INVITATIONS", "invitations")]:
        check(env[f"ROSTER__CLUSTER__{key}_ADDRESS"] == f"http://{peer}:8885", f"{name}: {key} address")
    check(env["ROSTER__MAIL__SMTP_URL"] == "smtp://mailpit:1025" and env["ROSTER__EVENTS__NATS_URL"] == "nats://nats:4222", f"{name}: backends")
check(svc["access"]["environment"].get("ROSTER__BOOTSTRAP__ADMIN_USER_ID") == "", "bootstrap on the access service")


def published(service):
    """The ports of a service as (host address, host port, container port)."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", ""), str(port.get("published", "")), str(port.get("target", ""))))
        else:
            ip, host, target = str(port).rsplit(":", 2) if str(port).count(":") == 2 else ("", *str(port).split(":"))
            found.append((ip, host, target))
    return found


# Every service serves metrics on 9090, published on loopback, one host
# port each, as the README lists them.
METRICS_PORTS = {"user-registry": "9091", "access": "9092", "sessions": "9093", "invitations": "9094", "notifications": "9095"}
for name in SERVICES:
    env = svc[name]["environment"]
    check(env.get("ROSTER__METRICS__LISTEN") == "0.0.0.0:9090", f"{name}: metrics.listen {env.get('ROSTER__METRICS__LISTEN')!r}")
    ports = published(svc[name])
    check(("127.0.0.1", METRICS_PORTS[name], "9090") in ports, f"{name}: metrics not published on 127.0.0.1:{METRICS_PORTS[name]}: {ports}")
    check(all(ip == "127.0.0.1" for ip, _, _ in ports), f"{name}: a port published off loopback: {ports}")
hosts = [host for name in SERVICES for _, host, _ in published(svc[name])]
check(len(hosts) == len(set(hosts)), f"a host port published twice: {sorted(hosts)}")
check("ROSTER__METRICS__LISTEN" not in svc["migrate"]["environment"], "migrate serves metrics")
readme = (COMPOSE.parents[1] / "README.md").read_text()
for name, port in METRICS_PORTS.items():
    check(f"127.0.0.1:{port}" in readme, f"README does not name the metrics port of {name} ({port})")

for f in failures:
    print("FAIL", f)
if failures:
    sys.exit(1)
print("compose checks passed")
