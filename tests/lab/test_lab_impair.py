"""Impairment accuracy with the real tools: delay, jitter, loss, down/up, change latency, rate.

Bounds are the issue's: RTT within ±1 ms or ±5% of 2·D (whichever is larger), loss within
±2 points over 1000 packets. Loss is drawn per direction, so a ping round trip is lost with
probability 1-(1-p)². Generous bounds only where timing is not what is tested.
"""

from __future__ import annotations

import time

import pytest

import pathsteer_lab as lab
from pathsteer_lab import delayline, measure


def rtt_tolerance_ms(two_d: float) -> float:
    return max(1.0, 0.05 * two_d)


@pytest.mark.parametrize("delay_ms", [5, 20, 60])
def test_rtt_matches_twice_the_delay(lab3, delay_ms):
    p = lab3.path("p2")
    lab.set_path(lab3.name, "p2", delay=f"{delay_ms}ms")
    for dst in (p.probe_address, p.probe_address6):
        r = measure.ping(lab3, dst, count=20, interval=0.05)
        assert r.received == 20
        assert abs(r.median - 2 * delay_ms) <= rtt_tolerance_ms(2 * delay_ms), (dst, r.rtts_ms)
        assert abs(r.min - 2 * delay_ms) <= rtt_tolerance_ms(2 * delay_ms), (dst, r.rtts_ms)


def test_delay_on_one_path_leaves_the_others_alone(lab3):
    lab.set_path(lab3.name, "p2", delay="30ms")
    r1 = measure.ping(lab3, lab3.path("p1").probe_address, count=10, interval=0.02)
    r3 = measure.ping(lab3, lab3.path("p3").probe_address, count=10, interval=0.02)
    assert r1.median < 2 and r3.median < 2


def test_jitter_is_measurable_and_bounded(lab3):
    lab.set_path(lab3.name, "p1", delay="20ms", jitter="4ms")
    r = measure.ping(lab3, lab3.path("p1").probe_address, count=200, interval=0.02)
    assert r.received == 200
    # Sum of two uniform(-4, 4) draws: stdev 4·sqrt(2/3) ≈ 3.27 ms, range 32..48 ms.
    assert 2.3 < r.stdev < 4.2, r.stdev
    assert abs(r.avg - 40) <= 2.0
    assert r.min >= 32 - 1 and r.max <= 48 + 3


@pytest.mark.parametrize("loss_pct", [1, 5])
def test_loss_per_direction(lab3, loss_pct):
    lab.set_path(lab3.name, "p3", loss=f"{loss_pct}%")
    r = measure.ping(lab3, lab3.path("p3").probe_address, count=1000, interval=0.003, timeout=1)
    p = loss_pct / 100
    expected = 100 * (1 - (1 - p) ** 2)
    assert abs(r.loss_pct - expected) <= 2.0, (r.loss_pct, expected)
    stats = delayline.request(lab3.control_socket, {"op": "stats"})["paths"]["p3"]
    out = stats["out"]
    assert out["received"] >= 1000
    assert abs(100 * out["lost"] / out["received"] - loss_pct) <= 2.0


def test_down_drops_everything_silently_and_up_restores(lab3):
    p = lab3.path("p2")
    lab.set_path(lab3.name, "p2", down=True)
    for dst in (p.probe_address, p.probe_address6):
        r = measure.ping(lab3, dst, count=20, interval=0.01, timeout=0.5)
        assert r.received == 0 and r.errors == 0, dst     # nothing back, not even ICMP errors
    # The router's link stays up, and the gateway itself answers (documented).
    assert "state UP" in lab3.run("router", ["ip", "link", "show", "dev", p.router_interface]).stdout
    assert measure.ping(lab3, p.gateway, count=1, interval=0.02).received == 1
    lab.set_path(lab3.name, "p2", down=False)
    r = measure.ping(lab3, p.probe_address, count=5, interval=0.02)
    assert r.received == 5


def test_down_keeps_delay_settings_and_set_changes_only_what_is_given(lab3):
    lab.set_path(lab3.name, "p2", delay="10ms", loss="0%")
    lab.set_path(lab3.name, "p2", down=True)
    lab.set_path(lab3.name, "p2", down=False)
    s = lab.set_path(lab3.name, "p2", rate="200mbit")
    assert (s.delay, s.rate, s.down) == (0.010, 200_000_000, False)
    r = measure.ping(lab3, lab3.path("p2").probe_address, count=10, interval=0.02)
    # the delay kept (20 ms, not 0 or 40); the delay line's own accuracy is tested elsewhere
    # (a loaded box adds a millisecond or two of scheduling to the user-space delay line)
    assert 19.0 <= r.median <= 23.0, r.rtts_ms
    s = lab.set_path(lab3.name, "p2", delay=0)
    assert s.delay == 0 and s.rate == 200_000_000
    r = measure.ping(lab3, lab3.path("p2").probe_address, count=10, interval=0.02)
    assert r.median < 2


def change_latency(t, path: str, old: str, new: str, old_rtt_ms: float, new_rtt_ms: float):
    """A UDP echo stream every 1 ms through ``path``; change its delay from ``old`` to ``new``.

    Returns (last, first) in seconds relative to set_path returning: when the last packet that
    still saw the old delay was sent, and when the first one with the new delay was sent.
    """
    p = t.path(path)
    lab.set_path(t.name, path, delay=old)
    with measure.UdpEcho(t, p.probe_address):
        proc = measure.udp_stream(t, p.probe_address, seconds=1.0, interval=0.001)
        time.sleep(0.5)
        lab.set_path(t.name, path, delay=new)
        t_return = time.time()
        sent, replies = measure.udp_stream_result(proc)
    assert len(replies) > 0.9 * sent > 500
    # Which delay a packet saw (accuracy is tested elsewhere; here only old or new matters).
    new_ones = [s for s, rtt in replies if abs(rtt - new_rtt_ms) < abs(rtt - old_rtt_ms)]
    old_ones = [s for s, rtt in replies if abs(rtt - new_rtt_ms) >= abs(rtt - old_rtt_ms)]
    assert old_ones and new_ones
    first_new = min(s for s in new_ones if s > max(old_ones) - 0.050)
    return max(old_ones) - t_return, first_new - t_return


@pytest.mark.parametrize("old,new,old_rtt,new_rtt",
                         [("5ms", "30ms", 10, 60), ("30ms", "5ms", 60, 10), ("0", "10ms", 0, 20), ("10ms", "0", 20, 0)])
def test_change_applies_within_10ms_while_traffic_flows(lab3, old, new, old_rtt, new_rtt):
    # A stall of the box (a shared 2-core machine running the suite) holds a few echoes 10 ms
    # or more, and with 0 ↔ 10 ms such an echo reads as the old delay: up to three attempts,
    # the delay line must switch within 10 ms in one of them (a real lag fails all three).
    attempts = []
    for _ in range(3):
        last_old, first_new = change_latency(lab3, "p1", old, new, old_rtt, new_rtt)
        attempts.append((round(last_old, 4), round(first_new, 4)))
        if last_old <= 0.010 and first_new <= 0.010:
            return
    pytest.fail(f"(last old, first new) after set_path returned, s: {attempts}")


def test_unimpaired_path_carries_500_mbit_tcp(lab3):
    with measure.IperfServer(lab3):
        bps = measure.iperf3_bps(lab3, lab3.server_addresses[0], seconds=3, streams=4)
    assert bps >= 500e6, bps


def test_rate_limits_both_directions(lab3):
    lab.set_path(lab3.name, "p1", rate="50mbit")
    with measure.IperfServer(lab3):
        up = measure.iperf3_bps(lab3, lab3.server_addresses[0], seconds=2, streams=4)
        time.sleep(1.0)  # iperf3's server takes a moment to be free again ("server is busy")
        down = measure.iperf3_bps(lab3, lab3.server_addresses[0], seconds=2, streams=4, reverse=True)
    for bps in (up, down):
        assert 35e6 <= bps <= 55e6, bps  # tbf's ceiling is the point; a CPU-starved iperf3 under-fills it
    lab.set_path(lab3.name, "p1", rate=0)
    assert "tbf" not in lab3.run("p1", ["tc", "qdisc", "show", "dev", "p-s"]).stdout
