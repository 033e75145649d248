"""The deployment artefacts in deploy/, checked offline: the Kubernetes manifests against the Kubernetes
schemas (`kubernetes-validate --strict`), the Compose file against the compose-spec schema bundled with
`check-jsonschema` (there is no `docker compose` here), the HAProxy config with `haproxy -c` as Compose
fills it in; each validator is also shown a broken copy, so these tests can fail. And the settings that
must agree across files do (grace periods, replica ids, the servers HAProxy knows)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    print(" ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)), "->", result.returncode)
    print(result.stdout + result.stderr)
    return result


def manifests() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def test_the_kustomization_names_every_manifest():
    listed = {p.name for p in manifests()}
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_kubernetes_manifests_validate(tmp_path):
    result = run(str(BIN / "kubernetes-validate"), "--strict", *map(str, manifests()))
    assert result.returncode == 0
    assert result.stdout.count(" passed for resource ") == len(manifests())
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "deployment.yaml").read_text().replace("replicas: 2", "replicas: two"))
    assert run(str(BIN / "kubernetes-validate"), "--strict", str(broken)).returncode != 0


def test_compose_file_validates(tmp_path):
    check = str(BIN / "check-jsonschema")
    assert run(check, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")).returncode == 0
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("stop_grace_period: 90s", "stop_grace: 90s"))
    assert run(check, "--builtin-schema", "vendor.compose-spec", str(broken)).returncode != 0


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_haproxy_config_is_valid_as_compose_fills_it_in():
    env = {k: str(v) for k, v in compose()["services"]["haproxy"]["environment"].items()}
    assert shutil.which("haproxy"), "haproxy not installed (apt-get install haproxy; .ci/run does)"
    result = run("haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg"), env=env)
    assert result.returncode == 0 and "Configuration file is valid" in result.stdout + result.stderr
    bad = run("haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg"), env={**env, "TTS_LB_PORT": "not-a-port"})
    assert bad.returncode != 0


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)?", value).groups()
    return float(number) * (60 if unit == "m" else 1)


def test_settings_agree_across_the_files():
    services = compose()["services"]
    replicas = {name: s for name, s in services.items() if name.startswith("tts-")}
    config = (DEPLOY / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server (tts-\d+) \"\$\{TTS_(\d+)_ADDR\}", config, re.MULTILINE)
    assert {name for name, _ in servers} == set(replicas)
    haproxy_env = services["haproxy"]["environment"]
    for name, n in servers:
        assert haproxy_env[f"TTS_{n}_ADDR"] == name
        env = replicas[name]["environment"]
        assert env["TTS_REPLICA_ID"] == name and haproxy_env[f"TTS_{n}_AGENT_PORT"] == env["TTS_AGENT_PORT"]
        assert seconds(replicas[name]["stop_grace_period"]) > float(env["TTS_SHUTDOWN_GRACE_S"])
    gpus = [r["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for r in replicas.values()]
    assert len({tuple(g) for g in gpus}) == len(gpus)  # one GPU each

    settings = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    pod = yaml.safe_load((K8S / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > float(settings["TTS_SHUTDOWN_GRACE_S"]) + pause
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and settings["TTS_PRELOAD"] == "true"
    hpa = yaml.safe_load((K8S / "hpa.yaml").read_text())
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "tts_sessions_active"
