"""Every curl command in the README's examples section works against the demo, as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## The DHIS2 documentation's examples"


def readme_commands() -> list[str]:
    """The curl commands of the examples section, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command.startswith("curl "):
                commands.append(command)
    return commands


def test_the_readme_has_the_doc_examples() -> None:
    commands = readme_commands()
    assert len(commands) >= 15
    assert any("message.xml" in c and "application/xml" in c for c in commands)
    assert any("-X DELETE" in c and "mc=WzMRrCosqc0" in c for c in commands)


def test_every_readme_curl_command_succeeds_against_the_demo(any_server: LiveServer, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is required for the README test")
    values: dict[str, str] = {}
    for command in readme_commands():
        for name, value in values.items():
            command = command.replace(f"<{name}>", value)
        assert "<" not in command.replace("<uid>", "").replace("<attachment id>", ""), command
        command = command.replace("http://localhost:8080", any_server.url)
        body, headers = tmp_path / "body", tmp_path / "headers"
        result = subprocess.run(
            f"{command} -s -o {body} -D {headers} -w '%{{http_code}}'",
            shell=True, cwd=ROOT / "examples", capture_output=True, text=True, timeout=60, check=False,
        )
        status = int(result.stdout or 0)
        assert 200 <= status < 300, f"{command}\n-> {status} {body.read_text(errors='replace')}"
        if "/attachments" in command and "-F file=" in command:
            values["attachment id"] = json.loads(body.read_text())["id"]
        location = re.search(r"^location: .*/messageConversations/(\w{11})", headers.read_text(), flags=re.I | re.M)
        if "/feedback" in command and location:
            values["uid"] = location.group(1)
    assert {"attachment id", "uid"} <= set(values)
