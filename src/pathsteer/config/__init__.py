"""The daemon's configuration: pydantic models (`model`), YAML loading with one-line errors
that name the field and the value (`load`).

    config = load_config("/etc/pathsteer.yaml")   # ConfigError (exit 2) on any bad value
    config.control.socket, config.guard            # sections; None when absent

Sections: ``control`` (the control socket) and ``guard`` now; steering adds ``dataplane``,
``paths`` and ``destinations`` to `Config` (pathsteer.config.model) beside them.
"""

from pathsteer.config.load import ConfigError, format_validation_error, load_config, parse_config
from pathsteer.config.model import DEFAULT_SOCKET, Config, ControlConfig, GuardConfig, SteeringSection

__all__ = ["DEFAULT_SOCKET", "Config", "ConfigError", "ControlConfig", "GuardConfig", "SteeringSection", "format_validation_error",
           "load_config", "parse_config"]
