"""timeline.html and latency.svg of a run (plain SVG, no scripts).

timeline.html: time runs left to right. One lane per client: a client's
successive process ids (p, p + C, p + 2C, ... after each ``info``) share
its lane, as in Jepsen's numbering; each operation is a bar from invoke to
completion, green ok, orange fail, red info, grey never completed; hover a
bar for the operation. Nemesis windows are shaded bands across the lanes
with one labelled lane per nemesis kind on top; the "leader" lane shows which
node the harness's monitor saw as leader (polled every second).

latency.svg: one point per operation at (invoke time, latency), log scale;
colour by function, shape by outcome (dot ok, ring fail, cross info).
"""

import html
import math

from .history import NEMESIS, pair_ops

OUTCOME_COLORS = {"ok": "#5cb85c", "fail": "#f0ad4e", "info": "#d9534f",
                  None: "#aaaaaa"}
NEMESIS_COLORS = {"partition": "#5b8def", "kill": "#d9534f",
                  "pause": "#9b59b6", "clock": "#e67e22",
                  "member": "#16a085"}
F_COLORS = {"read": "#1f77b4", "write": "#2ca02c", "cas": "#9467bd",
            "stale-read": "#17becf", "add": "#2ca02c", "command": "#8c564b"}
NODE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


def esc(s):
    return html.escape(str(s), quote=True)


def nemesis_windows(events, end_ns):
    """[(kind, start_ns, stop_ns, start text, stop text)] from the
    start-X / stop-X pairs of the history."""
    open_ = {}
    out = []
    for ev in events:
        if ev.get("process") != NEMESIS:
            continue
        f = ev.get("f", "")
        if f.startswith("start-"):
            open_[f[6:]] = ev
        elif f.startswith("stop-"):
            k = f[5:]
            st = open_.pop(k, None)
            if st is not None:
                out.append((k, st["time"], ev["time"], st.get("value"),
                            ev.get("value")))
    for k, st in open_.items():
        out.append((k, st["time"], end_ns, st.get("value"), "(not stopped)"))
    out.sort(key=lambda w: w[1])
    return out


def leader_segments(samples, end_ns):
    """[(start_ns, stop_ns, leader or None, term)] from monitor samples."""
    segs = []
    for t, name, term in samples:
        if segs and segs[-1][2] == name and segs[-1][3] == term:
            continue
        if segs:
            segs[-1][1] = t
        segs.append([t, end_ns, name, term])
    return [tuple(s) for s in segs]


def _ticks(duration_s, every=None):
    if every is None:
        every = 10 if duration_s <= 400 else 30
    t = 0
    while t <= duration_s + 1e-9:
        yield t
        t += every


def timeline_html(events, leader_samples, concurrency, info, path,
                  final_process_base=None, px_per_s=None):
    end_ns = max([ev["time"] for ev in events] + [1])
    dur = end_ns / 1e9
    if px_per_s is None:
        px_per_s = max(2.0, min(20.0, 8000.0 / max(dur, 1.0)))
    left = 150
    width = int(left + dur * px_per_s + 40)
    lane_h = 14
    gap = 3

    def x(ns):
        return left + ns / 1e9 * px_per_s

    ops = pair_ops(events)
    windows = nemesis_windows(events, end_ns)
    kinds = []
    for w in windows:
        if w[0] not in kinds:
            kinds.append(w[0])
    lanes = []          # (label, kind)
    for k in kinds:
        lanes.append(("nemesis " + k, "nemesis:" + k))
    lanes.append(("leader", "leader"))
    for c in range(concurrency):
        lanes.append(("client %d" % c, "client:%d" % c))
    has_final = final_process_base is not None and any(
        isinstance(o["process"], int) and o["process"] > final_process_base
        for o in ops)
    if has_final:
        lanes.append(("final reads", "final"))
    lane_y = {}
    top = 30
    for i, (_, key) in enumerate(lanes):
        lane_y[key] = top + i * (lane_h + gap)
    height = top + len(lanes) * (lane_h + gap) + 30
    client_top = lane_y["client:0"] if concurrency else top
    out = []
    out.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" '
               'height="%d" font-family="sans-serif" font-size="10">'
               % (width, height))
    # Axis.
    for t in _ticks(dur):
        xx = x(t * 1e9)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" '
                   'stroke="#ddd"/>' % (xx, top - 5, xx, height - 25))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%ds</text>'
                   % (xx, top - 10, t))
    # Nemesis bands over the client lanes, and the nemesis lanes.
    for k, s, e, sv, ev in windows:
        col = NEMESIS_COLORS.get(k, "#888")
        w = max(1.0, x(e) - x(s))
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s" fill-opacity="0.10"/>'
                   % (x(s), client_top, w, height - 25 - client_top, col))
        y = lane_y["nemesis:" + k]
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
                   'fill-opacity="0.6"><title>%s\n%.1fs - %.1fs\nstart: %s\n'
                   'stop: %s</title></rect>'
                   % (x(s), y, w, lane_h, col, esc(k), s / 1e9, e / 1e9,
                      esc(sv), esc(ev)))
        label = str(sv)[:max(0, int(w / 6))]
        if label:
            out.append('<text x="%.1f" y="%d" fill="#000">%s</text>'
                       % (x(s) + 2, y + 10, esc(label)))
    # Leader lane.
    y = lane_y["leader"]
    for s, e, name, term in leader_segments(leader_samples, end_ns):
        if name is None:
            col = "#eeeeee"
            label = "none"
        else:
            idx = int(name[1:]) - 1 if name[1:].isdigit() else 0
            col = NODE_COLORS[idx % len(NODE_COLORS)]
            label = "%s t%d" % (name, term)
        w = max(1.0, x(e) - x(s))
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
                   'fill-opacity="0.7"><title>leader %s (term %s) %.1fs - '
                   '%.1fs</title></rect>' % (x(s), y, w, lane_h, col,
                                             esc(name), term, s / 1e9,
                                             e / 1e9))
        if w > 40:
            out.append('<text x="%.1f" y="%d">%s</text>'
                       % (x(s) + 2, y + 10, esc(label)))
    # Lane labels.
    for label, key in lanes:
        out.append('<text x="4" y="%d">%s</text>' % (lane_y[key] + 10,
                                                      esc(label)))
    # Operations.
    for o in ops:
        p = o["process"]
        if not isinstance(p, int):
            continue
        if has_final and p > final_process_base:
            key = "final"
        else:
            key = "client:%d" % (p % max(concurrency, 1))
        if key not in lane_y:
            continue
        inv = o["invoke"]
        comp = o["complete"]
        t1 = comp["time"] if comp else end_ns
        col = OUTCOME_COLORS.get(o["type"], "#aaa")
        xx = x(inv["time"])
        w = max(1.0, x(t1) - xx)
        val = comp.get("value") if comp and o["type"] == "ok" else \
            inv.get("value")
        tip = "process %s %s %s %s on %s\n%s %.1f ms%s" % (
            p, o["f"], o.get("key") or "", _short(val), o["node"],
            o["type"] or "incomplete", (t1 - inv["time"]) / 1e6,
            ("\n" + str(comp.get("error"))) if comp and comp.get("error")
            else "")
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s"><title>%s</title></rect>'
                   % (xx, lane_y[key] + 1, w, lane_h - 2, col, esc(tip)))
    out.append("</svg>")
    svg = "\n".join(out)
    legend = " ".join(
        '<span style="background:%s;padding:0 6px">&nbsp;</span> %s'
        % (c, esc(n)) for n, c in (("ok", OUTCOME_COLORS["ok"]),
                                   ("fail", OUTCOME_COLORS["fail"]),
                                   ("info", OUTCOME_COLORS["info"]),
                                   ("incomplete", OUTCOME_COLORS[None])))
    legend += " &nbsp; nemesis: " + " ".join(
        '<span style="background:%s;opacity:.6;padding:0 6px">&nbsp;</span> '
        '%s' % (NEMESIS_COLORS.get(k, "#888"), esc(k)) for k in kinds)
    doc = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
           "<title>%s</title>" % esc(info.get("title", "rems jepsen")),
           "<style>body{font-family:sans-serif;font-size:13px}"
           "table{border-collapse:collapse}td{padding:1px 8px}"
           "</style></head><body>",
           "<h2>%s</h2>" % esc(info.get("title", "rems jepsen")),
           "<table>"]
    for k, v in info.get("rows", []):
        doc.append("<tr><td><b>%s</b></td><td>%s</td></tr>" % (esc(k),
                                                               esc(v)))
    doc.append("</table><p>%s</p>" % legend)
    doc.append('<p>Hover a bar for the operation. '
               '<a href="latency.svg">latency</a> · '
               '<a href="results.json">results.json</a> · '
               '<a href="history.jsonl">history.jsonl</a></p>')
    doc.append('<div style="overflow-x:auto">%s</div></body></html>' % svg)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(doc))


def _short(v):
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def latency_svg(events, path, title="latency"):
    ops = [o for o in pair_ops(events) if o["complete"] is not None]
    end_ns = max([ev["time"] for ev in events] + [1])
    dur = max(end_ns / 1e9, 1.0)
    W, H = 1400, 560
    L, R, T, B = 70, 170, 30, 40
    pw, ph = W - L - R, H - T - B
    lo, hi = 0.1, 20000.0   # ms

    def x(ns):
        return L + ns / 1e9 / dur * pw

    def y(ms):
        ms = min(max(ms, lo), hi)
        return T + ph - (math.log10(ms) - math.log10(lo)) / \
            (math.log10(hi) - math.log10(lo)) * ph

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="18" font-size="13">%s</text>' % (L, esc(title))]
    for k, s, e, sv, _ in nemesis_windows(events, end_ns):
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s" fill-opacity="0.12"><title>%s: %s</title>'
                   '</rect>' % (x(s), T, max(1.0, x(e) - x(s)), ph,
                                NEMESIS_COLORS.get(k, "#888"), esc(k),
                                esc(sv)))
    for ms in (0.1, 1, 10, 100, 1000, 10000):
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>'
                   % (L, L + pw, y(ms), y(ms)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s ms</text>'
                   % (L - 4, y(ms) + 4, ("%g" % ms)))
    for t in _ticks(dur, 30 if dur > 300 else 10):
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%ds</text>'
                   % (x(t * 1e9), T + ph + 15, t))
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" '
               'stroke="#999"/>' % (L, T, pw, ph))
    seen = set()
    for o in ops:
        inv, comp = o["invoke"], o["complete"]
        ms = (comp["time"] - inv["time"]) / 1e6
        col = F_COLORS.get(o["f"], "#555")
        xx, yy = x(inv["time"]), y(ms)
        seen.add((o["f"], o["type"]))
        if o["type"] == "ok":
            out.append('<circle cx="%.1f" cy="%.1f" r="1.6" fill="%s"/>'
                       % (xx, yy, col))
        elif o["type"] == "fail":
            out.append('<circle cx="%.1f" cy="%.1f" r="2.2" fill="none" '
                       'stroke="%s" stroke-width="0.8"/>' % (xx, yy, col))
        else:
            out.append('<path d="M%.1f %.1fl4 4m0 -4l-4 4" stroke="%s" '
                       'stroke-width="1"/>' % (xx - 2, yy - 2, col))
    ly = T + 5
    for f in sorted(set(f for f, _ in seen)):
        out.append('<circle cx="%d" cy="%d" r="4" fill="%s"/>'
                   % (L + pw + 15, ly + 4, F_COLORS.get(f, "#555")))
        out.append('<text x="%d" y="%d">%s</text>' % (L + pw + 25, ly + 8,
                                                      esc(f)))
        ly += 16
    ly += 8
    for label, shape in (("ok", "dot"), ("fail", "ring"), ("info", "cross")):
        out.append('<text x="%d" y="%d">%s: %s</text>' % (L + pw + 10, ly,
                                                         shape, label))
        ly += 15
    ly += 8
    for k, c in NEMESIS_COLORS.items():
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s" '
                   'fill-opacity="0.3"/><text x="%d" y="%d">%s</text>'
                   % (L + pw + 10, ly, c, L + pw + 25, ly + 9, k))
        ly += 15
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out))
