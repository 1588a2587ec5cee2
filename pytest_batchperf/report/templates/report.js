// Sort the verdict table by a clicked column; cells may carry a numeric data-key.
(function () {
  "use strict";
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var numeric = th.dataset.type === "num";
        var asc = !th.classList.contains("asc");
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(row) {
          var cell = row.cells[col];
          if (!cell) return numeric ? Infinity : "";
          var k = cell.dataset.key !== undefined ? cell.dataset.key : cell.textContent.trim();
          if (!numeric) return k;
          return k === "" || isNaN(Number(k)) ? Infinity : Number(k);  // blanks last
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = numeric ? (x === y ? 0 : (x < y ? -1 : 1)) : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // The browser tests read this to know the script ran to the end without an error.
  document.documentElement.setAttribute("data-batchperf-ready", "1");
})();
