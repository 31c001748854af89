/* Shared by the dashboard and the probe log: formatting and same-origin JSON calls. No build step. */
(function () {
  "use strict";

  const BUCKETS = ["smooth", "available", "congestion", "lagging", "unknown"];
  const BUCKET_LABELS = {
    smooth: "Smooth", available: "Available", congestion: "Congestion", lagging: "Lagging", unknown: "Unknown",
  };
  // A model's state (monitoring/states.py) when it says more than the bucket: a failing model is "Down",
  // one never probed "No data" — not both "Unknown".
  const STATE_LABELS = {
    down: "Down", rate_limited: "Rate limited", maintenance: "Maintenance", unknown: "No data",
  };

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** fetch() with the session; resolves to {ok, status, body} and never throws on HTTP errors. */
  async function requestJSON(url, options) {
    const init = Object.assign({credentials: "same-origin", headers: {Accept: "application/json"}}, options || {});
    if (init.method && init.method !== "GET") {
      init.headers = Object.assign({"Content-Type": "application/json", "X-CSRFToken": csrfToken()}, init.headers);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return {ok: false, status: 0, body: null, message: "Network error: " + error.message};
    }
    let body = null;
    try { body = await response.json(); } catch (error) { body = null; }
    const message = body && body.error && body.error.message ? body.error.message : "HTTP " + response.status;
    return {ok: response.ok, status: response.status, body: body, message: response.ok ? "" : message};
  }

  function isNumber(value) {
    return typeof value === "number" && isFinite(value);
  }

  function percent(value) {
    if (!isNumber(value)) return "–";
    // 100 and 50 read as "100 %" and "50 %"; 99.96 stays "99.96 %", never a rounded-up 100.
    const text = value > 99.9 && value < 100 ? value.toFixed(2) : value.toFixed(1).replace(/\.0$/, "");
    return text + " %";
  }

  function relativeTime(iso, now) {
    if (!iso) return "never";
    const then = Date.parse(iso);
    if (isNaN(then)) return "–";
    const seconds = Math.round(((now || Date.now()) - then) / 1000);
    if (seconds < 5) return "just now";
    if (seconds < 60) return seconds + " s ago";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h ago";
    return Math.floor(hours / 24) + " d ago";
  }

  function absoluteTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function bucketLabel(status) {
    return BUCKET_LABELS[status] || "…";
  }

  /** A status badge: the bucket's colour, named by the model's state when that says more (its reason in
   * the tooltip); else an error probe says what went wrong in its tooltip. */
  function setBadge(badge, status, detail, state, reason) {
    const known = BUCKETS.indexOf(status) >= 0 ? status : "pending";
    badge.dataset.status = known;
    const stateLabel = state ? STATE_LABELS[state] : undefined;
    if (state) badge.dataset.state = state; else delete badge.dataset.state;
    badge.textContent = stateLabel || bucketLabel(known);
    const tip = stateLabel && reason ? reason : detail;
    if (tip) badge.title = tip; else badge.removeAttribute("title");
  }

  window.Monitoring = {
    BUCKETS: BUCKETS,
    BUCKET_LABELS: BUCKET_LABELS,
    STATE_LABELS: STATE_LABELS,
    requestJSON: requestJSON,
    isNumber: isNumber,
    // Figures with units are written the one way every page writes them (spignosapi/format.js).
    duration: window.Format.duration,
    rate: window.Format.rate,
    percent: percent,
    energy: window.Format.energy,
    relativeTime: relativeTime,
    absoluteTime: absoluteTime,
    bucketLabel: bucketLabel,
    setBadge: setBadge,
  };
})();
