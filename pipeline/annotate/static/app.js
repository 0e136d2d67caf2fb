// stance annotate: one paragraph at a time, one key per class.
// Every piece of data is rendered with textContent (never innerHTML), so a paragraph
// containing markup is shown as text. Credentials live in sessionStorage only.
"use strict";

const $ = (id) => document.getElementById(id);
let schema = null;      // {tasks: [{name, question, classes: [{name, key, definition}]}], guidelines}
let state = null;       // the /api/next answer
let busy = false;

function credentials() {
  return { name: sessionStorage.getItem("annotator") || "", token: sessionStorage.getItem("token") || "" };
}

async function api(method, path, body) {
  const { name, token } = credentials();
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-Annotator": name, "Authorization": "Bearer " + token },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut("Name or token not accepted.");
    throw new Error("unauthorized");
  }
  const data = await response.json();
  if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
  return data;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function signOut(message) {
  sessionStorage.clear();
  $("work").hidden = true;
  $("empty").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  $("progress").textContent = "";
  $("signin-error").textContent = message || "";
}

async function signIn(name, token) {
  sessionStorage.setItem("annotator", name);
  sessionStorage.setItem("token", token);
  await api("POST", "/api/session");
  schema = await api("GET", "/api/schema");
  $("guidelines").textContent = schema.guidelines || "(no labels/GUIDELINES.md)";
  renderTasks();
  await refresh();
  $("signin").hidden = true;
  $("signout").hidden = false;
  $("who").textContent = name;
}

function showSignInError(err) {
  if (err.message !== "unauthorized") $("signin-error").textContent = "Error: " + err.message;
}

function renderTasks() {
  const box = $("tasks");
  box.replaceChildren();
  for (const task of schema.tasks) {
    const section = el("div", "task");
    section.dataset.task = task.name;
    section.append(el("h3", null, task.question));
    for (const cls of task.classes) {
      const button = el("button", "choice");
      button.type = "button";
      button.dataset.task = task.name;
      button.dataset.label = cls.name;
      button.title = cls.definition;
      button.append(el("kbd", null, cls.key || ""), el("span", "name", cls.name), el("span", "definition", cls.definition));
      button.addEventListener("click", () => label(task.name, cls.name));
      section.append(button);
    }
    box.append(section);
  }
}

async function refresh() {
  state = await api("GET", "/api/next");
  const p = state.progress;
  $("progress").textContent =
    `${p.done} labelled by you · ${p.skipped} skipped · ${p.total} paragraphs · ${p.all_labels} labels in store`;
  if (!state.paragraph) {
    $("work").hidden = true;
    $("empty").hidden = false;
    return;
  }
  $("empty").hidden = true;
  $("work").hidden = false;
  const para = state.paragraph;
  $("source").textContent = para.source;
  $("reason").textContent = state.reason === "ranked" ? "picked by the queue score" : state.reason;
  $("title").textContent = para.title;
  $("paragraph").textContent = para.text;
  $("paragraph").dataset.paragraphId = para.paragraph_id;
  $("previous").textContent = state.context.previous || "";
  $("previous").hidden = !state.context.previous;
  $("next").textContent = state.context.next || "";
  $("next").hidden = !state.context.next;
  const existing = Object.values(state.labels)[0];
  $("note").value = existing ? existing.note : "";
  $("rationale").value = existing ? existing.rationale : "";
  for (const button of document.querySelectorAll(".choice")) {
    const mine = state.labels[button.dataset.task];
    button.classList.toggle("selected", Boolean(mine && mine.label === button.dataset.label));
  }
  renderSuggestions();
}

// The model's suggestion per task (when the annotator has them on): the suggested class is marked,
// and Enter accepts the suggestion of the first task not labelled yet.
function renderSuggestions() {
  const suggestions = state.suggestions || {};
  $("show-suggestions").checked = Boolean(state.show_suggestions);
  for (const old of document.querySelectorAll(".choice .probability")) old.remove();
  for (const button of document.querySelectorAll(".choice")) {
    const s = suggestions[button.dataset.task];
    const on = Boolean(s && s.label === button.dataset.label);
    button.classList.toggle("suggested", on);
    if (on) button.append(el("span", "probability", `model ${Math.round(100 * s.probability)}%`));
  }
  const next = pendingSuggestion();
  $("suggestion").hidden = !next;
  $("suggestion").dataset.task = next ? next.task : "";
  $("suggestion").textContent = next
    ? `Model suggests ${next.task} = ${next.label} (${Math.round(100 * next.probability)}%) · Enter accepts`
    : "";
}

function pendingSuggestion() {
  if (!state || !state.paragraph || !state.suggestions) return null;
  for (const task of schema.tasks) {
    const s = state.suggestions[task.name];
    if (s && !state.labels[task.name]) return { task: task.name, label: s.label, probability: s.probability };
  }
  return null;
}

function toggleSuggestions() {
  return act(async () => {
    await api("POST", "/api/settings", { show_suggestions: $("show-suggestions").checked });
    await refresh();
  });
}

async function act(work) {
  if (busy) return;
  busy = true;
  $("status").textContent = "";
  try {
    await work();
  } catch (err) {
    if (err.message !== "unauthorized") $("status").textContent = "Error: " + err.message;
  } finally {
    busy = false;
  }
}

function label(task, name) {
  return act(async () => {
    const paragraphId = state.paragraph.paragraph_id;
    const shown = state.suggestions && state.suggestions[task];
    await api("POST", "/api/labels", {
      paragraph_id: paragraphId, task, label: name,
      note: $("note").value, rationale: $("rationale").value,
      suggested: shown ? shown.label : null,
    });
    await refresh();
    $("status").textContent = `Saved ${task} = ${name}`;
  });
}

function skip() {
  return act(async () => {
    await api("POST", "/api/skip", { paragraph_id: state.paragraph.paragraph_id });
    await refresh();
    $("status").textContent = "Skipped";
  });
}

function undo() {
  return act(async () => {
    const answer = await api("POST", "/api/undo");
    await refresh();
    $("status").textContent = answer.undone ? "Undone" : "Nothing to undo";
  });
}

function onKey(event) {
  if (!schema || $("work").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLTextAreaElement || event.target instanceof HTMLInputElement) return;
  if (event.key === "ArrowRight") { event.preventDefault(); skip(); return; }
  if (event.key === "Backspace") { event.preventDefault(); undo(); return; }
  if (event.key === "Enter") {
    const next = pendingSuggestion();
    if (next) { event.preventDefault(); label(next.task, next.label); }
    return;
  }
  for (const task of schema.tasks) {
    for (const cls of task.classes) {
      if (cls.key && cls.key === event.key) { event.preventDefault(); label(task.name, cls.name); return; }
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("name").value.trim(), $("token").value.trim()).catch(showSignInError);
  });
  $("signout").addEventListener("click", () => signOut());
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("show-suggestions").addEventListener("change", toggleSuggestions);
  document.addEventListener("keydown", onKey);
  const { name, token } = credentials();
  if (name && token) signIn(name, token).catch(showSignInError);
});
