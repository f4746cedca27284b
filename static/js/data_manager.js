// Data manager keys: "/" focuses the search box, j/k move between rows, x selects the current
// row, Enter opens it. Checking "select all matching" greys out the row checkboxes (the action
// then applies to the whole filter). Nothing here writes HTML: rows come from the server.
(function () {
  "use strict";

  var current = -1;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.data-row")); }

  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  function focusRow(index) {
    var all = rows();
    if (!all.length) { return; }
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (row, i) { row.classList.toggle("current", i === current); });
    all[current].focus();
    all[current].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      // Escape leaves the box without clearing it (Chrome clears a search box on Escape).
      if (event.key === "Escape") { event.preventDefault(); event.target.blur(); }
      return;
    }
    var all = rows();
    if (event.key === "/") {
      var search = document.getElementById("data-q");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (event.key === "j") {
      focusRow(current + 1);
    } else if (event.key === "k") {
      focusRow(current - 1);
    } else if (event.key === "x" && all[current]) {
      var box = all[current].querySelector('input[name="item_ids"]');
      if (box && !box.disabled) { box.checked = !box.checked; }
    } else if (event.key === "Enter" && all[current]) {
      var link = all[current].querySelector("a");
      if (link) { window.location.href = link.href; }
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "all-matching") {
      var all = event.target.checked;
      document.querySelectorAll('input[name="item_ids"]').forEach(function (box) {
        box.disabled = all;
      });
    }
  });

  // A fresh result list (filters changed) starts again at the top.
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "data-results") {
      current = -1;
    }
  });
}());
