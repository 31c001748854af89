/* The status page is complete without this script; with it, the page reloads its content in place every
   data-poll-seconds (the server renders it: one source of truth, no client-side templates). */
(function () {
  "use strict";
  const root = document.getElementById("status-root");
  if (!root || !window.fetch || !window.DOMParser) return;
  const seconds = Number(root.dataset.pollSeconds) || 60;

  function refresh() {
    if (document.hidden) return;
    fetch(window.location.pathname, {headers: {Accept: "text/html"}, cache: "no-store"})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("status-root");
        if (fresh) root.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* keep what is shown; the next poll tries again */ });
  }

  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
})();
