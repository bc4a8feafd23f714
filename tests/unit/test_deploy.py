"""The deploy files: compose as YAML with what running beside Core needs; the Dockerfile's shape."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)([hms])", text))


def test_compose_runs_the_cursor_beside_core() -> None:
    """Healthcheck, a grace period longer than a run, a volume for CURSOR_HOME, env_file, an init."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    cursor = compose["services"]["cursor"]

    assert cursor["command"] == ["run"]
    assert any("/healthz" in part or "/readyz" in part for part in cursor["healthcheck"]["test"])
    grace = _duration_seconds(cursor["stop_grace_period"])
    assert grace >= 600 + 30 * 60
    assert grace - 60 <= int(cursor["environment"]["STOP_GRACE_SECONDS"]) < grace
    assert cursor["init"] is True
    assert ["cursor-home:/var/lib/atlasreg-cursor"] == cursor["volumes"]
    assert "cursor-home" in compose["volumes"]
    assert cursor["env_file"][0]["path"] == "../.env"
    assert "/var/lib/atlasreg-cursor" == cursor["environment"]["CURSOR_HOME"]
    assert compose["networks"]["core"]["external"] is True
    assert {"monitoring"} == set(compose["services"]["prometheus"]["profiles"])


def test_compose_mounts_files_that_exist() -> None:
    """Every file a service mounts from deploy/ is there."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_installs_pinned_dependencies_before_the_source() -> None:
    """The constraints are copied and installed before src/, so code changes reuse that layer."""
    steps = _instructions()
    copies = [i for i, (k, _) in enumerate(steps) if k == "COPY"]
    constraints = next(i for i in copies if "deploy/constraints.txt" in steps[i][1])
    source = next(i for i in copies if steps[i][1].startswith("src"))
    install_deps = next(
        i for i, (k, v) in enumerate(steps) if k == "RUN" and "-r deploy/constraints.txt" in v
    )

    assert constraints < install_deps < source
    assert any(
        k == "RUN" and "pip install --no-deps --no-build-isolation ." in v
        for k, v in steps[source:]
    )


def _pins() -> dict[str, str]:
    return dict(
        line.split("==")
        for line in (DEPLOY / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )


def test_the_build_backend_is_pinned_and_the_package_is_built_with_it() -> None:
    """pyproject asks for a range; constraints pin a version in it; the image builds with it."""
    import tomllib

    from packaging.requirements import Requirement

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = _pins()
    steps = _instructions()
    install_deps = next(
        i for i, (k, v) in enumerate(steps) if k == "RUN" and "-r deploy/constraints.txt" in v
    )
    install_package = next(
        i for i, (k, v) in enumerate(steps) if k == "RUN" and "pip install --no-deps" in v
    )

    assert "hatchling" in {Requirement(r).name for r in requires}
    for requirement in map(Requirement, requires):
        assert requirement.specifier, f"{requirement} is a range in pyproject, not open"
        assert not any(s.operator in {"==", "==="} for s in requirement.specifier)
        assert requirement.specifier.contains(pins[requirement.name]), requirement
    assert install_deps < install_package
    assert "--no-build-isolation" in steps[install_package][1]


def test_dockerfile_has_init_labels_volume_healthcheck_and_a_user() -> None:
    """tini as PID 1, OCI labels, VOLUME for CURSOR_HOME, a HEALTHCHECK, not root."""
    steps = dict(_instructions())
    entrypoint = json.loads(steps["ENTRYPOINT"])

    assert "tini" == entrypoint[0]
    assert "atlasreg-cursor" in entrypoint
    assert "org.opencontainers.image.version" in steps["LABEL"]
    assert "org.opencontainers.image.title" in steps["LABEL"]
    assert ["/var/lib/atlasreg-cursor"] == json.loads(steps["VOLUME"])
    assert "/healthz" in steps["HEALTHCHECK"]
    assert "cursor" == steps["USER"]


def test_constraints_pin_every_runtime_dependency() -> None:
    """deploy/constraints.txt pins each dependency of pyproject.toml to one version."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    wanted = {
        re.sub(r"[-_.]+", "-", re.split(r"[<>=\[ ;]", dep)[0]).lower()
        for dep in project["dependencies"]
    }

    assert wanted <= set(pins)
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", v) for v in pins.values())


def _arg_defaults() -> dict[str, str]:
    return dict(v.split("=", 1) for k, v in _instructions() if k == "ARG" and "=" in v)


def test_compose_builds_the_version_it_tags() -> None:
    """VERSION (and the commit, REVISION) reach the build as arguments; the tag uses the same."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    cursor = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["cursor"]

    assert f"${{CURSOR_VERSION:-{version}}}" == cursor["build"]["args"]["VERSION"]
    assert cursor["image"].endswith(":" + cursor["build"]["args"]["VERSION"])
    assert "${CURSOR_REVISION:-unknown}" == cursor["build"]["args"]["REVISION"]
    assert version == _arg_defaults()["VERSION"]


def test_dockerfile_labels_name_the_source_revision_and_a_documentation_url() -> None:
    """OCI source, revision (build arguments) and documentation, an https URL once expanded."""
    labels = dict(
        re.findall(
            r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', dict(_instructions())["LABEL"]
        )
    )
    args = _arg_defaults()

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)

    assert "${REVISION}" == labels["org.opencontainers.image.revision"]
    assert "${SOURCE_URL}" == labels["org.opencontainers.image.source"]
    assert re.fullmatch(r"https://[^\s]+", expand(labels["org.opencontainers.image.source"]))
    assert re.fullmatch(r"https://[^\s]+", expand(labels["org.opencontainers.image.documentation"]))


def test_lock_script_names_the_install_the_dockerfile_does() -> None:
    """deploy/lock.py's docstring says how the Dockerfile really installs the pins."""
    (install,) = [v for k, v in _instructions() if k == "RUN" and "deploy/constraints.txt" in v]
    flag = re.search(r"(-[rc]) deploy/constraints\.txt", install)
    doc = ast.get_docstring(ast.parse((DEPLOY / "lock.py").read_text())) or ""

    (package,) = [v for k, v in _instructions() if k == "RUN" and "pip install --no-deps" in v]
    package_install = re.search(r"pip install [^&]*?\s\.(?=\s|$)", package)

    assert flag is not None
    assert f"pip install {flag.group(1)} deploy/constraints.txt" in doc
    assert f"{'-c' if flag.group(1) == '-r' else '-r'} deploy/constraints.txt" not in doc
    assert package_install is not None
    assert package_install.group(0) in " ".join(doc.split())
