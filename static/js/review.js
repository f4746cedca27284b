// Review queue keys: j/k move between items, a accepts, c then a number changes the label (on a
// multi-label project: c, then each label's key ticks or unticks it, Enter saves the set),
// s opens the note (Enter sends the item back, Shift+Enter a new line), Escape cancels.
// Every key presses a button of a server-rendered form; nothing here writes HTML.
(function () {
  "use strict";

  var current = -1;
  var changing = false;

  function entries() { return Array.prototype.slice.call(document.querySelectorAll("article.review-entry")); }

  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  function select(index) {
    var all = entries();
    if (!all.length) { return null; }
    current = Math.max(0, Math.min(index, all.length - 1));
    changing = false;
    all.forEach(function (entry, i) {
      entry.classList.toggle("current", i === current);
      entry.classList.remove("changing");
    });
    all[current].focus();
    all[current].scrollIntoView({ block: "nearest" });
    return all[current];
  }

  function press(entry, selector) {
    var button = entry && entry.querySelector(selector);
    if (button) { button.click(); }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") { event.preventDefault(); target.blur(); }
      else if (event.key === "Enter" && !event.shiftKey && target.name === "note" && target.form) {
        event.preventDefault();
        if (target.value.trim()) { target.form.requestSubmit(); }
      }
      return;
    }
    var entry = entries()[current] || null;
    if (event.key === "j") { select(current + 1); return; }
    if (event.key === "k") { select(current - 1); return; }
    if (!entry) { return; }
    var labelBox = changing && event.key.length === 1 ? Array.prototype.find.call(
      entry.querySelectorAll('form[data-action="change"] input[type="checkbox"][data-key]'),
      function (box) { return box.getAttribute("data-key") === event.key; }) : null;
    var labelButton = changing && event.key.length === 1 ? Array.prototype.find.call(
      entry.querySelectorAll('form[data-action="change"] button[data-key]'),
      function (button) { return button.getAttribute("data-key") === event.key; }) : null;
    if (labelBox) {  // a set: the key ticks or unticks its label; still changing until Enter
      event.preventDefault();
      labelBox.checked = !labelBox.checked;
    } else if (changing && event.key === "Enter" && entry.querySelector('form[data-action="change"] [data-save]')) {
      event.preventDefault();
      changing = false;
      entry.classList.remove("changing");
      press(entry, 'form[data-action="change"] [data-save]');
    } else if (labelButton) {  // after "c" a key is a label's key (the project's shortcuts) first
      event.preventDefault();
      changing = false;
      entry.classList.remove("changing");
      labelButton.click();
    } else if (event.key === "Escape") {
      changing = false;
      entry.classList.remove("changing");
    } else if (event.key === "a") {
      event.preventDefault();
      press(entry, 'form[data-action="accept"] button[type="submit"]');
    } else if (event.key === "c") {
      event.preventDefault();
      changing = true;
      entry.classList.add("changing");
    } else if (event.key === "s") {
      event.preventDefault();
      var note = entry.querySelector('form[data-action="send_back"] textarea[name="note"]');
      if (note) { note.focus(); }
    }
  });

  document.addEventListener("DOMContentLoaded", function () { select(0); });
  if (document.readyState !== "loading") { select(0); }
})();
