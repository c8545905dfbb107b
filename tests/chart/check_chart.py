#!/usr/bin/env python3
"""Lints and renders the Helm chart, and checks what it renders.

Usage: check_chart.py BINARY

For the default values and every charts/asyncapi-guard/ci/*-values.yaml: renders twice with
Helm 4 (helm-python-sdk) and requires identical output, validates every object against the
Kubernetes 1.36 schemas offline (kubernetes-validate --strict), and asserts the facts that
matter: the webhook leaves out the system namespaces and its own, exactly one webhook entry
(with the right mode in its path) matches any namespace, sideEffects None, probes and Service
on ports the container opens, the pod's security context, what each certificate mode needs.
With the monitoring values, the alerts pass `promtool check rules` and the unit tests of
tests/chart/alerts.test.yaml. Also: the CRD's schema accepts the example resources, the Dockerfile's user, entrypoint and
ports match the Deployment, the rendered configuration loads in BINARY, NOTES.txt's example
denial is what BINARY says, and manifests/ is current. Prints one line per failure; exits 1
on any.
"""
import base64
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import helm_python
import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "asyncapi-guard")
RELEASE, NAMESPACE = "guard", "guard-system"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}
KUBERNETES = "1.36.0"
# Kinds kubernetes-validate has no schema for; checked here instead.
CUSTOM_KINDS = {"Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"}
ALERT_TESTS = os.path.join(ROOT, "tests", "chart", "alerts.test.yaml")
DASHBOARD = os.path.join(CHART, "dashboards", "asyncapi-guard.json")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def merge(base, override):
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(values):
    chart = helm_python.Chart.load(CHART)
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects_of(rendered):
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(doc)
    return out


def crds():
    return [yaml.safe_load(open(p)) for p in sorted(glob.glob(os.path.join(CHART, "crds", "*.yaml")))]


def kubernetes_validate(label, objects):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all([o for o in objects if o["kind"] not in CUSTOM_KINDS], f)
        path = f.name
    result = subprocess.run(["kubernetes-validate", "-k", KUBERNETES, "--strict", "--quiet", path],
                            capture_output=True, text=True)
    os.unlink(path)
    check(result.returncode == 0, f"{label}: kubernetes-validate {KUBERNETES} --strict: {result.stdout.strip()} {result.stderr.strip()}")


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    return found[0] if len(found) == 1 else None


def selector_matches(selector, labels):
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


EXCEPTIONS_ENTRY = "exceptions.asyncapi-guard.io"


def check_exceptions_entry(label, values, entries):
    """AsyncAPIExceptions are judged in every namespace (one outside exceptions.namespaces is
    refused with the reason), and a server that is down lets them through: every decision
    checks an exception again."""
    if not values["exceptions"]["enabled"]:
        check(not entries, f"{label}: no exceptions entry when exceptions are off")
        return
    if not check(len(entries) == 1, f"{label}: one webhook entry for AsyncAPIExceptions"):
        return
    e = entries[0]
    where = f"{label}: webhook {e['name']}"
    check(e["failurePolicy"] == "Ignore", f"{where}: failurePolicy Ignore")
    check("namespaceSelector" not in e and "objectSelector" not in e, f"{where}: every namespace")
    check(e["rules"] == [{"apiGroups": ["asyncapi-guard.io"], "apiVersions": ["v1alpha1"], "resources": ["asyncapiexceptions"],
                          "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}], f"{where}: rules")
    check(e["clientConfig"]["service"]["path"] == "/validate/enforce", f"{where}: path")
    check(e["sideEffects"] == "None" and e["admissionReviewVersions"] == ["v1"], f"{where}: sideEffects and versions")


def check_lifecycle(label, values, objects):
    """A starting pod is not reported unhealthy; what the server creates in its namespace is
    owned by its Deployment; an uninstall runs the cleanup hook (and only then)."""
    deployment = one(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    startup = container.get("startupProbe", {})
    check(startup.get("httpGet", {}).get("path") == "/healthz" and startup.get("failureThreshold", 0) * startup.get("periodSeconds", 0) >= 30,
          f"{label}: a startup probe gives a starting pod at least 30 s before the other probes run")
    owns = values["certificates"]["mode"] == "selfManaged" or values["audit"]["enabled"]
    owner_flag = f"--owner-deployment={deployment['metadata']['name']}"
    check((owner_flag in container["args"]) == owns, f"{label}: the Deployment owns what the server creates ({owner_flag})")
    hooks = [o for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    jobs = [o for o in hooks if o["kind"] == "Job"]
    if owns and values["uninstall"]["cleanup"]:
        if check(len(jobs) == 1, f"{label}: one cleanup Job"):
            job = jobs[0]
            annotations = job["metadata"]["annotations"]
            check(annotations["helm.sh/hook"] == "pre-delete", f"{label}: the cleanup runs before an uninstall deletes anything")
            args = job["spec"]["template"]["spec"]["containers"][0]["args"]
            check(args[0] == "cleanup", f"{label}: the Job runs `cleanup`")
            check(("--lease=" + deployment["metadata"]["name"] + "-audit" in args) == values["audit"]["enabled"], f"{label}: the cleanup takes the audit's Lease")
            account = job["spec"]["template"]["spec"]["serviceAccountName"]
            check(any(o["kind"] == "ServiceAccount" and o["metadata"]["name"] == account for o in hooks), f"{label}: the cleanup has its own account, as a hook")
        for hook in hooks:
            check("hook-succeeded" in hook["metadata"]["annotations"].get("helm.sh/hook-delete-policy", ""), f"{label}: hook {hook['kind']} is deleted once it succeeded")
    else:
        check(not hooks, f"{label}: no hooks when the server creates nothing to clean")


def check_exceptions(label, values, rendered, objects):
    """Exceptions count where the values say (the release's namespace by default), each
    replica may read them, and a platform team has a role to bind to grant them."""
    config = yaml.safe_load(yaml.safe_load(rendered["asyncapi-guard/templates/configmap.yaml"])["data"]["config.yaml"])
    want = values["exceptions"]["namespaces"] or [NAMESPACE]
    check(config["exceptions"]["namespaces"] == want, f"{label}: exceptions count in {config['exceptions']['namespaces']}, want {want}")
    check(config["exceptions"]["maxDuration"] == values["exceptions"]["maxDuration"], f"{label}: exceptions.maxDuration")
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    reader = roles.get(f"{RELEASE}-asyncapi-guard-exceptions")
    if values["exceptions"]["enabled"]:
        check(reader and any("asyncapiexceptions" in r["resources"] and set(r["verbs"]) == {"get", "list", "watch"} for r in reader["rules"]),
              f"{label}: the pods may list and watch AsyncAPIExceptions")
        deployment = one(objects, "Deployment")
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        check("--exceptions" in args, f"{label}: the server watches exceptions")
    granter = roles.get(f"{RELEASE}-asyncapi-guard-exception-granter")
    if values["exceptions"]["granterRole"]:
        check(granter and any("create" in r["verbs"] and r["resources"] == ["asyncapiexceptions"] for r in granter["rules"]),
              f"{label}: a ClusterRole to grant exceptions")
    crd = [c for c in crds() if c["spec"]["names"]["kind"] == "AsyncAPIException"]
    if check(len(crd) == 1, "the AsyncAPIException CRD is in crds/"):
        schema = crd[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        good = {"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPIException", "metadata": {"name": "x"},
                "spec": {"match": {"namespace": "payments", "kind": "ConfigMap", "name": "orders-api", "key": "asyncapi.yaml",
                                   "paths": ["/servers/legacy"]},
                         "rules": ["server-security-missing"], "reason": "legacy", "expires": "2027-01-01T00:00:00Z"}}
        try:
            jsonschema.validate(good, schema)
        except jsonschema.ValidationError as e:
            check(False, f"the AsyncAPIException CRD refuses a good exception: {e.message}")
        for broken, what in [({"rules": []}, "no rules"), ({"rules": ["server-security"]}, "an unknown rule"), ({"reason": ""}, "an empty reason")]:
            bad = json.loads(json.dumps(good))
            bad["spec"].update(broken)
            try:
                jsonschema.validate(bad, schema)
                check(False, f"the AsyncAPIException CRD accepts {what}")
            except jsonschema.ValidationError:
                pass


def check_webhook(label, values, objects):
    webhook = one(objects, "ValidatingWebhookConfiguration")
    service = one(objects, "Service")
    if not check(webhook and service, f"{label}: one ValidatingWebhookConfiguration and one Service"):
        return
    mode = values["certificates"]["mode"]
    exception_entries = [e for e in webhook["webhooks"] if e["name"] == EXCEPTIONS_ENTRY]
    entries = [e for e in webhook["webhooks"] if e["name"] != EXCEPTIONS_ENTRY]
    check_exceptions_entry(label, values, exception_entries)
    excluded = SYSTEM_NAMESPACES | {NAMESPACE} | set(values["webhook"]["excludeNamespaces"])
    names = [e["name"] for e in entries]
    check(len(names) == len(set(names)), f"{label}: webhook names are unique")
    targets = sorted({e["name"].split(".", 1)[1] for e in entries})
    expected_targets = ["asyncapis.asyncapi-guard.io", "configmaps.asyncapi-guard.io"] + (["extra-kinds.asyncapi-guard.io"] if values["extraKinds"] else [])
    check(targets == sorted(expected_targets), f"{label}: webhook targets {targets}")
    for e in entries:
        where = f"{label}: webhook {e['name']}"
        check(e["sideEffects"] == "None", f"{where}: sideEffects None (Flux's server-side dry run needs it)")
        check(e["admissionReviewVersions"] == ["v1"], f"{where}: admissionReviewVersions [v1]")
        check(e["matchPolicy"] == "Equivalent", f"{where}: matchPolicy Equivalent")
        if e["name"].startswith("enforce"):
            check(e["failurePolicy"] == values["webhook"]["failurePolicy"], f"{where}: failurePolicy from the values")
        else:
            # warn and audit never deny: a server that is down or hung must not either.
            check(e["failurePolicy"] == "Ignore", f"{where}: failurePolicy Ignore (warn and audit never deny)")
        check(e["timeoutSeconds"] == values["webhook"]["timeoutSeconds"], f"{where}: timeoutSeconds")
        for rule in e["rules"]:
            check(sorted(rule["operations"]) == ["CREATE", "UPDATE"], f"{where}: CREATE and UPDATE only")
        svc = e["clientConfig"]["service"]
        check(svc["name"] == service["metadata"]["name"] and svc["namespace"] == NAMESPACE, f"{where}: calls the chart's Service")
        check(svc["port"] in [p["port"] for p in service["spec"]["ports"]], f"{where}: calls a port of the Service")
        segments = svc["path"].strip("/").split("/")
        check(all(DNS1123_SUBDOMAIN.match(s) for s in segments), f"{where}: path {svc['path']} has only DNS-1123 segments (the API server refuses others)")
        check("?" not in svc["path"], f"{where}: no query string in the path")
        names_rule = [x for x in e["namespaceSelector"]["matchExpressions"] if x["key"] == "kubernetes.io/metadata.name"]
        check(len(names_rule) == 1 and names_rule[0]["operator"] == "NotIn" and excluded <= set(names_rule[0]["values"]),
              f"{where}: leaves out {sorted(excluded)}")
        if mode == "existingSecret":
            check(e["clientConfig"].get("caBundle") == values["certificates"]["existingSecret"]["caBundle"], f"{where}: caBundle from the values")
        else:
            check("caBundle" not in e["clientConfig"], f"{where}: caBundle left to {'cert-manager' if mode == 'certManager' else 'the server'}")
        if e["name"].split(".", 1)[1].startswith("configmaps"):
            selector = e.get("objectSelector")
            check(selector is not None, f"{where}: has an objectSelector")
            for object_labels, judged in [({}, bool(values["inspectAllConfigMaps"])), ({"asyncapi-guard.io/document": "true"}, True),
                                          ({"asyncapi-guard.io/document": ""}, True),
                                          ({"asyncapi-guard.io/document": "false"}, False)]:
                check(selector_matches(selector or {}, object_labels) == judged,
                      f"{where}: a ConfigMap labelled {object_labels} is {'judged' if judged else 'not judged'}")
    annotation = (webhook["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
    if mode == "certManager":
        certificate = one(objects, "Certificate")
        check(certificate and annotation == f"{NAMESPACE}/{certificate['metadata']['name']}", f"{label}: cert-manager injects the Certificate's CA")
    else:
        check(annotation is None, f"{label}: no cert-manager annotation in {mode} mode")

    # Exactly one entry per target matches any namespace, with the mode its labels choose.
    for target in expected_targets:
        for mode_label in [None, "enforce", "warn", "audit", "off"]:
            for production in [None, "all"]:
                for ns in ["team-a"] + sorted(excluded):
                    labels = {"kubernetes.io/metadata.name": ns}
                    if mode_label:
                        labels["asyncapi-guard.io/mode"] = mode_label
                    if production:
                        labels["asyncapi-guard.io/production"] = production
                    matched = [e for e in entries if e["name"].endswith("." + target) and selector_matches(e["namespaceSelector"], labels)]
                    where = f"{label}: {target} in namespace {labels}"
                    if ns in excluded or mode_label == "off":
                        check(not matched, f"{where}: no webhook entry may match, got {[m['name'] for m in matched]}")
                        continue
                    if not check(len(matched) == 1, f"{where}: exactly one entry must match, got {[m['name'] for m in matched]}"):
                        continue
                    want = "/validate/" + (mode_label or values["webhook"]["defaultMode"]) + ("/production-all" if production else "")
                    check(matched[0]["clientConfig"]["service"]["path"] == want, f"{where}: path {matched[0]['clientConfig']['service']['path']}, want {want}")


def check_workload(label, values, rendered, objects):
    deployment = one(objects, "Deployment")
    service = one(objects, "Service")
    if not check(deployment and service, f"{label}: one Deployment"):
        return
    mode = values["certificates"]["mode"]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(deployment["spec"]["replicas"] == values["replicaCount"], f"{label}: replicas")
    for probe in ["livenessProbe", "readinessProbe"]:
        port = container[probe]["httpGet"]["port"]
        check(port in ports or port in ports.values(), f"{label}: {probe} on port {port}, which the container opens")
    check(container["livenessProbe"]["httpGet"]["path"] == "/healthz" and container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: probes on /healthz and /readyz")
    for port in service["spec"]["ports"]:
        check(port["targetPort"] in ports or port["targetPort"] in ports.values(), f"{label}: Service port {port['name']} targets {port['targetPort']}, which the container opens")
    listen = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in container["args"][1:] if "=" in a}
    check(listen.get("--listen", "").endswith(f":{ports.get('https')}"), f"{label}: the server listens on the https container port")
    check(listen.get("--metrics-listen", "").endswith(f":{ports.get('metrics')}"), f"{label}: the metrics listener is the metrics container port")
    pod_security = spec.get("securityContext", {})
    security = container.get("securityContext", {})
    check(pod_security.get("runAsNonRoot") is True and security.get("runAsNonRoot") is True, f"{label}: runAsNonRoot")
    check(security.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem")
    check(security.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation false")
    check(security.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: drop ALL capabilities")
    check(pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault" and security.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: seccomp RuntimeDefault")
    audit = values["audit"]["enabled"]
    needs_api = mode == "selfManaged" or audit or values["exceptions"]["enabled"]
    check(spec.get("automountServiceAccountToken") is needs_api, f"{label}: service-account token mounted only when the pods call the API server")
    check("command" not in container and container["args"][0] == "serve", f"{label}: the image's entrypoint runs `serve`")
    annotation = deployment["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
    configmap_text = rendered["asyncapi-guard/templates/configmap.yaml"]
    check(annotation == hashlib.sha256(configmap_text.encode()).hexdigest(), f"{label}: checksum/config rolls the pods on a configuration change")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    check(mounts.get("tmp", {}).get("mountPath") == "/tmp", f"{label}: a writable /tmp under a read-only root")
    volumes = {v["name"]: v for v in spec["volumes"]}
    if mode == "selfManaged":
        check("--tls-secret" in listen and "--webhook-configuration" in listen, f"{label}: self-managed certificates")
        role = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"].endswith("-certificates")]
        cluster_role = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-certificates")]
        check(len(role) == 1 and any(r.get("resourceNames") == [listen.get("--tls-secret")] for r in role[0]["rules"]), f"{label}: the Role names the certificate Secret")
        check(len(cluster_role) == 1 and cluster_role[0]["rules"][0]["resourceNames"] == [listen.get("--webhook-configuration")], f"{label}: the ClusterRole names the webhook configuration")
        webhook = one(objects, "ValidatingWebhookConfiguration")
        check(webhook and listen.get("--webhook-configuration") == webhook["metadata"]["name"], f"{label}: the server patches the chart's webhook configuration")
    else:
        secret = volumes.get("tls", {}).get("secret", {}).get("secretName")
        want = values["certificates"]["existingSecret"]["name"] if mode == "existingSecret" else (one(objects, "Certificate") or {}).get("spec", {}).get("secretName")
        check(secret and secret == want, f"{label}: mounts the certificate Secret ({secret} vs {want})")
        if not audit:
            bound = {b["roleRef"]["name"] for b in objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")}
            want = {f"{RELEASE}-asyncapi-guard-exceptions"} if values["exceptions"]["enabled"] else set()
            check(bound == want, f"{label}: the pods are granted only what they need: {sorted(bound)}, want {sorted(want)}")
    env = {e["name"]: e for e in container.get("env", [])}
    audit_roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"].endswith("-audit")]
    if audit:
        check("--audit" in container["args"], f"{label}: the server audits")
        check(env.get("ASYNCAPI_GUARD_POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", f"{label}: the pod name is the Lease identity")
        lease = listen.get("--audit-lease")
        granted = {(tuple(r.get("apiGroups", [])), (resource,), tuple(r.get("resourceNames", [])), v) for o in audit_roles for r in o["rules"] for resource in r["resources"] for v in r["verbs"]}
        wanted = {
            (("",), ("configmaps",), (), "list"), (("",), ("configmaps",), (), "watch"),
            (("asyncapi-guard.io",), ("asyncapis",), (), "list"), (("asyncapi-guard.io",), ("asyncapis",), (), "watch"),
            (("asyncapi-guard.io",), ("asyncapis/status",), (), "patch"),
            (("events.k8s.io",), ("events",), (), "create"), (("events.k8s.io",), ("events",), (), "list"),
            (("",), ("namespaces",), (), "list"), (("",), ("namespaces",), (), "watch"),
            (("coordination.k8s.io",), ("leases",), (lease,), "get"), (("coordination.k8s.io",), ("leases",), (lease,), "patch"),
            (("coordination.k8s.io",), ("leases",), (), "create"),
        }
        for extra in values["extraKinds"]:
            wanted |= {((extra["group"],), (extra["resource"],), (), verb) for verb in ("list", "watch")}
        reports = {(("openreports.io",), (resource,), (), verb) for resource in ("reports", "clusterreports") for verb in ("get", "list", "watch", "create", "update", "patch", "delete")}
        if values["audit"]["reports"]:
            wanted |= reports
            check("--audit-reports=true" in container["args"], f"{label}: the audit writes OpenReports")
        else:
            check(not (reports & granted), f"{label}: no OpenReports RBAC without audit.reports")
        check(wanted <= granted, f"{label}: the audit's RBAC grants {sorted(wanted - granted)}")
        writes = {g for g in granted if g[3] in ("create", "update", "patch", "delete") }
        allowed_writes = {g for g in wanted if g[3] in ("create", "update", "patch", "delete")} | {(("events.k8s.io",), ("events",), (), "patch"),
                                                                                                    (("asyncapi-guard.io",), ("asyncapiexceptions/status",), (), "patch")}
        check(writes <= allowed_writes, f"{label}: the audit's RBAC writes only what it must: {sorted(writes - allowed_writes)}")
    else:
        check("--audit" not in container["args"] and not audit_roles, f"{label}: no audit, no audit RBAC")
    pdb = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    check(bool(pdb) == (values["podDisruptionBudget"]["enabled"] and values["replicaCount"] > 1), f"{label}: PodDisruptionBudget with more than one replica")
    if values["topologySpread"]["enabled"]:
        spread = spec.get("topologySpreadConstraints", [])
        check(spread and spread[0]["whenUnsatisfiable"] == "ScheduleAnyway", f"{label}: soft topology spread")
    grace = spec["terminationGracePeriodSeconds"]
    seconds = lambda d: int(d[:-1]) if d.endswith("s") and not d.endswith("ms") else 0
    check(grace > seconds(values["server"]["shutdownDelay"]) + seconds(values["server"]["shutdownGrace"]), f"{label}: the grace period covers draining")


def check_args_parse(label, binary, objects):
    """The Deployment's args are flags the binary knows: it gets past parsing and stops at
    the first file or credential it cannot find here (not at a usage error)."""
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": "/nonexistent"}
    result = subprocess.run([binary] + container["args"], capture_output=True, text=True, env=env, timeout=30)
    check(result.returncode != 0 and "Usage:" not in result.stderr and result.stderr.startswith("asyncapi-guard: "),
          f"{label}: the Deployment's args parse: {result.stderr.strip()[:300]}")


def check_config_loads(label, binary, rendered):
    config = yaml.safe_load(rendered["asyncapi-guard/templates/configmap.yaml"])["data"]["config.yaml"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config)
    result = subprocess.run([binary, "check", "--config", f.name, os.path.join(ROOT, "examples", "orders-secure.yaml")], capture_output=True, text=True)
    os.unlink(f.name)
    check(result.returncode == 0, f"{label}: the rendered configuration loads: {result.stderr.strip()}")


def check_audit_follows_the_webhook(label, values, rendered, objects):
    """The audit judges each namespace as the webhook entries do: same default mode, same
    excluded namespaces, so it reports nothing where admission judges nothing."""
    config = yaml.safe_load(yaml.safe_load(rendered["asyncapi-guard/templates/configmap.yaml"])["data"]["config.yaml"])
    scope = config["kubernetes"]["namespaces"]
    webhook = one(objects, "ValidatingWebhookConfiguration")
    check(scope["defaultMode"] == values["webhook"]["defaultMode"], f"{label}: the audit's default mode is the webhook's")
    for e in webhook["webhooks"]:
        if e["name"] == EXCEPTIONS_ENTRY:
            continue
        names_rule = [x for x in e["namespaceSelector"]["matchExpressions"] if x["key"] == "kubernetes.io/metadata.name"][0]
        check(sorted(names_rule["values"]) == sorted(scope["exclude"]), f"{label}: {e['name']} and the audit exclude the same namespaces")


def check_crd_accepts_examples():
    crd = [c for c in crds() if c["spec"]["names"]["kind"] == "AsyncAPI"][0]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    examples = [d for d in yaml.safe_load_all(open(os.path.join(ROOT, "examples", "manifests.yaml"))) if d and d.get("kind") == "AsyncAPI"]
    check(examples, "examples/manifests.yaml has an AsyncAPI resource")
    status = {"observedGeneration": 3, "conditions": [{"type": "SecurityCompliant", "status": "False", "reason": "server-security-missing",
                                                      "message": "AsyncAPI payments/x: spec/servers/production ...", "lastTransitionTime": "2026-11-22T10:00:00Z", "observedGeneration": 3}]}
    for example in examples + [dict(examples[0], status=status)] if examples else []:
        try:
            jsonschema.validate(example, schema)
        except jsonschema.ValidationError as e:
            failures.append(f"CRD schema refuses {example['metadata']['name']}: {e.message}")
    bad = dict(examples[0], status={"conditions": [{"type": "SecurityCompliant", "status": "Maybe"}]}) if examples else None
    if bad:
        check(not jsonschema.Draft7Validator(schema).is_valid(bad), "CRD schema refuses a malformed status")
    check(version["subresources"] == {"status": {}}, "CRD: status subresource")
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    check(columns.get("AsyncAPI") == ".spec.asyncapi" and "SecurityCompliant" in columns.get("Compliant", "") and columns.get("Age") == ".metadata.creationTimestamp", "CRD: printer columns")
    check(crd["spec"]["scope"] == "Namespaced" and crd["spec"]["names"]["plural"] == "asyncapis", "CRD: namespaced, plural asyncapis")
    check(schema["properties"]["spec"].get("x-kubernetes-preserve-unknown-fields") is True, "CRD: spec kept whole")


def check_monitoring(label, values, objects):
    """Alerts and dashboard only when asked for; the alerts pass promtool's checks and unit
    tests (each firing and not firing), each says what to do; the dashboard is the chart's
    file, for Grafana's sidecar."""
    metrics = values["metrics"]
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    dashboards = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    check(len(rules) == (1 if metrics["prometheusRule"]["enabled"] else 0), f"{label}: a PrometheusRule only when metrics.prometheusRule.enabled")
    check(len(dashboards) == (1 if metrics["dashboard"]["enabled"] else 0), f"{label}: a dashboard only when metrics.dashboard.enabled")
    for dashboard in dashboards:
        wanted = metrics["dashboard"]
        check(dashboard["metadata"]["labels"].get(wanted["label"]) == wanted["labelValue"], f"{label}: the dashboard has the sidecar's label")
        check(json.loads(dashboard["data"]["asyncapi-guard.json"]) == json.load(open(DASHBOARD)),
              f"{label}: the dashboard ConfigMap holds dashboards/asyncapi-guard.json")
    for rule in rules:
        groups = rule["spec"]["groups"]
        for alert in (r for g in groups for r in g["rules"]):
            annotations = alert.get("annotations", {})
            check(annotations.get("summary") and annotations.get("description"),
                  f"{label}: alert {alert.get('alert')} has a summary and a description that says what to do")
            check(alert.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"{label}: alert {alert.get('alert')} has a severity")
        if not check(shutil.which("promtool") is not None, "promtool is not installed (apt-get install prometheus)"):
            continue
        with tempfile.TemporaryDirectory() as d:
            full, bare, test = (os.path.join(d, n) for n in ("rules.yaml", "bare.yaml", "test.yaml"))
            yaml.safe_dump({"groups": groups}, open(full, "w"))
            yaml.safe_dump({"groups": [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]} for g in groups]}, open(bare, "w"))
            open(test, "w").write(open(ALERT_TESTS).read().replace("rule_files: [RULES]", f"rule_files: [{bare}]"))
            for args in (["check", "rules", full], ["test", "rules", test]):
                result = subprocess.run(["promtool", *args], capture_output=True, text=True)
                check(result.returncode == 0, f"{label}: promtool {' '.join(args[:2])}: {result.stdout.strip()} {result.stderr.strip()}")


def check_dockerfile(objects):
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    user = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", dockerfile, re.M)
    check(user and int(user[-1][0]) == spec["securityContext"]["runAsUser"] and int(user[-1][1] or user[-1][0]) == spec["securityContext"]["runAsGroup"],
          f"Dockerfile USER {user} matches runAsUser/runAsGroup")
    entrypoint = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M)
    check(entrypoint and json.loads(entrypoint[-1]) == ["/usr/local/bin/asyncapi-guard"], f"Dockerfile ENTRYPOINT {entrypoint} is the binary the chart's args are for")
    check(re.search(r"--from=build /src/target/image/asyncapi-guard /usr/local/bin/asyncapi-guard", dockerfile), "Dockerfile copies the built binary to the entrypoint")
    exposed = sorted(int(p) for line in re.findall(r"^EXPOSE\s+(.*)$", dockerfile, re.M) for p in line.split())
    check(exposed == sorted(p["containerPort"] for p in container["ports"]), f"Dockerfile EXPOSE {exposed} matches the container ports")
    check(re.search(r"^FROM gcr.io/distroless/\S+:nonroot\s*$", dockerfile, re.M), "the runtime image is distroless, non-root, without a shell")
    build = re.findall(r"^RUN (.*)$", dockerfile, re.M)
    script = open(os.path.join(ROOT, "scripts/release-build")).read()
    cargo = re.findall(r"^\s*cargo (?:build|rustc) (.*)$", script, re.M)
    check(build == ["scripts/release-build"] and re.search(r"^COPY scripts/release-build ", dockerfile, re.M), f"Dockerfile builds with scripts/release-build: {build}")
    check(cargo and all("--release --locked --bin asyncapi-guard" in c for c in cargo) and "target/image/asyncapi-guard" in script,
          f"scripts/release-build builds with --release --locked into target/image: {cargo}")


def check_notes(binary, rendered):
    notes = rendered["asyncapi-guard/templates/NOTES.txt"]
    manifest = notes.split("cat <<'YAML' | kubectl apply -f -\n", 1)[1].split("  YAML\n", 1)[0]
    configmap = yaml.safe_load("\n".join(line[2:] for line in manifest.splitlines()))
    document = configmap["data"]["asyncapi.yaml"]
    result = subprocess.run([binary, "check", "-"], input=document, capture_output=True, text=True)
    first = result.stdout.splitlines()[0] if result.stdout else ""
    # `- -:4:3 /servers/production [rule] message; hint` → `asyncapi.yaml:4:3 message [rule]`
    m = re.match(r"- -:(\d+:\d+) \S+ \[([a-z-]+)\] ([^;]+);", first)
    claimed = re.search(r"ConfigMap asyncapi-demo/orders-api: (.*)$", notes, re.M)
    check(m and claimed and claimed.group(1) == f"asyncapi.yaml:{m.group(1)} {m.group(3)} [{m.group(2)}]",
          f"NOTES.txt's example denial is what the binary says: {claimed and claimed.group(1)!r} vs {first!r}")


def leaves(values, prefix=""):
    """Every value path of values.yaml: `certificates.existingSecret.caBundle`, ..."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in ("resources", "policy.limits"):
            yield from leaves(value, path + ".")
        else:
            yield path


def check_packaged():
    """`helm package` (what the release workflow runs) makes a chart that lints and renders
    like the source, with the version and appVersion it is given."""
    with tempfile.TemporaryDirectory() as out:
        archive = helm_python.package(CHART, destination=out, version="9.8.7", app_version="9.8.7")
        check(os.path.basename(archive) == "asyncapi-guard-9.8.7.tgz", f"helm package wrote {archive}")
        lint = helm_python.lint(archive, strict=True, kube_version=f"v{KUBERNETES}")
        problems = [m for m in lint["messages"] if m["severity"] >= 2] + [{"error": e} for e in lint["errors"]]
        check(not problems, f"the packaged chart lints: {problems}")
        packaged = helm_python.Chart.load_archive(open(archive, "rb").read())
        meta = packaged.metadata() if callable(packaged.metadata) else packaged.metadata
        check(meta.get("version") == "9.8.7" and meta.get("appVersion") == "9.8.7", f"the packaged chart's versions: {meta}")
        check(any(f.endswith("icon.svg") for f in os.listdir(CHART)) and str(meta.get("icon", "")).endswith("icon.svg"), "the chart has an icon")
        rendered = packaged.render({}, name=RELEASE, namespace=NAMESPACE, is_install=True)
        source = render({})
        # Only the version labels, the image tag (from appVersion) and the checksum of the
        # configuration (whose labels carry the version) may differ.
        normalise = lambda text: re.sub(r"checksum/config: [0-9a-f]+", "checksum/config: C", re.sub(r"(0\.1\.0|9\.8\.7)", "V", text))
        check({k: normalise(v) for k, v in rendered.items()} == {k: normalise(v) for k, v in source.items()},
              "the packaged chart renders like the source")


def check_values_documented(defaults):
    schema = json.load(open(os.path.join(CHART, "values.schema.json")))
    readme = open(os.path.join(CHART, "README.md")).read()
    for path in leaves(defaults):
        node = schema
        for key in path.split("."):
            node = (node.get("properties") or {}).get(key) if node else None
        check(node is not None, f"values.schema.json covers {path}")
        table_key = path if not path.startswith("resources") else "resources.requests"
        check(f"| `{table_key}` |" in readme, f"the chart README's table lists {table_key}")


def check_manifests_current():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "render-manifests.py"), "--check"], capture_output=True, text=True)
    check(result.returncode == 0, f"manifests/ is not current; run scripts/render-manifests.py: {result.stdout.strip()[:2000]}")
    for path in glob.glob(os.path.join(ROOT, "manifests", "*.yaml")):
        for doc in yaml.safe_load_all(open(path)):
            if doc:
                check("helm.sh/hook" not in (doc["metadata"].get("annotations") or {}),
                      f"{path}: {doc['kind']} {doc['metadata']['name']} is a Helm hook, which kubectl apply would run at once")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    lint = helm_python.lint(CHART, strict=True, kube_version=f"v{KUBERNETES}")
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + [{"error": e} for e in lint["errors"]]
    check(not problems, f"helm lint --strict: {problems}")
    defaults = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
    cases = [("default values", {})] + [(os.path.relpath(p, CHART), yaml.safe_load(open(p)) or {}) for p in sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))]
    check(len(cases) >= 6, "ci/ has values for each certificate mode, HA and all-ConfigMaps")
    default_objects = None
    for label, values in cases:
        first, second = render(values), render(values)
        check(first == second, f"{label}: two renders differ (Argo CD would see a perpetual diff)")
        objects = objects_of(first)
        merged = merge(defaults, values)
        kubernetes_validate(label, objects + crds())
        check_webhook(label, merged, objects)
        check_workload(label, merged, first, objects)
        check_config_loads(label, binary, first)
        check_audit_follows_the_webhook(label, merged, first, objects)
        check_exceptions(label, merged, first, objects)
        check_lifecycle(label, merged, objects)
        check_args_parse(label, binary, objects)
        check_monitoring(label, merged, objects)
        if not values:
            default_objects = objects
            check_notes(binary, first)
    check_crd_accepts_examples()
    check_packaged()
    check_values_documented(defaults)
    check_dockerfile(default_objects)
    check_manifests_current()
    for failure in failures:
        print(failure)
    print(f"chart: {len(cases)} value sets rendered and checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
