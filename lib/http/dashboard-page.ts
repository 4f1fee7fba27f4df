// The dashboard's page: HTML, CSS and plain browser JavaScript in one string, so that tsc ships it in dist/ with
// nothing to copy and nothing to build at run time. No framework and no chart library: the page is a few tables
// redrawn from one JSON snapshot a second (GET /events), and the chart is three lines on a canvas.
//
// Everything a peer controls (job types, worker names, error messages) reaches the page as data and is set with
// textContent, never as markup; the Content-Security-Policy allows only this script and this style, by hash.

import { createHash } from 'node:crypto';

const STYLE = `
:root {
  --bg: #f5f6f8; --panel: #ffffff; --text: #1f2328; --muted: #667080; --line: #e4e7eb; --soft: #f0f2f5;
  --accent: #2563eb; --c-submitted: #2563eb; --c-completed: #16a34a; --c-failed: #dc2626; --warn: #b45309;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #0f1115; --panel: #171a21; --text: #e6e8eb; --muted: #9aa3ad; --line: #2a2f38; --soft: #1e222b;
    --accent: #60a5fa; --c-submitted: #60a5fa; --c-completed: #4ade80; --c-failed: #f87171; --warn: #fbbf24; }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 var(--sans); }
header { display: flex; justify-content: space-between; align-items: baseline; gap: 16px; padding: 12px 24px;
  background: var(--panel); border-bottom: 1px solid var(--line); }
.brand { font-weight: 650; font-size: 17px; letter-spacing: -0.01em; }
.brand span { margin-left: 10px; color: var(--muted); font: 400 13px var(--mono); }
.meta { color: var(--muted); font-size: 13px; font-variant-numeric: tabular-nums; }
.conn::before { content: ""; display: inline-block; width: 8px; height: 8px; margin-right: 6px; border-radius: 50%;
  background: var(--muted); vertical-align: 1px; }
.conn.live::before { background: var(--c-completed); }
.conn.down::before { background: var(--c-failed); }
main { max-width: 1440px; margin: 0 auto; padding: 18px 24px 40px; }
#notice { min-height: 0; margin: 0 0 12px; font-size: 13px; }
#notice:empty { display: none; }
#notice { padding: 7px 12px; border-radius: 6px; background: var(--soft); border: 1px solid var(--line); }
#notice.err { color: var(--c-failed); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(104px, 1fr)); gap: 10px; margin-bottom: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 9px 14px 10px; }
.card .label { color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: 0.05em; }
.card .value { font: 600 22px/1.3 var(--mono); font-variant-numeric: tabular-nums; white-space: nowrap; }
.card.completed .value { color: var(--c-completed); }
.card.failed .value { color: var(--c-failed); }
.card.rate .value { color: var(--accent); }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 13px 16px 14px; min-width: 0; }
.panel h2 { margin: 0 0 10px; color: var(--muted); font-size: 12.5px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.06em; }
.panel h2 .count { margin-left: 6px; font: 500 12px var(--mono); text-transform: none; letter-spacing: 0; }
.head { display: flex; justify-content: space-between; align-items: baseline; }
.legend { font-size: 12px; color: var(--muted); }
.legend span { margin-left: 16px; white-space: nowrap; }
.legend b { margin-left: 3px; color: var(--text); font: 500 12px var(--mono); font-variant-numeric: tabular-nums; }
.legend i { display: inline-block; width: 12px; height: 3px; margin-right: 6px; border-radius: 2px; vertical-align: middle; }
.sw-submitted { background: var(--c-submitted); }
.sw-completed { background: var(--c-completed); }
.sw-failed { background: var(--c-failed); }
#chart { display: block; width: 100%; height: 210px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; margin-top: 16px; }
.scroll { max-height: 340px; overflow: auto; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { position: sticky; top: 0; background: var(--panel); padding: 4px 10px 6px 0; border-bottom: 1px solid var(--line);
  color: var(--muted); font-size: 12px; font-weight: 500; text-align: left; white-space: nowrap; }
td { padding: 5px 10px 5px 0; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap;
  max-width: 280px; overflow: hidden; text-overflow: ellipsis; }
tr:last-child td { border-bottom: 0; }
.num { text-align: right; font-family: var(--mono); font-variant-numeric: tabular-nums; }
.mono { font-family: var(--mono); font-size: 12.5px; }
td.empty { padding: 16px 0; color: var(--muted); text-align: center; }
td.msg { max-width: 230px; color: var(--muted); }
td.msg .code { color: var(--c-failed); font: 600 11.5px var(--mono); }
td.types { max-width: 150px; }
a.id { color: var(--accent); text-decoration: none; font-family: var(--mono); font-size: 12.5px; cursor: pointer; }
a.id:hover { text-decoration: underline; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: var(--soft); font-size: 11.5px; font-weight: 600; }
.badge.queued { color: var(--warn); }
.badge.delayed { color: var(--warn); }
.badge.running { color: var(--accent); }
.badge.completed { color: var(--c-completed); }
.badge.failed { color: var(--c-failed); }
.badge.cancelled { color: var(--muted); }
.bar { display: inline-block; width: 64px; height: 6px; margin-left: 8px; border-radius: 3px; background: var(--soft);
  overflow: hidden; vertical-align: middle; }
.bar span { display: block; height: 100%; background: var(--accent); }
button { padding: 3px 11px; border: 1px solid var(--line); border-radius: 5px; background: var(--panel); color: var(--text);
  font: 12.5px var(--sans); cursor: pointer; }
button:hover:not(:disabled) { border-color: var(--accent); color: var(--accent); }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.primary:hover:not(:disabled) { color: #fff; filter: brightness(1.08); }
button:disabled { opacity: 0.45; cursor: default; }
input, textarea { padding: 5px 8px; border: 1px solid var(--line); border-radius: 5px; background: var(--bg); color: var(--text);
  font: 13px var(--mono); }
textarea { width: 100%; min-height: 58px; resize: vertical; }
form .row { display: flex; gap: 8px; align-items: center; margin-bottom: 8px; }
form .row.grow input { flex: 1; }
label.choice { font-size: 13px; margin-right: 12px; cursor: pointer; }
.result { margin-top: 10px; font: 13px var(--mono); white-space: pre-wrap; word-break: break-all; }
.result.ok { color: var(--c-completed); }
.result.err { color: var(--c-failed); }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 12px 0 0; font-size: 13px; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; font-family: var(--mono); word-break: break-all; }
.hint { color: var(--muted); font-size: 12px; }
`;

// Plain browser JavaScript (no template literals, so that it sits in this TypeScript string as it is).
const SCRIPT = `
(function () {
  'use strict';
  var HISTORY_MS = 5 * 60 * 1000;
  var $ = function (id) { return document.getElementById(id); };
  var token = readToken();
  var series = [];
  var lastSnapshot = null;
  var everConnected = false;

  // The token comes as ?token= once; it is kept for this tab and taken out of the address bar.
  function readToken() {
    var params = new URLSearchParams(location.search);
    var value = params.get('token');
    try {
      if (value !== null) sessionStorage.setItem('taskwire-token', value);
      else value = sessionStorage.getItem('taskwire-token');
    } catch (e) { /* storage may be off: the token then lives in the URL */ return value || ''; }
    if (params.has('token')) {
      params.delete('token');
      var rest = params.toString();
      history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
    }
    return value || '';
  }

  function api(method, path, body) {
    var headers = {};
    if (token) headers.authorization = 'Bearer ' + token;
    var init = { method: method, headers: headers };
    if (body !== undefined) { headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) throw new Error(data && data.error ? data.error.message + ' (' + data.error.code + ')' : 'HTTP ' + res.status);
        return data;
      });
    });
  }

  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) for (var key in props) {
      var v = props[key];
      if (v === undefined || v === null) continue;
      if (key === 'class') node.className = v;
      else if (key === 'text') node.textContent = String(v);
      else if (key.indexOf('data-') === 0) node.setAttribute(key, String(v));
      else node[key] = v;
    }
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return node;
  }
  function cell(text, cls, title) { return el('td', { class: cls, text: text === null || text === undefined ? '' : text, title: title }); }
  function fillRows(id, rows, cols, empty) {
    var body = $(id);
    if (rows.length === 0) rows = [el('tr', null, [el('td', { class: 'empty', colSpan: cols, text: empty })])];
    body.replaceChildren.apply(body, rows);
  }

  function int(n) { return Math.round(n).toLocaleString('en-US'); }
  function rate(n) { return n < 10 ? n.toFixed(1) : int(n); }
  function age(ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + ' ms';
    var s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + Math.floor(s % 60) + 's';
    var h = Math.floor(m / 60);
    if (h < 48) return h + 'h ' + (m % 60) + 'm';
    return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
  }
  function priorityName(p) { return p === 10 ? 'high' : p === 0 ? 'normal' : p === -10 ? 'low' : String(p); }
  function notice(text, isError) {
    var n = $('notice');
    n.textContent = text;
    n.className = isError ? 'err' : '';
    clearTimeout(notice.timer);
    notice.timer = setTimeout(function () { n.textContent = ''; }, 6000);
  }

  // ---- live snapshots --------------------------------------------------------------------------------------------

  function connect() {
    var es = new EventSource('/events' + (token ? '?token=' + encodeURIComponent(token) : ''));
    es.onopen = function () { everConnected = true; setConn('live', 'live'); };
    es.onmessage = function (event) { render(JSON.parse(event.data)); };
    es.onerror = function () {
      setConn('down', 'reconnecting…');
      if (!everConnected) api('GET', '/healthz').catch(function (err) { setConn('down', err.message); });
    };
  }
  function setConn(cls, text) { var c = $('conn'); c.className = 'conn ' + cls; c.textContent = text; }

  function render(s) {
    lastSnapshot = s;
    $('sched-name').textContent = s.name;
    $('uptime').textContent = 'up ' + age(s.uptime_s * 1000);
    var st = s.stats;
    [['queued', st.queued], ['running', st.running], ['delayed', st.delayed], ['completed', st.completed],
     ['failed', st.failed], ['cancelled', st.cancelled], ['requeued', st.requeued], ['workers', st.workers],
     ['clients', st.clients]].forEach(function (pair) { $('stat-' + pair[0]).textContent = int(pair[1]); });
    $('stat-rate').textContent = rate(s.rate.completed);
    $('legend-submitted').textContent = rate(s.rate.submitted) + '/s';
    $('legend-completed').textContent = rate(s.rate.completed) + '/s';
    $('legend-failed').textContent = rate(s.rate.failed) + '/s';
    if (s.history) series = s.history.slice();
    else if (s.point) series.push(s.point);
    while (series.length > 0 && series[0][0] < s.t - HISTORY_MS) series.shift();
    drawChart(s.t);
    renderWorkers(s);
    renderQueues(s);
    renderJobs(s);
    renderDead(s);
    renderTypes(s);
  }

  function renderWorkers(s) {
    $('workers-count').textContent = s.workers_total > s.workers.length ? s.workers.length + ' of ' + s.workers_total : String(s.workers_total);
    fillRows('workers-body', s.workers.map(function (w) {
      var share = w.concurrency > 0 ? Math.min(1, w.in_flight / w.concurrency) : 0;
      var bar = el('span', { class: 'bar' }, [el('span')]);
      bar.firstChild.style.width = (share * 100).toFixed(1) + '%';
      var load = el('td', { class: 'num' }, [int(w.in_flight) + ' / ' + int(w.concurrency), bar]);
      return el('tr', { 'data-name': w.name }, [
        cell(w.name, null, w.name), cell(w.address, 'mono', w.address), cell(w.transport),
        cell(w.types.join(', '), 'mono types', w.types.join(', ')), load,
        w.status === 'down' ? cell('down: ' + w.down_reason, null, w.down_reason) : cell(age(w.last_seen_ms_ago) + ' ago', 'num'),
      ]);
    }), 6, 'No workers connected');
  }

  function renderQueues(s) {
    $('queues-count').textContent = s.queues_total > s.queues.length ? s.queues.length + ' of ' + s.queues_total : String(s.queues_total);
    fillRows('queues-body', s.queues.map(function (q) {
      return el('tr', null, [cell(q.type, 'mono', q.type), cell(priorityName(q.priority)), cell(int(q.count), 'num'), cell(age(q.oldest_ms), 'num')]);
    }), 4, 'Nothing waiting');
  }

  function jobLink(id) { return el('a', { class: 'id', text: String(id), href: '#', 'data-action': 'lookup', 'data-id': id }); }

  function renderJobs(s) {
    fillRows('jobs-body', s.jobs.map(function (j) {
      var open = j.state === 'queued' || j.state === 'running' || j.state === 'delayed';
      var action = open ? el('button', { text: 'Cancel', 'data-action': 'cancel', 'data-id': j.id }) : null;
      return el('tr', { 'data-id': j.id, 'data-state': j.state }, [
        el('td', null, [jobLink(j.id)]), cell(j.type, 'mono', j.type), el('td', null, [el('span', { class: 'badge ' + j.state, text: j.state })]),
        cell(j.attempts, 'num'), cell(j.worker || '–', null, j.worker), cell(age(j.age_ms), 'num'), el('td', null, [action]),
      ]);
    }), 7, 'None of the latest jobs is waiting, running or on record (attached jobs leave no record once done)');
  }

  function renderDead(s) {
    $('dead-count').textContent = String(s.dead_total);
    fillRows('dead-body', s.dead.map(function (d) {
      var button;
      if (d.retried_as) button = el('span', { class: 'hint' }, ['retried as ', jobLink(d.retried_as)]);
      else button = el('button', { text: 'Retry', 'data-action': 'retry', 'data-id': d.job_id, disabled: !d.retryable, title: d.retryable ? 'Submit it again' : d.not_retryable });
      var reason = el('td', { class: 'msg', title: d.code + ': ' + d.message }, [el('span', { class: 'code', text: d.code }), ' ' + d.message]);
      return el('tr', { 'data-id': d.job_id }, [
        el('td', null, [jobLink(d.job_id)]), cell(d.type, 'mono', d.type), reason,
        cell(d.attempts, 'num'), cell(age(d.failed_ago_ms) + ' ago', 'num'), el('td', null, [button]),
      ]);
    }), 6, 'No failures');
  }

  function renderTypes(s) {
    var list = $('types');
    var known = {};
    s.workers.forEach(function (w) { w.types.forEach(function (t) { known[t] = true; }); });
    var names = Object.keys(known).sort();
    if (list.dataset.names === names.join('\\n')) return;
    list.dataset.names = names.join('\\n');
    list.replaceChildren.apply(list, names.map(function (t) { return el('option', { value: t }); }));
  }

  // ---- the chart: submitted, completed and failed per second over the last minutes ----------------------------------

  function niceCeil(v) {
    if (v <= 0) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var f = v / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }
  function drawChart(now) {
    var canvas = $('chart');
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var css = getComputedStyle(document.documentElement);
    var color = function (name) { return css.getPropertyValue(name).trim(); };
    var left = 56, right = 10, top = 8, bottom = 22;
    var pw = w - left - right, ph = h - top - bottom;
    var max = 0;
    series.forEach(function (p) { max = Math.max(max, p[1], p[2], p[3]); });
    var step = niceCeil(max / 4);
    max = step * 4;
    ctx.font = '11px ' + color('--mono');
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = top + ph - (ph * i) / 4;
      ctx.strokeStyle = color('--line');
      ctx.beginPath(); ctx.moveTo(left, Math.round(y) + 0.5); ctx.lineTo(left + pw, Math.round(y) + 0.5); ctx.stroke();
      ctx.fillStyle = color('--muted');
      ctx.textAlign = 'right';
      var v = step * i;
      ctx.fillText(v >= 1000 ? String(Math.round(v / 100) / 10) + 'k' : String(Math.round(v * 10) / 10), left - 8, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (var m = 0; m <= 5; m++) {
      var x = left + pw - (pw * m) / 5;
      ctx.fillText(m === 0 ? 'now' : '-' + m + 'm', x, top + ph + 6);
    }
    var from = now - HISTORY_MS;
    // Submitted goes first, wide and faint, so that completed drawn over it still shows it where they differ.
    [[1, '--c-submitted', 4, 0.45], [2, '--c-completed', 1.75, 1], [3, '--c-failed', 1.75, 1]].forEach(function (line) {
      ctx.strokeStyle = color(line[1]);
      ctx.lineWidth = line[2];
      ctx.globalAlpha = line[3];
      ctx.lineJoin = 'round';
      ctx.beginPath();
      var started = false;
      series.forEach(function (p) {
        var x = left + ((p[0] - from) / HISTORY_MS) * pw;
        var y = top + ph - (p[line[0]] / max) * ph;
        if (!started) { ctx.moveTo(x, y); started = true; } else ctx.lineTo(x, y);
      });
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
  }

  // ---- actions ---------------------------------------------------------------------------------------------------

  document.addEventListener('click', function (event) {
    var target = event.target.closest('[data-action]');
    if (!target) return;
    event.preventDefault();
    var id = target.getAttribute('data-id');
    var action = target.getAttribute('data-action');
    if (action === 'lookup') { $('lookup-id').value = id; lookup(id); return; }
    target.disabled = true;
    if (action === 'cancel') {
      api('DELETE', '/job/' + id).then(function (r) {
        notice('Job ' + id + ': ' + (r.outcome === 'cancelled' ? 'cancelled' : 'already finished'));
        if ($('lookup-id').value === id) lookup(id);
      }, function (err) { target.disabled = false; notice('Cancel ' + id + ': ' + err.message, true); });
    } else if (action === 'retry') {
      api('POST', '/dead-letters/' + id + '/retry', {}).then(function (r) {
        notice('Job ' + id + ' submitted again as job ' + r.job_id);
      }, function (err) { target.disabled = false; notice('Retry ' + id + ': ' + err.message, true); });
    }
  });

  function outcomeText(job) {
    if (job.state === 'completed') {
      var answer = job.answer !== undefined ? job.answer : job.answer_base64 !== undefined ? '(base64) ' + job.answer_base64 : '(' + job.result_bytes + ' bytes, not shown)';
      return typeof answer === 'string' ? answer : JSON.stringify(answer);
    }
    return job.error ? job.error.message + ' (' + job.error.code + ')' : job.state;
  }

  function setResult(node, cls, text) { node.className = 'result ' + cls; node.textContent = text; }

  $('submit-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var arith = $('mode-arith').checked;
    var body = arith ? { task: $('submit-expr').value } : { type: $('submit-type').value.trim(), payload: $('submit-payload').value };
    var out = $('submit-result');
    var button = $('submit-button');
    button.disabled = true;
    setResult(out, '', 'Submitting…');
    api('POST', '/submit', body).then(function (accepted) {
      var id = accepted.job_id;
      out.setAttribute('data-job', id);
      setResult(out, '', 'Job ' + id + ' submitted; waiting for its result…');
      var poll = function (left) {
        return api('GET', '/job/' + id + '?wait=20').then(function (job) {
          if (job.finished || left <= 0) return job;
          setResult(out, '', 'Job ' + id + ' is ' + job.state + '…');
          return poll(left - 1);
        });
      };
      return poll(30).then(function (job) {
        if (!job.finished) return setResult(out, '', 'Job ' + id + ' is still ' + job.state);
        setResult(out, job.state === 'completed' ? 'ok' : 'err', 'Job ' + id + ' ' + job.state + ': ' + outcomeText(job));
      });
    }).catch(function (err) { setResult(out, 'err', err.message); }).then(function () { button.disabled = false; });
  });
  function syncMode() {
    var arith = $('mode-arith').checked;
    $('row-expr').hidden = !arith;
    $('row-type').hidden = arith;
    $('row-payload').hidden = arith;
  }
  $('mode-arith').addEventListener('change', syncMode);
  $('mode-type').addEventListener('change', syncMode);
  syncMode();

  function lookup(id) {
    var out = $('lookup-result');
    out.replaceChildren(el('div', { class: 'hint', text: 'Looking up ' + id + '…' }));
    api('GET', '/job/' + encodeURIComponent(String(id).trim())).then(function (job) {
      var rows = [
        ['job', job.job_id], ['state', job.state], ['type', job.type], ['attempts', job.attempts],
        ['priority', priorityName(job.priority)], ['worker', job.worker || '–'],
        ['submitted', job.submitted_at ? new Date(job.submitted_at).toLocaleTimeString() : '–'],
        ['started', job.started_at ? new Date(job.started_at).toLocaleTimeString() : '–'],
        ['finished', job.finished_at ? new Date(job.finished_at).toLocaleTimeString() : '–'],
      ];
      if (job.progress) rows.push(['progress', job.progress.message || String(job.progress.value)]);
      if (job.finished) rows.push([job.state === 'completed' ? 'answer' : 'error', outcomeText(job)]);
      var list = el('dl', { class: 'kv', id: 'lookup-fields' });
      rows.forEach(function (r) { list.appendChild(el('dt', { text: r[0] })); list.appendChild(el('dd', { text: String(r[1]), 'data-field': r[0] })); });
      var children = [list];
      if (!job.finished) children.push(el('div', { class: 'row' }, [el('button', { text: 'Cancel job ' + job.job_id, 'data-action': 'cancel', 'data-id': job.job_id })]));
      out.replaceChildren.apply(out, children);
    }, function (err) { out.replaceChildren(el('div', { class: 'result err', text: err.message })); });
  }
  $('lookup-form').addEventListener('submit', function (event) { event.preventDefault(); lookup($('lookup-id').value); });

  window.addEventListener('resize', function () { if (lastSnapshot) drawChart(lastSnapshot.t); });
  connect();
})();
`;

const BODY = `
<header>
  <div class="brand">taskwire<span id="sched-name"></span></div>
  <div class="meta"><span id="uptime"></span> · <span id="conn" class="conn">connecting…</span></div>
</header>
<main>
  <div id="notice" role="status"></div>
  <section class="cards">
    <div class="card"><div class="label">Queued</div><div class="value" id="stat-queued">–</div></div>
    <div class="card"><div class="label">Running</div><div class="value" id="stat-running">–</div></div>
    <div class="card"><div class="label">Delayed</div><div class="value" id="stat-delayed">–</div></div>
    <div class="card completed"><div class="label">Completed</div><div class="value" id="stat-completed">–</div></div>
    <div class="card failed"><div class="label">Failed</div><div class="value" id="stat-failed">–</div></div>
    <div class="card"><div class="label">Cancelled</div><div class="value" id="stat-cancelled">–</div></div>
    <div class="card"><div class="label">Requeued</div><div class="value" id="stat-requeued">–</div></div>
    <div class="card rate"><div class="label" title="completed per second">Tasks / s</div><div class="value" id="stat-rate">–</div></div>
    <div class="card"><div class="label">Workers</div><div class="value" id="stat-workers">–</div></div>
    <div class="card"><div class="label">Clients</div><div class="value" id="stat-clients">–</div></div>
  </section>
  <section class="panel">
    <div class="head">
      <h2>Tasks per second, last 5 minutes</h2>
      <div class="legend">
        <span><i class="sw-submitted"></i>submitted <b id="legend-submitted"></b></span>
        <span><i class="sw-completed"></i>completed <b id="legend-completed"></b></span>
        <span><i class="sw-failed"></i>failed <b id="legend-failed"></b></span>
      </div>
    </div>
    <canvas id="chart"></canvas>
  </section>
  <div class="grid">
    <section class="panel">
      <h2>Workers<span class="count" id="workers-count"></span></h2>
      <div class="scroll"><table id="workers">
        <thead><tr><th>Name</th><th>Address</th><th>Transport</th><th>Types</th><th class="num" title="tasks it holds now, of the credits it grants (its concurrency and prefetch)">In flight</th><th class="num">Last heard</th></tr></thead>
        <tbody id="workers-body"></tbody>
      </table></div>
    </section>
    <section class="panel">
      <h2>Queues<span class="count" id="queues-count"></span></h2>
      <div class="scroll"><table id="queues">
        <thead><tr><th>Type</th><th>Priority</th><th class="num">Waiting</th><th class="num">Oldest</th></tr></thead>
        <tbody id="queues-body"></tbody>
      </table></div>
    </section>
    <section class="panel">
      <h2>Recent jobs</h2>
      <div class="scroll"><table id="jobs">
        <thead><tr><th>Job</th><th>Type</th><th>State</th><th class="num">Attempts</th><th>Worker</th><th class="num">Age</th><th></th></tr></thead>
        <tbody id="jobs-body"></tbody>
      </table></div>
    </section>
    <section class="panel">
      <h2>Failures<span class="count" id="dead-count"></span></h2>
      <div class="scroll"><table id="dead">
        <thead><tr><th>Job</th><th>Type</th><th>Reason</th><th class="num">Tries</th><th class="num">When</th><th></th></tr></thead>
        <tbody id="dead-body"></tbody>
      </table></div>
    </section>
    <section class="panel">
      <h2>Submit a job</h2>
      <form id="submit-form" autocomplete="off">
        <div class="row">
          <label class="choice"><input type="radio" name="mode" id="mode-arith" value="arith" checked> Arithmetic expression</label>
          <label class="choice"><input type="radio" name="mode" id="mode-type" value="type"> Type and payload</label>
        </div>
        <div class="row grow" id="row-expr"><input id="submit-expr" placeholder="1+(2*3)/4-5" aria-label="expression"></div>
        <div class="row grow" id="row-type"><input id="submit-type" list="types" placeholder="job type, e.g. sha256" aria-label="job type"></div>
        <div class="row" id="row-payload"><textarea id="submit-payload" placeholder="payload (text)" aria-label="payload"></textarea></div>
        <datalist id="types"></datalist>
        <div class="row"><button class="primary" id="submit-button" type="submit">Submit</button></div>
      </form>
      <div id="submit-result" class="result"></div>
    </section>
    <section class="panel">
      <h2>Find a job</h2>
      <form id="lookup-form" autocomplete="off">
        <div class="row grow"><input id="lookup-id" placeholder="job id" inputmode="numeric" aria-label="job id"><button type="submit" id="lookup-button">Look up</button></div>
      </form>
      <div id="lookup-result"><div class="hint">Click a job id in the tables, or type one.</div></div>
    </section>
  </div>
</main>
`;

function sha256Base64(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64');
}

/** The page, whole. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskwire dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`;

/** The page's Content-Security-Policy: its own script and style, by hash; requests to this origin only. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256Base64(SCRIPT)}'`,
  `style-src 'sha256-${sha256Base64(STYLE)}'`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
