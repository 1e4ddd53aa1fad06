"""PostgreSQL URLs as people write them, against a server that asks for a password.

The shared test server trusts loopback, so it cannot tell a password from none. This
module starts a PostgreSQL cluster of its own (scram-sha-256 on 127.0.0.1) and runs
`leadrat load --destination postgres` as a user would: a URL without a password works
with libpq's own sources (PGPASSWORD, a pgpass file); no password or a wrong one stops
the run with exit 2 and one line naming the variable to fix.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from emulators import free_port, missing

from leadrat_source.sandbox import Sandbox

PASSWORD = "pg-login-test-3f9a"
VARIABLE = "DESTINATION__POSTGRES__CREDENTIALS"


@dataclass(frozen=True)
class PasswordServer:
    port: int

    def url(self, password: str | None = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/postgres"


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(
        f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        missing(f"{name} (PostgreSQL server binaries) is not installed")
    return str(found)


@pytest.fixture(scope="module")
def password_server() -> Iterator[PasswordServer]:
    """A throwaway cluster that requires scram-sha-256 passwords (initdb refuses root, so
    under root it runs as the `postgres` user)."""
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    directory = Path(tempfile.mkdtemp(prefix="leadrat-pg-login-"))
    data, password_file = directory / "data", directory / "password"
    password_file.write_text(PASSWORD)
    if as_postgres:
        shutil.chown(directory, "postgres")
        shutil.chown(password_file, "postgres")
    port = free_port()
    try:
        subprocess.run([*as_postgres, initdb, "-D", str(data), "-U", "postgres", "-E", "UTF8",
                        "--auth=scram-sha-256", f"--pwfile={password_file}"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-l", str(directory / "log"),
                        "-w", "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {directory}",
                        "start"], check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, OSError) as error:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"could not start a password-protected PostgreSQL: {error}")
    try:
        yield PasswordServer(port)
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def load(server: Sandbox, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`leadrat load --destination postgres` in a clean environment (no PG* variables but
    those given; no pgpass file unless PGPASSFILE is given)."""
    tmp_path.mkdir(exist_ok=True)
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("SOURCES__", "DESTINATION__", "PG"))}
    env = {"PGPASSFILE": str(tmp_path / "no-pgpass"), "DLT_DATA_DIR": str(tmp_path / "dlt"),
           "SOURCES__LEADRAT__BASE_URL": server.base_url,
           "SOURCES__LEADRAT__API_KEY": server.read_key, **env}
    return subprocess.run(
        [sys.executable, "-m", "leadrat_source.cli", "load", "--destination", "postgres"],
        env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        check=False,
    )


def test_url_without_password_uses_pgpassword_or_a_pgpass_file(
    password_server: PasswordServer, make_sandbox: Callable[..., Sandbox], tmp_path: Path,
) -> None:
    server = make_sandbox(leads=30, rate_limit=0)
    url = password_server.url()
    with_variable = load(server, tmp_path / "a", **{VARIABLE: url, "PGPASSWORD": PASSWORD})
    assert with_variable.returncode == 0, with_variable.stderr[-3000:]
    assert "leads=30" in with_variable.stdout

    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{password_server.port}:*:postgres:{PASSWORD}\n")
    pgpass.chmod(0o600)
    with_file = load(server, tmp_path / "b", **{VARIABLE: url, "PGPASSFILE": str(pgpass)})
    assert with_file.returncode == 0, with_file.stderr[-3000:]


@pytest.mark.parametrize("password", [None, "not-the-password"], ids=["missing", "wrong"])
def test_missing_or_wrong_password_is_one_line_naming_the_variable(
    password_server: PasswordServer, make_sandbox: Callable[..., Sandbox], tmp_path: Path,
    password: str | None,
) -> None:
    server = make_sandbox(leads=10, rate_limit=0)
    result = load(server, tmp_path, **{VARIABLE: password_server.url(password)})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and VARIABLE in errors[0], result.stderr[-3000:]
    assert ("wrong password" if password else "no password") in errors[0]
    assert "Traceback" not in result.stderr
    if password:
        assert password not in result.stderr + result.stdout
