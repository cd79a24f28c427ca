// Ganglion hub dashboard: vanilla JS, no dependencies, no network beyond this hub.
// Pages are routed on the URL fragment (#/s/1, #/s/1/m/<hotkey>, …). Each page builds a
// skeleton once and fills it from the JSON API; live events (SSE) refresh the figures.
// All record text is inserted as text nodes, never as HTML.
'use strict';

// ---------- DOM and formatting helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function clear(el, ...children) { el.replaceChildren(); return append(el, children); }

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const fmt = {
  num(v, d = 0) { return v === null || v === undefined ? '–' : Number(v).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d }); },
  ms(v) { if (v === null || v === undefined) return '–'; return v >= 10000 ? (v / 1000).toFixed(1) + ' s' : Math.round(v) + ' ms'; },
  pct(v) { return v === null || v === undefined ? '–' : (v * 100).toFixed(1) + '%'; },
  ratio(v) { return v === null || v === undefined ? '–' : Number(v).toFixed(4); },
  tao(v) { return v === null || v === undefined ? '–' : 'τ' + Number(v).toLocaleString(undefined, { maximumFractionDigits: v < 10 ? 4 : 2 }); },
  key(k) { return k ? k.slice(0, 6) + '…' + k.slice(-4) : '–'; },
  time(ms) { return ms ? new Date(ms).toLocaleString() : '–'; },
  clock(ms) { return ms ? new Date(ms).toLocaleTimeString() : '–'; },
  ago(ms) {
    if (!ms) return 'never';
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return Math.round(s) + 's ago';
    if (s < 3600) return Math.round(s / 60) + 'm ago';
    if (s < 86400) return Math.round(s / 3600) + 'h ago';
    return Math.round(s / 86400) + 'd ago';
  },
};

async function api(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error(body && body.error ? body.error.message : `${res.status} ${res.statusText}`);
  return body;
}

// ---------- Plots: hand-drawn SVG line charts ----------

const COLORS = ['#1f6feb', '#cf222e', '#1a7f37', '#8250df', '#bf8700', '#0a7ea4'];
const tip = h('div', { class: 'tip', hidden: true });
document.body.appendChild(tip);

function niceTicks(min, max, count) {
  if (min === max) { max = min + 1; }
  const span = max - min;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
  const err = (span / count) / step0;
  const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}

// series: [{name, points: [[x_ms, y|null], …]}]; opts: {yFormat, yMin, yMax, height}
function lineChart(series, opts = {}) {
  const W = 640, H = opts.height || 200, L = 52, R = 12, T = 10, B = 24;
  const all = series.flatMap(se => se.points.filter(p => p[1] !== null && p[1] !== undefined && isFinite(p[1])));
  const wrap = h('div', { class: 'chart-wrap' });
  if (all.length === 0) {
    wrap.appendChild(h('div', { class: 'empty' }, 'No data in this window yet.'));
    return wrap;
  }
  let x0 = Math.min(...all.map(p => p[0])), x1 = Math.max(...all.map(p => p[0]));
  if (x0 === x1) { x0 -= 30000; x1 += 30000; }
  let y0 = opts.yMin !== undefined ? opts.yMin : Math.min(0, ...all.map(p => p[1]));
  let y1 = opts.yMax !== undefined ? opts.yMax : Math.max(...all.map(p => p[1]));
  if (y1 <= y0) y1 = y0 + 1;
  const yt = niceTicks(y0, y1, 4);
  y1 = Math.max(y1, yt[yt.length - 1]);
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const yFormat = opts.yFormat || (v => fmt.num(v, Math.abs(y1 - y0) < 5 ? 2 : 0));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': opts.label || 'chart' });
  for (const v of yt) {
    if (v > y1 + 1e-9) continue;
    svg.appendChild(s('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: 'grid-line' }));
    svg.appendChild(s('text', { x: L - 6, y: Y(v) + 3, 'text-anchor': 'end', class: 'axis' }, yFormat(v)));
  }
  const spanMs = x1 - x0;
  const xLabel = t => spanMs > 2 * 86400e3 ? new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
    : new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  for (let i = 0; i <= 4; i++) {
    const t = x0 + spanMs * i / 4;
    svg.appendChild(s('text', { x: X(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', class: 'axis' }, xLabel(t)));
  }
  series.forEach((se, i) => {
    const color = se.color || COLORS[i % COLORS.length];
    let d = '', pen = false;
    for (const [x, y] of se.points) {
      if (y === null || y === undefined || !isFinite(y)) { pen = false; continue; }
      d += (pen ? 'L' : 'M') + X(x).toFixed(1) + ' ' + Y(y).toFixed(1) + ' ';
      pen = true;
    }
    svg.appendChild(s('path', { d: d.trim(), class: 'line', stroke: color, 'data-series': se.name }));
    const pts = se.points.filter(p => p[1] !== null && p[1] !== undefined);
    if (pts.length <= 2) for (const [x, y] of pts) svg.appendChild(s('circle', { cx: X(x), cy: Y(y), r: 3, fill: color }));
  });
  const hover = s('line', { y1: T, y2: H - B, class: 'hover-line', visibility: 'hidden' });
  svg.appendChild(hover);
  svg.addEventListener('mousemove', ev => {
    const box = svg.getBoundingClientRect();
    const x = x0 + ((ev.clientX - box.left) / box.width * W - L) / (W - L - R) * (x1 - x0);
    const lines = [];
    let bestX = null;
    series.forEach(se => {
      let best = null;
      for (const p of se.points) if (p[1] !== null && (best === null || Math.abs(p[0] - x) < Math.abs(best[0] - x))) best = p;
      if (best) { lines.push(`${se.name}: ${yFormat(best[1])}`); bestX = best[0]; }
    });
    if (bestX === null) return;
    hover.setAttribute('x1', X(bestX)); hover.setAttribute('x2', X(bestX)); hover.setAttribute('visibility', 'visible');
    tip.textContent = fmt.time(bestX) + '\n' + lines.join('\n');
    tip.hidden = false; tip.style.left = (ev.clientX + 12) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
  });
  svg.addEventListener('mouseleave', () => { hover.setAttribute('visibility', 'hidden'); tip.hidden = true; });
  wrap.appendChild(svg);
  if (series.length > 1 || opts.legend) {
    wrap.appendChild(h('div', { class: 'legend' }, series.map((se, i) =>
      h('span', {}, h('i', { style: `background:${se.color || COLORS[i % COLORS.length]}` }), se.name))));
  }
  return wrap;
}

function chartCard(title, series, opts) {
  return h('div', { class: 'card' }, h('h2', {}, title), lineChart(series, opts));
}

// Hand-drawn SVG bar chart. bars: [{label, tip, n}] (histogram bins, or one bar per uid);
// opts: {color, yFormat, label, axis: [left, right] labels under the first and last bar}.
function barChart(bars, opts = {}) {
  const W = 640, H = opts.height || 200, L = 52, R = 12, T = 10, B = 24;
  const wrap = h('div', { class: 'chart-wrap' });
  if (bars.length === 0 || bars.every(b => !b.n)) {
    wrap.appendChild(h('div', { class: 'empty' }, opts.empty || 'No data in this window yet.'));
    return wrap;
  }
  const max = Math.max(...bars.map(b => b.n));
  const yt = niceTicks(0, max, 4);
  const y1 = Math.max(max, yt[yt.length - 1]);
  const Y = v => T + (1 - v / y1) * (H - T - B);
  const bw = (W - L - R) / bars.length;
  const yFormat = opts.yFormat || (v => fmt.num(v, max < 5 ? 2 : 0));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': opts.label || 'bar chart' });
  for (const v of yt) {
    if (v > y1 + 1e-9) continue;
    svg.appendChild(s('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: 'grid-line' }));
    svg.appendChild(s('text', { x: L - 6, y: Y(v) + 3, 'text-anchor': 'end', class: 'axis' }, yFormat(v)));
  }
  bars.forEach((b, i) => {
    const x = L + i * bw;
    const rect = s('rect', { x: (x + 1).toFixed(1), y: Y(b.n).toFixed(1), width: Math.max(1, bw - 2).toFixed(1), height: Math.max(0, Y(0) - Y(b.n)).toFixed(1),
      class: 'bar', fill: opts.color || COLORS[0], 'data-n': b.n });
    rect.addEventListener('mousemove', ev => {
      tip.textContent = `${b.tip || b.label}\n${yFormat(b.n)}`;
      tip.hidden = false; tip.style.left = (ev.clientX + 12) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
    });
    rect.addEventListener('mouseleave', () => { tip.hidden = true; });
    svg.appendChild(rect);
    if (!opts.axis && (bars.length <= 16 || i % Math.ceil(bars.length / 8) === 0)) {
      svg.appendChild(s('text', { x: x + bw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, b.label));
    }
  });
  if (opts.axis) {
    svg.appendChild(s('text', { x: L, y: H - 6, 'text-anchor': 'start', class: 'axis' }, opts.axis[0]));
    svg.appendChild(s('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'axis' }, opts.axis[1]));
  }
  wrap.appendChild(svg);
  return wrap;
}

// A histogram from the API ({name, n, min, max, mean, bins: [{lo, hi, n}]}).
function histogramCard(hist, color) {
  const d = Math.abs(hist.max - hist.min) < 10 ? 3 : 1;
  const bars = hist.bins.map(b => ({ label: fmt.num(b.lo, d), tip: `${fmt.num(b.lo, d)} – ${fmt.num(b.hi, d)}`, n: b.n }));
  return h('div', { class: 'card histogram', 'data-name': hist.name },
    h('h2', {}, hist.name === 'total' ? 'Combined reward' : hist.name),
    h('div', { class: 'muted' }, `${fmt.num(hist.n)} values · mean ${fmt.num(hist.mean, 3)} · min ${fmt.num(hist.min, 3)} · max ${fmt.num(hist.max, 3)}`),
    barChart(bars, { color, label: `distribution of ${hist.name}`, axis: hist.bins.length ? [fmt.num(hist.min, d), fmt.num(hist.max, d)] : null }));
}

// ---------- Tables: sortable, filterable ----------

// columns: [{key, label, value(row) -> sortable value, render(row) -> node|text, num}]
function table(columns, rows, opts = {}) {
  const state = opts.state || {};
  const tbody = h('tbody');
  const head = h('tr');
  const draw = () => {
    let list = rows.slice();
    if (opts.filter) list = list.filter(opts.filter);
    if (state.sort) {
      const col = columns.find(c => c.key === state.sort);
      if (col) {
        const val = col.value || (r => r[col.key]);
        list.sort((a, b) => {
          const va = val(a), vb = val(b);
          const c = va === vb ? 0 : va === null || va === undefined ? 1 : vb === null || vb === undefined ? -1 : va < vb ? -1 : 1;
          return state.dir === 'desc' ? -c : c;
        });
      }
    }
    clear(tbody, list.length === 0 ? h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, opts.empty || 'Nothing here yet.')) :
      list.map(r => {
        const tr = h('tr', { class: opts.onRow ? 'clickable' : null, onclick: opts.onRow ? () => opts.onRow(r) : null },
          columns.map(c => h('td', { class: c.num ? 'num' : null }, c.render ? c.render(r) : r[c.key])));
        if (opts.flash && opts.flash(r)) tr.classList.add('flash');
        return tr;
      }));
    clear(head, columns.map(c => {
      const arrow = state.sort === c.key ? h('span', { class: 'arrow' }, state.dir === 'desc' ? '▼' : '▲') : null;
      return h('th', {
        class: (c.num ? 'num ' : '') + (c.sortable === false ? '' : 'sortable'),
        onclick: c.sortable === false ? null : () => {
          state.dir = state.sort === c.key && state.dir === 'asc' ? 'desc' : 'asc';
          state.sort = c.key; draw();
        },
      }, c.label, arrow);
    }));
  };
  draw();
  const el = h('table', {}, h('thead', {}, head), tbody);
  el.redraw = draw;
  return el;
}

function pill(text, cls) { return h('span', { class: 'pill ' + cls }, text); }
function verdict(r) { return r.verified ? pill('verified', 'ok') : pill(r.cause || 'failed', 'fail'); }
function roleP(role) { return role === 'validator' ? pill('V', 'v') : pill('M', 'm'); }
function tile(label, value, sub, cls) {
  return h('div', { class: 'tile ' + (cls || '') }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}
function causesList(causes, total) {
  if (!causes || causes.length === 0) return h('p', { class: 'muted' }, 'No failures in this window.');
  const max = Math.max(...causes.map(c => c.n));
  return h('ul', { class: 'causes' }, causes.map(c => h('li', {},
    h('span', {}, pill(c.cause, 'cause')),
    h('span', { class: 'bar' }, h('span', { style: `width:${(c.n / max * 100).toFixed(1)}%` })),
    h('span', { class: 'num' }, fmt.num(c.n), total ? h('span', { class: 'muted' }, ' ' + fmt.pct(c.n / total)) : null))));
}
function windowPicker(current, onPick, names) {
  return h('div', { class: 'seg', role: 'group', 'aria-label': 'Time window' },
    (names || ['15m', '1h', '6h', '24h', '7d']).map(w => h('button', { class: w === current ? 'on' : '', onclick: () => onPick(w) }, w)));
}
function keyLink(netuid, hotkey, role, label) {
  const path = role === 'validator' ? 'v' : 'm';
  return h('a', { href: `#/s/${netuid}/${path}/${hotkey}`, class: 'mono', title: hotkey }, label || fmt.key(hotkey));
}

// Banner explaining where the metagraph comes from when the chain is not reachable.
function chainBanner(chain, metagraph) {
  if (!chain.configured) return h('div', { class: 'banner warn' }, 'No chain configured: showing records and the last recorded metagraph.');
  if (chain.reachable && metagraph.source === 'chain') return null;
  const where = metagraph.source === 'snapshot'
    ? `Showing the metagraph recorded at block ${metagraph.block} (${fmt.ago(metagraph.snapshot_ms)}).`
    : 'No metagraph has been recorded yet.';
  if (!chain.reachable) {
    return h('div', { class: 'banner bad' }, h('strong', {}, `Chain unreachable at ${chain.url}. `),
      chain.error ? `(${chain.error}) ` : '', where, ' Records below are live.');
  }
  return h('div', { class: 'banner warn' }, 'Waiting for the first metagraph sync. ', where);
}

// ---------- Live updates ----------

const live = {
  source: null, netuid: undefined, listeners: new Set(), dirty: false, timer: null,
  connect(netuid) {
    if (this.source && this.netuid === netuid) return;
    if (this.source) this.source.close();
    this.netuid = netuid;
    const url = '/api/events' + (netuid !== null && netuid !== undefined ? `?netuid=${netuid}` : '');
    const src = new EventSource(url);
    this.source = src;
    const badge = document.getElementById('live-badge');
    src.onopen = () => badge.classList.add('live');
    src.onerror = () => badge.classList.remove('live');
    const fire = (kind) => ev => {
      let data = null;
      try { data = JSON.parse(ev.data); } catch (_) { return; }
      for (const fn of this.listeners) fn(kind, data);
    };
    for (const kind of ['hello', 'inference', 'challenge', 'chain', 'lagged', 'skipped']) src.addEventListener(kind, fire(kind));
  },
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
};

// Refreshes the current page at most every 2 s while records arrive.
function throttledRefresh(refresh) {
  let pending = false, last = 0;
  return () => {
    if (pending) return;
    const wait = Math.max(0, 2000 - (Date.now() - last));
    pending = true;
    setTimeout(async () => { pending = false; last = Date.now(); try { await refresh(); } catch (e) { console.warn(e); } }, wait);
  };
}

live.on((kind, data) => {
  if (kind === 'chain' || kind === 'hello') refreshStatus();
});

// ---------- Header: chain status and subnet nav ----------

let status = null;
async function refreshStatus() {
  try {
    status = await api('/api/status');
    const c = status.chain;
    const badge = document.getElementById('chain-badge');
    badge.className = 'badge ' + (!c.configured ? '' : c.reachable ? 'ok' : 'bad');
    badge.textContent = !c.configured ? 'chain: none' : c.reachable ? `chain: block ${c.block}` : 'chain unreachable';
    badge.title = c.reachable ? c.url : (c.error || c.url);
    document.getElementById('store-url').textContent = `${status.store.backend} (${status.store.url})`;
  } catch (e) { console.warn(e); }
}
let subnetsCache = null;
async function refreshNav(activeNetuid) {
  try { subnetsCache = await api('/api/subnets'); } catch (e) { return; }
  clear(document.getElementById('subnet-nav'), subnetsCache.subnets.map(sn =>
    h('a', { href: `#/s/${sn.netuid}`, class: sn.netuid === activeNetuid ? 'active' : '' }, `SN ${sn.netuid}`)));
}
function views(netuid) {
  const sn = subnetsCache && subnetsCache.subnets.find(x => x.netuid === netuid);
  return sn ? sn.views : { inference: true, compute: false, reward: false, evaluation: false };
}
function subnetTabs(netuid, active) {
  const v = views(netuid);
  const tab = (key, label, path) => v[key] || active === key
    ? h('button', { class: active === key ? 'on' : '', onclick: () => { location.hash = `#/s/${netuid}${path}`; } }, label) : null;
  return h('div', { class: 'seg' },
    v.inference || active === 'inference' || (!v.compute && !v.reward && !v.evaluation) ? h('button', { class: active === 'inference' ? 'on' : '', onclick: () => { location.hash = `#/s/${netuid}`; } }, 'Inference') : null,
    tab('compute', 'Compute', '/compute'), tab('reward', 'Rewards', '/reward'), tab('evaluation', 'Models', '/evaluation'));
}

// ---------- Pages ----------

const ui = { window: '1h', computeWindow: '24h', rewardWindow: '24h', evaluationWindow: '7d', overviewTable: { sort: 'uid', dir: 'asc' }, filter: '', role: 'all', failedOnly: false };

async function pageSubnets(main) {
  await refreshNav(null);
  const list = subnetsCache ? subnetsCache.subnets : [];
  if (list.length === 1) { location.replace(`#/s/${list[0].netuid}`); return; }
  clear(main, h('h1', {}, 'Subnets'),
    list.length === 0 ? h('div', { class: 'card empty' }, 'No records and no subnets on the chain yet. Validators write records as they query miners.') :
      h('div', { class: 'subnets' }, list.map(sn => h('a', { href: `#/s/${sn.netuid}`, class: 'card' },
        h('h2', {}, `Subnet ${sn.netuid}`),
        h('div', {}, sn.views.inference ? pill('inference', 'v') : null, ' ', sn.views.compute ? pill('compute', 'm') : null,
          ' ', sn.views.reward ? pill('rewards', 'ok') : null, ' ', sn.views.evaluation ? pill('models', 'cause') : null,
          !sn.views.inference && !sn.views.compute && !sn.views.reward && !sn.views.evaluation ? h('span', { class: 'muted' }, 'no records yet') : null),
        h('div', { class: 'muted' }, sn.records ? `${fmt.num(sn.records.inference_n)} requests, ${fmt.num(sn.records.challenge_n)} challenges` : '',
          sn.neurons !== null && sn.neurons !== undefined ? ` · ${sn.neurons} neurons` : '')))));
}

async function pageOverview(main, netuid) {
  await refreshNav(netuid);
  const v0 = views(netuid);
  if (!v0.inference) {
    const other = v0.compute ? 'compute' : v0.reward ? 'reward' : v0.evaluation ? 'evaluation' : null;
    if (other) { location.replace(`#/s/${netuid}/${other}`); return; }
  }
  const banner = h('div'), tiles = h('div', { class: 'tiles' }), plots = h('div', { class: 'grid section' });
  const tableBox = h('div'), unreg = h('div'), feedBox = h('tbody');
  const filter = h('input', { type: 'search', placeholder: 'Filter by uid, hotkey or cause', value: ui.filter, 'aria-label': 'Filter neurons' });
  const role = h('select', { 'aria-label': 'Role' }, ['all', 'miners', 'validators'].map(r => h('option', { value: r, selected: ui.role === r }, r)));
  let tableEl = null;
  filter.addEventListener('input', () => { ui.filter = filter.value; if (tableEl) tableEl.redraw(); });
  role.addEventListener('change', () => { ui.role = role.value; if (tableEl) tableEl.redraw(); });
  const recentIds = new Set();
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', `Subnet ${netuid}`),
    h('h1', {}, `Subnet ${netuid}`, subnetTabs(netuid, 'inference'), windowPicker(ui.window, w => { ui.window = w; route(); })),
    banner, tiles, plots,
    h('div', { class: 'card', id: 'metagraph' }, h('h2', {}, 'Metagraph'), h('div', { class: 'controls' }, filter, role), tableBox),
    unreg,
    h('div', { class: 'card' }, h('h2', {}, 'Live requests'), h('div', { class: 'feed' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Time', 'Miner', 'Model', 'Result', 'TTFT', 'Tok/s'].map(t => h('th', {}, t)))), feedBox))));
  clear(feedBox, h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'Waiting for new requests…')));

  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/overview?window=${ui.window}`);
    clear(banner, chainBanner(d.chain, d.metagraph));
    const miners = d.neurons.filter(r => r.miner);
    const answering = miners.length + d.unregistered.length;
    const top = d.causes[0];
    clear(tiles,
      tile('Requests', fmt.num(d.totals.n), `last ${d.window}`),
      tile('Verified', fmt.pct(d.totals.n ? d.totals.verified_rate : null), `${fmt.num(d.totals.verified)} of ${fmt.num(d.totals.n)}`, d.totals.n && d.totals.verified_rate < 0.5 ? 'bad' : 'good'),
      tile('Miners answering', fmt.num(answering), `${d.neurons.length} neurons in metagraph`),
      tile('Top failure cause', top ? top.cause : 'none', top ? `${fmt.num(top.n)} failures` : 'in this window', top ? 'bad' : ''),
      tile('Last request', d.totals.last_ms ? fmt.ago(d.totals.last_ms) : '–', d.metagraph.block !== null ? `metagraph block ${d.metagraph.block}` : ''));
    const pts = key => d.series.map(p => [p.t_ms, p[key]]);
    clear(plots,
      chartCard(`Requests per ${d.bucket}`, [
        { name: 'verified', color: '#1a7f37', points: d.series.map(p => [p.t_ms, p.verified]) },
        { name: 'failed', color: '#cf222e', points: d.series.map(p => [p.t_ms, p.n - p.verified]) }], { label: 'requests over time' }),
      chartCard('Mean time to first token (ms)', [{ name: 'TTFT', points: pts('avg_ttft_ms') }], { yFormat: v => fmt.num(v) }),
      chartCard('Mean tokens per second', [{ name: 'tokens/s', color: '#8250df', points: pts('avg_tps') }]));
    const rows = d.neurons.map(r => Object.assign({ uid: r.neuron.uid }, r));
    const cols = [
      { key: 'uid', label: 'UID', num: true, value: r => r.neuron.uid, render: r => r.neuron.uid },
      { key: 'role', label: 'Role', value: r => r.neuron.role, render: r => roleP(r.neuron.role) },
      { key: 'hotkey', label: 'Hotkey', value: r => r.neuron.hotkey, render: r => keyLink(netuid, r.neuron.hotkey, r.neuron.role) },
      { key: 'stake', label: 'Stake', num: true, value: r => r.neuron.stake_tao, render: r => fmt.tao(r.neuron.stake_tao) },
      { key: 'incentive', label: 'Incentive', num: true, value: r => r.neuron.incentive, render: r => fmt.ratio(r.neuron.incentive) },
      { key: 'emission', label: 'Emission', num: true, value: r => r.neuron.emission_tao, render: r => fmt.tao(r.neuron.emission_tao) },
      { key: 'vtrust', label: 'VTrust', num: true, value: r => r.neuron.validator_trust, render: r => fmt.ratio(r.neuron.validator_trust) },
      { key: 'consensus', label: 'Consensus', num: true, value: r => r.neuron.consensus, render: r => fmt.ratio(r.neuron.consensus) },
      { key: 'last_update', label: 'Updated', num: true, value: r => r.neuron.last_update, render: r => r.neuron.last_update === null ? '–' : r.neuron.last_update },
      { key: 'n', label: 'Requests', num: true, value: r => r.miner ? r.miner.n : (r.validator ? r.validator.n : null), render: r => r.miner ? fmt.num(r.miner.n) : r.validator ? h('span', { class: 'muted', title: 'sent' }, fmt.num(r.validator.n) + ' sent') : '–' },
      { key: 'verified_rate', label: 'Verified', num: true, value: r => r.miner ? r.miner.verified_rate : null, render: r => r.miner ? fmt.pct(r.miner.verified_rate) : '–' },
      { key: 'ttft', label: 'TTFT', num: true, value: r => r.miner ? r.miner.avg_ttft_ms : null, render: r => r.miner ? fmt.ms(r.miner.avg_ttft_ms) : '–' },
      { key: 'tps', label: 'Tok/s', num: true, value: r => r.miner ? r.miner.avg_tps : null, render: r => r.miner ? fmt.num(r.miner.avg_tps, 1) : '–' },
      { key: 'cause', label: 'Top failure', value: r => r.miner && r.miner.causes[0] ? r.miner.causes[0].cause : null, render: r => r.miner && r.miner.causes[0] ? pill(`${r.miner.causes[0].cause} ×${r.miner.causes[0].n}`, 'cause') : '' },
    ];
    tableEl = table(cols, rows, {
      state: ui.overviewTable,
      empty: 'No neurons: the chain has not been reached and no metagraph was recorded.',
      filter: r => {
        if (ui.role === 'miners' && r.neuron.role !== 'miner') return false;
        if (ui.role === 'validators' && r.neuron.role !== 'validator') return false;
        const q = ui.filter.trim().toLowerCase();
        if (!q) return true;
        const cause = r.miner ? r.miner.causes.map(c => c.cause).join(' ') : '';
        return String(r.neuron.uid) === q || r.neuron.hotkey.toLowerCase().includes(q) || cause.toLowerCase().includes(q);
      },
      onRow: r => { location.hash = `#/s/${netuid}/${r.neuron.role === 'validator' ? 'v' : 'm'}/${r.neuron.hotkey}`; },
    });
    tableEl.id = 'metagraph-table';
    clear(tableBox, tableEl);
    clear(unreg, d.unregistered.length === 0 ? null : h('div', { class: 'card' },
      h('h2', {}, 'Miners with records but not in the metagraph'),
      table([
        { key: 'uid', label: 'UID at request', num: true },
        { key: 'hotkey', label: 'Hotkey', render: r => keyLink(netuid, r.hotkey, 'miner') },
        { key: 'n', label: 'Requests', num: true, render: r => fmt.num(r.n) },
        { key: 'verified_rate', label: 'Verified', num: true, render: r => fmt.pct(r.verified_rate) },
        { key: 'last_ms', label: 'Last', render: r => fmt.ago(r.last_ms) },
      ], d.unregistered, {})));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  let feedRows = [];
  return live.on((kind, data) => {
    if (kind === 'inference' && data.netuid === netuid) {
      if (recentIds.has(data.id)) return;
      recentIds.add(data.id);
      feedRows = [data].concat(feedRows).slice(0, 25);
      clear(feedBox, feedRows.map((r, i) => h('tr', { 'data-id': r.id, class: 'clickable' + (i === 0 ? ' flash' : ''), onclick: () => { location.hash = `#/r/${r.id}`; } },
        h('td', {}, fmt.clock(r.created_at_ms)), h('td', {}, `uid ${r.miner_uid} `, h('span', { class: 'mono muted' }, fmt.key(r.miner_hotkey))),
        h('td', {}, r.model), h('td', {}, verdict(r)), h('td', { class: 'num' }, fmt.ms(r.ttft_ms)), h('td', { class: 'num' }, fmt.num(r.tps, 1)))));
      again();
    } else if (kind === 'chain' || kind === 'lagged' || kind === 'skipped') again();
  });
}

function requestsTable(netuid, rows, opts = {}) {
  return table([
    { key: 'created_at_ms', label: 'Time', render: r => h('a', { href: `#/r/${r.id}` }, fmt.time(r.created_at_ms)) },
    opts.showMiner ? { key: 'miner_uid', label: 'Miner', render: r => keyLink(netuid, r.miner_hotkey, 'miner', `uid ${r.miner_uid}`) } : null,
    opts.showValidator ? { key: 'validator_hotkey', label: 'Validator', render: r => keyLink(netuid, r.validator_hotkey, 'validator') } : null,
    { key: 'model', label: 'Model' },
    { key: 'endpoint', label: 'Endpoint', render: r => r.endpoint + (r.organic ? ' (organic)' : '') },
    { key: 'verified', label: 'Result', value: r => r.verified ? 1 : 0, render: verdict },
    { key: 'ttft_ms', label: 'TTFT', num: true, render: r => fmt.ms(r.ttft_ms) },
    { key: 'total_ms', label: 'Total', num: true, render: r => fmt.ms(r.total_ms) },
    { key: 'tokens', label: 'Tokens', num: true },
    { key: 'tps', label: 'Tok/s', num: true, render: r => fmt.num(r.tps, 1) },
    { key: 'similarity', label: 'Similarity', num: true, render: r => r.similarity === null ? '–' : r.similarity.toFixed(3) },
  ].filter(Boolean), rows, { state: { sort: 'created_at_ms', dir: 'desc' }, empty: 'No requests recorded.', onRow: r => { location.hash = `#/r/${r.id}`; } });
}

function identity(netuid, neuron, hotkey, metagraph) {
  if (!neuron) {
    return h('div', { class: 'banner warn' }, `Hotkey ${hotkey} is not in the ${metagraph.source === 'none' ? 'known' : metagraph.source} metagraph of subnet ${netuid} (deregistered, or not registered yet).`);
  }
  return h('div', { class: 'tiles' },
    tile('UID', neuron.uid, neuron.role),
    tile('Incentive', fmt.ratio(neuron.incentive), `emission ${fmt.tao(neuron.emission_tao)}`),
    tile('Stake', fmt.tao(neuron.stake_tao), `coldkey ${fmt.key(neuron.coldkey)}`),
    tile('Trust', fmt.ratio(neuron.validator_trust), `consensus ${fmt.ratio(neuron.consensus)}`),
    tile('Last update', neuron.last_update === null ? '–' : `block ${neuron.last_update}`, neuron.active === null ? 'from snapshot' : neuron.active ? 'active' : 'inactive'));
}

async function pageMiner(main, netuid, hotkey) {
  await refreshNav(netuid);
  const banner = h('div'), ident = h('div'), why = h('div', { class: 'card' }), plots = h('div', { class: 'grid section' });
  const models = h('div', { class: 'card' }), recentBox = h('div'), scores = h('div', { class: 'card' });
  const failedToggle = h('input', { type: 'checkbox', checked: ui.failedOnly, id: 'failed-only' });
  failedToggle.addEventListener('change', () => { ui.failedOnly = failedToggle.checked; refresh(); });
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', h('a', { href: `#/s/${netuid}` }, `Subnet ${netuid}`), ' › ', 'Miner'),
    h('h1', {}, 'Miner ', h('span', { class: 'mono' }, hotkey), windowPicker(ui.window, w => { ui.window = w; route(); })),
    banner, ident, why, plots, models,
    h('div', { class: 'card' }, h('h2', {}, 'Recent requests'),
      h('div', { class: 'controls' }, h('label', { for: 'failed-only' }, failedToggle, ' failed only')), recentBox),
    scores);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/miners/${hotkey}?window=${ui.window}`);
    clear(banner, chainBanner(d.chain, d.metagraph));
    clear(ident, identity(netuid, d.neuron, hotkey, d.metagraph));
    const st = d.stats;
    const failures = st ? st.n - st.verified : 0;
    let advice;
    if (!st) advice = `No requests reached this miner in the last ${d.window}: validators have not queried it. Check that its axon is served on the chain and reachable from the validators.`;
    else if (st.verified_rate === 0) advice = `Every request in the last ${d.window} failed verification, so validators score it zero. The causes below say why; open a request for the verification detail.`;
    else if (failures > 0) advice = `${fmt.pct(1 - st.verified_rate)} of requests failed verification; each failure lowers its score.`;
    else advice = 'All requests in this window were verified.';
    clear(why, h('h2', {}, 'Why this miner scores what it scores'),
      h('div', { class: 'tiles' },
        tile('Verified', st ? fmt.pct(st.verified_rate) : '–', st ? `${fmt.num(st.verified)} of ${fmt.num(st.n)} requests` : 'no requests', st && st.verified_rate < 0.5 ? 'bad' : 'good'),
        tile('Mean TTFT', st ? fmt.ms(st.avg_ttft_ms) : '–'),
        tile('Mean tokens/s', st ? fmt.num(st.avg_tps, 1) : '–'),
        tile('Mean similarity', st && st.avg_similarity !== null ? st.avg_similarity.toFixed(3) : '–'),
        tile('Last request', st ? fmt.ago(st.last_ms) : '–')),
      h('p', {}, advice),
      h('h2', {}, 'Failure causes'), causesList(d.causes, st ? st.n : 0));
    const pts = key => d.series.map(p => [p.t_ms, p[key]]);
    clear(plots,
      chartCard('Time to first token (ms)', [{ name: 'TTFT', points: pts('avg_ttft_ms') }]),
      chartCard('Tokens per second', [{ name: 'tokens/s', color: '#8250df', points: pts('avg_tps') }]),
      chartCard('Verification rate and similarity', [
        { name: 'verified rate', color: '#1a7f37', points: d.series.map(p => [p.t_ms, p.n ? p.verified / p.n : null]) },
        { name: 'similarity', color: '#bf8700', points: pts('avg_similarity') }], { yMin: 0, yMax: 1, yFormat: v => v.toFixed(2) }),
      chartCard('Incentive over time', [{ name: 'incentive', color: '#0a7ea4', points: d.incentive.map(p => [p.t_ms, p.incentive]) }], { yFormat: v => v.toFixed(3), legend: true }));
    clear(models, h('h2', {}, 'Per model'), table([
      { key: 'model', label: 'Model' },
      { key: 'n', label: 'Requests', num: true, render: r => fmt.num(r.n) },
      { key: 'verified_rate', label: 'Verified', num: true, render: r => fmt.pct(r.verified_rate) },
      { key: 'avg_ttft_ms', label: 'TTFT', num: true, render: r => fmt.ms(r.avg_ttft_ms) },
      { key: 'avg_total_ms', label: 'Total time', num: true, render: r => fmt.ms(r.avg_total_ms) },
      { key: 'avg_tps', label: 'Tok/s', num: true, render: r => fmt.num(r.avg_tps, 1) },
      { key: 'avg_similarity', label: 'Similarity', num: true, render: r => r.avg_similarity === null ? '–' : r.avg_similarity.toFixed(3) },
    ], d.models, { state: { sort: 'n', dir: 'desc' }, empty: 'No requests in this window.' }));
    const recent = ui.failedOnly ? (await api(`/api/subnets/${netuid}/requests?miner=${hotkey}&verified=false&limit=50`)).requests : d.recent;
    clear(recentBox, requestsTable(netuid, recent, { showValidator: true }));
    clear(scores, h('h2', {}, 'Scores from validators'), table([
      { key: 'block', label: 'Block', num: true },
      { key: 'validator_hotkey', label: 'Validator', render: r => keyLink(netuid, r.validator_hotkey, 'validator') },
      { key: 'score', label: 'Score', num: true, render: r => r.score.toFixed(4) },
      { key: 'components', label: 'Components', sortable: false, render: r => h('span', { class: 'mono' }, JSON.stringify(r.components)) },
    ], d.scores.slice(0, 50), { state: { sort: 'block', dir: 'desc' }, empty: 'No scores recorded for this miner.' }));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on((kind, data) => { if ((kind === 'inference' && data.miner_hotkey === hotkey) || kind === 'chain') again(); });
}

async function pageValidator(main, netuid, hotkey) {
  await refreshNav(netuid);
  const banner = h('div'), ident = h('div'), tiles = h('div', { class: 'tiles' }), plots = h('div', { class: 'grid section' });
  const scores = h('div', { class: 'card' }), recent = h('div', { class: 'card' });
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', h('a', { href: `#/s/${netuid}` }, `Subnet ${netuid}`), ' › ', 'Validator'),
    h('h1', {}, 'Validator ', h('span', { class: 'mono' }, hotkey), windowPicker(ui.window, w => { ui.window = w; route(); })),
    banner, ident, tiles, plots, scores, recent);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/validators/${hotkey}?window=${ui.window}`);
    clear(banner, chainBanner(d.chain, d.metagraph));
    clear(ident, identity(netuid, d.neuron, hotkey, d.metagraph));
    const st = d.stats;
    clear(tiles, tile('Requests sent', st ? fmt.num(st.n) : '0', `last ${d.window}`),
      tile('Verified responses', st ? fmt.pct(st.verified_rate) : '–'), tile('Organic', st ? fmt.num(st.organic) : '0'),
      tile('Last request', st ? fmt.ago(st.last_ms) : '–'));
    clear(plots, chartCard(`Requests per ${d.bucket}`, [
      { name: 'verified', color: '#1a7f37', points: d.series.map(p => [p.t_ms, p.verified]) },
      { name: 'failed', color: '#cf222e', points: d.series.map(p => [p.t_ms, p.n - p.verified]) }]));
    clear(scores, h('h2', {}, d.scores.length ? `Scores at block ${d.scores[0].block}` : 'Scores'), table([
      { key: 'uid', label: 'UID', num: true },
      { key: 'hotkey', label: 'Hotkey', render: r => keyLink(netuid, r.hotkey, 'miner') },
      { key: 'score', label: 'Score', num: true, render: r => r.score.toFixed(4) },
      { key: 'components', label: 'Components', sortable: false, render: r => h('span', { class: 'mono' }, JSON.stringify(r.components)) },
    ], d.scores, { state: { sort: 'score', dir: 'desc' }, empty: 'This validator has recorded no scores.' }));
    clear(recent, h('h2', {}, 'Recent requests'), requestsTable(netuid, d.recent, { showMiner: true }));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on((kind, data) => { if (kind === 'inference' && data.validator_hotkey === hotkey) again(); });
}

function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

async function pageRequest(main, id) {
  const d = await api(`/api/requests/${encodeURIComponent(id)}`);
  const r = d.request;
  await refreshNav(r.netuid);
  const prompt = Array.isArray(r.prompt)
    ? r.prompt.map(m => h('div', { class: 'msg' }, h('div', { class: 'role' }, m.role || '?'), h('div', {}, typeof m.content === 'string' ? m.content : JSON.stringify(m.content))))
    : h('pre', {}, typeof r.prompt === 'string' ? r.prompt : JSON.stringify(r.prompt, null, 2));
  // Exact text from the server: JavaScript numbers would round 64-bit seeds.
  const sampling = Object.entries(d.sampling_text || {}).map(([k, v]) => [k, v.replace(/^"(.*)"$/, '$1')]);
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', h('a', { href: `#/s/${r.netuid}` }, `Subnet ${r.netuid}`), ' › ',
      keyLink(r.netuid, r.miner_hotkey, 'miner', `miner uid ${r.miner_uid}`), ' › ', 'Request'),
    h('h1', {}, 'Request ', h('span', { class: 'mono' }, r.id), verdict(r)),
    h('div', { class: 'tiles' },
      tile('Time to first token', fmt.ms(r.ttft_ms)), tile('Total time', fmt.ms(r.total_ms)),
      tile('Tokens', fmt.num(r.tokens)), tile('Tokens/s', fmt.num(r.tps, 1)),
      tile('Similarity', r.similarity === null ? '–' : r.similarity.toFixed(4)),
      tile('Result', r.verified ? 'verified' : (r.cause || 'failed'), null, r.verified ? 'good' : 'bad')),
    h('div', { class: 'grid section' },
      h('div', { class: 'card' }, h('h2', {}, 'Request'), kv([
        ['Time', fmt.time(r.created_at_ms)], ['Block', r.block], ['Model', r.model], ['Endpoint', r.endpoint],
        ['Organic', r.organic ? 'yes' : 'no'], ['Seed', d.seed_text === null ? '–' : d.seed_text],
        ['Validator', keyLink(r.netuid, r.validator_hotkey, 'validator', r.validator_hotkey)],
        ['Miner', keyLink(r.netuid, r.miner_hotkey, 'miner', r.miner_hotkey)], ['Miner coldkey', h('span', { class: 'mono' }, r.miner_coldkey)],
      ])),
      h('div', { class: 'card' }, h('h2', {}, 'Sampling parameters'),
        sampling.length ? kv(sampling) : h('p', { class: 'muted' }, 'none'))),
    h('div', { class: 'card' }, h('h2', {}, 'Prompt'), prompt),
    h('div', { class: 'card' }, h('h2', {}, 'Response'), h('pre', {}, r.response || '(empty)')),
    h('div', { class: 'card' }, h('h2', {}, 'Verification detail'), h('pre', {}, JSON.stringify(r.detail, null, 2))));
}

function specSummary(specs) {
  if (!specs) return '–';
  const parts = [];
  if (specs.cpu) parts.push(`${specs.cpu.count || '?'} CPU`);
  if (specs.memory_gb) parts.push(`${specs.memory_gb} GB RAM`);
  if (specs.gpu && specs.gpu.count) parts.push(`${specs.gpu.count}× ${specs.gpu.name || 'GPU'}`);
  if (specs.disk_gb) parts.push(`${specs.disk_gb} GB disk`);
  return parts.length ? parts.join(', ') : JSON.stringify(specs);
}

function allocationsTable(netuid, rows) {
  return table([
    { key: 'id', label: 'Id', render: r => h('span', { class: 'mono' }, r.id) },
    { key: 'miner_uid', label: 'Miner', render: r => h('a', { href: `#/s/${netuid}/c/${r.miner_hotkey}` }, `uid ${r.miner_uid}`) },
    { key: 'renter', label: 'Renter', render: r => h('span', { class: 'mono' }, fmt.key(r.renter)) },
    { key: 'status', label: 'Status', render: r => pill(r.status, r.status === 'active' ? 'ok' : 'm') },
    { key: 'created_at_ms', label: 'Created', render: r => fmt.time(r.created_at_ms) },
    { key: 'expires_at_ms', label: 'Expires', render: r => fmt.time(r.expires_at_ms) },
    { key: 'resources', label: 'Resources', sortable: false, render: r => h('span', { class: 'mono' }, JSON.stringify(r.resources)) },
    { key: 'access', label: 'Access', sortable: false, render: r => h('span', { class: 'mono' }, [r.access.user, r.access.host].filter(Boolean).join('@') + (r.access.port ? ':' + r.access.port : '')) },
  ], rows, { state: { sort: 'created_at_ms', dir: 'desc' }, empty: 'No allocations.' });
}

function challengesTable(netuid, rows, showMiner) {
  return table([
    { key: 'created_at_ms', label: 'Time', render: r => fmt.time(r.created_at_ms) },
    showMiner ? { key: 'miner_uid', label: 'Miner', render: r => h('a', { href: `#/s/${netuid}/c/${r.miner_hotkey}` }, `uid ${r.miner_uid}`) } : null,
    { key: 'difficulty', label: 'Difficulty', num: true },
    { key: 'success', label: 'Result', value: r => r.success ? 1 : 0, render: r => r.success ? pill('solved', 'ok') : pill(r.cause || 'failed', 'fail') },
    { key: 'elapsed_ms', label: 'Time taken', num: true, render: r => fmt.ms(r.elapsed_ms) },
    { key: 'validator_hotkey', label: 'Validator', render: r => h('span', { class: 'mono' }, fmt.key(r.validator_hotkey)) },
  ].filter(Boolean), rows, { state: { sort: 'created_at_ms', dir: 'desc' }, empty: 'No challenges recorded.' });
}

async function pageCompute(main, netuid) {
  await refreshNav(netuid);
  const banner = h('div'), tiles = h('div', { class: 'tiles' }), plots = h('div', { class: 'grid section' });
  const miners = h('div', { class: 'card' }), allocs = h('div', { class: 'card' }), recent = h('div', { class: 'card' });
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', `Subnet ${netuid}`, ' › ', 'Compute'),
    h('h1', {}, `Subnet ${netuid}`, subnetTabs(netuid, 'compute'), windowPicker(ui.computeWindow, w => { ui.computeWindow = w; route(); }, ['1h', '6h', '24h', '7d', '30d'])),
    banner, tiles, plots, miners, allocs, recent);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/compute?window=${ui.computeWindow}`);
    clear(banner, chainBanner(d.chain, d.metagraph));
    const total = d.challenge_stats.reduce((a, c) => a + c.n, 0), ok = d.challenge_stats.reduce((a, c) => a + c.success, 0);
    clear(tiles, tile('Challenges', fmt.num(total), `last ${d.window}`), tile('Solved', fmt.pct(total ? ok / total : null), null, total && ok / total < 0.5 ? 'bad' : 'good'),
      tile('Miners with specs', fmt.num(d.specs.length)), tile('Active allocations', fmt.num(d.allocations.filter(a => a.status === 'active').length)));
    const chron = d.recent.slice().reverse();
    clear(plots,
      chartCard('Challenge time (ms)', [
        { name: 'solved', color: '#1a7f37', points: chron.map(c => [c.created_at_ms, c.success ? c.elapsed_ms : null]) },
        { name: 'failed', color: '#cf222e', points: chron.map(c => [c.created_at_ms, c.success ? null : c.elapsed_ms]) }]),
      chartCard('Difficulty', [{ name: 'difficulty', color: '#8250df', points: chron.map(c => [c.created_at_ms, c.difficulty]) }]));
    const neuronBy = new Map(d.neurons.map(n => [n.hotkey, n]));
    const specBy = new Map(d.specs.map(x => [x.miner_hotkey, x]));
    const keys = Array.from(new Set([...d.specs.map(x => x.miner_hotkey), ...d.challenge_stats.map(c => c.hotkey)]));
    const rows = keys.map(k => {
      const st = d.challenge_stats.find(c => c.hotkey === k) || null, sp = specBy.get(k) || null, n = neuronBy.get(k) || null;
      return { hotkey: k, uid: n ? n.uid : (sp ? sp.miner_uid : st.uid), st, sp, n };
    });
    clear(miners, h('h2', {}, 'Miners'), table([
      { key: 'uid', label: 'UID', num: true },
      { key: 'hotkey', label: 'Hotkey', render: r => h('a', { href: `#/s/${netuid}/c/${r.hotkey}`, class: 'mono' }, fmt.key(r.hotkey)) },
      { key: 'specs', label: 'Specs', value: r => r.sp ? specSummary(r.sp.specs) : null, render: r => r.sp ? specSummary(r.sp.specs) : '–' },
      { key: 'n', label: 'Challenges', num: true, value: r => r.st ? r.st.n : null, render: r => r.st ? fmt.num(r.st.n) : '–' },
      { key: 'rate', label: 'Solved', num: true, value: r => r.st ? r.st.success_rate : null, render: r => r.st ? fmt.pct(r.st.success_rate) : '–' },
      { key: 'elapsed', label: 'Mean time', num: true, value: r => r.st ? r.st.avg_elapsed_ms : null, render: r => r.st ? fmt.ms(r.st.avg_elapsed_ms) : '–' },
      { key: 'difficulty', label: 'Max difficulty', num: true, value: r => r.st ? r.st.max_difficulty : null, render: r => r.st ? r.st.max_difficulty : '–' },
      { key: 'incentive', label: 'Incentive', num: true, value: r => r.n ? r.n.incentive : null, render: r => r.n ? fmt.ratio(r.n.incentive) : '–' },
    ], rows, { state: { sort: 'uid', dir: 'asc' }, empty: 'No compute records.', onRow: r => { location.hash = `#/s/${netuid}/c/${r.hotkey}`; } }));
    clear(allocs, h('h2', {}, 'Allocations'), allocationsTable(netuid, d.allocations));
    clear(recent, h('h2', {}, 'Recent challenges'), challengesTable(netuid, d.recent, true));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on((kind, data) => { if (kind === 'challenge' || kind === 'chain') again(); });
}

async function pageComputeMiner(main, netuid, hotkey) {
  await refreshNav(netuid);
  const body = h('div');
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', h('a', { href: `#/s/${netuid}/compute` }, `Subnet ${netuid} compute`), ' › ', 'Miner'),
    h('h1', {}, 'Compute miner ', h('span', { class: 'mono' }, hotkey)), body);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/compute/miners/${hotkey}`);
    const chron = d.challenges.slice().reverse();
    const ok = d.challenges.filter(c => c.success).length;
    const causes = {};
    for (const c of d.challenges) if (!c.success) causes[c.cause || 'failed'] = (causes[c.cause || 'failed'] || 0) + 1;
    clear(body, chainBanner(d.chain, d.metagraph), identity(netuid, d.neuron, hotkey, d.metagraph),
      h('div', { class: 'card' }, h('h2', {}, `Last ${d.challenges.length} challenges`),
        h('div', { class: 'tiles' }, tile('Solved', fmt.pct(d.challenges.length ? ok / d.challenges.length : null), `${ok} of ${d.challenges.length}`, d.challenges.length && ok / d.challenges.length < 0.5 ? 'bad' : 'good')),
        h('h2', {}, 'Failure causes'), causesList(Object.entries(causes).map(([cause, n]) => ({ cause, n })).sort((a, b) => b.n - a.n), d.challenges.length)),
      h('div', { class: 'grid section' },
        chartCard('Challenge time (ms)', [
          { name: 'solved', color: '#1a7f37', points: chron.map(c => [c.created_at_ms, c.success ? c.elapsed_ms : null]) },
          { name: 'failed', color: '#cf222e', points: chron.map(c => [c.created_at_ms, c.success ? null : c.elapsed_ms]) }]),
        chartCard('Difficulty', [{ name: 'difficulty', color: '#8250df', points: chron.map(c => [c.created_at_ms, c.difficulty]) }]),
        chartCard('Score over time', [{ name: 'score', points: d.scores.slice().reverse().map(x => [x.created_at_ms, x.score]) }], { legend: true }),
        chartCard('Incentive over time', [{ name: 'incentive', color: '#0a7ea4', points: d.incentive.map(p => [p.t_ms, p.incentive]) }], { legend: true })),
      h('div', { class: 'card' }, h('h2', {}, 'Specs'), d.specs ? [h('p', {}, specSummary(d.specs.specs), h('span', { class: 'muted' }, ` · reported ${fmt.ago(d.specs.updated_at_ms)}`)),
        h('pre', {}, JSON.stringify(d.specs.specs, null, 2))] : h('p', { class: 'muted' }, 'No specs reported.')),
      h('div', { class: 'card' }, h('h2', {}, 'Allocations'), allocationsTable(netuid, d.allocations)),
      h('div', { class: 'card' }, h('h2', {}, 'Challenge history'), challengesTable(netuid, d.challenges, false)));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on((kind, data) => { if (kind === 'challenge' && data.miner_hotkey === hotkey) again(); });
}

// ---------- Reward subnet ----------

const FUNCTION_COLORS = ['#cf222e', '#1a7f37', '#8250df', '#bf8700', '#0a7ea4', '#57606a'];

async function pageReward(main, netuid) {
  await refreshNav(netuid);
  const tiles = h('div', { class: 'tiles' }), hists = h('div', { class: 'grid section', id: 'reward-histograms' });
  const uids = h('div', { class: 'card', id: 'reward-uids' }), recent = h('div', { class: 'card' }), note = h('div');
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', `Subnet ${netuid}`, ' › ', 'Rewards'),
    h('h1', {}, `Subnet ${netuid}`, subnetTabs(netuid, 'reward'), windowPicker(ui.rewardWindow, w => { ui.rewardWindow = w; route(); }, ['1h', '6h', '24h', '7d', '30d'])),
    note, tiles, hists, uids, recent);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/reward?window=${ui.rewardWindow}`);
    const dist = d.distribution, total = dist.histograms[0];
    clear(note, dist.truncated ? h('div', { class: 'banner warn' }, `More than ${fmt.num(d.max_samples)} rewards in this window: the distributions are of the newest ${fmt.num(d.max_samples)}.`) : null);
    clear(tiles, tile('Rewards', fmt.num(dist.samples), `one per uid per step, last ${d.window}`), tile('Uids', fmt.num(dist.uids.length)),
      tile('Mean reward', total && total.n ? fmt.num(total.mean, 3) : '–'), tile('Last step', fmt.ago(dist.last_ms)));
    clear(hists, dist.histograms.map((hist, i) => histogramCard(hist, i === 0 ? COLORS[0] : FUNCTION_COLORS[(i - 1) % FUNCTION_COLORS.length])));
    clear(uids, h('h2', {}, 'Uids'), table([
      { key: 'uid', label: 'UID', num: true, render: r => h('a', { href: `#/s/${netuid}/reward/${r.uid}` }, String(r.uid)) },
      { key: 'n', label: 'Rewards', num: true, render: r => fmt.num(r.n) },
      { key: 'mean_reward', label: 'Mean reward', num: true, render: r => fmt.num(r.mean_reward, 4) },
      { key: 'last_ms', label: 'Last', render: r => fmt.ago(r.last_ms) },
    ], dist.uids, { state: { sort: 'mean_reward', dir: 'desc' }, empty: 'No rewards in this window.', onRow: r => { location.hash = `#/s/${netuid}/reward/${r.uid}`; } }));
    clear(recent, h('h2', {}, 'Latest steps'), table([
      { key: 'created_at_ms', label: 'Time', render: r => fmt.time(r.created_at_ms) },
      { key: 'forward_index', label: 'Forward', num: true },
      { key: 'step', label: 'Step' },
      { key: 'prompt', label: 'Prompt', sortable: false, render: r => h('span', { class: 'clip', title: r.prompt }, r.prompt) },
      { key: 'best', label: 'Best completion', sortable: false, render: r => h('span', { class: 'clip', title: r.best }, r.best) },
      { key: 'step_length_s', label: 'Step time', num: true, render: r => fmt.num(r.step_length_s, 2) + ' s' },
      { key: 'scoring_s', label: 'Scoring', num: true, render: r => fmt.num(r.scoring_s, 2) + ' s' },
    ], d.recent, { state: { sort: 'created_at_ms', dir: 'desc' }, empty: 'No steps recorded.' }));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on(kind => { if (kind === 'chain') again(); });
}

async function pageRewardUid(main, netuid, uid) {
  await refreshNav(netuid);
  const body = h('div');
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', h('a', { href: `#/s/${netuid}/reward` }, `Subnet ${netuid} rewards`), ' › ', `uid ${uid}`),
    h('h1', {}, `Rewards of uid ${uid}`, windowPicker(ui.rewardWindow, w => { ui.rewardWindow = w; route(); }, ['1h', '6h', '24h', '7d', '30d'])), body);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/reward/uids/${uid}?window=${ui.rewardWindow}`);
    const pts = d.history;
    const rewards = pts.map(p => p.reward).filter(v => v !== null);
    const mean = rewards.length ? rewards.reduce((a, b) => a + b, 0) / rewards.length : null;
    clear(body,
      h('div', { class: 'tiles' }, tile('Rewards', fmt.num(pts.length), pts.length === d.limit ? `the newest ${d.limit} in ${d.window}` : `last ${d.window}`),
        tile('Mean reward', fmt.num(mean, 4)), tile('Last', pts.length ? fmt.num(pts[pts.length - 1].reward, 4) : '–', pts.length ? fmt.ago(pts[pts.length - 1].t_ms) : null)),
      h('div', { class: 'grid section' },
        chartCard('Combined reward', [{ name: 'reward', points: pts.map(p => [p.t_ms, p.reward]) }], { legend: true }),
        chartCard('Reward functions (normalised)', d.functions.map((f, i) => ({ name: f, color: FUNCTION_COLORS[i % FUNCTION_COLORS.length], points: pts.map(p => [p.t_ms, p.functions[f] === undefined ? null : p.functions[f]]) })), { legend: true })),
      h('div', { class: 'card' }, h('h2', {}, 'History'), table([
        { key: 't_ms', label: 'Time', render: r => fmt.time(r.t_ms) },
        { key: 'step', label: 'Step' },
        { key: 'reward', label: 'Reward', num: true, render: r => fmt.num(r.reward, 4) },
        ...d.functions.map(f => ({ key: 'f:' + f, label: f, num: true, value: r => r.functions[f], render: r => fmt.num(r.functions[f], 4) })),
      ], pts, { state: { sort: 't_ms', dir: 'desc' }, empty: 'No rewards for this uid in this window.' })));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on(kind => { if (kind === 'chain') again(); });
}

// ---------- Model-evaluation subnet ----------

function evalStatus(r) {
  return r.status === 'evaluated' ? pill('evaluated', 'ok') : r.status === 'duplicate' ? pill('duplicate', 'm') : pill('rejected', 'fail');
}

async function pageEvaluation(main, netuid) {
  await refreshNav(netuid);
  const head = h('div'), plots = h('div', { class: 'grid section' }), round = h('div', { class: 'card', id: 'evaluation-round' });
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', `Subnet ${netuid}`, ' › ', 'Models'),
    h('h1', {}, `Subnet ${netuid}`, subnetTabs(netuid, 'evaluation')), head, plots, round);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/evaluation`);
    const r0 = d.round;
    const evaluated = d.rows.filter(r => r.status === 'evaluated');
    clear(head, h('div', { class: 'tiles' },
      tile('Latest round', r0 ? `step ${r0.step}` : '–', r0 ? `block ${r0.block} · ${fmt.ago(r0.created_at_ms)}` : 'no evaluations yet'),
      tile('Validator', r0 ? h('span', { class: 'mono', title: r0.validator_hotkey }, fmt.key(r0.validator_hotkey)) : '–', r0 ? `competition ${r0.competition}` : null),
      tile('Evaluated', fmt.num(evaluated.length), `of ${d.rows.length} uids`),
      tile('Rejected', fmt.num(d.rows.filter(r => r.status === 'rejected').length), null, d.rows.some(r => r.status === 'rejected') ? 'bad' : '')));
    const bars = key => d.rows.map(r => ({ label: String(r.uid), tip: `uid ${r.uid}`, n: r[key] === null ? 0 : r[key] }));
    clear(plots,
      h('div', { class: 'card' }, h('h2', {}, 'Weight by uid'), barChart(bars('weight'), { color: '#8250df', yFormat: v => fmt.num(v, 3), label: 'weight by uid', empty: 'No weights in the latest round.' })),
      h('div', { class: 'card' }, h('h2', {}, 'Mean loss by uid'), barChart(bars('mean_loss'), { color: '#cf222e', yFormat: v => fmt.num(v, 3), label: 'loss by uid', empty: 'No losses in the latest round.' })));
    clear(round, h('h2', {}, 'Latest round'), table([
      { key: 'uid', label: 'UID', num: true, render: r => h('a', { href: `#/s/${netuid}/evaluation/${r.uid}` }, String(r.uid)) },
      { key: 'miner_hotkey', label: 'Hotkey', render: r => h('span', { class: 'mono', title: r.miner_hotkey }, fmt.key(r.miner_hotkey)) },
      { key: 'mean_loss', label: 'Loss', num: true, render: r => fmt.num(r.mean_loss, 4) },
      { key: 'win_rate', label: 'Win rate', num: true, render: r => fmt.pct(r.win_rate) },
      { key: 'weight', label: 'Weight', num: true, render: r => fmt.num(r.weight, 4) },
      { key: 'status', label: 'Status', render: r => evalStatus(r) },
      { key: 'reason', label: 'Cause', sortable: false, render: r => r.reason ? h('span', { class: 'clip', title: r.reason }, r.reason) : '' },
    ], d.rows, { state: { sort: 'uid', dir: 'asc' }, empty: 'No evaluations recorded.', onRow: r => { location.hash = `#/s/${netuid}/evaluation/${r.uid}`; } }));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on(kind => { if (kind === 'chain') again(); });
}

async function pageEvaluationUid(main, netuid, uid) {
  await refreshNav(netuid);
  const body = h('div');
  clear(main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Subnets'), ' › ', h('a', { href: `#/s/${netuid}/evaluation` }, `Subnet ${netuid} models`), ' › ', `uid ${uid}`),
    h('h1', {}, `Model of uid ${uid}`, windowPicker(ui.evaluationWindow, w => { ui.evaluationWindow = w; route(); }, ['1h', '6h', '24h', '7d', '30d'])), body);
  const refresh = async () => {
    const d = await api(`/api/subnets/${netuid}/evaluation/uids/${uid}?window=${ui.evaluationWindow}`);
    const pts = d.history, last = pts[pts.length - 1];
    clear(body,
      h('div', { class: 'tiles' },
        tile('Evaluations', fmt.num(pts.length), pts.length === d.limit ? `the newest ${d.limit} in ${d.window}` : `last ${d.window}`),
        tile('Loss', last ? fmt.num(last.mean_loss, 4) : '–', last ? fmt.ago(last.created_at_ms) : null),
        tile('Win rate', last ? fmt.pct(last.win_rate) : '–'), tile('Weight', last ? fmt.num(last.weight, 4) : '–'),
        last ? tile('Status', evalStatus(last), last.reason, last.status === 'rejected' ? 'bad' : '') : null),
      h('div', { class: 'grid section' },
        chartCard('Mean loss', [{ name: 'loss', color: '#cf222e', points: pts.map(p => [p.created_at_ms, p.mean_loss]) }], { legend: true }),
        chartCard('Win rate', [{ name: 'win rate', color: '#1a7f37', points: pts.map(p => [p.created_at_ms, p.win_rate]) }], { legend: true, yMin: 0, yMax: 1, yFormat: v => fmt.pct(v) }),
        chartCard('Weight', [{ name: 'weight', color: '#8250df', points: pts.map(p => [p.created_at_ms, p.weight]) }], { legend: true, yMin: 0 })),
      h('div', { class: 'card' }, h('h2', {}, 'History'), table([
        { key: 'created_at_ms', label: 'Time', render: r => fmt.time(r.created_at_ms) },
        { key: 'step', label: 'Step', num: true },
        { key: 'block', label: 'Block', num: true },
        { key: 'mean_loss', label: 'Loss', num: true, render: r => fmt.num(r.mean_loss, 4) },
        { key: 'win_rate', label: 'Win rate', num: true, render: r => fmt.pct(r.win_rate) },
        { key: 'weight', label: 'Weight', num: true, render: r => fmt.num(r.weight, 4) },
        { key: 'status', label: 'Status', render: r => evalStatus(r) },
        { key: 'reason', label: 'Cause', sortable: false, render: r => r.reason || '' },
        { key: 'validator_hotkey', label: 'Validator', render: r => h('span', { class: 'mono', title: r.validator_hotkey }, fmt.key(r.validator_hotkey)) },
      ], pts, { state: { sort: 'created_at_ms', dir: 'desc' }, empty: 'No evaluations of this uid in this window.' })));
  };
  await refresh();
  const again = throttledRefresh(refresh);
  live.connect(netuid);
  return live.on(kind => { if (kind === 'chain') again(); });
}

// ---------- Router ----------

let unsubscribe = null;
async function route() {
  if (unsubscribe) { unsubscribe(); unsubscribe = null; }
  tip.hidden = true;
  document.body.dataset.ready = 'loading';
  // The hash this render is for: tests (and anything else waiting on `ready`) check that
  // `ready` belongs to the current page, not to the one before a click changed the hash.
  const hash = location.hash;
  document.body.dataset.route = hash;
  const main = document.getElementById('main');
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').filter(Boolean).map(decodeURIComponent);
  try {
    let off;
    if (parts.length === 0) { off = await pageSubnets(main); live.connect(null); }
    else if (parts[0] === 'r' && parts[1]) off = await pageRequest(main, parts[1]);
    else if (parts[0] === 's' && /^\d+$/.test(parts[1] || '')) {
      const netuid = Number(parts[1]);
      if (parts.length === 2) off = await pageOverview(main, netuid);
      else if (parts[2] === 'compute') off = await pageCompute(main, netuid);
      else if (parts[2] === 'm' && parts[3]) off = await pageMiner(main, netuid, parts[3]);
      else if (parts[2] === 'v' && parts[3]) off = await pageValidator(main, netuid, parts[3]);
      else if (parts[2] === 'c' && parts[3]) off = await pageComputeMiner(main, netuid, parts[3]);
      else if (parts[2] === 'reward' && !parts[3]) off = await pageReward(main, netuid);
      else if (parts[2] === 'reward' && /^\d+$/.test(parts[3])) off = await pageRewardUid(main, netuid, Number(parts[3]));
      else if (parts[2] === 'evaluation' && !parts[3]) off = await pageEvaluation(main, netuid);
      else if (parts[2] === 'evaluation' && /^\d+$/.test(parts[3])) off = await pageEvaluationUid(main, netuid, Number(parts[3]));
      else throw new Error('unknown page');
    } else throw new Error('unknown page');
    // A newer navigation started while this page loaded: drop this page's live
    // subscription and leave `unsubscribe` and `ready` to that one.
    if (location.hash !== hash) { if (off) off(); return; }
    unsubscribe = off || null;
    document.body.dataset.ready = 'true';
  } catch (e) {
    if (location.hash !== hash) return;
    clear(main, h('div', { class: 'card' }, h('h2', { class: 'error' }, 'Could not load this page'), h('p', {}, e.message), h('a', { href: '#/' }, 'Back to subnets')));
    document.body.dataset.ready = 'error';
  }
}

window.addEventListener('hashchange', route);
refreshStatus();
setInterval(refreshStatus, 10000);
route();
