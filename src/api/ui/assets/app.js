// labelloop review page: a client of the public JSON API, nothing more.
// No build step, no dependencies. The token lives in sessionStorage only.
'use strict';
(() => {
  const TOKEN_KEY = 'll_token';
  const OUTBOX_KEY = 'll_outbox';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  // How many items to hold ahead of the one shown.
  const AHEAD = 8;
  const MEASURE_OF = {
    'margin': 'margin', 'entropy': 'entropy', 'least-confidence': 'least_confidence',
    'vote-entropy': 'vote_entropy', 'mean-kl': 'mean_kl',
  };

  const app = { me: null, strategies: null };
  let R = null; // the review session, while the review page is shown
  window.__ll_latencies = [];

  // ---- small helpers ---------------------------------------------------

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    for (const c of kids.flat()) {
      if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }
  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    for (const c of kids.flat()) {
      if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.setAttribute('class', v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  const $ = (sel) => document.querySelector(sel);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const pct = (x, d = 1) => (x == null ? '–' : (100 * x).toFixed(d) + '%');
  const num = (x) => (x == null ? '–' : Number(x).toLocaleString('en'));

  function showMain(...kids) {
    const main = $('#main');
    main.replaceChildren(...kids.flat());
    return main;
  }
  function say(text) { $('#status').textContent = text; }
  function alertBox(text) {
    const a = $('#alert');
    if (!text) { a.hidden = true; a.textContent = ''; return; }
    a.textContent = text;
    a.hidden = false;
  }
  function crumbs(list) {
    const nav = $('#crumbs');
    nav.replaceChildren(...list.map(([label, href], i) => {
      const last = i === list.length - 1;
      return h('span', { class: 'crumb' }, href && !last
        ? h('a', { href, 'data-link': true }, label)
        : h('span', { 'aria-current': last ? 'page' : null }, label));
    }));
  }

  // ---- the API -----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter || 0;
    }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, body, opts = {}) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, keepalive: !!opts.keepalive,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'cannot reach the server');
    }
    if (resp.ok && opts.raw) return resp;
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(resp.status, err.code || 'http_' + resp.status,
        err.message || resp.statusText || 'no message', Number(resp.headers.get('Retry-After')) || 0);
    }
    return data;
  }

  /** A message a person can act on, for any API error. */
  function readable(e) {
    const m = e.message || '';
    switch (e.status) {
      case 0: return 'Cannot reach the server. Answers not yet sent are kept in this tab and sent when it answers.';
      case 401: return 'Your token was refused (' + m + '). Sign in again.';
      case 403: return 'Not allowed: ' + m;
      case 404: return 'Not found: ' + m;
      case 409: return 'Conflict: ' + m;
      case 413: return 'Too large: ' + m;
      case 422: return 'The server refused this: ' + m;
      case 429: return 'The server is busy (too many requests).';
      case 503: return 'The server is unavailable for a moment (' + m + ').';
      default: return (e.status >= 500 ? 'The server failed: ' : '') + m;
    }
  }
  const retryable = (e) => [0, 429, 502, 503, 504].includes(e.status);

  // ---- the outbox: answers not yet sent ------------------------------------
  // Kept in sessionStorage, so a reload or a lost connection loses nothing.
  // One sender at a time, in order; 429, 503 and network errors are retried
  // with exponential backoff (honouring Retry-After); other refusals are
  // shown and dropped, since sending them again cannot succeed.

  const loadBox = () => { try { return JSON.parse(sessionStorage.getItem(OUTBOX_KEY)) || []; } catch (e) { return []; } };
  const saveBox = (box) => sessionStorage.setItem(OUTBOX_KEY, JSON.stringify(box));
  const entries = new Map(); // outbox key -> history entry of this page
  let sending = null;
  let backoff = 0;
  window.__ll_pending = () => loadBox().length;

  function enqueue(rec) {
    const box = loadBox();
    box.push(rec);
    saveBox(box);
    updatePending();
    flush();
  }
  function dequeue(key) {
    saveBox(loadBox().filter((r) => r.key !== key));
    updatePending();
  }
  function flush() {
    if (!sending) sending = sendAll().finally(() => { sending = null; });
    return sending;
  }
  async function sendAll() {
    for (;;) {
      const box = loadBox();
      if (!box.length) { updatePending(); return; }
      const rec = box[0];
      const entry = entries.get(rec.key);
      if (entry) entry.state = 'sending';
      try {
        const res = await api('POST', `/v1/items/${rec.item}/annotations`, { label: rec.label });
        dequeue(rec.key);
        backoff = 0;
        if (entry) { entry.state = 'sent'; entry.annotationId = res.annotation_id; }
        if ($('#alert').dataset.from === 'outbox') { alertBox(null); $('#alert').dataset.from = ''; }
      } catch (e) {
        if (entry) entry.state = 'queued';
        if (retryable(e)) {
          backoff = Math.min(30000, backoff ? backoff * 2 : 500);
          const wait = Math.max(backoff, e.retryAfter * 1000);
          alertBox(`${readable(e)} ${box.length} answer(s) waiting; trying again in ${Math.ceil(wait / 1000)} s.`);
          $('#alert').dataset.from = 'outbox';
          await sleep(wait);
          continue;
        }
        if (e.status === 401) {
          alertBox(readable(e) + ' Your unsent answers are kept.');
          return;
        }
        dequeue(rec.key);
        if (entry) entry.state = 'failed';
        alertBox(`An answer (${rec.label}) was not saved: ${readable(e)}`);
        if (R) renderCurrent();
      }
    }
  }
  function updatePending() {
    const n = loadBox().length;
    const el = $('#pending');
    if (el) el.textContent = n ? `${n} answer${n === 1 ? '' : 's'} sending…` : 'All answers saved';
  }
  window.addEventListener('online', () => { backoff = 0; flush(); });

  // ---- sign-in and routing -----------------------------------------------

  async function whoami() {
    try {
      const me = await api('GET', '/v1/me');
      if (me.role === 'predictor') {
        sessionStorage.removeItem(TOKEN_KEY);
        signIn('This is a predictor token: it may call the prediction API but cannot review. Sign in with an annotator or admin token.');
        return false;
      }
      app.me = me;
      $('#who').hidden = false;
      $('#who-name').textContent = me.auth ? `${me.name} (${me.role})` : 'local user (no sign-in)';
      $('#sign-out').hidden = !me.auth;
      return true;
    } catch (e) {
      if (e.status === 401) {
        const had = !!token();
        sessionStorage.removeItem(TOKEN_KEY);
        signIn(had ? 'That token was refused: the server does not know it. Check it and try again.' : null);
      } else {
        showMain(h('h1', {}, 'labelloop'), h('p', { class: 'error' }, readable(e)),
          h('button', { type: 'button', onclick: route }, 'Try again'));
      }
      return false;
    }
  }

  function signIn(message) {
    crumbs([]);
    $('#who').hidden = true;
    const input = h('input', {
      name: 'token', id: 'token', type: 'password', autocomplete: 'off', required: true,
      spellcheck: 'false', 'aria-describedby': 'token-help',
    });
    const form = h('form', {
      class: 'card sign-in', onsubmit: (e) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        sessionStorage.setItem(TOKEN_KEY, t);
        app.me = null;
        route();
      },
    },
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'error', role: 'alert', id: 'sign-in-error' }, message) : null,
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'muted' },
      'An annotator or admin token from ', h('code', {}, 'labelloop tokens create'),
      '. It is kept in this tab only and never put in a URL.'),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
    showMain(form);
    input.focus();
  }

  function go(path) {
    history.pushState(null, '', path);
    route();
  }
  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[data-link]');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey || e.button !== 0) return;
    e.preventDefault();
    go(a.getAttribute('href'));
  });
  window.addEventListener('popstate', () => route());
  $('#sign-out').addEventListener('click', () => {
    leaveReview();
    sessionStorage.removeItem(TOKEN_KEY);
    app.me = null;
    go('/ui/');
  });

  async function route() {
    leaveReview();
    alertBox(null);
    if (!app.me && !(await whoami())) return;
    const path = location.pathname.replace(/\/+$/, '');
    let m;
    if ((m = path.match(/^\/ui\/projects\/(\d+)\/review$/))) {
      const strategy = new URLSearchParams(location.search).get('strategy') || 'margin';
      return reviewPage(Number(m[1]), strategy);
    }
    if ((m = path.match(/^\/ui\/projects\/(\d+)$/))) return projectPage(Number(m[1]));
    return projectsPage();
  }

  async function strategies() {
    if (!app.strategies) app.strategies = await api('GET', '/v1/strategies');
    return app.strategies;
  }

  // ---- projects --------------------------------------------------------

  function progressCard(p, pr) {
    const total = Math.max(1, pr.total);
    const seg = (n, cls, label) => h('span', { class: 'seg ' + cls, title: `${label}: ${num(n)}`, 'data-w': n / total });
    const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `${num(pr.auto_accepted)} auto-accepted, ${num(pr.human)} human-labeled, ${num(pr.needs_review + pr.needs_confirmation)} waiting, of ${num(pr.total)}` },
      seg(pr.auto_accepted, 'auto', 'Auto-accepted'), seg(pr.human, 'human', 'Human-labeled'),
      seg(pr.needs_review + pr.needs_confirmation, 'wait', 'Waiting for review'));
    for (const s of bar.children) s.style.width = (100 * Number(s.dataset.w)).toFixed(2) + '%';
    const precision = pr.precision == null
      ? 'no calibration yet'
      : `${pct(pr.precision)} (≥ ${pct(pr.lower_bound)})`;
    return h('dl', { class: 'figures' },
      fig('Items', num(pr.total)), fig('Auto-accepted', num(pr.auto_accepted), 'auto'),
      fig('Human-labeled', num(pr.human), 'human'), fig('Waiting for review', num(pr.needs_review + pr.needs_confirmation), 'wait'),
      fig('Audit pending', num(pr.audit_pending)), fig('Precision (lower bound)', precision),
      h('div', { class: 'bar-wrap' }, bar));
  }
  const fig = (k, v, cls) => h('div', { class: 'fig' }, h('dt', {}, cls ? h('span', { class: 'dot ' + cls, 'aria-hidden': 'true' }) : null, k), h('dd', {}, v));

  async function projectsPage() {
    crumbs([['Projects', '/ui/']]);
    showMain(h('h1', {}, 'Projects'), h('p', { class: 'muted' }, 'Loading…'));
    try {
      const { projects } = await api('GET', '/v1/projects');
      const progress = await Promise.all(projects.map((p) => api('GET', `/v1/projects/${p.id}/progress`)));
      const cards = projects.map((p, i) => h('section', { class: 'card project', 'aria-labelledby': `p${p.id}` },
        h('h2', { id: `p${p.id}` }, h('a', { href: `/ui/projects/${p.id}`, 'data-link': true }, p.name)),
        h('p', { class: 'muted' }, `${p.model} · ${p.labels.length} labels · target precision ${pct(p.precision_target, 0)}`),
        progressCard(p, progress[i]),
        h('p', { class: 'actions' },
          h('a', { class: 'button primary', href: `/ui/projects/${p.id}/review?strategy=margin`, 'data-link': true }, 'Review'),
          h('a', { class: 'button', href: `/ui/projects/${p.id}`, 'data-link': true }, 'Details'))));
      showMain(h('h1', {}, 'Projects'), cards.length ? h('div', { class: 'grid' }, cards)
        : h('p', {}, 'No projects yet. Create one with POST /v1/projects.'));
    } catch (e) {
      showMain(h('h1', {}, 'Projects'), h('p', { class: 'error' }, readable(e)));
    }
  }

  // ---- charts (SVG, drawn here from the API's numbers) ---------------------

  function chart({ title, series, xLabel, yLabel, xMax, yMax = 1, diagonal = false, yFmt = (v) => pct(v, 0) }) {
    const W = 480, H = 300, L = 56, Rm = 16, T = 16, B = 44;
    const xm = xMax || Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
    const X = (x) => L + (W - L - Rm) * (x / xm);
    const Y = (y) => H - B - (H - T - B) * (y / yMax);
    const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart' }, svg('title', {}, title));
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      g.append(svg('line', { x1: L, x2: W - Rm, y1: Y(v), y2: Y(v), class: 'grid' }),
        svg('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end', class: 'tick' }, yFmt(v)));
      const xv = (xm * i) / 4;
      g.append(svg('text', { x: X(xv), y: H - B + 16, 'text-anchor': 'middle', class: 'tick' },
        xm <= 1 ? xv.toFixed(2) : Math.round(xv).toLocaleString('en')));
    }
    g.append(svg('line', { x1: L, x2: W - Rm, y1: Y(0), y2: Y(0), class: 'axis' }),
      svg('line', { x1: L, x2: L, y1: T, y2: Y(0), class: 'axis' }),
      svg('text', { x: (L + W - Rm) / 2, y: H - 6, 'text-anchor': 'middle', class: 'label' }, xLabel),
      svg('text', { x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', class: 'label', transform: `rotate(-90 14 ${(T + H - B) / 2})` }, yLabel));
    if (diagonal) g.append(svg('line', { x1: X(0), y1: Y(0), x2: X(xm), y2: Y(yMax), class: 'diag' }));
    series.forEach((s) => {
      if (!s.points.length) return;
      g.append(svg('polyline', { points: s.points.map((p) => `${X(p[0])},${Y(p[1])}`).join(' '), class: 'line ' + s.cls }));
      for (const p of s.points) g.append(svg('circle', { cx: X(p[0]), cy: Y(p[1]), r: 3.5, class: 'pt ' + s.cls }, svg('title', {}, `${s.name}: ${p[0]} → ${yFmt(p[1])}`)));
    });
    const legend = h('ul', { class: 'legend' }, series.map((s) => h('li', {}, h('span', { class: 'swatch ' + s.cls, 'aria-hidden': 'true' }), s.name)));
    return h('figure', { class: 'chart-box' }, g, h('figcaption', {}, title), legend);
  }

  // ---- a project ---------------------------------------------------------

  async function projectPage(id) {
    crumbs([['Projects', '/ui/'], ['…', null]]);
    showMain(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const [p, pr, st, cal] = await Promise.all([
        api('GET', `/v1/projects/${id}`), api('GET', `/v1/projects/${id}/progress`),
        strategies(), api('GET', `/v1/projects/${id}/calibration`)]);
      crumbs([['Projects', '/ui/'], [p.name, `/ui/projects/${id}`]]);
      const admin = app.me.role === 'admin';
      const lists = h('ul', { class: 'strategies' }, st.strategies.map((s) => h('li', {},
        h('a', { class: 'button' + (s === st.default ? ' primary' : ''), href: `/ui/projects/${id}/review?strategy=${encodeURIComponent(s)}`, 'data-link': true }, s))));
      const hist = cal.history || [];
      const spent = chart({
        title: 'Labels spent against auto-accept coverage',
        series: [{ name: 'Coverage at each calibration', cls: 'after', points: hist.map((x) => [x.labels, x.coverage]) }],
        xLabel: 'human labels spent', yLabel: 'auto-accepted share',
      });
      const parts = [
        h('h1', {}, p.name),
        h('p', { class: 'muted' }, `${p.model} · labels: ${p.labels.join(', ')}`),
        h('section', { class: 'card' }, h('h2', {}, 'Progress'), progressCard(p, pr)),
        h('section', { class: 'card' }, h('h2', {}, 'Review'), h('p', { class: 'muted' }, 'Choose a list. Your tier decides the band of uncertainty you are offered.'), lists),
        h('section', { class: 'card' }, h('h2', {}, 'Labels and coverage'),
          hist.length ? spent : h('p', { class: 'muted' }, 'No calibration yet: coverage appears here after the first fit (it needs audit labels).')),
      ];
      if (admin) parts.push(calibrationPanel(cal), h('section', { class: 'card' }, h('h2', {}, 'Settings'),
        h('pre', { class: 'settings' }, JSON.stringify({ threshold: p.threshold, precision_target: p.precision_target, committee: p.committee, ...p.settings }, null, 2))));
      showMain(h('div', { class: 'project-page' }, parts));
    } catch (e) {
      showMain(h('p', { class: 'error' }, readable(e)));
    }
  }

  function calibrationPanel(cal) {
    const box = h('section', { class: 'card calibration', 'aria-labelledby': 'cal-h' }, h('h2', { id: 'cal-h' }, 'Calibration'));
    if (cal.version == null) {
      box.append(h('p', { class: 'muted' }, `No calibration yet. Audit labels given: ${num(cal.audit.spent)}, waiting: ${num(cal.audit.pending)}. Until a fit, the fixed threshold decides and nothing is guaranteed.`));
      return box;
    }
    const d = cal.drift || {};
    box.append(
      h('dl', { class: 'figures' },
        fig('Version', cal.version), fig('Temperature', Number(cal.temperature).toFixed(3)),
        fig('ECE before → after', `${pct(cal.ece_before)} → ${pct(cal.ece_after)}`),
        fig('Coverage', pct(cal.coverage)), fig('Precision (lower bound)', `${pct(cal.precision)} (≥ ${pct(cal.lower_bound)})`),
        fig('Target, risk δ', `${pct(cal.target, 0)}, ${cal.delta}`)),
      h('p', { class: 'drift ' + (d.alarm ? 'alarm' : 'ok'), role: d.alarm ? 'alert' : null },
        d.alarm ? `Drift alarm: auto-accepting stopped for ${d.classes.join(', ')} (${d.wrong} wrong of ${d.observations} audited since the fit).`
          : `No drift: ${num(d.wrong)} wrong of ${num(d.observations)} audited since the fit (CUSUM ${Number(d.statistic || 0).toFixed(2)} < ${Number(d.threshold || 0).toFixed(2)}).`));
    const rel = cal.reliability || { before: [], after: [] };
    const pts = (bins) => bins.filter((b) => b.count > 0).map((b) => [b.confidence, b.accuracy]);
    box.append(chart({
      title: 'Reliability: accuracy against confidence', xMax: 1, diagonal: true,
      series: [{ name: 'Before temperature scaling', cls: 'before', points: pts(rel.before) },
        { name: 'After', cls: 'after', points: pts(rel.after) }],
      xLabel: 'confidence', yLabel: 'accuracy',
    }));
    const rows = (cal.classes || []).map((c) => h('tr', { class: c.drift_alarm ? 'alarm' : null },
      h('th', { scope: 'row' }, c.label), h('td', {}, c.threshold == null ? 'none' : c.threshold.toFixed(3)),
      h('td', {}, pct(c.coverage)), h('td', {}, pct(c.precision)), h('td', {}, pct(c.lower_bound)),
      h('td', {}, num(c.audit_labels)), h('td', {}, c.drift_alarm ? 'alarm' : 'ok')));
    box.append(h('div', { class: 'table-wrap' }, h('table', { class: 'classes' },
      h('caption', {}, 'Per class'),
      h('thead', {}, h('tr', {}, ['Label', 'Threshold', 'Coverage', 'Precision', 'Lower bound', 'Audit labels', 'Drift'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))));
    return box;
  }

  // ---- reviewing -----------------------------------------------------------

  async function reviewPage(projectId, strategy) {
    crumbs([['Projects', '/ui/'], ['…', `/ui/projects/${projectId}`], [strategy, null]]);
    showMain(h('p', { class: 'muted' }, 'Loading…'));
    let project;
    try {
      project = await api('GET', `/v1/projects/${projectId}`);
    } catch (e) {
      showMain(h('p', { class: 'error' }, readable(e)));
      return;
    }
    crumbs([['Projects', '/ui/'], [project.name, `/ui/projects/${projectId}`], [`Review: ${strategy}`, null]]);
    R = {
      project, strategy, queue: [], current: null, history: [], view: -1, seen: new Set(),
      skipped: new Set(), fetching: null, exhausted: false, tier: null, filter: '', urls: [],
    };
    window.__ll_review = R;
    buildReview();
    await fill();
    next(null);
  }

  /** Ids this tab holds leases on: the item shown and those fetched ahead. */
  function held() {
    if (!R) return [];
    const ids = R.queue.map((i) => i.id);
    if (R.current) ids.push(R.current.id);
    return ids;
  }
  window.__ll_held = held;

  /** Lease more items ahead (the API re-offers our own leases, so skip seen ones). */
  function fill() {
    if (!R || R.fetching) return R ? R.fetching : Promise.resolve();
    const session = R;
    const want = Math.min(500, held().length + loadBox().length + AHEAD + 2);
    session.fetching = (async () => {
      try {
        const list = await api('GET', `/v1/projects/${session.project.id}/review?strategy=${encodeURIComponent(session.strategy)}&limit=${want}`);
        if (R !== session) return;
        session.tier = list.tier;
        const fresh = list.items.filter((i) => !session.seen.has(i.id));
        const back = list.items.filter((i) => session.skipped.has(i.id)).map((i) => i.id);
        if (back.length) release(back);
        for (const it of fresh) { session.seen.add(it.id); prefetch(it); session.queue.push(it); }
        session.exhausted = fresh.length === 0;
      } catch (e) {
        alertBox(readable(e));
        if (retryable(e)) { await sleep(1000); }
      } finally {
        session.fetching = null;
      }
    })();
    return session.fetching;
  }

  /** Fetch the item's content and decode it now, so showing it is instant. */
  function prefetch(item) {
    item.ready = (async () => {
      const resp = await api('GET', `/v1/items/${item.id}/content?project=${item.project_id}`, undefined, { raw: true });
      if (item.kind === 'text') { item.text = await resp.text(); return; }
      const url = URL.createObjectURL(await resp.blob());
      if (R) R.urls.push(url);
      const img = new Image();
      img.src = url;
      try { await img.decode(); } catch (e) { /* shown as broken below */ }
      item.url = url;
    })().catch((e) => { item.error = readable(e); });
  }

  function release(ids, keepalive) {
    if (!R || !ids.length) return;
    api('POST', `/v1/projects/${R.project.id}/review/release`, { items: ids }, { keepalive })
      .catch((e) => { if (!keepalive) say('Could not give an item back: ' + readable(e)); });
  }

  /** Leaving the review page (or the tab) gives every held lease back. */
  function leaveReview() {
    if (!R) return;
    release(held(), true);
    for (const u of R.urls) URL.revokeObjectURL(u);
    R = null;
    window.__ll_review = null;
  }
  window.addEventListener('pagehide', leaveReview);
  window.addEventListener('pageshow', (e) => { if (e.persisted) route(); });

  function buildReview() {
    const labels = R.project.labels;
    const filter = h('input', {
      id: 'filter', type: 'search', placeholder: 'Filter labels  ( / )', 'aria-label': 'Filter labels',
      autocomplete: 'off', oninput: () => { R.filter = filter.value.trim().toLowerCase(); renderLabels(); },
    });
    const btn = (id, text, key, onclick, cls) => h('button', { type: 'button', id, class: cls || '', onclick, 'aria-keyshortcuts': key.aria },
      text, ' ', h('kbd', { 'aria-hidden': 'true' }, key.shown));
    showMain(h('div', { class: 'review', id: 'review' },
      h('section', { class: 'stage-col', 'aria-label': 'Item' },
        h('div', { id: 'stage', class: 'stage', tabindex: '-1', 'aria-live': 'polite' }),
        h('p', { id: 'why', class: 'why' })),
      h('section', { class: 'panel', 'aria-label': 'Answer' },
        h('div', { id: 'banner', class: 'banner', hidden: true }),
        h('h2', { class: 'sr-only' }, 'Model'),
        h('ol', { id: 'top3', class: 'top3', 'aria-label': "The model's top three labels" }),
        h('div', { class: 'actions-row' },
          btn('accept', 'Accept', { shown: 'Enter', aria: 'Enter' }, () => act('accept'), 'primary'),
          btn('skip', 'Skip', { shown: 'Space', aria: 'Space' }, () => act('skip')),
          btn('undo', 'Undo', { shown: 'U', aria: 'U Backspace' }, () => act('undo'))),
        h('h2', { class: 'sr-only' }, 'Labels'),
        labels.length > 10 ? filter : null,
        h('div', { id: 'labels', class: 'labels', role: 'group', 'aria-label': 'Labels' },
          labels.map((l) => h('button', { type: 'button', class: 'label', dataset: { label: l }, onclick: () => act('label', l) },
            h('kbd', { 'aria-hidden': 'true' }), h('span', {}, l)))),
        h('div', { class: 'actions-row nav' },
          btn('prev', 'Previous', { shown: '←', aria: 'ArrowLeft' }, () => act('prev')),
          btn('next', 'Next', { shown: '→', aria: 'ArrowRight' }, () => act('next')),
          btn('help', 'Keys', { shown: '?', aria: '?' }, () => act('help'), 'ghost')),
        h('p', { class: 'muted small' }, h('span', { id: 'count' }), ' · ', h('span', { id: 'pending' })))));
    if (labels.length <= 10) R.filterEl = null; else R.filterEl = filter;
    renderLabels();
    updatePending();
  }

  /** Label buttons, narrowed by the filter; the first ten visible get keys 1–9, 0. */
  function renderLabels() {
    let k = 0;
    for (const b of document.querySelectorAll('#labels .label')) {
      const show = !R.filter || b.dataset.label.toLowerCase().includes(R.filter);
      b.hidden = !show;
      const key = show && k < 10 ? String((k + 1) % 10) : '';
      if (show) k++;
      b.querySelector('kbd').textContent = key;
      b.dataset.key = key;
      b.setAttribute('aria-keyshortcuts', key || '');
      if (!key) b.removeAttribute('aria-keyshortcuts');
    }
  }
  const visibleLabels = () => [...document.querySelectorAll('#labels .label')].filter((b) => !b.hidden);

  /** Show the next item; `t0` is the key press it answers, for the latency log. */
  async function next(t0) {
    const session = R;
    if (!session) return;
    session.view = -1;
    session.current = session.queue.shift() || null;
    if (!session.current) {
      renderCurrent();
      await fill();
      if (R !== session) return;
      session.current = session.queue.shift() || null;
    }
    if (session.queue.length < AHEAD / 2 && !session.exhausted) fill();
    await renderCurrent(t0);
  }

  async function renderCurrent(t0) {
    if (!R) return;
    const session = R;
    const viewing = R.view >= 0 ? R.history[R.view] : null;
    const item = viewing ? viewing.item : R.current;
    const stage = $('#stage');
    const banner = $('#banner');
    $('#count').textContent = `${R.history.length} answered in this session`;
    document.querySelectorAll('#labels .label').forEach((b) => b.classList.remove('suggested', 'given'));
    if (!item) {
      stage.replaceChildren(h('p', { class: 'empty' }, R.fetching ? 'Loading…' : 'Nothing left to review in this list.'));
      stage.dataset.itemId = '';
      $('#top3').replaceChildren();
      $('#why').textContent = '';
      banner.hidden = true;
      return;
    }
    if (!item.url && !item.text && !item.error && item.ready) {
      await item.ready;
      if (R !== session) return;
      if ((R.view >= 0 ? R.history[R.view].item : R.current) !== item) return;
    }
    let media;
    if (item.error) media = h('p', { class: 'error' }, 'The content could not be shown: ' + item.error);
    else if (item.text != null) media = h('pre', { class: 'text-item' }, item.text);
    else media = h('img', { src: item.url, alt: `Item ${item.client_id}`, class: 'item-img', width: 280, height: 280 });
    stage.replaceChildren(media, h('p', { class: 'item-id' }, `#${item.id} · ${item.client_id}`));
    stage.dataset.itemId = String(item.id);
    stage.dataset.pred = item.prediction ? item.prediction.label : '';
    const pred = item.prediction;
    const scores = pred ? Object.entries(pred.scores || {}).sort((a, b) => b[1] - a[1]).slice(0, 3) : [];
    $('#top3').replaceChildren(...(scores.length ? scores.map(([l, p], i) => {
      const bar = h('span', { class: 'p-bar', 'aria-hidden': 'true' }, h('span', {}));
      bar.firstChild.style.width = (100 * p).toFixed(1) + '%';
      return h('li', { class: i === 0 ? 'first' : '' }, h('span', { class: 'p-label' }, l), bar, h('span', { class: 'p-val' }, pct(p)));
    }) : [h('li', { class: 'muted' }, 'No prediction yet (cold start).')]));
    if (pred) {
      const b = document.querySelector(`#labels .label[data-label="${CSS.escape(pred.label)}"]`);
      if (b) b.classList.add('suggested');
    }
    const why = [];
    if (item.suspect) why.push('Suspected label error (confident learning).');
    else if (item.audit || R.strategy === 'audit') why.push('Audit sample: its label tests the thresholds.');
    else {
      const m = MEASURE_OF[R.strategy] || 'margin';
      const v = pred && pred.uncertainty ? pred.uncertainty[m] : null;
      why.push(`Picked by ${R.strategy}` + (v != null ? ` (${m.replace('_', ' ')} ${Number(v).toFixed(3)}${MEASURE_OF[R.strategy] ? '' : ', the tier measure'})` : '') + '.');
      if (item.audit) why.push('Also in the audit sample.');
    }
    if (R.tier) why.push(`Your tier: ${R.tier}.`);
    $('#why').textContent = why.join(' ');
    if (viewing) {
      const gb = document.querySelector(`#labels .label[data-label="${CSS.escape(viewing.label)}"]`);
      if (gb) gb.classList.add('given');
      banner.hidden = false;
      banner.textContent = `Answered ${viewing.label} (${{ queued: 'waiting to send', sending: 'sending', sent: 'saved', failed: 'NOT saved' }[viewing.state]}). Press → to go on.`;
    } else banner.hidden = true;
    if (t0 != null) {
      requestAnimationFrame(() => {
        const ms = performance.now() - t0;
        window.__ll_latencies.push(ms);
        performance.measure('ll-next-item', { start: t0, end: t0 + ms });
      });
    }
  }

  /** Every action, from a key or a button. */
  async function act(what, arg) {
    if (!R) return;
    const t0 = performance.now();
    if (what === 'help') { toggleHelp(); return; }
    if (what === 'prev') {
      if (!R.history.length) return;
      R.view = R.view < 0 ? R.history.length - 1 : Math.max(0, R.view - 1);
      return renderCurrent();
    }
    if (what === 'next') {
      if (R.view < 0) return;
      R.view = R.view + 1 >= R.history.length ? -1 : R.view + 1;
      return renderCurrent();
    }
    if (what === 'undo') return undo();
    if (R.view >= 0) { say('This item is already answered. Press → to return to the current item, or U to undo the last answer.'); return; }
    const item = R.current;
    if (!item) return;
    if (what === 'skip') {
      R.skipped.add(item.id);
      release([item.id]);
      say(`Skipped #${item.id}.`);
      focusStage();
      return next(t0);
    }
    const label = what === 'accept' ? (item.prediction && item.prediction.label) : arg;
    if (!label) { say('There is no model label to accept; pick one.'); return; }
    const key = `${item.id}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const entry = { key, item, label, state: 'queued', annotationId: null };
    entries.set(key, entry);
    R.history.push(entry);
    enqueue({ key, item: item.id, label, project: R.project.id });
    say(`#${item.id}: ${label}.`);
    focusStage();
    return next(t0);
  }
  function focusStage() { const s = $('#stage'); if (s) s.focus({ preventScroll: true }); }

  async function undo() {
    const session = R;
    const entry = session.history[session.history.length - 1];
    if (!entry) { say('Nothing to undo.'); return; }
    if (entry.undoing) return;
    entry.undoing = true;
    try {
      if (entry.state === 'sending') await flush();
      if (loadBox().some((r) => r.key === entry.key)) {
        dequeue(entry.key);
      } else if (entry.state === 'sent') {
        await api('DELETE', `/v1/annotations/${entry.annotationId}`);
      }
    } catch (e) {
      entry.undoing = false;
      alertBox('Could not undo: ' + readable(e));
      return;
    }
    if (R !== session) return;
    session.history.pop();
    entries.delete(entry.key);
    // The item comes back leased to us; show it again, the current one waits.
    if (session.current) session.queue.unshift(session.current);
    session.current = entry.item;
    session.view = -1;
    say(`Undid ${entry.label} on #${entry.item.id}.`);
    focusStage();
    renderCurrent();
  }

  function toggleHelp() {
    const d = $('#keys');
    if (d.open) d.close(); else d.showModal();
  }

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if ($('#keys').open) { if (e.key === '?') { e.preventDefault(); toggleHelp(); } return; }
    if (!R) return;
    const t = e.target;
    if (R.filterEl && t === R.filterEl) {
      if (e.key === 'Escape') { t.value = ''; R.filter = ''; renderLabels(); focusStage(); e.preventDefault(); }
      else if (e.key === 'Enter') { const b = visibleLabels()[0]; if (b) { e.preventDefault(); t.value = ''; R.filter = ''; renderLabels(); act('label', b.dataset.label); } }
      return;
    }
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT')) return;
    // A focused button keeps its own Enter and Space.
    if (t && (t.tagName === 'BUTTON' || t.tagName === 'A') && (e.key === 'Enter' || e.key === ' ')) return;
    const k = e.key;
    let handled = true;
    if (/^[0-9]$/.test(k)) {
      const b = visibleLabels().find((x) => x.dataset.key === k);
      if (b) act('label', b.dataset.label); else handled = false;
    } else if (k === 'Enter') act('accept');
    else if (k === ' ' || k === 'Spacebar') act('skip');
    else if (k === 'ArrowLeft') act('prev');
    else if (k === 'ArrowRight') act('next');
    else if (k === 'Backspace' || k === 'u' || k === 'U') act('undo');
    else if (k === '?') act('help');
    else if (k === '/' && R.filterEl) R.filterEl.focus();
    else handled = false;
    if (handled) e.preventDefault();
  });

  flush();
  route();
})();
