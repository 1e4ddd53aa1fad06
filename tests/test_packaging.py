"""The package as a user gets it: a wheel built from the checkout, installed by pip with its
extras into a fresh virtualenv (dependencies from pip's configured index), and run from a
directory that has nothing of the checkout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from conftest import sqlalchemy_engine
from leadrat_process import clean_env, cli_env

from leadrat_source.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
#: What a wheel is built from; everything else in the checkout stays out of the build.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "leadrat_source")
PIP_TIMEOUT = 900


def outside_checkout_env(env: dict[str, str]) -> dict[str, str]:
    """`env` without PYTHONPATH, so nothing is imported from the checkout."""
    return {key: value for key, value in clean_env(env).items() if key != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built by pip from a copy of the checkout's sources, and pip's build log."""
    source = tmp_path_factory.mktemp("source")
    for name in WHEEL_SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(origin, source / name)
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(dist), "-v"],
        env=outside_checkout_env({}), capture_output=True, text=True, timeout=PIP_TIMEOUT,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = dist.glob("leadrat_source-*.whl")
    return built, build.stdout + build.stderr


@pytest.fixture(scope="module")
def venv_bin(wheel: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and every extra its profiles name installed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    extras = ",".join(extras_named_in_builtin_profiles())
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel[0]}[{extras}]"],
        env=outside_checkout_env({}), cwd=venv, capture_output=True, text=True,
        timeout=PIP_TIMEOUT, check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv / "bin"


def extras_named_in_builtin_profiles() -> list[str]:
    """The extras the built-in profiles' comments tell users to install."""
    text = (REPO / "leadrat_source" / "destinations.toml").read_text()
    return sorted(set(re.findall(r"leadrat-source\[(\w+)\]", text)))


def run_installed(venv_bin: Path, *args: str, env: dict[str, str],
                  cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_bin / "leadrat"), *args], env=outside_checkout_env(env), cwd=cwd,
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_wheel_carries_license_and_profiles_without_deprecation_warnings(
    wheel: tuple[Path, str]
) -> None:
    built, log = wheel
    deprecations = [line for line in log.splitlines() if "deprecat" in line.lower()]
    assert not deprecations, deprecations
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert "leadrat_source/destinations.toml" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert b"License-Expression: Apache-2.0" in metadata
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert built.name.startswith(f"leadrat_source-{version}-")


def test_installed_wheel_loads_into_postgres_from_another_directory(
    venv_bin: Path, make_sandbox: Callable[..., Sandbox], postgres_url: str,
    postgres_schema: str, tmp_path: Path,
) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    shown = run_installed(venv_bin, "--version", env={}, cwd=tmp_path)
    assert shown.stdout.strip() == f"leadrat {version}", shown.stderr

    server = make_sandbox(leads=400, seed=9, plan="pro", rate_limit=0)
    env = cli_env(tmp_path, server, DESTINATION__POSTGRES__CREDENTIALS=postgres_url)
    load = run_installed(venv_bin, "load", "--destination", "postgres", "--dataset",
                         postgres_schema, env=env, cwd=tmp_path)
    assert load.returncode == 0, load.stderr[-3000:]
    engine = sqlalchemy_engine(postgres_url)
    with engine.connect() as connection:
        ids = connection.execute(sa.text(f'select id from "{postgres_schema}".leads')).scalars()
        stored = sorted(ids)
    engine.dispose()
    assert stored == sorted(lead["id"] for lead in server.export_leads())


def test_a_users_profiles_add_to_and_replace_the_builtin_ones(
    venv_bin: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "destinations.toml").write_text(
        '[duckdb]\ndestination_type = "duckdb"\ndataset_name = "from_my_file"\n\n'
        '[mine]\ndestination_type = "duckdb"\n'
    )
    env = cli_env(tmp_path, sandbox)
    unknown = run_installed(venv_bin, "load", "--destination", "nowhere", env=env, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "known profiles: bigquery, duckdb, mine, postgres, snowflake" in unknown.stderr
    load = run_installed(venv_bin, "load", "--resources", "pipelines", env=env, cwd=tmp_path)
    assert load.returncode == 0, load.stderr[-3000:]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        (count,) = warehouse.sql("select count(*) from from_my_file.pipelines").fetchone() or (0,)
    assert count == len(sandbox.store.pipelines)


@pytest.mark.parametrize("extra", extras_named_in_builtin_profiles())
def test_extras_named_in_the_profiles_work_from_the_wheel(
    extra: str, venv_bin: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """With the extra installed, a load gets as far as the warehouse's credentials: the
    destination's packages import, and the error names what to set."""
    result = run_installed(venv_bin, "load", "--destination", extra, "--resources", "pipelines",
                           env=cli_env(tmp_path, sandbox), cwd=tmp_path)
    assert result.returncode == 2
    assert f"DESTINATION__{extra.upper()}__CREDENTIALS" in result.stderr
    assert "not installed" not in result.stderr
