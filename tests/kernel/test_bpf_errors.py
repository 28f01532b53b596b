"""Failures surface as one clear exception: the verifier's, and no root."""

from __future__ import annotations

import textwrap

import pytest

from pathsteer.bpf import BpfObject, load_object
from pathsteer.errors import BpfError


def test_verifier_rejection_carries_the_log(test_objects, netns):
    with pytest.raises(BpfError) as info:
        load_object(test_objects["bad_verifier"])
    err = info.value
    assert type(err) is BpfError
    assert str(err).startswith("loading BPF object bad_verifier: ")
    assert "verifier in program xdp_unchecked_read: invalid access to packet" in str(err)
    assert "-- BEGIN PROG LOAD LOG --" in err.log and "invalid access to packet" in err.log
    assert err.errno != 0


def test_bad_object_can_still_be_opened_and_closed(test_objects):
    with BpfObject.open(test_objects["bad_verifier"]) as obj:
        assert obj.program_names == ["xdp_unchecked_read"]


def test_not_root_is_unsupported(as_nobody):
    """As nobody (no capabilities): loading gives UnsupportedError, from any checkout."""
    script = textwrap.dedent("""
        import os, sys
        from pathsteer.bpf import load_object
        from pathsteer.errors import UnsupportedError
        assert os.geteuid() == 65534
        try:
            load_object("counters")
        except UnsupportedError as exc:
            print("UNSUPPORTED", exc); sys.exit(0)
        except Exception as exc:
            print("OTHER", type(exc).__name__, exc); sys.exit(1)
        print("LOADED"); sys.exit(1)
    """)
    proc = as_nobody(["-c", script], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "needs root" in proc.stdout
