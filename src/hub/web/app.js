// The hub's global dashboard. Reads the query API with a read token taken from the URL
// fragment (#token=...), or typed in once and kept in this browser's localStorage.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const palette = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];
  const charts = {};
  let token = '';
  let timer = null;

  function readToken() {
    // #range=<ms> picks the time range when it is one of the choices (edgeloop up: 15 minutes).
    const r = /(?:^|[#&])range=(\d+)/.exec(location.hash);
    if (r && [...$('range').options].some((o) => o.value === r[1])) $('range').value = r[1];
    const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (m) {
      token = decodeURIComponent(m[1]);
      try { localStorage.setItem('edgeloop-hub-token', token); } catch (e) { /* private mode */ }
      history.replaceState(null, '', location.pathname + location.search);
    } else {
      try { token = localStorage.getItem('edgeloop-hub-token') || ''; } catch (e) { token = ''; }
    }
  }

  function showError(text) {
    const box = $('error');
    box.textContent = text;
    box.hidden = !text;
  }

  function filterParams() {
    const p = new URLSearchParams();
    const range = Number($('range').value);
    if (range > 0) p.set('from', String(Date.now() - range));
    const site = $('site').value;
    if (site) p.set('site', site);
    return p;
  }

  function bucketFor(range) {
    if (range === 0 || range > 7 * 86400000) return '1d';
    if (range > 86400000) return '6h';
    if (range > 3600000) return '1h';
    if (range > 900000) return '5m';
    return '30s';
  }

  async function api(path, params) {
    const res = await fetch('/api/v1/' + path + '?' + params.toString(), {
      headers: { Authorization: 'Bearer ' + token },
    });
    if (res.status === 401 || res.status === 403) {
      const body = await res.json().catch(() => ({}));
      const err = new Error(body.error || 'not authorised');
      err.auth = true;
      throw err;
    }
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(path + ': ' + (body.error || res.status));
    }
    return res.json();
  }

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return '—';
    return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
  }

  function fillTable(id, rows, cells) {
    const body = $(id).querySelector('tbody');
    body.replaceChildren();
    for (const row of rows) {
      const tr = document.createElement('tr');
      for (const cell of cells(row)) {
        const td = document.createElement('td');
        if (typeof cell === 'object' && cell !== null) {
          td.textContent = cell.text;
          if (cell.cls) td.className = cell.cls;
        } else {
          td.textContent = cell;
        }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  // rows: [{bucket, <series key>, <value>}] → one line per series over the union of buckets.
  function lineChart(id, rows, seriesKey, valueKey, percent) {
    const buckets = [...new Set(rows.map((r) => r.bucket))].sort((a, b) => a - b);
    const names = [...new Set(rows.map((r) => seriesKey(r)))].sort();
    const datasets = names.map((name, i) => {
      const byBucket = new Map(rows.filter((r) => seriesKey(r) === name).map((r) => [r.bucket, r[valueKey]]));
      return {
        label: name,
        data: buckets.map((b) => (byBucket.has(b) ? (percent ? 100 * byBucket.get(b) : byBucket.get(b)) : null)),
        borderColor: palette[i % palette.length],
        backgroundColor: palette[i % palette.length],
        spanGaps: true,
        tension: 0.2,
      };
    });
    const labels = buckets.map((b) => fmtTime(b).slice(5, 16));
    if (charts[id]) {
      charts[id].data.labels = labels;
      charts[id].data.datasets = datasets;
      charts[id].update('none');
      return;
    }
    charts[id] = new Chart($(id), {
      type: 'line',
      data: { labels, datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        scales: { y: { beginAtZero: true, max: percent ? 100 : undefined, title: { display: !!percent, text: '%' } } },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
      },
    });
  }

  async function refresh() {
    if (!token) {
      $('login').hidden = false;
      return;
    }
    const params = filterParams();
    const range = Number($('range').value);
    const bucketed = new URLSearchParams(params);
    bucketed.set('bucket', bucketFor(range));
    try {
      const [sites, stats, accuracy, versions, anomalies, jobs, drift] = await Promise.all([
        api('sites', new URLSearchParams()),
        api('stats', (() => { const p = new URLSearchParams(bucketed); p.set('group_by', 'site'); return p; })()),
        api('accuracy', bucketed),
        api('versions', params),
        api('anomalies', (() => { const p = new URLSearchParams(params); p.set('limit', '20'); return p; })()),
        api('jobs', new URLSearchParams({ limit: '20' })),
        api('drift', (() => { const p = new URLSearchParams(params); p.set('limit', '20'); return p; })()),
      ]);
      showError('');
      $('login').hidden = true;
      const select = $('site');
      const chosen = select.value;
      const known = new Set([...select.options].map((o) => o.value));
      for (const s of sites.rows) {
        if (!known.has(s.site)) select.add(new Option(s.site, s.site));
      }
      select.value = chosen;
      const shownSites = chosen ? sites.rows.filter((s) => s.site === chosen) : sites.rows;
      fillTable('sites', shownSites, (s) => [s.site, { text: s.sync_state, cls: 'state-' + s.sync_state },
        fmtTime(s.last_seen_at), s.events_total, s.uploads_total]);
      lineChart('events-chart', stats.rows, (r) => r.site, 'events', false);
      lineChart('rate-chart', stats.rows, (r) => r.site, 'anomaly_rate', true);
      lineChart('accuracy-chart', accuracy.rows, (r) => r.model + ' v' + r.version, 'accuracy', true);
      fillTable('versions', versions.rows, (v) => [v.site, v.model, v.version, fmtTime(v.last_seen_at)]);
      fillTable('anomalies', anomalies.rows, (a) => [fmtTime(a.ts), a.site, a.model + ' v' + a.version,
        a.score === null ? '—' : a.score.toFixed(3), a.id]);
      const num = (x) => (x === null || x === undefined ? '—' : x.toFixed(4));
      fillTable('jobs', jobs.jobs, (j) => [j.id, j.model, j.trigger, { text: j.status, cls: 'job-' + j.status },
        fmtTime(j.started_at), j.gate_passed === null ? '—' : (j.gate_passed ? 'passed' : 'refused'),
        (j.gate_metric ? j.gate_metric + ' ' : '') + num(j.challenger), num(j.champion), j.version || '—',
        j.digest ? j.digest.slice(0, 19) : '—']);
      fillTable('drift', drift.rows, (d) => {
        let names = [];
        try {
          names = JSON.parse(d.details).features.filter((f) => f.drifted).map((f) => f.name);
        } catch (e) { names = []; }
        return [fmtTime(d.ts), d.site, d.model + ' v' + d.version,
          d.drifted_features + (names.length ? ' (' + names.join(', ') + ')' : ''), d.window_rows];
      });
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      const csv = new URLSearchParams(params);
      csv.set('limit', '100000');
      $('csv').href = '/api/v1/events.csv?' + csv.toString();
      document.body.dataset.loaded = 'true';
    } catch (err) {
      showError(err.message);
      if (err.auth) $('login').hidden = false;
    }
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = $('live').checked ? setInterval(refresh, 10000) : null;
  }

  // A CSV link cannot carry the Authorization header: fetch it and save the blob.
  $('csv').addEventListener('click', async (e) => {
    e.preventDefault();
    const res = await fetch($('csv').href, { headers: { Authorization: 'Bearer ' + token } });
    if (!res.ok) return showError('export failed: ' + res.status);
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = 'events.csv';
    a.click();
    URL.revokeObjectURL(url);
  });
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value.trim();
    try { localStorage.setItem('edgeloop-hub-token', token); } catch (err) { /* private mode */ }
    refresh();
  });
  $('range').addEventListener('change', refresh);
  $('site').addEventListener('change', refresh);
  $('live').addEventListener('change', schedule);

  readToken();
  refresh();
  schedule();
})();
