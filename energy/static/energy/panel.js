/*
 * The dashboard's energy and cost panel: totals, a chart by day and one by model, each with its low–high
 * range, from GET /api/v1/energy/summary (the browser's session), of every team and key or of the team or key
 * chosen in the filters (their choices from GET /api/v1/energy/filters). Renders into <section id="energy-panel">;
 * no library, no build step. Include it with templates/energy_panel.html.
 */
(function () {
  "use strict";

  const API = "/api/v1/energy/summary";
  const FILTERS_API = "/api/v1/energy/filters";
  const RANGES = [
    { days: 1, label: "24 h" },
    { days: 7, label: "7 days" },
    { days: 30, label: "30 days" },
    { days: 90, label: "90 days" },
  ];
  const POLL_MS = 60000;
  const NO_MODEL_HELP =
    "Requests that ended before any model answered (every model of the chain failed, or the " +
    "call was refused).";
  const SVG_NS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  // Units, rounding and ranges are written the way every page writes them (spignosapi/format.js).
  const F = window.Format;
  const number = F.number;
  const ENERGY_UNITS = F.ENERGY_UNITS;

  function money(value) {
    if (value === 0) return "$0";
    if (value < 0.01) return "$" + value.toPrecision(2);
    return "$" + value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  function sinceFor(days) {
    const now = new Date();
    if (days === 1) return new Date(now.getTime() - 86400000).toISOString();
    // Whole UTC days: today and the days before it.
    const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - (days - 1)));
    return isoDay(start);
  }

  function dayList(days) {
    const out = [];
    const now = new Date();
    for (let i = days - 1; i >= 0; i -= 1) {
      out.push(isoDay(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - i))));
    }
    return out;
  }

  function query(params) {
    // Empty values (a filter left at "All") are left out.
    return Object.entries(params)
      .filter(([, value]) => value)
      .map(([name, value]) => name + "=" + encodeURIComponent(value))
      .join("&");
  }

  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : "HTTP " + response.status;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function fetchSummary(groupBy, since, filters) {
    return fetchJSON(API + "?" + query({ group_by: groupBy, since: since, ...filters }));
  }

  // --- the team and key filters: their choices are the teams and keys the viewer may see ---------------------

  function filterSelect(name, label, options) {
    const select = el("select", { name: name, "aria-label": label }, [el("option", { value: "", text: "All " + label.toLowerCase() })]);
    for (const [value, text] of options) select.append(el("option", { value: value, text: text }));
    return el("label", { class: "energy-filter" }, [label + " ", select]);
  }

  async function loadFilters(holder, onChange) {
    const choices = await fetchJSON(FILTERS_API);
    const teams = filterSelect("team", "Teams", choices.teams.map((t) => [t, t]));
    const keys = filterSelect("key", "Keys", choices.keys.map((k) => [k.prefix, `${k.name} (${k.prefix}…)`]));
    // A viewer with one key and no team has nothing to choose between.
    teams.hidden = choices.teams.length === 0;
    keys.hidden = choices.keys.length < 2;
    holder.replaceChildren(teams, keys);
    holder.querySelectorAll("select").forEach((select) => select.addEventListener("change", onChange));
  }

  function chosenFilters(holder) {
    const out = {};
    holder.querySelectorAll("select").forEach((select) => {
      if (select.value) out[select.name] = select.value;
    });
    return out;
  }

  // --- charts -----------------------------------------------------------------------------------------------

  function dayChart(rows, days) {
    // Bars of central energy per day, with a whisker from low to high.
    const byDay = new Map(rows.map((r) => [r.group, r]));
    const labels = days === 1 ? rows.map((r) => r.group) : dayList(days);
    const data = labels.map((day) => byDay.get(day) || { group: day, energy_wh: 0, energy_wh_low: 0, energy_wh_high: 0 });
    const width = 640;
    const height = 180;
    const pad = { left: 48, right: 8, top: 10, bottom: 24 };
    const max = Math.max(1e-9, ...data.map((d) => d.energy_wh_high));
    const [factor, suffix] = F.unitFor(max, ENERGY_UNITS);
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const step = plotW / Math.max(1, data.length);
    const y = (v) => pad.top + plotH - (v / max) * plotH;
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "energy-chart",
      role: "img",
      "aria-label": "Energy per day, central value with its low–high range",
    });
    for (const frac of [0, 0.5, 1]) {
      const gy = y(max * frac);
      chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: gy, y2: gy, class: "grid" }));
      const label = svg("text", { x: pad.left - 6, y: gy + 4, class: "axis", "text-anchor": "end" });
      label.textContent = number((max * frac) / factor) + " " + suffix;
      chart.append(label);
    }
    data.forEach((d, i) => {
      const x = pad.left + i * step;
      const barW = Math.max(2, step * 0.6);
      const cx = x + step / 2;
      const bar = svg("rect", {
        x: cx - barW / 2,
        y: y(d.energy_wh),
        width: barW,
        height: Math.max(0, pad.top + plotH - y(d.energy_wh)),
        class: "bar",
      });
      const title = svg("title");
      const text = F.energyRange(d.energy_wh_low, d.energy_wh, d.energy_wh_high);
      title.textContent = `${d.group}: ${text.central} (${text.range})`;
      bar.append(title);
      chart.append(bar);
      if (d.energy_wh_high > d.energy_wh_low) {
        chart.append(svg("line", { x1: cx, x2: cx, y1: y(d.energy_wh_low), y2: y(d.energy_wh_high), class: "whisker" }));
        for (const v of [d.energy_wh_low, d.energy_wh_high]) {
          chart.append(svg("line", { x1: cx - barW / 4, x2: cx + barW / 4, y1: y(v), y2: y(v), class: "whisker" }));
        }
      }
      const every = Math.ceil(data.length / 10);
      if (i % every === 0) {
        const label = svg("text", { x: cx, y: height - 6, class: "axis", "text-anchor": "middle" });
        label.textContent = d.group.length === 10 ? d.group.slice(5) : d.group;
        chart.append(label);
      }
    });
    return chart;
  }

  function modelTable(rows) {
    // One row per model: a bar for the central energy, a band for low–high, then CO2e and cost.
    const max = Math.max(1e-9, ...rows.map((r) => r.energy_wh_high));
    const body = el("tbody");
    for (const r of rows) {
      const energy = F.energyRange(r.energy_wh_low, r.energy_wh, r.energy_wh_high);
      const co2e = F.massRange(r.co2e_g_low, r.co2e_g, r.co2e_g_high);
      const track = el("div", { class: "energy-track", title: `${energy.central} (${energy.range})` }, [
        el("span", {
          class: "energy-band",
          style: `left:${(r.energy_wh_low / max) * 100}%;width:${((r.energy_wh_high - r.energy_wh_low) / max) * 100}%`,
        }),
        el("span", { class: "energy-bar", style: `width:${(r.energy_wh / max) * 100}%` }),
      ]);
      const estimated = r.estimated_requests
        ? el("span", { class: "energy-estimated", title: `${r.estimated_requests} of ${r.requests} requests estimated`, text: "est." })
        : "";
      // Usage booked without a model: the call ended before any model answered (every model of its chain
      // failed, or it was refused); the row says so instead of an unexplained "(none)".
      const name = r.group
        ? el("span", { class: "model-id", title: r.group, text: r.group })
        : el("span", { class: "no-model", title: NO_MODEL_HELP, text: "No model answered" });
      const range = (text) => el("div", { class: "muted range", text: text });
      body.append(
        el("tr", { "data-group": r.group || "" }, [
          el("td", { "data-label": "Model" }, [name, " ", estimated]),
          el("td", { class: "num", "data-label": "Requests", text: r.requests.toLocaleString() }),
          el("td", { class: "energy-cell", "data-label": "Energy range" }, [track]),
          el("td", { class: "num", "data-label": "Energy" }, [energy.central, energy.range !== energy.central ? range(energy.range) : ""]),
          el("td", { class: "num", "data-label": "CO₂e" }, [co2e.central, co2e.range !== co2e.central ? range(co2e.range) : ""]),
          el("td", { class: "num", "data-label": "Cost", text: money(r.cost_usd) }),
        ])
      );
    }
    const head = el("thead", {}, [
      el("tr", {}, [
        el("th", { scope: "col", text: "Model" }),
        el("th", { scope: "col", class: "num", text: "Requests" }),
        el("th", { scope: "col", text: "Energy (bar: central, band: low–high)" }),
        el("th", { scope: "col", class: "num", text: "Energy" }),
        el("th", { scope: "col", class: "num", text: "CO₂e" }),
        el("th", { scope: "col", class: "num", text: "Cost" }),
      ]),
    ]);
    return el("table", { class: "energy-models" }, [head, body]);
  }

  function totalsBlock(totals) {
    const energy = F.energyRange(totals.energy_wh_low || 0, totals.energy_wh || 0, totals.energy_wh_high || 0);
    const co2e = F.massRange(totals.co2e_g_low || 0, totals.co2e_g || 0, totals.co2e_g_high || 0);
    const requests = totals.requests || 0;
    const estimatedShare = requests ? Math.round(((totals.estimated_requests || 0) / requests) * 100) : 0;
    const tile = (name, value, sub, key) =>
      el("div", { class: "energy-total", "data-total": key }, [
        el("div", { class: "muted", text: name }),
        el("div", { class: "value", text: value }),
        el("div", { class: "muted range", text: sub }),
      ]);
    return el("div", { class: "energy-totals" }, [
      tile("Requests", requests.toLocaleString(), estimatedShare ? `${estimatedShare}% estimated` : "measured coefficients", "requests"),
      // A range whose ends print as the central value says nothing more: it is left out.
      tile("Energy", energy.central, energy.range !== energy.central ? energy.range : "", "energy"),
      tile("CO₂e", co2e.central, co2e.range !== co2e.central ? co2e.range : "", "co2e"),
      tile("Cost", money(totals.cost_usd || 0), `${(totals.prompt_tokens || 0).toLocaleString()} in · ${(totals.completion_tokens || 0).toLocaleString()} out tokens`, "cost"),
    ]);
  }

  // --- the panel ----------------------------------------------------------------------------------------------

  function start(panel) {
    let days = Number(localStorage.getItem("energy-range-days")) || 7;
    if (!RANGES.some((r) => r.days === days)) days = 7;
    let timer = null;

    panel.querySelectorAll(":scope > :not(h2)").forEach((node) => node.remove());
    const title = panel.querySelector("h2") || el("h2", { text: "Energy and cost" });
    if (!title.parentNode) panel.prepend(title);
    const buttons = RANGES.map((r) =>
      el("button", { type: "button", "data-days": String(r.days), "aria-pressed": String(r.days === days), text: r.label })
    );
    const csv = el("a", { class: "energy-csv", href: "#", text: "CSV" });
    const filters = el("div", { class: "energy-filters" });
    const head = el("div", { class: "energy-head" }, [
      el("div", { class: "segmented", role: "group", "aria-label": "Energy period" }, buttons),
      filters,
      csv,
    ]);
    const status = el("p", { class: "muted energy-status", role: "status", "aria-live": "polite", text: "Loading…" });
    const content = el("div", { class: "energy-content" });
    title.after(head, status, content);

    buttons.forEach((button) =>
      button.addEventListener("click", () => {
        days = Number(button.dataset.days);
        localStorage.setItem("energy-range-days", String(days));
        buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
        load();
      })
    );

    let latest = 0;  // the newest load: an older one that answers later (a filter changed meanwhile) is dropped

    async function load() {
      const mine = ++latest;
      const since = sinceFor(days);
      const chosen = chosenFilters(filters);
      csv.href = API + "?" + query({ group_by: "model", format: "csv", since: since, ...chosen });
      panel.setAttribute("aria-busy", "true");
      try {
        const [byDay, byModel] = await Promise.all([
          fetchSummary("day", since, chosen),
          fetchSummary("model", since, chosen),
        ]);
        if (mine !== latest) return;
        const grid = byModel.grid_g_co2e_per_kwh;
        content.replaceChildren(
          totalsBlock(byModel.totals),
          el("h3", { text: "By day" }),
          dayChart(byDay.rows, days),
          el("h3", { text: "By model" }),
          byModel.rows.length ? modelTable(byModel.rows) : el("p", { class: "muted", text: "No usage in this period." })
        );
        status.textContent = `Ranges are low–high estimates; CO₂e at ${number(grid)} g/kWh for new requests.`;
        panel.dataset.loaded = "true";
      } catch (err) {
        if (mine !== latest) return;
        status.textContent =
          err.status === 401 || err.status === 403 ? "Sign in to see energy and cost." : "Energy summary unavailable: " + err.message;
        panel.dataset.loaded = "error";
      } finally {
        if (mine === latest) panel.removeAttribute("aria-busy");
      }
    }

    function schedule() {
      clearInterval(timer);
      timer = setInterval(() => {
        if (!document.hidden) load();
      }, POLL_MS);
    }

    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) load();
    });
    load();
    schedule();
    loadFilters(filters, load).catch(() => filters.replaceChildren());  // without them, the panel shows everything
  }

  function init() {
    const panel = document.getElementById("energy-panel");
    if (panel) start(panel);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
