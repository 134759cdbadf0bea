"""The deployment manifests and their validators: every YAML under deploy/ passes yamllint;
the Kubernetes resources pass kubernetes-validate in strict mode; the KServe ServingRuntime and
InferenceService validate against KServe's published CRD schemas vendored in deploy/schemas,
with unknown properties refused; the kustomizations name only files that exist; and the pod's
termination grace covers the server's shutdown grace and drain."""
import json
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
    files = [DEPLOY / f for f in ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]]
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
])
def test_kserve_resources_validate_against_the_crd_schemas(manifest, schema):
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
    pod = load(DEPLOY / "deployment.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    seconds = lambda v: int(v.rstrip("s"))  # noqa: E731
    need = seconds(env["DFSERVE_SHUTDOWN_GRACE"]) + seconds(env["DFSERVE_SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > need


def test_the_database_url_comes_from_an_optional_secret():
    """The fleet's PostgreSQL URL (it may hold a password) is read from a Secret, never written
    in the manifest; without the Secret the pods still start, each with its own lists."""
    pod = load(DEPLOY / "deployment.yaml")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    ref = env["DFSERVE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert "value" not in env["DFSERVE_DATABASE_URL"]
    assert (ref["name"], ref["key"], ref["optional"]) == ("dfserve-database", "url", True)
