// Import preview: shows the first rows of the chosen file and how its columns map, before the
// upload. Reads only the first 256 KB in the browser; the server still validates the whole file.
// File content is only ever written with textContent (never as HTML).
(function () {
  "use strict";

  var form = document.querySelector('form[action$="/import"]');
  if (!form) { return; }
  var fileInput = form.querySelector('input[type="file"][name="file"]');
  var formatSelect = form.querySelector('select[name="format"]');
  var preview = document.getElementById("import-preview");
  if (!fileInput || !preview) { return; }
  // Column names per role come from the server (app.domain.imports.COLUMN_CANDIDATES), so the
  // preview proposes what the server would; id columns also match "*_id" (msg_id, ticket-id).
  var CANDIDATES = JSON.parse(preview.dataset.candidates || "{}");
  var FIELDS = {
    text_column: CANDIDATES.text || [],
    label_column: CANDIDATES.label || [],
    id_column: CANDIDATES.id || [],
    split_column: CANDIDATES.split || []
  };
  var ID_SUFFIX = /[_\-\s]id$/;
  var ROWS = 5;
  var parsed = null;

  function formatOf(file) {
    var chosen = formatSelect ? formatSelect.value : "auto";
    if (chosen && chosen !== "auto") { return chosen; }
    var name = (file.name || "").toLowerCase();
    if (/\.(jsonl|ndjson)$/.test(name)) { return "jsonl"; }
    if (/\.(tsv|tab|txt)$/.test(name)) { return "tsv"; }
    return "csv";
  }

  // RFC 4180-style CSV: quoted fields may hold commas, quotes ("") and newlines.
  function parseCsv(textValue, limit) {
    var rows = [], row = [], field = "", quoted = false, i = 0;
    while (i < textValue.length && rows.length <= limit) {
      var ch = textValue[i];
      if (quoted) {
        if (ch === '"' && textValue[i + 1] === '"') { field += '"'; i += 2; continue; }
        if (ch === '"') { quoted = false; i++; continue; }
        field += ch; i++; continue;
      }
      if (ch === '"' && field === "") { quoted = true; i++; continue; }
      if (ch === ",") { row.push(field); field = ""; i++; continue; }
      if (ch === "\r") { i++; continue; }
      if (ch === "\n") { row.push(field); rows.push(row); row = []; field = ""; i++; continue; }
      field += ch; i++;
    }
    if (field !== "" || row.length) { row.push(field); rows.push(row); }
    return rows;
  }

  // A JSONL value as the preview shows it: lists and objects as JSON (a multi-label row's
  // ["billing", "bug"] stays visibly a list of two names, [] visibly empty), missing as empty.
  function cell(value) {
    if (value === undefined) { return ""; }
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function parse(textValue, format) {
    if (format === "jsonl") {
      var records = [], columns = [];
      textValue.split("\n").forEach(function (line) {
        if (!line.trim() || records.length >= ROWS) { return; }
        try {
          var value = JSON.parse(line);
          if (value && typeof value === "object" && !Array.isArray(value)) {
            Object.keys(value).forEach(function (k) { if (columns.indexOf(k) < 0) { columns.push(k); } });
            records.push(value);
          }
        } catch (e) { records.push({ "(not JSON)": line.slice(0, 120) }); }
      });
      return { columns: columns, rows: records.map(function (r) {
        return columns.map(function (c) { return cell(r[c]); });
      }) };
    }
    var table = format === "tsv"
      ? textValue.split("\n").slice(0, ROWS + 1).map(function (l) { return l.replace(/\r$/, "").split("\t"); })
      : parseCsv(textValue, ROWS);
    var header = (table[0] || []).map(function (h) { return h.trim(); });
    return { columns: header, rows: table.slice(1, ROWS + 1) };
  }

  function looksLike(name, column) {
    var lowered = column.trim().toLowerCase();
    if (FIELDS[name].indexOf(lowered) >= 0) { return true; }
    if (name !== "id_column" || !ID_SUFFIX.test(lowered)) { return false; }
    return FIELDS.label_column.indexOf(lowered.replace(ID_SUFFIX, "")) < 0;
  }

  // Detection only proposes: it fills a field that still holds the page's default (visible in the
  // preview before anything is sent) and never replaces a name someone typed.
  function proposals() {
    var proposed = {}, taken = [];
    Object.keys(FIELDS).forEach(function (name) {
      var match = parsed.columns.find(function (c) {
        return taken.indexOf(c) < 0 && looksLike(name, c);
      });
      if (match) { proposed[name] = match; taken.push(match); }
    });
    return proposed;
  }

  function suggest() {
    var proposed = proposals();
    Object.keys(FIELDS).forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]');
      if (!input || input.dataset.default === undefined) { return; }
      if (input.value && parsed.columns.indexOf(input.value) >= 0) { return; }
      if (proposed[name]) { input.value = proposed[name]; }
    });
  }

  function mapping() {
    var roles = {};
    Object.keys(FIELDS).forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]');
      if (input && input.value) { roles[input.value] = name.replace("_column", ""); }
    });
    return roles;
  }

  function el(tag, textValue, className) {
    var node = document.createElement(tag);
    if (textValue !== undefined) { node.textContent = textValue; }
    if (className) { node.className = className; }
    return node;
  }

  function render() {
    preview.replaceChildren();
    if (!parsed) { return; }
    var roles = mapping();
    preview.appendChild(el("h2", "Preview of the first rows", "tiny-heading"));
    var proposed = proposals();
    Object.keys(FIELDS).forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]');
      if (!input || !input.value || parsed.columns.indexOf(input.value) >= 0) { return; }
      var problem = el("p", "No column named “" + input.value + "”. Columns found: " +
        parsed.columns.join(", ") + ". The import will be refused unless you change it.", "error");
      var better = proposed[name];
      if (better && better !== input.value) {
        var use = el("button", "Use “" + better + "”", "link propose");
        use.type = "button";
        use.addEventListener("click", function () { input.value = better; render(); });
        problem.appendChild(document.createTextNode(" "));
        problem.appendChild(use);
      }
      preview.appendChild(problem);
    });
    var table = el("table", undefined, "table compact preview-table");
    var head = el("tr");
    parsed.columns.forEach(function (c) {
      var th = el("th", roles[c] ? c + " → " + roles[c] : c, roles[c] ? "mapped" : "");
      head.appendChild(th);
    });
    table.appendChild(el("thead")).appendChild(head);
    var body = el("tbody");
    parsed.rows.forEach(function (row) {
      var tr = el("tr");
      parsed.columns.forEach(function (_c, i) { tr.appendChild(el("td", row[i] === undefined ? "" : row[i])); });
      body.appendChild(tr);
    });
    table.appendChild(body);
    preview.appendChild(table);
    preview.appendChild(el("p", "Columns not mapped are kept as item metadata.", "muted small"));
  }

  function load() {
    var file = fileInput.files && fileInput.files[0];
    if (!file) { parsed = null; render(); return; }
    file.slice(0, 256 * 1024).text().then(function (textValue) {
      parsed = parse(textValue.replace(/^\ufeff/, ""), formatOf(file));
      suggest();
      render();
    });
  }

  fileInput.addEventListener("change", load);
  if (formatSelect) { formatSelect.addEventListener("change", load); }
  form.addEventListener("input", function (event) {
    if (event.target && event.target.dataset) { delete event.target.dataset.default; }
    if (event.target !== fileInput && parsed) { render(); }
  });
})();
