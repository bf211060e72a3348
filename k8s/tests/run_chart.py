#!/usr/bin/env python3
"""Runs what the chart renders, as local rosterd processes: for each values
set, the migration Job (or the init container) first, then every
Deployment's container with its args, its environment (Secret references
resolved from the rendered Secret) and the rendered ConfigMap as its
settings file, the Services' DNS names and ports mapped to 127.0.0.1 ports;
then asks each container's readiness and liveness probes, as Kubernetes
would, and wants SERVING; then runs the user journey (journey.py) across
the processes, each step against the Service that serves it, with mail
delivered to an SMTP server the test runs.

Needs PostgreSQL (a database per run) and NATS as scripts/ensure-services.sh
leaves them, and a built rosterd (ROSTERD, or target/release/rosterd, or
target/debug/rosterd).

    .venv/bin/python k8s/tests/run_chart.py
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_chart  # noqa: E402  (render, names)
import journey  # noqa: E402  (the user journey)

REPO = Path(__file__).resolve().parents[2]
PG = os.environ.get("ROSTER_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
NATS = os.environ.get("ROSTER_TEST_NATS_URL", "nats://127.0.0.1:4222")
CONFIG_PATH = "/etc/roster/config/roster.toml"


def rosterd() -> str:
    for candidate in (os.environ.get("ROSTERD"), REPO / "target/release/rosterd", REPO / "target/debug/rosterd"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    sys.exit("no rosterd binary: build it first (cargo build -p roster-server --bin rosterd)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql: str) -> None:
    subprocess.run(["psql", "-q", "-X", PG, "-c", sql], check=True, capture_output=True)


def query(url: str, sql: str) -> str:
    done = subprocess.run(["psql", "-X", "-A", "-t", url, "-c", sql], capture_output=True, text=True)
    return done.stdout.strip()


def serving(port: int, service: str, timeout: float) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return ask_health(channel, service, timeout)


def ask_health(channel: grpc.Channel, service: str, timeout: float) -> str:
    """Asks `service`'s health until it is SERVING or `timeout` passes; the last answer."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    stub = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            if last == "SERVING":
                return last
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        time.sleep(0.2)
    return last


class Cluster:
    """The rendered objects of one release, and where its Services are."""

    def __init__(self, docs: list[dict], workdir: Path, outside_secrets: dict[str, dict[str, str]]):
        self.docs = docs
        self.workdir = workdir
        # The rendered Secrets, and the ones the chart expects to exist
        # (a TLS Secret cert-manager would write).
        self.secrets = {
            d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"
        } | outside_secrets
        self.config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
        # Each Service gets a local port per port it exposes; its DNS names
        # map to 127.0.0.1.
        self.ports: dict[tuple[str, int], int] = {}
        self.services: dict[str, dict] = {}
        for d in docs:
            if d["kind"] == "Service":
                self.services[d["metadata"]["name"]] = d
                for p in d["spec"]["ports"]:
                    self.ports[(d["metadata"]["name"], p["port"])] = free_port()

    def local_address(self, host: str, port: int) -> str:
        name = host.split(".")[0]
        return f"127.0.0.1:{self.ports[(name, port)]}"

    def settings_file(self, config_map: str, service: str | None, tag: str, mounts: dict[str, Path]) -> Path:
        """The ConfigMap's settings, with Service addresses mapped to local
        ports, the listeners on the ports this pod's Service gets, and the
        paths of mounted Secrets on the local folders holding their files."""
        text = self.config_maps[config_map]["roster.toml"]
        for mount_path, local in mounts.items():
            text = text.replace(f'"{mount_path}/', f'"{local}/')
        text = re.sub(
            r"(https?)://([a-z0-9-]+)\.[a-z0-9.-]+\.svc(?:\.cluster\.local)?:(\d+)",
            lambda m: f"{m.group(1)}://{self.local_address(m.group(2), int(m.group(3)))}",
            text,
        )
        if service:
            svc = self.services[service]
            for p in svc["spec"]["ports"]:
                local = self.ports[(service, p["port"])]
                key = {"grpc": "listen", "internal": "internal_listen"}.get(p["name"])
                if key:
                    text, n = re.subn(rf'(?m)^{key} = "0\.0\.0\.0:{p["port"]}"$', f'{key} = "127.0.0.1:{local}"', text)
                    assert n == 1, f"{key} not in the settings: {text}"
        path = self.workdir / f"{tag}.toml"
        path.write_text(text)
        return path

    def env(self, container: dict) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = self.secrets[ref["name"]][ref["key"]]
        return env

    def command(self, pod: dict, container: dict, service: str | None, tag: str) -> tuple[list[str], dict]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        config_map = volumes[mounts[str(Path(CONFIG_PATH).parent)]]["configMap"]["name"]
        local_mounts = {}
        for m in container["volumeMounts"]:
            secret = volumes[m["name"]].get("secret")
            if secret:
                local = self.workdir / f"{tag}-{m['name']}"
                local.mkdir()
                data = self.secrets[secret["secretName"]]
                items = secret.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (local / item["path"]).write_text(data[item["key"]])
                local_mounts[m["mountPath"]] = local
        settings = self.settings_file(config_map, service, tag, local_mounts)
        args = [str(settings) if a == CONFIG_PATH else a for a in container["args"]]
        env = self.env(container)
        # The emptyDir at /var/lib/roster (data_dir): a local folder.
        data = self.workdir / f"{tag}-data"
        data.mkdir()
        env["ROSTER__DATABASE__DATA_DIR"] = str(data)
        return [rosterd(), *args], env


def tls_secret(workdir: Path) -> dict[str, str]:
    """A CA and one certificate for every service (serverAuth and
    clientAuth), naming localhost and 127.0.0.1, as cert-manager would
    write them into a Secret."""
    d = workdir / "pki"
    d.mkdir()

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
        "-out", "ca.crt", "-days", "2", "-subj", "/CN=roster test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key",
        "-out", "tls.csr", "-subj", "/CN=roster")
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
    )
    ssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "2", "-extfile", "ext.cnf")
    return {name: (d / name).read_text() for name in ("tls.crt", "tls.key", "ca.crt")}


def connect(port: int, tls: dict[str, str] | None) -> grpc.Channel:
    """A channel to a local port: plaintext, or TLS trusting the CA and
    showing the certificate (mutual TLS) under the name it holds."""
    if tls is None:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls["ca.crt"].encode(),
        private_key=tls["tls.key"].encode(),
        certificate_chain=tls["tls.crt"].encode(),
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


def serving_tls(port: int, service: str, tls: dict[str, str], timeout: float) -> str:
    with connect(port, tls) as channel:
        return ask_health(channel, service, timeout)


def tcp_open(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def run_release(case: str, values: dict, pb) -> list[str]:
    failures: list[str] = []
    db = f"roster_chart_{uuid.uuid4().hex[:12]}"
    stream = f"ROSTER_CHART_{uuid.uuid4().hex[:12].upper()}"
    db_url = PG.rsplit("/", 1)[0] + "/" + db
    mailbox = journey.Mailbox()
    values = check_chart.merged(values, {
        "secrets": {"databaseUrl": db_url, "natsUrl": NATS, "smtpUrl": mailbox.url},
        "config": {"events": {"stream": stream, "subject_prefix": stream.lower()}, "mail": {"base_url": BASE_URL}},
    })
    processes: list[tuple[str, subprocess.Popen]] = []
    with tempfile.TemporaryDirectory() as tmp, mailbox:
        workdir = Path(tmp)
        docs = [check_chart.strip(d) for d in check_chart.render(values)]
        tls = None
        outside = {}
        if values.get("tls", {}).get("enabled"):
            tls = tls_secret(workdir)
            outside[values["tls"]["secretName"]] = tls
        cluster = Cluster(docs, workdir, outside)
        # Made where the `finally` that drops it is sure to run.
        psql(f"CREATE DATABASE {db}")
        try:
            for job in (d for d in docs if d["kind"] == "Job"):
                pod = job["spec"]["template"]["spec"]
                for c in pod["containers"]:
                    cmd, env = cluster.command(pod, c, None, f"job-{c['name']}")
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
                    if done.returncode != 0:
                        failures.append(f"{case}: Job {job['metadata']['name']} failed: {done.stderr[-2000:]}")
                        return failures
                    print(f"ok  {case}: Job {job['metadata']['name']} ({' '.join(c['args'][2:])})")
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            for dep in deployments:
                name = dep["metadata"]["name"]
                pod = dep["spec"]["template"]["spec"]
                for init in pod.get("initContainers", []):
                    cmd, env = cluster.command(pod, init, name, f"{name}-{init['name']}")
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
                    if done.returncode != 0:
                        failures.append(f"{case}: init container {name}/{init['name']} failed: {done.stderr[-2000:]}")
                        return failures
                    print(f"ok  {case}: init container {name}/{init['name']}")
            for dep in deployments:
                name = dep["metadata"]["name"]
                pod = dep["spec"]["template"]["spec"]
                c = next(c for c in pod["containers"] if c["name"] == "rosterd")
                cmd, env = cluster.command(pod, c, name, name)
                log = open(workdir / f"{name}.log", "w")
                processes.append((name, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)))
            for dep in deployments:
                name = dep["metadata"]["name"]
                c = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "rosterd")
                health = HEALTH_NAMES[name.removeprefix(check_chart.FULLNAME + "-")]
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if "tcpSocket" in c[probe]:
                        # Under TLS: the port must accept connections, and
                        # health answers SERVING to a client with the CA.
                        named = {p["name"]: p["containerPort"] for p in c["ports"]}
                        port = cluster.ports[(name, named[c[probe]["tcpSocket"]["port"]])]
                        if not tcp_open(port, 60):
                            failures.append(f"{case}: {name} {probe}: port closed")
                            continue
                        service = health if probe == "readinessProbe" else ""
                        status = serving_tls(port, service, tls, timeout=60)
                        if status != "SERVING":
                            log = (workdir / f"{name}.log").read_text()[-3000:]
                            failures.append(f"{case}: {name} {probe} over TLS {service or '(server)'}: {status}\n{log}")
                        else:
                            print(f"ok  {case}: {name} {probe} (tcpSocket), over TLS {service or '(server)'}: SERVING")
                        continue
                    g = c[probe]["grpc"]
                    port = cluster.ports[(name, g["port"])]
                    status = serving(port, g.get("service", ""), timeout=60)
                    shown = g.get("service") or "(server)"
                    if status != "SERVING":
                        log = (workdir / f"{name}.log").read_text()[-3000:]
                        failures.append(f"{case}: {name} {probe} {shown}: {status}\n{log}")
                    else:
                        print(f"ok  {case}: {name} {probe} {shown}: SERVING")
            # The access service makes the first admin through the user
            # registry: one call across the rendered wiring (cluster address,
            # internal port, cluster key from the Secret).
            admin = values.get("bootstrap", {}).get("adminUserId")
            if admin:
                deadline = time.monotonic() + 60
                while not query(db_url, f"SELECT count(*) FROM user_registry.users WHERE user_id = '{admin}'") == "1":
                    if time.monotonic() > deadline:
                        failures.append(f"{case}: the bootstrap admin {admin} was not made")
                        break
                    time.sleep(0.3)
                else:
                    print(f"ok  {case}: bootstrap admin {admin} made by the access service through the user registry")
            if not failures:
                failures += walk(case, values, cluster, tls, pb, mailbox, workdir)
            for name, p in processes:
                if p.poll() is not None:
                    failures.append(f"{case}: {name} exited with {p.returncode}")
        finally:
            for name, p in processes:
                p.send_signal(signal.SIGTERM)
            for name, p in processes:
                try:
                    if p.wait(timeout=40) != 0:
                        failures.append(f"{case}: {name} stopped with status {p.returncode}")
                except subprocess.TimeoutExpired:
                    p.kill()
                    failures.append(f"{case}: {name} did not stop on SIGTERM")
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            delete_stream(stream)
    return failures


def walk(case: str, values: dict, cluster: Cluster, tls, pb, mailbox: journey.Mailbox, workdir: Path) -> list[str]:
    """The user journey, each step against the local port of the Service
    that serves it (the one Service in `mode: all`)."""
    def service(component: str) -> str:
        name = "all" if values.get("mode") == "all" else component
        return f"{check_chart.FULLNAME}-{name}"

    def public_port(component: str) -> int:
        name = service(component)
        port = next(p["port"] for p in cluster.services[name]["spec"]["ports"] if p["name"] == "grpc")
        return cluster.ports[(name, port)]

    channels = {c: connect(public_port(c), tls) for c in check_chart.SPLIT}
    bootstrap = values["bootstrap"]
    admin = journey.Admin(bootstrap["adminUserId"], bootstrap["adminEmail"], values["secrets"]["bootstrapAdminPassword"])
    started = time.monotonic()
    try:
        journey.run(pb, channels, mailbox, admin, BASE_URL, say=lambda step: print(f"ok  {case}: journey: {step}"))
    except journey.Failure as e:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(workdir.glob("*.log")))
        return [f"{case}: journey: {e}\n{logs}"]
    finally:
        for channel in channels.values():
            channel.close()
    print(f"ok  {case}: the journey passed across the rendered processes in {time.monotonic() - started:.1f} s")
    return []


def delete_stream(name: str) -> None:
    hostport = NATS.split("://", 1)[-1].split("@")[-1].split("/")[0]
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(
                b'CONNECT {"verbose":false}\r\nSUB _INBOX.roster_chart 1\r\n'
                + f"PUB $JS.API.STREAM.DELETE.{name} _INBOX.roster_chart 0\r\n\r\n".encode()
            )
            buf = b""
            while b"MSG " not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
    except OSError:
        pass


HEALTH_NAMES = check_chart.HEALTH

# The links in mails start here (config.mail.base_url).
BASE_URL = "https://accounts.chart.example"

# The first admin, from the chart's bootstrap values, its password from the
# Secret the chart makes.
ADMIN = {
    "bootstrap": {"adminUserId": "ops", "adminEmail": "ops@chart.example", "passwordFromSecret": True},
    "secrets": {"bootstrapAdminPassword": "Chart-Admin-Pass-2026"},
}

CASES = {
    "split, migration Job": ADMIN,
    "all, init containers": check_chart.merged(ADMIN, {"mode": "all", "migrations": {"mode": "initContainer"}}),
    "split, mutual TLS": check_chart.merged(ADMIN, {"tls": {"enabled": True, "secretName": "roster-tls", "mutual": True}}),
}


def main() -> int:
    failures: list[str] = []
    with journey.Protos() as pb:
        for case, values in CASES.items():
            failures += run_release(case, values, pb)
    for f in failures:
        print("FAIL", f)
    if failures:
        return 1
    print("rendered chart runs: every probe SERVING, and the user journey passes across the processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
