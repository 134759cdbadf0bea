// dfserve reviewer page. Plain JavaScript, no dependencies, served by the binary itself: every
// request goes to the server that served this page (the Content-Security-Policy forbids any
// other). The API key lives in sessionStorage (this tab only, gone when it closes) and travels
// in the x-api-key header, never in a URL. Everything a file or manifest says is put on the page
// as text (textContent), never as HTML.
'use strict';

const KEY = 'dfserve.apiKey';
const state = { who: null, items: [], selected: -1, model: '' };

// ---- small helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    // Through the CSSOM: the Content-Security-Policy refuses style attributes in markup.
    else if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

const svgNS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const fmt = (s) => (s === null || s === undefined ? '—' : s.toFixed(2));
// Green (0, authentic) through amber to red (1, manipulated).
const colour = (s) => `hsl(${Math.round(120 * (1 - Math.min(1, Math.max(0, s ?? 0))))} 75% 40%)`;
const BANDS = {
  likely_manipulated: 'Likely manipulated',
  uncertain: 'Uncertain',
  likely_authentic: 'Likely authentic',
  not_applicable: 'No face to judge',
};
const bandChip = (v) => el('span', { class: `band ${v}`, 'data-verdict': v, text: BANDS[v] || v });
const meter = (s) => el('span', { class: 'meter' }, el('i', { style: `width:${(s ?? 0) * 100}%;background:${colour(s)}` }));

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / (1 << 20)).toFixed(1)} MB`;
}

// ---- the server ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  const key = sessionStorage.getItem(KEY);
  if (key) headers['x-api-key'] = key;
  let resp;
  try {
    resp = await fetch(path, Object.assign({}, opts, { headers }));
  } catch (e) {
    throw new ApiError(0, 'network', String(e));
  }
  if (opts.raw && resp.ok) return resp;
  const text = await resp.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, body?.code || `http_${resp.status}`, body?.error || text);
  return body;
}

// What each error means to a reviewer, and whether trying again may help.
const WORDS = {
  payload_too_large: ['This file is too large for this server. Try a smaller or shorter copy.', false],
  too_many_items: ['Too many files in one go. Add fewer at a time.', false],
  undecodable_image: ['This file could not be opened as a picture or video. It may be damaged, cut short, or not a picture at all.', false],
  image_too_large: ['This picture has more pixels than this server checks. Try a smaller copy.', false],
  undecodable_video: ['This video could not be opened. It may be damaged or in a format this server does not read.', false],
  video_too_long: ['This video is longer than this server checks. Trim it and try again.', false],
  video_too_large: ['This video’s frames are larger than this server checks. Try a smaller copy.', false],
  unsupported_media_type: ['This kind of file cannot be checked. Use a picture (JPEG, PNG, WebP, BMP, GIF) or a video.', false],
  busy: ['The server is busy right now. Wait a few seconds and try again.', true],
  queue_full: ['The server is busy right now. Wait a few seconds and try again.', true],
  unavailable: ['The server is starting up or shutting down. Try again in a minute.', true],
  deadline_exceeded: ['The server took too long with this file. Try again, or use a shorter video.', true],
  body_timeout: ['The upload took too long. Check your connection and try again.', true],
  unauthenticated: ['The server did not accept your API key. Enter it again at the top of the page.', true],
  forbidden: ['Your key is not allowed to do this. Ask an administrator.', false],
  inference_failed: ['The server failed while checking this file. Try again; if it keeps failing, tell the people who run the server.', true],
  network: ['The server could not be reached. Check your connection and try again.', true],
};

function words(err) {
  const [text, retry] = WORDS[err.code] || [`Something went wrong (${err.status || 'no answer'}). Try again.`, true];
  return { text, retry };
}

function errorBox(err, retry) {
  const w = words(err);
  return el('div', { class: 'error', role: 'alert', 'data-code': err.code },
    el('p', { class: 'words', text: w.text }),
    w.retry && retry ? el('button', { type: 'button', onclick: retry, text: 'Try again' }) : null,
    el('details', {}, el('summary', { text: 'Details for the server’s operators' }),
      el('code', { text: `${err.status} ${err.code}: ${err.message}` })));
}

function notice(text) {
  const n = document.getElementById('notice');
  n.textContent = text || '';
  n.hidden = !text;
}

// ---- key, identity, models -----------------------------------------------------------------

async function whoami() {
  const who = document.getElementById('who');
  try {
    state.who = await api('/v1/whoami');
    notice('');
    const w = state.who;
    who.textContent = w.key_id ? `Reviewer key ${w.key_id}${w.admin ? ' · admin' : ''}` : 'No key needed on this server';
    who.dataset.keyId = w.key_id || 'anonymous';
    await loadModels();
    await refreshTally();
  } catch (e) {
    state.who = null;
    who.textContent = '';
    const noKey = e.code === 'unauthenticated' && !sessionStorage.getItem(KEY);
    notice(noKey ? 'This server needs an API key. Paste yours at the top of the page.' : words(e).text);
  }
  for (const item of state.items) renderDecide(item);
}

async function loadModels() {
  const sel = document.getElementById('model');
  const { classifiers } = await api('/v1/models');
  sel.replaceChildren(...classifiers.map((c) => el('option', {
    value: c.name, selected: c.default, text: `${c.name}${c.kind === 'ensemble' ? ' (ensemble)' : ''}`,
  })));
  state.model = sel.value;
}

// ---- items ---------------------------------------------------------------------------------

function addFiles(files) {
  for (const file of files) {
    const item = { file, id: state.items.length, result: null, error: null, url: URL.createObjectURL(file) };
    item.node = el('article', { class: 'item', tabindex: '0', 'data-index': item.id,
      onclick: () => select(item.id), onfocus: () => select(item.id) });
    state.items.push(item);
    document.getElementById('items').append(item.node);
    renderPending(item);
  }
  if (state.selected < 0 && state.items.length) select(0);
  pump();
}

// At most two uploads at a time: the server batches them, and the page stays responsive.
let running = 0;
function pump() {
  for (const item of state.items) {
    if (running >= 2) return;
    if (item.queued === undefined) {
      item.queued = true;
      running += 1;
      score(item).finally(() => { running -= 1; pump(); });
    }
  }
}

async function score(item) {
  item.error = null;
  renderPending(item);
  const q = new URLSearchParams({ audit: 'true' });
  if (state.model) q.set('model', state.model);
  try {
    const body = await api(`/v1/detect?${q}`, {
      method: 'POST', body: item.file, headers: { 'content-type': 'application/octet-stream' },
    });
    item.model = body.model;
    item.result = body.results[0];
    item.sha256 = item.result.audit?.upload_sha256;
    item.byReviewer = {};
    try {
      for (const d of (await api(`/v1/decisions/${item.sha256}`)).decisions) item.byReviewer[d.reviewer] = d;
    } catch (_) { /* shown as undecided */ }
  } catch (e) {
    item.error = e;
  }
  render(item);
}

function retry(item) {
  return (ev) => { ev.stopPropagation(); score(item); };
}

function header(item, status) {
  const r = item.result;
  const meta = [bytes(item.file.size), r ? `${r.kind} ${r.width}×${r.height}` : null,
    r?.duration_s ? `${r.duration_s.toFixed(1)} s` : null].filter(Boolean).join(' · ');
  return el('header', {}, el('h2', { text: item.file.name }), el('span', { class: 'meta', text: meta }), status);
}

function renderPending(item) {
  item.node.replaceChildren(header(item, el('span', { class: 'spinner', text: 'checking…' })));
  item.node.dataset.state = 'pending';
}

function render(item) {
  item.node.dataset.state = item.error ? 'error' : 'done';
  if (item.error) {
    item.node.replaceChildren(header(item), errorBox(item.error, retry(item)));
    return;
  }
  const r = item.result;
  item.node.dataset.sha256 = item.sha256 || '';
  item.node.dataset.score = r.score ?? '';
  item.node.dataset.verdict = r.verdict;
  const view = r.kind === 'video' ? videoView(item) : imageView(item);
  item.decideNode = el('div', { class: 'decide' });
  item.node.replaceChildren(header(item), el('div', { class: 'body' }, view, facts(item)), item.decideNode);
  renderDecide(item);
}

function imageView(item) {
  const r = item.result;
  const stage = el('div', { class: 'stage' }, el('img', { src: item.url, alt: item.file.name }));
  (r.faces || []).forEach((f, i) => stage.append(boxFor(f, i, r.width, r.height)));
  return el('div', {}, stage, document.getElementById('legend').content.cloneNode(true));
}

function boxFor(face, i, width, height) {
  const [x1, y1, x2, y2] = face.box;
  const c = colour(face.score);
  return el('div', {
    class: 'box', 'data-face': i, 'data-score': face.score, 'data-verdict': face.verdict,
    style: `left:${(100 * x1) / width}%;top:${(100 * y1) / height}%;width:${(100 * (x2 - x1)) / width}%;height:${(100 * (y2 - y1)) / height}%;border-color:${c}`,
  }, el('span', { style: `background:${c}`, text: `Face ${i + 1} · ${fmt(face.score)}` }));
}

function facts(item) {
  const r = item.result;
  const out = el('div', { class: 'facts' });
  const label = r.label ? (r.label === 'manipulated' ? 'scored as manipulated' : 'scored as authentic') : 'nothing scored';
  out.append(el('div', {}, el('span', { class: 'score', 'data-role': 'score', text: fmt(r.score) }), ' ', bandChip(r.verdict)),
    el('p', { class: 'meta', 'data-role': 'label', 'data-label': r.label || 'none',
      text: `${label} at threshold ${fmt(r.threshold)} · model ${item.model.name}` }));
  if (r.status === 'no_face') {
    out.append(el('p', { text: r.kind === 'video'
      ? 'No face was found in the sampled frames, so nothing was scored. Review the video yourself.'
      : 'No face was found, so nothing was scored. Review the picture yourself.' }));
  }
  if (r.kind === 'image' && r.faces?.length) {
    out.append(el('h3', { text: 'Faces' }), el('table', {}, r.faces.map((f, i) => el('tr', { 'data-face': i },
      el('th', { text: `Face ${i + 1}` }),
      el('td', {}, fmt(f.score), meter(f.score)),
      el('td', {}, bandChip(f.verdict)),
      el('td', { class: 'members' }, (f.members || []).map((m) =>
        el('div', { 'data-member': m.model, text: `${m.model}: ${fmt(m.score)}` })))))));
  }
  if (r.kind === 'video' && r.tracks?.length) {
    out.append(el('h3', { text: 'Face tracks' }), el('table', {}, r.tracks.map((t) => el('tr', { 'data-track': t.id },
      el('th', { text: `Track ${t.id + 1}` }), el('td', {}, fmt(t.score), meter(t.score)),
      el('td', { text: `${t.frames.length} frames` })))));
  }
  out.append(el('h3', { text: 'Known content' }));
  if (r.matches?.length) {
    for (const m of r.matches) {
      const how = m.kind === 'vpdq' ? `${m.query_match_pct?.toFixed(0)}% of frames match`
        : m.kind === 'pdq' ? `looks the same (distance ${m.distance})` : 'the very same file';
      out.append(el('div', { class: 'match', 'data-list': m.list, 'data-id': m.id },
        el('strong', { text: `On list “${m.list}”` }), ` — ${m.label ? `${m.label}, ` : ''}entry ${m.id}: ${how}`));
    }
  } else {
    out.append(el('p', { class: 'meta', 'data-role': 'no-matches', text: 'Not on any hash list.' }));
  }
  out.append(el('h3', { text: 'Content Credentials (C2PA)' }), provenance(r.provenance?.c2pa));
  return out;
}

function provenance(c) {
  if (!c || !c.present) {
    return el('div', { class: 'prov', 'data-c2pa': 'absent', text: 'None. Most files have none; this says nothing either way.' });
  }
  const what = { trusted: 'Signed by a trusted signer', valid: 'Signed, but the signer is not on this server’s trust list',
    invalid: 'Present but broken or tampered with: do not rely on it' }[c.state] || c.state;
  return el('div', { class: `prov ${c.state}`, 'data-c2pa': c.state },
    el('strong', { text: what }),
    c.signer ? el('div', { text: `Signer: ${[c.signer.common_name, c.signer.issuer].filter(Boolean).join(', ')}${c.signed_at ? ` on ${c.signed_at}` : ''}` }) : null,
    c.claim_generator ? el('div', { text: `Made with: ${c.claim_generator}` }) : null,
    c.generative_ai ? el('div', { 'data-role': 'generative-ai', text: 'Declares itself made or changed by generative AI.' }) : null,
    (c.errors || []).length ? el('div', { class: 'meta', text: `Problems: ${c.errors.join('; ')}` }) : null);
}

// ---- video timeline ------------------------------------------------------------------------

function videoView(item) {
  const r = item.result;
  const video = el('video', { src: item.url, muted: true, preload: 'auto', playsinline: true, hidden: true });
  const canvas = el('canvas', { width: r.width, height: r.height });
  const info = el('div', { class: 'frameinfo', 'data-role': 'frameinfo', text: 'Point at a dot on a track to see that frame.' });
  const wrap = el('div', {}, el('div', { class: 'stage' }, canvas), video, info);
  const W = 1000, H = 80, dur = Math.max(r.duration_s || 0, 1e-3);
  for (const t of r.tracks || []) {
    const plot = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'data-track': t.id });
    const y = (s) => 4 + (1 - s) * (H - 8);
    plot.append(svg('line', { x1: 0, x2: W, y1: y(r.threshold), y2: y(r.threshold), stroke: '#999', 'stroke-dasharray': '6 4' }));
    plot.append(svg('polyline', { fill: 'none', stroke: '#8894aa', 'stroke-width': 2,
      points: t.frames.map((f) => `${(f.time_s / dur) * W},${y(f.score)}`).join(' ') }));
    for (const f of t.frames) {
      const dot = svg('circle', { cx: (f.time_s / dur) * W, cy: y(f.score), r: 7, fill: colour(f.score),
        'data-frame': f.frame, 'data-time': f.time_s, 'data-score': f.score });
      const show = () => showFrame(item, video, canvas, info, t, f, dot);
      dot.addEventListener('mouseenter', show);
      dot.addEventListener('click', (ev) => { ev.stopPropagation(); show(); });
      plot.append(dot);
    }
    wrap.append(el('div', { class: 'timeline' }, el('div', { class: 'meta', text: `Track ${t.id + 1}: score per sampled frame (dashed: threshold)` }), plot));
  }
  video.addEventListener('loadeddata', () => {
    const first = r.tracks?.[0]?.frames?.[0];
    if (first) showFrame(item, video, canvas, info, r.tracks[0], first);
  }, { once: true });
  video.addEventListener('error', () => {
    info.textContent = 'This browser cannot play this video format, so frames cannot be shown here; the scores above still stand.';
  });
  return wrap;
}

function showFrame(item, video, canvas, info, track, f, dot) {
  for (const d of item.node.querySelectorAll('circle.active')) d.classList.remove('active');
  if (dot) dot.classList.add('active');
  const draw = () => {
    const ctx = canvas.getContext('2d');
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const [x1, y1, x2, y2] = f.box;
    ctx.lineWidth = Math.max(3, canvas.width / 200);
    ctx.strokeStyle = colour(f.score);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    canvas.dataset.frame = f.frame;
    info.dataset.frame = f.frame;
    info.textContent = `Track ${track.id + 1}, frame ${f.frame} at ${f.time_s.toFixed(2)} s: score ${fmt(f.score)}`;
  };
  // A frame's time sits at its start; nudge inside it so the decoder lands on that frame.
  const target = f.time_s + 0.001;
  if (Math.abs(video.currentTime - target) < 1e-4 && video.readyState >= 2) return draw();
  video.addEventListener('seeked', draw, { once: true });
  video.currentTime = target;
}

// ---- decisions -----------------------------------------------------------------------------

const CALLS = [['manipulated', 'M', 'Manipulated'], ['authentic', 'A', 'Authentic'], ['unsure', 'U', 'Unsure']];

function renderDecide(item) {
  if (!item.decideNode) return;
  const admin = state.who?.admin && state.who?.hash_lists;
  item.addBox = admin ? el('input', { type: 'checkbox', 'data-role': 'add-to-list' }) : null;
  item.listName = admin ? el('input', { type: 'text', value: 'reviewed', 'data-role': 'list-name', size: 12, 'aria-label': 'hash list name' }) : null;
  item.note = item.note || el('input', { type: 'text', placeholder: 'note (optional)', 'data-role': 'note' });
  const mine = item.byReviewer?.[me()];
  const chosen = mine?.decision;
  if (chosen) item.node.dataset.decision = chosen;
  else delete item.node.dataset.decision;
  item.decideNode.replaceChildren(
    ...CALLS.map(([call, key, text]) => el('button', {
      type: 'button', class: `${call}${chosen === call ? ' chosen' : ''}`, 'data-call': call,
      onclick: (ev) => { ev.stopPropagation(); decide(item, call); },
    }, `${text} `, el('kbd', { text: key }))),
    item.note,
    admin ? el('label', {}, item.addBox, ' add to hash list ', item.listName) : null,
    el('div', { class: 'recorded', 'data-role': 'recorded', text: recordedText(item) }));
}

// The reviewer id decisions are recorded under: the key's id, or `anonymous` without keys.
const me = () => state.who?.key_id || 'anonymous';

function recordedText(item) {
  const d = item.byReviewer?.[me()];
  const others = Object.values(item.byReviewer || {}).filter((o) => o.reviewer !== me());
  const parts = [];
  if (d) parts.push(`Recorded: ${d.decision}, by key ${d.reviewer} at ${d.decided_at}${d.added_to_list ? `, added to list “${d.added_to_list}”` : ''}.`);
  if (others.length) parts.push(`Other reviewers: ${others.map((o) => `${o.reviewer} said ${o.decision}`).join(', ')}.`);
  return parts.join(' ') || 'Not decided yet.';
}

function shown(item) {
  const r = item.result;
  const parts = r.kind === 'video'
    ? (r.tracks || []).map((t) => ({ score: t.score }))
    : (r.faces || []).map((f) => ({ score: f.score, verdict: f.verdict,
      members: Object.fromEntries((f.members || []).map((m) => [m.model, m.score])) }));
  return {
    model: `${item.model.name}@${item.model.version}`, score: r.score ?? null, label: r.label ?? null,
    verdict: r.verdict, faces: parts, matches: (r.matches || []).map((m) => `${m.list}/${m.id}`),
    c2pa: r.provenance?.c2pa?.present ? r.provenance.c2pa.state : 'absent',
  };
}

async function decide(item, call) {
  if (!item.result || !item.sha256) return;
  const body = { sha256: item.sha256, decision: call, filename: item.file.name, kind: item.result.kind,
    note: item.note?.value || null, shown: shown(item) };
  const add = item.addBox?.checked;
  let req;
  if (add) {
    body.add_to_list = item.listName.value.trim();
    const form = new FormData();
    form.append('decision', new Blob([JSON.stringify(body)], { type: 'application/json' }));
    form.append('media', item.file, item.file.name);
    req = { method: 'POST', body: form };
  } else {
    req = { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
  }
  const recorded = item.node.querySelector('[data-role=recorded]');
  recorded.textContent = 'saving…';
  try {
    const d = (await api('/v1/decisions', req)).decision;
    item.byReviewer[d.reviewer] = d;
    renderDecide(item);
    await refreshTally();
    const next = state.items.findIndex((it, i) => i > item.id && it.result && !it.byReviewer?.[me()]);
    if (next >= 0) select(next);
  } catch (e) {
    recorded.replaceChildren(errorBox(e, null));
  }
}

async function refreshTally() {
  try {
    const s = await api('/v1/decisions/summary');
    const kinds = Object.entries(s.by_decision).map(([k, n]) => `${n} ${k}`).join(', ');
    document.getElementById('tally').textContent = s.total
      ? `${s.total} decision${s.total === 1 ? '' : 's'} recorded on this server (${kinds}) on ${s.items} item${s.items === 1 ? '' : 's'} by ${s.reviewers} reviewer${s.reviewers === 1 ? '' : 's'}.`
      : 'No decisions recorded yet.';
  } catch (_) { /* shown elsewhere */ }
}

async function exportCsv() {
  try {
    const resp = await api('/v1/decisions?format=csv', { raw: true });
    const url = URL.createObjectURL(await resp.blob());
    const a = el('a', { href: url, download: 'dfserve-decisions.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    notice(words(e).text);
  }
}

// ---- selection and keys --------------------------------------------------------------------

function select(i) {
  if (i < 0 || i >= state.items.length) return;
  state.items[state.selected]?.node.classList.remove('selected');
  state.selected = i;
  const node = state.items[i].node;
  node.classList.add('selected');
  if (document.activeElement !== node && !node.contains(document.activeElement)) node.focus({ preventScroll: true });
  node.scrollIntoView({ block: 'nearest' });
}

document.addEventListener('keydown', (ev) => {
  if (ev.target.matches('input, textarea, select') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key.toLowerCase();
  const item = state.items[state.selected];
  if (k === 'j' || k === 'arrowdown') select(state.selected + 1);
  else if (k === 'k' || k === 'arrowup') select(state.selected - 1);
  else if (item && (k === 'm' || k === 'a' || k === 'u')) decide(item, { m: 'manipulated', a: 'authentic', u: 'unsure' }[k]);
  else return;
  ev.preventDefault();
});

// ---- start ---------------------------------------------------------------------------------

function start() {
  const input = document.getElementById('key-input');
  document.getElementById('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
    input.value = '';
    whoami();
  });
  document.getElementById('key-forget').addEventListener('click', () => { sessionStorage.removeItem(KEY); whoami(); });
  document.getElementById('model').addEventListener('change', (ev) => { state.model = ev.target.value; });
  document.getElementById('export').addEventListener('click', exportCsv);
  const files = document.getElementById('files');
  files.addEventListener('change', () => { addFiles([...files.files]); files.value = ''; });
  const drop = document.getElementById('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    addFiles([...ev.dataTransfer.files]);
  });
  whoami();
}

start();
