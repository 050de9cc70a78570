"""deploy/compose.yaml cannot run here (no Docker engine), so it is checked for what
would break `docker compose up`: it parses, every file it builds from or mounts exists,
and it agrees with the Kubernetes manifests and the Prometheus configs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from funnel_common.settings import CommonSettings
from funnel_tools.dashboards import DEPLOY, PROMETHEUS_DIR, ROOT
from funnel_tools.embedded import EmbeddedPostgres, free_port
from tests.deploy.test_k8s_manifests import (
    REPLAYED,
    ROLES,
    SERVICES,
    TOPICS,
    WORKER_PORTS,
    of_kind,
    render,
)

COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_has_kafka_postgres_the_services_prometheus_and_grafana() -> None:
    services = compose()["services"]

    assert {"kafka-1", "kafka-2", "kafka-3", "postgres", "prometheus", "grafana"} <= set(services)
    assert set(SERVICES) | {f"{name}-worker" for name in SERVICES} <= set(services)


def test_every_build_file_and_mounted_path_exists() -> None:
    checked = 0
    for name, service in compose()["services"].items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == ROOT
            dockerfile = context / service["build"]["dockerfile"]
            assert dockerfile.is_file(), name
            checked += 1
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
                checked += 1
    assert checked == 6 + 5


def test_each_worker_runs_its_web_services_image_with_the_worker_command() -> None:
    services = compose()["services"]
    for name in SERVICES:
        web, worker = services[name], services[f"{name}-worker"]
        module = name.replace("-", "_")

        assert worker["build"] == web["build"]
        assert worker["image"] == web["image"]
        assert "command" not in web, "the web process is the image's default command"
        assert worker["command"][:3] == ["uvicorn", "--factory", f"{module}.worker:create_app"]
        assert worker["command"][worker["command"].index("--port") + 1] == str(WORKER_PORTS[name])
        assert worker["environment"] == web["environment"]


def test_each_dockerfile_is_multi_stage_locked_and_non_root() -> None:
    for name, (prefix, port, _) in SERVICES.items():
        dockerfile = (DEPLOY / "docker" / f"{name}.Dockerfile").read_text()
        module = name.replace("-", "_")

        assert len(re.findall(r"^FROM ", dockerfile, re.MULTILINE)) >= 3
        assert "uv sync --frozen --no-dev" in dockerfile
        assert f"--package {name}" in dockerfile
        assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
        # The web process is the default command; the worker is named in its comment
        # (the manifests and compose run it with the same image).
        assert f'CMD ["uvicorn", "--factory", "{module}.web:create_app"' in dockerfile
        assert f"{module}.worker:create_app" in dockerfile
        assert f"EXPOSE {port} {WORKER_PORTS[name]}" in dockerfile
        # uvicorn's --host/--port decide; these settings no longer exist.
        assert f"FUNNEL_{prefix}_PORT" not in dockerfile
        assert f"FUNNEL_{prefix}_HOST" not in dockerfile
        for copied in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
            assert (ROOT / copied).exists(), f"{name}: COPY {copied}"


def test_services_run_read_only_as_the_image_user_with_the_kubernetes_settings() -> None:
    services = compose()["services"]
    (config,) = of_kind(render("prod"), "ConfigMap").values()
    processes = [
        (process, prefix, exposed, settings)
        for name, (prefix, port, settings) in SERVICES.items()
        for process, exposed in ((name, port), (f"{name}-worker", WORKER_PORTS[name]))
    ]
    for name, prefix, port, settings in processes:
        service = services[name]
        environment = service["environment"]

        assert service["read_only"] is True
        assert service["user"] == "10001:10001"
        assert service["cap_drop"] == ["ALL"]
        assert service["ports"] == [f"{port}:{port}"]
        assert f"FUNNEL_{prefix}_DATABASE_URL" in environment
        own = {f"FUNNEL_{prefix}_{field.upper()}" for field in settings.model_fields}
        common = {f"FUNNEL_{field.upper()}" for field in CommonSettings.model_fields}
        assert set(environment) <= own | common, "a setting the services do not have"
        assert f"{port}/readyz" in " ".join(service["healthcheck"]["test"])
        for key in (
            "FUNNEL_KAFKA_ENABLE_IDEMPOTENCE",
            "FUNNEL_KAFKA_REPLICATION_FACTOR",
            "FUNNEL_KAFKA_TOPIC_PARTITIONS",
            "FUNNEL_KAFKA_SESSION_TIMEOUT_MS",
            "FUNNEL_KAFKA_HEARTBEAT_INTERVAL_MS",
            "FUNNEL_KAFKA_REBALANCE_TIMEOUT_MS",
        ):
            assert environment[key] == config["data"][key], key


def test_kafka_is_three_kraft_nodes_with_the_kubernetes_topics() -> None:
    services = compose()["services"]
    manifests = render("prod")
    (kafka,) = of_kind(manifests, "Kafka").values()
    topics = list(of_kind(manifests, "KafkaTopic").values())
    nodes = [services[f"kafka-{number}"]["environment"] for number in (1, 2, 3)]

    for node in nodes:
        assert node["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert node["KAFKA_MIN_INSYNC_REPLICAS"] == str(
            kafka["spec"]["kafka"]["config"]["min.insync.replicas"]
        )
        assert node["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert len({node["KAFKA_NODE_ID"] for node in nodes}) == 3
    script = services["kafka-topics"]["command"][0]
    assert set(re.findall(r"funnel\.\w+", script)) == TOPICS
    assert f"--partitions {topics[0]['spec']['partitions']}" in script
    assert "--replication-factor 3" in script
    assert "min.insync.replicas=2" in script


def test_compose_prometheus_scrapes_the_same_jobs_as_the_local_config() -> None:
    def targets(path: Path) -> dict[tuple[str, str], str]:
        config = yaml.safe_load(path.read_text())
        return {
            (job["job_name"], group["labels"]["component"]): target
            for job in config["scrape_configs"]
            for group in job["static_configs"]
            for target in group["targets"]
        }

    in_compose = targets(PROMETHEUS_DIR / "prometheus-compose.yml")
    expected = {}
    for name, (_, port, _) in SERVICES.items():
        expected[name, "web"] = f"{name}:{port}"
        expected[name, "worker"] = f"{name}-worker:{WORKER_PORTS[name]}"
    assert in_compose == expected
    assert set(compose()["services"]) >= {target.split(":")[0] for target in in_compose.values()}
    local = targets(PROMETHEUS_DIR / "prometheus.yml")
    assert {key: target.split(":")[1] for key, target in local.items()} == {
        key: target.split(":")[1] for key, target in expected.items()
    }


def test_dashboard_provider_points_where_compose_mounts_the_boards() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "shared-funnel.yml").read_text()
    )

    (entry,) = provider["providers"]
    grafana = compose()["services"]["grafana"]
    mounts = grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert grafana["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert f"./grafana/dashboards:{entry['options']['path']}:ro" in mounts


def _default(value: str) -> str:
    """A compose value with its ${VAR:-default}s replaced by the defaults."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_each_service_connects_as_its_own_role() -> None:
    services = compose()["services"]
    postgres = services["postgres"]

    assert (
        "./compose/postgres-roles.sh:/docker-entrypoint-initdb.d/10-roles.sh:ro"
        in (postgres["volumes"])
    )
    for name, (prefix, _, _) in SERVICES.items():
        url = _default(services[name]["environment"][f"FUNNEL_{prefix}_DATABASE_URL"])
        role = ROLES[name]
        password = _default(postgres["environment"][f"FUNNEL_{prefix}_DB_PASSWORD"])
        assert url == f"postgresql://{role}:{password}@postgres:5432/funnel", name


async def test_the_compose_init_script_gives_each_role_its_schema_alone(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    try:
        server.create_database("funnel")
        environment = _default_environment(compose()["services"]["postgres"]["environment"])
        _run_init_script(server, environment)
        for service, (prefix, _, _) in SERVICES.items():
            role = ROLES[service]
            password = environment[f"FUNNEL_{prefix}_DB_PASSWORD"]
            url = f"postgresql://{role}:{password}@127.0.0.1:{server.port}/funnel"
            connection = await asyncpg.connect(url)
            try:
                owner = await connection.fetchval(
                    "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", role
                )
                assert owner == role
                await connection.execute(f"CREATE TABLE {role}.mine (id int)")
                for other in set(ROLES.values()) - {role}:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await connection.execute(f"CREATE TABLE {other}.planted (id int)")
            finally:
                await connection.close()
    finally:
        server.stop()


def _run_init_script(server: EmbeddedPostgres, environment: dict[str, str]) -> None:
    """What the postgres image does with /docker-entrypoint-initdb.d on an empty volume."""
    done = subprocess.run(
        ["bash", str(DEPLOY / "compose" / "postgres-roles.sh")],
        env={
            **os.environ,
            **environment,
            "POSTGRES_USER": "postgres",
            "PATH": f"{server.bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(server.port),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _default_environment(environment: dict[str, str]) -> dict[str, str]:
    return {name: _default(str(value)) for name, value in environment.items()}


def test_no_client_of_compose_can_choose_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # No proxy stands in front of compose's published ports: a trusted compose network
    # would believe X-Forwarded-For from every client outside Docker (the bridge gateway).
    for name in SERVICES:
        environment = compose()["services"][name]["environment"]
        assert "FUNNEL_TRUSTED_PROXIES" in environment, name
        monkeypatch.setenv(
            "FUNNEL_TRUSTED_PROXIES", _default(environment["FUNNEL_TRUSTED_PROXIES"])
        )
        assert CommonSettings().trusted_proxies == [], name


def test_the_topics_replay_reads_keep_their_records() -> None:
    script = compose()["services"]["kafka-topics"]["command"][0]

    looped = set(re.findall(r"funnel\.\w+", script.split("do\n", 1)[0]))
    assert "retention.ms=$$retention" in script
    assert "retention=-1" in script
    assert "funnel.dlq ] && retention=" in script
    assert REPLAYED <= looped
