"""The deployment manifests and their validators: every YAML under deploy/ passes yamllint;
the Kubernetes resources pass kubernetes-validate in strict mode; the KServe ServingRuntime and
InferenceService, and the CloudNativePG Cluster, validate against their projects' published CRD
schemas vendored in deploy/schemas, with unknown properties refused; every kustomization builds
with kustomize (`kubectl kustomize`) and what it builds validates too; the fleet overlay's
database URL names the Cluster it deploys; and the pod's termination grace covers the server's
shutdown grace and drain."""
import json
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
VENV_BIN = ROOT / ".venv" / "bin"
YAMLLINT = "{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}"


def load(path):
    return yaml.safe_load(path.read_text())


def test_yamllint():
    r = subprocess.run([str(VENV_BIN / "yamllint"), "-s", "-d", YAMLLINT, str(DEPLOY)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kubernetes_resources_validate_strictly():
    files = [DEPLOY / "base" / f for f in ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]]
    r = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", "1.31.0", *map(str, files)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed") == len(files), r.stdout


def strict(schema):
    """The schema with additionalProperties false wherever properties are listed (as the API
    server prunes unknown fields: a misspelt key would silently do nothing)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("manifest,schema", [
    ("kserve/servingruntime.yaml", "servingruntime-v1alpha1.json"),
    ("kserve/inferenceservice.yaml", "inferenceservice-v1beta1.json"),
    ("overlays/fleet/postgres.yaml", "cluster-postgresql-cnpg-v1.json"),
])
def test_custom_resources_validate_against_the_crd_schemas(manifest, schema):
    doc = load(DEPLOY / manifest)
    s = strict(json.loads((DEPLOY / "schemas" / schema).read_text()))
    # metadata is the API server's ObjectMeta, which the CRD schema leaves open.
    jsonschema.validate(doc, s)
    bad = {**doc, "spec": {**doc["spec"], "nonsense": 1}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, s)


def test_the_runtime_is_the_one_the_inference_service_asks_for():
    rt, isvc = load(DEPLOY / "kserve/servingruntime.yaml"), load(DEPLOY / "kserve/inferenceservice.yaml")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == rt["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in rt["spec"]["supportedModelFormats"]}
    args = rt["spec"]["containers"][0]["args"]
    assert "--model-dir=/mnt/models" in args and "--http-port=8080" in args


def test_kustomizations_name_existing_files():
    for k in DEPLOY.rglob("kustomization.yaml"):
        doc = load(k)
        for ref in doc.get("resources", []) + [p["path"] for p in doc.get("patches", [])]:
            assert (k.parent / ref).exists(), (k, ref)


def test_termination_grace_covers_shutdown():
    pod = load(DEPLOY / "base" / "deployment.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    seconds = lambda v: int(v.rstrip("s"))  # noqa: E731
    need = seconds(env["DFSERVE_SHUTDOWN_GRACE"]) + seconds(env["DFSERVE_SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > need


def test_the_database_url_comes_from_an_optional_secret():
    """The fleet's PostgreSQL URL (it may hold a password) is read from a Secret, never written
    in the manifest; without the Secret the pods still start, each with its own lists."""
    pod = load(DEPLOY / "base" / "deployment.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    ref = env["DFSERVE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert "value" not in env["DFSERVE_DATABASE_URL"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("dfserve-database", "url", True)


def built(kustomization):
    """The resources a kustomization builds, by kind and name."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (Debian's kubectl package) is not installed: kustomizations not built")
    r = subprocess.run(["kubectl", "kustomize", str(kustomization)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(r.stdout)}


@pytest.mark.parametrize("kustomization", [".", "overlays/tls", "overlays/fleet"])
def test_every_kustomization_builds_and_what_it_builds_validates(kustomization, tmp_path):
    docs = built(DEPLOY / kustomization)
    core = [d for (kind, _), d in docs.items() if kind in {"Deployment", "Service", "HorizontalPodAutoscaler",
                                                          "PodDisruptionBudget"}]
    assert len(core) == 4, list(docs)
    out = tmp_path / "built.yaml"
    out.write_text(yaml.safe_dump_all(core))
    r = subprocess.run([str(VENV_BIN / "kubernetes-validate"), "--strict", "-k", "1.31.0", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_fleet_overlay_connects_to_its_cluster_with_verify_full():
    """The URL the fleet's pods get names the CloudNativePG Cluster's read-write Service, its
    database and owner, the password from the operator's `<cluster>-app` Secret, and checks the
    server against the operator's CA (`<cluster>-ca`) mounted where sslrootcert points."""
    docs = built(DEPLOY / "overlays/fleet")
    cluster = docs[("Cluster", "dfserve-db")]
    name, initdb = cluster["metadata"]["name"], cluster["spec"]["bootstrap"]["initdb"]
    pod = docs[("Deployment", "dfserve")]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    names = [e["name"] for e in c["env"]]
    # Kubernetes expands $(VAR) only from variables listed before.
    assert names.index("DFSERVE_DB_PASSWORD") < names.index("DFSERVE_DATABASE_URL")
    assert env["DFSERVE_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{name}-app", "key": "password"}
    url = env["DFSERVE_DATABASE_URL"]
    assert "valueFrom" not in url
    kv = dict(part.split("=", 1) for part in url["value"].split())
    assert kv["host"] == f"{name}-rw" and kv["dbname"] == initdb["database"] and kv["user"] == initdb["owner"]
    assert kv["password"] == "'$(DFSERVE_DB_PASSWORD)'" and kv["sslmode"] == "verify-full"
    vol = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == f"{name}-ca")
    mount = next(m for m in c["volumeMounts"] if m["name"] == vol["name"])
    assert kv["sslrootcert"] == f"{mount['mountPath']}/ca.crt"
    assert {"key": "ca.crt", "path": "ca.crt"} in vol["secret"]["items"]
