// The lead's view of the labelling: who labelled what, agreement, and what the queue offers next and why.
// Uses the credentials the labelling page keeps in sessionStorage; renders with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);

function cell(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text === null || text === undefined ? "–" : String(text);
  return node;
}

function fill(table, header, rows) {
  const head = document.createElement("tr");
  head.append(...header.map((h) => cell("th", h)));
  table.replaceChildren(head, ...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.append(...row.map((v) => cell("td", v)));
    return tr;
  }));
}

async function load() {
  const name = sessionStorage.getItem("annotator") || "";
  const token = sessionStorage.getItem("token") || "";
  $("who").textContent = name;
  const response = await fetch("/api/stats", { headers: { "X-Annotator": name, "Authorization": "Bearer " + token } });
  if (!response.ok) {
    $("stats-error").textContent = response.status === 401 ? "Sign in on the labelling page first." : "Error " + response.status;
    return;
  }
  const s = await response.json();
  const r = s.ranking;
  const w = r.weights;
  $("ranking").textContent =
    `ranking #${r.version} by the ${r.model} model` + (r.model === "fast" ? ` (fitted on ${r.fitted_on} labels)` : "") +
    ` · after: ${r.trigger} · ${new Date(r.created_at * 1000).toLocaleTimeString()} · ${r.status}` +
    ` · ${r.labels_since_fit} new labels (refit every ${r.retrain_every})` +
    ` · score = ${w.uncertainty} × uncertainty (${r.method}) + ${w.disagreement} × disagreement + ${w.rarity} × rarity`;
  fill($("queue"), ["#", "paragraph", "score", "uncertainty", "disagreement", "rarity", "text"],
       s.queue.map((q, i) => [i + 1, q.paragraph_id, q.score, q.uncertainty, q.disagreement, q.rarity, q.text]));
  const columns = s.labels.columns;
  fill($("labels"), ["annotator", ...columns, "total"], Object.entries(s.labels.by_annotator).map(([who, counts]) =>
    [who, ...columns.map((c) => counts[c] || 0), Object.values(counts).reduce((a, b) => a + b, 0)]));
  fill($("human"), ["task", "items", "% agreement", "Krippendorff alpha", "pairs (kappa)"],
       Object.entries(s.human_agreement).map(([task, a]) => [task, a.items_multiply_annotated, a.percent_agreement,
         a.krippendorff_alpha, a.pairwise.map((p) => `${p.annotators.join(" & ")}: ${p.cohen_kappa} (n=${p.n})`).join("; ")]));
  fill($("model"), ["task", "human labels", "% agreement", "Cohen kappa", "suggestions shown", "accepted"],
       Object.entries(s.model_agreement).map(([task, m]) => [task, m.n, m.percent_agreement, m.cohen_kappa,
         m.suggestions_shown, m.suggestions_accepted]));
}

document.addEventListener("DOMContentLoaded", () => {
  $("reload").addEventListener("click", () => load().catch((err) => { $("stats-error").textContent = err.message; }));
  load().catch((err) => { $("stats-error").textContent = err.message; });
});
