// The omniembed playground. Every number on the page comes from the public HTTP API:
//   GET /v1/models (models, modalities, dimensions), POST /v1/embeddings (one request per input, so each
//   input gets its own vector, timing and coded error), POST /v1.3/embed (audio segments), the
//   /v1.3/embed/tasks routes (video: any model that takes images embeds a video by its frames, option
//   "visual"), and GET /playground/api/runtime (runtime, device and precision per model, from the loaded
//   model once it has run: the facts the protocol answers do not carry).
import { cosineMatrix, el, heatmap, legend, neighbours, norm, placeLabels, scatter, timeline } from "./views.js";
import { SNIPPETS } from "./snippets.js";
import { ApiError, api, auth } from "./api.js";
import { setupGeo } from "./geo.js";

const $ = (id) => document.getElementById(id);
const MEDIA = { image: "Images", audio: "Audio", video: "Video" };
const NAMES = { text: "Text", image: "Image", audio: "Audio", video: "Video" };
const KEY_STORE = "omniembed-api-key";
auth.key = sessionStorage.getItem(KEY_STORE) || "";
const state = { models: [], runtimes: {}, media: {}, inputs: [] };
let nextMediaId = 1;

// -- the API --------------------------------------------------------------------------------------

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new ApiError(0, "input_unreadable", `the browser could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function form(fields) {
  const body = new FormData();
  for (const [k, v] of fields) if (v !== undefined && v !== null) Array.isArray(v) ? body.append(k, v[0], v[1]) : body.append(k, v);
  return body;
}

async function embedVector(it) {
  const input = it.modality === "text" ? it.text : it.url || (await dataUrl(it.file));
  const request = { model: it.model, input, encoding_format: "float" };
  if (it.modality === "text") request.truncate = it.truncate; else request.modality = it.modality;
  const answer = await api("/v1/embeddings", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request) });
  it.vector = answer.data[0].embedding;
  if (it.modality === "text") it.tokens = answer.usage.prompt_tokens;
}

async function embedAudioSegments(it) {
  const source = it.url ? ["audio_url", it.url] : ["audio_file", [it.file, it.name]];
  try {
    const answer = await api("/v1.3/embed", { method: "POST", body: form([["model_name", it.model], source]) });
    it.segments = (answer.audio_embedding && answer.audio_embedding.segments) || [];
  } catch (exc) {
    it.segmentError = exc;
  }
}

async function embedVideo(it) {
  const source = it.url ? ["video_url", it.url] : ["video_file", [it.file, it.name]];
  const fields = [["model_name", it.model], source, ["video_clip_length", it.clip], ["video_embedding_scope", "clip"],
    ["video_embedding_scope", "video"],
    ["video_embedding_option", "visual"]];  // the frames' image vectors: the space of the model's images
  const task = await api("/v1.3/embed/tasks", { method: "POST", body: form(fields) });
  const id = task._id || task.id;
  it.task = id;
  for (let waited = 0, delay = 100; ; waited += delay, delay = Math.min(delay * 1.5, 2000)) {
    await new Promise((r) => setTimeout(r, delay));
    const status = await api(`/v1.3/embed/tasks/${encodeURIComponent(id)}/status`);
    if (status.status === "ready") break;
    if (status.status === "failed") {
      const e = status.error || {};
      throw new ApiError(400, e.code || "task_failed", e.message || `video task ${id} failed`);
    }
    if (waited > 600000) throw new ApiError(504, "request_timeout", `video task ${id} did not finish in 10 minutes`);
  }
  const done = await api(`/v1.3/embed/tasks/${encodeURIComponent(id)}`);
  const segments = (done.video_embedding && done.video_embedding.segments) || [];
  const whole = segments.find((s) => s.embedding_scope === "video");
  const clips = segments.filter((s) => s.embedding_scope !== "video");
  if (!whole && !clips.length) throw new ApiError(502, "internal_error", `video task ${id} answered no segments`);
  it.segments = clips;
  it.vector = whole ? whole.float : clips[0].float.map((_, i) => clips.reduce((s, c) => s + c.float[i], 0) / clips.length);
}

async function embedOne(it) {
  const started = performance.now();
  try {
    if (it.modality === "video") await embedVideo(it);
    else await Promise.all([embedVector(it), it.modality === "audio" ? embedAudioSegments(it) : null]);
  } catch (exc) {
    it.error = exc instanceof ApiError ? exc : new ApiError(0, "internal_error", String(exc));
  }
  it.ms = performance.now() - started;
}

// -- models and the API key ----------------------------------------------------------------------

async function loadModels() {
  const status = $("models-status");
  status.textContent = "Loading the models…";
  try {
    const answer = await api("/v1/models");
    state.models = answer.data;
  } catch (exc) {
    state.models = [];
    if (exc.code === "api_key_invalid") {
      auth.keyed = true;
      $("key-panel").hidden = false;
      $("key-error").textContent = auth.key ? `${exc.code}: ${exc.message}` : "";
      status.textContent = "This server needs an API key: enter it above.";
    } else {
      status.textContent = `${exc.code}: ${exc.message}`;
    }
    buildPickers();
    return;
  }
  $("key-error").textContent = "";
  if (auth.key) { auth.keyed = true; $("key-panel").hidden = false; $("key-state").textContent = "Key accepted."; }
  status.textContent = `${state.models.length} models can run on this server; only those are offered.`;
  await loadRuntimes();
  buildPickers();
  setupGeo();
}

async function loadRuntimes() {
  try {
    const runtime = await api("/playground/api/runtime");
    for (const r of runtime.models) state.runtimes[r.model] = r;
  } catch { /* the facts then say "unknown" */ }
}

// Video runs through an image model: its frames' vectors, per clip and for the whole video, are that model's
// image vectors (the /v1.3/embed/tasks "visual" option), so any model that takes images takes video.
const takes = (m, modality) => m.modalities.includes(modality) || (modality === "video" && m.modalities.includes("image"));

// Each panel offers its own model, at the top of the panel. An option is the model's name alone, so a dropdown is
// as wide as its longest name; the label beside it says the chosen model's dimension and what else it takes (a
// joint model puts those inputs in one space), and the select's title repeats both.
function buildPickers() {
  const present = new Set(state.models.flatMap((m) => m.modalities));
  for (const modality of Object.keys(NAMES)) {
    const takers = state.models.filter((m) => takes(m, modality));
    if (modality !== "text" && !takers.length) { $(`${modality}-panel`)?.remove(); continue; }
    if (modality !== "text" && !$(`${modality}-panel`)) buildMediaPanel(modality);
    const slot = $(`${modality}-model-slot`);
    if (!takers.length) { slot.replaceChildren(); continue; }
    const select = el("select", { id: `model-${modality}`, name: `model-${modality}` },
      takers.map((m) => el("option", { value: m.id, text: m.id })));
    // a model that also takes texts keeps them in one space; a video goes with the images
    const pick = $(modality === "video" ? "model-image" : "model-text")?.value;
    select.value = takers.some((m) => m.id === pick) ? pick : takers[0].id;
    const about = el("span", { class: "model-facts" });
    const describe = () => {
      const m = takers.find((x) => x.id === select.value);
      const also = m.modalities.filter((x) => x !== modality && !(modality === "video" && x === "image"));
      about.textContent = ` · ${m.dimensions}-d${also.length ? ` · also ${also.join(", ")}` : ""}`;
      select.title = `${m.id}${about.textContent}`;
    };
    select.addEventListener("change", describe);
    describe();
    slot.replaceChildren(el("div", { class: "field" }, el("label", { for: select.id }, `${NAMES[modality]} model`, about), select));
  }
  $("texts").disabled = !present.has("text");
  $("embed").disabled = !state.models.length;
}

// -- media inputs: pick, drop, paste or a URL ------------------------------------------------------

function buildMediaPanel(modality) {
  const title = MEDIA[modality];
  const id = (s) => `${modality}-${s}`;
  const drop = el("div", { class: "drop", id: id("drop") },
    el("p", { text: `Drop ${title.toLowerCase()} here, paste ${modality === "audio" ? "a clip" : "them"}, pick files or add a URL.` }),
    el("div", { class: "field" }, el("label", { for: id("files"), text: `Pick ${modality} files` }),
      el("input", { type: "file", id: id("files"), accept: `${modality}/*`, multiple: true })),
    el("div", { class: "field url" }, el("label", { for: id("url"), text: `${NAMES[modality]} URL` }),
      el("input", { type: "url", id: id("url"), placeholder: "https://…" }),
      el("button", { type: "button", id: id("add-url"), text: "Add URL" })));
  const clip = modality !== "video" ? null : [
    el("p", { class: "hint", text: "Embedded by its frames with an image model: its clips and the whole video land " +
      "among that model's images." }),
    el("div", { class: "field" }, el("label", { for: "video-clip", text: "Clip length in seconds (2 to 10)" }),
      el("input", { type: "number", id: "video-clip", name: "video-clip", min: 2, max: 10, step: "any", value: 6 }))];
  const panel = el("section", { class: "panel", id: id("panel"), "aria-labelledby": id("title") },
    el("h2", { id: id("title"), text: title }), el("div", { id: id("model-slot") }), clip, drop, el("ul", { class: "media-list", id: id("list"), "aria-label": `${title} to embed` }));
  $("inputs-grid").append(panel);
  state.media[modality] = state.media[modality] || [];
  $(id("files")).addEventListener("change", (e) => { addFiles(modality, e.target.files); e.target.value = ""; });
  $(id("add-url")).addEventListener("click", () => {
    const input = $(id("url"));
    if (input.value.trim()) addMedia(modality, { url: input.value.trim(), name: input.value.trim() });
    input.value = "";
  });
  $(id("url")).addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); $(id("add-url")).click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles(modality, e.dataTransfer.files); });
}

function addFiles(modality, files) {
  for (const file of files) addMedia(modality, { file, name: file.name || `pasted.${(file.type.split("/")[1] || "bin")}`, mime: file.type });
}

function addMedia(modality, item) {
  item.id = nextMediaId++;
  item.thumb = item.file ? URL.createObjectURL(item.file) : item.url;
  state.media[modality].push(item);
  const remove = el("button", { type: "button", class: "remove", "aria-label": `Remove ${item.name}`, text: "×" });
  const row = el("li", { "data-media": item.id }, preview(modality, item.thumb, item.name), el("span", { class: "name", text: item.name }), remove);
  remove.addEventListener("click", () => {
    state.media[modality] = state.media[modality].filter((m) => m !== item);
    row.remove();
  });
  $(`${modality}-list`).append(row);
}

function preview(modality, src, name) {
  if (modality === "image") {
    const img = el("img", { src, alt: name, class: "thumb" });
    img.addEventListener("error", () => img.replaceWith(el("span", { class: "thumb none", text: "no preview" })));
    return img;
  }
  if (modality === "audio") return el("audio", { src, controls: true, preload: "none", "aria-label": name });
  if (modality === "video") return el("video", { src, controls: true, preload: "metadata", class: "thumb", "aria-label": name });
  return null;
}

document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])];
  if (!files.length) return;
  for (const file of files) {
    const modality = file.type.split("/")[0];
    if ($(`${modality}-panel`)) { e.preventDefault(); addFiles(modality, [file]); }
  }
});

// -- a run -----------------------------------------------------------------------------------------

function collect() {
  const inputs = [];
  const truncate = $("truncate").value;
  const textModel = $("model-text")?.value;
  if (textModel) {
    for (const line of $("texts").value.split("\n")) {
      const text = line.trim();
      if (text) inputs.push({ modality: "text", text, truncate, model: textModel, label: text, short: text.length > 28 ? `${text.slice(0, 27)}…` : text });
    }
  }
  const clip = $("video-clip")?.value.trim() || undefined;  // empty: the server's default (6 s)
  for (const modality of Object.keys(MEDIA)) {
    const model = $(`model-${modality}`)?.value;
    if (!model) continue;
    for (const m of state.media[modality] || []) {
      const short = m.name.length > 28 ? `…${m.name.slice(-27)}` : m.name;
      inputs.push({ modality, model, file: m.file, url: m.url, name: m.name, mime: m.mime, thumb: m.thumb, label: m.name, short,
        clip: modality === "video" ? clip : undefined });
    }
  }
  inputs.forEach((it, i) => { it.n = i + 1; });
  return inputs;
}

function facts(it) {
  const rt = state.runtimes[it.model] || {};
  const rows = [["model", it.model], ["dimension", it.vector.length], ["runtime", rt.runtime || "unknown"],
    ["device", rt.device || "unknown"], ["precision", rt.precision || "unknown"],
    ["from", rt.loaded ? "the loaded model" : rt.model ? "the settings" : "unknown"], ["round trip", `${it.ms.toFixed(0)} ms`],
    ["norm", norm(it.vector).toFixed(4)]];
  if (it.tokens !== undefined) rows.push(["tokens", it.tokens]);
  if (it.file) rows.push(["size", `${(it.file.size / 1024).toFixed(1)} KiB`]);
  if (it.segments) rows.push([it.modality === "video" ? "clips" : "segments", it.segments.length]);
  if (it.task) rows.push(["task", it.task]);
  return el("dl", { class: "facts" }, rows.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", { text: String(v) }))));
}

function errorLine(exc, what = "") {
  return el("p", { class: "error", role: "alert", "data-code": exc.code },
    el("code", { text: exc.code }), ` ${what}${exc.message}`);
}

// A text shows its first lines; a longer one gets a button that shows it all (fitCards decides, once on the page).
function renderCard(it) {
  let body = preview(it.modality, it.thumb, it.name);
  if (it.modality === "text") {
    const quote = el("blockquote", { id: `text-${it.n}`, class: "clamp", text: it.text });
    const words = it.text.split(/\s+/).length;
    const more = el("button", { type: "button", class: "more", hidden: true, "aria-expanded": "false", "aria-controls": quote.id,
      "data-more": `Show all ${words} words`, text: `Show all ${words} words` });
    more.addEventListener("click", () => {
      const open = quote.classList.toggle("open");
      more.setAttribute("aria-expanded", String(open));
      more.textContent = open ? "Show less" : more.dataset.more;
      if (open) quote.tabIndex = 0; else quote.removeAttribute("tabindex");  // the open text scrolls: keyboard too
    });
    body = [quote, more];
  }
  const card = el("li", { class: "input-card", "data-input": it.n, "data-modality": it.modality, "data-state": it.error ? "error" : it.vector ? "ok" : "pending" },
    el("h3", {}, `#${it.n} `, el("span", { class: "tag", text: it.modality }), it.modality === "text" ? "" : ` ${it.name}`), body);
  if (it.error) card.append(errorLine(it.error));
  else if (it.vector) card.append(facts(it));
  else card.append(el("p", { class: "pending", text: "embedding…" }));
  if (it.segmentError) card.append(errorLine(it.segmentError, "segments: "));
  return card;
}

function fitCards() {
  for (const quote of document.querySelectorAll("#input-cards blockquote.clamp:not(.open)")) {
    quote.nextElementSibling.hidden = quote.scrollHeight <= quote.clientHeight + 1;
  }
}

function showCard(it) {
  const card = renderCard(it);
  $("input-cards").querySelector(`[data-input="${it.n}"]`).replaceWith(card);
  fitCards();
}

const MANY = 8;  // more inputs than this: the heatmap takes the whole width, so that all its columns show

function renderSpaces(inputs) {
  const box = $("spaces");
  box.replaceChildren();
  const byModel = new Map();
  for (const it of inputs.filter((x) => x.vector)) byModel.set(it.model, [...(byModel.get(it.model) || []), it]);
  for (const [model, items] of byModel) {
    const matrix = cosineMatrix(items.map((it) => it.vector));
    const readout = el("p", { class: "readout", text: "Hover a cell for its value." });
    const onHover = (a, b, v) => { readout.textContent = `cosine(#${a.n} ${a.short}, #${b.n} ${b.short}) = ${v.toFixed(4)}`; };
    const pointOut = el("p", { class: "readout point-readout", text: "Hover a point for its input." });
    const onPoint = (it, [x, y]) => { pointOut.textContent = `#${it.n} ${it.label} (PC1 ${x.toFixed(3)}, PC2 ${y.toFixed(3)})`; };
    const plot = items.length > 1 ? scatter(items, items.map((it) => it.vector), model, onPoint) : null;
    const section = el("section", { class: `space${items.length > MANY ? " many" : ""}`, "data-model": model, "aria-label": `Results for ${model}` },
      el("h3", { text: `${model} · ${items[0].vector.length}-d · ${items.length} input${items.length > 1 ? "s" : ""}` }),
      el("div", { class: "views" },
        el("div", { class: "view heat" }, el("h4", { text: "Cosine similarity" }), el("div", { class: "scroll" }, heatmap(items, matrix, model, onHover)), readout),
        el("div", { class: "view" }, el("h4", { text: "Nearest neighbours" }),
          el("div", { class: "neighbour-box", tabindex: 0, role: "region", "aria-label": `Nearest neighbours by ${model}` }, neighbours(items, matrix))),
        plot ? el("div", { class: "view" }, el("h4", { text: "PCA projection" }), plot, pointOut) : null));
    const timed = items.filter((it) => it.segments && it.segments.length);
    if (timed.length) {
      const whole = timed[0].modality === "video" ? "video" : "clip";
      section.append(el("h4", { text: "Segments and clips, coloured by cosine with the whole input" }), legend(whole), ...timed.map((it) =>
        el("figure", { class: "segments" }, el("figcaption", { text: `#${it.n} ${it.short}` }),
          timeline(it, it.segments, it.vector, it.modality === "video" ? "video" : "clip"))));
    }
    box.append(section);
    if (plot) placeLabels(plot);  // measured, so once on the page
  }
}

function renderSnippet() {
  const it = state.inputs.find((x) => String(x.n) === $("snippet-input").value);
  const [, make] = SNIPPETS[$("snippet-kind").value];
  $("snippet-code").textContent = it ? make({ ...it, dim: it.vector?.length }, location.origin, auth.keyed) : "";
  $("copy-state").textContent = "";
}

async function run(event) {
  event.preventDefault();
  const inputs = collect();
  const results = $("results");
  if (!inputs.length) { $("run-status").textContent = "Add at least one text, image, audio clip or video first."; return; }
  state.inputs = inputs;
  results.hidden = false;
  results.dataset.state = "running";
  $("embed").disabled = true;
  $("run-status").textContent = `Embedding ${inputs.length} inputs…`;
  $("input-cards").replaceChildren(...inputs.map(renderCard));
  fitCards();
  $("spaces").replaceChildren();
  await Promise.all(inputs.map(async (it) => {
    await embedOne(it);
    showCard(it);
  }));
  await loadRuntimes();  // the models have run: their facts now come from the loaded models
  $("input-cards").replaceChildren(...inputs.map(renderCard));
  fitCards();
  renderSpaces(inputs);
  $("snippet-input").replaceChildren(...inputs.map((it) => el("option", { value: it.n, text: `#${it.n} ${it.modality}: ${it.short}` })));
  renderSnippet();
  const failed = inputs.filter((it) => it.error).length;
  $("run-status").textContent = `Embedded ${inputs.length - failed} of ${inputs.length} inputs${failed ? `; ${failed} failed (see the inputs)` : ""}.`;
  $("embed").disabled = false;
  results.dataset.state = "done";
}

// -- wiring ------------------------------------------------------------------------------------------

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  auth.key = $("api-key").value.trim();
  sessionStorage.setItem(KEY_STORE, auth.key);
  $("key-state").textContent = "";
  loadModels();
});
$("embed-form").addEventListener("submit", run);
addEventListener("resize", fitCards);
$("snippet-input").addEventListener("change", renderSnippet);
$("snippet-kind").replaceChildren(...Object.entries(SNIPPETS).map(([k, [name]]) => el("option", { value: k, text: name })));
$("snippet-kind").addEventListener("change", renderSnippet);
$("copy-snippet").addEventListener("click", async () => {
  const text = $("snippet-code").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-state").textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("snippet-code"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy-state").textContent = "Selected: press Ctrl+C to copy.";
  }
});
if (auth.key) $("api-key").value = auth.key;
loadModels();
