"""A small typed layer over the system libbpf (``libbpf.so.1``, 1.1, through ctypes).

::

    bpf/*.bpf.c ──make bpf──► objects/*.bpf.o ──BpfObject.open/load──► Program, Map
                                   │                                      │        │
                                   └─ BTF: shared enums (btf.py) ─────────┘   typed, checked
                                                                              against BTF
    Program ──attach.py──► XDP (native → generic) / TC clsact filter at (handle, priority)
            ──testrun.py─► BPF_PROG_TEST_RUN          Map ──ringbuf.py─► records
    re-find: interface ─► prog id ─► Program.from_id ─► map ids ─► Map.from_id  (no pins needed)

Modules: ``libbpf`` raw prototypes, option structs, errors and the captured libbpf log;
``btf`` enum values and layout checks; ``object`` objects and programs; ``maps`` typed maps;
``pins`` bpffs; ``attach`` XDP and TC; ``netns`` run a block in a named netns; ``testrun``; ``ringbuf``; ``build`` (clang for tests);
``tc_order`` each TC program's (handle, priority) from BTF; ``counters`` the per-interface
counter program.
"""

from pathsteer.bpf.attach import (
    TcAttachment, TcDirection, XdpAttachment, XdpMode, attach_tc, attach_xdp, detach_tc, detach_xdp,
    ifindex_of, tc_program_id, xdp_program_id, xdp_query,
)
from pathsteer.bpf.btf import Btf, check_type
from pathsteer.bpf.maps import Map, MapType, UpdateFlag, sum_values
from pathsteer.bpf.netns import in_netns
from pathsteer.bpf.object import BpfObject, Program, ProgType, load_object, object_path
from pathsteer.bpf.pins import PIN_ROOT, ensure_bpffs, open_pinned_map, open_pinned_program, pin_path, unpin
from pathsteer.bpf.ringbuf import RingBuffer
from pathsteer.bpf.testrun import RunResult, prog_test_run

__all__ = [
    "Btf", "BpfObject", "Map", "MapType", "PIN_ROOT", "Program", "ProgType", "RingBuffer", "RunResult",
    "TcAttachment", "TcDirection", "UpdateFlag", "XdpAttachment", "XdpMode", "attach_tc", "attach_xdp",
    "check_type", "detach_tc", "detach_xdp", "ensure_bpffs", "ifindex_of", "in_netns", "load_object", "object_path",
    "open_pinned_map", "open_pinned_program", "pin_path", "prog_test_run", "sum_values", "tc_program_id",
    "unpin", "xdp_program_id", "xdp_query",
]
