"""A config written as JSON (what generators write) is read by the JSON parser, and gives what
the YAML parser gives; YAML flow style that is not strict JSON still reads as YAML."""

from __future__ import annotations

import json

import pytest
import yaml

from pathsteer.config.load import load_config
from pathsteer.errors import UsageError

DATA = {"paths": [{"name": "p1", "interface": "eth0", "gateway": "192.0.2.1", "probe": {"targets": ["192.0.2.1"]}}],
        "destinations": [{"prefix": "198.51.100.0/24", "policy": "failover", "paths": ["p1"]}]}


def test_json_and_yaml_give_the_same_config(tmp_path):
    j, y = tmp_path / "c.json", tmp_path / "c.yaml"
    j.write_text(json.dumps(DATA))
    y.write_text(yaml.safe_dump(DATA))
    assert load_config(j) == load_config(y)


def test_yaml_flow_style_is_still_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("{guard: {interfaces: [eth0], deny: [203.0.113.0/24]}}\n")
    assert load_config(f) == load_config_of(tmp_path, {"guard": {"interfaces": ["eth0"], "deny": ["203.0.113.0/24"]}})


def load_config_of(tmp_path, data):
    f = tmp_path / "block.yaml"
    f.write_text(yaml.safe_dump(data))
    return load_config(f)


def test_broken_json_is_a_one_line_yaml_error(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"paths": [}')
    with pytest.raises(UsageError) as exc:
        load_config(f)
    assert "not valid YAML" in str(exc.value) and "\n" not in str(exc.value)
