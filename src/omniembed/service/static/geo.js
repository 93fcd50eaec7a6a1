// The Earth-observation panel: GET /playground/api/geo (geo models and the server's named sources) and
// POST /playground/api/geo (a region's grid as a PCA false-colour PNG, beside its RGB composite).
import { api } from "./api.js";
import { el } from "./views.js";

const $ = (id) => document.getElementById(id);
let wired = false;

function options(select, values, blank) {
  select.replaceChildren(...(blank ? [el("option", { value: "", text: blank })] : []),
    ...values.map(([value, text]) => el("option", { value, text })));
}

function request() {
  const body = { model: $("geo-model").value, source: $("geo-source").value, rgb_source: $("geo-rgb").value || null,
    start: $("geo-start").value, end: $("geo-end").value };
  if ($("geo-area").value === "bbox") body.bbox = ["geo-west", "geo-south", "geo-east", "geo-north"].map((id) => +$(id).value);
  else { body.point = [+$("geo-lon").value, +$("geo-lat").value]; body.buffer_m = +$("geo-buffer").value; }
  return body;
}

function picture(src, caption, alt) {
  return el("figure", { class: "geo-picture" }, el("img", { src, alt }), el("figcaption", { text: caption }));
}

async function run(event) {
  event.preventDefault();
  const status = $("geo-status"), out = $("geo-result");
  status.textContent = "Reading the region and embedding it…";
  out.replaceChildren();
  out.dataset.state = "running";
  $("geo-embed").disabled = true;
  try {
    const a = await api("/playground/api/geo", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(request()) });
    const [h, w] = a.cells;
    out.append(el("div", { class: "geo-pictures" },
      a.rgb_png ? picture(a.rgb_png, "RGB composite (B04, B03, B02; 2–98 % stretch)", "RGB composite of the region") : null,
      picture(a.pca_png, `${a.model}: ${h} × ${w} cells, ${a.dimensions}-d, first three principal components as RGB`,
        `False-colour picture of the ${a.model} embedding grid`)));
    status.textContent = `${a.model}: a ${h} × ${w} grid of ${a.dimensions}-d vectors in ${a.seconds.toFixed(2)} s.`;
    out.dataset.state = "done";
  } catch (exc) {
    out.append(el("p", { class: "error", role: "alert", "data-code": exc.code }, el("code", { text: exc.code }), ` ${exc.message}`));
    status.textContent = "The region could not be embedded.";
    out.dataset.state = "error";
  }
  $("geo-embed").disabled = false;
}

export async function setupGeo() {
  let found;
  try { found = await api("/playground/api/geo"); } catch { return; }
  if (!found.models.length || !found.sources.length) return;
  options($("geo-model"), found.models.map((m) => [m.model, `${m.model} · ${m.dimensions}-d`]));
  const sources = found.sources.map((s) => [s, s]);
  options($("geo-source"), sources);
  options($("geo-rgb"), sources, "none");
  $("geo-panel").hidden = false;
  if (wired) return;
  wired = true;
  $("geo-form").addEventListener("submit", run);
  $("geo-area").addEventListener("change", () => {
    const box = $("geo-area").value === "bbox";
    for (const f of document.querySelectorAll(".geo-bbox")) f.hidden = !box;
    for (const f of document.querySelectorAll(".geo-point")) f.hidden = box;
  });
}
