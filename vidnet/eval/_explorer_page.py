"""The style and script of the results explorer page (`vidnet.eval.explorer`), inlined into every page.

The script reads the page's JSON (``#vidnet-data``) and draws everything with DOM calls and SVG strings whose
text is escaped: names and keys from other people's files never reach the page as markup. It loads nothing.
"""

PAGE_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:10px 18px}header h1{font-size:18px;margin:0 0 6px}
#run dl{display:grid;grid-template-columns:max-content auto;gap:1px 12px;margin:0;font-size:13px}
#run dt{color:#b0bec5}#run dd{margin:0;word-break:break-all}
nav{position:sticky;top:0;background:#eceff1;padding:6px 18px;z-index:2;border-bottom:1px solid #cfd8dc}
nav a{margin-right:12px;color:#1565c0;text-decoration:none}
main{padding:0 18px 40px}section{margin-top:18px}h2{font-size:16px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left}
th[data-sort]{cursor:pointer;background:#f1f1f1}th[data-sort]:hover{background:#e3f2fd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.hint{color:#666;font-size:12px}pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;max-height:360px}
#curves{display:flex;flex-wrap:wrap;gap:10px}#curves svg{background:#fff;border:1px solid #ddd}
#curves circle{cursor:crosshair}#cm{overflow:auto;max-height:1100px}#cm svg{background:#fff}
rect.cell{cursor:pointer}rect.cell:hover{stroke:#000;stroke-width:1}
.filters{display:flex;flex-wrap:wrap;gap:6px;align-items:center;font-size:13px}
#clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:8px}
.clip{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px;display:flex;gap:8px;font-size:12px}
.clip img,.nothumb{width:96px;min-width:96px;height:auto;image-rendering:auto;align-self:flex-start}
.nothumb{height:72px;background:#eee;color:#777;font-size:10px;display:flex;align-items:center;
text-align:center;overflow:hidden}
.clip .key{font-weight:600;word-break:break-all}.clip ol{margin:2px 0 0 16px;padding:0}
.bad{color:#c62828}.ok{color:#2e7d32}.bar{display:inline-block;height:6px;background:#90caf9;margin:0 4px}
button.link{border:0;background:none;color:#1565c0;cursor:pointer;padding:0 2px;font-size:12px}
"""

PAGE_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById("vidnet-data").textContent);
const C = D.classes, N = C.length, K = D.clips, B = D.compare, NC = K.key.length, PAGE = 60;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
  "'": "&#39;"})[c]);
const pct = (v) => (v === null || v === undefined) ? "n/a" : (100 * v).toFixed(2) + "%";
const num = (v, d = 4) => (v === null || v === undefined) ? "n/a" : (Math.abs(v) < 1e-3 && v !== 0 ?
  v.toExponential(2) : (+v).toFixed(d));
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const kid of kids) e.append(kid);
  return e;
}
const pred = K.top.map((t) => t[0]);
const predB = B ? B.top.map((t) => t[0]) : null;
const known = (i) => K.label[i] >= 0;
const wrong = (i) => known(i) && pred[i] !== K.label[i];
const wrongB = (i) => known(i) && predB[i] !== K.label[i];
const cm = Array.from({length: N}, () => new Array(N).fill(0));
for (let i = 0; i < NC; i++) if (known(i)) cm[K.label[i]][pred[i]]++;
const support = cm.map((r) => r.reduce((a, b) => a + b, 0));
const acc = cm.map((r, i) => support[i] ? r[i] / support[i] : null);
let nWrong = 0;
for (let i = 0; i < NC; i++) if (wrong(i)) nWrong++;

function renderRun() {
  const t = D.test, r = D.run, dl = el("dl");
  const items = [["network", D.network], ["predictions", D.model], ["dataset", t.dataset], ["split", t.split],
    ["checkpoint", t.checkpoint], ["explored", D.protocol_title]];
  if (r) {
    items.push(["run folder", r.dir], ["epochs trained", r.epochs]);
    if (r.best) items.push(["best epoch", `${r.best.epoch} (val top-1 ${pct(r.best.top1)}, loss ${num(r.best.loss)})`]);
  }
  for (const [k, v] of items) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", {text: k}),
    el("dd", {text: String(v)}));
  $("run").append(dl);
  const tab = el("table", {id: "protocol-table"});
  const ks = [...new Set(D.protocols.flatMap((p) => Object.keys(p.topk)))].sort((a, b) => a - b);
  tab.append(el("tr", {}, ...["protocol", "videos", ...ks.map((k) => "top-" + k), "mean class acc", "loss"]
    .map((h) => el("th", {text: h}))));
  for (const p of D.protocols) {
    tab.append(el("tr", {"data-protocol": p.name}, el("td", {text: p.title}), el("td", {class: "num", text: p.videos}),
      ...ks.map((k) => el("td", {class: "num", text: pct(p.topk[k])})),
      el("td", {class: "num", text: pct(p.mean_class_accuracy)}), el("td", {class: "num", text: num(p.loss)})));
  }
  const counts = el("p", {}, "explored: ", el("b", {text: D.protocol_title}), ", ",
    el("span", {id: "n-classes", "data-count": N, text: `${N} classes`}), ", ",
    el("span", {id: "n-clips", "data-count": NC, text: `${NC} clips`}), ", ",
    el("span", {id: "n-wrong", "data-count": nWrong, text: `${nWrong} mispredicted`}),
    D.thumbs.failed ? el("span", {class: "bad", text: ` (${D.thumbs.failed} thumbnails could not be drawn)`}) : "");
  $("protocols").append(tab, counts);
  $("config").textContent = r && r.config ? r.config : "(no training run folder given)";
}

const METRICS = [["loss", "loss"], ["top1", "top-1"], ["top5", "top-5"], ["lr", "learning rate"],
  ["clips_per_s", "clips/s"]];
const COLOURS = {train: "#1f77b4", val: "#d62728"};
function renderCurves() {
  const r = D.run;
  if (!r) { $("curves").textContent = "No training run: `vidnet report RUN_DIR --html` draws its curves."; return; }
  const W = 300, H = 180, L = 52, R = 10, T = 22, Bm = 28;
  for (const [col, title] of METRICS) {
    const series = ["train", "val"].map((ph) => [ph, (r.curves[ph] || {}).epoch || [], (r.curves[ph] || {})[col] || []])
      .filter(([, , v]) => v.some((x) => x !== null));
    if (!series.length) continue;
    const xs = series.flatMap(([, e]) => e), ys = series.flatMap(([, , v]) => v.filter((x) => x !== null));
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 + 1e-9; y1 += Math.abs(y1) * 0.1 + 1e-9; }
    const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), sy = (y) => H - Bm - (y - y0) / (y1 - y0) * (H - T - Bm);
    const parts = [`<svg class="curve" data-metric="${col}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
      `<text x="${W / 2}" y="14" text-anchor="middle" font-size="12" font-weight="600">${esc(title)}</text>`,
      `<line x1="${L}" y1="${H - Bm}" x2="${W - R}" y2="${H - Bm}" stroke="#999"/>`,
      `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - Bm}" stroke="#999"/>`];
    for (const [y, v] of [[y0, y0], [y1, y1], [(y0 + y1) / 2, (y0 + y1) / 2]])
      parts.push(`<text x="${L - 3}" y="${sy(y) + 4}" text-anchor="end" font-size="10">${esc(num(v, 3))}</text>`);
    for (const x of [...new Set([Math.min(...xs), Math.max(...xs)])])
      parts.push(`<text x="${sx(x)}" y="${H - Bm + 13}" text-anchor="middle" font-size="10">${x}</text>`);
    parts.push(`<text x="${(W + L) / 2}" y="${H - 3}" text-anchor="middle" font-size="10">epoch</text>`);
    let lx = W - R - 2;
    for (const [ph, ep, v] of series) {
      const pts = ep.map((e, i) => v[i] === null ? null : [sx(e), sy(v[i]), e, v[i]]).filter((p) => p);
      parts.push(`<polyline fill="none" stroke="${COLOURS[ph]}" stroke-width="1.5" points="${
        pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ")}"/>`);
      for (const [px, py, e, val] of pts) parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="3" ` +
        `fill="${COLOURS[ph]}" data-phase="${ph}" data-epoch="${e}" data-value="${val}"><title>${ph} epoch ${e}: ` +
        `${esc(num(val, 4))}</title></circle>`);
      parts.push(`<text x="${lx}" y="14" text-anchor="end" font-size="10" fill="${COLOURS[ph]}">${ph}</text>`);
      lx -= 28;
    }
    parts.push("</svg>");
    const box = el("div");
    box.innerHTML = parts.join("");
    $("curves").append(box.firstChild);
  }
  $("curves").addEventListener("mouseover", (e) => {
    const c = e.target.closest("circle");
    if (c) $("readout").textContent = `${c.closest("svg").dataset.metric}, ${c.dataset.phase}, epoch ` +
      `${c.dataset.epoch}: ${c.dataset.value}`;
  });
}

function order(kind) {
  const idx = [...Array(N).keys()];
  if (kind === "accuracy") return idx.sort((a, b) => (acc[a] ?? 2) - (acc[b] ?? 2) || a - b);
  if (kind !== "confusion") return idx;
  // Greedy chain: start from the class with the most errors, then always the class most confused with the last one.
  const sym = (a, b) => cm[a][b] + cm[b][a], errors = (a) => support[a] - cm[a][a];
  const left = new Set(idx), out = [];
  while (left.size) {
    let next = null;
    if (out.length) {
      const last = out[out.length - 1];
      for (const c of left) if (sym(last, c) > 0 && (next === null || sym(last, c) > sym(last, next))) next = c;
    }
    if (next === null) for (const c of left) if (next === null || errors(c) > errors(next)) next = c;
    out.push(next);
    left.delete(next);
  }
  return out;
}
function colour(frac, diag) {
  if (!frac) return "#ffffff";
  const light = 96 - 60 * Math.sqrt(frac);
  return diag ? `hsl(210,65%,${light}%)` : `hsl(8,75%,${light}%)`;
}
function renderConfusion() {
  const ord = order($("cm-order").value);
  const cell = Math.max(8, Math.min(30, Math.floor(760 / N))), font = Math.max(7, Math.min(12, cell - 1));
  const margin = 8 + Math.max(...C.map((c) => c.length)) * font * 0.6;
  const W = margin + N * cell + 4, H = margin + N * cell + 4, parts = [];
  parts.push(`<svg id="cm-svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`);
  ord.forEach((t, r) => {
    const y = margin + r * cell;
    parts.push(`<text x="${margin - 3}" y="${y + cell * 0.75}" text-anchor="end" font-size="${font}">` +
      `${esc(C[t])}</text>`);
    parts.push(`<text transform="translate(${y + cell * 0.75},${margin - 3}) rotate(-90)" font-size="${font}">` +
      `${esc(C[t])}</text>`);
    ord.forEach((p, c) => {
      const v = cm[t][p], frac = support[t] ? v / support[t] : 0;
      parts.push(`<rect class="cell" data-t="${t}" data-p="${p}" data-count="${v}" x="${margin + c * cell}" y="${y}" ` +
        `width="${cell - 0.5}" height="${cell - 0.5}" fill="${colour(frac, t === p)}"><title>${esc(C[t])} \u2192 ` +
        `${esc(C[p])}: ${v} of ${support[t]} (${pct(frac)})</title></rect>`);
    });
  });
  parts.push("</svg>");
  $("cm").innerHTML = parts.join("");
}

const sortState = {key: "acc", dir: 1};
function renderClasses() {
  const rows = C.map((name, i) => {
    let conf = null;
    for (let j = 0; j < N; j++) if (j !== i && cm[i][j] && (conf === null || cm[i][j] > cm[i][conf])) conf = j;
    return {i, name, videos: support[i], acc: acc[i], conf, confName: conf === null ? "" : C[conf]};
  });
  const {key, dir} = sortState;
  const val = (r) => key === "name" ? r.name : key === "conf" ? r.confName : (r[key] ?? -1);
  rows.sort((a, b) => (val(a) < val(b) ? -dir : val(a) > val(b) ? dir : a.i - b.i));
  const byClass = C.map(() => []);
  for (let i = 0; i < NC; i++) if (known(i)) byClass[K.label[i]].push(i);
  const body = document.querySelector("#classes tbody");
  body.replaceChildren();
  for (const r of rows) {
    const worst = byClass[r.i].filter(wrong).sort((a, b) => K.ptrue[a] - K.ptrue[b]).slice(0, 3);
    const cellWorst = el("td");
    for (const i of worst) {
      const b = el("button", {class: "link", title: `p(true) ${num(K.ptrue[i], 3)}`, text: K.key[i]});
      b.addEventListener("click", () => showClips({t: r.i, wrong: false, text: K.key[i]}));
      cellWorst.append(b);
    }
    const name = el("button", {class: "link", text: r.name});
    name.addEventListener("click", () => showClips({t: r.i, wrong: false}));
    const conf = r.conf === null ? "" : `${r.confName} (${cm[r.i][r.conf]})`;
    body.append(el("tr", {class: "class-row", "data-class": r.i}, el("td", {}, name),
      el("td", {class: "num", text: r.videos}), el("td", {class: "num", text: pct(r.acc)}), el("td", {text: conf}),
      cellWorst));
  }
}

let shown = PAGE;
function filtered() {
  const t = $("f-true").value, p = $("f-pred").value, onlyWrong = $("f-wrong").checked, cmp = $("f-cmp").value;
  const lo = parseFloat($("f-min").value) || 0, hiText = $("f-max").value, hi = hiText === "" ? 1 : parseFloat(hiText);
  const text = $("f-text").value.trim().toLowerCase(), out = [];
  for (let i = 0; i < NC; i++) {
    if (onlyWrong && !wrong(i)) continue;
    if (t !== "" && K.label[i] !== +t) continue;
    if (p !== "" && pred[i] !== +p) continue;
    const s = K.score[i][0];
    if (s < lo || s > hi) continue;
    if (text && !K.key[i].toLowerCase().includes(text) && !String(K.id[i]).toLowerCase().includes(text)) continue;
    if (B && cmp !== "all") {
      const a = !wrong(i), b = !wrongB(i);
      if ((cmp === "a" && !(a && !b)) || (cmp === "b" && !(b && !a)) || (cmp === "none" && (a || b)) ||
          (cmp === "both" && !(a && b))) continue;
    }
    out.push(i);
  }
  return out.sort((a, b) => K.score[b][0] - K.score[a][0] || a - b);
}
function card(i) {
  const y = K.label[i], box = el("div", {class: "clip", "data-i": i, "data-key": K.key[i]});
  if (K.thumb[i]) {
    box.append(el("img", {src: K.thumb[i], loading: "lazy", alt: "frames of " + K.key[i],
      "data-frames": K.frames[i].length,
      title: "frames " + K.frames[i].join(", ")}));
  } else {
    box.append(el("div", {class: "nothumb", text: K.thumb_error[K.key[i]] ? "thumbnail failed: " +
      K.thumb_error[K.key[i]] : "correct: no thumbnail"}));
  }
  const info = el("div");
  info.append(el("div", {class: "key", text: K.key[i]}));
  const times = K.t0[i] === null ? "" : ` \u00b7 ${K.t0[i]}\u2013${K.t1[i]} s`;
  info.append(el("div", {class: "hint", text: `id ${K.id[i]}${times}`}));
  info.append(el("div", {class: wrong(i) ? "bad truth" : "ok truth", text: "true: " + (y >= 0 ? C[y] : "unknown")}));
  const ol = el("ol", {class: "top"});
  K.top[i].forEach((c, k) => {
    const li = el("li", {class: c === y ? "ok" : ""}, el("span", {class: "name", text: C[c]}),
      el("span", {class: "bar", style: `width:${Math.round(40 * K.score[i][k])}px`}),
      el("span", {class: "score", text: K.score[i][k].toFixed(3)}));
    ol.append(li);
  });
  info.append(ol);
  if (B) info.append(el("div", {class: wrongB(i) ? "bad cmp" : "ok cmp", title: B.name, text: `B: ${C[predB[i]]} ` +
    `${B.score[i][0].toFixed(3)}`}));
  box.append(info);
  return box;
}
function renderClips() {
  const list = filtered(), box = $("clips");
  box.replaceChildren(...list.slice(0, shown).map(card));
  $("clip-count").textContent = `${list.length} clips match (${Math.min(shown, list.length)} shown, ` +
    "most confident first)";
  $("clip-count").dataset.count = list.length;
  $("more").hidden = list.length <= shown;
}
function showClips(f) {
  $("f-true").value = f.t ?? ""; $("f-pred").value = f.p ?? ""; $("f-wrong").checked = f.wrong ?? true;
  $("f-min").value = 0; $("f-max").value = 1; $("f-text").value = f.text ?? ""; $("f-cmp").value = f.cmp ?? "all";
  shown = PAGE;
  renderClips();
  $("clips-section").dataset.pair = f.p === undefined ? "" : `${f.t},${f.p}`;
  $("clips-section").scrollIntoView();
}
function renderFilters() {
  for (const id of ["f-true", "f-pred"]) {
    $(id).append(el("option", {value: "", text: "any"}), ...C.map((c, i) => el("option", {value: i, text: c})));
  }
  const opts = [["all", "both models: any"]];
  if (B) {
    opts.push(["a", "A right, B wrong"], ["b", "B right, A wrong"], ["none", "both wrong"], ["both", "both right"]);
  }
  $("f-cmp").append(...opts.map(([v, t]) => el("option", {value: v, text: t})));
  $("f-cmp").hidden = !B;
  for (const id of ["f-true", "f-pred", "f-wrong", "f-min", "f-max", "f-cmp", "f-text"]) {
    $(id).addEventListener("input", () => { shown = PAGE; renderClips(); });
  }
  $("f-reset").addEventListener("click", () => showClips({}));
  $("more").addEventListener("click", () => { shown += PAGE; renderClips(); });
}
function renderCompare() {
  const box = $("compare");
  if (!B) {
    box.textContent = "One model. `vidnet report RUN_DIR --html --compare OTHER` (another run, a vidnet test " +
      "folder or a vidnet fuse output) shows which clips one model gets right and the other wrong.";
    return;
  }
  const n = {a: 0, b: 0, none: 0, both: 0};
  for (let i = 0; i < NC; i++) {
    if (!known(i)) continue;
    const a = !wrong(i), b = !wrongB(i);
    n[a && b ? "both" : a ? "a" : b ? "b" : "none"]++;
  }
  const link = (k, text) => {
    const b = el("button", {class: "link", "data-cmp": k, "data-count": n[k], text: `${n[k]} clips`});
    b.addEventListener("click", () => showClips({wrong: false, cmp: k}));
    return el("td", {class: "num"}, b);
  };
  box.append(el("p", {}, "A: ", el("b", {text: D.model}), " \u00b7 B: ", el("b", {text: B.name})),
    el("table", {id: "compare-table"},
      el("tr", {}, el("th", {}), el("th", {text: "B right"}), el("th", {text: "B wrong"})),
      el("tr", {}, el("th", {text: "A right"}), link("both"), link("a")),
      el("tr", {}, el("th", {text: "A wrong"}), link("b"), link("none"))));
}

renderRun();
renderCurves();
renderConfusion();
$("cm-order").addEventListener("change", renderConfusion);
$("cm").addEventListener("click", (e) => {
  const r = e.target.closest("rect.cell");
  if (r) showClips({t: +r.dataset.t, p: +r.dataset.p, wrong: r.dataset.t !== r.dataset.p});
});
for (const th of document.querySelectorAll("#classes th[data-sort]")) {
  th.addEventListener("click", () => {
    sortState.dir = sortState.key === th.dataset.sort ? -sortState.dir : 1;
    sortState.key = th.dataset.sort;
    renderClasses();
  });
}
renderClasses();
renderFilters();
renderClips();
renderCompare();
document.body.dataset.ready = "1";
"""
