"""`pathsteer lab` commands (placeholder until the lab lands)."""


def register(sub) -> None:
    pass
