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
  var FIELDS = {
    text_column: ["text", "content", "body", "sentence", "message", "document"],
    label_column: ["label", "category", "class", "topic", "target"],
    id_column: ["id", "external_id", "uid", "key", "ref", "reference"],
    split_column: ["split", "set", "subset", "fold"]
  };
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
        return columns.map(function (c) { return r[c] === undefined ? "" : String(r[c]); });
      }) };
    }
    var table = format === "tsv"
      ? textValue.split("\n").slice(0, ROWS + 1).map(function (l) { return l.replace(/\r$/, "").split("\t"); })
      : parseCsv(textValue, ROWS);
    var header = (table[0] || []).map(function (h) { return h.trim(); });
    return { columns: header, rows: table.slice(1, ROWS + 1) };
  }

  function suggest() {
    Object.keys(FIELDS).forEach(function (name) {
      var input = form.querySelector('[name="' + name + '"]');
      if (!input || (input.value && parsed.columns.indexOf(input.value) >= 0)) { return; }
      var match = parsed.columns.find(function (c) { return FIELDS[name].indexOf(c.toLowerCase()) >= 0; });
      if (match && (!input.value || name === "text_column")) { input.value = match; }
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
    var textInput = form.querySelector('[name="text_column"]');
    preview.appendChild(el("h2", "Preview of the first rows", "tiny-heading"));
    if (textInput && parsed.columns.indexOf(textInput.value) < 0) {
      preview.appendChild(el("p", "No column named “" + textInput.value + "”. Columns found: " +
        parsed.columns.join(", "), "error"));
    }
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
    if (event.target !== fileInput && parsed) { render(); }
  });
})();
