"""One home for every environment variable, and docs that list every variable and flag."""
import re
from pathlib import Path

import pytest

from mpitrain import settings

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"MPITRAIN_[A-Z0-9_]*[A-Z0-9]")
READERS = ["mpitrain", "csrc", "tests", "setup.py", "Makefile", "bench/gpu_suite.sh"]


def sources():
    for top in READERS:
        path = ROOT / top
        for f in ([path] if path.is_file() else path.rglob("*")):
            if f.is_file() and f.suffix in ("", ".py", ".c", ".cu", ".h", ".sh") and \
                    f.name != "settings.py" and "__pycache__" not in f.parts:
                yield f, f.read_text(errors="replace")


def test_every_variable_the_code_reads_is_a_setting():
    named = {m for _, text in sources() for m in NAME.findall(text)}
    assert named, "the scan found no variables at all"
    unknown = sorted(named - set(settings.SETTINGS))
    assert not unknown, f"read but not in mpitrain/settings.py: {unknown}"


def test_every_setting_is_read_somewhere():
    """By its variable (get(NAME), outside a job) or as a field of a Settings object."""
    code = "".join(text for f, text in sources() if "tests" not in f.parts)
    unread = [name for name in settings.SETTINGS if name not in code and not re.search(
        rf"settings\.{name[len(settings.PREFIX):].lower()}\b", code)]
    assert not unread, f"settings nothing reads: {unread}"


@pytest.mark.parametrize("name", sorted(settings.SETTINGS))
def test_a_bad_value_is_refused_by_name(name):
    setting = settings.SETTINGS[name]
    if setting.kind == "text":
        assert settings.get(name, env={name: "x y"}) == "x y"
        return
    bad = {"bool": "maybe", "choice": "no-such-choice", "int": "1.5x", "float": "fast"}[setting.kind]
    with pytest.raises(settings.SettingError, match=f"rank 2: {name}='{bad}': takes"):
        settings.get(name, rank=2, env={name: bad})
    assert settings.get(name, env={}) == setting.default
    assert settings.get(name, env={name: ""}) == setting.default


def test_limits_and_parsing():
    assert settings.get("MPITRAIN_TIMEOUT", env={"MPITRAIN_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(settings.SettingError, match="MPITRAIN_TIMEOUT='-1'"):
        settings.get("MPITRAIN_TIMEOUT", env={"MPITRAIN_TIMEOUT": "-1"})
    with pytest.raises(settings.SettingError, match="<= 128"):
        settings.get("MPITRAIN_PEER_BLOCKS", env={"MPITRAIN_PEER_BLOCKS": "5000"})
    assert settings.get("MPITRAIN_DEBUG", env={"MPITRAIN_DEBUG": "yes"}) is True
    assert settings.get("MPITRAIN_STAGED_SHARED", env={"MPITRAIN_STAGED_SHARED": "0"}) is False


def test_the_configuration_page_lists_every_variable_and_flag():
    pytest.importorskip("torch")
    from mpitrain.train.config import flags_markdown
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings.markdown() in page, "run python -m mpitrain.settings into docs/configuration.md"
    assert flags_markdown() in page, "run python -m mpitrain.train.config into docs/configuration.md"


def test_every_set_variable_is_parsed_at_start_up_and_a_typo_is_named():
    with pytest.raises(settings.SettingError, match="rank 3: MPITRAIN_TIMEOUT='soon'"):
        settings.Settings.from_env(env={"MPITRAIN_TIMEOUT": "soon"}, rank=3)
    typo = "MPITRAIN_" + "TIMEOUTT"            # spelt out, it would count as read by the code
    warnings = settings.unknown_variables(0, {typo: "5", "MPITRAIN_DEBUG": "1", "OTHER": "x"})
    assert warnings == [f"rank 0: {typo} is not a setting of mpitrain (did you mean "
                        "MPITRAIN_TIMEOUT?); the settings are listed in docs/configuration.md"]
    assert settings.unknown_variables(None, {name: "" for name in settings.SETTINGS}) == []


def test_init_refuses_a_bad_value_before_any_collective():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "from mpitrain.comm import init; init()"],
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "MPITRAIN_GPU_TRANSPORT": "pigeon",
                               "MPITRAIN_" + "TYPO": "1"})
    assert proc.returncode != 0 and "MPITRAIN_GPU_TRANSPORT" in proc.stderr and "pigeon" in proc.stderr
