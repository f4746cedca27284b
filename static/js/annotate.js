// The annotator view: label keys, skip/undo/help, htmx prefetch of the next item, and an outbox
// that delivers every label exactly once (idempotency keys, retries, kept in localStorage).
// Without this script every button is a plain form that works with a page reload.
// A multi-label item card (data-multi-label) has toggles instead: label keys press and release
// them (aria-pressed), Enter submits the pressed set, "None of these" submits the empty set.
(function () {
  "use strict";

  var root = document.getElementById("annotator");
  if (!root || !window.htmx) { return; }

  var itemSlot = document.getElementById("item-slot");
  var nextSlot = document.getElementById("next-slot");
  var saveState = document.getElementById("save-state");
  var storeKey = "tapestry.outbox." + root.dataset.projectId + "." + root.dataset.userId;
  var csrf = (JSON.parse(document.body.getAttribute("hx-headers") || "{}"))["X-CSRF-Token"] || "";
  var outbox = loadOutbox();
  var sending = false;
  var shownAt = performance.now();
  var busy = false;        // an undo is on its way: keys wait for it
  var prefetching = null;  // the request for the next item, while one is in flight
  var retryDelay = 1000;
  var handled = [];        // items labelled or skipped here: never fetch them again as "next"

  // ------------------------------------------------------------------ items

  function currentCard() { return itemSlot.querySelector(".item-card"); }

  function cardsOnPage() {
    return Array.prototype.map.call(document.querySelectorAll(".item-card[data-item-id]"),
      function (el) { return el.dataset.itemId; });
  }

  function nextUrl() {
    var ids = cardsOnPage().concat(handled.slice(-20));
    return root.dataset.nextUrl + (ids.length ? "?exclude=" + ids.join(",") : "");
  }

  function prefetch() {
    if (prefetching || nextSlot.querySelector(".item-card") || !currentCard() ||
        !currentCard().dataset.itemId) { return prefetching; }
    return fetchInto(nextSlot);
  }

  // Keep the buffer clean: one "nothing left" card at most, never the item already on screen.
  function dropDuplicates() {
    var current = currentCard();
    var seen = {};
    if (current && current.dataset.itemId) { seen[current.dataset.itemId] = true; }
    var done = 0;
    Array.prototype.forEach.call(nextSlot.querySelectorAll(".item-card"), function (card) {
      var id = card.dataset.itemId;
      if (id ? seen[id] : done++ > 0) { card.remove(); } else if (id) { seen[id] = true; }
    });
  }

  function show(card) {
    itemSlot.replaceChildren(card);
    shownAt = performance.now();
    card.focus({ preventScroll: true });
    var text = card.querySelector(".item-text");
    if (text) { text.scrollTop = 0; }
  }

  function advance() {
    var next = nextSlot.querySelector(".item-card");
    if (next) {
      show(next);
      prefetch();
      return;
    }
    // Nothing prefetched yet (keys were faster than the network): wait for the request in
    // flight, or make one, showing a placeholder meanwhile.
    itemSlot.innerHTML = '<div class="item-card item-loading" aria-busy="true">Loading the next item…</div>';
    var pending = prefetching || fetchInto(nextSlot);
    pending.then(function () {
      if (nextSlot.querySelector(".item-card")) { advance(); } else { setTimeout(advance, 2000); }
    });
  }

  function fetchInto(target) {
    prefetching = htmx.ajax("GET", nextUrl(), { target: target, swap: "beforeend" }).then(
      function () { prefetching = null; dropDuplicates(); },
      function () { prefetching = null; });
    return prefetching;
  }

  // ------------------------------------------------------------------ outbox

  function loadOutbox() {
    try { return JSON.parse(localStorage.getItem(storeKey) || "[]"); } catch (e) { return []; }
  }

  function persist() {
    var durable = outbox.filter(function (entry) { return entry.durable; });
    try { localStorage.setItem(storeKey, JSON.stringify(durable)); } catch (e) { /* private mode */ }
  }

  function updateSaveState() {
    var pending = outbox.length;
    saveState.textContent = pending ? "Saving " + pending + "…" : "All labels saved";
    saveState.classList.toggle("pending", pending > 0);
  }

  function enqueue(entry) {
    outbox.push(entry);
    persist();
    updateSaveState();
    pump();
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function pump() {
    if (sending || !outbox.length) { return; }
    sending = true;
    var entry = outbox[0];
    fetch(entry.url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-CSRF-Token": csrf,
        "HX-Request": "true"
      },
      body: new URLSearchParams(entry.body || {}).toString()
    }).then(function (response) {
      return response.text().then(function (html) { return { response: response, html: html }; });
    }).then(function (result) {
      var status = result.response.status;
      if (status >= 500 || status === 408 || status === 429) { throw new Error("retry " + status); }
      outbox.shift();
      persist();
      sending = false;
      retryDelay = 1000;
      announce(result.response);
      if (result.response.ok) { handle(entry, result.html); }
      else if (entry.kind === "undo") { busy = false; }
      if (status === 401) { window.location.reload(); return; }
      updateSaveState();
      pump();
    }).catch(function () {
      sending = false;
      saveState.textContent = "Offline: " + outbox.length + " waiting, retrying…";
      setTimeout(pump, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    });
  }

  function announce(response) {
    var trigger = response.headers.get("HX-Trigger");
    if (!trigger) { return; }
    try {
      var events = JSON.parse(trigger);
      Object.keys(events).forEach(function (name) {
        document.dispatchEvent(new CustomEvent(name, { detail: events[name] }));
      });
    } catch (e) { /* not JSON: ignore */ }
  }

  function handle(entry, html) {
    if (entry.kind === "undo") {
      var template = document.createElement("template");
      template.innerHTML = html.trim();
      var card = template.content.querySelector(".item-card");
      var current = currentCard();
      if (current && current.dataset.itemId) { nextSlot.prepend(current); }
      if (card) {
        handled = handled.filter(function (id) { return id !== card.dataset.itemId; });
        show(card);
        htmx.process(card);
      }
      replaceById(html, ["batch-progress", "recent-labels"]);
      busy = false;
      return;
    }
    replaceById(html, ["batch-progress", "recent-labels"]);
  }

  function replaceById(html, ids) {
    var template = document.createElement("template");
    template.innerHTML = html;
    ids.forEach(function (id) {
      var fresh = template.content.getElementById(id);
      var old = document.getElementById(id);
      if (fresh && old) {
        old.replaceWith(fresh);
        htmx.process(fresh);
      }
    });
  }

  // ------------------------------------------------------------------ actions

  function label(labelId) {
    var card = currentCard();
    if (!card || !card.dataset.itemId) { return; }
    var button = card.querySelector('.label-btn[value="' + labelId + '"]');
    if (button) { button.classList.add("pressed"); }
    remember(card.dataset.itemId);
    enqueue({
      kind: "label",
      durable: true,
      url: card.dataset.labelUrl,
      body: {
        label_id: String(labelId),
        duration_ms: String(Math.round(performance.now() - shownAt)),
        key: uuid()
      }
    });
    advance();
  }

  // ------------------------------------------------------------------ label sets

  function isMultiLabel(card) { return !!card && card.hasAttribute("data-multi-label"); }

  function toggle(button) {
    var on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    setHint(button.closest(".item-card"), "");
  }

  function pressedIds(card) {
    return Array.prototype.filter.call(card.querySelectorAll(".label-toggle"), function (b) {
      return b.getAttribute("aria-pressed") === "true";
    }).map(function (b) { return b.dataset.labelId; });
  }

  function setHint(card, text) {
    var hint = card && card.querySelector("[data-set-hint]");
    if (hint) { hint.textContent = text; }
  }

  // Enter on nothing pressed is "none of these" only where that is a set on offer (the model's
  // proposal, or the set an undo brought back); on a random pick it asks for an explicit answer.
  function submitPressed() {
    var card = currentCard();
    if (!card || !card.dataset.itemId) { return; }
    var ids = pressedIds(card);
    if (!ids.length && !card.hasAttribute("data-set-preset")) {
      var none = card.querySelector(".none-of-these[data-key]");
      setHint(card, "Nothing is selected. Toggle the labels that apply" +
        (none ? ", or press " + none.dataset.key + " for None of these." : ", or choose None of these."));
      return;
    }
    labelSet(ids);
  }

  function labelSet(ids) {
    var card = currentCard();
    if (!card || !card.dataset.itemId) { return; }
    remember(card.dataset.itemId);
    var body = ids.map(function (id) { return ["label_ids", String(id)]; });
    body.push(["duration_ms", String(Math.round(performance.now() - shownAt))]);
    body.push(["key", uuid()]);
    enqueue({ kind: "label", durable: true, url: card.dataset.labelUrl, body: body });
    advance();
  }

  function multiLabelKey(card, key, event) {
    if (key === "Enter") {
      // Enter on a toggle submits the set too (the toggle has focus after a click); on the
      // other controls it keeps its own meaning.
      var control = event.target.closest && event.target.closest("button, a, summary, select");
      if (control && !control.classList.contains("label-toggle")) { return; }
      submitPressed();
      event.preventDefault();
      return;
    }
    var selector = '[data-key="' + CSS.escape(key) + '"]';
    var button = card.querySelector(".label-toggle" + selector);
    if (button) { toggle(button); event.preventDefault(); return; }
    if (card.querySelector(".none-of-these" + selector)) { labelSet([]); event.preventDefault(); }
  }

  // Until the server has the label, the item's lease still looks held: keep it out of "next".
  function remember(itemId) {
    handled.push(itemId);
    if (handled.length > 40) { handled = handled.slice(-20); }
  }

  function skip() {
    var card = currentCard();
    if (!card || !card.dataset.itemId) { return; }
    remember(card.dataset.itemId);
    enqueue({ kind: "skip", durable: true, url: card.dataset.skipUrl, body: {} });
    advance();
  }

  function undo() {
    busy = true;
    enqueue({ kind: "undo", durable: false, url: root.dataset.undoUrl, body: {} });
  }

  function submitBatch() {
    enqueue({ kind: "submit", durable: false, url: root.dataset.submitUrl, body: {} });
  }

  function toggleDialog(id) {
    var dialog = document.getElementById(id);
    if (!dialog) { return; }
    if (dialog.open) { dialog.close(); } else { dialog.showModal(); }
  }

  // ------------------------------------------------------------------ wiring

  function typing(target) {
    return target && (target.isContentEditable ||
      /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    var openDialog = document.querySelector("dialog[open]");
    if (openDialog) {
      if ((key === "?" && openDialog.id === "help-dialog") ||
          (key === "g" && openDialog.id === "guidelines-dialog")) {
        openDialog.close();
        event.preventDefault();
      }
      return;
    }
    if (typing(event.target) || event.repeat) { return; }
    if (key === "?") { toggleDialog("help-dialog"); event.preventDefault(); return; }
    if (key === "g") { toggleDialog("guidelines-dialog"); event.preventDefault(); return; }
    if (busy) { return; }
    if (key === "s") { skip(); event.preventDefault(); return; }
    if (key === "z") { undo(); event.preventDefault(); return; }
    var card = currentCard();
    if (!card) { return; }
    if (isMultiLabel(card)) { multiLabelKey(card, key, event); return; }
    if (key === "Enter") {
      // Enter on a focused control keeps its own meaning; elsewhere it accepts the guess.
      if (event.target.closest && event.target.closest("button, a, summary, select")) { return; }
      if (card.dataset.guessLabelId) { label(card.dataset.guessLabelId); event.preventDefault(); }
      return;
    }
    var button = card.querySelector('.label-btn[data-key="' + CSS.escape(key) + '"]');
    if (button) { label(button.value); event.preventDefault(); }
  });

  // Clicks on the plain forms go through the same paths as keys.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var action = form.dataset ? form.dataset.action : null;
    if (!action || !root.contains(form)) { return; }
    event.preventDefault();
    if (busy && action !== "submit") { return; }
    if (action === "label" && event.submitter) { label(event.submitter.value); }
    else if (action === "label-set") { submitPressed(); }
    else if (action === "none-of-these") { labelSet([]); }
    else if (action === "skip") { skip(); }
    else if (action === "undo") { undo(); }
    else if (action === "submit") { submitBatch(); }
  });

  document.addEventListener("click", function (event) {
    var toggler = event.target.closest(".label-toggle");
    if (toggler && root.contains(toggler)) {
      if (!busy && toggler.closest(".item-card") === currentCard()) { toggle(toggler); }
      return;
    }
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) { toggleDialog(opener.dataset.openDialog); return; }
    var dismiss = event.target.closest("[data-dismiss-queue]");
    if (dismiss) {
      document.getElementById("queue-seen").value = dismiss.dataset.dismissQueue;
      var banner = dismiss.closest(".banner");
      if (banner) { banner.remove(); }
    }
  });

  // Give prefetched items back when the page goes away (the current one stays held for a reload).
  window.addEventListener("pagehide", function () {
    var ids = Array.prototype.map.call(nextSlot.querySelectorAll(".item-card[data-item-id]"),
      function (el) { return el.dataset.itemId; });
    if (!ids.length || !navigator.sendBeacon) { return; }
    var form = new FormData();
    form.append("csrf_token", csrf);
    form.append("item_ids", ids.join(","));
    navigator.sendBeacon(root.dataset.releaseUrl, form);
  });

  updateSaveState();
  pump();       // labels left over from a previous visit go first
  prefetch();
  var first = currentCard();
  if (first) { first.focus({ preventScroll: true }); }
})();
