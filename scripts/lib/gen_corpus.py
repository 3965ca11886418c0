#!/usr/bin/env python3
"""A generated anomaly corpus in NAB's layout, deterministic from its seed.

Every series draws its own scale, noise (Gaussian, Laplace, Student t, AR(1), Poisson counts,
quantised), trend, daily cycle (four shapes, some with quieter weekends), random-walk drift,
sampling interval (15 s to 1 h, some irregular) and length. The labelled categories each carry
one or two anomalies of one kind:

  genSpike        one to three samples far off the expected value
  genLevelShift   the level moves and stays
  genTrendChange  a ramp starts
  genVariance     the noise grows or shrinks (to a third or less)
  genDailyBreak   a day-long stretch of a daily cycle goes flat, shifts phase or loses its swing
  genFlatline     the value sticks (a stuck sensor) or drops to zero
  genNoAnomaly    the same families with no anomaly (for the false-alarm rate; no windows)

Windows follow NAB's rule: 10 % of the series' rows, shared among its anomalies, centred on
each one's first anomalous row. Writes OUT/data/<category>/<name>.csv, OUT/labels/
combined_windows.json and OUT/config/profiles.json (NAB's three cost profiles), so that
nab_score.py and nab_cv.py score it exactly as they score NAB.

Usage: gen_corpus.py OUT [--per-category N] [--free N] [--seed S]
"""

import argparse
import json
import math
import os
import random
from datetime import datetime, timedelta, timezone

CATEGORIES = [
    "genSpike",
    "genLevelShift",
    "genTrendChange",
    "genVariance",
    "genDailyBreak",
    "genFlatline",
]
PROFILES = {
    "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
    "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}},
    "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}},
}
DAY = 86400.0
EPOCH = datetime(2020, 1, 6, tzinfo=timezone.utc)  # a Monday


def fmt(t):
    return (EPOCH + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")


def daily_shape(kind, phase):
    """A cycle of period 1 with values in about [-1, 1]."""
    x = 2 * math.pi * phase
    if kind == "sine":
        return math.sin(x)
    if kind == "peaky":
        return 2 * math.sin(0.5 * x) ** 4 - 0.75
    if kind == "square":
        return math.tanh(6 * math.sin(x))
    # business hours: two humps over the working day, quiet at night
    return (math.exp(-((phase - 0.42) / 0.06) ** 2) + 0.8 * math.exp(-((phase - 0.62) / 0.07) ** 2)) * 1.6 - 0.6


class Base:
    """The anomaly-free part of one series; `anomaly` edits happen on top of its samples."""

    def __init__(self, rng, n=None):
        self.rng = rng
        self.n = n or rng.randint(2500, 8000)
        self.dt = rng.choice([15, 60, 60, 300, 300, 300, 300, 600, 1800, 3600])
        self.irregular = rng.random() < 0.2
        self.level = 10 ** rng.uniform(-2, 6)
        self.noise_kind = rng.choice(["gauss", "gauss", "laplace", "student", "ar1", "poisson", "quantised"])
        self.sigma = self.level * 10 ** rng.uniform(-3, -0.7)
        if self.noise_kind == "poisson":
            self.level = rng.uniform(3, 300)
            self.sigma = math.sqrt(self.level)
        self.phi = rng.uniform(0.3, 0.95) if self.noise_kind == "ar1" else 0.0
        span = self.n * self.dt
        self.slope = 0.0
        if rng.random() < 0.4:
            self.slope = self.level * rng.uniform(-0.5, 2.0) / span
        self.daily = 0.0
        self.daily_kind = None
        self.weekend = 1.0
        if rng.random() < 0.5 and span > 1.5 * DAY:
            self.daily = self.level * rng.uniform(0.05, 0.8)
            self.daily_kind = rng.choice(["sine", "peaky", "square", "business"])
            if rng.random() < 0.3:
                self.weekend = rng.uniform(0.3, 0.7)
        self.walk = self.sigma * 0.05 if rng.random() < 0.15 else 0.0
        self.quantum = 0.0
        if self.noise_kind == "quantised":
            self.quantum = self.sigma * rng.choice([0.5, 1.0, 2.0])
        self.t0 = rng.randint(0, 6) * DAY + rng.randint(0, 95) * 900

    def times(self):
        t, out = self.t0, []
        for _ in range(self.n):
            out.append(t)
            step = self.dt
            if self.irregular:
                step = self.dt * self.rng.uniform(0.5, 1.5)
                if self.rng.random() < 0.005:
                    step += self.dt * self.rng.randint(5, 50)
            t += max(1.0, round(step))
        return out

    def noise(self):
        r = self.rng
        k = self.noise_kind
        if k == "laplace":
            return self.sigma / math.sqrt(2) * (r.expovariate(1) - r.expovariate(1))
        if k == "student":
            # t with 4 degrees of freedom, scaled to unit variance (variance 2).
            z = r.gauss(0, 1)
            chi = sum(r.gauss(0, 1) ** 2 for _ in range(4))
            return self.sigma * z / math.sqrt(chi / 4) / math.sqrt(2)
        return self.sigma * r.gauss(0, 1)

    def cycle(self, t):
        if not self.daily_kind:
            return 0.0
        c = self.daily * daily_shape(self.daily_kind, (t % DAY) / DAY)
        weekday = int(t // DAY) % 7
        if weekday >= 5:
            c = c * self.weekend - self.daily * (1 - self.weekend) * 0.5
        return c

    def sample_all(self, ts, edits):
        """Values at times ts; `edits` maps a row index to a function (row, value, state) -> value."""
        r = self.rng
        vals = []
        ar = 0.0
        walk = 0.0
        sig_scale = [1.0] * len(ts)
        for e in edits:
            if e[0] == "variance":
                for i in range(e[1], e[2]):
                    sig_scale[i] = e[3]
        for i, t in enumerate(ts):
            eps = self.noise()
            if self.noise_kind == "ar1":
                ar = self.phi * ar + math.sqrt(1 - self.phi ** 2) * eps
                e = ar
            else:
                e = eps
            walk += self.walk * r.gauss(0, 1)
            mean = self.level + self.slope * (t - ts[0]) + walk
            cyc = self.cycle(t)
            for ed in edits:
                if ed[0] == "daily" and ed[1] <= i < ed[2]:
                    if ed[3] == "flat":
                        cyc = 0.0
                    elif ed[3] == "phase":
                        cyc = self.cycle(t + ed[4])
                    else:
                        cyc *= ed[4]
                if ed[0] == "level" and i >= ed[1]:
                    mean += ed[2]
                if ed[0] == "ramp" and i >= ed[1]:
                    mean += ed[2] * (t - ts[ed[1]])
            mean += cyc
            if self.noise_kind == "poisson":
                lam = max(mean, 0.0)
                v = poisson(r, lam) * sig_scale[i] + lam * (1 - sig_scale[i]) if sig_scale[i] != 1.0 else poisson(r, lam)
            else:
                v = mean + e * sig_scale[i]
            if self.quantum:
                v = round(v / self.quantum) * self.quantum
            vals.append(v)
        for ed in edits:
            if ed[0] == "spike":
                for i in range(ed[1], ed[1] + ed[3]):
                    vals[i] = vals[i] + ed[2]
            if ed[0] == "flat":
                stuck = vals[ed[1] - 1] if ed[3] == "stuck" else 0.0
                for i in range(ed[1], ed[2]):
                    vals[i] = stuck
        return vals


def poisson(r, lam):
    if lam > 50:
        return max(0, round(r.gauss(lam, math.sqrt(lam))))
    el, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= el:
            return k
        k += 1


def spread(b):
    """Standard deviation of the stationary noise, the yardstick of anomaly sizes."""
    return b.sigma if b.noise_kind != "quantised" else max(b.sigma, b.quantum)


def make(category, rng):
    """(times, values, anomaly rows) of one series of `category`."""
    for _ in range(100):
        b = Base(rng)
        # A broken daily pattern needs a pattern learnt first: three days before the earliest
        # anomaly (at a quarter of the series) and a cycle that stands out of the noise.
        if category == "genDailyBreak" and (
            not b.daily_kind or b.n * b.dt < 12 * DAY or b.daily < 2 * spread(b)
        ):
            continue
        break
    else:
        raise SystemExit("no series of %s after 100 draws" % category)
    n = b.n
    ts = b.times()
    k = 1 if rng.random() < 0.7 else 2
    # Anomalies after the probation (15 %) and the warm-up, apart from each other.
    starts = sorted(rng.sample(range(int(0.25 * n), int(0.9 * n)), k))
    if k == 2 and starts[1] - starts[0] < 0.2 * n:
        k, starts = 1, starts[:1]
    s = spread(b)
    edits, rows = [], []
    for a in starts:
        sign = rng.choice([-1, 1])
        if category == "genSpike":
            size = sign * max(s * rng.uniform(6, 30), abs(b.daily) * rng.uniform(0.5, 1.5))
            if b.noise_kind == "poisson":
                size = abs(size) + b.level * rng.uniform(1, 4)
            edits.append(("spike", a, size, rng.choice([1, 1, 2, 3])))
        elif category == "genLevelShift":
            size = sign * s * rng.uniform(3, 12)
            if b.noise_kind == "poisson":
                size = abs(size)
            edits.append(("level", a, size))
        elif category == "genTrendChange":
            total = s * rng.uniform(8, 40) * sign
            edits.append(("ramp", a, total / max(1.0, (ts[-1] - ts[a]) * 0.3)))
        elif category == "genVariance":
            f = rng.choice([rng.uniform(3, 6), rng.uniform(0.05, 0.3)])
            end = min(n, a + int(rng.uniform(0.05, 0.3) * n))
            edits.append(("variance", a, end, f))
        elif category == "genDailyBreak":
            per_day = max(1, int(DAY / b.dt))
            end = min(n, a + int(per_day * rng.uniform(0.5, 1.5)))
            how = rng.choice(["flat", "phase", "swing"])
            arg = rng.uniform(0.25, 0.5) * DAY if how == "phase" else rng.uniform(0.0, 0.3)
            edits.append(("daily", a, end, how, arg))
        elif category == "genFlatline":
            end = min(n, a + max(10, int(rng.uniform(0.01, 0.05) * n)))
            edits.append(("flat", a, end, rng.choice(["stuck", "stuck", "zero"])))
        rows.append(a)
    vals = b.sample_all(ts, edits)
    return ts, vals, rows, b


def write(out, category, name, ts, vals, rows, windows):
    d = os.path.join(out, "data", category)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w") as fh:
        fh.write("timestamp,value\n")
        for t, v in zip(ts, vals):
            fh.write("%s,%.10g\n" % (fmt(t), v))
    n = len(ts)
    wins = []
    if rows:
        width = int(0.1 * n / len(rows))
        for a in rows:
            lo = max(0, a - width // 2)
            hi = min(n - 1, lo + width - 1)
            wins.append([fmt(ts[lo]) + ".000000", fmt(ts[hi]) + ".000000"])
    windows["%s/%s" % (category, name)] = wins


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--per-category", type=int, default=20)
    ap.add_argument("--free", type=int, default=40)
    ap.add_argument("--seed", type=int, default=26)
    a = ap.parse_args()
    windows = {}
    for ci, cat in enumerate(CATEGORIES):
        for j in range(a.per_category):
            rng = random.Random(a.seed * 1_000_003 + ci * 10_007 + j)
            ts, vals, rows, b = make(cat, rng)
            name = "%s_%02d_%s_%s.csv" % (cat[3:].lower(), j, b.noise_kind, b.daily_kind or "flat")
            write(a.out, cat, name, ts, vals, rows, windows)
    for j in range(a.free):
        rng = random.Random(a.seed * 1_000_003 + 99 * 10_007 + j)
        b = Base(rng, n=10_000)
        if j % 10 == 0:
            # Shapes with no noise at all: a constant, a clean line, a clean cycle.
            b.sigma = 0.0
            b.walk = 0.0
            b.quantum = 0.0
            if b.noise_kind == "poisson":
                b.noise_kind = "gauss"
        ts = b.times()
        vals = b.sample_all(ts, [])
        name = "free_%02d_%s_%s.csv" % (j, b.noise_kind, b.daily_kind or "flat")
        write(a.out, "genNoAnomaly", name, ts, vals, [], windows)
    os.makedirs(os.path.join(a.out, "labels"), exist_ok=True)
    with open(os.path.join(a.out, "labels", "combined_windows.json"), "w") as fh:
        json.dump(windows, fh, indent=1, sort_keys=True)
    os.makedirs(os.path.join(a.out, "config"), exist_ok=True)
    with open(os.path.join(a.out, "config", "profiles.json"), "w") as fh:
        json.dump(PROFILES, fh, indent=1)


if __name__ == "__main__":
    main()
