"""`pathsteer probe` and `pathsteer reflector` (placeholder until telemetry lands)."""


def register(sub) -> None:
    pass
