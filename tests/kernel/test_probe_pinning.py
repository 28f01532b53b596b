"""`pathsteer probe` is pinned: it leaves by the interface and gateway it is given, whatever
the main table says about the target, and keeps measuring while paths go down."""

import pytest
from test_probe_netns import GW, PYTHON, TARGET4, TARGET6, two_paths  # noqa: F401 - fixture

COUNT = "20"


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_pinned_to_path_b_while_main_table_says_a(two_paths, family):
    target = TARGET4 if family == 4 else TARGET6
    gw = GW["b"][0 if family == 4 else 1]
    a0, b0 = two_paths.tx_packets("pa"), two_paths.tx_packets("pb")
    rc, r = two_paths.probe_json(target, "--interface", "pb", "--gateway", gw,
                                 "--count", COUNT, "--interval", "10ms")
    assert rc == 0, r
    assert r["sent"] == 20 and r["received"] == 20 and r["loss_pct"] == 0
    assert r["gateway_neighbour"] in ("reachable", "stale", "delay", "probe"), r
    assert 0 < r["rtt_ms"]["min"] <= r["rtt_ms"]["p50"] <= r["rtt_ms"]["p95"] <= r["rtt_ms"]["max"] < 50
    assert r["late"] == r["duplicate"] == r["foreign"] == 0
    assert two_paths.tx_packets("pb") - b0 >= 20
    assert two_paths.tx_packets("pa") - a0 < 5  # neighbour discovery at most, no probes
    # nothing left behind: rules and the per-path table are gone
    rules = two_paths.ns(two_paths.prober, "ip", f"-{family}", "rule", "show").stdout
    assert "fwmark" not in rules, rules


@pytest.mark.parametrize("family", [4, 6])
def test_keeps_measuring_b_while_a_is_down_and_reports_a_down(two_paths, family):
    target = TARGET4 if family == 4 else TARGET6
    two_paths.link(two_paths.target, "ta", False)  # path A is broken at the far end
    rc, r = two_paths.probe_json(target, "--interface", "pb", "--gateway", GW["b"][family == 6],
                                 "--count", "10", "--interval", "10ms")
    assert rc == 0 and r["received"] == 10, r
    rc, r = two_paths.probe_json(target, "--interface", "pa", "--gateway", GW["a"][family == 6],
                                 "--count", "5", "--interval", "10ms", "--timeout", "200ms")
    assert rc == 1, r  # like ping: nothing answered
    assert r["sent"] == 5 and r["received"] == 0 and r["loss_pct"] == 100.0


@pytest.mark.parametrize("family", [4, 6])
def test_udp_twamp_pinned_with_reflector(two_paths, family):
    target = TARGET4 if family == 4 else TARGET6
    refl = two_paths.start_reflector("--port", "8620")
    b0, a0 = two_paths.tx_packets("pb"), two_paths.tx_packets("pa")
    rc, r = two_paths.probe_json(target, "--interface", "pb", "--gateway", GW["b"][family == 6],
                                 "--method", "udp", "--port", "8620", "--count", COUNT, "--interval", "10ms")
    assert rc == 0 and r["received"] == 20 and r["foreign"] == 0, r
    assert r["method"] == "udp" and r["port"] == 8620
    assert r["rtt_ms"]["p50"] < 20
    assert two_paths.tx_packets("pb") - b0 >= 20 and two_paths.tx_packets("pa") - a0 < 5
    refl.terminate()
    _, err = refl.communicate(timeout=10)
    assert refl.returncode == 0 and "reflected 20" in err, err


def test_unreachable_gateway_is_a_network_condition(two_paths):
    rc, r = two_paths.probe_json(TARGET4, "--interface", "pb", "--gateway", "10.77.2.99",
                                 "--count", "3", "--interval", "10ms", "--timeout", "300ms")
    assert rc == 1 and r["received"] == 0 and r["loss_pct"] == 100.0, r
    assert r["gateway_neighbour"] in ("incomplete", "failed"), r
    t = two_paths.pathsteer("probe", TARGET4, "--interface", "pb", "--gateway", "10.77.2.99",
                            "--count", "2", "--interval", "10ms", "--timeout", "300ms")
    assert t.returncode == 1 and "hint: gateway 10.77.2.99 did not answer ARP on pb" in t.stderr, t.stderr
    assert "Traceback" not in t.stderr


def test_gateway_off_subnet_is_still_tried_onlink(two_paths):
    rc, r = two_paths.probe_json(TARGET4, "--interface", "pb", "--gateway", "203.0.113.9",
                                 "--count", "2", "--interval", "10ms", "--timeout", "300ms")
    assert rc == 1 and r["loss_pct"] == 100.0, r


def test_without_gateway_uses_routes_via_the_interface(two_paths):
    # no route to the target via pb: the kernel takes it as on-link on pb; give the target
    # ns an address there so that it answers ARP for it
    two_paths.ns(two_paths.target, "ip", "addr", "add", "10.77.2.77/32", "dev", "tb")
    two_paths.ns(two_paths.target, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0")
    rc, r = two_paths.probe_json("10.77.2.2", "--interface", "pb", "--count", "5", "--interval", "10ms")
    assert rc == 0 and r["received"] == 5, r


def test_text_summary(two_paths):
    r = two_paths.pathsteer("probe", TARGET4, "--interface", "pb", "--gateway", GW["b"][0],
                            "--count", "3", "--interval", "10ms")
    assert r.returncode == 0, r.stderr
    assert "3 sent, 3 received, 0% loss" in r.stdout
    assert "rtt min/avg/p50/p95/max" in r.stdout


def test_strict_rp_filter_drops_replies_and_is_hinted(two_paths):
    two_paths.ns(two_paths.prober, "sysctl", "-qw", "net.ipv4.conf.pb.rp_filter=1")
    r = two_paths.pathsteer("probe", TARGET4, "--interface", "pb", "--gateway", GW["b"][0],
                            "--count", "3", "--interval", "10ms", "--timeout", "200ms")
    assert r.returncode == 1 and "3 sent, 0 received, 100% loss" in r.stdout
    assert "rp_filter is strict (1) on pb" in r.stderr
    two_paths.ns(two_paths.prober, "sysctl", "-qw", "net.ipv4.conf.pb.rp_filter=2")
    r = two_paths.pathsteer("probe", TARGET4, "--interface", "pb", "--gateway", GW["b"][0],
                            "--count", "3", "--interval", "10ms")
    assert r.returncode == 0 and "3 received" in r.stdout, r.stdout + r.stderr


def test_sigterm_prints_what_was_measured(two_paths):
    import json
    import signal
    import time

    p = two_paths.spawn(two_paths.prober, PYTHON, "-m", "pathsteer", "probe", TARGET4, "--interface", "pb",
                        "--gateway", GW["b"][0], "--count", "100000", "--interval", "10ms", "--json")
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert "Traceback" not in err
    r = json.loads(out)
    assert p.returncode == 0 and 20 < r["sent"] < 100000 and r["received"] >= r["sent"] - 2
    rules = two_paths.ns(two_paths.prober, "ip", "rule", "show").stdout
    assert "fwmark" not in rules


def test_ipv6_link_local_gateway(two_paths):
    out = two_paths.ns(two_paths.target, "ip", "-6", "addr", "show", "dev", "tb", "scope", "link").stdout
    lladdr = out.split("inet6 ")[1].split("/")[0]
    rc, r = two_paths.probe_json(TARGET6, "--interface", "pb", "--gateway", lladdr,
                                 "--count", "5", "--interval", "10ms")
    assert rc == 0 and r["received"] == 5, r
