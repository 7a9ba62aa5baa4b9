// The run page's buttons and its live status; served as a file because the dashboard's
// Content-Security-Policy allows no inline script.
const runId = document.body.dataset.run;
async function send(path, body) {
  const msg = document.getElementById('msg');
  const res = await fetch('/api/runs/' + encodeURIComponent(runId) + path, {
    method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body || {})
  });
  // A refusal of the guard is plain text, the API's own errors are JSON.
  const text = await res.text();
  let data;
  try { data = JSON.parse(text); } catch (_) { data = {error: text.trim()}; }
  msg.textContent = res.ok ? data.message : ('error: ' + data.error);
  if (res.ok) follow();
}
function follow() {
  const timer = setInterval(async () => {
    const res = await fetch('/api/runs/' + encodeURIComponent(runId));
    if (!res.ok) return;
    const doc = await res.json();
    const el = document.getElementById('status');
    el.textContent = doc.status;
    el.className = 's s-' + doc.status;
    if (doc.status !== 'running' && doc.status !== 'waiting') { clearInterval(timer); location.reload(); }
  }, 300);
}
for (const [id, path] of [['approve', '/approve'], ['reject', '/reject']]) {
  const b = document.getElementById(id);
  if (b) b.addEventListener('click', () => send(path, {note: document.getElementById('note').value}));
}
const c = document.getElementById('cancel');
if (c) c.addEventListener('click', () => { if (confirm('Cancel run ' + runId + '?')) send('/cancel'); });
if (document.body.dataset.status === 'running') follow();
