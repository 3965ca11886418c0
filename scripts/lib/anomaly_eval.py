#!/usr/bin/env python3
"""Judges anomaly-detector variants the way operators meet them, on NAB and the generated corpus.

RESULTS/nab/<variant>/<category>/<name>.csv and RESULTS/gen/<variant>/... hold each variant's
scores (benches/anomaly_nab.rs); every variant's name ends in "@A", A its alarm threshold, which
is also the threshold its figures "at the rule's threshold" use (the detector reports an incident
once at A, so scoring it at any other level would not be what the rule sees).

Printed:
1. Every variant: false alarms on anomaly-free series (NAB artificialNoAnomaly and the
   generated genNoAnomaly), as samples at or above A per 10,000 samples and as alarms (a score
   at or above A after one below it) per 10,000, from the 30th sample of each series on; NAB and
   generated-corpus scores (standard profile) at A and at the best threshold.
2. Leave one category out over NAB's four labelled categories: among the variants whose alarms
   on the anomaly-free series stay at or under 1 per 10,000 samples, the one is chosen whose
   training score at its own A is highest, the training score being the mean of two: the NAB
   score on the other three categories (and artificialNoAnomaly), and the score on the whole
   generated corpus, which is always on the training side (so that no choice is made for NAB's
   four categories alone). The held-out category is then scored at that A and, for comparison
   with published figures, at the best threshold for the held-out category itself.
3. The same choice on all four categories: the shipped variant and the rule's threshold, with
   its figures on every category, on the generated corpus per category, and its false alarms
   per anomaly-free series.

Usage: anomaly_eval.py RESULTS NAB_ROOT GEN_ROOT
"""

import json
import os
import sys

FOLDS = ["artificialWithAnomaly", "realAWSCloudwatch", "realAdExchange", "realTweets"]
FREE = ["artificialNoAnomaly", "genNoAnomaly"]
PROFILES = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
WARMUP = 29
MAX_ALARMS_PER_10K = 1.0


def alarm_level(variant):
    return float(variant.rsplit("@", 1)[1])


def normalised(ns, files, cm, thr):
    per = [ns.score_file(f, cm, thr) for f in files]
    raw = sum(r["score"] for r in per)
    null = -cm["fnWeight"] * sum(r["windows"] for r in per)
    perfect = cm["tpWeight"] * sum(f["n_windows"] for f in files)
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)


def best(ns, files, cm):
    thr, _ = ns.optimise_threshold(files, cm)
    return normalised(ns, files, cm, thr), thr


def false_alarms(files, thr):
    """(samples >= thr, alarm onsets, samples) over files, from the 30th sample on."""
    over = onsets = samples = 0
    for f in files:
        prev = False
        for s in f["scores"][WARMUP:]:
            hit = s >= thr
            over += hit
            onsets += hit and not prev
            prev = hit
            samples += 1
    return over, onsets, samples


def per10k(x, n):
    return 1e4 * x / max(n, 1)


def load(ns, results, root, variants):
    windows = os.path.join(root, "labels", "combined_windows.json")
    out = {}
    for v in variants:
        files, _, _ = ns.load_corpus(os.path.join(results, v), root, windows)
        out[v] = files
    return out


def main():
    results, nab_root, gen_root = sys.argv[1:4]
    sys.path.insert(0, nab_root)
    import nab_score as ns

    with open(os.path.join(nab_root, "config", "profiles.json")) as fh:
        profiles = json.load(fh)
    cms = {p: profiles[p]["CostMatrix"] for p in PROFILES}
    std = cms["standard"]
    variants = sorted(
        d for d in os.listdir(os.path.join(results, "nab")) if "@" in d
    )
    nab = load(ns, os.path.join(results, "nab"), nab_root, variants)
    gen = load(ns, os.path.join(results, "gen"), gen_root, variants)
    cat = lambda f: f["rel"].split("/")[0]

    def free_files(v, exclude=None):
        return [f for f in nab[v] + gen[v] if cat(f) in FREE]

    print("1. every variant (standard profile; A = its alarm and rule threshold)")
    print("  %-34s %8s %8s %9s %9s %9s %9s" % (
        "variant", "over/10k", "alarm/10k", "NAB @A", "NAB best", "gen @A", "gen best"))
    calibrated = {}
    for v in variants:
        a = alarm_level(v)
        over, onsets, n = false_alarms(free_files(v), a)
        calibrated[v] = per10k(onsets, n) <= MAX_ALARMS_PER_10K
        print("  %-34s %8.2f %9.2f %9.2f %9.2f %9.2f %9.2f" % (
            v, per10k(over, n), per10k(onsets, n),
            normalised(ns, nab[v], std, a), best(ns, nab[v], std)[0],
            normalised(ns, gen[v], std, a), best(ns, gen[v], std)[0]))
    print("  (%d variants; calibrated = at most %.0f alarm per 10,000 anomaly-free samples: %s)" % (
        len(variants), MAX_ALARMS_PER_10K, ", ".join(v for v in variants if calibrated[v]) or "none"))

    def choose(train_of):
        """The calibrated variant with the best training score at its own A (ties: first)."""
        pick = None
        for v in variants:
            if not calibrated[v]:
                continue
            a = alarm_level(v)
            s = 0.5 * (normalised(ns, train_of(v), std, a) + normalised(ns, gen[v], std, a))
            if pick is None or s > pick[0]:
                pick = (s, v)
        return pick

    print("\n2. leave one category out (variant and A chosen on the other categories)")
    print("  %-22s %-30s %9s %9s %9s %9s %9s %9s %9s" % (
        "held out", "chosen", "train @A", "std @A", "lowFP @A", "lowFN @A", "std best",
        "lowFP bst", "lowFN bst"))
    sums = [0.0] * 6
    for held in FOLDS:
        pick = choose(lambda v: [f for f in nab[v] if cat(f) != held])
        if pick is None:
            print("  %-22s no calibrated variant" % held)
            continue
        v = pick[1]
        a = alarm_level(v)
        test = [f for f in nab[v] if cat(f) == held]
        row = [normalised(ns, test, cms[p], a) for p in PROFILES]
        row += [best(ns, test, cms[p])[0] for p in PROFILES]
        sums = [x + y for x, y in zip(sums, row)]
        print("  %-22s %-30s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f" % (held, v, pick[0], *row))
    print("  %-22s %-30s %9s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f" % (
        "mean of folds", "", "", *[s / len(FOLDS) for s in sums]))

    pick = choose(lambda v: nab[v])
    if pick is None:
        print("\n3. no calibrated variant")
        return
    v = pick[1]
    a = alarm_level(v)
    print("\n3. chosen on all four categories: %s, rule threshold %g" % (v, a))
    print("  %-22s %9s %9s %9s %9s %9s" % ("NAB", "std @A", "lowFP @A", "lowFN @A", "std best", "best thr"))
    for held in FOLDS + ["all 44 series"]:
        test = [f for f in nab[v] if held.startswith("all") or cat(f) == held]
        b, thr = best(ns, test, std)
        print("  %-22s %9.2f %9.2f %9.2f %9.2f %9.4g" % (
            held, *[normalised(ns, test, cms[p], a) for p in PROFILES], b, thr))
    print("  %-22s %9s %9s %9s %9s %9s" % ("generated", "std @A", "lowFP @A", "lowFN @A", "std best", "best thr"))
    gen_cats = sorted({cat(f) for f in gen[v]} - set(FREE))
    for g in gen_cats + ["all labelled"]:
        test = [f for f in gen[v] if (g.startswith("all") and cat(f) not in FREE) or cat(f) == g]
        b, thr = best(ns, test, std)
        print("  %-22s %9.2f %9.2f %9.2f %9.2f %9.4g" % (
            g, *[normalised(ns, test, cms[p], a) for p in PROFILES], b, thr))
    print("  false alarms at %g on anomaly-free series, from the 30th sample:" % a)
    print("  %-52s %8s %8s %9s" % ("series", "samples", "over", "alarms"))
    tot = [0, 0, 0]
    for f in free_files(v):
        over, onsets, n = false_alarms([f], a)
        tot = [tot[0] + over, tot[1] + onsets, tot[2] + n]
        if over:
            print("  %-52s %8d %8d %9d" % (f["rel"], n, over, onsets))
    print("  %-52s %8d %8d %9d" % ("all %d anomaly-free series" % len(free_files(v)), tot[2], tot[0], tot[1]))
    print("  per 10,000 samples: %.2f at or above the threshold, %.2f alarms" % (
        per10k(tot[0], tot[2]), per10k(tot[1], tot[2])))
    families = {}
    for f in free_files(v):
        name = f["rel"].split("/")[1][:-4]
        key = "NAB " + name if f["rel"].startswith("artificial") else "noise " + name.split("_")[2]
        fam = families.setdefault(key, [0, 0, 0])
        over, onsets, n = false_alarms([f], a)
        fam[0] += 1
        fam[1] += onsets
        fam[2] += n
    print("  by kind of series (alarms per 10,000 samples):")
    for key in sorted(families):
        k, onsets, n = families[key]
        print("    %-40s %3d series %9d samples %6.2f" % (key, k, n, per10k(onsets, n)))
    worst = max(per10k(false_alarms([f], a)[1], false_alarms([f], a)[2]) for f in free_files(v))
    above = sum(1 for f in free_files(v) if per10k(false_alarms([f], a)[1], false_alarms([f], a)[2]) > 1.0)
    print("  %d of %d series above 1 alarm per 10,000 samples; the worst %.2f" % (
        above, len(free_files(v)), worst))


if __name__ == "__main__":
    main()
