"""deploy/kubernetes, checked offline: every object against the Kubernetes API schemas of a
pinned version (strict: an unknown field is an error), and every value that must agree with the
service against the service itself (its CLI, settings loader, routes, metrics, drain, pipeline
loader, state store and the Dockerfile's image)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
from prometheus_client.parser import text_string_to_metric_families

from voicebridge import __version__
from voicebridge.call.state import CallLimits
from voicebridge.cli import build_parser
from voicebridge.cli import main as cli_main
from voicebridge.config import ConfigError, load_pipeline
from voicebridge.config.service_settings import ENV_VARS, ServiceSettings, load_service_settings
from voicebridge.server.app import create_app
from voicebridge.server.run import running_service, uvicorn_options
from voicebridge.server.security import AUTH_TOKEN_VARS, STREAM_SECRET_VAR, SecurityConfig
from voicebridge.state.store import RedisStore, open_store
from voicebridge.telephony.plivo_rest import PlivoCredentials
from voicebridge.testing.redis_server import REDIS_SERVER, RedisServer, redis_available

from .kube import (
    DEPLOY,
    K8S_VERSIONS,
    KUBECTL,
    OPTIONAL,
    ROOT,
    Doc,
    base_docs,
    container,
    container_env,
    container_port,
    dockerfile,
    emulate_render,
    find,
    generated_configmaps,
    kustomization,
    load_all,
    load_file,
    optional_docs,
    pod_spec,
    render,
    secret_refs,
    selects,
    service_link_names,
)

# Stand-ins for the Secrets an operator creates (docs/deployment.md#secrets).
SECRETS = {
    ("voicebridge-redis", "password"): "0123456789abcdef0123456789abcdef",
    ("voicebridge-secrets", "VOICEBRIDGE_STREAM_SECRET"): "stream-secret-for-tests-0123456789",
    ("voicebridge-secrets", "PLIVO_AUTH_ID"): "MAXXXXXXXXXXXXXXXXXX",
    ("voicebridge-secrets", "PLIVO_AUTH_TOKEN"): "MAtestAuthToken0123456789abcdef",
}
REDIS_CLI = shutil.which("redis-cli")


def agent() -> Doc:
    return container(find(base_docs(), "Deployment", "voicebridge"), "voicebridge")


def mounted_file(c: Doc, pod: Doc, path: str) -> Path:
    """The repository file a path inside the container comes from (a generated ConfigMap)."""
    for mount in c["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        name = volume["configMap"]["name"]
        (gen,) = [g for g in kustomization()["configMapGenerator"] if g["name"] == name]
        key = path[len(prefix) :]
        (source,) = [f for f in gen["files"] if Path(f).name == key]
        return DEPLOY / source
    raise AssertionError(f"{path} is not mounted from a ConfigMap")


def agent_settings() -> tuple[ServiceSettings, dict[str, str]]:
    """The settings a pod runs with: its args parsed by the real CLI parser, its config file
    and environment through the real settings loader."""
    c = agent()
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", dockerfile(), re.M)
    assert entrypoint and load_all(entrypoint.group(1)) == [["voicebridge"]]
    args = build_parser().parse_args(c["args"])
    assert args.command == "serve"
    env = container_env(c, SECRETS)
    config = mounted_file(c, pod_spec(find(base_docs(), "Deployment", "voicebridge")), args.config)
    overrides = {"host": args.host, "port": args.port, "pipeline": args.pipeline}
    return load_service_settings(config, environ=env, overrides=overrides), env


# -- the files and the schemas ----------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_and_config_file() -> None:
    k = kustomization()
    manifests = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == manifests
    generated = {f for g in k["configMapGenerator"] for f in g["files"]}
    assert generated == {str(p.relative_to(DEPLOY)) for p in (DEPLOY / "config").glob("*")}
    assert k["namespace"] == find(base_docs(), "Namespace", k["namespace"])["metadata"]["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    docs = base_docs() + optional_docs()
    assert {d["kind"] for d in docs} >= {
        "Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "NetworkPolicy", "ConfigMap", "Ingress",
    }  # fmt: skip
    for doc in docs:  # a missing schema raises too: every kind here is a built-in one
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_is_strict() -> None:
    """An unknown field (a typo Kubernetes would silently drop on some paths) fails."""
    deployment = copy.deepcopy(find(base_docs(), "Deployment", "voicebridge"))
    pod_spec(deployment)["containers"][0]["readinessprobe"] = {"httpGet": {"path": "/health"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_kustomize_renders_valid_objects_wired_together() -> None:
    """What ``kubectl apply -k`` sends. kubectl renders it where it is installed (this machine
    image has it; .ci/run does not install it), else the files are read as kustomize would
    (resources, namespace, the generated ConfigMap with a content hash in its name)."""
    docs = render() if KUBECTL is not None else emulate_render()
    for doc in docs:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"voicebridge"}
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["metadata"]["name"].startswith("voicebridge-config-")  # content hash: rollout
    assert config["data"] == generated_configmaps()[0]["data"]
    deployment = find(docs, "Deployment", "voicebridge")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    image = container(deployment, "voicebridge")["image"]
    assert image == f"registry.example.com/voicebridge:{__version__}"


def test_the_image_tag_is_the_project_version() -> None:
    (image,) = kustomization()["images"]
    assert image["name"] == agent()["image"] and image["newTag"] == __version__


# -- the container against the service ---------------------------------------------------------


def test_the_pod_serves_on_its_container_port_with_the_shipped_settings() -> None:
    settings, env = agent_settings()
    assert settings.host == "0.0.0.0" and settings.port == container_port(agent(), "http")
    assert settings.workers == 1  # /health and /metrics then speak for the whole pod
    c, pod = agent(), pod_spec(find(base_docs(), "Deployment", "voicebridge"))
    assert mounted_file(c, pod, settings.pipeline).is_file()
    # Behind an Ingress every connection comes from the controller: per-peer caps at the totals.
    assert settings.limits.max_pending_per_peer == settings.limits.max_pending_streams
    assert settings.http.max_incomplete_per_peer == settings.http.max_incomplete
    service = find(base_docs(), "Service", "voicebridge")
    (port,) = service["spec"]["ports"]
    assert container_port(c, port["targetPort"]) == settings.port


def test_secrets_are_the_variables_the_service_reads() -> None:
    settings, env = agent_settings()
    refs = secret_refs(agent())
    assert STREAM_SECRET_VAR in refs and set(AUTH_TOKEN_VARS) & set(refs)
    security = SecurityConfig.from_env(settings, env)
    assert security.verify_signatures and security.stream_tokens
    assert not security.secret_generated  # one secret for every pod, from the Secret
    assert PlivoCredentials.from_env(env) is not None  # hang-ups and transfers
    # verify_signatures: on refuses to start without the Plivo token.
    with pytest.raises(ConfigError, match="PLIVO_AUTH_TOKEN"):
        SecurityConfig.from_env(
            settings, {k: v for k, v in env.items() if k not in AUTH_TOKEN_VARS}
        )
    # No secret in any file: only references.
    assert not [d for d in base_docs() + optional_docs() if d["kind"] == "Secret"]


def test_redis_is_the_state_store_and_its_secret_matches() -> None:
    settings, env = agent_settings()
    url = urlsplit(settings.state)
    redis_service = find(base_docs(), "Service", "voicebridge-redis")
    (port,) = redis_service["spec"]["ports"]
    assert (url.scheme, url.hostname, url.port) == ("redis", "voicebridge-redis", port["port"])
    redis = container(find(base_docs(), "Deployment", "voicebridge-redis"), "redis")
    assert container_port(redis, port["targetPort"]) == 6379
    assert url.password == SECRETS[secret_refs(agent())["REDIS_PASSWORD"]]
    assert secret_refs(redis)["REDIS_PASSWORD"] == secret_refs(agent())["REDIS_PASSWORD"]
    assert isinstance(open_store(settings.state), RedisStore)


def test_the_grace_period_covers_the_whole_drain() -> None:
    """preStop, then SIGTERM: live calls run on up to drain.deadline_s, the rest hear the
    goodbye (at most goodbye_timeout_s) and are hung up (one REST attempt), then the HTTP
    server closes idle connections. The kubelet kills the pod at the grace period."""
    settings, _ = agent_settings()
    pod = pod_spec(find(base_docs(), "Deployment", "voicebridge"))
    pre_stop = agent()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep" and len(pre_stop) == 2
    needed = (
        float(pre_stop[1])
        + settings.drain.deadline_s
        + settings.drain.goodbye_timeout_s
        + CallLimits().hangup_attempt_s
        + uvicorn_options(settings)["timeout_graceful_shutdown"]
    )
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert settings.drain.deadline_s >= 60  # calls last minutes: not the 30 s default


def test_the_pipeline_configmap_is_the_offline_pipeline_and_loads() -> None:
    settings, env = agent_settings()
    c, pod = agent(), pod_spec(find(base_docs(), "Deployment", "voicebridge"))
    path = mounted_file(c, pod, settings.pipeline)
    assert path.read_text() == (ROOT / "pipelines" / "offline.yaml").read_text()
    spec = load_pipeline(path, environ=env)  # what `voicebridge validate` and `serve` run
    assert [s.name for s in spec.stages] == [
        "decode",
        "vad",
        "whisper",
        "rules",
        "hibari",
        "encode",
    ]
    (whisper,) = [s for s in spec.stages if s.name == "whisper"]
    threads = whisper.params.threads  # type: ignore[attr-defined]
    assert threads == int(env["VOICEBRIDGE_WHISPER_THREADS"])
    assert threads <= float(c["resources"]["limits"]["cpu"])  # no more threads than CPUs
    assert cli_main(["validate", str(path)]) == 0


async def test_probes_and_the_autoscaler_metric_match_the_running_service() -> None:
    """The real app on loopback: every probe path answers 200; the readiness path answers 503
    once the drain starts; the HPA's metric is a gauge the service's /metrics exposes, through
    the adapter rule's name; Prometheus' annotations point at /metrics on the container port."""
    settings, env = agent_settings()
    c = agent()
    probes = {
        kind: c[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    for probe in probes.values():
        assert probe.get("scheme", "HTTP") == "HTTP"
        assert container_port(c, probe["port"]) == settings.port
    annotations = find(base_docs(), "Deployment", "voicebridge")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert int(annotations["prometheus.io/port"]) == settings.port

    local = settings.model_copy(update={"host": "127.0.0.1", "port": 0, "state": "memory"})
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")  # no model: the routes are the same
    security = SecurityConfig.from_env(local, env)
    async with (
        running_service(local, spec, security=security) as svc,
        httpx.AsyncClient(base_url=svc.http_base) as client,
    ):
        up = {k: (await client.get(p["path"])).status_code for k, p in probes.items()}
        exposition = (await client.get(annotations["prometheus.io/path"])).text
        svc.app.state.drainer.start()  # what SIGTERM starts after the preStop hook
        draining = await client.get(probes["readinessProbe"]["path"])
    assert up == {"startupProbe": 200, "readinessProbe": 200, "livenessProbe": 200}
    assert draining.status_code == 503 and draining.json()["status"] == "draining"

    gauges = {f.name for f in text_string_to_metric_families(exposition) if f.type == "gauge"}
    hpa = find(base_docs(), "HorizontalPodAutoscaler", "voicebridge")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "voicebridge",
    }  # fmt: skip
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    name = metric["pods"]["metric"]["name"]
    (adapter,) = load_file(OPTIONAL / "prometheus-adapter-config.yaml")
    (rule,) = load_all(adapter["data"]["config.yaml"])[0]["rules"]
    assert rule["name"]["as"] == name
    series = re.match(r"'?([a-z_]+)\{", rule["seriesQuery"])
    assert series and series.group(1) in gauges and re.fullmatch(rule["name"]["matches"], name)
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"}, "pod": {"resource": "pod"},
    }  # fmt: skip


def test_pods_run_locked_down() -> None:
    for deployment in [d for d in base_docs() if d["kind"] == "Deployment"]:
        pod = pod_spec(deployment)
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sec = c["securityContext"]
            assert sec["allowPrivilegeEscalation"] is False
            assert sec["readOnlyRootFilesystem"] is True
            assert sec["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    # The agent runs as the image's user, with writable scratch space where libraries write:
    # /tmp, and $HOME/.cache (onnxruntime's small database).
    user = re.search(r"useradd .*--uid (\d+) .*--home-dir (\S+)", dockerfile())
    assert user
    pod = pod_spec(find(base_docs(), "Deployment", "voicebridge"))
    assert pod["securityContext"]["runAsUser"] == int(user.group(1))
    scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in agent()["volumeMounts"] if m["name"] in scratch}
    assert mounts == {"/tmp", f"{user.group(2)}/.cache"}


def test_service_links_would_collide_with_the_settings() -> None:
    """Why enableServiceLinks is off: the Service named voicebridge would set VOICEBRIDGE_PORT
    to tcp://…, which the settings loader reads as the port."""
    links = set()
    for service in [d for d in base_docs() if d["kind"] == "Service"]:
        links |= service_link_names(service["metadata"]["name"], service["spec"]["ports"])
    assert "VOICEBRIDGE_PORT" in links & set(ENV_VARS)


def test_selectors_and_names_meet() -> None:
    docs = base_docs()
    labels = {
        name: find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in ("voicebridge", "voicebridge-redis")
    }
    for name, pod_labels in labels.items():
        deployment = find(docs, "Deployment", name)
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
        assert selects(find(docs, "Service", name)["spec"]["selector"], pod_labels)
    assert not selects(
        find(docs, "Service", "voicebridge")["spec"]["selector"], labels["voicebridge-redis"]
    )
    pdb = find(docs, "PodDisruptionBudget", "voicebridge")
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels["voicebridge"])
    policy = find(docs, "NetworkPolicy", "voicebridge-redis")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], labels["voicebridge-redis"])
    (allowed,) = policy["ingress"]
    (source,) = allowed["from"]
    assert selects(source["podSelector"]["matchLabels"], labels["voicebridge"])
    redis = container(find(docs, "Deployment", "voicebridge-redis"), "redis")
    assert [container_port(redis, p["port"]) for p in allowed["ports"]] == [6379]
    # The HPA owns the replica count (a replicas field would reset it on every apply).
    assert "replicas" not in find(docs, "Deployment", "voicebridge")["spec"]


def test_the_ingress_exposes_only_plivos_paths_for_a_whole_call() -> None:
    settings, _ = agent_settings()
    (ingress,) = [d for d in optional_docs() if d["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    (tls,) = ingress["spec"]["tls"]
    assert rule["host"] == urlsplit(settings.public_url).hostname and tls["hosts"] == [rule["host"]]
    app = create_app(
        settings.model_copy(update={"state": "memory"}),
        load_pipeline(ROOT / "pipelines" / "echo.yaml"),
        security=SecurityConfig(),
    )
    routes = {r.path for r in app.routes}  # type: ignore[attr-defined]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert paths == {"/answer", "/stream", "/status", "/transfer"} and paths <= routes
    service = find(base_docs(), "Service", "voicebridge")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for p in rule["http"]["paths"]:
        backend = p["backend"]["service"]
        assert backend["name"] == "voicebridge" and backend["port"]["name"] in port_names
    notes = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert (
            float(notes[f"nginx.ingress.kubernetes.io/{key}"]) >= settings.limits.max_call_seconds
        )


@pytest.mark.skipif(
    not redis_available() or REDIS_CLI is None,
    reason=f"redis-server and redis-cli are not installed ({REDIS_SERVER}); .ci/run installs them",
)
async def test_redis_runs_with_the_manifest_args_and_the_service_connects() -> None:
    """The manifest's redis-server arguments on a real Redis (loopback, a free port): the
    service's store connects with the URL the pod builds, a wrong password does not, and the
    readiness probe's script tells the two apart."""
    settings, _ = agent_settings()
    redis = container(find(base_docs(), "Deployment", "voicebridge-redis"), "redis")
    redis_env = container_env(redis, SECRETS)
    password = redis_env["REDIS_PASSWORD"]
    args = [a.replace("$(REDIS_PASSWORD)", password) for a in redis["args"]]
    assert args[0] == "redis-server" and password in args
    server = RedisServer(extra_args=args[1:], password=password)
    server.start()
    try:
        local = settings.state.replace("@voicebridge-redis:6379/", f"@127.0.0.1:{server.port}/")
        assert local == server.url
        assert await store_answers(local) is True
        assert await store_answers(local.replace(password, "not-the-password")) is False
        script = redis["readinessProbe"]["exec"]["command"]
        assert script[:2] == ["sh", "-c"]
        probe = script[2].replace("redis-cli", f"{REDIS_CLI} -p {server.port}")
        ok = subprocess.run(["sh", "-c", probe], env=redis_env, timeout=10)
        bad = subprocess.run(["sh", "-c", probe], env={"REDISCLI_AUTH": "nope"}, timeout=10)
        assert ok.returncode == 0 and bad.returncode != 0
    finally:
        server.stop()


async def store_answers(url: str) -> bool:
    store = open_store(url)
    assert isinstance(store, RedisStore)
    try:
        return await store.ping()
    finally:
        await store.close()
