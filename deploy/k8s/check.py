"""What JSON schemas cannot check in deploy/k8s's renderings and in docker-compose.yml.

Run by deploy/k8s/check.sh with its venv's python (PyYAML) after kubernetes-validate:
    check.py --compose PATH/docker-compose RENDERED.yaml...
Each RENDERED.yaml is one `kubectl kustomize` output, named after its directory (base, gpu, cpu,
external-db, ...). Prints one line per group of checks, every failure, and exits 1 if any failed.
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]

# What each rendering must be: GPU workers or CPU workers, bundled PostgreSQL or not. An overlay
# missing here still gets every generic check; add it so its GPU/database choice is checked too.
EXPECT = {
    "base": {"gpu": True, "postgres": True},
    "gpu": {"gpu": True, "postgres": True},
    "cpu": {"gpu": False, "postgres": True},
    "external-db": {"gpu": True, "postgres": False},
}

QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
SUFFIX = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
# docker-compose.yml's secrets: .env must set them, there is no default.
COMPOSE_SECRETS = {"TANREN_ADMIN_TOKEN", "TANREN_JOIN_TOKEN", "TANREN_POSTGRES_PASSWORD"}
VAR_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class Report:
    def __init__(self):
        self.passed = 0
        self.failures = []
        self.group_failures = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
            self.group_failures += 1
            print(f"   FAIL {what}", file=sys.stderr)
        return cond

    def group(self, title, n_before):
        state = "ok" if self.group_failures == 0 else f"{self.group_failures} FAILED"
        print(f"   {title}: {self.passed + len(self.failures) - n_before} checks, {state}")
        self.group_failures = 0


def quantity(q):
    m = QUANTITY.match(str(q))
    return float(m.group(1)) * SUFFIX[m.group(2)] if m else None


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    e = env_map(container).get(name)
    return None if e is None else e.get("value")


def secret_ref(container, name):
    e = env_map(container).get(name, {})
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def field_ref(container, name):
    e = env_map(container).get(name, {})
    return e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def check_rendering(r, name, objs):
    n0 = r.passed + len(r.failures)
    at = lambda o: f"{name}: {o['kind']}/{o['metadata']['name']}"  # noqa: E731
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    secrets = {}
    for o in objs:
        if o["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
            data.update(o.get("stringData") or {})
            secrets[o["metadata"]["name"]] = data
    pvcs = {o["metadata"]["name"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    r.check(len(namespaces) == 1 and None not in namespaces, f"{name}: every object in one namespace, got {namespaces}")
    workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]

    # Generic: selectors, containers, env references, secrets, volumes, probes, resources.
    for w in workloads:
        spec, pod = w["spec"], w["spec"]["template"]["spec"]
        labels = w["spec"]["template"]["metadata"].get("labels", {})
        sel = spec["selector"].get("matchLabels", {})
        r.check(sel and all(labels.get(k) == v for k, v in sel.items()), f"{at(w)}: selector {sel} matches the pod labels")
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        claim_templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        for v in vols.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                r.check(claim in pvcs, f"{at(w)}: volume {v['name']} claims PVC {claim}, which is rendered")
        r.check(pod.get("enableServiceLinks") is False, f"{at(w)}: enableServiceLinks: false (no TANREN_*_PORT variables from the Services)")
        for kind, c in [("init", c) for c in pod.get("initContainers", [])] + [("main", c) for c in pod["containers"]]:
            where = f"{at(w)} container {c['name']}"
            r.check(bool(c.get("image")), f"{where}: has an image")
            names = [e["name"] for e in c.get("env", [])]
            r.check(len(names) == len(set(names)), f"{where}: env names unique")
            for i, e in enumerate(c.get("env", [])):
                for ref in VAR_REF.findall(str(e.get("value", ""))):
                    r.check(ref in names[:i], f"{where}: env {e['name']} uses $({ref}), defined before it")
                sk = e.get("valueFrom", {}).get("secretKeyRef")
                if sk:
                    r.check(sk["key"] in secrets.get(sk["name"], {}),
                            f"{where}: env {e['name']} reads Secret {sk['name']} key {sk['key']}, which is rendered")
            for word in c.get("command", []) + c.get("args", []):
                for ref in VAR_REF.findall(str(word)):
                    r.check(ref in names, f"{where}: command uses $({ref}), an env variable")
            for m in c.get("volumeMounts", []):
                r.check(m["name"] in vols or m["name"] in claim_templates, f"{where}: mount {m['name']} is a volume")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for key in ("cpu", "memory"):
                    v = res.get(part, {}).get(key)
                    r.check(v is not None and quantity(v) is not None, f"{where}: resources.{part}.{key} is a quantity, got {v!r}")
            for key, req in res.get("requests", {}).items():
                lim = res.get("limits", {}).get(key)
                if lim is not None and quantity(req) is not None and quantity(lim) is not None:
                    r.check(quantity(req) <= quantity(lim), f"{where}: request {key} {req} <= limit {lim}")
            gpu = res.get("limits", {}).get("nvidia.com/gpu")
            if gpu is not None:
                r.check(re.fullmatch(r"[1-9][0-9]*", str(gpu)) is not None, f"{where}: nvidia.com/gpu is a whole number, got {gpu!r}")
            r.check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation: false")
            if kind == "main":
                for probe in ("readinessProbe", "livenessProbe"):
                    p = c.get(probe)
                    if r.check(p is not None, f"{where}: has a {probe}"):
                        act = p.get("httpGet") or p.get("tcpSocket")
                        if act:
                            r.check(port_number(c, act["port"]) is not None, f"{where}: {probe} port {act['port']} is a container port")

    # Services select pods that have the target port.
    pods = [(w, c) for w in workloads for c in w["spec"]["template"]["spec"]["containers"]]
    for s in (o for o in objs if o["kind"] == "Service"):
        sel = s["spec"].get("selector", {})
        matched = [w for w in workloads if all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
        if r.check(len(matched) == 1, f"{at(s)}: selector {sel} matches exactly one workload, got {len(matched)}"):
            for p in s["spec"]["ports"]:
                tp = p.get("targetPort", p["port"])
                ok = any(port_number(c, tp) is not None for w, c in pods if w is matched[0])
                r.check(ok, f"{at(s)}: targetPort {tp} is a port of {matched[0]['metadata']['name']}")

    # tanren: the control plane.
    ctl = by.get(("Deployment", "tanren-control"))
    if r.check(ctl is not None, f"{name}: Deployment tanren-control rendered"):
        r.check(ctl["spec"].get("replicas") == 1, f"{name}: control plane has 1 replica")
        r.check(ctl["spec"].get("strategy", {}).get("type") == "Recreate", f"{name}: control plane strategy Recreate")
        c = next(c for c in ctl["spec"]["template"]["spec"]["containers"] if c["name"] == "control")
        r.check(c["image"].split(":")[0].endswith("tanren-control"), f"{name}: control image is tanren-control, got {c['image']}")
        for k, v in {"TANREN_LISTEN": "0.0.0.0:8080", "TANREN_PUBLIC_URL": "http://tanren-control:8080",
                     "TANREN_INSECURE_HTTP": "true", "TANREN_DATA_DIR": "/data"}.items():
            r.check(env_value(c, k) == v, f"{name}: control env {k}={v}, got {env_value(c, k)!r}")
        for k, key in {"TANREN_DATABASE_URL": "database-url", "TANREN_ADMIN_TOKEN": "admin-token",
                       "TANREN_JOIN_TOKEN": "join-token"}.items():
            ref = secret_ref(c, k)
            r.check(ref is not None and ref[1] == key, f"{name}: control env {k} from Secret key {key}, got {ref}")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in ctl["spec"]["template"]["spec"].get("volumes", [])}
        r.check("persistentVolumeClaim" in vols.get(mounts.get("/data"), {}), f"{name}: control /data is a PVC")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            g = c.get(probe, {}).get("httpGet", {})
            r.check(g.get("path") == "/healthz" and port_number(c, g.get("port")) == 8080, f"{name}: control {probe} GET /healthz on 8080")
        svc = by.get(("Service", "tanren-control"))
        r.check(svc is not None and any(p["port"] == 8080 for p in svc["spec"]["ports"]), f"{name}: Service tanren-control on 8080")
        db_ref = secret_ref(c, "TANREN_DATABASE_URL")
        db_url = secrets.get(db_ref[0], {}).get(db_ref[1], "") if db_ref else ""
    else:
        db_ref, db_url = None, ""

    # tanren: the workers.
    wk = by.get(("Deployment", "tanren-worker"))
    gpu_found = None
    if r.check(wk is not None, f"{name}: Deployment tanren-worker rendered"):
        pod = wk["spec"]["template"]["spec"]
        c = next(c for c in pod["containers"] if c["name"] == "worker")
        r.check(c["image"].split(":")[0].endswith("tanren-worker"), f"{name}: worker image is tanren-worker, got {c['image']}")
        for k, v in {"TANREN_CONTROL_URL": "http://tanren-control:8080", "TANREN_WORKER_LISTEN": "0.0.0.0:50051",
                     "TANREN_WORKER_ADVERTISE": "http://$(POD_IP):50051"}.items():
            r.check(env_value(c, k) == v, f"{name}: worker env {k}={v}, got {env_value(c, k)!r}")
        r.check(field_ref(c, "POD_IP") == "status.podIP", f"{name}: worker POD_IP from status.podIP")
        r.check(field_ref(c, "TANREN_WORKER_ID") == "metadata.name", f"{name}: worker TANREN_WORKER_ID from metadata.name")
        ref = secret_ref(c, "TANREN_JOIN_TOKEN")
        r.check(ref is not None and ref[1] == "join-token", f"{name}: worker TANREN_JOIN_TOKEN from Secret key join-token, got {ref}")
        if ctl is not None and ref is not None:
            r.check(ref == secret_ref(next(x for x in ctl["spec"]["template"]["spec"]["containers"] if x["name"] == "control"), "TANREN_JOIN_TOKEN"),
                    f"{name}: worker and control plane read the same join token")
        for probe in ("readinessProbe", "livenessProbe"):
            t = c.get(probe, {}).get("tcpSocket", {})
            r.check(port_number(c, t.get("port")) == 50051, f"{name}: worker {probe} tcpSocket 50051")
        limits = c.get("resources", {}).get("limits", {})
        gpu_found = "nvidia.com/gpu" in limits
        device = env_value(c, "TANREN_DEVICE")
        if gpu_found:
            r.check(str(limits["nvidia.com/gpu"]) == "1", f"{name}: one GPU per worker")
            r.check(device is not None and device.startswith("cuda"), f"{name}: a GPU worker has TANREN_DEVICE cuda, got {device!r}")
        else:
            r.check(device == "cpu", f"{name}: a worker without a GPU has TANREN_DEVICE=cpu, got {device!r}")
            r.check("nvidia.com/gpu" not in json.dumps(wk), f"{name}: no nvidia.com/gpu left in the CPU worker (requests, tolerations)")
        threads = env_map(c).get("TANREN_THREADS", {}).get("valueFrom", {}).get("resourceFieldRef", {})
        r.check(threads.get("resource") == "requests.cpu", f"{name}: TANREN_THREADS follows requests.cpu")

    # tanren: PostgreSQL, bundled or not.
    pg = by.get(("StatefulSet", "tanren-postgres"))
    pg_svc = by.get(("Service", "tanren-postgres"))
    r.check((pg is None) == (pg_svc is None), f"{name}: PostgreSQL StatefulSet and Service come together")
    if pg is not None:
        c = pg["spec"]["template"]["spec"]["containers"][0]
        r.check(c["image"].startswith("postgres:16"), f"{name}: PostgreSQL image postgres:16, got {c['image']}")
        r.check(pg["spec"]["template"]["spec"].get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: PostgreSQL runs as non-root")
        r.check(bool(pg["spec"].get("volumeClaimTemplates")), f"{name}: PostgreSQL data on a PVC")
        u = urlsplit(db_url)
        r.check(u.scheme in ("postgres", "postgresql") and u.hostname == "tanren-postgres" and (u.port or 5432) == 5432,
                f"{name}: database-url points at tanren-postgres:5432")
        pw = secret_ref(c, "POSTGRES_PASSWORD")
        pw_value = secrets.get(pw[0], {}).get(pw[1]) if pw else None
        r.check(pw_value is not None and u.password == pw_value, f"{name}: database-url carries postgres-password")
    exp = EXPECT.get(name)
    if exp is None:
        print(f"   ({name}: not in EXPECT in deploy/k8s/check.py, so its GPU/database choice is not checked)")
    else:
        r.check(gpu_found == exp["gpu"], f"{name}: workers {'with' if exp['gpu'] else 'without'} nvidia.com/gpu")
        r.check((pg is not None) == exp["postgres"], f"{name}: bundled PostgreSQL {'present' if exp['postgres'] else 'absent'}")
    r.group(f"{name}: references, probes, resources, tanren wiring", n0)


def compose_env():
    # Only .env.example decides: none of the caller's TANREN_*/COMPOSE_* variables, no .env file.
    return {k: v for k, v in os.environ.items() if not k.startswith(("TANREN_", "COMPOSE_"))}


def compose(exe, *args, env_file):
    cmd = [exe, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), "--env-file", env_file, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=compose_env(), cwd=ROOT)


def check_compose(r, exe):
    n0 = r.passed + len(r.failures)
    example = ROOT / ".env.example"
    text = (ROOT / "docker-compose.yml").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example.read_text(), re.M))
    # Every $VAR / ${VAR...} use ($$ is a literal dollar); each use of a secret must be ${VAR:?...}.
    refs = [(m.group(1) or m.group(2), m.group(0)) for m in re.finditer(
        r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+])?|([A-Za-z_][A-Za-z0-9_]*))", text)]
    for var in sorted({v for v, _ in refs}):
        r.check(var in listed, f"docker-compose.yml: ${{{var}}} is listed in .env.example")
    for var, use in refs:
        if var in COMPOSE_SECRETS:
            r.check(use == "${" + var + ":?", f"docker-compose.yml: every use of {var} is ${{{var}:?...}} (required), got {use}")
    required = sorted({v for v, use in refs if use.endswith(":?")})
    r.check(COMPOSE_SECRETS <= set(required), f"docker-compose.yml: {sorted(COMPOSE_SECRETS)} are required variables, got {required}")

    for profile in ([], ["--profile", "gpu"]):
        p = compose(exe, *profile, "config", "-q", env_file=str(example))
        r.check(p.returncode == 0, f"docker compose {' '.join(profile)} config with .env.example: {p.stderr.strip()}")
    empty = compose(exe, "--profile", "gpu", "config", "-q", env_file=os.devnull)
    r.check(empty.returncode != 0, "docker compose config without the variables fails")
    for var in required:
        r.check(var in empty.stderr, f"docker compose config without the variables names {var}")

    p = compose(exe, "--profile", "gpu", "config", "--format", "json", env_file=str(example))
    if not r.check(p.returncode == 0, f"docker compose config --format json: {p.stderr.strip()}"):
        return r.group("docker-compose.yml", n0)
    services = json.loads(p.stdout)["services"]
    env = {n: s.get("environment") or {} for n, s in services.items()}
    ctl = env.get("control", {})
    for k in ("TANREN_DATABASE_URL", "TANREN_ADMIN_TOKEN", "TANREN_JOIN_TOKEN"):
        r.check(bool(ctl.get(k)), f"compose control: {k} set")
    r.check(ctl.get("TANREN_INSECURE_HTTP") == "true", "compose control: TANREN_INSECURE_HTTP=true")
    u = urlsplit(ctl.get("TANREN_DATABASE_URL", ""))
    r.check(u.scheme == "postgres" and u.hostname in services, f"compose control: TANREN_DATABASE_URL names a compose service, got {u.hostname}")
    db = services.get(u.hostname or "", {})
    r.check(u.password and u.password == (db.get("environment") or {}).get("POSTGRES_PASSWORD"), "compose: the database URL carries POSTGRES_PASSWORD")
    r.check(bool(db.get("healthcheck", {}).get("test")), f"compose {u.hostname}: has a healthcheck")
    dep = services.get("control", {}).get("depends_on", {}).get(u.hostname or "", {})
    r.check(dep.get("condition") == "service_healthy", "compose control: depends_on the database service_healthy")
    workers = {n: e for n, e in env.items() if "TANREN_CONTROL_URL" in e}
    r.check(len(workers) >= 2, f"compose: a CPU and a GPU worker, got {sorted(workers)}")
    ids = [e.get("TANREN_WORKER_ID") for e in workers.values()]
    r.check(None not in ids and len(ids) == len(set(ids)), f"compose: worker ids set and distinct, got {ids}")
    gpu_workers = 0
    for n, e in workers.items():
        r.check(e.get("TANREN_JOIN_TOKEN") == ctl.get("TANREN_JOIN_TOKEN"), f"compose {n}: the control plane's join token")
        host = urlsplit(e["TANREN_CONTROL_URL"]).hostname
        r.check(host in services, f"compose {n}: TANREN_CONTROL_URL names a compose service, got {host}")
        adv = urlsplit(e.get("TANREN_WORKER_ADVERTISE", ""))
        r.check(adv.hostname == n and adv.port == 50051, f"compose {n}: advertises http://{n}:50051, got {e.get('TANREN_WORKER_ADVERTISE')}")
        devices = services[n].get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
        if gpus:
            gpu_workers += 1
            r.check("gpu" in services[n].get("profiles", []), f"compose {n}: a GPU worker is under the gpu profile")
            r.check(e.get("TANREN_DEVICE", "").startswith("cuda"), f"compose {n}: a GPU worker has TANREN_DEVICE cuda")
        else:
            r.check(not services[n].get("profiles"), f"compose {n}: the CPU worker starts without a profile")
    r.check(gpu_workers >= 1, "compose: a worker reserves an NVIDIA GPU (deploy.resources.reservations.devices)")
    r.group("docker-compose.yml: docker compose config, variables, wiring", n0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose", required=True, help="docker-compose binary")
    ap.add_argument("renderings", nargs="+")
    a = ap.parse_args()
    r = Report()
    for path in a.renderings:
        objs = [o for o in yaml.safe_load_all(Path(path).read_text()) if o]
        check_rendering(r, Path(path).stem, objs)
    check_compose(r, a.compose)
    print(f"deploy: {r.passed} passed, {len(r.failures)} failed")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
