"""ExaBGP's JSON as pathsteer reads it (captured from ExaBGP 5.0.15 talking to BIRD 2.0.12);
garbage never raises."""

from __future__ import annotations

import ipaddress

from hypothesis import given, strategies as st

from pathsteer.bgp import messages
from pathsteer.bgp.learn import Learner
from pathsteer.config.bgp import PrefixFilter

STATE_UP = ('{ "exabgp": "5.0.0", "time": 1796620008.58, "host" : "vm", "pid" : 15553, "ppid" : 1, "counter": 2, '
            '"type": "state", "neighbor": { "address": { "local": "10.9.0.2", "peer": "10.9.0.1" }, "asn": '
            '{ "local": 65001, "peer": 65000 }, "router-id": "10.9.0.2" , "state": "up" } }')
UPDATE = ('{ "exabgp": "5.0.0", "time": 1796620008.62, "host" : "vm", "pid" : 15553, "ppid" : 1, "counter": 3, '
          '"type": "update", "neighbor": { "address": { "local": "10.9.0.2", "peer": "10.9.0.1" }, "asn": '
          '{ "local": 65001, "peer": 65000 }, "router-id": "10.9.0.2" , "direction": "receive", "message": '
          '{ "update": { "attribute": { "origin": "igp", "as-path": {"0": {"element": "as-sequence", "value": '
          '[65000]}}, "med": 20, "community": [[65000, 100]], "large-community": [ [ 65000, 7 , 1 ] ] }, '
          '"announce": { "ipv4 unicast": { "10.9.0.1": [ { "nlri": "192.0.2.0/24" }, { "nlri": "192.0.3.0/24" } ] } } '
          '} } } }')
WITHDRAW = ('{"type": "update", "neighbor": {"address": {"peer": "10.9.0.1"}, "message": {"update": '
            '{"withdraw": {"ipv4 unicast": [{"nlri": "192.0.2.0/24"}]}}}}}')
EOR = ('{"type": "update", "neighbor": {"address": {"peer": "10.9.0.1"}, "message": {"eor": '
       '{"afi": "ipv4", "safi": "unicast"}}}}')


def test_state_update_withdraw_eor_and_acks():
    s = messages.parse(STATE_UP)
    assert s == messages.State("10.9.0.1", "up", "")
    u = messages.parse(UPDATE)
    assert u.peer == "10.9.0.1" and [str(p) for p in u.announced] == ["192.0.2.0/24", "192.0.3.0/24"]
    assert u.communities == frozenset({(65000, 100), (65000, 7, 1)}) and u.med == 20 and u.as_path == (65000,)
    w = messages.parse(WITHDRAW)
    assert [str(p) for p in w.withdrawn] == ["192.0.2.0/24"] and not w.announced
    assert messages.parse(EOR).eor
    assert messages.parse("done\n") == messages.Ack(True) and messages.parse("error") == messages.Ack(False)


def test_garbage_is_named_not_raised():
    assert isinstance(messages.parse("{not json"), messages.Garbage)
    assert isinstance(messages.parse("[1, 2]"), messages.Garbage)
    bad = messages.parse('{"type": "update", "neighbor": {"address": {"peer": "x"}, "message": {"update": '
                         '{"announce": {"ipv4 unicast": {"1.2.3.4": [{"nlri": "300.1.2.0/24"}]}}}}}}')
    assert isinstance(bad, messages.Garbage) and "300.1.2.0/24" in bad.why
    assert isinstance(messages.parse('{"type": "notification"}'), messages.Other)


@given(st.text(max_size=300))
def test_any_text_parses_without_raising(text):
    messages.parse(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                        ["type", "neighbor", "address", "peer", "message", "update", "announce", "withdraw",
                         "attribute", "ipv4 unicast", "nlri", "community", "large-community", "eor", "state"]), c,
                        max_size=4), max_leaves=20))
def test_any_json_shape_parses_without_raising(doc):
    import json
    messages.parse(json.dumps(doc))


def _u(peer, ann=(), wd=(), comms=frozenset()):
    return messages.Update(peer, tuple(map(ipaddress.ip_network, ann)), tuple(map(ipaddress.ip_network, wd)),
                           frozenset(comms))


def test_learner_filters_counts_peers_and_forgets_a_peer_that_goes_down():
    lr = Learner((PrefixFilter.parse("192.0.0.0/16 le 24"),), frozenset({(65000, 7, 1)}), max=3)
    assert lr.update(_u("a", ["192.0.2.0/24", "10.0.0.0/8"], comms={(65000, 7, 1)})) == (1, 0)
    assert lr.update(_u("a", ["192.0.3.0/24"])) == (0, 0)  # no community
    assert lr.update(_u("b", ["192.0.2.0/24"], comms={(65000, 7, 1)})) == (0, 0)  # a second peer: same prefix
    assert lr.update(_u("a", wd=["192.0.2.0/24"])) == (0, 0)  # b still has it
    assert [str(p) for p in lr.prefixes()] == ["192.0.2.0/24"]
    assert lr.peer_down("b") == 1 and lr.prefixes() == []
    assert lr.update(_u("a", ["192.0.4.0/24", "192.0.5.0/24", "192.0.6.0/24", "192.0.7.0/24"],
                        comms={(65000, 7, 1)})) == (3, 0)
    assert lr.refused_over_max == 1


def test_learner_drops_a_prefix_announced_again_without_the_community():
    lr = Learner((), frozenset({(65000, 100)}))
    lr.update(_u("a", ["192.0.2.0/24"], comms={(65000, 100)}))
    assert lr.update(_u("a", ["192.0.2.0/24"], comms=set())) == (0, 1)
