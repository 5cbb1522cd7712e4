// histodiff live dashboard: a read-only client of the JSON API under /api. Routes live in
// the address's fragment (#/run/3, #/execution/12, #/artifact/<hash>); the current view is
// fetched again every 2 s and redrawn when its data changed, so progress bars, ETAs and
// curves move while a pipeline runs. Every text from the store goes through textContent.
"use strict";

const POLL_MS = 2000;
const view = document.getElementById("view");
const status = document.getElementById("status");
let lastSignature = null;
let polling = null;

// --- DOM building --------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const link = (href, text, attrs) => el("a", Object.assign({ href }, attrs || {}), text);
const badge = (text) => el("span", { class: `badge ${text}` }, text);
const card = (title, ...body) => el("section", { class: "card" }, title ? el("h2", {}, title) : null, ...body);
const empty = (text) => el("p", { class: "empty" }, text);

// --- formatting ----------------------------------------------------------------------------

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

const time = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
const short = (hash) => hash.slice(0, 12);

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function number(x) {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? x.toExponential(3) : String(Number(x.toPrecision(5)));
}

// How long an execution has taken, or takes so far.
function elapsed(e, now) {
  if (e.duration !== null && e.duration !== undefined) return e.duration;
  return e.started ? now - e.started : null;
}

// --- pieces --------------------------------------------------------------------------------

function progressBar(p) {
  if (!p) return el("span", { class: "muted" }, "–");
  const pct = Math.round(p.fraction * 1000) / 10;
  const parts = [`${p.step} / ${p.total}`, `${pct}%`];
  if (p.message) parts.push(p.message);
  const fill = el("div", { class: p.fraction >= 1 ? "fill done" : "fill" });
  fill.style.width = `${pct}%`;
  return el("div", { class: "progress", dataset: { step: p.step, total: p.total } },
    el("div", { class: "bar", role: "progressbar", "aria-valuenow": p.step, "aria-valuemax": p.total }, fill),
    el("div", { class: "label" }, parts.join(" · "),
      p.eta_ms !== null && p.eta_ms !== undefined
        ? [" · ", el("span", { class: "eta" }, `ETA ${duration(p.eta_ms)}`)] : null));
}

function counts(c) {
  return el("span", { class: "counts" },
    Object.entries(c).map(([s, n]) => el("span", { class: `badge ${s}`, title: s }, `${n} ${s}`)));
}

function runState(run) {
  if (run.orchestrator === "gone") return badge("gone");
  return badge(run.status);
}

// A curve of one metric of one execution; `data-points` says how many points it has.
function curve(executionId, series, caption) {
  const src = `/api/executions/${executionId}/curve.svg?metric=${encodeURIComponent(series.name)}&n=${series.points}`;
  return el("figure", { class: "curve", dataset: { execution: executionId, metric: series.name, points: series.points } },
    el("img", { src, alt: `${series.name} against step`, width: 520, height: 320 }),
    el("figcaption", {}, caption || `${series.name}: ${series.points} points, last ${number(series.last[1])} at step ${series.last[0]}`));
}

function artifactLink(a) {
  return link(`#/artifact/${a.hash}`, short(a.hash), { class: "mono artifact-link", title: a.hash });
}

function producerOf(a) {
  if (!a.producer) return el("span", { class: "muted" }, "(external)");
  return el("span", {}, "from ",
    link(`#/execution/${a.producer.id}`, `${a.producer.instance}.${a.producer.output}`, { class: "producer-link" }));
}

function inputList(inputs, more) {
  if (!inputs.length) return empty("reads nothing");
  return el("ul", { class: "edges" },
    inputs.map((i) => el("li", {},
      el("span", { class: "slot" }, i.position ? `${i.slot}[${i.position}]` : i.slot),
      artifactLink(i.artifact), el("span", { class: "arrow" }, "←"), producerOf(i.artifact))),
    more ? el("li", { class: "muted" }, `… and ${more} more`) : null);
}

// --- views ---------------------------------------------------------------------------------

// The stages a running run is executing now, each with its progress.
function activeStages(stages) {
  if (!stages.length) return null;
  return el("table", { class: "mini" }, el("tbody", {}, stages.map((e) => el("tr", {},
    el("td", {}, link(`#/execution/${e.id}`, e.instance, { class: "execution-link" })),
    el("td", {}, badge(e.status)),
    el("td", { class: "progress-cell" }, progressBar(e.progress))))));
}

function runsView(data) {
  const active = data.runs.filter((r) => r.status === "running");
  const activeCards = active.map((r) => el("div", { class: "card active-run" },
    el("h2", {}, link(`#/run/${r.id}`, `Run ${r.id} · ${r.pipeline}`), " ", runState(r)),
    el("p", { class: "sub" }, el("span", {}, `started ${time(r.started)}`),
      el("span", {}, `running for ${duration(data.now - r.started)}`), el("span", {}, r.host)),
    counts(r.counts), activeStages(r.active || [])));
  const rows = data.runs.map((r) => el("tr", {},
    el("td", {}, link(`#/run/${r.id}`, `#${r.id}`, { class: "run-link" })),
    el("td", {}, r.pipeline), el("td", {}, runState(r)),
    el("td", {}, time(r.started)),
    el("td", { class: "num" }, duration((r.finished || data.now) - r.started)),
    el("td", {}, counts(r.counts))));
  return [
    el("h1", {}, "Runs"),
    card("In progress", active.length ? activeCards : empty("No run is in progress.")),
    card("Recent runs", data.runs.length
      ? el("table", {}, el("thead", {}, el("tr", {}, ["run", "pipeline", "status", "started", "took", "executions"].map((h) => el("th", {}, h)))), el("tbody", {}, rows))
      : empty("The store holds no runs yet.")),
  ];
}

// The loss curve of a training execution on its run's page, beside the newest value of
// each of its metrics, with a way to their curves.
function liveCurve(e) {
  const s = e.series[0];
  const others = e.series.length - 1;
  const latest = el("table", { class: "latest" },
    el("thead", {}, el("tr", {}, el("th", {}, "metric"), el("th", { class: "num" }, "step"), el("th", { class: "num" }, "latest"))),
    el("tbody", {}, e.series.map((m) => el("tr", {}, el("td", {}, m.name),
      el("td", { class: "num" }, m.last[0]), el("td", { class: "num" }, number(m.last[1]))))));
  return el("div", { class: "live" },
    curve(e.id, s, `${e.instance}: ${s.name} ${number(s.last[1])} at step ${s.last[0]} (${s.points} points)`),
    el("div", { class: "latest-box" }, el("h2", {}, link(`#/execution/${e.id}`, e.instance)), latest,
      others > 0 ? el("p", {}, link(`#/execution/${e.id}`, `all ${e.series.length} curves →`)) : null));
}

function runView(data) {
  const r = data.run;
  const live = data.executions.filter((e) => e.series && e.series.length);
  const rows = data.executions.map((e) => el("tr", { class: `stage ${e.status}`, dataset: { execution: e.id } },
    el("td", {}, link(`#/execution/${e.id}`, e.instance, { class: "execution-link" })),
    el("td", { class: "muted" }, e.kind),
    el("td", {}, badge(e.status), e.attempt > 1 ? el("span", { class: "muted" }, ` attempt ${e.attempt}`) : null),
    el("td", {}, progressBar(e.progress)),
    el("td", { class: "num" }, duration(elapsed(e, data.now))),
    el("td", { class: "muted" }, e.device || "")));
  return [
    el("h1", {}, `Run ${r.id} · ${r.pipeline}`, runState(r),
      link(`/runs/${r.id}/report`, "HTML report ↗", { class: "report-link", target: "_blank", rel: "noopener" })),
    el("p", { class: "sub" }, el("span", {}, r.file), el("span", {}, `started ${time(r.started)}`),
      el("span", {}, r.finished ? `took ${duration(r.finished - r.started)}` : `running for ${duration(data.now - r.started)}`),
      el("span", {}, r.host), r.orchestrator === "gone" ? el("span", {}, "its orchestrator is gone") : null),
    card("Stages", counts(r.counts), data.executions.length
      ? el("table", { class: "stages" }, el("thead", {}, el("tr", {}, ["instance", "kind", "status", "progress", "time", "device"].map((h) => el("th", {}, h)))), el("tbody", {}, rows))
      : empty("Nothing has been scheduled yet.")),
    live.length ? card("Training curves", el("div", { class: "curves" }, live.map(liveCurve))) : null,
  ];
}

function executionView(data) {
  const e = data.execution;
  const outputs = Object.entries(data.outputs);
  const finals = Object.entries(data.finals);
  return [
    el("h1", {}, e.instance, badge(e.status)),
    el("p", { class: "sub" }, el("span", {}, e.kind), el("span", {}, link(`#/run/${e.run_id}`, `run ${e.run_id}`)),
      el("span", {}, `started ${time(e.started)}`), el("span", {}, `took ${duration(elapsed(e, data.now))}`),
      e.device ? el("span", {}, e.device) : null, e.host ? el("span", {}, e.host) : null),
    e.cached_from ? card(null, "A cache hit: it reused the outputs of ",
      link(`#/execution/${e.cached_from}`, `execution ${e.cached_from}`), ".") : null,
    e.error ? el("section", { class: "card error-box" }, el("h2", {}, "Error"), el("pre", { class: "text" }, e.error)) : null,
    data.progress ? card("Progress", progressBar(data.progress)) : null,
    data.series.length ? card("Curves", el("div", { class: "curves" }, data.series.map((s) => curve(data.source, s)))) : null,
    el("div", { class: "grid2" },
      card("Inputs (upstream)", inputList(data.inputs, data.more_inputs)),
      card("Outputs (downstream)", outputs.length
        ? el("ul", { class: "edges" }, outputs.map(([name, hash]) => el("li", {},
          el("span", { class: "slot" }, name), artifactLink({ hash }))))
        : empty(e.status === "succeeded" || e.status === "cached" ? "writes nothing" : "no outputs recorded (yet)"))),
    finals.length ? card("Final metrics", el("table", {}, el("tbody", {},
      finals.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", { class: "num" }, number(v))))))) : null,
    card("Stage key", el("code", {}, e.stage_key)),
  ];
}

function previewOf(p) {
  switch (p.type) {
    case "image":
      return el("img", { class: "preview-image", src: p.url, alt: "artifact preview" });
    case "text":
      return [el("pre", { class: "text" }, p.text), p.truncated ? el("p", { class: "muted" }, "(only the start is shown)") : null,
        el("p", {}, link(p.url, "open raw", { target: "_blank", rel: "noopener" }))];
    case "binary":
      return el("p", {}, "Binary content: ", link(p.url, "download"));
    case "too-large":
      return el("p", { class: "muted" }, `${bytes(p.size)}: too large to preview; \`histodiff export\` copies it out.`);
    case "image-set":
      return [el("p", { class: "muted" }, `An image set: ${p.count} images of ${p.image_size}×${p.image_size} px`,
        p.classes.length ? `, classes ${p.classes.join(", ")}` : ", unlabeled", `. The first ${p.images.length}:`),
        el("div", { class: "thumbs image-grid" }, p.images.map((img) => el("figure", {},
          el("img", { src: img.url, alt: img.label || "image", loading: "lazy" }), el("figcaption", {}, img.label || ""))))];
    case "directory":
      return memberList(p);
    default:
      return empty(`no preview for ${p.type}`);
  }
}

function memberList(p) {
  const inline = p.members.filter((m) => m.shown === "png" || m.shown === "svg").slice(0, 16);
  const rows = p.members.map((m) => el("tr", {},
    el("td", {}, link(m.url, m.path, { class: "mono member-link", target: "_blank", rel: "noopener" })),
    el("td", { class: "muted" }, m.shown), el("td", { class: "num" }, bytes(m.size))));
  return [
    inline.length ? el("div", { class: "thumbs members" }, inline.map((m) => el("figure", {},
      link(m.url, el("img", { src: m.url, alt: m.path, loading: "lazy" }), { target: "_blank", rel: "noopener", title: m.path }),
      el("figcaption", {}, m.path.split("/").pop())))) : null,
    el("table", {}, el("tbody", {}, rows)),
    p.more ? el("p", { class: "muted" }, `… and ${p.more} more files`) : null,
  ];
}

function artifactView(data) {
  const producers = data.producers.map((p) => el("div", { class: "producer" },
    el("p", {}, link(`#/execution/${p.execution.id}`, p.execution.instance, { class: "producer-link" }),
      ` wrote it as `, el("code", {}, p.output), " ", badge(p.execution.status),
      el("span", { class: "muted" }, ` · ${p.execution.kind} · run ${p.execution.run_id}`)),
    el("h2", {}, "…from its inputs"), inputList(p.inputs, p.more_inputs)));
  const consumers = data.consumers.map((c) => el("li", {},
    el("span", { class: "slot" }, c.position ? `${c.slot}[${c.position}]` : c.slot),
    link(`#/execution/${c.execution.id}`, c.execution.instance, { class: "consumer-link" }),
    el("span", { class: "muted" }, ` · ${c.execution.kind} · run ${c.execution.run_id}`)));
  return [
    el("h1", {}, "Artifact ", el("span", { class: "mono" }, short(data.hash))),
    el("p", { class: "sub" }, el("span", { class: "mono" }, data.hash), el("span", {}, data.kind),
      el("span", {}, bytes(data.size)), el("span", {}, `recorded ${time(data.created)}`)),
    el("div", { class: "grid2" },
      card("Produced by (upstream)", producers.length ? producers : empty("not produced by a recorded execution")),
      card("Read by (downstream)", consumers.length ? el("ul", { class: "edges" }, consumers) : empty("no execution has read it"))),
    card("Preview", el("div", { class: "preview", dataset: { type: data.preview.type } }, previewOf(data.preview))),
  ];
}

// --- routing and polling -----------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const id = encodeURIComponent(parts[1] || "");
  switch (parts[0]) {
    case "run": return { api: `/api/runs/${id}`, draw: runView };
    case "execution": return { api: `/api/executions/${id}`, draw: executionView };
    case "artifact": return { api: `/api/artifacts/${id}`, draw: artifactView };
    default: return { api: "/api/runs", draw: runsView };
  }
}

async function refresh() {
  const r = route();
  let response;
  try {
    response = await fetch(r.api, { cache: "no-store", credentials: "same-origin" });
  } catch (e) {
    status.textContent = "the server does not answer";
    status.className = "poll error";
    return;
  }
  const text = await response.text();
  if (!response.ok) {
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "poll";
    show(`error ${response.status}`, [el("section", { class: "card error-box" }, el("h2", {}, `Error ${response.status}`), text)]);
    return;
  }
  const data = JSON.parse(text);
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  status.className = "poll";
  show(JSON.stringify(data, (k, v) => (k === "now" ? undefined : v)) + runningClock(data), r.draw(data));
}

// Elapsed times and ETAs move with the clock while something runs.
function runningClock(data) {
  const running = JSON.stringify(data).includes('"status":"running"');
  return running ? String(Math.floor(Date.now() / 1000)) : "";
}

function show(signature, nodes) {
  const key = location.hash + signature;
  if (key === lastSignature) return;
  lastSignature = key;
  view.replaceChildren(...[nodes].flat(Infinity).filter((n) => n));
}

function start() {
  if (polling) clearInterval(polling);
  lastSignature = null;
  refresh();
  polling = setInterval(refresh, POLL_MS);
}

window.addEventListener("hashchange", () => { window.scrollTo(0, 0); start(); });
start();
