"""Link rates: what `--link` takes, and how one node's egress is shaped with tc.

    parse_rate("1gbit") -> 1e9 (bits per second); parse_rate("none") -> None (unshaped)

The shaper is a token bucket (tc's tbf) on the node's side of its veth: every byte the node
sends leaves at most at the rate. This kernel has tbf and htb but not netem, so links get a
bandwidth and no added latency (the veth's own round trip, some tens of microseconds, is what
there is).
"""
import re

UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
RATE = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+)$")


class LinkError(ValueError):
    """A --link value that is not a rate."""


def parse_rate(text):
    """Bits per second of a rate like 100mbit, 1gbit, 10gbit; None for 'none'."""
    text = str(text).strip().lower()
    if text == "none":
        return None
    match = RATE.match(text)
    if not match:
        raise LinkError(f"--link {text!r}: a rate is a number and a unit ({', '.join(UNITS)}), "
                        f"e.g. 100mbit, 1gbit, 10gbit, or none")
    number, unit = match.groups()
    if unit not in UNITS:
        raise LinkError(f"--link {text!r}: unknown unit {unit!r}; choose {', '.join(UNITS)}")
    bits = float(number) * UNITS[unit]
    if bits < 8e3:
        raise LinkError(f"--link {text!r}: below 8kbit, tc's token bucket cannot hold a packet")
    return bits


def tbf_args(bits_per_s):
    """tc arguments of a token bucket at this rate: a bucket of 4 ms of traffic, at least 256 KB
    (a veth hands over segments of up to 64 KB at once: a smaller bucket drops them)."""
    burst = max(int(bits_per_s / 8 * 0.004), 256 * 1024)
    return ["tbf", "rate", f"{int(bits_per_s)}bit", "burst", str(burst), "latency", "100ms"]
