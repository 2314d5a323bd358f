"""Prometheus text exposition (format 0.0.4), written by hand: a few counters, gauges and histograms."""
from __future__ import annotations

import bisect
import collections
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float):
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.count}"]
        return out


class Metrics:
    """What the server counts; `render(gauges)` gives the /metrics text."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: collections.Counter = collections.Counter()  # (route, status) -> n
        self.latency: dict[str, Histogram] = {}
        self.ttft = Histogram()
        self.generated_tokens = 0

    def observe_request(self, route: str, status: int, seconds: float):
        with self.lock:
            self.requests[(route, status)] += 1
            self.latency.setdefault(route, Histogram()).observe(seconds)

    def observe_ttft(self, seconds: float):
        with self.lock:
            self.ttft.observe(seconds)

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """`gauges`: name -> (help, value), read at scrape time (queue depth, running batch size, ...)."""
        with self.lock:
            lines = ["# HELP leanformers_requests_total HTTP requests by route and status code.",
                     "# TYPE leanformers_requests_total counter"]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'leanformers_requests_total{{route="{_escape(route)}",status="{status}"}} {n}')
            lines += ["# HELP leanformers_generated_tokens_total Tokens generated for chat and completions.",
                      "# TYPE leanformers_generated_tokens_total counter",
                      f"leanformers_generated_tokens_total {self.generated_tokens}"]
            for name, (text, value) in gauges.items():
                lines += [f"# HELP leanformers_{name} {text}", f"# TYPE leanformers_{name} gauge",
                          f"leanformers_{name} {value}"]
            lines += ["# HELP leanformers_time_to_first_token_seconds From submission to the first generated token.",
                      "# TYPE leanformers_time_to_first_token_seconds histogram",
                      *self.ttft.lines("leanformers_time_to_first_token_seconds"),
                      "# HELP leanformers_request_latency_seconds From request to the end of the response.",
                      "# TYPE leanformers_request_latency_seconds histogram"]
            for route, histogram in sorted(self.latency.items()):
                lines += histogram.lines("leanformers_request_latency_seconds", f'route="{_escape(route)}"')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
