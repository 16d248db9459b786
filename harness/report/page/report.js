// The results page: builds every section from the JSON in #report-data with DataTables (imported from the
// inlined #datatables-source) and vega-embed (set on window by the inlined Vega bundle). Data is only ever put
// into the page as text, except the notes harness/report/html.py has already escaped.

const data = JSON.parse(document.getElementById("report-data").textContent);
const source = document.getElementById("datatables-source").textContent;
const moduleUrl = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
const DataTable = (await import(moduleUrl)).default;
URL.revokeObjectURL(moduleUrl);

const main = document.getElementById("report");
document.getElementById("loading").remove();

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else if (key === "html") node.innerHTML = value; // only the pre-escaped notes
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// Significant digits without exponent notation where a plain number reads better (260, not 2.6e+2).
const significant = (value, digits) => String(Number(Number(value).toPrecision(digits)));

function number(value) {
  if (value === null || value === undefined) return "";
  const magnitude = Math.abs(value);
  return magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-4) ? value.toExponential(3) : significant(value, 4);
}

function meanStd(stats) {
  if (!stats) return "";
  const [mean, std, count] = stats;
  return count < 2 || std === null ? number(mean) : `${number(mean)} ± ${significant(std, 2)}`;
}

const arrow = (direction) => (direction === "max" ? "↑" : "↓");
const slug = (text) => text.replace(/[^A-Za-z0-9_-]+/g, "-");

// β on an axis: numbers in order, "–" (no β: regularizer none) first.
function betaOrder(values) {
  const betas = [...new Set(values.map((v) => v.beta))];
  return betas.sort((a, b) => (a === "–" ? -1 : b === "–" ? 1 : Number(a) - Number(b)));
}

async function embed(target, spec) {
  try {
    await window.vegaEmbed(target, spec, { actions: { export: true, source: false, compiled: false, editor: false } });
  } catch (error) {
    target.textContent = `chart not drawn: ${error}`;
  }
}

function metricChart(bench, metric, target) {
  const values = bench.values.filter((v) => v.metric === metric);
  const datasets = [...new Set(values.map((v) => v.dataset))];
  const x = { field: "beta", type: "ordinal", title: "β", sort: betaOrder(values) };
  const series = new Set(values.map((v) => v.series)).size;
  const colour = { field: "series", type: "nominal", title: "prior, regularizer (click to pick)",
                   scale: { scheme: series > 10 ? "category20" : "category10" }, legend: { labelLimit: 420 } };
  const picked = { condition: { param: "pick", value: 1 }, value: 0.12 };
  const layer = {
    layer: [
      { mark: { type: "line", point: true },
        params: [{ name: "pick", select: { type: "point", fields: ["series"] }, bind: "legend" }],
        encoding: { x, color: colour, opacity: picked,
          y: { aggregate: "mean", field: "value", type: "quantitative", scale: { zero: false },
               title: `${metric} ${arrow(bench.directions[metric])} (mean over seeds)` },
          tooltip: [{ field: "series" }, { field: "beta", title: "β" },
                    { aggregate: "mean", field: "value", title: `mean ${metric}`, format: ".4g" },
                    { aggregate: "count", title: "seeds" }] } },
      { mark: { type: "errorbar", extent: "stdev" },
        encoding: { x, color: colour, opacity: picked, y: { field: "value", type: "quantitative", title: null } } },
    ],
  };
  // One seed per point: no spread to draw.
  const counts = {};
  for (const v of values) counts[[v.dataset, v.series, v.beta]] = (counts[[v.dataset, v.series, v.beta]] || 0) + 1;
  if (Math.max(...Object.values(counts)) < 2) layer.layer.pop();
  const spec = datasets.length > 1
    ? { data: { values }, facet: { column: { field: "dataset", title: null } }, spec: { ...layer, width: 320, height: 240 },
        resolve: { scale: { y: "independent" } } }
    : { data: { values }, ...layer, width: 560, height: 280, title: datasets[0] || "" };
  return embed(target, spec);
}

function lossChart(history, target) {
  const values = history.flatMap((row) => Object.entries(row)
    .filter(([term]) => term !== "epoch")
    .map(([term, value]) => ({ epoch: row.epoch, term, value })));
  if (!values.length) {
    target.textContent = "no loss history stored";
    return Promise.resolve();
  }
  return embed(target, {
    data: { values },
    facet: { column: { field: "term", title: "training loss terms (epoch means)" } },
    spec: { width: 200, height: 150, mark: { type: "line", point: values.length < 60 },
            encoding: { x: { field: "epoch", type: "quantitative" },
                        y: { field: "value", type: "quantitative", scale: { zero: false }, title: null },
                        tooltip: [{ field: "epoch" }, { field: "value", format: ".5g" }] } },
    resolve: { scale: { y: "independent" } },
  });
}

function leaderboardTable(bench, section) {
  const named = bench.configs.some((c) => c.model && c.model !== "–");
  const keys = [["rank", "rank"], ...(named ? [["model", "model"]] : []), ["dataset", "dataset"], ["prior", "prior"],
                ["prior_options", "options"], ["regularizer", "regularizer"], ["beta", "β"], ["seeds", "seeds"]];
  const columns = keys.map(([key, title]) => ({ data: key, title, name: key, className: key === "prior_options" ? "options" : "" }));
  const firstMetric = columns.length;
  for (const metric of bench.metrics) {
    const direction = bench.directions[metric] || "min";
    const missing = direction === "min" ? Infinity : -Infinity; // unmeasured rows sort last when best is first
    columns.push({
      data: (row) => row.stats[metric] || null, title: `${metric} ${arrow(direction)}`, name: metric,
      className: "metric", type: "num",
      render: (stats, type) => (type === "display" || type === "filter" ? meanStd(stats) : stats ? stats[0] : missing),
    });
  }
  columns.push({
    data: "cells", title: "cells", name: "cells", className: "cells", orderable: false, searchable: false,
    render: (cells, type) => (type === "display"
      ? cells.map((id, i) => `<a href="#cell-${id}" title="${id}">seed ${i + 1}</a>`).join("") : cells.join(" ")),
  });
  const table = element("table", { class: "board display compact", id: `board-${slug(bench.name)}` });
  section.append(table);
  const panes = keys.filter(([key]) => ["model", "dataset", "prior", "regularizer", "beta"].includes(key))
    .map(([key]) => columns.findIndex((c) => c.name === key));
  const datatable = new DataTable(table, {
    data: bench.configs, columns, paging: false, info: true, autoWidth: false,
    order: [[columns.findIndex((c) => c.name === "dataset"), "asc"], [0, "asc"]],
    layout: { top1: "searchPanes" },
    searchPanes: { columns: panes, layout: `columns-${Math.min(panes.length, 4)}`, cascadePanes: true,
                   initCollapsed: false, dtOpts: { select: { style: "multi" }, scrollY: "10.5em", scrollCollapse: true } },
    language: { searchPanes: { title: "Filter: %d selected", emptyPanes: "" } },
  });
  return { datatable, metricColumn: (metric) => firstMetric + bench.metrics.indexOf(metric) };
}

function metricControls(bench, section, board, chart) {
  const select = element("select", { class: "metric-choice", "aria-label": "metric" },
    ...bench.metrics.map((m) => element("option", { value: m, text: `${m} ${arrow(bench.directions[m])}` })));
  select.value = bench.primary;
  const highlight = () => {
    for (const cell of section.querySelectorAll("td.chosen")) cell.classList.remove("chosen");
    for (const cell of board.datatable.column(board.metricColumn(select.value)).nodes().toArray()) {
      cell.classList.add("chosen");
    }
  };
  // Choosing a metric sorts the table by it, best first, and redraws the chart for it.
  const choose = () => {
    const metric = select.value;
    board.datatable.order([board.metricColumn(metric), bench.directions[metric] === "max" ? "desc" : "asc"]).draw();
    metricChart(bench, metric, chart);
  };
  select.addEventListener("change", choose);
  board.datatable.on("draw", highlight);
  return { select };
}

function claimsSection(bench) {
  if (!bench.claims.length) return null;
  // Green for supported / holds, red for not supported / does not hold; "not measured" and the rest plain.
  const verdictClass = (verdict) => (verdict.startsWith("not measured") ? "" : `verdict-${verdict.split(/[\s:]/)[0]}`);
  const rows = bench.claims.map((c) => element("tr", {},
    element("td", { text: c.claim }), element("td", { text: c.measured }),
    element("td", { class: verdictClass(c.verdict), text: c.verdict })));
  return element("div", { class: "claims" }, element("h3", { text: "Claims" }),
    element("p", { class: "note", text: "Each claim checked against this run's numbers by a one-sided test over seeds; "
      + "leaderboard.md explains the tests. The verdict reports the data, whatever the paper says." }),
    element("table", { class: "plain" },
      element("thead", {}, element("tr", {}, ...["claim", "measured", "verdict"].map((t) => element("th", { text: t })))),
      element("tbody", {}, ...rows)));
}

function figuresSection(bench) {
  if (!bench.figures.length) return null;
  return element("div", {}, element("h3", { text: "Figures" }),
    element("div", { class: "figures" }, ...bench.figures.map((f) => element("figure", {},
      element("a", { href: f.src }, element("img", { src: f.src, alt: f.title, loading: "lazy" })),
      element("figcaption", { text: f.title })))));
}

function problemsSection(bench) {
  if (!bench.problems.length) return null;
  const rows = bench.problems.map((p) => element("tr", {},
    element("td", { class: `status-${p.status}`, text: p.status }),
    element("td", {}, element("a", { href: `#cell-${p.cell_id}`, text: p.label })),
    element("td", { text: p.reason })));
  return element("div", { class: "problems" }, element("h3", { text: "Failed, skipped and pruned cells" }),
    element("table", { class: "plain" },
      element("thead", {}, element("tr", {}, ...["status", "cell", "reason"].map((t) => element("th", { text: t })))),
      element("tbody", {}, ...rows)));
}

function fillDrawer(cell, drawer) {
  const left = element("div");
  const right = element("div");
  const curves = element("div", { class: "chart loss-chart" });
  left.append(curves);
  if (cell.reason) left.append(element("p", { class: `status-${cell.status}`, text: `${cell.status}: ${cell.reason}` }));
  for (const note of cell.notes) left.append(element("p", { class: "note", text: note }));
  const metrics = Object.entries(cell.metrics);
  if (metrics.length) {
    left.append(element("table", { class: "plain metrics" }, element("tbody", {},
      ...metrics.map(([name, value]) => element("tr", {}, element("td", { text: name }),
        element("td", { text: number(value) }))))));
  }
  for (const [title, src] of [["samples", cell.samples], ["conditional samples", cell.conditional]]) {
    if (src) right.append(element("figure", {}, element("img", { src, alt: title }), element("figcaption", { text: title })));
  }
  const seconds = cell.seconds === null || cell.seconds === undefined ? "" : `, ${Number(cell.seconds).toFixed(1)} s`;
  right.append(element("p", { class: "note", text: `cell ${cell.cell_id} (cells/${cell.cell_id}/)${seconds}` }),
    element("details", {}, element("summary", { text: "config" }),
      element("pre", { text: JSON.stringify(cell.config, null, 2) })));
  drawer.append(left, right);
  return lossChart(cell.history, curves);
}

function cellsSection(bench) {
  if (!bench.cells.length) return null;
  const primary = bench.primary;
  const drawers = bench.cells.map((cell) => {
    const value = primary && cell.metrics[primary] !== undefined ? ` · ${primary} ${number(cell.metrics[primary])}` : "";
    const details = element("details", { class: "cell", id: `cell-${cell.cell_id}` },
      element("summary", {}, element("span", { text: cell.label }),
        element("span", { class: `note status-${cell.status}`, text: ` · ${cell.status}${value}` })),
      element("div", { class: "drawer" }));
    details.addEventListener("toggle", () => {
      const drawer = details.querySelector(".drawer");
      if (details.open && !drawer.childElementCount) fillDrawer(cell, drawer);
    });
    return details;
  });
  return element("div", { class: "cells-list" }, element("h3", { text: `Cells (${bench.cells.length})` }),
    element("p", { class: "note", text: "Open a cell for its loss curves, samples, metrics and full config." }),
    ...drawers);
}

function benchmarkSection(bench) {
  const section = element("section", { class: "benchmark", id: `benchmark-${slug(bench.name)}`, "data-benchmark": bench.name });
  main.append(section);
  section.append(element("h2", { text: bench.name }));
  if (bench.description) section.append(element("p", { html: bench.description }));
  if (bench.missing) section.append(element("p", { class: "missing", html: bench.missing }));
  if (!bench.configs.length) {
    section.append(element("p", { text: "No finished cells yet." }));
  } else {
    const direction = bench.directions[bench.primary] === "max" ? "higher" : "lower";
    const controls = element("div", { class: "controls" });
    section.append(element("p", { class: "note",
      text: `Ranked by ${bench.primary} (${direction} is better) within each dataset; mean ± std over seeds.` }), controls);
    const board = leaderboardTable(bench, section);
    const chart = element("div", { class: "chart metric-chart" });
    const { select } = metricControls(bench, section, board, chart);
    controls.append(element("label", { text: "metric " }, select));
    section.append(element("h3", { text: "The chosen metric against β" }), chart);
    board.datatable.draw(); // highlights the primary metric's column; the rows stay ranked within each dataset
    metricChart(bench, bench.primary, chart);
  }
  for (const part of [claimsSection(bench), figuresSection(bench), problemsSection(bench), cellsSection(bench)]) {
    if (part) section.append(part);
  }
}

function provenanceSection() {
  if (!data.provenance.length) return;
  main.append(element("section", { id: "provenance" }, element("h2", { text: "Provenance" }),
    element("dl", { class: "provenance" }, ...data.provenance.flatMap(([what, value]) =>
      [element("dt", { text: what }), element("dd", { text: value })]))));
}

function openLinkedCell() {
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target && target.tagName === "DETAILS") {
    target.open = true;
    target.scrollIntoView({ block: "start" });
  }
}

const contents = document.getElementById("contents");
for (const bench of data.benchmarks) {
  benchmarkSection(bench);
  contents.append(element("a", { href: `#benchmark-${slug(bench.name)}`, text: bench.name }));
}
provenanceSection();
contents.append(element("a", { href: "#provenance", text: "provenance" }));
window.addEventListener("hashchange", openLinkedCell);
openLinkedCell();
document.body.dataset.ready = "true"; // for readers (and the browser test) waiting on the page
