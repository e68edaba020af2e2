import json, sys, statistics as st
from collections import defaultdict
res = json.load(open(sys.argv[1]))
g = defaultdict(list)
for r in res:
    g[(r["target"], r["strength"])].append(r)
    g[("ALL", r["strength"])].append(r)
print(f"{'target':11s} {'s':>4s} {'n':>3s} {'chroma':>6s} {'onsetF':>6s} {'cnn up':>6s} {'cnn top2':>8s} {'feat up':>7s} {'feat top2':>9s} {'dcnn':>6s} {'dfeat':>6s}")
for (t, s), rs in sorted(g.items()):
    n = len(rs)
    print(f"{t:11s} {s:4.2f} {n:3d} {st.median(r['chroma'] for r in rs):6.3f} {st.median(r['onset_f'] for r in rs):6.3f} "
          f"{sum(r['cnn_p']>r['cnn_p0'] for r in rs)/n:6.0%} {sum(r['cnn_rank']<=2 for r in rs)/n:8.0%} "
          f"{sum(r['feat_p']>r['feat_p0'] for r in rs)/n:7.0%} {sum(r['feat_rank']<=2 for r in rs)/n:9.0%} "
          f"{st.mean(r['cnn_p']-r['cnn_p0'] for r in rs):6.3f} {st.mean(r['feat_p']-r['feat_p0'] for r in rs):6.3f}")
