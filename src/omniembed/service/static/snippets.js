// Copy-ready code for the request the page sent for one input: curl and the openai client (the exact
// /v1/embeddings request), the twelvelabs SDK and omniembed's Python API (the same input and model). A video
// is a /v1.3/embed/tasks task (create, wait until ready, retrieve), in curl and in the twelvelabs SDK.

const q = (s) => JSON.stringify(s);  // a JSON string is also a valid Python string literal
const sh = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;

function mediaLine(it) {
  return it.url ? q(it.url) : "data_url";
}

function readFile(it) {
  if (it.modality === "text" || it.url) return "";
  return `import base64, pathlib\n` +
    `data_url = ${q(`data:${it.mime || "application/octet-stream"};base64,`)} + base64.b64encode(pathlib.Path(${q(it.name)}).read_bytes()).decode()\n`;
}

function curlVideo(it, origin, keyed) {
  const key = keyed ? ` -H "authorization: Bearer $OMNIEMBED_API_KEY"` : "";
  const src = it.url ? `-F video_url=${sh(it.url)}` : `-F video_file=@${sh(it.name)}`;
  const clip = it.clip ? ` -F video_clip_length=${sh(it.clip)}` : "";
  const tasks = `${origin}/v1.3/embed/tasks`;
  return `ID=$(curl -s ${tasks}${key} \\\n  -F model_name=${sh(it.model)} ${src}${clip} \\\n` +
    `  -F video_embedding_scope=clip -F video_embedding_scope=video -F video_embedding_option=visual \\\n` +
    `  | sed -E 's/.*"_id":"([^"]+)".*/\\1/')\n` +
    `until curl -s ${tasks}/$ID/status${key} | grep -Eq '"status":"(ready|failed)"'; do sleep 1; done\n` +
    `curl -s ${tasks}/$ID${key}  # video_embedding.segments: each clip, then the whole video (embedding_scope)`;
}

export function curl(it, origin, keyed) {
  const auth = keyed ? ` \\\n  -H "authorization: Bearer $OMNIEMBED_API_KEY"` : "";
  if (it.modality === "video") return curlVideo(it, origin, keyed);
  const body = { model: it.model, input: it.modality === "text" ? it.text : it.url, encoding_format: "float" };
  if (it.modality === "text") body.truncate = it.truncate;
  else body.modality = it.modality;
  const head = `curl -s ${origin}/v1/embeddings -H 'content-type: application/json'${auth}`;
  if (it.modality === "text" || it.url) return `${head} \\\n  -d ${sh(JSON.stringify(body))}`;
  // a local file travels as a data: URL, built by the shell
  delete body.input;
  const fields = JSON.stringify(body).slice(1, -1);
  const prefix = `data:${it.mime || "application/octet-stream"};base64,`;
  return `${head} -d @- <<EOF\n{${fields},\n "input": "${prefix}$(base64 -w0 ${sh(it.name)})"}\nEOF`;
}

export function openaiPython(it, origin, keyed) {
  if (it.modality === "video") return "# the OpenAI face embeds text, images and audio; see the twelvelabs snippet for video";
  const key = keyed ? `os.environ["OMNIEMBED_API_KEY"]` : `"unused"`;
  const extra = it.modality === "text" ? { truncate: it.truncate } : { modality: it.modality };
  const input = it.modality === "text" ? q(it.text) : mediaLine(it);
  return `${keyed ? "import os\n" : ""}${readFile(it)}from openai import OpenAI\n\n` +
    `client = OpenAI(base_url=${q(`${origin}/v1`)}, api_key=${key})\n` +
    `response = client.embeddings.create(model=${q(it.model)}, input=${input}, encoding_format="float",\n` +
    `                                    extra_body=${JSON.stringify(extra).replaceAll(":", ": ")})\n` +
    `vector = response.data[0].embedding  # ${it.dim ?? "?"} floats`;
}

export function twelvelabsPython(it, origin, keyed) {
  const key = keyed ? `os.environ["OMNIEMBED_API_KEY"]` : `"unused"`;
  const head = `${keyed ? "import os\n" : ""}from twelvelabs import TwelveLabs\n\n` +
    `client = TwelveLabs(api_key=${key}, base_url=${q(`${origin}/v1.3`)})\n`;
  if (it.modality === "video") {
    const clip = it.clip ? ` video_clip_length=${Number(it.clip)},` : "";
    const create = (src) => `client.embed.tasks.create(\n    model_name=${q(it.model)}, ${src},${clip} video_embedding_scope=["clip", "video"],\n` +
      `    request_options={"additional_body_parameters": {"video_embedding_option": "visual"}})  # the frames\n`;
    const task = it.url ? `task = ${create(`video_url=${q(it.url)}`)}`
      : `with open(${q(it.name)}, "rb") as video_file:\n    task = ${create("video_file=video_file").replaceAll("\n    ", "\n        ")}`;
    return head + task +
      `client.embed.tasks.wait_for_done(task.id, sleep_interval=1)\n` +
      `segments = client.embed.tasks.retrieve(task.id).video_embedding.segments\n` +
      `clips = [s for s in segments if s.embedding_scope == "clip"]  # float_, start_offset_sec, end_offset_sec\n` +
      `video = next(s.float_ for s in segments if s.embedding_scope == "video")  # the whole video`;
  }
  if (it.modality === "text") {
    const extra = it.truncate === "end" ? "" : `,\n                             request_options={"additional_body_parameters": {"text_truncate": ${q(it.truncate)}}}`;
    return head + `result = client.embed.create(model_name=${q(it.model)}, text=${q(it.text)}${extra})\n` +
      `vector = result.text_embedding.segments[0].float_`;
  }
  const m = it.modality;
  const src = it.url ? `${m}_url=${q(it.url)}` : `${m}_file=open(${q(it.name)}, "rb")`;
  const tail = m === "audio" ? `segments = result.audio_embedding.segments  # float_, start_offset_sec, end_offset_sec`
    : `vector = result.image_embedding.segments[0].float_`;
  return head + `result = client.embed.create(model_name=${q(it.model)}, ${src})\n${tail}`;
}

export function omniembedPython(it, origin, keyed) {
  const value = it.modality === "text" ? q(it.text) : q(it.url || it.name);
  let options = it.modality === "text" && it.truncate !== "end" ? `, truncate=${q(it.truncate)}` : "";
  if (it.modality === "video" && it.clip) options = `, segment_sec=${Number(it.clip)}`;
  const local = `import omniembed\n\n# in this process, with the same model (no server needed)\n` +
    `embedding = omniembed.embed(${q(it.model)}, ${it.modality}=${value}${options})\n` +
    (it.modality === "video" ? `embedding.data, embedding.meta.segments, embedding.vector  # the clips, their times, the whole video\n`
      : `embedding.vector, embedding.meta.runtime, embedding.meta.timings\n`);
  if (it.modality === "video") return local;
  const key = keyed ? `, api_key=os.environ["OMNIEMBED_API_KEY"]` : "";
  const arg = it.modality === "text" ? `text=${q(it.text)}` : it.url ? `${it.modality}_url=${q(it.url)}` : `${it.modality}_file=${q(it.name)}`;
  return `${keyed ? "import os\n" : ""}${local}\n# or over HTTP, from this server\n` +
    `client = omniembed.Client(${q(origin)}${key})\n` +
    `client.embed.create(model_name=${q(it.model)}, ${arg})`;
}

export const SNIPPETS = {
  curl: ["curl", curl],
  openai: ["openai (Python)", openaiPython],
  twelvelabs: ["twelvelabs SDK (Python)", twelvelabsPython],
  omniembed: ["omniembed (Python)", omniembedPython],
};
