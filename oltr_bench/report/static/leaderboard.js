// The leaderboard pages: sorting, filters and search, column groups, the percent/fraction switch.
// No dependencies; works from file://. The numbers' texts are rendered by oltr-bench (data-pct,
// data-frac): this script only chooses which one is shown.
"use strict";

(function () {
  const UNITS_KEY = "oltr-bench-units";

  // The value a cell sorts by: its data-sort attribute (numbers) or its text. Empty = missing.
  function sortKey(row, index, numeric) {
    const cell = row.cells[index];
    const raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "") return null;
    if (!numeric) return raw.toLowerCase();
    const value = Number(raw);
    return Number.isFinite(value) ? value : null;
  }

  // First click: the better end first (higher numbers, or lower where data-better="lower": the
  // rank, FPR@95, ECE), text A to Z; later clicks reverse.
  function firstOrder(th) {
    if (th.dataset.type !== "num") return "ascending";
    return th.dataset.better === "lower" ? "ascending" : "descending";
  }

  function sortBy(table, th) {
    const headers = Array.from(th.parentNode.children);
    const index = headers.indexOf(th);
    const numeric = th.dataset.type === "num";
    const current = th.getAttribute("aria-sort");
    const order = current === "none" ? firstOrder(th) : (current === "ascending" ? "descending" : "ascending");
    headers.forEach((h) => { if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none"); });
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

  // Rows of every table on the page that match all filters and contain the search text.
  function applyFilters(form) {
    const selects = Array.from(form.querySelectorAll("select[data-filter]"));
    const search = form.querySelector("input[data-search]");
    const query = search ? search.value.trim().toLowerCase() : "";
    const rows = Array.from(document.querySelectorAll("table.leaderboard tbody tr"));
    let shown = 0;
    rows.forEach((row) => {
      const ok = selects.every((s) => s.value === "" || row.dataset[s.dataset.filter] === s.value)
        && (query === "" || (row.dataset.search || "").includes(query));
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    const counter = form.querySelector(".shown");
    if (counter) counter.textContent = shown + " of " + rows.length + " rows";
  }

  function showGroup(group, shown) {
    document.body.classList.toggle("hide-" + group, !shown);
  }

  function setUnits(units) {
    const fraction = units === "fraction";
    document.querySelectorAll("[data-pct]").forEach((el) => {
      el.textContent = fraction ? el.dataset.frac : el.dataset.pct;
    });
    document.querySelectorAll("input[name=units]").forEach((input) => { input.checked = input.value === units; });
    document.documentElement.dataset.units = units;
  }

  function savedUnits() {
    try {
      return window.localStorage.getItem(UNITS_KEY) === "fraction" ? "fraction" : "percent";
    } catch (e) {
      return "percent"; // storage unavailable (some file:// setups): every page starts in percent
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("table.sortable").forEach((table) => {
      // Only column headers sort (they carry data-type); a group header spans several columns.
      table.querySelectorAll("thead th[data-type]").forEach((th) => {
        th.addEventListener("click", () => sortBy(table, th));
      });
    });
    const form = document.querySelector("form.filters");
    if (form) {
      form.addEventListener("change", () => applyFilters(form));
      form.addEventListener("input", () => applyFilters(form));
      form.addEventListener("submit", (event) => event.preventDefault());
      applyFilters(form);
    }
    document.querySelectorAll("input[data-group]").forEach((box) => {
      box.addEventListener("change", () => showGroup(box.dataset.group, box.checked));
      showGroup(box.dataset.group, box.checked);
    });
    document.querySelectorAll("input[name=units]").forEach((input) => {
      input.addEventListener("change", () => {
        setUnits(input.value);
        try { window.localStorage.setItem(UNITS_KEY, input.value); } catch (e) { /* not kept across pages */ }
      });
    });
    setUnits(savedUnits());
  });
})();
