// The run page's buttons and its live updates; served as a file because the dashboard's
// Content-Security-Policy allows no inline script. The page follows the run's event stream
// (GET /api/runs/{id}/events, Server-Sent Events, from the offset the page was rendered at;
// the browser resumes it with Last-Event-ID after a dropped connection). Where there is no
// stream (a store without an event log, a browser without EventSource) it polls the run's
// status instead and reloads the page when the run ends. Everything written into the page
// goes through textContent: nothing from the store is parsed as HTML.
const runId = document.body.dataset.run;
const base = '/api/runs/' + encodeURIComponent(runId);
const FINAL = ['completed', 'failed', 'cancelled'];

async function send(path, body) {
  const msg = document.getElementById('msg');
  const res = await fetch(base + path, {
    method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body || {})
  });
  // A refusal of the guard is plain text, the API's own errors are JSON.
  const text = await res.text();
  let data;
  try { data = JSON.parse(text); } catch (_) { data = {error: text.trim()}; }
  msg.textContent = res.ok ? data.message : ('error: ' + data.error);
  if (res.ok && !live) poll();
}

function setStatus(status) {
  const el = document.getElementById('status');
  if (!el) return;
  el.textContent = status;
  el.className = 's s-' + status;
  document.body.dataset.status = status;
}

// Without a stream: the run's status every 300 ms, and the finished page reloaded once.
let polling = false;
function poll() {
  if (polling) return;
  polling = true;
  const timer = setInterval(async () => {
    const res = await fetch(base);
    if (!res.ok) return;
    const doc = await res.json();
    setStatus(doc.status);
    if (FINAL.includes(doc.status)) { clearInterval(timer); location.reload(); }
  }, 300);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function preview(text, max) {
  const flat = String(text).replace(/[\u0000-\u001f\u007f]/g, ' ');
  return flat.length <= max ? flat : flat.slice(0, max - 1) + '…';
}

function fmtTime(ms) {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

function parse(data) {
  try { return JSON.parse(data); } catch (_) { return null; }
}

function pretty(value) {
  if (typeof value === 'string') {
    const v = parse(value);
    return v === null ? value : JSON.stringify(v, null, 2);
  }
  return JSON.stringify(value, null, 2);
}

// The run's event list: one line per event, as the server renders them.
function listEvent(e) {
  const list = document.getElementById('events');
  if (!list) return;
  const li = el('li');
  li.dataset.offset = e.lastEventId;
  li.appendChild(el('span', 'ek', e.type));
  li.appendChild(document.createTextNode(' '));
  li.appendChild(el('span', 'et', fmtTime(Date.now())));
  li.appendChild(document.createTextNode(' '));
  li.appendChild(el('code', null, preview(e.data, 160)));
  li.classList.add('fresh');
  list.appendChild(li);
  list.dataset.next = String(Number(e.lastEventId) + 1);
}

// A step event: its row of the steps table, updated or added.
function stepRow(d) {
  const table = document.getElementById('steps');
  if (!table || !d || !d.step_id) return;
  let row = null;
  for (const r of table.querySelectorAll('tr[data-step]')) if (r.dataset.step === d.step_id) row = r;
  if (!row) {
    row = el('tr');
    row.dataset.step = d.step_id;
    for (let i = 0; i < 6; i++) row.appendChild(el('td'));
    row.cells[0].appendChild(el('code', null, d.step_id));
    row.cells[5].className = 'v';
    row.cells[5].appendChild(el('pre', null, d.error ? 'error: ' + preview(d.error, 600) : '(reload for the value)'));
    row.classList.add('fresh');
    (table.tBodies[0] || table).appendChild(row);
  }
  row.cells[1].textContent = d.name || '';
  row.cells[2].textContent = d.status || '';
  row.cells[3].textContent = d.attempts === undefined ? '' : String(d.attempts);
}

// The agent's conversation: live text, tool calls, results and approvals.
function conversation() {
  const lists = document.querySelectorAll('#agent ol.conv');
  let list = lists.length ? lists[lists.length - 1] : null;
  if (!list) {
    const main = document.querySelector('main');
    const section = el('section');
    section.id = 'agent';
    section.appendChild(el('h2', null, 'Agent conversation'));
    const card = el('div', 'card agent');
    list = el('ol', 'conv');
    card.appendChild(list);
    section.appendChild(card);
    main.insertBefore(section, document.getElementById('msg').nextSibling);
  }
  return list;
}

function toolItem(stepId) {
  for (const li of document.querySelectorAll('#agent li.tool')) if (li.dataset.step === stepId) return li;
  return null;
}

function addTool(d) {
  let li = toolItem(d.step_id);
  if (li) return li;
  li = el('li', 'tool fresh');
  li.dataset.step = d.step_id;
  const b = el('b', null, 'tool ');
  b.appendChild(el('code', null, d.tool || ''));
  li.appendChild(b);
  const args = el('div', 'kv');
  args.appendChild(el('span', null, 'arguments'));
  args.appendChild(el('pre', 'args', pretty(d.args === undefined ? null : d.args)));
  li.appendChild(args);
  const result = el('div', 'kv');
  result.appendChild(el('span', null, 'result'));
  result.appendChild(el('pre', 'result', '(running)'));
  li.appendChild(result);
  conversation().appendChild(li);
  return li;
}

let liveText = null;
const handlers = {
  started: () => setStatus('running'),
  resumed: () => setStatus('running'),
  step: (d) => {
    stepRow(d);
    // A model call recorded since the page loaded: its place in the conversation.
    if (!d || typeof d.name !== 'string' || !d.name.endsWith('.model') || !document.getElementById('agent')) return;
    for (const li of document.querySelectorAll('#agent li.assistant')) if (li.dataset.step === d.step_id) return;
    liveText = null;
    const li = el('li', 'msg assistant fresh');
    li.dataset.step = d.step_id;
    li.appendChild(el('b', null, 'model call '));
    li.appendChild(el('code', null, d.step_id));
    li.appendChild(el('span', 'st', ' ' + d.status + ' (reload the page for its text and tokens)'));
    conversation().appendChild(li);
  },
  waiting: (d) => {
    setStatus('waiting');
    const card = document.getElementById('approval');
    if (card && d && d.signal) {
      card.querySelector('code').textContent = d.signal;
      card.hidden = false;
    }
  },
  signal: (d) => {
    setStatus('running');
    // An approval of a tool call: granted or denied, on the call's item.
    if (d && typeof d.signal === 'string' && d.signal.startsWith('approve:')) {
      const li = toolItem(d.signal.slice('approve:'.length));
      const ap = li && li.querySelector('.ap');
      const granted = d.payload && d.payload.approved === true;
      if (ap) {
        ap.className = 'ap ' + (granted ? 'ap-granted' : 'ap-denied');
        ap.textContent = granted ? 'approval granted' : 'approval denied' + (d.payload && d.payload.reason ? ': ' + d.payload.reason : '');
      }
    }
    const card = document.getElementById('approval');
    if (card) card.hidden = true;
  },
  text: (d) => {
    if (!d || typeof d.text !== 'string') return;
    if (!liveText) {
      const li = el('li', 'msg assistant fresh');
      li.appendChild(el('b', null, 'assistant (streaming)'));
      liveText = el('pre', 'text live-text', '');
      li.appendChild(liveText);
      conversation().appendChild(li);
    }
    liveText.textContent += d.text;
  },
  tool_call: (d) => { liveText = null; if (d && d.step_id) addTool(d); },
  approval: (d) => {
    if (!d || !d.step_id) return;
    const li = addTool(d);
    if (!li.querySelector('.ap')) li.querySelector('b').after(el('span', 'ap ap-requested', ' approval requested: waiting'));
  },
  tool_result: (d) => {
    if (!d || !d.step_id) return;
    const li = addTool(d);
    li.querySelector('pre.result').textContent = pretty(d.result === undefined ? null : d.result);
  },
};

function finish(status) {
  setStatus(status);
  for (const id of ['approval', 'cancel']) {
    const e = document.getElementById(id);
    if (e) (id === 'cancel' ? e.parentElement : e).remove();
  }
  const note = document.getElementById('live');
  if (note) note.textContent = 'The run is ' + status + '. Reload the page to redraw its timeline and values.';
}

let live = false;
function follow() {
  const list = document.getElementById('events');
  if (!list || typeof EventSource === 'undefined') {
    if (!FINAL.includes(document.body.dataset.status)) poll();
    return;
  }
  const source = new EventSource(base + '/events?from=' + encodeURIComponent(list.dataset.next || '0'));
  live = true;
  const on = (kind, fn) => source.addEventListener(kind, (e) => {
    listEvent(e);
    fn(parse(e.data), e);
  });
  for (const [kind, fn] of Object.entries(handlers)) on(kind, fn);
  for (const kind of FINAL) on(kind, () => { source.close(); finish(kind); });
  source.addEventListener('error', (e) => {
    // A server-sent `error` event (the store failed) or a refused connection: no stream to
    // follow; the page polls the status instead. A dropped connection reconnects by itself.
    if (e.data !== undefined || source.readyState === EventSource.CLOSED) {
      source.close();
      live = false;
      if (!FINAL.includes(document.body.dataset.status)) poll();
    }
  });
}

for (const [id, path] of [['approve', '/approve'], ['reject', '/reject']]) {
  const b = document.getElementById(id);
  if (b) b.addEventListener('click', () => send(path, {note: document.getElementById('note').value}));
}
const c = document.getElementById('cancel');
if (c) c.addEventListener('click', () => { if (confirm('Cancel run ' + runId + '?')) send('/cancel'); });
if (!FINAL.includes(document.body.dataset.status)) follow();
