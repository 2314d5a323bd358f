// The leanformers playground: plain JavaScript, no libraries, talks to this server's own API.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

const keyInput = $("#api-key");
keyInput.value = localStorage.getItem("leanformers-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("leanformers-key", keyInput.value); init(); });

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value) h.Authorization = `Bearer ${keyInput.value}`;
  return h;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error ? data.error.message : `HTTP ${response.status}`);
  return data;
}

// ---------------------------------------------------------------- tabs
let served = null;
function showTab(name) {
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== `tab-${name}`;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
}

async function init() {
  try {
    served = await api("/v1/pipelines");
  } catch (err) {
    $("#served").textContent = `not ready: ${err.message}`;
    return;
  }
  const tabs = [];
  if (served.chat) tabs.push(["chat", "Chat"]);
  if (served.embeddings) tabs.push(["embeddings", "Similarity"]);
  const tasks = Object.keys(served.tasks).filter((t) => FORMS[t]);
  if (tasks.length) tabs.push(["tasks", "Tasks"]);
  $("#tabs").replaceChildren(...tabs.map(([name, label]) => {
    const b = el("button", { "data-tab": name, text: label });
    b.addEventListener("click", () => showTab(name));
    return b;
  }));
  $("#served").textContent = [served.chat && `chat: ${served.chat}`, served.embeddings && `embeddings: ${served.embeddings}`]
    .filter(Boolean).join(" · ") || `${tasks.length} task(s)`;
  $("#task-forms").replaceChildren(...tasks.map((t) => FORMS[t](t)));
  if (tabs.length) showTab(tabs[0][0]);
}

// ---------------------------------------------------------------- chat (streamed)
const history = [];
async function sendChat(event) {
  event.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  history.push({ role: "user", content: text });
  const log = $("#chat-log");
  log.append(el("div", { class: "message user", text }));
  const answer = el("div", { class: "message assistant streaming" });
  log.append(answer);
  $("#chat-send").disabled = true;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ messages: history, stream: true, temperature: Number($("#chat-temperature").value),
                             max_tokens: Number($("#chat-max-tokens").value) }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error ? data.error.message : `HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices) answer.textContent += choice.delta.content || "";
        log.scrollTop = log.scrollHeight;
      }
    }
    history.push({ role: "assistant", content: answer.textContent });
  } catch (err) {
    answer.classList.add("error");
    answer.textContent = `Error: ${err.message}`;
    history.pop();
  } finally {
    answer.classList.remove("streaming");
    $("#chat-send").disabled = false;
  }
}
$("#chat-form").addEventListener("submit", sendChat);
$("#chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("#chat-form").requestSubmit(); }
});
$("#chat-clear").addEventListener("click", () => { history.length = 0; $("#chat-log").replaceChildren(); });

// ---------------------------------------------------------------- embeddings: similarity table
$("#embed-run").addEventListener("click", async () => {
  const sentences = $("#embed-input").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const out = $("#embed-output");
  try {
    const data = await api("/v1/embeddings", { input: sentences, encoding_format: "float" });
    const vectors = data.data.map((d) => d.embedding);
    const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    const cos = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));
    const table = el("table", { class: "sim" });
    table.append(el("tr", {}, el("th"), ...sentences.map((_, j) => el("th", { text: `#${j + 1}` }))));
    sentences.forEach((s, i) => table.append(el("tr", {}, el("th", { text: `#${i + 1} ${s}` }),
      ...vectors.map((v) => {
        const value = cos(vectors[i], v);
        const cell = el("td", { text: value.toFixed(3) });
        cell.style.background = `rgba(217, 72, 15, ${Math.max(0, value) * 0.35})`;
        return cell;
      }))));
    out.replaceChildren(table);
  } catch (err) {
    out.replaceChildren(el("p", { class: "error", text: err.message }));
  }
});

// ---------------------------------------------------------------- task forms
function bars(items) {
  return el("div", {}, ...items.map(([label, score]) => {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(100 * score).toFixed(1)}%`;
    return el("div", { class: "bar" }, el("span", { text: label }), el("div", { class: "track" }, fill),
              el("span", { text: score.toFixed(3) }));
  }));
}

function entities(text, found) {
  const out = el("div", { class: "result" });
  let at = 0;
  for (const e of found) {
    out.append(text.slice(at, e.start));
    const group = (e.entity_group || e.entity || "").replace(/^[BI]-/, "");
    const span = el("span", { class: `entity ent-${["PER", "LOC", "ORG", "MISC"].includes(group) ? group : "other"}`,
                              title: `${group} ${e.score.toFixed(3)}` }, text.slice(e.start, e.end), el("sub", { text: group }));
    out.append(span);
    at = e.end;
  }
  out.append(text.slice(at));
  return out;
}

function taskForm(task, fields, run, render) {
  const box = el("div", { class: "task", id: `task-${task}` }, el("h2", {}, task, " ", el("code", { text: `POST /v1/pipelines/${task}` })));
  const inputs = {};
  for (const [name, label, value, multiline] of fields) {
    inputs[name] = multiline ? el("textarea", { rows: "3" }) : el("input", { type: "text" });
    inputs[name].value = value;
    box.append(el("label", {}, label, inputs[name]));
  }
  const result = el("div", { class: "result" });
  const button = el("button", { text: "Run" });
  button.addEventListener("click", async () => {
    const values = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.value]));
    button.disabled = true;
    try {
      const output = await api(`/v1/pipelines/${task}`, run(values));
      result.replaceChildren(render(output, values));
    } catch (err) {
      result.replaceChildren(el("p", { class: "error", text: err.message }));
    } finally {
      button.disabled = false;
    }
  });
  box.append(el("div", { class: "row" }, button), result);
  return box;
}

const text = (label, value) => [["inputs", label, value, true]];
const FORMS = {
  "token-classification": (t) => taskForm(t, text("Text", "Sarah Connor met John at the Cyberdyne office in Los Angeles."),
    (v) => ({ inputs: v.inputs, parameters: { aggregation_strategy: "simple" } }), (out, v) => entities(v.inputs, out)),
  "question-answering": (t) => taskForm(t, [["question", "Question", "Where does Sarah live?"],
                                            ["context", "Context", "Sarah lives in Paris, the capital of France.", true]],
    (v) => ({ inputs: { question: v.question, context: v.context } }),
    (out, v) => el("div", {}, v.context.slice(0, out.start), el("mark", { text: v.context.slice(out.start, out.end) }),
                   v.context.slice(out.end), el("p", { class: "muted", text: `score ${out.score.toFixed(3)}` }))),
  "text-classification": (t) => taskForm(t, text("Text", "I love this movie!"),
    (v) => ({ inputs: v.inputs, parameters: { top_k: null } }), (out) => bars(out.map((r) => [r.label, r.score]))),
  "zero-shot-classification": (t) => taskForm(t, [["inputs", "Text", "The team won the match last night.", true],
                                                   ["labels", "Candidate labels (comma-separated)", "sports, politics, cooking"]],
    (v) => ({ inputs: v.inputs, parameters: { candidate_labels: v.labels.split(",").map((s) => s.trim()).filter(Boolean) } }),
    (out) => bars(out.labels.map((l, i) => [l, out.scores[i]]))),
  "fill-mask": (t) => taskForm(t, text("Text with a mask token", "Paris is the [MASK] of France."),
    (v) => ({ inputs: v.inputs }), (out) => bars(out.map((r) => [r.token_str, r.score]))),
  "summarization": (t) => generated(t, "A long text to summarize…"),
  "translation": (t) => generated(t, "The house is wonderful."),
  "text2text-generation": (t) => generated(t, "question: what is the capital of France?"),
  "text-generation": (t) => generated(t, "Once upon a time"),
};

function generated(task, value) {
  return taskForm(task, text("Text", value), (v) => ({ inputs: v.inputs, parameters: { max_new_tokens: 64 } }),
    (out) => el("pre", { class: "output", text: out.map((r) => r.generated_text || r.summary_text || r.translation_text).join("\n") }));
}

init();
