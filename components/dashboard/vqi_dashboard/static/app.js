// The line-side page: Preact components written with htm (no build step; both vendored).
// Live results arrive as Server-Sent Events (/api/events) and are rendered once per animation
// frame, so a burst of results costs one render, not one per result. Everything else is read
// from the JSON API; the only request that changes anything is POST /api/feedback, which
// carries the CSRF token from /api/session.
import { Component, h, render } from "./vendor/preact.module.js";
import htm from "./vendor/htm.module.js";

const html = htm.bind(h);
const LIVE_ROWS = 40;
const SUMMARY_EVERY_MS = 5000;
const SUMMARY_AFTER_RESULTS_MS = 2000; // counts follow a busy line every 2 s, not per result
const LABELS = { confirm: "Confirm", false_alarm: "False alarm", missed_defect: "Missed defect" };

// What the benchmark and the tests read: events received and rendered, and when.
const stats = (window.__vqi = { events: 0, rendered: 0, skipped: 0, lastEventAt: 0,
  lastRenderAt: 0, lagMs: [] });

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const error = new Error(body.error || `${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// Newest first, each image once (a result delivered again replaces its row).
function merged(newer, older, limit) {
  const seen = new Set();
  return [...newer, ...older].filter((r) => !seen.has(r.image_id) && seen.add(r.image_id))
    .slice(0, limit);
}

const pct = (x) => `${(100 * (x || 0)).toFixed(1)} %`;
const ms = (x) => (x === null || x === undefined ? "–" : `${Number(x).toFixed(1)} ms`);
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");
const stamp = (iso) => (iso ? new Date(iso).toLocaleString() : "");

function Boxes({ boxes, drawn }) {
  const all = (boxes || []).map((b) => ({ ...b, kind: "model" }))
    .concat((drawn || []).map((box_norm) => ({ box_norm, kind: "operator" })));
  return all.filter((b) => b.box_norm && b.box_norm.length === 4).map((b, i) => {
    const [x1, y1, x2, y2] = b.box_norm;
    const style = { left: `${x1 * 100}%`, top: `${y1 * 100}%`, width: `${(x2 - x1) * 100}%`,
      height: `${(y2 - y1) * 100}%` };
    const title = b.kind === "model" ? `${b.class_name} ${(b.score || 0).toFixed(2)}` : "operator";
    return html`<div key=${i} class=${`box ${b.kind}`} style=${style} title=${title}></div>`;
  });
}

function Verdict({ verdict }) {
  return html`<span class=${`verdict ${(verdict || "").toLowerCase()}`}>${verdict}</span>`;
}

function DefectCard({ row, open }) {
  return html`<figure class="defect" data-image-id=${row.image_id} onClick=${() => open(row.image_id)}>
    <div class="frame"><img src=${`/api/images/${encodeURIComponent(row.image_id)}`} alt=${row.image_id}
      loading="lazy" /><${Boxes} boxes=${row.boxes} /></div>
    <figcaption>${clock(row.time)} · ${row.camera_id || "camera"} · ${row.detections} found</figcaption>
  </figure>`;
}

function Hourly({ series }) {
  const peak = Math.max(1, ...series.map((s) => s.OK + s.DEFECT + s.ERROR));
  return html`<div class="bars" title="results per hour, last 24 h">
    ${series.map((s) => {
      const total = s.OK + s.DEFECT + s.ERROR;
      return html`<div class="bar" key=${s.hour}
        title=${`${new Date(s.hour * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${total} (${s.DEFECT} defect)`}>
        <div class="ok" style=${{ height: `${(100 * s.OK) / peak}%` }}></div>
        <div class="def" style=${{ height: `${(100 * s.DEFECT) / peak}%` }}></div>
        <div class="err" style=${{ height: `${(100 * s.ERROR) / peak}%` }}></div>
      </div>`;
    })}
  </div>`;
}

class Detail extends Component {
  constructor() {
    super();
    this.state = { data: null, error: "", drawn: [], drawing: null, mode: "", sent: "", sending: false };
    this.asked = 0;
  }

  componentDidMount() { this.load(); }

  componentDidUpdate(previous) { if (previous.imageId !== this.props.imageId) this.load(); }

  async load(keep = {}) {
    const ask = ++this.asked; // an older answer arriving late is dropped
    this.setState({ data: null, error: "", drawn: [], drawing: null, mode: "", sent: "", ...keep });
    try {
      const data = await api(`/api/results/${encodeURIComponent(this.props.imageId)}`);
      if (ask === this.asked) this.setState({ data });
    } catch (e) { if (ask === this.asked) this.setState({ error: e.message }); }
  }

  point(event) {
    const r = this.frame.getBoundingClientRect();
    if (!r.width || !r.height) return null; // the image has not loaded
    return [Math.min(1, Math.max(0, (event.clientX - r.left) / r.width)),
      Math.min(1, Math.max(0, (event.clientY - r.top) / r.height))];
  }

  // Pointer events: a mouse, a pen, or a finger on the line's touchscreen.
  down = (e) => {
    const p = this.state.mode === "missed_defect" && this.point(e);
    if (!p) return;
    e.preventDefault();
    e.currentTarget.setPointerCapture(e.pointerId);
    this.setState({ drawing: [p, p] });
  };
  move = (e) => {
    const p = this.state.drawing && this.point(e);
    if (p) this.setState({ drawing: [this.state.drawing[0], p] });
  };
  up = () => {
    const d = this.state.drawing;
    if (!d) return;
    const box = [Math.min(d[0][0], d[1][0]), Math.min(d[0][1], d[1][1]), Math.max(d[0][0], d[1][0]), Math.max(d[0][1], d[1][1])];
    const big = box[2] - box[0] > 0.005 && box[3] - box[1] > 0.005;
    this.setState({ drawing: null, drawn: big ? [...this.state.drawn, box] : this.state.drawn });
  };

  async send(label) {
    if (this.state.sending) return; // one click, one feedback
    this.setState({ sending: true, error: "" });
    const body = { image_id: this.props.imageId, label };
    if (label === "missed_defect") body.boxes = this.state.drawn;
    try {
      const answer = await this.props.post(body);
      this.props.onFeedback(this.props.imageId, label);
      await this.load({ sent: `${LABELS[label]} sent (${answer.feedback_id.slice(0, 8)})` });
    } catch (e) { this.setState({ error: e.message }); }
    this.setState({ sending: false });
  }

  render({ imageId, close }, { data, error, drawn, drawing, mode, sent, sending }) {
    const row = data && data.row;
    const live = drawing ? [[Math.min(drawing[0][0], drawing[1][0]), Math.min(drawing[0][1], drawing[1][1]), Math.max(drawing[0][0], drawing[1][0]), Math.max(drawing[0][1], drawing[1][1])]] : [];
    return html`<div class="modal" onClick=${(e) => e.target.classList.contains("modal") && close()}>
      <section class="detail" id="detail">
        <header><h2>${imageId}</h2><button class="close" onClick=${close}>Close</button></header>
        ${error && html`<p class="error" id="detail-error">${error}</p>`}
        ${row && html`<div class="detail-body">
          <div class="frame big" ref=${(el) => (this.frame = el)} onPointerDown=${this.down}
            onPointerMove=${this.move} onPointerUp=${this.up} onPointerCancel=${this.up}>
            ${data.image ? html`<img src=${`/api/images/${encodeURIComponent(imageId)}`} alt=${imageId} draggable="false" />`
              : html`<p class="gone">The image is no longer on this device.</p>`}
            <${Boxes} boxes=${row.boxes} drawn=${[...drawn, ...live]} />
          </div>
          <div class="facts">
            <p><${Verdict} verdict=${row.verdict} /> ${stamp(row.time)}</p>
            <p>Camera ${row.camera_id || "–"} · ${row.detections} detections · top score ${row.top_score.toFixed(2)} · ${ms(row.latency_ms)}</p>
            ${data.result.model && html`<p>Model ${data.result.model.name} ${data.result.model.version}</p>`}
            ${row.error && html`<p class="error">${row.error}</p>`}
            <h3>Operator feedback</h3>
            <div class="feedback">
              <button id="fb-confirm" disabled=${!data.image || sending} onClick=${() => this.send("confirm")}>Confirm</button>
              <button id="fb-false-alarm" disabled=${!data.image || sending} onClick=${() => this.send("false_alarm")}>False alarm</button>
              ${mode === "missed_defect"
                ? html`<button id="fb-send-missed" disabled=${sending} onClick=${() => this.send("missed_defect")}>Send missed defect (${drawn.length} box${drawn.length === 1 ? "" : "es"})</button>
                       <button onClick=${() => this.setState({ mode: "", drawn: [] })}>Cancel</button>`
                : html`<button id="fb-missed" disabled=${!data.image} onClick=${() => this.setState({ mode: "missed_defect", drawn: [] })}>Missed defect…</button>`}
            </div>
            ${mode === "missed_defect" && html`<p class="hint">Drag on the image to draw where the defect is (optional), then send.</p>`}
            ${sent && html`<p class="sent" id="fb-sent">${sent}</p>`}
            ${data.feedback.length > 0 && html`<ul class="history">${data.feedback.map((f) =>
              html`<li key=${f.feedback_id}>${stamp(f.time)}: ${LABELS[f.label]}${f.boxes.length ? ` (${f.boxes.length} box)` : ""}</li>`)}</ul>`}
          </div>
        </div>`}
      </section>
    </div>`;
  }
}

class Table extends Component {
  constructor() {
    super();
    this.state = { verdict: "", camera: "", since: "", until: "", page: 1, pageSize: 25, data: null, error: "" };
    this.asked = 0;
  }

  componentDidMount() { this.load({ pageSize: Math.min(25, this.props.maxPageSize) }); }

  async load(changes = {}) {
    const ask = ++this.asked;
    const next = { ...this.state, ...changes };
    this.setState({ ...changes, error: "" });
    const q = new URLSearchParams({ page: next.page, page_size: next.pageSize });
    if (next.verdict) q.set("verdict", next.verdict);
    if (next.camera) q.set("camera", next.camera);
    if (next.since) q.set("since", new Date(next.since).toISOString());
    if (next.until) q.set("until", new Date(next.until).toISOString());
    try {
      const data = await api(`/api/results?${q}`);
      if (ask !== this.asked) return;
      this.setState({ data });
      if (this.props.onLoaded) this.props.onLoaded();
    }
    catch (e) { if (ask === this.asked) this.setState({ error: e.message }); }
  }

  render({ cameras, open, fresh, maxPageSize }, { verdict, camera, since, until, page, pageSize, data, error }) {
    const filter = (key) => (e) => this.load({ [key]: e.target.value, page: 1 });
    return html`<section class="panel wide" id="table">
      <h2>Results</h2>
      <form class="filters" onSubmit=${(e) => { e.preventDefault(); this.load({ page: 1 }); }}>
        <label>Verdict <select id="f-verdict" value=${verdict} onChange=${filter("verdict")}>
          <option value="">all</option><option>OK</option><option>DEFECT</option><option>ERROR</option></select></label>
        <label>Camera <select id="f-camera" value=${camera} onChange=${filter("camera")}>
          <option value="">all</option>${cameras.map((c) => html`<option key=${c} value=${c}>${c || "(none)"}</option>`)}</select></label>
        <label>From <input id="f-since" type="datetime-local" value=${since} onChange=${filter("since")} /></label>
        <label>To <input id="f-until" type="datetime-local" value=${until} onChange=${filter("until")} /></label>
        <label>Rows <select id="f-size" value=${pageSize} onChange=${(e) => this.load({ pageSize: Number(e.target.value), page: 1 })}>
          ${[10, 25, 50, 100].filter((n) => n <= maxPageSize).map((n) => html`<option key=${n} value=${n}>${n}</option>`)}</select></label>
        <button type="submit" id="f-refresh">Refresh${fresh ? ` (${fresh} new)` : ""}</button>
      </form>
      ${error && html`<p class="error">${error}</p>`}
      ${data && html`<table><thead><tr><th>Time</th><th>Camera</th><th>Verdict</th><th>Found</th><th>Top score</th><th>Latency</th><th>Feedback</th></tr></thead>
        <tbody>${data.rows.map((r) => html`<tr key=${r.image_id} class="row" data-image-id=${r.image_id} onClick=${() => open(r.image_id)}>
          <td>${stamp(r.time)}</td><td>${r.camera_id}</td><td><${Verdict} verdict=${r.verdict} /></td>
          <td>${r.detections}</td><td>${r.top_score.toFixed(2)}</td><td>${ms(r.latency_ms)}</td><td>${r.feedback ? LABELS[r.feedback] : ""}</td></tr>`)}</tbody></table>
        <nav class="pager">
          <button id="p-prev" disabled=${page <= 1} onClick=${() => this.load({ page: page - 1 })}>Previous</button>
          <span id="p-status">page ${data.page} of ${data.pages} (${data.total} results)</span>
          <button id="p-next" disabled=${page >= data.pages} onClick=${() => this.load({ page: page + 1 })}>Next</button>
        </nav>`}
    </section>`;
  }
}

class App extends Component {
  constructor() {
    super();
    this.state = { info: null, summary: null, live: [], connected: false, selected: null, error: "", fresh: 0 };
    this.pending = [];
    this.frame = 0;
    this.summaryAt = 0;
  }

  // The session (and its CSRF token) also in a field: setState applies later, a retry is now.
  async session() {
    this.info = await api("/api/session");
    this.setState({ info: this.info });
  }

  async componentDidMount() {
    try { await this.session(); }
    catch (e) { this.setState({ error: e.message }); return; }
    this.refresh();
    this.timer = setInterval(() => this.refresh(), SUMMARY_EVERY_MS);
    this.connect();
  }

  // The live list, from the history: at each (re)connection and after a backlog overflow,
  // so whatever arrived while the stream was down is not missing from it.
  async reseed() {
    const size = Math.min(LIVE_ROWS, this.info.page_size_max);
    try {
      const recent = await api(`/api/results?page_size=${size}`);
      this.setState((s) => ({ live: merged(recent.rows, s.live, 2 * LIVE_ROWS)
        .sort((a, b) => Date.parse(b.time) - Date.parse(a.time)).slice(0, LIVE_ROWS) }));
    } catch (e) { this.setState({ error: e.message }); }
  }

  connect() {
    const source = (this.source = new EventSource("/api/events"));
    source.onopen = () => { this.setState({ connected: true }); this.reseed(); };
    source.onerror = () => {
      this.setState({ connected: false });
      // A refused stream (restarted component: session gone; too many pages) is not retried
      // by the browser: ask again for the session, log in again if it is gone.
      if (source.readyState === EventSource.CLOSED) setTimeout(() => this.resume(), 2000);
    };
    source.addEventListener("result", (e) => {
      stats.events += 1;
      stats.lastEventAt = performance.now();
      this.pending.push(JSON.parse(e.data));
      if (this.pending.length > LIVE_ROWS) { // a hidden tab renders nothing: keep the newest
        stats.skipped += this.pending.length - LIVE_ROWS;
        this.pending.splice(0, this.pending.length - LIVE_ROWS);
      }
      if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
    });
    source.addEventListener("alert", () => this.refresh());
    source.addEventListener("feedback", () => this.refresh());
    source.addEventListener("reload", () => { this.reseed(); this.refresh(); });
  }

  async resume() {
    try {
      await this.session();
      this.connect();
    } catch (e) {
      if (e.status === 401) location.reload(); // the login page
      else setTimeout(() => this.resume(), 5000);
    }
  }

  // A feedback POST; a CSRF token from before a restart is refreshed once.
  post = async (body) => {
    const send = () => api("/api/feedback", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": this.info.csrf } });
    try { return await send(); }
    catch (e) {
      if (e.status !== 403 || !/CSRF/.test(e.message)) throw e;
      await this.session();
      return send();
    }
  };

  flush() {
    this.frame = 0;
    const batch = this.pending.reverse();
    this.pending = [];
    const now = Date.now();
    for (const row of batch) stats.lagMs.push(now - Date.parse(row.time));
    if (stats.lagMs.length > 5000) stats.lagMs.splice(0, stats.lagMs.length - 5000);
    const defects = batch.filter((r) => r.verdict === "DEFECT");
    this.setState((s) => {
      const summary = s.summary && defects.length
        ? { ...s.summary, defects: merged(defects, s.summary.defects, this.info.latest_defects) }
        : s.summary;
      return { live: merged(batch, s.live, LIVE_ROWS), summary, fresh: s.fresh + batch.length };
    }, () => { stats.rendered += batch.length; stats.lastRenderAt = performance.now(); });
    if (performance.now() - this.summaryAt > SUMMARY_AFTER_RESULTS_MS) this.refresh();
  }

  async refresh() {
    const ask = (this.asked = (this.asked || 0) + 1);
    this.summaryAt = performance.now();
    // The first page follows the line; a later page stays put while someone reads it.
    if (this.table && this.state.fresh && this.table.state.page === 1) this.table.load();
    try {
      const summary = await api("/api/summary");
      if (ask === this.asked) this.setState({ summary, error: "" });
    } catch (e) { if (ask === this.asked) this.setState({ error: e.message }); }
  }

  open = (imageId) => this.setState({ selected: imageId });

  render(_, { info, summary, live, connected, selected, error, fresh }) {
    if (!info) return html`<p class="boot">${error || "Connecting…"}</p>`;
    const s = summary;
    return html`<div class="page">
      <header class="top">
        <h1>VQI line dashboard</h1>
        <span class="thing">${info.thing_name || "this device"}</span>
        <span id="live-state" class=${connected ? "live on" : "live off"}>${connected ? "live" : "reconnecting"}</span>
        ${error && html`<span class="error">${error}</span>`}
      </header>
      ${s && html`<section class="kpis" id="kpis">
        <div class="kpi"><b id="kpi-total">${s.last_hour.total}</b> results, last hour</div>
        <div class="kpi"><b id="kpi-defect-rate">${pct(s.last_hour.defect_rate)}</b> defect rate</div>
        <div class="kpi"><b>${pct(s.last_hour.error_rate)}</b> errors</div>
        <div class="kpi"><b>${ms(s.latency_ms.p50)}</b> p50 · <b>${ms(s.latency_ms.p95)}</b> p95 · <b>${ms(s.latency_ms.p99)}</b> p99 latency</div>
        <div class=${`kpi ${s.alarms.length ? "alarm" : ""}`}><b id="kpi-alarms">${s.alarms.length}</b> active alarm${s.alarms.length === 1 ? "" : "s"}</div>
      </section>`}
      <div class="grid">
        <section class="panel" id="live">
          <h2>Live</h2>
          <ol class="stream">${live.map((r) => html`<li key=${r.image_id} class="live-row" data-image-id=${r.image_id} onClick=${() => this.open(r.image_id)}>
            <${Verdict} verdict=${r.verdict} /> <span class="when">${clock(r.time)}</span> <span class="cam">${r.camera_id}</span>
            <span class="n">${r.detections ? `${r.detections} × ${r.top_score.toFixed(2)}` : ""}</span></li>`)}</ol>
        </section>
        <section class="panel" id="defects">
          <h2>Latest defects</h2>
          <div class="defects">${s && s.defects.map((r) => html`<${DefectCard} key=${r.image_id} row=${r} open=${this.open} />`)}</div>
        </section>
        <section class="panel" id="alarms">
          <h2>Alarms</h2>
          ${s && (s.alarms.length ? html`<ul class="alarms">${s.alarms.map((a) => html`<li key=${a.kind + a.component} class=${a.state.toLowerCase()}>
            <b>${a.kind}</b> ${a.state} · ${a.component.replace("com.example.vqi.", "")} · ${stamp(a.time)}<br />${a.message}</li>`)}</ul>`
            : html`<p class="quiet">No active alarms.</p>`)}
          <h2>Shifts</h2>
          ${s && html`<table class="shifts"><thead><tr><th>Shift</th><th>Results</th><th>Defect rate</th></tr></thead><tbody>
            ${s.shifts.map((sh) => html`<tr key=${sh.name}><td>${sh.name}</td><td>${sh.total}</td><td>${pct(sh.defect_rate)}</td></tr>`)}</tbody></table>`}
          <h2>Per hour</h2>
          ${s && html`<${Hourly} series=${s.hourly} />`}
          <h2>Components</h2>
          ${s && html`<ul class="components">${Object.entries(s.components).map(([name, m]) => html`<li key=${name}>
            ${name.replace("com.example.vqi.", "")}: up ${Math.round(m.uptime_s || 0)} s${m.latency_ms && m.latency_ms.p95 ? `, p95 ${m.latency_ms.p95} ms` : ""}</li>`)}</ul>`}
        </section>
      </div>
      <${Table} cameras=${s ? s.cameras : []} open=${this.open} fresh=${fresh}
        maxPageSize=${info.page_size_max}
        onLoaded=${() => this.setState({ fresh: 0 })} ref=${(t) => (this.table = t)} />
      ${selected && html`<${Detail} imageId=${selected} post=${this.post} close=${() => this.setState({ selected: null })}
        onFeedback=${() => this.table && this.table.load()} />`}
    </div>`;
  }
}

render(html`<${App} />`, document.getElementById("app"));
