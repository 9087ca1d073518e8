"""One contract, one direction.

The topic contract is written once, in the firmware's topics.py: broker/acl, the bridge's
subscriptions and the README's table must say the same. And imports run one way: sensornet (the
Pi side) may use the firmware's topics.py and childproc; virtual_huzzah never imports sensornet,
and the Pi side's parts import virtual_huzzah only for the `sim` and `demo` commands.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from feather_huzzah import topics
from sensornet.envelope import SUBSCRIPTIONS
from tests.helpers import REPO

CID = "<client_id>"  # how the README writes a client id


# ---- the topic contract ----

def acl_rules(text: str) -> tuple[list[tuple[str, str]], dict[str, list[tuple[str, str]]]]:
    """broker/acl (str) -> (`pattern` rules, {user: `topic` rules}), each rule (access, topic filter).

    mosquitto.conf(5): `topic [read|write|readwrite|deny] <topic>` applies to the `user` above it
    (before any `user` line: to anonymous clients); `topic <topic>` alone means readwrite.
    """
    patterns: list[tuple[str, str]] = []
    users: dict[str, list[tuple[str, str]]] = {}
    user = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        words = rest.split(None, 1)
        if keyword == "user":
            user = rest.strip()
            users.setdefault(user, [])
        elif keyword in ("topic", "pattern"):
            rule = (words[0], words[1].strip()) if words[0] in ("read", "write", "readwrite", "deny") \
                else ("readwrite", rest.strip())
            if keyword == "pattern":
                patterns.append(rule)
            else:
                assert user is not None, f"broker/acl: {line!r} before any `user` line"
                users[user].append(rule)
        else:
            pytest.fail(f"broker/acl: unexpected line {line!r}")
    return patterns, users


def covers(acl_filter: str, subscription: str) -> bool:
    """True when every topic `subscription` (an MQTT topic filter) matches also matches `acl_filter`."""
    acl, sub = acl_filter.split("/"), subscription.split("/")
    for i, level in enumerate(acl):
        if level == "#":
            return True
        if i >= len(sub) or sub[i] == "#":
            return False
        if level != "+" and level != sub[i]:  # a literal level covers only itself, not + nor another name
            return False
    return len(sub) == len(acl)


def test_covers():
    assert covers("sensors/#", "sensors/+/+")
    assert covers("status/+", "status/+")
    assert covers("status/+", "status/huzzah-01")
    assert not covers("status/+", "status/#")
    assert not covers("sensors/+", "sensors/+/+")
    assert not covers("status/huzzah-01", "status/+")
    assert not covers("connect/+", "status/+")


def test_the_acl_lets_a_device_write_exactly_its_topics_from_topics_py():
    patterns, _ = acl_rules((REPO / "broker" / "acl").read_text())
    expected = [topics.connect("%u"), topics.status("%u"), topics.sensor("%u", "#"), topics.error("%u")]
    assert sorted(patterns) == sorted([("write", t) for t in expected] + [("read", topics.cmd("%u", "#"))])
    assert len(patterns) == len(set(patterns))


def test_the_bridge_account_reads_every_subscription_and_writes_nothing():
    _, users = acl_rules((REPO / "broker" / "acl").read_text())
    rules = users["bridge"]
    assert rules, "broker/acl: no rules for the bridge account"
    assert {access for access, _ in rules} == {"read"}
    assert SUBSCRIPTIONS  # connect/+, status/+, sensors/+/+
    for subscription in SUBSCRIPTIONS:
        assert [f for _, f in rules if covers(f, subscription)], f"the bridge may not read {subscription}"
    # and only what the contract's topics hold
    for _, acl_filter in rules:
        assert any(covers(acl_filter, s) or covers(s, acl_filter) for s in SUBSCRIPTIONS), acl_filter


def test_the_bridge_subscribes_to_the_topics_of_topics_py():
    assert sorted(SUBSCRIPTIONS) == sorted([topics.connect("+"), topics.status("+"), topics.sensor("+", "+")])
    for topic in (topics.connect("huzzah-01"), topics.status("huzzah-01"),
                  topics.sensor("huzzah-01", topics.TSL2561), topics.sensor("huzzah-01", topics.I2C)):
        assert [s for s in SUBSCRIPTIONS if covers(s, topic)], topic


def readme_section(title: str) -> str:
    """The text of the README's `## title` section (str), up to the next `## ` heading."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match[1]


def test_the_readme_topic_table_is_topics_py():
    rows = [line for line in readme_section("Topic contract").splitlines() if line.startswith("| `")]
    documented = {re.match(r"\| `([^`]+)`", row)[1] for row in rows}
    documented = {t for t in documented if CID in t}
    assert documented == {topics.connect(CID), topics.status(CID), topics.sensor(CID, topics.TSL2561),
                          topics.sensor(CID, topics.I2C), topics.sensor(CID, topics.BME280), topics.system(CID),
                          topics.cmd(CID, "<name>"), topics.error(CID)}
    assert len(rows) == len(documented)  # one row each, no other rows


# ---- imports run one way ----

def imported_after(*modules: str) -> set[str]:
    """Names in sys.modules (set of str) of a fresh Python after importing `modules`."""
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def of_package(names: set[str], package: str) -> list[str]:
    return sorted(n for n in names if n == package or n.startswith(package + "."))


def test_virtual_huzzah_does_not_import_sensornet():
    loaded = imported_after("virtual_huzzah.board", "virtual_huzzah.fleet", "virtual_huzzah.leds")
    assert {"virtual_huzzah.board", "virtual_huzzah.fleet", "virtual_huzzah.leds"} <= loaded
    assert of_package(loaded, "sensornet") == []


def test_the_pi_side_does_not_import_virtual_huzzah():
    modules = ("sensornet.bridge", "sensornet.broker", "sensornet.endpoint", "sensornet.cli")
    loaded = imported_after(*modules)
    assert set(modules) <= loaded
    assert of_package(loaded, "virtual_huzzah") == []


def imports_of(path: Path) -> list[str]:
    """Every module name (str) `path` imports: import and from-import statements anywhere in it,
    and importlib.import_module() / __import__() calls with a literal name."""
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.append(node.args[0].value)
    return names


def test_no_file_of_virtual_huzzah_imports_sensornet():
    files = sorted((REPO / "devices" / "virtual_huzzah").rglob("*.py"))
    assert REPO / "devices" / "virtual_huzzah" / "board.py" in files
    assert REPO / "devices" / "virtual_huzzah" / "vm" / "machine.py" in files
    for path in files:
        bad = [name for name in imports_of(path) if name.split(".")[0] == "sensornet"]
        assert bad == [], f"{path.relative_to(REPO)} imports {bad}"
