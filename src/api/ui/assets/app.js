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
  const SCREEN_LISTS = ['duplicates', 'outliers', 'leaks'];
  const DUP_TYPES = ['exact_duplicate', 'near_duplicate'];
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
      fig('Guarantee', guaranteeText(pr.guarantee)),
      h('div', { class: 'bar-wrap' }, bar));
  }
  /** What vouches for the auto-accepted labels (`guarantee` of a project, its progress or calibration). */
  const GUARANTEE = {
    calibrated: 'calibrated: precision ≥ target with probability ≥ 1 − δ',
    no_guarantee: 'NO GUARANTEE: a fixed threshold auto-accepts until the first calibration',
    awaiting_calibration: 'nothing auto-accepted until the first calibration',
  };
  const guaranteeText = (g) => h('span', { class: 'guarantee ' + (g || ''), role: g === 'no_guarantee' ? 'alert' : null }, GUARANTEE[g] || String(g));
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
      const until = cal.guarantee === 'no_guarantee'
        ? `Until a fit, the fixed threshold ${cal.fixed_threshold} auto-accepts with no guarantee.`
        : 'Until a fit, nothing is auto-accepted.';
      box.append(h('p', { class: 'muted' }, `No calibration yet. Audit labels given: ${num(cal.audit.spent)}, waiting: ${num(cal.audit.pending)}. `),
        h('p', {}, guaranteeText(cal.guarantee), ' ', until));
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
    R.boxes = project.task === 'detect';
    R.sound = project.task === 'segments';
    R.lines = project.task === 'lines';
    // The screening lists (issue 25): a pair side by side, C confirms, X rejects.
    R.screen = !R.boxes && !R.sound && !R.lines && SCREEN_LISTS.includes(strategy) ? strategy : null;
    R.vstack = [];
    window.__ll_review = R;
    if (R.boxes) buildBoxReview(); else if (R.sound) buildSoundReview();
    else if (R.lines) buildLineReview(); else buildReview();
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
    if (R && R.sound) {
      // A recording: only its peaks; the player streams the sound itself.
      item.ready = api('GET', `/v1/items/${item.id}/peaks?project=${item.project_id}&bins=${PEAK_BINS}`)
        .then((p) => { item.peaks = p; })
        .catch((e) => { item.error = readable(e); });
      return;
    }
    if (R && R.screen && !item.other) item.scrReady = loadScreen(item);
    item.ready = (async () => {
      const resp = await api('GET', `/v1/items/${item.id}/content?project=${item.project_id}`, undefined, { raw: true });
      if (item.kind === 'text') { item.text = await resp.text(); return; }
      const url = URL.createObjectURL(await resp.blob());
      if (R) R.urls.push(url);
      const img = new Image();
      img.src = url;
      try { await img.decode(); } catch (e) { /* shown as broken below */ }
      item.natural = [img.naturalWidth, img.naturalHeight];
      item.img = img; // a page's line crops are drawn from it
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
    if (R.B && R.B.ro) R.B.ro.disconnect();
    if (R.L && R.L.ro) R.L.ro.disconnect();
    stopSound();
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
        R.screen ? h('div', { class: 'actions-row verdict-row' },
          btn('confirm', R.screen === 'outliers' ? 'In domain' : 'Confirm', { shown: 'C', aria: 'C' }, () => act('confirm'), 'primary'),
          btn('reject', R.screen === 'outliers' ? 'Reject item' : 'Not a copy', { shown: 'X', aria: 'X' }, () => act('reject'), 'danger')) : null,
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
    for (const d of document.querySelectorAll('#keys .keys')) d.hidden = !(d.dataset.mode === 'classify' || (R.screen && d.dataset.mode === 'screening'));
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
    if (R.boxes) return renderBoxes(t0);
    if (R.sound) return renderSound(t0);
    if (R.lines) return renderLines(t0);
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
    if (R.screen && item.scrReady) {
      await item.scrReady;
      const p = pendingIssue(item);
      const o = p && p.other != null ? item.others[p.other] : null;
      if (o && o.ready) await o.ready;
      if (R !== session) return;
      if ((R.view >= 0 ? R.history[R.view].item : R.current) !== item) return;
    }
    let media;
    if (item.error) media = h('p', { class: 'error' }, 'The content could not be shown: ' + item.error);
    else if (item.text != null) media = h('pre', { class: 'text-item' }, item.text);
    else media = h('img', { src: item.url, alt: `Item ${item.client_id}`, class: 'item-img', width: 280, height: 280 });
    const screenWhy = R.screen && !viewing ? renderScreen(item, stage, media) : null;
    if (!screenWhy) stage.replaceChildren(media, h('p', { class: 'item-id' }, `#${item.id} · ${item.client_id}`));
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
    if (item.guarantee === 'no_guarantee') why.push('Auto-accepted by a fixed threshold: no guarantee.');
    if (R.tier) why.push(`Your tier: ${R.tier}.`);
    $('#why').textContent = screenWhy || why.join(' ');
    if (viewing) {
      const gb = document.querySelector(`#labels .label[data-label="${CSS.escape(viewing.label)}"]`);
      if (gb) gb.classList.add('given');
      banner.hidden = false;
      banner.textContent = `Answered ${viewing.label} (${{ queued: 'waiting to send', sending: 'sending', sent: 'saved', failed: 'NOT saved' }[viewing.state]}). Press → to go on.`;
    } else banner.hidden = true;
    logNext(t0);
  }

  /** Every action, from a key or a button. */
  async function act(what, arg) {
    if (!R) return;
    const t0 = performance.now();
    if (what === 'help') { toggleHelp(); return; }
    if (R.boxes) {
      if (what === 'accept') return acceptBoxes(t0);
      if (what === 'undo') return boxAct('undo');
      if (what === 'label') return boxAct('label', arg);
      if (what === 'prev' || what === 'next') return;
    }
    if (R.lines) {
      if (what === 'accept') return acceptLines(t0);
      if (what === 'prev' || what === 'next' || what === 'label' || what === 'undo') return;
    }
    if (R.sound) {
      if (what === 'accept') return acceptSound(t0);
      if (what === 'undo') return soundAct('undo');
      if (what === 'prev' || what === 'next' || what === 'label') return;
    }
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
    if (what === 'confirm' || what === 'reject') {
      if (!R.screen) return;
      if (R.view >= 0) { say('Press → to return to the current item first.'); return; }
      return giveVerdict(what, t0);
    }
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
    const entry = { key, item, label, state: 'queued', annotationId: null, at: performance.now() };
    entries.set(key, entry);
    R.history.push(entry);
    enqueue({ key, item: item.id, label, project: R.project.id });
    say(`#${item.id}: ${label}.`);
    focusStage();
    return next(t0);
  }
  /** Key press `t0` → the next item drawn (the next frame), for the latency log. */
  function logNext(t0) {
    if (t0 == null) return;
    requestAnimationFrame(() => {
      const ms = performance.now() - t0;
      window.__ll_latencies.push(ms);
      performance.measure('ll-next-item', { start: t0, end: t0 + ms });
    });
  }
  function focusStage() { const s = $('#stage'); if (s) s.focus({ preventScroll: true }); }

  async function undo() {
    const session = R;
    const entry = session.history[session.history.length - 1];
    const verdict = session.vstack[session.vstack.length - 1];
    if (verdict && (!entry || verdict.at > (entry.at || 0))) return undoVerdict(verdict);
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

  // ---- screening lists (strategy duplicates, outliers, leaks) ------------------
  // The item beside the one its issue names: a duplicate group's
  // representative beside each member in turn (with a pixel difference for
  // images, the differing words marked for texts), a leak beside what it
  // copies, an outlier with its score. C confirms, X rejects (one request
  // each, not queued offline); U undoes the last verdict or label.

  /** The item's screening issues and its group's members, and their content. */
  async function loadScreen(item) {
    try {
      const d = await api('GET', `/v1/projects/${item.project_id}/items/${item.id}/screening`);
      item.scr = { issues: d.issues, verdicts: d.verdicts };
      item.others = {};
      const ids = new Set();
      for (const is of d.issues) {
        if (is.item_id !== item.id) ids.add(is.item_id);
        if (is.of != null && is.of !== item.id) ids.add(is.of);
      }
      for (const id of [...ids].slice(0, 50)) {
        const o = { id, project_id: item.project_id, kind: item.kind, client_id: '', other: true };
        const is = d.issues.find((x) => x.item_id === id) || d.issues.find((x) => x.of === id);
        o.client_id = is ? (is.item_id === id ? is.client_id : is.of_client_id || '') : '';
        prefetch(o);
        item.others[id] = o;
      }
    } catch (e) {
      item.scr = { issues: [], verdicts: [], error: readable(e) };
      item.others = {};
    }
  }

  const judged = (item, is) => item.scr.verdicts.some((v) => v.item_id === is.item_id && v.type === is.type);

  /** The issue waiting for a verdict on this item, and the item to show beside it. */
  function pendingIssue(item) {
    const s = item.scr;
    if (!s) return null;
    if (R.screen === 'duplicates') {
      const m = s.issues.find((is) => DUP_TYPES.includes(is.type) && is.of === item.id && is.item_id !== item.id && !judged(item, is));
      return m ? { issue: m, other: m.item_id } : null;
    }
    const type = R.screen === 'outliers' ? 'outlier' : 'leak';
    const o = s.issues.find((is) => is.type === type && is.item_id === item.id && !judged(item, is));
    return o ? { issue: o, other: type === 'leak' ? o.of : null } : null;
  }

  /** Draw the pair on the stage; returns the line under it. */
  function renderScreen(item, stage, media) {
    const s = item.scr || { issues: [], verdicts: [] };
    const p = pendingIssue(item);
    const fig = (title, el, id) => h('figure', { class: 'pane', dataset: { itemId: id == null ? '' : String(id) } }, el, h('figcaption', {}, title));
    const panes = [];
    let line;
    const mine = s.issues.filter((is) => is.item_id === item.id);
    if (p && p.other != null) {
      const o = item.others[p.other];
      const isText = item.text != null;
      let a = media; let b;
      if (!o || o.error) b = h('p', { class: 'error' }, 'The other item could not be shown' + (o && o.error ? ': ' + o.error : '.'));
      else if (isText) {
        const [ma, mb] = textDiff(item.text, o.text || '');
        a = h('pre', { class: 'text-item diff-text' }, ma);
        b = h('pre', { class: 'text-item diff-text' }, mb);
      } else b = h('img', { src: o.url, alt: `Item ${o.client_id}`, class: 'item-img', width: 280, height: 280 });
      const first = R.screen === 'duplicates' ? 'Representative' : 'This item';
      const second = R.screen === 'duplicates' ? 'Member' : (p.issue.of_split ? `Copies (${p.issue.of_split})` : 'Copies');
      panes.push(fig(`${first} #${item.id} · ${item.client_id}`, a, item.id));
      panes.push(fig(`${second} #${p.other} · ${(o && o.client_id) || ''}`, b, p.other));
      if (!isText && o && o.img && item.img) {
        const d = pixelDiff(item.img, o.img);
        if (d) panes.push(fig(`Difference (mean ${d.mean.toFixed(1)}, max ${d.max} of 255; brightest = max)`, d.canvas, null));
      }
      const left = s.issues.filter((is) => DUP_TYPES.includes(is.type) && is.of === item.id && !judged(item, is)).length;
      line = R.screen === 'duplicates'
        ? `${p.issue.type.replace('_', ' ')} group ${p.issue.group}, similarity ${Number(p.issue.score).toFixed(3)}; ${left} member${left === 1 ? '' : 's'} to judge. C: a duplicate (it keeps the representative's label), X: not one (reviewed on its own).`
        : `Leak: similarity ${Number(p.issue.score).toFixed(3)} to an item of another split. C: a copy, X: not a copy.`;
    } else {
      panes.push(fig(`#${item.id} · ${item.client_id}`, media, item.id));
      const out = mine.find((is) => is.type === 'outlier');
      const done = s.verdicts.filter((v) => R.screen === 'duplicates' ? DUP_TYPES.includes(v.type) && v.item_id !== item.id : v.item_id === item.id);
      if (p) line = `Outlier: k-NN distance ${Number(p.issue.score).toFixed(2)}× the threshold (above 1 is flagged). C: in domain (then label it, and it joins the reference), X: reject it (out of the data).`;
      else if (s.error) line = 'The screening could not be read: ' + s.error;
      else {
        const c = done.filter((v) => v.verdict === 'confirm').length;
        const r = done.length - c;
        line = (R.screen === 'duplicates' ? `Group judged: ${c} confirmed, ${r} rejected.` : out || done.length ? 'Judged.' : 'No open issue.')
          + ' Label it (1–9, Enter accepts the model\'s) or skip (Space).';
      }
    }
    const box = h('div', { class: 'pair', id: 'pair' }, panes);
    box.dataset.issue = p ? String(p.issue.id) : '';
    box.dataset.other = p && p.other != null ? String(p.other) : '';
    stage.replaceChildren(box);
    return line;
  }

  /** |a − b| per pixel of two images of one size, red on black scaled to the largest difference, drawn with no smoothing. */
  function pixelDiff(ia, ib) {
    const w = ia.naturalWidth; const hgt = ia.naturalHeight;
    if (!w || !hgt || w !== ib.naturalWidth || hgt !== ib.naturalHeight || w * hgt > 4096 * 4096) return null;
    const read = (img) => {
      const c = document.createElement('canvas');
      c.width = w; c.height = hgt;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      return g.getImageData(0, 0, w, hgt).data;
    };
    const a = read(ia); const b = read(ib);
    const c = document.createElement('canvas');
    c.width = w; c.height = hgt;
    c.className = 'item-img diff';
    c.setAttribute('role', 'img');
    const g = c.getContext('2d');
    const out = g.createImageData(w, hgt);
    const diff = new Uint8Array(w * hgt);
    let sum = 0; let max = 0;
    for (let i = 0, p = 0; i < a.length; i += 4, p++) {
      const d = Math.round((Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2])) / 3);
      diff[p] = d; sum += d; if (d > max) max = d;
    }
    // Scaled to its maximum, so a small uniform change shows as well as a large local one.
    for (let p = 0; p < diff.length; p++) {
      const v = max ? Math.round((255 * diff[p]) / max) : 0;
      out.data[4 * p] = v; out.data[4 * p + 1] = v >> 2; out.data[4 * p + 2] = v >> 2; out.data[4 * p + 3] = 255;
    }
    g.putImageData(out, 0, 0);
    const mean = sum / (w * hgt);
    c.setAttribute('aria-label', `Pixel difference: mean ${mean.toFixed(1)}, max ${max}`);
    return { canvas: c, mean, max };
  }

  /** Both texts with the words the other lacks marked (longest common subsequence of words). */
  function textDiff(x, y) {
    const ta = x.split(/(\s+)/); const tb = y.split(/(\s+)/);
    const n = ta.length; const m = tb.length;
    if (n * m > 4e6) return [[x], [y]];
    const L = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
      L[i][j] = ta[i] === tb[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    }
    const oa = []; const ob = [];
    let i = 0; let j = 0;
    const put = (out, t, mark) => out.push(mark && t.trim() ? h('mark', { class: 'diff-mark' }, t) : t);
    while (i < n && j < m) {
      if (ta[i] === tb[j]) { put(oa, ta[i++], false); put(ob, tb[j++], false); }
      else if (L[i + 1][j] >= L[i][j + 1]) put(oa, ta[i++], true);
      else put(ob, tb[j++], true);
    }
    while (i < n) put(oa, ta[i++], true);
    while (j < m) put(ob, tb[j++], true);
    return [oa, ob];
  }

  async function giveVerdict(what, t0) {
    const session = R;
    const item = session.current;
    if (!item) return;
    if (!item.scr) { say('The screening is still loading.'); return; }
    const p = pendingIssue(item);
    if (!p) { say('Nothing left to judge here: label it (1–9, Enter) or skip (Space).'); return; }
    if (session.judging) return;
    session.judging = true;
    let v;
    try {
      v = await api('POST', `/v1/projects/${session.project.id}/issues/${p.issue.id}/verdict`, { verdict: what });
    } catch (e) {
      alertBox('Could not record the verdict: ' + readable(e));
      return;
    } finally {
      session.judging = false;
    }
    if (R !== session) return;
    alertBox('');
    item.scr.verdicts.push(v);
    session.vstack.push({ at: performance.now(), issue: p.issue, item, verdict: what });
    window.__ll_verdicts = (window.__ll_verdicts || 0) + 1;
    const on = p.other != null ? `#${p.other}` : `#${item.id}`;
    say(`${what === 'confirm' ? 'Confirmed' : 'Rejected'} ${on} (${p.issue.type.replace('_', ' ')}).`);
    focusStage();
    if (v.item_status === 'rejected' && v.item_id === item.id) return next(t0);
    return renderCurrent(t0);
  }

  async function undoVerdict(entry) {
    const session = R;
    if (entry.undoing) return;
    entry.undoing = true;
    try {
      await api('DELETE', `/v1/projects/${session.project.id}/issues/${entry.issue.id}/verdict`);
    } catch (e) {
      entry.undoing = false;
      alertBox('Could not undo the verdict: ' + readable(e));
      return;
    }
    if (R !== session) return;
    session.vstack.pop();
    const s = entry.item.scr;
    s.verdicts = s.verdicts.filter((v) => !(v.item_id === entry.issue.item_id && v.type === entry.issue.type));
    if (session.current !== entry.item) {
      if (session.current) session.queue.unshift(session.current);
      session.current = entry.item;
    }
    session.view = -1;
    say(`Undid the verdict on issue ${entry.issue.id}.`);
    focusStage();
    renderCurrent();
  }

  // ---- box review (projects with "task": "detect") --------------------------
  // The image with its machine boxes as an SVG overlay whose viewBox is the
  // image in its own pixels, so a box is drawn at exactly its stored corners
  // (no rounding, no scaling arithmetic). A box being dragged updates its own
  // element only; selecting touches two elements; nothing re-renders all boxes.

  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#e66a00',
    '#0f8b9c', '#c2458f', '#8c564b', '#7a7d12', '#5f6b7a'];
  const HANDLE_PX = 7; // corner handles, in screen pixels
  const MIN_PX = 1; // the smallest side a box may have, in image pixels
  window.__ll_box_latencies = [];
  window.__ll_drag_ms = [];

  const colourOf = (label) => {
    const i = R.project.labels.indexOf(label);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  };
  const keyOf = (label) => {
    const i = R.project.labels.indexOf(label);
    return i >= 0 && i < 10 ? String((i + 1) % 10) : '';
  };
  const fmtScore = (s) => (s == null ? 'yours' : Number(s).toFixed(2));
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  // Timings the browser test reads (key event → next frame; pointermove handler), last 2,000.
  const logMs = (list, x) => { list.push(x); if (list.length > 2000) list.shift(); };

  /** The editable set of an item: its current boxes, in reading order. */
  function boxEdit(item) {
    if (item.edit) return item.edit;
    const regions = item.regions || [];
    const replaced = new Set(regions.filter((r) => r.source === 'human' && r.replaces != null).map((r) => r.replaces));
    const live = regions.filter((r) => r.kind === 'box' && r.box && (r.source === 'human'
      ? true : r.status !== 'deleted' && r.status !== 'corrected' && !replaced.has(r.id)));
    let uid = 0;
    const boxes = live.map((r) => ({
      uid: ++uid, id: r.id, label: r.label, box: r.box.slice(), score: r.score, source: r.source,
    }));
    boxes.sort((a, b) => (a.box[1] - b.box[1]) || (a.box[0] - b.box[0]));
    item.edit = { boxes, undo: [], sel: null, uid, nudge: null };
    return item.edit;
  }
  const snapshot = (E) => E.boxes.map((b) => ({ ...b, box: b.box.slice() }));
  function pushUndo(E, snap) { E.undo.push({ boxes: snap || snapshot(E), sel: E.sel }); if (E.undo.length > 500) E.undo.shift(); }
  const selected = (E) => (E.sel == null ? null : E.boxes.find((b) => b.uid === E.sel) || null);

  function buildBoxReview() {
    const labels = R.project.labels;
    const btn = (id, text, key, onclick, cls) => h('button', { type: 'button', id, class: cls || '', onclick, 'aria-keyshortcuts': key.aria },
      text, ' ', h('kbd', { 'aria-hidden': 'true' }, key.shown));
    showMain(h('div', { class: 'review boxes', id: 'review' },
      h('section', { class: 'stage-col', 'aria-label': 'Image' },
        h('div', { id: 'stage', class: 'stage box-stage', tabindex: '-1' }),
        h('p', { id: 'why', class: 'why' })),
      h('section', { class: 'panel', 'aria-label': 'Boxes' },
        h('div', { id: 'box-info', class: 'box-info', 'aria-live': 'polite' }),
        h('div', { class: 'actions-row' },
          btn('accept', 'Accept', { shown: 'Enter', aria: 'Enter A' }, () => act('accept'), 'primary'),
          btn('skip', 'Skip', { shown: 'Space', aria: 'Space' }, () => act('skip'))),
        h('div', { class: 'actions-row' },
          btn('delete-box', 'Delete', { shown: 'Del', aria: 'Delete Backspace' }, () => { boxAct('delete'); focusStage(); }),
          btn('undo', 'Undo', { shown: 'U', aria: 'U Control+Z' }, () => { boxAct('undo'); focusStage(); }),
          btn('help', 'Keys', { shown: '?', aria: '?' }, () => act('help'), 'ghost')),
        h('h2', { class: 'legend-title' }, 'Labels'),
        h('div', { id: 'labels', class: 'labels legend-boxes', role: 'group', 'aria-label': 'Labels (legend)' },
          labels.map((l) => {
            const sw = h('span', { class: 'sw', 'aria-hidden': 'true' });
            sw.style.background = colourOf(l);
            const key = keyOf(l);
            return h('button', { type: 'button', class: 'label', dataset: { label: l, key }, 'aria-keyshortcuts': key || null, onclick: () => { boxAct('label', l); focusStage(); } },
              sw, h('kbd', { 'aria-hidden': 'true' }, key), h('span', { class: 'name' }, l), h('span', { class: 'n', 'aria-label': 'boxes' }));
          })),
        h('p', { class: 'muted small' }, h('span', { id: 'count' }), ' · ', h('span', { id: 'pending' })))));
    R.filterEl = null;
    R.done = 0;
    for (const d of document.querySelectorAll('#keys .keys')) d.hidden = d.dataset.mode !== 'boxes';
    updatePending();
  }

  /** Draw the item: the image, one <rect> per box, the corner handles and the tag. */
  async function renderBoxes(t0) {
    const session = R;
    const item = R.current;
    const stage = $('#stage');
    $('#count').textContent = `${R.done} image${R.done === 1 ? '' : 's'} accepted in this session`;
    if (R.B && R.B.ro) R.B.ro.disconnect();
    R.B = null;
    if (!item) {
      stage.replaceChildren(h('p', { class: 'empty' }, R.fetching ? 'Loading…' : 'Nothing left to review in this list.'));
      stage.dataset.itemId = '';
      $('#box-info').textContent = '';
      $('#why').textContent = '';
      countLabels(null);
      return;
    }
    if (!item.url && !item.error && item.ready) {
      await item.ready;
      if (R !== session || R.current !== item) return;
    }
    if (item.error) {
      stage.replaceChildren(h('p', { class: 'error' }, 'The image could not be shown: ' + item.error));
      stage.dataset.itemId = String(item.id);
      return;
    }
    const E = boxEdit(item);
    // Boxes are in the size the API names (EXIF applied); the decoded size
    // only stands in when an item lacks it.
    const W = Number(item.width) || item.natural[0], H = Number(item.height) || item.natural[1];
    const img = h('img', { src: item.url, alt: `Item ${item.client_id}`, class: 'box-img', width: W, height: H, draggable: 'false' });
    const layer = svg('g', { class: 'boxes-layer' });
    const overlay = svg('svg', {
      class: 'box-svg', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'group',
      'aria-label': `${E.boxes.length} boxes`,
    }, layer);
    const handles = svg('g', { class: 'handles' }, ['nw', 'ne', 'sw', 'se'].map((c) => svg('rect', { class: 'handle ' + c, dataset: { corner: c } })));
    handles.style.display = 'none';
    overlay.append(handles);
    const tag = h('div', { class: 'box-tag', hidden: true });
    const wrap = h('div', { class: 'box-wrap' }, img, overlay, tag);
    const B = { item, E, W, H, svg: overlay, layer, handles, tag, els: new Map(), k: 1, drag: null, hover: null };
    R.B = B;
    // Small boxes on top of big ones, so every box can be clicked.
    for (const b of [...E.boxes].sort((p, q) => area(q.box) - area(p.box))) layer.append(boxEl(b));
    stage.replaceChildren(wrap, h('p', { class: 'item-id' }, `#${item.id} · ${item.client_id} · ${W} × ${H} px`));
    stage.dataset.itemId = String(item.id);
    stage.dataset.pred = '';
    overlay.addEventListener('pointerdown', onDown);
    overlay.addEventListener('pointermove', onMove);
    overlay.addEventListener('pointerup', onUp);
    overlay.addEventListener('pointercancel', onUp);
    overlay.addEventListener('pointerover', (e) => { const u = uidAt(e.target); if (u != null && !B.drag) { B.hover = u; showTag(); } });
    overlay.addEventListener('pointerout', (e) => { if (uidAt(e.target) != null && !B.drag) { B.hover = null; showTag(); } });
    B.ro = new ResizeObserver((es) => {
      const w = es[0].contentRect.width;
      if (w > 0) { B.k = W / w; placeHandles(); }
    });
    B.ro.observe(overlay);
    const why = [];
    if (item.audit || R.strategy === 'audit') why.push('Audit sample: every box on it tests the thresholds.');
    else why.push(`Picked by ${R.strategy}.`);
    if (R.tier) why.push(`Your tier: ${R.tier}.`);
    $('#why').textContent = why.join(' ');
    countLabels(E);
    select(E.sel);
    logNext(t0);
  }
  const area = (b) => (b[2] - b[0]) * (b[3] - b[1]);
  function uidAt(t) {
    const g = t && t.closest ? t.closest('.bx') : null;
    return g ? Number(g.dataset.uid) : null;
  }

  /** One box's element; its geometry is in image pixels (the viewBox). */
  function boxEl(b) {
    const el = svg('rect', { class: 'bx', 'vector-effect': 'non-scaling-stroke', dataset: { uid: b.uid } });
    setRect(el, b.box);
    paint(el, b);
    R.B.els.set(b.uid, el);
    return el;
  }
  function setRect(el, bx) {
    el.setAttribute('x', bx[0]);
    el.setAttribute('y', bx[1]);
    el.setAttribute('width', bx[2] - bx[0]);
    el.setAttribute('height', bx[3] - bx[1]);
  }
  function paint(el, b) {
    const c = colourOf(b.label);
    el.setAttribute('stroke', c);
    el.setAttribute('fill', c);
    el.dataset.label = b.label;
    el.dataset.source = b.id == null ? 'new' : b.source;
  }

  function placeHandles(bx) {
    const B = R && R.B;
    if (!B) return;
    const b = selected(B.E);
    const box = bx || (b && b.box);
    if (!box) { B.handles.style.display = 'none'; return; }
    B.handles.style.display = '';
    const s = HANDLE_PX * B.k;
    const pos = { nw: [box[0], box[1]], ne: [box[2], box[1]], sw: [box[0], box[3]], se: [box[2], box[3]] };
    for (const el of B.handles.children) {
      const [x, y] = pos[el.dataset.corner];
      el.setAttribute('x', x - s / 2);
      el.setAttribute('y', y - s / 2);
      el.setAttribute('width', s);
      el.setAttribute('height', s);
    }
  }

  /** The floating tag (label and score) of the hovered, else the selected box. */
  function showTag(bx) {
    const B = R && R.B;
    if (!B) return;
    const u = B.drag ? B.E.sel : (B.hover != null ? B.hover : B.E.sel);
    const b = u == null ? null : B.E.boxes.find((x) => x.uid === u);
    if (!b) { B.tag.hidden = true; return; }
    const box = bx || b.box;
    B.tag.hidden = false;
    B.tag.textContent = `${b.label} · ${fmtScore(b.id == null || b.source === 'human' ? null : b.score)}`;
    B.tag.style.left = (100 * box[0] / B.W) + '%';
    B.tag.style.top = (100 * box[1] / B.H) + '%';
    B.tag.style.borderColor = colourOf(b.label);
    B.tag.classList.toggle('below', box[1] / B.H < 0.04);
  }

  function select(uid) {
    const B = R && R.B;
    if (!B) return;
    const E = B.E;
    const old = E.sel != null ? B.els.get(E.sel) : null;
    if (old) old.classList.remove('sel');
    E.sel = uid != null && B.els.has(uid) ? uid : null;
    const el = E.sel != null ? B.els.get(E.sel) : null;
    if (el) el.classList.add('sel');
    placeHandles();
    showTag();
    const b = selected(E);
    const info = $('#box-info');
    info.replaceChildren(b
      ? h('span', {}, h('span', { class: 'sw', 'aria-hidden': 'true' }), ' ',
        h('strong', {}, b.label), ` · ${b.id == null ? 'new box' : b.source === 'human' ? 'your box' : 'score ' + fmtScore(b.score)} · `,
        h('span', { class: 'coords' }, b.box.map((v) => +v.toFixed(2)).join(', ')),
        ` · ${E.boxes.indexOf(b) + 1} of ${E.boxes.length}`)
      : h('span', { class: 'muted' }, `${E.boxes.length} box${E.boxes.length === 1 ? '' : 'es'}. Tab selects one; drag on the image to draw one (${E.draw || R.lastLabel || R.project.labels[0]}).`));
    if (b) info.querySelector('.sw').style.background = colourOf(b.label);
    info.dataset.sel = b ? String(E.boxes.indexOf(b)) : '';
    for (const x of document.querySelectorAll('#labels .label')) x.classList.toggle('suggested', !!b && x.dataset.label === b.label);
  }

  function countLabels(E) {
    const n = new Map();
    if (E) for (const b of E.boxes) n.set(b.label, (n.get(b.label) || 0) + 1);
    for (const x of document.querySelectorAll('#labels .label')) x.querySelector('.n').textContent = n.get(x.dataset.label) || '';
  }

  function scrollSelIntoView() {
    const B = R.B;
    const el = B && B.E.sel != null ? B.els.get(B.E.sel) : null;
    if (el && el.scrollIntoView) el.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  }

  /** Every box action from a key or a button. */
  function boxAct(what, arg, ev) {
    const B = R && R.B;
    if (!B) return;
    const E = B.E;
    const t0 = ev ? ev.timeStamp : performance.now();
    const b = selected(E);
    switch (what) {
      case 'cycle': {
        if (!E.boxes.length) return;
        const i = b ? E.boxes.indexOf(b) : (arg > 0 ? -1 : 0);
        select(E.boxes[(i + arg + E.boxes.length) % E.boxes.length].uid);
        scrollSelIntoView();
        break;
      }
      case 'deselect': select(null); break;
      case 'label': {
        R.lastLabel = arg;
        if (!b) { E.draw = arg; select(null); say(`New boxes: ${arg}.`); break; }
        if (b.label === arg) break;
        pushUndo(E);
        b.label = arg;
        paint(B.els.get(b.uid), b);
        countLabels(E);
        select(b.uid);
        break;
      }
      case 'delete': {
        if (!b) { say('Select a box first (Tab).'); return; }
        pushUndo(E);
        const i = E.boxes.indexOf(b);
        E.boxes.splice(i, 1);
        B.els.get(b.uid).remove();
        B.els.delete(b.uid);
        E.sel = null;
        countLabels(E);
        select(E.boxes.length ? E.boxes[Math.min(i, E.boxes.length - 1)].uid : null);
        say(`Deleted a ${b.label} box.`);
        break;
      }
      case 'nudge': {
        if (!b) return;
        const [dx, dy] = arg;
        const mx = clamp(dx, -b.box[0], B.W - b.box[2]);
        const my = clamp(dy, -b.box[1], B.H - b.box[3]);
        if (!mx && !my) return;
        // One undo step per run of nudges on one box.
        if (!E.nudge || E.nudge.uid !== b.uid || E.undo[E.undo.length - 1] !== E.nudge.step) {
          pushUndo(E);
          E.nudge = { uid: b.uid, step: E.undo[E.undo.length - 1] };
        }
        b.box = [b.box[0] + mx, b.box[1] + my, b.box[2] + mx, b.box[3] + my];
        setRect(B.els.get(b.uid), b.box);
        select(b.uid);
        break;
      }
      case 'undo': {
        const s = E.undo.pop();
        if (!s) { say('Nothing to undo on this image.'); return; }
        E.boxes = s.boxes;
        E.sel = s.sel;
        E.nudge = null;
        say('Undone.');
        return renderBoxes();
      }
      default: return;
    }
    requestAnimationFrame(() => logMs(window.__ll_box_latencies, { what, ms: performance.now() - t0 }));
  }

  // ---- the mouse: draw, move, resize ------------------------------------

  function toImage(B, e) {
    const d = B.drag;
    return [clamp((e.clientX - d.left) * d.kx, 0, B.W), clamp((e.clientY - d.top) * d.ky, 0, B.H)];
  }
  function onDown(e) {
    const B = R && R.B;
    if (!B || e.button !== 0) return;
    e.preventDefault();
    focusStage();
    const r = B.svg.getBoundingClientRect(); // the one layout read of a drag
    const corner = e.target.dataset && e.target.dataset.corner;
    const uid = e.shiftKey ? null : uidAt(e.target);
    B.drag = { left: r.left, top: r.top, kx: B.W / r.width, ky: B.H / r.height, moved: false };
    B.k = B.drag.kx;
    const p = toImage(B, e);
    const d = B.drag;
    d.start = p;
    if (corner && selected(B.E)) {
      const b = selected(B.E);
      Object.assign(d, { mode: 'resize', corner, b, from: b.box.slice(), el: B.els.get(b.uid) });
    } else if (uid != null) {
      select(uid);
      const b = selected(B.E);
      Object.assign(d, { mode: 'move', b, from: b.box.slice(), el: B.els.get(b.uid) });
    } else {
      const label = B.E.draw || R.lastLabel || R.project.labels[0];
      const el = svg('rect', { class: 'bx drawing', 'vector-effect': 'non-scaling-stroke', stroke: colourOf(label), fill: colourOf(label) });
      Object.assign(d, { mode: 'draw', label, el, from: [p[0], p[1], p[0], p[1]] });
    }
    d.box = d.from.slice();
    B.svg.setPointerCapture(e.pointerId);
  }
  function onMove(e) {
    const B = R && R.B;
    if (!B || !B.drag) return;
    const t = performance.now();
    const d = B.drag;
    const [x, y] = toImage(B, e);
    const [x0, y0, x1, y1] = d.from;
    let bx;
    if (d.mode === 'move') {
      const dx = clamp(x - d.start[0], -x0, B.W - x1);
      const dy = clamp(y - d.start[1], -y0, B.H - y1);
      bx = [x0 + dx, y0 + dy, x1 + dx, y1 + dy];
    } else if (d.mode === 'resize') {
      bx = d.from.slice();
      if (d.corner[1] === 'w') bx[0] = Math.min(x, x1 - MIN_PX); else bx[2] = Math.max(x, x0 + MIN_PX);
      if (d.corner[0] === 'n') bx[1] = Math.min(y, y1 - MIN_PX); else bx[3] = Math.max(y, y0 + MIN_PX);
    } else {
      bx = [Math.min(d.start[0], x), Math.min(d.start[1], y), Math.max(d.start[0], x), Math.max(d.start[1], y)];
      if (!d.el.isConnected) B.svg.insertBefore(d.el, B.handles);
    }
    d.box = bx;
    d.moved = d.moved || Math.abs(x - d.start[0]) / d.kx > 2 || Math.abs(y - d.start[1]) / d.ky > 2;
    setRect(d.el, bx);
    if (d.mode !== 'draw') { placeHandles(bx); showTag(bx); }
    logMs(window.__ll_drag_ms, performance.now() - t);
  }
  function onUp(e) {
    const B = R && R.B;
    if (!B || !B.drag) return;
    if (e.type === 'pointerup') onMove(e);
    const d = B.drag;
    B.drag = null;
    const E = B.E;
    if (d.mode === 'draw') {
      d.el.remove();
      const [x0, y0, x1, y1] = d.box;
      if (!d.moved || x1 - x0 < MIN_PX || y1 - y0 < MIN_PX) { select(null); return; }
      pushUndo(E);
      const b = { uid: ++E.uid, id: null, label: d.label, box: d.box, score: null, source: 'human' };
      E.boxes.push(b);
      B.layer.append(boxEl(b));
      countLabels(E);
      select(b.uid);
      say(`Added a ${b.label} box.`);
      return;
    }
    if (!d.moved || d.box.every((v, i) => v === d.from[i])) { setRect(d.el, d.from); select(d.b.uid); return; }
    pushUndo(E, snapshot(E).map((x) => (x.uid === d.b.uid ? { ...x, box: d.from.slice() } : x)));
    d.b.box = d.box;
    E.nudge = null;
    select(d.b.uid);
  }

  // ---- accepting an image: the full set in one PUT -----------------------

  async function acceptBoxes(t0) {
    const session = R;
    const B = R.B;
    if (!B || B.sending) return;
    const item = B.item;
    const E = B.E;
    const body = {
      regions: E.boxes.map((b) => (b.id != null
        ? { id: b.id, label: b.label, box: b.box.slice() }
        : { label: b.label, box: b.box.slice() })),
    };
    B.sending = true;
    say(`Saving ${body.regions.length} boxes…`);
    try {
      await api('PUT', `/v1/projects/${R.project.id}/items/${item.id}/regions`, body);
    } catch (e) {
      B.sending = false;
      if (R !== session) return;
      // The edits stay on the image; a named box is selected.
      const m = /regions\[(\d+)\]/.exec(e.message || '');
      let msg = `Image #${item.id} was not saved: ${readable(e)}`;
      if (m && E.boxes[Number(m[1])]) {
        const b = E.boxes[Number(m[1])];
        msg += ` (box ${Number(m[1]) + 1}: ${b.label}, selected).`;
        select(b.uid);
      }
      alertBox(msg + ' Your edits are kept: fix them and press Enter again.');
      say('Not saved.');
      return;
    }
    if (R !== session) return;
    alertBox(null);
    R.done++;
    window.__ll_saved = (window.__ll_saved || 0) + 1;
    say(`#${item.id}: ${body.regions.length} boxes saved.`);
    focusStage();
    return next(t0);
  }

  function boxKeys(e) {
    const k = e.key;
    const t = e.target;
    const onPage = !t || t === document.body || t.id === 'stage' || t.id === 'main' || t.closest('#stage');
    if ((e.ctrlKey || e.metaKey) && (k === 'z' || k === 'Z')) { boxAct('undo', null, e); return true; }
    if (e.ctrlKey || e.metaKey || e.altKey) return false;
    if (t && (t.tagName === 'BUTTON' || t.tagName === 'A') && (k === 'Enter' || k === ' ')) return false;
    if (/^[0-9]$/.test(k)) {
      const i = k === '0' ? 9 : Number(k) - 1;
      const l = R.project.labels[i];
      if (!l) return false;
      boxAct('label', l, e);
      return true;
    }
    const step = e.shiftKey ? 10 : 1;
    switch (k) {
      case 'Tab': if (!onPage) return false; boxAct('cycle', e.shiftKey ? -1 : 1, e); return true;
      case 'j': boxAct('cycle', 1, e); return true;
      case 'k': boxAct('cycle', -1, e); return true;
      case 'Delete': case 'Backspace': boxAct('delete', null, e); return true;
      case 'ArrowLeft': boxAct('nudge', [-step, 0], e); return true;
      case 'ArrowRight': boxAct('nudge', [step, 0], e); return true;
      case 'ArrowUp': boxAct('nudge', [0, -step], e); return true;
      case 'ArrowDown': boxAct('nudge', [0, step], e); return true;
      case 'Enter': case 'a': case 'A': act('accept'); return true;
      case 'u': case 'U': boxAct('undo', null, e); return true;
      case 'Escape': boxAct('deselect', null, e); return true;
      case ' ': case 'Spacebar': act('skip'); return true;
      case '?': act('help'); return true;
      default: return false;
    }
  }

  // ---- sound review (projects with "task": "segments") ----------------------
  // The recording as a waveform drawn from peaks the server computes
  // (GET /v1/items/{id}/peaks), so an hour of sound arrives as a few thousand
  // numbers; its segments over it on a second canvas, redrawn alone on every
  // edit and every frame of playback. The <audio> element plays a signed link
  // (GET /v1/items/{id}/content-link): it cannot send the token, and through
  // the link it fetches byte ranges, so seeking never downloads the file.

  const PEAK_BINS = 2000;
  const NUDGE = 0.01; // s; with Shift 0.1 s
  const MIN_SEG = 0.02; // the shortest segment the page makes, in s
  const NEW_SEG = 1.0; // a new segment's length at most, in s
  const SEG_COLOUR = { review: '#e66a00', accepted: '#2f7d4f', human: '#1f4e79' };
  window.__ll_sound_latencies = [];

  const segColour = (b) => (b.id == null || b.source === 'human' || b.edited ? SEG_COLOUR.human
    : b.status === 'review' ? SEG_COLOUR.review : SEG_COLOUR.accepted);
  const uncertain = (b) => b.source === 'machine' && b.status === 'review';
  const fmtT = (t) => {
    const m = Math.floor(t / 60);
    const s = t - 60 * m;
    return `${m}:${s < 10 ? '0' : ''}${s.toFixed(3)}`;
  };

  /** The editable set of a recording: its current segments, in time order. */
  function soundEdit(item) {
    if (item.edit) return item.edit;
    const regions = item.regions || [];
    const replaced = new Set(regions.filter((r) => r.source === 'human' && r.replaces != null).map((r) => r.replaces));
    const live = regions.filter((r) => r.kind === 'span' && r.segment && (r.source === 'human'
      ? true : r.status !== 'deleted' && r.status !== 'corrected' && !replaced.has(r.id)));
    let uid = 0;
    const segs = live.map((r) => ({
      uid: ++uid, id: r.id, label: r.label, seg: r.segment.slice(), score: r.score,
      source: r.source, status: r.status, edited: false,
    }));
    segs.sort((a, b) => a.seg[0] - b.seg[0]);
    const first = segs.find(uncertain) || segs[0];
    item.edit = { segs, undo: [], sel: first ? first.uid : null, edge: 0, uid, nudge: null };
    return item.edit;
  }
  const segSnap = (E) => E.segs.map((b) => ({ ...b, seg: b.seg.slice() }));
  function segUndo(E) { E.undo.push({ segs: segSnap(E), sel: E.sel }); if (E.undo.length > 500) E.undo.shift(); }
  const selSeg = (E) => (E.sel == null ? null : E.segs.find((b) => b.uid === E.sel) || null);
  const sortSegs = (E) => E.segs.sort((a, b) => (a.seg[0] - b.seg[0]) || (a.uid - b.uid));

  function buildSoundReview() {
    const btn = (id, text, key, onclick, cls) => h('button', { type: 'button', id, class: cls || '', onclick, 'aria-keyshortcuts': key.aria },
      text, ' ', h('kbd', { 'aria-hidden': 'true' }, key.shown));
    const then = (what, arg) => () => { soundAct(what, arg); focusStage(); };
    showMain(h('div', { class: 'review sound', id: 'review' },
      h('section', { class: 'stage-col', 'aria-label': 'Recording' },
        h('div', { id: 'stage', class: 'stage sound-stage', tabindex: '-1' }),
        h('p', { id: 'why', class: 'why' })),
      h('section', { class: 'panel', 'aria-label': 'Segments' },
        h('div', { id: 'seg-info', class: 'box-info', 'aria-live': 'polite' }),
        h('div', { class: 'actions-row' },
          btn('accept', 'Accept', { shown: 'Enter', aria: 'Enter' }, () => act('accept'), 'primary'),
          btn('play', 'Play', { shown: 'Space', aria: 'Space' }, then('play')),
          btn('skip', 'Skip', { shown: 'PgDn', aria: 'PageDown' }, () => act('skip'))),
        h('div', { class: 'actions-row' },
          btn('split', 'Split', { shown: 'S', aria: 'S' }, then('split')),
          btn('merge', 'Merge', { shown: 'M', aria: 'M' }, then('merge')),
          btn('add', 'Add', { shown: 'I', aria: 'I' }, then('add'))),
        h('div', { class: 'actions-row' },
          btn('delete-seg', 'Delete', { shown: 'Del', aria: 'Delete Backspace' }, then('delete')),
          btn('undo', 'Undo', { shown: 'U', aria: 'U Control+Z' }, then('undo')),
          btn('help', 'Keys', { shown: '?', aria: '?' }, () => act('help'), 'ghost')),
        h('div', { class: 'actions-row nav' },
          btn('prev-unc', 'Previous uncertain', { shown: '⇧N', aria: 'Shift+N' }, then('uncertain', -1)),
          btn('next-unc', 'Next uncertain', { shown: 'N', aria: 'N' }, then('uncertain', 1))),
        h('ol', { id: 'seg-list', class: 'seg-list', 'aria-label': 'Segments' }),
        h('p', { class: 'muted small' }, h('span', { id: 'count' }), ' · ', h('span', { id: 'pending' })))));
    R.filterEl = null;
    R.done = 0;
    for (const d of document.querySelectorAll('#keys .keys')) d.hidden = d.dataset.mode !== 'sound';
    updatePending();
  }

  /** Ask for a fresh signed link to the recording (the token stays in the tab). */
  async function soundLink(S) {
    const l = await api('GET', `/v1/items/${S.item.id}/content-link?project=${S.item.project_id}`);
    if (!R || R.S !== S) return;
    S.linkExpires = l.expires_at;
    const at = S.audio.currentTime || 0;
    S.audio.src = l.url;
    if (at) S.audio.currentTime = at;
  }

  async function renderSound(t0) {
    const session = R;
    const item = R.current;
    const stage = $('#stage');
    $('#count').textContent = `${R.done} recording${R.done === 1 ? '' : 's'} accepted in this session`;
    stopSound();
    R.S = null;
    if (!item) {
      stage.replaceChildren(h('p', { class: 'empty' }, R.fetching ? 'Loading…' : 'Nothing left to review in this list.'));
      stage.dataset.itemId = '';
      $('#seg-info').textContent = '';
      $('#seg-list').replaceChildren();
      $('#why').textContent = '';
      return;
    }
    if (!item.peaks && !item.error && item.ready) {
      await item.ready;
      if (R !== session || R.current !== item) return;
    }
    stage.dataset.itemId = String(item.id);
    stage.dataset.pred = '';
    if (item.error) {
      stage.replaceChildren(h('p', { class: 'error' }, 'The recording could not be shown: ' + item.error));
      return;
    }
    const E = soundEdit(item);
    const P = item.peaks;
    const dur = Number(item.duration) || P.duration;
    const wave = h('canvas', { class: 'wave', 'aria-hidden': 'true' });
    const over = h('canvas', { class: 'wave-over', role: 'img', 'aria-label': `Waveform of ${fmtT(dur)} with ${E.segs.length} segments` });
    const audio = h('audio', { preload: 'metadata', class: 'player' });
    const clock = h('p', { class: 'clock', id: 'clock' });
    const wrap = h('div', { class: 'wave-wrap' }, wave, over);
    const S = { item, E, P, dur, wave, over, audio, clock, cursor: 0, stopAt: null, raf: 0, w: 0, hgt: 0, linkExpires: 0 };
    R.S = S;
    stage.replaceChildren(wrap, clock, audio, h('p', { class: 'item-id' }, `#${item.id} · ${item.client_id} · ${fmtT(dur)} · ${P.sample_rate} Hz`));
    over.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      e.preventDefault();
      focusStage();
      const r = over.getBoundingClientRect();
      const t = clamp((e.clientX - r.left) / r.width, 0, 1) * S.dur;
      if (!audio.paused) audio.pause();
      S.cursor = t;
      const hit = E.segs.find((b) => b.seg[0] <= t && t <= b.seg[1]);
      if (hit) E.sel = hit.uid;
      soundShow();
    });
    audio.addEventListener('play', () => { const b = $('#play'); if (b) b.firstChild.textContent = 'Pause'; tick(); });
    audio.addEventListener('pause', () => { const b = $('#play'); if (b) b.firstChild.textContent = 'Play'; });
    audio.addEventListener('error', () => {
      if (R && R.S === S && Date.now() / 1000 > S.linkExpires - 5) soundLink(S).catch((e) => say(readable(e)));
      else say('The recording cannot be played here.');
    });
    S.ro = new ResizeObserver(() => { sizeWave(S); drawWave(S); drawOver(S); });
    S.ro.observe(wrap);
    sizeWave(S);
    drawWave(S);
    const why = [];
    if (item.audit || R.strategy === 'audit') why.push('Audit sample: every segment on it tests the threshold.');
    else why.push(`Picked by ${R.strategy}.`);
    if (R.tier) why.push(`Your tier: ${R.tier}.`);
    S.why = why.join(' ');
    soundShow();
    try { await soundLink(S); } catch (e) { alertBox('The recording cannot be played: ' + readable(e)); }
    logNext(t0);
  }

  function stopSound() {
    const S = R && R.S;
    if (!S) return;
    if (S.ro) S.ro.disconnect();
    cancelAnimationFrame(S.raf);
    S.audio.pause();
    S.audio.removeAttribute('src');
    S.audio.load();
  }

  function sizeWave(S) {
    const dpr = window.devicePixelRatio || 1;
    const r = S.wave.getBoundingClientRect();
    const w = Math.max(1, Math.round(r.width * dpr)), hh = Math.max(1, Math.round(r.height * dpr));
    if (w === S.w && hh === S.hgt) return;
    S.w = w; S.hgt = hh; S.dpr = dpr;
    for (const c of [S.wave, S.over]) { c.width = w; c.height = hh; }
  }

  const AXIS_PX = 18; // the time axis under the waveform, in CSS pixels

  /** The waveform: per column, the lowest and highest sample of its bins. */
  function drawWave(S) {
    const c = S.wave.getContext('2d');
    const { w, hgt, P } = S;
    const dpr = S.dpr || 1;
    const axis = AXIS_PX * dpr;
    const mid = (hgt - axis) / 2;
    const amp = mid * 0.95;
    c.clearRect(0, 0, w, hgt);
    c.fillStyle = '#fbfcfd';
    c.fillRect(0, 0, w, hgt - axis);
    c.strokeStyle = '#d5dbe1';
    c.beginPath(); c.moveTo(0, mid + 0.5); c.lineTo(w, mid + 0.5); c.stroke();
    const nb = P.min.length;
    c.fillStyle = '#3d4a57';
    for (let x = 0; x < w && nb; x++) {
      const b0 = Math.floor((x * nb) / w);
      const b1 = Math.max(b0 + 1, Math.floor(((x + 1) * nb) / w));
      let lo = Infinity, hi = -Infinity;
      for (let b = b0; b < b1 && b < nb; b++) { if (P.min[b] < lo) lo = P.min[b]; if (P.max[b] > hi) hi = P.max[b]; }
      const y0 = mid - hi * amp, y1 = mid - lo * amp;
      c.fillRect(x, y0, 1, Math.max(1, y1 - y0));
    }
    // Time axis: ticks at a round step at least 70 CSS px apart.
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200];
    const pxPerS = w / dpr / S.dur;
    const step = steps.find((s) => s * pxPerS >= 70) || 1800;
    c.fillStyle = '#4a5563';
    c.strokeStyle = '#8a96a3';
    c.font = `${11 * dpr}px system-ui, sans-serif`;
    c.textBaseline = 'top';
    for (let t = 0; t <= S.dur + 1e-9; t += step) {
      const x = Math.round((t / S.dur) * w) + 0.5;
      c.beginPath(); c.moveTo(x, hgt - axis); c.lineTo(x, hgt - axis + 4 * dpr); c.stroke();
      const label = step < 1 ? t.toFixed(1) + ' s' : (t >= 60 ? fmtT(t).replace(/\.000$/, '') : t.toFixed(0) + ' s');
      c.textAlign = x < 20 ? 'left' : x > w - 30 ? 'right' : 'center';
      c.fillText(label, x, hgt - axis + 5 * dpr);
    }
  }

  /** The segments, the selected one's edges and the cursor, over the waveform. */
  function drawOver(S) {
    const c = S.over.getContext('2d');
    const { w, hgt, E } = S;
    const dpr = S.dpr || 1;
    const top = hgt - AXIS_PX * dpr;
    const X = (t) => (t / S.dur) * w;
    c.clearRect(0, 0, w, hgt);
    c.font = `600 ${11 * dpr}px system-ui, sans-serif`;
    c.textBaseline = 'top';
    c.textAlign = 'left';
    for (const b of E.segs) {
      const x0 = X(b.seg[0]), x1 = X(b.seg[1]);
      const col = segColour(b);
      const sel = b.uid === E.sel;
      c.globalAlpha = sel ? 0.26 : 0.14;
      c.fillStyle = col;
      c.fillRect(x0, 0, Math.max(1, x1 - x0), top);
      c.globalAlpha = 1;
      c.strokeStyle = col;
      c.lineWidth = (sel ? 2 : 1) * dpr;
      c.strokeRect(x0, 1, Math.max(1, x1 - x0), top - 2);
      const tag = b.id == null || b.source === 'human' || b.edited ? 'yours' : Number(b.score).toFixed(2);
      if (x1 - x0 > c.measureText(tag).width + 6 * dpr) {
        c.fillStyle = col;
        c.fillText(tag, x0 + 3 * dpr, 3 * dpr);
      }
      if (sel) {
        // The edge the arrows move: a thick bar with a grip.
        const ex = E.edge === 0 ? x0 : x1;
        c.fillStyle = col;
        c.fillRect(ex - 2 * dpr, 0, 4 * dpr, top);
        c.fillRect(ex - 5 * dpr, top / 2 - 9 * dpr, 10 * dpr, 18 * dpr);
      }
    }
    const cx = Math.round(X(S.cursor)) + 0.5;
    c.strokeStyle = '#b3261e';
    c.lineWidth = 1.5 * dpr;
    c.beginPath(); c.moveTo(cx, 0); c.lineTo(cx, top); c.stroke();
  }

  /** Redraw the overlay, the clock, the info line and the list after a change. */
  function soundShow() {
    const S = R && R.S;
    if (!S) return;
    const E = S.E;
    drawOver(S);
    S.clock.textContent = `${fmtT(S.cursor)} / ${fmtT(S.dur)}`;
    const b = selSeg(E);
    const info = $('#seg-info');
    const i = b ? E.segs.indexOf(b) : -1;
    info.dataset.sel = b ? String(i) : '';
    info.replaceChildren(b
      ? h('span', {}, h('span', { class: 'sw', 'aria-hidden': 'true' }), ' ',
        h('strong', {}, `Segment ${i + 1} of ${E.segs.length}`), ' · ',
        h('span', { class: 'coords' }, `${b.seg[0].toFixed(3)} – ${b.seg[1].toFixed(3)} s (${(b.seg[1] - b.seg[0]).toFixed(3)} s)`),
        ` · ${b.id == null ? 'new segment' : b.source === 'human' ? 'your segment' : (b.edited ? 'edited, was ' : '') + (uncertain(b) ? 'uncertain' : 'accepted') + ', score ' + fmtScore(b.score)}`,
        h('br'), h('span', { class: 'muted' }, `← → move its ${E.edge === 0 ? 'start' : 'end'} ([ start, ] end)`))
      : h('span', { class: 'muted' }, `${E.segs.length} segment${E.segs.length === 1 ? '' : 's'}. Tab selects one; I adds one at the cursor.`));
    if (b) info.querySelector('.sw').style.background = segColour(b);
    const list = $('#seg-list');
    list.replaceChildren(...E.segs.map((x) => {
      const li = h('li', { class: x.uid === E.sel ? 'sel' : '', dataset: { uid: x.uid } },
        h('span', { class: 'sw', 'aria-hidden': 'true' }),
        h('span', { class: 'coords' }, `${x.seg[0].toFixed(3)} – ${x.seg[1].toFixed(3)} s`),
        h('span', { class: 'muted' }, x.id == null || x.source === 'human' || x.edited ? 'yours' : fmtScore(x.score)));
      li.querySelector('.sw').style.background = segColour(x);
      if (x.uid === E.sel) li.setAttribute('aria-current', 'true');
      return li;
    }));
    const cur = list.querySelector('li.sel');
    if (cur && cur.scrollIntoView) cur.scrollIntoView({ block: 'nearest' });
    const n = E.segs.filter((x) => uncertain(x) && !x.edited).length;
    $('#why').textContent = `${S.why || ''} ${n} uncertain segment${n === 1 ? '' : 's'} (orange) left of ${E.segs.length}.`.trim();
  }

  /** While playing: the cursor follows the sound, and a segment stops at its end. */
  function tick() {
    const S = R && R.S;
    if (!S) return;
    cancelAnimationFrame(S.raf);
    const step = () => {
      if (!R || R.S !== S) return;
      const a = S.audio;
      S.cursor = Math.min(a.currentTime, S.dur);
      if (S.stopAt != null && a.currentTime >= S.stopAt) { a.pause(); S.cursor = S.stopAt; S.stopAt = null; }
      // Only the overlay and the clock change while playing.
      drawOver(S);
      S.clock.textContent = `${fmtT(S.cursor)} / ${fmtT(S.dur)}`;
      if (!a.paused) S.raf = requestAnimationFrame(step);
    };
    S.raf = requestAnimationFrame(step);
  }

  async function play() {
    const S = R && R.S;
    if (!S) return;
    const a = S.audio;
    if (!a.paused) { a.pause(); S.stopAt = null; return; }
    const b = selSeg(S.E);
    if (Date.now() / 1000 > S.linkExpires - 300) {
      try { await soundLink(S); } catch (e) { alertBox('The recording cannot be played: ' + readable(e)); return; }
    }
    const from = b ? b.seg[0] : S.cursor;
    S.stopAt = b ? b.seg[1] : null;
    a.currentTime = from;
    S.cursor = from;
    try { await a.play(); } catch (e) { say('Cannot play: ' + e.message); }
  }

  /** Every segment action from a key or a button. */
  function soundAct(what, arg, ev) {
    const S = R && R.S;
    if (!S) return;
    const E = S.E;
    const t0 = ev ? ev.timeStamp : performance.now();
    const b = selSeg(E);
    const select = (uid) => { E.sel = uid; };
    switch (what) {
      case 'play': play(); return;
      case 'cycle': {
        if (!E.segs.length) return;
        const i = b ? E.segs.indexOf(b) : (arg > 0 ? -1 : 0);
        select(E.segs[(i + arg + E.segs.length) % E.segs.length].uid);
        break;
      }
      case 'uncertain': {
        const n = E.segs.length;
        const i = b ? E.segs.indexOf(b) : (arg > 0 ? -1 : n);
        let found = null;
        for (let k = 1; k <= n; k++) {
          const x = E.segs[(((i + arg * k) % n) + n) % n];
          if (uncertain(x) && !x.edited) { found = x; break; }
        }
        if (!found) { say('No uncertain segment left on this recording.'); return; }
        select(found.uid);
        break;
      }
      case 'edge': E.edge = arg; break;
      case 'cursor': {
        if (!S.audio.paused) S.audio.pause();
        S.cursor = clamp(S.cursor + arg, 0, S.dur);
        break;
      }
      case 'nudge': {
        if (!b) { say('Select a segment first (Tab).'); return; }
        const [s, e] = b.seg;
        const v = E.edge === 0 ? clamp(s + arg, 0, e - MIN_SEG) : clamp(e + arg, s + MIN_SEG, S.dur);
        if (v === b.seg[E.edge]) return;
        // One undo step per run of nudges on one segment.
        if (!E.nudge || E.nudge.uid !== b.uid || E.undo[E.undo.length - 1] !== E.nudge.step) {
          segUndo(E);
          E.nudge = { uid: b.uid, step: E.undo[E.undo.length - 1] };
        }
        b.seg[E.edge] = v;
        b.edited = true;
        sortSegs(E);
        break;
      }
      case 'split': {
        if (!b) { say('Select a segment first (Tab).'); return; }
        const [s, e] = b.seg;
        if (e - s < 2 * MIN_SEG) { say('This segment is too short to split.'); return; }
        const at = S.cursor > s + MIN_SEG && S.cursor < e - MIN_SEG ? S.cursor : (s + e) / 2;
        segUndo(E);
        b.seg = [s, at];
        b.edited = true;
        const right = { uid: ++E.uid, id: null, label: b.label, seg: [at, e], score: null, source: 'human', status: 'added', edited: true };
        E.segs.push(right);
        sortSegs(E);
        say(`Split at ${at.toFixed(3)} s.`);
        break;
      }
      case 'merge': {
        if (!b) { say('Select a segment first (Tab).'); return; }
        const nx = E.segs[E.segs.indexOf(b) + 1];
        if (!nx) { say('There is no next segment to merge with.'); return; }
        segUndo(E);
        // The merged segment keeps a machine id if either had one.
        const keep = b.id != null ? b : nx.id != null ? nx : b;
        const gone = keep === b ? nx : b;
        keep.seg = [Math.min(b.seg[0], nx.seg[0]), Math.max(b.seg[1], nx.seg[1])];
        keep.edited = true;
        E.segs.splice(E.segs.indexOf(gone), 1);
        select(keep.uid);
        say('Merged with the next segment.');
        break;
      }
      case 'delete': {
        if (!b) { say('Select a segment first (Tab).'); return; }
        segUndo(E);
        const i = E.segs.indexOf(b);
        E.segs.splice(i, 1);
        select(E.segs.length ? E.segs[Math.min(i, E.segs.length - 1)].uid : null);
        say(`Deleted the segment ${b.seg[0].toFixed(3)} – ${b.seg[1].toFixed(3)} s.`);
        break;
      }
      case 'add': {
        const t = S.cursor;
        if (E.segs.some((x) => x.seg[0] <= t && t < x.seg[1])) { say('The cursor is inside a segment: move it to a gap (click, or , and .) to add one.'); return; }
        const after = E.segs.filter((x) => x.seg[0] > t).map((x) => x.seg[0]);
        const end = Math.min(t + NEW_SEG, S.dur, ...after);
        if (end - t < MIN_SEG) { say('There is no room for a segment at the cursor.'); return; }
        segUndo(E);
        const nb = { uid: ++E.uid, id: null, label: R.project.labels[0], seg: [t, end], score: null, source: 'human', status: 'added', edited: true };
        E.segs.push(nb);
        sortSegs(E);
        select(nb.uid);
        E.edge = 1;
        say(`Added a segment ${t.toFixed(3)} – ${end.toFixed(3)} s; ← → move its end.`);
        break;
      }
      case 'undo': {
        const s = E.undo.pop();
        if (!s) { say('Nothing to undo on this recording.'); return; }
        E.segs = s.segs;
        E.sel = s.sel;
        E.nudge = null;
        say('Undone.');
        break;
      }
      default: return;
    }
    soundShow();
    requestAnimationFrame(() => logMs(window.__ll_sound_latencies, { what, ms: performance.now() - t0 }));
  }

  async function acceptSound(t0) {
    const session = R;
    const S = R.S;
    if (!S || S.sending) return;
    const item = S.item;
    const E = S.E;
    const body = {
      regions: E.segs.map((b) => (b.id != null
        ? { id: b.id, label: b.label, segment: b.seg.slice() }
        : { label: b.label, segment: b.seg.slice() })),
    };
    S.sending = true;
    say(`Saving ${body.regions.length} segments…`);
    try {
      await api('PUT', `/v1/projects/${R.project.id}/items/${item.id}/regions`, body);
    } catch (e) {
      S.sending = false;
      if (R !== session) return;
      const m = /regions\[(\d+)\]/.exec(e.message || '');
      let msg = `Recording #${item.id} was not saved: ${readable(e)}`;
      if (m && E.segs[Number(m[1])]) {
        E.sel = E.segs[Number(m[1])].uid;
        msg += ` (segment ${Number(m[1]) + 1}, selected).`;
        soundShow();
      }
      alertBox(msg + ' Your edits are kept: fix them and press Enter again.');
      say('Not saved.');
      return;
    }
    if (R !== session) return;
    alertBox(null);
    R.done++;
    window.__ll_saved = (window.__ll_saved || 0) + 1;
    say(`#${item.id}: ${body.regions.length} segments saved.`);
    focusStage();
    return next(t0);
  }

  function soundKeys(e) {
    const k = e.key;
    const t = e.target;
    const onPage = !t || t === document.body || t.id === 'stage' || t.id === 'main' || t.closest('#stage');
    if ((e.ctrlKey || e.metaKey) && (k === 'z' || k === 'Z')) { soundAct('undo', null, e); return true; }
    if (e.ctrlKey || e.metaKey || e.altKey) return false;
    if (t && (t.tagName === 'BUTTON' || t.tagName === 'A') && (k === 'Enter' || k === ' ')) return false;
    const step = e.shiftKey ? 10 * NUDGE : NUDGE;
    switch (e.code === 'Comma' || e.code === 'Period' ? e.code : k) {
      case ' ': case 'Spacebar': soundAct('play', null, e); return true;
      case 'Tab': if (!onPage) return false; soundAct('cycle', e.shiftKey ? -1 : 1, e); return true;
      case 'j': soundAct('cycle', 1, e); return true;
      case 'k': soundAct('cycle', -1, e); return true;
      case 'n': soundAct('uncertain', 1, e); return true;
      case 'N': soundAct('uncertain', -1, e); return true;
      case '[': case '{': soundAct('edge', 0, e); return true;
      case ']': case '}': soundAct('edge', 1, e); return true;
      case 'ArrowLeft': soundAct('nudge', -step, e); return true;
      case 'ArrowRight': soundAct('nudge', step, e); return true;
      case 'Comma': soundAct('cursor', e.shiftKey ? -1 : -0.1, e); return true;
      case 'Period': soundAct('cursor', e.shiftKey ? 1 : 0.1, e); return true;
      case 's': case 'S': soundAct('split', null, e); return true;
      case 'm': case 'M': soundAct('merge', null, e); return true;
      case 'i': case 'I': soundAct('add', null, e); return true;
      case 'Delete': case 'Backspace': soundAct('delete', null, e); return true;
      case 'Enter': act('accept'); return true;
      case 'PageDown': act('skip'); return true;
      case 'u': case 'U': soundAct('undo', null, e); return true;
      case '?': act('help'); return true;
      default: return false;
    }
  }

  // ---- line review (projects with "task": "lines": OCR) ---------------------
  // The page with its text lines drawn over it (an SVG in the image's own
  // pixels, as for boxes); above it, the current line's crop enlarged on a
  // canvas and its text in a field, where the reviewer stays: Tab or Enter
  // keeps the line as it reads (edited or not) and goes to the next
  // uncertain one (a machine line the thresholds left for review); the
  // others are drawn as accepted. The characters the model read with a
  // probability below LOW_CHAR are marked under the text (a backdrop that
  // mirrors the field), until the text is edited: then the machine's scores
  // no longer describe it and the marks go (the API keeps none for a
  // person's line either). Ctrl+Enter saves the page in one PUT.

  const LOW_CHAR = 0.9; // a character below this is marked
  const VERY_LOW_CHAR = 0.5; // and more strongly below this
  const LINE_STEP = 2; // Alt+arrows move a line's box by this many image pixels
  const CROP_MAX_H = 96; // the enlarged crop's height at most, in CSS pixels
  const CROP_MIN_TEXT = 30; // the line's own height in the crop at least, in CSS pixels
  window.__ll_line_latencies = [];

  const lineUncertain = (l) => l.source === 'machine' && l.status === 'review';
  const lineEdited = (l) => l.id == null || l.text !== l.orig.text || l.box.some((v, i) => v !== l.orig.box[i]);
  /** How a line is drawn: deleted, yours (new, edited, or a person's), uncertain, or accepted. */
  function lineState(l) {
    if (l.deleted) return 'deleted';
    if (l.source === 'human' || lineEdited(l)) return 'yours';
    if (lineUncertain(l) && !l.checked) return 'review';
    return 'accepted';
  }
  const LINE_STATE_TEXT = { deleted: 'deleted', yours: 'yours', review: 'uncertain', accepted: 'accepted' };

  /** The editable lines of a page: its current regions, in the model's reading order. */
  function lineEdit(item) {
    if (item.edit) return item.edit;
    const regions = (item.regions || []).filter((r) => r.kind === 'box' && r.box);
    const replaced = new Set(regions.filter((r) => r.source === 'human' && r.replaces != null).map((r) => r.replaces));
    // Machine lines are stored in reading order; a person's line takes the
    // place of the line it corrects, an added one goes after the line above it.
    const machine = regions.filter((r) => r.source === 'machine');
    const at = new Map(machine.map((r, i) => [r.id, i]));
    const rank = (r) => {
      if (r.source === 'machine') return at.get(r.id);
      if (r.replaces != null && at.has(r.replaces)) return at.get(r.replaces) + 0.25;
      let k = -1;
      machine.forEach((m, i) => { if (m.box[1] <= r.box[1]) k = i; });
      return k + 0.5;
    };
    const live = regions.filter((r) => (r.source === 'human'
      ? true : r.status !== 'deleted' && r.status !== 'corrected' && !replaced.has(r.id)));
    live.sort((a, b) => (rank(a) - rank(b)) || (a.id - b.id));
    let uid = 0;
    const lines = live.map((r) => ({
      uid: ++uid, id: r.id, label: r.label, box: r.box.slice(), text: r.text || '', score: r.score,
      source: r.source, status: r.status, chars: r.char_scores || null,
      orig: { text: r.text || '', box: r.box.slice() }, checked: false, deleted: false,
    }));
    const first = lines.find(lineUncertain) || lines[0];
    item.edit = { lines, cur: first ? first.uid : null, uid };
    return item.edit;
  }
  const curLine = (E) => (E.cur == null ? null : E.lines.find((l) => l.uid === E.cur) || null);

  function buildLineReview() {
    const btn = (id, text, key, onclick, cls) => h('button', { type: 'button', id, class: cls || '', onclick, 'aria-keyshortcuts': key.aria },
      text, ' ', h('kbd', { 'aria-hidden': 'true' }, key.shown));
    const then = (what, arg) => () => { lineAct(what, arg); focusLine(); };
    const text = h('textarea', {
      id: 'line-text', class: 'line-text', rows: 1, spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off',
      'aria-label': 'Text of the current line', 'aria-describedby': 'line-info line-hints',
      oninput: () => lineAct('type'),
    });
    const hint = (keys, what) => h('li', {}, keys.flatMap((k, i) => [i ? ' ' : null, h('kbd', {}, k)]), ' ', what);
    showMain(h('div', { class: 'review lines', id: 'review' },
      h('section', { class: 'line-editor', 'aria-label': 'Current line' },
        h('div', { class: 'crop-wrap', id: 'crop-wrap' }, h('canvas', { id: 'crop', class: 'crop', role: 'img', 'aria-label': 'The current line, enlarged' })),
        h('div', { class: 'field-wrap' }, h('div', { id: 'marks', class: 'marks', 'aria-hidden': 'true' }), text),
        h('p', { id: 'line-info', class: 'line-info', 'aria-live': 'polite' }),
        h('ul', { id: 'line-hints', class: 'key-hints', 'aria-label': 'Keys' },
          hint(['Tab', 'Enter'], 'keep, next uncertain'), hint(['⇧Tab'], 'back'), hint(['Esc'], 'undo line'),
          hint(['Ctrl+Del'], 'delete line'), hint(['Ctrl+I'], 'add line'), hint(['Alt+arrows'], 'move box'),
          hint(['Ctrl+Enter'], 'save page'), hint(['Ctrl+/'], 'all keys'))),
      h('section', { class: 'stage-col', 'aria-label': 'Page' },
        h('div', { id: 'stage', class: 'stage box-stage line-stage', tabindex: '-1' }),
        h('p', { id: 'why', class: 'why' })),
      h('section', { class: 'panel', 'aria-label': 'Lines' },
        h('div', { id: 'line-banner', class: 'banner', role: 'status', hidden: true }),
        h('div', { class: 'actions-row' },
          btn('accept', 'Save page', { shown: 'Ctrl+Enter', aria: 'Control+Enter Control+S' }, () => act('accept'), 'primary')),
        h('div', { class: 'actions-row' },
          btn('next-line', 'Next uncertain', { shown: 'Tab', aria: 'Tab Enter' }, then('next', 1)),
          btn('revert-line', 'Undo line', { shown: 'Esc', aria: 'Escape' }, then('revert'))),
        h('div', { class: 'actions-row' },
          btn('delete-line', 'Delete line', { shown: 'Ctrl+Del', aria: 'Control+Delete' }, then('delete')),
          btn('add-line', 'Add line', { shown: 'Ctrl+I', aria: 'Control+I Insert' }, then('add'))),
        h('div', { class: 'actions-row' },
          btn('skip', 'Skip page', { shown: 'PgDn', aria: 'PageDown' }, () => act('skip')),
          btn('help', 'Keys', { shown: 'Ctrl+/', aria: 'Control+/' }, () => act('help'), 'ghost')),
        h('h2', { class: 'legend-title' }, 'Lines'),
        h('p', { class: 'legend-key' },
          ['review', 'accepted', 'yours', 'deleted'].map((s) => h('span', { class: 'ls', dataset: { state: s } }, h('span', { class: 'dot', 'aria-hidden': 'true' }), LINE_STATE_TEXT[s]))),
        h('ol', { id: 'line-list', class: 'line-list', 'aria-label': 'Lines of the page' }),
        h('p', { class: 'muted small' }, h('span', { id: 'count' }), ' · ', h('span', { id: 'pending' })))));
    R.filterEl = null;
    R.done = 0;
    for (const d of document.querySelectorAll('#keys .keys')) d.hidden = d.dataset.mode !== 'lines';
    updatePending();
  }
  function focusLine() { const t = $('#line-text'); if (t && !t.disabled) t.focus({ preventScroll: true }); else focusStage(); }

  async function renderLines(t0) {
    const session = R;
    const item = R.current;
    const stage = $('#stage');
    $('#count').textContent = `${R.done} page${R.done === 1 ? '' : 's'} saved in this session`;
    if (R.L && R.L.ro) R.L.ro.disconnect();
    R.L = null;
    if (!item) {
      stage.replaceChildren(h('p', { class: 'empty' }, R.fetching ? 'Loading…' : 'Nothing left to review in this list.'));
      stage.dataset.itemId = '';
      $('#why').textContent = '';
      $('#line-list').replaceChildren();
      lineField(null);
      return;
    }
    if (!item.url && !item.error && item.ready) {
      await item.ready;
      if (R !== session || R.current !== item) return;
    }
    stage.dataset.itemId = String(item.id);
    stage.dataset.pred = '';
    if (item.error) {
      stage.replaceChildren(h('p', { class: 'error' }, 'The page could not be shown: ' + item.error));
      lineField(null);
      return;
    }
    const E = lineEdit(item);
    const W = Number(item.width) || item.natural[0], H = Number(item.height) || item.natural[1];
    const img = h('img', { src: item.url, alt: `Page ${item.client_id}`, class: 'box-img', width: W, height: H, draggable: 'false' });
    const layer = svg('g', { class: 'lines-layer' });
    const overlay = svg('svg', { class: 'box-svg line-svg', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'group', 'aria-label': `${E.lines.length} lines` }, layer);
    const wrap = h('div', { class: 'box-wrap' }, img, overlay);
    const L = { item, E, W, H, svg: overlay, layer, els: new Map(), drag: null };
    R.L = L;
    stage.replaceChildren(wrap, h('p', { class: 'item-id' }, `#${item.id} · ${item.client_id} · ${W} × ${H} px`));
    overlay.addEventListener('pointerdown', lineDown);
    overlay.addEventListener('pointermove', lineMove);
    overlay.addEventListener('pointerup', lineUp);
    overlay.addEventListener('pointercancel', lineUp);
    L.ro = new ResizeObserver(() => drawCrop());
    L.ro.observe($('#crop-wrap'));
    const why = [];
    if (item.audit || R.strategy === 'audit') why.push('Audit sample: every line on it tests the threshold, so all are uncertain.');
    else why.push(`Picked by ${R.strategy}.`);
    if (R.tier) why.push(`Your tier: ${R.tier}.`);
    L.why = why.join(' ');
    drawLines();
    showLine();
    focusLine();
    logNext(t0);
  }

  /** Every line's rectangle on the page (a few dozen: redrawn whole). */
  function drawLines() {
    const L = R && R.L;
    if (!L) return;
    L.els.clear();
    L.layer.replaceChildren(...L.E.lines.map((l) => {
      const el = svg('rect', { class: 'ln', 'vector-effect': 'non-scaling-stroke', dataset: { uid: l.uid } });
      setRect(el, l.box);
      L.els.set(l.uid, el);
      paintLine(l);
      return el;
    }));
    const list = $('#line-list');
    list.replaceChildren(...L.E.lines.map((l, i) => {
      const li = h('li', { dataset: { uid: l.uid }, onclick: () => { lineAct('select', l.uid); focusLine(); } },
        h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'n' }, i + 1),
        h('span', { class: 'lt' }), h('span', { class: 'sc' }));
      L.els.set('li' + l.uid, li);
      paintLine(l);
      return li;
    }));
  }

  /** One line's rectangle and list entry, after a change to it. */
  function paintLine(l) {
    const L = R.L;
    const state = lineState(l);
    const cur = L.E.cur === l.uid;
    const el = L.els.get(l.uid);
    if (el) {
      el.dataset.state = state;
      el.classList.toggle('cur', cur);
    }
    const li = L.els.get('li' + l.uid);
    if (li) {
      li.dataset.state = state;
      li.classList.toggle('cur', cur);
      if (cur) li.setAttribute('aria-current', 'true'); else li.removeAttribute('aria-current');
      li.querySelector('.lt').textContent = l.text || '(empty)';
      li.querySelector('.sc').textContent = state === 'yours' || state === 'deleted' || l.score == null ? LINE_STATE_TEXT[state] : Number(l.score).toFixed(2);
      li.title = `${LINE_STATE_TEXT[state]}: ${l.text}`;
    }
  }

  /** The field, the marks, the crop and the info line for the current line. */
  function showLine() {
    const L = R && R.L;
    if (!L) return;
    const E = L.E;
    for (const l of E.lines) paintLine(l);
    const l = curLine(E);
    lineField(l);
    drawCrop();
    if (l) showInView(L, l);
    const left = E.lines.filter((x) => lineUncertain(x) && !x.checked && !x.deleted).length;
    $('#why').textContent = `${L.why} ${left} uncertain line${left === 1 ? '' : 's'} (orange) left of ${E.lines.length}.`;
  }

  /** Scroll the current line into view: in the list (that list only), and
   *  on the page, in the window below the pinned editor. */
  function showInView(L, l) {
    const li = L.els.get('li' + l.uid);
    const list = $('#line-list');
    if (li && list) {
      const d = li.getBoundingClientRect(), b = list.getBoundingClientRect();
      if (d.top < b.top) list.scrollTop -= b.top - d.top;
      else if (d.bottom > b.bottom) list.scrollTop += d.bottom - b.bottom;
    }
    const el = L.els.get(l.uid);
    const ed = document.querySelector('.line-editor');
    if (!el || !ed) return;
    const r = el.getBoundingClientRect();
    const top = ed.getBoundingClientRect().bottom + 8, bottom = window.innerHeight - 8;
    if (r.top < top || r.bottom > bottom) window.scrollBy(0, r.top - (top + bottom) / 2 + r.height / 2);
  }

  /** The text field (and its marks) for line `l`, or disabled with no line. */
  function lineField(l) {
    const t = $('#line-text');
    const info = $('#line-info');
    if (!t) return;
    if (!l) {
      t.value = '';
      t.disabled = true;
      $('#marks').replaceChildren();
      info.textContent = R && R.current ? 'No line on this page. Ctrl+I adds one, or drag on the page to draw it.' : '';
      return;
    }
    t.disabled = false;
    t.readOnly = l.deleted;
    if (t.value !== l.text) t.value = l.text;
    t.classList.toggle('deleted', l.deleted);
    const E = R.L.E;
    const n = E.lines.indexOf(l) + 1;
    const state = lineState(l);
    const low = markChars(l);
    const bits = [`Line ${n} of ${E.lines.length}`];
    if (l.deleted) bits.push('deleted: Ctrl+Del brings it back');
    else if (l.id == null) bits.push('your new line: type its text; Alt+arrows move it, Alt+Shift+arrows resize it');
    else if (state === 'yours') bits.push(l.source === 'human' ? 'your line' : `edited (model ${Number(l.score).toFixed(2)}); Esc restores the model's`);
    else bits.push(`${lineUncertain(l) ? (l.checked ? 'uncertain, checked' : 'uncertain') : 'accepted'} · score ${Number(l.score).toFixed(2)}`);
    if (low != null) bits.push(low ? `${low} character${low === 1 ? '' : 's'} below ${LOW_CHAR} marked` : `no character below ${LOW_CHAR}`);
    info.textContent = bits.join(' · ');
    sizeField();
  }

  /** Mark the characters read below LOW_CHAR, while the text is the machine's. Returns how many (null: no scores apply). */
  function markChars(l) {
    const m = $('#marks');
    const chars = Array.from(l.text);
    if (!l.chars || l.deleted || l.text !== l.orig.text || l.chars.length !== chars.length) {
      m.replaceChildren(l.text);
      m.dataset.low = '';
      return null;
    }
    const kids = [];
    let run = '';
    let low = 0;
    chars.forEach((c, i) => {
      const p = l.chars[i];
      if (p >= LOW_CHAR) { run += c; return; }
      if (run) { kids.push(run); run = ''; }
      low++;
      kids.push(h('mark', { class: p < VERY_LOW_CHAR ? 'low very' : 'low', dataset: { i, p } }, c));
    });
    if (run) kids.push(run);
    m.replaceChildren(...kids);
    m.dataset.low = String(low);
    return low;
  }

  /** The field grows with its text, so it never scrolls under its marks. */
  function sizeField() {
    const t = $('#line-text');
    t.style.height = 'auto';
    t.style.height = t.scrollHeight + 'px';
  }

  /** The current line's crop, enlarged: the page's pixels around its box. */
  function drawCrop() {
    const L = R && R.L;
    const c = $('#crop');
    if (!c) return;
    const l = L ? curLine(L.E) : null;
    const img = L && L.item.img;
    const ctx = c.getContext('2d');
    if (!l || !img || !img.naturalWidth) {
      c.width = 1; c.height = 1;
      c.style.width = '0px'; c.style.height = '0px';
      return;
    }
    const [x0, y0, x1, y1] = l.box;
    const lh = Math.max(1, y1 - y0);
    const pad = 0.35 * lh;
    const sx = Math.max(0, x0 - pad), sy = Math.max(0, y0 - pad);
    const sw = Math.min(L.W, x1 + pad) - sx, sh = Math.min(L.H, y1 + pad) - sy;
    const avail = Math.max(50, $('#crop-wrap').clientWidth - 2);
    let k = avail / sw;
    if (k * sh > CROP_MAX_H) k = CROP_MAX_H / sh;
    if (k * lh < CROP_MIN_TEXT) k = CROP_MIN_TEXT / lh; // too long to fit: the crop scrolls sideways
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.round(sw * k), ch = Math.round(sh * k);
    c.width = Math.max(1, Math.round(cw * dpr)); c.height = Math.max(1, Math.round(ch * dpr));
    c.style.width = cw + 'px'; c.style.height = ch + 'px';
    // The box is in the API's pixels; the decoded image may differ (EXIF).
    const fx = img.naturalWidth / L.W, fy = img.naturalHeight / L.H;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(img, sx * fx, sy * fy, sw * fx, sh * fy, 0, 0, cw, ch);
    ctx.strokeStyle = l.deleted ? '#b3261e' : 'rgba(31, 78, 121, .55)';
    ctx.lineWidth = 1;
    ctx.setLineDash(l.deleted ? [6, 4] : []);
    ctx.strokeRect((x0 - sx) * k + 0.5, (y0 - sy) * k + 0.5, (x1 - x0) * k - 1, (y1 - y0) * k - 1);
    c.setAttribute('aria-label', `Line ${L.E.lines.indexOf(l) + 1}, enlarged ${k.toFixed(1)}×`);
    const wrap = $('#crop-wrap');
    wrap.scrollLeft = 0;
  }

  /** Every line action, from a key, a button or the mouse. */
  function lineAct(what, arg, ev) {
    const L = R && R.L;
    if (!L) return;
    const E = L.E;
    const t0 = ev ? ev.timeStamp : performance.now();
    const l = curLine(E);
    const banner = $('#line-banner');
    const go = (uid) => { E.cur = uid; banner.hidden = true; };
    switch (what) {
      case 'type': {
        if (!l || l.deleted) return;
        const t = $('#line-text');
        // A line is one line: a pasted line break becomes a space.
        const v = t.value.replace(/\r\n|[\r\n]/g, ' ');
        if (v !== t.value) t.value = v;
        l.text = v;
        paintLine(l);
        lineField(l);
        return; // typing repaints one line, nothing else
      }
      case 'select': go(arg); break;
      case 'step': {
        if (!E.lines.length) return;
        const i = l ? E.lines.indexOf(l) : (arg > 0 ? -1 : 0);
        go(E.lines[(i + arg + E.lines.length) % E.lines.length].uid);
        break;
      }
      case 'next': {
        // Tab or Enter: the line is kept as it reads; on to the next uncertain one.
        if (l && arg > 0) l.checked = true;
        const n = E.lines.length;
        const i = l ? E.lines.indexOf(l) : -1;
        let found = null;
        for (let k = 1; k <= n; k++) {
          const x = E.lines[(((i + arg * k) % n) + n) % n];
          if (lineUncertain(x) && !x.deleted && (arg < 0 || !x.checked)) { found = x; break; }
        }
        if (found) { go(found.uid); break; }
        if (arg > 0) {
          banner.textContent = 'Every uncertain line is checked. Ctrl+Enter saves the page (Ctrl+↓ ↑ visit the other lines).';
          banner.hidden = false;
        } else say('No uncertain line before this one.');
        break;
      }
      case 'delete': {
        if (!l) { say('No line to delete.'); return; }
        if (l.id == null) {
          // A line of yours that was never saved just goes.
          const i = E.lines.indexOf(l);
          E.lines.splice(i, 1);
          E.cur = E.lines.length ? E.lines[Math.min(i, E.lines.length - 1)].uid : null;
          drawLines();
          say('Removed your new line.');
          break;
        }
        l.deleted = !l.deleted;
        if (!l.deleted) { say(`Line ${E.lines.indexOf(l) + 1} is back.`); break; }
        say(`Deleted line ${E.lines.indexOf(l) + 1}. Ctrl+Del on it brings it back.`);
        // On to the next uncertain line, else stay (the deleted line shows struck out).
        const i = E.lines.indexOf(l);
        const nx = [...E.lines.slice(i + 1), ...E.lines.slice(0, i)].find((x) => lineUncertain(x) && !x.checked && !x.deleted);
        if (nx) go(nx.uid);
        break;
      }
      case 'revert': {
        if (!l) return;
        if (l.id == null) { say('A new line has nothing to go back to: Ctrl+Del removes it.'); return; }
        l.text = l.orig.text;
        l.box = l.orig.box.slice();
        l.deleted = false;
        setRect(L.els.get(l.uid), l.box);
        say(`Line ${E.lines.indexOf(l) + 1} is as it was.`);
        break;
      }
      case 'add': {
        const b = arg || newLineBox(L, l);
        const nl = { uid: ++E.uid, id: null, label: R.project.labels[0], box: b, text: '', score: null, source: 'human',
          status: 'added', chars: null, orig: { text: '', box: b.slice() }, checked: true, deleted: false };
        // After the line it was added below, or where its top falls in the order.
        let i = l && !arg ? E.lines.indexOf(l) + 1 : E.lines.findIndex((x) => x.box[1] > b[1]);
        if (i < 0) i = E.lines.length;
        E.lines.splice(i, 0, nl);
        go(nl.uid);
        drawLines();
        say('Added a line: type its text. Alt+arrows move its box, Alt+Shift+arrows resize it.');
        break;
      }
      case 'move': case 'grow': {
        if (!l || l.deleted) return;
        const [dx, dy] = arg;
        const b = l.box.slice();
        if (what === 'move') {
          const mx = clamp(dx, -b[0], L.W - b[2]), my = clamp(dy, -b[1], L.H - b[3]);
          b[0] += mx; b[2] += mx; b[1] += my; b[3] += my;
        } else {
          b[2] = clamp(b[2] + dx, b[0] + LINE_STEP, L.W);
          b[3] = clamp(b[3] + dy, b[1] + LINE_STEP, L.H);
        }
        l.box = b;
        setRect(L.els.get(l.uid), b);
        break;
      }
      default: return;
    }
    showLine();
    requestAnimationFrame(() => logMs(window.__ll_line_latencies, { what, ms: performance.now() - t0 }));
  }

  /** A new line's box: below the line `l` (above it at the page's foot), its size; with no line, across the top. */
  function newLineBox(L, l) {
    if (!l) {
      const hh = Math.max(12, Math.round(L.H * 0.02));
      return [Math.round(L.W * 0.1), Math.round(L.H * 0.05), Math.round(L.W * 0.9), Math.round(L.H * 0.05) + hh];
    }
    const [x0, y0, x1, y1] = l.box;
    const hh = y1 - y0, gap = Math.round(hh * 0.4);
    let top = y1 + gap;
    if (top + hh > L.H) top = Math.max(0, y0 - gap - hh);
    return [x0, top, x1, Math.min(L.H, top + hh)];
  }

  // The mouse on the page: a click picks a line, a drag on empty space draws one.
  function lineDown(e) {
    const L = R && R.L;
    if (!L || e.button !== 0) return;
    e.preventDefault();
    const r = L.svg.getBoundingClientRect();
    const g = e.target.closest && e.target.closest('.ln');
    L.drag = { left: r.left, top: r.top, kx: L.W / r.width, ky: L.H / r.height, uid: g ? Number(g.dataset.uid) : null, moved: false };
    const d = L.drag;
    d.start = [clamp((e.clientX - d.left) * d.kx, 0, L.W), clamp((e.clientY - d.top) * d.ky, 0, L.H)];
    d.box = [d.start[0], d.start[1], d.start[0], d.start[1]];
    L.svg.setPointerCapture(e.pointerId);
  }
  function lineMove(e) {
    const L = R && R.L;
    const d = L && L.drag;
    if (!d) return;
    const x = clamp((e.clientX - d.left) * d.kx, 0, L.W), y = clamp((e.clientY - d.top) * d.ky, 0, L.H);
    d.moved = d.moved || Math.abs(x - d.start[0]) / d.kx > 3 || Math.abs(y - d.start[1]) / d.ky > 3;
    if (!d.moved) return;
    d.box = [Math.min(d.start[0], x), Math.min(d.start[1], y), Math.max(d.start[0], x), Math.max(d.start[1], y)];
    if (!d.el) { d.el = svg('rect', { class: 'ln drawing', 'vector-effect': 'non-scaling-stroke' }); L.svg.append(d.el); }
    setRect(d.el, d.box);
  }
  function lineUp(e) {
    const L = R && R.L;
    const d = L && L.drag;
    if (!d) return;
    if (e.type === 'pointerup') lineMove(e);
    L.drag = null;
    if (d.el) d.el.remove();
    const [x0, y0, x1, y1] = d.box;
    if (d.moved && x1 - x0 >= LINE_STEP && y1 - y0 >= LINE_STEP) lineAct('add', d.box);
    else if (!d.moved && d.uid != null) lineAct('select', d.uid);
    focusLine();
  }

  // ---- saving a page: its lines in one PUT ------------------------------------

  async function acceptLines(t0) {
    const session = R;
    const L = R.L;
    if (!L || L.sending) return;
    const item = L.item;
    const kept = L.E.lines.filter((l) => !l.deleted);
    const body = {
      regions: kept.map((l) => {
        const r = { label: l.label || R.project.labels[0], box: l.box.slice(), text: l.text };
        return l.id != null ? { id: l.id, ...r } : r;
      }),
    };
    const unchecked = kept.filter((l) => lineUncertain(l) && !l.checked).length;
    L.sending = true;
    say(`Saving ${body.regions.length} lines…`);
    try {
      await api('PUT', `/v1/projects/${R.project.id}/items/${item.id}/regions`, body);
    } catch (e) {
      L.sending = false;
      if (R !== session) return;
      // The edits stay on the page; a named line is made current.
      const m = /regions\[(\d+)\]/.exec(e.message || '');
      let msg = `Page #${item.id} was not saved: ${readable(e)}`;
      if (m && kept[Number(m[1])]) {
        msg += ` (line ${L.E.lines.indexOf(kept[Number(m[1])]) + 1}, now current).`;
        L.E.cur = kept[Number(m[1])].uid;
        showLine();
      }
      alertBox(msg + ' Your edits are kept: fix them and press Ctrl+Enter again.');
      say('Not saved.');
      focusLine();
      return;
    }
    if (R !== session) return;
    alertBox(null);
    R.done++;
    window.__ll_saved = (window.__ll_saved || 0) + 1;
    say(`#${item.id}: ${body.regions.length} lines saved${unchecked ? ` (${unchecked} uncertain kept as read)` : ''}.`);
    return next(t0);
  }

  function lineKeys(e) {
    const k = e.key;
    if (e.isComposing) return false; // an input method is composing: its keys are its own
    const t = e.target;
    const inField = t && t.id === 'line-text';
    const ctrl = e.ctrlKey || e.metaKey;
    if (t && (t.tagName === 'BUTTON' || t.tagName === 'A') && (k === 'Enter' || k === ' ')) return false;
    if (ctrl && !e.altKey) {
      switch (k) {
        case 'Enter': case 's': case 'S': act('accept'); return true;
        case '/': act('help'); return true;
        case 'Delete': lineAct('delete', null, e); focusLine(); return true;
        case 'i': case 'I': lineAct('add', null, e); focusLine(); return true;
        case 'ArrowDown': lineAct('step', 1, e); focusLine(); return true;
        case 'ArrowUp': lineAct('step', -1, e); focusLine(); return true;
        default: return false;
      }
    }
    if (e.altKey && !ctrl) {
      const d = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[k];
      if (!d) return false;
      lineAct(e.shiftKey ? 'grow' : 'move', [d[0] * LINE_STEP, d[1] * LINE_STEP], e);
      return true;
    }
    const onPage = inField || !t || t === document.body || t.id === 'stage' || t.id === 'main' || t.closest('#stage');
    switch (k) {
      case 'Tab': if (!onPage) return false; lineAct('next', e.shiftKey ? -1 : 1, e); focusLine(); return true;
      case 'Enter': lineAct('next', e.shiftKey ? -1 : 1, e); focusLine(); return true;
      case 'Escape': lineAct('revert', null, e); focusLine(); return true;
      case 'PageDown': act('skip'); return true;
      case 'Insert': lineAct('add', null, e); focusLine(); return true;
      default: break;
    }
    if (inField) return false; // everything else is typing
    switch (k) {
      case 'Delete': lineAct('delete', null, e); focusLine(); return true;
      case '?': act('help'); return true;
      default: return false;
    }
  }

  function toggleHelp() {
    const d = $('#keys');
    if (d.open) d.close(); else d.showModal();
  }

  document.addEventListener('keydown', (e) => {
    if ($('#keys').open) {
      const ctrl = e.ctrlKey || e.metaKey;
      if ((e.key === '?' && !ctrl && !e.altKey) || (e.key === '/' && ctrl)) { e.preventDefault(); toggleHelp(); }
      return;
    }
    if (R && R.boxes) { if (boxKeys(e)) e.preventDefault(); return; }
    if (R && R.lines) { if (lineKeys(e)) e.preventDefault(); return; }
    if (R && R.sound) { if (soundKeys(e)) e.preventDefault(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
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
    else if (R.screen && (k === 'c' || k === 'C')) act('confirm');
    else if (R.screen && (k === 'x' || k === 'X')) act('reject');
    else handled = false;
    if (handled) e.preventDefault();
  });

  flush();
  route();
})();
