// Sorting and filtering of the leaderboard tables. No dependencies; works from file://.
"use strict";

(function () {
  // The value a cell sorts by: its data-sort attribute (numbers) or its text. Empty = missing.
  function sortKey(row, index, numeric) {
    const cell = row.cells[index];
    const raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") return null;
    if (!numeric) return raw.toLowerCase();
    const value = Number(raw);
    return Number.isFinite(value) ? value : null;
  }

  function sortBy(table, th) {
    const headers = Array.from(th.parentNode.children);
    const index = headers.indexOf(th);
    const numeric = th.dataset.type === "num";
    const current = th.getAttribute("aria-sort");
    // First click: numbers descending (best accuracy first), text ascending; later clicks reverse.
    const order = current === "none" ? (numeric ? "descending" : "ascending") : (current === "ascending" ? "descending" : "ascending");
    headers.forEach((h) => h.setAttribute("aria-sort", "none"));
    th.setAttribute("aria-sort", order);
    const sign = order === "ascending" ? 1 : -1;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map((row, i) => ({ row, i, key: sortKey(row, index, numeric) }));
    rows.sort((a, b) => {
      if (a.key === null || b.key === null) {
        return a.key === b.key ? a.i - b.i : (a.key === null ? 1 : -1); // missing values last
      }
      if (a.key < b.key) return -sign;
      if (a.key > b.key) return sign;
      return a.i - b.i;
    });
    rows.forEach((r) => body.appendChild(r.row));
  }

  function applyFilters(form, table) {
    const selects = Array.from(form.querySelectorAll("select[data-filter]"));
    let shown = 0;
    const rows = Array.from(table.tBodies[0].rows);
    rows.forEach((row) => {
      const ok = selects.every((s) => s.value === "" || row.dataset[s.dataset.filter] === s.value);
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    const counter = form.querySelector(".shown");
    if (counter) counter.textContent = shown + " of " + rows.length + " rows";
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("table.sortable").forEach((table) => {
      // Only column headers sort (they carry data-type); a group header spans several columns.
      table.querySelectorAll("thead th[data-type]").forEach((th) => {
        th.addEventListener("click", () => sortBy(table, th));
      });
    });
    const form = document.querySelector("form.filters");
    const table = document.querySelector("table.leaderboard");
    if (form && table) {
      form.addEventListener("change", () => applyFilters(form, table));
      applyFilters(form, table);
    }
  });
})();
