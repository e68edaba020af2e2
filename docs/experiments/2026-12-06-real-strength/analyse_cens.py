import json, sys, statistics as st
from collections import defaultdict
res = json.load(open(sys.argv[1])); g = defaultdict(list)
for r in res:
    g[(r["target"], r["rhythm"], r["strength"])].append(r); g[("ALL", r["rhythm"], r["strength"])].append(r)
for k, rs in sorted(g.items()):
    print(f"{k[0]:11s} {k[1]:8s} {k[2]:4.2f} n={len(rs):3d} chroma {st.median(r['chroma'] for r in rs):.3f} cens {st.median(r['cens'] for r in rs):.3f}")
