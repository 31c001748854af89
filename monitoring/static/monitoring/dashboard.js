/* The dashboard at /: keeps the server-rendered table (and the kanban view) in step with
 * /api/v1/monitoring/stats, in place, without reloading the page. No build step, no library. */
(function () {
  "use strict";

  const M = window.Monitoring;
  const root = document.getElementById("dashboard");
  const urls = {
    stats: root.dataset.statsUrl,
    history: root.dataset.historyUrl,
    refresh: root.dataset.refreshUrl,
    platform: root.dataset.platformUrl,
  };
  const POLL_MS = (parseFloat(root.dataset.pollSeconds) || 15) * 1000;
  const REFRESH_POLL_MS = 1000;
  const REFRESH_TIMEOUT_MS = 120000;
  const COLUMNS = 9;
  const HISTORY_HOURS = parseFloat(root.dataset.historyHours) || 24;
  // The upper bound of each timed bucket, from the monitoring settings (the view puts them in the page).
  const limitsScript = document.getElementById("bucket-limits");
  const BUCKET_LIMITS = limitsScript ? JSON.parse(limitsScript.textContent) : [];

  const tbody = document.getElementById("models-body");
  const rowTemplate = document.getElementById("row-template");
  const search = document.getElementById("search");
  const refreshButton = document.getElementById("refresh");
  const refreshState = document.getElementById("refresh-state");
  const updatedAt = document.getElementById("updated-at");
  const modelCount = document.getElementById("model-count");
  const emptyState = document.getElementById("empty-state");
  const noMatch = document.getElementById("no-match");
  const tableView = document.getElementById("table-view");
  const kanbanView = document.getElementById("kanban-view");
  const viewButtons = {table: document.getElementById("view-table"), kanban: document.getElementById("view-kanban")};
  const banner = document.getElementById("platform-status");

  /** model id -> {id, provider, data (the /stats entry, null until loaded), row, card, historyRow} */
  const entries = new Map();
  let sortKey = null;
  let sortDir = "asc";
  let openHistory = null;
  let lastUpdate = null;
  let refreshing = false;
  let polling = false;

  tbody.querySelectorAll("tr.model-row").forEach(function (row) {
    entries.set(row.dataset.model, {
      id: row.dataset.model, provider: row.dataset.provider, data: null, row: row, card: null, historyRow: null,
    });
  });

  // --- rendering ------------------------------------------------------------------------------------------

  function cell(row, column) {
    return row.querySelector('[data-col="' + column + '"]');
  }

  function errorDetail(data) {
    if (data.ok !== false) return "";
    const parts = [];
    if (data.http_status) parts.push("HTTP " + data.http_status);
    if (data.error) parts.push(data.error);
    return parts.join(": ") || "The last probe failed";
  }

  function availabilityClass(value) {
    if (!M.isNumber(value)) return "";
    if (value >= 99) return "good";
    if (value >= 95) return "fair";
    return "poor";
  }

  function availabilityTitle(availability) {
    if (!availability) return "";
    return ["1h", "24h", "7d", "30d"]
      .filter(function (span) { return span in availability; })
      .map(function (span) { return span + ": " + M.percent(availability[span]); })
      .join(" · ");
  }

  function spread(p50, p95, format) {
    if (!M.isNumber(p50) && !M.isNumber(p95)) return "";
    return "p50 " + format(p50) + " · p95 " + format(p95);
  }

  // --- percentiles and validity ----------------------------------------------------------------------------

  // The windows of the merged percentiles (probes and real traffic) in /stats, and how they are named.
  const WINDOWS = [["1h", "1 h"], ["24h", "24 h"], ["7d", "7 d"]];
  const METRICS = [
    ["ttft_ms", "TTFT", M.duration], ["total_ms", "Total", M.duration], ["tokens_per_sec", "Tokens/s", M.rate],
  ];
  const QUANTILES = ["p50", "p95", "p99"];
  // The probe kinds that check an answer (monitoring/statistics.py VALIDITY_KINDS), as an operator names them.
  const VALIDITY = [["tool_call", "Tool calls"], ["structured_output", "JSON schema"]];

  function latencyWindow(data, name) {
    return (data.percentiles || {})[name] || {};
  }

  function figure(window, metric, q) {
    return (window[metric] || {})[q];
  }

  function counted(count, noun) {
    return (count || 0).toLocaleString() + " " + noun + (count === 1 ? "" : "s");
  }

  /** "14 samples (12 probes, 2 requests) · newest 3 min ago", or "no samples". */
  function samplesText(window, now) {
    if (!window.samples) return "no samples";
    const by = window.samples_by_source || {};
    return counted(window.samples, "sample") + " (" + counted(by.probes, "probe") + ", " +
      counted(by.traffic, "request") + ") · newest " + M.relativeTime(window.newest_at, now);
  }

  /** The TTFT cell: "412 ms / 980 ms" (p50 / p95 over 24 h). */
  function ttftPair(window) {
    const p50 = figure(window, "ttft_ms", "p50");
    const p95 = figure(window, "ttft_ms", "p95");
    if (!M.isNumber(p50) && !M.isNumber(p95)) return "–";
    return M.duration(p50) + " / " + M.duration(p95);
  }

  /** The TTFT cell's tooltip: every figure of the 24 h window, where they come from and how fresh they are. */
  function percentilesTitle(window, now) {
    const lines = ["24 h · " + samplesText(window, now)];
    if (window.samples) {
      METRICS.forEach(function (metric) {
        lines.push(metric[1] + " " + QUANTILES.map(function (q) {
          return q + " " + metric[2](figure(window, metric[0], q));
        }).join(" · "));
      });
    }
    return lines.join("\n");
  }

  /** "Tool calls valid 100 %, JSON schema valid 92 % (24 h)"; a kind without probes is "not probed". */
  function validityText(validity) {
    const rates = validity || {};
    if (!VALIDITY.some(function (kind) { return M.isNumber(rates[kind[0]]); })) {
      return "Tool calls and JSON schema: not probed";
    }
    return VALIDITY.map(function (kind) {
      const rate = rates[kind[0]];
      return kind[1] + (M.isNumber(rate) ? " valid " + M.percent(rate) : " not probed");
    }).join(", ") + " (24 h)";
  }

  /** The history panel's figures: the validity line and a small table of the three windows. */
  function renderFigures(entry) {
    const box = entry.historyRow ? entry.historyRow.querySelector(".figures") : null;
    if (!box || !entry.data) return;
    const data = entry.data;
    const now = Date.now();
    const validity = document.createElement("p");
    validity.className = "validity";
    validity.textContent = validityText(data.validity_24h);
    const table = document.createElement("table");
    table.className = "window-figures";
    const head = table.createTHead().insertRow();
    head.appendChild(document.createElement("th"));
    WINDOWS.forEach(function (w) {
      const th = document.createElement("th");
      th.scope = "col";
      th.className = "num";
      th.textContent = w[1];
      head.appendChild(th);
    });
    const body = table.createTBody();
    function addRow(label, key, text) {
      const row = body.insertRow();
      row.dataset.figure = key;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      row.appendChild(th);
      WINDOWS.forEach(function (w) {
        const td = row.insertCell();
        td.className = "num";
        td.dataset.window = w[0];
        td.textContent = text(latencyWindow(data, w[0]));
      });
    }
    addRow("Probes", "probes", function (w) { return ((w.samples_by_source || {}).probes || 0).toLocaleString(); });
    addRow("Requests", "traffic", function (w) { return ((w.samples_by_source || {}).traffic || 0).toLocaleString(); });
    addRow("Newest", "newest_at", function (w) { return w.newest_at ? M.relativeTime(w.newest_at, now) : "–"; });
    METRICS.forEach(function (metric) {
      QUANTILES.forEach(function (q) {
        addRow(metric[1] + " " + q, metric[0] + "." + q, function (w) { return metric[2](figure(w, metric[0], q)); });
      });
    });
    box.replaceChildren(validity, table);
  }

  function createEntry(id, provider) {
    const row = rowTemplate.content.firstElementChild.cloneNode(true);
    row.dataset.model = id;
    row.dataset.provider = provider;
    const entry = {id: id, provider: provider, data: null, row: row, card: null, historyRow: null};
    entries.set(id, entry);
    tbody.appendChild(row);
    return entry;
  }

  function renderRow(entry, previous) {
    const data = entry.data;
    const row = entry.row;
    row.dataset.provider = entry.provider = data.provider;
    row.dataset.status = data.status;
    const id = cell(row, "model").querySelector(".model-id");
    id.textContent = data.model;
    id.title = data.model; // the cell truncates a long id; the tooltip keeps it whole
    cell(row, "provider").textContent = data.provider;

    const statusCell = cell(row, "status");
    M.setBadge(statusCell.querySelector(".badge"), data.status, errorDetail(data), data.state, data.state_reason);
    let note = statusCell.querySelector(".error-note");
    if (data.ok === false) {
      if (!note) {
        note = document.createElement("span");
        note.className = "error-note";
        statusCell.appendChild(note);
      }
      note.textContent = data.http_status ? "HTTP " + data.http_status : "error";
      note.title = errorDetail(data);
    } else if (note) {
      note.remove();
    }

    const availability = data.availability || {};
    const day = cell(row, "availability_24h");
    day.textContent = M.percent(availability["24h"]);
    day.dataset.level = availabilityClass(availability["24h"]);
    day.title = availabilityTitle(data.availability);

    const ttfb = cell(row, "ttfb_ms");
    ttfb.textContent = M.duration(data.ttfb_ms);
    ttfb.title = spread(data.p50_ttfb_ms, data.p95_ttfb_ms, M.duration);

    const typical = cell(row, "ttft_p50_p95");
    typical.textContent = ttftPair(latencyWindow(data, "24h"));
    typical.title = percentilesTitle(latencyWindow(data, "24h"), Date.now());

    const tps = cell(row, "tokens_per_sec");
    tps.textContent = M.rate(data.tokens_per_sec);
    tps.title = spread(data.p50_tokens_per_sec, data.p95_tokens_per_sec, M.rate);

    const checked = cell(row, "checked_at");
    checked.dataset.iso = data.checked_at || "";
    checked.textContent = M.relativeTime(data.checked_at);
    checked.title = M.absoluteTime(data.checked_at);

    cell(row, "energy_wh").textContent = M.energy(data.energy_wh);

    if (previous && previous.checked_at !== data.checked_at) flash(row);
  }

  function flash(element) {
    element.classList.remove("flash");
    void element.offsetWidth; // restart the animation
    element.classList.add("flash");
  }

  function metric(label, value) {
    const wrap = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value;
    wrap.append(dt, dd);
    return wrap;
  }

  function renderCard(entry) {
    const data = entry.data;
    let card = entry.card;
    if (!card) {
      card = entry.card = document.createElement("article");
      card.className = "card model-card";
      card.tabIndex = 0;
      card.dataset.model = entry.id;
    }
    card.dataset.status = data.status;
    card.replaceChildren();
    const title = document.createElement("div");
    title.className = "model-id";
    title.textContent = data.model;
    title.title = data.model;
    // The id truncates with an ellipsis: the state badge sits beside it, not inside it.
    const head = document.createElement("div");
    head.className = "card-head";
    head.append(title);
    if (M.STATE_LABELS[data.state]) {
      // A card in the "Unknown" column says whether the model is down (and why) or merely not probed yet.
      const badge = document.createElement("span");
      badge.className = "badge state-badge";
      M.setBadge(badge, data.status, "", data.state, data.state_reason);
      head.append(" ", badge);
    }
    const facts = document.createElement("dl");
    facts.append(
      metric("TTFT", M.duration(data.ttfb_ms)),
      metric("Tok/s", M.rate(data.tokens_per_sec)),
      metric("24 h", M.percent((data.availability || {})["24h"])),
    );
    const foot = document.createElement("div");
    foot.className = "card-foot";
    foot.textContent = data.provider + " · checked " + M.relativeTime(data.checked_at);
    if (data.ok === false) {
      const error = document.createElement("div");
      error.className = "error-note";
      error.textContent = errorDetail(data);
      error.title = errorDetail(data);
      card.append(head, facts, error, foot);
    } else {
      card.append(head, facts, foot);
    }
  }

  function removeEntry(entry) {
    if (openHistory === entry.id) closeHistory();
    entry.row.remove();
    if (entry.card) entry.card.remove();
    entries.delete(entry.id);
  }

  // --- sorting, filtering, placing ----------------------------------------------------------------------------

  function sortValue(entry, key) {
    const data = entry.data;
    if (key === "model") return entry.id;
    if (key === "provider") return entry.provider || "";
    if (!data) return null;
    if (key === "status") return M.BUCKETS.indexOf(data.status);
    if (key === "availability_24h") return data.availability ? data.availability["24h"] : null;
    if (key === "checked_at") return data.checked_at ? Date.parse(data.checked_at) : null;
    if (key === "ttft_p50_p95") return figure(latencyWindow(data, "24h"), "ttft_ms", "p95");
    return data[key];
  }

  function compare(a, b) {
    if (sortKey) {
      const x = sortValue(a, sortKey);
      const y = sortValue(b, sortKey);
      const xMissing = x === null || x === undefined || (typeof x === "number" && isNaN(x));
      const yMissing = y === null || y === undefined || (typeof y === "number" && isNaN(y));
      if (xMissing !== yMissing) return xMissing ? 1 : -1; // no data sorts last either way
      if (!xMissing) {
        const order = typeof x === "string" ? x.localeCompare(y) : x - y;
        if (order !== 0) return sortDir === "asc" ? order : -order;
      }
    }
    return a.id.localeCompare(b.id);
  }

  function sortedEntries() {
    return Array.from(entries.values()).sort(compare);
  }

  /** Moves rows (and cards) into order; the elements stay the same, so nothing flickers or reloads. */
  function place() {
    const ordered = sortedEntries();
    const current = Array.from(tbody.querySelectorAll("tr.model-row"));
    if (ordered.some(function (entry, i) { return current[i] !== entry.row; })) {
      ordered.forEach(function (entry) { tbody.appendChild(entry.row); });
    }
    ordered.forEach(function (entry) {
      if (entry.historyRow) entry.row.after(entry.historyRow);
      if (!entry.card) return;
      const column = kanbanView.querySelector('.kanban-column[data-status="' + entry.data.status + '"] .cards') ||
        kanbanView.querySelector('.kanban-column[data-status="unknown"] .cards');
      column.appendChild(entry.card);
    });
    kanbanView.querySelectorAll(".kanban-column").forEach(function (column) {
      const visible = column.querySelectorAll(".model-card:not([hidden])").length;
      column.querySelector(".count").textContent = String(visible);
      column.classList.toggle("is-empty", visible === 0);
    });
  }

  function matches(entry, terms) {
    const status = entry.data ? M.bucketLabel(entry.data.status) + " " + (M.STATE_LABELS[entry.data.state] || "") : "";
    const text = (entry.id + " " + (entry.provider || "") + " " + status).toLowerCase();
    return terms.every(function (term) { return text.indexOf(term) >= 0; });
  }

  function filter() {
    const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    entries.forEach(function (entry) {
      const visible = matches(entry, terms);
      entry.row.hidden = !visible;
      if (entry.historyRow) entry.historyRow.hidden = !visible;
      if (entry.card) entry.card.hidden = !visible;
      if (visible) shown += 1;
    });
    emptyState.hidden = entries.size > 0;
    noMatch.hidden = entries.size === 0 || shown > 0;
    root.dataset.visible = String(shown);
  }

  function refreshLayout() {
    filter();
    place();
  }

  function setSort(key) {
    if (sortKey === key) {
      sortDir = sortDir === "asc" ? "desc" : "asc";
    } else {
      sortKey = key;
      sortDir = "asc";
    }
    document.querySelectorAll("#models-table th[data-sort]").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.sort === sortKey ? (sortDir === "asc" ? "ascending" : "descending") : "none");
    });
    place();
  }

  // --- data ------------------------------------------------------------------------------------------------

  function applyStats(payload) {
    const seen = new Set();
    (payload.models || []).forEach(function (data) {
      seen.add(data.model);
      const entry = entries.get(data.model) || createEntry(data.model, data.provider);
      const previous = entry.data;
      entry.data = data;
      renderRow(entry, previous);
      renderCard(entry);
      if (openHistory === entry.id) renderFigures(entry);
      if (openHistory === entry.id && previous && previous.checked_at !== data.checked_at) loadHistory(entry.id);
    });
    entries.forEach(function (entry) { if (!seen.has(entry.id)) removeEntry(entry); });
    lastUpdate = payload.updated_at || new Date().toISOString();
    modelCount.textContent = entries.size + " monitored model" + (entries.size === 1 ? "" : "s");
    tick();
    refreshLayout();
    root.dataset.loaded = "true";
  }

  async function loadStats() {
    const reply = await M.requestJSON(urls.stats);
    if (reply.ok && reply.body) {
      applyStats(reply.body);
      if (refreshState.dataset.state === "stale") showRefreshState("", "");
    } else if (!refreshing) {
      showRefreshState("stale", "Could not load statistics (" + reply.message + ")");
    }
    return reply;
  }

  const PLATFORM_LABELS = {
    operational: "All systems operational",
    degraded: "Degraded performance",
    partial_outage: "Partial outage",
    major_outage: "Major outage",
    maintenance: "Under maintenance",
  };

  async function loadPlatform() {
    const reply = await M.requestJSON(urls.platform);
    const label = banner.querySelector(".label");
    const message = banner.querySelector(".message");
    const summary = banner.querySelector(".summary");
    if (!reply.ok || !reply.body) {
      banner.dataset.status = "error";
      label.textContent = "Platform status unavailable";
      message.textContent = reply.message;
      summary.textContent = "";
      return;
    }
    const body = reply.body;
    banner.dataset.status = body.status;
    label.textContent = PLATFORM_LABELS[body.status] || body.status;
    message.textContent = body.message && body.message !== label.textContent ? body.message : "";
    const parts = [];
    if (body.stats && M.isNumber(body.stats.total_models)) {
      parts.push(body.stats.operational_models + " of " + body.stats.total_models + " models operational");
    }
    summary.textContent = parts.join(" · ");
  }

  async function poll() {
    if (polling || refreshing) return;
    polling = true;
    try {
      await Promise.all([loadStats(), loadPlatform()]);
    } finally {
      polling = false;
    }
  }

  /** Relative times ("3 min ago") age while the page stays open. */
  function tick() {
    const now = Date.now();
    entries.forEach(function (entry) {
      const checked = cell(entry.row, "checked_at");
      if (checked.dataset.iso) checked.textContent = M.relativeTime(checked.dataset.iso, now);
      if (entry.card && entry.data) {
        entry.card.querySelector(".card-foot").textContent =
          entry.data.provider + " · checked " + M.relativeTime(entry.data.checked_at, now);
      }
    });
    updatedAt.textContent = lastUpdate ? M.relativeTime(lastUpdate, now) : "never";
    updatedAt.title = M.absoluteTime(lastUpdate);
  }

  // --- refresh now -------------------------------------------------------------------------------------------

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function showRefreshState(state, text) {
    refreshState.dataset.state = state;
    refreshState.textContent = text ? " · " + text : "";
  }

  /** Queues probes, then polls /stats until every probed model shows a newer check. */
  async function refreshNow() {
    if (refreshing) return;
    refreshing = true;
    refreshButton.disabled = true;
    refreshButton.dataset.state = "running";
    refreshButton.textContent = "Refreshing…";
    showRefreshState("running", "Probing…");
    const before = new Map();
    entries.forEach(function (entry) { before.set(entry.id, entry.data ? entry.data.checked_at : null); });
    try {
      const reply = await M.requestJSON(urls.refresh, {method: "POST", body: "{}"});
      if (!reply.ok) {
        showRefreshState("error", "Refresh failed: " + reply.message);
        return;
      }
      const queued = reply.body && Array.isArray(reply.body.models) ? reply.body.models : Array.from(before.keys());
      const deadline = Date.now() + REFRESH_TIMEOUT_MS;
      let waiting = queued;
      while (Date.now() < deadline) {
        await sleep(REFRESH_POLL_MS);
        const stats = await M.requestJSON(urls.stats);
        if (!stats.ok || !stats.body) continue;
        applyStats(stats.body);
        waiting = queued.filter(function (id) {
          const entry = entries.get(id);
          return entry && entry.data && entry.data.checked_at === before.get(id);
        });
        if (!waiting.length) break;
        showRefreshState("running", "Probing… " + (queued.length - waiting.length) + "/" + queued.length + " done");
      }
      if (waiting.length) {
        showRefreshState("timeout", waiting.length + " probe(s) still running: " + waiting.join(", "));
      } else {
        showRefreshState("done", "probed " + queued.length + " model" + (queued.length === 1 ? "" : "s"));
      }
      loadPlatform();
    } finally {
      refreshing = false;
      refreshButton.disabled = false;
      refreshButton.dataset.state = "idle";
      refreshButton.textContent = "Refresh now";
    }
  }

  // --- history chart ---------------------------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svg(name, attributes, parent) {
    const element = document.createElementNS(SVG, name);
    Object.keys(attributes || {}).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    if (parent) parent.appendChild(element);
    return element;
  }

  function niceCeiling(value) {
    if (!(value > 0)) return 1000;
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    const steps = [1, 2, 2.5, 5, 10];
    for (let i = 0; i < steps.length; i += 1) {
      if (steps[i] * magnitude >= value) return steps[i] * magnitude;
    }
    return 10 * magnitude;
  }

  const HOUR_MS = 3600 * 1000;

  /** Ticks at whole local hours, every 1, 2, 3, 6 or 12 hours so that about ``count`` fit; strictly inside the
   * window, so no two read the same. Midnight is written as the date. */
  function timeTicks(tMin, tMax, count) {
    const span = tMax - tMin;
    const step = [1, 2, 3, 6, 12, 24].find(function (hours) { return span / (hours * HOUR_MS) <= count; }) || 24;
    const first = new Date(tMin);
    first.setMinutes(0, 0, 0);
    const ticks = [];
    for (let t = first.getTime(); t < tMax; t += HOUR_MS) {
      const date = new Date(t);
      if (t <= tMin || date.getHours() % step !== 0) continue;
      const label = date.getHours() === 0
        ? date.toLocaleDateString([], {month: "short", day: "numeric"})
        : date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
      ticks.push({t: t, label: label});
    }
    return ticks;
  }

  /** The bucket limits the chart draws: those under the highest value, and the next one above it. */
  function visibleLimits(maxValue) {
    const shown = [];
    for (const limit of BUCKET_LIMITS) {
      shown.push(limit);
      if (limit.ms >= maxValue) break;
    }
    return shown;
  }

  /** Total time and TTFT of each probe over the last ``HISTORY_HOURS`` (the time axis spans that window),
   * the bucket limits as dashed lines, failed probes as red marks along the top. */
  function drawChart(modelId, points, width, now) {
    // Drawn at the width it is shown at (text is not stretched); a later resize scales it evenly.
    const W = Math.max(320, Math.round(width) || 860), H = 240;
    const pad = {left: 62, right: 18, top: 16, bottom: 30};
    const tMax = now;
    const tMin = now - HISTORY_HOURS * HOUR_MS;
    const parsed = points
      .map(function (p) { return Object.assign({t: Date.parse(p.checked_at)}, p); })
      .filter(function (p) { return !isNaN(p.t) && p.t >= tMin && p.t <= tMax; });
    const chart = svg("svg", {
      viewBox: "0 0 " + W + " " + H, class: "history-chart", role: "img",
      "aria-label": "Total time and TTFT of " + modelId + " over the last " + HISTORY_HOURS + " hours",
      "data-model": modelId, "data-points": String(parsed.length),
      "data-window-start": new Date(tMin).toISOString(), "data-window-end": new Date(tMax).toISOString(),
    });
    const values = [];
    parsed.forEach(function (p) {
      if (M.isNumber(p.total_ms)) values.push(p.total_ms);
      if (M.isNumber(p.ttfb_ms)) values.push(p.ttfb_ms);
    });
    const highest = values.length ? Math.max.apply(null, values) : 0;
    const limits = visibleLimits(highest);
    const top = Math.max(highest, limits.length ? limits[limits.length - 1].ms : 0, 1);
    const yMax = niceCeiling(top * 1.05);
    const plotW = W - pad.left - pad.right;
    const plotH = H - pad.top - pad.bottom;
    const x = function (t) { return pad.left + ((t - tMin) / (tMax - tMin)) * plotW; };
    const y = function (v) { return pad.top + (1 - v / yMax) * plotH; };

    const grid = svg("g", {class: "grid"}, chart);
    for (let i = 0; i <= 4; i += 1) {
      const value = (yMax * i) / 4;
      svg("line", {x1: pad.left, x2: W - pad.right, y1: y(value), y2: y(value)}, grid);
      const label = svg("text", {x: pad.left - 8, y: y(value) + 4, "text-anchor": "end"}, grid);
      label.textContent = M.duration(value);
    }
    const axis = svg("g", {class: "time-axis"}, chart);
    timeTicks(tMin, tMax, plotW < 500 ? 4 : 8).forEach(function (tick) {
      svg("line", {x1: x(tick.t), x2: x(tick.t), y1: pad.top + plotH, y2: pad.top + plotH + 4}, axis);
      const label = svg("text", {x: x(tick.t), y: H - 8, "text-anchor": "middle", "data-t": String(tick.t)}, axis);
      label.textContent = tick.label;
    });

    const bounds = svg("g", {class: "bucket-limits"}, chart);
    limits.forEach(function (limit) {
      const line = svg("line", {
        x1: pad.left, x2: W - pad.right, y1: y(limit.ms), y2: y(limit.ms),
        "data-bucket": limit.bucket, "data-ms": String(limit.ms),
      }, bounds);
      svg("title", {}, line).textContent = limit.label + " up to " + M.duration(limit.ms);
      const label = svg("text", {x: W - pad.right - 4, y: y(limit.ms) - 4, "text-anchor": "end"}, bounds);
      label.textContent = limit.label + " ≤ " + M.duration(limit.ms);
    });

    [["total_ms", "line-total", "Total"], ["ttfb_ms", "line-ttfb", "TTFT"]].forEach(function (series) {
      const key = series[0];
      const usable = parsed.filter(function (p) { return p.ok !== false && M.isNumber(p[key]); });
      const group = svg("g", {class: "series " + series[1]}, chart);
      svg("polyline", {
        class: series[1],
        "data-points": String(usable.length),
        points: usable.map(function (p) { return x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1); }).join(" "),
      }, group);
      usable.forEach(function (p) {
        const dot = svg("circle", {cx: x(p.t).toFixed(1), cy: y(p[key]).toFixed(1), r: 3}, group);
        svg("title", {}, dot).textContent =
          M.absoluteTime(p.checked_at) + " · " + series[2] + " " + M.duration(p[key]) + " · " + M.bucketLabel(p.status);
      });
    });

    const errors = svg("g", {class: "errors"}, chart);
    parsed.filter(function (p) { return p.ok === false; }).forEach(function (p) {
      const cx = x(p.t);
      // A failed probe: a faint band down the plot and a red mark at the top, its error in the tooltip.
      svg("line", {class: "error-band", x1: cx, x2: cx, y1: pad.top, y2: pad.top + plotH}, errors);
      const mark = svg("path", {
        class: "error-mark", d: "M" + (cx - 4) + "," + (pad.top - 2) + " l8,0 l-4,7 z",
      }, errors);
      const why = [p.http_status ? "HTTP " + p.http_status : "", p.error || ""].filter(Boolean).join(": ");
      svg("title", {}, mark).textContent = M.absoluteTime(p.checked_at) + " · failed" + (why ? " · " + why : "");
    });
    return chart;
  }

  function closeHistory() {
    const entry = openHistory ? entries.get(openHistory) : null;
    if (entry) {
      entry.row.setAttribute("aria-expanded", "false");
      if (entry.historyRow) entry.historyRow.remove();
      entry.historyRow = null;
    }
    openHistory = null;
  }

  function toggleHistory(id) {
    if (openHistory === id) {
      closeHistory();
      return;
    }
    closeHistory();
    const entry = entries.get(id);
    if (!entry) return;
    openHistory = id;
    const row = document.createElement("tr");
    row.className = "history-row";
    row.dataset.historyFor = id;
    const td = document.createElement("td");
    td.colSpan = COLUMNS;
    td.innerHTML =
      '<div class="history"><div class="history-head"><strong class="history-title"></strong>' +
      '<span class="legend"><span class="key key-total"></span>Total time <span class="key key-ttfb"></span>TTFT' +
      ' <span class="key key-limit"></span>Bucket limits <span class="key key-error"></span>Failed</span></div>' +
      '<div class="chart-box" data-state="loading"><p class="muted">Loading history…</p></div>' +
      '<div class="figures"></div></div>';
    td.querySelector(".history-title").textContent = id + " · last " + HISTORY_HOURS + " hours";
    row.appendChild(td);
    entry.historyRow = row;
    entry.row.after(row);
    entry.row.setAttribute("aria-expanded", "true");
    renderFigures(entry);
    loadHistory(id);
  }

  async function loadHistory(id) {
    const reply = await M.requestJSON(urls.history + "?model=" + encodeURIComponent(id) + "&hours=" + HISTORY_HOURS);
    const entry = entries.get(id);
    if (openHistory !== id || !entry || !entry.historyRow) return;
    const box = entry.historyRow.querySelector(".chart-box");
    const points = reply.ok && reply.body && Array.isArray(reply.body.points) ? reply.body.points : null;
    if (!points) {
      box.dataset.state = "error";
      box.innerHTML = '<p class="error"></p>';
      box.firstChild.textContent = "Could not load the history (" + reply.message + ")";
    } else if (!points.length) {
      box.dataset.state = "empty";
      box.innerHTML = '<p class="muted">No probes in the last ' + HISTORY_HOURS + ' hours.</p>';
    } else {
      box.dataset.state = "ready";
      box.replaceChildren(drawChart(id, points, box.clientWidth, Date.now()));
    }
  }

  // --- views and events --------------------------------------------------------------------------------------

  function setView(view) {
    const kanban = view === "kanban";
    tableView.hidden = kanban;
    kanbanView.hidden = !kanban;
    viewButtons.table.setAttribute("aria-pressed", String(!kanban));
    viewButtons.kanban.setAttribute("aria-pressed", String(kanban));
    root.dataset.view = kanban ? "kanban" : "table";
    try { localStorage.setItem("dashboard-view", root.dataset.view); } catch (error) { /* private mode */ }
  }

  document.querySelectorAll("#models-table th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () { setSort(th.dataset.sort); });
    th.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        setSort(th.dataset.sort);
      }
    });
  });

  tbody.addEventListener("click", function (event) {
    const row = event.target.closest("tr.model-row");
    if (row) toggleHistory(row.dataset.model);
  });
  tbody.addEventListener("keydown", function (event) {
    const row = event.target.closest("tr.model-row");
    if (row && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      toggleHistory(row.dataset.model);
    }
  });
  kanbanView.addEventListener("click", function (event) {
    const card = event.target.closest(".model-card");
    if (!card) return;
    setView("table");
    if (openHistory !== card.dataset.model) toggleHistory(card.dataset.model);
    const entry = entries.get(card.dataset.model);
    if (entry) entry.row.scrollIntoView({block: "center"});
  });

  search.addEventListener("input", refreshLayout);
  viewButtons.table.addEventListener("click", function () { setView("table"); });
  viewButtons.kanban.addEventListener("click", function () { setView("kanban"); });
  refreshButton.addEventListener("click", refreshNow);

  let savedView = "table";
  try { savedView = localStorage.getItem("dashboard-view") || "table"; } catch (error) { /* private mode */ }
  setView(savedView);
  // The page arrives with the statistics it was rendered with; polling takes over from there.
  const initial = document.getElementById("initial-stats");
  if (initial) applyStats(JSON.parse(initial.textContent));
  refreshLayout();
  loadPlatform();
  setInterval(poll, POLL_MS);
  setInterval(tick, 10000);
})();
