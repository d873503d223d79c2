"""Every process's command (the Procfile's, and the flask CLI) reports a configuration
error as one line and exits 1; migrations run without the webhook sources at all."""
import os
import shlex
import subprocess

import pytest

from tests.e2e.harness import REPO, clean_environment, procfile

BAD_SOURCE = '[sources.stripe]\nscheme = "stripe"\nsecret = "oops"\n'
MESSAGE = "source stripe: unknown keys secret"


@pytest.fixture
def broken_env(tmp_path, redis_url) -> dict:
    sources = tmp_path / "sources.toml"
    sources.write_text(BAD_SOURCE)
    return clean_environment(
        SLUICE_INSTANCE_PATH=str(tmp_path / "instance"), SLUICE_SOURCES_FILE=str(sources),
        DATABASE_URL=f"sqlite:///{tmp_path / 'sluice.db'}", REDIS_URL=redis_url,
        PORT="0", SECRET_KEY="entry-points")


def run(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(shlex.split(command), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("process", ["web", "hooks", "worker", "beat"])
def test_a_procfile_process_with_a_bad_sources_file_says_so_in_one_line(broken_env, process):
    result = run(procfile()[process], broken_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if MESSAGE in line]
    assert errors == [f"sluice: configuration error: {broken_env['SLUICE_SOURCES_FILE']}: "
                      f"{MESSAGE}"]


def test_a_flask_command_with_a_bad_sources_file_says_so_in_one_line(broken_env):
    result = run("flask --app webapp clients list", broken_env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"Error: {broken_env['SLUICE_SOURCES_FILE']}: {MESSAGE}"


def test_migrations_need_neither_the_sources_nor_redis(broken_env):
    env = {**broken_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    release = run(procfile()["release"], env)
    assert release.returncode == 0, release.stderr
    current = run("flask --app webapp db current", env)
    assert current.returncode == 0 and current.stdout.strip().endswith("(head)")


def test_the_readme_links_only_to_files_inside_the_repository():
    # A clone has no ../shared: the project's own docs live in it.
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text()
    assert "../" not in readme
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (repo / target).exists(), target


def test_an_installed_wheel_migrates_with_no_checkout(tmp_path):
    # Reported: the only install path was `make run`'s editable install; a wheel left
    # the migrations behind, so `flask db upgrade` could not run on a server.
    import shutil
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    source = tmp_path / "source"  # pip builds in the tree it is given: not in ours
    shutil.copytree(repo, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "instance", "*.egg-info", "__pycache__", "test-output",
        ".hypothesis", "site", "node_modules"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("sluice-*.whl"))
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                                "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    from webapp.migrate import script_heads

    (head,) = script_heads()
    assert list((target / "migrations" / "versions").glob(f"{head}_*.py"))
    env = {**os.environ, "PYTHONPATH": str(target), "SLUICE_INSTANCE_PATH": str(tmp_path / "i"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'wheel.db'}", "SECRET_KEY": "x"}
    env.pop("TEST_DATABASE_URL", None)
    upgraded = subprocess.run(
        [sys.executable, "-c", "import webapp, sys; assert webapp.__file__.startswith(sys.argv[1]);"
         "from webapp.migrate import upgrade, script_heads; import os;"
         "upgrade(os.environ['DATABASE_URL']); print(sorted(script_heads()))", str(target)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert upgraded.stdout.strip() == f"['{head}']"
