// The report page's own script: draw each chart from its inlined spec, and sort tables on a header click.
// Nothing here (or in the inlined Vega runtime) loads anything from a network.
"use strict";

function sortTable(th) {
  const table = th.closest("table");
  const body = table.tBodies[0];
  const column = Array.prototype.indexOf.call(th.parentNode.children, th);
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of th.parentNode.children) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const key = (row) => {
    const cell = row.children[column];
    const value = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
    const number = Number(value);
    return value !== "" && !Number.isNaN(number) ? number : value.toLowerCase();
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return ascending ? order : -order;
  });
  body.append(...rows);
}

document.addEventListener("click", (event) => {
  const th = event.target.closest("table.sortable th");
  if (th) sortTable(th);
});

async function drawCharts() {
  const views = {};
  window.mproxyViews = views;
  const places = Array.from(document.querySelectorAll("[data-chart]"));
  const drawn = places.map(async (place) => {
    const name = place.dataset.chart;
    const spec = JSON.parse(document.getElementById(`spec-${name}`).textContent);
    const result = await vegaEmbed(place, spec, { actions: false, renderer: "svg" });
    views[name] = result.view;
  });
  try {
    await Promise.all(drawn);
    document.body.dataset.charts = "rendered";
  } catch (error) {
    document.body.dataset.charts = "failed";
    const message = document.createElement("p");
    message.className = "error";
    message.textContent = `A chart could not be drawn: ${error}`;
    document.querySelector("main").prepend(message);
    throw error;
  }
}

if (typeof vegaEmbed === "function") drawCharts();
else document.body.dataset.charts = "none";
