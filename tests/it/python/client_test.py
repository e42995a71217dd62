"""The Python `kubernetes` client against `rk3s server`.

Run by tests/it/python.rs as `client_test.py KUBECONFIG`. Exits non-zero, with the step that
failed on stderr, when the server does not behave as the client expects: typed (de)serialisation
of every answer, label selectors, the three patch types, the scale subresource, a watch that sees
ADDED/MODIFIED/DELETED, and the errors clients branch on.
"""

import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "python-client"
TIMEOUT = 20  # seconds for one request; no request should come near it


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def expect_error(status, reason, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ApiException as e:
        check(e.status == status, f"{call.__name__}: status {e.status}, want {status}: {e.body}")
        check(f'"reason":"{reason}"' in e.body.replace(" ", ""), f"{call.__name__}: {e.body}")
        return e
    raise SystemExit(f"FAILED: {call.__name__} should fail with {status} {reason}")


def wait_for_api(core):
    # The kubeconfig is written as the API starts listening; give it a moment to answer.
    deadline = time.monotonic() + 30
    while True:
        try:
            return core.list_namespace(_request_timeout=TIMEOUT)
        except Exception:  # noqa: BLE001 - any failure is retried until the deadline
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def deployment(name, replicas):
    labels = {"app": name, "suite": "python"}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="app",
                            image="busybox:1.36",
                            command=["sleep", "3600"],
                            ports=[client.V1ContainerPort(container_port=8080)],
                        )
                    ]
                ),
            ),
        ),
    )


def namespaces_and_discovery(core):
    names = {n.metadata.name for n in wait_for_api(core).items}
    for want in ("default", "kube-system", "kube-public", "kube-node-lease"):
        check(want in names, f"namespace {want} listed: {names}")
    version = client.VersionApi().get_code(_request_timeout=TIMEOUT)
    check(version.major == "1" and version.git_version.startswith("v1."), f"version {version}")
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)), _request_timeout=TIMEOUT
    )
    ns = core.read_namespace(NS, _request_timeout=TIMEOUT)
    check(ns.status.phase == "Active", f"new namespace is Active: {ns.status}")


def configmaps(core):
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"suite": "python", "tier": "a"}),
        data={"color": "blue", "size": "large"},
    )
    created = core.create_namespaced_config_map(NS, cm, _request_timeout=TIMEOUT)
    check(created.metadata.uid and created.metadata.resource_version, f"created {created.metadata}")
    other = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="unrelated", labels={"suite": "other"}), data={"a": "b"}
    )
    core.create_namespaced_config_map(NS, other, _request_timeout=TIMEOUT)
    expect_error(409, "AlreadyExists", core.create_namespaced_config_map, NS, cm)
    expect_error(404, "NotFound", core.read_namespaced_config_map, "missing", NS)

    listed = core.list_namespaced_config_map(NS, label_selector="suite=python", _request_timeout=TIMEOUT)
    check([c.metadata.name for c in listed.items] == ["settings"], f"label selector: {listed.items}")
    listed = core.list_namespaced_config_map(
        NS, label_selector="suite in (python,other),tier!=b", _request_timeout=TIMEOUT
    )
    check(
        sorted(c.metadata.name for c in listed.items) == ["settings", "unrelated"],
        f"set selector: {listed.items}",
    )
    listed = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={NS},metadata.name=settings", _request_timeout=TIMEOUT
    )
    check(len(listed.items) == 1, f"field selector across namespaces: {listed.items}")

    # A dict body is a strategic merge patch: one key changed, one removed with null.
    patched = core.patch_namespaced_config_map(
        "settings", NS, {"data": {"color": "red", "size": None}}, _request_timeout=TIMEOUT
    )
    check(patched.data == {"color": "red"}, f"strategic merge patch: {patched.data}")
    # A list body is a JSON patch.
    patched = core.patch_namespaced_config_map(
        "settings", NS, [{"op": "add", "path": "/data/shape", "value": "round"}], _request_timeout=TIMEOUT
    )
    check(patched.data == {"color": "red", "shape": "round"}, f"json patch: {patched.data}")
    # A stale resourceVersion on replace is a conflict.
    stale = created
    stale.data = {"color": "green"}
    expect_error(409, "Conflict", core.replace_namespaced_config_map, "settings", NS, stale)
    fresh = core.read_namespaced_config_map("settings", NS, _request_timeout=TIMEOUT)
    fresh.data["color"] = "green"
    replaced = core.replace_namespaced_config_map("settings", NS, fresh, _request_timeout=TIMEOUT)
    check(replaced.data["color"] == "green", f"replace: {replaced.data}")


def deployments(_core):
    apps = client.AppsV1Api()
    created = apps.create_namespaced_deployment(NS, deployment("web", 2), _request_timeout=TIMEOUT)
    check(created.spec.strategy.type == "RollingUpdate", f"defaults applied: {created.spec.strategy}")
    check(created.metadata.generation == 1, f"generation: {created.metadata.generation}")
    c = created.spec.template.spec.containers[0]
    check(c.image_pull_policy == "IfNotPresent", f"container defaults: {c}")

    listed = apps.list_namespaced_deployment(NS, label_selector="suite=python", _request_timeout=TIMEOUT)
    check([d.metadata.name for d in listed.items] == ["web"], f"deployments: {listed.items}")
    listed = apps.list_deployment_for_all_namespaces(label_selector="app=web", _request_timeout=TIMEOUT)
    check(len(listed.items) == 1, f"deployments in all namespaces: {listed.items}")

    # Strategic merge: the container list merges by name, so the command is kept.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}}}}
    patched = apps.patch_namespaced_deployment("web", NS, patch, _request_timeout=TIMEOUT)
    c = patched.spec.template.spec.containers[0]
    check(c.image == "busybox:1.37" and c.command == ["sleep", "3600"], f"strategic merge: {c}")
    check(patched.metadata.generation == 2, f"generation after a spec change: {patched.metadata}")

    scale = apps.patch_namespaced_deployment_scale(
        "web", NS, {"spec": {"replicas": 5}}, _request_timeout=TIMEOUT
    )
    check(scale.spec.replicas == 5, f"scale: {scale}")
    check(apps.read_namespaced_deployment("web", NS).spec.replicas == 5, "scale reached the spec")

    bad = deployment("bad", -1)
    e = expect_error(422, "Invalid", apps.create_namespaced_deployment, NS, bad)
    check("spec.replicas" in e.body, f"the invalid field is named: {e.body}")


def watch_configmaps(core):
    # Start from the list's resourceVersion, so every change made after it is seen, however the
    # writer thread and the watch request race.
    rv = core.list_namespaced_config_map(NS, _request_timeout=TIMEOUT).metadata.resource_version
    errors = []

    def writer():
        try:
            core.create_namespaced_config_map(
                NS,
                client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name="watched", labels={"watch": "me"}),
                    data={"n": "1"},
                ),
                _request_timeout=TIMEOUT,
            )
            core.patch_namespaced_config_map(
                "watched", NS, {"data": {"n": "2"}}, _request_timeout=TIMEOUT
            )
            core.delete_namespaced_config_map("watched", NS, _request_timeout=TIMEOUT)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    seen = []
    w = watch.Watch()
    thread = threading.Thread(target=writer)
    thread.start()
    for event in w.stream(
        core.list_namespaced_config_map,
        NS,
        label_selector="watch=me",
        resource_version=rv,
        timeout_seconds=15,
        _request_timeout=TIMEOUT,
    ):
        obj = event["object"]
        check(isinstance(obj, client.V1ConfigMap), f"typed watch object: {type(obj)}")
        seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("n")))
        if event["type"] == "DELETED":
            w.stop()
    thread.join()
    check(not errors, f"writer thread: {errors}")
    want = [("ADDED", "watched", "1"), ("MODIFIED", "watched", "2"), ("DELETED", "watched", "2")]
    check(seen == want, f"watch events {seen}, want {want}")


def cleanup(core):
    apps = client.AppsV1Api()
    apps.delete_namespaced_deployment("web", NS, _request_timeout=TIMEOUT)
    expect_error(404, "NotFound", apps.read_namespaced_deployment, "web", NS)
    core.delete_collection_namespaced_config_map(NS, label_selector="suite=python", _request_timeout=TIMEOUT)
    left = core.list_namespaced_config_map(NS, _request_timeout=TIMEOUT).items
    # Every namespace also holds the root CA ConfigMap the controller-manager publishes.
    names = [c.metadata.name for c in left if c.metadata.name != "kube-root-ca.crt"]
    check(names == ["unrelated"], f"deletecollection by label: {left}")
    core.delete_namespace(NS, _request_timeout=TIMEOUT)
    ns = core.read_namespace(NS, _request_timeout=TIMEOUT)
    check(ns.metadata.deletion_timestamp is not None, f"namespace is being deleted: {ns.metadata}")
    e = expect_error(403, "Forbidden", core.create_namespaced_config_map, NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="late")))
    check("being terminated" in e.body, f"terminating namespace: {e.body}")


def main():
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    for step in (namespaces_and_discovery, configmaps, deployments, watch_configmaps, cleanup):
        print(f"step {step.__name__}", flush=True)
        step(core)
    print("python client: all steps passed")


if __name__ == "__main__":
    main()
