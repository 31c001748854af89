/* The probe log at /results/: filters and pages through /api/v1/monitoring/results. The page's own
 * query string mirrors the filters, so a filtered view can be bookmarked and survives a reload. */
(function () {
  "use strict";

  const M = window.Monitoring;
  const root = document.getElementById("results-page");
  const form = document.getElementById("filters");
  const body = document.getElementById("results-body");
  const empty = document.getElementById("results-empty");
  const failure = document.getElementById("results-error");
  const info = document.getElementById("page-info");
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  const FIELDS = ["model", "provider", "bucket", "since"];
  const COLUMNS = 10;
  const SINCE_HOURS = {"1h": 1, "24h": 24, "7d": 24 * 7};

  let page = 1;
  let pageSize = parseInt(root.dataset.pageSize, 10) || 25;
  let loading = 0;

  function readLocation() {
    const params = new URLSearchParams(location.search);
    FIELDS.forEach(function (name) {
      const select = form.elements[name];
      const value = params.get(name) || "";
      if (Array.prototype.some.call(select.options, function (o) { return o.value === value; })) select.value = value;
    });
    page = Math.max(1, parseInt(params.get("page"), 10) || 1);
    pageSize = Math.max(1, parseInt(params.get("page_size"), 10) || pageSize);
  }

  function writeLocation() {
    const params = new URLSearchParams();
    FIELDS.forEach(function (name) { if (form.elements[name].value) params.set(name, form.elements[name].value); });
    if (page > 1) params.set("page", String(page));
    if (pageSize !== (parseInt(root.dataset.pageSize, 10) || 25)) params.set("page_size", String(pageSize));
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  function apiQuery() {
    const params = new URLSearchParams();
    ["model", "provider", "bucket"].forEach(function (name) {
      if (form.elements[name].value) params.set(name, form.elements[name].value);
    });
    const hours = SINCE_HOURS[form.elements.since.value];
    if (hours) params.set("since", new Date(Date.now() - hours * 3600 * 1000).toISOString());
    params.set("page", String(page));
    params.set("page_size", String(pageSize));
    return params.toString();
  }

  function shortTime(iso) {
    const date = new Date(iso);
    if (isNaN(date.getTime())) return iso || "–";
    return date.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }

  function td(text, className) {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (className) cell.className = className;
    return cell;
  }

  function tokens(probe) {
    if (probe.prompt_tokens == null && probe.completion_tokens == null) return "–";
    return (probe.prompt_tokens == null ? "–" : probe.prompt_tokens) + " / " +
      (probe.completion_tokens == null ? "–" : probe.completion_tokens);
  }

  function renderRow(probe) {
    const row = document.createElement("tr");
    row.className = "probe-row";
    row.dataset.id = String(probe.id);
    row.dataset.model = probe.model;
    row.dataset.status = probe.status;
    row.dataset.kind = probe.kind;
    const when = td(shortTime(probe.checked_at));
    when.title = M.absoluteTime(probe.checked_at) + " (" + M.relativeTime(probe.checked_at) + ")";
    const model = td("");
    const id = document.createElement("span");
    id.className = "model-id";
    id.textContent = probe.model;
    model.appendChild(id);
    if (probe.kind !== "stream") {
      // A tool-call or structured-output probe: its row says so (the plain streaming probe is the default).
      const kind = document.createElement("span");
      kind.className = "probe-kind";
      kind.textContent = probe.kind === "tool_call" ? "tool call" : "structured output";
      model.append(" ", kind);
    }
    const bucket = td("");
    const badge = document.createElement("span");
    badge.className = "badge";
    M.setBadge(badge, probe.status, "");
    bucket.appendChild(badge);
    row.append(
      when, model, td(probe.provider), bucket,
      td(probe.http_status == null ? "–" : String(probe.http_status), "num"),
      td(M.duration(probe.ttfb_ms), "num"),
      td(M.duration(probe.total_ms), "num"),
      td(M.rate(probe.tokens_per_sec), "num"),
      td(tokens(probe), "num"),
      td(M.energy(probe.energy_wh), "num"),
    );
    if (!probe.error && !probe.error_type) return [row];
    // A failed probe says why on a line of its own under it: messages are too long for a column.
    row.classList.add("has-error");
    const detail = document.createElement("tr");
    detail.className = "probe-error";
    detail.dataset.for = String(probe.id);
    const message = td([probe.error_type, probe.error].filter(Boolean).join(": "), "error-cell");
    message.colSpan = COLUMNS;
    message.title = message.textContent;
    detail.appendChild(message);
    return [row, detail];
  }

  async function load() {
    const ticket = ++loading;
    root.dataset.loaded = "false";
    writeLocation();
    const reply = await M.requestJSON(root.dataset.resultsUrl + "?" + apiQuery());
    if (ticket !== loading) return; // a newer request superseded this one
    if (!reply.ok || !reply.body) {
      if (reply.status === 404 && page > 1) { // the filters shrank the log: back to its first page
        page = 1;
        load();
        return;
      }
      body.replaceChildren();
      failure.hidden = false;
      failure.textContent = "Could not load the probe log (" + reply.message + ")";
      info.textContent = "";
      prev.disabled = next.disabled = true;
      root.dataset.loaded = "true";
      return;
    }
    const data = reply.body;
    failure.hidden = true;
    body.replaceChildren.apply(body, [].concat.apply([], data.results.map(renderRow)));
    empty.hidden = data.results.length > 0;
    const first = (page - 1) * pageSize + 1;
    const last = first + data.results.length - 1;
    const noun = " probe" + (data.count === 1 ? "" : "s");
    info.textContent = !data.count ? "0 probes" : (last > first ? first + "–" + last : String(first)) + " of " + data.count + noun;
    prev.disabled = !data.previous;
    next.disabled = !data.next;
    root.dataset.count = String(data.count);
    root.dataset.page = String(page);
    root.dataset.loaded = "true";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    page = 1;
    load();
  });
  form.addEventListener("change", function () {
    page = 1;
    load();
  });
  form.addEventListener("reset", function () {
    setTimeout(function () { page = 1; load(); }, 0); // after the browser has cleared the fields
  });
  prev.addEventListener("click", function () { if (page > 1) { page -= 1; load(); } });
  next.addEventListener("click", function () { page += 1; load(); });

  readLocation();
  load();
})();
