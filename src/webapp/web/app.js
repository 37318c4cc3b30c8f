// The edgeloop site app: scoring (form and CSV), feedback, recent anomalies, operator view.
// Talks only to this server's /ui/api/ (same origin); no external resources.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { session: null, models: [], model: null, results: null, sort: { col: 0, dir: 1 }, page: 0, feedback: null, timers: [], chart: null };
const PAGE_ROWS = 1000;
const MAX_UPLOAD = 16 * 1024 * 1024;

function show(el, visible) { el.hidden = !visible; }
function text(el, value) { el.textContent = value; }
function fmt(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toPrecision(4).replace(/\.?0+$/, '');
  if (Array.isArray(v)) return v.map(fmt).join(', ');
  return String(v);
}
function when(ms) { return ms ? new Date(ms).toLocaleString() : '—'; }
function toast(message) {
  const t = $('toast'); text(t, message); show(t, true);
  clearTimeout(toast.timer); toast.timer = setTimeout(() => show(t, false), 4000);
}
function setError(el, message) { text(el, message || ''); show(el, !!message); }

async function api(path, options = {}) {
  const init = { method: options.method || 'GET', credentials: 'same-origin', headers: {} };
  if (options.json !== undefined) { init.body = JSON.stringify(options.json); init.headers['Content-Type'] = 'application/json'; }
  if (options.body !== undefined) { init.body = options.body; init.headers['Content-Type'] = options.type || 'text/csv'; }
  if (init.method !== 'GET' && state.session && state.session.csrf) init.headers['X-CSRF-Token'] = state.session.csrf;
  let response;
  try { response = await fetch('/ui/api/' + path, init); } catch (e) {
    throw new Error('The server cannot be reached (' + e.message + ').');
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : 'HTTP ' + response.status;
    const error = new Error(response.status === 413 ? 'The file is too large for this server: ' + message : message);
    error.status = response.status;
    throw error;
  }
  return body;
}

// ---- session -------------------------------------------------------------------------------
async function loadSession() {
  state.session = await api('session');
  const s = state.session;
  if (s.notice) { text($('mode-banner'), s.notice); show($('mode-banner'), true); } else show($('mode-banner'), false);
  show($('login'), !s.logged_in);
  show($('nav'), !!s.logged_in);
  show($('who'), !!s.logged_in);
  if (!s.logged_in) {
    document.querySelectorAll('.page').forEach((p) => show(p, false));
    const methods = s.login_methods || [];
    $('login-user').closest('.field').hidden = !methods.includes('password');
    $('login-password').closest('.field').hidden = !methods.includes('password');
    $('login-token').closest('.field').hidden = !methods.includes('token');
    document.querySelector('.or').hidden = !(methods.includes('password') && methods.includes('token'));
    if (!methods.length) setError($('login-error'), 'No way to log in is configured on this server (serve --web-users FILE or --api-token-file).');
    return false;
  }
  text($('who-name'), s.user + ' (' + s.role + ')');
  show($('tab-operator'), s.role === 'operator');
  return true;
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  setError($('login-error'), '');
  const token = $('login-token').value;
  const body = token ? { token } : { user: $('login-user').value, password: $('login-password').value };
  try {
    state.session = await api('login', { method: 'POST', json: body });
    $('login-password').value = ''; $('login-token').value = '';
    await start();
  } catch (e) { setError($('login-error'), e.message); }
});
$('logout').addEventListener('click', async () => {
  try { await api('logout', { method: 'POST' }); } catch (e) { /* already gone */ }
  state.timers.forEach(clearInterval); state.timers = [];
  await loadSession();
});

// ---- pages ---------------------------------------------------------------------------------
function showPage(name) {
  document.querySelectorAll('.tab').forEach((t) => {
    if (t.dataset.page === name) t.setAttribute('aria-current', 'page'); else t.removeAttribute('aria-current');
  });
  document.querySelectorAll('.page').forEach((p) => show(p, p.id === 'page-' + name));
  if (name === 'anomalies') refreshAnomalies();
  if (name === 'operator') refreshOperator();
}
document.querySelectorAll('.tab').forEach((t) => t.addEventListener('click', () => showPage(t.dataset.page)));

// ---- score ---------------------------------------------------------------------------------
async function loadModels() {
  const data = await api('models');
  state.models = data.models;
  state.feedbackEnabled = data.feedback;
  const select = $('model');
  select.replaceChildren(...data.models.map((m) => new Option(m.name + ' (v' + m.version + ')', m.name)));
  if (!data.models.length) { setError($('record-error'), 'No model is loaded on this server.'); return; }
  chooseModel(data.models[0].name);
}
$('model').addEventListener('change', () => chooseModel($('model').value));

function chooseModel(name) {
  const model = state.models.find((m) => m.name === name);
  state.model = model;
  const fields = $('record-fields');
  fields.replaceChildren();
  show($('record-result'), false);
  setError($('record-error'), model.error || '');
  text($('model-info'), model.platform + (model.stateful ? ' · streaming detector' : ''));
  if (!model.schema) return;
  const columns = model.schema.columns;
  text($('csv-columns'), 'this model needs: ' + columns.map((c) => c.name).join(', ') + '.');
  columns.forEach((c, i) => {
    const wrap = document.createElement('div'); wrap.className = 'field';
    const id = 'f-' + i;
    const label = document.createElement('label'); label.htmlFor = id; label.textContent = c.name;
    const input = document.createElement('input'); input.id = id; input.name = c.name; input.dataset.column = c.name;
    const hint = document.createElement('span'); hint.className = 'hint'; hint.id = id + '-hint';
    if (c.numeric) {
      input.type = 'number'; input.step = 'any'; input.inputMode = 'decimal';
      if (c.min !== undefined) input.min = c.min;
      if (c.max !== undefined) input.max = c.max;
      if (c.median !== undefined) input.value = +c.median.toPrecision(6);
      else input.value = c.datatype === 'INT64' && c.name === 'timestamp' ? Date.now() : 0;
      hint.textContent = c.datatype + (c.min !== undefined ? ' · ' + fmt(c.min) + ' to ' + fmt(c.max) : '');
    } else if (c.datatype === 'BOOL') {
      input.value = 'false'; hint.textContent = 'true or false';
    } else {
      input.value = c.name === 'series' ? 'sensor-1' : ''; hint.textContent = 'text';
    }
    input.setAttribute('aria-describedby', hint.id);
    wrap.append(label, input, hint);
    fields.append(wrap);
  });
}

$('record-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  setError($('record-error'), '');
  const values = {};
  $('record-fields').querySelectorAll('input').forEach((i) => { values[i.dataset.column] = i.value; });
  $('record-submit').disabled = true;
  try {
    const r = await api('models/' + encodeURIComponent(state.model.name) + '/score', { method: 'POST', json: { values } });
    renderRecord(r);
  } catch (e) { setError($('record-error'), e.message); } finally { $('record-submit').disabled = false; }
});

function renderRecord(r) {
  show($('record-result'), true);
  const v = $('record-verdict');
  text(v, r.anomaly ? 'Anomaly / positive' : 'Normal / negative');
  v.className = 'verdict ' + (r.anomaly ? 'anomaly' : 'normal');
  const dl = $('record-values'); dl.replaceChildren();
  r.outputs.forEach((name, i) => {
    const dt = document.createElement('dt'); dt.textContent = name;
    const dd = document.createElement('dd'); dd.textContent = fmt(r.values[i]);
    dl.append(dt, dd);
  });
  const bars = $('why-bars'); bars.replaceChildren();
  show($('why'), !!r.contributions);
  if (r.contributions) {
    const max = Math.max(...r.contributions.map((c) => Math.abs(c.value)), 1e-9);
    r.contributions.forEach((c) => {
      const li = document.createElement('li');
      const name = document.createElement('span'); name.textContent = c.feature;
      const track = document.createElement('span'); track.className = 'track';
      const bar = document.createElement('span'); bar.className = 'bar ' + (c.value >= 0 ? 'up' : 'down');
      bar.style.width = (Math.abs(c.value) / max * 50) + '%';
      const num = document.createElement('span'); num.className = 'num'; num.textContent = (c.value >= 0 ? '+' : '') + fmt(c.value);
      track.append(bar, num);
      li.setAttribute('aria-label', c.feature + ' ' + (c.value >= 0 ? 'raises' : 'lowers') + ' the score by ' + fmt(Math.abs(c.value)));
      li.append(name, track);
      bars.append(li);
    });
  }
  $('record-feedback').onclick = () => openFeedback({ model: r.model, version: r.version, request_id: r.request_id, row: 0, label: 'this record' });
}

// ---- CSV -------------------------------------------------------------------------------------
$('csv-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  setError($('csv-error'), '');
  const file = $('csv-file').files[0];
  if (!file) { setError($('csv-error'), 'Choose a CSV file first.'); return; }
  if (file.size > MAX_UPLOAD) {
    setError($('csv-error'), 'The file is ' + (file.size / 1048576).toFixed(1) + ' MB; this server takes at most ' + (MAX_UPLOAD / 1048576) + ' MB per upload. Split it into smaller files.');
    return;
  }
  $('csv-submit').disabled = true;
  text($('csv-status'), 'Uploading and scoring ' + file.name + '…');
  const started = performance.now();
  try {
    const r = await api('models/' + encodeURIComponent(state.model.name) + '/score-csv', { method: 'POST', body: file, type: 'text/csv' });
    state.results = r; state.page = 0; state.sort = { col: 0, dir: 1 };
    const seconds = (performance.now() - started) / 1000;
    text($('csv-status'), 'Scored ' + r.rows + ' rows in ' + seconds.toFixed(2) + ' s; ' + r.anomalies + ' anomalies.' +
      (r.ignored_columns.length ? ' Ignored columns: ' + r.ignored_columns.join(', ') + '.' : ''));
    renderResults();
  } catch (e) {
    text($('csv-status'), '');
    setError($('csv-error'), e.message);
  } finally { $('csv-submit').disabled = false; }
});

function resultColumns() { return ['row', 'anomaly', 'score', ...state.results.outputs]; }
function cellValue(row, c) { return c === 0 ? row[0] : c === 1 ? row[3] : c === 2 ? row[4] : row[5][c - 3]; }

function filteredRows() {
  const r = state.results;
  const query = $('filter').value.trim().toLowerCase();
  const only = $('only-anomalies').checked;
  let rows = r.results.filter((row) => (!only || row[3]) && (!query || String(row[0] + 1) === query ||
      row[5].some((v) => fmt(v).toLowerCase().includes(query))));
  const { col, dir } = state.sort;
  rows = rows.slice().sort((a, b) => {
    const x = cellValue(a, col), y = cellValue(b, col);
    const nx = x === null ? -Infinity : +x, ny = y === null ? -Infinity : +y;
    return (nx - ny) * dir || a[0] - b[0];
  });
  return rows;
}

function renderResults() {
  const r = state.results;
  show($('results-section'), true);
  const cols = resultColumns();
  const head = document.createElement('tr');
  cols.forEach((name, c) => {
    const th = document.createElement('th'); th.scope = 'col';
    const b = document.createElement('button'); b.type = 'button'; b.textContent = name;
    if (state.sort.col === c) th.setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
    b.addEventListener('click', () => { state.sort = { col: c, dir: state.sort.col === c ? -state.sort.dir : 1 }; state.page = 0; renderResults(); });
    th.append(b); head.append(th);
  });
  const th = document.createElement('th'); th.scope = 'col'; th.textContent = 'feedback'; head.append(th);
  $('results').tHead.replaceChildren(head);
  const rows = filteredRows();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
  state.page = Math.min(state.page, pages - 1);
  const slice = rows.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS);
  const body = document.createElement('tbody');
  for (const row of slice) {
    const tr = document.createElement('tr');
    if (row[3]) tr.className = 'anomaly';
    cols.forEach((_, c) => {
      const td = document.createElement('td');
      td.textContent = c === 0 ? String(row[0] + 1) : c === 1 ? (row[3] ? 'yes' : 'no') : fmt(cellValue(row, c));
      tr.append(td);
    });
    const td = document.createElement('td');
    const b = document.createElement('button'); b.type = 'button'; b.className = 'link'; b.textContent = 'Feedback';
    b.setAttribute('aria-label', 'Feedback on row ' + (row[0] + 1));
    b.addEventListener('click', () => openFeedback({ model: r.model, version: r.version, request_id: r.request_ids[row[1]], row: row[2], label: 'row ' + (row[0] + 1) }));
    td.append(b); tr.append(td);
    body.append(tr);
  }
  $('results').tBodies[0].replaceWith(body);
  text($('result-count'), '(' + rows.length + ' of ' + r.rows + ' rows)');
  text($('page-info'), 'page ' + (state.page + 1) + ' of ' + pages);
  $('prev-page').disabled = state.page === 0;
  $('next-page').disabled = state.page >= pages - 1;
}
$('filter').addEventListener('input', () => { state.page = 0; renderResults(); });
$('only-anomalies').addEventListener('change', () => { state.page = 0; renderResults(); });
$('prev-page').addEventListener('click', () => { state.page--; renderResults(); });
$('next-page').addEventListener('click', () => { state.page++; renderResults(); });

function csvField(v) {
  const s = fmt(v === null ? '' : v);
  return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
$('download').addEventListener('click', () => {
  const r = state.results;
  const lines = [resultColumns().map(csvField).join(',')];
  for (const row of filteredRows()) {
    lines.push([row[0] + 1, row[3] ? 1 : 0, row[4] === null ? '' : row[4], ...row[5].map((v) => Array.isArray(v) ? v.join(' ') : v)].map(csvField).join(','));
  }
  const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }));
  const a = document.createElement('a'); a.href = url; a.download = r.model + '-scores.csv';
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
});

// ---- feedback --------------------------------------------------------------------------------
function openFeedback(target) {
  if (!state.feedbackEnabled) { toast('This server records no feedback (start serve with --queue).'); return; }
  state.feedback = target;
  text($('feedback-target'), target.label);
  setError($('feedback-error'), '');
  $('fb-correct').checked = true; $('fb-label-value').value = ''; $('fb-note').value = '';
  $('feedback-dialog').showModal();
}
$('fb-label-value').addEventListener('input', () => { $('fb-label').checked = true; });
$('feedback-cancel').addEventListener('click', () => $('feedback-dialog').close());
$('feedback-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const verdict = document.querySelector('input[name="verdict"]:checked').value;
  const t = state.feedback;
  const body = { model: t.model, version: t.version, request_id: t.request_id, row: t.row, verdict, note: $('fb-note').value };
  if (verdict === 'label') body.label = $('fb-label-value').value;
  $('feedback-send').disabled = true;
  try {
    const r = await api('feedback', { method: 'POST', json: body });
    $('feedback-dialog').close();
    toast('Feedback recorded (event ' + r.id + ').');
  } catch (e) { setError($('feedback-error'), e.message); } finally { $('feedback-send').disabled = false; }
});

// ---- recent anomalies ------------------------------------------------------------------------
async function refreshAnomalies() {
  if ($('page-anomalies').hidden) return;
  let data;
  try { data = await api('anomalies'); } catch (e) { setError($('global-error'), e.message); return; }
  const body = document.createElement('tbody');
  for (const a of data.anomalies.slice(0, 100)) {
    const tr = document.createElement('tr');
    [when(a.time_ms), a.model, a.series || '—', fmt(a.score)].forEach((v) => { const td = document.createElement('td'); td.textContent = v; tr.append(td); });
    body.append(tr);
  }
  $('anomaly-list').tBodies[0].replaceWith(body);
  const select = $('series');
  const keys = data.series.map((s) => s.model + ' / ' + (s.series || '(no series)'));
  const current = select.value;
  if (select.options.length !== keys.length || [...select.options].some((o, i) => o.value !== keys[i])) {
    select.replaceChildren(...keys.map((k) => new Option(k, k)));
    if (keys.includes(current)) select.value = current;
  }
  const chosen = data.series[keys.indexOf(select.value)];
  if (!window.Chart) return;
  const points = chosen ? chosen.points : [];
  const labels = points.map((p) => new Date(p[0]).toLocaleTimeString());
  const scores = points.map((p) => p[1]);
  const marks = points.map((p) => (p[2] ? p[1] : null));
  if (!state.chart) {
    state.chart = new Chart($('series-chart'), {
      type: 'line',
      data: { labels, datasets: [
        { label: 'score', data: scores, borderColor: '#0b5cad', pointRadius: 0, borderWidth: 1.5 },
        { label: 'anomaly', data: marks, borderColor: '#a4161a', backgroundColor: '#a4161a', showLine: false, pointRadius: 4 }] },
      options: { animation: false, maintainAspectRatio: false, scales: { x: { ticks: { maxTicksLimit: 8 } } } },
    });
  } else {
    state.chart.data.labels = labels;
    state.chart.data.datasets[0].data = scores;
    state.chart.data.datasets[1].data = marks;
    state.chart.update();
  }
}
$('series').addEventListener('change', refreshAnomalies);

// ---- operator --------------------------------------------------------------------------------
function fillValues(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v; dl.append(dt, dd);
  }
}
async function refreshOperator() {
  if ($('page-operator').hidden) return;
  let d;
  try { d = await api('operator'); setError($('global-error'), ''); } catch (e) { setError($('global-error'), e.message); return; }
  const up = d.uplink;
  const words = { online: 'online', offline: 'offline (hub unavailable; events wait in the queue)', unreachable: 'worker not reachable', unknown: 'unknown (no --uplink-status-url)' };
  const el = $('op-uplink'); el.dataset.state = up.state;
  text(el, words[up.state] + ' since ' + when(up.since_ms));
  fillValues($('op-uplink-details'), up.state === 'unknown' ? [] : [
    ['Backlog', fmt(up.backlog)], ['Oldest unsent', up.oldest_unsent_s === undefined ? '—' : fmt(up.oldest_unsent_s) + ' s'],
    ['Drain rate', up.drain_rate === undefined ? '—' : fmt(up.drain_rate) + ' events/s'], ['Dead letters (worker)', fmt(up.dead_letters)],
    ...(up.error ? [['Error', up.error]] : [])]);
  const r = d.requests;
  fillValues($('op-requests'), [['Rate', fmt(r.rate_per_s) + ' /s'], ['Total', fmt(r.total)], ['Errors', fmt(r.errors)],
    ['Mean latency', fmt(r.latency_mean_ms) + ' ms'], ['p95 latency', r.latency_p95_ms === null ? '—' : '≤ ' + fmt(r.latency_p95_ms) + ' ms'],
    ['Insight events dropped', fmt(d.dropped_insights)]]);
  const q = d.queue;
  if (!q) {
    fillValues($('op-queue'), [['Queue', 'none (serve without --queue)']]);
  } else if (q.error) {
    fillValues($('op-queue'), [['Queue', q.url], ['Error', q.error]]);
  } else {
    fillValues($('op-queue'), [['Queue', q.url], ['Depth', fmt(q.depth)], ['Dead letters', fmt(q.dead_letters)],
      ['Oldest', fmt(q.oldest_age_ms / 1000) + ' s'], ['Dropped (budget)', fmt(q.dropped)]]);
    const used = q.max_bytes > 0 ? q.bytes / q.max_bytes : 0;
    $('op-disk').value = Math.min(1, used);
    text($('op-disk-text'), (q.bytes / 1048576).toFixed(2) + ' MB' + (q.max_bytes > 0 ? ' of ' + (q.max_bytes / 1048576).toFixed(0) + ' MB' : ' (no budget set)'));
  }
  const deployed = {};
  if (d.deployment && Array.isArray(d.deployment.models)) for (const m of d.deployment.models) deployed[m.name] = m;
  const body = document.createElement('tbody');
  for (const m of d.models) {
    const dep = deployed[m.name] || {};
    // The digest of this local version (a deployment keeps several); a plain folder's fingerprint.
    const local = (dep.local_versions || []).find((v) => String(v.version) === String(m.version));
    const digest = (local && local.digest) || (m.fingerprint ? 'folder ' + m.fingerprint.slice(0, 12) : '—');
    const signer = local && local.digest && d.deployment.trusted_key_ids ? 'verified: ' + d.deployment.trusted_key_ids.join(', ') : '';
    const rollout = dep.rollout || {};
    const canary = rollout.state && rollout.state !== 'none' ? rollout.state + (rollout.share !== undefined ? ' ' + fmt(rollout.share * 100) + ' %' : '') : '—';
    const tr = document.createElement('tr');
    [m.name, m.version || '—', m.state + (m.reason ? ' (' + m.reason + ')' : ''), when(m.since_ms), String(digest).slice(0, 24) + (signer ? ' · ' + signer : ''), canary]
      .forEach((v) => { const td = document.createElement('td'); td.textContent = v; tr.append(td); });
    body.append(tr);
  }
  $('op-models').tBodies[0].replaceWith(body);
}

// ---- start -----------------------------------------------------------------------------------
async function start() {
  try {
    if (!(await loadSession())) { document.body.dataset.loaded = 'true'; return; }
    await loadModels();
    showPage('score');
    state.timers.forEach(clearInterval);
    state.timers = [setInterval(refreshAnomalies, 3000), setInterval(refreshOperator, 2000)];
  } catch (e) {
    setError($('global-error'), e.message);
  }
  document.body.dataset.loaded = 'true';
}
start();
