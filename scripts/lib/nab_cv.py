#!/usr/bin/env python3
"""Leave-one-category-out cross-validation of anomaly-detector variants on the NAB part.

RESULTS holds one sub-folder per detector variant, each laid out as nab_score.py expects
(VARIANT/<category>/<name>.csv). For each of the four categories with labelled windows, the
variant and its thresholds (one per cost profile) are chosen on the other files (the three other
categories plus artificialNoAnomaly, which always stays on the training side) and then scored on
the held-out category alone, normalised against that category's own null and perfect scores.
Prints each fold, the mean of the folds, and the in-sample figure beside it for comparison.

Usage: nab_cv.py RESULTS NAB_ROOT [--variants a,b,...]
"""

import argparse
import os
import sys

FOLDS = ["artificialWithAnomaly", "realAWSCloudwatch", "realAdExchange", "realTweets"]
PROFILES = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]


def normalised(ns, files, cm, thr):
    per = [ns.score_file(f, cm, thr) for f in files]
    raw = sum(r["score"] for r in per)
    null = -cm["fnWeight"] * sum(r["windows"] for r in per)
    perfect = cm["tpWeight"] * sum(f["n_windows"] for f in files)
    return 100.0 * (raw - null) / (perfect - null), per


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("nab_root")
    ap.add_argument("--variants", default=None)
    a = ap.parse_args()
    sys.path.insert(0, a.nab_root)
    import json

    import nab_score as ns

    with open(os.path.join(a.nab_root, "config", "profiles.json")) as fh:
        profiles = json.load(fh)
    windows = os.path.join(a.nab_root, "labels", "combined_windows.json")
    names = sorted(d for d in os.listdir(a.results) if os.path.isdir(os.path.join(a.results, d)))
    if a.variants:
        keep = a.variants.split(",")
        names = [n for n in names if n in keep]
    corpora = {}
    for n in names:
        files, _, _ = ns.load_corpus(os.path.join(a.results, n), a.nab_root, windows)
        corpora[n] = files

    cat = lambda f: f["rel"].split("/")[0]
    # In-sample: every variant on all 44 series at its best threshold (what tuning sees).
    print("in-sample (all 44 series, best threshold per variant):")
    print("  %-28s %9s %9s %9s" % ("variant", "standard", "low FP", "low FN"))
    for n in names:
        row = []
        for p in PROFILES:
            cm = profiles[p]["CostMatrix"]
            thr, _ = ns.optimise_threshold(corpora[n], cm)
            row.append(normalised(ns, corpora[n], cm, thr)[0])
        print("  %-28s %9.2f %9.2f %9.2f" % (n, *row))

    print("\nleave-one-category-out (variant and thresholds chosen on the other categories):")
    print("  %-22s %-28s %9s %9s %9s %9s" % (
        "held out", "chosen variant", "threshold", "standard", "low FP", "low FN"))
    sums = [0.0, 0.0, 0.0]
    for held in FOLDS:
        best = None
        std = profiles["standard"]["CostMatrix"]
        for n in names:
            train = [f for f in corpora[n] if cat(f) != held]
            thr, _ = ns.optimise_threshold(train, std)
            s = normalised(ns, train, std, thr)[0]
            if best is None or s > best[0]:
                best = (s, n)
        n = best[1]
        train = [f for f in corpora[n] if cat(f) != held]
        test = [f for f in corpora[n] if cat(f) == held]
        row, thr_std = [], None
        for p in PROFILES:
            cm = profiles[p]["CostMatrix"]
            thr, _ = ns.optimise_threshold(train, cm)
            if p == "standard":
                thr_std = thr
            row.append(normalised(ns, test, cm, thr)[0])
        sums = [x + y for x, y in zip(sums, row)]
        print("  %-22s %-28s %9.4g %9.2f %9.2f %9.2f" % (held, n, thr_std, *row))
    k = len(FOLDS)
    print("  %-22s %-28s %9s %9.2f %9.2f %9.2f" % ("mean of folds", "", "", *[s / k for s in sums]))


if __name__ == "__main__":
    main()
