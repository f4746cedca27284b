// Tapestry's small shared behaviour: toasts for htmx errors. No inline scripts (see base.html).
(function () {
  "use strict";

  function showToast(message, level) {
    var box = document.getElementById("toasts");
    if (!box || !message) { return; }
    var toast = document.createElement("div");
    toast.className = "toast toast-" + (level || "info");
    toast.setAttribute("role", level === "error" ? "alert" : "status");
    toast.textContent = message; // text, never HTML
    box.appendChild(toast);
    setTimeout(function () { toast.remove(); }, 6000);
  }
  window.tapestryToast = showToast;

  // Server-side errors for htmx requests arrive as HX-Trigger: {"toast": {...}}.
  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    showToast(detail.message, detail.level);
  });

  // A failure without a toast header (proxy error, network) still says something.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail && event.detail.xhr;
    if (xhr && !xhr.getResponseHeader("HX-Trigger")) {
      showToast("Request failed (" + xhr.status + ").", "error");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    showToast("The server could not be reached.", "error");
  });
})();
