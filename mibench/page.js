// The report page's script (mibench/html.py inlines it into OUT/index.html).
// Sorting: a click on a header of a table.sortable sorts its body rows by that column, ascending
// then descending; a column whose cells all read as numbers ("1,617", "-0.03 ± 0.01",
// "[0.2, 0.4]": the leading number) sorts as numbers, others as text; missing cells ("–") last.
// Filtering: the controls with data-filter="KEY" hide the rows (tr[data-estimator]) whose data-KEY
// differs from the chosen value; data-filter="text" keeps the rows whose text (or data-task)
// holds the typed text. A task section with no row left is hidden too.
(function () {
  "use strict";
  const NUMBER = /^[+\-\u2212]?\d[\d,]*(\.\d+)?(e[+\-]?\d+)?(?=$|[\s,\]\u00b1%])/i;
  const MISSING = ["", "\u2013"];

  function number(text) {
    const m = text.replace(/^\[/, "").match(NUMBER);
    return m ? parseFloat(m[0].replace(/,/g, "").replace("\u2212", "-")) : null;
  }

  function sortBy(th) {
    const body = th.closest("table").tBodies[0];
    const i = th.cellIndex;
    const rows = Array.from(body.rows);
    const texts = rows.map((r) => (r.cells[i] ? r.cells[i].textContent.trim() : ""));
    const keys = texts.map(number);
    const gone = (j) => MISSING.includes(texts[j]);
    const numeric = texts.every((t, j) => gone(j) || keys[j] !== null);
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    const order = rows.map((r, j) => j).sort((a, b) => {
      if (gone(a) !== gone(b)) return gone(a) ? 1 : -1;
      const c = numeric ? keys[a] - keys[b] : texts[a].localeCompare(texts[b], undefined, { numeric: true });
      return c * dir || a - b;
    });
    for (const h of th.parentNode.cells) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    for (const j of order) body.appendChild(rows[j]);
  }

  for (const th of document.querySelectorAll("table.sortable thead th")) {
    th.tabIndex = 0;
    th.title = "click to sort by this column";
    th.addEventListener("click", () => sortBy(th));
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(th); });
  }

  const controls = Array.from(document.querySelectorAll("[data-filter]"));

  function apply() {
    const want = {};
    let text = "";
    for (const c of controls) {
      if (c.dataset.filter === "text") text = c.value.trim().toLowerCase();
      else if (c.value) want[c.dataset.filter] = c.value;
    }
    const rows = document.querySelectorAll("tr[data-estimator]");
    let shown = 0;
    for (const r of rows) {
      const ok = Object.keys(want).every((k) => r.dataset[k] === want[k]) &&
        (!text || (r.textContent + " " + (r.dataset.task || "")).toLowerCase().includes(text));
      r.hidden = !ok;
      if (ok) shown++;
    }
    for (const d of document.querySelectorAll("details.task")) {
      d.hidden = !d.querySelector("tr[data-estimator]:not([hidden])");
    }
    const count = document.getElementById("shown");
    if (count) count.textContent = Object.keys(want).length || text ? `${shown} of ${rows.length} rows shown` : "";
  }

  for (const c of controls) {
    c.addEventListener("input", apply);
    c.addEventListener("change", apply);
  }

  // a link to a closed task (#task-3) opens it
  function openTarget() {
    const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
